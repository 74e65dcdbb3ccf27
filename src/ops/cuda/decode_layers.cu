/* ts_ops.decode_layers: every decoder layer of a one-token decode step of
 * one sequence as ONE persistent kernel.
 *
 * Why: at batch 1 a layer's products are small (4-12 MB), and as separate
 * kernels each paid ~2.5 us of launch, ramp and tail on top of its bytes
 * (docs/PERFORMANCE.md, issue 6). Here one block per SM runs the whole
 * step; the phases of a layer are separated by grid barriers, and the
 * weights do not wait for them: each block owns fixed rows of every matrix
 * and has the bulk-copy engine stream its rows of the next phases into
 * shared memory while the current phase computes and waits. Weights are
 * constant, so only activations cross the barriers.
 *
 * Phases of a layer (block b of G owns rows [R b / G, R (b + 1) / G) of each):
 *   A  x' = rmsnorm(x) * attn_norm;  q|k|v = x' . [wq; wk; wv]^T (+ biases)
 *   B  attention: item (KV head, piece) per block; q-norm + RoPE of the group's
 *      q heads, the piece holding the new token also norms/rotates its K and
 *      stores K and V in the pool; the last piece of a head merges (lse)
 *   C  x += att . wo^T (+ bo)
 *   D  x' = rmsnorm(x) * ffn_norm;  h = silu(x' . wg^T) * (x' . wu^T)
 *   E  x += h . wd^T
 * Shared memory: slot A holds the q|k|v rows, then the gate/up rows; slot B
 * the wo rows, then the wd rows; a slot is refilled as soon as its phase is
 * done, so two phases of weights are always on their way.
 *
 * Arithmetic: f32 with bf16 weights widened (as the weight-streaming
 * products), softmax with expf, RoPE as norm_rope.cuh. Needs BF16 weights,
 * f32 KV, head_dim 32/64/128, group <= 4, and every block's rows fitting
 * in shared memory (Qwen3-0.6B: 179 KB of 227); otherwise it declines.
 *
 * Status: opt-in (TS_CUDA_LAYERS=1; the op table leaves it NULL otherwise). Correct
 * (tests/gpu/test_gpu_layers.c), but on the H100 still slower than the
 * op-by-op step (712-720 vs 816-820 tok/s at context 128): the weights
 * arrive in time, the dependent steps inside each phase and the barriers
 * do not (docs/PERFORMANCE.md, issue 6, has the per-phase profile). */
#include <cuda_bf16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda/cuda_internal.cuh"
#include "ops/cuda/attn_warp.cuh"
#include "ops/cuda/merge_pieces.cuh"
#include "ops/cuda/norm_rope.cuh"

#define DL_THREADS 512
#define DL_WARPS (DL_THREADS / 32)
#define DL_MAXL 96   /* layers a launch takes (kernel parameters: 17 KB) */
#define DL_MAXG 4    /* query heads per KV head */
#define DL_PIECES 32 /* attention pieces per KV head at most (one per lane in the merge) */

typedef __nv_bfloat16 bf16;

typedef struct dl_layer {
    const bf16 *wq, *wk, *wv, *wo, *wg, *wu, *wd;
    const float *bq, *bk, *bv, *bo, *an, *fn, *qn, *kn;
    float *kp, *vp;
} dl_layer;

typedef struct dl_args {
    dl_layer L[DL_MAXL];
    float *x, *q, *k, *v, *att, *h;
    float *p_lse, *p_o;   /* pieces: [n_heads][DL_PIECES], [n_heads][DL_PIECES][hd] */
    unsigned *cnt;        /* [n_kv]: pieces of a KV head done (zero between calls) */
    unsigned *bar;        /* [2]: barrier arrivals (zero between barriers), generation */
    const int32_t *pos, *slot, *tables, *info;
    const float *inv_freq;
    int n_layers, hidden, ffn, n_heads, n_kv, hd, bs, group, pieces;
    unsigned slot_a, slot_b; /* bytes of the two weight slots */
    bool kv_prefetch;        /* phase A prefetches phase B's KV into L2 */
    float eps, scale;
} dl_args;

