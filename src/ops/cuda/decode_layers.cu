/* ts_ops.decode_layers: every decoder layer of a one-token decode step of
 * one sequence as ONE persistent kernel.
 *
 * Why: at batch 1 a layer's products are small (4-12 MB), and as separate
 * kernels each paid ~2.5 us of launch, ramp and tail on top of its bytes
 * (docs/PERFORMANCE.md, issue 6). Here one block per SM runs the whole
 * step; the phases of a layer are separated by grid barriers, and the
 * weights do not wait for them: each block owns fixed rows of every matrix,
 * and a streaming warp copies its rows of the next phases into shared
 * memory (a bulk copy a row, paced) as soon as the compute warps release a
 * slot. Weights are constant, so only activations cross the barriers.
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
 * the wo rows, then the wd rows; each slot has a full barrier (bytes landed)
 * and an empty one (compute warps done), so two phases of weights are always
 * on their way.
 *
 * Arithmetic: products on the tensor cores with the input split into three
 * bf16 parts (f32-exact products, f32 sums; see gemv_tc), softmax with expf,
 * RoPE as norm_rope.cuh. Needs BF16 weights, KV of f32, f16 or bf16, head_dim 32/64/128,
 * group <= 4, at most DL_MAXROWS rows a block and phase, and every block's
 * rows fitting in shared memory (Qwen3-0.6B: ~196 KB of 227); otherwise it
 * declines and the forward runs the ops one by one.
 *
 * Status: on by default (TS_CUDA_LAYERS=0 turns it off). Tested against the
 * op sequence (tests/gpu/test_gpu_layers.c). H100, Qwen3-0.6B shape: see
 * docs/PERFORMANCE.md, issue 6. */
#include <cuda_bf16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda/cuda_internal.cuh"
#include "ops/cuda/attn_warp.cuh"
#include "ops/cuda/bulk.cuh"
#include "ops/cuda/merge_pieces.cuh"
#include "ops/cuda/mma.cuh"
#include "ops/cuda/norm_rope.cuh"

#define DL_WARPS 15                 /* compute warps; warp DL_WARPS streams the weights */
#define DL_THREADS (DL_WARPS * 32)  /* compute threads (the launch has one more warp) */
#define DL_MAXL 96   /* layers a launch takes (kernel parameters: 17 KB) */
#define DL_MAXG 4    /* query heads per KV head */
#define DL_PIECES 32 /* attention pieces per KV head at most (one per lane in the merge) */
#ifndef DL_U
#define DL_U 1 /* slots a warp loads at once in attention (H100, two calls: 1 against 2,
                * 1044-1053 against 1028-1039 tok/s at context 1024, level at 128; 4 was
                * 4-7% slower than 2) */
#endif
#ifndef DL_PIECE_SLOTS
#define DL_PIECE_SLOTS 16 /* slots an attention piece aims at (H100: 8-32 within 2%;
                          * 64 / 256 / 2048 4-11% slower at context 128) */
#endif
#ifndef DL_PACE_QKV_NS_KB
#define DL_PACE_QKV_NS_KB 20 /* q/k/v's copies, faster: their window (phase E) is the
                             * shortest (H100: 0 / 20 / 40 gave 1063 / 1108 / 1102 tok/s
                             * at context 128, 948 / 945 / 945 at 1024) */
#endif
#ifndef DL_PACE_NS_KB
#define DL_PACE_NS_KB 100 /* weight copies other than q/k/v paced at 100 ns a KB an SM
                           * (10 GB/s; 1.3 TB/s over 132 SMs, ~18 us of a ~29 us layer):
                           * every SM's rows at once slowed the barriers and loads
                           * beside them (H100: 0 / 40 / 60 / 100 ns gave 943 / 1033 /
                           * 1046 / 1066 tok/s at context 128) */
#endif

typedef __nv_bfloat16 bf16;

typedef struct dl_layer {
    const bf16 *wq, *wk, *wv, *wo, *wg, *wu, *wd;
    const float *bq, *bk, *bv, *bo, *an, *fn, *qn, *kn;
    void *kp, *vp; /* the KV pool, elements E of the kernel (f32, f16, bf16) */
} dl_layer;

typedef struct dl_args {
    dl_layer L[DL_MAXL];
    float *x, *q, *k, *v, *att, *h;
    float *p_lse, *p_o;   /* pieces: [n_heads][DL_PIECES], [n_heads][DL_PIECES][hd] */
    unsigned *cnt;        /* [n_kv]: pieces of a KV head done (zero between calls) */
    unsigned *bar;        /* [2]: grid-barrier arrivals, the next launch's base (grid_sync) */
    const int32_t *pos, *slot, *tables, *info;
    const float *inv_freq;
    int n_layers, hidden, ffn, n_heads, n_kv, hd, bs, group;
    int pieces;              /* attention pieces per KV head at most */
    unsigned slot_a, slot_b; /* bytes of the two weight slots */
    int act_floats;          /* floats of the activation area (xres follows it) */
    int xres_floats;         /* floats of xres (a multiple of 4; xp follows) */
    bool kv_prefetch;        /* the streaming warp moves the next phase B's KV into L2 */
    int kv_es;               /* bytes of a KV element */
#ifdef DL_PROF
    bool nofill;             /* TS_DL_NOFILL=1: no weight copies (results wrong; timing only) */
#endif
    float eps, scale;
} dl_args;

__device__ __forceinline__ unsigned long long gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* ---- optional phase clock (build with -DDL_PROF; profiling only) ----
 * Thread 0 of every block stamps %globaltimer and clock64 at DL_EV points
 * of each layer; ts_cuda_destroy prints, per phase, medians over layers of the
 * slowest block's steps and of the barrier that follows. */
#ifdef DL_PROF
#include <stdio.h>
#define DL_EV 29 /* 0-20: the phases' steps; 21-28: gemv_tc's split and products (A, C, D, E) */
#define DL_PROF_G 160
/* [block][layer][event]: %globaltimer (ns), clock64 (SM cycles) */
__device__ unsigned long long dl_prof[DL_PROF_G * DL_MAXL * DL_EV * 2];
static int dl_prof_layers, dl_prof_blocks;
#define DL_STAMP(l, ev)                                                                        \
    do {                                                                                       \
        if (threadIdx.x == 0 && blockIdx.x < DL_PROF_G) {                                      \
            size_t i_ = (((size_t)blockIdx.x * DL_MAXL + (l)) * DL_EV + (ev)) * 2;             \
            dl_prof[i_] = gtime(), dl_prof[i_ + 1] = clock64();                                \
        }                                                                                      \
    } while (0)
