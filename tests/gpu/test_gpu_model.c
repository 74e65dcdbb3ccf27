/* The whole model on the GPU (ts_runtime with device "cuda"), against the
 * Hugging Face float64 references in $TS_SHARED/golden (same checks and
 * bounds as tests/golden/test_model_golden.c: top-5 and last-position logits,
 * hidden states layer by layer, greedy decoding through the KV cache, the
 * 1000-token prompt, batched = single), plus:
 * - cascade attention on the device (sequences sharing prefix blocks, merged
 *   by the CUDA merge kernel) equals recomputing each sequence alone;
 * - facts-qwen3-14m: reference logits, and greedy tokens identical to the
 *   CPU runtime's for 48 steps from each reference prompt;
 * - chunk capture (pre-RoPE K/V downloaded) equals the CPU's; the host-array
 *   ops (rt->ops: rope, kv_write used by chunk placement) match the CPU;
 * - a missing GPU gives an error, not a crash.
 * Needs a GPU; run by tests/gpu/run.sh. */
#include <jansson.h>
#include <string.h>

#include "engine/runtime.h"
#include "engine/seq.h"
#include "test.h"

static float *read_f32(const char *dir, const char *name, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name ? name : "");
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

static ts_runtime *open_rt(const char *dir, const char *device) {
    ts_runtime_opts o = ts_runtime_opts_default();
    o.n_threads = 2;
    o.fast_prefill = false;
    o.kv_bytes = 64u << 20;
    o.device = device;
    ts_runtime *rt = NULL;
    ts_err err;
    if (ts_runtime_open(dir, &o, &rt, &err)) {
        fprintf(stderr, "cannot open %s on %s: %s\n", dir, device, err.msg);
        return NULL;
    }
    return rt;
}

/* Logits of the last n_logits of ids[n] after n_past cached slots of seq. */
static float *run(ts_runtime *rt, ts_seq *seq, const int32_t *ids, int n, int n_logits) {
    ts_err err;
    size_t V = (size_t)rt->model->cfg.vocab;
    int past = seq->n_tokens;
    if (ts_seq_reserve(seq, rt->kv, past + n, &err)) return NULL;
    ts_fwd_seq fs = {.tokens = ids, .n = n, .n_past = past, .blocks = seq->blocks,
                     .n_logits = n_logits};
    const float *lg;
    if (ts_fwd_run(rt->fwd, &fs, 1, &lg, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return NULL;
    }
    if (ts_seq_push(seq, ids, n, &err)) return NULL;
    float *out = malloc((size_t)n_logits * V * sizeof *out);
    if (out) memcpy(out, lg, (size_t)n_logits * V * sizeof *out);
    return out;
}

static float *all_logits(ts_runtime *rt, const int32_t *ids, int n) {
    ts_seq seq = {0};
    float *out = run(rt, &seq, ids, n, n);
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    return out;
}

static int32_t argmax(const float *row, size_t V) {
    size_t am = 0;
    for (size_t v = 1; v < V; v++)
        if (row[v] > row[am]) am = v;
    return (int32_t)am;
}

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
            double e = fabs(row[id] - json_real_value(json_array_get(tl, k))) / scale;
            if (e > max_err) max_err = e;
            if (e > 1e-4) bad_val++;
        }
        double gap = json_real_value(json_array_get(tl, 0)) - json_real_value(json_array_get(tl, 1));
        if (argmax(row, V) != json_integer_value(json_array_get(ti, 0)) && gap > 1e-3) bad_arg++;
    }
    CHECKF(bad_val == 0, "%s: %d top-5 logits off by > 1e-4 (max rel %.3g)", tag, bad_val, max_err);
    CHECKF(bad_arg == 0, "%s: argmax differs at %d positions", tag, bad_arg);
}

typedef struct hidden_ctx {
    const char *dir;
    int n_layers, checked;
    double worst;
} hidden_ctx;

