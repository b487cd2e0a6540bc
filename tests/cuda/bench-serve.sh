#!/bin/bash
# bench-serve.sh BUILD_DIR TOKENIZER_DIR [N_PROMPTS] [RATE_PROMPTS]
# Serving benchmark on the GPU machine: zlightd with Llama-3.1-8B's config
# (tests/cuda/llama31-8b), dummy bf16 weights and the Llama 3 tokenizer
# (TOKENIZER_DIR: tokenizer.json or tokenizer.json.xz), then zlight-bench:
# N_PROMPTS (default 1000; 0 skips it) random 1024-token prompts, 256 tokens out,
# ignore_eos, at most 256 in flight; then RATE_PROMPTS (default 32) requests
# at 1, 4 and 16 requests/s for TTFT/TPOT (0 skips them).  Prints
# zlight-bench's reports; ZL_SERVE_LOG=FILE keeps zlightd's log (with
# ZLIGHT_PROFILE=ops it holds the device time of each op kind).
# ZL_MAX_BATCHED sets engine.max_num_batched_tokens (default 8192, zlightd's);
# ZL_WARMUP_TOKENS engine.warmup_tokens (default -1: zlightd's 1024 on a GPU).
# ZL_CUDA_PLUGIN_DIR runs another build of the CUDA plugin (as in
# bench-llama8b.sh); ZL_CUDA_GRAPHS=false serves without CUDA graphs;
# ZL_ASYNC_SCHEDULING=false waits for each step's tokens before the next;
# ZL_LATE_SCHEDULING=false queues each step as the one before starts
# (engine.late_scheduling, on by default, paces steady decode steps).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: bench-serve.sh BUILD_DIR TOKENIZER_DIR [N] [RATE_N]}" && pwd)
tokdir=$(cd "${2:?usage: bench-serve.sh BUILD_DIR TOKENIZER_DIR [N] [RATE_N]}" && pwd)
n=${3:-1000}
rn=${4:-32}
export LD_LIBRARY_PATH="$build/core/.libs:${ZL_DEVLIBS:-$top/.devlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ZLIGHT_PLUGIN_PATH="${ZL_CUDA_PLUGIN_DIR:-$build/kernels/cuda/.libs}:$build/models/llama/.libs:$build/plugins/openai/.libs"
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/tok"
if [ -f "$tokdir/tokenizer.json" ]; then cp "$tokdir/tokenizer.json" "$tmp/tok/"; else xz -dc "$tokdir/tokenizer.json.xz" >"$tmp/tok/tokenizer.json"; fi
[ -f "$tokdir/tokenizer_config.json" ] && cp "$tokdir/tokenizer_config.json" "$tmp/tok/"
port=$((20000 + RANDOM % 20000))
cat >"$tmp/z.yaml" <<YAML
model:
  path: $here/llama31-8b
  weights: dummy
  dtype: bfloat16
  tokenizer: $tmp/tok
  served_name: llama31-8b
  max_model_len: 4096
backend:
  name: cuda
  gpu_memory_utilization: 0.9
  cuda_graphs: ${ZL_CUDA_GRAPHS:-true}
engine:
  max_num_seqs: 256
  max_num_batched_tokens: ${ZL_MAX_BATCHED:-8192}
  warmup_tokens: ${ZL_WARMUP_TOKENS:--1}
  async_scheduling: ${ZL_ASYNC_SCHEDULING:-true}
  late_scheduling: ${ZL_LATE_SCHEDULING:-true}
server:
  port: $port
log_level: info
YAML
"$build/core/.libs/zlightd" --config "$tmp/z.yaml" >"$tmp/log" 2>&1 &
pid=$!
for i in $(seq 600); do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/v1/models', timeout=2)" \
        2>/dev/null && break
    kill -0 $pid 2>/dev/null || { tail -n 20 "$tmp/log"; exit 1; }
    sleep 0.5
done
grep -E "memory plan|backend" "$tmp/log" | head -n 3
b="$build/core/.libs/zlight-bench --base-url http://127.0.0.1:$port --random-input-len 1024 --random-output-len 256 --ignore-eos"
# prompt tokens the prefix cache was asked for and found, since the start
hits() {
    python3 -c "import urllib.request as u
m = {l.split()[0].split('{')[0]: float(l.split()[-1]) for l in u.urlopen('http://127.0.0.1:$port/metrics').read().decode().splitlines() if l and l[0] != '#'}
print('prefix cache since the start: %d of %d prompt tokens found' % (m.get('zlight:prefix_cache_hits_total', -1), m.get('zlight:prefix_cache_queries_total', -1)))"
}
# Each run has its own seed, so its own prompts: with one seed the rate
# runs would send the prompts of the run before and time prefix-cache hits.
if [ "$n" -gt 0 ]; then
    echo "=== $n requests, 1024 in / 256 out, max concurrency 256"
    $b --num-prompts "$n" --max-concurrency 256 --seed 100
    hits
fi
for r in 1 4 16; do
    [ "$rn" -gt 0 ] || break
    echo "=== $rn requests at $r req/s"
    $b --num-prompts "$rn" --request-rate $r --seed $r
    hits
done
kill -INT $pid; wait $pid 2>/dev/null
grep -E "graphs|profile: since the start" "$tmp/log" | tail -n 3
[ -z "${ZL_SERVE_LOG:-}" ] || cp "$tmp/log" "$ZL_SERVE_LOG"
