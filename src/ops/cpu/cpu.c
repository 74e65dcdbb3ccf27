/* The CPU backend object: ISA detection, the op table per ISA, per-thread
 * scratch, and the cheap element-wise ops split over the pool. */
#include <math.h>
#include <stdlib.h>

#include "ops/cpu/cpu_internal.h"

void *ts_scratch_get(ts_scratch *s, size_t bytes) {
    if (bytes == 0) bytes = 64;
    if (s->cap >= bytes) return s->p;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < bytes) cap *= 2;
    void *p = NULL;
    if (posix_memalign(&p, 64, cap) != 0) return NULL;
    free(s->p);
    s->p = p;
    s->cap = cap;
    return p;
}

ts_cpu_isa ts_cpu_isa_detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("fma"))
        return TS_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return TS_ISA_AVX2;
#endif
    return TS_ISA_SCALAR;
}

/* ---- element-wise ops over the pool (rows split between threads) ---- */

/* Below this many elements a single thread is faster than a pool run. */
#define TS_EW_MIN_PAR 32768

typedef struct ts_ew_job {
    int kind; /* 0 rmsnorm, 1 add_rmsnorm, 2 swiglu, 3 rope */
    float *y, *x;
    const float *cx, *r, *g;
    const int32_t *pos;
    int n, d, n_heads;
    float eps;
    int simd; /* AVX2 row kernels (every ISA above scalar has AVX2) */
} ts_ew_job;

static void ts_ew_task(void *vctx, int ith, int nth) {
    const ts_ew_job *j = vctx;
    long lo, hi;
    ts_pool_range(j->n, ith, nth, &lo, &hi);
    if (hi <= lo) return;
    size_t off = (size_t)lo * (size_t)j->d;
    int m = (int)(hi - lo);
    switch (j->kind) {
    case 0:
        if (j->simd) ts_avx2_rmsnorm_rows(j->y + off, j->cx + off, j->g, m, j->d, j->eps);
        else ts_ref_rmsnorm(NULL, j->y + off, j->cx + off, j->g, m, j->d, j->eps);
        break;
    case 1:
        if (j->simd)
            ts_avx2_add_rmsnorm_rows(j->y + off, j->x + off, j->r + off, j->g, m, j->d, j->eps);
        else ts_ref_add_rmsnorm(NULL, j->y + off, j->x + off, j->r + off, j->g, m, j->d, j->eps);
        break;
    case 2:
        if (j->simd)
            ts_avx2_swiglu_rows(j->y + off, j->cx + off, j->r + off, (size_t)m * (size_t)j->d);
        else ts_ref_swiglu(NULL, j->y + off, j->cx + off, j->r + off, m, j->d);
        break;
    case 3: ts_ref_rope(NULL, j->x + off, j->pos + lo, m, j->n_heads, j->d / j->n_heads, j->g);
        break;
    }
}

static void ts_ew_run(ts_cpu *cpu, ts_ew_job *j) {
    j->simd = cpu->isa == TS_ISA_AVX2 || cpu->isa == TS_ISA_AVX512;
    if (cpu->nth > 1 && (long)j->n * j->d >= TS_EW_MIN_PAR && j->n > 1)
        ts_pool_run(cpu->pool, ts_ew_task, j);
    else
        ts_ew_task(j, 0, 1);
}

void ts_cpu_rmsnorm(void *ctx, float *y, const float *x, const float *g, int n, int d,
                    float eps) {
    ts_ew_job j = {.kind = 0, .y = y, .cx = x, .g = g, .n = n, .d = d, .eps = eps};
    ts_ew_run(ctx, &j);
}

void ts_cpu_add_rmsnorm(void *ctx, float *y, float *x, const float *r, const float *g, int n,
                        int d, float eps) {
    ts_ew_job j = {.kind = 1, .y = y, .x = x, .r = r, .g = g, .n = n, .d = d, .eps = eps};
    ts_ew_run(ctx, &j);
}

void ts_cpu_swiglu(void *ctx, float *out, const float *gate, const float *up, int n, int d) {
    ts_ew_job j = {.kind = 2, .y = out, .cx = gate, .r = up, .n = n, .d = d};
    ts_ew_run(ctx, &j);
}