static void on_layer(void *ctx, int layer, const float *x, int n_tok, int hidden) {
    hidden_ctx *h = ctx;
    if (layer == h->n_layers) return;
    int file_l = layer == h->n_layers + 1 ? h->n_layers : layer;
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

/* Sequences B and C share A's first `share` slots (whole blocks); with
 * cascade forced on, their logits equal computing each alone. */
static void check_cascade(ts_runtime *rt, const int32_t *ids, int n) {
    int bs = rt->kv->block_size, share = 2 * bs, own = 7;
    if (n < share + 2 * own) return;
    size_t V = (size_t)rt->model->cfg.vocab;
    ts_err err;
    ts_seq a = {0}, s[2] = {{0}, {0}};
    float *fa = run(rt, &a, ids, share, 1); /* fills the shared blocks */
    CHECK(fa != NULL);
    free(fa);
    ts_fwd_seq fs[2];
    bool ok = true;
    for (int i = 0; i < 2; i++) { /* share a's first two blocks, then own blocks */
        ok = ok && !ts_seq_reserve(&s[i], rt->kv, share + own, &err);
        for (int b = 0; ok && b < 2; b++) {
            ts_kv_release(rt->kv, s[i].blocks[b]);
            s[i].blocks[b] = a.blocks[b];
            ok = ts_kv_ref(rt->kv, a.blocks[b]);
        }
        fs[i] = (ts_fwd_seq){.tokens = ids + share + i * own, .n = own, .n_past = share,
                             .blocks = s[i].blocks, .n_logits = own};
    }
    CHECK(ok);
    ts_fwd_set_cascade(rt->fwd, 1);
    const float *lg = NULL;
    ts_status st = ok ? ts_fwd_run(rt->fwd, fs, 2, &lg, &err) : TS_ERR_INVALID;
    CHECKF(!st && ts_fwd_used_cascade(rt->fwd), "cascade batch ran (%s)", st ? err.msg : "");
    float *got = st ? NULL : malloc(2 * own * V * sizeof *got);
    if (got) memcpy(got, lg, 2 * own * V * sizeof *got);
    ts_fwd_set_cascade(rt->fwd, 0);
    for (int i = 0; i < 2; i++) {
        ts_seq_reset(&s[i], rt->kv);
        ts_seq_free(&s[i]);
    }
    ts_seq_reset(&a, rt->kv);
    ts_seq_free(&a);
    for (int i = 0; got && i < 2; i++) { /* each alone: shared prefix + own tokens, flat */
        int32_t *alone = malloc((size_t)(share + own) * sizeof *alone);
        memcpy(alone, ids, (size_t)share * sizeof *alone);
        memcpy(alone + share, ids + share + i * own, (size_t)own * sizeof *alone);
        float *ref = all_logits(rt, alone, share + own);
        double e = ref ? ts_test_rel_err(got + (size_t)i * own * V, ref + (size_t)share * V,
                                         (size_t)own * V)
                       : 1;
        CHECKF(e < 1e-5, "%s: cascade seq %d vs alone rel err %.3g", rt->model->dir, i, e);
        free(ref);
        free(alone);
    }
    free(got);
}

static void check_model(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    ts_runtime *rt = ref ? open_rt(dir, "cuda") : NULL;
    CHECKF(ref && rt, "open %s (reference and cuda runtime)", dir);
    if (!ref || !rt) {
        json_decref(ref);
        ts_runtime_close(rt);
        return;
    }
    size_t V = (size_t)rt->model->cfg.vocab;
    json_t *prompts = json_object_get(ref, "prompts");
    size_t n_prompts = json_array_size(prompts);
    CHECK(n_prompts > 0);
    double worst_last = 0;
    for (size_t i = 0; i < n_prompts; i++) {
        json_t *pr = json_array_get(prompts, i);
        int n;
        int32_t *ids = json_ids(json_object_get(pr, "ids"), &n);
        hidden_ctx hc = {.dir = dir, .n_layers = rt->model->cfg.n_layers};
        if (i == 0) ts_fwd_set_hook(rt->fwd, on_layer, &hc);
        float *lg = all_logits(rt, ids, n);
        ts_fwd_set_hook(rt->fwd, NULL, NULL);
        CHECKF(lg != NULL, "%s prompt %zu forward", dir, i);
        if (!lg) {
            free(ids);
            continue;
        }
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
        /* greedy through the KV cache, one token per step */
        json_t *greedy = json_object_get(pr, "greedy_ids");
        json_t *margin = json_object_get(pr, "greedy_top1_top2_margin");
        ts_seq seq = {0};
        float *l2 = run(rt, &seq, ids, n, 1);
        int agree = 0, expect = 0;
        for (size_t k = 0; l2 && k < json_array_size(greedy); k++) {
            if (json_real_value(json_array_get(margin, k)) < 1e-2) break;
            expect++;
            int32_t am = argmax(l2, V);
            if (am != json_integer_value(json_array_get(greedy, k))) break;
            agree++;
            free(l2);
            l2 = run(rt, &seq, &am, 1, 1);
        }
        CHECKF(l2 && agree == expect, "%s: greedy agrees for %d of %d steps", tag, agree, expect);
        free(l2);
        ts_seq_reset(&seq, rt->kv);
        ts_seq_free(&seq);
        if (i == 0) check_cascade(rt, ids, n);
        free(ids);
    }
    json_t *lp = json_object_get(ref, "long_prompt");
    if (lp) {
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
            if (e > worst_last) worst_last = e;
            free(last);
            /* check_cascade needs a prompt longer than the short ones */
            check_cascade(rt, ids, n);
        }
        free(lg);
        free(ids);
    }
    { /* batched: every prompt in one call equals each alone */
        int n_seq = (int)n_prompts, total = 0;
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
            total += n;
        }
        const float *lg = NULL;
        if (!s) s = ts_fwd_run(rt->fwd, fs, n_seq, &lg, &err);
        CHECKF(!s, "batched forward: %s", s ? err.msg : "");
        float *batched = s ? NULL : malloc((size_t)total * V * sizeof *batched);
        if (batched) memcpy(batched, lg, (size_t)total * V * sizeof *batched);
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
    printf("%s [%s on %s]: worst last-logits rel err %.3g\n", dir, rt->ops->name,
           ts_runtime_device_name(rt), worst_last);
    ts_runtime_close(rt);
    json_decref(ref);
}

