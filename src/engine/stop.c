/* Stop-string matcher; see stop.h for the contract. */
#include "engine/stop.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"

struct ts_stop {
    char **stops;     /* [n_stops] owned copies */
    size_t *lens;     /* [n_stops] */
    size_t n_stops;
    size_t max_len;
    ts_buf buf;       /* pending text, not yet consumed */
    int matched;      /* index of the stop string that matched, or -1 */
};

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values
 * above U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; min = 0x10000; }
        else return 0;
        if (n - i < len) return 0;
        unsigned cp = c & (0x7fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

/* The largest r' <= r such that s[0..r') does not end inside an incomplete
 * UTF-8 sequence. Malformed bytes are not held (they can never complete). */
static size_t utf8_safe_end(const unsigned char *s, size_t r) {
    size_t k = 0; /* continuation bytes at the end */
    while (k < 3 && k < r && (s[r - 1 - k] & 0xc0) == 0x80) k++;
    if (k == r) return r;
    unsigned lead = s[r - 1 - k];
    size_t need = 1;
    if ((lead & 0xe0) == 0xc0) need = 2;
    else if ((lead & 0xf0) == 0xe0) need = 3;
    else if ((lead & 0xf8) == 0xf0) need = 4;
    return k + 1 < need ? r - 1 - k : r;
}

ts_status ts_stop_create(const char *const *stops, size_t n_stops, ts_stop **out,
                         ts_err *err) {
    if (n_stops && !stops)
        return ts_fail(err, TS_ERR_INVALID, "stop strings: %zu given but no array", n_stops);
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0])
            return ts_fail(err, TS_ERR_INVALID, "stop strings: string %zu is empty", i);
        if (!utf8_valid((const unsigned char *)stops[i], strlen(stops[i])))
            return ts_fail(err, TS_ERR_INVALID, "stop strings: string %zu is not valid UTF-8",
                           i);
    }
    ts_stop *m = calloc(1, sizeof *m);
    if (!m) return ts_fail(err, TS_ERR_NOMEM, "stop strings: out of memory");
    m->matched = -1;
    if (n_stops) {
        m->stops = calloc(n_stops, sizeof *m->stops);
        m->lens = calloc(n_stops, sizeof *m->lens);
        if (!m->stops || !m->lens) goto nomem;
    }
    for (size_t i = 0; i < n_stops; i++) {
        size_t len = strlen(stops[i]);
        m->stops[i] = malloc(len + 1);
        m->n_stops = i + 1; /* so that destroy frees what exists */
        if (!m->stops[i]) goto nomem;
        memcpy(m->stops[i], stops[i], len + 1);
        m->lens[i] = len;
        if (len > m->max_len) m->max_len = len;
    }
    *out = m;
    return TS_OK;
nomem:
    ts_stop_destroy(m);
    return ts_fail(err, TS_ERR_NOMEM, "stop strings: out of memory");
}

void ts_stop_destroy(ts_stop *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_stops; i++) free(m->stops[i]);
    free(m->stops);
    free(m->lens);
    ts_buf_free(&m->buf);
    free(m);
}

void ts_stop_reset(ts_stop *m) {
    ts_buf_clear(&m->buf);
    m->matched = -1;
}

int ts_stop_matched(const ts_stop *m) { return m->matched; }

size_t ts_stop_pending(const ts_stop *m) { return m->buf.len; }

const char *ts_stop_text(const ts_stop *m) { return m->buf.data ? m->buf.data : ""; }

void ts_stop_consume(ts_stop *m, size_t n) {
    if (n > m->buf.len) n = m->buf.len;
    if (!n) return;
    size_t keep = m->buf.len - n;
    memmove(m->buf.data, m->buf.data + n, keep);
    m->buf.len = keep;
    m->buf.data[keep] = '\0';
}

/* Bytes at the front of the pending text that no stop string can start in:
 * everything but the longest suffix that is a proper prefix of a stop, and
 * but an incomplete UTF-8 character at the end. */
static size_t safe_prefix(const ts_stop *m) {
    const char *b = ts_stop_text(m);
    size_t len = m->buf.len, r = len;
    size_t lo = m->max_len > 0 && len > m->max_len - 1 ? len - (m->max_len - 1) : 0;
    for (size_t i = lo; i < len && r == len; i++) {
        size_t tail = len - i;
        for (size_t j = 0; j < m->n_stops; j++) {
            if (m->lens[j] > tail && memcmp(m->stops[j], b + i, tail) == 0) {
                r = i;
                break;
            }
        }
    }
    return utf8_safe_end((const unsigned char *)b, r);
}

bool ts_stop_feed(ts_stop *m, const char *piece, size_t n, size_t *n_safe) {
    if (m->matched >= 0) {
        *n_safe = m->buf.len;
        return true;
    }
    size_t old = m->buf.len;
    if (n && ts_buf_append(&m->buf, piece, n) != TS_OK) n = 0;
    const char *b = ts_stop_text(m);
    size_t len = m->buf.len;

    /* A full match cannot lie inside the text pending before this piece (it
     * would have been found then), so each search starts where a match
     * could first overlap the new bytes. The match that completes first
     * (earliest end) wins, as generation would have stopped there. */
    size_t best = len, best_end = (size_t)-1;
    for (size_t j = 0; j < m->n_stops && n; j++) {
        size_t sl = m->lens[j];
        if (sl > len) continue;
        size_t from = old + 1 > sl ? old + 1 - sl : 0;
        const char *hit = memmem(b + from, len - from, m->stops[j], sl);
        if (!hit) continue;
        size_t at = (size_t)(hit - b), end = at + sl;
        if (end < best_end || (end == best_end && at < best)) {
            best = at;
            best_end = end;
            m->matched = (int)j;
        }
    }
    if (m->matched >= 0) { /* drop the stop string and what follows */
        m->buf.len = best;
        m->buf.data[best] = '\0';
        *n_safe = best;
        return true;
    }
    *n_safe = safe_prefix(m);
    return false;
}
