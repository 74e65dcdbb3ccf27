/* ts_kv: the paged KV pool. Fixed-size blocks of block_size token slots hold
 * K and V for every layer and KV head; a sequence owns a block table naming
 * its blocks in order. Plain bookkeeping plus the storage; no model code.
 *
 * Layout per layer: k[layer] and v[layer] are
 * [n_blocks][n_kv_heads][block_size][head_dim] f32, so one KV head's keys for
 * a block are contiguous (what attention streams). */
#ifndef TS_KV_KV_H
#define TS_KV_KV_H

#include <stddef.h>
#include <stdint.h>
#include "tessera.h"

typedef struct ts_kv {
    int n_layers, n_kv_heads, head_dim, block_size;
    int32_t n_blocks;
    float **k, **v;        /* [n_layers] pointers into one allocation */
    float *storage;
    int32_t *free_stack;   /* [n_blocks] */
    int32_t n_free;
} ts_kv;

/* Bytes one block occupies across all layers (K and V). */
size_t ts_kv_block_bytes(int n_layers, int n_kv_heads, int head_dim, int block_size);

/* Creates a pool of n_blocks blocks. */
ts_status ts_kv_create(int n_layers, int n_kv_heads, int head_dim, int block_size,
                       int32_t n_blocks, ts_kv **out, ts_err *err);
void ts_kv_destroy(ts_kv *kv);

/* Takes a free block; returns its index, or -1 when none is free. */
int32_t ts_kv_alloc(ts_kv *kv);
/* Returns a block taken by ts_kv_alloc. */
void ts_kv_release(ts_kv *kv, int32_t block);

/* Parses a memory size such as "512M", "4G", "1.5G" or a plain byte count.
 * Returns 0 for a malformed or zero size. */
uint64_t ts_parse_size(const char *s);

#endif
