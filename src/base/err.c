#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *ts_status_str(ts_status st) {
    switch (st) {
    case TS_OK: return "ok";
    case TS_ERR_NOMEM: return "out of memory";
    case TS_ERR_IO: return "i/o error";
    case TS_ERR_FORMAT: return "bad format";
    case TS_ERR_INVALID: return "invalid argument";
    case TS_ERR_UNSUPPORTED: return "unsupported";
    case TS_ERR_CAPACITY: return "capacity exceeded";
    case TS_ERR_NOTFOUND: return "not found";
    case TS_ERR_CANCELLED: return "cancelled";
    case TS_ERR_BUSY: return "busy";
    }
    return "unknown status";
}

ts_status ts_fail(ts_err *err, ts_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

void ts_err_clear(ts_err *err) {
    if (err) err->msg[0] = '\0';
}
