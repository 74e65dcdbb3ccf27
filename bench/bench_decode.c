/* Per-op time breakdown of decode steps (never run by tests).
 *
 * Loads a model through ts_runtime, prefills `depth` random tokens, then
 * runs `steps` decode steps with every entry of the CPU op table wrapped by
 * a timer. Matrix products are split into attention projections, MLP and
 * the LM head (by weight shape), and each reports the GB/s of weights it
 * streamed. Also measures the bare cost of an empty ts_pool_run.
 * Prints one JSON object. With tokens > 1 each step is a prefill piece of
 * that many tokens instead (the split of a prefill; ms figures per step).
 * Usage: bench_decode MODEL_DIR [threads=2] [depth=0] [steps=32] [tokens=1] */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/generate.h"
#include "engine/runtime.h"
#include "engine/seq.h"
#include "ops/cpu/cpu_internal.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

enum { K_QKV, K_O, K_UPGATE, K_DOWN, K_HEAD, K_ATTN, K_NORM, K_ROPE, K_SWIGLU, K_KVW, K_EMBED,
       K_N };
static const char *k_name[K_N] = {"matmul_qkv", "matmul_o", "matmul_gate_up", "matmul_down",
                                  "matmul_lm_head", "attention", "rmsnorm", "rope", "swiglu",
                                  "kv_write", "embed"};
static double k_time[K_N], k_bytes[K_N];
static long k_calls[K_N];
static ts_ops orig;
static int vocab;

static void add(int k, double t, double bytes) {
    k_time[k] += t;
    k_bytes[k] += bytes;
    k_calls[k]++;
}

static void w_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                     const float *bias, ts_prec prec) {
    double t0 = now_s();
    orig.matmul(ctx, y, x, n, w, bias, prec);
    double t = now_s() - t0;
    int k = w->rows == vocab ? K_HEAD : w->cols > w->rows ? (w->cols > 2 * w->rows ? K_DOWN : K_O)
            : w->rows >= 3 * w->cols ? K_UPGATE : K_QKV;
    add(k, t, (double)w->rows * w->cols * (w->dtype == TS_DT_F32 ? 4 : 2));
}

static void w_matmul_multi(void *ctx, float *const *y, const float *x, int n, const ts_wmat *w,
                           const float *const *bias, int n_w, ts_prec prec) {
    double t0 = now_s();
    orig.matmul_multi(ctx, y, x, n, w, bias, n_w, prec);
    double bytes = 0;
    for (int i = 0; i < n_w; i++) bytes += (double)w[i].rows * w[i].cols * (w[i].dtype == TS_DT_F32 ? 4 : 2);
    add(K_QKV, now_s() - t0, bytes);
}

static void w_matmul_swiglu(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                            const ts_wmat *w_up, ts_prec prec) {
    double t0 = now_s();
    orig.matmul_swiglu(ctx, out, x, n, w_gate, w_up, prec);
    add(K_UPGATE, now_s() - t0,
        2.0 * w_gate->rows * w_gate->cols * (w_gate->dtype == TS_DT_F32 ? 4 : 2));
}

static void w_attention(void *ctx, const ts_attn *a) {
    double t0 = now_s();
    orig.attention(ctx, a);
    double bytes = 0;
    for (int s = 0; s < a->n_seq; s++)
        bytes += 2.0 * a->seqs[s].n_kv * a->n_kv_heads * a->head_dim *
                 (a->kv_dtype == TS_DT_F16 ? 2 : 4);
    add(K_ATTN, now_s() - t0, bytes);
}

static void w_rmsnorm(void *ctx, float *y, const float *x, const float *g, int n, int d,
                      float eps) {
    double t0 = now_s();
    orig.rmsnorm(ctx, y, x, g, n, d, eps);
    add(K_NORM, now_s() - t0, 0);
}

static void w_add_rmsnorm(void *ctx, float *y, float *x, const float *r, const float *g, int n,
                          int d, float eps) {
    double t0 = now_s();
    orig.add_rmsnorm(ctx, y, x, r, g, n, d, eps);
    add(K_NORM, now_s() - t0, 0);
}

static void w_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                   const float *inv_freq) {
    double t0 = now_s();
    orig.rope(ctx, x, pos, n, n_heads, head_dim, inv_freq);
    add(K_ROPE, now_s() - t0, 0);
}

static void w_swiglu(void *ctx, float *out, const float *gate, const float *up, int n, int d) {
    double t0 = now_s();
    orig.swiglu(ctx, out, gate, up, n, d);
    add(K_SWIGLU, now_s() - t0, 0);
}

static void w_kv_write(void *ctx, void *k_pool, void *v_pool, ts_dtype kv_dtype, const float *k,
                       const float *v,
                       const int32_t *slot, int n, int n_kv_heads, int head_dim, int block_size) {
    double t0 = now_s();
    orig.kv_write(ctx, k_pool, v_pool, kv_dtype, k, v, slot, n, n_kv_heads, head_dim, block_size);
    add(K_KVW, now_s() - t0, 0);
}

