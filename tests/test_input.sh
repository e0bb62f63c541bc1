#!/usr/bin/env bash
# test_input.sh — bad input that used to be accepted silently is refused before any work:
# prep writing over its own input or an existing file, a config key set twice or cut by a
# NUL byte, sample options that are not numbers, token files with an id beyond the
# vocabulary or a flipped byte. Exit code 2, the problem named, a HINT line.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
TEST_IO="$ROOT/bin/test_io"
TINY=("$ROOT/inputs/tiny.conf" --steps=2 --eval_every=0 --resume=none)
R="--run_dir=$TEST_TMP/r"

# expect_error NAME PHRASE NP ARGS...: exit code 2, PHRASE in the output, a HINT line,
# no training step (NP 0: without mpirun)
expect_error() {
    local name=$1 phrase=$2 np=$3; shift 3
    local out rc
    if [ "$np" = 0 ]; then out=$("$TRIDENT" "$@" 2>&1); rc=$?
    else out=$(timeout 300 mpirun --oversubscribe -np "$np" "$TRIDENT" "$@" 2>&1); rc=$?; fi
    if [ $rc -ne 2 ]; then fail "$name" "exit code $rc, expected 2: $(echo "$out" | tail -n 2)"
    elif ! grep -qF -- "$phrase" <<<"$out"; then fail "$name" "no '$phrase' in: $(echo "$out" | head -n 3)"
    elif ! grep -q "^HINT: " <<<"$out"; then fail "$name" "no HINT line in: $(echo "$out" | head -n 3)"
    elif grep -q "^step " <<<"$out"; then fail "$name" "training started before the error"
    else pass "$name"; fi
}

# ---- prep: never over its own input, never over an existing file without --force ----
P="$TEST_TMP/prep"
mkdir -p "$P/dir"
printf 'first fortune\n%%\nsecond one\n%%\nthird\n%%\nfourth\n' >"$P/in.txt"
cp "$P/in.txt" "$P/in.orig"
cp "$P/in.txt" "$P/dir/doc.txt"
ln -s in.txt "$P/link.txt"
cd "$P" || exit 1
expect_error prep_refuses_output_that_is_its_input "--out 'in.txt' is the input file 'in.txt'" 0 \
    prep --out in.txt --split-on % in.txt
expect_error prep_refuses_input_spelled_with_dot_slash "is the input file 'in.txt'" 0 \
    prep --out ./in.txt --split-on % in.txt
expect_error prep_refuses_input_through_a_symlink "--out 'link.txt' is the input file 'in.txt'" 0 \
    prep --out link.txt --split-on % in.txt
expect_error prep_refuses_input_found_in_a_directory "is the input file 'dir/doc.txt'" 0 \
    prep --out dir/doc.txt --force --split-on % dir
check prep_left_its_inputs_untouched cmp -s in.txt in.orig
"$TRIDENT" prep --out out.h5 --split-on % in.txt >/dev/null 2>&1
cp out.h5 out.orig
expect_error prep_refuses_existing_output_without_force "output file 'out.h5' already exists" 0 \
    prep --out out.h5 --split-on % in.txt
out=$("$TRIDENT" prep --out out.h5 --split-on % in.txt 2>&1)
if grep -q "^HINT: .*--force" <<<"$out" && cmp -s out.h5 out.orig; then pass prep_hint_names_force_and_file_is_kept
else fail prep_hint_names_force_and_file_is_kept "$out"; fi
printf 'another\n%%\nfortune\n' >other.txt
if "$TRIDENT" prep --out out.h5 --force --split-on % in.txt other.txt >/dev/null 2>&1 && ! cmp -s out.h5 out.orig &&
   [ -z "$(ls | grep '\.tmp\.')" ]; then pass prep_force_replaces_output_and_leaves_no_temporary
else fail prep_force_replaces_output_and_leaves_no_temporary "$(ls)"; fi
# killed in the middle of writing: the final name never holds a partial file
head -c $((24 << 20)) /dev/urandom | base64 -w 100 >big.txt
"$TRIDENT" prep --out big.h5 big.txt in.txt >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 2000); do ls big.h5.tmp.* >/dev/null 2>&1 && break; sleep 0.005; done
seen_tmp=0; ls big.h5.tmp.* >/dev/null 2>&1 && seen_tmp=1
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
if [ $seen_tmp = 1 ] && [ ! -e big.h5 ]; then pass prep_killed_while_writing_leaves_no_output
else fail prep_killed_while_writing_leaves_no_output "temporary seen: $seen_tmp; $(ls)"; fi
rm -f big.txt big.h5*
cd "$ROOT" || exit 1

