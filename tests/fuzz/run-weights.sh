#!/bin/sh
# Builds the libFuzzer targets of the weight parsers with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for SECONDS (default 30)
# from its committed seed corpus.
#
#   tests/fuzz/run-weights.sh [SECONDS] [safetensors|gguf ...]
#
# New inputs go to $ZL_FUZZ_BUILD/work-<target> (default build-fuzz-weights/
# in the source tree), not into the committed corpus.  A crash is saved as
# $ZL_FUZZ_BUILD/crash-<target>-*; minimise it with
#   build-fuzz-weights/fuzz_<target> -minimize_crash=1 -runs=10000 CRASH
# and keep it as tests/fixtures/weights/regress/<st|gguf>-<name>, which the
# Criterion tests parse and expect a clean error from.
set -eu
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-safetensors gguf}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${ZL_FUZZ_BUILD:-$top/build-fuzz-weights}
CC=${CC:-clang}
mkdir -p "$out"
: > "$out/config.h"     # the sources include config.h; they need nothing from it
srcs="core/safetensors.c core/gguf.c core/gguf-dequant.c core/hf-config.c core/status.c core/dtype.c core/log.c"
cat > "$out/safetensors.dict" <<'DICT'
"__metadata__"
"dtype"
"shape"
"data_offsets"
"F32"
"F16"
"BF16"
"F8_E4M3"
"I64"
"BOOL"
"F4"
DICT
status=0
for t in $targets; do
    (cd "$top" && $CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$out" -Icore/include "tests/fuzz/fuzz_$t.c" $srcs \
        $(pkg-config --cflags --libs jansson) -lm -pthread -o "$out/fuzz_$t")
    mkdir -p "$out/work-$t"
    dict=
    [ "$t" = safetensors ] && dict="-dict=$out/safetensors.dict"
    echo "== fuzz_$t for ${secs}s"
    if ! "$out/fuzz_$t" -max_total_time="$secs" ${ZL_FUZZ_SEED:+-seed=$ZL_FUZZ_SEED} -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        $dict -print_final_stats=1 -artifact_prefix="$out/crash-$t-" \
        "$out/work-$t" "$top/tests/fuzz/corpus-$t" 2> "$out/fuzz_$t.log"; then
        echo "fuzz_$t FAILED: see $out/fuzz_$t.log and $out/crash-$t-*" >&2
        status=1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_$t.log" || true
done
exit $status
