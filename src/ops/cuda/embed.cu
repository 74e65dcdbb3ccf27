/* Embedding lookup: out[n][cols] = rows ids[n] of a device weight table,
 * widened to f32. One block per token. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "ops/cuda/cuda_internal.cuh"

template <typename T> __device__ __forceinline__ float ts_widen(T v);
template <> __device__ __forceinline__ float ts_widen<float>(float v) { return v; }
template <> __device__ __forceinline__ float ts_widen<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}
template <> __device__ __forceinline__ float ts_widen<__half>(__half v) { return __half2float(v); }

template <typename T>
__global__ void embed_kernel(float *out, const T *table, const int32_t *ids, int cols) {
    const T *src = table + (size_t)ids[blockIdx.x] * (size_t)cols;
    float *dst = out + (size_t)blockIdx.x * (size_t)cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = ts_widen<T>(src[c]);
}

void ts_cuda_embed(void *ctx, float *out, const ts_wmat *table, const int32_t *ids, int n) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    switch (table->dtype) {
    case TS_DT_F32:
        embed_kernel<float><<<n, 256, 0, c->stream>>>(out, (const float *)table->data, ids,
                                                      table->cols);
        break;
    case TS_DT_BF16:
        embed_kernel<__nv_bfloat16><<<n, 256, 0, c->stream>>>(
            out, (const __nv_bfloat16 *)table->data, ids, table->cols);
        break;
    case TS_DT_F16:
        embed_kernel<__half><<<n, 256, 0, c->stream>>>(out, (const __half *)table->data, ids,
                                                       table->cols);
        break;
    default: TS_BAD(c, "embed: table dtype"); return;
    }
    TS_LAUNCHED(c, "embed_kernel");
}
