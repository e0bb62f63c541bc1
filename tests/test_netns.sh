#!/usr/bin/env bash
# test_netns.sh — the Slurm cluster with a real network between its nodes
# (slurm/cluster.sh up --netns): each node in its own network namespace, the links
# between them shaped by tc, so that crossing a node costs something and a node can drop
# off the network.
#
#   netns_refusals         --link without --netns, a bad rate and (no netem here) a
#                          latency are refused, and a refused `up` leaves no namespace,
#                          bridge or veth behind
#   netns_traffic_crosses  a 2 nodes × 2 ranks job (dp 4, hierarchical) on 200 Mbit/s
#                          links: its gradients cross both veths (byte counters in
#                          /sys/class/net), a 1-node job of 2 ranks sends (almost) nothing
#                          over its veth (shared memory inside a node)
#   netns_link_cut         a node's link cut mid-run: the watchdog ends the job in bounded
#                          time, the batch script requeues it; the link restored, it
#                          resumes and ends with the weights of the uninterrupted run
#   netns_node_crash       every process of a node killed (slurmd, its steps, the ranks):
#                          the same, once its slurmd is started again
#   netns_slurmd_kill      only a node's slurmd killed mid-run (its steps and ranks run
#                          on): the job finishes or ends in bounded time (then requeued
#                          and resumed), and ends with the weights of the uninterrupted run;
#                          the case says which of the two happened and when
#   netns_straggler        4 nodes × 1 rank, one node's link at 10 Mbit/s, the others' at
#                          1 Gbit/s, once n2's and once n1's: trident's link probe
#                          (link_probe_every, src/linkprobe.c) must name the slow node's
#                          rank (link_straggler in metrics.jsonl, and the log line) in
#                          every probe; with all links at 1 Gbit/s it names nobody. The
#                          steps must be slow (the shaping happened); how often the step
#                          time's slowest_rank names the slow node is reported beside
#                          (it does not follow a link: every rank ends its step in the
#                          same all-reduce)
#   netns_down_is_exact    `down` removes every namespace, veth and bridge `up` made (and
#                          their qdiscs), and leaves everything else as it was
#   netns_slurm_suite      tests/test_slurm.sh as it is, on a netns cluster with 200-Mbit/s
#                          links (TRIDENT_SLURM_NETNS=1): each of its cases counted here
#
# Without root or permission to create network namespaces (a container), every case is
# reported as skipped, by name, with the reason. The cluster has its own directory and
# port (TRIDENT_SLURM_NETNS_DIR, default /tmp/trident-slurm-netns; TRIDENT_SLURM_NETNS_PORT,
# 18817), apart from the other suites' clusters; one of yours on that port is restarted. NETNS_CASES="traffic straggler" runs only those.
# Every wait has a time limit. About 10 minutes on 2 cores.
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1
DATA=$(sample_data)
export TRIDENT_SLURM_DIR=${TRIDENT_SLURM_NETNS_DIR:-/tmp/trident-slurm-netns}
export TRIDENT_SLURM_PORT=${TRIDENT_SLURM_NETNS_PORT:-18817}
export SLURM_CONF=$TRIDENT_SLURM_DIR/slurm.conf
CASES=${NETNS_CASES:-refusals traffic link_cut node_crash slurmd_kill straggler down_is_exact slurm_suite}
ALL=(refusals traffic_crosses link_cut node_crash slurmd_kill straggler down_is_exact slurm_suite)
WORK=$TEST_TMP
T0=$SECONDS
CLUSTER_UP=0
# the names this cluster's port gives its namespaces, veths and bridge
P=$TRIDENT_SLURM_PORT
OURS="trident-$P-|tr${P}n|trbr$P"

progress() { echo "# [$((SECONDS - T0))s] $*"; }
want() { [[ " $CASES " == *" ${1%%_*} "* || " $CASES " == *" $1 "* ]]; }
cleanup() {
    if [ "$CLUSTER_UP" = 1 ]; then slurm/cluster.sh down >/dev/null 2>&1 || true; fi
}
trap 'cleanup; [ -n "${KEEP_TEST_TMP:-}" ] || rm -rf "$TEST_TMP"' EXIT
trap "exit 130" INT TERM

