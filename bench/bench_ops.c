/* Benchmarks of the CPU op table at Qwen3-0.6B shapes (never run by tests).
 * Prints one JSON line per measurement: the median of 5 repetitions.
 *   matmul n=1: GB/s of weights streamed (several matrices in rotation so
 *     they come from memory, not cache);
 *   matmul n=512 (BF16 and F32 precision): GFLOP/s;
 *   attention decode at n_kv=2048: GB/s of K and V read;
 *   causal prefill attention over 512 tokens: GFLOP/s;
 *   cascade decode (2 threads): B sequences, one query row each, sharing a
 *     prefix of P slots plus 32 own slots: flat attention over the whole
 *     tables vs attention_shared + suffix attention (kv_start = P) + merge;
 *     then a table and the break-even P per B.
 *   matmul n=1 also at 1024 x 3072 (the FFN down shape);
 * "decode" runs only the n=1 matmuls and decode attention.
 * Usage: bench_ops [isa: auto|avx512|avx2|scalar] [all|ops|cascade|decode] */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/half.h"
#include "base/pool.h"
#include "kv/kv.h"
#include "ops/cpu/cpu.h"

#define REPS 5

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint32_t seed = 12345;
static float rnd(void) {
    seed = seed * 1664525u + 1013904223u;
    return (float)((seed >> 8) / 8388608.0 - 1.0);
}

