/* Engine chunk API (work in progress). */
#include "base/err.h"
#include "engine/engine_int.h"

ts_status ts_engine_chunk_register(ts_engine *e, const char *text, const int32_t *ids,
                                   size_t n_ids, const char *type, const void *salt,
                                   size_t salt_len, ts_chunk_desc *desc, ts_err *err) {
    (void)e, (void)text, (void)ids, (void)n_ids, (void)type, (void)salt, (void)salt_len, (void)desc;
    return ts_fail(err, TS_ERR_UNSUPPORTED, "chunks are not wired into the engine yet");
}
ts_status ts_engine_chunk_get(ts_engine *e, const char *id, const void *salt, size_t salt_len,
                              ts_chunk_desc *out, ts_err *err) {
    (void)e, (void)id, (void)salt, (void)salt_len, (void)out;
    return ts_fail(err, TS_ERR_UNSUPPORTED, "chunks are not wired into the engine yet");
}
ts_status ts_engine_chunk_list(ts_engine *e, const void *salt, size_t salt_len,
                               ts_chunk_desc **out, size_t *n, ts_err *err) {
    (void)e, (void)salt, (void)salt_len;
    *out = NULL;
    *n = 0;
    return ts_fail(err, TS_ERR_UNSUPPORTED, "chunks are not wired into the engine yet");
}
ts_status ts_engine_chunk_remove(ts_engine *e, const char *id, const void *salt,
                                 size_t salt_len, ts_err *err) {
    (void)e, (void)id, (void)salt, (void)salt_len;
    return ts_fail(err, TS_ERR_UNSUPPORTED, "chunks are not wired into the engine yet");
}
