/* Cascade attention's shared level over an f16 or bf16 KV pool, on Hopper's
 * warpgroup products (wgmma; the f32 pool's kernel is attn_shared_mma.cu,
 * which plans the launch and merges the ranges). A CTA of one warpgroup (4
 * warps) takes 64 query rows of one KV head (16 a warp) and a range of the
 * prefix in 64-key tiles gathered through the block table. K and V stay in
 * their 16-bit format (exact: they are stored so); q is f32, so it enters as
 * PARTS 16-bit parts, q = hi + lo (hi = q rounded, lo = the rest rounded: q
 * to ~2^-17), and P the same way; online softmax in f32. With PARTS = 2 only
 * the dropped lo remainders (~2^-17 relative) separate the result from an
 * f32 computation over the same K/V; with PARTS = 1 (TS_CASCADE_PARTS=1) q
 * and P enter as one part each, as FlashAttention computes over a 16-bit
 * cache: half the products, ~2e-3 relative error.
 *
 * Per tile the warpgroup issues S = Q K^T as HD/16 x PARTS wgmma m64n64k16
 * (q from registers, K from shared memory) and, after the softmax,
 * O += P V as 4 x PARTS wgmma m64n{HD}k16 (P from registers, V from shared
 * memory, N-major). The register fragments of a warp's 16 rows are the
 * mma.sync m16n8k16 A and C layouts, so S's accumulators pack into P's A
 * fragments in place.
 *
 * Shared memory: each K or V tile is [HD / 64 column blocks][64 keys][128 B],
 * the 16-byte chunks of a key's 128 bytes XOR-swizzled by key % 8 (the
 * 128-byte swizzle both operand forms read: K as K-major B, V as N-major B),
 * tiles 1024-byte aligned; two stages filled by cp.async through the block
 * table. */
#include <math.h>
#include <string.h>

#include <type_traits>

#include "ops/cuda/attn_shared.cuh"
#include "ops/cuda/kv_elem.cuh"

/* wgmma wrappers: d (f32, the m64nN D layout) += a b; a: this thread's A
 * fragment (4 registers, the mma.sync A layout of its warp's 16 rows); b: a
 * shared-memory descriptor; TR: 1 when b is N-major. */
#define SHW_MMA_N64(T, S)                                                                         \
    template <int TR>                                                                             \
    static __device__ __forceinline__ void wg_n64_##S(float *d, const uint32_t *a, uint64_t b) {  \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                 \
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32." T "." T " {"                   \
                     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16," \
                     "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"  \
                     "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"                           \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),    \
                       "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),  \
                       "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),           \
                       "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),           \
                       "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]),           \
                       "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])            \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1), "n"(TR));      \
    }

#define SHW_MMA_N128(T, S)                                                                        \
    template <int TR>                                                                             \
    static __device__ __forceinline__ void wg_n128_##S(float *d, const uint32_t *a, uint64_t b) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                 \
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32." T "." T " {"                  \
                     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16," \
                     "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31," \
                     "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46," \
                     "%47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61," \
                     "%62, %63"                                                                   \
                     "}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"                           \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),    \
                       "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),  \
                       "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),           \
                       "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),           \
                       "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]),           \
                       "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),           \
                       "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),           \
                       "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),           \
                       "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]),           \
                       "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]),           \
                       "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),           \
                       "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),           \
                       "+f"(d[62]), "+f"(d[63])                                                   \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1), "n"(TR));      \
    }

SHW_MMA_N64("bf16", bf16)
SHW_MMA_N64("f16", f16)
SHW_MMA_N128("bf16", bf16)
SHW_MMA_N128("f16", f16)
#undef SHW_MMA_N64
#undef SHW_MMA_N128

/* The 16-bit element types: packing two floats (the first in the low half)
 * and unpacking, the pool's dtype, and the wgmma wrappers. */
template <typename E> struct shm16_t {
    static constexpr bool F16 = std::is_same<E, __half>::value;
    static constexpr ts_dtype dt = F16 ? TS_DT_F16 : TS_DT_BF16;
    static __device__ __forceinline__ uint32_t pack(float a, float b) {
        uint32_t u;
        if constexpr (F16) {
            __half2 h = __floats2half2_rn(a, b);
            memcpy(&u, &h, 4);
        } else {
            __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
            memcpy(&u, &h, 4);
        }
        return u;
    }
    static __device__ __forceinline__ float2 unpack(uint32_t u) {
        if constexpr (F16) {
            __half2 h;
            memcpy(&h, &u, 4);
            return __half22float2(h);
        }
        return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
    }
    template <int TR>
    static __device__ __forceinline__ void n64(float *d, const uint32_t *a, uint64_t b) {
        if constexpr (F16) wg_n64_f16<TR>(d, a, b);
        else wg_n64_bf16<TR>(d, a, b);
    }
    template <int TR>
    static __device__ __forceinline__ void n128(float *d, const uint32_t *a, uint64_t b) {
        if constexpr (F16) wg_n128_f16<TR>(d, a, b);
        else wg_n128_bf16<TR>(d, a, b);
    }
};

