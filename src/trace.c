/* trace.c — per-rank spans, merged into one Chrome-trace JSON file. */
#include "trace.h"

#include <stdio.h>
#include <string.h>

#include "common.h"

struct trace_event {
    char   name[20];
    int    mb;
    double ts, dur;  /* microseconds since t0 */
};

void trace_init(struct trace *tr, const struct grid *g) {
    memset(tr, 0, sizeof *tr);
    comm_barrier(&g->comm, COMM_WORLD);
    tr->t0 = tr_now();
}

void trace_free(struct trace *tr) {
    tr_free(tr->ev);
    memset(tr, 0, sizeof *tr);
}

void trace_add(struct trace *tr, const char *name, double start, double end, int mb) {
    if (!tr->on || end - start < 1e-6) return; /* empty waits would only clutter the view */
    if (tr->n == tr->cap) {
        int cap = tr->cap ? 2 * tr->cap : 1024;
        struct trace_event *ev = tr_malloc(sizeof *ev * (size_t)cap);
        if (tr->n) memcpy(ev, tr->ev, sizeof *ev * (size_t)tr->n);
        tr_free(tr->ev);
        tr->ev = ev;
        tr->cap = cap;
    }
    struct trace_event *e = &tr->ev[tr->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->mb = mb;
    e->ts = (start - tr->t0) * 1e6;
    e->dur = (end - start) * 1e6;
}

void trace_write(struct trace *tr, const struct grid *g, const char *path) {
    int bytes = tr->n * (int)sizeof(struct trace_event);
    int *counts = NULL, *displs = NULL;
    char *all = NULL;
    if (g->world_rank == 0) {
        counts = tr_malloc(sizeof(int) * (size_t)g->world_size);
        displs = tr_malloc(sizeof(int) * (size_t)g->world_size);
    }
    comm_gather(&g->comm, COMM_WORLD, &bytes, 1, counts, COMM_I32, 0);
    long total = 0;
    if (g->world_rank == 0) {
        for (int r = 0; r < g->world_size; r++) {
            displs[r] = (int)total;
            total += counts[r];
        }
        all = tr_malloc((size_t)total + 1);
    }
    comm_gatherv(&g->comm, COMM_WORLD, tr->ev, bytes, all, counts, displs, COMM_U8, 0);
    if (g->world_rank == 0) {
        FILE *f = fopen(path, "w");
        if (!f) {
            tr_warn("cannot write the trace '%s'", path);
        } else {
            fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
            int first = 1;
            for (int r = 0; r < g->world_size; r++) {
                int dp, tp, pp;
                grid_coords(g, r, &dp, &tp, &pp);
                fprintf(f, "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"args\":"
                        "{\"name\":\"rank %d (stage %d, dp %d, tp %d)\"}},\n"
                        "{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":%d,\"args\":"
                        "{\"sort_index\":%d}}",
                        first ? "" : ",\n", r, r, pp, dp, tp, r, r);
                first = 0;
                const struct trace_event *ev = (const struct trace_event *)(all + displs[r]);
                int n = counts[r] / (int)sizeof(struct trace_event);
                for (int i = 0; i < n; i++) {
                    fprintf(f, ",\n{\"ph\":\"X\",\"pid\":%d,\"tid\":0,\"name\":\"%s", r,
                            ev[i].name);
                    if (ev[i].mb >= 0) fprintf(f, " %d", ev[i].mb);
                    fprintf(f, "\",\"ts\":%.1f,\"dur\":%.1f}", ev[i].ts, ev[i].dur);
                }
            }
            fprintf(f, "\n]}\n");
            fclose(f);
        }
    }
    tr_free(counts);
    tr_free(displs);
    tr_free(all);
}
