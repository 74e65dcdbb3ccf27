/* y[n][rows] = x[n][cols] . W^T for 9-64 activation rows and bf16 weights
 * (launches of up to TMV_MAX_BYTES of weights), on the tensor cores with
 * each weight read from memory once (ts_cuda_tmv).
 *
 * Why: a batched decode step has a few dozen rows. cuBLAS over the three
 * stacked bf16 parts of x (matmul.cu) read the weights at a fraction of the
 * bandwidth there (bench-shared, 16 rows: 2.5 ms of products a step against
 * 0.36 ms of weight bytes), and the weight-streaming f32 kernel is bound by
 * its FMAs above a few rows.
 *
 * How: a block of TMV_WARPS warps takes a band of TMV_ROWS weight rows (with
 * SwiGLU, 64 gate rows and the same 64 up rows) and a range of the columns
 * (split s of ks), and streams both the rows and x's bf16 parts through a
 * ring of shared-memory stages (cp.async, TMV_KC columns a chunk), so x is
 * read once a band. Warp w multiplies its 16 rows over the whole range: the
 * A operand of m16n8k16 mma.sync (bf16 weights by ldmatrix), x as B in PARTS
 * bf16 parts (split by matmul.cu: hi, mid, lo hold f32's 24 bits, so each
 * product is exact and the sums are f32), 8 rows of x an n-tile. With ks > 1
 * each split's sums go to scratch, and the last block of a band to finish
 * (a counter a band, left at zero) adds them in split order, so results do
 * not depend on timing.
 * Bias, SwiGLU and the accumulate into y are applied there. */
#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda/bulk.cuh"
#include "ops/cuda/cuda_internal.cuh"
#include "ops/cuda/mma.cuh"

#define TMV_WARPS 8
#define TMV_ROWS 128 /* weight rows a block: 16 a warp */
#define TMV_KC 64    /* columns a pipeline chunk */
#define TMV_KCP 72   /* its row stride in shared memory (conflict-free ldmatrix) */
#define TMV_STAGES 4
#define TMV_MINN 9
#define TMV_MAXN 64
#define TMV_SEGS 4
#define TMV_TILES 4096 /* row bands of a split launch (one counter each) */
/* Weight bytes of a launch at most. Alone, a 128 MB matrix (8192 x 8192)
 * measured slower here than on cuBLAS (each band re-reads x: 1.5x the
 * weight bytes at 64 rows); Qwen3-0.6B's layer matrices are 4-13 MB. So
 * the larger ones (its 311 MB LM head too) stay on cuBLAS. */
#define TMV_MAX_BYTES (32u << 20)

/* shared memory of a block: the stages (the sums reuse them) */
static constexpr size_t tmv_smem_bytes(int nt, int parts) {
    return (size_t)TMV_STAGES * (TMV_ROWS + parts * 8 * nt) * TMV_KCP * 2;
}

typedef __nv_bfloat16 bf16;

typedef struct tmv_seg {
    const bf16 *w, *w2; /* [rows][cols]; w2: SwiGLU's up matrix, else NULL */
    float *y;           /* [n][rows] */
    const float *bias;  /* [rows] or NULL */
    int rows;
    int tile0;          /* this segment's first row band (blockIdx.x) */
} tmv_seg;

typedef struct tmv_args {
    tmv_seg seg[TMV_SEGS];
    int n_seg;
    const bf16 *xb;   /* [PARTS][n][cols] */
    int n, cols;
    int ks, kr;       /* column splits; columns a split (a multiple of TMV_KC; the last: the rest) */
    bool acc_out;     /* y += the product */
    float *part;      /* ks > 1: [bands][ks][TMV_ROWS][n] sums of each split */
    unsigned *cnt;    /* ks > 1: [bands] splits done, zero between launches */
} tmv_args;

/* Queues chunk (columns [kc, kc + TMV_KC) of [.., k_hi)) of the block's
 * weight rows and of x's parts into one pipeline stage: W [TMV_ROWS][TMV_KCP],
 * then X [PARTS][8 NT][TMV_KCP]; 16 bytes a cp.async, zeros past the rows,
 * x's n rows or k_hi. */
