#!/bin/sh
# zlight-generate's command-line contract: output format, batching, and
# clear errors with a non-zero exit on bad input.
set -u
top_builddir=${top_builddir:-..}
srcdir=${srcdir:-.}
gen="$top_builddir/core/zlight-generate"
fix="$srcdir/fixtures/llama"
ZLIGHT_PLUGIN_PATH="$top_builddir/kernels/cpu/.libs:$top_builddir/models/llama/.libs"
export ZLIGHT_PLUGIN_PATH
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect_fail NAME WORDS ARGS...: non-zero exit, WORDS in stderr, nothing on stdout
expect_fail() {
    name=$1 words=$2; shift 2
    if "$gen" "$@" >"$tmp/out" 2>"$tmp/err"; then bad "$name: exit 0"; return; fi
    if ! grep -q -- "$words" "$tmp/err"; then bad "$name: stderr lacks '$words':"; cat "$tmp/err" >&2; return; fi
    if [ -s "$tmp/out" ]; then bad "$name: wrote to stdout"; return; fi
    ok
}

# the reference prompts and greedy ids of the qwen2 fixture, as text lines
python_free_refs() {
    # reference.json is one line of compact JSON: pull the arrays with sed.
    sed -e 's/.*"prompts":\[\[//' -e 's/\]\],.*//' -e 's/\],\[/\n/g' -e 's/,/ /g' "$1/reference.json" >"$tmp/prompts"
    sed -e 's/.*"greedy":\[\[//' -e 's/\]\],.*//' -e 's/\],\[/\n/g' -e 's/,/ /g' "$1/reference.json" >"$tmp/greedy"
}

python_free_refs "$fix/qwen2"
if "$gen" --model "$fix/qwen2" --prompts "$tmp/prompts" >"$tmp/out" 2>"$tmp/err"; then
    if cmp -s "$tmp/out" "$tmp/greedy"; then ok; else bad "batched prompts: ids differ from transformers"; diff "$tmp/out" "$tmp/greedy" >&2; fi
    if grep -q "decode:.*tok/s" "$tmp/err"; then ok; else bad "no decode timing on stderr"; fi
else
    bad "batched run failed: $(cat "$tmp/err")"
fi

first=$(head -n 1 "$tmp/prompts")
if "$gen" --model "$fix/qwen2" --ids "$first" --max-tokens 5 --quiet >"$tmp/out" 2>"$tmp/err"; then
    want=$(head -n 1 "$tmp/greedy" | cut -d' ' -f1-5)
    if [ "$(cat "$tmp/out")" = "$want" ]; then ok; else bad "--ids: got '$(cat "$tmp/out")', want '$want'"; fi
    if [ -s "$tmp/err" ]; then bad "--quiet still logs: $(cat "$tmp/err")"; else ok; fi
else
    bad "--ids run failed: $(cat "$tmp/err")"
fi

if "$gen" --model "$fix/llama31.f16.gguf" --ids "$first" --max-tokens 3 --backend cpu >"$tmp/out" 2>"$tmp/err" &&
   [ "$(wc -w <"$tmp/out")" -eq 3 ]; then ok; else bad "gguf run: $(cat "$tmp/err")"; fi

expect_fail "missing model" "no-such" --model "$fix/no-such" --ids "1 2"
expect_fail "no prompt" "--ids" --model "$fix/qwen2"
expect_fail "both prompts" "exactly one" --model "$fix/qwen2" --ids "1" --prompts "$tmp/prompts"
expect_fail "non-numeric id" "'x3' is not a token id" --model "$fix/qwen2" --ids "1 x3 4"
expect_fail "negative id" "'-4' is not a token id" --model "$fix/qwen2" --ids "1 -4"
expect_fail "id >= vocab" "token id 256 is outside the vocabulary" --model "$fix/qwen2" --ids "1 256"
expect_fail "bad max-tokens" "--max-tokens" --model "$fix/qwen2" --ids "1" --max-tokens abc
expect_fail "missing prompts file" "no-such.txt" --model "$fix/qwen2" --prompts "$tmp/no-such.txt"
printf '1 2\n3 four\n' >"$tmp/badp"
expect_fail "bad prompts line" "badp:2" --model "$fix/qwen2" --prompts "$tmp/badp"
awk 'BEGIN { for (i = 0; i < 4097; i++) printf "%d ", 5; print "" }' >"$tmp/long"
expect_fail "prompt too long" "max_position_embeddings" --model "$fix/llama2" --prompts "$tmp/long"
printf 'GGUF\003\000\000\000garbage' >"$tmp/broken.gguf"
expect_fail "broken gguf" "broken.gguf" --model "$tmp/broken.gguf" --ids "1"
expect_fail "unknown backend" "nope" --model "$fix/qwen2" --ids "1" --backend nope

echo "llama-cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
