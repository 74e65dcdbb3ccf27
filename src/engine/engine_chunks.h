/* The engine's chunks: a registry of chunks whose KV is computed once (on
 * the stepping thread) and placed into requests that cite them.
 *
 * A request with chunk parts carries segments: the slots [start, start+n)
 * hold chunk h's tokens. In REUSE and REPAIR mode the slots of
 * [start, place_end) outside the segment's repair spans take the chunk's
 * KV, rotated to their position (place_end = start + n, except that the
 * prompt's last token is always computed, for its logits); every other slot
 * is computed in the request's context. REPAIR chooses the spans with
 * src/engine/repair.h: repair_frac of all the request's chunk tokens, split
 * over the chunks by length, each chunk's first tokens (independent of the
 * question, so that requests citing the same chunks share blocks). In EXACT mode there are no segments: chunk tokens are
 * computed like text and the prefix cache does the rest.
 *
 * Prefix cache. A block holding placed KV is not what a full prefill would
 * have written, so its hash gets a tag: the salt is extended with the
 * block's layout (per slot: 0 when computed, offset + 1 in its chunk when
 * placed) and the encoding id. Blocks before the first placed slot keep
 * their plain hash (they are exact and shared with plain prompts); every
 * block after a tagged one differs through the hash chain. Requests that
 * place the same chunks at the same slots after the same prefix therefore
 * share blocks, and cascade attention reads them once.
 *
 * Tenants: a chunk belongs to the cache salt it was registered under (its
 * encoding id is salted), and is not found under another. */
#ifndef TS_ENGINE_ENGINE_CHUNKS_H
#define TS_ENGINE_ENGINE_CHUNKS_H

#include "kv/chunk.h"
#include "kv/chunk_store.h"
#include "tessera.h"

typedef struct ts_engine ts_engine;
typedef struct ts_req ts_req;

typedef struct ts_span {
    int start, n;
} ts_span;

#define TS_SEG_MAX_REPAIR 4

typedef struct ts_req_seg {
    int start, n;        /* slots of the chunk's tokens */
    ts_span rep[TS_SEG_MAX_REPAIR]; /* recomputed slot spans, sorted, disjoint */
    int n_rep;
    int place_end;       /* placed slots: [start, place_end) outside rep */
    ts_chunk *h;         /* held for the request's life */
} ts_req_seg;

typedef struct ts_echunks ts_echunks;

/* Sets up e's chunk registry and store from e's options. */
ts_status ts_echunks_create(ts_engine *e, ts_err *err);
void ts_echunks_destroy(ts_engine *e);

/* Fills r's prompt tokens and segments from q->parts (submit, any thread). */
ts_status ts_echunks_build_prompt(ts_engine *e, const ts_request *q, ts_req *r, ts_err *err);
/* Releases r's chunk handles and segments. */
void ts_echunks_release(ts_engine *e, ts_req *r);

/* Makes sure every chunk r places has KV (stepping thread): loaded from the
 * store or computed. TS_ERR_CAPACITY when the KV pool is short for the
 * computation (try again later); a chunk whose KV cannot be held is
 * computed in context instead (its segment dropped). */
ts_status ts_echunks_ready(ts_engine *e, ts_req *r, ts_err *err);
/* Writes every placed slot at or after r->n_computed into r's blocks
 * (which must cover the prompt). n_computed is not changed: placed slots
 * are skipped by ts_echunks_skip_placed as computation reaches them. */
ts_status ts_echunks_place(ts_engine *e, ts_req *r, ts_err *err);
/* slot, or the end of the placed run that contains it. */
int ts_echunks_skip_placed(const ts_req *r, int slot);

/* Splits the next n slots r computes (from r->n_computed, below end, placed
 * slots skipped) into at most max_out contiguous spans; returns how many. */
int ts_echunks_pieces(const ts_req *r, int n, int end, ts_span *out, int max_out);
/* First placed slot at or after slot `from`, or INT32_MAX. */
int ts_echunks_next_placed(const ts_req *r, int from);
/* Salt for block b's hash: the request's salt, tagged with the block's
 * layout when it holds placed slots. Points into engine scratch valid until
 * the next call (stepping thread only). */
void ts_echunks_block_salt(ts_engine *e, const ts_req *r, int b, const void **salt,
                           size_t *salt_len);
/* Computes the KV of chunks registered since the last call (stepping
 * thread, between steps). */
void ts_echunks_encode_pending(ts_engine *e);
bool ts_echunks_has_pending(ts_engine *e);
/* Adds the chunk counters to *st. */
void ts_echunks_stats(ts_engine *e, ts_engine_stats *st);

#endif
