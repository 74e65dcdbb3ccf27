/* Sampler tests: parameter validation, greedy, reproducibility, repetition
 * penalty, non-finite logits, and the drawn distribution against exact
 * probabilities from a plain reference implementation (full sort, double
 * precision) of the Hugging Face pipeline. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/sampler.h"
#include "test.h"

/* ---- test-local PRNG (independent of the sampler's) ---- */

static uint64_t t_state = 0x1234567887654321ull;
static uint64_t t_next(void) {
    t_state ^= t_state << 13;
    t_state ^= t_state >> 7;
    t_state ^= t_state << 17;
    return t_state;
}
static double t_unif(void) { return (double)(t_next() >> 11) / 9007199254740992.0; }
static double t_normal(void) {
    double u = t_unif(), v = t_unif();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- reference: exact probabilities ---- */

static const double *g_sort_key;
static int cmp_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_sort_key[i] > g_sort_key[j]) return -1;
    if (g_sort_key[i] < g_sort_key[j]) return 1;
    return i < j ? -1 : 1;
}

/* prob[n] <- the distribution the sampler must draw from. Logits must be
 * finite here. */
static void ref_probs(const float *logits, int n, const ts_sample_params *p,
                      const int32_t *hist, size_t n_hist, double *prob) {
    double *l = malloc((size_t)n * sizeof *l);
    int *idx = malloc((size_t)n * sizeof *idx);
    char *seen = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) l[i] = logits[i];
    for (size_t h = 0; h < n_hist; h++) {
        int id = hist[h];
        if (id < 0 || id >= n || seen[id]) continue;
        seen[id] = 1;
        /* penalty applied in float, as the sampler does */
        float f = logits[id];
        l[id] = f > 0 ? f / p->repetition_penalty : f * p->repetition_penalty;
    }
    for (int i = 0; i < n; i++) prob[i] = 0.0;
    if (p->temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (l[i] > l[best]) best = i;
        prob[best] = 1.0;
        goto out;
    }
    for (int i = 0; i < n; i++) l[i] /= p->temperature;
    for (int i = 0; i < n; i++) idx[i] = i;
    g_sort_key = l;
    qsort(idx, (size_t)n, sizeof *idx, cmp_desc);
    int keep = n;
    if (p->top_k > 0 && p->top_k < n) {
        double kth = l[idx[p->top_k - 1]];
        keep = p->top_k;
        while (keep < n && l[idx[keep]] == kth) keep++;
    }
    double z = 0.0;
    for (int r = 0; r < keep; r++) z += exp(l[idx[r]] - l[idx[0]]);
    for (int r = 0; r < keep; r++) prob[idx[r]] = exp(l[idx[r]] - l[idx[0]]) / z;
    if (p->top_p < 1.0f) {
        double cum = 0.0;
        int r = 0;
        while (r < keep && (r == 0 || cum < p->top_p)) cum += prob[idx[r++]];
        for (int q = r; q < keep; q++) prob[idx[q]] = 0.0;
        keep = r;
    }
    if (p->min_p > 0.0f) {
        double top = prob[idx[0]];
        for (int r = 0; r < keep; r++)
            if (prob[idx[r]] < p->min_p * top) prob[idx[r]] = 0.0;
    }
    z = 0.0;
    for (int i = 0; i < n; i++) z += prob[i];
    for (int i = 0; i < n; i++) prob[i] /= z;
out:
    free(l);
    free(idx);
    free(seen);
}

static int light(void) { return getenv("TS_TEST_LIGHT") != NULL; }

/* ---- tests ---- */

