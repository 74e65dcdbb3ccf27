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
    TS_ERR_BUSY,        /* temporarily full (a request queue): try again later */
} ts_status;

/* Error text filled by failing calls. Pass NULL to ignore. */
typedef struct ts_err {
    char msg[512];
} ts_err;

/* Short constant name of a status ("ok", "out of memory", ...). */
const char *ts_status_str(ts_status st);

/* ------------------------------------------------------------------ */
/* Sampling                                                            */

typedef struct ts_sample_params {
    float temperature;        /* 0 = greedy; must be >= 0 */
    int top_k;                /* 0 (or >= vocab) = off; must be >= 0 */
    float top_p;              /* in (0, 1]; 1 = off */
    float min_p;              /* in [0, 1]; 0 = off */
    float repetition_penalty; /* > 0; 1 = off */
    uint64_t seed;            /* PRNG seed: same seed, same tokens */
} ts_sample_params;

/* ------------------------------------------------------------------ */
/* Engine: continuous batching over a paged, prefix-cached KV pool.    */
/*                                                                     */
/* One thread calls ts_engine_step in a loop; any thread may submit    */
/* and cancel. Events (text pieces, completion) are delivered by       */
/* callback on the stepping thread.                                    */

typedef struct ts_engine ts_engine;

typedef struct ts_engine_opts {
    int n_threads;            /* compute threads; 0 = all cores */
    uint64_t kv_bytes;        /* KV pool budget; 0 = default */
    int block_size;           /* tokens per KV block; 0 = 16 */
    int max_batch_tokens;     /* token budget per step; 0 = 512 */
    int max_running;          /* sequences in flight; 0 = 64 */
    int max_waiting;          /* queued requests before submit says TS_ERR_CAPACITY; 0 = 4096 */
    bool prefix_cache;        /* reuse KV of identical prefixes (default true) */
    int cascade;              /* shared-prefix attention: -1 auto, 0 off, 1 always */
    bool exact;               /* f32 activations in every product (batch-invariant) */
    int isa;                  /* ts_cpu_isa; 0 = best available */
    const char *device;       /* "cpu", "cuda" or "cuda:N" (a build with CUDA=1);
                                 NULL = $TS_DEVICE, else "cpu" */
    const char *kv_dtype;     /* KV cache elements: "f32", "f16" or "bf16" (CPU backend:
                                 half the memory and reads; f16 moves logits ~3e-4
                                 relative, bf16 more);
                                 NULL = $TS_KV_DTYPE, else "f32" */
    /* chunks (see "Chunks" below) */
    int chunk_mode;           /* ts_chunk_mode used when a request says DEFAULT; 0 = REPAIR */
    float repair_frac;        /* fraction of each chunk recomputed by REPAIR; < 0 = 0.03 */
    uint64_t chunk_bytes;     /* chunk registry budget (KV held off the pool); 0 = kv_bytes / 2 */
    const char *chunk_prefix; /* text chunks are encoded after (the level-0 prefix every
                                 request starts with); NULL = none */
    const char *chunk_dir;    /* persistent chunk store directory, or NULL */
    const char *chunk_redis;  /* shared chunk store "host:port" in Redis, or NULL */
} ts_engine_opts;

/* How a request's chunk parts get their KV (the context a chunk was
 * encoded in differs from where the request places it):
 *   EXACT  - chunk tokens are computed like text (prefix cache only):
 *            identical to a plain prompt;
 *   REUSE  - the chunk's cached KV is placed as it is, nothing recomputed;
 *   REPAIR - as REUSE, then the first repair_frac of each chunk's tokens
 *            recomputed in the request's context. */
typedef enum ts_chunk_mode {
    TS_CHUNKS_DEFAULT = 0,    /* the engine's chunk_mode */
    TS_CHUNKS_EXACT,
    TS_CHUNKS_REUSE,
    TS_CHUNKS_REPAIR,
} ts_chunk_mode;

/* One piece of a prompt given as parts: exactly one of text, ids, chunk. */
typedef struct ts_prompt_part {
    const char *text;         /* text, tokenized with special tokens recognised */
    const int32_t *ids;       /* token ids [n_ids] */
    size_t n_ids;
    const char *chunk;        /* a registered chunk's id (64 hex characters) */
} ts_prompt_part;

/* Defaults as documented above. */
ts_engine_opts ts_engine_opts_default(void);

typedef struct ts_request {
    const int32_t *ids;       /* prompt token ids ... */
    size_t n_ids;
    const char *text;         /* ... or text, tokenized with special tokens recognised */
    ts_sample_params sample;
    int max_tokens;           /* > 0 */
    const char *const *stop;  /* stop strings, may be NULL */
    int n_stop;
    bool ignore_eos;          /* keep generating past EOS until max_tokens (benchmarks) */
    const void *cache_salt;   /* per-tenant salt: prefixes are shared only within a salt */
    size_t cache_salt_len;
    /* A prompt made of parts (n_parts > 0: ids and text are then ignored).
     * Chunk parts must have been registered with the same cache salt. */
    const ts_prompt_part *parts;
    int n_parts;
    int chunk_mode;           /* ts_chunk_mode */
    float repair_frac;        /* < 0 = the engine's */
} ts_request;

/* Fills defaults: greedy, max_tokens 256, no stop strings, no salt. */
ts_request ts_request_default(void);

typedef enum ts_event_kind {
    TS_EVENT_TEXT = 0,        /* a piece of generated text (complete UTF-8) */
    TS_EVENT_DONE,            /* the request finished; no more events follow */
} ts_event_kind;

