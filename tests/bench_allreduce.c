/* bench_allreduce.c — bus bandwidth of the flat and the hierarchical all-reduce.
 *
 * Same code path as the gradient buckets (dpr_allreduce). For each message size from
 * 1 KiB to 256 MiB (or --max_mib), times both algorithms over dp_comm = all ranks and
 * prints the bus bandwidth, 2(n-1)/n · bytes / time (the data each link must carry in an
 * optimal all-reduce), and the ratio hierarchical / flat. Emulate nodes with
 * TRIDENT_RANKS_PER_NODE. Results are checked against the expected sum. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "dp.h"
#include "grid.h"

static double time_one(const struct grid *g, enum dp_algo algo, float *x, long n, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        for (long i = 0; i < n; i++) x[i] = (float)(g->world_rank + 1);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = tr_now();
        dpr_allreduce(g, NULL, algo, tensor_1d(x, KDT_F32, n));
        double dt = tr_now() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (dt < best) best = dt;
    }
    float want = (float)g->world_size * (g->world_size + 1) / 2;
    if (x[0] != want || x[n - 1] != want) TR_ABORT("all-reduce gave %g, expected %g", x[0], want);
    return best;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int max_mib = 256;
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--max_mib=", 10) == 0) max_mib = atoi(argv[i] + 10);
    struct config cfg;
    config_defaults(&cfg);
    cfg.dp = 0; cfg.tp = 1; cfg.pp = 1; cfg.n_layer = 1; cfg.n_head = 1; cfg.n_embd = 8;
    struct grid g;
    grid_init(&g, &cfg);
    tr_set_rank(g.world_rank);
    long max_n = (long)max_mib * 1024 * 1024 / 4;
    float *x = tr_malloc(sizeof(float) * (size_t)max_n);
    double fac = 2.0 * (g.dp - 1) / g.dp;
    if (g.world_rank == 0) {
        printf("all-reduce over %d ranks on %d node(s) (%s)\n", g.dp, g.dp_nodes,
               g.hier_ok ? "equal nodes" : "unequal nodes: hierarchical falls back");
        printf("%10s %16s %16s %10s\n", "bytes", "flat GB/s", "hier GB/s", "hier/flat");
    }
    for (long bytes = 1024; bytes <= (long)max_mib * 1024 * 1024; bytes *= 4) {
        long n = bytes / 4;
        int reps = bytes < (1 << 20) ? 50 : bytes < (1 << 26) ? 8 : 3;
        double tf = time_one(&g, DP_FLAT, x, n, reps);
        double th = time_one(&g, DP_HIER, x, n, reps);
        if (g.world_rank == 0)
            printf("%10ld %16.3f %16.3f %10.2f\n", bytes, fac * bytes / tf / 1e9,
                   fac * bytes / th / 1e9, tf / th);
    }
    tr_free(x);
    grid_free(&g);
    MPI_Finalize();
    return 0;
}
