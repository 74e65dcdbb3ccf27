/* Matrix products with AVX2 + FMA (8 floats per register).
 *
 * n < TS_GEMM_MIN_N (decode): threads take chunks of consecutive weight rows
 * and stream each front to back, each cache line of weights feeding up to 4
 * activation rows. Otherwise (prefill): weight columns are packed per
 * thread into k-major panels of 16 outputs (widened to f32) and a 6x16
 * register-blocked FMA kernel sweeps all activation rows over each panel.
 * AVX2 has no bf16 dot product, so TS_PREC_BF16 rounds the activations to
 * bf16 (into scratch) and then multiplies in f32: the same result, exactly
 * as the reference defines it. */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>

#include "ops/cpu/cpu_internal.h"

#define TS_GEMM_MIN_N 8
#define MR 6
#define NR 16
#define KC 256

#define TS_INLINE static inline __attribute__((always_inline))

/* 8 weights at w[k..k+8) widened to f32. */
TS_INLINE __m256 ld8(const void *w, ts_dtype dt, size_t k) {
    if (dt == TS_DT_F32) return _mm256_loadu_ps((const float *)w + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (dt == TS_DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static float ts_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Bytes ahead of the current read that the decode kernel prefetches. Weight
 * rows are walked one at a time, front to back, so a chunk of rows is one
 * sequential stream; the prefetch carries it across 4 KiB pages (mapped
 * weights are not huge pages), where hardware prefetch stops. */
#define TS_GEMV_PF 1024

/* y[b][j] (row stride ldy) = x[b] . W[j] (+ bias[j]) for NB activation rows
 * x[b] (stride K) and one weight row j. Each 64-byte line of the row is
 * loaded once and feeds all NB rows; A accumulators per activation row keep
 * enough FMA chains in flight. */
TS_INLINE void gemv_row(float *y, size_t ldy, const float *x, int K, const void *w,
                        ts_dtype dt, int j, int NB, const float *bias) {
    enum { A = 2 };
    const size_t es = dt == TS_DT_F32 ? 4 : 2;
    const int per = (int)(64 / es); /* elements per cache line */
    const char *wr = (const char *)w + (size_t)j * (size_t)K * es;
    __m256 acc[4][A];
    _Pragma("GCC unroll 8")
    for (int b = 0; b < NB; b++)
        _Pragma("GCC unroll 8")
        for (int a = 0; a < A; a++) acc[b][a] = _mm256_setzero_ps();
    int k = 0;
    for (; k + per <= K; k += per) {
        _mm_prefetch(wr + (size_t)k * es + TS_GEMV_PF, _MM_HINT_T0);
        _Pragma("GCC unroll 8")
        for (int v = 0; v < per / 8; v++) {
            __m256 wv = ld8(wr, dt, (size_t)k + 8 * (size_t)v);
            _Pragma("GCC unroll 8")
            for (int b = 0; b < NB; b++)
                acc[b][v % A] = _mm256_fmadd_ps(
                    wv, _mm256_loadu_ps(x + (size_t)b * K + k + 8 * v), acc[b][v % A]);
        }
    }
    for (; k + 8 <= K; k += 8) {
        __m256 wv = ld8(wr, dt, (size_t)k);
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++)
            acc[b][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)b * K + k), acc[b][0]);
    }
    ts_wmat wm = {.data = w, .dtype = dt, .rows = j + 1, .cols = K};
    _Pragma("GCC unroll 8")
    for (int b = 0; b < NB; b++) {
        __m256 t = acc[b][0];
        _Pragma("GCC unroll 8")
        for (int a = 1; a < A; a++) t = _mm256_add_ps(t, acc[b][a]);
        float s = ts_hsum8(t);
        for (int kk = k; kk < K; kk++) s += x[(size_t)b * K + kk] * ts_wmat_at(&wm, j, kk);
        if (bias) s += bias[j];
        y[(size_t)b * ldy + (size_t)j] = s;
    }
}

/* Rows [r0, r1) of y for NB activation rows; dt and NB constant per copy. */
TS_INLINE void gemv_rows(float *y, size_t ldy, const float *x, int K, const void *w,
                         ts_dtype dt, int r0, int r1, int NB, const float *bias) {
    for (int r = r0; r < r1; r++) gemv_row(y, ldy, x, K, w, dt, r, NB, bias);
}

