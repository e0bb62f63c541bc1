/* emu.h — just enough of CUDA to run the CUDA backend's own kernel source on the CPU.
 *
 * tests/cuda_emu compiles kernels/cuda/<name>_k.cuh (the __global__ and __device__ code of each
 * .cu) with g++ -DTR_CUDA_EMU against this header, and launches a kernel with
 *     emu_launch(grid, block, smem_bytes, kernel, args...)
 * which runs the grid's blocks one after another, each with blockDim.x real threads
 * (pthreads, reused from block to block) that run the kernel body concurrently:
 *  - threadIdx / blockIdx are thread-locals, blockDim / gridDim the launch's;
 *  - __syncthreads() is a barrier over every thread of the block; the warp operations
 *    (__shfl_sync, __shfl_xor_sync, __shfl_down_sync, __any_sync, __all_sync,
 *    __ballot_sync) are a barrier over the warp's 32 threads around an exchange buffer,
 *    so a kernel whose lanes diverge around them deadlocks here as it would misbehave on
 *    the GPU. A barrier that not every thread reaches (a __syncthreads skipped by some
 *    threads, or reached by some while others have returned) is reported after a timeout,
 *    as a failed launch with a message naming the block and the barrier;
 *  - static __shared__ arrays are static arrays (one block runs at a time, so every
 *    block's threads share them, and only them); the dynamic shared memory
 *    (CUDA_DYN_SHARED in the kernels) is a buffer of exactly smem_bytes between guard
 *    bytes: a write out of bounds fails the launch, and its contents start as NaN bytes
 *    (0xff) in every block, so a read of a value never written shows in the results;
 *  - the launch limits of compute capability 8.x are checked (1024 threads, grid y/z
 *    65535, 48 KiB of dynamic shared memory without the opt-in, 227 KiB with it);
 *  - __nv_bfloat16 / __half convert as cuda_bf16.h / cuda_fp16.h do: round to nearest
 *    even, NaN to the canonical 0x7fff;
 *  - atomics are the compiler's __atomic builtins.
 * Built with AddressSanitizer (the Makefile's EMU_SAN, the default), a kernel's access
 * outside its buffers or outside a static __shared__ array stops the test with a report.
 * What it cannot show: timing; the GPU memory model (blocks here never overlap, so a race
 * between blocks is invisible, and every warp operation here also orders memory, as a
 * missing __syncwarp on the GPU would not); real warp scheduling (independent thread
 * scheduling, lanes of a warp running apart); the GPU's floating point where it differs
 * from the CPU's (fused multiply-adds that nvcc forms by itself outside the -fmad=false
 * files, expf/logf accuracy: glibc's are used); and library code (cub, cuBLAS).
 */
#ifndef TRIDENT_CUDA_EMU_H
#define TRIDENT_CUDA_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <functional>

#include "emu_types.h"  /* __nv_bfloat16, __half */

/* the project's C headers that the kernels include (dtype.cuh: tensor.h) have C linkage */
extern "C" {
#include "tensor.h"
}

/* ---------------------------------------------------------------------------------- */
/* qualifiers                                                                           */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
/* the kernels' dynamic shared memory: the launch's guarded buffer */
#define CUDA_DYN_SHARED(type, name) type *name = (type *)emu_dyn_shared()

using std::isfinite;
using std::isnan;
using std::isinf;

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

void *emu_dyn_shared();

/* ---------------------------------------------------------------------------------- */
/* synchronization                                                                      */

void __syncthreads();
/* every lane of the calling thread's warp stores 8 bytes, waits for the whole warp and
 * reads lane src's 8 bytes */
uint64_t emu_warp_exchange(uint64_t v, int src, unsigned mask);
/* the bits of every lane's pred (bit l: lane l), the same on every lane */
unsigned emu_warp_ballot(int pred, unsigned mask);

static inline int emu_lane() { return (int)(threadIdx.x % 32u); }

