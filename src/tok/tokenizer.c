/* Loading and validating tokenizer.json: the BPE model (vocab, merges) and
 * the added tokens. The normalizer / pre-tokenizer / post-processor /
 * decoder sections are read by tok_config.c. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_config.h"
#include "tok/tok_internal.h"
#include "tok/tok_json.h"

static char *arena_add(ts_tokenizer *t, const char *s, size_t n) {
    /* The arena was sized for every string before any was added. */
    char *p = t->arena + t->arena_len;
    memcpy(p, s, n);
    p[n] = '\0';
    t->arena_len += n + 1;
    return p;
}

/* Stores str as the token of id, with its byte-level decoded bytes: each
 * character mapped back through GPT-2's table, or the raw string when a
 * character is outside it (as HF's ByteLevel decoder does). */
static void set_entry(ts_tokenizer *t, int32_t id, const char *str, size_t n) {
    ts_tok_entry *e = &t->entries[id];
    e->str = arena_add(t, str, n);
    e->str_len = (uint32_t)n;
    char *b = t->arena + t->arena_len;
    size_t k = 0, i = 0;
    bool ok = true;
    while (i < n) {
        size_t cl = ts_tok_utf8_len((const unsigned char *)str + i, n - i);
        if (cl == 0) { ok = false; break; }
        const unsigned char *u = (const unsigned char *)str + i;
        uint32_t cp = cl == 1 ? u[0] : cl == 2 ? (uint32_t)(u[0] & 0x1f) << 6 | (u[1] & 0x3f) : 0x110000;
        int byte = ts_tok_cp_to_byte(cp);
        if (byte < 0) { ok = false; break; }
        b[k++] = (char)byte;
        i += cl;
    }
    if (!ok) {
        memcpy(b, str, n);
        k = n;
    }
    b[k] = '\0';
    t->arena_len += k + 1;
    e->bytes = b;
    e->bytes_len = (uint32_t)k;
}

/* Reads an optional boolean member; null or absent gives def. */
ts_status ts_tok_json_bool(const json_t *obj, const char *key, bool def, bool *out,
                           const char *name, const char *where, ts_err *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return TS_OK;
    }
    if (!json_is_boolean(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s.%s should be true or false", name, where, key);
    *out = json_is_true(v);
    return TS_OK;
}

static ts_status check_id(long long id, const char *name, const char *what, int32_t *out,
                          ts_err *err) {
    if (id < 0 || id >= TS_TOK_MAX_ID)
        return ts_fail(err, TS_ERR_FORMAT, "%s: the id %lld of %s is out of range (0..%d)", name,
                       id, what, TS_TOK_MAX_ID - 1);
    *out = (int32_t)id;
    return TS_OK;
}

static ts_status get_id(const json_t *v, const char *name, const char *what, int32_t *out,
                        ts_err *err) {
    if (!json_is_integer(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: the id of %s is not an integer", name, what);
    return check_id((long long)json_integer_value(v), name, what, out, err);
}

static ts_status check_model(const json_t *model, const char *name, ts_err *err) {
    if (!json_is_object(model))
        return ts_fail(err, TS_ERR_FORMAT, "%s: \"model\" is missing or not an object", name);
    const json_t *type = json_object_get(model, "type");
    if (type && !json_is_string(type))
        return ts_fail(err, TS_ERR_FORMAT, "%s: model.type is not a string", name);
    if (type && strcmp(json_string_value(type), "BPE") != 0)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: model type \"%s\" is not supported (only byte-level BPE is)", name,
                       json_string_value(type));
    if (!json_is_object(json_object_get(model, "vocab")))
        return ts_fail(err, TS_ERR_FORMAT, "%s: model.vocab is missing or not an object", name);
    if (!json_is_array(json_object_get(model, "merges")))
        return ts_fail(err, TS_ERR_FORMAT, "%s: model.merges is missing or not an array", name);
    bool fb = false;
    ts_status st = ts_tok_json_bool(model, "byte_fallback", false, &fb, name, "model", err);
    if (st) return st;
    if (fb)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: model.byte_fallback true is not supported",
                       name);
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) &&
        (!json_is_number(dropout) || json_number_value(dropout) > 0))
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: model.dropout is not supported", name);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const json_t *a = json_object_get(model, affixes[i]);
        if (a && !json_is_null(a) && (!json_is_string(a) || json_string_length(a) != 0))
            return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: model.%s is not supported", name,
                           affixes[i]);
    }
    return ts_tok_json_bool(model, "ignore_merges", false, &fb, name, "model", err);
}

