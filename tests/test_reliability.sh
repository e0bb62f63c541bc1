#!/usr/bin/env bash
# test_reliability.sh — no run ever loses a checkpoint, hangs, or trains on garbage:
# eval/sample leave a live run directory alone; one train per run directory (lock, stale
# takeover); never a silent restart over unreadable checkpoints, and pruning counts only
# verified ones; the divergence guard stops or rolls back and never publishes a broken
# state; damaged metadata falls back like damaged data; an error on one rank and a
# stopped rank both end the whole job in bounded time; resumes are marked in metrics.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
BASE=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --eval_every=0 --log_every=100 --eval_batches=2)
HOST=$(hostname)

# wait_for FILE_GLOB SECONDS: until a file matching the glob exists
wait_for() {
    local glob=$1 n=$(( $2 * 20 ))
    for _ in $(seq "$n"); do compgen -G "$glob" >/dev/null && return 0; sleep 0.05; done
    return 1
}
# listing DIR: names, sizes and modification times of everything in DIR
listing() { (cd "$1" && find . -mindepth 1 -printf '%p %s %T@\n' | sort); }

# --- 1. eval and sample never write or delete anything in a run directory -------------
run="$TEST_TMP/live"
TRIDENT_SLOW_CKPT=4 mpi 1 "${BASE[@]}" --run_dir="$run" --steps=4 --ckpt_every=2 \
    --n_layer=2 >"$run.log" 2>&1 &