#define DL_NOFILL(a) ((a).nofill)
#else
#define DL_STAMP(l, ev) ((void)0)
#define DL_NOFILL(a) false
#endif

/* ---- grid barrier: every block of the (co-resident) grid ---- */
__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
/* The compute warps' block barrier (named barrier 1: the weight-streaming
 * warp never joins it). */
__device__ __forceinline__ void dl_sync() {
    asm volatile("bar.sync 1, %0;" ::"n"(DL_THREADS) : "memory");
}

/* Barrier k (1-based) of a launch waits until the arrival counter bar[0]
 * reaches base + k G, base being bar[1] at the launch's start (set by the
 * previous launch, by block 0 after its last barrier); wrap-safe. One release
 * reduction a block, then polling: no reset and no second atomic. Compute
 * warps only. */
__device__ __forceinline__ void grid_sync(unsigned *bar, unsigned target) {
    dl_sync();
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
        while ((int)(ld_acquire(bar) - target) < 0) {
        }
    }
    dl_sync();
}

__device__ __forceinline__ int row_lo(int R, int b, int G) {
    return (int)((long long)R * b / G);
}

/* The rows of each phase this block owns ([lo, lo + n) of an even split),
 * computed once a launch. */
typedef struct dl_rows {
    int qkv_lo, qkv_n; /* of q|k|v's qd + 2 kd rows (phase A) */
    int gu_lo, gu_n;   /* of the ffn gate (and up) rows (phase D) */
    int x_lo, x_n;     /* of the hidden rows (phases C and E; the residual) */
} dl_rows;
__device__ dl_rows own_rows(const dl_args &a) {
    const int b = blockIdx.x, G = gridDim.x, R = (a.n_heads + 2 * a.n_kv) * a.hd;
    dl_rows o;
    o.qkv_lo = row_lo(R, b, G), o.qkv_n = row_lo(R, b + 1, G) - o.qkv_lo;
    o.gu_lo = row_lo(a.ffn, b, G), o.gu_n = row_lo(a.ffn, b + 1, G) - o.gu_lo;
    o.x_lo = row_lo(a.hidden, b, G), o.x_n = row_lo(a.hidden, b + 1, G) - o.x_lo;
    return o;
}

/* A phase's weight rows in a slot: cols bf16 each (the input's length), at
 * a stride of cols + 8 so that the 8 rows an ldmatrix reads at one column
 * fall in distinct banks; phase D holds the gate rows, then the up rows. */
enum { PH_QKV, PH_O, PH_GU, PH_DOWN };
__device__ __forceinline__ int ph_cols(const dl_args &a, int ph) {
    return ph == PH_O ? a.n_heads * a.hd : ph == PH_DOWN ? a.ffn : a.hidden;
}
__device__ __forceinline__ int ph_rows(const dl_rows &o, int ph) {
    return ph == PH_QKV ? o.qkv_n : ph == PH_GU ? 2 * o.gu_n : o.x_n;
}
__device__ const bf16 *row_src(const dl_args &a, const dl_layer &L, const dl_rows &o, int ph,
                               int j) {
    const int H = a.hidden, qd = a.n_heads * a.hd, kd = a.n_kv * a.hd;
    if (ph == PH_QKV) {
        const int R = o.qkv_lo + j;
        return R < qd ? L.wq + (size_t)R * H
                      : R < qd + kd ? L.wk + (size_t)(R - qd) * H : L.wv + (size_t)(R - qd - kd) * H;
    }
    if (ph == PH_GU)
        return j < o.gu_n ? L.wg + (size_t)(o.gu_lo + j) * H : L.wu + (size_t)(o.gu_lo + j - o.gu_n) * H;
    return ph == PH_O ? L.wo + (size_t)(o.x_lo + j) * qd : L.wd + (size_t)(o.x_lo + j) * a.ffn;
}
/* Starts filling a slot with phase ph's rows of a layer (the streaming warp;
 * lane 0 issues), one bulk copy a row, paced (DL_PACE_*); the slot's
 * mbarrier completes one phase when all land (when ph_rows > 0). Only the
 * streaming warp issues copies (a warp's fences wait for its copies to land;
 * that warp never fences). */