static void test_validate(void) {
    ts_sample_params d = ts_sample_params_default();
    CHECK(d.temperature == 0.0f && d.top_k == 0 && d.top_p == 1.0f && d.min_p == 0.0f &&
          d.repetition_penalty == 1.0f && d.seed == 0);
    CHECK(ts_sample_params_validate(&d, NULL) == TS_OK);
    struct { const char *what; ts_sample_params p; } bad[12];
    int nb = 0;
    for (int i = 0; i < 12; i++) bad[i].p = d;
    bad[nb].what = "temp<0";  bad[nb++].p.temperature = -0.1f;
    bad[nb].what = "temp nan"; bad[nb++].p.temperature = NAN;
    bad[nb].what = "temp inf"; bad[nb++].p.temperature = INFINITY;
    bad[nb].what = "top_k<0"; bad[nb++].p.top_k = -1;
    bad[nb].what = "top_p 0"; bad[nb++].p.top_p = 0.0f;
    bad[nb].what = "top_p>1"; bad[nb++].p.top_p = 1.01f;
    bad[nb].what = "top_p nan"; bad[nb++].p.top_p = NAN;
    bad[nb].what = "min_p<0"; bad[nb++].p.min_p = -0.01f;
    bad[nb].what = "min_p>1"; bad[nb++].p.min_p = 1.5f;
    bad[nb].what = "min_p nan"; bad[nb++].p.min_p = NAN;
    bad[nb].what = "pen 0"; bad[nb++].p.repetition_penalty = 0.0f;
    bad[nb].what = "pen nan"; bad[nb++].p.repetition_penalty = NAN;
    for (int i = 0; i < nb; i++) {
        ts_err err = {{0}};
        ts_sampler *s = NULL;
        CHECKF(ts_sample_params_validate(&bad[i].p, &err) == TS_ERR_INVALID, "%s", bad[i].what);
        CHECKF(err.msg[0] != 0, "%s: no message", bad[i].what);
        CHECKF(ts_sampler_create(&bad[i].p, 10, &s, NULL) == TS_ERR_INVALID && !s, "%s", bad[i].what);
    }
    ts_sample_params ok = d;
    ok.temperature = 0.7f; ok.top_k = 20; ok.top_p = 0.95f; ok.min_p = 1.0f;
    ok.repetition_penalty = 0.5f;
    CHECK(ts_sample_params_validate(&ok, NULL) == TS_OK);
    ts_sampler *s = NULL;
    CHECK(ts_sampler_create(&d, 0, &s, NULL) == TS_ERR_INVALID && !s);
    ts_sampler_destroy(NULL);
}

static void test_greedy(void) {
    enum { V = 1000 };
    ts_sample_params p = ts_sample_params_default();
    ts_sampler *s = NULL;
    CHECK(ts_sampler_create(&p, V, &s, NULL) == TS_OK);
    if (!s) return;
    float lg[V];
    int bad = 0;
    for (int t = 0; t < 200; t++) {
        for (int i = 0; i < V; i++) lg[i] = (float)t_normal();
        if (t % 3 == 0) { /* a tie: the lower id wins */
            int a = (int)(t_next() % V), b = (int)(t_next() % V);
            float m = -1e9f;
            for (int i = 0; i < V; i++) m = lg[i] > m ? lg[i] : m;
            lg[a] = lg[b] = m + 1.0f;
        }
        int best = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        if (ts_sampler_sample(s, lg, NULL, 0) != best) bad++;
    }
    CHECKF(bad == 0, "greedy differs from argmax %d times", bad);
    ts_sampler_destroy(s);
}

static void test_reproducible(void) {
    enum { V = 64, T = 2000 };
    ts_sample_params p = ts_sample_params_default();
    p.temperature = 1.0f;
    p.top_p = 0.9f;
    p.seed = 42;
    ts_sampler *a = NULL, *b = NULL, *c = NULL;
    CHECK(ts_sampler_create(&p, V, &a, NULL) == TS_OK);
    CHECK(ts_sampler_create(&p, V, &b, NULL) == TS_OK);
    p.seed = 43;
    CHECK(ts_sampler_create(&p, V, &c, NULL) == TS_OK);
    if (!a || !b || !c) return;
    float base[V], x[V];
    for (int i = 0; i < V; i++) base[i] = (float)t_normal();
    static int32_t sa[T];
    int same_ab = 1, diff_c = 0;
    for (int t = 0; t < T; t++) {
        memcpy(x, base, sizeof x);
        sa[t] = ts_sampler_sample(a, x, NULL, 0);
        memcpy(x, base, sizeof x);
        if (ts_sampler_sample(b, x, NULL, 0) != sa[t]) same_ab = 0;
        memcpy(x, base, sizeof x);
        if (ts_sampler_sample(c, x, NULL, 0) != sa[t]) diff_c++;
    }
    CHECK(same_ab);
    CHECKF(diff_c > T / 10, "seed 43 matches seed 42 too often (%d differ)", diff_c);
    ts_sampler_reseed(c, 42);
    int same_reseed = 1;
    for (int t = 0; t < T; t++) {
        memcpy(x, base, sizeof x);
        if (ts_sampler_sample(c, x, NULL, 0) != sa[t]) same_reseed = 0;
    }
    CHECK(same_reseed);
    CHECK(ts_sampler_params(a)->seed == 42);
    ts_sampler_destroy(a);
    ts_sampler_destroy(b);
    ts_sampler_destroy(c);
}

