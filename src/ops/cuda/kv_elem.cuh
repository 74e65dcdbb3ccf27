/* Elements of a paged KV pool on the device: f32, f16 or bf16 (ts_attn's
 * kv_dtype). Kernels that read or write the pool are templates on the
 * element type E (float, __half, __nv_bfloat16); these helpers convert, and
 * TS_KV_SWITCH instantiates a statement for the pool's dtype. Stores round
 * to nearest even, as the CPU's ts_f32_to_f16 / ts_f32_to_bf16. */
#ifndef TS_OPS_CUDA_KV_ELEM_CUH
#define TS_OPS_CUDA_KV_ELEM_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "io/safetensors.h"

static inline bool ts_kv_dtype_ok(ts_dtype dt) {
    return dt == TS_DT_F32 || dt == TS_DT_F16 || dt == TS_DT_BF16;
}

/* Runs the statement with E the element type of dt (checked by the caller). */
#define TS_KV_SWITCH(dt, E, ...)                                                         \
    do {                                                                                 \
        if ((dt) == TS_DT_F16) {                                                         \
            typedef __half E;                                                            \
            __VA_ARGS__;                                                                 \
        } else if ((dt) == TS_DT_BF16) {                                                 \
            typedef __nv_bfloat16 E;                                                     \
            __VA_ARGS__;                                                                 \
        } else {                                                                         \
            typedef float E;                                                             \
            __VA_ARGS__;                                                                 \
        }                                                                                \
    } while (0)

__device__ __forceinline__ float ts_kvf(float x) { return x; }
__device__ __forceinline__ float ts_kvf(__half x) { return __half2float(x); }
__device__ __forceinline__ float ts_kvf(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename E> __device__ __forceinline__ E ts_kv_cvt(float x);
template <> __device__ __forceinline__ float ts_kv_cvt<float>(float x) { return x; }
template <> __device__ __forceinline__ __half ts_kv_cvt<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 ts_kv_cvt<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/* Four consecutive elements as f32; p aligned to 4 elements. */
__device__ __forceinline__ float4 ts_kv_ld4(const float *p) { return *(const float4 *)p; }
__device__ __forceinline__ float4 ts_kv_ld4(const __half *p) {
    uint2 u = *(const uint2 *)p;
    float2 a = __half22float2(*(const __half2 *)&u.x), b = __half22float2(*(const __half2 *)&u.y);
    return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float4 ts_kv_ld4(const __nv_bfloat16 *p) {
    uint2 u = *(const uint2 *)p; /* bf16 -> f32 is a shift */
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                       __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
}

#endif