#define GEMV_NB(DT)                                                                \
    switch (nb) {                                                                  \
    case 4: gemv_rows(yi, ldy, xi, K, w->data, DT, r0, r1, 4, j->bias); break;     \
    case 3: gemv_rows(yi, ldy, xi, K, w->data, DT, r0, r1, 3, j->bias); break;     \
    case 2: gemv_rows(yi, ldy, xi, K, w->data, DT, r0, r1, 2, j->bias); break;     \
    default: gemv_rows(yi, ldy, xi, K, w->data, DT, r0, r1, 1, j->bias); break;    \
    }

typedef struct mm_job {
    ts_cpu *cpu;
    float *y;
    const float *x;
    int n;
    const ts_wmat *w;
    const float *bias;
    _Atomic int fail;
    _Atomic long next; /* decode: next chunk of weight rows */
} mm_job;

/* Weight bytes per chunk of rows handed out in decode: small enough to stay
 * in L2 while a second group of activation rows sweeps it, large enough that
 * each chunk is a long sequential stream. */
#define TS_GEMV_CHUNK 65536

/* Threads take chunks of consecutive weight rows from an atomic counter (a
 * thread slowed by another process just takes fewer) and sweep each chunk
 * once per group of up to 4 activation rows. */
static void gemv_task(void *vctx, int ith, int nth) {
    (void)ith;
    (void)nth;
    mm_job *j = vctx;
    const ts_wmat *w = j->w;
    int K = w->cols;
    size_t ldy = (size_t)w->rows, rb = (size_t)K * (w->dtype == TS_DT_F32 ? 4 : 2);
    int cr = rb >= TS_GEMV_CHUNK ? 1 : (int)(TS_GEMV_CHUNK / rb);
    for (;;) {
        long c = atomic_fetch_add(&j->next, 1);
        if (c * cr >= w->rows) break;
        int r0 = (int)c * cr, r1 = w->rows - r0 < cr ? w->rows : r0 + cr;
        for (int i = 0; i < j->n; i += 4) {
            int nb = j->n - i >= 4 ? 4 : j->n - i;
            const float *xi = j->x + (size_t)i * (size_t)K;
            float *yi = j->y + (size_t)i * ldy;
            switch (w->dtype) {
            case TS_DT_BF16: GEMV_NB(TS_DT_BF16) break;
            case TS_DT_F16: GEMV_NB(TS_DT_F16) break;
            default: GEMV_NB(TS_DT_F32) break;
            }
        }
    }
}

/* C[m][16] (row stride ldc) += A[m][kc] (stride lda) . P[kc][16]. */
TS_INLINE void kern(int m, const float *a, size_t lda, const float *p, int kc, float *c,
                    size_t ldc) {
    __m256 acc[MR][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < m; r++) {
        acc[r][0] = _mm256_loadu_ps(c + r * ldc);
        acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(p + k * NR), b1 = _mm256_load_ps(p + k * NR + 8);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < m; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < m; r++) {
        _mm256_storeu_ps(c + r * ldc, acc[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
}

static void kern_m(int m, const float *a, size_t lda, const float *p, int kc, float *c,
                   size_t ldc) {
    switch (m) {
    case 6: kern(6, a, lda, p, kc, c, ldc); break;
    case 5: kern(5, a, lda, p, kc, c, ldc); break;
    case 4: kern(4, a, lda, p, kc, c, ldc); break;
    case 3: kern(3, a, lda, p, kc, c, ldc); break;
    case 2: kern(2, a, lda, p, kc, c, ldc); break;
    default: kern(1, a, lda, p, kc, c, ldc); break;
    }
}

/* P[k][16] = W[j0 + c][k0 + k] as f32, zero past the matrix's rows. */
static void pack_panel(float *p, const ts_wmat *w, int j0, int k0, int kc) {
    for (int c = 0; c < NR; c++) {
        int jr = j0 + c;
        if (jr >= w->rows) {
            for (int k = 0; k < kc; k++) p[k * NR + c] = 0.0f;
            continue;
        }
        size_t base = (size_t)jr * (size_t)w->cols + (size_t)k0;
        if (w->dtype == TS_DT_BF16) {
            const uint16_t *s = (const uint16_t *)w->data + base;
            for (int k = 0; k < kc; k++) p[k * NR + c] = ts_bf16_to_f32(s[k]);
        } else if (w->dtype == TS_DT_F32) {
            const float *s = (const float *)w->data + base;
            for (int k = 0; k < kc; k++) p[k * NR + c] = s[k];
        } else {
            const uint16_t *s = (const uint16_t *)w->data + base;
            int k = 0;
            for (; k + 8 <= kc; k += 8) {
                float t[8];
                _mm256_storeu_ps(t, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + k))));
                for (int q = 0; q < 8; q++) p[(k + q) * NR + c] = t[q];
            }
            for (; k < kc; k++) p[k * NR + c] = ts_f16_to_f32(s[k]);
        }
    }
}

