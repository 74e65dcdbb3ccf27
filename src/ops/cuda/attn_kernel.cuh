/* The paged attention kernel shared by ts_cuda_attention (flat / causal
 * prefill / decode) and ts_cuda_attention_shared (cascade level).
 *
 * One thread block takes one work item for one KV head: up to ATT_M = 16
 * query vectors (query rows x the heads of that KV head's group) against one
 * range of KV slots. K and V are streamed through shared memory in chunks of
 * T slots, each chunk read once for all the block's query vectors (GQA-native),
 * with an online softmax in f32; K/V elements E are f32, f16 or bf16
 * (kv_elem.cuh), kept in their dtype in shared memory and widened where
 * read. Long ranges are split over several items
 * (flash-decoding); the partial (o, lse) states are then combined by
 * log-sum-exp in attn_combine_kernel. */
#ifndef TS_OPS_CUDA_ATTN_KERNEL_CUH
#define TS_OPS_CUDA_ATTN_KERNEL_CUH

#include <math.h>

#include "ops/cuda/cuda_internal.cuh"
#include "ops/cuda/kv_elem.cuh"

#define ATT_M 16
#define ATT_THREADS 256
#define ATT_NOCAUSAL (1 << 30)

typedef struct ts_attn_item {
    const int32_t *blocks; /* this sequence's (or prefix's) block table */
    int r0, nr;            /* list positions [r0, r0 + nr) of rows[] */
    int h0, nh;            /* heads [h0, h0 + nh) within the KV head's group */
    int lo, hi;            /* slots [lo, hi) of this item */
    int diag;              /* list entry r0 + k sees slots <= diag + k */
    int split;             /* which partial slice to write (when splitting) */
} ts_attn_item;

typedef struct ts_attn_args {
    const float *q;
    const void *k, *v;      /* the pool, elements E of the kernel */
    float *out, *lse;       /* final outputs by actual row (lse may be NULL) */
    float *p_out, *p_lse;   /* partials [S][n_list][n_heads](hd) or NULL when unsplit */
    const int32_t *rows;    /* [n_list] list position -> actual row */
    const ts_attn_item *items;
    int n_list, n_heads, n_kv_heads, head_dim, block_size, group;
    float scale;
} ts_attn_args;

/* Dynamic shared memory (floats) for head_dim hd and chunk T, f32 KV (an
 * upper bound for f16 / bf16, whose K/V stages take half of it). */
static inline size_t ts_attn_smem_floats(int hd, int T) {
    return (size_t)ATT_M * hd + 2 * ((size_t)T * (hd + 4) + (size_t)T * hd) +
           (size_t)ATT_M * T + 3 * ATT_M + ATT_M;
}

