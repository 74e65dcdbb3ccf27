/* Composition: a prompt built from parts, some of them registered chunks
 * whose KV was computed once and is placed wherever the prompt puts them.
 *
 * Encoding. A chunk is encoded after the level-0 prefix (the instruction
 * every request starts with), so its KV saw the same attention sink it will
 * see when used; the encoding id is the hash of that prefix. Its K is kept
 * before RoPE (see kv/chunk.h), so placing it at slot p is a rotation by p.
 *
 * Modes, for the context a placed chunk lacks (the parts before it):
 *   FULL   - no reuse at all: every token computed (the reference);
 *   EXACT  - reuse only a true prefix (the sequence's cached beginning);
 *            identical to FULL;
 *   REUSE  - chunks placed as they are, nothing recomputed;
 *   REPAIR - as REUSE, then a fraction of the chunk tokens recomputed in
 *            the full context, in slot order: which ones is the composer's
 *            repair policy (engine/repair.h; default FIRST, the first
 *            tokens of each chunk). A chunk placed right after the prefix
 *            (where it was encoded) is exact and is not repaired.
 * docs/CHUNKS.md has the design and the measured quality. */
#ifndef TS_ENGINE_COMPOSE_H
#define TS_ENGINE_COMPOSE_H

#include "engine/repair.h"
#include "engine/runtime.h"
#include "engine/seq.h"
#include "kv/chunk.h"
#include "kv/chunk_store.h"

typedef enum ts_compose_mode {
    TS_COMPOSE_FULL = 0,
    TS_COMPOSE_EXACT,
    TS_COMPOSE_REUSE,
    TS_COMPOSE_REPAIR,
} ts_compose_mode;

typedef struct ts_part {
    bool is_chunk;       /* a chunk (its KV reused) or text (computed in context) */
    const int32_t *ids;  /* [n] tokens */
    int n;
    ts_chunk_type type;  /* chunks only */
} ts_part;

typedef struct ts_compose_stats {
    long prefill_tokens;  /* tokens computed by the model (encoding chunks included) */
    long encode_tokens;   /* of which: encoding chunks (prefix + chunk, once per chunk) */
    long reused_tokens;   /* tokens whose KV was reused (chunks or a cached prefix) */
    long chunk_hits, chunk_misses;
    long store_loads;     /* chunks read back from the persistent store */
} ts_compose_stats;

typedef struct ts_composer ts_composer;

/* A composer on rt with its own chunk registry (budget in bytes, 0 = none)
 * for chunks encoded after prefix[n_prefix]. */
ts_status ts_composer_create(ts_runtime *rt, const int32_t *prefix, int n_prefix, uint64_t budget,
                             ts_composer **out, ts_err *err);
void ts_composer_destroy(ts_composer *c);
ts_chunk_reg *ts_composer_registry(ts_composer *c);
/* Uses store (not owned) to persist chunks: a chunk missing from the
 * registry is loaded from it (a corrupt or foreign blob is refused by the
 * store and the chunk recomputed), and a freshly computed one is saved.
 * A store that fails is ignored (the composer keeps working). */
void ts_composer_set_store(ts_composer *c, ts_chunk_store *store);

/* Where REPAIR's SCORED policy gets its per-token scores:
 *   QUERY     - ts_repair_query_scores against the last text part (the
 *               request's own text): the budget goes to the chunks sharing
 *               the rarest token ids with it, from their first token. Free.
 *   DEVIATION - CacheBlend's criterion measured exactly, as an oracle: a
 *               full prefill of the composition (counted in prefill_tokens,
 *               so it costs more than FULL) scores each chunk token by the
 *               distance between its layer-1 K and V in full context and
 *               its cached ones. For measuring the selection only.
 * Both give the budget to the highest scores over all chunks (global). */
typedef enum ts_repair_source {
    TS_REPAIR_SRC_QUERY = 0,
    TS_REPAIR_SRC_DEVIATION,
} ts_repair_source;

/* REPAIR's policy: which tokens are recomputed (the fraction is
 * ts_compose's repair_frac); src is used by SCORED only. Default FIRST. */
void ts_composer_set_repair(ts_composer *c, ts_repair_kind kind, ts_repair_source src);

/* Registers a chunk and computes its KV unless present; *id (optional)
 * receives its id. */
ts_status ts_composer_register(ts_composer *c, const int32_t *ids, int n, ts_chunk_type type,
                               ts_chunk_id *id, ts_err *err);

/* Fills seq (emptied first unless mode is EXACT, which keeps its common
 * prefix) with the prefix followed by parts, and returns the logits of the
 * last token. repair_frac is used by REPAIR. */
ts_status ts_compose(ts_composer *c, ts_seq *seq, const ts_part *parts, int n_parts,
                     ts_compose_mode mode, float repair_frac, const float **logits, ts_err *err);

ts_compose_stats ts_composer_stats(const ts_composer *c);

#endif
