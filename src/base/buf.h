/* ts_buf: a growable byte buffer, always NUL-terminated after the data. */
#ifndef TS_BASE_BUF_H
#define TS_BASE_BUF_H

#include <stddef.h>
#include "tessera.h"

typedef struct ts_buf {
    char *data;   /* owned; NULL until the first append */
    size_t len;   /* bytes used, excluding the terminating NUL */
    size_t cap;
} ts_buf;

/* Each append returns TS_OK or TS_ERR_NOMEM (the buffer is unchanged then). */
ts_status ts_buf_append(ts_buf *b, const void *p, size_t n);
ts_status ts_buf_puts(ts_buf *b, const char *s);
ts_status ts_buf_putc(ts_buf *b, char c);
ts_status ts_buf_printf(ts_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Ensures room for n more bytes (plus the NUL). */
ts_status ts_buf_reserve(ts_buf *b, size_t n);
/* Sets len to 0 and keeps the memory. */
void ts_buf_clear(ts_buf *b);
/* Frees the memory; the buffer may be reused afterwards. */
void ts_buf_free(ts_buf *b);

#endif
