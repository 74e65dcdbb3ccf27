/* ts_seq: one sequence's tokens and KV block table. */
#ifndef TS_ENGINE_SEQ_H
#define TS_ENGINE_SEQ_H

#include "kv/kv.h"

typedef struct ts_seq {
    int32_t *tokens;   /* [n_tokens] every token whose KV is (or is about to be) cached */
    int n_tokens, cap_tokens;
    int32_t *blocks;   /* [n_blocks] block table */
    int n_blocks, cap_blocks;
} ts_seq;

/* Makes the block table cover n_slots slots, taking blocks from kv.
 * TS_ERR_CAPACITY when the pool runs out (the table is left as it was). */
ts_status ts_seq_reserve(ts_seq *s, ts_kv *kv, int n_slots, ts_err *err);
/* Appends ids to the token list. */
ts_status ts_seq_push(ts_seq *s, const int32_t *ids, int n, ts_err *err);
/* Returns every block to kv and empties the sequence (memory kept). */
void ts_seq_reset(ts_seq *s, ts_kv *kv);
/* Frees the sequence's memory (call ts_seq_reset first to return blocks). */
void ts_seq_free(ts_seq *s);

#endif
