/* cmd_train.c — the `train` and `eval` commands: the loop, progress, metrics. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ckpt.h"
#include "common.h"
#include "train.h"

/* Set by SIGUSR1/SIGTERM (Slurm's warning before a time limit or preemption). A signal
 * handler can only talk to the program through a flag like this one; it is read once per
 * step and agreed on by every rank. */
static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void format_duration(double s, char *out, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long sec = (long)(s + 0.5);
    if (sec >= 3600) snprintf(out, n, "%ldh%02ldm", sec / 3600, sec / 60 % 60);
    else if (sec >= 60) snprintf(out, n, "%ldm%02lds", sec / 60, sec % 60);
    else snprintf(out, n, "%lds", sec);
}

/* Mean over ranks of this rank's step times, and the slowest rank's total. */
static void reduce_times(const struct trainer *t, struct step_times *mean, double *slowest,
                         double *fastest) {
    double v[7] = {t->tm.compute, t->tm.tp_comm, t->tm.pipe_wait, t->tm.dp_exposed,
                   t->tm.optimizer, t->tm.data, t->tm.total};
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, 7, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    double mx = t->tm.total, mn = t->tm.total;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &mn, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD));
    double w = t->g.world_size;
    *mean = (struct step_times){v[0] / w, v[1] / w, v[2] / w, v[3] / w, v[4] / w, v[5] / w,
                                v[6] / w};
    *slowest = mx;
    *fastest = mn;
}

static void save(struct trainer *t) {
    char path[CFG_STR_MAX + 64];
    double t0 = tr_now();
    ckpt_save(t->cfg.run_dir, t->step, &t->m, &t->o, t->cfg.ckpt_keep, path, sizeof path);
    tr_info("checkpoint %s (%.2f s)", path, tr_now() - t0);
}

int train_main(int argc, char **argv) {
    struct config cfg;
    config_defaults(&cfg);
    config_parse_args(&cfg, argc - 1, argv + 1, NULL, NULL);
    struct trainer t;
    trainer_init(&t, &cfg, 1);
    const struct grid *g = &t.g;

    tr_info("trident train: %d ranks = dp %d × tp %d × pp %d (%d node%s), schedule %s, "
            "gradient all-reduce %s, %d thread%s per rank",
            g->world_size, g->dp, g->tp, g->pp, g->n_nodes, g->n_nodes > 1 ? "s" : "",
            t.gpipe ? "GPipe" : "1F1B", dpr_algo_name(t.dpr.algo), kernels_threads(),
            kernels_threads() > 1 ? "s" : "");
    if (g->world_rank == 0) {
        printf("# effective config\n");
        config_print(&t.cfg, stdout);
        fflush(stdout);
    }
    const long tokens_per_step = (long)cfg.micro_batch * cfg.seq_len * t.M * g->dp;
    tr_info("model: %.2fM parameters, %d layers on %d stage%s; global batch %ld sequences = "
            "%ld tokens per step",
            t.m.n_logical / 1e6, cfg.n_layer, g->pp, g->pp > 1 ? "s" : "",
            (long)cfg.micro_batch * t.M * g->dp, tokens_per_step);
    if (g->pp > 1)
        tr_info("pipeline: stage %d holds layers [%d, %d); theoretical bubble %.1f%%",
                g->pp_rank, t.m.l0, t.m.l1, 100.0 * (g->pp - 1) / (t.M + g->pp - 1));

    install_signal_handlers();
    double flops_per_step = model_flops_per_token(&cfg) * (double)tokens_per_step;
    double run_t0 = tr_now(), steps_time = 0.0, last_ckpt_time = tr_now();
    int first_step = t.step, last_ckpt = t.step;
    double val = NAN;
    while (t.step < cfg.steps) {
        double norm;
        float lr;
        double loss = trainer_step(&t, &norm, &lr);
        if (!isfinite(loss))
            tr_fail(TR_EXIT_FAILURE, "lower lr, or raise warmup; resume from the last "
                    "checkpoint with resume = auto",
                    "the loss is %g at step %d: training diverged", loss, t.step);
        struct step_times mean;
        double slowest, fastest;
        reduce_times(&t, &mean, &slowest, &fastest);
        steps_time += slowest;
        int step = t.step; /* steps completed */
        double tok_s = tokens_per_step / slowest;
        double mfu_flops = flops_per_step / slowest / g->world_size;

        int do_eval = cfg.eval_every > 0 && step % cfg.eval_every == 0 && step < cfg.steps;
        val = NAN;
        if (do_eval) val = trainer_eval(&t);

        if (g->world_rank == 0) {
            double bubble = mean.total > 0 ? mean.pipe_wait / mean.total : 0;
            fprintf(t.metrics,
                    "{\"step\":%d,\"loss\":%.17g,\"lr\":%.6e,\"grad_norm\":%.6f,"
                    "\"tokens_per_s\":%.1f,\"ms_per_step\":%.3f,\"gflops_per_rank\":%.3f,"
                    "\"t_compute\":%.6f,\"t_tp_comm\":%.6f,\"t_pipe_wait\":%.6f,"
                    "\"t_dp_exposed\":%.6f,\"t_optimizer\":%.6f,\"t_data\":%.6f,"
                    "\"bubble\":%.4f,\"bubble_theory\":%.4f,\"slowest_ms\":%.3f,"
                    "\"fastest_ms\":%.3f",
                    step, loss, lr, norm, tok_s, slowest * 1e3, mfu_flops / 1e9, mean.compute,
                    mean.tp_comm, mean.pipe_wait, mean.dp_exposed, mean.optimizer, mean.data,
                    bubble, (double)(g->pp - 1) / (t.M + g->pp - 1), slowest * 1e3,
                    fastest * 1e3);
            if (do_eval) fprintf(t.metrics, ",\"val_loss\":%.6f", val);
            fprintf(t.metrics, "}\n");
            fflush(t.metrics);
            if (step % cfg.log_every == 0 || step == cfg.steps || step == first_step + 1 ||
                do_eval) {
                char eta[32];
                double per = steps_time / (step - first_step);
                format_duration(per * (cfg.steps - step), eta, sizeof eta);
                printf("step %6d/%d | loss %.4f | lr %.2e | norm %6.3f | %8.0f tok/s | "
                       "%7.1f ms | %5.1f GFLOP/s/rank | ETA %s",
                       step, cfg.steps, loss, lr, norm, tok_s, slowest * 1e3, mfu_flops / 1e9,
                       eta);
                if (do_eval) printf(" | val %.4f", val);
                printf("\n");
                fflush(stdout);
            }
        }
        /* every rank must agree to stop or save: a signal may reach ranks at slightly
         * different moments, and the clock is rank 0's */
        int flags[2] = {g_stop_signal != 0,
                        g->world_rank == 0 && cfg.ckpt_minutes > 0 &&
                            tr_now() - last_ckpt_time >= 60.0 * cfg.ckpt_minutes};
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
        int by_step = cfg.ckpt_every > 0 && step % cfg.ckpt_every == 0;
        int stop_here = cfg.stop_at > 0 && step == cfg.stop_at && step < cfg.steps;
        if ((by_step || flags[0] || flags[1] || stop_here) && step < cfg.steps) {
            save(&t);
            last_ckpt = step;
            last_ckpt_time = tr_now();
        }
        if (flags[0] || stop_here) {
            tr_info("stopping at step %d %s (checkpoint saved); exit code %d asks the batch "
                    "script to requeue and resume", step, flags[0] ? "on a signal" : "(stop_at)",
                    TR_EXIT_REQUEUE);
            trainer_free(&t);
            return TR_EXIT_REQUEUE;
        }
    }
    /* the end of the run: a final validation loss and checkpoint */
    val = trainer_eval(&t);
    if (t.step != last_ckpt || first_step == t.step) save(&t);
    if (g->world_rank == 0) {
        fprintf(t.metrics, "{\"step\":%d,\"val_loss\":%.6f,\"final\":true}\n", t.step, val);
        double wall = tr_now() - run_t0;
        printf("done: %d steps in %.1f s | final validation loss %.4f nats/token (%.3f "
               "bits/byte) | run_dir %s\n",
               t.step - first_step, wall, val, val / log(2.0), cfg.run_dir);
    }
    trainer_free(&t);
    return TR_EXIT_OK;
}