template <int T, int R, typename E>
__global__ void __launch_bounds__(ATT_THREADS) attn_kernel(ts_attn_args a) {
    extern __shared__ __align__(16) float sm[];
    constexpr int VE = 16 / sizeof(E); /* elements a 16-byte copy */
    const int hd = a.head_dim, tid = threadIdx.x, ks_str = hd + VE;
    const ts_attn_item it = a.items[blockIdx.x];
    const int kvh = blockIdx.y;
    const E *kpool = (const E *)a.k, *vpool = (const E *)a.v;
    float *q_s = sm;                          /* [M][hd] */
    E *k_s = (E *)(q_s + ATT_M * hd);         /* [2][T][hd + VE]: padded rows, no bank conflicts */
    E *v_s = k_s + 2 * T * ks_str;            /* [2][T][hd] */
    float *p_s = (float *)(v_s + 2 * T * hd); /* [M][T] */
    float *m_s = p_s + ATT_M * T, *l_s = m_s + ATT_M, *al_s = l_s + ATT_M;
    int *last_s = (int *)(al_s + ATT_M);
    const int m_used = it.nr * it.nh;
    const size_t qstride = (size_t)a.n_heads * (size_t)hd;

    for (int e = tid; e < ATT_M * hd; e += ATT_THREADS) {
        int m = e / hd, c = e % hd;
        float v = 0.0f;
        if (m < m_used) {
            int kk = m / it.nh, hh = m % it.nh;
            size_t row = (size_t)a.rows[it.r0 + kk];
            int head = kvh * a.group + it.h0 + hh;
            v = a.q[row * qstride + (size_t)head * hd + c];
        }
        q_s[e] = v;
    }
    if (tid < ATT_M) {
        int kk = tid / (it.nh > 0 ? it.nh : 1);
        long last = (long)it.diag + kk;
        if (last > it.hi - 1) last = it.hi - 1;
        last_s[tid] = tid < m_used ? (int)last : it.lo - 1;
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    long end = (long)it.diag + it.nr; /* one past the last slot any row sees */
    if (end > it.hi) end = it.hi;
    float o[R];
#pragma unroll
    for (int r = 0; r < R; r++) o[r] = 0.0f;
    __syncthreads();

    /* K, V chunks stream through two shared-memory stages with cp.async: the
     * next chunk is in flight while the current one is computed on. */
    const int hdv = hd / VE; /* 16-byte vectors a row */
    /* slot -> (block, row): shifts when block_size is a power of two */
    const int bs = a.block_size, bs_shift = (bs & (bs - 1)) == 0 ? __ffs(bs) - 1 : -1;
    auto load_one = [&](int t, int c, int c0, E *kd, E *vd) {
        int slot = c0 + t;
        E *kp = kd + t * ks_str + c, *vp = vd + t * hd + c;
        if (slot < end) {
            int bi = bs_shift >= 0 ? slot >> bs_shift : slot / bs;
            int row = bs_shift >= 0 ? slot & (bs - 1) : slot % bs;
            size_t b = (size_t)it.blocks[bi];
            size_t off = ((b * a.n_kv_heads + kvh) * bs + row) * (size_t)hd + c;
            unsigned ks = (unsigned)__cvta_generic_to_shared(kp);
            unsigned vs = (unsigned)__cvta_generic_to_shared(vp);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(ks), "l"(kpool + off));
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(vs), "l"(vpool + off));
        } else { /* past the range: zeros (masked anyway, but never garbage) */
            *(float4 *)kp = make_float4(0.f, 0.f, 0.f, 0.f);
            *(float4 *)vp = make_float4(0.f, 0.f, 0.f, 0.f);
        }
    };
    /* when hd / VE divides the block, each thread keeps one column c */
    const bool fixed_c = (ATT_THREADS % hdv) == 0;
    const int c_f = (tid % hdv) * VE, t_f = tid / hdv, t_step = ATT_THREADS / hdv;
    auto issue = [&](int c0, int stage) {
        E *kd = k_s + stage * T * ks_str, *vd = v_s + stage * T * hd;
        if (fixed_c) {
            for (int t = t_f; t < T; t += t_step) load_one(t, c_f, c0, kd, vd);
        } else {
            for (int e = tid; e < T * hdv; e += ATT_THREADS)
                load_one(e / hdv, (e % hdv) * VE, c0, kd, vd);
        }
        ts_cp_commit();
    };
    if (it.lo < end) issue(it.lo, 0);
    int stage = 0;
    for (int c0 = it.lo; c0 < end; c0 += T, stage ^= 1) {
        if (c0 + T < end) {
            issue(c0 + T, stage ^ 1);
            ts_cp_wait<1>();
        } else {
            ts_cp_wait<0>();
        }
        __syncthreads();
        const E *kst = k_s + stage * T * ks_str, *vst = v_s + stage * T * hd;
        /* scores: thread -> slot t, query vectors m = mg + j * (256 / T) */
        {
            constexpr int G = ATT_THREADS / T, MJ = ATT_M / G;
            int t = tid % T, mg = tid / T;
            float s[MJ];
#pragma unroll
            for (int j = 0; j < MJ; j++) s[j] = 0.0f;
            const E *kr = kst + t * ks_str;
            for (int c = 0; c < hd; c += 4) {
                float4 kc = ts_kv_ld4(kr + c);
#pragma unroll
                for (int j = 0; j < MJ; j++) {
                    if (mg + j * G < m_used) { /* uniform per warp for T >= 32 */
                        float4 qv = *(const float4 *)(q_s + (mg + j * G) * hd + c);
                        s[j] = fmaf(qv.x, kc.x, s[j]);
                        s[j] = fmaf(qv.y, kc.y, s[j]);
                        s[j] = fmaf(qv.z, kc.z, s[j]);
                        s[j] = fmaf(qv.w, kc.w, s[j]);
                    }
                }
            }
            int slot = c0 + t;
#pragma unroll
            for (int j = 0; j < MJ; j++) {
                int m = mg + j * G;
                p_s[m * T + t] = slot <= last_s[m] ? s[j] * a.scale : -INFINITY;
            }
        }
        __syncthreads();
        /* online softmax: warp w owns query vectors w and w + 8 */
        {
            int w = tid >> 5, lane = tid & 31;
#pragma unroll
            for (int mm = 0; mm < 2; mm++) {
                int m = w + mm * 8;
                if (m >= m_used) continue;
                float mx = -INFINITY;
                for (int t = lane; t < T; t += 32) mx = fmaxf(mx, p_s[m * T + t]);
                for (int sh = 16; sh > 0; sh >>= 1)
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, sh));
                float m_old = m_s[m], m_new = fmaxf(m_old, mx);
                float sum = 0.0f;
                for (int t = lane; t < T; t += 32) {
                    float sc = p_s[m * T + t];
                    float p = (m_new == -INFINITY || sc == -INFINITY) ? 0.0f : expf(sc - m_new);
                    p_s[m * T + t] = p;
                    sum += p;
                }
                for (int sh = 16; sh > 0; sh >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, sh);
                __syncwarp();
                if (lane == 0) {
                    float al = (m_new == -INFINITY) ? 1.0f : expf(m_old - m_new);
                    al_s[m] = al;
                    l_s[m] = l_s[m] * al + sum;
                    m_s[m] = m_new;
                }
            }
        }
        __syncthreads();
        /* o[m][c] = o * alpha[m] + sum_t p[m][t] v[t][c] */
        if ((ATT_THREADS % hd) == 0) {
            const int c = tid % hd, m0 = tid / hd, step = ATT_THREADS / hd;
            float acc[R];
#pragma unroll
            for (int r = 0; r < R; r++) acc[r] = 0.0f;
            for (int t = 0; t < T; t += 4) {
                float v0 = ts_kvf(vst[t * hd + c]), v1 = ts_kvf(vst[(t + 1) * hd + c]);
                float v2 = ts_kvf(vst[(t + 2) * hd + c]), v3 = ts_kvf(vst[(t + 3) * hd + c]);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    int m = m0 + r * step;
                    if (m < m_used) { /* uniform per warp */
                        float4 p = *(const float4 *)(p_s + m * T + t);
                        acc[r] = fmaf(p.x, v0, acc[r]);
                        acc[r] = fmaf(p.y, v1, acc[r]);
                        acc[r] = fmaf(p.z, v2, acc[r]);
                        acc[r] = fmaf(p.w, v3, acc[r]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++)
                if (m0 + r * step < m_used) o[r] = o[r] * al_s[m0 + r * step] + acc[r];
        } else {
#pragma unroll
            for (int r = 0; r < R; r++) {
                int e = tid + r * ATT_THREADS;
                if (e < m_used * hd) {
                    int m = e / hd, c = e % hd;
                    float acc = 0.0f;
                    for (int t = 0; t < T; t++) acc = fmaf(p_s[m * T + t], ts_kvf(vst[t * hd + c]), acc);
                    o[r] = o[r] * al_s[m] + acc;
                }
            }
        }
        __syncthreads();
    }

    /* write (o / l, lse) for the used query vectors */
#pragma unroll
    for (int r = 0; r < R; r++) {
        int m, c;
        if ((ATT_THREADS % hd) == 0) {
            c = tid % hd;
            m = tid / hd + r * (ATT_THREADS / hd);
        } else {
            int e = tid + r * ATT_THREADS;
            m = e / hd;
            c = e % hd;
        }
        if (m >= m_used) continue;
        int kk = m / it.nh, hh = m % it.nh, head = kvh * a.group + it.h0 + hh;
        float l = l_s[m];
        float val = l > 0.0f ? o[r] / l : 0.0f;
        if (a.p_out) {
            size_t pe = ((size_t)it.split * a.n_list + (size_t)(it.r0 + kk)) * a.n_heads + head;
            a.p_out[pe * hd + c] = val;
        } else {
            size_t row = (size_t)a.rows[it.r0 + kk];
            a.out[row * qstride + (size_t)head * hd + c] = val;
        }
    }
    if (tid < m_used) {
        int kk = tid / it.nh, hh = tid % it.nh, head = kvh * a.group + it.h0 + hh;
        float l = l_s[tid];
        float lse = l > 0.0f ? m_s[tid] + logf(l) : -INFINITY;
        if (a.p_out) {
            size_t pe = ((size_t)it.split * a.n_list + (size_t)(it.r0 + kk)) * a.n_heads + head;
            a.p_lse[pe] = lse;
        } else if (a.lse) {
            a.lse[(size_t)a.rows[it.r0 + kk] * a.n_heads + head] = lse;
        }
    }
}

#endif
