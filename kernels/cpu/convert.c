/* convert.c — fp32 <-> bf16 / fp16 over arrays (semantics and reference: convert.h).
 *
 * Each function splits the array into fixed blocks handed out by a static OpenMP
 * schedule; a block is converted by a SIMD body and a scalar tail. Arrays below
 * CVT_PAR_MIN elements stay on the calling thread, where the fork would cost more than
 * the copy.
 */
#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>  /* only where used: the scalar code builds anywhere */
#endif

#include "convert.h"

enum { CVT_BLOCK = 1 << 14, CVT_PAR_MIN = 1 << 15 };

/* Converts src[i0..i1) into dst[i0..i1). */
typedef void cvt_range_fn(void *dst, const void *src, long i0, long i1);

static void cvt_blocks(cvt_range_fn *range, void *dst, const void *src, long n)
{
    long nb = (n + CVT_BLOCK - 1) / CVT_BLOCK;
#pragma omp parallel for schedule(static) if (n >= CVT_PAR_MIN)
    for (long b = 0; b < nb; b++) {
        long i0 = b * CVT_BLOCK, i1 = i0 + CVT_BLOCK < n ? i0 + CVT_BLOCK : n;
        range(dst, src, i0, i1);
    }
}

/* ---------------------------------------------------------------------------------- */
/* bf16: AVX512_BF16 where there is one, else integer rounding that GCC vectorises    */

static void bf16_from_f32_range(void *dstv, const void *srcv, long i0, long i1)
{
    uint16_t *restrict dst = dstv;
    const float *restrict src = srcv;
    long i = i0;
#if defined(__AVX512BF16__)
    /* vcvtneps2bf16 rounds to nearest even, ignores MXCSR and quiets NaN as the scalar
     * code does, but flushes subnormal inputs to zero. So a block of 16 holding an fp32
     * subnormal (rare in training data) is rounded by the scalar code; the others take
     * the instruction, which on a 64 MiB array on one thread ran ~1.5x as fast as GCC's
     * vectorisation of the scalar loop below (hand-written AVX-512 integer rounding,
     * narrowed by vpmovdw or vpermt2w, was slower than GCC's). */
    const __m512i exp_mask = _mm512_set1_epi32(0x7f800000);
    const __m512i mant_mask = _mm512_set1_epi32(0x007fffff);
    for (; i + 16 <= i1; i += 16) {
        __m512 x = _mm512_loadu_ps(src + i);
        __m512i u = _mm512_castps_si512(x);
        __mmask16 subnormal =
            _mm512_mask_test_epi32_mask(_mm512_testn_epi32_mask(u, exp_mask), u, mant_mask);
        if (subnormal) {
            for (long j = i; j < i + 16; j++) dst[j] = cvt_f32_to_bf16_1(src[j]);
        } else {
            __m256bh h = _mm512_cvtneps_pbh(x);
            _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)h);
        }
    }
#endif
#pragma omp simd
    for (long j = i; j < i1; j++) dst[j] = cvt_f32_to_bf16_1(src[j]);
}

static void bf16_to_f32_range(void *dstv, const void *srcv, long i0, long i1)
{
    float *restrict dst = dstv;
    const uint16_t *restrict src = srcv;
#pragma omp simd
    for (long i = i0; i < i1; i++) dst[i] = cvt_bf16_to_f32_1(src[i]);
}

void cpu_f32_to_bf16(uint16_t *dst, const float *src, long n)
{
    cvt_blocks(bf16_from_f32_range, dst, src, n);
}

void cpu_bf16_to_f32(float *dst, const uint16_t *src, long n)
{
    cvt_blocks(bf16_to_f32_range, dst, src, n);
}

/* ---------------------------------------------------------------------------------- */
/* fp16: vcvtps2ph / vcvtph2ps (F16C, or AVX-512F 16 lanes at a time). The immediate   */
/* _MM_FROUND_TO_NEAREST_INT fixes RNE whatever MXCSR.RC says; subnormals, overflow to */
/* inf and NaN quieting are done by the instruction as in the scalar reference.       */

static void f16_from_f32_range(void *dstv, const void *srcv, long i0, long i1)
{
    uint16_t *restrict dst = dstv;
    const float *restrict src = srcv;
    long i = i0;
#if defined(__AVX512F__)
    for (; i + 16 <= i1; i += 16) {
        __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256((__m256i *)(dst + i), h);
    }
#elif defined(__F16C__)
    for (; i + 8 <= i1; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
#endif
    for (; i < i1; i++) dst[i] = cvt_f32_to_f16_1(src[i]);
}

static void f16_to_f32_range(void *dstv, const void *srcv, long i0, long i1)
{
    float *restrict dst = dstv;
    const uint16_t *restrict src = srcv;
    long i = i0;
#if defined(__AVX512F__)
    for (; i + 16 <= i1; i += 16)
        _mm512_storeu_ps(dst + i,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
#elif defined(__F16C__)
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < i1; i++) dst[i] = cvt_f16_to_f32_1(src[i]);
}

void cpu_f32_to_f16(uint16_t *dst, const float *src, long n)
{
    cvt_blocks(f16_from_f32_range, dst, src, n);
}

void cpu_f16_to_f32(float *dst, const uint16_t *src, long n)
{
    cvt_blocks(f16_to_f32_range, dst, src, n);
}
