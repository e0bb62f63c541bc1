/* emu_test.h — what the CUDA emulator's test files share: random data, the CPU backend
 * (the reference), comparisons, and the hand-off of each file's pass/fail/skip counts to
 * test_cuda_emu.cpp (tests/test.h keeps its counters per file). */
#ifndef TRIDENT_CUDA_EMU_TEST_H
#define TRIDENT_CUDA_EMU_TEST_H

#include <stdint.h>
#include <string.h>

#include <vector>

extern "C" {
#include "backend.h"
#include "kernels.h"
}

/* the CPU backend every comparison runs against (created once by test_cuda_emu.cpp) */
struct backend *emu_cpu();

/* xorshift: the same data in every run */
struct emu_rng {
    uint64_t s;
    explicit emu_rng(uint64_t seed) : s(seed * 2654435761u + 88172645463325252ull) {}
    float uniform()  /* [-1, 1) */
    {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return (float)((s >> 40) * (1.0 / (1 << 23))) - 1.0f;
    }
};

static inline uint32_t emu_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
/* equal bits, or both NaN (a NaN's payload differs between x86 and the GPU) */
static inline bool emu_same_f32(float a, float b) { return (a != a && b != b) || emu_bits(a) == emu_bits(b); }
static inline bool emu_same_16(uint16_t a, uint16_t b, enum kdtype dt)
{
    const uint16_t e = dt == KDT_BF16 ? 0x7f80u : 0x7c00u, m = dt == KDT_BF16 ? 0x7fu : 0x3ffu;
    const bool na = (a & e) == e && (a & m), nb = (b & e) == e && (b & m);
    return (na && nb) || a == b;
}
/* index of the first element of a and b (n elements of dt) that differ, or -1 */
static inline int64_t emu_first_diff(const void *a, const void *b, enum kdtype dt, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        bool same;
        if (dt == KDT_F32) same = emu_same_f32(((const float *)a)[i], ((const float *)b)[i]);
        else if (dt == KDT_BF16 || dt == KDT_F16)
            same = emu_same_16(((const uint16_t *)a)[i], ((const uint16_t *)b)[i], dt);
        else same = ((const uint8_t *)a)[i] == ((const uint8_t *)b)[i];
        if (!same) return i;
    }
    return -1;
}

typedef void (*emu_suite)(int counts[3]);
void emu_suite_shim(int counts[3]);
void emu_suite_core(int counts[3]);
void emu_suite_nn(int counts[3]);
void emu_suite_attention(int counts[3]);

#define EMU_SUITE_END(counts)   \
    do {                        \
        (counts)[0] = test_n_pass; \
        (counts)[1] = test_n_fail; \
        (counts)[2] = test_n_skip; \
    } while (0)

#endif
