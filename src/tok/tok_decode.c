/* Decoding: token bytes joined and turned into text with U+FFFD for
 * ill-formed UTF-8 (one per maximal ill-formed subpart, as Rust's
 * String::from_utf8_lossy, which HF uses), HF's optional clean-up, the
 * streaming decoder, and id <-> token lookups. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_internal.h"

static const char replacement[] = "\xef\xbf\xbd";

/* Length of the longest prefix of s that could begin a valid UTF-8
 * sequence (at least 1), for an s that does not start with one. */
static size_t maximal_subpart(const unsigned char *s, size_t n, size_t *need) {
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        *need = 1;
        return 1;
    }
    *need = len;
    size_t k = 1;
    if (k < n && s[1] >= lo && s[1] <= hi) {
        k = 2;
        while (k < len && k < n && (s[k] & 0xc0) == 0x80) k++;
    }
    return k;
}

/* Appends s as text to out and returns how many bytes were used. Unless
 * final, a valid but unfinished sequence at the end is left unused. */
static size_t append_lossy(ts_buf *out, const unsigned char *s, size_t n, bool final,
                           ts_status *st) {
    size_t i = 0, run = 0; /* [run, i) is valid text not yet appended */
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t l = ts_tok_utf8_len(s + i, n - i);
        if (l) { i += l; continue; }
        size_t need, k = maximal_subpart(s + i, n - i, &need);
        if (!final && i + k == n && k < need) break; /* may finish in a later token */
        if (i > run && (*st = ts_buf_append(out, s + run, i - run))) return 0;
        if ((*st = ts_buf_append(out, replacement, 3))) return 0;
        i += k;
        run = i;
    }
    if (i > run && (*st = ts_buf_append(out, s + run, i - run))) return 0;
    return i;
}

/* HF's clean_up_tokenization: these replacements, applied in this order. */
static ts_status cleanup(ts_buf *b) {
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's",
                                       " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof *from; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), w = 0;
        if (!b->data) return TS_OK;
        for (size_t i = 0; i < b->len;) {
            if (i + fl <= b->len && memcmp(b->data + i, from[r], fl) == 0) {
                memmove(b->data + w, to[r], tl); /* tl < fl, so w + tl <= i */
                w += tl;
                i += fl;
            } else {
                b->data[w++] = b->data[i++];
            }
        }
        b->len = w;
        b->data[w] = '\0';
    }
    return TS_OK;
}

ts_status ts_tok_decode(const ts_tokenizer *tok, const int32_t *ids, size_t n_ids,
                        bool skip_special, ts_buf *out, ts_err *err) {
    ts_buf raw = {0}, text = {0};
    ts_status st = TS_OK;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids) {
            ts_buf_free(&raw);
            return ts_fail(err, TS_ERR_INVALID, "decode: id %d is outside the vocabulary (0..%d)",
                           id, tok->n_ids - 1);
        }
        if (skip_special && tok->is_special[id]) continue;
        const ts_tok_entry *e = &tok->entries[id];
        if (e->bytes_len && (st = ts_buf_append(&raw, e->bytes, e->bytes_len))) break;
    }
    if (!st) append_lossy(&text, (const unsigned char *)raw.data, raw.len, true, &st);
    if (!st && tok->cleanup_spaces) st = cleanup(&text);
    if (!st && text.len) st = ts_buf_append(out, text.data, text.len);
    ts_buf_free(&raw);
    ts_buf_free(&text);
    if (st) return ts_fail(err, st, "decode: out of memory");
    return TS_OK;
}

const char *ts_tok_piece(const ts_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_ids || !tok->entries[id].str) return NULL;
    if (len) *len = tok->entries[id].bytes_len;
    return tok->entries[id].bytes;
}

int32_t ts_tok_lookup(const ts_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    return ts_tok_strmap_get(&tok->vocab, tok->entries, token, strlen(token));
}

bool ts_tok_is_special(const ts_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->n_ids && tok->is_special[id];
}

void ts_tok_stream_init(ts_tok_stream *s, const ts_tokenizer *tok, bool skip_special) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
}

ts_status ts_tok_stream_push(ts_tok_stream *s, int32_t id, ts_buf *out) {
    const ts_tokenizer *t = s->tok;
    if (id < 0 || id >= t->n_ids) return TS_ERR_INVALID;
    if (s->skip_special && t->is_special[id]) return TS_OK;
    const ts_tok_entry *e = &t->entries[id];
    size_t n = (size_t)s->n_pending + e->bytes_len;
    unsigned char stack[256];
    unsigned char *b = n <= sizeof stack ? stack : malloc(n);
    if (!b) return TS_ERR_NOMEM;
    memcpy(b, s->pending, (size_t)s->n_pending);
    if (e->bytes_len) memcpy(b + s->n_pending, e->bytes, e->bytes_len);
    ts_status st = TS_OK;
    size_t used = append_lossy(out, b, n, false, &st);
    if (!st) {
        /* What is left is an unfinished sequence: at most 3 bytes. */
        s->n_pending = (int)(n - used);
        memcpy(s->pending, b + used, n - used);
    }
    if (b != stack) free(b);
    return st;
}

ts_status ts_tok_stream_flush(ts_tok_stream *s, ts_buf *out) {
    ts_status st = TS_OK;
    append_lossy(out, s->pending, (size_t)s->n_pending, true, &st);
    if (!st) s->n_pending = 0;
    return st;
}