static void emit(const char *name, const char *ops, int nth, const char *unit, double value,
                 double peak, double ms) {
    json_t *o = json_object();
    json_object_set_new(o, "bench", json_string(name));
    json_object_set_new(o, "ops", json_string(ops));
    json_object_set_new(o, "threads", json_integer(nth));
    json_object_set_new(o, unit, json_real(round(value * 10) / 10));
    if (peak > 0) json_object_set_new(o, "of_peak", json_real(round(value / peak * 1000) / 1000));
    json_object_set_new(o, "ms_per_call", json_real(round(ms * 1000) / 1000));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (s) puts(s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

typedef struct mmctx {
    const ts_ops *ops;
    float *y, *x;
    int n;
    ts_wmat *w;
    int n_w;
    ts_prec prec;
} mmctx;

/* Median seconds per call of `calls` back-to-back calls of fn, over REPS. */
typedef void (*bench_fn)(void *ctx, int i);
static double median_time(bench_fn fn, void *ctx, int calls) {
    double t[REPS];
    fn(ctx, 0); /* warm-up: scratch, page faults */
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        for (int i = 0; i < calls; i++) fn(ctx, i);
        t[r] = (now() - t0) / calls;
    }
    qsort(t, REPS, sizeof *t, cmp_d);
    return t[REPS / 2];
}

static void mm_call(void *vctx, int i) {
    mmctx *c = vctx;
    c->ops->matmul(c->ops->ctx, c->y, c->x, c->n, &c->w[i % c->n_w], NULL, c->prec);
}

typedef struct atctx {
    const ts_ops *ops;
    ts_attn a[28]; /* pools cycled through: 28 x 8.4 MB (f16), a depth-2048 step */
    int n_a;
} atctx;

static void at_call(void *vctx, int i) {
    atctx *c = vctx;
    c->ops->attention(c->ops->ctx, &c->a[i % c->n_a]);
}

/* ---- cascade attention at Qwen3-0.6B decode shapes ---- */

enum { CNH = 16, CNKH = 8, CHD = 128, CBS = 16, COWN = 32, CMAXB = 32, CMAXP = 2048,
       CLAYERS = 4 };

typedef struct cascctx {
    const ts_ops *ops;
    ts_attn flat[CLAYERS], own[CLAYERS];
    ts_attn_shared sh[CLAYERS];
    float *o2, *l2;
    const int32_t *rows;
    int B;
} cascctx;

static void flat_call(void *vctx, int i) {
    cascctx *c = vctx;
    c->ops->attention(c->ops->ctx, &c->flat[i % CLAYERS]);
}

static void shared_call(void *vctx, int i) {
    cascctx *c = vctx;
    c->ops->attention_shared(c->ops->ctx, &c->sh[i % CLAYERS]);
}

static void casc_call(void *vctx, int i) {
    cascctx *c = vctx;
    const ts_attn_shared *sh = &c->sh[i % CLAYERS];
    c->ops->attention_shared(c->ops->ctx, sh);
    c->ops->attention(c->ops->ctx, &c->own[i % CLAYERS]);
    ts_attn_merge_rows(sh->out, sh->lse, c->o2, c->l2, c->rows, c->B, CNH, CHD);
}

/* Layers rotate over CLAYERS pools so that K/V come from memory as in a
 * forward pass, not from the cache of the previous call. */
static int bench_cascade(ts_cpu_isa isa) {
    static const int Bs[] = {4, 8, 32}, Ps[] = {32, 64, 128, 256, 512, 1024, 2048};
    enum { NP = sizeof Ps / sizeof *Ps };
    enum { NPB = CMAXP / CBS, NBLK = NPB + CMAXB * (COWN / CBS) };
    size_t pool_floats = (size_t)NBLK * CNKH * CBS * CHD, qf = (size_t)CMAXB * CNH * CHD;
    float *kp = malloc(sizeof(float) * pool_floats * CLAYERS);
    float *vp = malloc(sizeof(float) * pool_floats * CLAYERS);
    float *q = malloc(sizeof(float) * qf), *o1 = malloc(sizeof(float) * qf),
          *o2 = malloc(sizeof(float) * qf), *of = malloc(sizeof(float) * qf);
    float *l1 = malloc(sizeof(float) * CMAXB * CNH), *l2 = malloc(sizeof(float) * CMAXB * CNH);
    int32_t *ids = malloc(sizeof(int32_t) * NBLK), *tables = malloc(sizeof(int32_t) * CMAXB * NBLK);
    int32_t rows[CMAXB];
    ts_pool *pool = ts_pool_create(2);
    ts_cpu *cpu = pool ? ts_cpu_create(pool, isa) : NULL;
    if (!kp || !vp || !q || !o1 || !o2 || !of || !l1 || !l2 || !ids || !tables || !cpu) return 1;
    for (size_t i = 0; i < pool_floats * CLAYERS; i++) kp[i] = rnd(), vp[i] = rnd();
    for (size_t i = 0; i < qf; i++) q[i] = rnd();
    for (int i = 0; i < NBLK; i++) ids[i] = (int32_t)((i * 37L) % NBLK); /* scattered */
    for (int r = 0; r < CMAXB; r++) rows[r] = r;
    const ts_ops *ops = ts_cpu_ops(cpu);
    double speed[3][NP];
    for (int bi = 0; bi < 3; bi++)
        for (int pi = 0; pi < NP; pi++) {
            int B = Bs[bi], P = Ps[pi], npb = P / CBS;
            ts_attn_seq fs[CMAXB], os[CMAXB];
            for (int s = 0; s < B; s++) { /* table: shared prefix blocks, then own blocks */
                int32_t *t = tables + (size_t)s * NBLK;
                memcpy(t, ids, sizeof(int32_t) * (size_t)npb);
                for (int k = 0; k < COWN / CBS; k++) t[npb + k] = ids[NPB + s * (COWN / CBS) + k];
                fs[s] = (ts_attn_seq){.q_start = s, .n_q = 1, .n_kv = P + COWN, .blocks = t};
                os[s] = fs[s];
                os[s].kv_start = P;
            }
            cascctx c = {.ops = ops, .o2 = o2, .l2 = l2, .rows = rows, .B = B};
            for (int l = 0; l < CLAYERS; l++) {
                ts_attn base = {.q = q, .k = kp + pool_floats * l, .v = vp + pool_floats * l,
                                .n_heads = CNH, .n_kv_heads = CNKH, .head_dim = CHD,
                                .block_size = CBS, .scale = 1.0f / sqrtf(CHD), .causal = true,
                                .n_seq = B};
                c.flat[l] = base, c.flat[l].out = of, c.flat[l].seqs = fs;
                c.own[l] = base, c.own[l].out = o2, c.own[l].lse = l2, c.own[l].seqs = os;
                c.sh[l] = (ts_attn_shared){.out = o1, .lse = l1, .q = q, .rows = rows, .n_rows = B,
                                           .k = base.k, .v = base.v, .blocks = ids, .n_kv = P,
                                           .n_heads = CNH, .n_kv_heads = CNKH, .head_dim = CHD,
                                           .block_size = CBS, .scale = base.scale};
            }
            int calls = 2 * CLAYERS;
            double tf = median_time(flat_call, &c, calls), tc = median_time(casc_call, &c, calls);
            double ts = median_time(shared_call, &c, calls);
            /* the two must agree: cascade of layer 0 vs flat of layer 0 */
            flat_call(&c, 0);
            casc_call(&c, 0);
            double d = 0, r = 0;
            for (size_t i = 0; i < (size_t)B * CNH * CHD; i++)
                d += ((double)o1[i] - of[i]) * ((double)o1[i] - of[i]), r += (double)of[i] * of[i];
            speed[bi][pi] = tf / tc;
            json_t *o = json_object();
            json_object_set_new(o, "bench", json_string("cascade_decode_gqa16x8_d128_own32"));
            json_object_set_new(o, "ops", json_string(ops->name));
            json_object_set_new(o, "threads", json_integer(2));
            json_object_set_new(o, "B", json_integer(B));
            json_object_set_new(o, "P", json_integer(P));
            json_object_set_new(o, "flat_ms", json_real(round(tf * 1e6) / 1e3));
            json_object_set_new(o, "cascade_ms", json_real(round(tc * 1e6) / 1e3));
            json_object_set_new(o, "shared_ms", json_real(round(ts * 1e6) / 1e3));
            json_object_set_new(o, "speedup", json_real(round(tf / tc * 100) / 100));
            json_object_set_new(o, "rel_err", json_real(r > 0 ? sqrt(d / r) : 0));
            char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(4));
            if (js) puts(js);
            fflush(stdout);
            free(js);
            json_decref(o);
        }
    printf("# cascade decode, %s, 2 threads: speedup = flat / cascade time per layer call\n",
           ops->name);
    printf("# %-4s", "B\\P");
    for (int pi = 0; pi < NP; pi++) printf(" %10d", Ps[pi]);
    printf("  break-even P\n");
    for (int bi = 0; bi < 3; bi++) {
        printf("# %-4d", Bs[bi]);
        for (int pi = 0; pi < NP; pi++) printf(" %9.2fx", speed[bi][pi]);
        /* the smallest P from which cascade wins at every larger P measured */
        int be = -1;
        for (int pi = NP - 1; pi >= 0 && speed[bi][pi] > 1.0; pi--) be = pi;
        if (be < 0) printf("  > %d\n", Ps[NP - 1]);
        else if (be == 0) printf("  <= %d\n", Ps[0]);
        else printf("  %d..%d\n", Ps[be - 1], Ps[be]);
    }
    ts_cpu_destroy(cpu);
    ts_pool_destroy(pool);
    free(kp), free(vp), free(q), free(o1), free(o2), free(of), free(l1), free(l2), free(ids),
        free(tables);
    return 0;
}

