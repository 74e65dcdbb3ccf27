/* Matrix products with AVX-512 (16 floats per register) and AVX512-BF16.
 *
 * n < TS_GEMM_MIN_N (decode) in f32 precision: gemv_avx512.c's weight streams.
 * Otherwise (prefill, and TS_PREC_BF16 at any n, so that a row's result never
 * depends on how many rows share the call): per thread, weight columns are packed into k-major
 * panels of 64 outputs and a 6x64 register-blocked kernel (24 accumulators)
 * sweeps all activation rows over each panel. With TS_PREC_BF16 and bf16
 * weights the activations are converted to bf16 once per call and the
 * kernel uses vdpbf16ps on (k, k+1) pairs; otherwise f32 FMA (TS_PREC_BF16
 * with f32/f16 weights rounds the activations and multiplies in f32, as the
 * reference defines it). */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/simd_avx512.h"

#define TS_GEMM_MIN_N 8
#define MR 6
#define NR 64    /* outputs per panel: 4 zmm */
#define KC 128   /* f32 panel depth (k values) */
#define KC2 128  /* bf16 panel depth (k pairs) */

#define TS_INLINE static inline __attribute__((always_inline))

typedef struct mm_job {
    ts_cpu *cpu;
    float *y;
    const float *x;       /* f32 activations [n][K] (rounded if BF16 prec) */
    const uint16_t *xb;   /* bf16 activations [n][Kp], Kp = K rounded up to even */
    int n, Kp;
    const ts_wmat *w;
    const float *bias;
    _Atomic int fail;
} mm_job;

/* ---- prefill: register-blocked kernels over packed panels ---- */

/* C[m][64] (stride ldc) += A[m][kc] (f32, stride lda) . P[kc][64]. */
TS_INLINE void kern_f32(int m, const float *a, size_t lda, const float *p, int kc, float *c,
                        size_t ldc) {
    __m512 acc[MR][4];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < m; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < 4; q++) acc[r][q] = _mm512_loadu_ps(c + r * ldc + 16 * q);
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(p + k * NR), b1 = _mm512_load_ps(p + k * NR + 16);
        __m512 b2 = _mm512_load_ps(p + k * NR + 32), b3 = _mm512_load_ps(p + k * NR + 48);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < m; r++) {
            __m512 av = _mm512_set1_ps(a[r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(av, b3, acc[r][3]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < m; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < 4; q++) _mm512_storeu_ps(c + r * ldc + 16 * q, acc[r][q]);
}

/* C[m][64] += A[m][2 kc2] (bf16, as u32 pairs, stride lda32) . P[kc2][64][2]. */
TS_INLINE void kern_bf16(int m, const uint32_t *a, size_t lda32, const uint32_t *p, int kc2,
                         float *c, size_t ldc) {
    __m512 acc[MR][4];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < m; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < 4; q++) acc[r][q] = _mm512_loadu_ps(c + r * ldc + 16 * q);
    for (int k = 0; k < kc2; k++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(p + k * NR);
        __m512bh b1 = (__m512bh)_mm512_load_si512(p + k * NR + 16);
        __m512bh b2 = (__m512bh)_mm512_load_si512(p + k * NR + 32);
        __m512bh b3 = (__m512bh)_mm512_load_si512(p + k * NR + 48);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < m; r++) {
            float af; /* broadcast from memory (a load-port op, not a shuffle) */
            memcpy(&af, a + r * lda32 + k, 4);
            __m512bh av = (__m512bh)_mm512_castps_si512(_mm512_set1_ps(af));
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], av, b2);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], av, b3);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < m; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < 4; q++) _mm512_storeu_ps(c + r * ldc + 16 * q, acc[r][q]);
}

static void kern_m(int m, int bf, const void *a, size_t lda, const void *p, int kc, float *c,
                   size_t ldc) {
#define KM(M)                                                          \
    case M:                                                            \
        if (bf) kern_bf16(M, a, lda, p, kc, c, ldc);                   \
        else kern_f32(M, a, lda, p, kc, c, ldc);                       \
        break;
    switch (m) {
        KM(6)
        KM(5)
        KM(4)
        KM(3)
        KM(2)
        KM(1)
    default: break;
    }
#undef KM
}

