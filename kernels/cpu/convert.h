/* convert.h — fp32 <-> bf16 / fp16 conversion (CPU backend, private to kernels/).
 *
 * 16-bit values are stored as their bit patterns in uint16_t; arithmetic stays fp32.
 * Every conversion is the IEEE 754 one:
 *  - fp32 -> 16 bit rounds to nearest, ties to even, whatever the FPU rounding mode;
 *    a value at or above the overflow threshold (fp16: 65520, halfway between 65504 and
 *    65536; bf16: 0x1.ff8p127) becomes +-inf; fp32 subnormals are rounded, not flushed
 *    (to fp16 they all become +-0, to bf16 they keep their top bits); -0 stays -0.
 *  - NaN stays NaN, always quiet: sign and the top payload bits kept, quiet bit set.
 *  - 16 bit -> fp32 is exact. bf16 -> fp32 is the bit pattern shifted up (a signalling
 *    NaN stays signalling, so bf16 -> fp32 -> bf16 is the identity on every pattern);
 *    fp16 -> fp32 sets the quiet bit of a NaN, as the F16C instruction does.
 *
 * The scalar functions below are the reference: the array functions (convert.c) give
 * the same bits on every input, which tests/test_precision.c checks. They assume the
 * default MXCSR (no DAZ/FTZ), which trident never changes.
 *
 * Array functions are OpenMP-parallel (static blocks, so the result does not depend on
 * the thread count) and use F16C / AVX-512F for fp16 and AVX512_BF16 for bf16 when
 * compiled for a CPU that has them (elsewhere, integer rounding that GCC vectorises).
 * vcvtneps2bf16 flushes subnormal inputs to zero, so blocks holding one are rounded by
 * the scalar code instead (convert.c).
 * dst and src must not overlap.
 */
#ifndef TRIDENT_KERNELS_CPU_CONVERT_H
#define TRIDENT_KERNELS_CPU_CONVERT_H

#include <stdint.h>
#include <string.h>

static inline uint32_t cvt_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float cvt_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* bf16 is the top half of an fp32: round the low 16 bits away, to nearest even. Adding
 * 0x7fff (+1 when the kept part is odd) carries into the kept part exactly when the
 * dropped part is above half (or at half with an odd kept part); a carry out of the
 * mantissa bumps the exponent, and from the largest finite value it gives inf. */
static inline uint16_t cvt_f32_to_bf16_1(float x)
{
    uint32_t u = cvt_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);  /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float cvt_bf16_to_f32_1(uint16_t h) { return cvt_float((uint32_t)h << 16); }

/* fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static inline uint16_t cvt_f32_to_f16_1(float x)
{
    uint32_t u = cvt_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* >= 65520 (inf too) */
    if (a >= 0x38800000u) {                                   /* >= 2^-14: normal */
        a -= (127u - 15u) << 23;                              /* rebias the exponent */
        a += 0xfffu + ((a >> 13) & 1u);                       /* as for bf16, 13 bits */
        return (uint16_t)(sign | (a >> 13));
    }
    if (a <= 0x33000000u) return sign;  /* <= 2^-25, half the smallest subnormal: 0 */
    /* subnormal result: x = m 2^(e-150), the result counts units of 2^-24, so it is
     * m >> (126 - e) rounded to nearest even (126 - e is 14..24 here) */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    q += rem > half || (rem == half && (q & 1u));
    return (uint16_t)(sign | q);  /* q == 0x400 is the smallest normal, encoded alike */
}

static inline float cvt_f16_to_f32_1(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return cvt_float(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    if (e == 0) {  /* zero or subnormal: m 2^-24, exact in fp32 */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return cvt_float(sign | ((e + 127u - 15u) << 23) | (m << 13));
}

/* Arrays of n elements (the same results as the scalar functions, element by element). */
void cpu_f32_to_bf16(uint16_t *dst, const float *src, long n);
void cpu_bf16_to_f32(float *dst, const uint16_t *src, long n);
void cpu_f32_to_f16(uint16_t *dst, const float *src, long n);
void cpu_f16_to_f32(float *dst, const uint16_t *src, long n);

#endif