static void test_penalty(void) {
    enum { V = 8 };
    ts_sample_params p = ts_sample_params_default();
    p.repetition_penalty = 1.5f;
    ts_sampler *s = NULL;
    CHECK(ts_sampler_create(&p, V, &s, NULL) == TS_OK);
    if (!s) return;
    float lg[V] = {0.1f, -0.5f, 0.3f, 2.0f, -2.0f, 1.8f, 0.0f, 1.0f};
    float orig[V];
    memcpy(orig, lg, sizeof lg);
    /* duplicates are penalised once; out-of-range ids are ignored */
    int32_t hist[] = {3, 1, 3, 3, 6, -4, 99, 1};
    int32_t tok = ts_sampler_sample(s, lg, hist, sizeof hist / sizeof hist[0]);
    char in_hist[V] = {0};
    in_hist[1] = in_hist[3] = in_hist[6] = 1;
    int ok = 1;
    for (int i = 0; i < V; i++) {
        float want = orig[i];
        if (in_hist[i]) want = want > 0 ? want / 1.5f : want * 1.5f;
        if (lg[i] != want) ok = 0;
    }
    CHECKF(ok, "penalised logits differ from the reference");
    CHECKF(tok == 5, "penalty should move the argmax from 3 to 5, got %d", (int)tok);
    /* a penalty < 1 favours repeats */
    ts_sampler_destroy(s);
    p.repetition_penalty = 0.5f;
    CHECK(ts_sampler_create(&p, V, &s, NULL) == TS_OK);
    if (!s) return;
    memcpy(lg, orig, sizeof lg);
    int32_t h2[] = {5};
    CHECK(ts_sampler_sample(s, lg, h2, 1) == 5);
    /* many calls: stamps keep working (each call penalises once) */
    for (int t = 0; t < 1000; t++) {
        memcpy(lg, orig, sizeof lg);
        ts_sampler_sample(s, lg, hist, 8);
    }
    CHECK(lg[3] == orig[3] / 0.5f && lg[1] == orig[1] * 0.5f && lg[0] == orig[0]);
    ts_sampler_destroy(s);
}

/* Draws n times and compares frequencies with ref_probs: each token within
 * 5 standard errors (+1e-4 for float vs double), excluded tokens never. */
static void check_distribution(const char *name, const float *logits, int V,
                               const ts_sample_params *p, const int32_t *hist,
                               size_t n_hist, int n) {
    double *prob = malloc((size_t)V * sizeof *prob);
    long *cnt = calloc((size_t)V, sizeof *cnt);
    float *x = malloc((size_t)V * sizeof *x);
    ts_sampler *s = NULL;
    CHECK(ts_sampler_create(p, V, &s, NULL) == TS_OK);
    if (!s) goto out;
    ref_probs(logits, V, p, hist, n_hist, prob);
    for (int t = 0; t < n; t++) {
        memcpy(x, logits, (size_t)V * sizeof *x);
        int32_t id = ts_sampler_sample(s, x, hist, n_hist);
        if (id >= 0 && id < V) cnt[id]++;
    }
    int excluded_seen = 0, off = 0;
    double worst = 0.0;
    for (int i = 0; i < V; i++) {
        double f = (double)cnt[i] / n;
        if (prob[i] == 0.0) {
            if (cnt[i]) excluded_seen++;
            continue;
        }
        double se = sqrt(prob[i] * (1.0 - prob[i]) / n);
        double d = fabs(f - prob[i]);
        if (d > 5.0 * se + 1e-4) off++;
        if (d > worst) worst = d;
    }
    CHECKF(excluded_seen == 0, "%s: %d excluded tokens were drawn", name, excluded_seen);
    CHECKF(off == 0, "%s: %d tokens outside 5 sigma (max |diff| %.4f)", name, off, worst);
    ts_sampler_destroy(s);
out:
    free(prob);
    free(cnt);
    free(x);
}

