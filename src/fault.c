/* fault.c — fault injection for the crash tests (see fault.h). */
#include "fault.h"

#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void fault_point(const char *where, int step) {
    const char *spec = getenv("TRIDENT_FAULT");
    if (!spec || !*spec) return;
    char want[16];
    int at, who = -1;
    int n = sscanf(spec, "%15[^:]:%d:%d", want, &at, &who);
    if (n < 2 || at != step) return;
    int stop = strcmp(want, "stop") == 0, fail = strcmp(want, "fail") == 0;
    if (!stop && !fail && strcmp(want, where) != 0) return;
    if ((stop || fail) && strcmp(where, "start") != 0) return; /* at the start of the step */
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != (n == 3 && who >= 0 ? who : size - 1)) return;
    if (fail)
        tr_fail(TR_EXIT_FAILURE, NULL, "fault injection: an error on rank %d alone at the start "
                "of step %d", rank, step);
    fprintf(stderr, "trident: fault injection: rank %d %s at %s of step %d\n", rank,
            stop ? "stops (SIGSTOP)" : "dies", stop ? "the start" : where, step);
    fflush(stderr);
    raise(stop ? SIGSTOP : SIGKILL);
}

void fault_slow_ckpt(void) {
    const char *s = getenv("TRIDENT_SLOW_CKPT");
    if (!s || !*s) return;
    tr_sleep(atof(s));
}

/* the value of TRIDENT_FAULT=NAME:K when NAME matches, else -1 */
static long fault_arg(const char *name) {
    const char *spec = getenv("TRIDENT_FAULT");
    if (!spec || !*spec) return -1;
    char want[16];
    long at;
    if (sscanf(spec, "%15[^:]:%ld", want, &at) != 2 || strcmp(want, name) != 0) return -1;
    return at;
}

double fault_loss(double loss, long data_step) {
    if (fault_arg("spike") == data_step) return loss * 1000.0;
    if (fault_arg("nan") == data_step) return NAN;
    return loss;
}

/* x[n/2] = v on the highest rank (x: fp32 device memory) */
static void poison_one(struct backend *be, struct tensor x, float v) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int64_t n = tensor_numel(x);
    if (rank == size - 1 && n > 0 && x.dt == KDT_F32)
        backend_copy_h2d(be, tensor_view(x, n / 2, 1, 1).data, &v, sizeof v);
}

void fault_poison(struct backend *be, struct tensor x, int step) {
    if (fault_arg("nanweights") == step) poison_one(be, x, NAN);
}

int fault_armed(const char *name, long step) { return fault_arg(name) == step; }

void fault_overflow(struct backend *be, struct tensor x, int step) {
    if (fault_arg("overflow") == step) poison_one(be, x, INFINITY);
}