/* Panels are packed PG at a time so that each 6-row block of activations
 * (from L1) is used against all of them before moving on. */
#define PG 8

static void gemm_task(void *vctx, int ith, int nth) {
    mm_job *j = vctx;
    const ts_wmat *w = j->w;
    int K = w->cols, N = w->rows, n = j->n;
    float *p = ts_scratch_get(&j->cpu->thr[ith], (size_t)PG * KC * NR * sizeof(float));
    if (!p) {
        j->fail = 1;
        return;
    }
    int n_groups = (N + PG * NR - 1) / (PG * NR);
    for (int gi = ith; gi < n_groups; gi += nth) {
        int g0 = gi * PG * NR, gn = N - g0 < PG * NR ? N - g0 : PG * NR;
        int np = (gn + NR - 1) / NR;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < gn; c++)
                j->y[(size_t)i * N + (size_t)(g0 + c)] = j->bias ? j->bias[g0 + c] : 0.0f;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            for (int q = 0; q < np; q++) pack_panel(p + (size_t)q * KC * NR, w, g0 + q * NR, k0, kc);
            for (int i = 0; i < n; i += MR) {
                int m = n - i < MR ? n - i : MR;
                const float *a = j->x + (size_t)i * K + k0;
                for (int q = 0; q < np; q++) {
                    int j0 = g0 + q * NR, jn = N - j0 < NR ? N - j0 : NR;
                    const float *pq = p + (size_t)q * KC * NR;
                    float *c = j->y + (size_t)i * N + j0;
                    if (jn == NR) {
                        kern_m(m, a, (size_t)K, pq, kc, c, (size_t)N);
                    } else {
                        float t[MR * NR];
                        for (int r = 0; r < m; r++)
                            for (int u = 0; u < NR; u++) t[r * NR + u] = u < jn ? c[(size_t)r * N + u] : 0.f;
                        kern_m(m, a, (size_t)K, pq, kc, t, NR);
                        for (int r = 0; r < m; r++)
                            for (int u = 0; u < jn; u++) c[(size_t)r * N + u] = t[r * NR + u];
                    }
                }
            }
        }
    }
}

void ts_avx2_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                    const float *bias, ts_prec prec) {
    ts_cpu *cpu = ctx;
    if (n <= 0) return;
    if (w->dtype != TS_DT_F32 && w->dtype != TS_DT_F16 && w->dtype != TS_DT_BF16) {
        ts_ref_matmul(ctx, y, x, n, w, bias, prec);
        return;
    }
    if (prec == TS_PREC_BF16) {
        size_t cnt = (size_t)n * (size_t)w->cols;
        float *xr = ts_scratch_get(&cpu->shared, cnt * sizeof(float));
        if (!xr) {
            ts_ref_matmul(ctx, y, x, n, w, bias, prec);
            return;
        }
        for (size_t i = 0; i < cnt; i++) xr[i] = ts_round_bf16(x[i]);
        x = xr;
    }
    mm_job j = {.cpu = cpu, .y = y, .x = x, .n = n, .w = w, .bias = bias};
    atomic_init(&j.next, 0);
    if (n < TS_GEMM_MIN_N) {
        ts_pool_run(cpu->pool, gemv_task, &j);
        return;
    }
    ts_pool_run(cpu->pool, gemm_task, &j);
    if (j.fail) ts_ref_matmul(ctx, y, x, n, w, bias, TS_PREC_F32);
}