/* ---- bulk copies into shared memory, completed on an mbarrier ---- */
__device__ __forceinline__ unsigned smem_u32(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void mbar_init(uint64_t *mb) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(mb)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void mbar_expect(uint64_t *mb, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(mb)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes,
                                          uint64_t *mb) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
            "r"(smem_u32(dst)),
        "l"(src), "r"(bytes), "r"(smem_u32(mb))
        : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *mb, unsigned parity) {
    unsigned ok = 0;
    while (!ok)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; "
                     "selp.u32 %0, 1, 0, p; }"
                     : "=r"(ok)
                     : "r"(smem_u32(mb)), "r"(parity)
                     : "memory");
}

/* ---- grid barrier: every block of the (co-resident) grid ---- */
__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
/* Barrier k (1-based) of a launch waits until the arrival counter bar[0]
 * reaches base + k G, base being bar[1] at the launch's start (set by the
 * previous launch, by block 0 after its last barrier); wrap-safe. One release
 * reduction a block, then polling: no reset and no second atomic. */
__device__ __forceinline__ void grid_sync(unsigned *bar, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
        while ((int)(ld_acquire(bar) - target) < 0) {
        }
    }
    __syncthreads();
}

__device__ __forceinline__ int row_lo(int R, int b, int G) {
    return (int)((long long)R * b / G);
}

/* The weight rows block b owns in phase `ph` of layer L, as up to three
 * contiguous copies (smem byte offset, source, bytes); returns the total. */
enum { PH_QKV, PH_O, PH_GU, PH_DOWN };
typedef struct dl_copy {
    unsigned off, bytes;
    const void *src;
} dl_copy;
__device__ unsigned plan_rows(const dl_args &a, const dl_layer &L, int ph, int b, int G,
                              dl_copy *cp, int *n_cp) {
    *n_cp = 0;
    const int H = a.hidden, qd = a.n_heads * a.hd, kd = a.n_kv * a.hd;
    if (ph == PH_QKV) {
        const int R = qd + 2 * kd, lo = row_lo(R, b, G), hi = row_lo(R, b + 1, G);
        const bf16 *w[3] = {L.wq, L.wk, L.wv};
        const int s0[3] = {0, qd, qd + kd}, s1[3] = {qd, qd + kd, R};
        for (int s = 0; s < 3; s++) {
            int x0 = max(lo, s0[s]), x1 = min(hi, s1[s]);
            if (x0 >= x1) continue;
            cp[*n_cp] = {(unsigned)((x0 - lo) * H * 2), (unsigned)((x1 - x0) * H * 2),
                         w[s] + (size_t)(x0 - s0[s]) * H};
            (*n_cp)++;
        }
        return (unsigned)((hi - lo) * H * 2);
    }
    if (ph == PH_GU) {
        const int lo = row_lo(a.ffn, b, G), hi = row_lo(a.ffn, b + 1, G), n = hi - lo;
        if (n <= 0) return 0;
        cp[0] = {0u, (unsigned)(n * H * 2), L.wg + (size_t)lo * H};
        cp[1] = {(unsigned)(n * H * 2), (unsigned)(n * H * 2), L.wu + (size_t)lo * H};
        *n_cp = 2;
        return (unsigned)(2 * n * H * 2);
    }
    const int cols = ph == PH_O ? qd : a.ffn;
    const int lo = row_lo(H, b, G), hi = row_lo(H, b + 1, G), n = hi - lo;
    if (n <= 0) return 0;
    cp[0] = {0u, (unsigned)(n * cols * 2), (ph == PH_O ? L.wo : L.wd) + (size_t)lo * cols};
    *n_cp = 1;
    return (unsigned)(n * cols * 2);
}

/* Starts filling a slot with phase ph's rows; true when bytes are on their
 * way (the slot's mbarrier then completes one phase). Every thread calls it. */