typedef struct ts_event {
    ts_event_kind kind;
    int64_t id;
    const char *text;         /* TEXT: the piece (not NUL-terminated); DONE: NULL */
    size_t len;
    int32_t token;            /* TEXT: the token that completed the piece, or -1 */
    /* DONE only: */
    const char *finish;       /* "stop", "length", "cancelled" or "error" */
    ts_status status;         /* TS_OK unless finish is "error" */
    const char *error;        /* message when finish is "error" */
    int n_prompt, n_cached, n_gen; /* prompt tokens, of which served from cache, generated */
    double ttft_ms;           /* submit to first token */
} ts_event;

typedef void (*ts_event_fn)(void *ctx, const ts_event *ev);

typedef struct ts_engine_stats {
    uint64_t requests_done, requests_failed, requests_cancelled, preemptions;
    uint64_t prefill_tokens, cached_tokens, generated_tokens, steps;
    uint64_t prefix_hits, prefix_misses, evictions;
    int32_t kv_blocks_total, kv_blocks_used, kv_blocks_cached, kv_blocks_free;
    uint64_t kv_bytes_shared;     /* KV bytes not duplicated thanks to sharing, now */
    int32_t n_running, n_waiting;
    uint64_t cascade_steps;       /* forward steps that used cascade attention */
    uint64_t chunk_hits;          /* chunk parts whose KV was already computed */
    uint64_t chunk_misses;        /* chunk parts whose KV had to be computed (or loaded) */
    uint64_t chunk_tokens_reused; /* prompt tokens whose KV came from a chunk */
    uint64_t chunk_store_loads;   /* chunks read back from the persistent store */
    uint32_t chunks;              /* chunks registered now */
    uint64_t chunk_bytes;         /* memory the chunk registry holds */
    bool chunk_store_ok;          /* false when a configured store is unavailable */
} ts_engine_stats;

/* Loads the model in model_dir and starts an engine. */
ts_status ts_engine_create(const char *model_dir, const ts_engine_opts *opts, ts_engine **out,
                           ts_err *err);
/* Cancels whatever is in flight (DONE "cancelled" events) and frees all. */
void ts_engine_destroy(ts_engine *e);

/* Queues a request (copied; the caller may free req's memory on return).
 * Validation errors (bad ids, prompt longer than the context or the pool,
 * bad sampling parameters) return an error here and queue nothing.
 * TS_ERR_BUSY when the queue is full. Thread-safe. */
ts_status ts_engine_submit(ts_engine *e, const ts_request *req, ts_event_fn cb, void *cb_ctx,
                           int64_t *id, ts_err *err);
/* Asks for a request to stop; it ends with a DONE "cancelled" event at the
 * next step (its KV is freed). Unknown or finished ids are ignored. Thread-safe. */
void ts_engine_cancel(ts_engine *e, int64_t id);
/* Runs one scheduling step (admission, one batched forward, sampling,
 * events). *n_busy (may be NULL) receives the requests still queued or
 * running. Call from one thread only. */
ts_status ts_engine_step(ts_engine *e, int *n_busy, ts_err *err);
/* Steps until nothing is queued or running. */
ts_status ts_engine_run(ts_engine *e, ts_err *err);
/* Blocks (without spinning) until a request is queued; returns false after
 * timeout_ms (negative: forever) with nothing queued. Thread-safe. */
bool ts_engine_wait(ts_engine *e, int timeout_ms);
void ts_engine_get_stats(ts_engine *e, ts_engine_stats *out);

/* ------------------------------------------------------------------ */
/* Chunks: context registered once, placed anywhere in later prompts.  */
/*                                                                     */
/* A chunk's id is content-addressed (model, encoding prefix, cache    */
/* salt, tokens): registering the same content twice gives the same id */
/* and one copy. Chunks belong to a cache salt: a chunk registered     */
/* under one salt is not found (TS_ERR_NOTFOUND) under another. All    */
/* chunk calls are thread-safe and do not block on the stepping thread: */
/* the KV is computed by ts_engine_step, before the first request that */
/* uses the chunk (and soon after registration when the engine idles). */

#define TS_CHUNK_ID_HEX 64

typedef struct ts_chunk_desc {
    char id[TS_CHUNK_ID_HEX + 1];
    const char *type;         /* "system", "document", "code", "rag" or "query" */
    int32_t n_tokens;
    bool has_kv;              /* KV computed and held */
    uint64_t bytes;           /* memory held */
    uint64_t hits;            /* requests that cited it since registration */
    uint64_t last_use_ms;     /* wall clock, ms since the epoch */
} ts_chunk_desc;

/* Registers text (tokenized without special tokens) or ids[n_ids] as a
 * chunk of type (NULL = "document"). Fills desc (optional). Errors:
 * empty or over-long content or unknown type (TS_ERR_INVALID), bad ids,
 * registry full of chunks in use (TS_ERR_CAPACITY). */
ts_status ts_engine_chunk_register(ts_engine *e, const char *text, const int32_t *ids,
                                   size_t n_ids, const char *type, const void *salt,
                                   size_t salt_len, ts_chunk_desc *desc, ts_err *err);
/* Describes chunk id (64 hex) of this salt; TS_ERR_NOTFOUND if absent. */
ts_status ts_engine_chunk_get(ts_engine *e, const char *id, const void *salt, size_t salt_len,
                              ts_chunk_desc *out, ts_err *err);
/* Every chunk of this salt, most recently used first, in a malloc'd array
 * (free()); *n may be 0. */
ts_status ts_engine_chunk_list(ts_engine *e, const void *salt, size_t salt_len,
                               ts_chunk_desc **out, size_t *n, ts_err *err);
/* Removes a chunk of this salt (requests already using it finish);
 * TS_ERR_NOTFOUND if absent. */
ts_status ts_engine_chunk_remove(ts_engine *e, const char *id, const void *salt,
                                 size_t salt_len, ts_err *err);

#ifdef __cplusplus
}
#endif
#endif