static void test_distributions(void) {
    enum { V = 40 };
    int n = light() ? 10000 : 50000;
    float lg[V];
    for (int i = 0; i < V; i++) lg[i] = (float)(1.5 * t_normal());
    ts_sample_params d = ts_sample_params_default();
    struct { const char *name; float t; int k; float tp, mp, pen; } cfg[] = {
        {"plain T=1", 1.0f, 0, 1.0f, 0.0f, 1.0f},
        {"T=0.6", 0.6f, 0, 1.0f, 0.0f, 1.0f},
        {"T=2", 2.0f, 0, 1.0f, 0.0f, 1.0f},
        {"top_k 5", 1.0f, 5, 1.0f, 0.0f, 1.0f},
        {"top_k 1", 1.0f, 1, 1.0f, 0.0f, 1.0f},
        {"top_k 40 (= vocab)", 1.0f, 40, 1.0f, 0.0f, 1.0f},
        {"top_p 0.8", 1.3f, 0, 0.8f, 0.0f, 1.0f},
        {"top_p 0.3", 1.0f, 0, 0.3f, 0.0f, 1.0f},
        {"min_p 0.1", 1.0f, 0, 1.0f, 0.1f, 1.0f},
        {"k20 p0.9 minp0.05", 0.9f, 20, 0.9f, 0.05f, 1.0f},
        {"qwen3 defaults", 0.6f, 20, 0.95f, 0.0f, 1.0f},
        {"penalty 1.3", 1.0f, 0, 1.0f, 0.0f, 1.3f},
        {"penalty 1.2 + top_k 8", 0.8f, 8, 0.95f, 0.0f, 1.2f},
    };
    int32_t hist[] = {0, 1, 2, 3, 5, 8, 13, 21, 34, 2, 3};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        ts_sample_params p = d;
        p.temperature = cfg[c].t;
        p.top_k = cfg[c].k;
        p.top_p = cfg[c].tp;
        p.min_p = cfg[c].mp;
        p.repetition_penalty = cfg[c].pen;
        p.seed = 1000 + c;
        check_distribution(cfg[c].name, lg, V, &p, hist, sizeof hist / sizeof hist[0], n);
    }
    /* larger vocabularies take other paths (bucketed top-p, quickselect
     * top-k for k > 256): check their distributions too */
    enum { VM = 600 };
    float mid[VM];
    for (int i = 0; i < VM; i++) mid[i] = (float)(0.8 * t_normal());
    struct { const char *name; int k; float tp; } mc[] = {
        {"600: top_p 0.9", 0, 0.9f}, {"600: top_p 0.4", 0, 0.4f},
        {"600: top_k 300", 300, 1.0f}, {"600: top_k 400 top_p 0.8", 400, 0.8f},
        {"600: top_k 100 top_p 0.8", 100, 0.8f},
    };
    for (size_t c = 0; c < sizeof mc / sizeof mc[0]; c++) {
        ts_sample_params p = d;
        p.temperature = 1.0f;
        p.top_k = mc[c].k;
        p.top_p = mc[c].tp;
        p.seed = 77 + c;
        check_distribution(mc[c].name, mid, VM, &p, NULL, 0, n);
    }
    /* ties at the top-k boundary are all kept (HF semantics) */
    float tie[10] = {3.0f, 2.0f, 2.0f, 2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 1.0f, 2.0f};
    ts_sample_params p = d;
    p.temperature = 1.0f;
    p.top_k = 2;
    check_distribution("top_k ties", tie, 10, &p, NULL, 0, n / 2);
}

/* Real vocabulary size: tokens outside the reference's support never drawn,
 * and the top-p path whose nucleus spans thousands of tokens. */
