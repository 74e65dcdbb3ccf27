/* The forward pass against Hugging Face float64 references
 * (../shared/golden/<model>/reference.json): per-position top-5, last-position
 * logits, hidden states layer by layer, greedy decoding through the KV cache,
 * the 1000-token prompt, batched = single, and facts-qwen3-14m's logits. */
#include <jansson.h>
#include <string.h>

#include "engine/runtime.h"
#include "engine/seq.h"
#include "test.h"

static float *read_f32(const char *dir, const char *name, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = malloc(n * sizeof *v);
    size_t got = v ? fread(v, sizeof *v, n, f) : 0;
    fclose(f);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

static int32_t *json_ids(json_t *arr, int *n) {
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof *ids);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

static ts_runtime *open_rt(const char *dir, ts_cpu_isa isa) {
    ts_runtime_opts o = ts_runtime_opts_default();
    o.n_threads = 2;
    o.isa = isa;
    o.fast_prefill = false;
    o.kv_bytes = 64u << 20;
    ts_runtime *rt = NULL;
    ts_err err;
    if (ts_runtime_open(dir, &o, &rt, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", dir, err.msg);
        return NULL;
    }
    return rt;
}

/* All-position logits of ids in a fresh sequence; caller frees. */
static float *all_logits(ts_runtime *rt, const int32_t *ids, int n) {
    ts_seq seq = {0};
    ts_err err;
    float *out = NULL;
    size_t V = (size_t)rt->model->cfg.vocab;
    if (!ts_seq_reserve(&seq, rt->kv, n, &err)) {
        ts_fwd_seq fs = {.tokens = ids, .n = n, .n_past = 0, .blocks = seq.blocks, .n_logits = n};
        const float *lg;
        if (!ts_fwd_run(rt->fwd, &fs, 1, &lg, &err)) {
            out = malloc((size_t)n * V * sizeof *out);
            memcpy(out, lg, (size_t)n * V * sizeof *out);
        } else {
            fprintf(stderr, "forward: %s\n", err.msg);
        }
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    return out;
}

/* Checks per-position top-5: our logits at the reference's top-5 ids agree,
 * and our argmax is the reference's unless its top-2 are within 1e-3. */
static void check_top5(const char *tag, const float *logits, int n, size_t V, json_t *top_ids,
                       json_t *top_logits) {
    int bad_val = 0, bad_arg = 0;
    double max_err = 0;
    for (int p = 0; p < n; p++) {
        const float *row = logits + (size_t)p * V;
        json_t *ti = json_array_get(top_ids, (size_t)p), *tl = json_array_get(top_logits, (size_t)p);
        double scale = fabs(json_real_value(json_array_get(tl, 0))) + 1e-9;
        for (size_t k = 0; k < json_array_size(ti); k++) {
            long id = (long)json_integer_value(json_array_get(ti, k));
            double ref = json_real_value(json_array_get(tl, k));
            double e = fabs(row[id] - ref) / scale;
            if (e > max_err) max_err = e;
            if (e > 1e-4) bad_val++;
        }
        size_t am = 0;
        for (size_t v = 1; v < V; v++)
            if (row[v] > row[am]) am = v;
        long ref0 = (long)json_integer_value(json_array_get(ti, 0));
        double gap = json_real_value(json_array_get(tl, 0)) - json_real_value(json_array_get(tl, 1));
        if ((long)am != ref0 && gap > 1e-3) bad_arg++;
    }
    CHECKF(bad_val == 0, "%s: %d top-5 logits off by > 1e-4 (max rel %.3g)", tag, bad_val, max_err);
    CHECKF(bad_arg == 0, "%s: argmax differs at %d positions", tag, bad_arg);
}

typedef struct hidden_ctx {
    const char *dir;
    int n_layers, n_tok;
    double worst;
    int checked;
} hidden_ctx;

/* HF's hidden_states: [0] embeddings, [l] after layer l, the last after the
 * final norm; our hook calls n_layers+1 for the post-norm stream. */
static void on_layer(void *ctx, int layer, const float *x, int n_tok, int hidden) {
    hidden_ctx *h = ctx;
    int file_l = layer;
    if (layer == h->n_layers) return;          /* pre-norm last layer: no file */
    if (layer == h->n_layers + 1) file_l = h->n_layers;
    char name[64];
    snprintf(name, sizeof name, "hidden_0_layer%d.f32", file_l);
    float *ref = read_f32(h->dir, name, (size_t)n_tok * hidden);
    if (!ref) return;
    double e = ts_test_rel_err(x, ref, (size_t)n_tok * hidden);
    CHECKF(e < 1e-4, "%s: %s rel err %.3g", h->dir, name, e);
    if (e > h->worst) h->worst = e;
    h->checked++;
    free(ref);
}

static void check_model(const char *dir, ts_cpu_isa isa) {
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    CHECKF(ref != NULL, "cannot read %s", path);
    ts_runtime *rt = open_rt(dir, isa);
    CHECKF(rt != NULL, "open %s", dir);
    if (!ref || !rt) {
        json_decref(ref);
        ts_runtime_close(rt);
        return;
    }
    size_t V = (size_t)rt->model->cfg.vocab;
    json_t *prompts = json_object_get(ref, "prompts");
    bool light = getenv("TS_TEST_LIGHT") != NULL;
    size_t n_prompts = json_array_size(prompts);
    CHECK(n_prompts > 0);
    double worst_last = 0;
    for (size_t i = 0; i < n_prompts; i++) {
        json_t *pr = json_array_get(prompts, i);
        int n;
        int32_t *ids = json_ids(json_object_get(pr, "ids"), &n);
        hidden_ctx hc = {.dir = dir, .n_layers = rt->model->cfg.n_layers, .n_tok = n};
        if (i == 0) ts_fwd_set_hook(rt->fwd, on_layer, &hc);
        float *lg = all_logits(rt, ids, n);
        ts_fwd_set_hook(rt->fwd, NULL, NULL);
        CHECKF(lg != NULL, "%s prompt %zu forward", dir, i);
        if (!lg) { free(ids); continue; }
        if (i == 0) CHECKF(hc.checked == rt->model->cfg.n_layers + 1, "%s: %d hidden files", dir, hc.checked);
        char tag[1200];
        snprintf(tag, sizeof tag, "%s[%s] prompt %zu", dir, rt->ops->name, i);
        check_top5(tag, lg, n, V, json_object_get(pr, "top5_ids"), json_object_get(pr, "top5_logits"));
        float *last = read_f32(dir, json_string_value(json_object_get(pr, "last_logits_file")), V);
        CHECKF(last != NULL, "%s: last logits file", tag);
        if (last) {
            double e = ts_test_rel_err(lg + (size_t)(n - 1) * V, last, V);
            CHECKF(e < 1e-4, "%s: last logits rel err %.3g", tag, e);
            if (e > worst_last) worst_last = e;
        }
        free(last);
        free(lg);
        /* greedy through the KV cache: prefill, then one token per step */
        json_t *greedy = json_object_get(pr, "greedy_ids"), *margin = json_object_get(pr, "greedy_top1_top2_margin");
        int n_steps = (int)json_array_size(greedy);
        if (light && i > 1) n_steps = 0;
        ts_seq seq = {0};
        ts_err err;
        int agree = 0, expect = 0;
        const float *l2 = NULL;
        ts_status s = ts_seq_reserve(&seq, rt->kv, n + n_steps, &err);
        if (!s && n_steps) {
            ts_fwd_seq fs = {.tokens = ids, .n = n, .blocks = seq.blocks, .n_logits = 1};
            s = ts_fwd_run(rt->fwd, &fs, 1, &l2, &err);
        }
        int past = n;
        for (int k = 0; !s && k < n_steps; k++) {
            if (json_real_value(json_array_get(margin, (size_t)k)) < 1e-2) break;
            expect++;
            int32_t am = 0;
            for (int32_t v = 1; v < (int32_t)V; v++)
                if (l2[v] > l2[am]) am = v;
            if (am != json_integer_value(json_array_get(greedy, (size_t)k))) break;
            agree++;
            ts_fwd_seq fs = {.tokens = &am, .n = 1, .n_past = past++, .blocks = seq.blocks, .n_logits = 1};
            s = ts_fwd_run(rt->fwd, &fs, 1, &l2, &err);
        }
        CHECKF(!s && agree == expect, "%s: greedy agrees for %d of %d steps", tag, agree, expect);
        ts_seq_reset(&seq, rt->kv);
        ts_seq_free(&seq);
        free(ids);
    }
    /* the 1000-token prompt (skipped in the light run for the scalar ISA) */
    json_t *lp = json_object_get(ref, "long_prompt");
    if (lp && !(light && isa == TS_ISA_SCALAR)) {
        int n;
        int32_t *ids = json_ids(json_object_get(lp, "ids"), &n);
        float *lg = all_logits(rt, ids, n);
        CHECKF(lg != NULL, "%s long prompt forward", dir);
        if (lg) {
            char tag[1100];
            snprintf(tag, sizeof tag, "%s[%s] long", dir, rt->ops->name);
            check_top5(tag, lg, n, V, json_object_get(lp, "top5_ids"), json_object_get(lp, "top5_logits"));
            float *last = read_f32(dir, json_string_value(json_object_get(lp, "last_logits_file")), V);
            double e = last ? ts_test_rel_err(lg + (size_t)(n - 1) * V, last, V) : 1;
            CHECKF(e < 1e-4, "%s: last logits rel err %.3g", tag, e);
            free(last);
            free(lg);
        }
        free(ids);
    }
    /* batched: every prompt in one forward call equals each alone */
    {
        int n_seq = (int)n_prompts, total_logits = 0;
        ts_fwd_seq *fs = calloc((size_t)n_seq, sizeof *fs);
        ts_seq *seqs = calloc((size_t)n_seq, sizeof *seqs);
        int32_t **idv = calloc((size_t)n_seq, sizeof *idv);
        ts_err err;
        ts_status s = TS_OK;
        for (int i = 0; i < n_seq && !s; i++) {
            int n;
            idv[i] = json_ids(json_object_get(json_array_get(prompts, (size_t)i), "ids"), &n);
            s = ts_seq_reserve(&seqs[i], rt->kv, n, &err);
            fs[i] = (ts_fwd_seq){.tokens = idv[i], .n = n, .blocks = seqs[i].blocks, .n_logits = n};
            total_logits += n;
        }
        const float *lg = NULL;
        if (!s) s = ts_fwd_run(rt->fwd, fs, n_seq, &lg, &err);
        CHECKF(!s, "batched forward: %s", s ? err.msg : "");
        float *batched = s ? NULL : malloc((size_t)total_logits * V * sizeof *batched);
        if (batched) memcpy(batched, lg, (size_t)total_logits * V * sizeof *batched);
        for (int i = 0; i < n_seq; i++) {
            ts_seq_reset(&seqs[i], rt->kv);
            ts_seq_free(&seqs[i]);
        }
        size_t off = 0;
        double worst = 0;
        for (int i = 0; batched && i < n_seq; i++) {
            float *single = all_logits(rt, idv[i], fs[i].n);
            double e = single ? ts_test_rel_err(batched + off, single, (size_t)fs[i].n * V) : 1;
            if (e > worst) worst = e;
            off += (size_t)fs[i].n * V;
            free(single);
        }
        CHECKF(worst < 1e-5, "%s: batched vs single rel err %.3g", dir, worst);
        for (int i = 0; i < n_seq; i++) free(idv[i]);
        free(idv);
        free(seqs);
        free(fs);
        free(batched);
    }
    printf("%s [%s]: worst last-logits rel err %.3g\n", dir, rt->ops->name, worst_last);
    ts_runtime_close(rt);
    json_decref(ref);
}

static void check_facts(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    ts_runtime *rt = open_rt(dir, TS_ISA_AUTO);
    CHECKF(ref && rt, "open %s", dir);
    size_t V = rt ? (size_t)rt->model->cfg.vocab : 0;
    for (size_t i = 0; ref && rt && i < json_array_size(ref); i++) {
        json_t *c = json_array_get(ref, i);
        int n;
        int32_t *ids = json_ids(json_object_get(c, "ids"), &n);
        float *lg = all_logits(rt, ids, n);
        float *want = read_f32(dir, json_string_value(json_object_get(c, "file")), V);
        CHECKF(lg && want, "facts case %zu", i);
        if (lg && want) {
            const float *last = lg + (size_t)(n - 1) * V;
            double e = ts_test_rel_err(last, want, V);
            CHECKF(e < 1e-4, "facts case %zu: rel err %.3g", i, e);
            size_t am = 0;
            for (size_t v = 1; v < V; v++)
                if (last[v] > last[am]) am = v;
            CHECKF((long)am == (long)json_integer_value(json_object_get(c, "argmax")),
                   "facts case %zu: argmax %zu", i, am);
        }
        free(lg);
        free(want);
        free(ids);
    }
    ts_runtime_close(rt);
    json_decref(ref);
}

int main(void) {
    char q[512], l[512], f[512];
    snprintf(q, sizeof q, "%s/golden/qwen3-tiny-random", ts_test_shared());
    snprintf(l, sizeof l, "%s/golden/llama3-tiny-random", ts_test_shared());
    snprintf(f, sizeof f, "%s/models/facts-qwen3-14m", ts_test_shared());
    ts_cpu_isa best = ts_cpu_isa_detect();
    check_model(q, best);
    check_model(l, best);
    check_model(q, TS_ISA_SCALAR);
    if (best == TS_ISA_AVX512) check_model(l, TS_ISA_AVX2);
    check_facts(f);
    return ts_test_done("test_model_golden");
}
