/* Encoding: added tokens found in the raw text, NFC, the pre-tokenizer's
 * regex splits, then BPE per pre-token (tok_bpe.c). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/err.h"
#include "tok/tok_internal.h"

ts_status ts_tok_ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p) return TS_ERR_NOMEM;
        *ids = p;
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
    return TS_OK;
}

size_t ts_tok_utf8_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

size_t ts_tok_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) { i++; continue; }
        size_t l = ts_tok_utf8_len((const unsigned char *)s + i, n - i);
        if (!l) break;
        i += l;
    }
    return i;
}

static uint32_t decode_cp(const unsigned char *s, size_t l) {
    if (l == 1) return s[0];
    uint32_t cp = s[0] & (0x7f >> l);
    for (size_t i = 1; i < l; i++) cp = cp << 6 | (s[i] & 0x3f);
    return cp;
}

/* Rust's char::is_whitespace (the Unicode White_Space property). */
static bool is_space_cp(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static bool is_word_cp(uint32_t c) {
    if (c == '_') return true;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

/* Code point ending just before s[end] (s is valid UTF-8). */
static uint32_t cp_before(const char *s, size_t end, size_t *start) {
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80) i--;
    *start = i;
    return decode_cp((const unsigned char *)s + i, end - i);
}

static uint32_t cp_at(const char *s, size_t n, size_t i, size_t *len) {
    *len = ts_tok_utf8_len((const unsigned char *)s + i, n - i);
    if (!*len) *len = 1;
    return decode_cp((const unsigned char *)s + i, *len);
}

/* State of one encode call: the output ids and the regex match data. */
typedef struct enc {
    const ts_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    pcre2_match_data *md;
    ts_err *err;
} enc;

static ts_status pretok(enc *e, const char *s, size_t n, size_t k);

/* Runs step k's regex over s: each match and each gap between matches is a
 * piece passed on to step k + 1 ("Isolated" behaviour). */
static ts_status split_regex(enc *e, const pcre2_code *re, const char *s, size_t n, size_t k) {
    size_t pos = 0, gap = 0;
    uint32_t opts = PCRE2_NO_UTF_CHECK;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, opts, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
            opts |= PCRE2_NO_JIT;
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ts_fail(e->err, TS_ERR_CAPACITY, "%s: the pre-tokenizer regex failed on the "
                           "input: %s", e->t->name, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: step over one character */
            size_t l;
            cp_at(s, n, ms, &l);
            pos = ms + l;
            continue;
        }
        ts_status st;
        if (ms > gap && (st = pretok(e, s + gap, ms - gap, k + 1))) return st;
        if ((st = pretok(e, s + ms, me - ms, k + 1))) return st;
        pos = gap = me;
    }
    return gap < n ? pretok(e, s + gap, n - gap, k + 1) : TS_OK;
}

static ts_status pretok(enc *e, const char *s, size_t n, size_t k) {
    const ts_tokenizer *t = e->t;
    if (n == 0) return TS_OK;
    if (k == t->n_steps) {
        ts_status st = ts_tok_bpe_word(t, (const unsigned char *)s, n, &e->ids, &e->n, &e->cap);
        if (st) ts_fail(e->err, st, "%s: out of memory while encoding", t->name);
        return st;
    }
    const ts_tok_step *step = &t->steps[k];
    if (step->kind == TS_PRE_BYTELEVEL && step->add_prefix_space && s[0] != ' ') {
        char *p = malloc(n + 1);
        if (!p) return ts_fail(e->err, TS_ERR_NOMEM, "%s: out of memory while encoding", t->name);
        p[0] = ' ';
        memcpy(p + 1, s, n);
        ts_status st = step->re ? split_regex(e, step->re, p, n + 1, k) : pretok(e, p, n + 1, k + 1);
        free(p);
        return st;
    }
    if (!step->re) return pretok(e, s, n, k + 1);
    return split_regex(e, step->re, s, n, k);
}

/* The longest added token (with the given normalized flag) at s[i], or NULL. */
static const ts_tok_added *added_at(const ts_tokenizer *t, const char *s, size_t n, size_t i,
                                    bool normalized) {
    unsigned char b = (unsigned char)s[i];
    for (uint32_t k = t->added_start[b]; k < t->added_start[b + 1]; k++) {
        const ts_tok_added *a = &t->added[k];
        if (a->normalized == normalized && a->len <= n - i && memcmp(s + i, a->content, a->len) == 0)
            return a;
    }
    return NULL;
}

