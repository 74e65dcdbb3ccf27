/* Redis store: the same blobs as the directory store under keys
 * "tessera:chunk:<hex id>", so several engine processes share chunks.
 *
 * Soft failure: the store never makes the engine fail. When the server is
 * unreachable (down at start, or lost mid-run) the connection is dropped,
 * every call returns TS_ERR_IO at once with stats.available false, and a
 * reconnect is tried on a call at most once a second. Transitions are
 * logged once each, not per call. The common mutex (chunk_store.c) makes
 * the single hiredis context safe to share between threads. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/err.h"
#include "kv/chunk_store.h"

typedef struct redis_store {
    ts_chunk_store base; /* first: the common part */
    char *host;
    int port;
    struct timeval timeout, cmd_timeout; /* connect; each command */
    redisContext *ctx;   /* NULL while unavailable */
    double next_try;     /* monotonic seconds before which no reconnect is tried */
    bool said_down;      /* "unavailable" was logged and "connected again" was not */
} redis_store;

#define KEY_PREFIX "tessera:chunk:"
#define RETRY_S 1.0

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void drop(redis_store *r, const char *why) {
    if (r->ctx) {
        if (!r->said_down)
            ts_chunk_store_logf(&r->base, "redis %s:%d: unavailable (%s); chunks are not shared "
                                "until it is back", r->host, r->port, why);
        r->said_down = true;
        redisFree(r->ctx);
        r->ctx = NULL;
    }
    r->base.stats.available = false;
    r->next_try = mono_s() + RETRY_S;
}

/* Connects if needed and allowed now (always if force). Returns whether a
 * context is ready. Each change of state is logged once. */
static bool ensure(redis_store *r, bool force) {
    if (r->ctx) return true;
    if (!force && mono_s() < r->next_try) return false;
    redisContext *c = redisConnectWithTimeout(r->host, r->port, r->timeout);
    if (!c || c->err || redisSetTimeout(c, r->cmd_timeout) != REDIS_OK) {
        if (!r->said_down)
            ts_chunk_store_logf(&r->base, "redis %s:%d: unavailable (%s); the engine goes on "
                                "without the shared chunk store", r->host, r->port,
                                c && c->err ? c->errstr : "cannot connect");
        r->said_down = true;
        if (c) redisFree(c);
        r->base.stats.available = false;
        r->next_try = mono_s() + RETRY_S;
        return false;
    }
    if (r->said_down)
        ts_chunk_store_logf(&r->base, "redis %s:%d: connected", r->host, r->port);
    r->said_down = false;
    r->ctx = c;
    r->base.stats.available = true;
    return true;
}

static ts_status unavailable(redis_store *r, ts_err *err) {
    r->base.stats.unavailable++;
    return ts_fail(err, TS_ERR_IO, "redis %s:%d: unavailable, chunk store skipped", r->host, r->port);
}

