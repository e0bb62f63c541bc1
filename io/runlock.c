/* runlock.c — the run directory's lock file (see runlock.h for the design). */
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* What names a holder. */
struct holder {
    char host[256], boot[64], start[32], job[32], restart[16], since[32];
    long pid;
};

static void read_line_file(const char *path, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(out, (int)n, f)) out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* field 22 of /proc/PID/stat: the process's start time in clock ticks since boot; "" for
 * a process that is gone or a zombie (it has exited; its parent has not reaped it yet) */
static void proc_start_time(long pid, char *out, size_t n) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X') return;
    for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
    if (p) snprintf(out, n, "%.*s", (int)strcspn(p + 1, " "), p + 1);
}

static void self_holder(struct holder *h) {
    memset(h, 0, sizeof *h);
    gethostname(h->host, sizeof h->host - 1);
    read_line_file("/proc/sys/kernel/random/boot_id", h->boot, sizeof h->boot);
    h->pid = (long)getpid();
    proc_start_time(h->pid, h->start, sizeof h->start);
    const char *job = getenv("SLURM_JOB_ID"), *rc = getenv("SLURM_RESTART_COUNT");
    snprintf(h->job, sizeof h->job, "%s", job && *job ? job : "-");
    snprintf(h->restart, sizeof h->restart, "%s", rc && *rc ? rc : "0");
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(h->since, sizeof h->since, "%Y-%m-%d %H:%M:%S", &tm);
}

static void format_holder(const struct holder *h, char *out, size_t n) {
    snprintf(out, n, "host=%s\nboot=%s\npid=%ld\nstart=%s\njob=%s\nrestart=%s\nsince=%s\n",
             h->host, h->boot, h->pid, h->start, h->job, h->restart, h->since);
}

/* 0: parsed; -1: empty or unreadable (being written, or damaged) */
static int parse_holder(const char *text, struct holder *h) {
    memset(h, 0, sizeof *h);
    h->pid = -1;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[300];
        snprintf(line, sizeof line, "%.*s", (int)TR_MIN(len, sizeof line - 1), p);
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = '\0';
            const char *v = eq + 1;
            if (!strcmp(line, "host")) snprintf(h->host, sizeof h->host, "%s", v);
            else if (!strcmp(line, "boot")) snprintf(h->boot, sizeof h->boot, "%s", v);
            else if (!strcmp(line, "pid")) h->pid = atol(v);
            else if (!strcmp(line, "start")) snprintf(h->start, sizeof h->start, "%s", v);
            else if (!strcmp(line, "job")) snprintf(h->job, sizeof h->job, "%s", v);
            else if (!strcmp(line, "restart")) snprintf(h->restart, sizeof h->restart, "%s", v);
            else if (!strcmp(line, "since")) snprintf(h->since, sizeof h->since, "%s", v);
        }
        p += len + (nl != NULL);
    }
    return h->host[0] && h->pid > 0 ? 0 : -1;
}

static int read_text(const char *path, char *out, size_t n) {
    out[0] = '\0';
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t len = read(fd, out, n - 1);
    close(fd);
    if (len < 0) return -1;
    out[len] = '\0';
    return 0;
}

/* Seconds since the lock file was last touched, by the file server's clock: the age is
 * the difference between the mtime of a file we touch now and the lock's. */
