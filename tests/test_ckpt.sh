#!/usr/bin/env bash
# test_ckpt.sh — checkpoints and restarts: resume is bit-identical, a checkpoint resumes
# on any other layout, a killed rank (mid-step or mid-write) loses only the steps since
# the last checkpoint, torn and corrupt files are skipped, SIGUSR1 checkpoints and asks to
# be requeued, and every training window is read exactly once per step.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
# 4 layers so that 4 pipeline stages fit; a fixed global batch of 16 sequences
BASE=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --n_layer=4 --steps=12 --warmup=3
      --eval_every=0 --log_every=100 --eval_batches=2)
N=6
# layout NP DP TP PP: arguments for a layout with the global batch kept at 16
layout() {
    local dp=$1 tp=$2 pp=$3 m=$(( $3 > 2 ? $3 : 2 ))
    echo "--dp=$dp --tp=$tp --pp=$pp --grad_accum=$m --micro_batch=$(( 16 / (dp * m) ))"
}
# tail_losses RUN FROM: losses of steps > FROM
tail_losses() { losses "$1" | awk -v f="$2" '$1 > f'; }
# same_tail A B FROM TOL: steps after FROM agree (the resumed run's metrics start at FROM+1)
same_tail() {
    paste -d' ' <(tail_losses "$1" "$3") <(tail_losses "$2" "$3") | awk -v tol="$4" '
        { n++; d = $2 - $4; if (d < 0) d = -d; r = d / ($4 < 0 ? -$4 : $4)
          if ($1 != $3 || (tol == 0 && $2 != $4) || r > tol) { print "step " $1 ": " $2 " vs " $4; bad = 1 } }
        END { if (n == 0) { print "no steps"; bad = 1 } exit bad }'
}

# --- bit-identical resume, one rank and 2×2×2 ---------------------------------------
for L in "1 1 1 1" "8 2 2 2"; do
    read -r np dp tp pp <<<"$L"
    tag="${dp}x${tp}x${pp}"
    # shellcheck disable=SC2046
    mpi "$np" "${BASE[@]}" $(layout "$dp" "$tp" "$pp") --run_dir="$TEST_TMP/straight_$tag" --ckpt_every=0 >/dev/null 2>&1
    # shellcheck disable=SC2046
    mpi "$np" "${BASE[@]}" $(layout "$dp" "$tp" "$pp") --run_dir="$TEST_TMP/split_$tag" --stop_at=$N >/dev/null 2>&1
    rc=$?
    # shellcheck disable=SC2046
    mpi "$np" "${BASE[@]}" $(layout "$dp" "$tp" "$pp") --run_dir="$TEST_TMP/split_$tag" >"$TEST_TMP/resume_$tag.log" 2>&1
    if [ $rc -ne 75 ]; then fail "resume_is_bit_identical_$tag" "stop_at exit code $rc, expected 75"
    elif ! grep -q "resumed from .*ckpt-0000000$N.h5 at step $N" "$TEST_TMP/resume_$tag.log"; then
        fail "resume_is_bit_identical_$tag" "did not resume: $(head -n 3 "$TEST_TMP/resume_$tag.log")"
    elif ! why=$(same_tail "$TEST_TMP/split_$tag" "$TEST_TMP/straight_$tag" $N 0); then
        fail "resume_is_bit_identical_$tag" "$why"
    elif ! why=$(same_weights "$(last_ckpt "$TEST_TMP/split_$tag")" "$(last_ckpt "$TEST_TMP/straight_$tag")" 0); then
        fail "resume_is_bit_identical_$tag" "final weights: $why"
    else pass "resume_is_bit_identical_$tag"; fi
done

# --- resharding: the 2×2×2 checkpoint of step N resumes on other layouts -------------
CK="$TEST_TMP/split_2x2x2/ckpt-0000000$N.h5"
for L in "1 1 1 1" "8 4 1 2" "8 1 2 4" "4 2 2 1"; do
    read -r np dp tp pp <<<"$L"
    tag="${dp}x${tp}x${pp}"
    name="resume_2x2x2_checkpoint_on_$tag"
    # shellcheck disable=SC2046
    if ! mpi "$np" "${BASE[@]}" $(layout "$dp" "$tp" "$pp") --run_dir="$TEST_TMP/reshard_$tag" --resume="$CK" >"$TEST_TMP/$name.log" 2>&1; then
        fail "$name" "$(grep -m1 -i error "$TEST_TMP/$name.log")"
    elif ! why=$(same_tail "$TEST_TMP/reshard_$tag" "$TEST_TMP/straight_2x2x2" $N 1e-5); then
        fail "$name" "$why"
    elif ! why=$(same_weights "$(last_ckpt "$TEST_TMP/reshard_$tag")" "$(last_ckpt "$TEST_TMP/straight_2x2x2")" 1e-4); then
        fail "$name" "final weights: $why"
    else pass "$name"; fi
