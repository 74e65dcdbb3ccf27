/* GPU timing table (run by tests/gpu/run.sh after the tests):
 * - decode attention, batch 64 sharing a 4096-token prefix (Qwen3-0.6B
 *   attention shape: 16 q heads, 8 KV heads, head_dim 128, block 16), each
 *   sequence with 32 tokens of its own, f32 and bf16 KV: the flat paged
 *   kernels over all 4128 slots vs cascade as a decode step runs it
 *   (bench_cascade); the results are compared too;
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

/* Median milliseconds a call of fn takes over `reps` timed samples of
 * `per` calls back to back (per = 1: each call alone; more: as a decode
 * step's kernels run, launch gaps hidden). */
static float time_calls(bench_fn fn, void *arg, int reps, int per) {
    for (int i = 0; i < 3; i++) fn(arg);
    float t[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        ts_cuda_event *a = ts_cuda_event_record(g_cu);
        for (int j = 0; j < per; j++) fn(arg);
        ts_cuda_event *b = ts_cuda_event_record(g_cu);
        t[i] = ts_cuda_event_ms(g_cu, a, b) / (float)per;
        ts_cuda_event_free(a), ts_cuda_event_free(b);
    }
    if (ts_cuda_last_error(g_cu)) die_cuda("timed run");
    qsort(t, (size_t)reps, sizeof t[0], cmpf);
    return t[reps / 2];
}
static float time_ms(bench_fn fn, void *arg, int reps) { return time_calls(fn, arg, reps, 1); }

/* ---- cascade vs flat ---- */

enum { B = 64, P = 4096, OWN = 32, NH = 16, NKV = 8, HD = 128, BS = 16 };

/* One KV dtype's cascade case: the flat kernels (the generic attention and
 * attention_decode, which decode steps use) over all P + OWN slots of each
 * sequence, and cascade as a decode step runs it: attention_shared over the
 * prefix, attention_decode over each sequence's own slots (with lse), and
 * merge_rows. */
typedef struct casc {
    ts_dtype dt;
    ts_attn flat;
    ts_attn_shared shared, fused; /* fused: attention_cascade's, own slots included */
    ts_attn_seq seqs[B];
    void *k, *v;
    float *o_dec, *part, *o2, *l2; /* attention_decode outputs (flat), own level's */
    int32_t *tab_d, *info_d, *own_d, *rows_d;
} casc;

static void run_flat(void *p) { ops->attention(ops->ctx, &((casc *)p)->flat); }
static void run_flat_dec(void *p) {
    casc *c = p;
    ops->attention_decode(ops->ctx, c->o_dec, NULL, c->part, c->flat.q, c->k, c->v, c->dt, c->tab_d,
                          c->info_d, B, NH, NKV, HD, BS, c->flat.scale);
}
static void run_shared(void *p) { ops->attention_shared(ops->ctx, &((casc *)p)->shared); }
static void run_fused(void *p) { ops->attention_cascade(ops->ctx, &((casc *)p)->fused); }
static void run_cascade(void *p) {
    casc *c = p;
    ops->attention_shared(ops->ctx, &c->shared);
    ops->attention_decode(ops->ctx, c->o2, c->l2, c->part, c->flat.q, c->k, c->v, c->dt, c->tab_d,
                          c->own_d, B, NH, NKV, HD, BS, c->flat.scale);
    ts_cuda_attn_merge_rows(g_cu, c->shared.out, c->shared.lse, c->o2, c->l2, c->rows_d, B, NH,
                            HD);
}

/* Times one dtype's case and prints its rows; returns the outputs'
 * agreement (cascade vs flat), or +inf when over its bound. */
