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

# --max-batched-tokens: chunking changes no id, and the steady-state line
# counts only steps where every prompt decodes, between two tokens of the
# prompt that started last.  3 prompts of 12 tokens, 12 new each: in one
# step all start in step 1 and the first finishes in step 12, so 11 steady
# steps (10 when the finish is read before that step's other token); in
# 16-token steps the last starts in step 3: 9 (or 8).
printf '1 2 3 4 5 6 7 8 9 10 11 12\n13 14 15 16 17 18 19 20 21 22 23 24\n25 26 27 28 29 30 31 32 33 34 35 36\n' >"$tmp/p"
p1=$("$gen" --model "$fix" --prompts "$tmp/p" --max-tokens 12 2>"$tmp/err1") || bad "generate --prompts failed"
p2=$("$gen" --model "$fix" --prompts "$tmp/p" --max-tokens 12 --max-batched-tokens 16 2>"$tmp/err2") ||
    bad "--max-batched-tokens 16 failed: $(cat "$tmp/err2")"
[ -n "$p1" ] && [ "$p1" = "$p2" ] && ok || bad "chunked prefill changed the ids: '$p1' vs '$p2'"
steady() { sed -n 's/^steady decode: \([0-9]*\) steps with all 3 sequences, [0-9.]* ms\/step$/\1/p' "$1"; }
s1=$(steady "$tmp/err1") s2=$(steady "$tmp/err2")
case "$s1" in 10 | 11) ok;; *) bad "one-step prefill: $(grep steady "$tmp/err1")";; esac
case "$s2" in 8 | 9) ok;; *) bad "16-token steps: $(grep steady "$tmp/err2")";; esac
# --warmup (the engine's warm-up) changes no id, and the report counts
# only the timed prompts: 3 x 11 decode tokens, 3 x 12 + 1 steps at most.
p3=$("$gen" --model "$fix" --prompts "$tmp/p" --max-tokens 12 --warmup 2>"$tmp/err3") ||
    bad "--warmup failed: $(cat "$tmp/err3")"
[ "$p3" = "$p1" ] && ok || bad "--warmup changed the ids: '$p1' vs '$p3'"
grep -q "^prefill: 36 tokens in .*; decode: 33 tokens in" "$tmp/err3" && ok ||
    bad "--warmup report: $(grep '^prefill' "$tmp/err3")"
grep -q "^prefill: 36 tokens in .*; decode: 33 tokens in" "$tmp/err1" && ok ||
    bad "report: $(grep '^prefill' "$tmp/err1")"
st() { sed -n 's/.* of \([0-9]*\) steps replayed.*/\1/p' "$1"; }
[ -n "$(st "$tmp/err3")" ] && [ "$(st "$tmp/err3")" = "$(st "$tmp/err1")" ] && ok ||
    bad "--warmup's steps were counted: $(st "$tmp/err3") vs $(st "$tmp/err1")"
if "$gen" --model "$fix" --ids "1 2" --max-batched-tokens 8 >/dev/null 2>"$tmp/err"; then
    bad "--max-batched-tokens 8: exit 0"
else
    grep -q "max-batched-tokens" "$tmp/err" && ok || bad "--max-batched-tokens 8: $(cat "$tmp/err")"
fi

echo "engine-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
