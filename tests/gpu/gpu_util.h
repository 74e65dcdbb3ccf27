/* Helpers shared by the GPU test and benchmark: random inputs, device
 * buffers that abort the test run on failure (a test program, not library
 * code), and error measures. */
#ifndef TS_TESTS_GPU_UTIL_H
#define TS_TESTS_GPU_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/half.h"
#include "kv/kv.h"
#include "ops/cpu/cpu_internal.h"
#include "ops/cuda/cuda.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static inline int rnd_int(int n) { return (int)(rnd_u32() % (uint32_t)n); }
/* uniform in [-1, 1) */
static inline float rnd(void) { return (float)((rnd_u32() & 0xffffff) / 8388608.0 - 1.0); }
static inline void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = rnd() * scale;
}
static inline void shuffle(int32_t *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = rnd_int(i + 1);
        int32_t t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(2);
    }
    return p;
}

/* The error bound of the 16-bit KV shared level (attention_shared,
 * attention_cascade): q and the probabilities go to the tensor cores as two
 * 16-bit parts each (~2^-17 relative left), or with TS_CASCADE_PARTS=1 as
 * one (16-bit operands: the bf16 bound, 1e-2). */
static inline double tol_kv16_mma(void) {
    const char *p = getenv("TS_CASCADE_PARTS");
    return p && !strcmp(p, "1") ? 1e-2 : 1e-4;
}

static ts_cuda *g_cu;

static inline void die_cuda(const char *where) {
    fprintf(stderr, "FATAL %s: %s\n", where,
            ts_cuda_last_error(g_cu) ? ts_cuda_last_error(g_cu) : "(no detail)");
    exit(2);
}

/* Opens device 0 into g_cu and returns its ops; when it cannot, prints why
 * (and, for a test, the runner's "name: 0 passed, 1 failed" line) and exits 1.
 * Tests (name != NULL) seed the generator from TS_GPU_SEED or the clock and
 * print the seed. */
static inline const ts_ops *gpu_start(const char *name) {
    ts_err err;
    g_cu = ts_cuda_create(0, &err);
    if (!g_cu) {
        fprintf(stderr, "no CUDA backend: %s\n", err.msg);
        if (name) printf("%s: 0 passed, 1 failed\n", name);
        exit(1);
    }
    if (name) {
        const char *seed = getenv("TS_GPU_SEED");
        uint64_t sd = seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL);
        g_rng ^= sd * 0x9e3779b97f4a7c15ull;
        if (!g_rng) g_rng = 1;
        printf("%s seed %llu (TS_GPU_SEED to repeat)\n", name, (unsigned long long)sd);
    }
    return ts_cuda_ops(g_cu);
}

/* Device copy of host data. */
static inline void *dup_dev(const void *host, size_t bytes) {
    void *d = ts_cuda_alloc(g_cu, bytes);
    if (!d || ts_cuda_upload(g_cu, d, host, bytes, NULL) != TS_OK) die_cuda("upload");
    return d;
}
/* Device buffer of n floats, all NaN (poisoned). */
static inline float *nan_dev(size_t n) {
    float *d = (float *)ts_cuda_alloc(g_cu, n * sizeof(float));
    if (!d) die_cuda("alloc");
    ts_cuda_memset(g_cu, d, 0xff, n * sizeof(float)); /* 0xffffffff is a NaN */
    return d;
}
static inline void get(void *host, const void *dev, size_t bytes) {
    if (ts_cuda_download(g_cu, host, dev, bytes, NULL) != TS_OK) die_cuda("download");
}
static inline void dfree(void *d) { ts_cuda_free(g_cu, d); }

/* KV pool elements (ts_kv_elem_bytes gives their size): n floats stored
 * as dt (f32 copied, f16 / bf16 rounded to nearest even) or widened back. */
static inline void kv_encode(void *dst, const float *src, size_t n, ts_dtype dt) {
    uint16_t *h = (uint16_t *)dst;
    for (size_t i = 0; i < n; i++) {
        if (dt == TS_DT_F32) ((float *)dst)[i] = src[i];
        else h[i] = dt == TS_DT_F16 ? ts_f32_to_f16(src[i]) : ts_f32_to_bf16(src[i]);
    }
}
static inline void kv_decode(float *dst, const void *src, size_t n, ts_dtype dt) {
    const uint16_t *h = (const uint16_t *)src;
    for (size_t i = 0; i < n; i++) {
        if (dt == TS_DT_F32) dst[i] = ((const float *)src)[i];
        else dst[i] = dt == TS_DT_F16 ? ts_f16_to_f32(h[i]) : ts_bf16_to_f32(h[i]);
    }
}
/* A device pool of n elements of dt from random floats (scale s); *host
 * gets the encoded host copy (the caller frees it). */
static inline void *kv_dev_rand(size_t n, ts_dtype dt, float s, void **host) {
    float *f = (float *)xmalloc(n * 4);
    fill(f, n, s);
    void *h = xmalloc(n * ts_kv_elem_bytes(dt));
    kv_encode(h, f, n, dt);
    free(f);
    void *d = dup_dev(h, n * ts_kv_elem_bytes(dt));
    if (host) *host = h;
    else free(h);
    return d;
}
static inline const char *kv_name(ts_dtype dt) {
    return dt == TS_DT_F32 ? "f32" : dt == TS_DT_F16 ? "f16" : "bf16";
}

/* ||a - b|| / ||b||; NaN anywhere gives +inf. */
static inline double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    if (r == 0) return d == 0 ? 0 : INFINITY;
    return sqrt(d / r);
}

/* Largest |a - b| / (1 + |b|) over lse values; infinities must match, NaN fails. */
static inline double lse_err(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i]) return INFINITY;
            continue;
        }
        double e = fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i]));
        if (e > worst) worst = e;
    }
    return worst;
}

#endif
