/* bench_convert.c — throughput of the fp32 <-> bf16 / fp16 conversions.
 *
 *   bin/bench_convert [--n=ELEMS] [--reps=R]
 *
 * For 1 thread and for every thread count up to omp_get_max_threads() (powers of two),
 * converts an array of n elements (default 2^24: 64 MiB of fp32, past any cache) R
 * times and prints the median rate in GB/s, counting bytes read plus bytes written
 * (6 per element), and in brackets the best one (on a machine shared with other jobs the
 * median says what a run sees, the best what the code can do). A parallel memcpy of the same traffic, timed in the same run, is the
 * yardstick: on a shared machine the ratio to it means more than the absolute number.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu/convert.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum op { TO_BF16, FROM_BF16, TO_F16, FROM_F16, COPY, N_OPS };
static const char *op_name[N_OPS] = { "fp32->bf16", "bf16->fp32", "fp32->fp16", "fp16->fp32",
                                      "memcpy" };

static void run_op(enum op op, float *f, uint16_t *h, char *cpy, long n)
{
    switch (op) {
    case TO_BF16: cpu_f32_to_bf16(h, f, n); break;
    case FROM_BF16: cpu_bf16_to_f32(f, h, n); break;
    case TO_F16: cpu_f32_to_f16(h, f, n); break;
    case FROM_F16: cpu_f16_to_f32(f, h, n); break;
    case COPY: {  /* 3n bytes read, 3n written: the same traffic as a conversion */
        long bytes = 3 * n, nt = omp_get_max_threads();
#pragma omp parallel for schedule(static)
        for (long t = 0; t < nt; t++) {
            long b0 = bytes * t / nt, b1 = bytes * (t + 1) / nt;
            memcpy(cpy + b0, (const char *)f + b0, (size_t)(b1 - b0));
        }
        break;
    }
    default: break;
    }
}

int main(int argc, char **argv)
{
    long n = 1L << 24;
    int reps = 21;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--n=", 4) == 0) n = atol(argv[i] + 4);
        else if (strncmp(argv[i], "--reps=", 7) == 0) reps = atoi(argv[i] + 7);
        else { fprintf(stderr, "usage: %s [--n=ELEMS] [--reps=R]\n", argv[0]); return 2; }
    }
    if (n < 1 || reps < 1) { fprintf(stderr, "n and reps must be >= 1\n"); return 2; }
    float *f = malloc((size_t)n * sizeof *f);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    char *cpy = malloc((size_t)n * 3);
    double *t = malloc((size_t)reps * sizeof *t);
    for (long i = 0; i < n; i++) f[i] = sinf((float)i) * 1000.0f;  /* all in fp16 range */
    memset(cpy, 0, (size_t)n * 3);
    cpu_f32_to_bf16(h, f, n);

    int max_threads = omp_get_max_threads();
    printf("n = %ld elements, %d reps, median [best] GB/s (bytes read + written)\n", n, reps);
    printf("%-8s", "threads");
    for (int op = 0; op < N_OPS; op++) printf(" %16s", op_name[op]);
    printf("\n");
    for (int nt = 1; nt <= max_threads; nt *= 2) {
        omp_set_num_threads(nt);
        printf("%-8d", nt);
        for (int op = 0; op < N_OPS; op++) {
            /* f and h stay consistent (a from-16 op writes f from h), so every pass
             * converts the same kind of data */
            run_op((enum op)op, f, h, cpy, n);  /* warm-up: pages touched, threads up */
            for (int r = 0; r < reps; r++) {
                double t0 = tr_now();
                run_op((enum op)op, f, h, cpy, n);
                t[r] = tr_now() - t0;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            printf(" %8.2f [%5.1f]", 6.0 * (double)n / t[reps / 2] / 1e9,
                   6.0 * (double)n / t[0] / 1e9);
        }
        printf("\n");
        fflush(stdout);
    }
    free(f);
    free(h);
    free(cpy);
    free(t);
    return 0;
}
