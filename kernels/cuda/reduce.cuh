/* reduce.cuh — block-wide reductions in a fixed order (a shared-memory tree over the
 * block's threads), so a sum is the same from run to run: no atomics on floating point.
 * Every thread of the block must call them (they synchronize); blockDim.x is a power of
 * two, at most 1024, and sh holds blockDim.x values. */
#ifndef TRIDENT_CUDA_REDUCE_CUH
#define TRIDENT_CUDA_REDUCE_CUH

struct red_sum {
    template <typename T> __device__ static T op(T a, T b) { return a + b; }
};
struct red_max {  /* fmaxf: a NaN operand gives the other (as the CPU's a > A ? a : A) */
    __device__ static float op(float a, float b) { return fmaxf(a, b); }
    __device__ static int op(int a, int b) { return a > b ? a : b; }
};

template <typename R, typename T> __device__ T block_reduce(T v, T *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = R::op(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();  /* sh may be reused by the caller's next reduction */
    return r;
}

/* out[0] = the sum of part[0..n) in a fixed order (one block of blockDim.x threads:
 * thread t sums t, t+blockDim.x, ... in order, then the tree) */
__global__ static void sum_partials_f64(double *out, const double *part, int64_t n)
{
    __shared__ double sh[1024];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
    s = block_reduce<red_sum>(s, sh);
    if (threadIdx.x == 0) out[0] = s;
}

#endif
