/* Decode attention whose launch does not depend on the KV lengths, so that
 * a whole decode step can be recorded once as a CUDA graph and replayed:
 * every sequence has one query row (row s of q / out), and its KV length
 * and block table are read from device memory. The KV range of each
 * (sequence, KV head) is cut into S equal pieces, one block each (a piece
 * may be empty), S chosen from the number of (sequence, KV head) pairs
 * alone (up to TS_ATTN_DECODE_SPLITS for a few sequences, 2 when the pairs
 * already fill the GPU); with S > 1 the last block of a pair to finish
 * merges the pieces' (o, lse) states by log-sum-exp (a counter per pair in
 * the scratch, left at zero for the next call). K/V elements f32, f16 or
 * bf16 (kv_elem.cuh), widened; arithmetic in f32 with expf, as the CPU
 * reference. */
#include <math.h>

#include "ops/cuda/cuda_internal.cuh"
#include "ops/cuda/attn_warp.cuh"
#include "ops/cuda/merge_pieces.cuh"

#define DEC_WARPS 4
#define DEC_UNROLL 4 /* slots whose K and V a warp loads before using them */
#define DEC_MAXG 8   /* query heads per KV head */

typedef struct dec_args {
    const float *q;
    const void *k, *v;        /* the pool, elements E of the kernel */
    float *out, *lse;         /* lse: NULL or [n_seq][n_heads] */
    float *part;              /* a slab per sequence (dec_slab): counters (n_kv_heads
                                 of them, zero between calls), lse [n_heads][SPLITS],
                                 o [n_heads][SPLITS][hd]; a sequence's slab does not
                                 move with n_seq, so its counters stay zero */
    const int32_t *tables;    /* block tables; info[2 s] is seq s's offset into it */
    const int32_t *info;      /* [n_seq][2]: table offset, n_kv */
    int n_seq, n_heads, n_kv_heads, head_dim, block_size, group;
    int splits; /* S, 2 .. TS_ATTN_DECODE_SPLITS */
    float scale;
} dec_args;

/* Floats of one sequence's slab in part, and where its regions start. */
/* the counters get a 128-byte line of their own (the pieces' stores would
 * share it with their atomics otherwise) */
__device__ __forceinline__ size_t dec_pad(int n_heads) { return ((size_t)n_heads + 31) / 32 * 32; }
__device__ __forceinline__ float *dec_slab(const dec_args &a, size_t s) {
    return a.part + s * (dec_pad(a.n_heads) + (size_t)a.n_heads * TS_ATTN_DECODE_SPLITS *
                                                  ((size_t)a.head_dim + 1));
}
/* piece sp of head h of sequence s: its lse, its o */
__device__ __forceinline__ float *dec_lse(const dec_args &a, size_t s, size_t h) {
    return dec_slab(a, s) + dec_pad(a.n_heads) + h * TS_ATTN_DECODE_SPLITS;
}
__device__ __forceinline__ float *dec_o(const dec_args &a, size_t s, size_t h) {
    return dec_slab(a, s) + dec_pad(a.n_heads) + (size_t)a.n_heads * TS_ATTN_DECODE_SPLITS +
           h * TS_ATTN_DECODE_SPLITS * a.head_dim;
}

/* Merges the pieces of (sequence, head) w = s * n_heads + head into out
 * (row s = w / n_heads, head w % n_heads), one warp. */
__device__ void merge_head(const dec_args &a, size_t s, size_t h, int lane) {
    static_assert(TS_ATTN_DECODE_SPLITS == 32, "one piece per lane");
    const size_t w = s * a.n_heads + h;
    ts_merge_pieces_warp(dec_lse(a, s, h), dec_o(a, s, h), a.splits, a.head_dim,
                         a.out + w * a.head_dim, a.lse ? a.lse + w : NULL, lane);
}

/* D: head dims per lane (head_dim = 32 D); E: KV elements. Grid (n_seq,
 * n_kv_heads, SPLITS). */
