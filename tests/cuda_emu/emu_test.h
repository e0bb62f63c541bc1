/* emu_test.h — what the CUDA emulator's test files share: random data, the CPU backend
 * (the reference), comparisons, and the hand-off of each file's pass/fail/skip counts to
 * test_cuda_emu.cpp (tests/test.h keeps its counters per file). */
#ifndef TRIDENT_CUDA_EMU_TEST_H
#define TRIDENT_CUDA_EMU_TEST_H

#include <stdint.h>
#include <math.h>
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
static inline bool emu_same_f32(float a, float b)
{
    return (a != a && b != b) || emu_bits(a) == emu_bits(b);
}
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

/* the values of n elements of dt as fp32 */
static inline std::vector<float> emu_to_f32(const void *x, enum kdtype dt, int64_t n)
{
    std::vector<float> f(n);
    backend_kernels(emu_cpu())->convert(emu_cpu(), tensor_1d(f.data(), KDT_F32, n),
                                        tensor_1d((void *)x, dt, n));
    return f;
}
/* n elements of dt from fp32 values (rounded as the CPU rounds) */
static inline std::vector<uint8_t> emu_from_f32(const std::vector<float> &f, enum kdtype dt)
{
    std::vector<uint8_t> b(f.size() * kdtype_size(dt));
    backend_kernels(emu_cpu())->convert(emu_cpu(), tensor_1d(b.data(), dt, (int64_t)f.size()),
                                        tensor_1d((void *)f.data(), KDT_F32, (int64_t)f.size()));
    return b;
}
/* the first i with |got - want| > atol + rtol |want| (NaN anywhere counts), or -1 */
static inline int64_t emu_first_far(const std::vector<float> &got, const std::vector<float> &want,
                                    double rtol, double atol)
{
    for (size_t i = 0; i < want.size(); i++) {
        const double d = fabs((double)got[i] - want[i]);
        if (!(d <= atol + rtol * fabs((double)want[i]))) return (int64_t)i;
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