__device__ void fill(const dl_args &a, const dl_rows &o, int layer, int ph, void *slot,
                     uint64_t *mb) {
    const int n = ph_rows(o, ph), cols = ph_cols(a, ph);
    if (n <= 0 || (threadIdx.x & 31)) return;
    const unsigned rb = (unsigned)cols * 2u;
    const unsigned pace = ph == PH_QKV ? DL_PACE_QKV_NS_KB : DL_PACE_NS_KB;
    mbar_expect(mb, (unsigned)n * rb);
    const unsigned long long t0 = gtime();
    for (int j = 0; j < n; j++) {
        bulk_copy((char *)slot + (size_t)j * (size_t)(cols + 8) * 2u, row_src(a, a.L[layer], o, ph, j),
                  rb, mb);
        const unsigned long long due = t0 + (unsigned long long)(j + 1) * rb * pace / 1024u;
        while (gtime() < due) {
        }
    }
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

/* act[0, n) = src, act[n, 2n) = g; returns 1 / rms(src), so that
 * rmsnorm(src) * g = act[i] * inv * act[n + i] (as rmsnorm_kernel; gemv_tc
 * applies it as it splits its input); n % 4 == 0. */
__device__ float load_normed(float *act, const float *src, const float *g, int n, float eps,
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
    dl_sync();
    float tot = 0.0f;
    for (int w = 0; w < DL_WARPS; w++) tot += red[w];
    return 1.0f / sqrtf(tot / (float)n + eps);
}

/* Pieces per KV head of this step: one per DL_PIECE_SLOTS slots of context,
 * at least 1, at most a.pieces (n_kv is on the device: the step replays). */
__device__ __forceinline__ int n_pieces(const dl_args &a) {
    const int p = (a.info[1] + DL_PIECE_SLOTS - 1) / DL_PIECE_SLOTS;
    return p < 1 ? 1 : p > a.pieces ? a.pieces : p;
}
/* Slots [lo, hi) of piece p of P over the step's n_kv. */
__device__ __forceinline__ void piece_range(const dl_args &a, int P, int p, int *lo, int *hi) {
    const int n_kv = a.info[1], per = (n_kv + P - 1) / P;
    *lo = min(n_kv, p * per), *hi = min(n_kv, *lo + per);
}

/* Per-step constants staged in shared memory at the kernel's start. */
#define DL_TAB 64 /* block-table entries of a block's attention item kept on chip */
typedef struct dl_stage {
    float cs[64], sn[64];   /* RoPE of this step's position: cos, sin (hd / 2) */
    int32_t tab[DL_TAB];    /* block table of this block's first item, from block tab0 */
    int tab0, n_tab;        /* n_tab 0: the item reads the table in global memory */
} dl_stage;

/* The slots attention item (kvh, p of P) will read, from HBM into L2 (bulk
 * prefetches of each block's run, K and V; one warp), issued a phase or
 * more before phase B. tab: block table from block blk0. */
__device__ void prefetch_kv(const dl_args &a, const dl_layer &L, int kvh, int P, int p,
                            const int32_t *tab, int blk0) {
    int lo, hi;
    piece_range(a, P, p, &lo, &hi);
    if (lo >= hi) return;
    const int bs = a.bs, b0 = lo / bs, b1 = (hi - 1) / bs;
    for (int blk = b0 + (int)(threadIdx.x & 31); blk <= b1; blk += 32) {
        int t0 = max(lo, blk * bs), t1 = min(hi, (blk + 1) * bs);
        size_t off = (((size_t)tab[blk - blk0] * a.n_kv + kvh) * bs + (size_t)(t0 % bs)) * a.hd;
        unsigned bytes = (unsigned)((t1 - t0) * a.hd * a.kv_es);
        const char *kb = (const char *)L.kp + off * a.kv_es, *vb = (const char *)L.vp + off * a.kv_es;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(kb), "r"(bytes) : "memory");
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(vb), "r"(bytes) : "memory");
    }
}

/* The KV of this block's first attention item of layer L into L2 (one warp). */
__device__ void prefetch_item(const dl_args &a, const dl_layer &L, int P, const dl_stage *st) {
    const int it = blockIdx.x;
    if (!a.kv_prefetch || it >= a.n_kv * P) return;
    if (st->n_tab) prefetch_kv(a, L, it / P, P, it % P, st->tab, st->tab0);
    else prefetch_kv(a, L, it / P, P, it % P, a.tables + a.info[0], 0);
}

/* A layer's vectors (norm gains, biases) into L2 ahead of use: they are
 * read once a step, so without it they come from HBM on the critical path
 * (the weights of 28 layers pass through L2 between two reads). Block 0's
 * streaming warp, lane 0; attn: those of phases A-C, else phase D's. */
__device__ __forceinline__ void prefetch_vec(const float *p, int n) {
    if (p && !((uintptr_t)p & 15) && !(n & 3))
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"((unsigned)n * 4u)
                     : "memory");
}
__device__ void prefetch_vecs(const dl_args &a, const dl_layer &L, bool attn) {
    if (blockIdx.x || (threadIdx.x & 31)) return;
    const int qd = a.n_heads * a.hd, kd = a.n_kv * a.hd;
    if (!attn) return prefetch_vec(L.fn, a.hidden);
    prefetch_vec(L.an, a.hidden), prefetch_vec(L.qn, a.hd), prefetch_vec(L.kn, a.hd);
    prefetch_vec(L.bq, qd), prefetch_vec(L.bk, kd), prefetch_vec(L.bv, kd);
    prefetch_vec(L.bo, a.hidden);
}

#define DL_MAXROWS 64 /* rows a block and phase at most (gemv_tc) */

/* gemv_tc's products of one block, by warp: warp w takes the 16-column
 * steps w, w + DL_WARPS, ... of the rows w[rows][ld] (shared) with the
 * split input xp[3][ld] and writes its sums of the 16-row tiles to
 * part_s[w R ..]. Lane 4 g holds rows g, g + 8 of columns 0 (hi) and 1
 * (mid); lane 4 g + 1 column 2 (lo). */
__device__ __forceinline__ void tc_sums(const bf16 *w, int rows, int ld, int steps,
                                        const bf16 *xp, float *part_s, int R) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
    const int mt = (rows + 15) / 16; /* 16-row tiles */
    const bf16 *xg = xp + (g < 3 ? g : 0) * ld + 2 * tig; /* this lane's B column (part) */
    float acc[DL_MAXROWS / 16][4];
#pragma unroll
    for (int t = 0; t < DL_MAXROWS / 16; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
    /* this lane's ldmatrix row (within a tile) and column (within a step) */
    const int lr = (lane & 7) + ((lane >> 3) & 1) * 8, lc = (lane >> 4) * 8;
    for (int s = warp; s < steps; s += DL_WARPS) {
        const int k0 = s * 16;
        unsigned b0 = 0u, b1 = 0u;
        if (g < 3) b0 = *(const unsigned *)(xg + k0), b1 = *(const unsigned *)(xg + k0 + 8);
#pragma unroll
        for (int t = 0; t < DL_MAXROWS / 16; t++) {
            if (t >= mt) break;
            const int r = min(t * 16 + lr, rows - 1);
            unsigned a[4];
            ts_ldmatrix_x4(a, smem_u32(w + (size_t)r * ld + k0 + lc));
            ts_mma_bf16(acc[t], a, b0, b1);
        }
    }
#pragma unroll
    for (int t = 0; t < DL_MAXROWS / 16; t++) {
        if (t >= mt) break;
        const float lo0 = __shfl_down_sync(0xffffffffu, acc[t][0], 1);
        const float lo8 = __shfl_down_sync(0xffffffffu, acc[t][2], 1);
        if (tig == 0) {
            part_s[warp * R + t * 16 + g] = acc[t][0] + acc[t][1] + lo0;
            part_s[warp * R + t * 16 + g + 8] = acc[t][2] + acc[t][3] + lo8;
        }
    }
}

