/* Internals of the CPU backend shared by its files: the backend object,
 * scratch memory, scalar helpers, and the kernel entry points per ISA.
 * Not part of the op-table contract. */
#ifndef TS_OPS_CPU_INTERNAL_H
#define TS_OPS_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/half.h"
#include "ops/cpu/cpu.h"

/* A growable buffer kept between calls (64-byte aligned). */
typedef struct ts_scratch {
    void *p;
    size_t cap;
} ts_scratch;

struct ts_cpu {
    ts_ops ops;
    ts_pool *pool;      /* not owned; NULL = one thread */
    int nth;            /* ts_pool_size(pool) */
    ts_cpu_isa isa;
    ts_scratch *thr;    /* [nth]: per-thread scratch, touched only by its thread */
    ts_scratch shared;  /* grown by the calling thread before a pool run */
    ts_scratch fused;   /* matmul_swiglu's up product in prefill (calling thread) */
};

/* Returns at least `bytes` of scratch, 64-byte aligned, or NULL when memory
 * runs out (callers then fall back to the reference, which needs none). The
 * contents are not preserved across growth. */
void *ts_scratch_get(ts_scratch *s, size_t bytes);

/* ---- scalar conversions (base/half.h has f16/bf16 <-> f32) ---- */

static inline float ts_round_bf16(float f) { return ts_bf16_to_f32(ts_f32_to_bf16(f)); }

/* Element (r, c) of a weight matrix, widened to f32. */
static inline float ts_wmat_at(const ts_wmat *w, int r, int c) {
    size_t i = (size_t)r * (size_t)w->cols + (size_t)c;
    switch (w->dtype) {
    case TS_DT_F32: return ((const float *)w->data)[i];
    case TS_DT_F16: return ts_f16_to_f32(((const uint16_t *)w->data)[i]);
    case TS_DT_BF16: return ts_bf16_to_f32(((const uint16_t *)w->data)[i]);
    default: return 0.0f;
    }
}

/* Element offset of slot t's row of KV head h in a paged pool (see ts_attn). */
static inline size_t ts_kv_off(const int32_t *blocks, int t, int h, int n_kv_heads,
                               int block_size, int head_dim) {
    size_t b = (size_t)blocks[t / block_size];
    return ((b * (size_t)n_kv_heads + (size_t)h) * (size_t)block_size +
            (size_t)(t % block_size)) * (size_t)head_dim;
}

/* Slot t's row of KV head h as f32: the pool's own row (f32 pool) or its
 * widening into buf[head_dim] (f16, bf16 pool). */
static inline const float *ts_kv_row(float *buf, const void *pool, ts_dtype dt,
                                     const int32_t *blocks, int t, int h, int n_kv_heads,
                                     int block_size, int head_dim) {
    size_t off = ts_kv_off(blocks, t, h, n_kv_heads, block_size, head_dim);
    if (dt != TS_DT_F16 && dt != TS_DT_BF16) return (const float *)pool + off;
    const uint16_t *r = (const uint16_t *)pool + off;
    for (int c = 0; c < head_dim; c++)
        buf[c] = dt == TS_DT_F16 ? ts_f16_to_f32(r[c]) : ts_bf16_to_f32(r[c]);
    return buf;
}

/* ---- reference kernels (ops_ref.c); ctx is unused and may be NULL ---- */

void ts_ref_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                   const float *bias, ts_prec prec);
void ts_ref_embed(void *ctx, float *out, const ts_wmat *table, const int32_t *ids, int n);
void ts_ref_rmsnorm(void *ctx, float *y, const float *x, const float *g, int n, int d,
                    float eps);
void ts_ref_add_rmsnorm(void *ctx, float *y, float *x, const float *r, const float *g, int n,
                        int d, float eps);
void ts_ref_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                 const float *inv_freq);
void ts_ref_swiglu(void *ctx, float *out, const float *gate, const float *up, int n, int d);
void ts_ref_kv_write(void *ctx, void *k_pool, void *v_pool, ts_dtype kv_dtype, const float *k,
                     const float *v,
                     const int32_t *slot, int n, int n_kv_heads, int head_dim, int block_size);
void ts_ref_attention(void *ctx, const ts_attn *a);
void ts_ref_attention_shared(void *ctx, const ts_attn_shared *a);

/* ---- threaded generic ops (cpu.c): the reference math split over the pool ---- */

void ts_cpu_rmsnorm(void *ctx, float *y, const float *x, const float *g, int n, int d,
                    float eps);
void ts_cpu_add_rmsnorm(void *ctx, float *y, float *x, const float *r, const float *g, int n,
                        int d, float eps);
void ts_cpu_swiglu(void *ctx, float *out, const float *gate, const float *up, int n, int d);
void ts_cpu_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                 const float *inv_freq);

/* ---- AVX2 element-wise rows (ew_avx2.c); the same math as the reference ---- */

void ts_avx2_rmsnorm_rows(float *y, const float *x, const float *g, int n, int d, float eps);
void ts_avx2_add_rmsnorm_rows(float *y, float *x, const float *r, const float *g, int n, int d,
                              float eps);
/* out[i] = silu(gate[i]) * up[i] for i < cnt; out may be gate. */
void ts_avx2_swiglu_rows(float *out, const float *gate, const float *up, size_t cnt);

/* ---- SIMD kernels; ctx is the ts_cpu ---- */

void ts_avx2_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                    const float *bias, ts_prec prec);
/* matmul_multi / matmul_swiglu (see ts_ops): one pool run for all the rows
 * in decode, the unfused sequence for n >= 8; bit-identical to the unfused
 * ts_avx2_matmul (+ ts_cpu_swiglu). */
void ts_avx2_matmul_multi(void *ctx, float *const *y, const float *x, int n, const ts_wmat *w,
                          const float *const *bias, int n_w, ts_prec prec);
void ts_avx2_matmul_swiglu(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                           const ts_wmat *w_up, ts_prec prec);
void ts_avx512_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                      const float *bias, ts_prec prec);
/* The same contract as the AVX2 pair above, with ts_avx512_matmul. */
void ts_avx512_matmul_multi(void *ctx, float *const *y, const float *x, int n, const ts_wmat *w,
                            const float *const *bias, int n_w, ts_prec prec);
void ts_avx512_matmul_swiglu(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                             const ts_wmat *w_up, ts_prec prec);

/* Decode products (gemv_avx512.c), f32 precision: y[i][n][w[i].rows] =
 * x[n][w.cols] . w[i]^T (+ bias[i] when bias and bias[i]) for
 * i < n_w <= TS_GEMV_MAX_W, n < 8, in one pool run; every w[i] has the same
 * cols and dtype. */
#define TS_GEMV_MAX_W 4
void ts_avx512_gemv(ts_cpu *cpu, float *const *y, const float *x, int n, const ts_wmat *w,
                    const float *const *bias, int n_w);

/* matmul_swiglu when its scratch cannot be had: gate by mm into out, then
 * each element of up with the reference product, one at a time. */
typedef void (*ts_matmul_fn)(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                             const float *bias, ts_prec prec);
void ts_cpu_swiglu_lowmem(void *ctx, ts_matmul_fn mm, float *out, const float *x, int n,
                          const ts_wmat *w_gate, const ts_wmat *w_up, ts_prec prec);
void ts_avx2_attention(void *ctx, const ts_attn *a);
void ts_avx512_attention(void *ctx, const ts_attn *a);
void ts_avx2_attention_shared(void *ctx, const ts_attn_shared *a);
void ts_avx512_attention_shared(void *ctx, const ts_attn_shared *a);

#endif
