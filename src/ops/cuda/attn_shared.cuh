/* What cascade's two tensor-core shared-level kernels have in common
 * (attn_shared_mma.cu: f32 KV in 3xTF32; attn_shared_mma16.cu: f16 / bf16
 * KV): their arguments and the partial results they leave for the
 * log-sum-exp merge of the prefix ranges (shm_merge_kernel). */
#ifndef TS_OPS_CUDA_ATTN_SHARED_CUH
#define TS_OPS_CUDA_ATTN_SHARED_CUH

#include "ops/cuda/cuda_internal.cuh"

#define SHM_WARPS 4
#define SHM_ROWS 64 /* query rows a CTA: 16 a warp; row m is listed row m / group,
                       head m % group of the CTA's KV head */

typedef struct shm_args {
    const float *q;
    const int32_t *rows, *blocks;
    const void *k, *v;  /* the pool, f32 or 16-bit elements */
    int n_rows, n_kv, n_heads, n_kv_heads, block_size, group, per; /* per: keys a range */
    float scale;
    float *p_o, *p_lse; /* [range][n_rows * n_heads][hd], [range][n_rows * n_heads] */
    float *out, *lse;
    int ranges;
    const int32_t *own_tables, *own_info; /* attention_cascade: each row's own slots, or NULL */
} shm_args;

/* The 16-bit KV kernel (attn_shared_mma16.cu): grid (M tiles, KV heads,
 * ranges), SHM_WARPS warps; writes p_o and p_lse as the f32 one does. */
bool ts_cuda_shm16_init(ts_cuda *c);
void ts_cuda_shm16_launch(ts_cuda *c, const shm_args &a, ts_dtype dt, int hd, dim3 grid);
/* Keys a tile of the 16-bit kernel (ranges are whole tiles). */
#define SHM16_KEYS 64

#endif