template <int NT, bool SWI, int PARTS>
__device__ __forceinline__ void tmv_load(const tmv_args &a, const tmv_seg &sg, int r0, int kc,
                                         int k_hi, bf16 *st) {
    constexpr int NX = 8 * NT, LINES = (TMV_ROWS + PARTS * NX) * (TMV_KC / 8);
    for (int i = threadIdx.x; i < LINES; i += TMV_WARPS * 32) {
        const int row = i / (TMV_KC / 8), col = kc + (i % (TMV_KC / 8)) * 8;
        const bf16 *src = a.xb;
        bool ok = col < k_hi;
        if (row < TMV_ROWS) { /* SWI: rows 0-63 gate, 64-127 up, of output rows r0 .. r0 + 63 */
            const int wr = r0 + (SWI ? row % (TMV_ROWS / 2) : row);
            ok = ok && wr < sg.rows;
            if (ok) src = (SWI && row >= TMV_ROWS / 2 ? sg.w2 : sg.w) + (size_t)wr * a.cols + col;
        } else {
            const int xr = row - TMV_ROWS, p = xr / NX, tok = xr % NX;
            ok = ok && tok < a.n;
            if (ok) src = a.xb + ((size_t)p * a.n + tok) * a.cols + col;
        }
        const unsigned d = smem_u32(st + (size_t)row * TMV_KCP + (i % (TMV_KC / 8)) * 8);
        ts_cp16(d, src, ok);
    }
}

/* Grid (row bands of all segments, ks); TMV_WARPS * 32 threads; NT n-tiles
 * of 8 rows of x (n <= 8 NT). Warp w owns weight rows [16 w, 16 w + 16) of
 * the band (SWI: warps 0-3 the gate rows, 4-7 the up rows of 64 output
 * rows) over the split's columns, so each warp's sums are whole; the
 * chunks of TMV_KC columns stream through TMV_STAGES stages. Dynamic
 * shared memory: tmv_smem_bytes(NT, PARTS). */
