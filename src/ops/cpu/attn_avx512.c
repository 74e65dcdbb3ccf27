/* Paged flash attention with AVX-512 (see attn_tmpl.h for the algorithm). */
#include <immintrin.h>

#include "ops/cpu/cpu_internal.h"

/* e^x, ~1e-7 relative; inputs below -87 (and -inf) give exactly 0. */
static inline __m512 v_exp(__m512 x) {
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n));
}

/* out[0..3] = the sums of the lanes of a, b, c and d. */
static inline void hsum4(__m512 a, __m512 b, __m512 c, __m512 d, float *out) {
#define HALF_SUM(v)                                                                             \
    _mm256_add_ps(_mm512_castps512_ps256(v),                                                    \
                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(HALF_SUM(a), HALF_SUM(b)),
                              _mm256_hadd_ps(HALF_SUM(c), HALF_SUM(d)));
#undef HALF_SUM
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
}

/* The first step of reducing 16 vectors to the vector of their 16 sums:
 * lane L (of 4 lanes of 128 bits) of the result holds the sums of lane L of
 * a, b, c and d. */
static inline __m512 red4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x44), _mm512_shuffle_ps(ab, cd, 0xee));
}

/* The last step: x[0..3] = red4 of vectors 0-3, 4-7, 8-11 and 12-15 ->
 * lane i = the sum of vector i. */
static inline __m512 red16(const __m512 *x) {
    __m512 a = _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], 0x44),
                             _mm512_shuffle_f32x4(x[0], x[1], 0xee));
    __m512 b = _mm512_add_ps(_mm512_shuffle_f32x4(x[2], x[3], 0x44),
                             _mm512_shuffle_f32x4(x[2], x[3], 0xee));
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xdd));
}

#define VF __m512
#define VW 16
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_MAX(a, b) _mm512_max_ps(a, b)
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ZERO() _mm512_setzero_ps()
#define V_HSUM(v) _mm512_reduce_add_ps(v)
#define V_HMAX(v) _mm512_reduce_max_ps(v)
#define V_HSUM4(a, b, c, d, out) hsum4(a, b, c, d, out)
#define V_RED4(a, b, c, d) red4(a, b, c, d)
#define V_REDV(x) red16(x)
#define V_NREG 32
#define V_EXP(v) v_exp(v)
#define V_LOAD_H(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define V_LOAD_B(p)                                                                             \
    _mm512_castsi512_ps(                                                                        \
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define ATTN_FN ts_avx512_attention

#include "ops/cpu/attn_tmpl.h"

#define ATTN_SHARED_FN ts_avx512_attention_shared
#include "ops/cpu/attn_shared_tmpl.h"
