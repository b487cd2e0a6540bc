#!/bin/sh
# zlight-bench --offline and zlight-generate's sampling flags on the tiny
# llama fixture (CPU backend): they run, report, and seeds reproduce.
set -u
top_builddir=${top_builddir:-..}
srcdir=${srcdir:-.}
bench="$top_builddir/core/zlight-bench"
gen="$top_builddir/core/zlight-generate"
fix="$srcdir/fixtures/llama/llama2"
ZLIGHT_PLUGIN_PATH="$top_builddir/kernels/cpu/.libs:$top_builddir/models/llama/.libs"
export ZLIGHT_PLUGIN_PATH
if [ ! -f "$fix/model.safetensors" ]; then
    echo "SKIP: $fix/model.safetensors is missing" >&2
    exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

if "$bench" --offline --model "$fix" --num-prompts 12 --input-len 24 --output-len 6 \
        --max-num-batched-tokens 64 --threads 1 --quiet >"$tmp/out" 2>"$tmp/err"; then
    grep -q "^requests 12, input 288 tokens, output 72 tokens" "$tmp/out" && ok || bad "bench: $(cat "$tmp/out")"
    for m in "throughput: .* req/s" "^TTFT" "^TPOT" "^ITL" "^E2E"; do
        grep -q "$m" "$tmp/out" && ok || bad "bench output lacks '$m'"
    done
else
    bad "bench failed: $(cat "$tmp/err")"
fi
# Without --offline it is the HTTP load generator: no server there is a
# clear error, not a hang.
if "$bench" --base-url http://127.0.0.1:9 --num-prompts 2 >"$tmp/out" 2>"$tmp/err"; then bad "bench with no server: exit 0";
elif grep -q "is the server up" "$tmp/err"; then ok; else bad "bench with no server: $(cat "$tmp/err")"; fi

run() { "$gen" --model "$fix" --ids "5 6 7 8 9" --max-tokens 16 --quiet "$@"; }
a=$(run --temperature 1.2 --top-p 0.9 --top-k 50 --seed 3) || bad "generate with sampling flags failed"
b=$(run --temperature 1.2 --top-p 0.9 --top-k 50 --seed 3)
c=$(run --temperature 1.2 --top-p 0.9 --top-k 50 --seed 4)
g=$(run)
[ "$(echo "$a" | wc -w)" -eq 16 ] && ok || bad "sampled run: '$a'"
[ "$a" = "$b" ] && ok || bad "the same seed gave '$a' then '$b'"
[ "$a" != "$c" ] && ok || bad "seeds 3 and 4 gave the same ids"
[ "$(run --temperature 0 --seed 9)" = "$g" ] && ok || bad "temperature 0 is not greedy"
if run --top-k -1 >/dev/null 2>"$tmp/err"; then bad "--top-k -1: exit 0"; else ok; fi

echo "engine-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
