/* Sampling on the device (ops->sample) against the host sampler
 * (ts_sampler_sample) on the same logits and the same uniform draws: two
 * samplers with one seed, one sampling on the host, the other giving the
 * device its draws (ts_sampler_draw). Fresh random logits of vocabularies
 * 1 .. 200000 with ties, NaN, -inf and +inf; greedy and temperatures from
 * 1e-30 (the division path) to 3; then top-k (1 .. past the vocabulary,
 * both of the host's top-k paths), top-p (ties at the cut included) and
 * min-p, alone and together. Every id must agree. */
#include "engine/sampler.h"
#include "gpu_util.h"
#include "test.h"

static const ts_ops *ops;

/* One batch of n rows of vocab v; kind picks the special values. */
static void run_batch(int n, int v, int kind, const ts_sample_params *base) {
    size_t total = (size_t)n * v;
    float *lg = xmalloc(total * 4), *row = xmalloc((size_t)v * 4);
    int32_t *host = xmalloc((size_t)n * 4), *dev = xmalloc((size_t)n * 4);
    fill(lg, total, 4.0f);
    for (size_t i = 0; i < total; i++) {
        int r = rnd_int(1000);
        if (kind == 1 && r < 5) lg[i] = NAN;
        if (kind == 1 && r >= 5 && r < 30) lg[i] = -INFINITY;
        if (kind == 2 && r < 300) lg[i] = (float)(rnd_int(4)); /* many ties */
        if (kind == 3 && r == 7) lg[i] = INFINITY;
        if (kind == 4) lg[i] = r < 990 ? -INFINITY : NAN; /* nothing drawable */
    }
    ts_sample_params p = *base;
    p.seed = rnd_u32();
    float temp = p.temperature;
    ts_sample_row *sr = xmalloc((size_t)n * sizeof *sr);
    for (int i = 0; i < n; i++) {
        ts_sampler *a = NULL, *b = NULL;
        if (ts_sampler_create(&p, v, &a, NULL) || ts_sampler_create(&p, v, &b, NULL)) {
            CHECKF(0, "sampler create");
            return;
        }
        CHECK(ts_sampler_on_device(a));
        memcpy(row, lg + (size_t)i * v, (size_t)v * 4);
        host[i] = ts_sampler_sample(a, row, NULL, 0);
        sr[i] = (ts_sample_row){.u = temp > 0.0f ? ts_sampler_draw(b) : 0.0, .temp = temp,
                                .top_p = p.top_p, .min_p = p.min_p, .top_k = p.top_k};
        ts_sampler_destroy(a), ts_sampler_destroy(b);
    }
    float *lg_d = dup_dev(lg, total * 4);
    ts_sample_row *sr_d = dup_dev(sr, (size_t)n * sizeof *sr);
    int32_t *id_d = (int32_t *)nan_dev((size_t)n);
    ops->sample(ops->ctx, id_d, lg_d, n, v, sr_d);
    get(dev, id_d, (size_t)n * 4);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += dev[i] != host[i];
    int first = 0;
    while (first < n - 1 && dev[first] == host[first]) first++;
    CHECKF(!bad,
           "sample vocab %d kind %d temp %g top_k %d top_p %g min_p %g: %d of %d rows differ "
           "(row %d: host %d device %d)",
           v, kind, temp, p.top_k, p.top_p, p.min_p, bad, n, first, host[first], dev[first]);
    free(lg), free(row), free(host), free(dev), free(sr);
    dfree(lg_d), dfree(sr_d), dfree(id_d);
}

int main(void) {
    ops = gpu_start("test_gpu_sample");
    CHECK(ops->sample != NULL);
    const int vocabs[6] = {1, 7, 1000, 4096, 151936, 200000};
    const float temps[6] = {0.0f, 1e-30f, 0.3f, 0.6f, 1.0f, 3.0f};
    ts_sample_params p = ts_sample_params_default();
    for (int vi = 0; vi < 6; vi++)
        for (int ti = 0; ti < 6; ti++)
            for (int kind = 0; kind < 5; kind++) {
                p.temperature = temps[ti];
                run_batch(vocabs[vi] > 100000 ? 8 : 32, vocabs[vi], kind, &p);
            }
    /* the cuts: top-k, top-p, min-p and mixtures */
    const struct { int k; float tp, mp; } cut[] = {
        {1, 1.0f, 0.0f},   {5, 1.0f, 0.0f},    {50, 1.0f, 0.0f},   {256, 1.0f, 0.0f},
        {257, 1.0f, 0.0f}, {3000, 1.0f, 0.0f}, {0, 0.9f, 0.0f},    {0, 0.5f, 0.0f},
        {0, 0.1f, 0.0f},   {0, 1e-6f, 0.0f},   {0, 1.0f, 0.05f},   {0, 1.0f, 1.0f},
        {40, 0.95f, 0.0f}, {400, 0.8f, 0.02f}, {20, 0.7f, 0.1f},   {0, 0.99f, 0.01f},
        {7, 1.0f, 0.0f},
    };
    const float ctemps[3] = {0.3f, 1.0f, 2.0f};
    for (size_t ci = 0; ci < sizeof cut / sizeof cut[0]; ci++)
        for (int vi = 1; vi < 6; vi++)
            for (int ti = 0; ti < 3; ti++)
                for (int kind = 0; kind < 5; kind++) {
                    p.temperature = ctemps[ti];
                    p.top_k = cut[ci].k;
                    p.top_p = cut[ci].tp;
                    p.min_p = cut[ci].mp;
                    run_batch(vocabs[vi] > 100000 ? 4 : 16, vocabs[vi], kind, &p);
                }
    ts_err err;
    if (ts_cuda_sync(g_cu, &err) != TS_OK) CHECKF(0, "sticky error: %s", err.msg);
    ts_cuda_destroy(g_cu);
    return ts_test_done("test_gpu_sample");
}
