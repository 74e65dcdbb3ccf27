/* Stores new K/V rows [n][n_kv_heads * head_dim] into the paged pool
 * [n_blocks][n_kv_heads][block_size][head_dim] at slots slot[n], as elements
 * of the pool's dtype (kv_elem.cuh). One block per token; threads copy
 * consecutive elements of each head. */
#include "ops/cuda/cuda_internal.cuh"
#include "ops/cuda/kv_elem.cuh"

template <typename E>
__global__ void kv_write_kernel(E *k_pool, E *v_pool, const float *k, const float *v,
                                const int32_t *slot, int n_kv_heads, int head_dim,
                                int block_size) {
    int i = blockIdx.x;
    int s = slot[i];
    size_t b = (size_t)(s / block_size), r = (size_t)(s % block_size);
    int row = n_kv_heads * head_dim;
    for (int e = threadIdx.x; e < row; e += blockDim.x) {
        int h = e / head_dim, c = e % head_dim;
        size_t dst = ((b * (size_t)n_kv_heads + (size_t)h) * (size_t)block_size + r) *
                         (size_t)head_dim + (size_t)c;
        size_t src = (size_t)i * (size_t)row + (size_t)e;
        k_pool[dst] = ts_kv_cvt<E>(k[src]);
        v_pool[dst] = ts_kv_cvt<E>(v[src]);
    }
}

void ts_cuda_kv_write(void *ctx, void *k_pool, void *v_pool, ts_dtype kv_dtype, const float *k,
                      const float *v, const int32_t *slot, int n, int n_kv_heads, int head_dim,
                      int block_size) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (!ts_kv_dtype_ok(kv_dtype) || n_kv_heads <= 0 || head_dim <= 0 || block_size <= 0) {
        TS_BAD(c, "kv_write: KV dtype (f32, f16, bf16) or shape");
        return;
    }
    TS_KV_SWITCH(kv_dtype, E,
                 kv_write_kernel<E><<<n, 256, 0, c->stream>>>((E *)k_pool, (E *)v_pool, k, v, slot,
                                                             n_kv_heads, head_dim, block_size));
    TS_LAUNCHED(c, "kv_write_kernel");
}
