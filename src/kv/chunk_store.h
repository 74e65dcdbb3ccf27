/* Chunk persistence: one self-describing blob per chunk, kept in a store
 * behind a small vtable (put/get/del/close), so that the engine uses a
 * local directory (chunk_store_dir.c) or a shared Redis (chunk_store_redis.c)
 * the same way.
 *
 * Blob format (version 1, all integers little-endian):
 *   off  size
 *     0     8  magic "TSCHUNK\0"
 *     8     4  u32 version (1)
 *    12     4  u32 type (ts_chunk_type)
 *    16    32  model fingerprint
 *    48    32  encoding id
 *    80     4  u32 n_layers
 *    84     4  u32 n_kv_heads
 *    88     4  u32 head_dim
 *    92     4  u32 n_tokens
 *    96     8  u64 payload bytes (= 4 * n_tokens + 2 * KV bytes)
 *   104    32  SHA-256 over bytes [0, 104) and the payload
 *   136     .  payload: i32 tokens[n_tokens], f32 K, f32 V, each
 *              [n_layers][n_tokens][n_kv_heads * head_dim] (K before RoPE)
 * The checksum covers the header too, so a flipped type or shape byte is
 * caught as well as a flipped KV byte. A blob is accepted only if its length
 * is exactly 136 + payload bytes, the checksum matches, its shape equals the
 * model's, its fingerprint is the model's, and the id recomputed from its
 * content is the id asked for. Anything else is reported as corrupt and
 * never used: the caller recomputes the chunk.
 *
 * Availability. A store that cannot reach its backend (Redis down) stays
 * usable: every call fails softly with TS_ERR_IO, counts the failure in its
 * stats, reports unavailable, and reconnects by itself later. Messages go to
 * the optional log callback; the library never prints.
 *
 * Thread-safe: calls on one store may come from several threads. */
#ifndef TS_KV_CHUNK_STORE_H
#define TS_KV_CHUNK_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kv/chunk.h"
#include "tessera.h"

#define TS_CHUNK_BLOB_HEADER 136
#define TS_CHUNK_BLOB_VERSION 1

/* ---- blobs (chunk_file.c) ---- */

/* What a decoded blob must match. */
typedef struct ts_chunk_expect {
    const uint8_t *model_fp;     /* [32] required */
    ts_chunk_shape shape;        /* required: the model's KV shape */
    const ts_chunk_id *id;       /* optional: the id the blob must have */
} ts_chunk_expect;

/* A decoded blob: pointers into the blob it was decoded from. */
typedef struct ts_chunk_blob {
    ts_chunk_id id;              /* recomputed from the content */
    ts_chunk_type type;
    uint8_t model_fp[32], enc_id[32];
    ts_chunk_shape shape;
    int32_t n_tokens;
    const int32_t *tokens;       /* [n_tokens] */
    const float *k, *v;          /* [n_layers][n_tokens][n_kv_heads*head_dim] */
} ts_chunk_blob;

/* Encodes a held chunk with KV attached into a malloc'd blob (*out, *n; the
 * caller frees it). TS_ERR_INVALID if the chunk has no KV, TS_ERR_NOMEM. */
ts_status ts_chunk_encode(ts_chunk_reg *reg, const ts_chunk *c, void **out, size_t *n,
                          ts_err *err);

/* Parses and verifies data[n] (see the format above) against *exp. The
 * blob must be 4-byte aligned (malloc'd memory is). On success *out points
 * into data. Errors: TS_ERR_FORMAT for anything malformed or corrupt
 * (message names `what` and the problem), TS_ERR_INVALID for a blob of
 * another model or shape, or with another id, TS_ERR_NOMEM. */
ts_status ts_chunk_decode(const void *data, size_t n, const ts_chunk_expect *exp,
                          const char *what, ts_chunk_blob *out, ts_err *err);

/* ---- stores ---- */

typedef struct ts_chunk_store ts_chunk_store;
typedef void (*ts_chunk_log_fn)(void *ctx, const char *msg);

typedef struct ts_chunk_store_stats {
    uint64_t puts, put_errors;
    uint64_t gets, get_hits, get_misses, get_errors;
    uint64_t corrupt;            /* blobs found but refused by ts_chunk_store_load */
    uint64_t dels;
    uint64_t unavailable;        /* calls refused because the backend is unreachable */
    bool available;              /* backend reachable at the last call */
} ts_chunk_store_stats;

