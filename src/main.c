/* main.c — trident's command line: train, eval, sample, prep, help. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_core.h"
#include "common.h"
#include "config.h"
#include "kernels.h"
#include "plan.h"
#include "prep.h"
#include "sample.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f,
            "trident — trains GPT-style language models with MPI (data × tensor × pipeline)\n"
            "\n"
            "usage:\n"
            "  trident train CONFIG [--key=value ...]    train (resumes from run_dir)\n"
            "  trident eval --ckpt PATH [--key=value]    validation loss of a checkpoint\n"
            "  trident sample --ckpt PATH [--prompt TEXT] [--length N] [--temperature T]\n"
            "                 [--top_k K] [--seed S]     generate text\n"
            "  trident prep --out FILE.h5 [--force] [--shards N] [--val-fraction F]\n"
            "               [--split-on LINE] TEXT...    make a token file (--force: replace)\n"
            "  trident plan CONFIG --nodes N --ranks-per-node K [--hardware FILE]\n"
            "               [--mem-per-rank SIZE] [--layout DPxTPxPP] [--json] [--top N]\n"
            "               [--key=value ...]            layouts, batch and switches that fit,\n"
            "                                            best first, with memory and step time\n"
            "  trident calibrate [--out FILE]            measure this machine into a hardware\n"
            "                                            file (under mpirun -np 2: its links too)\n"
            "  trident help [keys]                       this text / every config key\n"
            "\n"
            "Run under mpirun or srun for more than one rank. Exit codes: 0 done, 1 failed,\n"
            "2 bad input, 75 checkpointed on a signal (start again to resume).\n");
}

/* Debian's OpenBLAS 0.3.21 does not recognise some newer AVX-512 CPUs and silently falls
 * back to its slowest kernels (5× below what the CPU can do). OpenBLAS picks its kernels
 * when the library loads, so the only fix from inside the program is to set
 * OPENBLAS_CORETYPE and start again: re-exec before MPI_Init, same pid, same arguments.
 * A user who set OPENBLAS_CORETYPE themselves is respected (with a warning if slow). */
static void fix_blas_core(char **argv) {
    const char *core = kernels_blas_corename();
    int avx512 = 0, avx2 = 0;
    blas_cpu_flags(&avx512, &avx2);
    const char *better = blas_better_coretype(core, avx512, avx2);
    if (!better) return;
    const char *set = getenv("OPENBLAS_CORETYPE");
    if (set && *set) {
        fprintf(stderr, "trident: warning: OPENBLAS_CORETYPE=%s makes OpenBLAS use its '%s' "
                "kernels; this CPU runs the faster '%s' ones (unset OPENBLAS_CORETYPE or set "
                "it to %s)\n", set, core, better, better);
        return;
    }
    if (getenv("TRIDENT_BLAS_REEXEC")) return; /* already tried: don't loop */
    setenv("OPENBLAS_CORETYPE", better, 1);
    setenv("TRIDENT_BLAS_REEXEC", core, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernels, but say so */
    fprintf(stderr, "trident: warning: OpenBLAS uses its slow '%s' kernels on this CPU; set "
            "OPENBLAS_CORETYPE=%s before starting trident for ~5x faster matmuls\n", core,
            better);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        if (argc >= 3 && strcmp(argv[2], "keys") == 0) config_print_reference(stdout);
        else usage(stdout);
        return argc < 2 ? TR_EXIT_USAGE : TR_EXIT_OK;
    }
    fix_blas_core(argv);
    const char *cmd = argv[1];
    /* prep runs on one process and needs no MPI; everything else is a parallel job */
    if (strcmp(cmd, "prep") == 0) return prep_main(argc - 1, argv + 1);

    tr_mpi_defaults();
    int provided;
    MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided));
    tr_init_mpi();
    int rank = tr_rank();
    const char *prior = getenv("TRIDENT_BLAS_REEXEC");
    if (prior && rank == 0)
        fprintf(stderr, "trident: OpenBLAS chose its '%s' kernels for this CPU; using '%s' "
                "instead (OPENBLAS_CORETYPE)\n", prior, kernels_blas_corename());
    int rc;
    if (strcmp(cmd, "train") == 0) rc = train_main(argc - 1, argv + 1);
    else if (strcmp(cmd, "eval") == 0) rc = eval_main(argc - 1, argv + 1);
    else if (strcmp(cmd, "sample") == 0) rc = sample_main(argc - 1, argv + 1);
    else if (strcmp(cmd, "plan") == 0) rc = plan_main(argc - 1, argv + 1);
    else if (strcmp(cmd, "calibrate") == 0) rc = calibrate_main(argc - 1, argv + 1);
    else {
        if (rank == 0) {
            fprintf(stderr, "trident: error: unknown command '%s'\n"
                            "HINT: the commands are train, eval, sample, prep, plan, calibrate and help\n", cmd);
        }
        rc = TR_EXIT_USAGE;
    }
    MPI_Finalize();
    return rc;
}
