/* Log-sum-exp merge of partial attention states on the device: the same
 * arithmetic as src/ops/attn_merge.c (relative to the larger lse; the empty
 * state o = 0, lse = -inf is neutral and never yields NaN). One warp per
 * (row, head). */
#include <math.h>

#include "ops/cuda/cuda_internal.cuh"

__global__ void merge_kernel(float *o_a, float *lse_a, const float *o_b, const float *lse_b,
                             const int32_t *rows, int n_rows, int n_heads, int head_dim) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (size_t)n_rows * (size_t)n_heads) return;
    size_t i = w / (size_t)n_heads, h = w % (size_t)n_heads;
    size_t row = rows ? (size_t)rows[i] : i;
    size_t r = row * (size_t)n_heads + h;
    float la = lse_a[r], lb = lse_b[r];
    float *oa = o_a + r * (size_t)head_dim;
    const float *ob = o_b + r * (size_t)head_dim;
    if (lb == -INFINITY) return;
    if (la == -INFINITY) {
        for (int c = lane; c < head_dim; c += 32) oa[c] = ob[c];
        if (lane == 0) lse_a[r] = lb;
        return;
    }
    float m = la > lb ? la : lb;
    float wa = expf(la - m), wb = expf(lb - m);
    float inv = 1.0f / (wa + wb);
    for (int c = lane; c < head_dim; c += 32) oa[c] = (oa[c] * wa + ob[c] * wb) * inv;
    __syncwarp();
    if (lane == 0) lse_a[r] = m + logf(wa + wb);
}

static void merge(ts_cuda *c, float *o_a, float *lse_a, const float *o_b, const float *lse_b,
                  const int32_t *rows, int n_rows, int n_heads, int head_dim) {
    if (!ts_cuda_live(c) || n_rows <= 0 || n_heads <= 0) return;
    size_t warps = (size_t)n_rows * (size_t)n_heads;
    merge_kernel<<<ts_cdiv(warps, 8), 256, 0, c->stream>>>(o_a, lse_a, o_b, lse_b, rows, n_rows,
                                                           n_heads, head_dim);
    TS_LAUNCHED(c, "merge_kernel");
}

void ts_cuda_attn_merge(ts_cuda *c, float *o_a, float *lse_a, const float *o_b,
                        const float *lse_b, int n, int n_heads, int head_dim) {
    merge(c, o_a, lse_a, o_b, lse_b, NULL, n, n_heads, head_dim);
}

void ts_cuda_attn_merge_rows(ts_cuda *c, float *o_a, float *lse_a, const float *o_b,
                             const float *lse_b, const int32_t *rows, int n_rows,
                             int n_heads, int head_dim) {
    merge(c, o_a, lse_a, o_b, lse_b, rows, n_rows, n_heads, head_dim);
}
