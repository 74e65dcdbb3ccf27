/* ts_kv: the paged KV pool. Fixed-size blocks of block_size token slots hold
 * K and V for every layer and KV head; a sequence owns a block table naming
 * its blocks in order. Plain bookkeeping plus the storage; no model code.
 *
 * Layout per layer: k[layer] and v[layer] are
 * [n_blocks][n_kv_heads][block_size][head_dim] f32, so one KV head's keys for
 * a block are contiguous (what attention streams).
 *
 * Block life cycle. Every block is in exactly one of three states:
 *   free   - refcount 0, not published, on the free stack;
 *   used   - refcount > 0 (held by that many block-table entries);
 *   cached - refcount 0 but published in the prefix index, so a later
 *            request can still find it; kept on an LRU list and evicted
 *            (oldest release first) when ts_kv_alloc finds no free block.
 * A published block is identified by its content hash (ts_kv_block_hash)
 * and keeps a copy of its token ids, against which every hit is verified.
 * Published blocks are immutable: their owner must not write them again.
 *
 * Not thread-safe: one engine thread owns the pool. */
#ifndef TS_KV_KV_H
#define TS_KV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "io/safetensors.h"
#include "tessera.h"

#define TS_KV_HASH_BYTES 32

/* Counters and occupancy (ts_kv_get_stats). Counters only grow. */
typedef struct ts_kv_stats {
    uint64_t hits;         /* lookups that returned a block */
    uint64_t misses;       /* lookups that returned -1 (collisions included) */
    uint64_t evictions;    /* cached blocks taken back by ts_kv_alloc */
    uint64_t collisions;   /* hash matched but stored tokens differed */
    uint64_t bad_release;  /* releases of an unreferenced or out-of-range block */
    uint64_t bad_ref;      /* ts_kv_ref on an unreferenced or out-of-range block */
    int32_t n_free, n_used, n_cached;
    int32_t n_blocks;
    uint64_t bytes_shared; /* sum over blocks of (refcount - 1) * block bytes */
    uint64_t block_bytes;  /* bytes of one block (all layers, K and V) */
} ts_kv_stats;

typedef struct ts_kv {
    int n_layers, n_kv_heads, head_dim, block_size;
    int32_t n_blocks;
    void **k, **v;         /* [n_layers] pointers into one allocation, each
                            * [n_blocks][n_kv_heads][block_size][head_dim]
                            * elements of dtype */
    void *storage;
    ts_dtype dtype;        /* TS_DT_F32, TS_DT_F16 or TS_DT_BF16 */
    int32_t *free_stack;   /* [n_blocks]; entries [0, n_free) are free blocks */
    int32_t n_free;

    /* bookkeeping; read through the functions below, never written outside kv/ */
    int32_t *refs;         /* [n_blocks] refcount */
    uint8_t *flags;        /* [n_blocks] TS_KV_F_* */
    uint8_t (*hash)[TS_KV_HASH_BYTES]; /* [n_blocks] hash of a published block */
    int32_t *tokens;       /* [n_blocks][block_size] token ids of a published block */
    int32_t *lru_prev, *lru_next; /* [n_blocks] cached list links, -1 at the ends */
    int32_t lru_head, lru_tail;   /* oldest and newest cached block, -1 if none */
    int32_t n_used, n_cached;
    int32_t *index;        /* [index_mask + 1] open addressing, block id or -1 */
    uint32_t index_mask;
    uint8_t *mark;         /* [n_blocks] scratch for ts_kv_check */
    uint64_t extra_refs;   /* sum over used blocks of refcount - 1 */
    uint64_t hits, misses, evictions, collisions, bad_release, bad_ref;
    /* where storage lives: NULL for host memory (anonymous pages), else the allocator
     * that made it (device memory: k/v/storage are device pointers, never
     * dereferenced on the host) */
    const struct ts_kv_mem *mem;
} ts_kv;

/* An allocator for the K/V storage (for example device memory through a
 * backend's op table). alloc returns zero-filled memory or NULL. */
typedef struct ts_kv_mem {
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p);
    void *ctx;
} ts_kv_mem;

enum { TS_KV_F_PUBLISHED = 1, TS_KV_F_IN_LRU = 2 };

/* Host pool storage: bytes of zeroed anonymous memory, touched only when
 * first written (on huge pages where the kernel gives them); NULL on
 * failure. Freed with munmap(p, bytes). */
void *ts_kv_host_alloc(size_t bytes);

/* Bytes of one K or V element of a pool of dtype (f16, bf16: 2; f32: 4). */
size_t ts_kv_elem_bytes(ts_dtype dtype);
/* Bytes one block occupies across all layers (K and V). */
size_t ts_kv_block_bytes(int n_layers, int n_kv_heads, int head_dim, int block_size,
                         ts_dtype dtype);

/* Creates a pool of n_blocks blocks of f32 elements, all free. */
ts_status ts_kv_create(int n_layers, int n_kv_heads, int head_dim, int block_size,
                       int32_t n_blocks, ts_kv **out, ts_err *err);
