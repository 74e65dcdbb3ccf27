/* What the two 16-bit KV shared-level kernels share (attn_shared_mma16.cu on
 * mma.sync, attn_shared_wgmma.cu on wgmma): the element types, the block ids
 * of a key tile, and the register fragments of q and P. Both keep a warp's
 * 16 query rows in the mma.sync m16n8k16 layouts, which are also the layouts
 * of a warp's rows in a wgmma m64nNk16 (A from registers, f32 D). */
#ifndef TS_OPS_CUDA_ATTN_SHM16_CUH
#define TS_OPS_CUDA_ATTN_SHM16_CUH

#include "ops/cuda/attn_shared.cuh"
#include "ops/cuda/kv_elem.cuh"

/* c += a b on the tensor cores, m16n8k16, f32 accumulators; T: bf16 or f16 */
#define SHM16_MMA(T)                                                                    \
    static __device__ __forceinline__ void mma(float *c, const uint32_t *a, uint32_t b0,  \
                                               uint32_t b1) {                            \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." T "." T ".f32 {%0,%1,%2,%3}, " \
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                            \
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                    \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));     \
    }

/* 16-bit element types: packing two floats (the first in the low half),
 * unpacking, and the product instruction. */
template <typename E> struct shm16_t;
template <> struct shm16_t<__nv_bfloat16> {
    static constexpr ts_dtype dt = TS_DT_BF16;
    static __device__ __forceinline__ uint32_t pack(float a, float b) {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
        return *(uint32_t *)&h;
    }
    static __device__ __forceinline__ float2 unpack(uint32_t u) {
        return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
    }
    SHM16_MMA("bf16")
};
template <> struct shm16_t<__half> {
    static constexpr ts_dtype dt = TS_DT_F16;
    static __device__ __forceinline__ uint32_t pack(float a, float b) {
        __half2 h = __floats2half2_rn(a, b);
        return *(uint32_t *)&h;
    }
    static __device__ __forceinline__ float2 unpack(uint32_t u) {
        return __half22float2(*(const __half2 *)&u);
    }
    SHM16_MMA("f16")
};
#undef SHM16_MMA

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
            if (PARTS == 2) {
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
            if (PARTS == 2) {
                float2 f = T16::unpack(hi);
                pl[j / 2][(j & 1) * 2 + h] = T16::pack(p0 - f.x, p1 - f.y);
            }
        }
    }
}

#endif
