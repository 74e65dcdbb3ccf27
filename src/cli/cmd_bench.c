/* bench: prefill and decode throughput on random tokens, as JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cmd_bench(cli_args *a) {
    ts_runtime *rt = cli_open(a);
    if (!rt) return 1;
    const ts_model_config *c = &rt->model->cfg;
    int depth = a->bench_depth, np = a->bench_prompt, ng = a->bench_gen, reps = a->reps;
    int total = depth + np + ng;
    if (total > c->max_pos) {
        fprintf(stderr, "error: depth + prompt + gen = %d exceeds the model's context %d\n", total,
                c->max_pos);
        ts_runtime_close(rt);
        return 1;
    }
    int32_t *ids = malloc((size_t)total * sizeof *ids);
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < total; i++) { /* random ids from a fixed xorshift stream */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)(c->vocab < 32000 ? c->vocab : 32000));
    }
    ts_seq seq = {0};
    ts_err err;
    int rc = 0;
    double cold_pp = 0, cold_tg = 0;
    /* rep -1 warms up, untimed as llama-bench's: the first run maps the
     * weight file's pages and faults in fresh KV pool pages, a one-time
     * cost reported on its own (cold_*) */
    for (int r = -1; r < reps && !rc; r++) {
        ts_seq_reset(&seq, rt->kv);
        const float *logits;
        if (depth && ts_prefill(rt, &seq, ids, depth, 512, &logits, &err)) { rc = 1; break; }
        double t0 = ts_now_ms();
        if (ts_prefill(rt, &seq, ids + depth, np, 512, &logits, &err)) { rc = 1; break; }
        double t1 = ts_now_ms();
        for (int g = 0; g < ng; g++) {
            if (ts_seq_reserve(&seq, rt->kv, seq.n_tokens + 1, &err)) { rc = 1; break; }
            int32_t id = ids[depth + np + g];
            ts_fwd_seq fs = {.tokens = &id, .n = 1, .n_past = seq.n_tokens, .blocks = seq.blocks,
                             .n_logits = 1};
            if (ts_fwd_run(rt->fwd, &fs, 1, &logits, &err) || ts_seq_push(&seq, &id, 1, &err)) {
                rc = 1;
                break;
            }
        }
        double t2 = ts_now_ms();
        double *p = r < 0 ? &cold_pp : &pp[r], *t = r < 0 ? &cold_tg : &tg[r];
        *p = np / ((t1 - t0) / 1e3);
        *t = ng / ((t2 - t1) / 1e3);
    }
    if (rc) {
        fprintf(stderr, "error: %s\n", err.msg);
    } else {
        printf("{\"model\": \"%s\", \"threads\": %d, \"backend\": \"%s\", \"prefill_prec\": \"%s\", "
               "\"depth\": %d, \"prompt\": %d, \"gen\": %d, \"reps\": %d, "
               "\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, "
               "\"cold_prefill_tok_s\": %.2f, \"cold_decode_tok_s\": %.2f}\n",
               a->model, ts_pool_size(rt->pool), rt->ops->name,
               !a->exact && ts_cpu_isa_used(rt->cpu) == TS_ISA_AVX512 ? "bf16" : "f32", depth,
               np, ng, reps, median(pp, reps), median(tg, reps), cold_pp, cold_tg);
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    free(ids);
    free(pp);
    free(tg);
    ts_runtime_close(rt);
    return rc;
}
