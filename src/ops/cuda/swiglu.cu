/* SwiGLU: out = silu(gate) * up, elementwise; out may alias gate. */
#include "ops/cuda/cuda_internal.cuh"

__global__ void swiglu_kernel(float *out, const float *gate, const float *up, size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ts_cuda_swiglu(void *ctx, float *out, const float *gate, const float *up, int n, int d) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0 || d <= 0) return;
    size_t total = (size_t)n * (size_t)d;
    unsigned blocks = ts_cdiv(total, 256);
    if (blocks > 65535u * 4) blocks = 65535u * 4;
    swiglu_kernel<<<blocks, 256, 0, c->stream>>>(out, gate, up, total);
    TS_LAUNCHED(c, "swiglu_kernel");
}