/* tc_sums for 1-8 rows: one mma takes two steps, s and s2 = s + DL_WARPS.
 * A's rows 0-7 hold step s, rows 8-15 step s2; B's columns 0-2 the input
 * parts of step s, columns 3-5 those of s2. Row r's sum is D[r][0-2] +
 * D[r + 8][3-5]; the rest is discarded. A lone last step pairs with itself
 * against zero parts. (H100: phase E's products 0.85 us against 1.27 with
 * one step an mma.) */
__device__ __forceinline__ void tc_sums8(const bf16 *w, int rows, int ld, int steps,
                                         const bf16 *xp, float *part_s, int R) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
    const int r8 = min(lane & 7, rows - 1), pg = g < 3 ? g : g < 6 ? g - 3 : 0;
    const unsigned wa = smem_u32(w + (size_t)r8 * ld + (lane >> 4) * 8);
    const unsigned xa = smem_u32(xp + pg * ld + 2 * tig);
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int s = warp; s < steps; s += 2 * DL_WARPS) {
        const int s2 = s + DL_WARPS < steps ? s + DL_WARPS : s;
        const unsigned k0 = (unsigned)s * 32u, k2 = (unsigned)s2 * 32u; /* bytes */
        unsigned b0 = 0u, b1 = 0u, a[4];
        if (g < 3 || (g < 6 && s2 != s)) {
            const unsigned xb = xa + (g < 3 ? k0 : k2);
            asm volatile("ld.shared.b32 %0, [%1];" : "=r"(b0) : "r"(xb));
            asm volatile("ld.shared.b32 %0, [%1];" : "=r"(b1) : "r"(xb + 16u));
        }
        ts_ldmatrix_x4(a, wa + ((lane & 8) ? k2 : k0));
        ts_mma_bf16(c, a, b0, b1);
    }
    /* row g: tig 0 holds D[g][0-1] (c0, c1); tig 1 D[g][2] (c0) and
     * D[g + 8][3] (c3); tig 2 D[g + 8][4-5] (c2, c3) */
    const float t1 = tig == 1 ? c[0] + c[3] : tig == 2 ? c[2] + c[3] : c[0] + c[1];
    const float n1 = __shfl_down_sync(0xffffffffu, t1, 1), n2 = __shfl_down_sync(0xffffffffu, t1, 2);
    if (tig == 0) part_s[warp * R + g] = t1 + n1 + n2;
}

/* Products of the rows in shared memory with the input on the tensor cores
 * (cols % 8 == 0; rows <= DL_MAXROWS). The input ("act") is act[cols], or
 * when normed act[i] * inv * act[cols + i] (load_normed's rmsnorm). Plain,
 * emit(r, row r . act) for r < nr; SWI (gate row i, up row nr + i),
 * emit(i, silu(gate . act) * (up . act)). The bf16 weights are the A
 * operand (16-row tiles by ldmatrix from the padded rows; rows past the
 * last repeat it, discarded); act is split
 * into three bf16 parts (hi, mid, lo: 24 bits, as the cuBLAS path) that are
 * columns 0-2 of the B operand, so each product is exact and sums in f32.
 * Warp w takes the 16-column steps w, w + DL_WARPS, ...; the warps' partial
 * sums are added in a fixed order (deterministic), threads emit in
 * parallel. A last step past cols reads the rows' zeroed padding. Up to 8
 * rows (not SWI), each mma takes two steps (tc_sums8). */
template <bool SWI, typename E>
__device__ __forceinline__ void gemv_tc(const bf16 *w, int nr, int cols, const float *act,
                                        bool normed, float inv, bf16 *xp, float *part_s,
                                        int pl, int pe, E emit) {
    (void)pl, (void)pe; /* DL_STAMP's: layer, first event */
    const int rows = SWI ? 2 * nr : nr, mt = (rows + 15) / 16, ld = cols + 8;
    const int steps = (cols + 15) / 16;
    /* xp[p][ld]: part p of act (zero past cols), once for every warp; four
     * elements a thread and step (cols % 8 == 0: a group is wholly inside or
     * past cols; act, its gains and each part's row are 16-byte aligned) */
    for (int i = 4 * threadIdx.x; i < ld; i += 4 * DL_THREADS) {
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i < cols) {
            v = *(const float4 *)(act + i);
            if (normed) {
                const float4 gv = *(const float4 *)(act + cols + i);
                v.x = v.x * inv * gv.x, v.y = v.y * inv * gv.y;
                v.z = v.z * inv * gv.z, v.w = v.w * inv * gv.w;
            }
        }
        float e[4] = {v.x, v.y, v.z, v.w};
        bf16 pt[3][4];
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int p = 0; p < 3; p++) pt[p][j] = ts_bf16_take(&e[j]);
#pragma unroll
        for (int p = 0; p < 3; p++)
            *(uint2 *)(xp + p * ld + i) =
                make_uint2(__bfloat16_as_ushort(pt[p][0]) | (unsigned)__bfloat16_as_ushort(pt[p][1]) << 16,
                           __bfloat16_as_ushort(pt[p][2]) | (unsigned)__bfloat16_as_ushort(pt[p][3]) << 16);
    }
    dl_sync();
    DL_STAMP(pl, pe);
    const int R = mt * 16; /* part_s: [DL_WARPS][R] */
    if (!SWI && rows > 0 && rows <= 8) tc_sums8(w, rows, ld, steps, xp, part_s, R);
    else tc_sums(w, rows, ld, steps, xp, part_s, R);
    dl_sync();
    DL_STAMP(pl, pe + 1);
    for (int i = threadIdx.x; i < nr; i += DL_THREADS) {
        float y = 0.0f;
        for (int k = 0; k < DL_WARPS; k++) y += part_s[k * R + i];
        if (SWI) {
            float u = 0.0f;
            for (int k = 0; k < DL_WARPS; k++) u += part_s[k * R + nr + i];
            emit(i, y / (1.0f + expf(-y)) * u);
        } else {
            emit(i, y);
        }
    }
    dl_sync(); /* part_s is reused by the next product */
}

/* Phase B for one item: KV head kvh, piece p of its P. sm: shared floats
 * (q heads, then the warps' states); st: the staged RoPE and (first item)
 * block table. D = head_dim / 32 dims per lane. With P == 1 the piece
 * is the head's whole range and writes att itself; otherwise the last piece
 * of a head to finish merges the pieces. E: the pool's elements. */
