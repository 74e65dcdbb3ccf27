/* A scanner for model.vocab and model.merges of tokenizer.json, and the
 * same lists built from a jansson tree (the fallback that reports errors). */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_json.h"

typedef struct cur {
    const char *p, *end;
    char *out;           /* decoded strings */
    size_t out_len, out_cap;
} cur;

static void ws(cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static bool eat(cur *c, char ch) {
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool skip_string(cur *c) {
    if (c->p >= c->end || *c->p != '"') return false;
    for (c->p++; c->p < c->end;) {
        const char *q = memchr(c->p, '"', (size_t)(c->end - c->p));
        if (!q) return false;
        size_t bs = 0; /* an odd run of backslashes escapes the quote */
        while (q - bs > c->p && q[-1 - (long)bs] == '\\') bs++;
        c->p = q + 1;
        if (bs % 2 == 0) return true;
    }
    return false;
}

/* Skips any value; depth bounds the nesting. */
static bool skip_value(cur *c, int depth) {
    ws(c);
    if (c->p >= c->end || depth > 64) return false;
    char ch = *c->p;
    if (ch == '"') return skip_string(c);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        c->p++;
        if (eat(c, close)) return true;
        do {
            if (ch == '{') {
                ws(c);
                if (!skip_string(c) || !eat(c, ':')) return false;
            }
            if (!skip_value(c, depth + 1)) return false;
        } while (eat(c, ','));
        return eat(c, close);
    }
    while (c->p < c->end && (strchr("-+.eE", *c->p) || (*c->p >= '0' && *c->p <= '9') ||
                             (*c->p >= 'a' && *c->p <= 'z')))
        c->p++;
    return true;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= h - '0';
        else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
        else return -1;
    }
    return v;
}

static bool out_reserve(cur *c, size_t n) {
    if (c->out_cap - c->out_len >= n) return true;
    size_t nc = c->out_cap ? c->out_cap * 2 : 1 << 20;
    while (nc - c->out_len < n) nc *= 2;
    char *p = realloc(c->out, nc);
    if (!p) return false;
    c->out = p;
    c->out_cap = nc;
    return true;
}

/* Decodes a string into c->out; *off / *len say where. Gives up (false)
 * on NUL characters, lone surrogates and anything malformed. */
static bool read_string(cur *c, size_t *off, uint32_t *len) {
    ws(c);
    if (c->p >= c->end || *c->p != '"') return false;
    c->p++;
    *off = c->out_len;
    for (;;) {
        const char *q = c->p;
        while (q < c->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
        if (q >= c->end || (unsigned char)*q < 0x20) return false;
        if (!out_reserve(c, (size_t)(q - c->p) + 8)) return false;
        memcpy(c->out + c->out_len, c->p, (size_t)(q - c->p));
        c->out_len += (size_t)(q - c->p);
        c->p = q + 1;
        if (*q == '"') break;
        if (c->p >= c->end) return false;
        char e = *c->p++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            c->out[c->out_len++] = map[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u' || c->end - c->p < 4) return false;
        long cp = hex4(c->p);
        c->p += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') return false;
            int lo = hex4(c->p + 2);
            if (lo < 0xdc00 || lo > 0xdfff) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            c->p += 6;
        } else if (cp <= 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
            return false;
        }
        char *o = c->out + c->out_len;
        if (cp < 0x80) { o[0] = (char)cp; c->out_len += 1; }
        else if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); c->out_len += 2; }
        else if (cp < 0x10000) {
            o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
            o[2] = (char)(0x80 | (cp & 0x3f)); c->out_len += 3;
        } else {
            o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
            o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
            c->out_len += 4;
        }
    }
    if (c->out_len - *off > UINT32_MAX) return false;
    *len = (uint32_t)(c->out_len - *off);
    return true;
}

static bool read_int(cur *c, long long *v) {
    ws(c);
    bool neg = c->p < c->end && *c->p == '-';
    if (neg) c->p++;
    const char *s = c->p;
    long long x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && c->p - s < 12) x = x * 10 + (*c->p++ - '0');
    if (c->p == s || (c->p < c->end && strchr(".eE0123456789", *c->p))) return false;
    *v = neg ? -x : x;
    return true;
}

#define GROW(arr, n, cap)                                                   \
    ((n) < (cap) || ((cap) = (cap) ? (cap) * 2 : 4096,                      \
                     (tmp = realloc((arr), (cap) * sizeof *(arr))) != NULL   \
                         ? ((arr) = tmp, true) : false))

static bool scan_vocab(cur *c, ts_tok_lists *l) {
    size_t cap = 0;
    void *tmp;
    if (!eat(c, '{')) return false;
    if (eat(c, '}')) return true;
    do {
        size_t off;
        uint32_t len;
        long long id;
        if (!read_string(c, &off, &len) || !eat(c, ':') || !read_int(c, &id)) return false;
        if (!GROW(l->vocab, l->n_vocab, cap)) return false;
        l->vocab[l->n_vocab++] = (ts_tok_vocab_item){{(const char *)(uintptr_t)off, len}, id};
    } while (eat(c, ','));
    return eat(c, '}');
}

static bool scan_merges(cur *c, ts_tok_lists *l) {
    size_t cap = 0;
    void *tmp;
    if (!eat(c, '[')) return false;
    if (eat(c, ']')) return true;
    do {
        ts_tok_merge_item m = {{NULL, 0}, {NULL, 0}};
        size_t off;
        if (eat(c, '[')) {
            if (!read_string(c, &off, &m.a.len)) return false;
            m.a.s = (const char *)(uintptr_t)off;
            if (!eat(c, ',') || !read_string(c, &off, &m.b.len) || !eat(c, ']')) return false;
            m.b.s = (const char *)(uintptr_t)off;
        } else {
            if (!read_string(c, &off, &m.a.len)) return false;
            m.a.s = (const char *)(uintptr_t)off;
        }
        if (!GROW(l->merges, l->n_merges, cap)) return false;
        l->merges[l->n_merges++] = m;
    } while (eat(c, ','));
    return eat(c, ']');
}

