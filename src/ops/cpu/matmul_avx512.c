/* Matrix products with AVX-512 (16 floats per register) and AVX512-BF16.
 *
 * n < TS_GEMM_MIN_N (decode): threads take chunks of consecutive weight rows
 * and stream each front to back, each weight vector feeding up to 4
 * activation rows; column tails use masked loads.
 * Otherwise (prefill): per thread, weight columns are packed into k-major
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
    _Atomic long next;    /* decode: next chunk of weight rows */
} mm_job;

/* ---- decode: n small ---- */

TS_INLINE __m512 ld16(const void *w, ts_dtype dt, size_t k, __mmask16 m) {
    if (dt == TS_DT_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
    if (dt == TS_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Bytes ahead of the current read that the decode kernels prefetch. Rows
 * are walked one at a time, front to back, so a chunk of rows is one
 * sequential stream; the prefetch carries it across 4 KiB pages (mapped
 * weights are not huge pages). */
#define TS_GEMV_PF 1024

/* y[b][j] (row stride ldy) = x[b] . W[j] (+ bias[j]) for NB activation rows
 * (f32 precision) and one weight row j. 128 bytes of the row per step, each
 * vector feeding all NB rows, two accumulators per activation row. */
TS_INLINE void gemv_f32(float *y, size_t ldy, const float *x, int K, const void *w,
                        ts_dtype dt, int j, int NB, const float *bias) {
    const size_t es = dt == TS_DT_F32 ? 4 : 2;
    const int per = (int)(128 / es); /* elements per step */
    const char *wr = (const char *)w + (size_t)j * (size_t)K * es;
    __m512 acc[4][2];
    _Pragma("GCC unroll 8")
    for (int b = 0; b < NB; b++) acc[b][0] = acc[b][1] = _mm512_setzero_ps();
    int k = 0;
    for (; k + per <= K; k += per) {
        _mm_prefetch(wr + (size_t)k * es + TS_GEMV_PF, _MM_HINT_T0);
        _mm_prefetch(wr + (size_t)k * es + TS_GEMV_PF + 64, _MM_HINT_T0);
        _Pragma("GCC unroll 8")
        for (int v = 0; v < per / 16; v++) {
            __m512 wv = ld16(wr, dt, (size_t)k + 16 * (size_t)v, (__mmask16)0xffff);
            _Pragma("GCC unroll 8")
            for (int b = 0; b < NB; b++)
                acc[b][v & 1] = _mm512_fmadd_ps(
                    wv, _mm512_loadu_ps(x + (size_t)b * K + k + 16 * v), acc[b][v & 1]);
        }
    }
    for (; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
        __m512 wv = ld16(wr, dt, (size_t)k, m);
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++)
            acc[b][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + (size_t)b * K + k),
                                        acc[b][0]);
    }
    _Pragma("GCC unroll 8")
    for (int b = 0; b < NB; b++)
        y[(size_t)b * ldy + (size_t)j] = _mm512_reduce_add_ps(_mm512_add_ps(acc[b][0], acc[b][1])) +
                                         (bias ? bias[j] : 0.0f);
}

/* The same with bf16 activations (row stride Kp) and bf16 weights. */
TS_INLINE void gemv_bf16(float *y, size_t ldy, const uint16_t *x, int Kp, int K,
                         const uint16_t *w, int j, int NB, const float *bias) {
    const uint16_t *wr = w + (size_t)j * (size_t)K;
    __m512 acc[4][2];
    _Pragma("GCC unroll 8")
    for (int b = 0; b < NB; b++) acc[b][0] = acc[b][1] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        _mm_prefetch((const char *)(wr + k) + TS_GEMV_PF, _MM_HINT_T0);
        _mm_prefetch((const char *)(wr + k) + TS_GEMV_PF + 64, _MM_HINT_T0);
        __m512i w0 = _mm512_loadu_si512(wr + k), w1 = _mm512_loadu_si512(wr + k + 32);
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++) {
            const uint16_t *xb = x + (size_t)b * Kp + k;
            acc[b][0] = _mm512_dpbf16_ps(acc[b][0], (__m512bh)_mm512_loadu_si512(xb), (__m512bh)w0);
            acc[b][1] = _mm512_dpbf16_ps(acc[b][1], (__m512bh)_mm512_loadu_si512(xb + 32),
                                         (__m512bh)w1);
        }
    }
    for (; k < K; k += 32) {
        __mmask32 m = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
        __m512i wv = _mm512_maskz_loadu_epi16(m, wr + k);
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++)
            acc[b][0] = _mm512_dpbf16_ps(
                acc[b][0], (__m512bh)_mm512_maskz_loadu_epi16(m, x + (size_t)b * Kp + k),
                (__m512bh)wv);
    }
    _Pragma("GCC unroll 8")
    for (int b = 0; b < NB; b++)
        y[(size_t)b * ldy + (size_t)j] = _mm512_reduce_add_ps(_mm512_add_ps(acc[b][0], acc[b][1])) +
                                         (bias ? bias[j] : 0.0f);
}