template <int NT, bool SWI, int PARTS>
__global__ void __launch_bounds__(TMV_WARPS * 32) tmv_kernel(tmv_args a) {
    constexpr int NX = 8 * NT, STAGE = (TMV_ROWS + PARTS * NX) * TMV_KCP;
    constexpr int ROUT = SWI ? TMV_ROWS / 2 : TMV_ROWS; /* output rows a band */
    extern __shared__ __align__(16) unsigned char tmv_smem[];
    __shared__ bool last;
    bf16 *sm = (bf16 *)tmv_smem;
    int si = 0;
#pragma unroll
    for (int k = 1; k < TMV_SEGS; k++)
        if (k < a.n_seg && (int)blockIdx.x >= a.seg[k].tile0) si = k;
    const tmv_seg &sg = a.seg[si];
    const int r0 = ((int)blockIdx.x - sg.tile0) * ROUT, nr = min(ROUT, sg.rows - r0);
    const int s = blockIdx.y, k_lo = s * a.kr, k_hi = min(a.cols, k_lo + a.kr);
    const int nch = (k_hi - k_lo + TMV_KC - 1) / TMV_KC;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    ts_pdl_wait();
    ts_pdl_trigger();
#pragma unroll
    for (int c = 0; c < TMV_STAGES - 1; c++) {
        if (c < nch) tmv_load<NT, SWI, PARTS>(a, sg, r0, k_lo + c * TMV_KC, k_hi, sm + c * STAGE);
        ts_cp_commit();
    }
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    /* ldmatrix rows: A (this warp's weight rows) and B (x rows, two n-tiles a x4) */
    const int ar = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, ac = (lane >> 4) * 8;
    const int br = (lane & 7) + ((lane >> 4) & 1) * 8, bc = ((lane >> 3) & 1) * 8;
    for (int c = 0; c < nch; c++) {
        ts_cp_wait<TMV_STAGES - 2>();
        __syncthreads(); /* chunk c landed for all; stage (c - 1) % STAGES is free */
        const int cn = c + TMV_STAGES - 1;
        if (cn < nch)
            tmv_load<NT, SWI, PARTS>(a, sg, r0, k_lo + cn * TMV_KC, k_hi,
                                     sm + (cn % TMV_STAGES) * STAGE);
        ts_cp_commit();
        const bf16 *W = sm + (c % TMV_STAGES) * STAGE, *X = W + TMV_ROWS * TMV_KCP;
#pragma unroll
        for (int kk = 0; kk < TMV_KC; kk += 16) {
            unsigned wa[4];
            ts_ldmatrix_x4(wa, smem_u32(W + ar * TMV_KCP + kk + ac));
#pragma unroll
            for (int p = PARTS - 1; p >= 0; p--) /* the small parts first */
#pragma unroll
                for (int j = 0; j < NT; j += 2) {
                    unsigned b[4];
                    ts_ldmatrix_x4(b, smem_u32(X + (p * NX + j * 8 + br) * TMV_KCP + kk + bc));
                    ts_mma_bf16(acc[j], wa, b[0], b[1]);
                    ts_mma_bf16(acc[j + 1], wa, b[2], b[3]);
                }
        }
    }
    ts_cp_wait<0>();
    __syncthreads(); /* every warp is done with the stages: red reuses them */
    float *red = (float *)tmv_smem; /* [TMV_ROWS][NX] */
#pragma unroll
    for (int j = 0; j < NT; j++) {
        float *p0 = red + (warp * 16 + g) * NX + j * 8 + 2 * t, *p8 = p0 + 8 * NX;
        p0[0] = acc[j][0], p0[1] = acc[j][1], p8[0] = acc[j][2], p8[1] = acc[j][3];
    }
    __syncthreads();
    const int n = a.n;
    const float *sums = NULL; /* ks > 1: the band's splits, [ks][TMV_ROWS][n] */
    if (a.ks > 1) {
        float *mine = a.part + ((size_t)blockIdx.x * a.ks + s) * TMV_ROWS * n;
        for (int i = threadIdx.x; i < TMV_ROWS * n; i += blockDim.x) mine[i] = red[(i / n) * NX + i % n];
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) last = atomicAdd(&a.cnt[blockIdx.x], 1u) == (unsigned)a.ks - 1;
        __syncthreads();
        if (!last) return;
        __threadfence();
        if (threadIdx.x == 0) a.cnt[blockIdx.x] = 0u; /* read by the next launch after its wait */
        sums = a.part + (size_t)blockIdx.x * a.ks * TMV_ROWS * n;
    }
    auto total = [&](int r, int tok) {
        if (!sums) return red[r * NX + tok];
        float v = 0.0f;
        for (int k = 0; k < a.ks; k++) v += __ldcg(sums + ((size_t)k * TMV_ROWS + r) * n + tok);
        return v;
    };
    for (int i = threadIdx.x; i < nr * n; i += blockDim.x) {
        const int tok = i / nr, r = i % nr; /* neighbouring threads store neighbouring rows */
        float v = total(r, tok) + (sg.bias ? sg.bias[r0 + r] : 0.0f);
        if (SWI) v = v / (1.0f + expf(-v)) * total(ROUT + r, tok);
        float *yp = sg.y + (size_t)tok * sg.rows + r0 + r;
        *yp = a.acc_out ? *yp + v : v;
    }
}

#define TMV_EACH(X)                                                                          \
    X(2, false, 3) X(4, false, 3) X(8, false, 3) X(2, true, 3) X(4, true, 3) X(8, true, 3)     \
    X(2, false, 1) X(4, false, 1) X(8, false, 1) X(2, true, 1) X(4, true, 1) X(8, true, 1)

