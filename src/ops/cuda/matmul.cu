/* y[n][rows] = x[n][cols] . W^T (+ bias): weights stay in the checkpoint's
 * dtype on the device ([rows][cols], row-major), activations are f32.
 *
 * Paths:
 * - n <= WMV_TOKENS (decode), any weight dtype: a weight-streaming kernel,
 *   one warp per output row, 16-byte weight loads, f32 accumulation; each
 *   weight is read once per call. Also the fallback for F16 weights.
 * - BF16 weights, 9-64 rows (cols a multiple of 8, up to 32 MiB of weights
 *   a launch): matmul_tc.cu, the tensor cores with the weights read once,
 *   x in the same parts as below.
 * - BF16 weights, other n > WMV_TOKENS: cuBLAS with bf16 operands and f32
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

/* Up to WMV_SEGS weight matrices of one input, streamed in one launch
 * (q, k and v), or the gate and up matrices with SwiGLU applied. */
#define WMV_SEGS 4
typedef struct wmv_seg {
    const void *w;      /* [rows][cols] */
    const void *w2;     /* swiglu: the up matrix, same shape; else NULL */
    float *y;           /* [n][rows] */
    const float *bias;  /* [rows] or NULL */
    int rows;
    int block0;         /* first block of this segment */
} wmv_seg;
typedef struct wmv_args {
    wmv_seg seg[WMV_SEGS];
    int n_seg;
    const float *x;     /* [n][cols] */
    int n, cols;
    bool round_x, vec;  /* vec: the 16-byte path is allowed (aligned rows and x) */
    const float *norm_g;/* [cols]: x is RMS-normalised with this gain on the fly, or NULL */
    float eps;
    bool acc_out;       /* y += the product (the residual add) */
} wmv_args;

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* Grid: (sum over segments of ceil(rows / (WMV_WARPS * RW)), ceil(n / WMV_TOKENS)).
 * Each warp owns RW consecutive output rows of one segment (with SWI, the
 * same rows of the gate and the up matrix), so every activation load serves
 * MR = RW (x2) weight rows. TOK = 1 keeps a single token's accumulators
 * (fewer registers: blocks of the next kernel fit beside these, see PDL). */
