/* Fused CPU ops (matmul_multi, matmul_swiglu) against the unfused ops of the
 * same backend (matmul, swiglu): bit-identical outputs on random inputs over
 * awkward shapes, every dtype, bias present/absent, every ISA available. */
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "base/pool.h"
#include "ops/cpu/cpu.h"
#include "test.h"

static unsigned long long rng = 88172645463325252ULL;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

/* A random finite f16 of magnitude below 2 (exponent field 1..15). */
static uint16_t f16_rand(void) {
    float f = frand();
    unsigned e = 1 + (unsigned)((f + 1.0f) * 7.49f);
    unsigned m = (unsigned)(rng >> 20) & 0x3FF;
    return (uint16_t)(((rng >> 50) & 1) << 15 | e << 10 | m);
}

/* A random rows x cols matrix in dt (data malloc'd). */
static ts_wmat rand_w(ts_dtype dt, int rows, int cols) {
    size_t cnt = (size_t)rows * (size_t)cols;
    ts_wmat w = {.dtype = dt, .rows = rows, .cols = cols};
    if (dt == TS_DT_F32) {
        float *d = malloc(cnt * 4);
        for (size_t i = 0; i < cnt; i++) d[i] = frand();
        w.data = d;
    } else {
        uint16_t *d = malloc(cnt * 2);
        for (size_t i = 0; i < cnt; i++)
            d[i] = dt == TS_DT_F16 ? f16_rand() : ts_f32_to_bf16(frand());
        w.data = d;
    }
    return w;
}

static float *rand_v(size_t cnt) {
    float *v = malloc(cnt * sizeof(float));
    for (size_t i = 0; i < cnt; i++) v[i] = frand();
    return v;
}

static void one_case(const ts_ops *o, ts_dtype dt, int n, int cols, const int *rows, int n_w,
                     int with_bias, ts_prec prec) {
    ts_wmat w[4];
    float *b[4], *y1[4], *y2[4];
    float *x = rand_v((size_t)n * cols);
    for (int i = 0; i < n_w; i++) {
        w[i] = rand_w(dt, rows[i], cols);
        b[i] = with_bias && i != 1 ? rand_v((size_t)rows[i]) : NULL; /* mixed NULL */
        y1[i] = malloc((size_t)n * rows[i] * sizeof(float));
        y2[i] = malloc((size_t)n * rows[i] * sizeof(float));
        o->matmul(o->ctx, y1[i], x, n, &w[i], b[i], prec);
    }
    if (o->matmul_multi) {
        o->matmul_multi(o->ctx, y2, x, n, w, (const float *const *)b, n_w, prec);
        for (int i = 0; i < n_w; i++) {
            size_t cnt = (size_t)n * rows[i];
            CHECKF(memcmp(y1[i], y2[i], cnt * 4) == 0,
                   "%s multi dt %d n %d cols %d rows %d bias %d prec %d: max rel %g", o->name,
                   (int)dt, n, cols, rows[i], with_bias, (int)prec,
                   ts_test_rel_err(y1[i], y2[i], cnt));
        }
    }
    if (o->matmul_swiglu) { /* gate = w[0], up = a fresh matrix of its shape */
        ts_wmat up = rand_w(dt, rows[0], cols);
        size_t cnt = (size_t)n * rows[0];
        float *u = malloc(cnt * 4), *g = malloc(cnt * 4), *out = malloc(cnt * 4);
        o->matmul(o->ctx, g, x, n, &w[0], NULL, prec);
        o->matmul(o->ctx, u, x, n, &up, NULL, prec);
        o->swiglu(o->ctx, g, g, u, n, rows[0]);
        o->matmul_swiglu(o->ctx, out, x, n, &w[0], &up, prec);
        CHECKF(memcmp(g, out, cnt * 4) == 0,
               "%s swiglu dt %d n %d cols %d rows %d prec %d: max rel %g", o->name, (int)dt, n,
               cols, rows[0], (int)prec, ts_test_rel_err(g, out, cnt));
        free(u);
        free(g);
        free(out);
        free((void *)up.data);
    }
    for (int i = 0; i < n_w; i++) {
        free((void *)w[i].data);
        free(b[i]);
        free(y1[i]);
        free(y2[i]);
    }
    free(x);
}

