/* Cascade attention's shared level (ts_attn_shared) on the tensor cores:
 * every listed row attends to the same prefix, so per KV head the query
 * rows (listed rows x the heads of the group, M of them) and the prefix
 * keys form a dense M x n_kv product, run as FlashAttention does: a CTA
 * takes 64 query rows of one KV head and a range of the prefix, streams it
 * in 32-key tiles (cp.async, double-buffered, gathered through the block
 * table), S = Q K^T and O += P V on mma.sync m16n8k8 TF32, with an online
 * softmax in registers. TF32 keeps 10 mantissa bits, so every product is
 * split as a = hi + lo (hi = tf32(a), lo = tf32(a - hi)) and formed as
 * hi*hi + hi*lo + lo*hi ("3xTF32"), which keeps f32 accuracy (the dropped
 * lo*lo term is ~2^-22 relative). The prefix ranges' partial results merge
 * by log-sum-exp in a second kernel. head_dim 64 or 128; other shapes take
 * the generic kernel (attention.cu). f16 / bf16 pools take the 16-bit
 * wgmma kernel of attn_shared_wgmma.cu, planned and merged here. */
#include <math.h>

#include <limits.h>

#include "ops/cuda/attn_shared.cuh"
#include "ops/cuda/kv_elem.cuh"

#define SHM_KEYS 32 /* keys a tile */
#define SHM_PSTR (SHM_KEYS + 4)

/* Shared memory strides (floats) that keep each fragment load free of bank
 * conflicts: K and Q rows are read as [g][t], V rows as [t][g]. */
template <int HD> struct shm_layout {
    static constexpr int QS = HD + 4, KS = HD + 4, VS = HD + 8;
    static constexpr size_t floats =
        (size_t)SHM_ROWS * QS + 2 * SHM_KEYS * (KS + VS) + SHM_WARPS * 16 * SHM_PSTR;
};

/* x = hi + lo: hi is x rounded to TF32's 10 mantissa bits (add half of the
 * dropped part, then clear it: a carry moves into the exponent correctly),
 * lo = x - hi exactly in f32, |lo| <= 2^-11 |x|. lo goes to the tensor
 * cores as it is: they read its top 19 bits (truncation, <= 2^-21 |x|).
 * Three integer/float instructions, where cvt.rna.tf32.f32 costs more. */
__device__ __forceinline__ void shm_split(float x, uint32_t &hi, uint32_t &lo) {
    hi = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
    lo = __float_as_uint(x - __uint_as_float(hi));
}

__device__ __forceinline__ void shm_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* c += a * b in 3xTF32 (the small terms first) */
__device__ __forceinline__ void shm_mma3(float *c, const uint32_t *ah, const uint32_t *al,
                                         uint32_t bh0, uint32_t bh1, uint32_t bl0, uint32_t bl1) {
    shm_mma(c, al, bh0, bh1);
    shm_mma(c, ah, bl0, bl1);
    shm_mma(c, ah, bh0, bh1);
}

__device__ __forceinline__ void shm_cp16(float *dst, const float *src, bool valid) {
    ts_cp16((uint32_t)__cvta_generic_to_shared(dst), src, valid);
}

/* Queues the K and V rows of keys [t0, t0 + 64) (zeros past hi). */
template <int HD>
__device__ void shm_load_tile(const shm_args &a, int kvh, int t0, int hi, float *ks, float *vs) {
    using L = shm_layout<HD>;
    for (int i = threadIdx.x; i < SHM_KEYS * HD / 4; i += SHM_WARPS * 32) {
        int r = i / (HD / 4), c = (i % (HD / 4)) * 4, t = t0 + r;
        bool ok = t < hi;
        size_t off = 0;
        if (ok)
            off = (((size_t)a.blocks[t / a.block_size] * a.n_kv_heads + kvh) * a.block_size +
                   (size_t)(t % a.block_size)) * HD + c;
        shm_cp16(ks + r * L::KS + c, (const float *)a.k + off, ok);
        shm_cp16(vs + r * L::VS + c, (const float *)a.v + off, ok);
    }
    ts_cp_commit();
}