static double bench_cascade(ts_dtype dt, const float *q_d, double bw) {
    casc c;
    memset(&c, 0, sizeof c);
    c.dt = dt;
    /* KV pool: the prefix's blocks, then each sequence's own blocks */
    int pb = P / BS, ob = OWN / BS, nblocks = pb + B * ob;
    size_t pool = (size_t)nblocks * NKV * BS * HD;
    c.k = kv_dev_rand(pool, dt, 1.0f, NULL), c.v = kv_dev_rand(pool, dt, 1.0f, NULL);
    int32_t *tab = xmalloc((size_t)B * (pb + ob) * 4), info[2 * B], own[2 * B], rows[B];
    for (int s = 0; s < B; s++) {
        int32_t *t = tab + (size_t)s * (pb + ob);
        for (int i = 0; i < pb; i++) t[i] = i;
        for (int i = 0; i < ob; i++) t[pb + i] = pb + s * ob + i;
        info[2 * s] = s * (pb + ob), info[2 * s + 1] = P + OWN;
        own[2 * s] = s * (pb + ob) + pb, own[2 * s + 1] = OWN;
        rows[s] = s;
    }
    c.tab_d = dup_dev(tab, (size_t)B * (pb + ob) * 4);
    c.info_d = dup_dev(info, sizeof info), c.own_d = dup_dev(own, sizeof own);
    c.rows_d = dup_dev(rows, sizeof rows);
    for (int s = 0; s < B; s++)
        c.seqs[s] = (ts_attn_seq){s, 1, P + OWN, c.tab_d + (size_t)s * (pb + ob), 0};
    size_t nq = (size_t)B * NH * HD, np = TS_ATTN_DECODE_PART(B, NH, HD);
    float *o_flat = nan_dev(nq), *l_flat = nan_dev((size_t)B * NH);
    float *o1 = nan_dev(nq), *l1 = nan_dev((size_t)B * NH);
    c.o_dec = nan_dev(nq), c.o2 = nan_dev(nq), c.l2 = nan_dev((size_t)B * NH);
    c.part = nan_dev(np);
    ts_cuda_memset(g_cu, c.part, 0, np * 4);
    float scale = 1.0f / sqrtf((float)HD);
    c.flat = (ts_attn){o_flat, l_flat, q_d, c.k, c.v, dt, NH, NKV, HD, BS, scale, true, B, c.seqs};
    c.shared = (ts_attn_shared){o1, l1, q_d, c.rows_d, B, c.k, c.v, dt, c.tab_d, P, NH, NKV, HD,
                                BS, scale, NULL, NULL};
    float *o3 = nan_dev(nq), *l3 = nan_dev((size_t)B * NH);
    c.fused = c.shared;
    c.fused.out = o3, c.fused.lse = l3, c.fused.own_tables = c.tab_d, c.fused.own_info = c.own_d;
    float t_fused = time_ms(run_fused, &c, 30);
    float t_flat = time_ms(run_flat, &c, 30);
    float t_dec = time_ms(run_flat_dec, &c, 30);
    float t_shared = time_ms(run_shared, &c, 30);
    float s_fused = time_calls(run_fused, &c, 9, 20), s_dec = time_calls(run_flat_dec, &c, 9, 5);
    float s_shared = time_calls(run_shared, &c, 9, 20);
    float t_casc = time_ms(run_cascade, &c, 30); /* last: o1 holds the merged result */
    float *a = xmalloc(nq * 4), *b = xmalloc(nq * 4), *d = xmalloc(nq * 4), *f = xmalloc(nq * 4);
    get(a, o_flat, nq * 4), get(b, o1, nq * 4), get(d, c.o_dec, nq * 4), get(f, o3, nq * 4);
    double agree = rel_err(b, a, nq), agree_dec = rel_err(d, a, nq), agree_f = rel_err(f, a, nq);
    if (agree_f > agree) agree = agree_f;
    double es = (double)ts_kv_elem_bytes(dt);
    double kv_bytes = (double)(P + OWN) * NKV * HD * es * 2; /* one sequence's K+V */
    double prefix_bytes = (double)P * NKV * HD * es * 2;
    float t_best = t_flat < t_dec ? t_flat : t_dec;
    printf("%s KV, batch %d, prefix %d + %d own, %d q / %d KV heads, head_dim %d:\n", kv_name(dt),
           B, P, OWN, NH, NKV, HD);
    printf("%-58s %9.1f us %.0f GB/s of KV if each sequence read its own\n",
           "  flat paged: attention (generic)", t_flat * 1e3, B * kv_bytes / (t_flat * 1e-3) / 1e9);
    printf("%-58s %9.1f us %.0f GB/s (agrees to rel %.2g)\n", "  flat paged: attention_decode",
           t_dec * 1e3, B * kv_bytes / (t_dec * 1e-3) / 1e9, agree_dec);
    printf("%-58s %9.1f us (prefix %.0f MB read once: floor %.1f us)\n",
           "  cascade: shared + attention_decode (own) + merge", t_casc * 1e3, prefix_bytes / 1e6,
           prefix_bytes / (bw * 1e9) * 1e6);
    printf("%-58s %9.1f us\n", "  of which the shared level (attention_shared)", t_shared * 1e3);
    printf("%-58s %9.1f us (agrees to rel %.2g)\n", "  cascade as one op: attention_cascade", t_fused * 1e3,
           agree_f);
    float t_c = t_fused < t_casc ? t_fused : t_casc;
    printf("%-58s %9.2fx (outputs agree to rel %.2g)\n", "  cascade speed-up over the faster flat",
           t_best / t_c, agree);
    printf("%-58s %9.1f / %.1f us = %.2fx\n", "  back to back: attention_cascade / attention_decode",
           s_fused * 1e3, s_dec * 1e3, s_dec / s_fused);
    printf("%-58s %9.1f us\n", "  back to back: attention_shared (no own slots)", s_shared * 1e3);
    dfree(c.k), dfree(c.v), dfree(c.tab_d), dfree(c.info_d), dfree(c.own_d), dfree(c.rows_d);
    dfree(o_flat), dfree(l_flat), dfree(o1), dfree(l1), dfree(c.o_dec), dfree(c.o2), dfree(c.l2);
    dfree(c.part), dfree(o3), dfree(l3);
    free(tab), free(a), free(b), free(d), free(f);
    /* f32 KV: f32 arithmetic (1e-5); 16-bit KV: the shared level's bound */
    double tol = dt == TS_DT_F32 ? 1e-5 : tol_kv16_mma();
    return agree < tol && agree_dec < 1e-5 ? agree : INFINITY;
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

    size_t cb = (size_t)1 << 30;
    cp cpy = {ts_cuda_alloc(g_cu, cb), ts_cuda_alloc(g_cu, cb), cb};
    if (!cpy.dst || !cpy.src) die_cuda("copy buffers");
    ts_cuda_memset(g_cu, cpy.src, 1, cb);
    float t_cp = time_ms(run_copy, &cpy, 10);
    double bw_cp = 2.0 * cb / (t_cp * 1e-3) / 1e9;
    printf("\n%-58s %12s %s\n", "benchmark", "time", "rate");
    printf("%-58s %9.1f us %.0f GB/s (read + write)\n", "device-to-device copy 1 GiB",
           t_cp * 1e3, bw_cp);
    float *q_d = rand_dev_f32((size_t)B * NH * HD, 1.0f);
    double agree = bench_cascade(TS_DT_F32, q_d, bw_cp / 2);
    double agree16 = bench_cascade(TS_DT_BF16, q_d, bw_cp / 2);

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
    /* batched decode products, f32-exact (matmul_tc.cu; TS_CUDA_TMV=0: cuBLAS),
     * 10 calls back to back: Qwen3-0.6B's matrices (q|k|v rows as one, o,
     * gate, down, lm_head) and an 8192 square one, at 16 and 64 rows */
    enum { NBS = 6 };
    const int bshape[NBS][2] = {{4096, 1024}, {1024, 2048}, {3072, 1024}, {1024, 3072},
                                {151936, 1024}, {8192, 8192}};
    const int bn[2] = {16, 64};
    float t_bn[NBS][2];
    mm vd = {nan_dev((size_t)64 * 151936), rand_dev_f32((size_t)64 * 8192, 1.0f), 0, v2.w,
             TS_PREC_F32};
    for (int i = 0; i < NBS; i++) {
        if (i < NBS - 1)
            vd.w = (ts_wmat){i == 4 ? v1.w.data : rand_dev_bf16((size_t)bshape[i][0] * bshape[i][1]),
                             TS_DT_BF16, bshape[i][0], bshape[i][1]};
        else
            vd.w = v2.w;
        for (int j = 0; j < 2; j++) {
            vd.n = bn[j];
            t_bn[i][j] = time_calls(run_mm, &vd, 15, 10);
        }
    }
    if (ts_cuda_sync(g_cu, &err) != TS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

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
    const char *tmv = getenv("TS_CUDA_TMV");
    for (int i = 0; i < NBS; i++)
        for (int j = 0; j < 2; j++) {
            char what[96];
            snprintf(what, sizeof what, "matmul n=%d bf16 %dx%d f32-exact TS_CUDA_TMV=%.4s", bn[j],
                     bshape[i][0], bshape[i][1], tmv ? tmv : "1");
            double wb = 2.0 * bshape[i][0] * bshape[i][1];
            printf("%-58s %9.1f us %.0f GB/s of weights\n", what, t_bn[i][j] * 1e3,
                   wb / (t_bn[i][j] * 1e-3) / 1e9);
        }
    ts_cuda_destroy(g_cu);
    return isfinite(agree) && isfinite(agree16) ? 0 : 1;
}
