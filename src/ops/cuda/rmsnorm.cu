/* RMSNorm, and RMSNorm fused with the residual add: one block per row, the
 * sum of squares reduced in f32 over warps. y may alias x. */
#include "ops/cuda/cuda_internal.cuh"

#define RMS_THREADS 256

/* x[d] (+= r[d] when r) then y = x * inv_rms * g. */
__global__ void rmsnorm_kernel(float *y, float *x, const float *r, const float *g, int d,
                               float eps) {
    __shared__ float part[RMS_THREADS / 32];
    ts_pdl_wait();
    ts_pdl_trigger();
    size_t base = (size_t)blockIdx.x * (size_t)d;
    float *xi = x + base;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < d; c += RMS_THREADS) {
        float v = xi[c];
        if (r) {
            v += r[base + c];
            xi[c] = v;
        }
        ss = fmaf(v, v, ss);
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (int w = 0; w < RMS_THREADS / 32; w++) tot += part[w];
    float inv = 1.0f / sqrtf(tot / (float)d + eps);
    for (int c = threadIdx.x; c < d; c += RMS_THREADS) y[base + c] = xi[c] * inv * g[c];
}

void ts_cuda_rmsnorm(void *ctx, float *y, const float *x, const float *g, int n, int d,
                     float eps) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0 || d <= 0) return;
    /* x is only read when r == NULL */
    ts_cuda_launch(c, "rmsnorm_kernel", rmsnorm_kernel, dim3(n), dim3(RMS_THREADS), 0, y,
                   (float *)x, (const float *)NULL, g, d, eps);
}

void ts_cuda_add_rmsnorm(void *ctx, float *y, float *x, const float *r, const float *g, int n,
                         int d, float eps) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0 || d <= 0) return;
    ts_cuda_launch(c, "rmsnorm_kernel(add)", rmsnorm_kernel, dim3(n), dim3(RMS_THREADS), 0, y, x,
                   r, g, d, eps);
}