/* Grid (M tiles, KV heads, ranges); 128 threads. */
template <int HD>
__global__ void __launch_bounds__(SHM_WARPS * 32, 2) shm_kernel(shm_args a) {
    using L = shm_layout<HD>;
    extern __shared__ __align__(16) float shm[];
    float *qs = shm, *ks = qs + SHM_ROWS * L::QS, *vs = ks + 2 * SHM_KEYS * L::KS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    float *ps = vs + 2 * SHM_KEYS * L::VS + warp * 16 * SHM_PSTR;
    const int kvh = blockIdx.y, gs = a.group, M = a.n_rows * gs;
    const int m0 = blockIdx.x * SHM_ROWS;
    const int lo = blockIdx.z * a.per, hi = min(a.n_kv, lo + a.per);
    ts_pdl_wait();
    ts_pdl_trigger();
    if (lo < hi) shm_load_tile<HD>(a, kvh, lo, hi, ks, vs);
    /* the CTA's query rows, scaled (row m: listed row m / group, head m % group) */
    for (int i = threadIdx.x; i < SHM_ROWS * HD / 4; i += SHM_WARPS * 32) {
        int r = i / (HD / 4), c = (i % (HD / 4)) * 4, m = m0 + r;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (m < M) {
            size_t row = (size_t)a.rows[m / gs] * a.n_heads + (size_t)kvh * gs + m % gs;
            x = *(const float4 *)(a.q + row * HD + c);
            x.x *= a.scale, x.y *= a.scale, x.z *= a.scale, x.w *= a.scale;
        }
        *(float4 *)(qs + r * L::QS + c) = x;
    }
    float o[HD / 8][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    const float *qw = qs + warp * 16 * L::QS;
    int buf = 0;
    for (int t0 = lo; t0 < hi; t0 += SHM_KEYS, buf ^= 1) {
        const bool more = t0 + SHM_KEYS < hi;
        if (more) /* the next tile into the other buffer (freed by the last sync) */
            shm_load_tile<HD>(a, kvh, t0 + SHM_KEYS, hi, ks + (buf ^ 1) * SHM_KEYS * L::KS,
                              vs + (buf ^ 1) * SHM_KEYS * L::VS);
        if (more) ts_cp_wait<1>();
        else ts_cp_wait<0>();
        __syncthreads();
        const float *kt = ks + buf * SHM_KEYS * L::KS, *vt = vs + buf * SHM_KEYS * L::VS;
        /* S = Q K^T: 16 rows x 64 keys a warp */
        float s[SHM_KEYS / 8][4];
#pragma unroll
        for (int j = 0; j < SHM_KEYS / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll 4
        for (int kk = 0; kk < HD / 8; kk++) {
            uint32_t ah[4], al[4];
            shm_split(qw[g * L::QS + kk * 8 + t], ah[0], al[0]);
            shm_split(qw[(g + 8) * L::QS + kk * 8 + t], ah[1], al[1]);
            shm_split(qw[g * L::QS + kk * 8 + t + 4], ah[2], al[2]);
            shm_split(qw[(g + 8) * L::QS + kk * 8 + t + 4], ah[3], al[3]);
#pragma unroll
            for (int j = 0; j < SHM_KEYS / 8; j++) {
                uint32_t bh0, bl0, bh1, bl1;
                shm_split(kt[(j * 8 + g) * L::KS + kk * 8 + t], bh0, bl0);
                shm_split(kt[(j * 8 + g) * L::KS + kk * 8 + t + 4], bh1, bl1);
                shm_mma3(s[j], ah, al, bh0, bh1, bl0, bl1);
            }
        }
        /* online softmax: this thread holds rows g (c0, c1) and g + 8 (c2, c3) */
        shm_softmax_step<SHM_KEYS / 8, HD / 8>(s, o, mrow, lrow, true, t0 + 2 * t, hi);
#pragma unroll
        for (int j = 0; j < SHM_KEYS / 8; j++) {
            float p0 = expf(s[j][0] - mrow[0]), p1 = expf(s[j][1] - mrow[0]);
            float p2 = expf(s[j][2] - mrow[1]), p3 = expf(s[j][3] - mrow[1]);
            lrow[0] += p0 + p1, lrow[1] += p2 + p3;
            *(float2 *)(ps + g * SHM_PSTR + j * 8 + 2 * t) = make_float2(p0, p1);
            *(float2 *)(ps + (g + 8) * SHM_PSTR + j * 8 + 2 * t) = make_float2(p2, p3);
        }
        __syncwarp();
        /* O += P V: P (16 x 64) from this warp's shared tile */
#pragma unroll 2
        for (int kk = 0; kk < SHM_KEYS / 8; kk++) {
            uint32_t ah[4], al[4];
            shm_split(ps[g * SHM_PSTR + kk * 8 + t], ah[0], al[0]);
            shm_split(ps[(g + 8) * SHM_PSTR + kk * 8 + t], ah[1], al[1]);
            shm_split(ps[g * SHM_PSTR + kk * 8 + t + 4], ah[2], al[2]);
            shm_split(ps[(g + 8) * SHM_PSTR + kk * 8 + t + 4], ah[3], al[3]);
#pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                uint32_t bh0, bl0, bh1, bl1;
                shm_split(vt[(kk * 8 + t) * L::VS + n * 8 + g], bh0, bl0);
                shm_split(vt[(kk * 8 + t + 4) * L::VS + n * 8 + g], bh1, bl1);
                shm_mma3(o[n], ah, al, bh0, bh1, bl0, bl1);
            }
        }
        __syncthreads(); /* both buffers' readers are done before the next load */
    }
    shm_store_partial<HD>(a, o, mrow, lrow, m0 + warp * 16, kvh, g, t);
}

/* Merges the ranges of (listed row i, head h) = blockIdx.x into out and
 * lse: a block of HD threads, a dimension each; SHM_MR ranges at a time,
 * each warp's lanes loading their lse and every thread its dimension of the
 * SHM_MR partials, all at once (one L2 round trip for them). With own_info
 * (attention_cascade) the block first attends the row's own slots, SHM_OWN
 * at a time: their K and V rows copied into shared memory
 * together (cp.async, one round trip), scores a warp a slot, then each
 * thread its dimension of P V. The own slots, q and the tables were all
 * written before the shared-level kernel's wait (which it passes before it
 * triggers this one), so that part runs before this kernel's wait, beside
 * the shared level, reading through L2 only; the ranges come after it, in
 * the same running state. E: the pool's elements. */
#define SHM_OWN 32
#define SHM_MR 16 /* ranges merged at a time: a lane's lse each */
static_assert(SHM_MR <= 32, "one lane per range");

/* Raises a running softmax state (out = acc / den relative to max mx) to
 * the maximum of mx and m, rescaling den and acc. */
__device__ __forceinline__ void shm_raise(float m, float &mx, float &den, float &acc) {
    float mn = fmaxf(mx, m), corr = mx == -INFINITY ? 0.0f : expf(mx - mn);
    den *= corr, acc *= corr, mx = mn;
}

template <int HD, typename E>
__global__ void __launch_bounds__(HD) shm_merge_kernel(shm_args a) {
    constexpr int NW = HD / 32, CH = HD * (int)sizeof(E) / 16; /* 16-byte pieces a row */
    __shared__ __align__(16) E ks[SHM_OWN * HD], vs[SHM_OWN * HD];
    __shared__ float sc[SHM_OWN];
    const size_t w = blockIdx.x, plane = (size_t)a.n_rows * a.n_heads;
    const int c = threadIdx.x, lane = c & 31, warp = c >> 5;
    size_t i = w / a.n_heads, h = w % a.n_heads, rq = (size_t)a.rows[i];
    size_t row = rq * a.n_heads + h;
    /* running state relative to mx: out = acc / den, lse = mx + log(den) */
    float mx = -INFINITY, den = 0.0f, acc = 0.0f;
    if (a.own_info) {
        const int n_own = a.own_info[2 * rq + 1], kvh = (int)h / a.group, bs = a.block_size;
        const int32_t *tab = a.own_tables + a.own_info[2 * rq];
        float qv[NW];
#pragma unroll
        for (int k = 0; k < NW; k++) qv[k] = __ldcg(a.q + row * HD + lane + 32 * k) * a.scale;
        for (int t0 = 0; t0 < n_own; t0 += SHM_OWN) {
            const int nt = min(SHM_OWN, n_own - t0);
            for (int p = c; p < nt * CH; p += HD) { /* slot p / CH, piece p % CH */
                int s = t0 + p / CH, e = (p % CH) * (16 / (int)sizeof(E));
                size_t off = (((size_t)tab[s / bs] * a.n_kv_heads + kvh) * bs + (size_t)(s % bs)) * HD + e;
                shm_cp16((float *)(ks + (p / CH) * HD + e), (const float *)((const E *)a.k + off), true);
                shm_cp16((float *)(vs + (p / CH) * HD + e), (const float *)((const E *)a.v + off), true);
            }
            ts_cp_commit();
            ts_cp_wait<0>();
            __syncthreads();
            for (int t = warp; t < nt; t += NW) { /* scores: a warp a slot */
                float d = 0.0f;
#pragma unroll
                for (int k = 0; k < NW; k++) d = fmaf(qv[k], ts_kvf(ks[t * HD + lane + 32 * k]), d);
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
                if (lane == 0) sc[t] = d;
            }
            __syncthreads();
            float cm = -INFINITY;
            for (int t = 0; t < nt; t++) cm = fmaxf(cm, sc[t]);
            shm_raise(cm, mx, den, acc);
            for (int t = 0; t < nt; t++) {
                float p = expf(sc[t] - mx);
                den += p, acc = fmaf(p, ts_kvf(vs[t * HD + c]), acc);
            }
            __syncthreads(); /* ks, vs, sc reused by the next chunk */
        }
    }
    ts_pdl_wait();
    ts_pdl_trigger();
    /* the ranges, SHM_MR at a time: lane r loads range r's lse, every
     * thread loads its dimension of the SHM_MR partials at once (none waits
     * on another), then the weights go round by shuffles */
    const float *po = a.p_o + w * HD + c;
    for (int r0 = 0; r0 < a.ranges; r0 += SHM_MR) {
        const int nr = min(SHM_MR, a.ranges - r0);
        float l = lane < nr ? a.p_lse[(size_t)(r0 + lane) * plane + w] : -INFINITY, v[SHM_MR];
#pragma unroll
        for (int u = 0; u < SHM_MR; u++) v[u] = u < nr ? po[(size_t)(r0 + u) * plane * HD] : 0.0f;
        float m = l;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        shm_raise(m, mx, den, acc);
        float e = l == -INFINITY ? 0.0f : expf(l - mx), es = e;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) es += __shfl_xor_sync(0xffffffffu, es, off);
        den += es;
#pragma unroll
        for (int u = 0; u < SHM_MR; u++) acc = fmaf(__shfl_sync(0xffffffffu, e, u), v[u], acc);
    }
    float *out = a.out + row * HD;
    if (mx == -INFINITY) { /* nothing seen: the merge's neutral state */
        out[c] = 0.0f;
        if (c == 0) a.lse[row] = -INFINITY;
        return;
    }
    out[c] = acc / den;
    if (c == 0) a.lse[row] = mx + logf(den);
}

