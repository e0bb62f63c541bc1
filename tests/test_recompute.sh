#!/usr/bin/env bash
# test_recompute.sh — recompute = selective and full give the losses and the weights of
# recompute = none bit for bit (1 rank; 2x2x2 with 1F1B and GPipe; bf16), and they lower
# the device memory, full more than selective, where activations matter.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
BASE=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --resume=none --eval_every=0 --steps=20
      --log_every=1 --ckpt_every=20)
L222=(--dp=2 --tp=2 --pp=2 --grad_accum=4 --micro_batch=2)

# same_as_none NAME NP ARGS...: a run per mode; selective's and full's losses and final
# checkpoints are none's, exactly
same_as_none() {
    local name=$1 np=$2; shift 2
    local r why ok=1
    for r in none selective full; do
        mpi "$np" "${BASE[@]}" "$@" --recompute=$r --run_dir="$TEST_TMP/${name}_$r" \
            >"$TEST_TMP/${name}_$r.log" 2>&1 || { ok=0; echo "  $name $r: $(tail -n 2 "$TEST_TMP/${name}_$r.log")"; }
    done
    for r in selective full; do
        why=$(same_losses "$TEST_TMP/${name}_none" "$TEST_TMP/${name}_$r" 0) ||
            { ok=0; echo "  $name $r losses: $(head -n 2 <<<"$why")"; }
        why=$(same_weights "$(last_ckpt "$TEST_TMP/${name}_none")" \
              "$(last_ckpt "$TEST_TMP/${name}_$r")" 0 2>&1) ||
            { ok=0; echo "  $name $r weights: $(tail -n 1 <<<"$why")"; }
    done
    [ $ok = 1 ] && pass "selective_and_full_bit_identical_to_none_$name" ||
        fail "selective_and_full_bit_identical_to_none_$name" "see above"
}

same_as_none one_rank 1
same_as_none 2x2x2_1f1b 8 "${L222[@]}"
same_as_none 2x2x2_gpipe 8 "${L222[@]}" --schedule=gpipe
same_as_none 2x2x2_bf16 8 "${L222[@]}" --precision=bf16

# device memory: a model whose activations dominate (8 layers, T = 256: the attention
# probabilities alone are 8 x 8 x 8 x 256 x 256 x 4 B = 128 MB per micro-batch)
ACT=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --resume=none --eval_every=0 --steps=2
     --n_layer=8 --n_embd=256 --n_head=8 --seq_len=256 --block_size=256 --micro_batch=8)
peak=()
for r in none selective full; do
    "$TRIDENT" "${ACT[@]}" --recompute=$r --run_dir="$TEST_TMP/mem_$r" >"$TEST_TMP/mem_$r.log" 2>&1
    peak+=("$(grep -o '"device_peak_mb_max":[0-9.]*' "$TEST_TMP/mem_$r/metrics.jsonl" 2>/dev/null |
              cut -d: -f2 | sort -g | tail -n 1)")
done
echo "  device peak MB: none ${peak[0]:-?}, selective ${peak[1]:-?}, full ${peak[2]:-?}"
if [ -n "${peak[0]}" ] && [ -n "${peak[1]}" ] && [ -n "${peak[2]}" ] &&
   awk -v n="${peak[0]}" -v s="${peak[1]}" -v f="${peak[2]}" 'BEGIN { exit !(s < 0.9 * n && f < 0.9 * s) }'
then pass "device_memory_none_gt_selective_gt_full"
else fail "device_memory_none_gt_selective_gt_full" "none ${peak[0]:-?}, selective ${peak[1]:-?}, full ${peak[2]:-?} MB"; fi

# a mode that is not one is refused by name
out=$("$TRIDENT" "${BASE[@]}" --recompute=some --run_dir="$TEST_TMP/bad" 2>&1); rc=$?
if [ $rc = 2 ] && grep -q "recompute" <<<"$out"
then pass "unknown_recompute_mode_refused"; else fail "unknown_recompute_mode_refused" "rc $rc: $(tail -n 2 <<<"$out")"; fi

test_summary