template <typename T> static inline T emu_shfl(unsigned mask, T v, int src)
{
    static_assert(sizeof(T) <= 8, "a warp shuffle moves at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    u = emu_warp_exchange(u, src, mask);
    T r;
    memcpy(&r, &u, sizeof r);
    return r;
}
/* lane src % width of the caller's width-wide segment (width a power of two <= 32) */
template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    return emu_shfl(mask, v, (emu_lane() & ~(width - 1)) + (src & (width - 1)));
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32)
{
    const int l = emu_lane(), s = l ^ lm;
    /* a lane whose partner is outside its segment keeps its own value */
    return emu_shfl(mask, v, (s & ~(width - 1)) == (l & ~(width - 1)) ? s : l);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    const int l = emu_lane(), s = l + (int)d;
    return emu_shfl(mask, v, (s & ~(width - 1)) == (l & ~(width - 1)) ? s : l);
}
template <typename T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    const int l = emu_lane(), s = l - (int)d;
    return emu_shfl(mask, v, s >= (l & ~(width - 1)) ? s : l);
}
static inline unsigned __ballot_sync(unsigned mask, int p) { return emu_warp_ballot(p, mask); }
static inline int __any_sync(unsigned mask, int p) { return emu_warp_ballot(p, mask) != 0; }
static inline int __all_sync(unsigned mask, int p) { return emu_warp_ballot(p, mask) == mask; }

/* ---------------------------------------------------------------------------------- */
/* atomics (relaxed, as the GPU's; they return the old value)                           */

template <typename T> static inline T atomicAdd(T *p, T v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline float atomicAdd(float *p, float v)
{
    float old, sum;
    do {
        __atomic_load(p, &old, __ATOMIC_RELAXED);
        sum = old + v;
    } while (!__atomic_compare_exchange(p, &old, &sum, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
template <typename T> static inline T atomicMax(T *p, T v)
{
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v &&
           !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}

/* ---------------------------------------------------------------------------------- */
/* math intrinsics: the fast forms are the accurate ones (glibc declares __expf, __logf) */

static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x != x ? 0.0f : x < 0 ? 0.0f : x > 1 ? 1.0f : x; }
/* round to nearest even; NaN gives 0, out of range saturates (cvt.rni.s32.f32) */
static inline int __float2int_rn(float x)
{
    if (x != x) return 0;
    const float r = nearbyintf(x);
    if (r >= 2147483648.0f) return INT32_MAX;
    if (r < -2147483648.0f) return INT32_MIN;
    return (int)r;
}
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }

/* ---------------------------------------------------------------------------------- */
/* launches                                                                             */

/* Runs body as the kernel of a grid of blocks: 0 when every block finished, -1 when the
 * launch was refused (a limit) or failed (a barrier timed out, a guard byte was written);
 * emu_error() then says what and where. optin: the launch asked for more than 48 KiB of
 * dynamic shared memory (cudaFuncSetAttribute), up to 227 KiB. */
int emu_run(dim3 grid, dim3 block, size_t smem_bytes, bool optin,
            const std::function<void()> &body);
const char *emu_error();
/* Seconds a barrier waits for the rest of its threads before it reports a deadlock
 * (default 20, or the environment's EMU_BARRIER_TIMEOUT_S; the shim's own test uses a
 * short one). */
void emu_set_barrier_timeout(double seconds);

/* emu_launch(grid, block, smem, kernel, args...): kernel<<<grid, block, smem>>>(args...)
 * (every thread gets its own copies of the arguments, as kernel parameters) */
template <typename... P, typename... A>
int emu_launch(dim3 grid, dim3 block, size_t smem, void (*kernel)(P...), const A &...args)
{
    return emu_run(grid, block, smem, false, [&] { kernel(args...); });
}
/* the same with the opt-in to more than 48 KiB of dynamic shared memory */
template <typename... P, typename... A>
int emu_launch_optin(dim3 grid, dim3 block, size_t smem, void (*kernel)(P...), const A &...args)
{
    return emu_run(grid, block, smem, true, [&] { kernel(args...); });
}

#endif
