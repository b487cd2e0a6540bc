#!/bin/sh
# Third-party plugin workflow, end to end: install zlight into a temporary
# prefix, build plugins/sdk/example with nothing but `pkg-config
# zlight-plugin`, install it into the advertised plugindir, and check that
# the installed zlightd loads it.
set -eu
srcdir=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
work=$(mktemp -d /tmp/zlight-sdk-XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

echo "== installing zlight into $prefix"
mkdir "$work/build"
(cd "$work/build" && "$srcdir/configure" -q --prefix="$prefix" --without-cuda --without-nccl &&
    make -s -j2 >/dev/null && make -s install >/dev/null)

echo "== building the example out of tree with pkg-config only"
cp -r "$srcdir/plugins/sdk/example" "$work/example"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
plugindir=$(pkg-config --variable=plugindir zlight-plugin)
test "$plugindir" = "$prefix/lib/zlight" || { echo "FAIL: plugindir is '$plugindir'"; exit 1; }
make -s -C "$work/example" install

echo "== loading it through the installed zlightd"
out=$(env -u ZLIGHT_PLUGIN_PATH -u ZLIGHT_PLUGIN_DIR "$prefix/bin/zlightd" --list-plugins)
echo "$out"
echo "$out" | grep -q "^backend  *example-host  *1.0.0  *$plugindir/example.so" ||
    { echo "FAIL: example-host not loaded by the installed zlightd"; exit 1; }
echo "$out" | grep -q "^backend  *cpu " ||
    { echo "FAIL: the installed cpu backend was not loaded"; exit 1; }
test -z "$(nm -D --defined-only "$plugindir/example.so" | grep -v ' zl_plugin_entry$' | grep ' T ')" ||
    { echo "FAIL: example.so exports more than zl_plugin_entry"; exit 1; }
echo "PASS: out-of-tree plugin built with pkg-config and loaded by the installed zlightd"
