/* GPU timing table (run by tests/gpu/run.sh after the tests):
 * - decode attention, batch 64 sharing a 4096-token prefix (Qwen3-0.6B
 *   attention shape: 16 q heads, 8 KV heads, head_dim 128, f32 KV, block 16),
 *   each sequence with 32 tokens of its own: the flat paged kernel over all
 *   4128 slots vs cascade (attention_shared over the prefix + attention from
 *   kv_start + merge_rows); the two results are compared too;
 * - bf16 GEMM TFLOP/s through the matmul op (bf16 weights, TS_PREC_BF16 and
 *   TS_PREC_F32 activations);
 * - n = 1 GEMV GB/s (bf16 weights streamed once);
 * - a device-to-device copy as the bandwidth ceiling.
 * Times are medians over repeated runs after a warm-up, taken with events. */
#include "gpu_util.h"

static const ts_ops *ops;

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef void (*bench_fn)(void *arg);

/* Median milliseconds of `reps` timed runs of fn (each timed alone). */
static float time_ms(bench_fn fn, void *arg, int reps) {
    for (int i = 0; i < 3; i++) fn(arg);
    float t[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        ts_cuda_event *a = ts_cuda_event_record(g_cu);
        fn(arg);
        ts_cuda_event *b = ts_cuda_event_record(g_cu);
        t[i] = ts_cuda_event_ms(g_cu, a, b);
        ts_cuda_event_free(a), ts_cuda_event_free(b);
    }
    if (ts_cuda_last_error(g_cu)) die_cuda("timed run");
    qsort(t, (size_t)reps, sizeof t[0], cmpf);
    return t[reps / 2];
}

/* ---- cascade vs flat ---- */

enum { B = 64, P = 4096, OWN = 32, NH = 16, NKV = 8, HD = 128, BS = 16 };

typedef struct casc {
    ts_attn flat, suffix;
    ts_attn_shared shared;
    ts_attn_seq seqs[B], sseqs[B];
    float *o2, *l2; /* suffix level outputs */
    int32_t *rows_d;
} casc;

static void run_flat(void *p) { ops->attention(ops->ctx, &((casc *)p)->flat); }
static void run_shared(void *p) { ops->attention_shared(ops->ctx, &((casc *)p)->shared); }
static void run_cascade(void *p) {
    casc *c = p;
    ops->attention_shared(ops->ctx, &c->shared);
    ops->attention(ops->ctx, &c->suffix);
    ts_cuda_attn_merge_rows(g_cu, c->shared.out, c->shared.lse, c->o2, c->l2, c->rows_d, B, NH,
                            HD);
}

typedef struct mm {
    float *y, *x;
    int n;
    ts_wmat w;
    ts_prec prec;
} mm;
static void run_mm(void *p) {
    mm *m = p;
    ops->matmul(ops->ctx, m->y, m->x, m->n, &m->w, NULL, m->prec);
}

typedef struct cp {
    void *dst, *src;
    size_t bytes;
} cp;
static void run_copy(void *p) {
    cp *c = p;
    ts_cuda_copy(g_cu, c->dst, c->src, c->bytes);
}

static void *rand_dev_f32(size_t n, float scale) {
    float *h = xmalloc(n * 4);
    fill(h, n, scale);
    void *d = dup_dev(h, n * 4);
    free(h);
    return d;
}
static void *rand_dev_bf16(size_t n) {
    uint16_t *h = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = ts_f32_to_bf16(rnd() * 0.05f);
    void *d = dup_dev(h, n * 2);
    free(h);
    return d;
}

