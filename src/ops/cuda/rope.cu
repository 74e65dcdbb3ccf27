/* Rotate-half RoPE in place on x[n][n_heads][head_dim]; the angle
 * pos * inv_freq is one f32 product, as the CPU reference and transformers
 * compute it; full-precision sinf/cosf. One thread per (token, head, pair). */
#include "ops/cuda/cuda_internal.cuh"

__global__ void rope_kernel(float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                            const float *inv_freq) {
    int half = head_dim / 2;
    size_t total = (size_t)n * (size_t)n_heads * (size_t)half;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (size_t)gridDim.x * blockDim.x) {
        int j = (int)(k % (size_t)half);
        size_t ih = k / (size_t)half; /* token * n_heads + head */
        int i = (int)(ih / (size_t)n_heads);
        float ang = __fmul_rn((float)pos[i], inv_freq[j]);
        float s, c;
        sincosf(ang, &s, &c);
        float *xh = x + ih * (size_t)head_dim;
        float a = xh[j], b = xh[j + half];
        xh[j] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        xh[j + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

void ts_cuda_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                  const float *inv_freq) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0 || n_heads <= 0 || head_dim < 2) return;
    size_t total = (size_t)n * (size_t)n_heads * (size_t)(head_dim / 2);
    unsigned blocks = ts_cdiv(total, 256);
    if (blocks > 65535u * 4) blocks = 65535u * 4;
    rope_kernel<<<blocks, 256, 0, c->stream>>>(x, pos, n, n_heads, head_dim, inv_freq);
    TS_LAUNCHED(c, "rope_kernel");
}
