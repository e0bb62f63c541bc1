/* residual.c — the residual connection, out = a + b (out may alias a). */
#include "cpu.h"

void cpu_residual_fwd(float *out, const float *a, const float *b, long n)
{
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}
