/* Log-sum-exp merge of the partial attention states of one head, one warp:
 * shared by attention_decode (attn_decode.cu) and the persistent decode
 * kernel (decode_layers.cu). */
#ifndef TS_OPS_CUDA_MERGE_PIECES_CUH
#define TS_OPS_CUDA_MERGE_PIECES_CUH

#include <math.h>

/* Merges n <= 32 pieces into out[hd] (hd a multiple of 4, out 16-byte
 * aligned) and, when lse_out is not NULL, *lse_out: piece i has lse[i]
 * (-inf: empty) and o[i * hd .. + hd) (written even when empty, as 0). All
 * pieces empty gives out = 0, lse = -inf. The pieces were written by other
 * blocks, so loads go through L2 (__ldcg); lane i holds piece i's weight,
 * then each lane sums four dims over the pieces with all loads in flight. */
__device__ __forceinline__ void ts_merge_pieces_warp(const float *lse, const float *o, int n,
                                                     int hd, float *out, float *lse_out,
                                                     int lane) {
    float l = lane < n ? __ldcg(lse + lane) : -INFINITY, mx = l;
    for (int s = 16; s > 0; s >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, s));
    if (mx == -INFINITY) {
        for (int c = lane; c < hd; c += 32) out[c] = 0.0f;
        if (lse_out && lane == 0) *lse_out = -INFINITY;
        return;
    }
    float e = l == -INFINITY ? 0.0f : expf(l - mx), den = e;
    for (int s = 16; s > 0; s >>= 1) den += __shfl_xor_sync(0xffffffffu, den, s);
    if (lse_out && lane == 0) *lse_out = mx + logf(den);
    float wt = e / den, wts[32];
#pragma unroll
    for (int i = 0; i < 32; i++) wts[i] = __shfl_sync(0xffffffffu, wt, i);
    for (int c = lane * 4; c < hd; c += 128) {
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int i = 0; i < 32; i++) { /* predicated, not a loop exit: all loads in flight */
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i < n) v = __ldcg((const float4 *)(o + (size_t)i * hd + c));
            acc.x = fmaf(wts[i], v.x, acc.x), acc.y = fmaf(wts[i], v.y, acc.y);
            acc.z = fmaf(wts[i], v.z, acc.z), acc.w = fmaf(wts[i], v.w, acc.w);
        }
        *(float4 *)(out + c) = acc;
    }
}

#endif
