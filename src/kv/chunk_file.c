/* The chunk blob format (see chunk_store.h): encoding from a registry
 * handle, and a decoder that trusts nothing it reads. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kv/chunk_store.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chunk blobs store f32 and i32 payloads in host order, which must be little-endian"
#endif

static const uint8_t magic[8] = {'T', 'S', 'C', 'H', 'U', 'N', 'K', 0};

enum {
    OFF_VERSION = 8, OFF_TYPE = 12, OFF_FP = 16, OFF_ENC = 48, OFF_LAYERS = 80,
    OFF_HEADS = 84, OFF_DIM = 88, OFF_NTOK = 92, OFF_PAYLOAD_LEN = 96, OFF_SUM = 104,
};

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* SHA-256 over header[0, OFF_SUM) and payload[n]. */
static int checksum(const uint8_t *header, const void *payload, size_t n, uint8_t out[32]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return 0;
    unsigned len = 0;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, header, OFF_SUM) && EVP_DigestUpdate(ctx, payload, n) &&
             EVP_DigestFinal_ex(ctx, out, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    return ok;
}

ts_status ts_chunk_encode(ts_chunk_reg *reg, const ts_chunk *c, void **out, size_t *n,
                          ts_err *err) {
    if (!reg || !c || !out || !n) return ts_fail(err, TS_ERR_INVALID, "chunk encode: missing argument");
    *out = NULL;
    *n = 0;
    ts_chunk_info in;
    ts_chunk_get_info(reg, c, &in);
    if (!in.has_kv) return ts_fail(err, TS_ERR_INVALID, "chunk encode: the chunk has no KV attached");
    uint64_t half = ts_chunk_kv_bytes(in.shape, in.n_tokens);
    uint64_t tok = (uint64_t)in.n_tokens * 4;
    uint64_t payload = tok + 2 * half;
    if (payload > SIZE_MAX - TS_CHUNK_BLOB_HEADER)
        return ts_fail(err, TS_ERR_CAPACITY, "chunk encode: the chunk is too large");
    uint8_t *b = malloc(TS_CHUNK_BLOB_HEADER + (size_t)payload);
    if (!b) return ts_fail(err, TS_ERR_NOMEM, "chunk encode: out of memory for %llu bytes",
                           (unsigned long long)payload);
    memcpy(b, magic, 8);
    put_u32(b + OFF_VERSION, TS_CHUNK_BLOB_VERSION);
    put_u32(b + OFF_TYPE, (uint32_t)in.type);
    memcpy(b + OFF_FP, in.model_fp, 32);
    memcpy(b + OFF_ENC, in.enc_id, 32);
    put_u32(b + OFF_LAYERS, (uint32_t)in.shape.n_layers);
    put_u32(b + OFF_HEADS, (uint32_t)in.shape.n_kv_heads);
    put_u32(b + OFF_DIM, (uint32_t)in.shape.head_dim);
    put_u32(b + OFF_NTOK, (uint32_t)in.n_tokens);
    put_u64(b + OFF_PAYLOAD_LEN, payload);
    uint8_t *p = b + TS_CHUNK_BLOB_HEADER;
    memcpy(p, in.tokens, (size_t)tok);
    memcpy(p + tok, in.k, (size_t)half);
    memcpy(p + tok + half, in.v, (size_t)half);
    if (!checksum(b, p, (size_t)payload, b + OFF_SUM)) {
        free(b);
        return ts_fail(err, TS_ERR_NOMEM, "chunk encode: cannot compute the checksum");
    }
    *out = b;
    *n = TS_CHUNK_BLOB_HEADER + (size_t)payload;
    return TS_OK;
}

