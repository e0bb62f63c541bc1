/* reduce.c — whole-buffer reductions and scaling (gradient norm and clipping). */
#include "cpu.h"

/* The partial sums are taken over a fixed number of fixed chunks and added in chunk
 * order, so the result depends on neither thread count nor timing (an OpenMP
 * reduction(+) combines per-thread sums in whatever order threads finish). */
enum { SUMSQ_CHUNKS = 256 };

double cpu_sumsq(const float *x, long n)
{
    double part[SUMSQ_CHUNKS];
    long chunk = (n + SUMSQ_CHUNKS - 1) / SUMSQ_CHUNKS;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < SUMSQ_CHUNKS; c++) {
        long i0 = c * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (long i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < SUMSQ_CHUNKS; c++) s += part[c];
    return s;
}

void cpu_scale(float *x, float s, long n)
{
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) x[i] *= s;
}
