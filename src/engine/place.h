/* Placing a chunk's cached KV into a sequence's paged KV: the keys, kept
 * before RoPE, are rotated to the slots they land on; values are copied.
 * Also: reading a chunk back from a store for rt's model. */
#ifndef TS_ENGINE_PLACE_H
#define TS_ENGINE_PLACE_H

#include "engine/runtime.h"
#include "kv/chunk.h"
#include "kv/chunk_store.h"

/* Reusable row buffers (one layer of one chunk's rows). Zero-initialise. */
typedef struct ts_place_scratch {
    float *k, *v;   /* [cap_rows][n_kv_heads * head_dim] */
    size_t cap_rows;
    int32_t *pos, *slots; /* [cap_rows] */
} ts_place_scratch;

void ts_place_scratch_free(ts_place_scratch *ps);

/* Writes chunk tokens [off, off + m) of info (which must have KV) at slots
 * [slot, slot + m) of the block table blocks (covering those slots), K
 * rotated to positions slot.. for every layer of rt's model. */
ts_status ts_place_chunk(ts_runtime *rt, const ts_chunk_info *info, int off, int m, int slot,
                         const int32_t *blocks, ts_place_scratch *ps, ts_err *err);

/* ts_chunk_store_load of chunk id into reg, expecting rt's model (its
 * fingerprint and KV shape); *out is held on success. */
ts_status ts_chunk_load_for(ts_runtime *rt, ts_chunk_store *store, ts_chunk_reg *reg,
                            const ts_chunk_id *id, ts_chunk **out, ts_err *err);

#endif
