#include "kv/kv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

size_t ts_kv_block_bytes(int n_layers, int n_kv_heads, int head_dim, int block_size) {
    return 2 * (size_t)n_layers * n_kv_heads * block_size * head_dim * sizeof(float);
}

ts_status ts_kv_create(int n_layers, int n_kv_heads, int head_dim, int block_size,
                       int32_t n_blocks, ts_kv **out, ts_err *err) {
    *out = NULL;
    if (n_layers <= 0 || n_kv_heads <= 0 || head_dim <= 0 || block_size <= 0 || n_blocks <= 0)
        return ts_fail(err, TS_ERR_INVALID, "KV pool: sizes must be positive");
    ts_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return ts_fail(err, TS_ERR_NOMEM, "KV pool: out of memory");
    kv->n_layers = n_layers;
    kv->n_kv_heads = n_kv_heads;
    kv->head_dim = head_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    size_t per_layer = (size_t)n_blocks * n_kv_heads * block_size * head_dim;
    kv->k = calloc((size_t)n_layers, sizeof *kv->k);
    kv->v = calloc((size_t)n_layers, sizeof *kv->v);
    kv->free_stack = malloc((size_t)n_blocks * sizeof *kv->free_stack);
    /* calloc: pages are only touched when a block is first written */
    kv->storage = calloc(2 * (size_t)n_layers, per_layer * sizeof(float));
    if (!kv->k || !kv->v || !kv->free_stack || !kv->storage) {
        size_t mb = ts_kv_block_bytes(n_layers, n_kv_heads, head_dim, block_size) * n_blocks >> 20;
        ts_kv_destroy(kv);
        return ts_fail(err, TS_ERR_NOMEM, "KV pool: cannot allocate %zu MiB", mb);
    }
    for (int l = 0; l < n_layers; l++) {
        kv->k[l] = kv->storage + (2 * (size_t)l) * per_layer;
        kv->v[l] = kv->storage + (2 * (size_t)l + 1) * per_layer;
    }
    /* hand out low block numbers first */
    for (int32_t i = 0; i < n_blocks; i++) kv->free_stack[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    *out = kv;
    return TS_OK;
}

void ts_kv_destroy(ts_kv *kv) {
    if (!kv) return;
    free(kv->storage);
    free(kv->k);
    free(kv->v);
    free(kv->free_stack);
    free(kv);
}

int32_t ts_kv_alloc(ts_kv *kv) {
    return kv->n_free ? kv->free_stack[--kv->n_free] : -1;
}

void ts_kv_release(ts_kv *kv, int32_t block) {
    if (block >= 0 && block < kv->n_blocks && kv->n_free < kv->n_blocks)
        kv->free_stack[kv->n_free++] = block;
}

uint64_t ts_parse_size(const char *s) {
    if (!s || !*s) return 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v)) return 0;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return 0;
    double bytes = v * mul;
    if (bytes >= 1.8e19) return 0;
    return (uint64_t)bytes;
}
