/* guard.c — the divergence guard (see guard.h). */
#include "guard.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void guard_init(struct guard *g, double factor, int window) {
    memset(g, 0, sizeof *g);
    g->factor = factor;
    g->window = window > 0 ? window : 1;
    g->hist = tr_calloc((size_t)g->window, sizeof(double));
    g->sorted = tr_calloc((size_t)g->window, sizeof(double));
}

void guard_free(struct guard *g) {
    tr_free(g->hist);
    tr_free(g->sorted);
    g->hist = g->sorted = NULL;
}

void guard_reset(struct guard *g, double seed_loss) {
    g->n = g->head = 0;
    if (isfinite(seed_loss)) guard_accept(g, seed_loss);
}

void guard_accept(struct guard *g, double loss) {
    g->hist[g->head] = loss;
    g->head = (g->head + 1) % g->window;
    if (g->n < g->window) g->n++;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double guard_median(const struct guard *g) {
    if (g->n == 0) return NAN;
    double *s = g->sorted;
    memcpy(s, g->hist, sizeof(double) * (size_t)g->n);
    qsort(s, (size_t)g->n, sizeof(double), cmp_double);
    return g->n % 2 ? s[g->n / 2] : 0.5 * (s[g->n / 2 - 1] + s[g->n / 2]);
}

int guard_check(const struct guard *g, double loss, double grad_norm, char *why, size_t n) {
    if (!isfinite(loss)) {
        snprintf(why, n, "the loss is %g", loss);
        return 1;
    }
    if (!isfinite(grad_norm)) {
        snprintf(why, n, "the gradient norm is %g (loss %.4f)", grad_norm, loss);
        return 1;
    }
    if (g->factor > 0 && g->n > 0) {
        double med = guard_median(g);
        if (loss > g->factor * med) {
            snprintf(why, n, "the loss %.4f is %.1f times the median %.4f of the last %d "
                     "steps (spike_factor = %g)", loss, loss / med, med, g->n, g->factor);
            return 1;
        }
    }
    return 0;
}
