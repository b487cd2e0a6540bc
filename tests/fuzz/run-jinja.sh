#!/bin/sh
# Builds the chat-template parser/renderer fuzzer with clang's libFuzzer
# (plus ASan and UBSan) and runs it for N seconds (default 60) on a copy of
# the seed corpus.  Usage: tests/fuzz/run-jinja.sh [SECONDS] [BUILD_DIR]
# A crash or leak is saved as BUILD_DIR/crash-jinja-*.
set -eu
secs=${1:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-$top/build-fuzz-jinja}
mkdir -p "$out/corpus"
cp -n "$top"/tests/fuzz/corpus-jinja/* "$out/corpus/" 2>/dev/null || true
# config.h only carries feature macros the jinja sources do not need.
clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$top/core/include" \
    "$top"/tests/fuzz/fuzz_jinja.c "$top"/core/chat.c "$top"/core/jinja-*.c "$top"/core/status.c \
    -ljansson -lutf8proc -lm -lpthread -o "$out/fuzz_jinja"
exec "$out/fuzz_jinja" -max_total_time="$secs" ${ZL_FUZZ_SEED:+-seed=$ZL_FUZZ_SEED} -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -dict="$top/tests/fuzz/jinja.dict" -artifact_prefix="$out/crash-jinja-" "$out/corpus"