int main(void) {
    ts_err err;
    g_cu = ts_cuda_create(0, &err);
    if (!g_cu) {
        fprintf(stderr, "no CUDA backend: %s\n", err.msg);
        return 1;
    }
    ops = ts_cuda_ops(g_cu);
    printf("device: %s\n", ts_cuda_device_name(g_cu));

    /* KV pool: the prefix's blocks, then each sequence's own blocks */
    int pb = P / BS, ob = OWN / BS, nblocks = pb + B * ob;
    size_t pool = (size_t)nblocks * NKV * BS * HD;
    float *k_d = rand_dev_f32(pool, 1.0f), *v_d = rand_dev_f32(pool, 1.0f);
    int32_t *tab = xmalloc((size_t)(pb + ob) * 4);
    int32_t *ptab = xmalloc((size_t)pb * 4);
    for (int i = 0; i < pb; i++) ptab[i] = i;
    int32_t *ptab_d = dup_dev(ptab, (size_t)pb * 4);
    casc c;
    memset(&c, 0, sizeof c);
    for (int s = 0; s < B; s++) {
        for (int i = 0; i < pb; i++) tab[i] = i;
        for (int i = 0; i < ob; i++) tab[pb + i] = pb + s * ob + i;
        int32_t *tab_d = dup_dev(tab, (size_t)(pb + ob) * 4);
        c.seqs[s] = (ts_attn_seq){s, 1, P + OWN, tab_d, 0};
        c.sseqs[s] = (ts_attn_seq){s, 1, P + OWN, tab_d, P};
    }
    size_t nq = (size_t)B * NH * HD;
    float *q_d = rand_dev_f32(nq, 1.0f);
    float *o_flat = nan_dev(nq), *l_flat = nan_dev((size_t)B * NH);
    float *o1 = nan_dev(nq), *l1 = nan_dev((size_t)B * NH);
    c.o2 = nan_dev(nq), c.l2 = nan_dev((size_t)B * NH);
    int32_t rows[B];
    for (int i = 0; i < B; i++) rows[i] = i;
    c.rows_d = dup_dev(rows, sizeof rows);
    float scale = 1.0f / sqrtf((float)HD);
    c.flat = (ts_attn){o_flat, l_flat, q_d, k_d, v_d, TS_DT_F32, NH, NKV, HD, BS, scale, true,
                       B, c.seqs};
    c.suffix = (ts_attn){c.o2, c.l2, q_d, k_d, v_d, TS_DT_F32, NH, NKV, HD, BS, scale, true,
                         B, c.sseqs};
    c.shared = (ts_attn_shared){o1, l1, q_d, c.rows_d, B, k_d, v_d, TS_DT_F32, ptab_d, P, NH,
                                NKV, HD, BS, scale};
    float t_flat = time_ms(run_flat, &c, 30);
    float t_shared = time_ms(run_shared, &c, 30);
    float t_casc = time_ms(run_cascade, &c, 30); /* last: o1 holds the merged result */
    float *a = xmalloc(nq * 4), *b = xmalloc(nq * 4);
    get(a, o_flat, nq * 4);
    get(b, o1, nq * 4);
    double agree = rel_err(b, a, nq);
    double kv_bytes = (double)(P + OWN) * NKV * HD * 4 * 2; /* one sequence's K+V */
    double prefix_bytes = (double)P * NKV * HD * 4 * 2;

    /* GEMMs */
    int M = 4096, N = 4096, K = 4096;
    mm g = {nan_dev((size_t)M * N), rand_dev_f32((size_t)M * K, 1.0f), M,
            {rand_dev_bf16((size_t)N * K), TS_DT_BF16, N, K}, TS_PREC_BF16};
    float t_bf16 = time_ms(run_mm, &g, 20);
    g.prec = TS_PREC_F32;
    float t_f32x3 = time_ms(run_mm, &g, 10);
    double flops = 2.0 * M * N * K;

    /* GEMV n = 1: an lm_head-shaped (151936 x 1024) and a square 8192 matrix */
    mm v1 = {nan_dev(151936), rand_dev_f32(8192, 1.0f), 1,
             {rand_dev_bf16((size_t)151936 * 1024), TS_DT_BF16, 151936, 1024}, TS_PREC_F32};
    float t_v1 = time_ms(run_mm, &v1, 30);
    mm v2 = {v1.y, v1.x, 1, {rand_dev_bf16((size_t)8192 * 8192), TS_DT_BF16, 8192, 8192},
             TS_PREC_F32};
    float t_v2 = time_ms(run_mm, &v2, 30);
    mm v3 = {nan_dev((size_t)8 * 8192), rand_dev_f32((size_t)8 * 8192, 1.0f), 8, v2.w,
             TS_PREC_F32};
    float t_v3 = time_ms(run_mm, &v3, 30);

    size_t cb = (size_t)1 << 30;
    cp cpy = {ts_cuda_alloc(g_cu, cb), ts_cuda_alloc(g_cu, cb), cb};
    if (!cpy.dst || !cpy.src) die_cuda("copy buffers");
    ts_cuda_memset(g_cu, cpy.src, 1, cb);
    float t_cp = time_ms(run_copy, &cpy, 10);
    if (ts_cuda_sync(g_cu, &err) != TS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    double bw_cp = 2.0 * cb / (t_cp * 1e-3) / 1e9;
    printf("\n%-58s %12s %s\n", "benchmark", "time", "rate");
    printf("%-58s %9.1f us %.0f GB/s (read + write)\n", "device-to-device copy 1 GiB",
           t_cp * 1e3, bw_cp);
    printf("%-58s %9.1f us %.0f GB/s of KV if each sequence read its own\n",
           "decode attn B=64, prefix 4096 + 32 own: flat paged", t_flat * 1e3,
           B * kv_bytes / (t_flat * 1e-3) / 1e9);
    printf("%-58s %9.1f us (prefix %.0f MB read once: floor %.1f us)\n",
           "decode attn B=64, prefix 4096 + 32 own: cascade", t_casc * 1e3, prefix_bytes / 1e6,
           prefix_bytes / (bw_cp * 1e9 / 2) * 1e6);
    printf("%-58s %9.1f us\n", "  of which the shared level (attention_shared)", t_shared * 1e3);
    printf("%-58s %9.2fx (outputs agree to rel %.2g)\n", "cascade speed-up over flat",
           t_flat / t_casc, agree);
    printf("%-58s %9.1f us %.1f TFLOP/s\n", "matmul 4096^3 bf16 W, TS_PREC_BF16 (cuBLAS)",
           t_bf16 * 1e3, flops / (t_bf16 * 1e-3) / 1e12);
    printf("%-58s %9.1f us %.1f TFLOP/s (useful)\n",
           "matmul 4096^3 bf16 W, TS_PREC_F32 (3 bf16 parts)", t_f32x3 * 1e3,
           flops / (t_f32x3 * 1e-3) / 1e12);
    printf("%-58s %9.1f us %.0f GB/s\n", "GEMV n=1 bf16 151936x1024 (lm_head)", t_v1 * 1e3,
           151936.0 * 1024 * 2 / (t_v1 * 1e-3) / 1e9);
    printf("%-58s %9.1f us %.0f GB/s\n", "GEMV n=1 bf16 8192x8192", t_v2 * 1e3,
           8192.0 * 8192 * 2 / (t_v2 * 1e-3) / 1e9);
    printf("%-58s %9.1f us %.0f GB/s\n", "GEMV n=8 bf16 8192x8192", t_v3 * 1e3,
           8192.0 * 8192 * 2 / (t_v3 * 1e-3) / 1e9);
    ts_cuda_destroy(g_cu);
    free(a), free(b), free(tab), free(ptab);
    return agree < 1e-5 ? 0 : 1;
}
