/* bench_optim.c — speed of the optimizer updates on each state form (fp32, bf16, int8).
 *
 *   bin/bench_optim [--n=ELEMS] [--reps=R]
 *
 * Runs AdamW (adamw_state), LAMB (lamb_moments + lamb_apply) and SGD with momentum
 * (sgd_update) through the CPU kernel table on n parameters (default 2^24, past any
 * cache) with every OpenMP thread, R times each, and prints the median time per call and
 * per parameter (in brackets the best: on a shared machine the median says what a run
 * sees, the best what the code can do). The moments hold small random values, so int8
 * blocks are neither zero nor NaN: the ordinary path is timed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "kernels.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static float uni(void)  /* [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) * 0x1p-52 - 1.0);
}

enum form { F32, BF16, I8, N_FORMS };
static const char *form_name[N_FORMS] = {"fp32", "bf16", "int8"};

/* a state buffer of n elements in form f, holding x (role: 0 signed, 1 >= 0) */
static struct kstate make_state(struct backend *be, enum form f, long n, int role)
{
    const struct kernels *k = backend_kernels(be);
    struct kstate s = {TENSOR_NONE, TENSOR_NONE};
    if (f == F32) s.q = tensor_1d(backend_alloc(be, 4 * (size_t)n), KDT_F32, n);
    else if (f == BF16) s.q = tensor_1d(backend_alloc(be, 2 * (size_t)n), KDT_BF16, n);
    else {
        long nb = (n + KSTATE_BLOCK - 1) / KSTATE_BLOCK;
        s.q = tensor_1d(backend_alloc(be, 4 * (size_t)((n + 3) / 4)), KDT_I32, (n + 3) / 4);
        s.scale = tensor_1d(backend_alloc(be, 4 * (size_t)nb), KDT_F32, nb);
    }
    float *x = backend_alloc(be, 4 * (size_t)n);
    for (long i = 0; i < n; i++) x[i] = role ? 1e-6f * fabsf(uni()) : 1e-3f * uni();
    k->state_from_f32(be, s, tensor_1d(x, KDT_F32, n), role);
    backend_free_mem(be, x);
    return s;
}

static void free_state(struct backend *be, struct kstate s)
{
    backend_free_mem(be, s.q.data);
    if (s.scale.data) backend_free_mem(be, s.scale.data);
}

enum op { ADAMW, LAMB, SGD, N_OPS };
static const char *op_name[N_OPS] = {"adamw", "lamb (moments + apply)", "sgd momentum"};

int main(int argc, char **argv)
{
    long n = 1L << 24;
    int reps = 11;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--n=", 4) == 0) n = atol(argv[i] + 4);
        else if (strncmp(argv[i], "--reps=", 7) == 0) reps = atoi(argv[i] + 7);
        else { fprintf(stderr, "usage: %s [--n=ELEMS] [--reps=R]\n", argv[0]); return 2; }
    }
    if (n < 1 || reps < 1) { fprintf(stderr, "bench_optim: --n and --reps must be >= 1\n"); return 2; }
    char err[256];
    struct backend *be = backend_init(KDEV_CPU, 0, err, sizeof err);
    if (!be) { fprintf(stderr, "bench_optim: no CPU backend: %s\n", err); return 1; }
    const struct kernels *k = backend_kernels(be);
    struct tensor p = tensor_1d(backend_alloc(be, 4 * (size_t)n), KDT_F32, n);
    struct tensor g = tensor_1d(backend_alloc(be, 4 * (size_t)n), KDT_F32, n);
    float *P = p.data, *G = g.data;
    for (long i = 0; i < n; i++) { P[i] = 0.02f * uni(); G[i] = 1e-3f * uni(); }
    double *t = malloc(sizeof(double) * (size_t)reps);
    printf("optimizer update, %ld parameters, %d threads: median ms per call (best), ns per parameter\n",
           n, kernels_threads());
    printf("%-24s %-5s %14s %10s\n", "optimizer", "state", "ms", "ns/param");
    for (int o = 0; o < N_OPS; o++)
        for (int f = 0; f < N_FORMS; f++) {
            struct kstate m = make_state(be, (enum form)f, n, 0);
            struct kstate v = o == SGD ? (struct kstate){TENSOR_NONE, TENSOR_NONE}
                                       : make_state(be, (enum form)f, n, 1);
            for (int r = 0; r < reps + 1; r++) {
                double t0 = tr_now();
                if (o == ADAMW)
                    k->adamw_state(be, p, g, m, v, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 10 + r);
                else if (o == LAMB) {
                    k->lamb_moments(be, p, g, m, v, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 10 + r, 0, n);
                    k->lamb_apply(be, p, m, v, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 10 + r);
                } else
                    k->sgd_update(be, p, g, m, 1e-4f, 0.9f, 0.1f, 1.0f);
                backend_synchronize(be);
                if (r > 0) t[r - 1] = tr_now() - t0;   /* the first call warms up */
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            printf("%-24s %-5s %8.1f (%5.1f) %10.2f\n", op_name[o], form_name[f],
                   1e3 * t[reps / 2], 1e3 * t[0], 1e9 * t[reps / 2] / (double)n);
            free_state(be, m);
            if (v.q.data) free_state(be, v);
        }
    free(t);
    backend_free_mem(be, p.data);
    backend_free_mem(be, g.data);
    backend_free(be);
    return 0;
}