template <int D, typename E>
__device__ void attn_item(const dl_args &a, const dl_layer &L, int layer, int kvh, int P, int p,
                          float *sm, const dl_stage *st, bool first) {
    (void)layer; /* DL_STAMP's */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, hd = a.hd, g = a.group;
    const int n_kv = a.info[1];
    const bool on_chip = first && st->n_tab;
    const int32_t *tab = on_chip ? st->tab : a.tables + a.info[0];
    const int blk0 = on_chip ? st->tab0 : 0;
    int lo, hi;
    piece_range(a, P, p, &lo, &hi);
    const bool has_new = n_kv > 0 && lo <= n_kv - 1 && n_kv - 1 < hi;
    float *q_s = sm;                              /* [g][hd], scaled */
    float *m_s = q_s + DL_MAXG * hd;              /* [DL_WARPS][DL_MAXG] */
    float *l_s = m_s + DL_WARPS * DL_MAXG;        /* [DL_WARPS][DL_MAXG] */
    float *o_s = l_s + DL_WARPS * DL_MAXG;        /* [DL_WARPS][DL_MAXG][hd] */
    constexpr int NP = D; /* rotate-half pairs per lane: hd / 64 <= D */
    if (warp < g || (has_new && warp < g + 2)) {
        const bool is_q = warp < g, is_k = warp == g;
        const float *src = is_q ? a.q + (size_t)(kvh * g + warp) * hd
                                : (is_k ? a.k : a.v) + (size_t)kvh * hd;
        const int half = hd / 2;
        const float *gn = is_q ? L.qn : is_k ? L.kn : NULL; /* norm gains, loaded with x */
        float x0[NP], x1[NP], g0[NP], g1[NP];
#pragma unroll
        for (int i = 0; i < NP; i++) {
            int j = lane + 32 * i;
            x0[i] = j < half ? __ldcg(src + j) : 0.0f;
            x1[i] = j < half ? __ldcg(src + j + half) : 0.0f;
            g0[i] = gn && j < half ? gn[j] : 0.0f;
            g1[i] = gn && j < half ? gn[j + half] : 0.0f;
        }
        if (is_q || is_k) {
            if (gn) ts_head_norm_warp(x0, x1, hd, g0, g1, a.eps, lane);
            ts_rope_tab_warp(x0, x1, hd, st->cs, st->sn, lane);
        }
        if (is_q) {
#pragma unroll
            for (int i = 0; i < NP; i++) {
                int j = lane + 32 * i;
                if (j < half) q_s[warp * hd + j] = x0[i] * a.scale, q_s[warp * hd + j + half] = x1[i] * a.scale;
            }
        } else {
            const int s = a.slot[0];
            E *dst = (E *)(is_k ? L.kp : L.vp) +
                     (((size_t)(s / a.bs) * a.n_kv + kvh) * a.bs + (size_t)(s % a.bs)) * hd;
#pragma unroll
            for (int i = 0; i < NP; i++) {
                int j = lane + 32 * i;
                if (j < half) dst[j] = ts_kv_cvt<E>(x0[i]), dst[j + half] = ts_kv_cvt<E>(x1[i]);
            }
        }
    }
    dl_sync(); /* q_s ready; the new K/V stored (read below by this block) */
    DL_STAMP(layer, 18);
    float qv[DL_MAXG][D], o[DL_MAXG][D], m[DL_MAXG], l[DL_MAXG];
#pragma unroll
    for (int h = 0; h < DL_MAXG; h++) {
        m[h] = -INFINITY, l[h] = 0.0f;
#pragma unroll
        for (int i = 0; i < D; i++) o[h][i] = 0.0f, qv[h][i] = h < g ? q_s[h * hd + lane * D + i] : 0.0f;
    }
    ts_attend_warp<D, DL_MAXG, DL_U>(qv, o, m, l, g, (const E *)L.kp, (const E *)L.vp, tab, blk0,
                                     a.n_kv, kvh, a.bs, lo,
                                     hi, warp * DL_U, DL_WARPS * DL_U, lane);
#pragma unroll
    for (int h = 0; h < DL_MAXG; h++) {
        if (h >= g) break;
        if (lane == 0) m_s[warp * DL_MAXG + h] = m[h], l_s[warp * DL_MAXG + h] = l[h];
#pragma unroll
        for (int i = 0; i < D; i++) o_s[(warp * DL_MAXG + h) * hd + lane * D + i] = o[h][i];
    }
    dl_sync();
    if (warp < g) { /* this piece's state of head kvh * g + warp (P == 1: the head's output) */
        const size_t head = (size_t)kvh * g + warp;
        ts_combine_warps<DL_WARPS>(m_s, l_s, o_s, DL_MAXG, warp, hd,
                                   a.p_lse + head * DL_PIECES + p,
                                   P == 1 ? a.att + head * hd : a.p_o + (head * DL_PIECES + p) * hd,
                                   lane);
    }
    DL_STAMP(layer, 19);
    if (P == 1) return;
    /* the count is an acquire-release reduction of thread 0: it publishes the
     * pieces written before the barrier and, for the last, orders the reads */
    __shared__ bool last;
    dl_sync();
    if (threadIdx.x == 0) {
        unsigned prev;
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(prev) : "l"(a.cnt + kvh) : "memory");
        last = prev == (unsigned)P - 1;
        if (last) a.cnt[kvh] = 0;
    }
    dl_sync();
    DL_STAMP(layer, 20);
    if (!last) return;
    if (warp < g) {
        const int head = kvh * g + warp;
        ts_merge_pieces_warp(a.p_lse + (size_t)head * DL_PIECES,
                             a.p_o + (size_t)head * DL_PIECES * hd, P, hd,
                             a.att + (size_t)head * hd, NULL, lane);
    }
}