skip_all() { # REASON
    local c
    for c in "${ALL[@]}"; do want "$c" && skip "netns_$c" "$1"; done
    test_summary
    exit $?
}

# namespaces and links of this cluster that exist now, one name a line
our_net() {
    { ip netns list 2>/dev/null | cut -d' ' -f1; ip -o link show 2>/dev/null |
        awk -F': ' '{ print $2 }' | cut -d@ -f1; } | grep -E "^($OURS)" || true
}
# everything else: namespaces, links and the qdiscs on them
others_net() {
    ip netns list 2>/dev/null | cut -d' ' -f1 | grep -vE "^($OURS)" || true
    ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1 | grep -vE "^($OURS)" || true
    tc qdisc show 2>/dev/null | grep -vE "dev ($OURS)" || true
}

job_field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# waits until job ID reaches a final state; after LIMIT seconds cancels it; prints the state
wait_job() { # ID LIMIT
    local id=$1 limit=$2 t0=$SECONDS state
    while :; do
        state=$(job_field "$id" JobState)
        case $state in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | \
                DEADLINE | PREEMPTED) echo "$state"; return 0 ;;
        esac
        if [ $((SECONDS - t0)) -ge "$limit" ]; then
            scancel "$id" 2>/dev/null || true
            echo "STUCK(${state:-unknown} after ${limit}s)"
            return 0
        fi
        sleep 0.5
    done
}
# waits up to LIMIT seconds for a command to succeed
wait_for() { # LIMIT COMMAND...
    local limit=$1 t0=$SECONDS
    shift
    until "$@"; do
        [ $((SECONDS - t0)) -lt "$limit" ] || return 1
        sleep 0.2
    done
}
submit() { # NODES TASKS-PER-NODE RUN_DIR TRAIN-ARGS...; prints the job id
    local n=$1 t=$2 dir=$3 list=n1
    shift 3
    # the first N nodes: the byte counters and the node losses below are about n1 and n2
    [ "$n" -eq 1 ] || list="n[1-$n]"
    TRIDENT_MAX_RESTARTS=${MAX_RESTARTS:-4} sbatch --parsable --output="$WORK/job-%j.out" \
        --nodes="$n" --nodelist="$list" --ntasks-per-node="$t" slurm/train.sbatch inputs/tiny.conf \
        --data="$DATA" --run_dir="$dir" "$@" | cut -d';' -f1
}
explain() { # ID
    echo "#   job $1: state $(job_field "$1" JobState), restarts $(job_field "$1" Restarts)"
    tail -n 12 "$WORK/job-$1.out" 2>/dev/null | sed 's/^/#   log: /'
    tail -n 3 "$TRIDENT_SLURM_DIR"/log/*.log 2>/dev/null | sed 's/^/#   /'
    return 0
}
tx() { cat "/sys/class/net/tr${P}n$1/statistics/rx_bytes"; } # what node K sent (root end's rx)
rx() { cat "/sys/class/net/tr${P}n$1/statistics/tx_bytes"; } # what node K received
has_ckpt() { compgen -G "$1/ckpt-*.h5" >/dev/null; }
attempts() { cat "$1/attempts.log" 2>/dev/null | wc -l; }
has_attempt() { [ "$(attempts "$1")" -ge 1 ]; }

# ---------------------------------------------------------------------------------------
# set-up: root, Slurm, permission to make namespaces

[ "$(id -u)" -eq 0 ] || skip_all "needs root (network namespaces, Slurm daemons)"
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 ||
    skip_all "no ip/tc (iproute2)"
probe_err=$(ip netns add "trident-$P-probe" 2>&1) ||
    skip_all "this machine does not permit 'ip netns add' ($probe_err)"
ip netns del "trident-$P-probe" 2>/dev/null
[ -x bin/tool_ckdiff ] || make -s tests >/dev/null 2>&1 || skip_all "no bin/tool_ckdiff (make tests)"
# a cluster left on this port (ours, or an earlier run of this suite): take it down
slurm/cluster.sh down >/dev/null 2>&1 || true
[ -z "$(our_net)" ] || skip_all "namespaces or links of port $P exist and are not the cluster's: $(our_net | tr '\n' ' ')"
OTHERS_BEFORE=$(others_net)

# ---------------------------------------------------------------------------------------
# netns_refusals: no cluster needed

if want refusals; then
    why=""
    out=$(slurm/cluster.sh up --nodes 2 --link 100mbit 2>&1) && why="--link without --netns accepted"
    [ -n "$why" ] || grep -q 'needs --netns' <<<"$out" || why="--link without --netns: '$out'"
    if [ -z "$why" ]; then
        out=$(slurm/cluster.sh up --nodes 2 --netns --link fast 2>&1) && why="rate 'fast' accepted"
        [ -n "$why" ] || grep -q "bad rate 'fast'" <<<"$out" || why="rate 'fast': '$out'"
    fi
    if [ -z "$why" ]; then
        if out=$(slurm/cluster.sh up --nodes 2 --netns --link 100mbit/2ms 2>&1); then
            CLUSTER_UP=1
            if tc qdisc show | grep -q netem; then
                why="" # this kernel has netem: the latency is real, nothing to refuse
            else
                why="a latency accepted although there is no netem: $(tail -n 1 <<<"$out")"
            fi
            slurm/cluster.sh down >/dev/null 2>&1
            CLUSTER_UP=0
        elif ! grep -q 'no netem' <<<"$out"; then
            why="a latency refused without saying why: '$out'"
        fi
    fi
    # an up that should have been refused but was not: take its cluster down
    slurm/cluster.sh down >/dev/null 2>&1 || true
    [ -n "$why" ] || [ -z "$(our_net)" ] || why="a refused up left $(our_net | tr '\n' ' ')"
    if [ -n "$why" ]; then fail netns_refusals "$why"
    else pass netns_refusals; fi
fi

# ---------------------------------------------------------------------------------------
# the cluster: 4 nodes × 2 CPUs, 200 Mbit/s links (jobs use n1-n2, the straggler all 4:
# with two nodes every path between them crosses both links, so no measure can say whose
# link is slow)

need_cluster=0
for c in traffic link_cut node_crash slurmd_kill straggler down_is_exact; do want "$c" && need_cluster=1; done
if [ "$need_cluster" = 1 ]; then
    progress "bringing up a 4-node netns cluster in $TRIDENT_SLURM_DIR (port $P)"
    if ! slurm/cluster.sh up --nodes 4 --cpus 2 --netns --link 200mbit >"$WORK/up.log" 2>&1; then
        sed 's/^/#   /' "$WORK/up.log" | tail -n 30
        for c in traffic_crosses link_cut node_crash slurmd_kill straggler down_is_exact; do
            want "$c" && fail "netns_$c" "cluster.sh up --netns failed (above)"
        done
        test_summary
        exit 1
    fi
    CLUSTER_UP=1
fi

STEPS=120
RUN=(--steps=$STEPS --ckpt_every=20 --eval_every=0 --log_every=1000 --watchdog_s=8
     --dp=4 --tp=1 --pp=1)
REF=$WORK/ref

# the uninterrupted run (also the reference of link_cut and node_crash)
ref_run() {
    [ -f "$REF/$(printf 'ckpt-%08d.h5' $STEPS)" ] && return 0
    local id state
    id=$(submit 2 2 "$REF" "${RUN[@]}") || return 1
    state=$(wait_job "$id" 180)
    [ "$state" = COMPLETED ] || { explain "$id"; return 1; }
    REF_ID=$id
}

if want traffic; then
    progress "netns_traffic_crosses: 2 nodes × 2 ranks, then 1 node × 2 ranks"
    t=$SECONDS why=""
    a1=$(tx 1) a2=$(tx 2) b1=$(rx 1) b2=$(rx 2)
    ref_run || why="the 2-node job did not complete"
    s1=$(($(tx 1) - a1)) s2=$(($(tx 2) - a2)) r1=$(($(rx 1) - b1)) r2=$(($(rx 2) - b2))
    # the gradient is ~0.47 MB (119K parameters); the hierarchical all-reduce sends about
    # that much from each node each step: ask for a third of it
    min=$((STEPS * 160000))
    if [ -z "$why" ] && ! grep -q 'trident train: 4 ranks .*(2 nodes).*hierarchical' "$WORK/job-$REF_ID.out"; then
        why="the job does not report 2 nodes, hierarchical: $(grep -m1 '^trident train' "$WORK/job-$REF_ID.out")"
    fi
    if [ -z "$why" ]; then
        for v in "n1 sent $s1" "n2 sent $s2" "n1 received $r1" "n2 received $r2"; do
            [ "${v##* }" -ge "$min" ] || why="$why$v bytes (< $min expected); "
        done
    fi
    if [ -z "$why" ]; then
        a1=$(tx 1)
        id=$(submit 1 2 "$WORK/one" --steps=$STEPS --eval_every=0 --dp=2 --tp=1 --pp=1)
        state=$(wait_job "$id" 120)
        one=$(($(tx 1) - a1))
        if [ "$state" != COMPLETED ]; then why="the 1-node job ended $state"; explain "$id"
        elif [ "$one" -ge 2000000 ]; then
            why="a 1-node job sent $one bytes over n1's veth: its ranks do not use shared memory"
        fi
    fi
    if [ -n "$why" ]; then fail netns_traffic_crosses "$why"
    else
        pass "netns_traffic_crosses (n1 sent $((s1 / 1000000)) MB, n2 $((s2 / 1000000)) MB over $STEPS steps; a 1-node job $((one / 1000)) kB; $((SECONDS - t))s)"
    fi
fi

# A node drops off mid-run (HOW: cut | crash): bounded end, requeue, resume, same weights.
node_loss() { # NAME HOW
    local name=$1 how=$2 t=$SECONDS dir=$WORK/$2 id why="" state t_cut t_end last
    last=$(printf 'ckpt-%08d.h5' $STEPS)
    progress "$name: reference run, then a job whose node n2 drops off after its first checkpoint"
    ref_run || { fail "$name" "the uninterrupted reference job failed"; return; }
    id=$(submit 2 2 "$dir" "${RUN[@]}") || { fail "$name" "sbatch refused the job"; return; }
    if ! wait_for 90 has_ckpt "$dir"; then
        fail "$name" "no checkpoint within 90 s"; explain "$id"; scancel "$id"; return
    fi
    t_cut=$SECONDS
    if [ "$how" = cut ]; then slurm/cluster.sh link n2 down >/dev/null
    else slurm/cluster.sh node n2 crash >/dev/null; fi
    # bounded: watchdog_s 8 + the watchdog's 3-s report + srun's wait for the lost node
    if ! wait_for 90 has_attempt "$dir"; then
        why="the job did not end within 90 s of losing n2"
    fi
    t_end=$((SECONDS - t_cut))
    if [ "$how" = cut ]; then slurm/cluster.sh link n2 up >/dev/null
    else slurm/cluster.sh node n2 start >/dev/null; fi
    state=$(wait_job "$id" 240)
    if [ -n "$why" ]; then :
    elif ! head -n 1 "$dir/attempts.log" | grep -q 'requeued after crash'; then
        why="attempt 1 was not requeued after a crash: $(head -n 1 "$dir/attempts.log")"
    elif [ "$state" != COMPLETED ]; then
        why="job $id ended $state after losing n2"; explain "$id"
    elif ! tail -n 1 "$dir/attempts.log" | grep -q '| done$'; then
        why="the last attempt did not finish: $(tail -n 1 "$dir/attempts.log")"
    elif ! grep -q 'resumed from .*ckpt-' "$WORK/job-$id.out"; then
        why="no attempt resumed from a checkpoint"
    elif ! out=$(same_weights "$REF/$last" "$dir/$last" 0 2>&1); then
        why="final weights differ from the uninterrupted run: $(head -n 2 <<<"$out" | tr '\n' ' ')"
    fi
    if [ -n "$why" ]; then fail "$name" "$why"
    else
        pass "$name (job ended ${t_end}s after losing n2, $(attempts "$dir") attempts, final weights bit-identical; $((SECONDS - t))s)"
    fi
}
want link_cut && node_loss netns_link_cut cut
want node_crash && node_loss netns_node_crash crash

# Only n2's slurmd dies after the first checkpoint; its slurmstepds and ranks run on.
# The ranks need no slurmd to train, so the job may well finish; if Slurm ends it instead
# (n2 unresponsive for SlurmdTimeout, 120 s, then DOWN: NODE_FAIL), the batch script or
# Slurm requeues it. Either way: ended in bounded time, and the weights of the
# uninterrupted run. slurmd is started again once the first attempt has ended (a job
# whose node lost its slurmd stays COMPLETING until it is back or marked DOWN).
slurmd_kill() {
    local name=netns_slurmd_kill t=$SECONDS dir=$WORK/slurmd id why="" state t_kill t_end last
    local first ranks_n2 how mid
    last=$(printf 'ckpt-%08d.h5' $STEPS)
    progress "$name: a job whose node n2 loses only its slurmd after the first checkpoint"
    ref_run || { fail "$name" "the uninterrupted reference job failed"; return; }
    id=$(submit 2 2 "$dir" "${RUN[@]}") || { fail "$name" "sbatch refused the job"; return; }
    if ! wait_for 90 has_ckpt "$dir"; then
        fail "$name" "no checkpoint within 90 s"; explain "$id"; scancel "$id"; return
    fi
    t_kill=$SECONDS
    slurm/cluster.sh node n2 kill-slurmd >"$WORK/kill-slurmd.log" 2>&1 ||
        { fail "$name" "cluster.sh node n2 kill-slurmd: $(cat "$WORK/kill-slurmd.log")"; return; }
    # the ranks of n2 still run without their slurmd
    ranks_n2=0
    for pid in $(ip netns pids "trident-$P-n2"); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = trident ] && ranks_n2=$((ranks_n2 + 1))
    done
    # bounded: SlurmdTimeout (120 s) + KillWait (10 s) + the requeue, when Slurm ends it
    if ! wait_for 200 has_attempt "$dir"; then
        why="the first attempt did not end within 200 s of n2's slurmd dying"
    fi
    t_end=$((SECONDS - t_kill))
    # what Slurm makes of the job while n2 has no slurmd (its end cannot be confirmed there)
    sleep 3
    mid=$(job_field "$id" JobState)
    slurm/cluster.sh node n2 start >/dev/null 2>&1 || why="${why}slurmd of n2 did not start again; "
    state=$(wait_job "$id" 300)
    first=$(head -n 1 "$dir/attempts.log" 2>/dev/null)
    if [ -n "$why" ]; then :
    elif [ "$ranks_n2" -lt 2 ]; then
        why="only $ranks_n2 rank(s) left on n2 after killing its slurmd: the kill took more than slurmd"
    elif [ "$state" != COMPLETED ]; then
        why="job $id ended $state after n2's slurmd died"; explain "$id"
    elif ! tail -n 1 "$dir/attempts.log" | grep -q '| done$'; then
        why="the last attempt did not finish: $(tail -n 1 "$dir/attempts.log")"
    elif ! out=$(same_weights "$REF/$last" "$dir/$last" 0 2>&1); then
        why="final weights differ from the uninterrupted run: $(head -n 2 <<<"$out" | tr '\n' ' ')"
    elif grep -q '| done$' <<<"$first"; then
        how="the ranks finished the run without it ($(attempts "$dir") attempt, ended ${t_end}s after the kill; the job $mid until n2's slurmd was back)"
    elif grep -q 'requeued' <<<"$first" && grep -q 'resumed from .*ckpt-' "$WORK/job-$id.out"; then
        how="the job ended ${t_end}s after the kill ($first), was requeued and resumed from its checkpoint"
    else
        why="the first attempt neither finished nor was requeued: $first"
    fi
    if [ -n "$why" ]; then fail "$name" "$why"
    else pass "$name ($how; final weights bit-identical; $((SECONDS - t))s)"; fi
}
want slurmd_kill && slurmd_kill

# One run on 4 nodes × 1 rank with node SLOW's link at 10 Mbit/s (0: none) and the
# others' at 1 Gbit/s, a link probe every 5 steps; prints "STEPS STEP_NAMED MEDIAN_MS
# PROBES LINK_NAMED NONE WARNED": steps after 2 of warm-up, how many of them name the slow
# node's rank (rank SLOW-1) as slowest_rank, the median step (slowest_ms), the probes,
# how many name rank SLOW-1 as link_straggler, how many name nobody, and whether the log
# names it.
straggler_run() { # SLOW (0|1..4)
    local slow=$1 k id state dir=$WORK/slow$1
    for k in 1 2 3 4; do
        if [ "$k" = "$slow" ]; then slurm/cluster.sh link "n$k" 10mbit >/dev/null
        else slurm/cluster.sh link "n$k" 1gbit >/dev/null; fi ||
            { echo "cluster.sh link refused the rates" >&2; return 1; }
    done
    id=$(submit 4 1 "$dir" --steps=30 --eval_every=0 --log_every=1 --link_probe_every=5 \
        --dp=4 --tp=1 --pp=1)
    state=$(wait_job "$id" 240)
    for k in 1 2 3 4; do slurm/cluster.sh link "n$k" 200mbit >/dev/null; done
    [ "$state" = COMPLETED ] || { echo "job $id ended $state" >&2; explain "$id" >&2; return 1; }
    local steps probes warned=0
    steps=$(sed -n 's/.*"step":\([0-9]*\),.*"slowest_ms":\([0-9.]*\),.*"slowest_rank":\([0-9]*\).*/\1 \2 \3/p' \
        "$dir/metrics.jsonl" | awk '$1 > 2' | sort -k2 -g |
        awk -v r=$((slow - 1)) '{ n++; v[n] = $2; if ($3 == r) k++ }
            END { printf "%d %d %.0f\n", n, k + 0, n ? v[int((n + 1) / 2)] : 0 }')
    probes=$(grep -o '"link_straggler":[0-9-]*' "$dir/metrics.jsonl" | cut -d: -f2 |
        awk -v r=$((slow - 1)) '{ n++; if ($1 == r) k++; if ($1 == -1) z++ }
            END { printf "%d %d %d\n", n, k + 0, z + 0 }')
    [ "$slow" = 0 ] || ! grep -q "link probe after step [0-9]*: rank $((slow - 1)) (node $((slow - 1)) of 4)" \
        "$WORK/job-$id.out" || warned=1
    echo "$steps $probes $warned"
}
if want straggler; then
    t=$SECONDS why=""
    progress "netns_straggler: 4 nodes × 1 rank; n2's link at 10mbit (others 1gbit), then n1's, then none"
    # the slow link's node must be named whichever node it is: a run with each (rank 0 is
    # also the rank a tie or a default would name)
    r2=$(straggler_run 2) || why="the run with n2 slow failed"
    [ -n "$why" ] || r1=$(straggler_run 1) || why="the run with n1 slow failed"
    [ -n "$why" ] || r0=$(straggler_run 0) || why="the run with equal links failed"
    if [ -z "$why" ]; then
        read -r n2_all n2_named n2_ms n2_probes n2_link n2_none n2_warned <<<"$r2"
        read -r n1_all n1_named n1_ms n1_probes n1_link n1_none n1_warned <<<"$r1"
        read -r n0_all n0_named n0_ms n0_probes n0_link n0_none n0_warned <<<"$r0"
        # 10 Mbit/s carries the 0.47-MB gradient in >= 380 ms: steps this slow prove the
        # link was shaped
        if [ "$n2_all" -lt 20 ] || [ "$n1_all" -lt 20 ]; then
            why="too few steps in metrics.jsonl ($n2_all, $n1_all)"
        elif [ "$n2_ms" -lt 300 ] || [ "$n1_ms" -lt 300 ]; then
            why="median steps of $n2_ms and $n1_ms ms: the 10-Mbit/s link did not slow the job"
        elif [ "$n2_probes" -lt 5 ] || [ "$n1_probes" -lt 5 ] || [ "$n0_probes" -lt 5 ]; then
            why="too few link probes in metrics.jsonl ($n2_probes, $n1_probes, $n0_probes; 6 expected)"
        elif [ "$n2_link" -ne "$n2_probes" ] || [ "$n1_link" -ne "$n1_probes" ]; then
            why="the link probe named the slow node's rank in $n2_link/$n2_probes probes with n2 slow, $n1_link/$n1_probes with n1 slow"
        elif [ "$n2_warned" != 1 ] || [ "$n1_warned" != 1 ]; then
            why="no log line names the slow node's rank (n2 slow: $n2_warned, n1 slow: $n1_warned)"
        elif [ "$n0_none" -ne "$n0_probes" ]; then
            why="with all links at 1 Gbit/s the probe named a straggler in $((n0_probes - n0_none))/$n0_probes probes"
        fi
    fi
    if [ -n "$why" ]; then fail netns_straggler "$why"
    else
        pass "netns_straggler (the link probe named the slow node's rank in $n2_link/$n2_probes probes with n2 slow, $n1_link/$n1_probes with n1 slow, nobody in $n0_none/$n0_probes with equal links; the step time's slowest_rank named it in only $n2_named/$n2_all and $n1_named/$n1_all steps; median steps $n2_ms, $n1_ms ms against $n0_ms ms; $((SECONDS - t))s)"
    fi
fi

if want down_is_exact; then
    why=""
    made=$(our_net | sort | tr '\n' ' ')
    [ -n "$made" ] || why="no namespace or link of port $P while up"
    slurm/cluster.sh down >"$WORK/down.log" 2>&1 || why="cluster.sh down failed: $(tail -n 2 "$WORK/down.log")"
    CLUSTER_UP=0
    left=$(our_net | tr '\n' ' ')
    [ -z "$left" ] || why="${why}left behind: $left; "
    if ! diff <(echo "$OTHERS_BEFORE") <(others_net) >"$WORK/others.diff"; then
        # other clusters on this machine may come and go meanwhile: name what changed
        why="${why}namespaces/links/qdiscs not ours changed: $(grep '^[<>]' "$WORK/others.diff" | head -n 4 | tr '\n' ' ')"
    fi
    [ ! -d "$TRIDENT_SLURM_DIR" ] || why="${why}$TRIDENT_SLURM_DIR still there"
    if [ -n "$why" ]; then fail netns_down_is_exact "$why"
    else pass "netns_down_is_exact (removed: $made)"; fi
fi

# the Slurm suite (tests/test_slurm.sh) unchanged, on a netns cluster of its own making
if want slurm_suite; then
    progress "netns_slurm_suite: tests/test_slurm.sh on a netns cluster (links 200mbit)"
    if [ "$CLUSTER_UP" = 1 ]; then slurm/cluster.sh down >/dev/null 2>&1; CLUSTER_UP=0; fi
    TRIDENT_SLURM_NETNS=1 TRIDENT_SLURM_LINK=200mbit TRIDENT_SLURM_TEST_DIR=$TRIDENT_SLURM_DIR \
        TRIDENT_SLURM_TEST_PORT=$P timeout -k 10 600 tests/test_slurm.sh >"$WORK/slurm_suite.log" 2>&1
    n_ok=0
    while read -r line; do
        case $line in
            "ok   "*) pass "netns_slurm_suite ${line#ok   }"; n_ok=$((n_ok + 1)) ;;
            "FAIL "*) fail "netns_slurm_suite ${line#FAIL }" "(tests/test_slurm.sh on the netns cluster)" ;;
        esac
    done <"$WORK/slurm_suite.log"
    if ! grep -q 'in namespaces trident-' "$WORK/slurm_suite.log"; then
        fail netns_slurm_suite "its cluster was not a netns one: $(grep -m1 'cluster.sh: up' "$WORK/slurm_suite.log")"
    elif [ "$n_ok" -eq 0 ] && ! grep -q '^FAIL ' "$WORK/slurm_suite.log"; then
        fail netns_slurm_suite "tests/test_slurm.sh reported nothing: $(tail -n 3 "$WORK/slurm_suite.log" | tr '\n' ' ')"
    fi
    [ -z "$(our_net)" ] || fail netns_slurm_suite "its cluster left $(our_net | tr '\n' ' ')"
fi

test_summary
