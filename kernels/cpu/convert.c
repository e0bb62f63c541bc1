/* convert.c — fp32 <-> bf16 / fp16 over arrays (semantics and reference: convert.h).
 *
 * Each function splits the array into fixed blocks handed out by a static OpenMP
 * schedule; a block is converted by a SIMD body and a scalar tail. Arrays below
 * CVT_PAR_MIN elements stay on the calling thread, where the fork would cost more than
 * the copy.
 */
#include <immintrin.h>

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
/* bf16: integer arithmetic on the bit pattern; GCC turns these loops into AVX-512     */

static void bf16_from_f32_range(void *dstv, const void *srcv, long i0, long i1)
{
    uint16_t *restrict dst = dstv;
    const float *restrict src = srcv;
#pragma omp simd
    for (long i = i0; i < i1; i++) dst[i] = cvt_f32_to_bf16_1(src[i]);
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
