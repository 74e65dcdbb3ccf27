/* Chunk registry: ids (against a plain SHA-256 of the documented encoding),
 * hex, dedupe, KV attach, refcounts, deferred removal, LRU eviction under a
 * budget (against a list model of recency), model-fingerprint rejection,
 * listing, and a 4-thread smoke test with invariants checked at the end. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "kv/chunk.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static uint8_t FP_A[32], FP_B[32], ENC0[32], ENC1[32];

/* Reference id: SHA-256("tessera.chunk.v1\0" fp enc n:u32le tokens:i32le). */
static void ref_id(const uint8_t *fp, const uint8_t *enc, const int32_t *t, size_t n, uint8_t out[32]) {
    static const char tag[] = "tessera.chunk.v1";
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, tag, sizeof tag);
    EVP_DigestUpdate(c, fp, 32);
    EVP_DigestUpdate(c, enc, 32);
    uint8_t b[4];
    uint32_t nn = (uint32_t)n;
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(nn >> (8 * i));
    EVP_DigestUpdate(c, b, 4);
    for (size_t j = 0; j < n; j++) {
        uint32_t v = (uint32_t)t[j];
        for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
        EVP_DigestUpdate(c, b, 4);
    }
    unsigned len;
    EVP_DigestFinal_ex(c, out, &len);
    EVP_MD_CTX_free(c);
}

static const ts_chunk_shape SHAPE = {3, 2, 8};

/* Fills k/v [3][n][16] with values derived from seed. */
static void make_kv(float *k, float *v, int n, uint32_t seed) {
    size_t m = (size_t)SHAPE.n_layers * (size_t)n * (size_t)(SHAPE.n_kv_heads * SHAPE.head_dim);
    for (size_t i = 0; i < m; i++) {
        k[i] = (float)((seed * 31 + i * 7) % 1000) / 100.0f;
        v[i] = -(float)((seed * 17 + i * 3) % 1000) / 100.0f;
    }
}