/* Pre-RoPE K/V capture of rows [2, 9) of ids: GPU equals CPU. */
static void check_capture(ts_runtime *cpu, ts_runtime *gpu, const int32_t *ids, int n) {
    const ts_model_config *c = &cpu->model->cfg;
    int r0 = 2, nr = 7;
    if (n < r0 + nr) return;
    size_t per = (size_t)c->n_layers * nr * c->n_kv_heads * c->head_dim;
    float *k[2], *v[2];
    ts_runtime *rts[2] = {cpu, gpu};
    for (int i = 0; i < 2; i++) {
        k[i] = malloc(per * sizeof(float));
        v[i] = malloc(per * sizeof(float));
        for (size_t j = 0; j < per; j++) k[i][j] = v[i][j] = NAN;
        ts_fwd_set_capture(rts[i]->fwd, r0, nr, k[i], v[i]);
        free(all_logits(rts[i], ids, n));
        ts_fwd_set_capture(rts[i]->fwd, 0, 0, NULL, NULL);
    }
    double ek = ts_test_rel_err(k[1], k[0], per), ev = ts_test_rel_err(v[1], v[0], per);
    CHECKF(ek < 1e-5 && ev < 1e-5, "capture: K rel err %.3g, V %.3g", ek, ev);
    for (int i = 0; i < 2; i++) {
        free(k[i]);
        free(v[i]);
    }
}

/* rt->ops on the GPU takes host rows for rope and kv_write (chunk placement):
 * rope equals the CPU's; what kv_write stores reads back unchanged. */
static void check_host_ops(ts_runtime *cpu, ts_runtime *gpu) {
    const ts_model_config *c = &gpu->model->cfg;
    int n = 37, kvd = c->n_kv_heads * c->head_dim, bs = gpu->kv->block_size;
    size_t nn = (size_t)n * kvd;
    float *x = malloc(nn * 4), *y = malloc(nn * 4), *kv = malloc(nn * 4);
    int32_t *pos = malloc((size_t)n * 4), *slot = malloc((size_t)n * 4);
    uint64_t r = 12345;
    for (size_t i = 0; i < nn; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = y[i] = (float)((r >> 11) % 2000) / 1000.0f - 1.0f;
    }
    for (int i = 0; i < n; i++) pos[i] = 3 * i + 100, slot[i] = i; /* blocks 0.. of the pool */
    const ts_ops *g = gpu->ops, *h = cpu->ops;
    g->rope(g->ctx, x, pos, n, c->n_kv_heads, c->head_dim, gpu->model->inv_freq);
    h->rope(h->ctx, y, pos, n, c->n_kv_heads, c->head_dim, cpu->model->inv_freq);
    double e = ts_test_rel_err(x, y, nn);
    CHECKF(e < 1e-5, "host-array rope on the GPU vs CPU: rel err %.3g", e);
    g->kv_write(g->ctx, gpu->kv->k[0], gpu->kv->v[0], TS_DT_F32, x, y, slot, n, c->n_kv_heads,
                c->head_dim, bs);
    /* slot i of KV head hh sits at [block][hh][row][hd] */
    size_t blk = (size_t)c->n_kv_heads * bs * c->head_dim;
    size_t nblk = (size_t)(n + bs - 1) / bs;
    float *pool = malloc(nblk * blk * 4);
    ts_err err;
    CHECK(gpu->dev_ops->download(gpu->dev_ops->ctx, pool, gpu->kv->k[0], nblk * blk * 4, &err) == TS_OK);
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int hh = 0; hh < c->n_kv_heads; hh++)
            for (int d = 0; d < c->head_dim; d++) {
                float got = pool[(size_t)(i / bs) * blk +
                                 ((size_t)hh * bs + (size_t)(i % bs)) * c->head_dim + d];
                if (got != x[(size_t)i * kvd + (size_t)hh * c->head_dim + d]) bad++;
            }
    CHECKF(bad == 0, "host-array kv_write: %d values differ", bad);
    free(pool);
    free(x), free(y), free(kv), free(pos), free(slot);
}

