/* y[n][rows] = x[n][cols] . W^T (+ bias): weights stay in the checkpoint's
 * dtype on the device ([rows][cols], row-major), activations are f32.
 *
 * Paths:
 * - n <= WMV_TOKENS (decode), any weight dtype: a weight-streaming kernel,
 *   one warp per output row, 16-byte weight loads, f32 accumulation; each
 *   weight is read once per call. Also the fallback for F16 weights.
 * - BF16 weights, n > WMV_TOKENS: cuBLAS with bf16 operands and f32
 *   accumulation (CUBLAS_COMPUTE_32F) on the tensor cores.
 *   TS_PREC_BF16 rounds x to bf16 (nearest even) first, as the CPU does.
 *   TS_PREC_F32 keeps f32 activations exactly: x = hi + lo + lo2 with three
 *   bf16 parts (8 + 8 + 8 mantissa bits cover f32's 24); each bf16 x bf16
 *   product is exact in f32, so one GEMM over the stacked parts followed by
 *   a sum gives f32 accuracy at tensor-core speed.
 * - F32 weights, n > WMV_TOKENS: cuBLAS f32 GEMM (no TF32); TS_PREC_BF16
 *   first rounds x to bf16 values held in f32. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "ops/cuda/cuda_internal.cuh"

#define WMV_TOKENS 8
#define WMV_WARPS 8

__device__ __forceinline__ float rnd_bf16(float v) {
    return __bfloat162float(__float2bfloat16_rn(v));
}

/* 8 weights of a 16-byte vector, widened. */
__device__ __forceinline__ void widen8(const uint4 &u, const __nv_bfloat16 *, float *w) {
    const __nv_bfloat162 *p = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(p[i]);
        w[2 * i] = f.x;
        w[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void widen8(const uint4 &u, const __half *, float *w) {
    const __half2 *p = (const __half2 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __half22float2(p[i]);
        w[2 * i] = f.x;
        w[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ float widen1(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float widen1(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen1(float v) { return v; }

/* Grid: (ceil(rows / (WMV_WARPS * RW)), ceil(n / WMV_TOKENS)). Each warp owns
 * RW consecutive output rows, so every activation load serves RW rows.
 * vec: the 16-byte path is allowed (aligned rows and x). */
template <typename T, int RW>
__global__ void __launch_bounds__(WMV_WARPS * 32)
    wmv_kernel(float *y, const float *x, int n, const T *w, int rows, int cols,
               const float *bias, bool round_x, bool vec) {
    int lane = threadIdx.x & 31;
    int j0 = (blockIdx.x * WMV_WARPS + (threadIdx.x >> 5)) * RW;
    int t0 = blockIdx.y * WMV_TOKENS;
    if (j0 >= rows) return;
    int nt = n - t0 < WMV_TOKENS ? n - t0 : WMV_TOKENS;
    int nr = rows - j0 < RW ? rows - j0 : RW;
    const float *xt = x + (size_t)t0 * (size_t)cols;
    float acc[RW][WMV_TOKENS];
#pragma unroll
    for (int q = 0; q < RW; q++)
#pragma unroll
        for (int t = 0; t < WMV_TOKENS; t++) acc[q][t] = 0.0f;
    constexpr int V = 16 / sizeof(T); /* elements per 16-byte load */
    int k_vec = vec ? cols / V * V : 0;
    /* U steps of weight loads are issued before any is used (bytes in flight) */
    constexpr int U = RW == 1 ? 4 : 2;
    for (int kb = lane * V; kb < k_vec; kb += U * 32 * V) {
        uint4 ub[U][RW];
#pragma unroll
        for (int i = 0; i < U; i++) {
            int k = kb + i * 32 * V;
#pragma unroll
            for (int q = 0; q < RW; q++) {
                int jq = q < nr ? j0 + q : j0; /* past the last row: row j0 again, unused */
                ub[i][q] = k < k_vec ? __ldg((const uint4 *)(w + (size_t)jq * (size_t)cols + k))
                                     : make_uint4(0u, 0u, 0u, 0u);
            }
        }
#pragma unroll
        for (int i = 0; i < U; i++) {
            int k = kb + i * 32 * V;
            if (k >= k_vec) break;
            float wv[RW][V];
#pragma unroll
            for (int q = 0; q < RW; q++) {
                uint4 u = ub[i][q];
                if constexpr (sizeof(T) == 2) {
                    widen8(u, (const T *)0, wv[q]);
                } else {
                    wv[q][0] = __uint_as_float(u.x), wv[q][1] = __uint_as_float(u.y);
                    wv[q][2] = __uint_as_float(u.z), wv[q][3] = __uint_as_float(u.w);
                }
            }
#pragma unroll
            for (int t = 0; t < WMV_TOKENS; t++) {
                if (t < nt) {
                    const float4 *xp = (const float4 *)(xt + (size_t)t * (size_t)cols + k);
#pragma unroll
                    for (int h = 0; h < V / 4; h++) {
                        float4 xv = __ldg(xp + h);
                        if (round_x) {
                            xv.x = rnd_bf16(xv.x), xv.y = rnd_bf16(xv.y);
                            xv.z = rnd_bf16(xv.z), xv.w = rnd_bf16(xv.w);
                        }
#pragma unroll
                        for (int q = 0; q < RW; q++) {
                            acc[q][t] = fmaf(xv.x, wv[q][4 * h], acc[q][t]);
                            acc[q][t] = fmaf(xv.y, wv[q][4 * h + 1], acc[q][t]);
                            acc[q][t] = fmaf(xv.z, wv[q][4 * h + 2], acc[q][t]);
                            acc[q][t] = fmaf(xv.w, wv[q][4 * h + 3], acc[q][t]);
                        }
                    }
                }
            }
        }
    }
    for (int k = k_vec + lane; k < cols; k += 32) { /* unaligned path / tail */
#pragma unroll
        for (int t = 0; t < WMV_TOKENS; t++) {
            if (t < nt) {
                float xv = xt[(size_t)t * (size_t)cols + k];
                if (round_x) xv = rnd_bf16(xv);
#pragma unroll
                for (int q = 0; q < RW; q++)
                    if (q < nr)
                        acc[q][t] = fmaf(xv, widen1(w[(size_t)(j0 + q) * (size_t)cols + k]),
                                         acc[q][t]);
            }
        }
    }
#pragma unroll
    for (int q = 0; q < RW; q++)
#pragma unroll
        for (int t = 0; t < WMV_TOKENS; t++) {
            float a = acc[q][t];
            for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
            if (lane == 0 && t < nt && q < nr)
                y[(size_t)(t0 + t) * (size_t)rows + (size_t)(j0 + q)] =
                    a + (bias ? bias[j0 + q] : 0.0f);
        }
}

/* x (total floats) -> bf16 parts: p[0] = hi (and p[total..] = lo, lo2 when parts == 3). */
__global__ void split_bf16_kernel(__nv_bfloat16 *p, const float *x, size_t total, int parts) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float r = x[i];
        for (int k = 0; k < parts; k++) {
            __nv_bfloat16 b = __float2bfloat16_rn(r);
            p[(size_t)k * total + i] = b;
            r -= __bfloat162float(b); /* exact */
        }
    }
}

__global__ void round_f32_kernel(float *o, const float *x, size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        o[i] = rnd_bf16(x[i]);
}

/* y[n][rows] = (p2 + p1) + p0 (+ bias), p_k = part + k * n * rows; parts 1 or 3. */
__global__ void sum_bias_kernel(float *y, const float *part, int parts, size_t total, int rows,
                                const float *bias) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = part[i];
        if (parts == 3) v = (part[2 * total + i] + part[total + i]) + v;
        if (bias) v += bias[i % (size_t)rows];
        y[i] = v;
    }
}

static unsigned grid1(size_t total) {
    unsigned b = ts_cdiv(total, 256);
    return b > 65535u * 8 ? 65535u * 8 : (b ? b : 1);
}

static void wmv(ts_cuda *c, float *y, const float *x, int n, const ts_wmat *w,
                const float *bias, bool round_x) {
    size_t es = w->dtype == TS_DT_F32 ? 4 : 2;
    bool vec = ((uintptr_t)x % 16 == 0) && ((uintptr_t)w->data % 16 == 0) &&
               ((size_t)w->cols * es % 16 == 0) && (w->cols % 4 == 0);
    /* one row per warp while there are few tokens (more warps in flight);
     * four rows per warp once activations are reused across rows */
    int rw = n <= 2 ? 1 : 4;
    dim3 grid(ts_cdiv((size_t)w->rows, (size_t)WMV_WARPS * rw), ts_cdiv((size_t)n, WMV_TOKENS));
    if (grid.y > 65535u) {
        TS_BAD(c, "matmul: too many tokens for the weight-streaming kernel");
        return;
    }
#define WMV_LAUNCH(TY, RWV)                                                              \
    wmv_kernel<TY, RWV><<<grid, WMV_WARPS * 32, 0, c->stream>>>(                         \
        y, x, n, (const TY *)w->data, w->rows, w->cols, bias, round_x, vec)
    switch (w->dtype) {
    case TS_DT_BF16:
        if (rw == 1) WMV_LAUNCH(__nv_bfloat16, 1);
        else WMV_LAUNCH(__nv_bfloat16, 4);
        break;
    case TS_DT_F16:
        if (rw == 1) WMV_LAUNCH(__half, 1);
        else WMV_LAUNCH(__half, 4);
        break;
    case TS_DT_F32:
        if (rw == 1) WMV_LAUNCH(float, 1);
        else WMV_LAUNCH(float, 4);
        break;
    default: TS_BAD(c, "matmul: weight dtype"); return;
    }
#undef WMV_LAUNCH
    TS_LAUNCHED(c, "wmv_kernel");
}

/* Y^T (rows x m, col-major = y row-major) = W (rows x cols) . X^T, with W
 * row-major seen by cuBLAS as a col-major cols x rows matrix, transposed. */
static bool gemm(ts_cuda *c, void *y, cudaDataType yt, const void *w, cudaDataType wt,
                 const void *x, cudaDataType xt, int rows, int m, int cols) {
    const float one = 1.0f, zero = 0.0f;
    return TS_BLAS(c, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, m, cols, &one, w,
                                   wt, cols, x, xt, cols, &zero, y, yt, rows,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void ts_cuda_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                    const float *bias, ts_prec prec) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (w->rows <= 0 || w->cols <= 0) {
        TS_BAD(c, "matmul: weight shape");
        return;
    }
    bool round_x = prec == TS_PREC_BF16;
    if (n <= WMV_TOKENS || w->dtype == TS_DT_F16) {
        wmv(c, y, x, n, w, bias, round_x);
        return;
    }
    size_t nx = (size_t)n * (size_t)w->cols, ny = (size_t)n * (size_t)w->rows;
    if (w->dtype == TS_DT_BF16) {
        int parts = round_x ? 1 : 3;
        __nv_bfloat16 *xb = (__nv_bfloat16 *)ts_cuda_scratch_get(
            c, &c->act, (size_t)parts * nx * sizeof(__nv_bfloat16));
        if (!xb) return;
        split_bf16_kernel<<<grid1(nx), 256, 0, c->stream>>>(xb, x, nx, parts);
        if (!TS_LAUNCHED(c, "split_bf16_kernel")) return;
        if (parts == 1 && !bias) {
            gemm(c, y, CUDA_R_32F, w->data, CUDA_R_16BF, xb, CUDA_R_16BF, w->rows, n, w->cols);
            return;
        }
        float *p = (float *)ts_cuda_scratch_get(c, &c->part, (size_t)parts * ny * sizeof(float));
        if (!p) return;
        /* the stacked parts form one (parts * n)-column operand */
        if (!gemm(c, p, CUDA_R_32F, w->data, CUDA_R_16BF, xb, CUDA_R_16BF, w->rows, parts * n,
                  w->cols))
            return;
        sum_bias_kernel<<<grid1(ny), 256, 0, c->stream>>>(y, p, parts, ny, w->rows, bias);
        TS_LAUNCHED(c, "sum_bias_kernel");
        return;
    }
    if (w->dtype == TS_DT_F32) {
        const float *xs = x;
        if (round_x) {
            float *xr = (float *)ts_cuda_scratch_get(c, &c->act, nx * sizeof(float));
            if (!xr) return;
            round_f32_kernel<<<grid1(nx), 256, 0, c->stream>>>(xr, x, nx);
            if (!TS_LAUNCHED(c, "round_f32_kernel")) return;
            xs = xr;
        }
        if (!gemm(c, y, CUDA_R_32F, w->data, CUDA_R_32F, xs, CUDA_R_32F, w->rows, n, w->cols))
            return;
        if (bias) {
            sum_bias_kernel<<<grid1(ny), 256, 0, c->stream>>>(y, y, 1, ny, w->rows, bias);
            TS_LAUNCHED(c, "sum_bias_kernel");
        }
        return;
    }
    TS_BAD(c, "matmul: weight dtype");
}
