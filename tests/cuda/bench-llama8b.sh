#!/bin/bash
# bench-llama8b.sh BUILD_DIR [CASES]
# Llama-3.1-8B's real config (tests/cuda/llama31-8b) with dummy bf16 weights
# on the CUDA backend through zlight-generate: one process per case, each
# warmed up by one untimed request (--warmup), prints zlight-generate's
# prefill/decode line.  Cases (default all):
#   prefill2048  one 2048-token prompt, 4 new tokens: prefill = time to first token
#   b1           one 512-token prompt, 128 new tokens: decode time per token at batch 1
#   b32 / b128   32 / 128 prompts of 1024 tokens, 64 new tokens: decode step time
#   b8           8 prompts of 1024 tokens, 64 new tokens (not in the default list)
# Steps hold up to 8192 tokens (zlightd's default).  The decode figure of
# zlight-generate's "prefill:" line averages every step after the last
# first token, including the drain (early prompts finish first); its
# "steady decode:" line times only the steps where all prompts decode.
# Libraries missing on the GPU machine go in $ZL_DEVLIBS (default .devlibs).
# ZL_CUDA_PLUGIN_DIR runs another build of the CUDA plugin (a folder with its
# cuda.so) against the same model plugin: two builds compared on one machine.
# ZL_GEN_ARGS adds zlight-generate options (e.g. --no-graphs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: bench-llama8b.sh BUILD_DIR [CASES]}" && pwd)
cases=${2:-"prefill2048 b1 b32 b128"}
export LD_LIBRARY_PATH="$build/core/.libs:${ZL_DEVLIBS:-$top/.devlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ZLIGHT_PLUGIN_PATH="${ZL_CUDA_PLUGIN_DIR:-$build/kernels/cuda/.libs}:$build/models/llama/.libs"
gen="$build/core/.libs/zlight-generate"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prompts() {   # N LEN SEED: N lines of LEN random ids
    awk -v n="$1" -v len="$2" -v seed="$3" 'BEGIN { srand(seed); for (j = 0; j < n; j++) {
        for (i = 0; i < len; i++) printf "%d ", 1000 + int(rand() * 100000); print "" } }'
}
rc=0
for c in $cases; do
    case $c in
    prefill2048) prompts 1 2048 1 >"$tmp/p"; new=4;;
    b1) prompts 1 512 2 >"$tmp/p"; new=128;;
    b8) prompts 8 1024 5 >"$tmp/p"; new=64;;
    b32) prompts 32 1024 3 >"$tmp/p"; new=64;;
    b128) prompts 128 1024 4 >"$tmp/p"; new=64;;
    *) echo "unknown case $c" >&2; exit 2;;
    esac
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # ZL_GEN_ARGS is a list of options
    timeout 300 "$gen" --model "$here/llama31-8b" --dummy --dtype bf16 --backend cuda --warmup \
        --max-batched-tokens 8192 --prompts "$tmp/p" --max-tokens $new ${ZL_GEN_ARGS:-} >/dev/null 2>"$tmp/e" ||
        { rc=1; tail -n 5 "$tmp/e"; }
    wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "BENCH $c wall ${wall} s: $(grep -E '^prefill:' "$tmp/e")"
    grep -E '^steady decode:' "$tmp/e"
    grep -E 'profile' "$tmp/e" | tail -n 2   # with ZLIGHT_PROFILE=1
    grep -E 'graph' "$tmp/e" | tail -n 4
    grep -E '^chain trace' "$tmp/e"   # tuning builds with ZL_CHAIN_TRACE=N
    grep -E '^attn trace' "$tmp/e"    # tuning builds with ZL_ATTN_TRACE=N
done
exit $rc