__device__ bool fill(const dl_args &a, int layer, int ph, void *slot, uint64_t *mb) {
    dl_copy cp[3];
    int n = 0;
    unsigned total = plan_rows(a, a.L[layer], ph, blockIdx.x, gridDim.x, cp, &n);
    if (total && threadIdx.x == 0) {
        mbar_expect(mb, total);
        for (int i = 0; i < n; i++) bulk_copy((char *)slot + cp[i].off, cp[i].src, cp[i].bytes, mb);
    }
    return total != 0;
}

/* Waits for a slot's fill when one was started. */
__device__ __forceinline__ void take(bool *pending, unsigned *parity, uint64_t *mb) {
    if (!*pending) return;
    mbar_wait(mb, *parity);
    *parity ^= 1u;
    *pending = false;
}

/* act[n] = src[n] (written by other blocks: through L2); n % 4 == 0. */
__device__ __forceinline__ void load_act(float *act, const float *src, int n) {
    for (int i = threadIdx.x; i < n / 4; i += DL_THREADS)
        ((float4 *)act)[i] = __ldcg((const float4 *)src + i);
}

/* act[n] = rmsnorm(src) * g, as rmsnorm_kernel; n % 4 == 0. The gains are
 * loaded with x (both in flight), then scaled once the sum is known. */
__device__ void load_normed(float *act, const float *src, const float *g, int n, float eps,
                            float *red) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n / 4; i += DL_THREADS) {
        float4 v = __ldcg((const float4 *)src + i), w = __ldg((const float4 *)g + i);
        ((float4 *)act)[i] = v;
        ((float4 *)act)[n / 4 + i] = w;
        ss = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss))));
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (int w = 0; w < DL_WARPS; w++) tot += red[w];
    float inv = 1.0f / sqrtf(tot / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += DL_THREADS) act[i] = act[i] * inv * act[n + i];
    __syncthreads();
}

__device__ __forceinline__ float dot8(const uint4 &u, const float *x, float acc) {
    const __nv_bfloat162 *p = (const __nv_bfloat162 *)&u;
    float4 x0 = *(const float4 *)x, x1 = *(const float4 *)(x + 4);
    float2 w0 = __bfloat1622float2(p[0]), w1 = __bfloat1622float2(p[1]);
    float2 w2 = __bfloat1622float2(p[2]), w3 = __bfloat1622float2(p[3]);
    acc = fmaf(x0.x, w0.x, acc), acc = fmaf(x0.y, w0.y, acc);
    acc = fmaf(x0.z, w1.x, acc), acc = fmaf(x0.w, w1.y, acc);
    acc = fmaf(x1.x, w2.x, acc), acc = fmaf(x1.y, w2.y, acc);
    acc = fmaf(x1.z, w3.x, acc), acc = fmaf(x1.w, w3.y, acc);
    return acc;
}

/* dot8 with the inputs in registers. */
__device__ __forceinline__ float dot8r(const uint4 &u, const float (&x)[8], float acc) {
    const __nv_bfloat162 *p = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 w = __bfloat1622float2(p[i]);
        acc = fmaf(x[2 * i], w.x, acc), acc = fmaf(x[2 * i + 1], w.y, acc);
    }
    return acc;
}

/* Products of the rows in shared memory with act[cols], a warp per pair of
 * rows: plain (rows 2i, 2i + 1 of nr) emits emit(r, y); SWI (gate row i,
 * up row nr + i) emits emit(i, silu(g) * u). cols % 8 == 0. */
template <bool SWI, typename E>
__device__ __forceinline__ void gemv(const bf16 *w, int nr, int cols, const float *act, E emit) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int pairs = SWI ? nr : (nr + 1) / 2;
    for (int p = warp; p < pairs; p += DL_WARPS) {
        const int r0 = SWI ? p : 2 * p, r1 = SWI ? nr + p : min(2 * p + 1, nr - 1);
        const bf16 *w0 = w + (size_t)r0 * cols, *w1 = w + (size_t)r1 * cols;
        float a0 = 0.0f, a1 = 0.0f;
        for (int k = lane * 8; k < cols; k += 256) {
            a0 = dot8(*(const uint4 *)(w0 + k), act + k, a0);
            a1 = dot8(*(const uint4 *)(w1 + k), act + k, a1);
        }
        for (int o = 16; o > 0; o >>= 1) {
            a0 += __shfl_xor_sync(0xffffffffu, a0, o);
            a1 += __shfl_xor_sync(0xffffffffu, a1, o);
        }
        if (lane) continue;
        if (SWI) {
            emit(p, a0 / (1.0f + expf(-a0)) * a1);
        } else {
            emit(r0, a0);
            if (2 * p + 1 < nr) emit(r0 + 1, a1);
        }
    }
}