/* Tiles of RB <= 4 weight rows for NB >= 2 activation rows: each activation
 * vector feeds RB rows (32 registers hold the 4 x 4 accumulators).
 * y[b][j0..j0+RB) for NB activation rows (f32 precision). */
TS_INLINE void gemv_f32_t4(float *y, size_t ldy, const float *x, int K, const void *w,
                        ts_dtype dt, int j0, int RB, int NB, const float *bias) {
    __m512 acc[4][4];
    const size_t es = dt == TS_DT_F32 ? 4 : 2;
    const char *wb = (const char *)w + (size_t)j0 * (size_t)K * es;
    _Pragma("GCC unroll 8")
    for (int r = 0; r < 4; r++)
        _Pragma("GCC unroll 8")
        for (int b = 0; b < 4; b++) acc[r][b] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
        __m512 xv[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++) xv[b] = _mm512_maskz_loadu_ps(m, x + (size_t)b * K + k);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < RB; r++) {
            _mm_prefetch(wb + ((size_t)r * K + (size_t)k) * es + TS_GEMV_PF, _MM_HINT_T0);
            __m512 wv = ld16(wb + (size_t)r * K * es, dt, (size_t)k, m);
            _Pragma("GCC unroll 8")
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < RB; r++)
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++)
            y[(size_t)b * ldy + (size_t)(j0 + r)] =
                _mm512_reduce_add_ps(acc[r][b]) + (bias ? bias[j0 + r] : 0.0f);
}

/* The same with bf16 activations (row stride Kp) and bf16 weights. */
TS_INLINE void gemv_bf16_t4(float *y, size_t ldy, const uint16_t *x, int Kp, int K,
                         const uint16_t *w, int j0, int RB, int NB, const float *bias) {
    __m512 acc[4][4];
    const uint16_t *wb = w + (size_t)j0 * (size_t)K;
    _Pragma("GCC unroll 8")
    for (int r = 0; r < 4; r++)
        _Pragma("GCC unroll 8")
        for (int b = 0; b < 4; b++) acc[r][b] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 32) {
        __mmask32 m = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
        __m512i xv[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++) xv[b] = _mm512_maskz_loadu_epi16(m, x + (size_t)b * Kp + k);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < RB; r++) {
            _mm_prefetch((const char *)(wb + (size_t)r * K + k) + TS_GEMV_PF, _MM_HINT_T0);
            __m512i wv = _mm512_maskz_loadu_epi16(m, wb + (size_t)r * K + k);
            _Pragma("GCC unroll 8")
            for (int b = 0; b < NB; b++)
                acc[r][b] = _mm512_dpbf16_ps(acc[r][b], (__m512bh)xv[b], (__m512bh)wv);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < RB; r++)
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++)
            y[(size_t)b * ldy + (size_t)(j0 + r)] =
                _mm512_reduce_add_ps(acc[r][b]) + (bias ? bias[j0 + r] : 0.0f);
}

#define GEMV_NB(CALL_NB, nb)           \
    do {                               \
        switch (nb) {                  \
        case 4: CALL_NB(4); break;     \
        case 3: CALL_NB(3); break;     \
        case 2: CALL_NB(2); break;     \
        default: CALL_NB(1); break;    \
        }                              \
    } while (0)

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
            float *yi = j->y + (size_t)i * ldy;
            if (j->xb) {
                const uint16_t *xi = j->xb + (size_t)i * (size_t)j->Kp;
                const uint16_t *wd = w->data;
#define C1(NB) for (int r = r0; r < r1; r++) gemv_bf16(yi, ldy, xi, j->Kp, K, wd, r, NB, j->bias)
#define C4(NB)                                                                     \
    for (; r + 4 <= r1; r += 4) gemv_bf16_t4(yi, ldy, xi, j->Kp, K, wd, r, 4, NB, j->bias); \
    for (; r < r1; r++) gemv_bf16_t4(yi, ldy, xi, j->Kp, K, wd, r, 1, NB, j->bias)
                if (nb == 1) {
                    C1(1);
                } else {
                    int r = r0;
                    GEMV_NB(C4, nb);
                }
#undef C4
#undef C1
                continue;
            }
            const float *xi = j->x + (size_t)i * (size_t)K;
