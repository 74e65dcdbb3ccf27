/* Warp-level pieces of decode attention over paged KV, shared by
 * attention_decode (attn_decode.cu) and the persistent decode kernel
 * (decode_layers.cu): one query row, the G query heads of one KV head. */
#ifndef TS_OPS_CUDA_ATTN_WARP_CUH
#define TS_OPS_CUDA_ATTN_WARP_CUH

#include <math.h>
#include <stdint.h>

#include "ops/cuda/kv_elem.cuh"

/* Online softmax of one warp over the slots t0 .. t0 + U - 1 for t0 = lo +
 * first, lo + first + step, ... below hi, U slots' K and V loaded before any
 * is used. Lane holds dims [lane D, lane D + D) of head_dim = 32 D; qv are
 * the g (<= MG) query heads, pre-scaled; (o, m, l) the running state. Pools
 * [n_blocks][n_kv][bs][hd], slot t in block tab[t / bs - blk0] (blk0: the
 * first block tab holds; 0 for a whole table); elements E (kv_elem.cuh). */
template <int D, int MG, int U, typename E>
__device__ __forceinline__ void ts_attend_warp(const float (&qv)[MG][D], float (&o)[MG][D],
                                               float (&m)[MG], float (&l)[MG], int g,
                                               const E *kp, const E *vp,
                                               const int32_t *tab, int blk0, int n_kv, int kvh,
                                               int bs, int lo, int hi, int first, int step,
                                               int lane) {
    const int hd = 32 * D;
    for (int t0 = lo + first; t0 < hi; t0 += step) {
        float kv[U][D], vv[U][D];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int t = t0 + u < hi ? t0 + u : t0;
            size_t base = (((size_t)tab[t / bs - blk0] * n_kv + kvh) * bs + (size_t)(t % bs)) * hd +
                          (size_t)lane * D;
            if (D % 4 == 0) { /* vector loads: base is a multiple of 4 elements */
#pragma unroll
                for (int i = 0; i < D; i += 4) {
                    float4 k4 = ts_kv_ld4(kp + base + i), v4 = ts_kv_ld4(vp + base + i);
                    kv[u][i] = k4.x, kv[u][i + 1] = k4.y, kv[u][i + 2] = k4.z, kv[u][i + 3] = k4.w;
                    vv[u][i] = v4.x, vv[u][i + 1] = v4.y, vv[u][i + 2] = v4.z, vv[u][i + 3] = v4.w;
                }
            } else {
#pragma unroll
                for (int i = 0; i < D; i++) kv[u][i] = ts_kvf(kp[base + i]), vv[u][i] = ts_kvf(vp[base + i]);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (t0 + u >= hi) break;
#pragma unroll
            for (int h = 0; h < MG; h++) {
                if (h >= g) break;
                float d = 0.0f;
#pragma unroll
                for (int i = 0; i < D; i++) d = fmaf(qv[h][i], kv[u][i], d);
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
                float mn = fmaxf(m[h], d), corr = expf(m[h] - mn), p = expf(d - mn);
                l[h] = l[h] * corr + p;
#pragma unroll
                for (int i = 0; i < D; i++) o[h][i] = fmaf(p, vv[u][i], o[h][i] * corr);
                m[h] = mn;
            }
        }
    }
}

/* Combines NW warps' states of head h into one piece, one warp: warp w's
 * m and l at m_s[w * ms + h], l_s[...], its o at o_s[(w * ms + h) * hd].
 * Writes the piece's lse to *pl and o to po[hd]; no keys gives -inf and 0. */
template <int NW>
__device__ __forceinline__ void ts_combine_warps(const float *m_s, const float *l_s,
                                                 const float *o_s, int ms, int h, int hd,
                                                 float *pl, float *po, int lane) {
    float mx = -INFINITY;
    for (int w = 0; w < NW; w++) mx = fmaxf(mx, m_s[w * ms + h]);
    if (mx == -INFINITY) { /* empty piece: weight 0 in the merge, o = 0 */
        if (lane == 0) *pl = -INFINITY;
        for (int c = lane; c < hd; c += 32) po[c] = 0.0f;
        return;
    }
    float den = 0.0f, wgt[NW];
#pragma unroll
    for (int w = 0; w < NW; w++) {
        wgt[w] = m_s[w * ms + h] == -INFINITY ? 0.0f : expf(m_s[w * ms + h] - mx);
        den += l_s[w * ms + h] * wgt[w];
    }
    for (int c = lane; c < hd; c += 32) {
        float acc = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) acc += o_s[(size_t)(w * ms + h) * hd + c] * wgt[w];
        po[c] = acc / den;
    }
    if (lane == 0) *pl = mx + logf(den);
}

#endif
