/* emu_types.h — __nv_bfloat16 and __half for the CUDA emulator (tests/cuda_emu), with the
 * conversions of the CUDA toolkit's cuda_bf16.h / cuda_fp16.h: float to 16 bits rounds to
 * nearest even, overflows to inf (fp16: from 65520 up), keeps subnormals, and turns every
 * NaN into the canonical 0x7fff (as the device's cvt.rn and the headers' host code do:
 * sign and payload are dropped); 16 bits to float is exact. */
#ifndef TRIDENT_CUDA_EMU_TYPES_H
#define TRIDENT_CUDA_EMU_TYPES_H

#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
    uint16_t x;
};
struct __half {
    uint16_t x;
};

static inline uint32_t emu_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float emu_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    uint32_t u = emu_f32_bits(f);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.x = 0x7fffu;
        return r;
    }
    u += 0x7fffu + ((u >> 16) & 1u);  /* to nearest, ties to even (inf stays inf) */
    r.x = (uint16_t)(u >> 16);
    return r;
}
static inline __nv_bfloat16 __float2bfloat16_rz(float f)  /* toward zero */
{
    const uint32_t u = emu_f32_bits(f);
    __nv_bfloat16 r;
    r.x = (u & 0x7fffffffu) > 0x7f800000u ? 0x7fffu : (uint16_t)(u >> 16);
    return r;
}
static inline float __bfloat162float(__nv_bfloat16 h) { return emu_bits_f32((uint32_t)h.x << 16); }

static inline __half __float2half_rn(float f)
{
    const uint32_t u = emu_f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    __half r;
    if (a > 0x7f800000u) {
        r.x = 0x7fffu;
        return r;
    }
    if (a >= 0x477ff000u) {  /* 65520 and up round to inf */
        r.x = (uint16_t)(sign | 0x7c00u);
        return r;
    }
    const int e = (int)(a >> 23) - 127;  /* unbiased exponent */
    uint32_t m, shift;
    if (e >= -14) {  /* a normal half: 10 of the 23 mantissa bits stay */
        m = ((uint32_t)(e + 15) << 10) | ((a >> 13) & 0x3ffu);
        shift = 13;
        const uint32_t rest = a & 0x1fffu, half = 0x1000u;
        if (rest > half || (rest == half && (m & 1u))) m++;  /* may carry into the exponent */
        r.x = (uint16_t)(sign | m);
        return r;
    }
    /* subnormal half (or zero): units of 2^-24; the value is (1.m) 2^e = mant 2^(e-23) */
    if (e < -25) {  /* below 2^-25: rounds to 0 (2^-25 itself is a tie, to even 0) */
        r.x = (uint16_t)sign;
        return r;
    }
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    shift = (uint32_t)(-e - 1);  /* mant 2^(e-23) / 2^-24 = mant >> (-1 - e) */
    m = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (m & 1u))) m++;
    r.x = (uint16_t)(sign | m);
    return r;
}
static inline float __half2float(__half h)
{
    const uint32_t sign = (uint32_t)(h.x & 0x8000u) << 16;
    const uint32_t e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu;
    if (e == 0x1f) return emu_bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        const float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return emu_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

#endif