ts_status ts_chunk_decode(const void *data, size_t n, const ts_chunk_expect *exp,
                          const char *what, ts_chunk_blob *out, ts_err *err) {
    if (!what) what = "chunk blob";
    if (!data || !exp || !exp->model_fp || !out)
        return ts_fail(err, TS_ERR_INVALID, "%s: missing argument", what);
    const uint8_t *b = data;
    if ((uintptr_t)b % 4)
        return ts_fail(err, TS_ERR_INVALID, "%s: the blob is not 4-byte aligned", what);
    if (n < TS_CHUNK_BLOB_HEADER)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte header", what,
                       n, TS_CHUNK_BLOB_HEADER);
    if (memcmp(b, magic, 8) != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: not a tessera chunk (bad magic)", what);
    uint32_t version = get_u32(b + OFF_VERSION);
    if (version != TS_CHUNK_BLOB_VERSION)
        return ts_fail(err, TS_ERR_FORMAT, "%s: version %u, this build reads version %d", what,
                       version, TS_CHUNK_BLOB_VERSION);
    uint32_t type = get_u32(b + OFF_TYPE);
    uint32_t nl = get_u32(b + OFF_LAYERS), nh = get_u32(b + OFF_HEADS), hd = get_u32(b + OFF_DIM);
    uint32_t nt = get_u32(b + OFF_NTOK);
    uint64_t payload = get_u64(b + OFF_PAYLOAD_LEN);
    if (type >= TS_CHUNK_N_TYPES)
        return ts_fail(err, TS_ERR_FORMAT, "%s: unknown chunk type %u", what, type);
    if (nt == 0 || nt > TS_CHUNK_MAX_TOKENS)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %u tokens (must be 1 to %d)", what, nt,
                       TS_CHUNK_MAX_TOKENS);
    if (nl > INT32_MAX || nh > INT32_MAX || hd > INT32_MAX)
        return ts_fail(err, TS_ERR_FORMAT, "%s: shape field out of range", what);
    ts_chunk_shape shape = {(int32_t)nl, (int32_t)nh, (int32_t)hd};
    uint64_t half = ts_chunk_kv_bytes(shape, nt);
    if (!half)
        return ts_fail(err, TS_ERR_FORMAT, "%s: impossible KV shape %u x %u x %u for %u tokens",
                       what, nl, nh, hd, nt);
    /* half <= 2^62 and nt <= 2^24, so this sum cannot overflow */
    uint64_t want = (uint64_t)nt * 4 + 2 * half;
    if (payload != want)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: header says %llu payload bytes but its shape needs %llu", what,
                       (unsigned long long)payload, (unsigned long long)want);
    if (n - TS_CHUNK_BLOB_HEADER != payload)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %zu bytes, the header says %llu (truncated?)",
                       what, n, (unsigned long long)(payload + TS_CHUNK_BLOB_HEADER));
    if (memcmp(b + OFF_FP, exp->model_fp, 32) != 0)
        return ts_fail(err, TS_ERR_INVALID, "%s: made for another model (fingerprint differs)",
                       what);
    if (nl != (uint32_t)exp->shape.n_layers || nh != (uint32_t)exp->shape.n_kv_heads ||
        hd != (uint32_t)exp->shape.head_dim)
        return ts_fail(err, TS_ERR_INVALID,
                       "%s: KV shape %u layers x %u kv heads x %u does not match the model's "
                       "%d x %d x %d",
                       what, nl, nh, hd, (int)exp->shape.n_layers, (int)exp->shape.n_kv_heads,
                       (int)exp->shape.head_dim);
    const uint8_t *p = b + TS_CHUNK_BLOB_HEADER;
    uint8_t sum[32];
    if (!checksum(b, p, (size_t)payload, sum))
        return ts_fail(err, TS_ERR_NOMEM, "%s: cannot compute the checksum", what);
    if (memcmp(sum, b + OFF_SUM, 32) != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: checksum mismatch (corrupt)", what);
    const int32_t *tokens = (const int32_t *)(const void *)p;
    ts_status st = ts_chunk_id_compute(b + OFF_FP, b + OFF_ENC, tokens, nt, &out->id);
    if (st != TS_OK) return ts_fail(err, st, "%s: cannot compute the chunk id", what);
    if (exp->id && memcmp(exp->id->b, out->id.b, TS_CHUNK_ID_BYTES) != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: holds another chunk than its name says", what);
    out->type = (ts_chunk_type)type;
    memcpy(out->model_fp, b + OFF_FP, 32);
    memcpy(out->enc_id, b + OFF_ENC, 32);
    out->shape = shape;
    out->n_tokens = (int32_t)nt;
    out->tokens = tokens;
    out->k = (const float *)(const void *)(p + (size_t)nt * 4);
    out->v = (const float *)(const void *)(p + (size_t)nt * 4 + half);
    return TS_OK;
}