/* Block ids a tile spans at most (block size 1), rounded up; the kernel
 * keeps two tiles' ids in shared memory (bt[2][SHM16_BT]). */
#define SHM16_BT (SHM16_KEYS + 8)

/* The block holding key t; bs_shift: log2 of the block size bs when a
 * power of two (no division), else -1. */
__device__ __forceinline__ int shm16_blk(int t, int bs, int bs_shift) {
    return bs_shift >= 0 ? t >> bs_shift : t / bs;
}

/* This thread's entry of the block ids of the tile at t0, keys [t0,
 * min(t0 + SHM16_KEYS, hi)) (0 past the tile's blocks), loaded from global
 * memory; the kernel stores it into shared memory a tile later, so the
 * load's latency hides behind that tile. */
__device__ __forceinline__ int32_t shm16_get(const shm_args &a, int t0, int hi, int bs_shift) {
    if (t0 >= hi) return 0;
    const int first = shm16_blk(t0, a.block_size, bs_shift);
    const int n = shm16_blk(min(t0 + SHM16_KEYS, hi) - 1, a.block_size, bs_shift) - first + 1;
    return (int)threadIdx.x < n ? a.blocks[first + threadIdx.x] : 0;
}

/* The q rows of this thread's fragments: query rows m and m + 8 of the CTA's
 * KV head (listed row m / group, head m % group), NULL past the last row.
 * Reads only the row list (an upload: safe before ts_pdl_wait). */
__device__ __forceinline__ void shm16_q_rows(const shm_args &a, int kvh, int m, int hd,
                                             const float *(&qr)[2]) {
    const int gs = a.group, M = a.n_rows * gs;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int r = m + 8 * h;
        qr[h] = r < M ? a.q + ((size_t)a.rows[r / gs] * a.n_heads + (size_t)kvh * gs + r % gs) * hd
                      : NULL;
    }
}

/* The rows' q, scaled, as A fragments of PARTS 16-bit parts: qh/ql[kk] =
 * rows g, g + 8 (qr[0], qr[1]) x dims kk*16 + 2t (+1) and + 8; q = hi + lo. */
template <int KK, typename E, int PARTS>
__device__ __forceinline__ void shm16_q_frags(const shm_args &a, const float *const (&qr)[2], int t,
                                              uint32_t (&qh)[KK][4], uint32_t (&ql)[KK][4]) {
    typedef shm16_t<E> T16;
#pragma unroll
    for (int kk = 0; kk < KK; kk++)
#pragma unroll
        for (int r = 0; r < 4; r++) { /* r: (row g, row g + 8) x (dims +0, +8) */
            const float *p = qr[r & 1];
            float2 x = p ? *(const float2 *)(p + kk * 16 + (r >> 1) * 8 + 2 * t)
                         : make_float2(0.0f, 0.0f);
            x.x *= a.scale, x.y *= a.scale;
            qh[kk][r] = T16::pack(x.x, x.y);
            if constexpr (PARTS == 2) {
                float2 h = T16::unpack(qh[kk][r]);
                ql[kk][r] = T16::pack(x.x - h.x, x.y - h.y);
            }
        }
}

/* P = exp(S - mrow) of a tile (S in the C layout of shm_softmax_step), its
 * row sums added to lrow, as A fragments of PARTS 16-bit parts: ph/pl[kk] =
 * keys kk*16 + 2t (+1) and + 8 of rows g, g + 8. */
