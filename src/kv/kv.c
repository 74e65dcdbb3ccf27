#include "kv/kv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/err.h"
#include "kv/kv_int.h"

size_t ts_kv_elem_bytes(ts_dtype dtype) {
    return dtype == TS_DT_F16 || dtype == TS_DT_BF16 ? 2 : 4;
}

size_t ts_kv_block_bytes(int n_layers, int n_kv_heads, int head_dim, int block_size,
                         ts_dtype dtype) {
    return 2 * (size_t)n_layers * n_kv_heads * block_size * head_dim * ts_kv_elem_bytes(dtype);
}

ts_status ts_kv_create(int n_layers, int n_kv_heads, int head_dim, int block_size,
                       int32_t n_blocks, ts_kv **out, ts_err *err) {
    return ts_kv_create_mem(n_layers, n_kv_heads, head_dim, block_size, n_blocks, TS_DT_F32, NULL,
                            out, err);
}

/* In 2 MiB pages where the kernel allows: a decode step's first write to a
 * fresh 4 KiB page cost a page fault per page and head, and attention walks
 * the pool with fewer TLB misses. */
void *ts_kv_host_alloc(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

ts_status ts_kv_create_mem(int n_layers, int n_kv_heads, int head_dim, int block_size,
                           int32_t n_blocks, ts_dtype dtype, const ts_kv_mem *mem, ts_kv **out,
                           ts_err *err) {
    *out = NULL;
    if (dtype != TS_DT_F32 && dtype != TS_DT_F16 && dtype != TS_DT_BF16)
        return ts_fail(err, TS_ERR_INVALID, "KV pool: elements must be f32, f16 or bf16");
    if (n_layers <= 0 || n_kv_heads <= 0 || head_dim <= 0 || block_size <= 0 || n_blocks <= 0)
        return ts_fail(err, TS_ERR_INVALID, "KV pool: sizes must be positive");
    if (n_blocks > (INT32_MAX >> 2))
        return ts_fail(err, TS_ERR_CAPACITY, "KV pool: %d blocks is more than supported", n_blocks);
    ts_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return ts_fail(err, TS_ERR_NOMEM, "KV pool: out of memory");
    kv->n_layers = n_layers;
    kv->n_kv_heads = n_kv_heads;
    kv->head_dim = head_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    size_t nb = (size_t)n_blocks;
    size_t per_layer = nb * n_kv_heads * block_size * head_dim;
    /* index at most half full: every published block has one entry */
    size_t cap = 16;
    while (cap < 2 * nb) cap *= 2;
    kv->index_mask = (uint32_t)(cap - 1);
    kv->k = calloc((size_t)n_layers, sizeof *kv->k);
    kv->v = calloc((size_t)n_layers, sizeof *kv->v);
    kv->free_stack = malloc(nb * sizeof *kv->free_stack);
    kv->refs = calloc(nb, sizeof *kv->refs);
    kv->flags = calloc(nb, sizeof *kv->flags);
    kv->hash = calloc(nb, sizeof *kv->hash);
    kv->tokens = calloc(nb * block_size, sizeof *kv->tokens);
    kv->lru_prev = malloc(nb * sizeof *kv->lru_prev);
    kv->lru_next = malloc(nb * sizeof *kv->lru_next);
    kv->index = malloc(cap * sizeof *kv->index);
    kv->mark = calloc(nb, 1);
    kv->mem = mem;
    kv->dtype = dtype;
    size_t es = ts_kv_elem_bytes(dtype), bytes = 2 * (size_t)n_layers * per_layer * es;
    kv->storage = mem ? mem->alloc(mem->ctx, bytes) : ts_kv_host_alloc(bytes);
    if (!kv->k || !kv->v || !kv->free_stack || !kv->storage || !kv->refs || !kv->flags ||
        !kv->hash || !kv->tokens || !kv->lru_prev || !kv->lru_next || !kv->index || !kv->mark) {
        size_t mb = ts_kv_block_bytes(n_layers, n_kv_heads, head_dim, block_size, dtype) * nb >> 20;
        ts_kv_destroy(kv);
        return ts_fail(err, TS_ERR_NOMEM, "KV pool: cannot allocate %zu MiB", mb);
    }
    for (int l = 0; l < n_layers; l++) {
        kv->k[l] = (char *)kv->storage + (2 * (size_t)l) * per_layer * es;
        kv->v[l] = (char *)kv->storage + (2 * (size_t)l + 1) * per_layer * es;
    }
    /* hand out low block numbers first */
    for (int32_t i = 0; i < n_blocks; i++) kv->free_stack[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    for (int32_t i = 0; i < n_blocks; i++) kv->lru_prev[i] = kv->lru_next[i] = -1;
    kv->lru_head = kv->lru_tail = -1;
    for (size_t i = 0; i < cap; i++) kv->index[i] = -1;
    *out = kv;
    return TS_OK;
}

void ts_kv_destroy(ts_kv *kv) {
    if (!kv) return;
    if (kv->mem) kv->mem->free(kv->mem->ctx, kv->storage);
    else if (kv->storage)
        munmap(kv->storage, ts_kv_block_bytes(kv->n_layers, kv->n_kv_heads, kv->head_dim,
                                              kv->block_size, kv->dtype) *
                                (size_t)kv->n_blocks);
    free(kv->k);
    free(kv->v);
    free(kv->free_stack);
    free(kv->refs);
    free(kv->flags);
    free(kv->hash);
    free(kv->tokens);
    free(kv->lru_prev);
    free(kv->lru_next);
    free(kv->index);
    free(kv->mark);
    free(kv);
}

void ts_kv_lru_push(ts_kv *kv, int32_t b) {
    kv->lru_prev[b] = kv->lru_tail;
    kv->lru_next[b] = -1;
    if (kv->lru_tail >= 0) kv->lru_next[kv->lru_tail] = b;
    else kv->lru_head = b;
    kv->lru_tail = b;
    kv->flags[b] |= TS_KV_F_IN_LRU;
    kv->n_cached++;
}

void ts_kv_lru_unlink(ts_kv *kv, int32_t b) {
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p >= 0) kv->lru_next[p] = n;
    else kv->lru_head = n;
    if (n >= 0) kv->lru_prev[n] = p;
    else kv->lru_tail = p;
    kv->lru_prev[b] = kv->lru_next[b] = -1;
    kv->flags[b] &= (uint8_t)~TS_KV_F_IN_LRU;
    kv->n_cached--;
}

int32_t ts_kv_alloc(ts_kv *kv) {
    int32_t b;
    if (kv->n_free) {
        b = kv->free_stack[--kv->n_free];
    } else if (kv->lru_head >= 0) {
        b = kv->lru_head;
        ts_kv_lru_unlink(kv, b);
        ts_kv_index_remove(kv, b);
        kv->evictions++;
    } else {
        return -1;
    }
    kv->refs[b] = 1;
    kv->n_used++;
    return b;
}

bool ts_kv_ref(ts_kv *kv, int32_t block) {
    if (block < 0 || block >= kv->n_blocks || kv->refs[block] <= 0 || kv->refs[block] == INT32_MAX) {
        kv->bad_ref++;
        return false;
    }
    kv->refs[block]++;
    kv->extra_refs++;
    return true;
}

void ts_kv_release(ts_kv *kv, int32_t block) {
    if (block < 0 || block >= kv->n_blocks || kv->refs[block] <= 0) {
        kv->bad_release++;
        return;
    }
    if (--kv->refs[block] > 0) {
        kv->extra_refs--;
        return;
    }
    kv->n_used--;
    if (kv->flags[block] & TS_KV_F_PUBLISHED) ts_kv_lru_push(kv, block);
    else kv->free_stack[kv->n_free++] = block;
}

void ts_kv_release_table(ts_kv *kv, const int32_t *blocks, int n) {
    for (int i = n - 1; i >= 0; i--) ts_kv_release(kv, blocks[i]);
}

int32_t ts_kv_refcount(const ts_kv *kv, int32_t block) {
    return block >= 0 && block < kv->n_blocks ? kv->refs[block] : -1;
}

int32_t ts_kv_n_avail(const ts_kv *kv) {
    return kv->n_free + kv->n_cached;
}

bool ts_kv_is_published(const ts_kv *kv, int32_t block) {
    return block >= 0 && block < kv->n_blocks && (kv->flags[block] & TS_KV_F_PUBLISHED);
}

void ts_kv_get_stats(const ts_kv *kv, ts_kv_stats *out) {
    size_t bb = ts_kv_block_bytes(kv->n_layers, kv->n_kv_heads, kv->head_dim, kv->block_size,
                                  kv->dtype);
    *out = (ts_kv_stats){
        .hits = kv->hits,
        .misses = kv->misses,
        .evictions = kv->evictions,
        .collisions = kv->collisions,
        .bad_release = kv->bad_release,
        .bad_ref = kv->bad_ref,
        .n_free = kv->n_free,
        .n_used = kv->n_used,
        .n_cached = kv->n_cached,
        .n_blocks = kv->n_blocks,
        .bytes_shared = kv->extra_refs * (uint64_t)bb,
        .block_bytes = bb,
    };
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
