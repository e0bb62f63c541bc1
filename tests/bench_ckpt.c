/* bench_ckpt.c — checkpoint write and read bandwidth.
 *
 * Saves and loads a checkpoint (weights + AdamW moments) of a model of the given config
 * (default: 12 layers, width 512: ~38M parameters, ~460 MB per checkpoint) on however
 * many ranks it runs on (data parallel), and prints GB/s. A write is timed until the
 * file is renamed into place, after fsync, as trident does it. tests/bench.sh puts the
 * numbers next to `dd ... conv=fsync` on the same filesystem. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "common.h"
#include "config.h"
#include "grid.h"
#include "model.h"
#include "optim.h"

/* one CPU backend for the whole test program (it holds the models' buffers) */
static struct backend *cpu_backend(void) {
    static struct backend *be;
    if (!be) be = backend_init(KDEV_CPU, 0, NULL, 0);
    return be;
}

int main(int argc, char **argv) {
    tr_mpi_defaults();
    MPI_Init(&argc, &argv);
    struct config cfg;
    config_defaults(&cfg);
    const char *d[][2] = {{"n_layer", "12"}, {"n_head", "8"}, {"n_embd", "512"},
                          {"seq_len", "8"}, {"micro_batch", "1"}, {"dp", "0"},
                          {"run_dir", "/tmp/trident-bench-ckpt"}};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) config_set(&cfg, d[i][0], d[i][1], "bench");
    config_parse_args(&cfg, argc - 1, argv + 1, NULL, NULL);
    struct grid g;
    grid_init(&g, &cfg);
    tr_set_rank(g.world_rank);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    model_init_weights(&m, 1);
    struct optim o;
    optim_init(&o, &m);
    if (g.world_rank == 0) mkdir(cfg.run_dir, 0755);
    MPI_Barrier(MPI_COMM_WORLD);
    double bytes = 3.0 * 4.0 * (double)m.n_logical;
    char path[CFG_STR_MAX + 64];
    double best_w = 1e30, best_r = 1e30;
    for (int r = 0; r < 3; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = tr_now();
        struct ckpt_meta meta = {.step = r + 1, .loss = 0.0};
        ckpt_save(cfg.run_dir, &meta, &m, &o, 1, path, sizeof path);
        double tw = tr_now() - t0;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = tr_now();
        ckpt_load(path, &m, &o);
        double tr = tr_now() - t0;
        if (tw < best_w) best_w = tw;
        if (tr < best_r) best_r = tr;
    }
    if (g.world_rank == 0) {
        printf("checkpoint %.0f MB (%.1fM parameters + AdamW moments) on %d rank(s): "
               "write %.2f GB/s (%.2f s), read+verify %.2f GB/s (%.2f s)\n",
               bytes / 1e6, m.n_logical / 1e6, g.world_size, bytes / best_w / 1e9, best_w,
               bytes / best_r / 1e9, best_r);
        printf("CKPT_BENCH ranks=%d bytes=%.0f write_s=%.4f read_s=%.4f\n", g.world_size, bytes,
               best_w, best_r);
        unlink(path);
    }
    optim_free(&o);
    model_free(&m);
    grid_free(&g);
    MPI_Finalize();
    return 0;
}