template <int KT, typename E, int PARTS>
__device__ __forceinline__ void shm16_pack_p(const float (&s)[KT][4], const float (&mrow)[2],
                                             float (&lrow)[2], uint32_t (&ph)[KT / 2][4],
                                             uint32_t (&pl)[KT / 2][4]) {
    typedef shm16_t<E> T16;
#pragma unroll
    for (int j = 0; j < KT; j++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float p0 = expf(s[j][2 * h] - mrow[h]), p1 = expf(s[j][2 * h + 1] - mrow[h]);
            lrow[h] += p0 + p1;
            uint32_t hi = T16::pack(p0, p1);
            ph[j / 2][(j & 1) * 2 + h] = hi;
            if constexpr (PARTS == 2) {
                float2 f = T16::unpack(hi);
                pl[j / 2][(j & 1) * 2 + h] = T16::pack(p0 - f.x, p1 - f.y);
            }
        }
    }
}

/* Orders this thread's register writes before the wgmma issued after it. */
__device__ __forceinline__ void shw_fence() {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
/* Closes the group of wgmma issued since the last one. */
__device__ __forceinline__ void shw_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
/* Waits until at most N committed groups of this warpgroup are pending. */
template <int N> __device__ __forceinline__ void shw_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
/* q's A fragments read by an ordinary instruction (an xor into a value
 * stored only if n_kv < 0, never), called at the end of each tile. Without
 * it ptxas (CUDA 13) allocated the f16 head_dim 64 kernel so that the
 * softmax overwrote q's registers, which the next tile's wgmma still reads
 * (they had no other use in the loop): every range of two or more tiles
 * came out wrong. Volatile, so the compiler neither hoists nor drops it. */
template <int KK, int PARTS>
__device__ __forceinline__ void shw_keep_q(const shm_args &a, const uint32_t (&qh)[KK][4],
                                           const uint32_t (&ql)[KK][4]) {
    uint32_t x = 0;
#pragma unroll
    for (int kk = 0; kk < KK; kk++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            asm volatile("xor.b32 %0, %0, %1;" : "+r"(x) : "r"(qh[kk][r]));
            if constexpr (PARTS == 2) asm volatile("xor.b32 %0, %0, %1;" : "+r"(x) : "r"(ql[kk][r]));
        }
    if (a.n_kv < 0) a.p_lse[0] = __uint_as_float(x);
}

/* Keeps the compiler from reading (or reusing) registers that an issued
 * wgmma writes (or reads) before shw_wait returned. */
template <int N> __device__ __forceinline__ void shw_hold(float *r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void shw_hold(uint32_t *r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}

/* A shared-memory matrix descriptor, 128-byte swizzle: start address, leading
 * and stride byte offsets (PTX ISA, "Matrix Descriptor Format"). */
__device__ __forceinline__ uint64_t shw_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3ffff) >> 4) | (uint64_t)(lbo >> 4) << 16 |
           (uint64_t)(sbo >> 4) << 32 | 1ull << 62;
}

template <int HD> struct shw_layout {
    static constexpr int TILE = SHM16_KEYS * HD * 2; /* bytes of a K or V tile */
    static constexpr int COLB = SHM16_KEYS * 128;    /* bytes of a 64-column block */
    static constexpr size_t bytes = 2 * 2 * (size_t)TILE + 1024; /* + alignment */
};

/* Queues the K and V rows of keys [t0, t0 + SHM16_KEYS) (zeros past hi) into
 * the swizzled tiles at shared addresses ks, vs; bt: the tile's block ids. */
template <int HD, typename E>
__device__ void shw_load(const shm_args &a, int kvh, int t0, int hi, uint32_t ks, uint32_t vs,
                         const int32_t *bt, int bs_shift) {
    constexpr int CH = HD / 8, RS = SHM_WARPS * 32 / CH; /* 16-byte chunks a row; rows a pass */
    const E *kp = (const E *)a.k, *vp = (const E *)a.v;
    const int ch = threadIdx.x % CH, bs = a.block_size;
    const int first = shm16_blk(t0, bs, bs_shift);
#pragma unroll 2
    for (int r = threadIdx.x / CH; r < SHM16_KEYS; r += RS) {
        int t = t0 + r;
        bool ok = t < hi;
        size_t off = 0;
        if (ok) {
            int blk = shm16_blk(t, bs, bs_shift);
            int in = bs_shift >= 0 ? t & (bs - 1) : t % bs;
            off = (((size_t)bt[blk - first] * a.n_kv_heads + kvh) * bs + (size_t)in) * HD + ch * 8;
        }
        /* column block, key row, chunk swizzled by the key within its 8 */
        uint32_t d = (uint32_t)((ch >> 3) * shw_layout<HD>::COLB + r * 128 +
                                (((ch & 7) ^ (r & 7)) << 4));
        ts_cp16(ks + d, kp + off, ok); /* past hi: zero-filled */
        ts_cp16(vs + d, vp + off, ok);
    }
    ts_cp_commit();
}