int eval_main(int argc, char **argv) {
    /* trident eval --ckpt PATH [--key=value ...]: the model's config comes from the
     * checkpoint; data, layout and eval_batches may be overridden. */
    const char *extra[] = {"ckpt", NULL};
    const char *vals[1];
    struct config cfg;
    config_defaults(&cfg);
    /* first pass: find --ckpt */
    config_parse_args(&cfg, argc - 1, argv + 1, extra, vals);
    if (!vals[0])
        tr_fail(TR_EXIT_USAGE, "trident eval --ckpt runs/NAME/ckpt-00001000.h5",
                "eval needs --ckpt PATH (a checkpoint, or a run directory)");
    char path[CFG_STR_MAX];
    snprintf(path, sizeof path, "%s", vals[0]);
    if (ckpt_find_latest(vals[0], path, sizeof path) != 0) snprintf(path, sizeof path, "%s", vals[0]);
    config_defaults(&cfg);
    ckpt_read_config(path, &cfg);
    config_parse_args(&cfg, argc - 1, argv + 1, extra, vals);
    if (strlen(path) >= sizeof cfg.resume)
        tr_fail(TR_EXIT_USAGE, NULL, "checkpoint path '%s' is too long", path);
    memcpy(cfg.resume, path, strlen(path) + 1);
    struct trainer t;
    trainer_init(&t, &cfg, 0);
    double t0 = tr_now();
    double val = trainer_eval(&t);
    tr_info("checkpoint %s (step %d): validation loss %.4f nats/token (%.3f bits/byte, "
            "perplexity %.2f) over %d windows of %d tokens of %s [%.1f s]",
            path, t.step, val, val / log(2.0), exp(val), cfg.eval_batches * cfg.micro_batch,
            cfg.seq_len, cfg.data, tr_now() - t0);
    trainer_free(&t);
    return TR_EXIT_OK;
}
