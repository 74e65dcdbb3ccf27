/* tessera: an LLM inference engine built around reusable KV caches.
 *
 * Public API. Every function that can fail returns ts_status and, when the
 * caller passes a non-NULL ts_err, fills it with one sentence a user can act
 * on. Nothing here exits or asserts on input. */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ts_status {
    TS_OK = 0,
    TS_ERR_NOMEM,       /* an allocation failed */
    TS_ERR_IO,          /* a file could not be opened, read or mapped */
    TS_ERR_FORMAT,      /* a file's contents are malformed or inconsistent */
    TS_ERR_INVALID,     /* an argument or user input is invalid */
    TS_ERR_UNSUPPORTED, /* valid, but not something tessera implements */
    TS_ERR_CAPACITY,    /* a size limit (context, pool, buffer) was exceeded */
    TS_ERR_NOTFOUND,    /* a named thing (tensor, token, chunk) is absent */
    TS_ERR_CANCELLED,   /* the operation was cancelled */
} ts_status;

/* Error text filled by failing calls. Pass NULL to ignore. */
typedef struct ts_err {
    char msg[512];
} ts_err;

/* Short constant name of a status ("ok", "out of memory", ...). */
const char *ts_status_str(ts_status st);

#ifdef __cplusplus
}
#endif
#endif