static bool key_is(const cur *c, size_t off, uint32_t len, const char *want) {
    return len == strlen(want) && memcmp(c->out + off, want, len) == 0;
}

/* Walks the object at c; the value of key "model" is walked too when
 * model_level is 0, and its "vocab" / "merges" values are parsed into l
 * (their spans recorded) in the same pass. */
static bool scan_object(cur *c, int level, ts_tok_lists *l, const char **span) {
    if (!eat(c, '{')) return false;
    if (eat(c, '}')) return true;
    do {
        size_t off, mark = c->out_len;
        uint32_t len;
        if (!read_string(c, &off, &len) || !eat(c, ':')) return false;
        int which = level == 0 ? (key_is(c, off, len, "model") ? 1 : 0)
                               : key_is(c, off, len, "vocab") ? 2
                               : key_is(c, off, len, "merges") ? 3 : 0;
        c->out_len = mark;
        ws(c);
        const char *start = c->p;
        bool ok = which == 1 ? scan_object(c, 1, l, span)
                : which == 2 ? (!span[0] && scan_vocab(c, l))
                : which == 3 ? (!span[2] && scan_merges(c, l))
                : skip_value(c, 0);
        if (!ok) return false;
        if (which >= 2) {
            span[(which - 2) * 2] = start;
            span[(which - 2) * 2 + 1] = c->p;
        }
    } while (eat(c, ','));
    return eat(c, '}');
}

bool ts_tok_scan_lists(const char *json, size_t len, ts_tok_lists *l) {
    memset(l, 0, sizeof *l);
    cur c = {json, json + len, NULL, 0, 0};
    const char *span[4] = {NULL, NULL, NULL, NULL};
    bool ok = scan_object(&c, 0, l, span) && span[0] && span[2];
    const char *vs = span[0], *ve = span[1], *gs = span[2], *ge = span[3];
    if (ok) ok = (l->rest = malloc(len + 1)) != NULL;
    if (!ok) {
        free(c.out);
        ts_tok_lists_free(l);
        return false;
    }
    /* The text without the two values: "{}" and "[]" stand in for them,
     * followed by their newlines so that jansson's line numbers still
     * point into the file. */
    const char *cut[2][2] = {{vs, ve}, {gs, ge}};
    if (gs < vs) {
        cut[0][0] = gs, cut[0][1] = ge;
        cut[1][0] = vs, cut[1][1] = ve;
    }
    size_t w = 0;
    const char *from = json;
    for (int k = 0; k < 2; k++) {
        memcpy(l->rest + w, from, (size_t)(cut[k][0] - from));
        w += (size_t)(cut[k][0] - from);
        l->rest[w++] = cut[k][0] == vs ? '{' : '[';
        l->rest[w++] = cut[k][0] == vs ? '}' : ']';
        for (const char *q = cut[k][0]; q < cut[k][1]; q++)
            if (*q == '\n') l->rest[w++] = '\n';
        from = cut[k][1];
    }
    memcpy(l->rest + w, from, (size_t)(json + len - from));
    w += (size_t)(json + len - from);
    l->rest[w] = '\0';
    l->rest_len = w;
    l->strings = c.out;
    for (size_t i = 0; i < l->n_vocab; i++)
        l->vocab[i].key.s = c.out + (uintptr_t)l->vocab[i].key.s;
    for (size_t i = 0; i < l->n_merges; i++) {
        l->merges[i].a.s = c.out + (uintptr_t)l->merges[i].a.s;
        if (l->merges[i].b.s) l->merges[i].b.s = c.out + (uintptr_t)l->merges[i].b.s;
    }
    return true;
}

ts_status ts_tok_lists_from_json(const json_t *model, ts_tok_lists *l, const char *name,
                                 ts_err *err) {
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    l->vocab = malloc(sizeof *l->vocab * (json_object_size(vocab) + 1));
    l->merges = malloc(sizeof *l->merges * (json_array_size(merges) + 1));
    if (!l->vocab || !l->merges) return TS_ERR_NOMEM;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v))
            return ts_fail(err, TS_ERR_FORMAT, "%s: the id of vocab token \"%s\" is not an integer",
                           name, key);
        l->vocab[l->n_vocab++] =
            (ts_tok_vocab_item){{key, (uint32_t)strlen(key)}, (long long)json_integer_value(v)};
    }
    size_t i;
    json_array_foreach(merges, i, v) {
        ts_tok_merge_item m = {{NULL, 0}, {NULL, 0}};
        const json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
        if (json_is_string(v)) {
            m.a = (ts_tok_str){json_string_value(v), (uint32_t)json_string_length(v)};
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(a) &&
                   json_is_string(b)) {
            m.a = (ts_tok_str){json_string_value(a), (uint32_t)json_string_length(a)};
            m.b = (ts_tok_str){json_string_value(b), (uint32_t)json_string_length(b)};
        } else {
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: merges[%zu] is neither a \"a b\" string nor a pair of strings",
                           name, i);
        }
        l->merges[l->n_merges++] = m;
    }
    return TS_OK;
}

void ts_tok_lists_free(ts_tok_lists *l) {
    free(l->vocab);
    free(l->merges);
    free(l->strings);
    free(l->rest);
    memset(l, 0, sizeof *l);
}
