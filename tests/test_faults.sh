#!/usr/bin/env bash
# test_faults.sh — a short fault campaign (tests/fault_campaign.sh): a 2×2×2 job killed by
# SIGKILL 4 times (a fixed seed; one kill each at a checkpoint write, a rename, an
# optimizer update and an external kill -9 at a random moment), resumed each time, ends
# with the uninterrupted run's weights bit for bit; no checkpoint is ever torn, and no
# more than the steps since the last checkpoint are redone. `make bench` runs the full
# campaign (≥ 20 kills).
source "$(dirname "$0")/lib.sh"
C="$TEST_TMP/campaign"
EVERY=3

# bad options are refused before any run
out=$("$ROOT/tests/fault_campaign.sh" --phases ckpt,bogus -o "$TEST_TMP/bad" 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "unknown phase 'bogus'" <<<"$out" && [ ! -e "$TEST_TMP/bad/ref" ]; then
    pass "campaign_refuses_bad_options"
else fail "campaign_refuses_bad_options" "rc $rc: $out"; fi

"$ROOT/tests/fault_campaign.sh" -k 4 -s 7 --ckpt-every $EVERY --phases ckpt,rename,optim,kill-9 \
    -o "$C" >"$TEST_TMP/campaign.out" 2>&1
rc=$?
get() { sed -n "s/^$1=//p" "$C/summary.txt" 2>/dev/null; }
# rows of the table: attempt phase rank killed exit done resumed redone torn checkpoints
rows() { grep -E '^\| [0-9]+ \|' "$C/table.md" 2>/dev/null | sed 's/ *| */|/g; s/^|//; s/|$//'; }
viol() { grep -E "$1" "$C/violations.txt" 2>/dev/null | head -n 3; }

if [ $rc -eq 2 ] || [ ! -f "$C/summary.txt" ]; then
    fail "campaign_runs" "rc $rc: $(tail -n 3 "$TEST_TMP/campaign.out")"
else pass "campaign_runs"; fi

phases=$(get phases)
if [ "$(get kills)" = 4 ] && [[ ,$phases, == *,ckpt,* ]] && [[ ,$phases, == *,rename,* ]] &&
   [[ ,$phases, == *,kill-9,* ]]; then
    pass "four_kills_cover_ckpt_rename_and_kill9"
else fail "four_kills_cover_ckpt_rename_and_kill9" "kills $(get kills), phases $phases"; fi

bad=$(rows | awk -F'|' '$5 == 0'; viol 'not killed|did not fire|missed')
if [ "$(rows | wc -l)" -eq 4 ] && [ -z "$bad" ]; then pass "every_attempt_was_killed"
else fail "every_attempt_was_killed" "$bad"; fi

bad=$(viol 'hang|processes left')
if [ -z "$bad" ]; then pass "no_hang_after_a_kill"; else fail "no_hang_after_a_kill" "$bad"; fi

bad=$(rows | awk -F'|' '{ split($10, c, "/"); if (c[1] != c[2]) print "attempt " $1 ": " $10 }'; viol 'torn checkpoint|latest')
if [ -n "$(rows)" ] && [ -z "$bad" ]; then pass "every_checkpoint_on_disk_loads_after_every_kill"
else fail "every_checkpoint_on_disk_loads_after_every_kill" "$bad"; fi

if [ "$(get torn_loads)" = 0 ] && [ -z "$(viol 'skipped')" ]; then pass "no_torn_load_on_resume"
else fail "no_torn_load_on_resume" "$(get torn_loads) torn loads: $(viol skipped)"; fi

bad=$(rows | awk -F'|' -v c=$EVERY '$8 < 0 || $8 > c || $8 != $6 - $7'; viol 'redone')
if [ -n "$(rows)" ] && [ -z "$bad" ] && [ "$(get max_redone)" -le $EVERY ]; then
    pass "steps_redone_at_most_the_checkpoint_interval"
else fail "steps_redone_at_most_the_checkpoint_interval" "max $(get max_redone): $bad"; fi

# a kill at a fault point of step K resumes from the newest checkpoint below K; a kill -9
# from the newest one on disk
bad=$(rows | awk -F'|' -v c=$EVERY '$2 !~ /kill-9/ && $7 != int(($4 - 1) / c) * c'; viol 'resumed from')
if [ -n "$(rows)" ] && [ -z "$bad" ]; then pass "resume_from_the_newest_complete_checkpoint"
else fail "resume_from_the_newest_complete_checkpoint" "$bad"; fi

if [ "$(get identical)" = yes ]; then pass "final_weights_bit_identical_to_uninterrupted_run"
else fail "final_weights_bit_identical_to_uninterrupted_run" "$(viol 'weights')"; fi

if [ "$(get losses_identical)" = yes ]; then pass "every_step_loss_identical_to_uninterrupted_run"
else fail "every_step_loss_identical_to_uninterrupted_run" "$(viol 'losses')"; fi

if [ $rc -eq 0 ] && [ "$(get violations)" = 0 ] && grep -q '^\*\*kills 4, torn loads 0, .*final weights identical yes\*\*' "$C/campaign.md" &&
   grep -q "^kills 4, torn loads 0" "$TEST_TMP/campaign.out"; then
    pass "campaign_prints_and_writes_its_table"
else fail "campaign_prints_and_writes_its_table" "rc $rc, $(get violations) violations: $(head -n 3 "$C/violations.txt" 2>/dev/null)"; fi

echo "   (campaign: $(get seconds) s, $(get attempts) attempts)"
test_summary