/* cpu-avx512 with TS_PREC_BF16: each row's result is the same whatever the
 * number of rows in the call (the forward pass relies on it: a prompt's
 * KV must not depend on whether a cached prefix shortened its piece). */
static void rows_independent(const ts_ops *o) {
    const ts_dtype dts[2] = {TS_DT_BF16, TS_DT_F16};
    for (int di = 0; di < 2; di++) {
        int rows = 131, cols = 201, n = 19;
        ts_wmat w = rand_w(dts[di], rows, cols);
        float *x = rand_v((size_t)n * cols), *b = rand_v((size_t)rows);
        float *all = malloc((size_t)n * rows * 4), *part = malloc((size_t)n * rows * 4);
        o->matmul(o->ctx, all, x, n, &w, b, TS_PREC_BF16);
        static const int starts[3] = {16, 5, 0}, counts[3] = {3, 1, 7};
        for (int k = 0; k < 3; k++) {
            o->matmul(o->ctx, part, x + (size_t)starts[k] * cols, counts[k], &w, b, TS_PREC_BF16);
            CHECKF(memcmp(part, all + (size_t)starts[k] * rows, (size_t)counts[k] * rows * 4) == 0,
                   "%s bf16 prec dt %d: rows %d..%d alone differ from the %d-row call", o->name,
                   (int)dts[di], starts[k], starts[k] + counts[k] - 1, n);
        }
        free((void *)w.data), free(x), free(b), free(all), free(part);
    }
}

int main(void) {
    int light = getenv("TS_TEST_LIGHT") != NULL;
    const ts_dtype dts[3] = {TS_DT_BF16, TS_DT_F16, TS_DT_F32};
    const int colss[3] = {64, 200, 1027};
    const int shapes[4][3] = {{37, 13, 13}, {128, 64, 64}, {1, 3, 250}, {515, 96, 33}};
    const ts_cpu_isa isas[3] = {TS_ISA_SCALAR, TS_ISA_AVX2, TS_ISA_AVX512};
    const int threads[2] = {1, 3};
    int n_fused = 0;
    for (int ii = 0; ii < 3; ii++) {
        if (isas[ii] > ts_cpu_isa_detect()) continue;
        for (int ti = 0; ti < 2; ti++) {
            ts_pool *pool = ts_pool_create(threads[ti]);
            ts_cpu *cpu = ts_cpu_create(pool, isas[ii]);
            CHECK(pool && cpu);
            if (!pool || !cpu) return ts_test_done("fused_ops");
            const ts_ops *o = ts_cpu_ops(cpu);
            if (o->matmul_multi || o->matmul_swiglu) n_fused++;
            if (isas[ii] == TS_ISA_AVX512) rows_independent(o);
            for (int n = 1; n <= 9; n += light ? 4 : 1)
                for (int di = 0; di < 3; di++)
                    for (int ci = 0; ci < 3; ci++)
                        for (int si = 0; si < 4; si += light ? 3 : 1) {
                            int nw = si == 2 ? 2 : 3;
                            one_case(o, dts[di], n, colss[ci], shapes[si], nw, (n + si) & 1,
                                     (n + ci) % 3 == 0 ? TS_PREC_BF16 : TS_PREC_F32);
                        }
            ts_cpu_destroy(cpu);
            ts_pool_destroy(pool);
        }
    }
    CHECKF(n_fused > 0 || ts_cpu_isa_detect() == TS_ISA_SCALAR, "no backend has fused ops");
    return ts_test_done("fused_ops");
}
