#!/usr/bin/env bash
# tests/test_layout_rules.sh — code rules checked by grep.
#
# The parameter table is found by kind and name (src/params.h), never by position: only
# src/params.[ch] (and tests/test_params.c, which checks them) may know the table's order.
# Flagged, in code outside comments:
#   a literal index into a table          m->pt.p[0]   m->p[1]
#   an index next to another one          m->pt.p[f + 1]
#   the table's length minus/plus a k     m->pt.n - 2  n_params + 1   (a reverse loop
#                                         "for (int i = n - 1; i >= 0; i--)" is fine)
#   the per-layer stride                  2 + 12 * layer   layer * 12
#   index arithmetic on the kind counts   PK_MODEL_COUNT + l * PK_LAYER_COUNT
#
# Only the comm layer talks MPI: under src/ and io/, no file but src/comm.c calls an MPI
# collective or point-to-point function (MPI_Allreduce, MPI_Bcast, MPI_Barrier,
# MPI_Send, MPI_Recv, MPI_Isend, MPI_Irecv, MPI_Allgather*, MPI_Gather*, MPI_Reduce*,
# MPI_Iallreduce, ...). Allowed besides it: src/grid.c (builds the communicators),
# src/common.c (tr_fail's agreement, on its own communicator, before comm exists),
# src/main.c (MPI_Init/Finalize) and io/ckpt.c (HDF5/MPI-IO internals). MPI_Abort,
# MPI_Comm_rank/size and the like are not transfers and are not flagged (src/watchdog.c
# and io/dataset.c end a job with MPI_Abort).
#
# Only kernels/ touches a tensor's contents: under src/ and io/, no code indexes a
# tensor's data (t.data[i], t->data[i]), casts it to a typed pointer ((float *)t.data),
# or keeps it in a typed pointer (float *p = t.data;) to index later. Passing t.data to
# the comm layer, the backend's copies or HDF5 is not reading it and is not flagged;
# io/ckpt.c reads host memory only through backend_host_view or staging copies.
# Each rule is proved by planting a use in a copy of the tree and seeing it caught.
. "$(dirname "$0")/lib.sh"

RULES=(
    '(->|\.)p\[[0-9]+\]'
    '(->|\.)p\[[^]]*[-+][[:space:]]*[0-9]+[[:space:]]*\]'
    '\b(n_params|pt\.n|pt->n)\b[[:space:]]*[-+][[:space:]]*[0-9]'
    '(^|[^.0-9])\b12[[:space:]]*\*[[:space:]]*[A-Za-z_(]'
    '[A-Za-z_)][[:space:]]*\*[[:space:]]*12\b($|[^.0-9])'
    'PK_(MODEL|LAYER)_COUNT[[:space:]]*[-+*]|[-+*][[:space:]]*PK_(MODEL|LAYER)_COUNT'
)
# allowed: a reverse loop over the whole table
ALLOWED='for \(int [a-z_]+ = [a-z_>.-]+\b(n|n_params) - 1; [a-z_]+ >= 0;'

# scan ROOT: print "file:line: code" for every positional use under ROOT's sources
scan() {
    local root=$1 f rel pat
    (cd "$root" && find src io kernels tests -name '*.[ch]' 2>/dev/null | sort) | while read -r rel; do
        case "$rel" in src/params.[ch]|tests/test_params.c) continue ;; esac
        f="$root/$rel"
        # drop comments: /* ... */ on one line, continuation lines " * ...", and // ...
        sed -E 's#/\*.*\*/##g; s#^[[:space:]]*(/\*|\*).*##; s#//.*##' "$f" |
            grep -nE "$(IFS='|'; echo "${RULES[*]}")" | grep -vE "$ALLOWED" |
            sed "s#^#$rel:#"
    done
}

# MPI transfers: collectives (blocking and non-blocking), point-to-point, one-sided
MPI_RULE='\bMPI_(I?[Aa]llreduce|I?[Rr]educe(_scatter(_block)?)?|Reduce_local|I?[Bb]cast|I?[Bb]arrier|I?[Aa]llgatherv?|I?[Gg]atherv?|I?[Ss]catterv?|I?[Aa]lltoall[vw]?|I?[Ss]can|I?[Ee]xscan|I?[bsr]?send|Send|Bsend|Ssend|Rsend|I?m?recv|Recv|Mrecv|Sendrecv(_replace)?|I?m?probe|Probe|Mprobe|(Send|Bsend|Ssend|Rsend|Recv)_init|I?[Nn]eighbor_[a-z_]+|Win_[a-z_]+|Put|Get|Accumulate)[[:space:]]*\('

# scan_mpi ROOT: print "file:line: code" for every MPI transfer outside the comm layer
scan_mpi() {
    local root=$1 f rel
    (cd "$root" && find src io -name '*.[ch]' 2>/dev/null | sort) | while read -r rel; do
        case "$rel" in src/comm.c|src/grid.c|src/common.c|src/main.c|io/ckpt.c) continue ;; esac
        f="$root/$rel"
        sed -E 's#/\*.*\*/##g; s#^[[:space:]]*(/\*|\*).*##; s#//.*##' "$f" |
            grep -nE "$MPI_RULE" | sed "s#^#$rel:#"
    done
}

# Tensor contents: indexed, cast to a typed pointer, or kept in one
TENSOR_RULE='(\.|->)data[[:space:]]*\[|\([[:space:]]*(const[[:space:]]+)?(float|double|u?int(8|16|32|64)_t|char|short|int|long)[[:space:]]*\*[[:space:]]*\)[[:space:]]*\(?[A-Za-z_][A-Za-z_0-9>.-]*(\.|->)data\b|(float|double|u?int(8|16|32|64)_t|short|int|long)[[:space:]]*\*[[:space:]]*(const[[:space:]]+)?[A-Za-z_][A-Za-z_0-9]*[[:space:]]*=[^;=]*(\.|->)data\b'

# scan_tensor ROOT: print "file:line: code" for every use of a tensor's contents outside
# kernels/
scan_tensor() {
    local root=$1 f rel
    (cd "$root" && find src io -name '*.[ch]' 2>/dev/null | sort) | while read -r rel; do
        f="$root/$rel"
        sed -E 's#/\*.*\*/##g; s#^[[:space:]]*(/\*|\*).*##; s#//.*##' "$f" |
            grep -nE "$TENSOR_RULE" | sed "s#^#$rel:#"
    done
}

hits=$(scan_tensor "$ROOT")
if [ -z "$hits" ]; then pass "no_tensor_contents_touched_outside_kernels"
else fail "no_tensor_contents_touched_outside_kernels" "$(printf '\n%s' "$hits")"; fi

# The tree as it is: no positional use anywhere.
hits=$(scan "$ROOT")
if [ -z "$hits" ]; then pass "no_positional_parameter_indices_outside_params_c"
else fail "no_positional_parameter_indices_outside_params_c" "$(printf '\n%s' "$hits")"; fi

# The tree as it is: every MPI transfer goes through the comm layer.
hits=$(scan_mpi "$ROOT")
if [ -z "$hits" ]; then pass "mpi_transfers_only_in_the_comm_layer"
else fail "mpi_transfers_only_in_the_comm_layer" "$(printf '\n%s' "$hits")"; fi

# A copy of the sources with LINE appended to FILE: the scan (SCANNER, default scan)
# must flag FILE (or not).
plant() {
    local file=$1 line=$2 scanner=${3:-scan} dir="$TEST_TMP/plant"
    rm -rf "$dir" && mkdir -p "$dir"
    cp -r "$ROOT/src" "$ROOT/io" "$dir/"
    printf '%s\n' "$line" >>"$dir/$file"
    "$scanner" "$dir"
}
caught=0
while IFS= read -r planted; do
    [ -n "$planted" ] || continue
    out=$(plant src/model.c "$planted")
    if printf '%s' "$out" | grep -q '^src/model.c:'; then caught=$((caught + 1))
    else fail "planted_positional_use_is_caught" "not flagged: $planted"; fi
done <<'EOF'
static const float *wte_of(const struct model *m) { return m->params + m->pt.p[0].offset; }
static int lnf_index(const struct model *m) { return m->pt.n - 2; }
static int first_of(int layer) { return 2 + 12 * layer; }
static int first_of2(int layer) { return layer * 12 + 2; }
static float *lnf_b(struct model *m, int f) { return m->params + m->pt.p[f + 1].offset; }
static int slot(int l) { return PK_MODEL_COUNT + l * PK_LAYER_COUNT; }
static int old_style(const struct model *m) { return m->n_params - 2; }
EOF
[ "$caught" -eq 7 ] && pass "planted_positional_use_is_caught"

# Not noise: a reverse loop, a float constant, a comment, and params.c itself.
quiet=1
while IFS= read -r ok_line; do
    [ -n "$ok_line" ] || continue
    out=$(plant src/model.c "$ok_line")
    if [ -n "$out" ]; then fail "legitimate_code_is_not_flagged" "flagged: $out"; quiet=0; fi
done <<'EOF'
static void rev(const struct model *m) { for (int i = m->pt.n - 1; i >= 0; i--) (void)i; }
static double head(double V, double C) { return V / (12.0 * C); }
/* the old table put layer l at 2 + 12 * l */
static int v4(int x) { return x * 12.5 > 1; }
EOF
out=$(plant src/params.c 'static int first_of(int layer) { return 2 + 12 * layer; }')
if [ -n "$out" ]; then fail "legitimate_code_is_not_flagged" "params.c flagged: $out"; quiet=0; fi
[ "$quiet" -eq 1 ] && pass "legitimate_code_is_not_flagged"

# Planted MPI transfers outside the comm layer: each is caught, in the file it is in.
caught=0
while IFS='|' read -r file planted; do
    [ -n "$planted" ] || continue
    out=$(plant "$file" "$planted" scan_mpi)
    if printf '%s' "$out" | grep -q "^$file:"; then caught=$((caught + 1))
    else fail "planted_mpi_transfer_is_caught" "not flagged in $file: $planted"; fi
done <<'EOF'
src/cmd_train.c|static void f(double *x) { MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD)); }
src/memplan.c|static void f(long *x) { MPI_Bcast(x, 1, MPI_LONG, 0, MPI_COMM_WORLD); }
io/dataset.c|static void f(void) { MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }
src/watchdog.c|static void f(char *h, char *a) { MPI_Allgather(h, 64, MPI_CHAR, a, 64, MPI_CHAR, MPI_COMM_WORLD); }
src/dp.c|static void f(float *g, MPI_Request *r) { MPI_Iallreduce(MPI_IN_PLACE, g, 4, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r); }
src/p2p.c|static void f(float *a) { MPI_Send(a, 4, MPI_FLOAT, 1, 0, MPI_COMM_WORLD); }
src/p2p.c|static void f(float *a, MPI_Request *r) { MPI_Irecv(a, 4, MPI_FLOAT, 0, 0, MPI_COMM_WORLD, r); }
src/tp.c|static void f(float *a, float *b, int *c) { MPI_Reduce_scatter(a, b, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }
src/trace.c|static void f(double *a, double *b) { MPI_Gather (a, 1, MPI_DOUBLE, b, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD); }
src/optim.h|static inline void f(int *x, MPI_Request *r) { MPI_Ibcast(x, 1, MPI_INT, 0, MPI_COMM_WORLD, r); }
io/runlock.c|static void f(int *x) { MPI_Isend(x, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, 0); }
EOF
[ "$caught" -eq 11 ] && pass "planted_mpi_transfer_is_caught"

# Not noise: a comment naming a collective, MPI_Comm_rank, MPI_Abort in the watchdog, a
# comm_ call, and the exempt files themselves.
quiet=1
while IFS='|' read -r file ok_line; do
    [ -n "$ok_line" ] || continue
    out=$(plant "$file" "$ok_line" scan_mpi)
    if [ -n "$out" ]; then fail "comm_layer_and_exempt_files_not_flagged" "flagged: $out"; quiet=0; fi
done <<'EOF'
src/memplan.c|/* the node's sums: one MPI_Allreduce(SUM) through comm_allreduce */
src/memplan.c|static int f(void) { int r; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; } // MPI_Bcast( later
src/watchdog.c|static void f(void) { MPI_Abort(MPI_COMM_WORLD, 1); }
src/cmd_train.c|static void f(const struct comm *c, double *x) { comm_allreduce(c, COMM_WORLD, x, 1, COMM_F64, COMM_SUM); }
src/comm.c|static void f(int *x) { MPI_Allreduce(MPI_IN_PLACE, x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD); }
src/grid.c|static void f(int *x) { MPI_Allreduce(MPI_IN_PLACE, x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD); }
src/common.c|static void f(MPI_Comm c, MPI_Request *r) { MPI_Ibarrier(c, r); }
io/ckpt.c|static void f(int *n) { MPI_Bcast(n, 1, MPI_INT, 0, MPI_COMM_WORLD); }
EOF
[ "$quiet" -eq 1 ] && pass "comm_layer_and_exempt_files_not_flagged"

# Planted reads and writes of tensor contents: each is caught, in the file it is in.
caught=0
while IFS='|' read -r file planted; do
    [ -n "$planted" ] || continue
    out=$(plant "$file" "$planted" scan_tensor)
    if printf '%s' "$out" | grep -q "^$file:"; then caught=$((caught + 1))
    else fail "planted_tensor_access_is_caught" "not flagged in $file: $planted"; fi
done <<'EOF'
src/train.c|static float f(const struct model *m) { return ((float *)m->params.data)[0]; }
src/optim.c|static void f(struct optim *o) { float *m = o->m.data; m[0] = 0; }
src/model.c|static void f(struct acts *a) { ((int32_t *)a->tokens.data)[3] = 7; }
io/ckpt.c|static double f(struct tensor t) { const float *x = (const float *)t.data; return x[0]; }
src/sample.c|static float f(struct tensor t) { float *p = tensor_view(t, 0, 1, 1).data; return *p; }
src/dp.c|static void f(struct tensor g) { g.data[0] = 0; }
EOF
[ "$caught" -eq 6 ] && pass "planted_tensor_access_is_caught"

# Not noise: handing data to the comm layer, the backend's copies and views.
quiet=1
while IFS='|' read -r file ok_line; do
    [ -n "$ok_line" ] || continue
    out=$(plant "$file" "$ok_line" scan_tensor)
    if [ -n "$out" ]; then fail "passing_tensor_data_not_flagged" "flagged: $out"; quiet=0; fi
done <<'EOF'
src/dp.c|static void f(const struct comm *c, struct tensor g) { comm_allreduce(c, COMM_DP, g.data, 4, COMM_F32, COMM_SUM); }
src/train.c|static void f(struct backend *b, struct tensor t, const int *w) { backend_copy_h2d(b, t.data, w, 16); }
src/model.c|static void *f(struct tensor t) { return tensor_view(t, 4, 1, 2).data; }
io/ckpt.c|/* (float *)t.data would be wrong here */
EOF
[ "$quiet" -eq 1 ] && pass "passing_tensor_data_not_flagged"

test_summary
