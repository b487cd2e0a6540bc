#!/bin/sh
# Builds the libFuzzer target of the OpenAI request parser with clang
# (-fsanitize=fuzzer,address,undefined) and runs it for SECONDS (default 30)
# from its committed seed corpus.
#
#   tests/fuzz/run-openai.sh [SECONDS]
#
# New inputs go to $ZL_FUZZ_BUILD/work-openai (default build-fuzz-openai/ in
# the source tree), not into the committed corpus; a crash is saved as
# $ZL_FUZZ_BUILD/crash-openai-*.
set -eu
secs=${1:-30}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${ZL_FUZZ_BUILD:-$top/build-fuzz-openai}
CC=${CC:-clang}
mkdir -p "$out/work-openai"
cat > "$out/openai.dict" <<'DICT'
"model"
"prompt"
"messages"
"role"
"content"
"max_tokens"
"max_completion_tokens"
"temperature"
"top_p"
"top_k"
"min_p"
"logit_bias"
"logprobs"
"top_logprobs"
"stop"
"stop_token_ids"
"stream"
"stream_options"
"include_usage"
"echo"
"suffix"
"seed"
"tools"
"tokens"
"null"
"true"
"1e999"
DICT
(cd "$top" && $CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Icore/include tests/fuzz/fuzz_openai_request.c tests/openai-mock.c \
    plugins/openai/oa-request.c plugins/openai/oa-response.c \
    $(pkg-config --cflags --libs jansson) -lm -pthread -o "$out/fuzz_openai")
echo "== fuzz_openai for ${secs}s"
status=0
if ! "$out/fuzz_openai" -max_total_time="$secs" ${ZL_FUZZ_SEED:+-seed=$ZL_FUZZ_SEED} -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -dict="$out/openai.dict" -print_final_stats=1 -artifact_prefix="$out/crash-openai-" \
    "$out/work-openai" "$top/tests/fuzz/corpus-openai" 2> "$out/fuzz_openai.log"; then
    echo "fuzz_openai FAILED: see $out/fuzz_openai.log and $out/crash-openai-*" >&2
    status=1
fi
grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_openai.log" || true
exit $status
