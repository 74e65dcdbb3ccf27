/* Cascade attention's shared level over an f16 or bf16 KV pool, on the
 * tensor cores with mma.sync m16n8k16 (the f32 pool's kernel is
 * attn_shared_mma.cu, which plans the launch and merges the ranges). By
 * default attn_shared_wgmma.cu's kernel runs instead; this one with
 * TS_CASCADE_WGMMA=0.
 *
 * A CTA takes 64 query rows of one KV head (16 a warp) and a range of the
 * prefix, streamed in 64-key tiles gathered through the block table with
 * cp.async into two shared-memory stages, K and V kept in their 16-bit
 * format (exact: they are stored so). Per tile and warp:
 *   S = Q K^T: q is f32, so it enters as two 16-bit parts, q = hi + lo
 *     (hi = q rounded, lo = the rest rounded: q to ~2^-17), two products;
 *     the parts stay in registers for the whole range;
 *   online softmax on S in f32 (expf), as the other kernels;
 *   O += P V: P in two 16-bit parts as q; V's fragments come from
 *     ldmatrix.trans.
 * So only the dropped lo*K and lo*V remainders (~2^-17 relative) separate
 * the result from an f32 computation over the same K/V. With PARTS = 1 q
 * and P enter as one 16-bit part each, as FlashAttention computes over a
 * 16-bit cache: half the products, ~2e-3 relative error in the output (the
 * order of the pool's own rounding of K and V). head_dim 64 or 128. */
#include <math.h>

#include "ops/cuda/attn_shm16.cuh"

/* Shared memory: K and V tiles [2 stages][SHM16_KEYS][HD + 8] elements; the
 * 16-byte pad makes the K fragment loads and V's ldmatrix rows conflict-free. */
template <int HD> struct shm16_layout {
    static constexpr int STR = HD + 8;
    static constexpr size_t bytes = 2 * 2 * (size_t)SHM16_KEYS * STR * 2;
};

/* Queues the K and V rows of keys [t0, t0 + SHM16_KEYS) (zeros past hi);
 * bt: the tile's block ids (from its first block on), in shared memory.
 * A thread keeps one 16-byte column of every RS-th row; bs_shift: log2 of
 * the block size when a power of two (no division per row), else -1. */
template <int HD, typename E>
__device__ void shm16_load(const shm_args &a, int kvh, int t0, int hi, E *ks, E *vs,
                           const int32_t *bt, int bs_shift) {
    constexpr int CH = HD / 8, RS = SHM_WARPS * 32 / CH; /* 16-byte chunks a row; rows a pass */
    const E *kp = (const E *)a.k, *vp = (const E *)a.v;
    const int c = (threadIdx.x % CH) * 8, bs = a.block_size;
    const int first = shm16_blk(t0, bs, bs_shift);
#pragma unroll 2
    for (int r = threadIdx.x / CH; r < SHM16_KEYS; r += RS) {
        int t = t0 + r;
        bool ok = t < hi;
        size_t off = 0;
        if (ok) {
            int blk = shm16_blk(t, bs, bs_shift);
            int in = bs_shift >= 0 ? t & (bs - 1) : t % bs;
            off = (((size_t)bt[blk - first] * a.n_kv_heads + kvh) * bs + (size_t)in) * HD + c;
        }
        uint32_t dk = (uint32_t)__cvta_generic_to_shared(ks + r * shm16_layout<HD>::STR + c);
        uint32_t dv = (uint32_t)__cvta_generic_to_shared(vs + r * shm16_layout<HD>::STR + c);
        int n = ok ? 16 : 0; /* 0: zero-filled */
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dk), "l"(kp + off), "r"(n));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dv), "l"(vp + off), "r"(n));
    }
    asm volatile("cp.async.commit_group;");
}

/* Grid (M tiles, KV heads, ranges); 128 threads; PARTS: 16-bit parts of q
 * and P (1 or 2). It triggers the next kernel only after its own wait, so
 * that kernel may read (through L2) what the kernels before this one
 * wrote.
 * Before its own wait it reads only the block table and the row list: the
 * host uploads them (a copy, which every later kernel in the stream starts
 * after), and no kernel writes them. So the first two tiles' block ids and
 * the q rows' addresses are ready when the wait returns; each later tile's
 * ids are loaded two tiles ahead and stored at the end of the tile between,
 * so no cp.async waits on a block-table load. */