static void test_ids(void) {
    int32_t t[5] = {1, 2, 3, -4, 151935};
    ts_chunk_id a, b;
    uint8_t want[32];
    CHECK(ts_chunk_id_compute(FP_A, ENC0, t, 5, &a) == TS_OK);
    ref_id(FP_A, ENC0, t, 5, want);
    CHECK(memcmp(a.b, want, 32) == 0);
    CHECK(ts_chunk_id_compute(FP_B, ENC0, t, 5, &b) == TS_OK && memcmp(a.b, b.b, 32) != 0);
    CHECK(ts_chunk_id_compute(FP_A, ENC1, t, 5, &b) == TS_OK && memcmp(a.b, b.b, 32) != 0);
    CHECK(ts_chunk_id_compute(FP_A, ENC0, t, 4, &b) == TS_OK && memcmp(a.b, b.b, 32) != 0);
    t[2] = 33;
    CHECK(ts_chunk_id_compute(FP_A, ENC0, t, 5, &b) == TS_OK && memcmp(a.b, b.b, 32) != 0);
    CHECK(ts_chunk_id_compute(NULL, ENC0, t, 5, &b) == TS_ERR_INVALID);

    /* encoding ids: their own tag, so never equal to a chunk id of the same tokens */
    uint8_t e1[32], e2[32], e3[32];
    int32_t pre[3] = {151644, 8948, 198};
    CHECK(ts_chunk_encoding_id(FP_A, pre, 3, e1) == TS_OK);
    CHECK(ts_chunk_encoding_id(FP_A, pre, 3, e2) == TS_OK && memcmp(e1, e2, 32) == 0);
    CHECK(ts_chunk_encoding_id(FP_A, pre, 2, e2) == TS_OK && memcmp(e1, e2, 32) != 0);
    CHECK(ts_chunk_encoding_id(FP_B, pre, 3, e2) == TS_OK && memcmp(e1, e2, 32) != 0);
    CHECK(ts_chunk_encoding_id(FP_A, NULL, 0, e3) == TS_OK && memcmp(e1, e3, 32) != 0);
    CHECK(ts_chunk_encoding_id(FP_A, NULL, 2, e3) == TS_ERR_INVALID);
    ts_chunk_id_compute(FP_A, ENC0, pre, 3, &b);
    CHECK(memcmp(b.b, e1, 32) != 0);

    char hex[TS_CHUNK_HEX_LEN + 1];
    ts_chunk_id_to_hex(&a, hex);
    CHECK(strlen(hex) == 64);
    char ref_hex[65];
    for (int i = 0; i < 32; i++) snprintf(ref_hex + 2 * i, 3, "%02x", a.b[i]);
    CHECK(strcmp(hex, ref_hex) == 0);
    ts_chunk_id back;
    CHECK(ts_chunk_id_from_hex(hex, &back, NULL) == TS_OK && memcmp(back.b, a.b, 32) == 0);
    for (int i = 0; i < 64; i++) hex[i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]);
    CHECK(ts_chunk_id_from_hex(hex, &back, NULL) == TS_OK && memcmp(back.b, a.b, 32) == 0);
    ts_err e;
    hex[10] = 'g';
    CHECK(ts_chunk_id_from_hex(hex, &back, &e) == TS_ERR_INVALID && strstr(e.msg, "10"));
    CHECK(ts_chunk_id_from_hex("abc", &back, &e) == TS_ERR_INVALID && strstr(e.msg, "got 3"));
    CHECK(ts_chunk_id_from_hex("", &back, NULL) == TS_ERR_INVALID);
    char longer[80];
    memset(longer, 'a', 70);
    longer[70] = 0;
    CHECK(ts_chunk_id_from_hex(longer, &back, NULL) == TS_ERR_INVALID);

    ts_chunk_type ty;
    for (int i = 0; i < TS_CHUNK_N_TYPES; i++)
        CHECK(ts_chunk_type_parse(ts_chunk_type_name((ts_chunk_type)i), &ty, NULL) == TS_OK &&
              ty == (ts_chunk_type)i);
    CHECK(ts_chunk_type_parse("doc", &ty, &e) == TS_ERR_INVALID && strstr(e.msg, "doc"));
    CHECK(ts_chunk_kv_bytes(SHAPE, 10) == 3u * 2 * 8 * 10 * 4);
    ts_chunk_shape huge = {INT32_MAX, INT32_MAX, INT32_MAX};
    CHECK(ts_chunk_kv_bytes(huge, INT32_MAX) == 0);
    ts_chunk_shape bad = {3, 0, 8};
    CHECK(ts_chunk_kv_bytes(bad, 10) == 0);
}

