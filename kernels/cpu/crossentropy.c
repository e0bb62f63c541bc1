/* crossentropy.c — softmax cross-entropy in steps over a vocabulary shard.
 *
 * Local column j is global column v0 + j; only global columns < V are real, so a row
 * has n_real = clamp(V - v0, 0, Vl) real columns and the rest (padding that makes the
 * vocabulary divide evenly into shards) is skipped everywhere.
 */
#include <math.h>

#include "cpu.h"
#include "vmath.h"

static int xent_n_real(int Vl, int v0, int V)
{
    int n = V - v0;
    return n < 0 ? 0 : n > Vl ? Vl : n;
}

void cpu_xent_max(float *rowmax, const float *logits, int N, int Vl, int v0, int V)
{
    int nr = xent_n_real(Vl, v0, V);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *restrict l = logits + (size_t)n * Vl;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < nr; j++) mx = l[j] > mx ? l[j] : mx;
        rowmax[n] = mx;
    }
}

void cpu_xent_sumexp(float *sumexp, const float *logits, const float *rowmax, int N,
                     int Vl, int v0, int V)
{
    int nr = xent_n_real(Vl, v0, V);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *restrict l = logits + (size_t)n * Vl;
        float mx = rowmax[n], s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < nr; j++) s += vm_expf(l[j] - mx);
        sumexp[n] = s;
    }
}

void cpu_xent_target(float *tlogit, const float *logits, const int32_t *targets, int N,
                     int Vl, int v0)
{
    for (int n = 0; n < N; n++) {
        int j = targets[n] - v0;
        tlogit[n] = (j >= 0 && j < Vl) ? logits[(size_t)n * Vl + j] : 0.0f;
    }
}

void cpu_xent_bwd(float *logits, const float *rowmax, const float *sumexp,
                  const int32_t *targets, float dloss, int N, int Vl, int v0, int V)
{
    int nr = xent_n_real(Vl, v0, V);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *restrict l = logits + (size_t)n * Vl;
        float mx = rowmax[n], inv = 1.0f / sumexp[n];
#pragma omp simd
        for (int j = 0; j < nr; j++) l[j] = vm_expf(l[j] - mx) * inv * dloss;
        for (int j = nr; j < Vl; j++) l[j] = 0.0f;
        int jt = targets[n] - v0;
        if (jt >= 0 && jt < nr) l[jt] -= dloss;
    }
}
