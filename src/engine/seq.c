#include "engine/seq.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

static int grow_i32(int32_t **p, int *cap, int need) {
    if (need <= *cap) return 1;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    int32_t *q = realloc(*p, (size_t)c * sizeof *q);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

ts_status ts_seq_reserve(ts_seq *s, ts_kv *kv, int n_slots, ts_err *err) {
    int need = (n_slots + kv->block_size - 1) / kv->block_size;
    if (need <= s->n_blocks) return TS_OK;
    if (need - s->n_blocks > ts_kv_n_avail(kv))
        return ts_fail(err, TS_ERR_CAPACITY,
                       "the KV pool is full: %d more blocks needed, %d free (raise --kv-mem)",
                       need - s->n_blocks, ts_kv_n_avail(kv));
    if (!grow_i32(&s->blocks, &s->cap_blocks, need))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = ts_kv_alloc(kv);
    return TS_OK;
}

ts_status ts_seq_push(ts_seq *s, const int32_t *ids, int n, ts_err *err) {
    if (!grow_i32(&s->tokens, &s->cap_tokens, s->n_tokens + n))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    memcpy(s->tokens + s->n_tokens, ids, (size_t)n * sizeof *ids);
    s->n_tokens += n;
    return TS_OK;
}

void ts_seq_reset(ts_seq *s, ts_kv *kv) {
    ts_kv_release_table(kv, s->blocks, s->n_blocks);
    s->n_blocks = 0;
    s->n_tokens = 0;
}

void ts_seq_free(ts_seq *s) {
    free(s->tokens);
    free(s->blocks);
    memset(s, 0, sizeof *s);
}