static void test_basic(void) {
    ts_chunk_reg *reg = NULL;
    CHECK(ts_chunk_reg_create(0, &reg, NULL) == TS_OK);
    int32_t t[6] = {10, 11, 12, 13, 14, 15};
    ts_chunk_id id, id2;
    bool existed = true;
    ts_chunk *h = NULL, *h2 = NULL;
    CHECK(ts_chunk_reg_register(reg, t, 6, TS_CHUNK_DOCUMENT, ENC0, FP_A, &id, &existed, &h, NULL) == TS_OK);
    CHECK(!existed && h);
    uint8_t want[32];
    ref_id(FP_A, ENC0, t, 6, want);
    CHECK(memcmp(id.b, want, 32) == 0);
    /* same content, other type label: same chunk, type kept */
    CHECK(ts_chunk_reg_register(reg, t, 6, TS_CHUNK_RAG, ENC0, FP_A, &id2, &existed, &h2, NULL) == TS_OK);
    CHECK(existed && h2 == h && memcmp(id.b, id2.b, 32) == 0);
    ts_chunk_reg_stats s = ts_chunk_reg_get_stats(reg);
    CHECK(s.n_chunks == 1 && s.hits == 1 && s.misses == 1);
    /* other encoding context: another chunk */
    ts_chunk_id id3;
    CHECK(ts_chunk_reg_register(reg, t, 6, TS_CHUNK_DOCUMENT, ENC1, FP_A, &id3, &existed, NULL, NULL) == TS_OK);
    CHECK(!existed && memcmp(id3.b, id.b, 32) != 0 && ts_chunk_reg_get_stats(reg).n_chunks == 2);

    ts_err e;
    CHECK(ts_chunk_reg_register(reg, t, 0, TS_CHUNK_DOCUMENT, ENC0, FP_A, &id2, NULL, NULL, &e) == TS_ERR_INVALID);
    CHECK(ts_chunk_reg_register(reg, t, 6, (ts_chunk_type)9, ENC0, FP_A, &id2, NULL, NULL, &e) == TS_ERR_INVALID);

    ts_chunk_info in;
    ts_chunk_get_info(reg, h, &in);
    CHECK(!in.has_kv && in.k == NULL && in.n_tokens == 6 && in.type == TS_CHUNK_DOCUMENT);
    CHECK(memcmp(in.tokens, t, sizeof t) == 0 && memcmp(in.enc_id, ENC0, 32) == 0);

    float k[3 * 6 * 16], v[3 * 6 * 16];
    make_kv(k, v, 6, 1);
    ts_chunk_shape bad = {3, 2, 0};
    CHECK(ts_chunk_attach_kv(reg, h, bad, k, v, &e) == TS_ERR_INVALID);
    CHECK(ts_chunk_attach_kv(reg, h, SHAPE, k, v, &e) == TS_OK);
    uint64_t used = ts_chunk_reg_get_stats(reg).bytes_used;
    CHECK(ts_chunk_attach_kv(reg, h, SHAPE, k, v, &e) == TS_OK); /* idempotent */
    CHECK(ts_chunk_reg_get_stats(reg).bytes_used == used);
    ts_chunk_shape other = {3, 1, 16};
    CHECK(ts_chunk_attach_kv(reg, h, other, k, v, &e) == TS_ERR_INVALID);
    ts_chunk_get_info(reg, h, &in);
    CHECK(in.has_kv && in.shape.n_layers == 3 && in.shape.head_dim == 8);
    CHECK(memcmp(in.k, k, sizeof k) == 0 && memcmp(in.v, v, sizeof v) == 0);
    /* the registry copied: changing the caller's buffer changes nothing */
    k[0] += 1.0f;
    CHECK(in.k[0] != k[0]);
    ts_chunk_release(reg, h);
    ts_chunk_release(reg, h2);

    /* lookup, model mismatch */
    ts_chunk *l = NULL;
    CHECK(ts_chunk_reg_lookup(reg, &id, FP_A, &l, NULL) == TS_OK && l == h);
    ts_chunk *l2 = (ts_chunk *)1;
    CHECK(ts_chunk_reg_lookup(reg, &id, FP_B, &l2, &e) == TS_ERR_INVALID && l2 == NULL);
    CHECK(strstr(e.msg, "another model") != NULL);
    CHECK(ts_chunk_reg_get_stats(reg).rejected == 1);
    CHECK(ts_chunk_reg_lookup(reg, &id, NULL, &l2, NULL) == TS_OK && l2 == h); /* no check asked */
    ts_chunk_release(reg, l2);
    ts_chunk_id missing;
    memset(&missing, 7, sizeof missing);
    CHECK(ts_chunk_reg_lookup(reg, &missing, FP_A, &l2, &e) == TS_ERR_NOTFOUND && strstr(e.msg, "0707"));

    /* deferred removal: still readable through the held handle */
    CHECK(ts_chunk_reg_remove(reg, &id, NULL) == TS_OK);
    s = ts_chunk_reg_get_stats(reg);
    CHECK(s.n_chunks == 1 && s.n_pending == 1);
    CHECK(ts_chunk_reg_lookup(reg, &id, FP_A, &l2, NULL) == TS_ERR_NOTFOUND);
    CHECK(ts_chunk_reg_remove(reg, &id, NULL) == TS_ERR_NOTFOUND);
    ts_chunk_get_info(reg, l, &in);
    CHECK(in.n_tokens == 6 && in.tokens[5] == 15 && in.v[3] == v[3]);
    /* re-registering makes a fresh chunk while the old one is pending */
    ts_chunk *fresh = NULL;
    CHECK(ts_chunk_reg_register(reg, t, 6, TS_CHUNK_DOCUMENT, ENC0, FP_A, &id2, &existed, &fresh, NULL) == TS_OK);
    CHECK(!existed && fresh != l);
    CHECK(ts_chunk_attach_kv(reg, l, SHAPE, k, v, &e) == TS_OK); /* already attached: no-op */
    ts_chunk_release(reg, l);
    s = ts_chunk_reg_get_stats(reg);
    CHECK(s.n_pending == 0 && s.n_chunks == 2);
    ts_chunk_release(reg, fresh);

    /* list: most recent first, bytes add up */
    ts_chunk_entry *list = NULL;
    size_t n = 0;
    CHECK(ts_chunk_reg_list(reg, &list, &n, NULL) == TS_OK && n == 2);
    if (n == 2) {
        CHECK(memcmp(list[0].id.b, id.b, 32) == 0 && memcmp(list[1].id.b, id3.b, 32) == 0);
        CHECK(list[0].refcount == 0 && list[0].n_tokens == 6 && !list[0].has_kv);
        CHECK(list[0].last_use_ms >= list[1].last_use_ms && list[0].last_use_ms > 0);
        CHECK(list[0].bytes + list[1].bytes == ts_chunk_reg_get_stats(reg).bytes_used);
    }
    free(list);
    ts_chunk_reg_destroy(reg);
    ts_chunk_reg_destroy(NULL);
}

