/* test_cuda_emu.cpp — the CUDA backend's kernel source (kernels/cuda/<name>_k.cuh), run on the
 * CPU under the emulator of emu.h in every test run, against the CPU backend and double
 * references: bin/test_cuda_emu. The shim's own checks come first (a skipped
 * __syncthreads must be reported as a deadlock, a shared-memory overrun as such), then one
 * suite per kernel family (emu_core.cpp, emu_nn.cpp, emu_attention.cpp). */
#include "emu.h"

#include <stdlib.h>
#include <time.h>

#include "emu_test.h"
#include "test.h"

/* Under AddressSanitizer (the Makefile's EMU_SAN): out-of-bounds accesses stop the test;
 * what MPI, OpenMP and HDF5 keep allocated at exit is not a kernel's bug. */
extern "C" const char *__asan_default_options() { return "detect_leaks=0"; }

static struct backend *g_cpu;
struct backend *emu_cpu() { return g_cpu; }

/* ---------------------------------------------------------------------------------- */
/* the shim itself                                                                      */

static __global__ void skipped_sync_kernel(int *out)
{
    if (threadIdx.x != 5) __syncthreads(); /* thread 5 never arrives */
    out[threadIdx.x] = 1;
}
static __global__ void early_return_kernel(int *out)
{
    if (threadIdx.x >= 32) return; /* the other warps leave before the barrier */
    __syncthreads();
    out[threadIdx.x] = 1;
}
static __global__ void overrun_kernel(int n)
{
    CUDA_DYN_SHARED(float, sm);
    for (int i = threadIdx.x; i < n; i += blockDim.x) sm[i] = 1.0f;
}
static __global__ void warp_ops_kernel(float *out, const float *in)
{
    const float x = in[threadIdx.x];
    float s = x;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float b = __shfl_sync(0xffffffffu, x, 3);
    const float d = __shfl_down_sync(0xffffffffu, x, 1);
    const int any = __any_sync(0xffffffffu, threadIdx.x == 40);
    out[threadIdx.x * 4 + 0] = s;
    out[threadIdx.x * 4 + 1] = b;
    out[threadIdx.x * 4 + 2] = d;
    out[threadIdx.x * 4 + 3] = (float)any;
}

static void test_shim_reports_a_skipped_syncthreads_as_deadlock(void)
{
    const char *env = getenv("EMU_BARRIER_TIMEOUT_S");
    emu_set_barrier_timeout(0.5);
    std::vector<int> out(64, 0);
    int rc = emu_launch(2, 64, 0, skipped_sync_kernel, out.data());
    CHECK_MSG(rc != 0 && strstr(emu_error(), "deadlock"), "rc %d, error '%s'", rc, emu_error());
    rc = emu_launch(1, 64, 0, early_return_kernel, out.data());
    CHECK_MSG(rc != 0 && strstr(emu_error(), "deadlock"), "rc %d, error '%s'", rc, emu_error());
    emu_set_barrier_timeout(env && atof(env) > 0 ? atof(env) : 20.0);
}

static void test_shim_catches_shared_memory_overrun_and_launch_limits(void)
{
    CHECK_MSG(emu_launch(3, 128, 1024, overrun_kernel, 256) == 0, "%s", emu_error());
    const int rc = emu_launch(3, 128, 1024, overrun_kernel, 257); /* one float past the end */
    CHECK_MSG(rc != 0 && strstr(emu_error(), "out of bounds"), "rc %d, '%s'", rc, emu_error());
    CHECK(emu_launch(1, 1025, 0, overrun_kernel, 0) != 0);
    CHECK(emu_launch(1, 32, 49 * 1024, overrun_kernel, 0) != 0);
    CHECK_MSG(emu_launch_optin(1, 32, 49 * 1024, overrun_kernel, 0) == 0, "%s", emu_error());
}

static void test_shim_warp_shuffles_and_votes(void)
{
    std::vector<float> in(64), out(64 * 4);
    for (int i = 0; i < 64; i++) in[i] = (float)(i * i % 17);
    CHECK_MSG(emu_launch(1, 64, 0, warp_ops_kernel, out.data(), (const float *)in.data()) == 0,
              "%s", emu_error());
    for (int t = 0; t < 64; t++) {
        const int w = t / 32, l = t % 32;
        float s = 0;
        for (int j = 0; j < 32; j++) s += in[w * 32 + j];
        CHECK(out[t * 4 + 0] == s);
        CHECK(out[t * 4 + 1] == in[w * 32 + 3]);
        CHECK(out[t * 4 + 2] == in[w * 32 + (l < 31 ? l + 1 : l)]);
        CHECK(out[t * 4 + 3] == (w == 1 ? 1.0f : 0.0f));
    }
}

/* round to nearest even, overflow, subnormals and NaN as cuda_bf16.h / cuda_fp16.h */
static void test_shim_16bit_conversions(void)
{
    CHECK(__float2bfloat16_rn(1.0f + 0x1p-8f).x == 0x3f80);     /* tie to even (down) */
    CHECK(__float2bfloat16_rn(1.0f + 3 * 0x1p-8f).x == 0x3f82); /* tie to even (up) */
    CHECK(__float2bfloat16_rn(NAN).x == 0x7fff);
    CHECK(__float2bfloat16_rn(-INFINITY).x == 0xff80);
    CHECK(__float2half_rn(1.0f + 0x1p-11f).x == 0x3c00);
    CHECK(__float2half_rn(1.0f + 3 * 0x1p-11f).x == 0x3c02);
    CHECK(__float2half_rn(65519.0f).x == 0x7bff);
    CHECK(__float2half_rn(65520.0f).x == 0x7c00);
    CHECK(__float2half_rn(0x1p-24f).x == 0x0001);
    CHECK(__float2half_rn(0x1p-25f).x == 0x0000); /* tie to even 0 */
    CHECK(__float2half_rn(3 * 0x1p-26f).x == 0x0001);
    CHECK(__float2half_rn(-NAN).x == 0x7fff);
    CHECK(__half2float(__float2half_rn(0x1p-14f - 0x1p-24f)) == 0x1p-14f - 0x1p-24f);
    CHECK(__float2int_rn(2.5f) == 2 && __float2int_rn(3.5f) == 4 && __float2int_rn(NAN) == 0);
}

static void shim_suite(int counts[3])
{
    RUN(test_shim_reports_a_skipped_syncthreads_as_deadlock);
    RUN(test_shim_catches_shared_memory_overrun_and_launch_limits);
    RUN(test_shim_warp_shuffles_and_votes);
    RUN(test_shim_16bit_conversions);
    EMU_SUITE_END(counts);
}

/* test_cuda_emu [suite]: every suite, or only the one named (shim, core, nn, attention) */
int main(int argc, char **argv)
{
    char err[256];
    g_cpu = backend_init(KDEV_CPU, 0, err, sizeof err);
    if (!g_cpu) {
        fprintf(stderr, "test_cuda_emu: the CPU backend did not start: %s\n", err);
        return 1;
    }
    int counts[3];
    int total[3] = {0, 0, 0};
    const emu_suite suites[] = {shim_suite, emu_suite_core, emu_suite_nn, emu_suite_attention};
    const char *names[] = {"shim", "core", "nn", "attention"};
    for (int k = 0; k < 4; k++) {
        if (argc > 1 && strcmp(argv[1], names[k]) != 0) continue;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        suites[k](counts);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("  (%s: %.1f s)\n", names[k],
               (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
        for (int i = 0; i < 3; i++) total[i] += counts[i];
    }
    test_n_pass = total[0];
    test_n_fail = total[1];
    test_n_skip = total[2];
    return test_summary();
}