static void key_of(const ts_chunk_id *id, char out[sizeof KEY_PREFIX + TS_CHUNK_HEX_LEN]) {
    memcpy(out, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    ts_chunk_id_to_hex(id, out + sizeof KEY_PREFIX - 1);
}

/* One command with SIGPIPE blocked in this thread: hiredis writes with
 * write(), and a server that vanished must not kill the engine. A SIGPIPE
 * raised meanwhile is consumed before the mask is restored. */
static redisReply *command(redisContext *c, const char *fmt, va_list ap) {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    redisReply *rep = redisvCommand(c, fmt, ap);
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rep;
}

/* Runs a command. On a transport error it drops the connection and, if the
 * store had been connected, reconnects once and retries at once (a restarted
 * server is picked up by the next call, not a second later). Returns the
 * reply (caller frees) or NULL with err filled. */
static redisReply *run(redis_store *r, ts_err *err, const char *fmt, ...) {
    redisReply *rep = NULL;
    for (int attempt = 0; attempt < 2 && !rep; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        rep = command(r->ctx, fmt, ap);
        va_end(ap);
        if (!rep) {
            char why[160];
            snprintf(why, sizeof why, "%s", r->ctx->err ? r->ctx->errstr : "no reply");
            drop(r, why);
            if (attempt == 0 && ensure(r, true)) continue;
            ts_fail(err, TS_ERR_IO, "redis %s:%d: %s", r->host, r->port, why);
            return NULL;
        }
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        ts_fail(err, TS_ERR_IO, "redis %s:%d: %.200s", r->host, r->port, rep->str ? rep->str : "error");
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

static ts_status redis_put(ts_chunk_store *s, const ts_chunk_id *id, const void *blob, size_t n,
                           ts_err *err) {
    redis_store *r = (redis_store *)s;
    if (!ensure(r, false)) return unavailable(r, err);
    char key[sizeof KEY_PREFIX + TS_CHUNK_HEX_LEN];
    key_of(id, key);
    redisReply *rep = run(r, err, "SET %s %b", key, blob, n);
    if (!rep) return TS_ERR_IO;
    freeReplyObject(rep);
    return TS_OK;
}

static ts_status redis_get(ts_chunk_store *s, const ts_chunk_id *id, void **blob, size_t *n,
                           ts_err *err) {
    redis_store *r = (redis_store *)s;
    if (!ensure(r, false)) return unavailable(r, err);
    char key[sizeof KEY_PREFIX + TS_CHUNK_HEX_LEN];
    key_of(id, key);
    redisReply *rep = run(r, err, "GET %s", key);
    if (!rep) return TS_ERR_IO;
    ts_status st = TS_OK;
    if (rep->type == REDIS_REPLY_NIL) {
        st = ts_fail(err, TS_ERR_NOTFOUND, "redis %s:%d: no key %s", r->host, r->port, key);
    } else if (rep->type != REDIS_REPLY_STRING) {
        st = ts_fail(err, TS_ERR_FORMAT, "redis %s:%d: key %s is not a string", r->host, r->port, key);
    } else {
        /* copied into malloc'd memory: the decoder needs 4-byte alignment */
        void *b = malloc(rep->len ? rep->len : 1);
        if (!b) {
            st = ts_fail(err, TS_ERR_NOMEM, "redis %s:%d: out of memory for %zu bytes", r->host,
                         r->port, (size_t)rep->len);
        } else {
            memcpy(b, rep->str, rep->len);
            *blob = b;
            *n = rep->len;
        }
    }
    freeReplyObject(rep);
    return st;
}

static ts_status redis_del(ts_chunk_store *s, const ts_chunk_id *id, ts_err *err) {
    redis_store *r = (redis_store *)s;
    if (!ensure(r, false)) return unavailable(r, err);
    char key[sizeof KEY_PREFIX + TS_CHUNK_HEX_LEN];
    key_of(id, key);
    redisReply *rep = run(r, err, "DEL %s", key);
    if (!rep) return TS_ERR_IO;
    freeReplyObject(rep);
    return TS_OK;
}

static void redis_close(ts_chunk_store *s) {
    redis_store *r = (redis_store *)s;
    if (r->ctx) redisFree(r->ctx);
    free(r->host);
}

static const ts_chunk_store_vt redis_vt = {"redis", redis_put, redis_get, redis_del, redis_close};

ts_status ts_chunk_store_redis_open(const char *host, int port, int timeout_ms,
                                    ts_chunk_log_fn log, void *log_ctx, ts_chunk_store **out,
                                    ts_err *err) {
    if (!out) return ts_fail(err, TS_ERR_INVALID, "redis chunk store: no output pointer");
    *out = NULL;
    if (!host || !*host || port <= 0 || port > 65535 || timeout_ms < 0)
        return ts_fail(err, TS_ERR_INVALID, "redis chunk store: bad address %s:%d",
                       host ? host : "(null)", port);
    redis_store *r = calloc(1, sizeof *r);
    char *h = strdup(host);
    if (!r || !h || ts_chunk_store_init_base(&r->base, &redis_vt, log, log_ctx) != TS_OK) {
        free(r);
        free(h);
        return ts_fail(err, TS_ERR_NOMEM, "redis chunk store: out of memory");
    }
    r->host = h;
    r->port = port;
    if (timeout_ms == 0) timeout_ms = 200;
    r->timeout.tv_sec = timeout_ms / 1000;
    r->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    long cmd_ms = timeout_ms > 200 ? 10L * timeout_ms : 2000L;
    r->cmd_timeout.tv_sec = cmd_ms / 1000;
    r->cmd_timeout.tv_usec = (cmd_ms % 1000) * 1000;
    ensure(r, true); /* unreachable is fine: the store starts unavailable */
    *out = &r->base;
    return TS_OK;
}