/* LRU under a budget, against a model: an array of ids in recency order. */
static void test_lru(void) {
    enum { NT = 8, N_CONTENT = 10 };
    /* measure one chunk's bytes with an unlimited registry */
    ts_chunk_reg *probe = NULL;
    ts_chunk_reg_create(0, &probe, NULL);
    int32_t t[NT];
    float k[3 * NT * 16], v[3 * NT * 16];
    for (int i = 0; i < NT; i++) t[i] = i;
    ts_chunk_id id;
    ts_chunk *h;
    ts_chunk_reg_register(probe, t, NT, TS_CHUNK_CODE, ENC0, FP_A, &id, NULL, &h, NULL);
    make_kv(k, v, NT, 0);
    ts_chunk_attach_kv(probe, h, SHAPE, k, v, NULL);
    ts_chunk_release(probe, h);
    uint64_t one = ts_chunk_reg_get_stats(probe).bytes_used;
    ts_chunk_reg_destroy(probe);

    ts_chunk_reg *reg = NULL;
    CHECK(ts_chunk_reg_create(3 * one + one / 2, &reg, NULL) == TS_OK);
    int model[N_CONTENT]; /* content numbers, most recent first */
    int n_model = 0;
    ts_chunk_id ids[N_CONTENT];
    for (int step = 0; step < 60; step++) {
        int c = (int)(rnd() % N_CONTENT);
        for (int i = 0; i < NT; i++) t[i] = c * 100 + i;
        bool existed;
        ts_chunk *hh = NULL;
        ts_status st = ts_chunk_reg_register(reg, t, NT, TS_CHUNK_CODE, ENC0, FP_A, &ids[c], &existed, &hh, NULL);
        CHECK(st == TS_OK);
        int pos = -1;
        for (int i = 0; i < n_model; i++) if (model[i] == c) pos = i;
        CHECKF(existed == (pos >= 0), "step %d: content %d existed %d model %d", step, c, existed, pos >= 0);
        if (pos >= 0) memmove(model + 1, model, (size_t)pos * sizeof *model);
        else memmove(model + 1, model, (size_t)n_model * sizeof *model), n_model++;
        model[0] = c;
        if (!existed) {
            make_kv(k, v, NT, (uint32_t)c);
            CHECK(ts_chunk_attach_kv(reg, hh, SHAPE, k, v, NULL) == TS_OK);
        }
        ts_chunk_release(reg, hh);
        if (n_model > 3) n_model = 3; /* the least recent beyond 3 were evicted */
        ts_chunk_entry *list;
        size_t n;
        ts_chunk_reg_list(reg, &list, &n, NULL);
        CHECKF((int)n == n_model, "step %d: %zu chunks, model %d", step, n, n_model);
        for (size_t i = 0; i < n && (int)i < n_model; i++)
            CHECKF(memcmp(list[i].id.b, ids[model[i]].b, 32) == 0, "step %d: rank %zu differs", step, i);
        free(list);
        CHECK(ts_chunk_reg_get_stats(reg).bytes_used <= 3 * one + one / 2);
    }
    CHECK(ts_chunk_reg_get_stats(reg).evictions > 0);

    /* referenced chunks are never evicted; when nothing can go, attach fails */
    ts_chunk *held[3];
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < NT; i++) t[i] = 5000 + c * 100 + i;
        CHECK(ts_chunk_reg_register(reg, t, NT, TS_CHUNK_CODE, ENC0, FP_A, &id, NULL, &held[c], NULL) == TS_OK);
        CHECK(ts_chunk_attach_kv(reg, held[c], SHAPE, k, v, NULL) == TS_OK);
    }
    for (int i = 0; i < NT; i++) t[i] = 9000 + i;
    ts_chunk *extra = NULL;
    ts_err e;
    CHECK(ts_chunk_reg_register(reg, t, NT, TS_CHUNK_CODE, ENC0, FP_A, &id, NULL, &extra, NULL) == TS_OK);
    CHECK(ts_chunk_attach_kv(reg, extra, SHAPE, k, v, &e) == TS_ERR_CAPACITY && strstr(e.msg, "budget"));
    ts_chunk_info in;
    ts_chunk_get_info(reg, extra, &in);
    CHECK(!in.has_kv);
    for (int c = 0; c < 3; c++) {
        ts_chunk_get_info(reg, held[c], &in);
        CHECK(in.has_kv && in.tokens[0] == 5000 + c * 100);
    }
    ts_chunk_release(reg, held[0]);
    CHECK(ts_chunk_attach_kv(reg, extra, SHAPE, k, v, &e) == TS_OK); /* held[0] evicted now */
    CHECK(ts_chunk_reg_get_stats(reg).bytes_used <= 3 * one + one / 2);
    ts_chunk_release(reg, extra);
    ts_chunk_release(reg, held[1]);
    ts_chunk_release(reg, held[2]);
    ts_chunk_reg_destroy(reg);
}

