#!/bin/bash
# run-gpu-model.sh BUILD_DIR TOKENIZER_DIR
# Whole-model checks of the CUDA backend on the GPU machine, one command:
#   1. the engine's batch-invariance tests (test_engine_llama: greedy and
#      seeded sampling alone / together / chunked / prefix hits /
#      preemption, the HF reference ids, graphs changing no token) on CUDA
#      in f32, bf16 and f16, and the graphs test again under memcheck;
#      the GGUF fixtures (F16 llama31 with rope_freqs, F16 qwen2) through
#      zlight-generate on CUDA in f32: transformers' greedy ids;
#   2. zlightd with `backend: auto` serving a small random Llama-3-shaped
#      model end to end (tests/cuda/e2e_cuda.py; TOKENIZER_DIR holds the
#      Llama 3 tokenizer.json.xz and tokenizer_config.json).
# BUILD_DIR is a --with-cuda build with `make && make -C tests test_engine_llama`.
# Prints a summary; exit 0 when everything passed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: run-gpu-model.sh BUILD_DIR TOKENIZER_DIR}" && pwd)
tokdir=${2:?usage: run-gpu-model.sh BUILD_DIR TOKENIZER_DIR}
export LD_LIBRARY_PATH="$build/core/.libs:${ZL_DEVLIBS:-$top/.devlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
prog() { if [ -x "$build/tests/.libs/$1" ]; then echo "$build/tests/.libs/$1"; else echo "$build/tests/$1"; fi; }
declare -a summary
fail=0
for dt in f32 bf16 f16; do
    echo "=== test_engine_llama on cuda, $dt"
    ZL_ENGINE_TEST_BACKEND=cuda ZL_ENGINE_TEST_DTYPE=$dt "$(prog test_engine_llama)" 2>&1 | tail -n 25
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] && r=PASS || { r="FAIL (exit $rc)"; fail=1; }
    summary+=("$(printf 'test_engine_llama cuda %-5s %s' "$dt" "$r")")
done
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$san" ]; then
    echo "=== memcheck: graph capture and replay (bf16)"
    ZL_ENGINE_TEST_BACKEND=cuda ZL_ENGINE_TEST_DTYPE=bf16 "$san" --tool memcheck --leak-check full \
        --error-exitcode 9 "$(prog test_engine_llama)" --filter 'engine_llama/graphs_change_no_token' \
        2>&1 | grep -E "Synthesis|SUMMARY"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] && r=PASS || { r="FAIL (exit $rc)"; fail=1; }
else
    r="SKIP (no compute-sanitizer)"
fi
summary+=("$(printf 'memcheck graphs bf16       %s' "$r")")
gen="$build/core/.libs/zlight-generate"
for g in llama31.f16.gguf:llama31 qwen2.f16.gguf:qwen2; do
    f="$top/tests/fixtures/llama/${g%%:*}"; ref="$top/tests/fixtures/llama/${g##*:}/reference.json"
    p=$(python3 -c "import json,sys; print('\n'.join(' '.join(map(str,x)) for x in json.load(open(sys.argv[1]))['prompts']))" "$ref")
    want=$(python3 -c "import json,sys; print('\n'.join(' '.join(map(str,x)) for x in json.load(open(sys.argv[1]))['greedy']))" "$ref")
    n=$(echo "$want" | head -n 1 | wc -w)
    got=$(echo "$p" | ZLIGHT_PLUGIN_PATH="$build/kernels/cuda/.libs:$build/models/llama/.libs" \
          "$gen" --model "$f" --backend cuda --dtype f32 --prompts /dev/stdin --max-tokens "$n" --quiet 2>&1)
    if [ "$(echo "$got" | sed 's/ *$//')" = "$want" ]; then r=PASS; else r=FAIL; fail=1; echo "$got" | head -n 3; fi
    summary+=("$(printf 'GGUF %-22s cuda f32 greedy == transformers: %s' "${g%%:*}" "$r")")
done
echo "=== e2e_cuda.py"
python3 "$here/e2e_cuda.py" "$build" "$tokdir"; rc=$?
[ "$rc" = 0 ] && r=PASS || { r="FAIL (exit $rc)"; fail=1; }
summary+=("$(printf 'zlightd e2e on cuda         %s' "$r")")
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $fail