static void check_facts(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    ts_runtime *gpu = ref ? open_rt(dir, "cuda") : NULL, *cpu = gpu ? open_rt(dir, "cpu") : NULL;
    CHECKF(ref && gpu && cpu, "open %s", dir);
    size_t V = gpu ? (size_t)gpu->model->cfg.vocab : 0;
    int same = 0, steps = 0;
    double worst = 0;
    for (size_t i = 0; cpu && i < json_array_size(ref); i++) {
        json_t *c = json_array_get(ref, i);
        int n;
        int32_t *ids = json_ids(json_object_get(c, "ids"), &n);
        float *lg = all_logits(gpu, ids, n);
        float *want = read_f32(dir, json_string_value(json_object_get(c, "file")), V);
        CHECKF(lg && want, "facts case %zu", i);
        if (lg && want) {
            const float *last = lg + (size_t)(n - 1) * V;
            double e = ts_test_rel_err(last, want, V);
            CHECKF(e < 1e-4, "facts case %zu: rel err %.3g", i, e);
            CHECKF(argmax(last, V) == json_integer_value(json_object_get(c, "argmax")),
                   "facts case %zu: argmax %d", i, (int)argmax(last, V));
        }
        free(lg);
        free(want);
        if (i == 0) check_capture(cpu, gpu, ids, n);
        /* greedy, 48 steps, on both devices */
        ts_seq sc = {0}, sg = {0};
        float *lc = run(cpu, &sc, ids, n, 1), *lgp = run(gpu, &sg, ids, n, 1);
        bool diverged = false;
        for (int k = 0; lc && lgp && k < 48; k++) {
            double e = ts_test_rel_err(lgp, lc, V);
            if (e > worst) worst = e;
            int32_t tc = argmax(lc, V), tg = argmax(lgp, V);
            steps++;
            if (tc != tg) {
                diverged = true;
                break;
            }
            same++;
            free(lc);
            free(lgp);
            lc = run(cpu, &sc, &tc, 1, 1);
            lgp = run(gpu, &sg, &tg, 1, 1);
        }
        CHECKF(lc && lgp && !diverged, "facts case %zu: greedy GPU tokens differ from the CPU's", i);
        free(lc);
        free(lgp);
        ts_seq_reset(&sc, cpu->kv);
        ts_seq_free(&sc);
        ts_seq_reset(&sg, gpu->kv);
        ts_seq_free(&sg);
        free(ids);
    }
    if (cpu) check_host_ops(cpu, gpu);
    printf("facts-qwen3-14m: greedy GPU = CPU for %d of %d steps; worst step logits rel err %.3g\n",
           same, steps, worst);
    ts_runtime_close(gpu);
    ts_runtime_close(cpu);
    json_decref(ref);
}

int main(void) {
    char q[512], l[512], f[512];
    snprintf(q, sizeof q, "%s/golden/qwen3-tiny-random", ts_test_shared());
    snprintf(l, sizeof l, "%s/golden/llama3-tiny-random", ts_test_shared());
    snprintf(f, sizeof f, "%s/models/facts-qwen3-14m", ts_test_shared());
    const char *only = getenv("TS_GPU_MODELS"); /* any of "qwen3 llama3 facts"; unset: all */
    if (!only || strstr(only, "qwen3")) check_model(q);
    if (!only || strstr(only, "llama3")) check_model(l);
    if (!only || strstr(only, "facts")) check_facts(f);
    { /* a GPU that is not there: an error, not a crash */
        ts_runtime_opts o = ts_runtime_opts_default();
        o.device = "cuda:99";
        ts_runtime *rt = NULL;
        ts_err err;
        ts_status s = ts_runtime_open(f, &o, &rt, &err);
        CHECKF(s == TS_ERR_UNSUPPORTED && rt == NULL && strstr(err.msg, "cuda:99"),
               "cuda:99: status %d (%s)", (int)s, s ? err.msg : "");
        ts_runtime_close(rt);
    }
    return ts_test_done("test_gpu_model");
}
