#!/usr/bin/env bash
# test_linkprobe.sh — the link probe (src/linkprobe.c) under plain mpirun: nodes emulated
# by TRIDENT_RANKS_PER_NODE, a slow link by TRIDENT_SLOW_LINK=RANK:MBIT (that rank's
# transfers start, and its acknowledgements leave, as late as at that rate).
#
#   linkprobe_names_slow_rank   4 nodes × 1 rank, rank 2's link at 50 Mbit/s: every probe
#                               names rank 2 (link_straggler) at about 50 Mbit/s, and the
#                               log line names it
#   linkprobe_names_in_turns    3 nodes × 2 ranks, rank 3's link slow: rank 3 named, not
#                               its node's other rank (the ranks of a node take turns)
#   linkprobe_equal_not_named   4 nodes × 1 rank, equal links: no straggler in any probe,
#                               no warning
#   linkprobe_two_nodes         2 nodes × 2 ranks, rank 1 slow: the slow pair is measured
#                               (link_min_mbps ~50) but no rank named (every path crosses
#                               both links)
#   linkprobe_off               one node (plain mpirun) or link_probe_every = 0: no probe,
#                               no link_ fields
#   linkprobe_same_training     the losses with a probe every 2 steps are the losses
#                               without (bit for bit): the probe moves no training data
#   linkprobe_bad_env           TRIDENT_SLOW_LINK=fast is refused, naming the variable
# About 1 minute on 2 cores.
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1
DATA=$(sample_data)
export TRIDENT_RUN_TIMEOUT=${TRIDENT_RUN_TIMEOUT:-120}
W=$TEST_TMP

run() { # NAME NP RANKS_PER_NODE SLOW ARGS...: a 10-step run, probes every 2 steps
    local name=$1 np=$2 rpn=$3 slow=$4
    shift 4
    TRIDENT_RANKS_PER_NODE=$rpn TRIDENT_SLOW_LINK=$slow mpi "$np" train inputs/tiny.conf \
        --data="$DATA" --run_dir="$W/$name" --steps=10 --eval_every=0 --log_every=100 \
        --link_probe_every=2 --dp="$np" --tp=1 --pp=1 "$@" >"$W/$name.log" 2>&1
}
# "PROBES NAMED MIN": probe rows in metrics.jsonl, how many name rank WHO as the
# straggler, the largest link_min_mbps among them
probes() { # NAME WHO
    grep -o '"link_min_mbps":[0-9.]*,"link_median_mbps":[0-9.]*,"link_slowest_rank":[0-9-]*,"link_straggler":[0-9-]*' \
        "$W/$1/metrics.jsonl" 2>/dev/null | tr ':,' '  ' |
        awk -v who="$2" '{ n++; if ($8 == who) k++; if ($2 > m) m = $2 }
            END { printf "%d %d %.1f\n", n, k + 0, m + 0 }'
}

# --- a slow rank is named -------------------------------------------------------------
if run slow4 4 1 2:50; then
    read -r n k m < <(probes slow4 2)
    if [ "$n" -ne 5 ]; then fail linkprobe_names_slow_rank "$n probe rows, 5 expected (steps 2..10)"
    elif [ "$k" -ne "$n" ]; then
        fail linkprobe_names_slow_rank "rank 2 named in $k of $n probes: $(grep -o '"link_[a-z_]*":[0-9.-]*' "$W/slow4/metrics.jsonl" | head -n 5 | tr '\n' ' ')"
    elif ! awk -v m="$m" 'BEGIN { exit !(m > 35 && m < 55) }'; then
        fail linkprobe_names_slow_rank "rank 2 measured at up to $m Mbit/s, not about 50"
    elif ! grep -q 'link probe after step 2: rank 2 (node 2 of 4)' "$W/slow4.log"; then
        fail linkprobe_names_slow_rank "no log line names rank 2: $(grep -m1 'link probe' "$W/slow4.log")"
    else pass "linkprobe_names_slow_rank (rank 2 named in $k/$n probes, <= $m Mbit/s)"; fi
else fail linkprobe_names_slow_rank "the run failed: $(tail -n 3 "$W/slow4.log" | tr '\n' ' ')"; fi

if run slow6 6 2 3:50; then
    read -r n k m < <(probes slow6 3)
    if [ "$n" -ne 5 ] || [ "$k" -ne "$n" ]; then
        fail linkprobe_names_in_turns "rank 3 named in $k of $n probes: $(grep -o '"link_straggler":[0-9-]*' "$W/slow6/metrics.jsonl" | sort | uniq -c | tr '\n' ' ')"
    else pass "linkprobe_names_in_turns (rank 3 of node 1 named in $k/$n probes)"; fi
