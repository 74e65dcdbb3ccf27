#!/usr/bin/env bash
# Installs the Debian packages tessera builds and tests with. As root it runs
# apt-get; otherwise it names the missing packages and fails.
set -eu
pkgs="build-essential pkg-config libpcre2-dev libutf8proc-dev libjansson-dev libssl-dev libhiredis-dev libmicrohttpd-dev"
if [ "${1:-}" = "--test" ]; then
    pkgs="$pkgs clang libclang-rt-14-dev python3 redis-server chromium"
    # the server tests drive tessera with the OpenAI Node SDK; a Node.js
    # installed some other way (with its npm) is fine too
    command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
fi
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq $missing >/dev/null
else
    echo "tessera needs these Debian packages:$missing" >&2
    echo "install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi
