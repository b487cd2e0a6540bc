#!/bin/sh
# Installs everything zlight needs to build and test on Debian 12 / Ubuntu.
# Runs apt-get as root (or through sudo when not root).
set -eu
pkgs="build-essential autoconf automake libtool autoconf-archive pkg-config
      libyaml-dev libjansson-dev libcriterion-dev libmicrohttpd-dev libpcre2-dev
      libutf8proc-dev libxxhash-dev libcurl4-openssl-dev xz-utils python3 clang"
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# promtool (Debian's prometheus package) checks /metrics in the e2e tests;
# without it that one test skips and says so.
if ! command -v promtool >/dev/null 2>&1; then
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } ||
        echo "warning: could not install prometheus (promtool); the /metrics lint test will skip" >&2
fi