/* The slots attention item (kvh, p) will read, from HBM into L2 (bulk
 * prefetches of each block's run, K and V), issued ahead of phase B so that
 * they arrive while phase A computes and waits. */
__device__ void prefetch_kv(const dl_args &a, const dl_layer &L, int kvh, int p) {
    const int n_kv = a.info[1], P = a.pieces, bs = a.bs;
    const int per = (n_kv + P - 1) / P, lo = min(n_kv, p * per), hi = min(n_kv, lo + per);
    if (lo >= hi) return;
    const int32_t *tab = a.tables + a.info[0];
    const int b0 = lo / bs, b1 = (hi - 1) / bs;
    for (int blk = b0 + (int)threadIdx.x; blk <= b1; blk += DL_THREADS) {
        int t0 = max(lo, blk * bs), t1 = min(hi, (blk + 1) * bs);
        size_t off = (((size_t)tab[blk] * a.n_kv + kvh) * bs + (size_t)(t0 % bs)) * a.hd;
        unsigned bytes = (unsigned)((t1 - t0) * a.hd * 4);
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(L.kp + off), "r"(bytes) : "memory");
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(L.vp + off), "r"(bytes) : "memory");
    }
}

/* The products of gemv for nr rows of cols % 256 == 0, split along k: a
 * row group of WG warps shares each row, lane c of a group's warp w takes
 * the 8-column chunks c + 32 w, + 32 WG, ... whose inputs it keeps in
 * registers (at most DL_KC chunks); warps reduce by shuffles, groups by
 * part_s in a fixed order (deterministic), and threads emit in parallel.
 * nr * DL_WARPS <= DL_PARTS. */
#define DL_KC 4
#define DL_PARTS 1024
/* whether gemv_k takes nr rows (SWI: pairs) of cols */
__device__ __forceinline__ bool k_ok(int nr, int cols) {
    return cols % 256 == 0 && cols <= 8 * 32 * DL_WARPS * DL_KC && nr * DL_WARPS <= DL_PARTS;
}
template <bool SWI, typename E>
__device__ __forceinline__ void gemv_k(const bf16 *w, int nr, int cols, const float *act,
                                       float *part_s, E emit) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, cpr = cols / 8;
    int wg = 1; /* warps a row: the largest power of two <= cpr / 32, at most 16 */
    while (wg < DL_WARPS && 2 * wg * 32 <= cpr) wg *= 2;
    const int groups = DL_WARPS / wg, grp = warp / wg, wig = warp % wg;
    const int rows = SWI ? 2 * nr : nr;
    float x[DL_KC][8];
#pragma unroll
    for (int c = 0; c < DL_KC; c++) {
        int ch = wig * 32 + lane + c * wg * 32;
#pragma unroll
        for (int i = 0; i < 8; i++) x[c][i] = ch < cpr ? act[ch * 8 + i] : 0.0f;
    }
    for (int r = grp; r < rows; r += groups) {
        const bf16 *wr = w + (size_t)r * cols;
        float acc = 0.0f;
#pragma unroll
        for (int c = 0; c < DL_KC; c++) {
            int ch = wig * 32 + lane + c * wg * 32;
            if (ch < cpr) acc = dot8r(*(const uint4 *)(wr + ch * 8), x[c], acc);
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) part_s[r * wg + wig] = acc;
    }
    __syncthreads();
    for (int r = threadIdx.x; r < nr; r += DL_THREADS) {
        float y = 0.0f;
        for (int k = 0; k < wg; k++) y += part_s[r * wg + k];
        if (SWI) {
            float u = 0.0f;
            for (int k = 0; k < wg; k++) u += part_s[(nr + r) * wg + k];
            emit(r, y / (1.0f + expf(-y)) * u);
        } else {
            emit(r, y);
        }
    }
}