template <int D, typename E>
__global__ void __launch_bounds__(DL_THREADS + 32, 1) decode_layers_kernel(const __grid_constant__ dl_args a) {
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ float red[DL_WARPS];
    __shared__ float part_s[DL_WARPS * DL_MAXROWS]; /* gemv_tc's partial sums */
    __shared__ dl_stage st;
    uint64_t *mb = (uint64_t *)smem; /* [4]: slot A, slot B full; slot A, slot B empty */
    bf16 *sa = (bf16 *)(smem + 128), *sb = (bf16 *)(smem + 128 + a.slot_a);
    float *act = (float *)(smem + 128 + a.slot_a + a.slot_b);
    float *xres = act + a.act_floats; /* this block's rows of x (phases C, E) */
    bf16 *xp = (bf16 *)(xres + a.xres_floats); /* [3][cols + 8]: gemv_tc's split input */
    const int b = blockIdx.x, G = gridDim.x, warp = threadIdx.x >> 5;
    const int H = a.hidden, qd = a.n_heads * a.hd, kd = a.n_kv * a.hd, P = n_pieces(a);
    const dl_rows o = own_rows(a);
    const int x_lo = o.x_lo, x_n = o.x_n;
    const int nthr = DL_THREADS + 32;
    if (threadIdx.x == 0)
        for (int i = 0; i < 4; i++) mbar_init(mb + i);
    /* zero the weight slots once: a product whose cols % 16 == 8 reads the
     * rows' padding (times zero inputs; it must be finite) */
    for (unsigned i = threadIdx.x; i < (a.slot_a + a.slot_b) / 16; i += nthr)
        ((uint4 *)(smem + 128))[i] = make_uint4(0u, 0u, 0u, 0u);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); /* before the bulk copies */
    /* Rows of x in C and E are this block's alone (the same split in both):
     * the residual of those rows stays on chip; x in global memory is only
     * read by the norms of A and D (other blocks) */
    for (int r = threadIdx.x; r < x_n; r += nthr) xres[r] = a.x[x_lo + r];
    /* this step's RoPE (the same for every layer) and the first item's table */
    const float pos = (float)a.pos[0];
    for (int j = threadIdx.x; j < a.hd / 2; j += nthr)
        sincosf(__fmul_rn(pos, a.inv_freq[j]), &st.sn[j], &st.cs[j]);
    if (threadIdx.x == 0) st.n_tab = 0;
    if (b < a.n_kv * P) {
        int lo, hi;
        piece_range(a, P, b % P, &lo, &hi);
        const int b0 = lo / a.bs, nb = hi > lo ? (hi - 1) / a.bs - b0 + 1 : 0;
        if (nb > 0 && nb <= DL_TAB) {
            for (int i = threadIdx.x; i < nb; i += nthr) st.tab[i] = a.tables[a.info[0] + b0 + i];
            if (threadIdx.x == 0) st.tab0 = b0, st.n_tab = nb;
        }
    }
    __syncthreads();
    if (warp == DL_WARPS) {
        /* The streaming warp: fills a slot as soon as the compute warps have
         * released it (its empty barrier), two phases of weights ahead, and
         * moves the next layer's attention KV into L2 with the q/k/v rows. */
        if (DL_NOFILL(a)) return;
        unsigned ep[2] = {0u, 0u};
        auto released = [&](int s) { mbar_wait(mb + 2 + s, ep[s]), ep[s] ^= 1u; };
        prefetch_item(a, a.L[0], P, &st);
        prefetch_vecs(a, a.L[0], true);
        fill(a, o, 0, PH_QKV, sa, mb), fill(a, o, 0, PH_O, sb, mb + 1);
        for (int l = 0; l < a.n_layers; l++) {
            released(0), prefetch_vecs(a, a.L[l], false), fill(a, o, l, PH_GU, sa, mb);
            released(1), fill(a, o, l, PH_DOWN, sb, mb + 1);
            if (l + 1 == a.n_layers) break;
            released(0), prefetch_vecs(a, a.L[l + 1], true), fill(a, o, l + 1, PH_QKV, sa, mb);
            prefetch_item(a, a.L[l + 1], P, &st);
            released(1), fill(a, o, l + 1, PH_O, sb, mb + 1);
        }
        return;
    }
    const unsigned base = __ldcg(a.bar + 1); /* stable: written at the end of the last launch */
    unsigned n_sync = 0;
    /* the compute warps: after a product, thread 0 releases its slot */
    auto release = [&](int s) {
        if (threadIdx.x == 0 && !DL_NOFILL(a)) mbar_arrive(mb + 2 + s);
    };
    /* whether a phase's rows are on their way into its slot */
    auto coming = [&](int ph) { return ph_rows(o, ph) > 0 && !DL_NOFILL(a); };
    bool pend[2] = {coming(PH_QKV), coming(PH_O)};
    unsigned par[2] = {0u, 0u};
    for (int l = 0; l < a.n_layers; l++) {
        const dl_layer &L = a.L[l];
        const bool more = l + 1 < a.n_layers;
        DL_STAMP(l, 0);
        /* A: q, k, v */
        float inv = load_normed(act, a.x, L.an, H, a.eps, red);
        DL_STAMP(l, 1);
        take(&pend[0], &par[0], mb);
        DL_STAMP(l, 2);
        {
            auto em = [&](int r, float y) {
                int R = o.qkv_lo + r;
                if (R < qd) a.q[R] = L.bq ? y + L.bq[R] : y;
                else if (R < qd + kd) a.k[R - qd] = L.bk ? y + L.bk[R - qd] : y;
                else a.v[R - qd - kd] = L.bv ? y + L.bv[R - qd - kd] : y;
            };
            gemv_tc<false>(sa, o.qkv_n, H, act, true, inv, xp, part_s, l, 21, em);
        }
        release(0);
        pend[0] = coming(PH_GU);
        DL_STAMP(l, 3);
        grid_sync(a.bar, base + ++n_sync * G);
        DL_STAMP(l, 4);
        /* B: attention */
        for (int it = b; it < a.n_kv * P; it += G) {
            attn_item<D, E>(a, L, l, it / P, P, it % P, act, &st, it == b);
            dl_sync();
        }
        DL_STAMP(l, 5);
        grid_sync(a.bar, base + ++n_sync * G);
        DL_STAMP(l, 6);
        /* C: x += att . wo^T */
        load_act(act, a.att, qd);
        dl_sync();
        DL_STAMP(l, 7);
        take(&pend[1], &par[1], mb + 1);
        DL_STAMP(l, 8);
        {
            auto em = [&](int r, float y) {
                float v = xres[r] + (L.bo ? y + L.bo[x_lo + r] : y);
                xres[r] = v, a.x[x_lo + r] = v;
            };
            gemv_tc<false>(sb, x_n, qd, act, false, 1.0f, xp, part_s, l, 23, em);
        }
        release(1);
        pend[1] = coming(PH_DOWN);
        DL_STAMP(l, 9);
        grid_sync(a.bar, base + ++n_sync * G);
        DL_STAMP(l, 10);
        /* D: h = silu(gate) * up */
        inv = load_normed(act, a.x, L.fn, H, a.eps, red);
        DL_STAMP(l, 11);
        take(&pend[0], &par[0], mb);
        DL_STAMP(l, 12);
        {
            auto em = [&](int j, float y) { a.h[o.gu_lo + j] = y; };
            gemv_tc<true>(sa, o.gu_n, H, act, true, inv, xp, part_s, l, 25, em);
        }
        if (more) release(0);
        pend[0] = more && coming(PH_QKV);
        DL_STAMP(l, 13);
        grid_sync(a.bar, base + ++n_sync * G);
        DL_STAMP(l, 14);
        /* E: x += h . wd^T */
        load_act(act, a.h, a.ffn);
        dl_sync();
        DL_STAMP(l, 15);
        take(&pend[1], &par[1], mb + 1);
        DL_STAMP(l, 16);
        {
            auto em = [&](int r, float y) {
                float v = xres[r] + y;
                xres[r] = v, a.x[x_lo + r] = v;
            };
            gemv_tc<false>(sb, x_n, a.ffn, act, false, 1.0f, xp, part_s, l, 27, em);
        }
        DL_STAMP(l, 17);
        if (more) {
            release(1);
            pend[1] = coming(PH_O);
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
        H % 8 || F % 8 || d->block_size <= 0 || !ts_kv_dtype_ok(d->kv_dtype))
        return false;
    const int qd = nh * hd, kd = nkv * hd;
    const int G = c->n_sm;
    if (max_rows(qd + 2 * kd, G) > DL_MAXROWS || 2 * max_rows(F, G) > DL_MAXROWS ||
        max_rows(H, G) > DL_MAXROWS)
        return false; /* gemv_tc's rows a block */
    for (int l = 0; l < d->n_layers; l++) {
        const ts_dec_layer *L = &d->layers[l];
        if (!wmat_ok(&L->wq, qd, H) || !wmat_ok(&L->wk, kd, H) || !wmat_ok(&L->wv, kd, H) ||
            !wmat_ok(&L->wo, H, qd) || !wmat_ok(&L->w_gate, F, H) || !wmat_ok(&L->w_up, F, H) ||
            !wmat_ok(&L->w_down, H, F) || (!L->q_norm) != (!L->k_norm))
            return false;
    }
    /* weight rows at a stride of cols + 8 bf16 (gemv_tc) */
    size_t slot_a = up128(2 * (size_t)(H + 8) *
                          (max_rows(qd + 2 * kd, G) > 2 * max_rows(F, G) ? max_rows(qd + 2 * kd, G)
                                                                         : 2 * max_rows(F, G)));
    size_t slot_b = up128(2 * max_rows(H, G) * (size_t)((qd > F ? qd : F) + 8));
    size_t att = (size_t)DL_MAXG * hd + 2 * DL_WARPS * DL_MAXG + (size_t)DL_WARPS * DL_MAXG * hd;
    size_t act = 2 * (size_t)H; /* x and its norm's gains */
    if ((size_t)qd > act) act = (size_t)qd;
    if ((size_t)F > act) act = (size_t)F;
    if (att > act) act = att;
    act = (act + 3) / 4 * 4;
    const size_t xres = (max_rows(H, G) + 3) / 4 * 4;
    const size_t xp = 3 * (size_t)((qd > F ? (qd > H ? qd : H) : (F > H ? F : H)) + 8); /* bf16 */
    size_t smem = 128 + slot_a + slot_b + 4 * (act + xres) + 2 * xp;
    if (smem > (size_t)c->dl_smem_max) return false;

    dl_args *a = (dl_args *)calloc(1, sizeof *a);
    if (!a) return false;
    for (int l = 0; l < d->n_layers; l++) {
        const ts_dec_layer *s = &d->layers[l];
        a->L[l] = (dl_layer){(const bf16 *)s->wq.data, (const bf16 *)s->wk.data, (const bf16 *)s->wv.data,
                             (const bf16 *)s->wo.data, (const bf16 *)s->w_gate.data,
                             (const bf16 *)s->w_up.data, (const bf16 *)s->w_down.data,
                             s->bq, s->bk, s->bv, s->bo, s->attn_norm, s->ffn_norm, s->q_norm,
                             s->k_norm, s->k_pool, s->v_pool};
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
    a->slot_a = (unsigned)slot_a, a->slot_b = (unsigned)slot_b, a->act_floats = (int)act;
    a->xres_floats = (int)xres;
    a->eps = d->eps, a->scale = d->scale;
    a->kv_prefetch = c->dec_layers != 2;
    a->kv_es = d->kv_dtype == TS_DT_F32 ? 4 : 2;
#ifdef DL_PROF
    a->nofill = getenv("TS_DL_NOFILL") && atoi(getenv("TS_DL_NOFILL"));
#endif

    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)G);
    cfg.blockDim = dim3(DL_THREADS + 32); /* + the weight-streaming warp */
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative; /* all G blocks resident, or the launch fails */
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    cudaError_t e;
    TS_KV_SWITCH(d->kv_dtype, E, switch (hd) {
        case 32: e = cudaLaunchKernelEx(&cfg, decode_layers_kernel<1, E>, *a); break;
        case 64: e = cudaLaunchKernelEx(&cfg, decode_layers_kernel<2, E>, *a); break;
        default: e = cudaLaunchKernelEx(&cfg, decode_layers_kernel<4, E>, *a); break;
    });