/* ---- concurrency smoke test ---- */

typedef struct {
    ts_chunk_reg *reg;
    int seed, fails;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    uint64_t st = 0x1234567ull * (uint64_t)(a->seed + 1);
    enum { NT = 4 };
    float k[3 * NT * 16], v[3 * NT * 16];
    int iters = getenv("TS_TEST_LIGHT") ? 400 : 2000;
    for (int it = 0; it < iters; it++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        int c = (int)(st % 24);
        int32_t t[NT];
        for (int i = 0; i < NT; i++) t[i] = c * 10 + i;
        ts_chunk_id id;
        ts_chunk *h = NULL;
        if (ts_chunk_reg_register(a->reg, t, NT, TS_CHUNK_RAG, ENC0, FP_A, &id, NULL, &h, NULL) != TS_OK) {
            a->fails++;
            continue;
        }
        make_kv(k, v, NT, (uint32_t)c);
        ts_status s = ts_chunk_attach_kv(a->reg, h, SHAPE, k, v, NULL);
        if (s != TS_OK && s != TS_ERR_CAPACITY && s != TS_ERR_INVALID) a->fails++;
        ts_chunk *l = NULL;
        if (ts_chunk_reg_lookup(a->reg, &id, FP_A, &l, NULL) == TS_OK) {
            ts_chunk_info in;
            ts_chunk_get_info(a->reg, l, &in);
            if (in.tokens[1] != c * 10 + 1) a->fails++;
            if (in.has_kv && in.k[5] != k[5]) a->fails++; /* same content, same KV */
            ts_chunk_release(a->reg, l);
        }
        if ((st >> 20) % 16 == 0) ts_chunk_reg_remove(a->reg, &id, NULL);
        ts_chunk_release(a->reg, h);
    }
    return NULL;
}