bool ts_cuda_shm_init(ts_cuda *c) {
    return TS_CU(c, cudaFuncSetAttribute(shm_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)(shm_layout<64>::floats * sizeof(float)))) &&
           TS_CU(c, cudaFuncSetAttribute(shm_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)(shm_layout<128>::floats * sizeof(float)))) &&
           ts_cuda_shm16_init(c);
}

template <int HD, typename E>
static void shm_launch(ts_cuda *c, const ts_attn_shared *at, int ranges, int per, int mt, bool own) {
    shm_args a = {};
    a.q = at->q, a.rows = at->rows, a.blocks = at->blocks, a.k = at->k, a.v = at->v;
    a.n_rows = at->n_rows, a.n_kv = at->n_kv > 0 ? at->n_kv : 0, a.n_heads = at->n_heads;
    a.n_kv_heads = at->n_kv_heads, a.block_size = at->block_size;
    a.group = at->n_heads / at->n_kv_heads, a.per = per, a.scale = at->scale;
    a.out = at->out, a.lse = at->lse, a.ranges = ranges;
    if (own) a.own_tables = at->own_tables, a.own_info = at->own_info;
    size_t plane = (size_t)at->n_rows * at->n_heads;
    float *part = (float *)ts_cuda_scratch_get(c, &c->part, (size_t)ranges * plane * (HD + 1) * 4);
    if (!part) return; /* the sticky error says why */
    a.p_o = part, a.p_lse = part + (size_t)ranges * plane * HD;
    dim3 grid((unsigned)mt, (unsigned)at->n_kv_heads, (unsigned)ranges);
    if (at->kv_dtype == TS_DT_F32)
        ts_cuda_launch(c, "shm_kernel", shm_kernel<HD>, grid, dim3(SHM_WARPS * 32),
                       shm_layout<HD>::floats * sizeof(float), a);
    else
        ts_cuda_shm16_launch(c, a, at->kv_dtype, HD, grid);
    ts_cuda_launch(c, "shm_merge_kernel", shm_merge_kernel<HD, E>, dim3((unsigned)plane), dim3(HD),
                   0, a);
}

