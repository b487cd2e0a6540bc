#!/bin/bash
# bench-ab.sh BUILD_DIR CASES ROUNDS ENV_A ENV_B
# A/B of two settings on one GPU machine: runs bench-llama8b.sh's CASES
# (e.g. "b32 b128") ROUNDS times each, alternating A and B inside every
# round (A, B, B, A, A, B, ...: neither side always goes first), and prints
# each side's steady ms/step, mean and range, and a verdict.  One machine's
# runs of one build spread by ~3% at batch 128 (BENCHMARKS.md), so a change
# is called faster or slower only when the two ranges do not overlap.
# ENV_A / ENV_B: space-separated VAR=value settings ("" for none), e.g.
#   bench-ab.sh build-t "b32 b128" 3 "ZL_LT_UNSPLIT=0" ""
#   bench-ab.sh build-t b128 3 "ZL_CUDA_PLUGIN_DIR=/path/to/other/build/kernels/cuda/.libs" ""
# BENCH_AB_CMD replaces `bench-llama8b.sh BUILD_DIR CASE` (a command taking
# the same two arguments and printing a "steady decode: ..., X ms/step" line).
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 5 ] || { echo "usage: bench-ab.sh BUILD_DIR CASES ROUNDS ENV_A ENV_B" >&2; exit 2; }
build=$1 cases=$2 rounds=$3 env_a=$4 env_b=$5
case $rounds in '' | *[!0-9]*) echo "bench-ab.sh: ROUNDS must be a number, not '$rounds'" >&2; exit 2;; esac
cmd=${BENCH_AB_CMD:-"bash $here/bench-llama8b.sh"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rc=0
one() { # SIDE CASE: append the step time to $tmp/SIDE.CASE, or report the failure
    local side=$1 c=$2 e=$env_a
    [ "$side" = B ] && e=$env_b
    # shellcheck disable=SC2086 # e and cmd are lists
    env $e $cmd "$build" "$c" >"$tmp/out" 2>&1
    local ms
    ms=$(sed -n 's/^steady decode:.* \([0-9.]*\) ms\/step.*/\1/p' "$tmp/out" | head -n 1)
    if [ -z "$ms" ]; then
        echo "bench-ab.sh: $side $c gave no steady decode line:" >&2
        tail -n 5 "$tmp/out" >&2
        rc=1
        return
    fi
    echo "$ms" >>"$tmp/$side.$c"
    echo "round $r $side $c: $ms ms/step"
}
for r in $(seq "$rounds"); do
    for c in $cases; do
        if [ $((r % 2)) = 1 ]; then one A "$c"; one B "$c"; else one B "$c"; one A "$c"; fi
    done
done
echo "A: ${env_a:-(no settings)}"
echo "B: ${env_b:-(no settings)}"
for c in $cases; do
    if [ ! -s "$tmp/A.$c" ] || [ ! -s "$tmp/B.$c" ]; then
        echo "$c: no complete pair"
        continue
    fi
    awk -v c="$c" 'FNR == 1 { f++ } { v[f, ++n[f]] = $1 }
        END {
            for (s = 1; s <= 2; s++) {
                lo[s] = hi[s] = v[s, 1]; sum[s] = 0; list[s] = ""
                for (i = 1; i <= n[s]; i++) {
                    x = v[s, i]; sum[s] += x; list[s] = list[s] (i > 1 ? " " : "") x
                    if (x < lo[s]) lo[s] = x
                    if (x > hi[s]) hi[s] = x
                }
                mean[s] = sum[s] / n[s]
            }
            verdict = "within the spread"
            if (hi[2] < lo[1]) verdict = "B faster past the spread"
            if (lo[2] > hi[1]) verdict = "B slower past the spread"
            if (n[1] < 2 || n[2] < 2) verdict = "under 2 runs a side, no verdict"
            printf "%s: A %s (mean %.3f, %.3f-%.3f) | B %s (mean %.3f, %.3f-%.3f) | B-A %+.2f%%: %s\n",
                   c, list[1], mean[1], lo[1], hi[1], list[2], mean[2], lo[2], hi[2],
                   100 * (mean[2] - mean[1]) / mean[1], verdict
        }' "$tmp/A.$c" "$tmp/B.$c"
done
exit $rc