/* P[k][64] = W[j0 + c][k0 + k] widened to f32; zero past the last row. */
static void pack_f32(float *p, const ts_wmat *w, int j0, int k0, int kc) {
    for (int c = 0; c < NR; c++) {
        int jr = j0 + c;
        if (jr >= w->rows) {
            for (int k = 0; k < kc; k++) p[k * NR + c] = 0.0f;
            continue;
        }
        size_t base = (size_t)jr * (size_t)w->cols + (size_t)k0;
        int k = 0;
        for (; k + 16 <= kc; k += 16) {
            float t[16];
            _mm512_storeu_ps(t, ld16(w->data, w->dtype, base + (size_t)k, 0xffff));
            for (int q = 0; q < 16; q++) p[(k + q) * NR + c] = t[q];
        }
        ts_wmat wm = *w;
        for (; k < kc; k++) p[k * NR + c] = ts_wmat_at(&wm, jr, k0 + k);
    }
}

/* r[0..16) (16 x 16 u32, one row each) transposed in place: r[e] becomes
 * column e. Pairs of rows interleave (32-bit, then 64-bit), which leaves
 * each 128-bit block holding four rows of one column; a 4 x 4 shuffle of
 * those blocks finishes it. */
TS_INLINE void transpose16_u32(__m512i r[16]) {
    __m512i l[8], h[8], c[4][4];
    for (int p = 0; p < 8; p++) {
        l[p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
        h[p] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
    }
    for (int q = 0; q < 4; q++) { /* c[q][j]: block b = rows 4q..4q+3 of column 4b + j */
        c[q][0] = _mm512_unpacklo_epi64(l[2 * q], l[2 * q + 1]);
        c[q][1] = _mm512_unpackhi_epi64(l[2 * q], l[2 * q + 1]);
        c[q][2] = _mm512_unpacklo_epi64(h[2 * q], h[2 * q + 1]);
        c[q][3] = _mm512_unpackhi_epi64(h[2 * q], h[2 * q + 1]);
    }
    for (int jj = 0; jj < 4; jj++) {
        __m512i x0 = _mm512_shuffle_i32x4(c[0][jj], c[1][jj], 0x44);
        __m512i x1 = _mm512_shuffle_i32x4(c[0][jj], c[1][jj], 0xEE);
        __m512i x2 = _mm512_shuffle_i32x4(c[2][jj], c[3][jj], 0x44);
        __m512i x3 = _mm512_shuffle_i32x4(c[2][jj], c[3][jj], 0xEE);
        r[jj] = _mm512_shuffle_i32x4(x0, x2, 0x88);
        r[4 + jj] = _mm512_shuffle_i32x4(x0, x2, 0xDD);
        r[8 + jj] = _mm512_shuffle_i32x4(x1, x3, 0x88);
        r[12 + jj] = _mm512_shuffle_i32x4(x1, x3, 0xDD);
    }
}

/* P[k2][64] = bf16 pair (W[j0+c][2(k20+k2)], W[..][+1]); zero past the
 * matrix. Whole 16-row x 16-pair tiles inside the matrix move as one
 * register transpose (the packing is a pass over every weight at every
 * call, so a scalar loop here cost as much as a decode step's whole read
 * for a 2-row product); the edges go element by element. */
static void pack_bf16(uint32_t *p, const ts_wmat *w, int j0, int k20, int kc2, int nj0,
                      int nk20) {
    const uint16_t *wd = w->data;
    int K = w->cols;
    for (int c0 = 0; c0 < NR; c0 += 16)
        for (int k = 0; k < kc2; k += 16) {
            /* the same tile of the next chunk (nj0 < 0: none), one line a row */
            if (nj0 >= 0 && 2 * (nk20 + k) < K)
                for (int a = 0; a < 16 && nj0 + c0 + a < w->rows; a++)
                    _mm_prefetch((const char *)(wd + (size_t)(nj0 + c0 + a) * (size_t)K +
                                                2 * (size_t)(nk20 + k)),
                                 _MM_HINT_T0);
            if (j0 + c0 + 16 <= w->rows && k + 16 <= kc2 && 2 * (k20 + k + 16) <= K) {
                __m512i r[16];
                for (int a = 0; a < 16; a++)
                    r[a] = _mm512_loadu_si512(wd + (size_t)(j0 + c0 + a) * (size_t)K +
                                              2 * (size_t)(k20 + k));
                transpose16_u32(r);
                for (int e = 0; e < 16; e++) _mm512_store_si512(p + (size_t)(k + e) * NR + c0, r[e]);
                continue;
            }
            for (int c = c0; c < c0 + 16; c++) {
                int jr = j0 + c;
                const uint16_t *row = jr < w->rows ? wd + (size_t)jr * (size_t)K : NULL;
                for (int kk = k; kk < k + 16 && kk < kc2; kk++) {
                    int e = 2 * (k20 + kk);
                    uint32_t lo = row && e < K ? row[e] : 0, hi = row && e + 1 < K ? row[e + 1] : 0;
                    p[(size_t)kk * NR + c] = lo | hi << 16;
                }
            }
        }
}

/* Prefetches the weights the next (panel, depth chunk) packs: rows [j0,
 * j0 + 64), depth units [k0, k0 + kc) of eb bytes each. The packing walks
 * 64 rows at once, a pattern the hardware prefetcher does not follow. */
static void prefetch_chunk(const ts_wmat *w, int j0, int k0, int kc, size_t eb) {
    size_t rb = (size_t)w->cols * (w->dtype == TS_DT_F32 ? 4 : 2);
    for (int r = j0; r < j0 + NR && r < w->rows; r++) {
        const char *q = (const char *)w->data + (size_t)r * rb + (size_t)k0 * eb;
        for (size_t b = 0; b < (size_t)kc * eb; b += 64) _mm_prefetch(q + b, _MM_HINT_T0);
    }
}

static void gemm_task(void *vctx, int ith, int nth) {
    mm_job *j = vctx;
    const ts_wmat *w = j->w;
    int K = w->cols, N = w->rows, n = j->n, bf = j->xb != NULL;
    void *p = ts_scratch_get(&j->cpu->thr[ith], (size_t)KC * NR * 4);
    if (!p) {
        j->fail = 1;
        return;
    }
    int n_panels = (N + NR - 1) / NR;
    int depth = bf ? j->Kp / 2 : K, step = bf ? KC2 : KC;
    for (int pi = ith; pi < n_panels; pi += nth) {
        int j0 = pi * NR, jn = N - j0 < NR ? N - j0 : NR;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < jn; c++)
                j->y[(size_t)i * N + (size_t)(j0 + c)] = j->bias ? j->bias[j0 + c] : 0.0f;
        for (int k0 = 0; k0 < depth; k0 += step) {
            int kc = depth - k0 < step ? depth - k0 : step;
            /* the chunk packed next: deeper in this panel, else the next panel */
            int nj0 = k0 + step < depth ? j0 : pi + nth < n_panels ? (pi + nth) * NR : -1;
            int nk0 = k0 + step < depth ? k0 + step : 0;
            if (bf) {
                pack_bf16(p, w, j0, k0, kc, nj0, nk0);
            } else {
                pack_f32(p, w, j0, k0, kc);
                if (nj0 >= 0)
                    prefetch_chunk(w, nj0, nk0, depth - nk0 < step ? depth - nk0 : step,
                                   w->dtype == TS_DT_F32 ? 4 : 2);
            }
            for (int i = 0; i < n; i += MR) {
                int m = n - i < MR ? n - i : MR;
                const void *a;
                size_t lda;
                if (bf) {
                    lda = (size_t)j->Kp / 2;
                    a = (const uint32_t *)j->xb + (size_t)i * lda + k0;
                } else {
                    lda = (size_t)K;
                    a = j->x + (size_t)i * lda + k0;
                }
                float *c = j->y + (size_t)i * N + j0;
                if (jn == NR) {
                    kern_m(m, bf, a, lda, p, kc, c, (size_t)N);
                } else {
                    float t[MR * NR];
                    _Pragma("GCC unroll 8")
                    for (int r = 0; r < m; r++)
                        for (int q = 0; q < NR; q++) t[r * NR + q] = q < jn ? c[(size_t)r * N + q] : 0.f;
                    kern_m(m, bf, a, lda, p, kc, t, NR);
                    _Pragma("GCC unroll 8")
                    for (int r = 0; r < m; r++)
                        for (int q = 0; q < jn; q++) c[(size_t)r * N + q] = t[r * NR + q];
                }
            }
        }
    }
}

