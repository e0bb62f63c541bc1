#!/usr/bin/env bash
# test_cli.sh — bad input is refused before any work starts, with a message that names
# the problem and the fix, and exit code 2; layout problems are refused or warned about.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
TINY=("$ROOT/inputs/tiny.conf" --data="$DATA" --steps=3 --eval_every=0 --resume=none)

# expect_error NAME PHRASE NP ARGS...: exit code 2, PHRASE in the output, a HINT line
expect_error() {
    local name=$1 phrase=$2 np=$3; shift 3
    local out rc
    if [ "$np" = 0 ]; then out=$("$TRIDENT" "$@" 2>&1); rc=$?
    else out=$(mpi "$np" "$@" 2>&1); rc=$?; fi
    if [ $rc -ne 2 ]; then fail "$name" "exit code $rc, expected 2: $(echo "$out" | tail -n 2)"
    elif ! grep -qF -- "$phrase" <<<"$out"; then fail "$name" "no '$phrase' in: $(echo "$out" | head -n 3)"
    elif ! grep -q "^HINT: " <<<"$out"; then fail "$name" "no HINT line in: $(echo "$out" | head -n 3)"
    elif grep -q "^step " <<<"$out"; then fail "$name" "training started before the error"
    else pass "$name"; fi
}
# expect_warning NAME PHRASE NP ARGS...: the run works (exit 0) and warns
expect_warning() {
    local name=$1 phrase=$2 np=$3; shift 3
    local out rc
    out=$(mpi "$np" "$@" 2>&1); rc=$?
    if [ $rc -ne 0 ]; then fail "$name" "exit code $rc: $(echo "$out" | tail -n 2)"
    elif ! grep -qF -- "$phrase" <<<"$out"; then fail "$name" "no '$phrase' warning"
    else pass "$name"; fi
}

R="--run_dir=$TEST_TMP/r"
expect_error unknown_key_suggests_nearest "did you mean 'n_layer'" 0 train "${TINY[@]}" "$R" --n_layers=3
printf 'n_layer = 2\nlrate = 3\n' >"$TEST_TMP/bad.conf"
expect_error unknown_key_in_file_names_line "bad.conf:2: unknown config key 'lrate'" 0 train "$TEST_TMP/bad.conf"
expect_error wrong_type "'lr' expects a number, got 'fast'" 0 train "${TINY[@]}" "$R" --lr=fast
expect_error integer_expected "'n_layer' expects an integer, got '2.5'" 0 train "${TINY[@]}" "$R" --n_layer=2.5
expect_error out_of_range "n_layer = 0 is out of range" 0 train "${TINY[@]}" "$R" --n_layer=0
expect_error bad_choice "'schedule' = 'zigzag' is not a valid choice" 0 train "${TINY[@]}" "$R" --schedule=zigzag
expect_error seq_len_exceeds_positions "seq_len = 128 exceeds block_size = 64" 0 train "${TINY[@]}" "$R" --seq_len=128
expect_error heads_must_divide_width "n_head = 5 does not divide n_embd = 64" 0 train "${TINY[@]}" "$R" --n_head=5
expect_error missing_config_file "cannot read config file '$TEST_TMP/nope.conf'" 0 train "$TEST_TMP/nope.conf"
expect_error missing_data_file "$TEST_TMP/missing.h5" 0 train "${TINY[@]}" "$R" --data="$TEST_TMP/missing.h5"
expect_error data_not_a_token_file "$ROOT/inputs/tiny.conf" 0 train "${TINY[@]}" "$R" --data="$ROOT/inputs/tiny.conf"
expect_error data_vocabulary_exceeds_model "vocabulary of 257 tokens but the model's vocab_size is 200" 0 \
    train "${TINY[@]}" "$R" --vocab_size=200
expect_error corpus_shorter_than_one_window "fewer than one window" 0 \
    train "${TINY[@]}" "$R" --seq_len=20000 --block_size=20000

# a checkpoint, then things that must refuse it
"$TRIDENT" train "${TINY[@]}" --run_dir="$TEST_TMP/ck" >/dev/null 2>&1
CK=$(last_ckpt "$TEST_TMP/ck")
expect_error checkpoint_of_another_architecture "another architecture: the checkpoint has n_embd = 64 but the model has n_embd = 32" 0 \
    train "${TINY[@]}" --run_dir="$TEST_TMP/other" --resume="$CK" --n_embd=32
expect_error resume_none_refuses_existing_run "already holds 1 checkpoint file" 0 \
    train "${TINY[@]}" --run_dir="$TEST_TMP/ck" --resume=none
expect_error eval_needs_a_checkpoint "eval needs --ckpt" 0 eval
expect_error sample_of_missing_checkpoint "$TEST_TMP/none.h5" 0 sample --ckpt="$TEST_TMP/none.h5"

# layouts
expect_error layout_world_mismatch_suggests_one "layout dp=1 × tp=1 × pp=1 = 1 ranks, but the job has 2" 2 \
    train "${TINY[@]}" "$R" --dp=1 --tp=1 --pp=1
out=$(mpi 2 train "${TINY[@]}" "$R" --dp=1 --tp=1 --pp=1 2>&1)
if grep -q "HINT: for 2 ranks try dp=2 tp=1 pp=1" <<<"$out"; then pass layout_suggestion_is_valid
else fail layout_suggestion_is_valid "$(grep HINT <<<"$out")"; fi
expect_error layout_tp_must_divide_heads "tp=3 does not divide n_head=4" 3 train "${TINY[@]}" "$R" --tp=3 --dp=1
expect_error layout_tp_must_divide_padded_vocab "tp=5 does not divide the padded vocabulary 384" 5 \
    train "${TINY[@]}" "$R" --tp=5 --dp=1 --n_head=5 --n_embd=80
expect_error layout_more_stages_than_layers "pp=4 stages but only n_layer=2 layers" 4 train "${TINY[@]}" "$R" --pp=4 --dp=1
expect_error layout_cannot_derive "cannot derive the layout: 3 ranks are not a multiple of the 2" 3 train "${TINY[@]}" "$R" --tp=2
expect_warning fewer_microbatches_than_stages_warns "pipeline is idle" 2 \
    train "${TINY[@]}" --run_dir="$TEST_TMP/w1" --pp=2 --dp=1 --grad_accum=1
TRIDENT_RANKS_PER_NODE=1 expect_warning tp_group_across_nodes_warns "spans nodes" 2 \
    train "${TINY[@]}" --run_dir="$TEST_TMP/w2" --tp=2 --dp=1
expect_error unknown_command "unknown command 'trian'" 0 trian 2>/dev/null
test_summary
