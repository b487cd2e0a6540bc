#!/bin/sh
# Builds the libFuzzer targets of the OpenAI request parser and of the
# tool-call readers with clang (-fsanitize=fuzzer,address,undefined) and runs
# each for SECONDS (default 30) from its committed seed corpus.
#
#   tests/fuzz/run-openai.sh [SECONDS]
#
# New inputs go to $ZL_FUZZ_BUILD/work-openai[-tools] (default build-fuzz-openai/
# in the source tree), not into the committed corpus; a crash is saved as
# $ZL_FUZZ_BUILD/crash-openai-* or crash-openai_tools-*.
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
"tool_choice"
"required"
"function"
"name"
"parameters"
"response_format"
"tokens"
"null"
"true"
"1e999"
DICT
(cd "$top" && $CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Icore/include tests/fuzz/fuzz_openai_request.c tests/openai-mock.c \
    plugins/openai/oa-request.c plugins/openai/oa-response.c plugins/openai/oa-tools.c \
    $(pkg-config --cflags --libs jansson) -lm -pthread -o "$out/fuzz_openai")
(cd "$top" && $CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Icore/include tests/fuzz/fuzz_openai_tools.c plugins/openai/oa-tools.c plugins/openai/oa-reason.c \
    $(pkg-config --cflags --libs jansson) -o "$out/fuzz_openai_tools")
mkdir -p "$out/work-openai-tools"
cat > "$out/tools.dict" <<'DICT'
"<tool_call>"
"</tool_call>"
"<|python_tag|>"
"<think>"
"<\xEF\xBD\x9Ctool\xE2\x96\x81calls\xE2\x96\x81begin\xEF\xBD\x9C>"
"</think>"
"[TOOL_CALLS]"
"{\"name\": \"f\", \"arguments\": {}}"
"{\"name\": \"f\", \"parameters\": {}}"
"<\xEF\xBD\x9Ctool\xE2\x96\x81call\xE2\x96\x81begin\xEF\xBD\x9C>function<\xEF\xBD\x9Ctool\xE2\x96\x81sep\xEF\xBD\x9C>"
"\x0A```json\x0A"
"\"arguments\""
"\"name\""
"\\u00e9"
";"
DICT
status=0
for t in openai openai_tools; do
    echo "== fuzz_$t for ${secs}s"
    work=$out/work-openai; corpus=$top/tests/fuzz/corpus-openai; dict=$out/openai.dict
    [ $t = openai_tools ] && work=$out/work-openai-tools corpus=$top/tests/fuzz/corpus-openai-tools dict=$out/tools.dict
    if ! "$out/fuzz_$t" -max_total_time="$secs" ${ZL_FUZZ_SEED:+-seed=$ZL_FUZZ_SEED} -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -dict="$dict" -print_final_stats=1 -artifact_prefix="$out/crash-$t-" \
        "$work" "$corpus" 2> "$out/fuzz_$t.log"; then
        echo "fuzz_$t FAILED: see $out/fuzz_$t.log and $out/crash-$t-*" >&2
        status=1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_$t.log" || true
done
exit $status