/* Sizes the id arrays and the string arena from the vocab and added tokens. */
static ts_status alloc_tables(ts_tokenizer *t, const ts_tok_lists *l, const json_t *added,
                              const char *name, ts_err *err) {
    int32_t max_id = -1;
    size_t bytes = 0;
    for (size_t k = 0; k < l->n_vocab; k++) {
        const ts_tok_vocab_item *it = &l->vocab[k];
        int32_t id;
        if (it->id < 0 || it->id >= TS_TOK_MAX_ID)
            return ts_fail(err, TS_ERR_FORMAT, "%s: the id %lld of vocab token \"%.*s\" is out "
                           "of range (0..%d)", name, it->id, (int)it->key.len, it->key.s,
                           TS_TOK_MAX_ID - 1);
        id = (int32_t)it->id;
        if (id > max_id) max_id = id;
        bytes += 2 * (size_t)it->key.len + 2;
    }
    size_t i;
    json_t *v;
    json_array_foreach(added, i, v) {
        const json_t *content = json_object_get(v, "content");
        if (!json_is_object(v) || !json_is_string(content) || json_string_length(content) == 0)
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: added_tokens[%zu] has no non-empty string \"content\"", name, i);
        int32_t id = 0;
        ts_status st = get_id(json_object_get(v, "id"), name, json_string_value(content), &id, err);
        if (st) return st;
        if (id > max_id) max_id = id;
        bytes += 2 * json_string_length(content) + 2;
    }
    if (max_id < 0) return ts_fail(err, TS_ERR_FORMAT, "%s: the vocabulary is empty", name);
    t->n_ids = max_id + 1;
    t->entries = calloc((size_t)t->n_ids, sizeof *t->entries);
    t->is_special = calloc((size_t)t->n_ids, 1);
    t->is_added = calloc((size_t)t->n_ids, 1);
    t->arena = malloc(bytes + 1);
    t->arena_cap = bytes + 1;
    if (!t->entries || !t->is_special || !t->is_added || !t->arena) return TS_ERR_NOMEM;
    if (ts_tok_strmap_init(&t->vocab, l->n_vocab + json_array_size(added))) return TS_ERR_NOMEM;
    return TS_OK;
}

static ts_status load_vocab(ts_tokenizer *t, const ts_tok_lists *l, const char *name,
                            ts_err *err) {
    for (size_t k = 0; k < l->n_vocab; k++) {
        const ts_tok_vocab_item *it = &l->vocab[k];
        int32_t id = (int32_t)it->id;
        if (t->entries[id].str)
            return ts_fail(err, TS_ERR_FORMAT, "%s: vocab tokens \"%s\" and \"%.*s\" share id %d",
                           name, t->entries[id].str, (int)it->key.len, it->key.s, id);
        if (memchr(it->key.s, '\0', it->key.len))
            return ts_fail(err, TS_ERR_FORMAT, "%s: vocab token %d contains a NUL character",
                           name, id);
        set_entry(t, id, it->key.s, it->key.len);
        int32_t other = ts_tok_strmap_put(&t->vocab, t->entries, id);
        if (other >= 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: vocab token \"%s\" appears twice", name,
                           t->entries[id].str);
    }
    return TS_OK;
}

static ts_status load_added(ts_tokenizer *t, const json_t *added, const char *name,
                            ts_err *err) {
    t->n_added = json_array_size(added);
    t->added = calloc(t->n_added ? t->n_added : 1, sizeof *t->added);
    if (!t->added) return TS_ERR_NOMEM;
    size_t i;
    json_t *v;
    json_array_foreach(added, i, v) {
        const json_t *cj = json_object_get(v, "content");
        const char *content = json_string_value(cj);
        size_t len = json_string_length(cj);
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        ts_tok_added *a = &t->added[i];
        ts_status st;
        if ((st = ts_tok_json_bool(v, "special", false, &a->special, name, "added_tokens", err)) ||
            (st = ts_tok_json_bool(v, "lstrip", false, &a->lstrip, name, "added_tokens", err)) ||
            (st = ts_tok_json_bool(v, "rstrip", false, &a->rstrip, name, "added_tokens", err)) ||
            (st = ts_tok_json_bool(v, "single_word", false, &a->single_word, name,
                                   "added_tokens", err)) ||
            (st = ts_tok_json_bool(v, "normalized", !a->special, &a->normalized, name,
                                   "added_tokens", err)))
            return st;
        if (memchr(content, '\0', len) || ts_tok_utf8_valid(content, len) != len)
            return ts_fail(err, TS_ERR_FORMAT, "%s: added token %d is not valid UTF-8 text", name,
                           id);
        if (t->is_added[id])
            return ts_fail(err, TS_ERR_FORMAT, "%s: two added tokens have id %d", name, id);
        ts_tok_entry *e = &t->entries[id];
        if (e->str && (e->str_len != len || memcmp(e->str, content, len) != 0))
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: added token \"%s\" has id %d, which the vocab gives to \"%s\"",
                           name, content, id, e->str);
        if (!e->str) {
            set_entry(t, id, content, len);
            int32_t other = ts_tok_strmap_put(&t->vocab, t->entries, id);
            if (other >= 0)
                return ts_fail(err, TS_ERR_FORMAT,
                               "%s: added token \"%s\" has id %d but the vocab gives it id %d",
                               name, content, id, other);
        }
        t->is_added[id] = 1;
        t->is_special[id] = a->special;
        a->id = id;
        a->content = e->str;
        a->len = (uint32_t)len;
        if (a->normalized) t->has_normalized_added = true;
    }
    return TS_OK;
}

