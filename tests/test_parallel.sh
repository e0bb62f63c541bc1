#!/usr/bin/env bash
# test_parallel.sh — 3D parallelism gives the single-rank numbers.
#
# A tiny model with a fixed global batch of 16 sequences trains 5 steps on every layout
# of 1, 2, 4 and 8 ranks with dp, tp, pp in {1, 2, 4}, under both pipeline schedules;
# each must match the single-rank run: loss at every step within 1e-5 relative, final
# weights within 1e-4.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
COMMON=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --n_layer=4 --steps=5 --warmup=2
        --eval_every=0 --ckpt_every=0 --log_every=100 --resume=none --eval_batches=2)
GLOBAL=16

# run NAME NP DP TP PP SCHEDULE [extra...]: micro-batches M = max(pp, 2), B = 16/(dp*M)
run() {
    local name=$1 np=$2 dp=$3 tp=$4 pp=$5 sched=$6; shift 6
    local m=$(( pp > 2 ? pp : 2 ))
    local b=$(( GLOBAL / (dp * m) ))
    if [ "$b" -lt 1 ]; then m=$(( GLOBAL / dp )); b=1; fi
    mpi "$np" "${COMMON[@]}" --run_dir="$TEST_TMP/$name" --dp="$dp" --tp="$tp" --pp="$pp" \
        --schedule="$sched" --micro_batch="$b" --grad_accum="$m" "$@" \
        >"$TEST_TMP/$name.log" 2>&1
}

compare() { # compare NAME: against the reference run
    local name=$1 why
    if ! why=$(same_losses "$TEST_TMP/$name" "$TEST_TMP/ref" 1e-5); then
        fail "$name" "losses differ from one rank: $why"; return; fi
    if ! why=$(same_weights "$(last_ckpt "$TEST_TMP/$name")" "$(last_ckpt "$TEST_TMP/ref")" 1e-4); then
        fail "$name" "final weights differ: $why"; return; fi
    pass "$name"
}

if ! run ref 1 1 1 1 1f1b; then
    fail "reference single-rank run" "$(tail -n 3 "$TEST_TMP/ref.log")"
    test_summary; exit 1
fi
for layout in 2x1x1 1x2x1 1x1x2 4x1x1 1x4x1 1x1x4 2x2x1 2x1x2 1x2x2 \
              2x2x2 4x2x1 4x1x2 2x4x1 1x4x2 2x1x4 1x2x4; do
    IFS=x read -r dp tp pp <<<"$layout"
    np=$(( dp * tp * pp ))
    scheds=1f1b
    [ "$pp" -gt 1 ] && scheds="1f1b gpipe"
    for s in $scheds; do
        name="layout_${layout}_${s}_matches_single_rank"
        if run "$name" "$np" "$dp" "$tp" "$pp" "$s"; then compare "$name"
        else fail "$name" "run failed: $(grep -m1 -i error "$TEST_TMP/$name.log")"; fi
    done
done

# The same layout twice: bit-identical losses and weights.
run again_a 8 2 2 2 1f1b && run again_b 8 2 2 2 1f1b
if why=$(same_losses "$TEST_TMP/again_a" "$TEST_TMP/again_b" 0) &&
   same_weights "$(last_ckpt "$TEST_TMP/again_a")" "$(last_ckpt "$TEST_TMP/again_b")" 0 >/dev/null
then pass "same_layout_twice_is_bit_identical"
else fail "same_layout_twice_is_bit_identical" "${why:-weights differ}"; fi

# A timeline of every rank, merged into one Chrome-trace file.
run traced 8 2 2 2 1f1b --trace_steps=2
tr="$TEST_TMP/traced/trace.json"
ok=1
for r in 0 1 2 3 4 5 6 7; do
    grep -q "\"name\":\"rank $r (stage" "$tr" 2>/dev/null || { ok=0; why="no track for rank $r"; break; }
    for ev in "forward 1" "backward 1" "optimizer"; do
        grep -q "\"pid\":$r,\"tid\":0,\"name\":\"$ev\"" "$tr" || { ok=0; why="rank $r has no '$ev'"; break 2; }
    done
done
[ $ok = 1 ] && ! grep -q '"pid":4,"tid":0,"name":"wait activations' "$tr" && { ok=0; why="stage 1 never waits for activations"; }
if [ $ok = 1 ] && head -n 1 "$tr" | grep -q '"traceEvents"' && tail -n 1 "$tr" | grep -q '^\]}$'
then pass "timeline_of_every_rank_in_one_trace"; else fail "timeline_of_every_rank_in_one_trace" "${why:-bad JSON frame}"; fi

