/* bench-shared: requests that share a long prefix of random tokens, each
 * with its own random suffix, measured with the prefix cache and cascade
 * attention on and off. Prints one JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct req_out {
    ts_buf text;
    int n_gen;
    double ttft_ms;
    bool done;
} req_out;

static void on_event(void *ctx, const ts_event *ev) {
    req_out *o = ctx;
    if (ev->kind == TS_EVENT_TEXT) {
        ts_buf_append(&o->text, ev->text, ev->len);
    } else {
        o->done = true;
        o->n_gen = ev->n_gen;
        o->ttft_ms = ev->ttft_ms;
    }
}

typedef struct run_cfg {
    bool cache;
    int cascade;
} run_cfg;

typedef struct run_result {
    double decode_tok_s;
    double ttft_ms_first;     /* the first request (nothing cached yet) */
    double ttft_ms_cached;    /* a request arriving once the prefix is cached */
    uint64_t kv_bytes_peak, kv_bytes_shared_peak, hits, misses, cascade_steps;
    ts_fwd_times decode;      /* forward time split over the decode phase */
    uint64_t decode_steps;
    req_out *out;
    bool ok;
} run_result;

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static int32_t rnd_id(int vocab) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (int32_t)(rng_state % (uint64_t)(vocab < 32000 ? vocab : 32000));
}

static ts_engine *open_engine(const cli_args *a, run_cfg c) {
    ts_engine_opts o = cli_engine_opts(a);
    o.prefix_cache = c.cache;
    o.cascade = c.cascade;
    o.exact = true; /* batch-invariant arithmetic: outputs comparable across runs */
    o.max_running = 256;
    if (a->kv_mem) o.kv_bytes = ts_parse_size(a->kv_mem);
    ts_engine *e = NULL;
    ts_err err;
    if (ts_engine_create(a->model, &o, &e, &err)) fprintf(stderr, "error: %s\n", err.msg);
    return e;
}

/* Runs n requests (prompts[i] of len[i] ids): the first alone (it fills the
 * cache), then all others together, timing the decode-only phase. */
static run_result run(const cli_args *a, run_cfg c, int32_t **prompts, int len, int n, int gen) {
    run_result r = {0};
    ts_engine *e = open_engine(a, c);
    if (!e) return r;
    r.out = calloc((size_t)n, sizeof *r.out);
    ts_err err;
    ts_request q = ts_request_default();
    q.max_tokens = gen;
    q.ignore_eos = true;
    q.n_ids = (size_t)len;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        q.ids = prompts[i];
        ok = ts_engine_submit(e, &q, on_event, &r.out[i], NULL, &err) == TS_OK;
        if (i == 0) { /* the first request alone: prefix computed and cached */
            ok = ok && ts_engine_run(e, &err) == TS_OK;
            r.ttft_ms_first = r.out[0].ttft_ms;
        }
    }
    double t_decode = 0;
    int busy = 1;
    uint64_t gen0 = 0, steps0 = 0;
    ts_fwd *fwd = ts_engine_runtime(e)->fwd;
    while (ok && busy) {
        ts_engine_stats st;
        ts_engine_get_stats(e, &st);
        /* the decode phase starts once every request has its first token
         * (the first request's gen tokens plus one per other request) */
        if (!t_decode && st.generated_tokens >= (uint64_t)(gen + n - 1) && st.n_waiting == 0) {
            t_decode = ts_now_ms();
            gen0 = st.generated_tokens;
            steps0 = st.steps;
            ts_fwd_reset_times(fwd);
        }
        ok = ts_engine_step(e, &busy, &err) == TS_OK;
        ts_kv_stats ks;
        ts_kv_get_stats(ts_engine_runtime(e)->kv, &ks);
        if ((uint64_t)ks.n_used * ks.block_bytes > r.kv_bytes_peak) {
            r.kv_bytes_peak = (uint64_t)ks.n_used * ks.block_bytes;
            r.kv_bytes_shared_peak = ks.bytes_shared;
        }
    }
    ts_engine_stats st;
    ts_engine_get_stats(e, &st);
    if (ok && t_decode > 0) {
        r.decode_tok_s = (double)(st.generated_tokens - gen0) / ((ts_now_ms() - t_decode) / 1e3);
        r.decode = ts_fwd_get_times(fwd);
        r.decode_steps = st.steps - steps0;
    }
    r.hits = st.prefix_hits;
    r.misses = st.prefix_misses;
    r.cascade_steps = st.cascade_steps;
    r.ok = ok;
    if (!ok) fprintf(stderr, "error: %s\n", err.msg);
    /* a late arrival: the prefix is cached, nothing else runs */
    if (ok) {
        req_out late = {0};
        q.ids = prompts[n];
        ok = ts_engine_submit(e, &q, on_event, &late, NULL, &err) == TS_OK && ts_engine_run(e, &err) == TS_OK;
        r.ttft_ms_cached = late.ttft_ms;
        ts_buf_free(&late.text);
        r.ok = ok;
    }
    ts_engine_destroy(e);
    return r;
}

/* Per-step decode time: 0 total, 1 weights, 2 attention, 3 other. */
static double split(const run_result *r, int what) {
    if (!r->decode_steps) return 0;
    const ts_fwd_times *t = &r->decode;
    double v = what == 0 ? t->total_ms : what == 1 ? t->matmul_ms : what == 2 ? t->attention_ms
                                               : t->total_ms - t->matmul_ms - t->attention_ms;
    return v / (double)r->decode_steps;
}

