/* bench-batch: the offline-throughput workload of nano-vllm's bench.py:
 * N requests of random token ids (uniform in [0, 10000), or [0, vocab) for a
 * smaller vocabulary), input lengths
 * uniform in [in-min, in-max], output lengths uniform in [out-min, out-max]
 * generated to the end (ignore_eos), all submitted at once and run by the
 * engine's continuous batching. Prints one JSON object; --out FILE also
 * writes the workload (each request's ids and output length) as JSON so that
 * another engine can run exactly the same requests. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct req_out {
    int n_gen;
    double ttft_ms;
    bool done, failed;
} req_out;

static void on_event(void *ctx, const ts_event *ev) {
    req_out *o = ctx;
    if (ev->kind != TS_EVENT_DONE) return;
    o->done = true;
    o->failed = ev->status != TS_OK;
    o->n_gen = ev->n_gen;
    o->ttft_ms = ev->ttft_ms;
}

/* splitmix64: the workload depends on the seed alone */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int uniform(uint64_t *s, int lo, int hi) { return lo + (int)(next_u64(s) % (uint64_t)(hi - lo + 1)); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static bool write_workload(const char *path, int32_t **ids, const int *in_len, const int *out_len,
                           int n) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        json_t *r = json_object(), *p = json_array();
        for (int j = 0; r && p && j < in_len[i]; j++) json_array_append_new(p, json_integer(ids[i][j]));
        json_object_set_new(r, "prompt_ids", p);
        json_object_set_new(r, "max_tokens", json_integer(out_len[i]));
        json_array_append_new(arr, r);
    }
    bool ok = arr && json_dump_file(arr, path, JSON_COMPACT) == 0;
    json_decref(arr);
    return ok;
}

int cmd_bench_batch(cli_args *a) {
    int n = a->requests;
    if (a->in_min < 1 || a->in_min > a->in_max || a->out_min < 1 || a->out_min > a->out_max) {
        fprintf(stderr, "error: need 1 <= --in-min <= --in-max and 1 <= --out-min <= --out-max\n");
        return 2;
    }
    uint64_t s = a->sample.seed ? a->sample.seed : 0;
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    int *in_len = calloc((size_t)n, sizeof *in_len), *out_len = calloc((size_t)n, sizeof *out_len);
    req_out *out = calloc((size_t)n, sizeof *out);
    double *ttft = calloc((size_t)n, sizeof *ttft);
    int rc = 1;
    ts_engine *e = NULL;
    ts_err err;
    if (!ids || !in_len || !out_len || !out || !ttft) goto done;
    ts_engine_opts o = cli_engine_opts(a);
    o.max_running = 512;
    if (a->kv_mem) o.kv_bytes = ts_parse_size(a->kv_mem);
    if (ts_engine_create(a->model, &o, &e, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto done;
    }
    int id_range = ts_engine_runtime(e)->model->cfg.vocab < 10000
                       ? ts_engine_runtime(e)->model->cfg.vocab : 10000;
    long in_total = 0, out_total = 0;
    for (int i = 0; i < n; i++) {
        in_len[i] = uniform(&s, a->in_min, a->in_max);
        out_len[i] = uniform(&s, a->out_min, a->out_max);
        if (!(ids[i] = malloc((size_t)in_len[i] * sizeof **ids))) goto done;
        for (int j = 0; j < in_len[i]; j++) ids[i][j] = (int32_t)(next_u64(&s) % (uint64_t)id_range);
        in_total += in_len[i];
        out_total += out_len[i];
    }
    if (a->out && !write_workload(a->out, ids, in_len, out_len, n)) {
        fprintf(stderr, "error: cannot write the workload to %s\n", a->out);
        goto done;
    }
    double t0 = ts_now_ms();
    ts_request q = ts_request_default();
    q.sample = a->sample;
    q.ignore_eos = true;
    for (int i = 0; i < n; i++) {
        q.ids = ids[i];
        q.n_ids = (size_t)in_len[i];
        q.max_tokens = out_len[i];
        if (ts_engine_submit(e, &q, on_event, &out[i], NULL, &err)) {
            fprintf(stderr, "error: request %d: %s\n", i, err.msg);
            goto done;
        }
    }
    int busy = 1, peak = 0;
    while (busy) {
        if (ts_engine_step(e, &busy, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            goto done;
        }
        ts_engine_stats st;
        ts_engine_get_stats(e, &st);
        if (st.n_running > peak) peak = st.n_running;
    }
    double secs = (ts_now_ms() - t0) / 1e3;
    long gen = 0;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        gen += out[i].n_gen;
        failed += !out[i].done || out[i].failed;
        ttft[i] = out[i].ttft_ms;
    }
    qsort(ttft, (size_t)n, sizeof *ttft, cmp_double);
    double ttft_sum = 0;
    for (int i = 0; i < n; i++) ttft_sum += ttft[i];
    ts_engine_stats st;
    ts_engine_get_stats(e, &st);
    printf("{\"requests\": %d, \"failed\": %d, \"prompt_tokens\": %ld, \"output_tokens\": %ld, "
           "\"output_tokens_requested\": %ld, \"seconds\": %.3f, \"output_tok_s\": %.1f, "
           "\"total_tok_s\": %.1f, \"ttft_ms_mean\": %.1f, \"ttft_ms_p50\": %.1f, "
           "\"peak_running\": %d, \"steps\": %llu, \"preemptions\": %llu, \"device\": \"%s\"}\n",
           n, failed, in_total, gen, out_total, secs, gen / secs, (in_total + gen) / secs,
           ttft_sum / n, ttft[n / 2], peak, (unsigned long long)st.steps,
           (unsigned long long)st.preemptions, a->device ? a->device : "cpu");
    rc = failed ? 1 : 0;
done:
    ts_engine_destroy(e);
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    free(ids), free(in_len), free(out_len), free(out), free(ttft);
    return rc;
}