/* one row at a time for a single activation row, 4-row tiles for more */
#define C1(NB)                                                                            \
    do {                                                                                  \
        int r = r0;                                                                       \
        if (NB == 1) {                                                                    \
            for (; r < r1; r++) gemv_f32(yi, ldy, xi, K, w->data, DT, r, 1, j->bias);       \
            break;                                                                        \
        }                                                                                 \
        for (; r + 4 <= r1; r += 4) gemv_f32_t4(yi, ldy, xi, K, w->data, DT, r, 4, NB, j->bias); \
        for (; r < r1; r++) gemv_f32_t4(yi, ldy, xi, K, w->data, DT, r, 1, NB, j->bias);  \
    } while (0)
            switch (w->dtype) {
            case TS_DT_BF16:
#define DT TS_DT_BF16
                GEMV_NB(C1, nb);
#undef DT
                break;
            case TS_DT_F16:
#define DT TS_DT_F16
                GEMV_NB(C1, nb);
#undef DT
                break;
            default:
#define DT TS_DT_F32
                GEMV_NB(C1, nb);
#undef DT
                break;
            }
#undef C1
        }
    }
}

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

/* P[k2][64] = bf16 pair (W[j0+c][2(k20+k2)], W[..][+1]); zero past the matrix. */
static void pack_bf16(uint32_t *p, const ts_wmat *w, int j0, int k20, int kc2) {
    const uint16_t *wd = w->data;
    int K = w->cols;
    for (int c = 0; c < NR; c++) {
        int jr = j0 + c;
        if (jr >= w->rows) {
            for (int k = 0; k < kc2; k++) p[k * NR + c] = 0;
            continue;
        }
        const uint16_t *row = wd + (size_t)jr * (size_t)K;
        for (int k = 0; k < kc2; k++) {
            int e = 2 * (k20 + k);
            uint32_t lo = row[e], hi = e + 1 < K ? row[e + 1] : 0;
            p[k * NR + c] = lo | hi << 16;
        }
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
            if (bf) pack_bf16(p, w, j0, k0, kc);
            else pack_f32(p, w, j0, k0, kc);
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

void ts_avx512_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                      const float *bias, ts_prec prec) {
    ts_cpu *cpu = ctx;
    if (n <= 0) return;
    if (w->dtype != TS_DT_F32 && w->dtype != TS_DT_F16 && w->dtype != TS_DT_BF16) {
        ts_ref_matmul(ctx, y, x, n, w, bias, prec);
        return;
    }
    mm_job j = {.cpu = cpu, .y = y, .x = x, .n = n, .w = w, .bias = bias};
    atomic_init(&j.next, 0);
    if (prec == TS_PREC_BF16 && w->dtype == TS_DT_BF16) {
        int Kp = (w->cols + 1) & ~1;
        uint16_t *xb = ts_scratch_get(&cpu->shared, (size_t)n * (size_t)Kp * 2);
        if (!xb) {
            ts_ref_matmul(ctx, y, x, n, w, bias, prec);
            return;
        }
        cvt_job c = {.x = x, .xb = xb, .n = n, .K = w->cols, .Kp = Kp};
        if (n >= TS_GEMM_MIN_N) ts_pool_run(cpu->pool, cvt_task, &c);
        else cvt_task(&c, 0, 1);
        j.xb = xb;
        j.Kp = Kp;
    } else if (prec == TS_PREC_BF16) {
        size_t cnt = (size_t)n * (size_t)w->cols;
        float *xr = ts_scratch_get(&cpu->shared, cnt * sizeof(float));
        if (!xr) {
            ts_ref_matmul(ctx, y, x, n, w, bias, prec);
            return;
        }
        for (size_t i = 0; i < cnt; i++) xr[i] = ts_round_bf16(x[i]);
        j.x = xr;
    }
    ts_pool_run(cpu->pool, n < TS_GEMM_MIN_N ? gemv_task : gemm_task, &j);
    if (j.fail) ts_ref_matmul(ctx, y, x, n, w, bias, prec);
}