static int added_cmp(const void *pa, const void *pb) {
    const ts_tok_added *a = pa, *b = pb;
    unsigned char ca = (unsigned char)a->content[0], cb = (unsigned char)b->content[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void index_added(ts_tokenizer *t) {
    if (t->n_added > 1) qsort(t->added, t->n_added, sizeof *t->added, added_cmp);
    size_t k = 0;
    for (unsigned b = 0; b <= 256; b++) {
        while (k < t->n_added && (unsigned char)t->added[k].content[0] < b) k++;
        t->added_start[b] = (uint32_t)k;
    }
    t->added_start[256] = (uint32_t)t->n_added;
}

/* Splits one "a b" merges string into its two token strings. */
static ts_status merge_parts(ts_tok_merge_item *m, size_t rank, const char *name, ts_err *err) {
    if (m->b.s) return TS_OK;
    const char *s = m->a.s;
    size_t n = m->a.len;
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp + 1 == s + n || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)))
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: merges[%zu] \"%.*s\" is not two tokens separated by one space",
                       name, rank, (int)n, s);
    m->b = (ts_tok_str){sp + 1, (uint32_t)(s + n - sp - 1)};
    m->a.len = (uint32_t)(sp - s);
    return TS_OK;
}

static ts_status load_merges(ts_tokenizer *t, ts_tok_lists *l, const char *name, ts_err *err) {
    size_t n = l->n_merges;
    if (n > (size_t)INT32_MAX) return ts_fail(err, TS_ERR_FORMAT, "%s: too many merges", name);
    if (ts_tok_merges_init(t, n)) return TS_ERR_NOMEM;
    char stack[512];
    for (size_t r = 0; r < n; r++) {
        ts_tok_merge_item *m = &l->merges[r];
        ts_status st = merge_parts(m, r, name, err);
        if (st) return st;
        const char *a = m->a.s, *b = m->b.s;
        size_t na = m->a.len, nb = m->b.len;
        int32_t ia = ts_tok_strmap_get(&t->vocab, t->entries, a, na);
        int32_t ib = ts_tok_strmap_get(&t->vocab, t->entries, b, nb);
        if (ia < 0 || ib < 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: merges[%zu] names \"%.*s\", which is not in "
                           "the vocab", name, r, (int)(ia < 0 ? na : nb), ia < 0 ? a : b);
        char *cat = na + nb <= sizeof stack ? stack : malloc(na + nb);
        if (!cat) return TS_ERR_NOMEM;
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        int32_t id = ts_tok_strmap_get(&t->vocab, t->entries, cat, na + nb);
        if (id < 0)
            ts_fail(err, TS_ERR_FORMAT, "%s: merges[%zu] makes \"%.*s\", which is not in the "
                    "vocab", name, r, (int)(na + nb), cat);
        if (cat != stack) free(cat);
        if (id < 0) return TS_ERR_FORMAT;
        ts_tok_merges_put(t, ia, ib, (int32_t)r, id);
    }
    return TS_OK;
}

/* l holds the scanned vocab and merges, or is empty when root is the
 * whole file (then they are taken from root). */
