/* fault.h — fault injection for the crash, signal and fault-campaign tests.
 *
 * TRIDENT_FAULT="WHERE:STEP[:RANK]" makes one rank (RANK, default the highest world rank)
 * kill itself with SIGKILL, as a failing node would, when it reaches point WHERE while
 * working on step STEP (1-based: the step being computed, or the step being saved):
 *   forward:K   after the first forward pass of step K
 *   backward:K  after the first backward pass of step K
 *   step:K      after the pipeline schedule of step K (forward and backward done)
 *   reduce:K    after the data-parallel gradient reduction of step K
 *   optim:K     after the optimizer update of step K
 *   ckpt:K      halfway through writing the checkpoint of step K
 *   rename:K    after the checkpoint of step K is complete, before it is renamed
 * TRIDENT_FAULT="stop:K[:RANK]" stops the rank with SIGSTOP at the start of step K
 * instead (a hung node: the watchdog test), and "fail:K[:RANK]" makes it report an error
 * that no other rank sees (tr_fail on one rank: the job must still end).
 * TRIDENT_SLOW_CKPT=SECONDS makes every rank sleep that long in the middle of each
 * checkpoint write (a slow file system: the signal tests).
 * Numerical faults (the divergence guard tests):
 *   spike:D       the loss of the step that reads data step D (1-based) is 1000× too high
 *   nan:D         ... is NaN
 *   nanweights:K  after the update of step K one weight of the highest rank becomes NaN
 *   overflow:K    before the gradient norm of step K one gradient of the highest rank
 *                 becomes +inf (an fp16 overflow: the loss-scaling test)
 * Unset (always, outside tests), these functions do nothing. */
#ifndef TRIDENT_FAULT_H
#define TRIDENT_FAULT_H

#include "backend.h"

/* Called at each point above (and at "start", the beginning of step `step`). */
void fault_point(const char *where, int step);
void fault_slow_ckpt(void);
double fault_loss(double loss, long data_step);
/* nanweights: one element of the fp32 tensor x (device memory of be) becomes NaN */
void fault_poison(struct backend *be, struct tensor x, int step);
/* TRIDENT_FAULT is NAME:K with this name and step (numerical faults) */
int fault_armed(const char *name, long step);
/* overflow: one element of the fp32 tensor x becomes +inf */
void fault_overflow(struct backend *be, struct tensor x, int step);

#endif
