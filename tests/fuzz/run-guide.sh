#!/bin/sh
# Builds the guided-decoding fuzzer (JSON Schema compiler, the automaton,
# masks against replays, ends against jansson) with clang's libFuzzer plus
# ASan and UBSan, and runs it for SECONDS (default 30) from its seed corpus.
#
#   tests/fuzz/run-guide.sh [SECONDS]
#
# New inputs go to $ZL_FUZZ_BUILD/work-guide (default build-fuzz-guide/ in the
# source tree); a crash is saved as $ZL_FUZZ_BUILD/crash-guide-*.
set -eu
secs=${1:-30}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${ZL_FUZZ_BUILD:-$top/build-fuzz-guide}
mkdir -p "$out/work-guide"
cp -n "$top"/tests/fuzz/corpus-guide/* "$out/work-guide/" 2>/dev/null || true
cat > "$out/guide.dict" <<'DICT'
"\"type\""
"\"object\""
"\"array\""
"\"string\""
"\"integer\""
"\"number\""
"\"boolean\""
"\"null\""
"\"properties\""
"\"required\""
"\"additionalProperties\""
"\"items\""
"\"minItems\""
"\"maxItems\""
"\"minLength\""
"\"maxLength\""
"\"enum\""
"\"const\""
"\"anyOf\""
"\"$ref\""
"\"#/$defs/a\""
"\"$defs\""
"\\x00"
"true"
"null"
"\\u00e9"
DICT
# The gguf sources (the tokenizer's loader) include config.h for feature
# macros they do not need here.
: > "$out/config.h"
(cd "$top" && clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$out" -Icore/include -Icore tests/fuzz/fuzz_guide.c core/guide-schema.c core/guide-match.c \
    core/guide-mask.c core/tokenizer*.c core/detok.c core/gguf.c core/gguf-dequant.c core/dtype.c \
    core/status.c core/log.c \
    $(pkg-config --cflags --libs jansson libpcre2-8 libutf8proc libxxhash) -lm -pthread \
    -o "$out/fuzz_guide")
exec "$out/fuzz_guide" -max_total_time="$secs" ${ZL_FUZZ_SEED:+-seed=$ZL_FUZZ_SEED} -max_len=2048 \
    -timeout=10 -rss_limit_mb=2048 -dict="$out/guide.dict" -artifact_prefix="$out/crash-guide-" \
    "$out/work-guide"