int main(int argc, char **argv) {
    ts_cpu_isa isa = TS_ISA_AUTO;
    if (argc > 1) {
        if (!strcmp(argv[1], "avx512")) isa = TS_ISA_AVX512;
        else if (!strcmp(argv[1], "avx2")) isa = TS_ISA_AVX2;
        else if (!strcmp(argv[1], "scalar")) isa = TS_ISA_SCALAR;
    }
    const char *mode = argc > 2 ? argv[2] : "all";
    if (!strcmp(mode, "cascade")) return bench_cascade(isa);
    int dec_only = !strcmp(mode, "decode"), attn_only = !strcmp(mode, "attn");
    /* weights: 16 bf16 matrices of 3072 x 1024 (the FFN gate/up shape), 96 MiB */
    enum { NW = 16, ROWS = 3072, COLS = 1024, NP = 512 };
    ts_wmat w[NW];
    uint16_t *wd = malloc((size_t)NW * ROWS * COLS * 2);
    float *x = malloc(sizeof(float) * NP * COLS), *y = malloc(sizeof(float) * NP * ROWS);
    if (!wd || !x || !y) return 1;
    for (size_t i = 0; i < (size_t)NW * ROWS * COLS; i++) {
        float f = rnd();
        uint32_t u;
        memcpy(&u, &f, 4);
        wd[i] = (uint16_t)(u >> 16);
    }
    for (int i = 0; i < NW; i++)
        w[i] = (ts_wmat){.data = wd + (size_t)i * ROWS * COLS, .dtype = TS_DT_BF16,
                         .rows = ROWS, .cols = COLS};
    for (int i = 0; i < NP * COLS; i++) x[i] = rnd();

    /* attention: 16 q heads / 8 kv heads, head_dim 128, block 16; pools in
     * the engine's pool storage (huge pages), kept until exit */
    enum { NH = 16, NKH = 8, HD = 128, BS = 16, NKV = 2048, NPOOL = 28 };
    size_t pool_floats = (size_t)(NKV / BS) * NKH * BS * HD;
    float *kp = ts_kv_host_alloc(sizeof(float) * pool_floats * NPOOL),
          *vp = ts_kv_host_alloc(sizeof(float) * pool_floats * NPOOL);
    float *q = malloc(sizeof(float) * NP * NH * HD), *ao = malloc(sizeof(float) * NP * NH * HD);
    int32_t *blocks = malloc(sizeof(int32_t) * (NKV / BS));
    if (!kp || !vp || !q || !ao || !blocks) return 1;
    uint16_t *kh = ts_kv_host_alloc(2 * pool_floats * NPOOL), *vh = ts_kv_host_alloc(2 * pool_floats * NPOOL);
    uint16_t *kb = ts_kv_host_alloc(2 * pool_floats * NPOOL), *vb = ts_kv_host_alloc(2 * pool_floats * NPOOL);
    if (!kh || !vh || !kb || !vb) return 1;
    for (size_t i = 0; i < pool_floats * NPOOL; i++) {
        kp[i] = rnd(), vp[i] = rnd();
        kh[i] = ts_f32_to_f16(kp[i]), vh[i] = ts_f32_to_f16(vp[i]);
        kb[i] = ts_f32_to_bf16(kp[i]), vb[i] = ts_f32_to_bf16(vp[i]);
    }
    for (int i = 0; i < NP * NH * HD; i++) q[i] = rnd();
    for (int i = 0; i < NKV / BS; i++) blocks[i] = i; /* in order, as a fresh engine pool gives */

    for (int nth = 1; nth <= 2; nth++) {
        ts_pool *pool = ts_pool_create(nth);
        ts_cpu *cpu = ts_cpu_create(pool, isa);
        if (!pool || !cpu) return 1;
        const ts_ops *ops = ts_cpu_ops(cpu);

        mmctx m = {.ops = ops, .y = y, .x = x, .n = 1, .w = w, .n_w = NW, .prec = TS_PREC_F32};
        double t;
        if (attn_only) goto attn;
        t = median_time(mm_call, &m, 64);
        emit("matmul_n1_f32prec_bf16w_3072x1024", ops->name, nth, "GB_per_s",
             (double)ROWS * COLS * 2 / t / 1e9, 55, t * 1e3);
        m.prec = TS_PREC_BF16;
        t = median_time(mm_call, &m, 64);
        emit("matmul_n1_bf16prec_bf16w_3072x1024", ops->name, nth, "GB_per_s",
             (double)ROWS * COLS * 2 / t / 1e9, 55, t * 1e3);
        ts_wmat wt[NW]; /* the same bytes as 1024 x 3072 matrices */
        for (int i = 0; i < NW; i++) wt[i] = w[i], wt[i].rows = COLS, wt[i].cols = ROWS;
        mmctx mt = {.ops = ops, .y = y, .x = x, .n = 1, .w = wt, .n_w = NW, .prec = TS_PREC_F32};
        t = median_time(mm_call, &mt, 64);
        emit("matmul_n1_f32prec_bf16w_1024x3072", ops->name, nth, "GB_per_s",
             (double)ROWS * COLS * 2 / t / 1e9, 55, t * 1e3);
        mt.n = 4;
        t = median_time(mm_call, &mt, 64);
        emit("matmul_n4_f32prec_bf16w_1024x3072", ops->name, nth, "GB_per_s",
             (double)ROWS * COLS * 2 / t / 1e9, 55, t * 1e3);
        m.n = NP;
        m.prec = TS_PREC_BF16;
        if (!dec_only) {
            t = median_time(mm_call, &m, 2);
            emit("matmul_n512_bf16prec_bf16w_3072x1024", ops->name, nth, "GFLOP_per_s",
                 2.0 * NP * ROWS * COLS / t / 1e9, 262, t * 1e3);
            m.prec = TS_PREC_F32;
            t = median_time(mm_call, &m, 2);
            emit("matmul_n512_f32prec_bf16w_3072x1024", ops->name, nth, "GFLOP_per_s",
                 2.0 * NP * ROWS * COLS / t / 1e9, 125, t * 1e3);
        }

    attn:;
        atctx a = {.ops = ops, .n_a = NPOOL};
        ts_attn_seq dec = {.q_start = 0, .n_q = 1, .n_kv = NKV, .blocks = blocks};
        for (int i = 0; i < NPOOL; i++)
            a.a[i] = (ts_attn){.out = ao, .q = q, .k = kp + pool_floats * i, .v = vp + pool_floats * i,
                               .n_heads = NH, .n_kv_heads = NKH, .head_dim = HD, .block_size = BS,
                               .scale = 1.0f / sqrtf(HD), .causal = true, .n_seq = 1, .seqs = &dec};
        t = median_time(at_call, &a, 16);
        emit("attn_decode_nkv2048_gqa16x8_d128", ops->name, nth, "GB_per_s",
             2.0 * NKV * NKH * HD * 4 / t / 1e9, 55, t * 1e3);
        for (int i = 0; i < NPOOL; i++) /* the same rows in an f16 pool */
            a.a[i].k = kh + pool_floats * i, a.a[i].v = vh + pool_floats * i,
            a.a[i].kv_dtype = TS_DT_F16;
        t = median_time(at_call, &a, 16);
        emit("attn_decode_nkv2048_gqa16x8_d128_f16kv", ops->name, nth, "GB_per_s",
             2.0 * NKV * NKH * HD * 2 / t / 1e9, 55, t * 1e3);
        for (int pass = 0; pass < 2; pass++) {
            const char *nm = pass ? "bf16kv" : "f16kv";
            char name[96];
            if (pass) {
                for (int i = 0; i < NPOOL; i++)
                    a.a[i].k = kb + pool_floats * i, a.a[i].v = vb + pool_floats * i,
                    a.a[i].kv_dtype = TS_DT_BF16;
                t = median_time(at_call, &a, 16);
                snprintf(name, sizeof name, "attn_decode_nkv2048_gqa16x8_d128_%s", nm);
                emit(name, ops->name, nth, "GB_per_s", 2.0 * NKV * NKH * HD * 2 / t / 1e9, 55,
                     t * 1e3);
            }
            a.n_a = 1; /* one pool again and again: from the caches, the arithmetic's rate */
            t = median_time(at_call, &a, 16);
            snprintf(name, sizeof name, "attn_decode_nkv2048_gqa16x8_d128_%s_cached", nm);
            emit(name, ops->name, nth, "GB_per_s", 2.0 * NKV * NKH * HD * 2 / t / 1e9, 55,
                 t * 1e3);
            a.n_a = NPOOL;
        }
        for (int i = 0; i < NPOOL; i++)
            a.a[i].k = kp + pool_floats * i, a.a[i].v = vp + pool_floats * i,
            a.a[i].kv_dtype = TS_DT_F32;
        if (attn_only) {
            ts_cpu_destroy(cpu);
            ts_pool_destroy(pool);
            continue;
        }
        if (!dec_only) {
            ts_attn_seq pre = {.q_start = 0, .n_q = NP, .n_kv = NP, .blocks = blocks};
            for (int i = 0; i < NPOOL; i++) a.a[i].seqs = &pre;
            t = median_time(at_call, &a, 2);
            emit("attn_prefill_512_causal_gqa16x8_d128", ops->name, nth, "GFLOP_per_s",
                 4.0 * HD * NH * (NP * (NP + 1) / 2.0) / t / 1e9, 125, t * 1e3);
        }

        ts_cpu_destroy(cpu);
        ts_pool_destroy(pool);
    }
    free(wd), free(x), free(y), free(q), free(ao), free(blocks);
    return strcmp(mode, "ops") && !dec_only && !attn_only ? bench_cascade(isa) : 0;
}