template <int D, typename E>
__global__ void __launch_bounds__(DEC_WARPS * 32) attn_decode_kernel(dec_args a) {
    __shared__ float m_s[DEC_WARPS][DEC_MAXG], l_s[DEC_WARPS][DEC_MAXG];
    __shared__ float o_s[DEC_WARPS][DEC_MAXG][32 * D];
    ts_pdl_wait();
    ts_pdl_trigger();
    const int s = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, hd = a.head_dim, g = a.group;
    const int32_t *tab = a.tables + a.info[2 * s];
    const int n_kv = a.info[2 * s + 1];
    const int per = (n_kv + a.splits - 1) / a.splits;
    const int lo = sp * per, hi = min(n_kv, lo + per);
    float qv[DEC_MAXG][D], o[DEC_MAXG][D], m[DEC_MAXG], l[DEC_MAXG];
#pragma unroll
    for (int h = 0; h < DEC_MAXG; h++) {
        m[h] = -INFINITY, l[h] = 0.0f;
#pragma unroll
        for (int i = 0; i < D; i++) {
            o[h][i] = 0.0f;
            qv[h][i] = h < g ? a.q[((size_t)s * a.n_heads + (size_t)kvh * g + h) * hd + lane * D + i] * a.scale
                             : 0.0f;
        }
    }
    ts_attend_warp<D, DEC_MAXG, DEC_UNROLL>(qv, o, m, l, g, (const E *)a.k, (const E *)a.v, tab, 0,
                                            a.n_kv_heads, kvh,
                                            a.block_size, lo, hi, warp * DEC_UNROLL,
                                            DEC_WARPS * DEC_UNROLL, lane);
    /* merge the warps' states */
#pragma unroll
    for (int h = 0; h < DEC_MAXG; h++) {
        if (h >= g) break;
        if (lane == 0) m_s[warp][h] = m[h], l_s[warp][h] = l[h];
#pragma unroll
        for (int i = 0; i < D; i++) o_s[warp][h][lane * D + i] = o[h][i];
    }
    __syncthreads();
    for (int h = warp; h < g; h += DEC_WARPS) {
        size_t head = (size_t)kvh * g + h;
        ts_combine_warps<DEC_WARPS>(&m_s[0][0], &l_s[0][0], &o_s[0][0][0], DEC_MAXG, h, hd,
                                    dec_lse(a, s, head) + sp, dec_o(a, s, head) + (size_t)sp * hd,
                                    lane);
    }
    /* the last block of this (sequence, KV head) to finish merges the pieces */
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned *cnt = (unsigned *)dec_slab(a, s) + kvh;
        last = atomicAdd(cnt, 1u) == (unsigned)a.splits - 1;
        if (last) *cnt = 0; /* every piece has counted: ready for the next call */
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int h = warp; h < g; h += DEC_WARPS)
        merge_head(a, (size_t)s, (size_t)kvh * g + h, lane);
}

void ts_cuda_attention_decode(void *ctx, float *out, float *lse, float *part, const float *q,
                              const void *k, const void *v, ts_dtype kv_dtype,
                              const int32_t *tables, const int32_t *info,
                              int n_seq, int n_heads, int n_kv_heads, int head_dim,
                              int block_size, float scale) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n_seq <= 0) return;
    if (n_kv_heads <= 0 || n_heads % n_kv_heads || n_heads / n_kv_heads > DEC_MAXG ||
        block_size <= 0 || head_dim % 32 || head_dim < 32 || head_dim > 256 || n_seq > 65535 ||
        !ts_kv_dtype_ok(kv_dtype)) {
        TS_BAD(c, "attention_decode: heads (group <= 8), head_dim (32..256, multiple of 32), KV dtype");
        return;
    }
    /* pieces: about two blocks an SM in all, 2 .. 32 a pair (measured on the
     * H100, tests/gpu/bench_attn_decode: one piece was slower than two at
     * every batch size, 32 at batch 8 twice as slow as 4) */
    long pairs = (long)n_seq * n_kv_heads, want = 2L * (c->n_sm > 0 ? c->n_sm : 132);
    int splits = (int)(want / pairs);
    splits = splits < 2 ? 2 : splits > TS_ATTN_DECODE_SPLITS ? TS_ATTN_DECODE_SPLITS : splits;
    dec_args a = {q, k, v, out, lse, part, tables, info, n_seq, n_heads, n_kv_heads, head_dim,
                  block_size, n_heads / n_kv_heads, splits, scale};
    dim3 grid((unsigned)n_seq, (unsigned)n_kv_heads, (unsigned)splits);
    dim3 block(DEC_WARPS * 32);
#define DEC_LAUNCH(D)                                                                      \
    TS_KV_SWITCH(kv_dtype, E,                                                              \
                 ts_cuda_launch(c, "attn_decode_kernel", attn_decode_kernel<D, E>, grid, block, 0, a))
    switch (head_dim / 32) {
    case 1: DEC_LAUNCH(1); break;
    case 2: DEC_LAUNCH(2); break;
    case 3: DEC_LAUNCH(3); break;
    case 4: DEC_LAUNCH(4); break;
    case 5: DEC_LAUNCH(5); break;
    case 6: DEC_LAUNCH(6); break;
    case 7: DEC_LAUNCH(7); break;
    default: DEC_LAUNCH(8); break;
    }
#undef DEC_LAUNCH
}
