/* The step between the q/k/v products and attention, fused: per-head
 * RMSNorm of q and k (Qwen3), RoPE on both, and the K/V write into the paged
 * pool. One warp per (token, head) over the n_heads q heads then the
 * n_kv_heads k heads; a k head's warp also stores that head's v row
 * (norm and rotation: norm_rope.cuh). */
#include "ops/cuda/cuda_internal.cuh"
#include "ops/cuda/kv_elem.cuh"
#include "ops/cuda/norm_rope.cuh"

#define QRK_WARPS 4
#define QRK_MAXP 8 /* pairs per lane: head_dim <= 512 */

template <typename E>
__global__ void __launch_bounds__(QRK_WARPS * 32)
    qk_rope_kv_kernel(float *q, float *k, const float *v, const float *q_norm,
                      const float *k_norm, float eps, const int32_t *pos, const float *inv_freq,
                      E *k_pool, E *v_pool, const int32_t *slot, int n, int n_heads,
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
#pragma unroll
    for (int p = 0; p < QRK_MAXP; p++) {
        int j = lane + 32 * p;
        a[p] = b[p] = 0.0f;
        if (j < half) a[p] = x[j], b[p] = x[j + half];
    }
    ts_norm_rope_warp(a, b, hd, g, eps, (float)pos[i], inv_freq, lane);
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
        x[j] = a[p], x[j + half] = b[p];
        if (!is_q) {
            const float *vr = v + ((size_t)i * n_kv_heads + kh) * hd;
            k_pool[dst + j] = ts_kv_cvt<E>(a[p]), k_pool[dst + j + half] = ts_kv_cvt<E>(b[p]);
            v_pool[dst + j] = ts_kv_cvt<E>(vr[j]), v_pool[dst + j + half] = ts_kv_cvt<E>(vr[j + half]);
        }
    }
}

void ts_cuda_qk_rope_kv(void *ctx, float *q, float *k, const float *v, const float *q_norm,
                        const float *k_norm, float eps, const int32_t *pos, const float *inv_freq,
                        void *k_pool, void *v_pool, ts_dtype kv_dtype, const int32_t *slot, int n,
                        int n_heads, int n_kv_heads, int head_dim, int block_size) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (n_heads <= 0 || n_kv_heads <= 0 || head_dim < 2 || head_dim % 2 ||
        head_dim > 64 * QRK_MAXP || block_size <= 0 || (!q_norm) != (!k_norm) ||
        !ts_kv_dtype_ok(kv_dtype)) {
        TS_BAD(c, "qk_rope_kv: shape or KV dtype");
        return;
    }
    size_t warps = (size_t)n * (size_t)(n_heads + n_kv_heads);
    TS_KV_SWITCH(kv_dtype, E,
                 ts_cuda_launch(c, "qk_rope_kv_kernel", qk_rope_kv_kernel<E>,
                                dim3(ts_cdiv(warps, QRK_WARPS)), dim3(QRK_WARPS * 32), 0, q, k, v,
                                q_norm, k_norm, eps, pos, inv_freq, (E *)k_pool, (E *)v_pool, slot,
                                n, n_heads, n_kv_heads, head_dim, block_size));
}
