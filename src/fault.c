/* fault.c — fault injection for the crash tests (see fault.h). */
#include "fault.h"

#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

void fault_point(const char *where, int step) {
    const char *spec = getenv("TRIDENT_FAULT");
    if (!spec || !*spec) return;
    char want[16];
    int at, who = -1;
    int n = sscanf(spec, "%15[^:]:%d:%d", want, &at, &who);
    if (n < 2 || at != step) return;
    int stop = strcmp(want, "stop") == 0;
    if (!stop && strcmp(want, where) != 0) return;
    if (stop && strcmp(where, "start") != 0) return; /* stop: at the start of the step */
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != (n == 3 && who >= 0 ? who : size - 1)) return;
    fprintf(stderr, "trident: fault injection: rank %d %s at %s of step %d\n", rank,
            stop ? "stops (SIGSTOP)" : "dies", stop ? "the start" : where, step);
    fflush(stderr);
    raise(stop ? SIGSTOP : SIGKILL);
}

void fault_slow_ckpt(void) {
    const char *s = getenv("TRIDENT_SLOW_CKPT");
    if (!s || !*s) return;
    double sec = atof(s);
    if (sec <= 0) return;
    struct timespec ts = {(time_t)sec, (long)((sec - (double)(time_t)sec) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}
