/* trace.h — a timeline of every rank (forward, backward, pipeline waits, gradient
 * reduction, optimizer, checkpoint, evaluation) as one Chrome-trace JSON file, to look at
 * a pipeline schedule in Perfetto (ui.perfetto.dev) or chrome://tracing.
 *
 * Each rank records spans in memory while on; trace_write gathers them to rank 0, which
 * writes run_dir/trace.json with one track ("process") per rank, named by its grid
 * coordinates. Clocks are aligned by a barrier at trace_init. */
#ifndef TRIDENT_TRACE_H
#define TRIDENT_TRACE_H

#include "grid.h"

struct trace_event;

struct trace {
    int    on;
    double t0;           /* wall clock at the common start */
    struct trace_event *ev;
    int    n, cap;
};

void trace_init(struct trace *tr, const struct grid *g); /* collective: aligns the clocks */
void trace_free(struct trace *tr);
/* record a span [start, end) (tr_now() seconds); mb < 0: no micro-batch */
void trace_add(struct trace *tr, const char *name, double start, double end, int mb);
/* collective: gather every rank's spans and write them to path (rank 0) */
void trace_write(struct trace *tr, const struct grid *g, const char *path);

#endif