else fail linkprobe_names_in_turns "the run failed: $(tail -n 3 "$W/slow6.log" | tr '\n' ' ')"; fi

# --- equal links: nobody ----------------------------------------------------------------
if run equal4 4 1 ""; then
    read -r n k m < <(probes equal4 -1)
    if [ "$n" -ne 5 ] || [ "$k" -ne "$n" ]; then
        fail linkprobe_equal_not_named "a straggler named on equal links: $(grep -o '"link_[a-z_]*":[0-9.-]*' "$W/equal4/metrics.jsonl" | paste -d' ' - - - - - | head -n 5 | tr '\n' ';')"
    elif grep -q 'link probe after' "$W/equal4.log"; then
        fail linkprobe_equal_not_named "a warning on equal links: $(grep -m1 'link probe after' "$W/equal4.log")"
    else pass "linkprobe_equal_not_named ($n probes, no straggler; the slowest rank at >= $(grep -o '"link_min_mbps":[0-9.]*' "$W/equal4/metrics.jsonl" | cut -d: -f2 | sort -g | head -n 1) Mbit/s)"; fi
else fail linkprobe_equal_not_named "the run failed: $(tail -n 3 "$W/equal4.log" | tr '\n' ' ')"; fi

# --- two nodes: the slow pair is seen, nobody is named ---------------------------------
if run two 4 2 1:50; then
    read -r n k m < <(probes two -1)
    if [ "$n" -ne 5 ] || [ "$k" -ne "$n" ]; then
        fail linkprobe_two_nodes "a rank named with two nodes ($k of $n probes name none)"
    elif ! awk -v m="$m" 'BEGIN { exit !(m > 35 && m < 55) }'; then
        fail linkprobe_two_nodes "the slow pair not measured: link_min_mbps up to $m, not about 50"
    elif ! grep -q 'with two nodes a slow link is seen, but not whose it is' "$W/two.log"; then
        fail linkprobe_two_nodes "the start line does not say that two nodes cannot name the rank"
    else pass "linkprobe_two_nodes (the pair at <= $m Mbit/s, nobody named)"; fi
else fail linkprobe_two_nodes "the run failed: $(tail -n 3 "$W/two.log" | tr '\n' ' ')"; fi

# --- off ----------------------------------------------------------------------------------
why=""
mpi 2 train inputs/tiny.conf --data="$DATA" --run_dir="$W/one" --steps=4 --eval_every=0 \
    --link_probe_every=1 --dp=2 >"$W/one.log" 2>&1 || why="the one-node run failed"
[ -n "$why" ] || ! grep -q '"link_' "$W/one/metrics.jsonl" || why="link_ fields on one node"
[ -n "$why" ] || ! grep -q 'link probe' "$W/one.log" || why="one node: '$(grep -m1 'link probe' "$W/one.log")'"
if [ -z "$why" ]; then
    run zero 4 1 "" --link_probe_every=0 || why="the link_probe_every=0 run failed"
    [ -n "$why" ] || ! grep -q '"link_' "$W/zero/metrics.jsonl" || why="link_ fields with link_probe_every=0"
fi
if [ -n "$why" ]; then fail linkprobe_off "$why"; else pass linkprobe_off; fi

# --- the probe leaves training alone ------------------------------------------------------
if [ -f "$W/zero/metrics.jsonl" ] && [ -f "$W/equal4/metrics.jsonl" ]; then
    if out=$(same_losses "$W/equal4" "$W/zero" 0); then
        pass "linkprobe_same_training (10 steps, losses identical with and without probes)"
    else fail linkprobe_same_training "$out"; fi
else fail linkprobe_same_training "a run above failed"; fi

# --- bad input ----------------------------------------------------------------------------
out=$(TRIDENT_RANKS_PER_NODE=1 TRIDENT_SLOW_LINK=fast mpi 2 train inputs/tiny.conf --data="$DATA" \
    --run_dir="$W/bad" --steps=2 --dp=2 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] && grep -q "TRIDENT_SLOW_LINK='fast' is not RANK:MBIT" <<<"$out"; then
    pass linkprobe_bad_env
else fail linkprobe_bad_env "exit $rc: $(grep -m2 -i 'slow_link\|error' <<<"$out" | tr '\n' ' ')"; fi

test_summary
