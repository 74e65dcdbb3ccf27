/* Decode-sized matrix products (n < 8 activation rows, f32 precision) with
 * AVX-512:
 * memory-bound streams of the weights. One pool run covers the rows of up to
 * four matrices (q, k and v; gate and up) cut into chunks of consecutive
 * rows; threads take chunks from an atomic counter (a thread slowed by
 * another process just takes fewer) and stream each chunk front to back,
 * each weight vector feeding up to 4 activation rows. Every output element
 * is one fixed dot product whatever the chunking, so fused and unfused
 * calls give bit-identical results. */
#include <immintrin.h>
#include <stdatomic.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/simd_avx512.h"

#define TS_INLINE static inline __attribute__((always_inline))

/* ---- kernels ---- */

/* Bytes ahead of the current read that the decode kernels prefetch. Rows
 * are walked one at a time, front to back, so a chunk of rows is one
 * sequential stream; the prefetch runs ahead across rows and 4 KiB pages
 * (mapped weights are not huge pages). 4 KiB measured best on a Zen 5 VM
 * (1 KiB: -10% of streamed GB/s; 2, 3 and 8 KiB: slower decode steps; the
 * T1 and NTA hints: no better). */
#define TS_GEMV_PF 4096

/* y[b][j] (row stride ldy) = x[b] . W[j] (+ bias[j]) for NB activation rows
 * (f32 precision) and one weight row j. 128 bytes of the row per step, each
 * vector feeding all NB rows, four accumulators per activation row. */
TS_INLINE void gemv_f32(float *y, size_t ldy, const float *x, int K, const void *w,
                        ts_dtype dt, int j, int NB, const float *bias) {
    const size_t es = dt == TS_DT_F32 ? 4 : 2;
    const int per = (int)(128 / es); /* elements per step */
    const char *wr = (const char *)w + (size_t)j * (size_t)K * es;
    __m512 acc[4][4];
    _Pragma("GCC unroll 8")
    for (int b = 0; b < NB; b++) acc[b][0] = acc[b][1] = acc[b][2] = acc[b][3] = _mm512_setzero_ps();
    int k = 0;
    for (; k + per <= K; k += per) {
        _mm_prefetch(wr + (size_t)k * es + TS_GEMV_PF, _MM_HINT_T0);
        _Pragma("GCC unroll 8")
        for (int v = 0; v < per / 16; v++) {
            __m512 wv = ld16(wr, dt, (size_t)k + 16 * (size_t)v, (__mmask16)0xffff);
            _Pragma("GCC unroll 8")
            for (int b = 0; b < NB; b++)
                acc[b][v & 3] = _mm512_fmadd_ps(
                    wv, _mm512_loadu_ps(x + (size_t)b * K + k + 16 * v), acc[b][v & 3]);
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
        y[(size_t)b * ldy + (size_t)j] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[b][0], acc[b][1]),
                                                           _mm512_add_ps(acc[b][2], acc[b][3]))) +
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

#define GEMV_NB(CALL_NB, nb)           \
    do {                               \
        switch (nb) {                  \
        case 4: CALL_NB(4); break;     \
        case 3: CALL_NB(3); break;     \
        case 2: CALL_NB(2); break;     \
        default: CALL_NB(1); break;    \
        }                              \
    } while (0)

/* Chunks shrink as the work runs out (guided scheduling): a thread takes
 * 1/(2 nth) of the rows left, between 64 KiB and 2 MiB of weights, so both
 * threads finish within a small chunk of each other. Long chunks stream
 * faster: each chunk restarts the hardware prefetcher (64 KiB chunks
 * streamed 36 GB/s where 1 MiB chunks streamed 53 on a 2-thread Zen 5 VM;
 * 2 MiB gave a decode step ~2% faster than 1 MiB, 4 MiB no more). */
#define TS_GEMV_CHUNK_MAX (2 << 20)
#define TS_GEMV_CHUNK_MIN (1 << 16)