void ts_cpu_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                 const float *inv_freq) {
    ts_ew_job j = {.kind = 3, .x = x, .pos = pos, .g = inv_freq, .n = n,
                   .d = n_heads * head_dim, .n_heads = n_heads};
    ts_ew_run(ctx, &j);
}

void ts_cpu_swiglu_lowmem(void *ctx, ts_matmul_fn mm, float *out, const float *x, int n,
                          const ts_wmat *w_gate, const ts_wmat *w_up, ts_prec prec) {
    mm(ctx, out, x, n, w_gate, NULL, prec);
    size_t es = w_up->dtype == TS_DT_F32 ? 4 : 2; /* the dtypes ts_wmat allows */
    for (int b = 0; b < n; b++)
        for (int r = 0; r < w_up->rows; r++) {
            ts_wmat row = *w_up;
            row.rows = 1;
            row.data = (const char *)w_up->data + (size_t)r * (size_t)w_up->cols * es;
            float uv = 0.0f, *o = out + (size_t)b * w_up->rows + r;
            ts_ref_matmul(ctx, &uv, x + (size_t)b * w_up->cols, 1, &row, NULL, prec);
            ts_ref_swiglu(ctx, o, o, &uv, 1, 1);
        }
}

/* ---- creation ---- */

ts_cpu *ts_cpu_create(ts_pool *pool, ts_cpu_isa isa) {
    ts_cpu *cpu = calloc(1, sizeof *cpu);
    if (!cpu) return NULL;
    cpu->pool = pool;
    cpu->nth = ts_pool_size(pool);
    cpu->thr = calloc((size_t)cpu->nth, sizeof *cpu->thr);
    if (!cpu->thr) {
        free(cpu);
        return NULL;
    }
    ts_cpu_isa best = ts_cpu_isa_detect();
    if (isa == TS_ISA_AUTO || isa > best) isa = best;
    cpu->isa = isa;

    ts_ops *o = &cpu->ops;
    o->ctx = cpu;
    o->kv_half = true;
    o->matmul = ts_ref_matmul;
    o->embed = ts_ref_embed;
    o->rmsnorm = ts_ref_rmsnorm;
    o->add_rmsnorm = ts_ref_add_rmsnorm;
    o->rope = ts_ref_rope;
    o->swiglu = ts_ref_swiglu;
    o->kv_write = ts_ref_kv_write;
    o->attention = ts_ref_attention;
    o->attention_shared = ts_ref_attention_shared;
    switch (isa) {
    case TS_ISA_AVX512:
        o->name = "cpu-avx512";
        o->matmul = ts_avx512_matmul;
        o->matmul_multi = ts_avx512_matmul_multi;
        o->matmul_swiglu = ts_avx512_matmul_swiglu;
        o->attention = ts_avx512_attention;
        o->attention_shared = ts_avx512_attention_shared;
        break;
    case TS_ISA_AVX2:
        o->name = "cpu-avx2";
        o->matmul = ts_avx2_matmul;
        o->matmul_multi = ts_avx2_matmul_multi;
        o->matmul_swiglu = ts_avx2_matmul_swiglu;
        o->attention = ts_avx2_attention;
        o->attention_shared = ts_avx2_attention_shared;
        break;
    default: o->name = "cpu-ref"; break;
    }
    if (isa != TS_ISA_SCALAR) {
        o->rmsnorm = ts_cpu_rmsnorm;
        o->add_rmsnorm = ts_cpu_add_rmsnorm;
        o->swiglu = ts_cpu_swiglu;
        o->rope = ts_cpu_rope;
    }
    return cpu;
}

void ts_cpu_destroy(ts_cpu *cpu) {
    if (!cpu) return;
    for (int i = 0; i < cpu->nth; i++) free(cpu->thr[i].p);
    free(cpu->thr);
    free(cpu->shared.p);
    free(cpu->fused.p);
    free(cpu);
}

const ts_ops *ts_cpu_ops(ts_cpu *cpu) { return &cpu->ops; }

ts_cpu_isa ts_cpu_isa_used(const ts_cpu *cpu) { return cpu->isa; }
