/* Device sampling (ops->sample) over Qwen3's vocabulary (151936): rows of
 * Gaussian logits (sigma 3: the top tokens stand out of a bulk, as a
 * model's do), each sampling mode, batch 1 / 64 / 256. Each figure is the median of 7 timings
 * of 20 back-to-back calls, ending in a sync; per call, and the logits'
 * bytes over that time. Usage: bench_sample */
#include <math.h>
#include <time.h>

#include "gpu_util.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    const ts_ops *ops = gpu_start(NULL);
    const int V = 151936, NMAX = 256;
    float *h = xmalloc((size_t)NMAX * V * 4);
    for (size_t i = 0; i < (size_t)NMAX * V; i++) { /* Box-Muller */
        double a = (rnd_u32() + 1.0) / 4294967297.0, b = rnd_u32() / 4294967296.0;
        h[i] = (float)(3.0 * sqrt(-2.0 * log(a)) * cos(6.283185307179586 * b));
    }
    float *lg = dup_dev(h, (size_t)NMAX * V * 4);
    int32_t *ids = (int32_t *)nan_dev(NMAX);
    ts_sample_row *rh = xmalloc(NMAX * sizeof *rh);
    const struct { const char *name; float t, tp, mp; int k; } mode[] = {
        {"greedy", 0.0f, 1.0f, 0.0f, 0},         {"temperature 0.8", 0.8f, 1.0f, 0.0f, 0},
        {"top-k 50", 0.8f, 1.0f, 0.0f, 50},      {"top-p 0.9", 0.8f, 0.9f, 0.0f, 0},
        {"min-p 0.05", 0.8f, 1.0f, 0.05f, 0},    {"top-k 50 + top-p 0.9", 0.8f, 0.9f, 0.0f, 50},
        {"Qwen3 t0.6 k20 p0.95", 0.6f, 0.95f, 0.0f, 20}, {"top-k 1000", 0.8f, 1.0f, 0.0f, 1000},
    };
    const int batches[3] = {1, 64, 256};
    printf("%-24s %8s %12s %10s\n", "device sampling", "rows", "us a call", "GB/s");
    for (size_t m = 0; m < sizeof mode / sizeof mode[0]; m++)
        for (int b = 0; b < 3; b++) {
            int n = batches[b];
            for (int i = 0; i < n; i++)
                rh[i] = (ts_sample_row){.u = (i + 0.5) / n, .temp = mode[m].t,
                                        .top_p = mode[m].tp, .min_p = mode[m].mp,
                                        .top_k = mode[m].k};
            ts_sample_row *rd = dup_dev(rh, (size_t)n * sizeof *rh);
            double t[7];
            for (int r = 0; r < 7; r++) {
                if (ts_cuda_sync(g_cu, NULL) != TS_OK) die_cuda("sync");
                double t0 = now_us();
                for (int k = 0; k < 20; k++) ops->sample(ops->ctx, ids, lg, n, V, rd);
                if (ts_cuda_sync(g_cu, NULL) != TS_OK) die_cuda("sample");
                t[r] = (now_us() - t0) / 20;
            }
            qsort(t, 7, sizeof *t, cmpd);
            printf("%-24s %8d %12.1f %10.0f\n", mode[m].name, n, t[3],
                   (double)n * V * 4 / (t[3] * 1e3));
            dfree(rd);
        }
    dfree(lg), dfree(ids), free(h), free(rh);
    ts_cuda_destroy(g_cu);
    return 0;
}