bool ts_cuda_tmv_init(ts_cuda *c) {
    const char *e = getenv("TS_CUDA_TMV");
    c->tmv_on = !(e && !strcmp(e, "0"));
    if (!c->tmv_on) return true;
    if (!TS_CU(c, cudaMalloc(&c->tmv_cnt, TMV_TILES * sizeof(unsigned))) ||
        !TS_CU(c, cudaMemset(c->tmv_cnt, 0, TMV_TILES * sizeof(unsigned))))
        return false;
#define SET(NT, SWI, P)                                                                    \
    &&TS_CU(c, cudaFuncSetAttribute(tmv_kernel<NT, SWI, P>,                                  \
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,             \
                                    (int)tmv_smem_bytes(NT, P)))
    return true TMV_EACH(SET);
#undef SET
}

bool ts_cuda_tmv(ts_cuda *c, float *const *y, const float *x, int n, const ts_wmat *w,
                 const float *const *bias, int n_w, bool round_x, bool swi, bool acc_out) {
    const int n_seg = swi ? 1 : n_w, cols = w[0].cols, rout = swi ? TMV_ROWS / 2 : TMV_ROWS;
    if (!c->tmv_on || n < TMV_MINN || n > TMV_MAXN || n_seg < 1 || n_seg > TMV_SEGS ||
        (swi && (n_w != 2 || w[1].rows != w[0].rows)) || cols < 16 || cols % 8)
        return false;
    size_t bytes = 0;
    for (int i = 0; i < n_w; i++) {
        if (w[i].dtype != TS_DT_BF16 || w[i].cols != cols || w[i].rows <= 0 ||
            (uintptr_t)w[i].data % 16)
            return false;
        bytes += (size_t)w[i].rows * cols * 2;
    }
    if (bytes > TMV_MAX_BYTES) return false;
    tmv_args a = {};
    int bands = 0;
    for (int i = 0; i < n_seg; i++) {
        a.seg[i].w = (const bf16 *)w[i].data;
        a.seg[i].w2 = swi ? (const bf16 *)w[1].data : NULL;
        a.seg[i].y = y[i];
        a.seg[i].bias = bias ? bias[i] : NULL;
        a.seg[i].rows = w[i].rows;
        a.seg[i].tile0 = bands;
        bands += (w[i].rows + rout - 1) / rout;
    }
    const int parts = round_x ? 1 : 3, nt = n <= 16 ? 2 : n <= 32 ? 4 : 8;
    /* column splits: as many blocks as run at once (one wave; a second,
     * partial wave would cost as much as the first), at least 256 columns
     * each */
    const int per_sm = (int)((227u << 10) / tmv_smem_bytes(nt, parts));
    int ks = c->n_sm * (per_sm > 0 ? per_sm : 1) / bands;
    if (ks > cols / 256) ks = cols / 256;
    if (ks < 1) ks = 1;
    const int kr = ((cols + ks - 1) / ks + TMV_KC - 1) / TMV_KC * TMV_KC;
    ks = (cols + kr - 1) / kr;
    if (ks > 1 && bands > TMV_TILES) return false;
    const size_t nx = (size_t)n * cols;
    bf16 *xb = (bf16 *)ts_cuda_scratch_get(c, &c->act, (size_t)parts * nx * sizeof(bf16));
    /* NULL: a failure (recorded), or a capture that needs more scratch
     * (marked short: the caller's ops then run uncaptured) */
    if (!xb) return true;
    float *part = NULL;
    if (ks > 1) {
        part = (float *)ts_cuda_scratch_get(c, &c->part,
                                             (size_t)bands * ks * TMV_ROWS * n * sizeof(float));
        if (!part) return true;
    }
    if (!ts_cuda_split_bf16(c, xb, x, nx, parts)) return true;
    a.n_seg = n_seg, a.xb = xb, a.n = n, a.cols = cols, a.ks = ks, a.kr = kr;
    a.acc_out = acc_out, a.part = part, a.cnt = c->tmv_cnt;
    const dim3 grid((unsigned)bands, (unsigned)ks);
#define GO(NT, SWI, P)                                                                      \
    if (nt == NT && swi == SWI && parts == P)                                                \
        return ts_cuda_launch(c, "tmv_kernel", tmv_kernel<NT, SWI, P>, grid,                   \
                              dim3(TMV_WARPS * 32), tmv_smem_bytes(NT, P), a),                 \
               true;
    TMV_EACH(GO)
#undef GO
    return false;
}