/* Converts rows [lo, hi) of x to bf16 (round to nearest even), zero pad. */
typedef struct cvt_job {
    const float *x;
    uint16_t *xb;
    int n, K, Kp;
} cvt_job;

static void cvt_task(void *vctx, int ith, int nth) {
    cvt_job *c = vctx;
    long lo, hi;
    ts_pool_range(c->n, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        const float *xi = c->x + (size_t)i * (size_t)c->K;
        uint16_t *o = c->xb + (size_t)i * (size_t)c->Kp;
        int k = 0;
        for (; k + 32 <= c->K; k += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(xi + k + 16), _mm512_loadu_ps(xi + k));
            _mm512_storeu_si512(o + k, (__m512i)v);
        }
        for (; k < c->K; k++) o[k] = ts_f32_to_bf16(xi[k]);
        if (c->Kp > c->K) o[c->K] = 0;
    }
}

/* The activations as the kernels take them (see the file comment): *xb set
 * (bf16 copy, *Kp its row stride) for TS_PREC_BF16 with bf16 weights, else
 * *xf (x itself, or rounded to bf16 for TS_PREC_BF16). Uses cpu->shared.
 * Returns 0 when scratch memory runs out. */
static int mm_prep(ts_cpu *cpu, const float *x, int n, const ts_wmat *w, ts_prec prec,
                   const float **xf, const uint16_t **xb, int *Kp) {
    *xf = x;
    *xb = NULL;
    *Kp = 0;
    if (prec != TS_PREC_BF16) return 1;
    if (w->dtype == TS_DT_BF16) {
        int kp = (w->cols + 1) & ~1;
        uint16_t *b = ts_scratch_get(&cpu->shared, (size_t)n * (size_t)kp * 2);
        if (!b) return 0;
        cvt_job c = {.x = x, .xb = b, .n = n, .K = w->cols, .Kp = kp};
        if (n >= TS_GEMM_MIN_N) ts_pool_run(cpu->pool, cvt_task, &c);
        else cvt_task(&c, 0, 1);
        *xb = b;
        *Kp = kp;
        return 1;
    }
    size_t cnt = (size_t)n * (size_t)w->cols;
    float *xr = ts_scratch_get(&cpu->shared, cnt * sizeof(float));
    if (!xr) return 0;
    for (size_t i = 0; i < cnt; i++) xr[i] = ts_round_bf16(x[i]);
    *xf = xr;
    return 1;
}

