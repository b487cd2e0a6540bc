#!/bin/bash
# run-gpu-tests.sh [BUILD_DIR]
# Runs the CUDA backend's GPU tests on the GPU machine with one command:
# each test program, then each again under compute-sanitizer memcheck
# (device leaks included), then the micro-benchmark unless NO_BENCH=1, and
# prints a summary.  BUILD_DIR (default: build-cuda beside this checkout's
# tests/) is a build configured --with-cuda and built with
# `make && make -C tests test_cuda_ops test_cuda_linear test_cuda_attn bench_cuda_ops`.
# Libraries missing on the GPU machine go in $ZL_DEVLIBS (default .devlibs
# at the checkout root, made by /work/shared/device/collect-libs).
# Exit status: 0 when every test and every sanitizer run passed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$top/build-cuda}" && pwd) || { echo "no build dir ${1:-}" >&2; exit 2; }
devlibs=${ZL_DEVLIBS:-$top/.devlibs}
export LD_LIBRARY_PATH="$build/core/.libs:$devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ZL_TEST_PLUGIN="$build/kernels/cuda/.libs/cuda.so"
export ZL_TEST_SEED=${ZL_TEST_SEED:-$(date +%s)}
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
tests="test_cuda_ops test_cuda_linear test_cuda_attn"
declare -a summary
fail=0

# the program itself, not libtool's wrapper (its paths are this build's)
prog() { if [ -x "$build/tests/.libs/$1" ]; then echo "$build/tests/.libs/$1"; else echo "$build/tests/$1"; fi; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
echo "seed $ZL_TEST_SEED, plugin $ZL_TEST_PLUGIN"
for t in $tests; do
    echo "=== $t"
    start=$(date +%s%N)
    "$(prog "$t")"; rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    case $rc in 0) r=PASS;; 77) r=SKIP;; *) r="FAIL (exit $rc)"; fail=1;; esac
    summary+=("$(printf '%-18s %-16s %d.%03d s' "$t" "$r" $((ms / 1000)) $((ms % 1000)))")
done
if [ -n "$san" ]; then
    for t in $tests; do
        echo "=== compute-sanitizer memcheck $t"
        log=$(mktemp)
        "$san" --tool memcheck --leak-check full --error-exitcode 99 "$(prog "$t")" >"$log" 2>&1; rc=$?
        grep -E "^(SUMMARY|FAIL|=========)" "$log" | tail -n 25
        errs=$(grep -Eo "ERROR SUMMARY: [0-9]+ error" "$log" | tail -n 1)
        case $rc in 0) r="clean";; 77) r="SKIP";; *) r="FAIL (exit $rc)"; fail=1;; esac
        summary+=("$(printf '%-18s memcheck %-12s %s' "$t" "$r" "${errs:-no sanitizer summary}")")
        rm -f "$log"
    done
else
    summary+=("compute-sanitizer not found: memcheck not run")
    fail=1
fi
if [ "${NO_BENCH:-0}" != 1 ]; then
    echo "=== bench_cuda_ops"
    "$(prog bench_cuda_ops)" | grep -E "BENCH|failed"
fi
echo "=== summary (seed $ZL_TEST_SEED)"
printf '%s\n' "${summary[@]}"
[ $fail = 0 ] && echo "ALL PASSED" || echo "SOME FAILED"
exit $fail
