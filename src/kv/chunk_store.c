/* The store-independent part of chunk persistence: the vtable calls with
 * their stats and locking, and save/load between a store and a registry. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kv/chunk_store.h"

ts_status ts_chunk_store_init_base(ts_chunk_store *s, const ts_chunk_store_vt *vt,
                                   ts_chunk_log_fn log, void *log_ctx) {
    memset(&s->stats, 0, sizeof s->stats);
    s->vt = vt;
    s->log = log;
    s->log_ctx = log_ctx;
    s->stats.available = true;
    return pthread_mutex_init(&s->mu, NULL) == 0 ? TS_OK : TS_ERR_NOMEM;
}

void ts_chunk_store_logf(ts_chunk_store *s, const char *fmt, ...) {
    if (!s || !s->log) return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->log(s->log_ctx, msg);
}

const char *ts_chunk_store_name(const ts_chunk_store *s) {
    return s && s->vt ? s->vt->name : "none";
}

ts_status ts_chunk_store_open(const char *spec, ts_chunk_log_fn log, void *log_ctx,
                              ts_chunk_store **out, ts_err *err) {
    if (!out) return ts_fail(err, TS_ERR_INVALID, "chunk store: no output pointer");
    *out = NULL;
    if (!spec || !*spec) return ts_fail(err, TS_ERR_INVALID, "chunk store: empty spec");
    static const char redis[] = "redis://", dir[] = "dir:";
    if (strncmp(spec, redis, sizeof redis - 1) == 0) {
        const char *h = spec + sizeof redis - 1, *colon = strrchr(h, ':');
        size_t hl = colon ? (size_t)(colon - h) : strlen(h);
        long port = 6379;
        if (colon) {
            char *end = NULL;
            port = strtol(colon + 1, &end, 10);
            if (end == colon + 1 || *end || port <= 0 || port > 65535)
                return ts_fail(err, TS_ERR_INVALID, "chunk store '%.200s': bad port", spec);
        }
        char host[256];
        if (hl == 0 || hl >= sizeof host || memchr(h, '/', hl))
            return ts_fail(err, TS_ERR_INVALID, "chunk store '%.200s': bad host", spec);
        memcpy(host, h, hl);
        host[hl] = '\0';
        return ts_chunk_store_redis_open(host, (int)port, 0, log, log_ctx, out, err);
    }
    if (strncmp(spec, dir, sizeof dir - 1) == 0) spec += sizeof dir - 1;
    if (!*spec) return ts_fail(err, TS_ERR_INVALID, "chunk store: empty directory");
    return ts_chunk_store_dir_open(spec, true, log, log_ctx, out, err);
}

ts_status ts_chunk_store_put(ts_chunk_store *s, const ts_chunk_id *id, const void *blob, size_t n,
                             ts_err *err) {
    if (!s || !id || (!blob && n)) return ts_fail(err, TS_ERR_INVALID, "chunk store put: missing argument");
    pthread_mutex_lock(&s->mu);
    ts_status st = s->vt->put(s, id, blob, n, err);
    s->stats.puts++;
    if (st != TS_OK) s->stats.put_errors++;
    pthread_mutex_unlock(&s->mu);
    return st;
}

ts_status ts_chunk_store_get(ts_chunk_store *s, const ts_chunk_id *id, void **blob, size_t *n,
                             ts_err *err) {
    if (blob) *blob = NULL;
    if (n) *n = 0;
    if (!s || !id || !blob || !n) return ts_fail(err, TS_ERR_INVALID, "chunk store get: missing argument");
    pthread_mutex_lock(&s->mu);
    ts_status st = s->vt->get(s, id, blob, n, err);
    s->stats.gets++;
    if (st == TS_OK) s->stats.get_hits++;
    else if (st == TS_ERR_NOTFOUND) s->stats.get_misses++;
    else s->stats.get_errors++;
    pthread_mutex_unlock(&s->mu);
    return st;
}

ts_status ts_chunk_store_del(ts_chunk_store *s, const ts_chunk_id *id, ts_err *err) {
    if (!s || !id) return ts_fail(err, TS_ERR_INVALID, "chunk store del: missing argument");
    pthread_mutex_lock(&s->mu);
    ts_status st = s->vt->del(s, id, err);
    s->stats.dels++;
    pthread_mutex_unlock(&s->mu);
    return st;
}

void ts_chunk_store_close(ts_chunk_store *s) {
    if (!s) return;
    s->vt->close(s); /* frees backend state; the common part is ours */
    pthread_mutex_destroy(&s->mu);
    free(s);
}

ts_chunk_store_stats ts_chunk_store_get_stats(ts_chunk_store *s) {
    ts_chunk_store_stats st;
    memset(&st, 0, sizeof st);
    if (!s) return st;
    pthread_mutex_lock(&s->mu);
    st = s->stats;
    pthread_mutex_unlock(&s->mu);
    return st;
}

ts_status ts_chunk_store_save(ts_chunk_store *s, ts_chunk_reg *reg, const ts_chunk *c,
                              ts_err *err) {
    if (!s || !reg || !c) return ts_fail(err, TS_ERR_INVALID, "chunk store save: missing argument");
    void *blob = NULL;
    size_t n = 0;
    ts_status st = ts_chunk_encode(reg, c, &blob, &n, err);
    if (st != TS_OK) return st;
    ts_chunk_info in;
    ts_chunk_get_info(reg, c, &in);
    st = ts_chunk_store_put(s, &in.id, blob, n, err);
    free(blob);
    return st;
}

ts_status ts_chunk_store_load(ts_chunk_store *s, ts_chunk_reg *reg, const ts_chunk_id *id,
                              const ts_chunk_expect *exp, ts_chunk **out, ts_err *err) {
    if (out) *out = NULL;
    if (!s || !reg || !id || !exp || !out)
        return ts_fail(err, TS_ERR_INVALID, "chunk store load: missing argument");
    ts_err local;
    if (!err) err = &local; /* the message is logged even if the caller ignores it */
    void *blob = NULL;
    size_t n = 0;
    ts_status st = ts_chunk_store_get(s, id, &blob, &n, err);
    if (st != TS_OK) return st;
    char hex[TS_CHUNK_HEX_LEN + 1], what[TS_CHUNK_HEX_LEN + 40];
    ts_chunk_id_to_hex(id, hex);
    snprintf(what, sizeof what, "%s chunk %s", ts_chunk_store_name(s), hex);
    ts_chunk_expect e = *exp;
    e.id = id;
    ts_chunk_blob cb;
    st = ts_chunk_decode(blob, n, &e, what, &cb, err);
    if (st == TS_ERR_FORMAT || st == TS_ERR_INVALID) {
        pthread_mutex_lock(&s->mu);
        s->stats.corrupt++;
        pthread_mutex_unlock(&s->mu);
        ts_chunk_store_logf(s, "%s; ignored, the chunk will be recomputed", err->msg);
    }
    if (st != TS_OK) {
        free(blob);
        return st;
    }
    ts_chunk_id got;
    ts_chunk *c = NULL;
    st = ts_chunk_reg_register(reg, cb.tokens, (size_t)cb.n_tokens, cb.type, cb.enc_id,
                               cb.model_fp, &got, NULL, &c, err);
    if (st == TS_OK) st = ts_chunk_attach_kv(reg, c, cb.shape, cb.k, cb.v, err);
    free(blob);
    if (st != TS_OK) {
        ts_chunk_release(reg, c);
        return st;
    }
    *out = c;
    return TS_OK;
}
