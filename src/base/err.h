/* Error reporting helpers shared by every module. */
#ifndef TS_BASE_ERR_H
#define TS_BASE_ERR_H

#include "tessera.h"

/* Formats a message into err (if non-NULL) and returns st, so that a failing
 * path reads `return ts_fail(err, TS_ERR_FORMAT, "%s: ...", path);`. */
ts_status ts_fail(ts_err *err, ts_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err->msg (if err is non-NULL). */
void ts_err_clear(ts_err *err);

#endif
