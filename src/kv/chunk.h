/* ts_chunk_reg: the chunk registry. A chunk is an immutable span of token
 * ids with a type (system, document, code, rag, query) and, once computed,
 * its K and V for every layer, so that any request can place it anywhere.
 *
 * Identity. A chunk is content-addressed: its id is SHA-256 over the model
 * fingerprint (32 bytes), the encoding id (32 bytes: the context the chunk
 * was encoded in, e.g. the hash of the level-0 prefix it was encoded after)
 * and its token ids. Registering the same content twice gives the same
 * chunk. The type is a label and is not part of the id.
 *
 * KV layout. For one chunk, K and V are each
 *   [n_layers][n_tokens][n_kv_heads * head_dim] f32
 * (token t of layer l, head h starts at ((l * n_tokens + t) * n_kv_heads + h)
 * * head_dim). K is stored BEFORE RoPE. Placing a chunk at position p then
 * means rotating its keys by p, the same operation a fresh prefill performs,
 * so a placed chunk's K is bit-for-bit what a prefill would rotate from the
 * same pre-RoPE keys. The alternative, storing rotated K and rotating by the
 * position delta when the chunk moves (R(p+d) = R(d) R(p)), gives the same
 * result in exact arithmetic but rounds twice in f32, needs the encoded
 * position kept with the chunk, and its error grows with |d|; with
 * pre-RoPE K the position is simply where the chunk lands. V is never
 * rotated.
 *
 * Life cycle. register creates (or finds) the chunk; attach_kv fills its KV
 * once (copied in; immutable afterwards); lookup returns a handle with a
 * reference that the caller gives back with release. A referenced chunk is
 * never freed or evicted: remove marks it removed (no longer found) and
 * frees it at the last release. Unreferenced chunks are evicted least
 * recently used first whenever the bytes held exceed the budget.
 *
 * Thread-safe: one mutex guards the registry, shared by the engine thread
 * and server threads. Data read through a held handle (tokens, K, V) is
 * immutable and may be read without the lock. */
#ifndef TS_KV_CHUNK_H
#define TS_KV_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tessera.h"

#define TS_CHUNK_ID_BYTES 32
#define TS_CHUNK_HEX_LEN 64 /* hex characters of an id, without the NUL */
#define TS_CHUNK_MAX_TOKENS (1 << 24) /* longest chunk accepted */

typedef struct ts_chunk_id {
    uint8_t b[TS_CHUNK_ID_BYTES];
} ts_chunk_id;

typedef enum ts_chunk_type {
    TS_CHUNK_SYSTEM = 0,
    TS_CHUNK_DOCUMENT,
    TS_CHUNK_CODE,
    TS_CHUNK_RAG,
    TS_CHUNK_QUERY,
    TS_CHUNK_N_TYPES
} ts_chunk_type;

/* Shape of one chunk's KV. */
typedef struct ts_chunk_shape {
    int32_t n_layers, n_kv_heads, head_dim;
} ts_chunk_shape;

typedef struct ts_chunk_reg ts_chunk_reg;
typedef struct ts_chunk ts_chunk; /* a chunk; handles are ts_chunk pointers */

/* What a handle shows. Pointers stay valid while the handle is held. */
typedef struct ts_chunk_info {
    ts_chunk_id id;
    ts_chunk_type type;
    uint8_t model_fp[32];
    uint8_t enc_id[32];
    int32_t n_tokens;
    const int32_t *tokens;  /* [n_tokens] */
    bool has_kv;
    ts_chunk_shape shape;   /* zeros until KV is attached */
    const float *k, *v;     /* [n_layers][n_tokens][n_kv_heads*head_dim], NULL until attached */
} ts_chunk_info;

/* One row of ts_chunk_reg_list. */
typedef struct ts_chunk_entry {
    ts_chunk_id id;
    ts_chunk_type type;
    uint8_t enc_id[32];
    int32_t n_tokens;
    bool has_kv;
    uint64_t bytes;         /* memory held: tokens + KV + bookkeeping */
    uint64_t hits;          /* lookups and duplicate registers that found it */
    uint64_t uses;          /* ts_chunk_note_use calls (e.g. requests citing it) */
    uint64_t last_use_ms;   /* wall clock (ms since the epoch) of the last use */
    int32_t refcount;
} ts_chunk_entry;

/* Registry counters (ts_chunk_reg_get_stats). Counters only grow.
 * hits: lookups that found the chunk + registers of content already present;
 * misses: lookups that found nothing + registers that created a chunk. */
typedef struct ts_chunk_reg_stats {
    uint64_t hits, misses, evictions;
    uint64_t rejected;      /* lookups refused: chunk made for another model */
    uint64_t bytes_used;    /* including removed chunks still referenced */
    uint64_t budget;        /* 0 = unlimited */
    uint32_t n_chunks;      /* chunks that can be found */
    uint32_t n_pending;     /* removed, waiting for their last release */
} ts_chunk_reg_stats;

/* ---- ids ---- */

/* Computes the id of (model_fp, enc_id, tokens[n]). Returns TS_ERR_INVALID on
 * NULL arguments or n outside [0, TS_CHUNK_MAX_TOKENS], TS_ERR_NOMEM if the
 * digest cannot be set up. */
ts_status ts_chunk_id_compute(const uint8_t model_fp[32], const uint8_t enc_id[32],
                              const int32_t *tokens, size_t n, ts_chunk_id *out);
/* Encoding id of chunks encoded after the prefix tokens[n] (the level-0
 * prefix): SHA-256 over a tag distinct from the chunk-id tag, the model
 * fingerprint and the tokens. n = 0 (no prefix: isolated encoding) is
 * allowed and gives its own id. TS_ERR_INVALID on NULL arguments or n above
 * TS_CHUNK_MAX_TOKENS, TS_ERR_NOMEM if the digest cannot be set up. */
