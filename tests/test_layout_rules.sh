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

# The tree as it is: no positional use anywhere.
hits=$(scan "$ROOT")
if [ -z "$hits" ]; then pass "no_positional_parameter_indices_outside_params_c"
else fail "no_positional_parameter_indices_outside_params_c" "$(printf '\n%s' "$hits")"; fi

# A copy of the sources with LINE appended to FILE: the scan must flag FILE (or not).
plant() {
    local file=$1 line=$2 dir="$TEST_TMP/plant"
    rm -rf "$dir" && mkdir -p "$dir"
    cp -r "$ROOT/src" "$ROOT/io" "$dir/"
    printf '%s\n' "$line" >>"$dir/$file"
    scan "$dir"
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

test_summary