static void test_large_vocab(void) {
    enum { V = 151936 };
    int draws = light() ? 20 : 100;
    float *lg = malloc(V * sizeof *lg), *x = malloc(V * sizeof *x);
    double *prob = malloc(V * sizeof *prob);
    struct { const char *name; float scale, t; int k; float tp, mp; } cfg[] = {
        {"large k20 p0.95", 3.0f, 0.6f, 20, 0.95f, 0.0f},
        {"large p0.9 wide nucleus", 0.5f, 1.0f, 0, 0.9f, 0.0f},
        {"large p0.5 peaked", 4.0f, 1.0f, 0, 0.5f, 0.0f},
        {"large min_p 0.02", 3.0f, 1.0f, 0, 1.0f, 0.02f},
        {"large k1000 p0.7", 2.0f, 1.0f, 1000, 0.7f, 0.0f},
    };
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        for (int i = 0; i < V; i++) lg[i] = (float)(cfg[c].scale * t_normal());
        ts_sample_params p = ts_sample_params_default();
        p.temperature = cfg[c].t;
        p.top_k = cfg[c].k;
        p.top_p = cfg[c].tp;
        p.min_p = cfg[c].mp;
        p.seed = 7;
        ts_sampler *s = NULL;
        CHECK(ts_sampler_create(&p, V, &s, NULL) == TS_OK);
        if (!s) continue;
        ref_probs(lg, V, &p, NULL, 0, prob);
        int support = 0;
        for (int i = 0; i < V; i++) support += prob[i] > 0;
        int outside = 0;
        clock_t t0 = clock();
        for (int t = 0; t < draws; t++) {
            memcpy(x, lg, V * sizeof *x);
            int32_t id = ts_sampler_sample(s, x, NULL, 0);
            if (id < 0 || id >= V || prob[id] == 0.0) outside++;
        }
        double ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC / draws;
        CHECKF(outside == 0, "%s: %d draws outside the reference support", cfg[c].name, outside);
        printf("  %-26s support %6d tokens, %.3f ms/sample\n", cfg[c].name, support, ms);
        ts_sampler_destroy(s);
    }
    free(lg);
    free(x);
    free(prob);
}

/* NaN is never drawn, +inf tokens take all the mass, all-NaN gives 0. */
static void test_nonfinite(void) {
    enum { V = 16 };
    float lg[V], x[V];
    ts_sample_params p = ts_sample_params_default();
    for (int mode = 0; mode < 2; mode++) {
        p.temperature = mode ? 0.8f : 0.0f;
        p.top_p = mode ? 0.9f : 1.0f;
        p.top_k = mode ? 5 : 0;
        ts_sampler *s = NULL;
        CHECK(ts_sampler_create(&p, V, &s, NULL) == TS_OK);
        if (!s) return;
        for (int i = 0; i < V; i++) lg[i] = (i % 2) ? NAN : (float)i * 0.1f;
        lg[0] = NAN;
        int bad = 0;
        for (int t = 0; t < 500; t++) {
            memcpy(x, lg, sizeof x);
            int32_t id = ts_sampler_sample(s, x, NULL, 0);
            if (id < 0 || id >= V || isnan(lg[id])) bad++;
        }
        CHECKF(bad == 0, "mode %d: NaN tokens drawn %d times", mode, bad);
        /* +inf: only the infinite tokens, both of them when sampling */
        for (int i = 0; i < V; i++) lg[i] = (float)i;
        lg[3] = lg[9] = INFINITY;
        lg[4] = -INFINITY;
        lg[5] = NAN;
        int c3 = 0, c9 = 0;
        for (int t = 0; t < 2000; t++) {
            memcpy(x, lg, sizeof x);
            int32_t id = ts_sampler_sample(s, x, NULL, 0);
            c3 += id == 3;
            c9 += id == 9;
        }
        CHECKF(c3 + c9 == 2000, "mode %d: +inf tokens not chosen (%d, %d)", mode, c3, c9);
        if (mode) CHECKF(c3 > 800 && c9 > 800, "+inf tokens not uniform: %d vs %d", c3, c9);
        else CHECKF(c3 == 2000, "greedy should pick the lowest +inf id");
        /* nothing drawable */
        for (int i = 0; i < V; i++) lg[i] = (i % 2) ? NAN : -INFINITY;
        CHECK(ts_sampler_sample(s, lg, NULL, 0) == 0);
        ts_sampler_destroy(s);
    }
}

int main(void) {
    test_validate();
    test_greedy();
    test_reproducible();
    test_penalty();
    test_distributions();
    test_large_vocab();
    test_nonfinite();
    return ts_test_done("sampler");
}