static ts_status load_root(ts_tokenizer *t, const json_t *root, ts_tok_lists *l,
                           const char *name, ts_err *err) {
    if (!json_is_object(root))
        return ts_fail(err, TS_ERR_FORMAT, "%s: the top level is not a JSON object", name);
    const json_t *model = json_object_get(root, "model");
    ts_status st = check_model(model, name, err);
    if (st) return st;
    if (!l->vocab && (st = ts_tok_lists_from_json(model, l, name, err))) return st;
    const json_t *added = json_object_get(root, "added_tokens");
    json_t *empty = NULL;
    if (!added || json_is_null(added)) added = empty = json_array();
    if (!json_is_array(added)) {
        json_decref(empty);
        return ts_fail(err, TS_ERR_FORMAT, "%s: added_tokens is not an array", name);
    }
    if (!(st = alloc_tables(t, l, added, name, err)) && !(st = load_vocab(t, l, name, err)) &&
        !(st = load_added(t, added, name, err)))
        st = load_merges(t, l, name, err);
    json_decref(empty);
    if (st) return st;
    index_added(t);
    bool im = false;
    ts_tok_json_bool(model, "ignore_merges", false, &im, name, "model", err);
    t->ignore_merges = im;
    t->unk_id = -1;
    const json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) {
        t->unk_id = ts_tok_strmap_get(&t->vocab, t->entries, json_string_value(unk),
                                      json_string_length(unk));
        if (t->unk_id < 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in the vocab",
                           name, json_string_value(unk));
    }
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = ts_tok_byte_to_cp(b);
        char s[2];
        size_t n = 1;
        if (cp < 0x80) {
            s[0] = (char)cp;
        } else {
            s[0] = (char)(0xc0 | (cp >> 6));
            s[1] = (char)(0x80 | (cp & 0x3f));
            n = 2;
        }
        t->byte_id[b] = ts_tok_strmap_get(&t->vocab, t->entries, s, n);
    }
    return ts_tok_load_config(t, root, name, err);
}

ts_status ts_tok_load_json(const char *json, size_t len, const char *name,
                           ts_tokenizer **out, ts_err *err) {
    *out = NULL;
    if (!name) name = "tokenizer.json";
    json_error_t jerr;
    ts_tok_lists l;
    /* Fast path: vocab and merges scanned directly, jansson for the rest;
     * on any surprise jansson parses the whole file and names the problem. */
    json_t *root = NULL;
    if (ts_tok_scan_lists(json, len, &l)) {
        root = json_loadb(l.rest, l.rest_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) ts_tok_lists_free(&l);
    }
    if (!root) {
        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
            return ts_fail(err, TS_ERR_FORMAT, "%s: invalid JSON at line %d: %s", name,
                           jerr.line, jerr.text);
    }
    ts_tokenizer *t = calloc(1, sizeof *t);
    ts_status st = TS_ERR_NOMEM;
    if (t && (t->name = strdup(name))) st = load_root(t, root, &l, name, err);
    json_decref(root);
    ts_tok_lists_free(&l);
    if (st) {
        if (st == TS_ERR_NOMEM) ts_fail(err, st, "%s: out of memory while loading", name);
        ts_tok_free(t);
        return st;
    }
    *out = t;
    return TS_OK;
}

/* Reads a whole file into a malloc'd NUL-terminated buffer. */
static ts_status read_file(const char *path, char **data, size_t *len, ts_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(err, TS_ERR_IO, "%s: cannot open the file", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, nc + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory reading the file", path);
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ts_fail(err, TS_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return TS_OK;
}

ts_status ts_tok_load(const char *path, ts_tokenizer **out, ts_err *err) {
    *out = NULL;
    char *data;
    size_t len;
    ts_status st = read_file(path, &data, &len, err);
    if (st) return st;
    st = ts_tok_load_json(data, len, path, out, err);
    free(data);
    return st;
}

ts_status ts_tok_load_dir(const char *model_dir, ts_tokenizer **out, ts_err *err) {
    *out = NULL;
    size_t dl = strlen(model_dir);
    char *path = malloc(dl + 32);
    if (!path) return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", model_dir);
    snprintf(path, dl + 32, "%s/tokenizer.json", model_dir);
    ts_tokenizer *t;
    ts_status st = ts_tok_load(path, &t, err);
    if (st) {
        free(path);
        return st;
    }
    snprintf(path, dl + 32, "%s/tokenizer_config.json", model_dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        char *data;
        size_t len;
        st = read_file(path, &data, &len, err);
        if (!st) {
            json_error_t jerr;
            json_t *cfg = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, &jerr);
            free(data);
            if (!cfg || !json_is_object(cfg)) {
                st = ts_fail(err, TS_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path,
                             jerr.line, cfg ? "not an object" : jerr.text);
            } else {
                bool c = false;
                st = ts_tok_json_bool(cfg, "clean_up_tokenization_spaces", false, &c, path,
                                      "tokenizer_config", err);
                t->cleanup_spaces = c;
            }
            json_decref(cfg);
        }
    }
    free(path);
    if (st) {
        ts_tok_free(t);
        return st;
    }
    *out = t;
    return TS_OK;
}

void ts_tok_free(ts_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    free(t->steps);
    free(t->prefix_ids);
    free(t->suffix_ids);
    free(t->added);
    free(t->merges);
    free(t->vocab.slots);
    free(t->entries);
    free(t->is_special);
    free(t->is_added);
    free(t->arena);
    free(t->name);
    free(t);
}

int32_t ts_tok_n_vocab(const ts_tokenizer *tok) { return tok ? tok->n_ids : 0; }
