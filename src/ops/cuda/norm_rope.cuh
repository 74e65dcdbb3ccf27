/* Per-head RMSNorm and RoPE for one warp, shared by qk_rope_kv.cu and the
 * persistent decode kernel (decode_layers.cu). Arithmetic as rmsnorm_kernel
 * and rope_kernel: f32, the angle one f32 product, full-precision sincosf. */
#ifndef TS_OPS_CUDA_NORM_ROPE_CUH
#define TS_OPS_CUDA_NORM_ROPE_CUH

/* The warp's head x[hd] (hd even, hd <= 64 P): lane holds the rotate-half
 * pairs j = lane + 32 p (j < hd / 2) in a[p] = x[j], b[p] = x[j + hd/2].
 * ts_head_norm_warp normalises them by gain g[hd] (or its pairs ga, gb in
 * registers, laid out as a and b); ts_norm_rope_warp also
 * rotates them by the angle pos * inv_freq[j] (g NULL: no norm);
 * ts_rope_tab_warp rotates by precomputed cs[j], sn[j] (the same values:
 * sincosf of the same product). All 32 lanes must call them. */
template <int P>
__device__ __forceinline__ void ts_head_norm_warp(float (&a)[P], float (&b)[P], int hd,
                                                  const float (&ga)[P], const float (&gb)[P],
                                                  float eps, int lane) {
    const int half = hd / 2;
    float ss = 0.0f;
#pragma unroll
    for (int p = 0; p < P; p++)
        if (lane + 32 * p < half) ss = fmaf(b[p], b[p], fmaf(a[p], a[p], ss));
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    float inv = 1.0f / sqrtf(ss / (float)hd + eps);
#pragma unroll
    for (int p = 0; p < P; p++)
        if (lane + 32 * p < half) a[p] = a[p] * inv * ga[p], b[p] = b[p] * inv * gb[p];
}
/* the same with the gains g[hd] in memory */
template <int P>
__device__ __forceinline__ void ts_head_norm_warp(float (&a)[P], float (&b)[P], int hd,
                                                  const float *g, float eps, int lane) {
    float ga[P], gb[P];
#pragma unroll
    for (int p = 0; p < P; p++) {
        int j = lane + 32 * p;
        ga[p] = j < hd / 2 ? g[j] : 0.0f, gb[p] = j < hd / 2 ? g[j + hd / 2] : 0.0f;
    }
    ts_head_norm_warp(a, b, hd, ga, gb, eps, lane);
}
__device__ __forceinline__ void ts_rotate_pair(float &a, float &b, float sn, float cs) {
    float ra = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
    float rb = __fadd_rn(__fmul_rn(b, cs), __fmul_rn(a, sn));
    a = ra, b = rb;
}
template <int P>
__device__ __forceinline__ void ts_norm_rope_warp(float (&a)[P], float (&b)[P], int hd,
                                                  const float *g, float eps, float pos,
                                                  const float *inv_freq, int lane) {
    const int half = hd / 2;
    if (g) ts_head_norm_warp(a, b, hd, g, eps, lane);
#pragma unroll
    for (int p = 0; p < P; p++) {
        int j = lane + 32 * p;
        if (j >= half) continue;
        float sn, cs;
        sincosf(__fmul_rn(pos, inv_freq[j]), &sn, &cs);
        ts_rotate_pair(a[p], b[p], sn, cs);
    }
}
template <int P>
__device__ __forceinline__ void ts_rope_tab_warp(float (&a)[P], float (&b)[P], int hd,
                                                 const float *cs, const float *sn, int lane) {
#pragma unroll
    for (int p = 0; p < P; p++) {
        int j = lane + 32 * p;
        if (j < hd / 2) ts_rotate_pair(a[p], b[p], sn[j], cs[j]);
    }
}

#endif