/* S = Q K^T of one tile into s (zeroed here), issued, not waited for. */
template <int HD, typename E, int PARTS>
__device__ __forceinline__ void shw_qk(float (&s)[SHM16_KEYS / 8][4],
                                       const uint32_t (&qh)[HD / 16][4],
                                       const uint32_t (&ql)[HD / 16][4], uint32_t kt) {
#pragma unroll
    for (int j = 0; j < SHM16_KEYS / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    shw_fence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint64_t d = shw_desc(kt + (kk >> 2) * shw_layout<HD>::COLB + (kk & 3) * 32, 16, 1024);
        if constexpr (PARTS == 2) shm16_t<E>::template n64<0>(&s[0][0], ql[kk], d);
        shm16_t<E>::template n64<0>(&s[0][0], qh[kk], d);
    }
    shw_commit();
}

/* O += P V of one tile, issued, not waited for. */
template <int HD, typename E, int PARTS>
__device__ __forceinline__ void shw_pv(float (&o)[HD / 8][4],
                                       const uint32_t (&ph)[SHM16_KEYS / 16][4],
                                       const uint32_t (&pl)[SHM16_KEYS / 16][4], uint32_t vt) {
    shw_fence();
#pragma unroll
    for (int kk = 0; kk < SHM16_KEYS / 16; kk++) {
        uint64_t d = shw_desc(vt + kk * 2048, shw_layout<HD>::COLB, 1024);
        if constexpr (HD == 128) {
            if constexpr (PARTS == 2) shm16_t<E>::template n128<1>(&o[0][0], pl[kk], d);
            shm16_t<E>::template n128<1>(&o[0][0], ph[kk], d);
        } else {
            if constexpr (PARTS == 2) shm16_t<E>::template n64<1>(&o[0][0], pl[kk], d);
            shm16_t<E>::template n64<1>(&o[0][0], ph[kk], d);
        }
    }
    shw_commit();
}

/* ---- optional phase clock (build with -DSHW_PROF; profiling only) ----
 * Thread 0 of each CTA stamps %globaltimer and clock64 at its entry, after
 * its wait, with q in registers, and per tile when the tile is loaded, S is
 * done and P V is done; ts_cuda_shw_prof_dump (called by ts_cuda_destroy)
 * prints the last launch's phases as percentiles over CTAs. */
#ifdef SHW_PROF
#include <stdio.h>
#include <stdlib.h>
#define SHW_PROF_C 1024 /* CTAs stamped */
#define SHW_PROF_T 8    /* tiles stamped */
#define SHW_EV (4 + 3 * SHW_PROF_T)
__device__ unsigned long long shw_prof[SHW_PROF_C * SHW_EV * 2];
__device__ int shw_prof_n[2]; /* CTAs, tiles of the last launch */
__device__ __forceinline__ void shw_stamp(int ev) {
    unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    if (threadIdx.x == 0 && cta < SHW_PROF_C && ev < SHW_EV) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        shw_prof[(cta * SHW_EV + ev) * 2] = t, shw_prof[(cta * SHW_EV + ev) * 2 + 1] = clock64();
    }
}
static int shw_cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}
/* [CTA][event]: %globaltimer (ns), clock64 */
static unsigned long long shw_h[SHW_PROF_C * SHW_EV * 2];
static double shw_gt(int c, int e) { return (double)shw_h[((size_t)c * SHW_EV + e) * 2]; }
static double shw_ck(int c, int e) { return (double)shw_h[((size_t)c * SHW_EV + e) * 2 + 1]; }
/* One line: clock64 from event e0 to e1 in us (e0 < 0: %globaltimer of e1
 * after t0), min / median / max over C CTAs. */
static void shw_line(const char *name, int C, int e0, int e1, double mhz, double t0) {
    static double v[SHW_PROF_C];
    for (int c = 0; c < C; c++)
        v[c] = e0 < 0 ? (shw_gt(c, e1) - t0) / 1e3 : (shw_ck(c, e1) - shw_ck(c, e0)) / mhz;
    qsort(v, (size_t)C, sizeof v[0], shw_cmp);
    fprintf(stderr, "  %-34s %7.2f %7.2f %7.2f\n", name, v[0], v[C / 2], v[C - 1]);
}
/* Events: 0 entry, 1 wait passed, 2 q ready, 3 partials stored; tile i:
 * 4 + 3i loaded, 5 + 3i S done, 6 + 3i P V done. Assumes every CTA has the
 * first CTA's tile count (profiling shapes such as bench_gpu's). */
