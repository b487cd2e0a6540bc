#!/bin/sh
# zlightd's command line: --version, --help, --list-plugins and
# --check-config, run against the built (not installed) daemon and plugins.
set -u
top_builddir=${top_builddir:-..}
srcdir=${srcdir:-.}
ZLIGHTD="$top_builddir/core/zlightd"
fail=0
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

check() { # description, then a shell condition
    desc=$1; shift
    if "$@"; then echo "ok - $desc"; else echo "not ok - $desc"; fail=1; sed 's/^/# /' "$out" "$err"; fi
}

"$ZLIGHTD" --version >"$out" 2>"$err"; rc=$?
check "--version exits 0 and names the ABI" test $rc -eq 0 -a -n "$(grep 'zlightd .*plugin ABI' "$out")"

"$ZLIGHTD" --help >"$out" 2>"$err"; rc=$?
check "--help exits 0 and documents --check-config" test $rc -eq 0 -a -n "$(grep -- '--check-config' "$out")"

"$ZLIGHTD" --no-such-flag >"$out" 2>"$err"; rc=$?
check "an unknown flag exits 2" test $rc -eq 2

# The unknown key sits on line 3: the message must carry ":3:" and the key.
"$ZLIGHTD" --check-config "$srcdir/fixtures/cli/unknown-key.yaml" >"$out" 2>"$err"; rc=$?
check "--check-config with an unknown key exits non-zero" test $rc -ne 0
check "the error names file:3: and the key" test -n "$(grep 'unknown-key.yaml:3:.*pth' "$err")"

"$ZLIGHTD" --check-config /nonexistent/zlight.yaml >"$out" 2>"$err"; rc=$?
check "--check-config on a missing file fails naming it" test $rc -ne 0 -a -n "$(grep '/nonexistent/zlight.yaml' "$err")"

# The reference config loads; with the built CPU plugin a backend is chosen.
ZLIGHT_PLUGIN_PATH="$top_builddir/kernels/cpu/.libs" \
    "$ZLIGHTD" --check-config "$srcdir/../conf/zlightd.yaml" >"$out" 2>"$err"; rc=$?
check "--check-config conf/zlightd.yaml exits 0" test $rc -eq 0
check "--check-config prints the resolved config" test -n "$(grep 'max_num_batched_tokens' "$out")"
check "--check-config names the backend it would use" test -n "$(grep 'backend: *cpu' "$out")"

"$ZLIGHTD" --check-config "$srcdir/fixtures/cli/missing-model.yaml" >"$out" 2>"$err"; rc=$?
check "--check-config with an unreadable model.path exits 1" test $rc -eq 1
check "... naming the model path" test -n "$(grep 'model: *NONE: /nonexistent/zlight-model' "$out")"

# --list-plugins shows loaded plugins and each rejected file with its reason.
ZLIGHT_PLUGIN_PATH="$top_builddir/kernels/cpu/.libs:$top_builddir/tests/plugins/.libs" \
    "$ZLIGHTD" --list-plugins >"$out" 2>"$err"; rc=$?
check "--list-plugins exits 0" test $rc -eq 0
check "--list-plugins lists the cpu backend" test -n "$(grep '^backend  *cpu ' "$out")"
check "--list-plugins gives the reason for an ABI mismatch" test -n "$(grep 'abi.so: ABI version mismatch' "$out")"
check "--list-plugins gives the reason for a missing symbol" test -n "$(grep "noentry.so: not a zlight plugin" "$out")"

# Serving without a frontend plugin fails clearly instead of hanging.
ZLIGHT_PLUGIN_PATH="$top_builddir/kernels/cpu/.libs" \
    "$ZLIGHTD" --config "$srcdir/../conf/zlightd.yaml" >"$out" 2>"$err"; rc=$?
check "--config without a frontend plugin exits 1 with a reason" test $rc -eq 1 -a -n "$(grep 'frontend' "$err")"

# A KV cache smaller than one sequence stops the start with both numbers.
cfg=$(mktemp --suffix=.yaml)
printf 'model:\n  path: %s\n  tokenizer: %s\n  max_model_len: 64\nengine:\n  max_total_tokens: 48\nserver:\n  port: 1\n' \
    "$(cd "$srcdir/fixtures/llama/llama2" && pwd)" "$(cd "$srcdir/fixtures/tokenizer" && pwd)/toy1.json" >"$cfg"
ZLIGHT_PLUGIN_PATH="$top_builddir/kernels/cpu/.libs:$top_builddir/models/llama/.libs:$top_builddir/plugins/openai/.libs" \
    "$ZLIGHTD" --config "$cfg" >"$out" 2>"$err"; rc=$?
rm -f "$cfg"
check "max_total_tokens under max_model_len exits 1 naming both" \
    test $rc -eq 1 -a -n "$(grep 'max_total_tokens 48 holds less than one sequence of max_model_len 64' "$err")"

exit $fail
