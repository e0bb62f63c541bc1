/* fault.c — fault injection for the crash tests (see fault.h). */
#include "fault.h"

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
    int at;
    if (sscanf(spec, "%15[^:]:%d", want, &at) != 2 || strcmp(want, where) != 0 || at != step)
        return;
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != size - 1) return;
    fprintf(stderr, "trident: fault injection: rank %d dies at %s of step %d\n", rank, where,
            step);
    fflush(stderr);
    raise(SIGKILL);
}
