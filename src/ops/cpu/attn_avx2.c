/* Paged flash attention with AVX2 + FMA (see attn_tmpl.h for the algorithm). */
#include <immintrin.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/simd_avx2.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* out[0..3] = the sums of the lanes of a, b, c and d. */
static inline void hsum4(__m256 a, __m256 b, __m256 c, __m256 d, float *out) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
}

/* The first step of reducing 8 vectors to the vector of their 8 sums: lane
 * L (of 2 lanes of 128 bits) of the result holds the sums of lane L of a,
 * b, c and d. */
static inline __m256 red4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
    return _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xee));
}

/* The last step: x[0..1] = red4 of vectors 0-3 and 4-7 -> lane i = the sum
 * of vector i. */
static inline __m256 red8(const __m256 *x) {
    return _mm256_add_ps(_mm256_permute2f128_ps(x[0], x[1], 0x20),
                         _mm256_permute2f128_ps(x[0], x[1], 0x31));
}

#define VF __m256
#define VW 8
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_MAX(a, b) _mm256_max_ps(a, b)
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ZERO() _mm256_setzero_ps()
#define V_HSUM(v) hsum8(v)
#define V_HMAX(v) hmax8(v)
#define V_HSUM4(a, b, c, d, out) hsum4(a, b, c, d, out)
#define V_RED4(a, b, c, d) red4(a, b, c, d)
#define V_REDV(x) red8(x)
#define V_NREG 16
#define V_EXP(v) v_exp(v)
#define V_LOAD_H(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define V_LOAD_B(p)                                                                             \
    _mm256_castsi256_ps(                                                                        \
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define ATTN_FN ts_avx2_attention

#include "ops/cpu/attn_tmpl.h"

#define ATTN_SHARED_FN ts_avx2_attention_shared
#include "ops/cpu/attn_shared_tmpl.h"