/* Phase B for one item: KV head kvh, piece p of its range. sm: shared floats
 * (q heads, then the warps' states). D = head_dim / 32 dims per lane. */
template <int D>
__device__ void attn_item(const dl_args &a, const dl_layer &L, int kvh, int p, float *sm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, hd = a.hd, g = a.group;
    const int n_kv = a.info[1], P = a.pieces;
    const int32_t *tab = a.tables + a.info[0];
    const int per = (n_kv + P - 1) / P, lo = min(n_kv, p * per), hi = min(n_kv, lo + per);
    const bool has_new = n_kv > 0 && lo <= n_kv - 1 && n_kv - 1 < hi;
    float *q_s = sm;                              /* [g][hd], scaled */
    float *m_s = q_s + DL_MAXG * hd;              /* [DL_WARPS][DL_MAXG] */
    float *l_s = m_s + DL_WARPS * DL_MAXG;        /* [DL_WARPS][DL_MAXG] */
    float *o_s = l_s + DL_WARPS * DL_MAXG;        /* [DL_WARPS][DL_MAXG][hd] */
    constexpr int NP = D; /* rotate-half pairs per lane: hd / 64 <= D */
    const float ps = (float)a.pos[0];
    if (warp < g || (has_new && warp < g + 2)) {
        const bool is_q = warp < g, is_k = warp == g;
        const float *src = is_q ? a.q + (size_t)(kvh * g + warp) * hd
                                : (is_k ? a.k : a.v) + (size_t)kvh * hd;
        const int half = hd / 2;
        float x0[NP], x1[NP];
#pragma unroll
        for (int i = 0; i < NP; i++) {
            int j = lane + 32 * i;
            x0[i] = j < half ? __ldcg(src + j) : 0.0f;
            x1[i] = j < half ? __ldcg(src + j + half) : 0.0f;
        }
        if (is_q || is_k) ts_norm_rope_warp(x0, x1, hd, is_q ? L.qn : L.kn, a.eps, ps, a.inv_freq, lane);
        if (is_q) {
#pragma unroll
            for (int i = 0; i < NP; i++) {
                int j = lane + 32 * i;
                if (j < half) q_s[warp * hd + j] = x0[i] * a.scale, q_s[warp * hd + j + half] = x1[i] * a.scale;
            }
        } else {
            const int s = a.slot[0];
            float *dst = (is_k ? L.kp : L.vp) +
                         (((size_t)(s / a.bs) * a.n_kv + kvh) * a.bs + (size_t)(s % a.bs)) * hd;
#pragma unroll
            for (int i = 0; i < NP; i++) {
                int j = lane + 32 * i;
                if (j < half) dst[j] = x0[i], dst[j + half] = x1[i];
            }
        }
    }
    __syncthreads(); /* q_s ready; the new K/V stored (read below by this block) */
    float qv[DL_MAXG][D], o[DL_MAXG][D], m[DL_MAXG], l[DL_MAXG];
#pragma unroll
    for (int h = 0; h < DL_MAXG; h++) {
        m[h] = -INFINITY, l[h] = 0.0f;
#pragma unroll
        for (int i = 0; i < D; i++) o[h][i] = 0.0f, qv[h][i] = h < g ? q_s[h * hd + lane * D + i] : 0.0f;
    }
    ts_attend_warp<D, DL_MAXG, 2>(qv, o, m, l, g, L.kp, L.vp, tab, a.n_kv, kvh, a.bs, lo, hi,
                                  warp * 2, DL_WARPS * 2, lane);
#pragma unroll
    for (int h = 0; h < DL_MAXG; h++) {
        if (h >= g) break;
        if (lane == 0) m_s[warp * DL_MAXG + h] = m[h], l_s[warp * DL_MAXG + h] = l[h];
#pragma unroll
        for (int i = 0; i < D; i++) o_s[(warp * DL_MAXG + h) * hd + lane * D + i] = o[h][i];
    }
    __syncthreads();
    if (warp < g) { /* this piece's state of head kvh * g + warp */
        const size_t head = (size_t)kvh * g + warp;
        ts_combine_warps<DL_WARPS>(m_s, l_s, o_s, DL_MAXG, warp, hd,
                                   a.p_lse + head * DL_PIECES + p,
                                   a.p_o + (head * DL_PIECES + p) * hd, lane);
    }
    /* the last piece of this KV head to finish merges the pieces */
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(a.cnt + kvh, 1u) == (unsigned)P - 1;
        if (last) a.cnt[kvh] = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (warp < g) {
        const int head = kvh * g + warp;
        ts_merge_pieces_warp(a.p_lse + (size_t)head * DL_PIECES,
                             a.p_o + (size_t)head * DL_PIECES * hd, P, hd,
                             a.att + (size_t)head * hd, NULL, lane);
    }
}

