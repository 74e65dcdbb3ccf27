/* The engine against single-request full recompute: batched, chunked,
 * prefix-cached (and cascade) runs with random interleavings of submit,
 * cancel and preemption give the same greedy text as each request alone
 * with caching off; the pool ends with no leaked block; submitting from
 * another thread while one thread steps is safe. */
#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "kv/kv.h"
#include "test.h"

typedef struct result {
    ts_buf text;
    const char *finish;
    int n_gen, n_cached;
    bool done;
    int events_after_done;
} result;

static void on_event(void *ctx, const ts_event *ev) {
    result *r = ctx;
    if (r->done) r->events_after_done++;
    if (ev->kind == TS_EVENT_TEXT) {
        ts_buf_append(&r->text, ev->text, ev->len);
    } else {
        r->done = true;
        r->finish = ev->finish;
        r->n_gen = ev->n_gen;
        r->n_cached = ev->n_cached;
    }
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static ts_engine *make(const char *dir, bool cache, int cascade, uint64_t kv_bytes, int budget) {
    ts_engine_opts o = ts_engine_opts_default();
    o.n_threads = 2;
    o.exact = true;
    o.prefix_cache = cache;
    o.cascade = cascade;
    o.kv_bytes = kv_bytes;
    o.max_batch_tokens = budget;
    ts_engine *e = NULL;
    ts_err err;
    if (ts_engine_create(dir, &o, &e, &err)) fprintf(stderr, "engine: %s\n", err.msg);
    return e;
}

/* Builds prompts that share a long prefix in groups: eval cases' prompts
 * (the same instruction, some the same documents), plus exact repeats. */
static int load_prompts(const char *dir, char ***out, int want) {
    char path[600];
    snprintf(path, sizeof path, "%s/eval_dev.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    json_t *cases = json_object_get(root, "cases");
    int n = 0;
    char **p = calloc((size_t)want, sizeof *p);
    for (size_t i = 0; n < want && i < json_array_size(cases); i += 7) {
        json_t *c = json_array_get(cases, i);
        const char *s = json_string_value(json_object_get(c, "prompt"));
        if (s) p[n++] = strdup(s);
        /* a bare document: no chat turn, so it runs to max_tokens */
        const char *d = json_string_value(json_array_get(json_object_get(c, "documents"), 0));
        if (d && n < want) { /* "<doc> <City> is": a completion, not a chat turn */
            size_t w = strcspn(d, " ");
            size_t len = strlen(d) + w + 8;
            p[n] = malloc(len);
            snprintf(p[n++], len, "%s %.*s is", d, (int)w, d);
        }
        if (s && n < want && i % 3 == 0) p[n++] = strdup(s); /* an exact repeat */
    }
    json_decref(root);
    *out = p;
    return n;
}

static void check_pool_clean(ts_engine *e, const char *tag) {
    ts_kv *kv = ts_engine_runtime(e)->kv;
    char why[256] = "";
    CHECKF(ts_kv_check(kv, why, sizeof why), "%s: pool invariant: %s", tag, why);
    ts_kv_stats ks;
    ts_kv_get_stats(kv, &ks);
    CHECKF(ks.n_used == 0 && ks.bad_release == 0 && ks.bad_ref == 0,
           "%s: %d blocks still used, %llu bad releases", tag, ks.n_used,
           (unsigned long long)ks.bad_release);
}

static int32_t *tokenize(ts_engine *e, const char *text, size_t *n) {
    int32_t *ids = NULL;
    ts_err err;
    if (ts_tok_encode(ts_engine_runtime(e)->tok, text, strlen(text), false, &ids, n, &err)) return NULL;
    return ids;
}

typedef struct feeder {
    ts_engine *e;
    char **prompts;
    int n, max_tokens;
    result *got;
    int64_t *ids;
    int submitted_ok;
} feeder;

/* Another thread: submits every prompt, cancelling every third one right
 * after, while the main thread steps. */
static void *feed(void *arg) {
    feeder *f = arg;
    for (int i = 0; i < f->n; i++) {
        ts_request q = ts_request_default();
        q.text = f->prompts[i];
        q.max_tokens = f->max_tokens;
        q.ignore_eos = strstr(f->prompts[i], "<|im_start|>") == NULL;
        ts_err err;
        if (ts_engine_submit(f->e, &q, on_event, &f->got[i], &f->ids[i], &err) == TS_OK) f->submitted_ok++;
        if (i % 3 == 2) ts_engine_cancel(f->e, f->ids[i]);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Submitting and cancelling from another thread while this one steps. */
static void check_threads(const char *dir, char **prompts, int n, int max_tokens, const result *want) {
    ts_engine *e = make(dir, true, -1, 0, 128);
    CHECK(e != NULL);
    if (!e) return;
    feeder f = {.e = e, .prompts = prompts, .n = n, .max_tokens = max_tokens,
                .got = calloc((size_t)n, sizeof(result)), .ids = calloc((size_t)n, sizeof(int64_t))};
    pthread_t th;
    pthread_create(&th, NULL, feed, &f);
    ts_err err;
    int busy = 1, done = 0, guard = 0;
    while (!done && guard++ < 1000000) {
        if (!ts_engine_wait(e, 10)) continue;
        CHECK(ts_engine_step(e, &busy, &err) == TS_OK);
        done = 1;
        for (int i = 0; i < n; i++) done &= f.got[i].done;
    }
    pthread_join(th, NULL);
    CHECK(f.submitted_ok == n);
    for (int i = 0; i < n; i++) {
        CHECKF(f.got[i].done, "threaded: request %d not finished", i);
        if (f.got[i].finish && !strcmp(f.got[i].finish, "cancelled")) continue;
        const char *a = f.got[i].text.data ? f.got[i].text.data : "";
        const char *b = want[i].text.data ? want[i].text.data : "";
        CHECKF(!strcmp(a, b), "threaded: request %d differs", i);
    }
    check_pool_clean(e, "threaded");
    for (int i = 0; i < n; i++) ts_buf_free(&f.got[i].text);
    free(f.got);
    free(f.ids);
    ts_engine_destroy(e);
}

/* Bad requests fail at submit with a clear error; the good one beside them
 * completes as if alone. */
static void check_bad_input(const char *dir, const char *good, const result *want, int max_tokens) {
    ts_engine *e = make(dir, true, -1, 1u << 20, 256); /* 1 MiB of KV: 128 tokens */
    CHECK(e != NULL);
    if (!e) return;
    ts_err err;
    int32_t bad_ids[3] = {1, 5000000, 2};
    ts_request q = ts_request_default();
    q.ids = bad_ids;
    q.n_ids = 3;
    CHECK(ts_engine_submit(e, &q, on_event, NULL, NULL, &err) == TS_ERR_INVALID &&
          strstr(err.msg, "out of range"));
    int32_t *longp = calloc(5000, sizeof *longp);
    q.ids = longp;
    q.n_ids = 5000; /* beyond the model's 4096-token context */
    CHECK(ts_engine_submit(e, &q, on_event, NULL, NULL, &err) == TS_ERR_CAPACITY &&
          strstr(err.msg, "context"));
    q.n_ids = 1000; /* fits the context but not the 128-token pool */
    CHECK(ts_engine_submit(e, &q, on_event, NULL, NULL, &err) == TS_ERR_CAPACITY &&
          strstr(err.msg, "pool"));
    q.n_ids = 0;
    CHECK(ts_engine_submit(e, &q, on_event, NULL, NULL, &err) == TS_ERR_INVALID);
    q = ts_request_default();
    q.text = good;
    q.max_tokens = max_tokens;
    q.ignore_eos = true;
    q.sample.top_p = 2.0f;
    CHECK(ts_engine_submit(e, &q, on_event, NULL, NULL, &err) == TS_ERR_INVALID);
    q.sample.top_p = 1.0f;
    result r = {0};
    CHECK(ts_engine_submit(e, &q, on_event, &r, NULL, &err) == TS_OK);
    CHECK(ts_engine_run(e, &err) == TS_OK);
    CHECKF(r.done && r.text.data && want->text.data && !strcmp(r.text.data, want->text.data),
           "good request beside bad ones");
    check_pool_clean(e, "bad input");
    ts_buf_free(&r.text);
    free(longp);
    ts_engine_destroy(e);
}

/* A golden (random-weight) model: prompts of random ids sharing a 40-token
 * prefix, run together with the prefix cache on and cascade forced, equal
 * each run alone with caching off. */
static void check_golden_model(const char *dir) {
    enum { N = 6, PREFIX = 40 };
    int32_t ids[N][80];
    int len[N];
    for (int i = 0; i < N; i++) {
        len[i] = PREFIX + 5 + (int)rnd(30);
        for (int t = 0; t < len[i]; t++) ids[i][t] = t < PREFIX ? 1000 + 37 * t : (int32_t)(1000 + rnd(20000));
    }
    result want[N], got[N];
    memset(want, 0, sizeof want);
    memset(got, 0, sizeof got);
    ts_engine *ref = make(dir, false, 0, 0, 512), *e = make(dir, true, 1, 0, 32 + (int)rnd(64));
    CHECKF(ref && e, "%s: engines", dir);
    ts_err err;
    for (int i = 0; ref && e && i < N; i++) {
        ts_request q = ts_request_default();
        q.ids = ids[i];
        q.n_ids = (size_t)len[i];
        q.max_tokens = 12;
        q.ignore_eos = true;
        CHECK(ts_engine_submit(ref, &q, on_event, &want[i], NULL, &err) == TS_OK);
        CHECK(ts_engine_run(ref, &err) == TS_OK);
        if (i == 0) { /* the first computes the prefix, the rest arrive together */
            CHECK(ts_engine_submit(e, &q, on_event, &got[i], NULL, &err) == TS_OK);
            CHECK(ts_engine_run(e, &err) == TS_OK);
        } else {
            CHECK(ts_engine_submit(e, &q, on_event, &got[i], NULL, &err) == TS_OK);
        }
    }
    if (e) CHECK(ts_engine_run(e, &err) == TS_OK);
    for (int i = 0; ref && e && i < N; i++) {
        const char *a = got[i].text.data ? got[i].text.data : "";
        const char *b = want[i].text.data ? want[i].text.data : "";
        CHECKF(got[i].done && !strcmp(a, b) && got[i].n_gen == want[i].n_gen, "%s: request %d differs", dir, i);
    }
    if (e) {
        ts_engine_stats st;
        ts_engine_get_stats(e, &st);
        CHECKF(st.prefix_hits > 0 && st.cascade_steps > 0, "%s: %llu hits, %llu cascade steps", dir,
               (unsigned long long)st.prefix_hits, (unsigned long long)st.cascade_steps);
        check_pool_clean(e, dir);
    }
    for (int i = 0; i < N; i++) {
        ts_buf_free(&want[i].text);
        ts_buf_free(&got[i].text);
    }
    ts_engine_destroy(ref);
    ts_engine_destroy(e);
}

int main(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/facts-qwen3-14m", ts_test_shared());
    bool light = getenv("TS_TEST_LIGHT") != NULL;
    char **prompts;
    int n = load_prompts(dir, &prompts, light ? 9 : 16);
    const int max_tokens = light ? 16 : 32;
    CHECK(n >= 6);

    /* reference: each request alone, no prefix cache, no cascade */
    ts_engine *ref = make(dir, false, 0, 0, 512);
    CHECK(ref != NULL);
    if (!ref) return ts_test_done("test_engine");
    result *want = calloc((size_t)n, sizeof *want);
    for (int i = 0; i < n; i++) {
        ts_request q = ts_request_default();
        q.text = prompts[i];
        q.max_tokens = max_tokens;
        q.ignore_eos = strstr(prompts[i], "<|im_start|>") == NULL;
        ts_err err;
        CHECK(ts_engine_submit(ref, &q, on_event, &want[i], NULL, &err) == TS_OK);
        CHECK(ts_engine_run(ref, &err) == TS_OK);
        CHECK(want[i].done && want[i].n_gen > 0);
    }
    check_pool_clean(ref, "reference");

    /* one configuration per round: pool size, token budget, cascade */
    const int rounds = light ? 4 : 6;
    /* prompt lengths: all prompts, and the bare documents (odd entries of
     * the pairs load_prompts makes) for the pressure rounds */
    size_t longest = 0, total = 0, longest_doc = 0;
    bool *is_doc = calloc((size_t)n, sizeof *is_doc);
    for (int i = 0; i < n; i++) {
        size_t k;
        int32_t *ids = tokenize(ref, prompts[i], &k);
        is_doc[i] = strstr(prompts[i], "<|im_start|>") == NULL;
        if (k > longest) longest = k;
        if (is_doc[i] && k > longest_doc) longest_doc = k;
        total += k;
        free(ids);
    }
    ts_engine_destroy(ref);
    uint64_t preempted = 0, hits = 0, cascaded = 0;
    for (int round = 0; round < rounds; round++) {
        /* odd rounds: only the bare documents, in a pool that holds two of
         * them but not their growth, so decoding must preempt; even rounds:
         * everything, in a pool of about two average requests */
        bool pressure = round % 2 == 1;
        size_t tok_bytes = 2ull * 8 * 2 * 64 * 4; /* layers * kv heads * head_dim * f32, K+V */
        size_t kv_tokens = pressure ? 2 * ((longest_doc + 16) / 16 * 16) + 8 : 2 * total / (size_t)n + 8 * (size_t)round;
        size_t floor = (pressure ? longest_doc : longest) + (size_t)max_tokens + 17;
        if (kv_tokens < floor) kv_tokens = floor;
        uint64_t kv = (uint64_t)kv_tokens * tok_bytes;
        int budget = 32 << rnd(5);
        int cascade = round % 3 == 2 ? 1 : (round % 3 == 1 ? -1 : 0);
        ts_engine *e = make(dir, true, cascade, kv, budget);
        CHECK(e != NULL);
        if (!e) continue;
        result *got = calloc((size_t)n, sizeof *got);
        int64_t *ids = calloc((size_t)n, sizeof *ids);
        bool *cancelled = calloc((size_t)n, sizeof *cancelled);
        int submitted = 0;
        ts_err err;
        int busy = 1, guard = 0;
        while ((submitted < n || busy) && guard++ < 100000) {
            /* submit a few, cancel one now and then, step */
            int k = (int)rnd(3);
            for (int j = 0; j < k && submitted < n; j++, submitted++) {
                if (pressure && !is_doc[submitted]) {
                    got[submitted].done = true;
                    cancelled[submitted] = true;
                    got[submitted].finish = "cancelled";
                    continue;
                }
                ts_request q = ts_request_default();
                q.text = prompts[submitted];
                q.max_tokens = max_tokens;
                q.ignore_eos = is_doc[submitted];
                CHECK(ts_engine_submit(e, &q, on_event, &got[submitted], &ids[submitted], &err) == TS_OK);
            }
            if (submitted && rnd(23) == 0) {
                int c = (int)rnd((uint32_t)submitted);
                if (!got[c].done) {
                    ts_engine_cancel(e, ids[c]);
                    cancelled[c] = true;
                }
            }
            CHECK(ts_engine_step(e, &busy, &err) == TS_OK);
        }
        CHECKF(guard < 100000, "round %d did not finish", round);
        int compared = 0;
        for (int i = 0; i < n; i++) {
            CHECKF(got[i].done && got[i].events_after_done == 0, "round %d req %d: done once", round, i);
            if (cancelled[i] && got[i].finish && !strcmp(got[i].finish, "cancelled")) continue;
            const char *a = got[i].text.data ? got[i].text.data : "";
            const char *b = want[i].text.data ? want[i].text.data : "";
            CHECKF(!strcmp(a, b) && got[i].n_gen == want[i].n_gen,
                   "round %d (budget %d, cascade %d) req %d: '%s' vs alone '%s'", round, budget,
                   cascade, i, a, b);
            compared++;
            if (getenv("TS_TEST_VERBOSE") && pressure) printf("  doc %d: gen %d finish %s\n", i, got[i].n_gen, got[i].finish);
        }
        CHECK(compared >= (pressure ? 2 : n / 2));
        ts_engine_stats st;
        ts_engine_get_stats(e, &st);
        preempted += st.preemptions;
        if (getenv("TS_TEST_VERBOSE"))
            printf("round %d: pressure %d kv_tokens %zu budget %d: %llu preemptions, %llu hits\n",
                   round, pressure, kv_tokens, budget, (unsigned long long)st.preemptions,
                   (unsigned long long)st.prefix_hits);
        hits += st.prefix_hits;
        cascaded += st.cascade_steps;
        check_pool_clean(e, "round");
        for (int i = 0; i < n; i++) ts_buf_free(&got[i].text);
        free(got);
        free(ids);
        free(cancelled);
        ts_engine_destroy(e);
    }
    check_threads(dir, prompts, n, max_tokens, want);
    char gdir[512];
    snprintf(gdir, sizeof gdir, "%s/golden/qwen3-tiny-random", ts_test_shared());
    check_golden_model(gdir);
    snprintf(gdir, sizeof gdir, "%s/golden/llama3-tiny-random", ts_test_shared());
    check_golden_model(gdir);
    for (int i = 0; i < n; i++) /* a bare document fits the small pool */
        if (is_doc[i]) {
            check_bad_input(dir, prompts[i], &want[i], max_tokens);
            break;
        }
    CHECKF(preempted > 0, "no round preempted (the test must exercise preemption)");
    CHECKF(hits > 0, "no prefix-cache hit");
    printf("engine rounds: %llu preemptions, %llu prefix hits, %llu cascade steps\n",
           (unsigned long long)preempted, (unsigned long long)hits, (unsigned long long)cascaded);
    for (int i = 0; i < n; i++) {
        ts_buf_free(&want[i].text);
        free(prompts[i]);
    }
    free(want);
    free(prompts);
    free(is_doc);
    return ts_test_done("test_engine");
}