/* ts_kv_create with elements of dtype (TS_DT_F32, TS_DT_F16 or TS_DT_BF16) and the K/V
 * storage (2 * n_layers arrays) taken from mem, which must outlive the pool;
 * mem == NULL: host memory. Only the storage moves: every bookkeeping array
 * stays in host memory. */
ts_status ts_kv_create_mem(int n_layers, int n_kv_heads, int head_dim, int block_size,
                           int32_t n_blocks, ts_dtype dtype, const ts_kv_mem *mem, ts_kv **out,
                           ts_err *err);
/* Frees the pool and its storage; NULL is a no-op. */
void ts_kv_destroy(ts_kv *kv);

/* Takes a block with refcount 1: a free block if there is one, else the least
 * recently released cached block (unpublished, counted as an eviction).
 * Returns its index, or -1 when every block is in use. The block's K/V
 * contents are whatever was there before. */
int32_t ts_kv_alloc(ts_kv *kv);
/* Adds a reference to a block that already has one (refcount > 0); returns
 * false, changing nothing but the bad_ref counter, otherwise. To take a
 * block that may be cached, use ts_kv_lookup. */
bool ts_kv_ref(ts_kv *kv, int32_t block);
/* Drops one reference. At zero a published block becomes cached (newest on
 * the LRU list) and an unpublished one becomes free. A block with refcount 0
 * or out of range is ignored and counted in bad_release. */
void ts_kv_release(ts_kv *kv, int32_t block);
/* Releases blocks[0..n) last to first, so that a chain's tail is evicted
 * before its head (a prefix is only reachable through its first block). */
void ts_kv_release_table(ts_kv *kv, const int32_t *blocks, int n);
/* Refcount of a block; -1 when out of range. */
int32_t ts_kv_refcount(const ts_kv *kv, int32_t block);
/* Blocks ts_kv_alloc can still hand out: free plus cached. */
int32_t ts_kv_n_avail(const ts_kv *kv);
/* Whether a block is published (findable by ts_kv_lookup). */
bool ts_kv_is_published(const ts_kv *kv, int32_t block);

/* Content hash of one block, written to out[32]: SHA-256 over a fixed tag,
 * prev (the previous block's hash; NULL for a sequence's first block), the
 * block's n token ids (int32 little-endian), model_fp (32 bytes, required:
 * a fingerprint of the model, so that two models never share KV) and an
 * optional per-tenant salt (salt == NULL: none; salt != NULL with salt_len 0
 * is an empty salt, distinct from none). Every variable-length part is
 * length-prefixed, so distinct inputs never encode alike.
 * TS_ERR_INVALID for n < 0, tokens NULL with n > 0, NULL out/model_fp, or
 * salt NULL with salt_len > 0; TS_ERR_NOMEM if OpenSSL fails. */
ts_status ts_kv_block_hash(uint8_t out[TS_KV_HASH_BYTES], const uint8_t *prev,
                           const int32_t *tokens, int n, const uint8_t model_fp[TS_KV_HASH_BYTES],
                           const void *salt, size_t salt_len);

/* Publishes a full block the caller holds (refcount > 0) under hash, storing
 * a copy of its block_size token ids. Returns:
 *   block - now published (or it already was, under the same hash);
 *   other - a different block already holds this hash and the same tokens:
 *           a reference to it has been taken for the caller (reviving it if
 *           cached), who should put it in its table and release `block`;
 *   block, unpublished - the hash is held by a block with different tokens
 *           (a collision, counted): the block stays private;
 *   -1    - block out of range, unreferenced, or already published under
 *           another hash (nothing changed). */
int32_t ts_kv_publish(ts_kv *kv, int32_t block, const uint8_t hash[TS_KV_HASH_BYTES],
                      const int32_t *tokens);
/* Finds the published block with this hash whose stored token ids equal
 * tokens[0..block_size). On a hit takes a reference (reviving a cached block
 * from the LRU list) and returns the block; else -1 (a miss; a hash match
 * with other tokens also counts as a collision). Allocates nothing. */
int32_t ts_kv_lookup(ts_kv *kv, const uint8_t hash[TS_KV_HASH_BYTES], const int32_t *tokens);

/* Fills *out with the counters and occupancy. */
void ts_kv_get_stats(const ts_kv *kv, ts_kv_stats *out);

/* Verifies every invariant of the pool (states partition the blocks, free
 * stack without duplicates, LRU list well formed, index entries findable and
 * pointing at published blocks, occupancy counters exact). Returns true if
 * all hold; otherwise false with the first broken one described in why. */
bool ts_kv_check(const ts_kv *kv, char *why, size_t why_len);

/* Parses a memory size such as "512M", "4G", "1.5G" or a plain byte count.
 * Returns 0 for a malformed or zero size. */
uint64_t ts_parse_size(const char *s);

#endif
