/* The step between the q/k/v products and attention, fused: per-head
 * RMSNorm of q and k (Qwen3), RoPE on both, and the K/V write into the paged
 * pool. One warp per (token, head) over the n_heads q heads then the
 * n_kv_heads k heads; a k head's warp also stores that head's v row.
 * Arithmetic as rmsnorm_kernel and rope_kernel (f32, the angle one f32
 * product, full-precision sincosf). */
#include "ops/cuda/cuda_internal.cuh"

#define QRK_WARPS 4
#define QRK_MAXP 8 /* pairs per lane: head_dim <= 512 */

__global__ void __launch_bounds__(QRK_WARPS * 32)
    qk_rope_kv_kernel(float *q, float *k, const float *v, const float *q_norm,
                      const float *k_norm, float eps, const int32_t *pos, const float *inv_freq,
                      float *k_pool, float *v_pool, const int32_t *slot, int n, int n_heads,
                      int n_kv_heads, int hd, int block_size) {
    ts_pdl_wait();
    ts_pdl_trigger();
    int lane = threadIdx.x & 31;
    size_t w = (size_t)blockIdx.x * QRK_WARPS + (threadIdx.x >> 5);
    int heads = n_heads + n_kv_heads;
    if (w >= (size_t)n * heads) return;
    int i = (int)(w / heads), h = (int)(w % heads);
    bool is_q = h < n_heads;
    int kh = h - n_heads;
    float *x = is_q ? q + ((size_t)i * n_heads + h) * hd : k + ((size_t)i * n_kv_heads + kh) * hd;
    const float *g = is_q ? q_norm : k_norm;
    int half = hd / 2;
    float a[QRK_MAXP], b[QRK_MAXP];
    float ss = 0.0f;
#pragma unroll
    for (int p = 0; p < QRK_MAXP; p++) {
        int j = lane + 32 * p;
        a[p] = b[p] = 0.0f;
        if (j < half) {
            a[p] = x[j], b[p] = x[j + half];
            ss = fmaf(a[p], a[p], ss);
            ss = fmaf(b[p], b[p], ss);
        }
    }
    if (g) {
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        float inv = 1.0f / sqrtf(ss / (float)hd + eps);
#pragma unroll
        for (int p = 0; p < QRK_MAXP; p++) {
            int j = lane + 32 * p;
            if (j < half) a[p] = a[p] * inv * g[j], b[p] = b[p] * inv * g[j + half];
        }
    }
    float ps = (float)pos[i];
    size_t dst = 0;
    if (!is_q) {
        int s = slot[i];
        size_t blk = (size_t)(s / block_size), r = (size_t)(s % block_size);
        dst = ((blk * (size_t)n_kv_heads + (size_t)kh) * (size_t)block_size + r) * (size_t)hd;
    }
#pragma unroll
    for (int p = 0; p < QRK_MAXP; p++) {
        int j = lane + 32 * p;
        if (j >= half) continue;
        float sn, cs;
        sincosf(__fmul_rn(ps, inv_freq[j]), &sn, &cs);
        float ra = __fsub_rn(__fmul_rn(a[p], cs), __fmul_rn(b[p], sn));
        float rb = __fadd_rn(__fmul_rn(b[p], cs), __fmul_rn(a[p], sn));
        x[j] = ra, x[j + half] = rb;
        if (!is_q) {
            const float *vr = v + ((size_t)i * n_kv_heads + kh) * hd;
            k_pool[dst + j] = ra, k_pool[dst + j + half] = rb;
            v_pool[dst + j] = vr[j], v_pool[dst + j + half] = vr[j + half];
        }
    }
}

void ts_cuda_qk_rope_kv(void *ctx, float *q, float *k, const float *v, const float *q_norm,
                        const float *k_norm, float eps, const int32_t *pos, const float *inv_freq,
                        float *k_pool, float *v_pool, const int32_t *slot, int n, int n_heads,
                        int n_kv_heads, int head_dim, int block_size) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (n_heads <= 0 || n_kv_heads <= 0 || head_dim < 2 || head_dim % 2 ||
        head_dim > 64 * QRK_MAXP || block_size <= 0 || (!q_norm) != (!k_norm)) {
        TS_BAD(c, "qk_rope_kv: shape");
        return;
    }
    size_t warps = (size_t)n * (size_t)(n_heads + n_kv_heads);
    ts_cuda_launch(c, "qk_rope_kv_kernel", qk_rope_kv_kernel, dim3(ts_cdiv(warps, QRK_WARPS)),
                   dim3(QRK_WARPS * 32), 0, q, k, v, q_norm, k_norm, eps, pos, inv_freq, k_pool,
                   v_pool, slot, n, n_heads, n_kv_heads, head_dim, block_size);
}