/* Plans and launches the shared level (own: with each row's own slots, for
 * attention_cascade); false, queueing nothing, for shapes it does not take. */
static bool shm_run(ts_cuda *c, const ts_attn_shared *at, bool own) {
    if (!c->cascade_mma || !ts_kv_dtype_ok(at->kv_dtype)) return false;
    int hd = at->head_dim;
    if ((hd != 64 && hd != 128) || at->n_kv_heads <= 0 || at->n_heads % at->n_kv_heads ||
        at->block_size <= 0 || at->n_kv_heads > 65535 || (long)at->n_rows * at->n_heads > INT_MAX)
        return false;
    long M = (long)at->n_rows * (at->n_heads / at->n_kv_heads);
    long mt = (M + SHM_ROWS - 1) / SHM_ROWS;
    int n_kv = at->n_kv > 0 ? at->n_kv : 0;
    int keys = at->kv_dtype == TS_DT_F32 ? SHM_KEYS : SHM16_KEYS; /* a tile */
    long tiles = (n_kv + keys - 1) / keys;
    if (mt > 65535 || tiles > 65535) return false;
    /* prefix ranges: about two CTAs an SM in all, whole tiles each */
    long ctas = mt * at->n_kv_heads, want = 2L * (c->n_sm > 0 ? c->n_sm : 132);
    long ranges = (want + ctas - 1) / ctas;
    if (ranges > tiles) ranges = tiles;
    if (ranges < 1) ranges = 1;
    long per_tiles = (tiles + ranges - 1) / ranges;
    ranges = tiles ? (tiles + per_tiles - 1) / per_tiles : 1;
    int per = (int)(per_tiles * keys);
    TS_KV_SWITCH(at->kv_dtype, E, if (hd == 64) shm_launch<64, E>(c, at, (int)ranges, per, (int)mt, own);
                 else shm_launch<128, E>(c, at, (int)ranges, per, (int)mt, own));
    return true;
}

bool ts_cuda_attn_shared_mma(ts_cuda *c, const ts_attn_shared *at) { return shm_run(c, at, false); }

bool ts_cuda_attention_cascade(void *ctx, const ts_attn_shared *at) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || !at->own_tables || !at->own_info || at->n_rows < 0) return false;
    return at->n_rows == 0 || shm_run(c, at, true);
}