typedef struct gemv_job {
    float *y[TS_GEMV_MAX_W];
    const ts_wmat *w[TS_GEMV_MAX_W];
    const float *bias[TS_GEMV_MAX_W];
    const float *x;      /* activations [n][K] */
    int n, n_w, nth;
    long r0[TS_GEMV_MAX_W + 1]; /* rows of the matrices end to end: matrix m
                                 * is [r0[m], r0[m+1]); r0[n_w] = total */
    long min_rows, max_rows;   /* chunk bounds (every row has the same bytes) */
    _Atomic long next;         /* first row not yet taken */
} gemv_job;

/* Rows [r0, r1) of one matrix for activation rows [i, i + nb). */
static void gemv_rows(const gemv_job *j, const ts_wmat *w, float *y, const float *bias, int r0,
                      int r1, int i, int nb) {
    int K = w->cols;
    size_t ldy = (size_t)w->rows;
    float *yi = y + (size_t)i * ldy;
    const float *xi = j->x + (size_t)i * (size_t)K;
/* one row at a time for a single activation row, 4-row tiles for more */
#define C1(NB)                                                                             \
    do {                                                                                   \
        int r = r0;                                                                        \
        if (NB == 1) {                                                                     \
            for (; r < r1; r++) gemv_f32(yi, ldy, xi, K, w->data, DT, r, 1, bias);         \
            break;                                                                         \
        }                                                                                  \
        for (; r + 4 <= r1; r += 4) gemv_f32_t4(yi, ldy, xi, K, w->data, DT, r, 4, NB, bias); \
        for (; r < r1; r++) gemv_f32_t4(yi, ldy, xi, K, w->data, DT, r, 1, NB, bias);     \
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

static void gemv_task(void *vctx, int ith, int nth) {
    (void)ith;
    (void)nth;
    gemv_job *j = vctx;
    long total = j->r0[j->n_w], c = atomic_load(&j->next), take;
    for (;;) {
        do {
            if (c >= total) return;
            take = (total - c) / (2 * j->nth);
            take = take < j->min_rows ? j->min_rows : take > j->max_rows ? j->max_rows : take;
            if (take > total - c) take = total - c;
        } while (!atomic_compare_exchange_weak(&j->next, &c, c + take));
        for (long e = c + take; c < e;) { /* the taken rows, matrix by matrix */
            int m = 0;
            while (c >= j->r0[m + 1]) m++;
            long seg = (e < j->r0[m + 1] ? e : j->r0[m + 1]) - c;
            int r0 = (int)(c - j->r0[m]);
            for (int i = 0; i < j->n; i += 4)
                gemv_rows(j, j->w[m], j->y[m], j->bias[m], r0, r0 + (int)seg, i,
                          j->n - i >= 4 ? 4 : j->n - i);
            c += seg;
        }
        c = atomic_load(&j->next);
    }
}

void ts_avx512_gemv(ts_cpu *cpu, float *const *y, const float *x, int n, const ts_wmat *w,
                    const float *const *bias, int n_w) {
    gemv_job j = {.x = x, .n = n, .n_w = n_w,
                  .nth = cpu->nth > 0 ? cpu->nth : 1};
    j.r0[0] = 0;
    for (int m = 0; m < n_w; m++) {
        j.y[m] = y[m];
        j.w[m] = &w[m];
        j.bias[m] = bias ? bias[m] : NULL;
        j.r0[m + 1] = j.r0[m] + w[m].rows;
    }
    size_t rb = (size_t)w[0].cols * (w[0].dtype == TS_DT_F32 ? 4 : 2);
    j.min_rows = rb >= TS_GEMV_CHUNK_MIN ? 1 : (long)(TS_GEMV_CHUNK_MIN / rb);
    j.max_rows = rb >= TS_GEMV_CHUNK_MAX ? 1 : (long)(TS_GEMV_CHUNK_MAX / rb);
    atomic_init(&j.next, 0);
    ts_pool_run(cpu->pool, gemv_task, &j);
}