# Hierarchical all-reduce on 2 emulated nodes (2 ranks each) equals the flat one.
export TRIDENT_RANKS_PER_NODE=2
run hier 4 4 1 1 1f1b --allreduce=hier && run flat 4 4 1 1 1f1b --allreduce=flat
if grep -q "gradient all-reduce hierarchical" "$TEST_TMP/hier.log" &&
   grep -q "(2 nodes)" "$TEST_TMP/hier.log"; then pass "hierarchical_path_taken_on_2_nodes"
else fail "hierarchical_path_taken_on_2_nodes" "$(head -n 2 "$TEST_TMP/hier.log")"; fi
if why=$(same_losses "$TEST_TMP/hier" "$TEST_TMP/flat" 1e-5) &&
   same_weights "$(last_ckpt "$TEST_TMP/hier")" "$(last_ckpt "$TEST_TMP/flat")" 1e-5 >/dev/null
then pass "hierarchical_equals_flat_allreduce"
else fail "hierarchical_equals_flat_allreduce" "${why:-weights differ}"; fi
# auto picks hierarchical when data parallelism spans nodes; tp within a node
run auto 4 2 2 1 1f1b --allreduce=auto
if grep -q "all-reduce hierarchical" "$TEST_TMP/auto.log"; then pass "auto_picks_hierarchical_across_nodes"
else fail "auto_picks_hierarchical_across_nodes" "$(head -n 1 "$TEST_TMP/auto.log")"; fi
# 3 ranks per node with 4 dp ranks: unequal nodes fall back to flat with a warning
TRIDENT_RANKS_PER_NODE=3 run uneven 4 4 1 1 1f1b --allreduce=hier
if grep -q "flat all-reduce is used" "$TEST_TMP/uneven.log" &&
   same_losses "$TEST_TMP/uneven" "$TEST_TMP/flat" 1e-5 >/dev/null
then pass "unequal_nodes_fall_back_to_flat"
else fail "unequal_nodes_fall_back_to_flat" "$(grep -m1 -i warn "$TEST_TMP/uneven.log")"; fi
unset TRIDENT_RANKS_PER_NODE
# 3 ranks per node on 2 nodes (dp 6): the node-local reduce-scatter splits the gradient
# bucket (the whole model, 0.23M floats, not a multiple of 3) in 3 unequal chunks; the
# remainder must be reduced too
export TRIDENT_RANKS_PER_NODE=3
run hier3 6 6 1 1 1f1b --allreduce=hier && run flat3 6 6 1 1 1f1b --allreduce=flat
name=hierarchical_equals_flat_with_3_ranks_per_node
if ! grep -q "gradient all-reduce hierarchical" "$TEST_TMP/hier3.log" ||
   ! grep -q "(2 nodes)" "$TEST_TMP/hier3.log"; then
    fail "$name" "no hierarchical run on 2 nodes: $(grep -m1 -iE "error|all-reduce" "$TEST_TMP/hier3.log")"
elif ! why=$(same_losses "$TEST_TMP/hier3" "$TEST_TMP/flat3" 1e-5); then
    fail "$name" "losses differ: $why"
elif ! why=$(same_weights "$(last_ckpt "$TEST_TMP/hier3")" "$(last_ckpt "$TEST_TMP/flat3")" 1e-5); then
    fail "$name" "final weights differ: $(tail -n 1 <<<"$why")"
else pass "$name"; fi
# many small buckets (about 45): ranks finish the phases of different buckets in
# different orders, yet each communicator must see its collectives in one order on every
# rank (the bug: MPI_ERR_TRUNCATE, or a silently wrong sum); with pp 2 the tied
# embedding's reduction follows the buckets
run hier3b 6 6 1 1 1f1b --allreduce=hier --bucket_mb=0.02 && run flat3b 6 6 1 1 1f1b --allreduce=flat --bucket_mb=0.02
export TRIDENT_RANKS_PER_NODE=2
run hierpp 8 4 1 2 1f1b --allreduce=hier --bucket_mb=0.02 && run flatpp 8 4 1 2 1f1b --allreduce=flat --bucket_mb=0.02
for pair in "hier3b flat3b" "hierpp flatpp"; do
    read -r h f <<<"$pair"
    name="hierarchical_equals_flat_with_many_buckets_${h#hier}"
    if ! grep -q "gradient all-reduce hierarchical" "$TEST_TMP/$h.log"; then
        fail "$name" "$(grep -m1 -iE "error|MPI_ERR|all-reduce" "$TEST_TMP/$h.log")"
    elif ! why=$(same_losses "$TEST_TMP/$h" "$TEST_TMP/$f" 1e-5); then fail "$name" "losses differ: $why"
    elif ! why=$(same_weights "$(last_ckpt "$TEST_TMP/$h")" "$(last_ckpt "$TEST_TMP/$f")" 1e-5); then
        fail "$name" "final weights differ: $(tail -n 1 <<<"$why")"
    else pass "$name"; fi
done
unset TRIDENT_RANKS_PER_NODE

test_summary
