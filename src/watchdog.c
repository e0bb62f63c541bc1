/* watchdog.c — ends a job whose ranks stop making progress (see watchdog.h). */
#include "watchdog.h"

#include <dirent.h>
#include <fcntl.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm.h"
#include "common.h"

static double current_timeout(const struct watchdog *w) {
    if (w->timeout_s != 0) return w->timeout_s;
    return TR_MAX(WATCHDOG_FLOOR_S, 10.0 * w->longest_gap);
}

/* Which ranks wrote no report into report_dir: they are the ones not waiting on others. */
static void name_silent_ranks(const struct watchdog *w) {
    char *seen = tr_calloc((size_t)w->world, 1);
    DIR *d = opendir(w->report_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            int r;
            if (sscanf(e->d_name, "rank-%d", &r) == 1 && r >= 0 && r < w->world) seen[r] = 1;
        }
        closedir(d);
    }
    int n_silent = 0;
    for (int r = 0; r < w->world; r++)
        if (!seen[r]) {
            fprintf(stderr, "trident: watchdog: rank %d (host %s, pid %ld) made no progress "
                    "report: it is stopped, dead or deadlocked, and the other ranks are "
                    "waiting for it\n", r, w->hosts[r], w->pids[r]);
            n_silent++;
        }
    if (n_silent == 0)
        fprintf(stderr, "trident: watchdog: every rank is waiting (a deadlock, or a network "
                "that stopped delivering)\n");
    fflush(stderr);
    tr_free(seen);
}

static void fire(struct watchdog *w, double idle) {
    char line[512];
    snprintf(line, sizeof line, "rank %d (host %s, pid %ld) made no progress for %.0f s in "
             "step %d: %s", w->rank, w->hosts[w->rank], w->pids[w->rank], idle, w->step,
             w->what ? w->what : "setting up");
    fprintf(stderr, "trident: watchdog: %s\n", line);
    fflush(stderr);
    /* If anything below blocks (a hung file system, an MPI library that cannot abort from
     * this thread), the default action of SIGALRM still ends this process. */
    signal(SIGALRM, SIG_DFL);
    alarm(20);
    if (w->report_dir[0]) {
        char path[700];
        mkdir(w->report_dir, 0755);
        snprintf(path, sizeof path, "%s/rank-%d", w->report_dir, w->rank);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%s\n", line);
            fclose(f);
        }
        /* The other ranks that wait fire within about one step of this one; give them
         * as long as the timeout (3 to 120 s) to report, then the first rank to get
         * here names the ranks that did not. */
        tr_sleep(TR_MIN(120.0, TR_MAX(3.0, current_timeout(w))));
        char named[720];
        snprintf(named, sizeof named, "%s/named", w->report_dir);
        int fd = open(named, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd >= 0) {
            close(fd);
            name_silent_ranks(w);
        }
    }
    fprintf(stderr, "trident: watchdog: ending the job (exit code %d); start it again to resume "
            "from the last checkpoint (Slurm requeues it)\n", TR_EXIT_FAILURE);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, TR_EXIT_FAILURE);
    _exit(TR_EXIT_FAILURE);
}

static void *watch(void *arg) {
    struct watchdog *w = arg;
    while (!w->stop) {
        tr_sleep(0.5);
        double idle = tr_now() - w->last_beat;
        if (!w->stop && idle > current_timeout(w)) fire(w, idle);
    }
    return NULL;
}

void watchdog_start(struct watchdog *w, const struct comm *c, double timeout_s,
                    const char *run_dir) {
    memset(w, 0, sizeof *w);
    w->timeout_s = timeout_s;
    w->rank = comm_rank(c, COMM_WORLD);
    w->world = comm_size(c, COMM_WORLD);
    w->hosts = tr_calloc((size_t)w->world, sizeof *w->hosts);
    w->pids = tr_calloc((size_t)w->world, sizeof *w->pids);
    char host[64] = {0};
    gethostname(host, sizeof host - 1);
    int64_t pid = (int64_t)getpid(), *pids = tr_calloc((size_t)w->world, sizeof *pids);
    comm_allgather(c, COMM_WORLD, host, sizeof host, w->hosts, COMM_U8);
    comm_allgather(c, COMM_WORLD, &pid, 1, pids, COMM_I64);
    for (int r = 0; r < w->world; r++) w->pids[r] = (long)pids[r];
    tr_free(pids);
    if (run_dir && *run_dir) {
        snprintf(w->report_dir, sizeof w->report_dir, "%s/watchdog", run_dir);
        if (w->rank == 0) {
            /* reports of an earlier attempt say nothing about this one */
            DIR *d = opendir(w->report_dir);
            if (d) {
                struct dirent *e;
                while ((e = readdir(d))) {
                    if (strncmp(e->d_name, "rank-", 5) != 0 && strcmp(e->d_name, "named") != 0)
                        continue;
                    char p[900];
                    snprintf(p, sizeof p, "%s/%s", w->report_dir, e->d_name);
                    unlink(p);
                }
                closedir(d);
            }
        }
    }
    w->last_beat = tr_now();
    w->what = "setting up";
    if (timeout_s < 0) return;
    w->running = pthread_create(&w->thread, NULL, watch, w) == 0;
}

void watchdog_beat(struct watchdog *w, int step, const char *what) {
    double now = tr_now();
    double gap = now - w->last_beat;
    if (gap > w->longest_gap) w->longest_gap = gap;
    w->step = step;
    w->what = what;
    w->last_beat = now;
}

void watchdog_stop(struct watchdog *w) {
    if (w->running) {
        w->stop = 1;
        pthread_join(w->thread, NULL);
        w->running = 0;
    }
    tr_free(w->hosts);
    tr_free(w->pids);
    w->hosts = NULL;
    w->pids = NULL;
}
