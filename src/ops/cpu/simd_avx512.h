/* AVX-512 helpers shared by the *_avx512.c files (include only there). */
#ifndef TS_OPS_CPU_SIMD_AVX512_H
#define TS_OPS_CPU_SIMD_AVX512_H

#include <immintrin.h>

#include "ops/ops.h"

/* 16 weights from k of a row in dtype dt (f32, f16 or bf16), widened to
 * f32; lanes outside mask m read nothing and are 0. */
static inline __attribute__((always_inline)) __m512 ld16(const void *w, ts_dtype dt, size_t k,
                                                         __mmask16 m) {
    if (dt == TS_DT_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
    if (dt == TS_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

#endif
