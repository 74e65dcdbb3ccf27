/* What cascade's two tensor-core shared-level kernels have in common
 * (attn_shared_mma.cu: f32 KV in 3xTF32; attn_shared_wgmma.cu: f16 / bf16
 * KV): their arguments and the partial results they leave for the
 * log-sum-exp merge of the prefix ranges (shm_merge_kernel). */
#ifndef TS_OPS_CUDA_ATTN_SHARED_CUH
#define TS_OPS_CUDA_ATTN_SHARED_CUH

#include <math.h>

#include "ops/cuda/cuda_internal.cuh"

#define SHM_WARPS 4
#define SHM_ROWS 64 /* query rows a CTA: 16 a warp; row m is listed row m / group,
                       head m % group of the CTA's KV head */

typedef struct shm_args {
    const float *q;
    const int32_t *rows, *blocks;
    const void *k, *v;  /* the pool, f32 or 16-bit elements */
    int n_rows, n_kv, n_heads, n_kv_heads, block_size, group, per; /* per: keys a range */
    float scale;
    float *p_o, *p_lse; /* [range][n_rows * n_heads][hd], [range][n_rows * n_heads] */
    float *out, *lse;
    int ranges;
    const int32_t *own_tables, *own_info; /* attention_cascade: each row's own slots, or NULL */
} shm_args;

/* Online softmax over one key tile of a warp's 16 rows, in the mma C layout
 * (s[j]: keys j*8 + 2t, +1 of rows g (s[j][0..1]) and g + 8 (s[j][2..3])):
 * keys >= hi masked when mask (the last tile), the rows' running max mrow
 * raised, lrow and the accumulators o[NO][4] rescaled by the correction. */
template <int KT, int NO>
__device__ __forceinline__ void shm_softmax_step(float (&s)[KT][4], float (&o)[NO][4],
                                                 float (&mrow)[2], float (&lrow)[2], bool mask,
                                                 int key0, int hi) {
    if (mask)
#pragma unroll
        for (int j = 0; j < KT; j++) {
            int key = key0 + j * 8;
            if (key >= hi) s[j][0] = s[j][2] = -INFINITY;
            if (key + 1 >= hi) s[j][1] = s[j][3] = -INFINITY;
        }
    float mx[2] = {-INFINITY, -INFINITY}, corr[2];
#pragma unroll
    for (int j = 0; j < KT; j++) {
        mx[0] = fmaxf(mx[0], fmaxf(s[j][0], s[j][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[j][2], s[j][3]));
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
        float mn = fmaxf(mrow[h], mx[h]); /* > -inf: each tile has a valid key */
        corr[h] = expf(mrow[h] - mn);      /* 0 on the first tile */
        mrow[h] = mn;
        lrow[h] *= corr[h];
    }
#pragma unroll
    for (int n = 0; n < NO; n++) {
        o[n][0] *= corr[0], o[n][1] *= corr[0];
        o[n][2] *= corr[1], o[n][3] *= corr[1];
    }
}

/* A warp's range result: (o / l, lse) of its rows m0 + g and m0 + g + 8
 * (row m: listed row m / group, head m % group of KV head kvh) into the
 * partials of range blockIdx.z. */
template <int HD>
__device__ __forceinline__ void shm_store_partial(const shm_args &a, const float (&o)[HD / 8][4],
                                                  const float (&mrow)[2], float (&lrow)[2], int m0,
                                                  int kvh, int g, int t) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 1);
        lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 2);
    }
    const int gs = a.group, M = a.n_rows * gs;
    const size_t plane = (size_t)a.n_rows * a.n_heads;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int m = m0 + g + 8 * h;
        if (m >= M) continue;
        size_t w = (size_t)(m / gs) * a.n_heads + (size_t)kvh * gs + m % gs;
        size_t pi = (size_t)blockIdx.z * plane + w;
        bool empty = !(lrow[h] > 0.0f);
        float inv = empty ? 0.0f : 1.0f / lrow[h];
        float *po = a.p_o + pi * HD;
#pragma unroll
        for (int n = 0; n < HD / 8; n++)
            *(float2 *)(po + n * 8 + 2 * t) = make_float2(o[n][2 * h] * inv, o[n][2 * h + 1] * inv);
        if (t == 0) a.p_lse[pi] = empty ? -INFINITY : mrow[h] + logf(lrow[h]);
    }
}

/* The 16-bit KV kernel (attn_shared_wgmma.cu): grid (M tiles, KV heads,
 * ranges), SHM_WARPS warps; writes p_o and p_lse as the f32 one does. */
bool ts_cuda_shm16_init(ts_cuda *c);
void ts_cuda_shm16_launch(ts_cuda *c, const shm_args &a, ts_dtype dt, int hd, dim3 grid);
/* Keys a tile of the 16-bit kernel (ranges are whole tiles). */
#define SHM16_KEYS 64

#endif
