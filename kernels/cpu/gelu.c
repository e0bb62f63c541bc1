/* gelu.c — GELU, tanh approximation, computed through the identity
 * 0.5 (1 + tanh(u)) = sigmoid(2u): one vectorised exp, no cancellation near 0. */
#include "cpu.h"
#include "vmath.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

void cpu_gelu_fwd(float *restrict out, const float *restrict inp, long n)
{
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + GELU_A * x * x * x);
        out[i] = x * vm_sigmoidf(2.0f * u);
    }
}

/* d/dx [x s(2u)] = s + x * 2 s (1 - s) * u',  u' = k (1 + 3a x^2);
 * (2 s(1-s) = 0.5 sech^2(u), the tanh form's derivative.) dinp may alias dout, so
 * neither is restrict; each element is read before it is written. */
void cpu_gelu_bwd(float *dinp, const float *inp, const float *dout, long n)
{
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + GELU_A * x * x * x);
        float s = vm_sigmoidf(2.0f * u);
        float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        dinp[i] = dout[i] * (s + x * 2.0f * s * (1.0f - s) * du);
    }
}