/* ---- fused products (matmul_multi, matmul_swiglu) ----
 * Decode: one pool run covers every row of every matrix; chunks of rows are
 * numbered across the matrices and taken from one atomic counter. Each output
 * element is the same gemv_row dot product as ts_avx2_matmul's, so results
 * are bit-identical to the unfused ops. */

typedef struct mm_multi_job {
    float *y[4];
    const float *x;
    const ts_wmat *w[4];
    const float *bias[4];
    int n, n_w;
    int cr[4];     /* rows per chunk of matrix i */
    long c0[5];    /* first chunk number of matrix i; c0[n_w] = total */
    int swiglu;    /* w[0] gate -> y[0], w[1] up (into per-thread scratch) */
    ts_cpu *cpu;
    _Atomic int fail;
    _Atomic long next;
} mm_multi_job;

/* y[b][r] (stride ldy) = x[b] . W[r] (+ bias[r]) for r < rows, b < n, where
 * w points at the first of the rows. */
static void gemv_block(float *y, size_t ldy, const float *x, int n, int K, const void *w,
                       ts_dtype dt, int rows, const float *bias) {
    for (int i = 0; i < n; i += 4) {
        int nb = n - i >= 4 ? 4 : n - i;
        const float *xi = x + (size_t)i * (size_t)K;
        float *yi = y + (size_t)i * ldy;
#define GEMV_BLK(DT)                                                              \
    switch (nb) {                                                                 \
    case 4: gemv_rows(yi, ldy, xi, K, w, DT, 0, rows, 4, bias); break;            \
    case 3: gemv_rows(yi, ldy, xi, K, w, DT, 0, rows, 3, bias); break;            \
    case 2: gemv_rows(yi, ldy, xi, K, w, DT, 0, rows, 2, bias); break;            \
    default: gemv_rows(yi, ldy, xi, K, w, DT, 0, rows, 1, bias); break;           \
    }
        switch (dt) {
        case TS_DT_BF16: GEMV_BLK(TS_DT_BF16) break;
        case TS_DT_F16: GEMV_BLK(TS_DT_F16) break;
        default: GEMV_BLK(TS_DT_F32) break;
        }
#undef GEMV_BLK
    }
}

static void multi_task(void *vctx, int ith, int nth) {
    (void)nth;
    mm_multi_job *j = vctx;
    for (;;) {
        long c = atomic_fetch_add(&j->next, 1);
        if (c >= j->c0[j->n_w]) break;
        int i = 0;
        while (c >= j->c0[i + 1]) i++;
        const ts_wmat *w = j->w[i];
        int K = w->cols, cr = j->cr[i];
        size_t es = w->dtype == TS_DT_F32 ? 4 : 2;
        int r0 = (int)(c - j->c0[i]) * cr, nr = w->rows - r0 < cr ? w->rows - r0 : cr;
        const char *wr = (const char *)w->data + (size_t)r0 * (size_t)K * es;
        if (!j->swiglu) {
            gemv_block(j->y[i] + r0, (size_t)w->rows, j->x, j->n, K, wr, w->dtype, nr,
                       j->bias[i] ? j->bias[i] + r0 : NULL);
            continue;
        }
        /* gate rows [r0, r0 + nr) into out, then the same rows of up into
         * scratch, then out = silu(gate) * up over the chunk */
        float *u = ts_scratch_get(&j->cpu->thr[ith], (size_t)j->n * (size_t)cr * sizeof(float));
        if (!u) {
            j->fail = 1;
            return;
        }
        const ts_wmat *wu = j->w[1];
        const char *ur = (const char *)wu->data + (size_t)r0 * (size_t)K * es;
        size_t ld = (size_t)w->rows;
        gemv_block(j->y[0] + r0, ld, j->x, j->n, K, wr, w->dtype, nr, NULL);
        gemv_block(u, (size_t)nr, j->x, j->n, K, ur, wu->dtype, nr, NULL);
        for (int b = 0; b < j->n; b++)
            ts_avx2_swiglu_rows(j->y[0] + (size_t)b * ld + r0, j->y[0] + (size_t)b * ld + r0,
                                u + (size_t)b * nr, (size_t)nr);
    }
}

static int mm_dtype_ok(const ts_wmat *w) {
    return w->dtype == TS_DT_F32 || w->dtype == TS_DT_F16 || w->dtype == TS_DT_BF16;
}

