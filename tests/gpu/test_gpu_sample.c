/* Sampling on the device (ops->sample) against the host sampler
 * (ts_sampler_sample) on the same logits and the same uniform draws: two
 * samplers with one seed, one sampling on the host, the other giving the
 * device its draws (ts_sampler_draw). Fresh random logits of vocabularies
 * 1 .. 200000 with ties, NaN, -inf and +inf; greedy and temperatures from
 * 1e-30 (the division path) to 3. Every id must agree. */
#include "engine/sampler.h"
#include "gpu_util.h"
#include "test.h"

static const ts_ops *ops;

/* One batch of n rows of vocab v; kind picks the special values. */
static void run_batch(int n, int v, int kind, float temp) {
    size_t total = (size_t)n * v;
    float *lg = xmalloc(total * 4), *row = xmalloc((size_t)v * 4), *tp = xmalloc((size_t)n * 4);
    double *u = xmalloc((size_t)n * 8);
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
    ts_sample_params p = ts_sample_params_default();
    p.temperature = temp;
    p.seed = rnd_u32();
    for (int i = 0; i < n; i++) {
        ts_sampler *a = NULL, *b = NULL;
        if (ts_sampler_create(&p, v, &a, NULL) || ts_sampler_create(&p, v, &b, NULL)) {
            CHECKF(0, "sampler create");
            return;
        }
        CHECK(ts_sampler_plain(a));
        memcpy(row, lg + (size_t)i * v, (size_t)v * 4);
        host[i] = ts_sampler_sample(a, row, NULL, 0);
        tp[i] = temp;
        u[i] = temp > 0.0f ? ts_sampler_draw(b) : 0.0;
        ts_sampler_destroy(a), ts_sampler_destroy(b);
    }
    float *lg_d = dup_dev(lg, total * 4), *tp_d = dup_dev(tp, (size_t)n * 4);
    double *u_d = dup_dev(u, (size_t)n * 8);
    int32_t *id_d = (int32_t *)nan_dev((size_t)n);
    ops->sample(ops->ctx, id_d, lg_d, n, v, tp_d, u_d);
    get(dev, id_d, (size_t)n * 4);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += dev[i] != host[i];
    CHECKF(!bad, "sample vocab %d kind %d temp %g: %d of %d rows differ (e.g. host %d device %d)",
           v, kind, temp, bad, n, host[0], dev[0]);
    free(lg), free(row), free(tp), free(u), free(host), free(dev);
    dfree(lg_d), dfree(tp_d), dfree(u_d), dfree(id_d);
}

int main(void) {
    ops = gpu_start("test_gpu_sample");
    CHECK(ops->sample != NULL);
    const int vocabs[6] = {1, 7, 1000, 4096, 151936, 200000};
    const float temps[6] = {0.0f, 1e-30f, 0.3f, 0.6f, 1.0f, 3.0f};
    for (int vi = 0; vi < 6; vi++)
        for (int ti = 0; ti < 6; ti++)
            for (int kind = 0; kind < 5; kind++)
                run_batch(vocabs[vi] > 100000 ? 8 : 32, vocabs[vi], kind, temps[ti]);
    ts_err err;
    if (ts_cuda_sync(g_cu, &err) != TS_OK) CHECKF(0, "sticky error: %s", err.msg);
    ts_cuda_destroy(g_cu);
    return ts_test_done("test_gpu_sample");
}
