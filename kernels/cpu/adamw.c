/* adamw.c — AdamW with decoupled weight decay and bias correction (step t >= 1). */
#include <math.h>

#include "cpu.h"

void cpu_adamw(float *restrict p, const float *restrict grad, float *restrict m,
               float *restrict v, long n, float lr, float b1, float b2, float eps,
               float wd, float grad_scale, int t)
{
    /* bias corrections once per call, in double: b2^t is close to 1 for small t */
    float c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    float c2 = (float)(1.0 / (1.0 - pow(b2, t)));
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi * c1) / (__builtin_sqrtf(vi * c2) + eps) + wd * p[i]);
    }
}