#ifdef DL_PROF
    dl_prof_layers = a->n_layers, dl_prof_blocks = G < DL_PROF_G ? G : DL_PROF_G;
#endif
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
    void (*ks[9])(dl_args) = {
        decode_layers_kernel<1, float>,  decode_layers_kernel<2, float>,  decode_layers_kernel<4, float>,
        decode_layers_kernel<1, __half>, decode_layers_kernel<2, __half>, decode_layers_kernel<4, __half>,
        decode_layers_kernel<1, bf16>,   decode_layers_kernel<2, bf16>,   decode_layers_kernel<4, bf16>};
    for (int i = 0; i < 9; i++)
        if (!TS_CU(c, cudaFuncSetAttribute(ks[i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          c->dl_smem_max)))
            return false;
    /* on by default (faster than the op-by-op step, docs/PERFORMANCE.md,
     * issue 6); TS_CUDA_LAYERS=0 turns it off, =2 keeps it without the KV
     * prefetch */
    const char *env = getenv("TS_CUDA_LAYERS");
    c->dec_layers = env && !strcmp(env, "0") ? 0 : env && !strcmp(env, "2") ? 2 : 1;
    return true;
}


#ifdef DL_PROF
static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}
static double med(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n ? v[n / 2] : 0.0;
}
/* The last launch's stamps, medians over layers 1 .. L-2 of: per phase, the
 * slowest block's time for each step (SM cycles, converted with the block's
 * own clock rate), the barrier after it (earliest next start - latest done,
 * %globaltimer) and the phase's span (first start to first next start).
 * Steps: A/C/D/E input, weights, products; B q/k/v ready, attend, atomic, merge. */
