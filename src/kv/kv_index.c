/* Content addressing for the KV pool: block hashes (SHA-256) and the prefix
 * index, an open-addressing table (linear probing, backward-shift deletion)
 * from a block's hash to the block. The table has at least twice as many
 * slots as the pool has blocks and holds only published blocks, so it is at
 * most half full and never grows. */
#include <openssl/evp.h>
#include <string.h>

#include "kv/kv.h"
#include "kv/kv_int.h"

static const char hash_tag[] = "tessera.kv.block.v1"; /* versions the encoding */

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

ts_status ts_kv_block_hash(uint8_t out[TS_KV_HASH_BYTES], const uint8_t *prev,
                           const int32_t *tokens, int n, const uint8_t model_fp[TS_KV_HASH_BYTES],
                           const void *salt, size_t salt_len) {
    if (!out || !model_fp || n < 0 || (n > 0 && !tokens) || (!salt && salt_len > 0))
        return TS_ERR_INVALID;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return TS_ERR_NOMEM;
    /* Encoding: tag NUL, has_prev u8 [prev 32], model_fp 32, n u32, tokens
     * i32[n], has_salt u8 [salt_len u64, salt]. Every field has a fixed size
     * or a length/flag before it, so the encoding is injective. */
    uint8_t head[sizeof hash_tag + 1 + TS_KV_HASH_BYTES + TS_KV_HASH_BYTES + 4];
    size_t h = 0;
    memcpy(head, hash_tag, sizeof hash_tag);
    h += sizeof hash_tag;
    head[h++] = prev ? 1 : 0;
    if (prev) {
        memcpy(head + h, prev, TS_KV_HASH_BYTES);
        h += TS_KV_HASH_BYTES;
    }
    memcpy(head + h, model_fp, TS_KV_HASH_BYTES);
    h += TS_KV_HASH_BYTES;
    put_le(head + h, (uint32_t)n, 4);
    h += 4;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, head, h);
    uint8_t chunk[256];
    for (int i = 0; ok && i < n;) {
        int m = 0;
        for (; i < n && m + 4 <= (int)sizeof chunk; i++, m += 4) put_le(chunk + m, (uint32_t)tokens[i], 4);
        ok = EVP_DigestUpdate(ctx, chunk, (size_t)m);
    }
    uint8_t tail[9];
    tail[0] = salt ? 1 : 0;
    put_le(tail + 1, salt_len, 8);
    if (ok) ok = EVP_DigestUpdate(ctx, tail, salt ? 9 : 1);
    if (ok && salt && salt_len) ok = EVP_DigestUpdate(ctx, salt, salt_len);
    unsigned len = 0;
    if (ok) ok = EVP_DigestFinal_ex(ctx, out, &len) && len == TS_KV_HASH_BYTES;
    EVP_MD_CTX_free(ctx);
    return ok ? TS_OK : TS_ERR_NOMEM;
}

uint32_t ts_kv_index_home(const ts_kv *kv, const uint8_t *hash) {
    /* SHA-256 output is uniform: its first bytes are as good as any mix */
    uint32_t x = (uint32_t)hash[0] | (uint32_t)hash[1] << 8 | (uint32_t)hash[2] << 16 |
                 (uint32_t)hash[3] << 24;
    return x & kv->index_mask;
}

int32_t ts_kv_index_find(const ts_kv *kv, const uint8_t *hash) {
    for (uint32_t i = ts_kv_index_home(kv, hash);; i = (i + 1) & kv->index_mask) {
        int32_t e = kv->index[i];
        if (e < 0) return -1;
        if (!memcmp(kv->hash[e], hash, TS_KV_HASH_BYTES)) return e;
    }
}

int64_t ts_kv_index_find_block(const ts_kv *kv, int32_t b) {
    for (uint32_t i = ts_kv_index_home(kv, kv->hash[b]), n = 0; n <= kv->index_mask;
         i = (i + 1) & kv->index_mask, n++) {
        if (kv->index[i] < 0) return -1;
        if (kv->index[i] == b) return i;
    }
    return -1;
}

void ts_kv_index_remove(ts_kv *kv, int32_t b) {
    int64_t at = ts_kv_index_find_block(kv, b);
    kv->flags[b] &= (uint8_t)~TS_KV_F_PUBLISHED;
    if (at < 0) return;
    uint32_t mask = kv->index_mask, i = (uint32_t)at, j = i;
    /* Shift later entries of the run back into the hole when the hole lies on
     * their probe path, so that lookups need no tombstones. */
    for (;;) {
        j = (j + 1) & mask;
        int32_t e = kv->index[j];
        if (e < 0) break;
        uint32_t home = ts_kv_index_home(kv, kv->hash[e]);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            kv->index[i] = e;
            i = j;
        }
    }
    kv->index[i] = -1;
}

/* Takes a reference to a used or cached block. */
static void take(ts_kv *kv, int32_t b) {
    if (kv->refs[b] == 0) {
        ts_kv_lru_unlink(kv, b);
        kv->n_used++;
    } else {
        kv->extra_refs++;
    }
    kv->refs[b]++;
}

static bool same_tokens(const ts_kv *kv, int32_t b, const int32_t *tokens) {
    return !memcmp(kv->tokens + (size_t)b * kv->block_size, tokens,
                   (size_t)kv->block_size * sizeof *tokens);
}

int32_t ts_kv_publish(ts_kv *kv, int32_t block, const uint8_t hash[TS_KV_HASH_BYTES],
                      const int32_t *tokens) {
    if (block < 0 || block >= kv->n_blocks || kv->refs[block] <= 0 || !hash || !tokens) return -1;
    if (kv->flags[block] & TS_KV_F_PUBLISHED)
        return memcmp(kv->hash[block], hash, TS_KV_HASH_BYTES) ? -1 : block;
    int32_t e = ts_kv_index_find(kv, hash);
    if (e >= 0) {
        if (!same_tokens(kv, e, tokens)) {
            kv->collisions++;
            return block;
        }
        if (kv->refs[e] == INT32_MAX) return block;
        take(kv, e);
        return e;
    }
    memcpy(kv->hash[block], hash, TS_KV_HASH_BYTES);
    memcpy(kv->tokens + (size_t)block * kv->block_size, tokens,
           (size_t)kv->block_size * sizeof *tokens);
    kv->flags[block] |= TS_KV_F_PUBLISHED;
    uint32_t i = ts_kv_index_home(kv, hash);
    while (kv->index[i] >= 0) i = (i + 1) & kv->index_mask;
    kv->index[i] = block;
    return block;
}

int32_t ts_kv_lookup(ts_kv *kv, const uint8_t hash[TS_KV_HASH_BYTES], const int32_t *tokens) {
    int32_t e = hash && tokens ? ts_kv_index_find(kv, hash) : -1;
    if (e >= 0 && !same_tokens(kv, e, tokens)) {
        kv->collisions++;
        e = -1;
    }
    if (e >= 0 && kv->refs[e] == INT32_MAX) e = -1;
    if (e < 0) {
        kv->misses++;
        return -1;
    }
    take(kv, e);
    kv->hits++;
    return e;
}
