/* libFuzzer target: arbitrary bytes as a chunk file (the blob format of
 * src/kv/chunk_store.h). The expected model fingerprint and shape are taken
 * from the input's own header when it has one, so the fuzzer reaches the
 * checksum and id checks rather than stopping at "another model".
 * Whatever ts_chunk_decode accepts must lie inside the input and re-encode
 * to exactly the same bytes; whatever it refuses must name the file.
 *
 * Library sources: src/base/err.c src/kv/chunk.c src/kv/chunk_file.c, with
 * -lcrypto. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/chunk.h"
#include "kv/chunk_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1); /* decode wants 4-byte alignment */
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    uint8_t fp[32];
    memset(fp, 0, sizeof fp);
    ts_chunk_shape shape = {1, 1, 2};
    if (size >= TS_CHUNK_BLOB_HEADER) {
        memcpy(fp, buf + 16, 32);
        shape.n_layers = (int32_t)rd32(buf + 80);
        shape.n_kv_heads = (int32_t)rd32(buf + 84);
        shape.head_dim = (int32_t)rd32(buf + 88);
    }
    ts_chunk_expect exp = {fp, shape, NULL};
    ts_chunk_blob cb;
    ts_err err;
    err.msg[0] = '\0';
    if (ts_chunk_decode(buf, size, &exp, "fuzz.chunk", &cb, &err) != TS_OK) {
        if (!strstr(err.msg, "fuzz.chunk")) __builtin_trap();
        free(buf);
        return 0;
    }
    /* accepted: everything inside the input, and a faithful re-encoding */
    uint64_t half = ts_chunk_kv_bytes(cb.shape, cb.n_tokens);
    const uint8_t *end = buf + size;
    if ((const uint8_t *)cb.tokens < buf || (const uint8_t *)(cb.tokens + cb.n_tokens) > end)
        __builtin_trap();
    if ((const uint8_t *)cb.v + half != end) __builtin_trap();
    ts_chunk_id id;
    if (ts_chunk_id_compute(cb.model_fp, cb.enc_id, cb.tokens, (size_t)cb.n_tokens, &id) != TS_OK ||
        memcmp(id.b, cb.id.b, 32) != 0)
        __builtin_trap();
    ts_chunk_reg *reg = NULL;
    ts_chunk *h = NULL;
    void *again = NULL;
    size_t n_again = 0;
    if (ts_chunk_reg_create(0, &reg, NULL) == TS_OK &&
        ts_chunk_reg_register(reg, cb.tokens, (size_t)cb.n_tokens, cb.type, cb.enc_id, cb.model_fp,
                              &id, NULL, &h, NULL) == TS_OK &&
        ts_chunk_attach_kv(reg, h, cb.shape, cb.k, cb.v, NULL) == TS_OK &&
        ts_chunk_encode(reg, h, &again, &n_again, NULL) == TS_OK) {
        if (n_again != size || memcmp(again, buf, size) != 0) __builtin_trap();
    }
    free(again);
    ts_chunk_release(reg, h);
    ts_chunk_reg_destroy(reg);
    free(buf);
    return 0;
}
