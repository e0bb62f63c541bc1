#!/usr/bin/env bash
# tests/test_comm.sh — the comm layer (bin/test_comm) on 1, 2, 3 and 4 ranks: every
# collective, dtype and group against hand computations, in four layouts per rank count;
# bin/test_comm_groups on 2, 4 and 8 ranks.
source "$(dirname "$0")/lib.sh"

for np in 1 2 3 4; do
    log="$TEST_TMP/comm.$np.log"
    if timeout -k 5 "${TRIDENT_RUN_TIMEOUT:-300}" mpirun --oversubscribe -np "$np" \
        "$ROOT/bin/test_comm" >"$log" 2>&1; then
        pass "comm_collectives_on_${np}_ranks"
    else
        fail "comm_collectives_on_${np}_ranks" "$(grep -v '^ok' "$log" | head -n 8)"
    fi
done
# the comm groups' arithmetic (src/comm_groups.c, what the NCCL communicators are built
# on) against the grid's MPI communicators, in every layout of 2, 4 and 8 ranks
for np in 2 4 8; do
    log="$TEST_TMP/groups.$np.log"
    if timeout -k 5 "${TRIDENT_RUN_TIMEOUT:-300}" mpirun --oversubscribe -np "$np" \
        "$ROOT/bin/test_comm_groups" >"$log" 2>&1; then
        pass "comm_groups_match_the_grid_on_${np}_ranks"
    else
        fail "comm_groups_match_the_grid_on_${np}_ranks" "$(grep -v '^ok' "$log" | head -n 8)"
    fi
done
test_summary
