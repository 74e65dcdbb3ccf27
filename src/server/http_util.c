/* HTTP replies: JSON, OpenAI-style errors, text; engine status to HTTP. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/srv_int.h"

static enum MHD_Result reply(struct MHD_Connection *c, ts_http_req *r, int status, const char *type,
                            const char *data, size_t len, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, mode);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result res = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (r) r->status = status;
    return res;
}

enum MHD_Result ts_reply_text(struct MHD_Connection *c, ts_http_req *r, int status,
                              const char *type, const char *text, size_t len) {
    return reply(c, r, status, type, text, len, MHD_RESPMEM_MUST_COPY);
}

enum MHD_Result ts_reply_static(struct MHD_Connection *c, ts_http_req *r, int status,
                                const char *type, const char *text, size_t len) {
    return reply(c, r, status, type, text, len, MHD_RESPMEM_PERSISTENT);
}

enum MHD_Result ts_reply_json(struct MHD_Connection *c, ts_http_req *r, int status, json_t *json) {
    char *s = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (!s) return reply(c, r, 500, "application/json", "{}", 2, MHD_RESPMEM_PERSISTENT);
    size_t n = strlen(s);
    /* libmicrohttpd frees the buffer with free() */
    return reply(c, r, status, "application/json", s, n, MHD_RESPMEM_MUST_FREE);
}

const char *ts_http_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 501: return "not_implemented_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

enum MHD_Result ts_reply_error(struct MHD_Connection *c, ts_http_req *r, int status,
                               const char *param, const char *code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", msg, "type",
                          ts_http_error_type(status), "param",
                          param ? json_string(param) : json_null(), "code",
                          code ? json_string(code) : json_null());
    return ts_reply_json(c, r, status, e);
}

int ts_http_status(ts_status st, const char *msg) {
    (void)msg; /* the status alone decides */
    switch (st) {
    case TS_OK: return 200;
    case TS_ERR_INVALID: return 400;
    case TS_ERR_NOTFOUND: return 404;
    case TS_ERR_UNSUPPORTED: return 501;
    case TS_ERR_CAPACITY: return 400;
    case TS_ERR_BUSY: return 429;
    case TS_ERR_NOMEM: return 503;
    default: return 500;
    }
}

enum MHD_Result ts_reply_status(struct MHD_Connection *c, ts_http_req *r, ts_status st,
                                const char *param, const char *msg) {
    int code = ts_http_status(st, msg);
    const char *name = code == 429 ? "queue_full"
                       : st == TS_ERR_CAPACITY ? "context_length_exceeded"
                       : st == TS_ERR_NOTFOUND ? "not_found"
                       : st == TS_ERR_UNSUPPORTED ? "unsupported"
                       : NULL;
    return ts_reply_error(c, r, code, param, name, "%s", msg && *msg ? msg : ts_status_str(st));
}

json_t *ts_parse_body(struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res) {
    json_error_t je;
    json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &je);
    if (!j) {
        *res = ts_reply_error(c, r, 400, NULL, "invalid_json",
                              "the request body is not valid JSON: %s (line %d, column %d)", je.text,
                              je.line, je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *res = ts_reply_error(c, r, 400, NULL, "invalid_json", "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

void ts_make_id(char *out, size_t cap, const char *prefix) {
    static _Atomic unsigned long long counter;
    unsigned long long n = ++counter;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    unsigned long long x = ((unsigned long long)t.tv_sec * 1000003ull) ^ (unsigned long long)t.tv_nsec ^ (n << 40);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    snprintf(out, cap, "%s%016llx%08llx", prefix, x, n & 0xffffffffull);
}