template <int HD, typename E, int PARTS>
__global__ void __launch_bounds__(SHM_WARPS * 32, 2) shm16_kernel(shm_args a) {
    typedef shm16_t<E> T16;
    constexpr int STR = shm16_layout<HD>::STR, KT = SHM16_KEYS / 8, KK = HD / 16;
    extern __shared__ __align__(16) unsigned char shm16[];
    E *ks = (E *)shm16, *vs = ks + 2 * SHM16_KEYS * STR;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int kvh = blockIdx.y;
    const int lo = blockIdx.z * a.per, hi = min(a.n_kv, lo + a.per);
    const int bs_shift = (a.block_size & (a.block_size - 1)) == 0 ? __ffs(a.block_size) - 1 : -1;
    __shared__ int32_t bt[2][SHM16_BT]; /* tile i's block ids: bt[i & 1] */
    if (threadIdx.x < SHM16_BT) {
        bt[0][threadIdx.x] = shm16_get(a, lo, hi, bs_shift);
        bt[1][threadIdx.x] = shm16_get(a, lo + SHM16_KEYS, hi, bs_shift);
    }
    /* this warp's 16 query rows, scaled, as A fragments of two 16-bit parts:
     * qh/ql[kk] = rows g, g + 8, dims kk*16 + 2t (+1) and + 8 */
    uint32_t qh[KK][4], ql[KK][4];
    {
        const float *qr[2];
        shm16_q_rows(a, kvh, blockIdx.x * SHM_ROWS + warp * 16 + g, HD, qr);
        __syncthreads(); /* bt */
        ts_pdl_wait();
        ts_pdl_trigger();
        if (lo < hi) shm16_load<HD, E>(a, kvh, lo, hi, ks, vs, bt[0], bs_shift);
        shm16_q_frags<KK, E, PARTS>(a, qr, t, qh, ql);
    }
    float o[HD / 8][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    /* ldmatrix.trans rows for V: lanes 0-7 keys 0-7, 8-15 keys 8-15 (dims +0),
     * 16-31 the same keys at dims +8 */
    const int v_key = (lane & 7) + ((lane >> 3) & 1) * 8, v_dim = (lane >> 4) * 8;
    int buf = 0;
    for (int t0 = lo; t0 < hi; t0 += SHM16_KEYS, buf ^= 1) {
        const bool more = t0 + SHM16_KEYS < hi;
        if (more) /* the next tile into the other stage (freed by the last sync) */
            shm16_load<HD, E>(a, kvh, t0 + SHM16_KEYS, hi, ks + (buf ^ 1) * SHM16_KEYS * STR,
                              vs + (buf ^ 1) * SHM16_KEYS * STR, bt[buf ^ 1], bs_shift);
        /* the ids of the tile after next, stored in this tile's entry below */
        const int32_t id2 = shm16_get(a, t0 + 2 * SHM16_KEYS, hi, bs_shift);
        if (more) asm volatile("cp.async.wait_group 1;");
        else asm volatile("cp.async.wait_group 0;");
        __syncthreads();
        const E *kt = ks + buf * SHM16_KEYS * STR, *vt = vs + buf * SHM16_KEYS * STR;
        /* S = Q K^T: 16 rows x 64 keys a warp; B fragment = key j*8 + g, dims 2t (+1), +8 */
        float s[KT][4];
#pragma unroll
        for (int j = 0; j < KT; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            const E *kr = kt + (j * 8 + g) * STR + 2 * t;
#pragma unroll
            for (int kk = 0; kk < KK; kk++) {
                uint32_t b0 = *(const uint32_t *)(kr + kk * 16), b1 = *(const uint32_t *)(kr + kk * 16 + 8);
                if (PARTS == 2) T16::mma(s[j], ql[kk], b0, b1);
                T16::mma(s[j], qh[kk], b0, b1);
            }
        }
        /* online softmax: this thread holds rows g (c0, c1) and g + 8 (c2, c3) */
        shm_softmax_step<KT, HD / 8>(s, o, mrow, lrow, !more, t0 + 2 * t, hi);
        uint32_t ph[KT / 2][4], pl[KT / 2][4];
        shm16_pack_p<KT, E, PARTS>(s, mrow, lrow, ph, pl);
        /* O += P V: B fragments of two 8-dim column tiles a ldmatrix.x4.trans */
#pragma unroll
        for (int kk = 0; kk < KT / 2; kk++) {
            const E *vr = vt + (kk * 16 + v_key) * STR + v_dim;
#pragma unroll
            for (int n = 0; n < HD / 8; n += 2) {
                uint32_t b0, b1, b2, b3;
                uint32_t addr = (uint32_t)__cvta_generic_to_shared(vr + n * 8);
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                             : "r"(addr));
                if (PARTS == 2) {
                    T16::mma(o[n], pl[kk], b0, b1);
                    T16::mma(o[n + 1], pl[kk], b2, b3);
                }
                T16::mma(o[n], ph[kk], b0, b1);
                T16::mma(o[n + 1], ph[kk], b2, b3);
            }
        }
        if (threadIdx.x < SHM16_BT) bt[buf][threadIdx.x] = id2; /* read by the loads above */
        __syncthreads(); /* both stages' readers are done before the next load */
    }
    shm_store_partial<HD>(a, o, mrow, lrow, blockIdx.x * SHM_ROWS + warp * 16, kvh, g, t);
}

/* The instances: head_dim x element type x parts. */
#define SHM16_EACH(X)                                                                          \
    X(64, __half, 1) X(128, __half, 1) X(64, __nv_bfloat16, 1) X(128, __nv_bfloat16, 1)         \
    X(64, __half, 2) X(128, __half, 2) X(64, __nv_bfloat16, 2) X(128, __nv_bfloat16, 2)

bool ts_cuda_shm16_init(ts_cuda *c) {
#define SET(HD, E, P)                                                                       \
    &&TS_CU(c, cudaFuncSetAttribute(shm16_kernel<HD, E, P>,                                   \
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,             \
                                    (int)shm16_layout<HD>::bytes))
    return true SHM16_EACH(SET) && ts_cuda_shw_init(c);
#undef SET
}

void ts_cuda_shm16_launch(ts_cuda *c, const shm_args &a, ts_dtype dt, int hd, dim3 grid) {
    if (c->shm_wgmma) return ts_cuda_shw_launch(c, a, dt, hd, grid);
    const int parts = c->shm16_parts == 1 ? 1 : 2;
#define GO(HD, E, P)                                                                         \
    if (hd == HD && dt == shm16_t<E>::dt && parts == P)                                      \
        return (void)ts_cuda_launch(c, "shm16_kernel", shm16_kernel<HD, E, P>, grid,           \
                                    dim3(SHM_WARPS * 32), shm16_layout<HD>::bytes, a);
    SHM16_EACH(GO)
#undef GO
}