template <int D>
__global__ void __launch_bounds__(DL_THREADS, 1) decode_layers_kernel(const __grid_constant__ dl_args a) {
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ float red[DL_WARPS];
    __shared__ float part_s[DL_PARTS];
    uint64_t *mb = (uint64_t *)smem; /* [2]: slot A, slot B */
    bf16 *sa = (bf16 *)(smem + 128), *sb = (bf16 *)(smem + 128 + a.slot_a);
    float *act = (float *)(smem + 128 + a.slot_a + a.slot_b);
    const int b = blockIdx.x, G = gridDim.x;
    const int H = a.hidden, qd = a.n_heads * a.hd, kd = a.n_kv * a.hd;
    if (threadIdx.x == 0) mbar_init(mb), mbar_init(mb + 1);
    const unsigned base = __ldcg(a.bar + 1); /* stable: written at the end of the last launch */
    unsigned n_sync = 0;
    __syncthreads();
    bool pend[2];
    unsigned par[2] = {0u, 0u};
    pend[0] = fill(a, 0, PH_QKV, sa, mb);
    pend[1] = fill(a, 0, PH_O, sb, mb + 1);
    for (int l = 0; l < a.n_layers; l++) {
        const dl_layer &L = a.L[l];
        /* A: q, k, v */
        if (a.kv_prefetch)
            for (int it = b; it < a.n_kv * a.pieces; it += G) prefetch_kv(a, L, it / a.pieces, it % a.pieces);
        load_normed(act, a.x, L.an, H, a.eps, red);
        take(&pend[0], &par[0], mb);
        {
            const int lo = row_lo(qd + 2 * kd, b, G), n = row_lo(qd + 2 * kd, b + 1, G) - lo;
            auto em = [&](int r, float y) {
                int R = lo + r;
                if (R < qd) a.q[R] = L.bq ? y + L.bq[R] : y;
                else if (R < qd + kd) a.k[R - qd] = L.bk ? y + L.bk[R - qd] : y;
                else a.v[R - qd - kd] = L.bv ? y + L.bv[R - qd - kd] : y;
            };
            if (k_ok(n, H)) gemv_k<false>(sa, n, H, act, part_s, em);
            else gemv<false>(sa, n, H, act, em);
        }
        __syncthreads();
        pend[0] = fill(a, l, PH_GU, sa, mb);
        grid_sync(a.bar, base + ++n_sync * G);
        /* B: attention */
        for (int it = b; it < a.n_kv * a.pieces; it += G) {
            attn_item<D>(a, L, it / a.pieces, it % a.pieces, act);
            __syncthreads();
        }
        grid_sync(a.bar, base + ++n_sync * G);
        /* C: x += att . wo^T */
        load_act(act, a.att, qd);
        __syncthreads();
        take(&pend[1], &par[1], mb + 1);
        {
            const int lo = row_lo(H, b, G), n = row_lo(H, b + 1, G) - lo;
            auto em = [&](int r, float y) {
                int R = lo + r;
                a.x[R] = __ldcg(a.x + R) + (L.bo ? y + L.bo[R] : y);
            };
            if (k_ok(n, qd)) gemv_k<false>(sb, n, qd, act, part_s, em);
            else gemv<false>(sb, n, qd, act, em);
        }
        __syncthreads();
        pend[1] = fill(a, l, PH_DOWN, sb, mb + 1);
        grid_sync(a.bar, base + ++n_sync * G);
        /* D: h = silu(gate) * up */
        load_normed(act, a.x, L.fn, H, a.eps, red);
        take(&pend[0], &par[0], mb);
        {
            const int lo = row_lo(a.ffn, b, G), n = row_lo(a.ffn, b + 1, G) - lo;
            auto em = [&](int j, float y) { a.h[lo + j] = y; };
            if (k_ok(2 * n, H)) gemv_k<true>(sa, n, H, act, part_s, em);
            else gemv<true>(sa, n, H, act, em);
        }
        __syncthreads();
        if (l + 1 < a.n_layers) pend[0] = fill(a, l + 1, PH_QKV, sa, mb);
        grid_sync(a.bar, base + ++n_sync * G);
        /* E: x += h . wd^T */
        load_act(act, a.h, a.ffn);
        __syncthreads();
        take(&pend[1], &par[1], mb + 1);
        {
            const int lo = row_lo(H, b, G), n = row_lo(H, b + 1, G) - lo;
            auto em = [&](int r, float y) {
                int R = lo + r;
                a.x[R] = __ldcg(a.x + R) + y;
            };
            if (k_ok(n, a.ffn)) gemv_k<false>(sb, n, a.ffn, act, part_s, em);
            else gemv<false>(sb, n, a.ffn, act, em);
        }
        __syncthreads();
        if (l + 1 < a.n_layers) {
            pend[1] = fill(a, l + 1, PH_O, sb, mb + 1);
            grid_sync(a.bar, base + ++n_sync * G);
        }
    }
    /* every block has read base (all passed the barriers): the next launch's */
    grid_sync(a.bar, base + ++n_sync * G);
    if (b == 0 && threadIdx.x == 0) a.bar[1] = base + n_sync * G;
}