pid=$!
if wait_for "$run/ckpt-00000002.h5.tmp" 30; then
    "$TRIDENT" eval --ckpt "$run" --eval_batches=1 >"$run.eval" 2>&1
    rc_eval=$?
    tmp_left=$(ls "$run"/*.tmp 2>/dev/null | wc -l)
    wait $pid; rc=$?
    if [ "$tmp_left" -ne 1 ]; then fail eval_during_a_save_keeps_its_tmp_file "eval removed the running job's .tmp"
    elif [ $rc -ne 0 ]; then fail eval_during_a_save_keeps_its_tmp_file "training failed ($rc): $(grep -m1 -E 'error|fatal' "$run.log")"
    elif [ ! -f "$run/ckpt-00000004.h5" ]; then fail eval_during_a_save_keeps_its_tmp_file "no final checkpoint"
    else pass eval_during_a_save_keeps_its_tmp_file; fi
    [ $rc_eval -eq 0 ] || grep -q "none of them loads\|no checkpoint\|not a readable" "$run.eval" || true
else
    kill $pid 2>/dev/null; wait $pid
    fail eval_during_a_save_keeps_its_tmp_file "the save never started: $(tail -n 2 "$run.log")"
fi
# a finished run with a leftover .tmp: eval and sample change nothing at all
touch "$run/ckpt-00000006.h5.tmp"
before=$(listing "$run")
"$TRIDENT" eval --ckpt "$run" --eval_batches=1 >/dev/null 2>&1; rc1=$?
"$TRIDENT" sample --ckpt "$run" --length 8 >/dev/null 2>&1; rc2=$?
after=$(listing "$run")
if [ $rc1 -ne 0 ] || [ $rc2 -ne 0 ]; then fail eval_and_sample_change_nothing_in_run_dir "eval rc $rc1, sample rc $rc2"
elif [ "$before" != "$after" ]; then fail eval_and_sample_change_nothing_in_run_dir "$(diff <(echo "$before") <(echo "$after") | head -n 4)"
else pass eval_and_sample_change_nothing_in_run_dir; fi
rm -f "$run/ckpt-00000006.h5.tmp"

# --- 2. one train per run directory ---------------------------------------------------
run="$TEST_TMP/locked"
"$TRIDENT" "${BASE[@]}" --run_dir="$run" --steps=100000 --ckpt_every=5 >"$run.a.log" 2>&1 &
pid=$!
wait_for "$run/ckpt-00000005.h5" 60
out=$(timeout -k 5 60 "$TRIDENT" "${BASE[@]}" --run_dir="$run" --steps=100000 2>&1); rc=$?
if [ $rc -ne 2 ]; then fail second_train_refuses_naming_the_holder "exit $rc, expected 2"
elif ! grep -q "in use by another trident train: host $HOST, pid $pid, Slurm job -" <<<"$out"; then
    fail second_train_refuses_naming_the_holder "$(grep -m1 error <<<"$out")"
elif ! grep -q "^HINT: " <<<"$out"; then fail second_train_refuses_naming_the_holder "no HINT"
else pass second_train_refuses_naming_the_holder; fi
steps_before=$(losses "$run" | wc -l)
kill -9 $pid; wait $pid 2>/dev/null
out=$("$TRIDENT" "${BASE[@]}" --run_dir="$run" --steps=$(( steps_before + 3 )) 2>&1); rc=$?
if [ $rc -ne 0 ]; then fail stale_lock_of_a_killed_run_is_taken_over "exit $rc: $(grep -m1 error <<<"$out")"
elif ! grep -q "warning: taking over the lock .* pid $pid, .*no longer running\|warning: taking over the lock .* pid $pid, .*has exited" <<<"$out"; then
    fail stale_lock_of_a_killed_run_is_taken_over "no takeover warning: $(grep -m1 -i lock <<<"$out")"
elif [ -e "$run/lock" ]; then fail stale_lock_of_a_killed_run_is_taken_over "the lock was not released at the end"
else pass stale_lock_of_a_killed_run_is_taken_over; fi
# metrics: the resume is marked, and the steps after it follow the marker
if grep -q '^{"event":"resume","step":[0-9]*,"checkpoint":"'"$run"'/ckpt-' "$run/metrics.jsonl" &&
   awk '/"event":"resume"/ { r = 1; s = $0; sub(/.*"step":/, "", s); s += 0; next }
        r && /"loss"/ { t = $0; sub(/^{"step":/, "", t); if (t + 0 != s + 1) bad = 1; r = 0 }
        END { exit bad }' "$run/metrics.jsonl"; then
    pass metrics_mark_each_resume
else fail metrics_mark_each_resume "$(grep -c event "$run/metrics.jsonl") event lines"; fi

# locks of other hosts: fresh = held, silent for minutes = stale; an earlier attempt of
# this Slurm job is always stale
fake_lock() { # fake_lock DIR HOST JOB RESTART AGE_S
    printf 'host=%s\nboot=x\npid=4242\nstart=1\njob=%s\nrestart=%s\nsince=earlier\n' "$2" "$3" "$4" >"$1/lock"
    touch -d "-$5 seconds" "$1/lock"
}
run="$TEST_TMP/remote"
mkdir -p "$run"
fake_lock "$run" node-b 77 0 5
out=$("$TRIDENT" "${BASE[@]}" --run_dir="$run" --steps=2 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "in use by another trident train: host node-b, pid 4242, Slurm job 77" <<<"$out"; then
    pass fresh_lock_of_another_host_is_respected
else fail fresh_lock_of_another_host_is_respected "exit $rc: $(grep -m1 -E 'error|warn' <<<"$out")"; fi
fake_lock "$run" node-b 77 0 600
out=$("$TRIDENT" "${BASE[@]}" --run_dir="$run" --steps=2 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "taking over the lock .* host node-b, .*has not touched it for" <<<"$out"; then
    pass silent_lock_of_another_host_is_taken_over
else fail silent_lock_of_another_host_is_taken_over "exit $rc: $(grep -m1 -E 'error|warn' <<<"$out")"; fi
fake_lock "$run" node-b 77 0 5
out=$(SLURM_JOB_ID=77 SLURM_RESTART_COUNT=1 "$TRIDENT" "${BASE[@]}" --run_dir="$run" --steps=4 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "taking over the lock .*attempt 0 of this Slurm job (77)" <<<"$out"; then
    pass lock_of_an_earlier_attempt_of_the_same_job_is_taken_over
else fail lock_of_an_earlier_attempt_of_the_same_job_is_taken_over "exit $rc: $(grep -m1 -E 'error|warn' <<<"$out")"; fi

# --- 3. unreadable checkpoints: refuse, never restart silently; pruning ---------------
run="$TEST_TMP/unreadable"
mpi 1 "${BASE[@]}" --run_dir="$run" --steps=6 --ckpt_every=2 --ckpt_keep=5 >/dev/null 2>&1
for f in "$run"/ckpt-*.h5; do truncate -s 5000 "$f"; done
before=$(listing "$run")
out=$(mpi 2 "${BASE[@]}" --run_dir="$run" --steps=8 2>&1); rc=$?
if [ $rc -ne 1 ]; then fail all_checkpoints_unreadable_refuses "exit $rc, expected 1"
elif ! grep -q "holds 3 checkpoints and none of them loads" <<<"$out"; then fail all_checkpoints_unreadable_refuses "$(grep -m1 error <<<"$out")"
elif [ "$(grep -c "^  '$run/ckpt-0000000[246].h5' is not a readable HDF5 file" <<<"$out")" -ne 3 ]; then
    fail all_checkpoints_unreadable_refuses "not every file is listed with its reason: $out"
elif grep -q "^step " <<<"$out"; then fail all_checkpoints_unreadable_refuses "training started"
else pass all_checkpoints_unreadable_refuses; fi
after=$(listing "$run" | grep -v -e ' lock' -e 'metrics.jsonl' -e 'config.txt')
if [ "$(grep -v -e ' lock' -e 'metrics.jsonl' -e 'config.txt' <<<"$before")" = "$after" ]; then
    pass refused_resume_deletes_nothing
else fail refused_resume_deletes_nothing "$(diff <(echo "$before") <(echo "$after") | head -n 4)"; fi
out=$(mpi 1 "${BASE[@]}" --run_dir="$run" --steps=8 --resume=none 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "already holds 3 checkpoint files" <<<"$out"; then pass resume_none_refuses_unreadable_checkpoints_too
else fail resume_none_refuses_unreadable_checkpoints_too "exit $rc: $(grep -m1 error <<<"$out")"; fi

# two garbage files numbered above the real ones: they are neither counted nor deleted,
# and the checkpoints just written survive ckpt_keep
run="$TEST_TMP/prune"
mpi 1 "${BASE[@]}" --run_dir="$run" --steps=4 --ckpt_every=2 --ckpt_keep=2 >/dev/null 2>&1
head -c 100000 /dev/urandom >"$run/ckpt-00000020.h5"
head -c 100000 /dev/urandom >"$run/ckpt-00000022.h5"
out=$(mpi 1 "${BASE[@]}" --run_dir="$run" --steps=10 --ckpt_every=2 --ckpt_keep=2 2>&1); rc=$?
have=$(cd "$run" && ls ckpt-*.h5 | tr '\n' ' ')
if [ $rc -ne 0 ]; then fail pruning_counts_only_verified_checkpoints "exit $rc: $(grep -m1 error <<<"$out")"
elif ! grep -q "resumed from .*ckpt-00000004.h5 at step 4" <<<"$out"; then fail pruning_counts_only_verified_checkpoints "$(grep -m1 resumed <<<"$out")"
elif [ ! -f "$run/ckpt-00000010.h5" ] || [ ! -f "$run/ckpt-00000008.h5" ] || [ -f "$run/ckpt-00000004.h5" ]; then
    fail pruning_counts_only_verified_checkpoints "kept: $have"
elif [ ! -f "$run/ckpt-00000020.h5" ] || [ ! -f "$run/ckpt-00000022.h5" ]; then
    fail pruning_counts_only_verified_checkpoints "an unreadable file was deleted: $have"
else pass pruning_counts_only_verified_checkpoints; fi

# --- 4. the divergence guard ------------------------------------------------------------
run="$TEST_TMP/lr10"
out=$(mpi 2 "${BASE[@]}" --run_dir="$run" --steps=30 --lr=10 --ckpt_every=1 --ckpt_keep=2 2>&1); rc=$?
first_bad=$(sed -n 's/.*training stopped: step \([0-9]*\) diverged: the loss .* times the median.*/\1/p' <<<"$out")
if [ $rc -ne 1 ]; then fail loss_spike_stops_the_run "exit $rc, expected 1: $(tail -n 2 <<<"$out")"
elif [ -z "$first_bad" ]; then fail loss_spike_stops_the_run "no spike message: $(grep -m1 error <<<"$out")"
elif ls "$run"/ckpt-*.h5 | grep -q "ckpt-$(printf %08d "$first_bad").h5"; then fail loss_spike_stops_the_run "the diverged step was checkpointed"
elif [ "$(ls "$run"/ckpt-*.h5 | wc -l)" -lt 1 ]; then fail loss_spike_stops_the_run "no good checkpoint left"
else pass loss_spike_stops_the_run; fi
# with the spike test off, lr = 10 climbs to a loss of thousands without a NaN: the
# checkpoint with the lowest loss (step 1, before it went wrong) is never pruned
run="$TEST_TMP/lr10_slow"
mpi 1 "${BASE[@]}" --run_dir="$run" --steps=12 --lr=10 --spike_factor=0 --ckpt_every=1 --ckpt_keep=2 >/dev/null 2>&1
have=$(cd "$run" && ls ckpt-*.h5 | tr '\n' ' ')
if [ "$have" = "ckpt-00000001.h5 ckpt-00000011.h5 ckpt-00000012.h5 " ]; then pass lowest_loss_checkpoint_survives_pruning
else fail lowest_loss_checkpoint_survives_pruning "kept: $have"; fi

run="$TEST_TMP/nan"
out=$(TRIDENT_FAULT=nan:5 mpi 1 "${BASE[@]}" --run_dir="$run" --steps=10 --ckpt_every=2 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q "step 5 diverged: the loss is nan" <<<"$out" && [ "$(cd "$run" && ls ckpt-*.h5 | tr '\n' ' ')" = "ckpt-00000002.h5 ckpt-00000004.h5 " ]; then
    pass nan_loss_stops_before_the_update
else fail nan_loss_stops_before_the_update "exit $rc: $(grep -m1 error <<<"$out")"; fi

run="$TEST_TMP/nanweights"
out=$(TRIDENT_FAULT=nanweights:6 mpi 2 "${BASE[@]}" --run_dir="$run" --steps=10 --ckpt_every=3 2>&1); rc=$?
if [ $rc -ne 1 ]; then fail nan_weights_are_never_published "exit $rc"
elif [ -e "$run/ckpt-00000006.h5" ]; then fail nan_weights_are_never_published "ckpt 6 was published"
elif ! grep -q "after step 6 the weights or optimizer moments hold non-finite values" <<<"$out"; then
    fail nan_weights_are_never_published "$(grep -m1 error <<<"$out")"
else pass nan_weights_are_never_published; fi
# and the run resumes from the last good one
out=$(mpi 2 "${BASE[@]}" --run_dir="$run" --steps=10 --ckpt_every=3 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "resumed from .*ckpt-00000003.h5 at step 3" <<<"$out"; then pass diverged_run_resumes_from_last_good_checkpoint
else fail diverged_run_resumes_from_last_good_checkpoint "exit $rc: $(grep -m1 -E 'resumed|error' <<<"$out")"; fi

# rollback: a poisoned data step is skipped, the run finishes, and the skip is in the
# checkpoint so that an interrupted rolled-back run resumes to the same weights
RB=(--steps=12 --ckpt_every=3 --on_divergence=rollback)
run="$TEST_TMP/rollback"
out=$(TRIDENT_FAULT=spike:5 mpi 2 "${BASE[@]}" "${RB[@]}" --run_dir="$run" 2>&1); rc=$?
if [ $rc -ne 0 ]; then fail rollback_skips_the_offending_data "exit $rc: $(grep -m1 error <<<"$out")"
elif ! grep -q "step 5 diverged: .*rolled back to step 3 and skipping that step's data (rollback 1 of 3)" <<<"$out"; then
    fail rollback_skips_the_offending_data "$(grep -m1 warn <<<"$out")"
elif ! grep -q '{"event":"rollback","step":5,"to_step":3,"rollback":1}' "$run/metrics.jsonl"; then
    fail rollback_skips_the_offending_data "no rollback event in metrics"
elif ! h5dump -a data_skips "$run/ckpt-00000012.h5" | grep -q '"4"'; then fail rollback_skips_the_offending_data "the skip is not in the checkpoint"
else pass rollback_skips_the_offending_data; fi
run2="$TEST_TMP/rollback_split"
TRIDENT_FAULT=spike:5 mpi 2 "${BASE[@]}" "${RB[@]}" --run_dir="$run2" --stop_at=9 >/dev/null 2>&1
mpi 2 "${BASE[@]}" "${RB[@]}" --run_dir="$run2" >/dev/null 2>&1
if why=$(same_weights "$run2/ckpt-00000012.h5" "$run/ckpt-00000012.h5" 0); then pass rolled_back_run_resumes_bit_identically
else fail rolled_back_run_resumes_bit_identically "$why"; fi
out=$(TRIDENT_FAULT=spike:5 mpi 1 "${BASE[@]}" "${RB[@]}" --max_rollbacks=0 --run_dir="$TEST_TMP/rb0" 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q "training diverged again after 0 rollbacks" <<<"$out"; then pass rollbacks_are_bounded
else fail rollbacks_are_bounded "exit $rc: $(grep -m1 error <<<"$out")"; fi

# --- 5. damaged metadata falls back like damaged data ---------------------------------
run="$TEST_TMP/meta"
mpi 1 "${BASE[@]}" --run_dir="$run" --steps=9 --ckpt_every=3 --stop_at=9 >/dev/null 2>&1
mpi 1 "${BASE[@]}" --run_dir="$TEST_TMP/meta_ref" --steps=12 --ckpt_every=0 >/dev/null 2>&1
REF=$(last_ckpt "$TEST_TMP/meta_ref")
for damage in "--attr config" "--attr tensors" "--dims /model/h.0.mlp.fc.w" "--dims /optim/m/wpe"; do
    name="flipped_$(sed 's/--//; s/ \/*/_/; s/[\/.]/_/g' <<<"$damage")_falls_back"
    r="$TEST_TMP/meta_$RANDOM"
    cp -r "$run" "$r"
    # shellcheck disable=SC2086
    "$ROOT/bin/tool_bitflip" "$r/ckpt-00000009.h5" $damage >/dev/null
    out=$(mpi 1 "${BASE[@]}" --run_dir="$r" --steps=12 --ckpt_every=3 2>&1); rc=$?
    if [ $rc -ne 0 ]; then fail "$name" "exit $rc: $(grep -m1 error <<<"$out")"
    elif ! grep -q "warning: .*ckpt-00000009.h5.*corrupt.*falling back" <<<"$out"; then fail "$name" "$(grep -m1 -E 'warn|resumed' <<<"$out")"
    elif ! grep -q "resumed from .*ckpt-00000006.h5 at step 6" <<<"$out"; then fail "$name" "$(grep -m1 resumed <<<"$out")"
    elif ! why=$(same_weights "$(last_ckpt "$r")" "$REF" 0); then fail "$name" "$why"
    else pass "$name"; fi
done
# random bits anywhere outside the tensors' data: never exit 2, never other weights
bad=0
for seed in $(seq 1 8); do
    r="$TEST_TMP/metafuzz_$seed"
    cp -r "$run" "$r"
    "$ROOT/bin/tool_bitflip" "$r/ckpt-00000009.h5" --meta "$seed" >/dev/null
    out=$(mpi 1 "${BASE[@]}" --run_dir="$r" --steps=12 --ckpt_every=3 2>&1); rc=$?
    if [ $rc -ne 0 ] || ! same_weights "$(last_ckpt "$r")" "$REF" 0 >/dev/null; then
        bad=1; echo "    seed $seed: exit $rc $(grep -m1 -E 'error|warn' <<<"$out")"
    fi
done
if [ $bad -eq 0 ]; then pass random_metadata_flips_fall_back_or_load_identically
else fail random_metadata_flips_fall_back_or_load_identically "see the seeds above"; fi
# a resume=PATH the user named that really is another architecture still exits 2
out=$(mpi 1 "${BASE[@]}" --run_dir="$TEST_TMP/other_arch" --resume="$run/ckpt-00000009.h5" --n_embd=32 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "another architecture" <<<"$out"; then pass named_checkpoint_of_another_architecture_exits_2
else fail named_checkpoint_of_another_architecture_exits_2 "exit $rc"; fi

# --- 7. an error on one rank ends every rank ------------------------------------------
start=$(date +%s)
out=$(timeout -k 5 60 mpirun --oversubscribe -np 2 "$TRIDENT" "${BASE[@]}" --run_dir=/proc/nope/r 2>&1); rc=$?
took=$(( $(date +%s) - start ))
if [ $rc -eq 2 ] && grep -q "cannot create run_dir '/proc/nope/r'" <<<"$out"; then pass rank0_only_error_ends_every_rank
else fail rank0_only_error_ends_every_rank "exit $rc after $took s: $(tail -n 2 <<<"$out")"; fi
start=$(date +%s)
out=$(TRIDENT_FAULT=fail:3:1 timeout -k 5 60 mpirun --oversubscribe -np 2 "$TRIDENT" "${BASE[@]}" \
      --run_dir="$TEST_TMP/onerank" --steps=10 2>&1); rc=$?
took=$(( $(date +%s) - start ))
if [ $rc -eq 1 ] && [ $took -lt 40 ] && grep -q "error \[rank 1\]: fault injection" <<<"$out" &&
   grep -q "the other ranks did not meet this error" <<<"$out"; then pass error_on_one_rank_ends_the_job_in_bounded_time
else fail error_on_one_rank_ends_the_job_in_bounded_time "exit $rc after $took s: $(grep -m1 error <<<"$out")"; fi

# --- 8. a stopped rank: the watchdog names it and ends the job ------------------------
run="$TEST_TMP/stopped"
start=$(date +%s)
out=$(TRIDENT_FAULT=stop:4:2 timeout -k 5 120 mpirun --oversubscribe -np 4 "$TRIDENT" "${BASE[@]}" \
      --run_dir="$run" --steps=10 --dp=2 --pp=2 --grad_accum=2 --micro_batch=4 --ckpt_every=2 --watchdog_s=5 2>&1); rc=$?
took=$(( $(date +%s) - start ))
leftover=$(pgrep -f "run_dir=$run" | wc -l)
if [ $rc -ne 1 ]; then fail watchdog_ends_a_job_with_a_stopped_rank "exit $rc after $took s"
elif [ $took -gt 60 ]; then fail watchdog_ends_a_job_with_a_stopped_rank "took $took s"
elif ! grep -q "watchdog: rank 2 (host $HOST, pid [0-9]*) made no progress report: it is stopped" <<<"$out"; then
    fail watchdog_ends_a_job_with_a_stopped_rank "the stopped rank is not named: $(grep -m3 watchdog <<<"$out")"
elif ! grep -q "watchdog: rank 0 .* made no progress for [0-9]* s in step 4: " <<<"$out"; then
    fail watchdog_ends_a_job_with_a_stopped_rank "rank 0 does not say what it waited for"
elif [ "$leftover" -ne 0 ]; then fail watchdog_ends_a_job_with_a_stopped_rank "$leftover processes left"
else pass watchdog_ends_a_job_with_a_stopped_rank; fi
pkill -9 -f "run_dir=$run" 2>/dev/null
out=$(timeout -k 5 120 mpirun --oversubscribe -np 4 "$TRIDENT" "${BASE[@]}" --run_dir="$run" --steps=10 \
      --dp=2 --pp=2 --grad_accum=2 --micro_batch=4 --ckpt_every=2 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "resumed from .*ckpt-00000002.h5 at step 2" <<<"$out"; then pass job_ended_by_watchdog_resumes
else fail job_ended_by_watchdog_resumes "exit $rc: $(grep -m1 -E 'resumed|error' <<<"$out")"; fi
test_summary
