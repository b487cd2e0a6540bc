#!/bin/sh
# Builds the libFuzzer targets of the tokenizer with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for SECONDS (default 30).
#
#   tests/fuzz/run-tokenizer.sh [SECONDS] [json|encode ...]
#
# fuzz_tokenizer_json starts from the toy and regression tokenizer.json files;
# fuzz_tokenizer_encode encodes arbitrary bytes with $ZL_FUZZ_TOKENIZER (a
# tokenizer.json / directory / .gguf; default the toy byte-level one) and
# checks that the streamed decode spells the whole decode.  New inputs go to
# $ZL_FUZZ_BUILD/work-<target> (default build-fuzz-tokenizer/ in the source
# tree).  A crash is saved as $ZL_FUZZ_BUILD/crash-<target>-*: minimise it
# (fuzz_<target> -minimize_crash=1 -runs=10000 CRASH) and keep it under
# tests/fixtures/tokenizer/regress/ (loader inputs), which test_tok_stream
# loads and uses.
set -eu
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-json encode}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${ZL_FUZZ_BUILD:-$top/build-fuzz-tokenizer}
CC=${CC:-clang}
mkdir -p "$out/seed-json" "$out/seed-encode"
: > "$out/config.h"
srcs="core/tokenizer.c core/tokenizer-utf8.c core/tokenizer-json.c core/tokenizer-gguf.c \
core/tokenizer-norm.c core/tokenizer-bpe.c core/tokenizer-encode.c core/detok.c core/stopstr.c \
core/gguf.c core/gguf-dequant.c core/status.c core/log.c core/dtype.c"
cp "$top"/tests/fixtures/tokenizer/toy*.json "$top"/tests/fixtures/tokenizer/regress/* "$out/seed-json/"
printf 'Hello world' > "$out/seed-encode/a"
printf ' \r\n\t\xff<|x|>word [R] 12345' > "$out/seed-encode/b"
status=0
for t in $targets; do
    (cd "$top" && $CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$out" -Icore/include "tests/fuzz/fuzz_tokenizer_$t.c" $srcs \
        -DZL_FUZZ_DEFAULT_TOKENIZER="\"$top/tests/fixtures/tokenizer/toy1.json\"" \
        $(pkg-config --cflags --libs jansson libpcre2-8 libutf8proc libxxhash) -lm -pthread \
        -o "$out/fuzz_tokenizer_$t")
    mkdir -p "$out/work-$t"
    echo "== fuzz_tokenizer_$t for ${secs}s"
    if ! "$out/fuzz_tokenizer_$t" -max_total_time="$secs" ${ZL_FUZZ_SEED:+-seed=$ZL_FUZZ_SEED} -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/crash-$t-" \
        "$out/work-$t" "$out/seed-$t" 2> "$out/fuzz_tokenizer_$t.log"; then
        echo "fuzz_tokenizer_$t FAILED: see $out/fuzz_tokenizer_$t.log and $out/crash-$t-*" >&2
        status=1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_tokenizer_$t.log" || true
done
exit $status