static int mm_dtype_ok(const ts_wmat *w) {
    return w->dtype == TS_DT_F32 || w->dtype == TS_DT_F16 || w->dtype == TS_DT_BF16;
}

void ts_avx512_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                      const float *bias, ts_prec prec) {
    ts_cpu *cpu = ctx;
    if (n <= 0) return;
    const float *xf;
    const uint16_t *xb;
    int Kp;
    if (!mm_dtype_ok(w)) {
        ts_ref_matmul(ctx, y, x, n, w, bias, prec);
        return;
    }
    if (n < TS_GEMM_MIN_N && prec != TS_PREC_BF16) { /* bf16: rows independent of n */
        ts_avx512_gemv(cpu, &y, x, n, w, &bias, 1);
        return;
    }
    if (!mm_prep(cpu, x, n, w, prec, &xf, &xb, &Kp)) {
        ts_ref_matmul(ctx, y, x, n, w, bias, prec);
        return;
    }
    mm_job j = {.cpu = cpu, .y = y, .x = xf, .xb = xb, .Kp = Kp, .n = n, .w = w, .bias = bias};
    ts_pool_run(cpu->pool, gemm_task, &j);
    if (j.fail) ts_ref_matmul(ctx, y, x, n, w, bias, prec);
}

void ts_avx512_matmul_multi(void *ctx, float *const *y, const float *x, int n, const ts_wmat *w,
                            const float *const *bias, int n_w, ts_prec prec) {
    ts_cpu *cpu = ctx;
    if (n <= 0 || n_w <= 0) return;
    int ok = n < TS_GEMM_MIN_N && prec != TS_PREC_BF16 && n_w <= TS_GEMV_MAX_W;
    for (int i = 0; ok && i < n_w; i++)
        ok = mm_dtype_ok(&w[i]) && w[i].dtype == w[0].dtype && w[i].cols == w[0].cols;
    if (ok) {
        ts_avx512_gemv(cpu, y, x, n, w, bias, n_w);
        return;
    }
    for (int i = 0; i < n_w; i++) ts_avx512_matmul(ctx, y[i], x, n, &w[i], bias ? bias[i] : NULL, prec);
}

void ts_avx512_matmul_swiglu(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                             const ts_wmat *w_up, ts_prec prec) {
    ts_cpu *cpu = ctx;
    if (n <= 0) return;
    size_t cnt = (size_t)n * (size_t)w_up->rows;
    float *u = ts_scratch_get(&cpu->fused, cnt * sizeof(float));
    if (!u) { /* no memory: one row of up at a time */
        ts_cpu_swiglu_lowmem(ctx, ts_avx512_matmul, out, x, n, w_gate, w_up, prec);
        return;
    }
    const ts_wmat w[2] = {*w_gate, *w_up};
    float *const y[2] = {out, u};
    ts_avx512_matmul_multi(ctx, y, x, n, w, NULL, 2, prec);
    ts_cpu_swiglu(ctx, out, out, u, n, w_up->rows);
}