void ts_cuda_dl_prof_dump(void) {
    const int L = dl_prof_layers, G = dl_prof_blocks;
    if (L < 3 || G < 1) return;
    const size_t n_all = (size_t)DL_PROF_G * DL_MAXL * DL_EV * 2;
    unsigned long long *h = (unsigned long long *)malloc(sizeof *h * n_all);
    if (!h || cudaMemcpyFromSymbol(h, dl_prof, sizeof *h * n_all) != cudaSuccess) {
        free(h);
        return;
    }
#define GT(b, l, e) ((double)h[(((size_t)(b) * DL_MAXL + (l)) * DL_EV + (e)) * 2])
#define CK(b, l, e) ((double)h[(((size_t)(b) * DL_MAXL + (l)) * DL_EV + (e)) * 2 + 1])
    double mhz[DL_PROF_G]; /* each block's clock64 rate over the launch */
    for (int b = 0; b < G; b++)
        mhz[b] = (CK(b, L - 1, 0) - CK(b, 1, 0)) / (GT(b, L - 1, 0) - GT(b, 1, 0)) * 1e3;
    const int ev[5][5] = {{0, 1, 2, 3, -1}, {4, 18, 19, 20, 5}, {6, 7, 8, 9, -1}, {10, 11, 12, 13, -1},
                          {14, 15, 16, 17, -1}};
    const int next[5] = {4, 6, 10, 14, 0};
    const char *nm[5] = {"A qkv", "B attn", "C o", "D gu", "E down"};
    static double v[6][DL_MAXL];
    fprintf(stderr, "decode_layers (SM clock ~%.0f MHz), us, medians over layers, slowest block:\n", mhz[0]);
    fprintf(stderr, "%-7s %6s %6s %6s %6s %7s %6s\n", "phase", "step1", "step2", "step3", "step4", "barrier", "span");
    double sum = 0.0;
    for (int p = 0; p < 5; p++) {
        int n = 0;
        for (int l = 1; l + 1 < L; l++, n++) {
            double mx[4] = {0, 0, 0, 0}, last_done = 0, first_next = 1e300, first_start = 1e300;
            int ne = ev[p][4] >= 0 ? 5 : 4;
            for (int b = 0; b < G; b++) {
                const int nl = p == 4 ? l + 1 : l;
                double s0 = GT(b, l, ev[p][0]), done = GT(b, l, ev[p][ne - 1]), nx = GT(b, nl, next[p]);
                bool item = true; /* B: this block stamped its item in this layer */
                if (p == 1) item = GT(b, l, 18) >= s0 && GT(b, l, 18) <= done;
                for (int k = 1; k < ne && item; k++) {
                    if (p == 1 && k == 3 && !(GT(b, l, 20) >= s0 && GT(b, l, 20) <= done)) break;
                    int e1 = ev[p][k];
                    if (p == 1 && k == 4 && !(GT(b, l, 20) >= s0)) break;
                    double d = (CK(b, l, e1) - CK(b, l, ev[p][k - 1])) / mhz[b];
                    if (d > mx[k - 1]) mx[k - 1] = d;
                }
                if (done > last_done) last_done = done;
                if (nx < first_next) first_next = nx;
                if (s0 < first_start) first_start = s0;
            }
            for (int k = 0; k < 4; k++) v[k][n] = mx[k];
            v[4][n] = (first_next - last_done) / 1e3, v[5][n] = (first_next - first_start) / 1e3;
        }
        double m[6];
        for (int k = 0; k < 6; k++) m[k] = med(v[k], n);
        sum += m[5];
        fprintf(stderr, "%-7s %6.2f %6.2f %6.2f %6.2f %7.2f %6.2f\n", nm[p], m[0], m[1], m[2], m[3], m[4], m[5]);
    }
    fprintf(stderr, "layer (sum of spans) %.2f us\n", sum);
    /* the products step of A, C, D, E split: input split, products, sums and emit */
    const int pe[4][4] = {{2, 21, 22, 3}, {8, 23, 24, 9}, {12, 25, 26, 13}, {16, 27, 28, 17}};
    const char *pn[4] = {"A qkv", "C o", "D gu", "E down"};
    fprintf(stderr, "%-7s %6s %6s %6s (gemv_tc, us, slowest block, medians over layers)\n", "phase",
            "split", "mma", "sums");
    for (int p = 0; p < 4; p++) {
        int n = 0;
        for (int l = 1; l + 1 < L; l++, n++) {
            double mx[3] = {0, 0, 0};
            for (int b = 0; b < G; b++)
                for (int k = 0; k < 3; k++) {
                    double d = (CK(b, l, pe[p][k + 1]) - CK(b, l, pe[p][k])) / mhz[b];
                    if (d > mx[k]) mx[k] = d;
                }
            for (int k = 0; k < 3; k++) v[k][n] = mx[k];
        }
        fprintf(stderr, "%-7s %6.2f %6.2f %6.2f\n", pn[p], med(v[0], n), med(v[1], n), med(v[2], n));
    }
#undef GT
#undef CK
    free(h);
}
#endif
