/* Cascade planning: finds the KV blocks that several sequences of a batch
 * share at the start of their block tables (a system prompt all requests
 * share, a document some share, ...) and turns them into attention levels.
 * Each level's prefix is attended once for the queries of every sequence
 * that shares it; each sequence then attends to its own slots from
 * kv_start on, and the partial results merge by log-sum-exp.
 *
 * A shared block must lie wholly before every sharer's new tokens (it is
 * complete and immutable), so within a level attention is non-causal. */
#ifndef TS_MODEL_CASCADE_H
#define TS_MODEL_CASCADE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/forward.h"

typedef struct ts_cascade_level {
    const int32_t *blocks;  /* the shared prefix's blocks (a view into a table) */
    int n_kv;               /* its slots */
    int row_start, n_rows;  /* its query rows: plan->rows[row_start, +n_rows) */
} ts_cascade_level;

typedef struct ts_cascade_plan {
    ts_cascade_level *levels;
    int n_levels, cap_levels;
    int32_t *rows;          /* query-row lists of all levels */
    int n_rows, cap_rows;
    int *kv_start;          /* [n_seq] slots covered by levels; 0 = none */
    int *order;             /* [n_seq] scratch */
    int *row0;              /* [n_seq] scratch: each sequence's first row */
    int cap_seq, cap_order;
} ts_cascade_plan;

/* Thresholds: a level is made for at least min_sharers sequences sharing at
 * least min_blocks blocks, whose shared slots read once save at least
 * min_saved slot reads: (sharers - 1) x shared slots >= min_saved (0: no
 * such bound). */
typedef struct ts_cascade_rule {
    int min_sharers;
    int min_blocks;
    long min_saved;
} ts_cascade_rule;

/* Plans seqs (rows laid out in order, as ts_fwd_run does). Returns the
 * number of levels (0: no cascade), or -1 when memory runs out. */
int ts_cascade_plan_build(ts_cascade_plan *p, const ts_fwd_seq *seqs, int n_seq,
                          int block_size, ts_cascade_rule rule);
void ts_cascade_plan_free(ts_cascade_plan *p);

#endif
