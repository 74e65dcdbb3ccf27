/* Repair selection: which tokens of placed chunks are recomputed in the
 * full context (compose's REPAIR mode, and the engine's scheduler for
 * requests with chunk parts).
 *
 * A placed chunk's KV was computed after the level-0 prefix only; the
 * chunks and text before it in a request are missing from it. Repair
 * recomputes a subset of its tokens at their slots, each attending to
 * everything before it (placed KV and recomputed tokens), in slot order,
 * and overwrites their KV. Which subset is the policy:
 *
 *   FIRST  - the first tokens of each chunk (EPIC: where isolated encoding
 *            leaves a spurious attention sink);
 *   LAST   - the last tokens of each chunk (those that attended to most of
 *            the chunk, next to the following part);
 *   EDGES  - half first, half last;
 *   SCORED - the tokens with the highest caller-given scores (e.g. KV
 *            deviation, CacheBlend; or ts_repair_query_scores), grouped
 *            into at most max_spans spans.
 *
 * Budget. frac is the fraction of all chunk tokens of the request that may
 * be recomputed: B = round(frac * sum(len)) tokens in all (at most the
 * eligible chunks' tokens), spread over the eligible chunks in proportion
 * to their lengths (largest remainder: each gets the floor or the ceiling
 * of its share, so a short chunk may get none when B is small). A chunk marked at home (placed where it was encoded: directly
 * after the level-0 prefix) is exact as placed and gets nothing. With
 * global set (SCORED only), the budget is not split by length: the B
 * highest-scored tokens of all eligible chunks are taken (ties: earlier
 * chunk, then earlier token), wherever they are.
 *
 * Cost model. Recomputing a span of n tokens is one forward call of n rows
 * at n_past = slot of its first token: its cost is n tokens of prefill
 * (matrix products scale with rows) plus a fixed per-call overhead (weights
 * streamed once per call, one attention launch), so the same number of
 * tokens in few long spans is cheaper than in many scattered ones. FIRST
 * and LAST give one span per chunk, EDGES two; SCORED merges its picks
 * into at most max_spans spans per chunk by filling the shortest gaps,
 * then trims the spans back into the chunk's budget by dropping their
 * lowest-scored end tokens (the filled tokens count). The counted cost of a plan is n_tokens; n_spans is the
 * number of forward calls it needs. */
#ifndef TS_ENGINE_REPAIR_H
#define TS_ENGINE_REPAIR_H

#include <stdbool.h>
#include <stdint.h>
#include "tessera.h"

typedef enum ts_repair_kind {
    TS_REPAIR_FIRST = 0,
    TS_REPAIR_LAST,
    TS_REPAIR_EDGES,
    TS_REPAIR_SCORED,
} ts_repair_kind;

typedef struct ts_repair_policy {
    ts_repair_kind kind;
    float frac;     /* in [0, 1]: share of all chunk tokens recomputed */
    int max_spans;  /* SCORED: spans per chunk at most (0 = 4) */
    bool global;    /* SCORED: budget to the highest scores of all chunks */
} ts_repair_policy;

/* A run of tokens [off, off + n) inside one chunk. */
typedef struct ts_repair_span {
    int32_t off, n;
} ts_repair_span;

/* Chunk i's spans are spans[first[i] .. first[i + 1]), sorted by offset,
 * disjoint and not adjacent. */
typedef struct ts_repair_plan {
    int n_chunks;
    int *first;             /* [n_chunks + 1] */
    ts_repair_span *spans;  /* [first[n_chunks]] */
    int n_spans;
    long n_tokens;          /* tokens selected in all */
} ts_repair_plan;

/* A policy of the given kind and fraction, max_spans 4, not global. */
ts_repair_policy ts_repair_policy_default(ts_repair_kind kind, float frac);
/* Parses "first", "last", "edges" or "scored" (kind only); TS_ERR_INVALID
 * otherwise. */
ts_status ts_repair_kind_parse(const char *s, ts_repair_kind *out, ts_err *err);
const char *ts_repair_kind_name(ts_repair_kind k);

/* Selects the tokens to recompute for chunks of lengths len[n_chunks]
 * (each >= 1). at_home (optional, [n_chunks]) marks chunks that need
 * nothing. scores (SCORED only; else ignored, may be NULL): scores[i] is
 * chunk i's [len[i]] per-token scores (higher = recompute first; ties go
 * to the earlier token; a NULL scores[i] scores every token 0). The result
 * depends only on the arguments (deterministic) and holds at most the
 * budget above. Fills *out (free with ts_repair_plan_free). Errors:
 * TS_ERR_INVALID (n_chunks < 0, a length < 1, frac outside [0, 1] or NaN,
 * SCORED without scores), TS_ERR_NOMEM. */
ts_status ts_repair_select(const ts_repair_policy *p, int n_chunks, const int32_t *len,
                           const bool *at_home, const float *const *scores, ts_repair_plan *out,
                           ts_err *err);
/* Query relevance scores for SCORED with global set: chunk i's tokens all
 * score r_i = sum over the distinct ids of query[n_query] (the request's own
 * text, e.g. the question) that occur in chunk i of log((1 + n_chunks) /
 * (1 + df)), df = the number of chunks holding that id (an id in every
 * chunk weighs 0), plus a small bonus falling with the offset (so a chunk's
 * first tokens go first). The budget then goes to the chunks sharing the
 * rarest ids with the question, from their start. ids[i] is chunk i's
 * [len[i]] tokens; scores[i] must hold len[i] floats. TS_ERR_INVALID on bad
 * arguments, TS_ERR_NOMEM. */
ts_status ts_repair_query_scores(int n_chunks, const int32_t *const *ids, const int32_t *len,
                                 const int32_t *query, int n_query, float *const *scores,
                                 ts_err *err);
/* Frees a plan's arrays and zeroes it; NULL or a zeroed plan is a no-op. */
void ts_repair_plan_free(ts_repair_plan *plan);

#endif
