#include "base/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ts_status ts_buf_reserve(ts_buf *b, size_t n) {
    if (n > ((size_t)-1) / 2 - b->len) return TS_ERR_NOMEM;
    size_t need = b->len + n + 1;
    if (need <= b->cap) return TS_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return TS_ERR_NOMEM;
    p[b->len] = '\0'; /* a fresh buffer is the empty string */
    b->data = p;
    b->cap = cap;
    return TS_OK;
}

ts_status ts_buf_append(ts_buf *b, const void *p, size_t n) {
    if (ts_buf_reserve(b, n) != TS_OK) return TS_ERR_NOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return TS_OK;
}

ts_status ts_buf_puts(ts_buf *b, const char *s) { return ts_buf_append(b, s, strlen(s)); }

ts_status ts_buf_putc(ts_buf *b, char c) { return ts_buf_append(b, &c, 1); }

ts_status ts_buf_printf(ts_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return TS_ERR_INVALID;
    if (ts_buf_reserve(b, (size_t)n) != TS_OK) return TS_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return TS_OK;
}

void ts_buf_clear(ts_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void ts_buf_free(ts_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