ts_status ts_chunk_encoding_id(const uint8_t model_fp[32], const int32_t *prefix, size_t n,
                               uint8_t out[32]);
/* Writes the 64 lowercase hex characters of id and a NUL into out. */
void ts_chunk_id_to_hex(const ts_chunk_id *id, char out[TS_CHUNK_HEX_LEN + 1]);
/* Parses exactly 64 hex characters (either case) into *out; anything else is
 * TS_ERR_INVALID with a message quoting the input's length. */
ts_status ts_chunk_id_from_hex(const char *hex, ts_chunk_id *out, ts_err *err);

/* "system", "document", "code", "rag", "query" (or "unknown"). */
const char *ts_chunk_type_name(ts_chunk_type t);
/* Parses one of the names above; TS_ERR_INVALID otherwise. */
ts_status ts_chunk_type_parse(const char *s, ts_chunk_type *out, ts_err *err);

/* Bytes of one chunk's K (or V): n_layers * n_tokens * n_kv_heads * head_dim
 * * 4; 0 if any factor is <= 0 or the product overflows. */
uint64_t ts_chunk_kv_bytes(ts_chunk_shape shape, int64_t n_tokens);

/* ---- registry ---- */

/* Creates an empty registry that holds at most budget_bytes (0 = no limit). */
ts_status ts_chunk_reg_create(uint64_t budget_bytes, ts_chunk_reg **out, ts_err *err);
/* With keep set, making room first drops the KV of unreferenced chunks
 * (least recently used first; they stay registered, has_kv false, and each
 * drop counts as an eviction) and evicts whole chunks only if that is not
 * enough. Off by default: whole chunks are evicted. */
void ts_chunk_reg_set_keep_tokens(ts_chunk_reg *reg, bool keep);
/* Frees the registry and every chunk, referenced or not (handles become
 * invalid); NULL is a no-op. */
void ts_chunk_reg_destroy(ts_chunk_reg *reg);

/* Registers tokens[n] (copied) with its type, encoding id and model. Fills
 * *id; *existed (optional) says whether the same content was already there
 * (its type is then kept). If out is non-NULL it receives a handle with one
 * reference (release it), so that attach_kv cannot race with eviction.
 * Errors: TS_ERR_INVALID (n <= 0 or > TS_CHUNK_MAX_TOKENS, bad type, NULL),
 * TS_ERR_NOMEM, TS_ERR_CAPACITY (the tokens alone do not fit the budget). */
ts_status ts_chunk_reg_register(ts_chunk_reg *reg, const int32_t *tokens, size_t n,
                                ts_chunk_type type, const uint8_t enc_id[32],
                                const uint8_t model_fp[32], ts_chunk_id *id, bool *existed,
                                ts_chunk **out, ts_err *err);

/* Copies the chunk's KV in from k and v, each
 * [shape.n_layers][n_tokens][shape.n_kv_heads * shape.head_dim] f32 (K
 * before RoPE). c must be a held handle. Unreferenced chunks are evicted to
 * make room. If KV is already attached with the same shape, nothing changes
 * and TS_OK is returned (first writer wins: the content is the same by
 * identity). Errors: TS_ERR_INVALID (bad shape, shape differs from the KV
 * already attached, chunk removed), TS_ERR_CAPACITY (does not fit even after
 * evicting every unreferenced chunk; the chunk stays without KV),
 * TS_ERR_NOMEM. */
ts_status ts_chunk_attach_kv(ts_chunk_reg *reg, ts_chunk *c, ts_chunk_shape shape,
                             const float *k, const float *v, ts_err *err);

/* Finds a chunk and returns it in *out with one reference. If model_fp is
 * non-NULL and the chunk was made for another model, returns TS_ERR_INVALID
 * ("chunk <hex> was made for another model") and no handle. Unknown id:
 * TS_ERR_NOTFOUND. A hit counts as a use (LRU, hits, last use). The chunk
 * may not have KV yet (another thread is computing it, or attaching failed):
 * check ts_chunk_info.has_kv. */
ts_status ts_chunk_reg_lookup(ts_chunk_reg *reg, const ts_chunk_id *id,
                              const uint8_t model_fp[32], ts_chunk **out, ts_err *err);
/* Counts one use of a held chunk by its user (a request citing it). */
void ts_chunk_note_use(ts_chunk_reg *reg, ts_chunk *c);
/* Adds a reference to a held handle. */
void ts_chunk_acquire(ts_chunk_reg *reg, ts_chunk *c);
/* Gives back one reference; a removed chunk is freed at its last release,
 * and an over-budget registry evicts then. NULL is a no-op. */
void ts_chunk_release(ts_chunk_reg *reg, ts_chunk *c);
/* Fills *info from a held handle (see ts_chunk_info). */
void ts_chunk_get_info(ts_chunk_reg *reg, const ts_chunk *c, ts_chunk_info *info);

/* Removes a chunk: it can no longer be found, and its memory is freed now
 * or, while referenced, at its last release. TS_ERR_NOTFOUND if absent. */
ts_status ts_chunk_reg_remove(ts_chunk_reg *reg, const ts_chunk_id *id, ts_err *err);

/* Snapshot of every findable chunk, most recently used first, in a
 * malloc'd array the caller frees with free(). *n may be 0 (then *out is
 * NULL). TS_ERR_NOMEM on allocation failure. */
ts_status ts_chunk_reg_list(ts_chunk_reg *reg, ts_chunk_entry **out, size_t *n, ts_err *err);

/* Counters and occupancy. */
ts_chunk_reg_stats ts_chunk_reg_get_stats(ts_chunk_reg *reg);

#endif
