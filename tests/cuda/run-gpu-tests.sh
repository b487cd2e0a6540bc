#!/bin/bash
# run-gpu-tests.sh [BUILD_DIR [TOKENIZER_DIR]]
# Runs the CUDA backend's GPU tests on the GPU machine with one command:
# each test program, then each again under compute-sanitizer memcheck
# (device leaks included), then the micro-benchmark unless NO_BENCH=1; with
# TOKENIZER_DIR (the Llama 3 tokenizer.json[.xz] + tokenizer_config.json)
# also the whole-model checks of run-gpu-model.sh; and prints a summary.
# BUILD_DIR (default: build-cuda beside this checkout's tests/) is a build
# configured --with-cuda and built with `make && make -C tests
# test_cuda_ops test_cuda_linear test_cuda_attn test_cuda_decode
# test_cuda_sample test_cuda_gemv test_cuda_fused test_cuda_qkv_rope
# test_cuda_rope_attn test_cuda_decode_chain test_wgmma_blocks bench_cuda_ops
# test_engine_llama`.
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
tests="test_wgmma_blocks test_cuda_ops test_cuda_linear test_cuda_attn test_cuda_decode test_cuda_sample test_cuda_gemv test_cuda_fused test_cuda_qkv_rope test_cuda_rope_attn test_cuda_decode_chain"
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
# On an H100/H200 the prefill cases run the wgmma kernel or the mma.sync
# one (what other GPUs run) by ZL_PREFILL_WG: both, whatever the default.
for t in test_cuda_attn test_cuda_rope_attn; do
    for v in 0 1 2 3; do
        echo "=== $t with ZL_PREFILL_WG=$v"
        ZL_PREFILL_WG=$v "$(prog "$t")"; rc=$?
        case $rc in 0) r=PASS;; 77) r=SKIP;; *) r="FAIL (exit $rc)"; fail=1;; esac
        summary+=("$(printf '%-18s %-16s ZL_PREFILL_WG=%s' "$t" "$r" "$v")")
    done
done
if [ -n "$san" ]; then
    for t in $tests; do
        echo "=== compute-sanitizer memcheck $t"
        log=$(mktemp)
        # ZL_GEMV_QUICK: test_cuda_gemv without its timing section and with
        # fewer token counts on the big shapes, test_cuda_decode_chain
        # without its Llama-3.1-8B layer (minutes under memcheck else)
        ZL_GEMV_QUICK=1 "$san" --tool memcheck --leak-check full --error-exitcode 99 "$(prog "$t")" \
            >"$log" 2>&1; rc=$?
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
# Whole models through the engine (informational: the model and engine are
# not this suite's): greedy ids of the HF fixtures on CUDA vs transformers.
gen="$build/core/.libs/zlight-generate"
export ZLIGHT_PLUGIN_PATH="$build/kernels/cuda/.libs:$build/models/llama/.libs"
tmp=$(mktemp -d)
if [ -x "$gen" ] && [ -f "$build/models/llama/.libs/llama.so" ]; then
    for ref in "$top"/tests/fixtures/llama/*/reference.json; do
        d=$(dirname "$ref"); name=$(basename "$d")
        sed -e 's/.*"prompts":\[\[//' -e 's/\]\],.*//' -e 's/\],\[/\n/g' -e 's/,/ /g' "$ref" >"$tmp/p"
        sed -e 's/.*"greedy":\[\[//' -e 's/\]\],.*//' -e 's/\],\[/\n/g' -e 's/,/ /g' "$ref" >"$tmp/g"
        n=$(head -n 1 "$tmp/g" | wc -w)
        if timeout 120 "$gen" --model "$d" --backend cuda --dtype f32 --prompts "$tmp/p" --max-tokens "$n" >"$tmp/o" 2>"$tmp/e"; then
            if cmp -s "$tmp/o" "$tmp/g"; then r="greedy ids equal transformers"; else r="greedy ids DIFFER"; diff "$tmp/o" "$tmp/g" | head -n 6; fi
        else
            r="failed: $(tail -n 2 "$tmp/e" | tr '\n' ' ')"
        fi
        summary+=("$(printf 'model %-14s (info) %s' "$name" "$r")")
    done
fi
if [ "${NO_BENCH:-0}" != 1 ]; then
    echo "=== bench_cuda_ops"
    "$(prog bench_cuda_ops)" | grep -E "BENCH|failed"
    # Llama-3.1-8B, dummy bf16 weights: prefill 2048 + decode at batch 1, decode at batch 32
    if [ -x "$gen" ]; then
        cfg="$here/llama31-8b"
        awk 'BEGIN { srand(1); for (i = 0; i < 2048; i++) printf "%d ", 1000 + int(rand() * 100000); print "" }' >"$tmp/p1"
        awk 'BEGIN { srand(2); for (j = 0; j < 32; j++) { for (i = 0; i < 64; i++) printf "%d ", 1000 + int(rand() * 100000); print "" } }' >"$tmp/p32"
        for p in p1 p32; do
            echo "=== zlight-generate Llama-3.1-8B dummy bf16, prompts $p"
            timeout 240 "$gen" --model "$cfg" --dummy --dtype bf16 --backend cuda --prompts "$tmp/$p" \
                --max-tokens 32 >/dev/null 2>"$tmp/e"; echo "exit $?"
            grep -E "prefill:|engine|reserv|error|fail" "$tmp/e" | tail -n 5
        done
    fi
fi
rm -rf "$tmp"
if [ -n "${2:-}" ]; then
    echo "=== run-gpu-model.sh"
    # through a file: a tee to /dev/stderr would reopen (and truncate) a
    # log that stdout and stderr share
    bash "$here/run-gpu-model.sh" "$build" "$2" >"$build/.model-log" 2>&1
    rc=$?
    cat "$build/.model-log"
    while IFS= read -r l; do summary+=("$l"); done < <(sed -n '/=== summary/,$p' "$build/.model-log" | tail -n +2)
    rm -f "$build/.model-log"
    [ "$rc" = 0 ] || fail=1
fi
echo "=== summary (seed $ZL_TEST_SEED)"
printf '%s\n' "${summary[@]}"
[ $fail = 0 ] && echo "ALL PASSED" || echo "SOME FAILED"
exit $fail