static size_t max_rows(int R, int G) { return ((size_t)R + (size_t)G - 1) / (size_t)G; }
static size_t up128(size_t v) { return (v + 127) / 128 * 128; }

static bool wmat_ok(const ts_wmat *w, int rows, int cols) {
    return w->data && w->dtype == TS_DT_BF16 && w->rows == rows && w->cols == cols &&
           ((uintptr_t)w->data & 15) == 0;
}

bool ts_cuda_decode_layers(void *ctx, const ts_decode_layers *d) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c)) return false;
    const int H = d->hidden, F = d->ffn, hd = d->head_dim, nh = d->n_heads, nkv = d->n_kv_heads;
    if (d->n_layers < 1 || d->n_layers > DL_MAXL || H <= 0 || F <= 0 || nkv <= 0 ||
        nh % nkv || nh / nkv > DL_MAXG || (hd != 32 && hd != 64 && hd != 128) ||
        H % 8 || F % 8 || d->block_size <= 0 || d->kv_dtype != TS_DT_F32)
        return false;
    const int qd = nh * hd, kd = nkv * hd;
    for (int l = 0; l < d->n_layers; l++) {
        const ts_dec_layer *L = &d->layers[l];
        if (!wmat_ok(&L->wq, qd, H) || !wmat_ok(&L->wk, kd, H) || !wmat_ok(&L->wv, kd, H) ||
            !wmat_ok(&L->wo, H, qd) || !wmat_ok(&L->w_gate, F, H) || !wmat_ok(&L->w_up, F, H) ||
            !wmat_ok(&L->w_down, H, F) || (!L->q_norm) != (!L->k_norm))
            return false;
    }
    const int G = c->n_sm;
    size_t slot_a = up128(2 * H * (size_t)(max_rows(qd + 2 * kd, G) > 2 * max_rows(F, G)
                                               ? max_rows(qd + 2 * kd, G)
                                               : 2 * max_rows(F, G)));
    size_t slot_b = up128(2 * max_rows(H, G) * (size_t)(qd > F ? qd : F));
    size_t att = (size_t)DL_MAXG * hd + 2 * DL_WARPS * DL_MAXG + (size_t)DL_WARPS * DL_MAXG * hd;
    size_t act = 2 * (size_t)H; /* x and its norm's gains */
    if ((size_t)qd > act) act = (size_t)qd;
    if ((size_t)F > act) act = (size_t)F;
    if (att > act) act = att;
    size_t smem = 128 + slot_a + slot_b + 4 * act;
    if (smem > (size_t)c->dl_smem_max) return false;

    dl_args *a = (dl_args *)calloc(1, sizeof *a);
    if (!a) return false;
    for (int l = 0; l < d->n_layers; l++) {
        const ts_dec_layer *s = &d->layers[l];
        a->L[l] = (dl_layer){(const bf16 *)s->wq.data, (const bf16 *)s->wk.data, (const bf16 *)s->wv.data,
                             (const bf16 *)s->wo.data, (const bf16 *)s->w_gate.data,
                             (const bf16 *)s->w_up.data, (const bf16 *)s->w_down.data,
                             s->bq, s->bk, s->bv, s->bo, s->attn_norm, s->ffn_norm, s->q_norm,
                             s->k_norm, (float *)s->k_pool, (float *)s->v_pool};
    }
    float *sc = (float *)d->scratch;
    /* layout: barrier [2] (a line of its own), counters [n_kv] padded to 32
     * words, piece lse, piece o (16-byte aligned) */
    a->bar = (unsigned *)sc;
    a->cnt = (unsigned *)sc + 32;
    a->p_lse = sc + 32 + (nkv + 31) / 32 * 32;
    a->p_o = a->p_lse + (size_t)nh * DL_PIECES;
    a->x = d->x, a->q = d->q, a->k = d->k, a->v = d->v, a->att = d->att, a->h = d->h;
    a->pos = d->pos, a->slot = d->slot, a->tables = d->tables, a->info = d->info;
    a->inv_freq = d->inv_freq;
    a->n_layers = d->n_layers, a->hidden = H, a->ffn = F, a->n_heads = nh, a->n_kv = nkv;
    a->hd = hd, a->bs = d->block_size, a->group = nh / nkv;
    int pieces = G / nkv;
    a->pieces = pieces < 1 ? 1 : pieces > DL_PIECES ? DL_PIECES : pieces;
    a->slot_a = (unsigned)slot_a, a->slot_b = (unsigned)slot_b;
    a->eps = d->eps, a->scale = d->scale;
    a->kv_prefetch = c->dec_layers != 2;

    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)G);
    cfg.blockDim = dim3(DL_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative; /* all G blocks resident, or the launch fails */
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    cudaError_t e;
    switch (hd) {
    case 32: e = cudaLaunchKernelEx(&cfg, decode_layers_kernel<1>, *a); break;
    case 64: e = cudaLaunchKernelEx(&cfg, decode_layers_kernel<2>, *a); break;
    default: e = cudaLaunchKernelEx(&cfg, decode_layers_kernel<4>, *a); break;
    }
    free(a);
    ts_cuda_ok_rt(c, e, __FILE__, __LINE__, "decode_layers_kernel");
    return true;
}

bool ts_cuda_decode_layers_init(ts_cuda *c) {
    int dev_max = 0;
    if (!TS_CU(c, cudaDeviceGetAttribute(&dev_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device)))
        return false;
    /* the kernel's static shared memory comes out of the same budget */
    c->dl_smem_max = dev_max - 8192;
    void (*ks[3])(dl_args) = {decode_layers_kernel<1>, decode_layers_kernel<2>, decode_layers_kernel<4>};
    for (int i = 0; i < 3; i++)
        if (!TS_CU(c, cudaFuncSetAttribute(ks[i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          c->dl_smem_max)))
            return false;
    /* opt-in until it beats the op-by-op step (docs/PERFORMANCE.md, issue 6):
     * "1" on, "2" on without the KV prefetch, else off */
    const char *env = getenv("TS_CUDA_LAYERS");
    c->dec_layers = env && !strcmp(env, "1") ? 1 : env && !strcmp(env, "2") ? 2 : 0;
    return true;
}

