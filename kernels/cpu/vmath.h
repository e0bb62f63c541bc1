/* vmath.h — exp, tanh and sigmoid that GCC auto-vectorises (private to kernels/cpu).
 *
 * libm's expf is a call the vectoriser cannot inline, so a softmax or GELU loop that
 * uses it runs one element at a time. vm_expf is straight-line code (clamps, FMAs, a
 * degree-6 polynomial and exponent-bit arithmetic), so under -O3 -march=native every
 * loop that calls it becomes AVX-512 code. No -ffast-math is needed or assumed.
 *
 * Accuracy (tests/test_kernels.c sweeps [-100, 88.7]): max relative error 8.4e-8 vs
 * exp() in double wherever the result is a normal float (about 1 ulp); above
 * ln(FLT_MAX) = 88.72 (and +INFINITY) it gives +INFINITY, and NaN gives NaN.
 *
 * Results that would be subnormal (x < ln(FLT_MIN) = -87.34, -INFINITY included) are
 * returned as +0: on Intel cores every subnormal result or operand costs a ~100-cycle
 * microcode assist, which made a softmax over widely spread logits 10x slower, and a
 * probability below 1.2e-38 is 0 to every consumer here.
 */
#ifndef TRIDENT_KERNELS_CPU_VMATH_H
#define TRIDENT_KERNELS_CPU_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t vm_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float vm_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ln(FLT_MIN): below it exp(x) is subnormal, and we return 0 (see the header comment) */
#define VM_EXP_MIN_X (-87.33654475f)

static inline float vm_expf(float x)
{
    /* Clamp so that every lane computes a normal number (a flushed lane would otherwise
     * still pay for its subnormal before the final select): 2^n stays in [2^-126, 2^128].
     * Comparisons are false for NaN, so NaN flows through the clamps
     * and poisons the polynomial (NaN out). */
    float xc = x < VM_EXP_MIN_X ? VM_EXP_MIN_X : x;
    xc = xc > 89.0f ? 89.0f : xc;

    /* n = round(x / ln2) with the 1.5*2^23 shifter: the low mantissa bits of t are n. */
    const float shifter = 12582912.0f;
    float t = fmaf(xc, 1.44269504088896341f, shifter);
    float n = t - shifter;
    uint32_t ni = vm_bits(t) - 0x4B400000u;   /* n as two's complement */

    /* r = x - n ln2 in two FMA steps (Cody-Waite split), |r| <= ln2/2 */
    float r = fmaf(n, -0.693359375f, xc);
    r = fmaf(n, 2.12194440e-4f, r);

    /* exp(r) on [-ln2/2, ln2/2] (Cephes expf coefficients) */
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;

    /* Scale by 2^n as 2^n1 * 2^n2 (n1 = floor(n/2), both normal floats) because 2^128,
     * needed to overflow to inf just above ln(FLT_MAX), is not a float. */
    uint32_t n1 = (uint32_t)((int32_t)ni >> 1);
    uint32_t n2 = ni - n1;
    float y = p * vm_float((n1 + 127u) << 23) * vm_float((n2 + 127u) << 23);
    return x < VM_EXP_MIN_X ? 0.0f : y;
}

/* 1 / (1 + exp(-x)); saturates cleanly to 0 and 1. */
static inline float vm_sigmoidf(float x) { return 1.0f / (1.0f + vm_expf(-x)); }

/* tanh(x) = 1 - 2/(exp(2x)+1): absolute error ~1e-7 (relative error grows near 0,
 * where the subtraction cancels), exact +-1 in saturation. */
static inline float vm_tanhf(float x) { return 1.0f - 2.0f / (vm_expf(2.0f * x) + 1.0f); }

#endif