static void test_threads(void) {
    ts_chunk_reg *reg = NULL;
    ts_chunk_reg_create(12 * 1024, &reg, NULL);
    pthread_t th[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){reg, i, 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECKF(args[i].fails == 0, "worker %d: %d failures", i, args[i].fails);
    ts_chunk_reg_stats s = ts_chunk_reg_get_stats(reg);
    CHECK(s.n_pending == 0);
    CHECK(s.bytes_used <= 12 * 1024);
    CHECK(s.hits > 0 && s.evictions > 0);
    ts_chunk_entry *list;
    size_t n;
    ts_chunk_reg_list(reg, &list, &n, NULL);
    uint64_t sum = 0;
    int refs = 0;
    for (size_t i = 0; i < n; i++) sum += list[i].bytes, refs += list[i].refcount;
    CHECK(n == s.n_chunks && sum == s.bytes_used && refs == 0);
    free(list);
    ts_chunk_reg_destroy(reg);
}

/* keep_tokens: over budget, the least recently used chunk loses its KV
 * but stays registered; a held chunk keeps it; whole chunks go only when
 * dropping KV is not enough. */
static void test_keep_tokens(void) {
    enum { NT = 8 };
    ts_chunk_reg *reg = NULL;
    uint64_t kv = 2 * ts_chunk_kv_bytes(SHAPE, NT);
    CHECK(ts_chunk_reg_create(kv + kv / 2, &reg, NULL) == TS_OK);
    ts_chunk_reg_set_keep_tokens(reg, true);
    int32_t t[NT];
    float k[3 * NT * 16], v[3 * NT * 16];
    ts_chunk_id ids[3];
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < NT; i++) t[i] = c * 100 + i;
        ts_chunk *h = NULL;
        CHECK(ts_chunk_reg_register(reg, t, NT, TS_CHUNK_RAG, ENC0, FP_A, &ids[c], NULL, &h, NULL) == TS_OK);
        make_kv(k, v, NT, (uint32_t)c);
        CHECK(ts_chunk_attach_kv(reg, h, SHAPE, k, v, NULL) == TS_OK);
        ts_chunk_release(reg, h);
    }
    /* only the newest fits with KV; the others are still there without it */
    for (int c = 0; c < 3; c++) {
        ts_chunk *h = NULL;
        CHECK(ts_chunk_reg_lookup(reg, &ids[c], FP_A, &h, NULL) == TS_OK);
        ts_chunk_info info;
        if (h) ts_chunk_get_info(reg, h, &info);
        CHECKF(h && info.has_kv == (c == 2) && info.n_tokens == NT && info.tokens[0] == c * 100,
               "chunk %d: has_kv %d", c, h ? info.has_kv : -1);
        ts_chunk_release(reg, h);
    }
    /* KV can be attached again, evicting the other's */
    ts_chunk *h = NULL;
    CHECK(ts_chunk_reg_lookup(reg, &ids[0], FP_A, &h, NULL) == TS_OK);
    if (h) {
        make_kv(k, v, NT, 0);
        CHECK(ts_chunk_attach_kv(reg, h, SHAPE, k, v, NULL) == TS_OK);
        ts_chunk_info info;
        ts_chunk_get_info(reg, h, &info);
        CHECK(info.has_kv && info.k[5] == k[5]);
        ts_chunk_release(reg, h);
    }
    ts_chunk_reg_stats st = ts_chunk_reg_get_stats(reg);
    CHECKF(st.n_chunks == 3 && st.evictions == 3 && st.bytes_used <= st.budget,
           "%u chunks, %llu evictions, %llu bytes", st.n_chunks, (unsigned long long)st.evictions,
           (unsigned long long)st.bytes_used);
    ts_chunk_reg_destroy(reg);
}

int main(void) {
    for (int i = 0; i < 32; i++) {
        FP_A[i] = (uint8_t)i;
        FP_B[i] = (uint8_t)(i + 1);
        ENC0[i] = 0;
        ENC1[i] = (uint8_t)(200 - i);
    }
    test_ids();
    test_basic();
    test_lru();
    test_threads();
    test_keep_tokens();
    return ts_test_done("test_chunk");
}
