/* fault.h — fault injection for the crash tests.
 *
 * TRIDENT_FAULT="WHERE:STEP" makes the highest world rank kill itself with SIGKILL (as a
 * failing node would) when it reaches point WHERE during step STEP:
 *   step:K   in the middle of step K's pipeline schedule (after the forward passes)
 *   ckpt:K   halfway through writing the checkpoint of step K
 * Unset (always, outside tests), fault_point() does nothing. */
#ifndef TRIDENT_FAULT_H
#define TRIDENT_FAULT_H

void fault_point(const char *where, int step);

#endif