typedef ts_status (*gap_fn)(enc *e, const char *s, size_t n);

/* Splits s on added tokens (leftmost, then longest, as HF's matcher) with
 * their lstrip / rstrip / single_word rules; text between them goes to gap. */
static ts_status split_added(enc *e, const char *s, size_t n, bool normalized, gap_fn gap) {
    const ts_tokenizer *t = e->t;
    size_t start_off = 0, i = 0;
    while (i < n) {
        const ts_tok_added *a = t->n_added ? added_at(t, s, n, i, normalized) : NULL;
        if (!a) {
            i++;
            continue;
        }
        size_t ms = i, me = i + a->len, cl;
        i = me;
        if (a->single_word) {
            size_t dummy;
            bool before = ms > 0 && is_word_cp(cp_before(s, ms, &dummy));
            bool after = me < n && is_word_cp(cp_at(s, n, me, &cl));
            if (before || after) continue;
        }
        if (a->lstrip) {
            size_t j = ms, st;
            while (j > start_off && is_space_cp(cp_before(s, j, &st))) j = st;
            ms = j;
        }
        if (a->rstrip) {
            while (me < n && is_space_cp(cp_at(s, n, me, &cl))) me += cl;
            i = me;
        }
        ts_status st;
        if (ms > start_off && (st = gap(e, s + start_off, ms - start_off))) return st;
        if ((st = ts_tok_ids_push(&e->ids, &e->n, &e->cap, a->id)))
            return ts_fail(e->err, st, "%s: out of memory while encoding", t->name);
        start_off = me;
    }
    return start_off < n ? gap(e, s + start_off, n - start_off) : TS_OK;
}

static ts_status normalized_gap(enc *e, const char *s, size_t n) { return pretok(e, s, n, 0); }

/* Text between non-normalized added tokens: NFC, then the normalized added
 * tokens, then the pre-tokenizer. */
static ts_status raw_gap(enc *e, const char *s, size_t n) {
    const ts_tokenizer *t = e->t;
    utf8proc_uint8_t *nfc = NULL;
    if (t->nfc) {
        bool ascii = true;
        for (size_t i = 0; i < n && ascii; i++) ascii = (unsigned char)s[i] < 0x80;
        if (!ascii) {
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                                              &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r < 0)
                return ts_fail(e->err, TS_ERR_INVALID, "%s: NFC normalization failed: %s",
                               t->name, utf8proc_errmsg(r));
            s = (const char *)nfc;
            n = (size_t)r;
        }
    }
    ts_status st = t->has_normalized_added ? split_added(e, s, n, true, normalized_gap)
                                           : pretok(e, s, n, 0);
    free(nfc);
    return st;
}

ts_status ts_tok_encode(const ts_tokenizer *tok, const char *text, size_t len,
                        bool add_special, int32_t **ids, size_t *n_ids, ts_err *err) {
    *ids = NULL;
    *n_ids = 0;
    size_t valid = ts_tok_utf8_valid(text, len);
    if (valid != len)
        return ts_fail(err, TS_ERR_INVALID, "encode: the text is not valid UTF-8 (byte %zu)",
                       valid);
    enc e = {.t = tok, .err = err};
    e.md = pcre2_match_data_create(8, NULL);
    if (!e.md) return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory while encoding", tok->name);
    ts_status st = TS_OK;
    for (size_t i = 0; add_special && i < tok->n_prefix && !st; i++)
        st = ts_tok_ids_push(&e.ids, &e.n, &e.cap, tok->prefix_ids[i]);
    if (!st) st = split_added(&e, text, len, false, raw_gap);
    for (size_t i = 0; add_special && i < tok->n_suffix && !st; i++)
        st = ts_tok_ids_push(&e.ids, &e.n, &e.cap, tok->suffix_ids[i]);
    pcre2_match_data_free(e.md);
    if (st) {
        if (st == TS_ERR_NOMEM) ts_fail(err, st, "%s: out of memory while encoding", tok->name);
        free(e.ids);
        return st;
    }
    if (!e.ids) e.ids = malloc(sizeof *e.ids); /* a valid pointer even for no ids */
    *ids = e.ids;
    *n_ids = e.n;
    return TS_OK;
}