static void w_embed(void *ctx, float *out, const ts_wmat *table, const int32_t *ids, int n) {
    double t0 = now_s();
    orig.embed(ctx, out, table, ids, n);
    add(K_EMBED, now_s() - t0, 0);
}

static void empty_task(void *ctx, int ith, int nth) {
    (void)ctx;
    (void)ith;
    (void)nth;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_decode MODEL_DIR [threads] [depth] [steps]\n");
        return 2;
    }
    ts_runtime_opts opts = ts_runtime_opts_default();
    opts.n_threads = argc > 2 ? atoi(argv[2]) : 2;
    int depth = argc > 3 ? atoi(argv[3]) : 0, steps = argc > 4 ? atoi(argv[4]) : 32;
    int per = argc > 5 ? atoi(argv[5]) : 1;
    if (depth < 0 || steps < 1 || per < 1 || per > 65536) {
        fprintf(stderr, "bench_decode: depth >= 0, steps >= 1, 1 <= tokens <= 65536\n");
        return 2;
    }
    ts_runtime *rt = NULL;
    ts_err err;
    if (ts_runtime_open(argv[1], &opts, &rt, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    vocab = rt->model->cfg.vocab;
    int total = depth + steps * per + 1;
    int32_t *ids = malloc((size_t)total * sizeof *ids);
    if (!ids) return 1;
    uint32_t s = 7;
    for (int i = 0; i < total; i++) {
        s = s * 1664525u + 1013904223u;
        ids[i] = (int32_t)((s >> 8) % 32000u);
    }
    ts_seq seq = {0};
    const float *logits;
    int rc = 0;
    if (ts_prefill(rt, &seq, ids, depth + 1, 512, &logits, &err)) rc = 1;

    /* wrap the op table (the backend's own, which the forward pass holds) */
    ts_ops *o = (ts_ops *)rt->ops;
    orig = *o;
    o->matmul = w_matmul;
    if (o->matmul_multi) o->matmul_multi = w_matmul_multi;
    if (o->matmul_swiglu) o->matmul_swiglu = w_matmul_swiglu;
    o->attention = w_attention;
    o->rmsnorm = w_rmsnorm;
    o->add_rmsnorm = w_add_rmsnorm;
    o->rope = w_rope;
    o->swiglu = w_swiglu;
    o->kv_write = w_kv_write;
    o->embed = w_embed;
    double t0 = now_s();
    for (int g = 0; g < steps && !rc; g++) {
        int32_t *id = ids + depth + 1 + (size_t)g * per;
        if (ts_seq_reserve(&seq, rt->kv, seq.n_tokens + per, &err)) { /* may move blocks */
            rc = 1;
            break;
        }
        ts_fwd_seq fs = {.tokens = id, .n = per, .n_past = seq.n_tokens, .blocks = seq.blocks,
                         .n_logits = 1};
        if (ts_fwd_run(rt->fwd, &fs, 1, &logits, &err) || ts_seq_push(&seq, id, per, &err))
            rc = 1;
    }
    double total_s = now_s() - t0;
    *o = orig;
    if (rc) {
        fprintf(stderr, "error: %s\n", err.msg);
    } else {
        /* pool: back-to-back empty runs */
        int np = 20000;
        double p0 = now_s();
        for (int i = 0; i < np; i++) ts_pool_run(rt->pool, empty_task, NULL);
        double pool_us = (now_s() - p0) / np * 1e6;
        json_t *j = json_object();
        json_object_set_new(j, "threads", json_integer(ts_pool_size(rt->pool)));
        json_object_set_new(j, "backend", json_string(rt->ops->name));
        json_object_set_new(j, "depth", json_integer(depth));
        json_object_set_new(j, "tokens_per_step", json_integer(per));
        json_object_set_new(j, "ms_per_step", json_real(total_s / steps * 1e3));
        json_object_set_new(j, "tok_s", json_real((double)steps * per / total_s));
        double sum = 0;
        json_t *ops = json_object();
        for (int k = 0; k < K_N; k++) {
            if (!k_calls[k]) continue;
            json_t *e = json_object();
            json_object_set_new(e, "ms_per_step", json_real(k_time[k] / steps * 1e3));
            json_object_set_new(e, "calls_per_step", json_integer(k_calls[k] / steps));
            if (k_bytes[k] > 0)
                json_object_set_new(e, "GB_s", json_real(k_bytes[k] / k_time[k] / 1e9));
            json_object_set_new(ops, k_name[k], e);
            sum += k_time[k];
        }
        json_object_set_new(j, "ops", ops);
        json_object_set_new(j, "other_ms_per_step", json_real((total_s - sum) / steps * 1e3));
        json_object_set_new(j, "pool_run_empty_us", json_real(pool_us));
        char *str = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(4));
        if (str) puts(str);
        free(str);
        json_decref(j);
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    free(ids);
    ts_runtime_close(rt);
    return rc;
}
