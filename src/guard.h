/* guard.h — the divergence guard: decides, before an update is applied, whether a step
 * went wrong.
 *
 * A step diverged when its loss or the global gradient norm is not finite, or when its
 * loss exceeds spike_factor × the median loss of the last spike_window accepted steps.
 * Every input is the same on every rank (the loss and the norm are global), so every
 * rank reaches the same verdict without communicating.
 */
#ifndef TRIDENT_GUARD_H
#define TRIDENT_GUARD_H

#include <stddef.h>

struct guard {
    double  factor;   /* 0: no spike test */
    int     window;
    double *hist;     /* ring of the last `window` accepted losses */
    double *sorted;   /* scratch for the median, allocated once */
    int     n, head;
};

void guard_init(struct guard *g, double factor, int window);
void guard_free(struct guard *g);
/* Forget the history (after a rollback); seed it with a known good loss when finite. */
void guard_reset(struct guard *g, double seed_loss);

/* 0 when the step is healthy; 1 with the reason in why. */
int  guard_check(const struct guard *g, double loss, double grad_norm, char *why, size_t n);

/* A healthy step's loss joins the history. */
void guard_accept(struct guard *g, double loss);

/* The median of the history (NAN when empty). */
double guard_median(const struct guard *g);

#endif