void ts_cuda_shw_prof_dump(void) {
    int n[2];
    if (cudaMemcpyFromSymbol(n, shw_prof_n, sizeof n) != cudaSuccess || n[0] <= 0 || n[1] <= 0 ||
        cudaMemcpyFromSymbol(shw_h, shw_prof, sizeof shw_h) != cudaSuccess)
        return;
    const int C = n[0] < SHW_PROF_C ? n[0] : SHW_PROF_C, T = n[1] < SHW_PROF_T ? n[1] : SHW_PROF_T;
    double t0 = 1e300, mhz = (shw_ck(0, 3) - shw_ck(0, 0)) / (shw_gt(0, 3) - shw_gt(0, 0)) * 1e3;
    for (int c = 0; c < C; c++) t0 = shw_gt(c, 0) < t0 ? shw_gt(c, 0) : t0;
    fprintf(stderr, "shw_kernel phase clock: %d CTAs, %d tiles, ~%.0f MHz; us, min/median/max\n",
            C, T, mhz);
    shw_line("entry, after the first CTA's", C, -1, 0, mhz, t0);
    shw_line("entry -> wait passed", C, 0, 1, mhz, t0);
    shw_line("wait -> q in registers", C, 1, 2, mhz, t0);
    for (int i = 0; i < T; i++) {
        char name[48];
        snprintf(name, sizeof name, "tile %d: loaded", i);
        shw_line(name, C, i ? 3 + 3 * i : 2, 4 + 3 * i, mhz, t0);
        snprintf(name, sizeof name, "tile %d: S", i);
        shw_line(name, C, 4 + 3 * i, 5 + 3 * i, mhz, t0);
        snprintf(name, sizeof name, "tile %d: softmax + P V", i);
        shw_line(name, C, 5 + 3 * i, 6 + 3 * i, mhz, t0);
    }
    shw_line("last P V -> partials stored", C, 3 + 3 * T, 3, mhz, t0);
    shw_line("end, after the first CTA's entry", C, -1, 3, mhz, t0);
}
#define SHW_STAMP(ev) shw_stamp(ev)
#else
#define SHW_STAMP(ev) ((void)0)
#endif

/* Grid (M tiles, KV heads, ranges); 128 threads (one warpgroup). It
 * triggers the next kernel only after its own wait, so that kernel may read
 * (through L2) what the kernels before this one wrote. Before its own wait
 * it reads only the block table and the row list: the host uploads them (a
 * copy, which every later kernel in the stream starts after), and no kernel
 * writes them. So the first two tiles' block ids and the q rows' addresses
 * are ready when the wait returns; each later tile's ids are loaded two
 * tiles ahead and stored at the end of the tile between, so no cp.async
 * waits on a block-table load. */
/* Registers: at most 200 a thread (__maxnreg__), so two 128-thread CTAs fit an
 * SM with room to spare; __launch_bounds__(128, 2) let ptxas take up to 230.
 * No instance spills at 200 (checked with -Xptxas -v); H100, bf16 KV, batch
 * 64 x 4096: the cascade step 27.0-27.1 us against 27.5-27.6 at 230. */