typedef struct ts_chunk_store_vt {
    const char *name;            /* "dir", "redis" */
    /* Stores blob[n] under id, replacing any earlier one. */
    ts_status (*put)(ts_chunk_store *s, const ts_chunk_id *id, const void *blob, size_t n,
                     ts_err *err);
    /* Returns the blob under id in *blob (malloc'd, caller frees) and *n;
     * TS_ERR_NOTFOUND if there is none. */
    ts_status (*get)(ts_chunk_store *s, const ts_chunk_id *id, void **blob, size_t *n,
                     ts_err *err);
    /* Deletes the blob under id; absent is not an error. */
    ts_status (*del)(ts_chunk_store *s, const ts_chunk_id *id, ts_err *err);
    /* Frees the backend state (not the ts_chunk_store itself). */
    void (*close)(ts_chunk_store *s);
} ts_chunk_store_vt;

/* Common part of every store; backends embed it first. */
struct ts_chunk_store {
    const ts_chunk_store_vt *vt;
    pthread_mutex_t mu;          /* guards stats and the backend */
    ts_chunk_store_stats stats;
    ts_chunk_log_fn log;
    void *log_ctx;
};

/* Opens the directory store at path, creating the directory if `create`.
 * Stale temporary files (".tmp-*" older than 10 minutes, left by a killed
 * writer) are removed. Errors: TS_ERR_IO (missing or not a directory). */
ts_status ts_chunk_store_dir_open(const char *path, bool create, ts_chunk_log_fn log,
                                  void *log_ctx, ts_chunk_store **out, ts_err *err);

/* Opens a Redis store at host:port (keys "tessera:chunk:<hex id>"),
 * connecting with timeout_ms (0 = 200 ms); a command may take ten times as
 * long (at least 2 s), room for a large blob. Calls block the calling
 * thread for that long at worst. An unreachable server is not an error: the store is returned
 * unavailable (logged), its calls fail softly, and it retries the
 * connection at most once a second. TS_ERR_INVALID on bad arguments,
 * TS_ERR_NOMEM. */
ts_status ts_chunk_store_redis_open(const char *host, int port, int timeout_ms,
                                    ts_chunk_log_fn log, void *log_ctx, ts_chunk_store **out,
                                    ts_err *err);

/* Opens a store named by a spec, as a command-line flag gives it:
 * "redis://HOST[:PORT]" (port 6379 by default; Redis timeouts as in
 * ts_chunk_store_redis_open with 0), "dir:PATH" or a plain PATH (the
 * directory is created if missing). TS_ERR_INVALID for a malformed spec. */
ts_status ts_chunk_store_open(const char *spec, ts_chunk_log_fn log, void *log_ctx,
                              ts_chunk_store **out, ts_err *err);

/* The vtable calls, with stats kept. */
ts_status ts_chunk_store_put(ts_chunk_store *s, const ts_chunk_id *id, const void *blob, size_t n,
                             ts_err *err);
ts_status ts_chunk_store_get(ts_chunk_store *s, const ts_chunk_id *id, void **blob, size_t *n,
                             ts_err *err);
ts_status ts_chunk_store_del(ts_chunk_store *s, const ts_chunk_id *id, ts_err *err);
/* Closes the store and frees it; NULL is a no-op. */
void ts_chunk_store_close(ts_chunk_store *s);

/* Encodes a held chunk (with KV) and puts it. */
ts_status ts_chunk_store_save(ts_chunk_store *s, ts_chunk_reg *reg, const ts_chunk *c,
                              ts_err *err);
/* Gets the blob of id, verifies it against *exp (exp->id is ignored: id is
 * used), registers it and attaches its KV; *out receives a held handle.
 * TS_ERR_NOTFOUND if the store has none, TS_ERR_FORMAT / TS_ERR_INVALID if
 * it is corrupt or made for another model or shape (counted as corrupt,
 * logged, never used), TS_ERR_IO if the store is unavailable. */
ts_status ts_chunk_store_load(ts_chunk_store *s, ts_chunk_reg *reg, const ts_chunk_id *id,
                              const ts_chunk_expect *exp, ts_chunk **out, ts_err *err);

ts_chunk_store_stats ts_chunk_store_get_stats(ts_chunk_store *s);
/* Name of the backend ("dir", "redis"). */
const char *ts_chunk_store_name(const ts_chunk_store *s);

/* For backends: initialises the common part; logs a formatted message. */
ts_status ts_chunk_store_init_base(ts_chunk_store *s, const ts_chunk_store_vt *vt,
                                   ts_chunk_log_fn log, void *log_ctx);
void ts_chunk_store_logf(ts_chunk_store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