template <typename T, int RW, bool SWI, int TOK>
__global__ void __launch_bounds__(WMV_WARPS * 32) wmv_kernel(wmv_args a) {
    constexpr int MR = SWI ? 2 * RW : RW;
    int si = 0;
#pragma unroll
    for (int k = 1; k < WMV_SEGS; k++)
        if (k < a.n_seg && (int)blockIdx.x >= a.seg[k].block0) si = k;
    const wmv_seg &sg = a.seg[si];
    int lane = threadIdx.x & 31, cols = a.cols, rows = sg.rows;
    int j0 = ((blockIdx.x - sg.block0) * WMV_WARPS + (threadIdx.x >> 5)) * RW;
    int t0 = blockIdx.y * WMV_TOKENS;
    if (j0 >= rows) return;
    int nt = a.n - t0 < TOK ? a.n - t0 : TOK; /* TOK: 1 (one token) or WMV_TOKENS */
    int nr = rows - j0 < RW ? rows - j0 : RW;
    const float *xt = a.x + (size_t)t0 * (size_t)cols;
    const T *rp[MR]; /* the weight rows this warp reads; past the last row: row j0 again */
#pragma unroll
    for (int q = 0; q < MR; q++) {
        int r = q % RW;
        const T *base = (const T *)(SWI && q >= RW ? sg.w2 : sg.w);
        rp[q] = base + (size_t)(r < nr ? j0 + r : j0) * (size_t)cols;
    }
    float acc[MR][TOK];
#pragma unroll
    for (int q = 0; q < MR; q++)
#pragma unroll
        for (int t = 0; t < TOK; t++) acc[q][t] = 0.0f;
    constexpr int V = 16 / sizeof(T); /* elements per 16-byte load */
    int k_vec = a.vec ? cols / V * V : 0;
    /* U steps of weight loads are issued before any is used (bytes in flight);
     * the first ones before waiting for the kernel that writes x (PDL), the
     * next ones while the current ones are consumed */
    constexpr int U = MR == 1 ? 4 : MR <= 4 ? 2 : 1;
    constexpr int STEP = U * 32 * V;
    uint4 ub[U][MR];
    auto load = [&](int kb) {
#pragma unroll
        for (int i = 0; i < U; i++) {
            int k = kb + i * 32 * V;
#pragma unroll
            for (int q = 0; q < MR; q++)
                ub[i][q] = k < k_vec ? __ldg((const uint4 *)(rp[q] + k)) : make_uint4(0u, 0u, 0u, 0u);
        }
    };
    load(lane * V);
    ts_pdl_wait();
    ts_pdl_trigger();
    float inv[TOK]; /* 1 / rms of each token's x when normalising */
#pragma unroll
    for (int t = 0; t < TOK; t++) {
        inv[t] = 1.0f;
        if (a.norm_g && t < nt) {
            const float *xr = xt + (size_t)t * (size_t)cols;
            float ss = 0.0f;
            for (int k = lane; k < cols; k += 32) ss = fmaf(xr[k], xr[k], ss);
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            inv[t] = 1.0f / sqrtf(ss / (float)cols + a.eps);
        }
    }
    for (int kb = lane * V; kb < k_vec; kb += STEP) {
        uint4 cur[U][MR];
#pragma unroll
        for (int i = 0; i < U; i++)
#pragma unroll
            for (int q = 0; q < MR; q++) cur[i][q] = ub[i][q];
        if (kb + STEP < k_vec) load(kb + STEP);
        for (int i = 0; i < U; i++) {
            int k = kb + i * 32 * V;
            if (k >= k_vec) break;
            float wv[MR][V];
#pragma unroll
            for (int q = 0; q < MR; q++) {
                uint4 u = cur[i][q];
                if constexpr (sizeof(T) == 2) {
                    widen8(u, (const T *)0, wv[q]);
                } else {
                    wv[q][0] = __uint_as_float(u.x), wv[q][1] = __uint_as_float(u.y);
                    wv[q][2] = __uint_as_float(u.z), wv[q][3] = __uint_as_float(u.w);
                }
            }
#pragma unroll
            for (int t = 0; t < TOK; t++) {
                if (t < nt) {
                    const float4 *xp = (const float4 *)(xt + (size_t)t * (size_t)cols + k);
#pragma unroll
                    for (int h = 0; h < V / 4; h++) {
                        float4 xv = __ldg(xp + h);
                        if (a.norm_g) { /* as rmsnorm_kernel: x * inv * g */
                            float4 gv = __ldg((const float4 *)(a.norm_g + k) + h);
                            xv.x = xv.x * inv[t] * gv.x, xv.y = xv.y * inv[t] * gv.y;
                            xv.z = xv.z * inv[t] * gv.z, xv.w = xv.w * inv[t] * gv.w;
                        }
                        if (a.round_x) {
                            xv.x = rnd_bf16(xv.x), xv.y = rnd_bf16(xv.y);
                            xv.z = rnd_bf16(xv.z), xv.w = rnd_bf16(xv.w);
                        }
#pragma unroll
                        for (int q = 0; q < MR; q++) {
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
        for (int t = 0; t < TOK; t++) {
            if (t < nt) {
                float xv = xt[(size_t)t * (size_t)cols + k];
                if (a.norm_g) xv = xv * inv[t] * a.norm_g[k];
                if (a.round_x) xv = rnd_bf16(xv);
#pragma unroll
                for (int q = 0; q < MR; q++) acc[q][t] = fmaf(xv, widen1(rp[q][k]), acc[q][t]);
            }
        }
    }
#pragma unroll
    for (int q = 0; q < MR; q++)
#pragma unroll
        for (int t = 0; t < TOK; t++)
            for (int o = 16; o > 0; o >>= 1) acc[q][t] += __shfl_xor_sync(0xffffffffu, acc[q][t], o);
    if (lane != 0) return;
#pragma unroll
    for (int q = 0; q < RW; q++)
#pragma unroll
        for (int t = 0; t < TOK; t++) {
            if (t >= nt || q >= nr) continue;
            float v = acc[q][t] + (sg.bias ? sg.bias[j0 + q] : 0.0f);
            if constexpr (SWI) v = silu_mul(v, acc[RW + q][t]);
            float *yp = sg.y + (size_t)(t0 + t) * (size_t)rows + (size_t)(j0 + q);
            *yp = a.acc_out ? *yp + v : v;
        }
}

/* x (total floats) -> bf16 parts: p[0] = hi (and p[total..] = lo, lo2 when parts == 3). */
__global__ void split_bf16_kernel(__nv_bfloat16 *p, const float *x, size_t total, int parts) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float r = x[i];
        for (int k = 0; k < parts; k++) p[(size_t)k * total + i] = ts_bf16_take(&r);
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

bool ts_cuda_split_bf16(ts_cuda *c, __nv_bfloat16 *p, const float *x, size_t total, int parts) {
    split_bf16_kernel<<<grid1(total), 256, 0, c->stream>>>(p, x, total, parts);
    return TS_LAUNCHED(c, "split_bf16_kernel");
}

/* Streams the weights of n_w products of x (n <= WMV_TOKENS rows, or any
 * n for F16 weights) in one launch; swi: one product pair w[0] (gate) and
 * w[1] (up), y[0] = silu(gate) * up. All weights share dtype and cols. */
static void wmv_multi(ts_cuda *c, float *const *y, const float *x, int n, const ts_wmat *w,
                      const float *const *bias, int n_w, bool round_x, bool swi,
                      const float *norm_g = NULL, float eps = 0.0f, bool acc_out = false) {
    wmv_args a = {};
    a.norm_g = norm_g, a.eps = eps, a.acc_out = acc_out;
    int n_seg = swi ? 1 : n_w;
    if (n_seg < 1 || n_seg > WMV_SEGS) {
        TS_BAD(c, "matmul: number of fused products");
        return;
    }
    ts_dtype dt = w[0].dtype;
    size_t es = dt == TS_DT_F32 ? 4 : 2;
    bool vec = ((uintptr_t)x % 16 == 0) && ((size_t)w[0].cols * es % 16 == 0) &&
               (w[0].cols % 4 == 0) && ((uintptr_t)norm_g % 16 == 0);
    for (int i = 0; i < n_w; i++) {
        if (w[i].dtype != dt || w[i].cols != w[0].cols || w[i].rows <= 0 ||
            (swi && w[i].rows != w[0].rows)) {
            TS_BAD(c, "matmul: fused products differ in dtype or shape");
            return;
        }
        vec = vec && (uintptr_t)w[i].data % 16 == 0;
    }
    /* one row per warp while there are few tokens (more warps in flight);
     * several rows per warp once activations are reused across rows */
    int rw = n <= 2 ? c->wmv_rw1 : swi ? 2 : 4;
    unsigned blocks = 0;
    for (int i = 0; i < n_seg; i++) {
        a.seg[i].w = w[swi ? 0 : i].data;
        a.seg[i].w2 = swi ? w[1].data : NULL;
        a.seg[i].y = y[i];
        a.seg[i].bias = bias ? bias[i] : NULL;
        a.seg[i].rows = w[i].rows;
        a.seg[i].block0 = (int)blocks;
        blocks += ts_cdiv((size_t)w[i].rows, (size_t)WMV_WARPS * rw);
    }
    a.n_seg = n_seg, a.x = x, a.n = n, a.cols = w[0].cols, a.round_x = round_x, a.vec = vec;
    dim3 grid(blocks, ts_cdiv((size_t)n, WMV_TOKENS));
    if (grid.y > 65535u) {
        TS_BAD(c, "matmul: too many tokens for the weight-streaming kernel");
        return;
    }
#define WMV_LAUNCH(TY, RWV, S)                                                            \
    (n == 1 ? ts_cuda_launch(c, "wmv_kernel", wmv_kernel<TY, RWV, S, 1>, grid,               \
                             dim3(WMV_WARPS * 32), 0, a)                                     \
            : ts_cuda_launch(c, "wmv_kernel", wmv_kernel<TY, RWV, S, WMV_TOKENS>, grid,      \
                             dim3(WMV_WARPS * 32), 0, a))
#define WMV_RW(TY, S)                                                                    \
    do {                                                                                  \
        if (rw == 1) WMV_LAUNCH(TY, 1, S);                                                \
        else if (S || rw == 2) WMV_LAUNCH(TY, 2, S);                                      \
        else WMV_LAUNCH(TY, 4, S);                                                        \
    } while (0)
#define WMV_DT(TY)                                                                       \
    do {                                                                                  \
        if (swi) WMV_RW(TY, true);                                                        \
        else WMV_RW(TY, false);                                                           \
    } while (0)
    switch (dt) {
    case TS_DT_BF16: WMV_DT(__nv_bfloat16); break;
    case TS_DT_F16: WMV_DT(__half); break;
    case TS_DT_F32: WMV_DT(float); break;
    default: TS_BAD(c, "matmul: weight dtype"); return;
    }
#undef WMV_DT
#undef WMV_RW
#undef WMV_LAUNCH
}

static void wmv(ts_cuda *c, float *y, const float *x, int n, const ts_wmat *w,
                const float *bias, bool round_x) {
    wmv_multi(c, &y, x, n, w, &bias, 1, round_x, false);
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
    if (ts_cuda_tmv(c, &y, x, n, w, &bias, 1, round_x, false, false)) return;
    size_t nx = (size_t)n * (size_t)w->cols, ny = (size_t)n * (size_t)w->rows;
    if (w->dtype == TS_DT_BF16) {
        int parts = round_x ? 1 : 3;
        __nv_bfloat16 *xb = (__nv_bfloat16 *)ts_cuda_scratch_get(
            c, &c->act, (size_t)parts * nx * sizeof(__nv_bfloat16));
        if (!xb) return;
        if (!ts_cuda_split_bf16(c, xb, x, nx, parts)) return;
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

void ts_cuda_matmul_multi(void *ctx, float *const *y, const float *x, int n, const ts_wmat *w,
                          const float *const *bias, int n_w, ts_prec prec) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0 || n_w <= 0) return;
    bool same = true;
    for (int i = 1; i < n_w; i++) same = same && w[i].dtype == w[0].dtype && w[i].cols == w[0].cols;
    if (n <= WMV_TOKENS && same && n_w <= WMV_SEGS) {
        wmv_multi(c, y, x, n, w, bias, n_w, prec == TS_PREC_BF16, false);
        return;
    }
    if (ts_cuda_tmv(c, y, x, n, w, bias, n_w, prec == TS_PREC_BF16, false, false)) return;
    for (int i = 0; i < n_w; i++) ts_cuda_matmul(ctx, y[i], x, n, &w[i], bias ? bias[i] : NULL, prec);
}

void ts_cuda_matmul_swiglu(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                           const ts_wmat *w_up, ts_prec prec) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (n <= WMV_TOKENS && w_gate->dtype == w_up->dtype) {
        const ts_wmat w[2] = {*w_gate, *w_up};
        wmv_multi(c, &out, x, n, w, NULL, 2, prec == TS_PREC_BF16, true);
        return;
    }
    const ts_wmat gu[2] = {*w_gate, *w_up};
    if (ts_cuda_tmv(c, &out, x, n, gu, NULL, 2, prec == TS_PREC_BF16, true, false)) return;
    /* prefill: two GEMMs, then SwiGLU; the up product goes to scratch */
    float *up = (float *)ts_cuda_scratch_get(c, &c->mlp, (size_t)n * w_up->rows * sizeof(float));
    if (!up) return;
    ts_cuda_matmul(ctx, out, x, n, w_gate, NULL, prec);
    ts_cuda_matmul(ctx, up, x, n, w_up, NULL, prec);
    ts_cuda_swiglu(ctx, out, out, up, n, w_gate->rows);
}

/* y[i] += r[i] */
__global__ void add_kernel(float *y, const float *r, size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += r[i];
}

void ts_cuda_matmul_ex(void *ctx, const ts_matmul_ex *e) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || e->n <= 0) return;
    if (e->n_w < 1 || e->n_w > WMV_SEGS || (e->swiglu && e->n_w != 2)) {
        TS_BAD(c, "matmul_ex: number of products");
        return;
    }
    bool same = true;
    for (int i = 1; i < e->n_w; i++)
        same = same && e->w[i].dtype == e->w[0].dtype && e->w[i].cols == e->w[0].cols;
    if (e->n <= WMV_TOKENS && same) { /* one weight-streaming launch does it all */
        wmv_multi(c, e->y, e->x, e->n, e->w, e->bias, e->n_w, e->prec == TS_PREC_BF16, e->swiglu,
                  e->norm_g, e->norm_eps, e->accumulate);
        return;
    }
    /* larger steps: the unfused ops through scratch */
    int cols = e->w[0].cols;
    const float *x = e->x;
    if (e->norm_g) {
        float *xn = (float *)ts_cuda_scratch_get(c, &c->xn, (size_t)e->n * cols * sizeof(float));
        if (!xn) return;
        ts_cuda_rmsnorm(ctx, xn, e->x, e->norm_g, e->n, cols, e->norm_eps);
        x = xn;
    }
    if (ts_cuda_tmv(c, e->y, x, e->n, e->w, e->bias, e->n_w, e->prec == TS_PREC_BF16, e->swiglu,
                    e->accumulate))
        return;
    int n_out = e->swiglu ? 1 : e->n_w;
    for (int i = 0; i < n_out; i++) {
        size_t ny = (size_t)e->n * e->w[i].rows;
        float *dst = e->y[i];
        if (e->accumulate) {
            dst = (float *)ts_cuda_scratch_get(c, &c->acc, ny * sizeof(float));
            if (!dst) return;
        }
        if (e->swiglu) ts_cuda_matmul_swiglu(ctx, dst, x, e->n, &e->w[0], &e->w[1], e->prec);
        else ts_cuda_matmul(ctx, dst, x, e->n, &e->w[i], e->bias ? e->bias[i] : NULL, e->prec);
        if (e->accumulate) {
            add_kernel<<<grid1(ny), 256, 0, c->stream>>>(e->y[i], dst, ny);
            if (!TS_LAUNCHED(c, "add_kernel")) return;
        }
    }
}