template <int HD, typename E, int PARTS>
__global__ void __maxnreg__(200) shw_kernel(shm_args a) {
    constexpr int KT = SHM16_KEYS / 8, KK = HD / 16, TILE = shw_layout<HD>::TILE;
    extern __shared__ __align__(16) unsigned char shw_smem[];
    const uint32_t base = ((uint32_t)__cvta_generic_to_shared(shw_smem) + 1023u) & ~1023u;
    const uint32_t ks = base, vs = base + 2 * TILE; /* stage b: + b * TILE */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int kvh = blockIdx.y;
    const int lo = blockIdx.z * a.per, hi = min(a.n_kv, lo + a.per);
    const int bs_shift = (a.block_size & (a.block_size - 1)) == 0 ? __ffs(a.block_size) - 1 : -1;
    SHW_STAMP(0);
#ifdef SHW_PROF
    if (threadIdx.x == 0 && blockIdx.x + blockIdx.y + blockIdx.z == 0)
        shw_prof_n[0] = gridDim.x * gridDim.y * gridDim.z,
        shw_prof_n[1] = (min(a.n_kv, a.per) + SHM16_KEYS - 1) / SHM16_KEYS;
#endif
    __shared__ int32_t bt[2][SHM16_BT]; /* tile i's block ids: bt[i & 1] */
    if (threadIdx.x < SHM16_BT) {
        bt[0][threadIdx.x] = shm16_get(a, lo, hi, bs_shift);
        bt[1][threadIdx.x] = shm16_get(a, lo + SHM16_KEYS, hi, bs_shift);
    }
    uint32_t qh[KK][4], ql[KK][4];
    {
        const float *qr[2];
        shm16_q_rows(a, kvh, blockIdx.x * SHM_ROWS + warp * 16 + g, HD, qr);
        __syncthreads(); /* bt */
        ts_pdl_wait();
        ts_pdl_trigger();
        SHW_STAMP(1);
        if (lo < hi) shw_load<HD, E>(a, kvh, lo, hi, ks, vs, bt[0], bs_shift);
        shm16_q_frags<KK, E, PARTS>(a, qr, t, qh, ql);
        SHW_STAMP(2);
    }
    float o[HD / 8][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    int buf = 0, tile = 0;
    for (int t0 = lo; t0 < hi; t0 += SHM16_KEYS, buf ^= 1, tile++) {
        const bool more = t0 + SHM16_KEYS < hi;
        if (more) /* the next tile into the other stage (freed by the last sync) */
            shw_load<HD, E>(a, kvh, t0 + SHM16_KEYS, hi, ks + (buf ^ 1) * TILE,
                            vs + (buf ^ 1) * TILE, bt[buf ^ 1], bs_shift);
        const int32_t id2 = shm16_get(a, t0 + 2 * SHM16_KEYS, hi, bs_shift);
        if (more) ts_cp_wait<1>();
        else ts_cp_wait<0>();
        /* the copies (generic proxy) made visible to wgmma's reads (async proxy) */
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
        SHW_STAMP(4 + 3 * tile);
        float s[KT][4];
        shw_qk<HD, E, PARTS>(s, qh, ql, ks + buf * TILE);
        shw_wait<0>();
        shw_hold<KT * 4>(&s[0][0]);
        SHW_STAMP(5 + 3 * tile);
        shm_softmax_step<KT, HD / 8>(s, o, mrow, lrow, !more, t0 + 2 * t, hi);
        uint32_t ph[KT / 2][4], pl[KT / 2][4];
        shm16_pack_p<KT, E, PARTS>(s, mrow, lrow, ph, pl);
        shw_pv<HD, E, PARTS>(o, ph, pl, vs + buf * TILE);
        shw_wait<0>();
        shw_hold<HD / 2>(&o[0][0]);
        shw_hold<KT * 2>(&ph[0][0]);
        if constexpr (PARTS == 2) shw_hold<KT * 2>(&pl[0][0]);
        shw_keep_q<KK, PARTS>(a, qh, ql);
        SHW_STAMP(6 + 3 * tile);
        if (threadIdx.x < SHM16_BT) bt[buf][threadIdx.x] = id2; /* read by the loads above */
        __syncthreads(); /* both stages' readers are done before the next load */
    }
    shm_store_partial<HD>(a, o, mrow, lrow, blockIdx.x * SHM_ROWS + warp * 16, kvh, g, t);
    SHW_STAMP(3);
}

/* The instances: head_dim x element type x parts. */
#define SHW_EACH(X)                                                                            \
    X(64, __half, 1) X(128, __half, 1) X(64, __nv_bfloat16, 1) X(128, __nv_bfloat16, 1)         \
    X(64, __half, 2) X(128, __half, 2) X(64, __nv_bfloat16, 2) X(128, __nv_bfloat16, 2)

bool ts_cuda_shm16_init(ts_cuda *c) {
#define SET(HD, E, P)                                                                       \
    &&TS_CU(c, cudaFuncSetAttribute(shw_kernel<HD, E, P>,                                     \
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,             \
                                    (int)shw_layout<HD>::bytes))
    return true SHW_EACH(SET);
#undef SET
}

void ts_cuda_shm16_launch(ts_cuda *c, const shm_args &a, ts_dtype dt, int hd, dim3 grid) {
    const int parts = c->shm16_parts == 1 ? 1 : 2;
#define GO(HD, E, P)                                                                         \
    if (hd == HD && dt == shm16_t<E>::dt && parts == P)                                      \
        return (void)ts_cuda_launch(c, "shw_kernel", shw_kernel<HD, E, P>, grid,               \
                                    dim3(SHM_WARPS * 32), shw_layout<HD>::bytes, a);
    SHW_EACH(GO)
#undef GO
}