static void free_run(run_result *r, int n) {
    for (int i = 0; r->out && i < n; i++) ts_buf_free(&r->out[i].text);
    free(r->out);
}

int cmd_bench_shared(cli_args *a) {
    int n = a->requests, P = a->prefix_len, S = a->suffix_len, G = a->bench_gen;
    if (n < 2) {
        fprintf(stderr, "error: --requests must be at least 2\n");
        return 2;
    }
    ts_engine *probe = open_engine(a, (run_cfg){true, -1});
    if (!probe) return 1;
    const ts_model_config *mc = &ts_engine_runtime(probe)->model->cfg;
    int vocab = mc->vocab, n_layers = mc->n_layers, kvh = mc->n_kv_heads, hd = mc->head_dim;
    ts_engine_destroy(probe);
    /* n + 1 prompts: shared prefix, own suffix (the last is the late arrival) */
    int32_t **prompts = calloc((size_t)n + 1, sizeof *prompts);
    int32_t *prefix = malloc((size_t)P * sizeof *prefix);
    for (int i = 0; i < P; i++) prefix[i] = rnd_id(vocab);
    for (int i = 0; i <= n; i++) {
        prompts[i] = malloc((size_t)(P + S) * sizeof **prompts);
        memcpy(prompts[i], prefix, (size_t)P * sizeof *prefix);
        for (int j = 0; j < S; j++) prompts[i][P + j] = rnd_id(vocab);
    }
    int n_cmp = n < 4 ? n : 4;
    run_result on = run(a, (run_cfg){true, 1}, prompts, P + S, n, G);
    run_result flat = run(a, (run_cfg){true, 0}, prompts, P + S, n, G);
    run_result off = run(a, (run_cfg){false, 0}, prompts, P + S, n_cmp, G);
    int rc = on.ok && flat.ok && off.ok ? 0 : 1;
    bool same = rc == 0;
    for (int i = 0; same && i < n_cmp; i++)
        same = on.out[i].text.len == off.out[i].text.len &&
               (!on.out[i].text.len || !memcmp(on.out[i].text.data, off.out[i].text.data, on.out[i].text.len)) &&
               on.out[i].n_gen == off.out[i].n_gen;
    for (int i = 0; same && i < n; i++)
        same = on.out[i].text.len == flat.out[i].text.len &&
               (!on.out[i].text.len || !memcmp(on.out[i].text.data, flat.out[i].text.data, on.out[i].text.len));
    uint64_t tok_bytes = 2ull * n_layers * kvh * hd * sizeof(float);
    uint64_t per_req = (uint64_t)(P + S + G);
    uint64_t unshared = (uint64_t)n * per_req * tok_bytes;
    uint64_t ideal = ((uint64_t)P + (uint64_t)n * (S + G)) * tok_bytes;
    if (!rc)
        printf("{\"requests\": %d, \"prefix\": %d, \"suffix\": %d, \"gen\": %d, "
               "\"ttft_ms_cached\": %.2f, \"ttft_ms_uncached\": %.2f, \"ttft_speedup\": %.1f, "
               "\"decode_tok_s_cascade\": %.2f, \"decode_tok_s_flat\": %.2f, \"cascade_speedup\": %.2f, "
               "\"kv_bytes_shared\": %llu, \"kv_bytes_used\": %llu, \"kv_bytes_unshared\": %llu, "
               "\"kv_bytes_ideal\": %llu, \"kv_used_over_ideal\": %.3f, \"prefix_hit_rate\": %.4f, "
               "\"cascade_steps\": %llu, \"outputs_identical\": %s, \"outputs_compared_all_off\": %d, "
               "\"decode_step_ms_cascade\": {\"total\": %.2f, \"weights\": %.2f, \"attention\": %.2f, \"other\": %.2f}, "
               "\"decode_step_ms_flat\": {\"total\": %.2f, \"weights\": %.2f, \"attention\": %.2f, \"other\": %.2f}, "
               "\"attention_speedup\": %.2f}\n",
               n, P, S, G, on.ttft_ms_cached, on.ttft_ms_first,
               on.ttft_ms_cached > 0 ? on.ttft_ms_first / on.ttft_ms_cached : 0.0, on.decode_tok_s,
               flat.decode_tok_s, flat.decode_tok_s > 0 ? on.decode_tok_s / flat.decode_tok_s : 0.0,
               (unsigned long long)on.kv_bytes_shared_peak, (unsigned long long)on.kv_bytes_peak,
               (unsigned long long)unshared, (unsigned long long)ideal,
               ideal ? (double)on.kv_bytes_peak / (double)ideal : 0.0,
               on.hits + on.misses ? (double)on.hits / (double)(on.hits + on.misses) : 0.0,
               (unsigned long long)on.cascade_steps, same ? "true" : "false", n_cmp,
               split(&on, 0), split(&on, 1), split(&on, 2), split(&on, 3), split(&flat, 0),
               split(&flat, 1), split(&flat, 2), split(&flat, 3),
               split(&on, 2) > 0 ? split(&flat, 2) / split(&on, 2) : 0.0);
    free_run(&on, n);
    free_run(&flat, n);
    free_run(&off, n_cmp);
    for (int i = 0; i <= n; i++) free(prompts[i]);
    free(prompts);
    free(prefix);
    return rc;
}