static double heartbeat_age(const char *lock_path, const char *run_dir) {
    struct stat ls, ps;
    if (stat(lock_path, &ls) != 0) return 0;
    char probe[700];
    snprintf(probe, sizeof probe, "%s/.lock-probe.%ld", run_dir, (long)getpid());
    int fd = open(probe, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return 0; /* cannot tell: treat as fresh */
    if (write(fd, "x", 1) < 0) { /* the write moves the mtime to the server's now */ }
    close(fd);
    int ok = stat(probe, &ps) == 0;
    unlink(probe);
    if (!ok) return 0;
    return (double)(ps.st_mtim.tv_sec - ls.st_mtim.tv_sec) +
           1e-9 * (double)(ps.st_mtim.tv_nsec - ls.st_mtim.tv_nsec);
}

/* Is the holder provably gone? 1 with the reason, 0 when it may be alive. */
static int holder_gone(const struct holder *h, const struct holder *me, const char *lock_path,
                       const char *run_dir, char *why, size_t n) {
    if (strcmp(h->host, me->host) == 0) {
        if (h->boot[0] && me->boot[0] && strcmp(h->boot, me->boot) != 0) {
            snprintf(why, n, "host %s has rebooted since", h->host);
            return 1;
        }
        if (kill((pid_t)h->pid, 0) != 0 && errno == ESRCH) {
            snprintf(why, n, "process %ld is no longer running on %s", h->pid, h->host);
            return 1;
        }
        char start[32];
        proc_start_time(h->pid, start, sizeof start);
        if (!start[0]) {
            snprintf(why, n, "process %ld on %s has exited", h->pid, h->host);
            return 1;
        }
        if (h->start[0] && strcmp(start, h->start) != 0) {
            snprintf(why, n, "pid %ld on %s now belongs to another process", h->pid, h->host);
            return 1;
        }
        return 0;
    }
    if (strcmp(h->job, "-") != 0 && strcmp(h->job, me->job) == 0 &&
        strcmp(h->restart, me->restart) != 0) {
        snprintf(why, n, "it was taken by attempt %s of this Slurm job (%s), and this is "
                 "attempt %s", h->restart, h->job, me->restart);
        return 1;
    }
    double age = heartbeat_age(lock_path, run_dir);
    if (age > RUNLOCK_STALE_S) {
        snprintf(why, n, "its holder on %s has not touched it for %.0f s (it does every %d s)",
                 h->host, age, RUNLOCK_HEARTBEAT_S);
        return 1;
    }
    return 0;
}

static void *heartbeat_main(void *arg) {
    struct runlock *l = arg;
    for (int tick = 0; !l->stop; tick++) {
        tr_sleep(0.2);
        if (tick % (RUNLOCK_HEARTBEAT_S * 5) == RUNLOCK_HEARTBEAT_S * 5 - 1)
            utimensat(AT_FDCWD, l->path, NULL, 0);
    }
    return NULL;
}

/* O_EXCL create of the lock with our text; 0, or -1 with errno (EEXIST: someone holds it) */
static int create_lock(struct runlock *l) {
    int fd = open(l->path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) return -1;
    size_t len = strlen(l->text);
    int ok = write(fd, l->text, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        int e = errno;
        unlink(l->path);
        errno = e ? e : EIO;
        return -1;
    }
    return 0;
}

/* The takeover mutex: lock.takeover, made with O_EXCL; one left by a crashed taker is
 * ignored after a minute. */
static int takeover_begin(const char *mutex) {
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(mutex, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        struct stat st;
        if (stat(mutex, &st) == 0 && time(NULL) - st.st_mtime > 60) unlink(mutex);
        tr_sleep(0.1);
    }
    return -1;
}

int runlock_acquire(struct runlock *l, const char *run_dir, char *msg, size_t msg_len) {
    memset(l, 0, sizeof *l);
    snprintf(l->path, sizeof l->path, "%s/lock", run_dir);
    struct holder me;
    self_holder(&me);
    format_holder(&me, l->text, sizeof l->text);
    char mutex[620];
    snprintf(mutex, sizeof mutex, "%s.takeover", l->path);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (create_lock(l) == 0) break;
        if (errno != EEXIST) {
            snprintf(msg, msg_len, "cannot create the lock file '%s': %s", l->path,
                     strerror(errno));
            return -1;
        }
        /* someone holds it, or held it: read who, waiting briefly for a lock being
         * written this very moment */
        char text[512];
        struct holder h;
        int parsed = -1;
        for (int i = 0; i < 20 && parsed != 0; i++) {
            if (read_text(l->path, text, sizeof text) != 0 && errno == ENOENT) break;
            parsed = parse_holder(text, &h);
            if (parsed != 0) tr_sleep(0.1);
        }
        char why[400];
        int gone;
        if (parsed != 0) {
            struct stat st;
            if (stat(l->path, &st) != 0) continue; /* released meanwhile: try again */
            gone = heartbeat_age(l->path, run_dir) > 60;
            snprintf(why, sizeof why, "the lock file is empty or unreadable and a minute old");
            if (!gone) {
                snprintf(msg, msg_len, "run_dir '%s' is locked by '%s', whose contents are "
                         "unreadable (another job is starting, or it is damaged)", run_dir,
                         l->path);
                return -1;
            }
        } else {
            gone = holder_gone(&h, &me, l->path, run_dir, why, sizeof why);
        }
        if (!gone) {
            snprintf(msg, msg_len, "run_dir '%s' is in use by another trident train: host %s, "
                     "pid %ld, Slurm job %s, since %s (lock file '%s')", run_dir, h.host, h.pid,
                     h.job, h.since, l->path);
            return -1;
        }
        /* take it over, one taker at a time; re-read under the mutex, since another
         * taker may have replaced it with a live lock meanwhile */
        if (takeover_begin(mutex) != 0) {
            snprintf(msg, msg_len, "cannot take over the stale lock '%s': '%s' is held",
                     l->path, mutex);
            return -1;
        }
        char again[512];
        int same = read_text(l->path, again, sizeof again) != 0 || strcmp(again, text) == 0;
        if (same) {
            if (parsed == 0)
                tr_warn("taking over the lock of run_dir '%s' from host %s, pid %ld, Slurm job "
                        "%s: %s", run_dir, h.host, h.pid, h.job, why);
            else
                tr_warn("taking over the lock of run_dir '%s': %s", run_dir, why);
            unlink(l->path);
        }
        int rc = create_lock(l);
        unlink(mutex);
        if (rc == 0) break;
        if (attempt == 2) {
            snprintf(msg, msg_len, "cannot take the lock '%s': another job took it first",
                     l->path);
            return -1;
        }
    }
    struct stat st;
    if (stat(l->path, &st) != 0) {
        snprintf(msg, msg_len, "cannot take the lock '%s'", l->path);
        return -1;
    }
    l->held = 1;
    l->heartbeat_running = pthread_create(&l->heartbeat, NULL, heartbeat_main, l) == 0;
    return 0;
}

void runlock_release(struct runlock *l) {
    if (!l->held) return;
    l->held = 0;
    if (l->heartbeat_running) {
        l->stop = 1;
        pthread_join(l->heartbeat, NULL);
        l->heartbeat_running = 0;
    }
    char text[512];
    if (read_text(l->path, text, sizeof text) == 0 && strcmp(text, l->text) == 0)
        unlink(l->path);
}