/* Rounds x to bf16 into the shared scratch when prec asks; NULL on no memory. */
static const float *mm_round_x(ts_cpu *cpu, const float *x, int n, int K, ts_prec prec) {
    if (prec != TS_PREC_BF16) return x;
    size_t cnt = (size_t)n * (size_t)K;
    float *xr = ts_scratch_get(&cpu->shared, cnt * sizeof(float));
    if (!xr) return NULL;
    for (size_t i = 0; i < cnt; i++) xr[i] = ts_round_bf16(x[i]);
    return xr;
}

static void mm_multi_setup(mm_multi_job *j, int n_w) {
    j->n_w = n_w;
    j->c0[0] = 0;
    for (int i = 0; i < n_w; i++) {
        const ts_wmat *w = j->w[i];
        size_t rb = (size_t)w->cols * (w->dtype == TS_DT_F32 ? 4 : 2);
        int cr = rb >= TS_GEMV_CHUNK ? 1 : (int)(TS_GEMV_CHUNK / rb);
        if (j->swiglu) { /* bounds the up scratch; 8-aligned chunks keep the
                          * SIMD silu's lanes those of the unfused swiglu */
            cr = cr > 64 ? 64 : cr < 8 ? 8 : cr & ~7;
        }
        j->cr[i] = cr;
        j->c0[i + 1] = j->c0[i] + (w->rows + cr - 1) / cr;
    }
    atomic_init(&j->next, 0);
    atomic_init(&j->fail, 0);
}

void ts_avx2_matmul_multi(void *ctx, float *const *y, const float *x, int n, const ts_wmat *w,
                          const float *const *bias, int n_w, ts_prec prec) {
    ts_cpu *cpu = ctx;
    if (n <= 0 || n_w <= 0) return;
    int ok = n < TS_GEMM_MIN_N && n_w <= 4;
    for (int i = 0; ok && i < n_w; i++) ok = mm_dtype_ok(&w[i]) && w[i].cols == w[0].cols;
    const float *xr = ok ? mm_round_x(cpu, x, n, w[0].cols, prec) : NULL;
    if (!xr) {
        for (int i = 0; i < n_w; i++)
            ts_avx2_matmul(ctx, y[i], x, n, &w[i], bias ? bias[i] : NULL, prec);
        return;
    }
    mm_multi_job j = {.x = xr, .n = n, .cpu = cpu};
    for (int i = 0; i < n_w; i++) {
        j.y[i] = y[i];
        j.w[i] = &w[i];
        j.bias[i] = bias ? bias[i] : NULL;
    }
    mm_multi_setup(&j, n_w);
    ts_pool_run(cpu->pool, multi_task, &j);
}

void ts_avx2_matmul_swiglu(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                           const ts_wmat *w_up, ts_prec prec) {
    ts_cpu *cpu = ctx;
    if (n <= 0) return;
    int ok = n < TS_GEMM_MIN_N && mm_dtype_ok(w_gate) && w_gate->dtype == w_up->dtype &&
             w_gate->rows == w_up->rows && w_gate->cols == w_up->cols &&
             w_gate->rows % 8 == 0; /* see mm_multi_setup */
    const float *xr = ok ? mm_round_x(cpu, x, n, w_gate->cols, prec) : NULL;
    if (xr) {
        mm_multi_job j = {.x = xr, .n = n, .cpu = cpu, .swiglu = 1};
        j.y[0] = out;
        j.w[0] = w_gate;
        j.w[1] = w_up;
        mm_multi_setup(&j, 1); /* chunks over the gate rows; up follows */
        ts_pool_run(cpu->pool, multi_task, &j);
        if (!j.fail) return;
    }
    /* prefill (or no scratch): the unfused sequence */
    size_t cnt = (size_t)n * (size_t)w_up->rows;
    float *u = ts_scratch_get(&cpu->fused, cnt * sizeof(float));
    if (!u) { /* no memory: one up product at a time */
        ts_cpu_swiglu_lowmem(ctx, ts_avx2_matmul, out, x, n, w_gate, w_up, prec);
        return;
    }
    ts_avx2_matmul(ctx, out, x, n, w_gate, NULL, prec);
    ts_avx2_matmul(ctx, u, x, n, w_up, NULL, prec);
    ts_cpu_swiglu(ctx, out, out, u, n, w_up->rows);
}