# ---- config files: a key twice, a NUL byte ----
printf 'n_layer = 2\n# comment\nlr = 1e-3\n\nn_embd = 64\n\nlr = 2e-3\n' >"$TEST_TMP/dup.conf"
expect_error config_key_twice_names_both_lines "$TEST_TMP/dup.conf:3 and $TEST_TMP/dup.conf:7 both set 'lr'" 0 \
    train "$TEST_TMP/dup.conf" --data="$DATA" "$R"
printf 'n_layer = 2\nlr = 1e-3\0\nsteps = 5\n' >"$TEST_TMP/nul.conf"
expect_error config_nul_byte_names_file_and_line "$TEST_TMP/nul.conf:2: NUL byte in config file" 0 \
    train "$TEST_TMP/nul.conf" --data="$DATA" "$R"
# a command-line value overrides the file's (tiny.conf says steps = 600), as before
out=$("$TRIDENT" train "${TINY[@]}" --data="$DATA" --run_dir="$TEST_TMP/ov" 2>&1)
if [ $? -eq 0 ] && [ "$(losses "$TEST_TMP/ov" | tail -n 1 | cut -d' ' -f1)" = 2 ]; then
    pass command_line_overrides_file_value
else fail command_line_overrides_file_value "$(echo "$out" | tail -n 2)"; fi
out=$("$TRIDENT" sample --ckpt "$TEST_TMP/ov" --length 3 --length=4 2>&1)
if grep -qF "option '--length' is given twice on the command line: '--length 3' and '--length=4'" <<<"$out"; then
    pass option_twice_on_command_line_names_both
else fail option_twice_on_command_line_names_both "$(echo "$out" | head -n 3)"; fi

# ---- sample: numbers parsed by the config rules ----
expect_error sample_top_k_not_a_number "--top_k: 'top_k' expects an integer, got 'abc'" 0 \
    sample --ckpt "$TEST_TMP/ov" --top_k abc
expect_error sample_length_negative "--length: length = -5 is out of range" 0 \
    sample --ckpt "$TEST_TMP/ov" --length -5
expect_error sample_temperature_nan "--temperature: 'temperature' expects a number, got 'nan'" 0 \
    sample --ckpt "$TEST_TMP/ov" --temperature nan
expect_error sample_length_trailing_garbage "'length' expects an integer, got '10x'" 0 \
    sample --ckpt "$TEST_TMP/ov" --length=10x

# ---- token files: checked at open, on every rank together ----
"$TEST_IO" --child fake "$TEST_TMP/vocab.h5" 300 777
expect_error token_beyond_vocab_refused_at_start_on_2_ranks "holds token 300 at index 777" 2 \
    train "${TINY[@]}" --data="$TEST_TMP/vocab.h5" "$R"
"$TEST_IO" --child flip "$DATA" "$TEST_TMP/flip.h5" 1000
expect_error flipped_byte_refused_at_start_on_2_ranks "fails its checksum" 2 \
    train "${TINY[@]}" --data="$TEST_TMP/flip.h5" "$R"
# above the size limit the scan runs in the background: still exit 2 on every rank, no hang
TRIDENT_VERIFY_SYNC_BYTES=0 expect_error flipped_byte_refused_by_background_check_on_2_ranks \
    "fails its checksum" 2 train "${TINY[@]}" --data="$TEST_TMP/flip.h5" "$R" --tp=2 --dp=1
TRIDENT_VERIFY_SYNC_BYTES=0 expect_error token_beyond_vocab_refused_by_background_check \
    "holds token 300 at index 777" 0 train "${TINY[@]}" --data="$TEST_TMP/vocab.h5" "$R"
# a file from before checksums (hand-made, no checksum attribute) still trains, with a warning
"$TEST_IO" --child fake "$TEST_TMP/old.h5" 97 0
out=$("$TRIDENT" train "${TINY[@]}" --data="$TEST_TMP/old.h5" --run_dir="$TEST_TMP/old" 2>&1)
if [ $? -eq 0 ] && grep -q "carry no checksum" <<<"$out"; then pass file_without_checksum_trains_with_warning
else fail file_without_checksum_trains_with_warning "$(echo "$out" | tail -n 2)"; fi
test_summary