done

# --- a rank killed with SIGKILL mid-step, then mid-checkpoint-write ------------------
REF="$TEST_TMP/straight_2x2x2"
for fault in step:9 ckpt:8; do
    name="killed_rank_at_${fault/:/_}_resumes_to_same_weights"
    run="$TEST_TMP/fault_${fault/:/_}"
    # shellcheck disable=SC2046
    TRIDENT_FAULT=$fault mpi 8 "${BASE[@]}" $(layout 2 2 2) --run_dir="$run" --ckpt_every=4 >"$run.1.log" 2>&1
    rc=$?
    torn=$(ls "$run"/*.tmp 2>/dev/null | wc -l)
    # shellcheck disable=SC2046
    mpi 8 "${BASE[@]}" $(layout 2 2 2) --run_dir="$run" --ckpt_every=4 >"$run.2.log" 2>&1
    rc2=$?
    if [ $rc -eq 0 ]; then fail "$name" "the job survived the killed rank"
    elif [ "$fault" = ckpt:8 ] && [ "$torn" -ne 1 ]; then fail "$name" "no torn checkpoint file was left ($torn)"
    elif [ "$fault" = ckpt:8 ] && ! grep -q "removing .*ckpt-00000008.h5.tmp" "$run.2.log"; then
        fail "$name" "the torn file was not cleaned: $(head -n 2 "$run.2.log")"
    elif ! grep -q "resumed from .*ckpt-00000004.h5 at step 4" "$run.2.log" && [ "$fault" = ckpt:8 ]; then
        fail "$name" "did not resume from step 4: $(grep -m1 resumed "$run.2.log")"
    elif ! grep -q "resumed from .*ckpt-00000008.h5 at step 8" "$run.2.log" && [ "$fault" = step:9 ]; then
        fail "$name" "did not resume from step 8: $(grep -m1 resumed "$run.2.log")"
    elif [ $rc2 -ne 0 ]; then fail "$name" "restart failed ($rc2)"
    elif ! why=$(same_weights "$(last_ckpt "$run")" "$(last_ckpt "$REF")" 0); then fail "$name" "$why"
    else pass "$name"; fi
done

# --- torn and corrupt files are skipped, with a warning, for the previous one --------
for damage in truncated bitflip; do
    name="${damage}_checkpoint_is_skipped"
    run="$TEST_TMP/damage_$damage"
    mpi 1 "${BASE[@]}" $(layout 1 1 1) --run_dir="$run" --ckpt_every=3 --stop_at=9 >/dev/null 2>&1
    newest="$run/ckpt-00000009.h5"
    if [ $damage = truncated ]; then truncate -s $(( $(stat -c %s "$newest") / 2 )) "$newest"
    else "$ROOT/bin/tool_bitflip" "$newest" /model/h.2.mlp.fc.w >/dev/null; fi
    mpi 1 "${BASE[@]}" $(layout 1 1 1) --run_dir="$run" --ckpt_every=3 >"$run.log" 2>&1
    if ! grep -q "warning: .*ckpt-00000009.h5.*falling back" "$run.log"; then
        fail "$name" "no warning: $(grep -m2 -iE 'warn|resumed' "$run.log")"
    elif [ $damage = bitflip ] && ! grep -q "fails its checksum" "$run.log"; then
        fail "$name" "corruption not named: $(grep -m1 warn "$run.log")"
    elif ! grep -q "resumed from .*ckpt-00000006.h5 at step 6" "$run.log"; then
        fail "$name" "$(grep -m1 resumed "$run.log")"
    elif ! same_weights "$(last_ckpt "$run")" "$(last_ckpt "$TEST_TMP/straight_1x1x1")" 0 >/dev/null; then
        fail "$name" "final weights differ from the uninterrupted run"
    else pass "$name"; fi
done
"$TRIDENT" eval --ckpt "$TEST_TMP/damage_bitflip/ckpt-00000012.h5" >/dev/null 2>&1
cp "$TEST_TMP/damage_bitflip/ckpt-00000012.h5" "$TEST_TMP/flipped.h5"
"$ROOT/bin/tool_bitflip" "$TEST_TMP/flipped.h5" /model/wte >/dev/null
out=$("$TRIDENT" eval --ckpt "$TEST_TMP/flipped.h5" 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "tensor 'model/wte' .* fails its checksum" <<<"$out"; then
    pass "corrupt_checkpoint_is_refused_by_eval"
else fail "corrupt_checkpoint_is_refused_by_eval" "rc $rc: $out"; fi

# --- SIGUSR1: checkpoint at the end of the step, exit 75 ------------------------------
run="$TEST_TMP/signal"
mpirun --oversubscribe -np 2 "$TRIDENT" "${BASE[@]}" $(layout 2 1 1) --run_dir="$run" --steps=100000 \
    --warmup=10 --ckpt_every=0 >"$run.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$run/metrics.jsonl" ] && break; sleep 0.1; done
kill -USR1 $pid
wait $pid
rc=$?
if [ $rc -eq 75 ] && grep -q "stopping at step .* on a signal" "$run.log" && [ -n "$(last_ckpt "$run")" ]; then
    pass "sigusr1_checkpoints_and_exits_75"
else fail "sigusr1_checkpoints_and_exits_75" "rc $rc, $(tail -n 2 "$run.log")"; fi

# --- disk full while writing: the error names the file, the previous checkpoint stays --
mnt="$TEST_TMP/small_disk"
mkdir -p "$mnt"
# room for one checkpoint and a half (plus the small files)
room=$(( $(stat -c %s "$(last_ckpt "$TEST_TMP/straight_1x1x1")") * 3 / 2 / 1024 + 64 ))
if mount -t tmpfs -o size=${room}k tmpfs "$mnt" 2>/dev/null; then
    name="disk_full_keeps_previous_checkpoint"
    mpi 1 "${BASE[@]}" $(layout 1 1 1) --run_dir="$mnt/run" --ckpt_every=6 --ckpt_keep=1 >"$mnt.log" 2>&1
    rc=$?
    "$TRIDENT" eval --ckpt "$mnt/run" >"$mnt.eval" 2>&1
    rc_eval=$?
    mount -o remount,size=16m "$mnt"
    mpi 1 "${BASE[@]}" $(layout 1 1 1) --run_dir="$mnt/run" --ckpt_every=6 --ckpt_keep=1 >"$mnt.2.log" 2>&1
    rc2=$?
    if [ $rc -eq 0 ]; then fail "$name" "the run did not fail on a full disk"
    elif ! grep -q "checkpoint '$mnt/run/ckpt-00000012.h5.tmp' failed.*previous checkpoint is intact" "$mnt.log"; then
        fail "$name" "$(grep -m1 fatal "$mnt.log")"
    elif [ $rc_eval -ne 0 ] || ! grep -q "ckpt-00000006.h5 (step 6)" "$mnt.eval"; then
        fail "$name" "the previous checkpoint does not load: $(tail -n 1 "$mnt.eval")"
    elif [ $rc2 -ne 0 ] || ! grep -q "resumed from .*ckpt-00000006.h5" "$mnt.2.log"; then
        fail "$name" "no resume after freeing space: $(tail -n 1 "$mnt.2.log")"
    else pass "$name"; fi
    umount "$mnt"
else
    skip disk_full_keeps_previous_checkpoint "cannot mount a small tmpfs here"
fi

# --- partitioned reading: each window of a step is read once (per pipeline end) -------
reads() { # reads NAME NP LAYOUT...: the multiset "step offset" read by all ranks
    local name=$1 np=$2; shift 2
    mkdir -p "$TEST_TMP/reads_$name"
    TRIDENT_LOG_READS="$TEST_TMP/reads_$name" mpi "$np" "${BASE[@]}" "$@" --steps=3 \
        --run_dir="$TEST_TMP/rr_$name" >/dev/null 2>&1
    cat "$TEST_TMP/reads_$name"/reads.* | sort
}
one=$(reads one 1 $(layout 1 1 1))
dptp=$(reads dptp 4 $(layout 2 2 1))
pp=$(reads pp 8 $(layout 2 2 2))
ranks_reading=$(ls "$TEST_TMP/reads_dptp" | wc -l)
if [ -n "$one" ] && [ "$one" = "$dptp" ] && [ "$(wc -l <<<"$one")" -eq 48 ] && [ "$ranks_reading" -eq 2 ]; then
    pass "each_window_read_exactly_once_across_dp_ranks"
else fail "each_window_read_exactly_once_across_dp_ranks" "$(wc -l <<<"$dptp") reads by $ranks_reading ranks, single rank $(wc -l <<<"$one")"; fi
if [ "$pp" = "$(printf '%s\n%s\n' "$one" "$one" | sort)" ]; then
    pass "pipeline_ends_each_read_each_window_once"
else fail "pipeline_ends_each_read_each_window_once" "$(wc -l <<<"$pp") reads"; fi
test_summary
