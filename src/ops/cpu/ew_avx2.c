/* Element-wise ops with AVX2 + FMA, on a range of rows (the pool split is
 * in cpu.c). Same formulas as the reference: rmsnorm sums squares in double,
 * swiglu uses the vector e^x (~1e-7 relative). */
#include <immintrin.h>
#include <math.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/simd_avx2.h"

/* Sum of squares of x[0..d) in double. */
static double sumsq(const float *x, int d) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int c = 0;
    for (; c + 8 <= d; c += 8) {
        __m256 v = _mm256_loadu_ps(x + c);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double ss = (t[0] + t[1]) + (t[2] + t[3]);
    for (; c < d; c++) ss += (double)x[c] * x[c];
    return ss;
}

void ts_avx2_rmsnorm_rows(float *y, const float *x, const float *g, int n, int d, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * (size_t)d;
        float *yi = y + (size_t)i * (size_t)d;
        float inv = (float)(1.0 / sqrt(sumsq(xi, d) / d + eps));
        __m256 vi = _mm256_set1_ps(inv);
        int c = 0;
        for (; c + 8 <= d; c += 8)
            _mm256_storeu_ps(yi + c, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xi + c), vi),
                                                   _mm256_loadu_ps(g + c)));
        for (; c < d; c++) yi[c] = xi[c] * inv * g[c];
    }
}

void ts_avx2_add_rmsnorm_rows(float *y, float *x, const float *r, const float *g, int n, int d,
                              float eps) {
    size_t cnt = (size_t)n * (size_t)d, i = 0;
    for (; i + 8 <= cnt; i += 8)
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(r + i)));
    for (; i < cnt; i++) x[i] += r[i];
    ts_avx2_rmsnorm_rows(y, x, g, n, d, eps);
}

void ts_avx2_swiglu_rows(float *out, const float *gate, const float *up, size_t cnt) {
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= cnt; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 sig = _mm256_add_ps(one, v_exp(_mm256_sub_ps(zero, g)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, sig), _mm256_loadu_ps(up + i)));
    }
    for (; i < cnt; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
