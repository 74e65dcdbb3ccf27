#!/usr/bin/env bash
# Opens the chat page of "tessera serve --api-key" in headless Chromium
# (Debian's chromium), enters the key, registers a facts case's documents in its document panel, asks
# the question, waits for the streamed answer and saves a screenshot to
# ${TS_BUILD:-build}/server-screenshot.png. Run from the project root.
# Prints "test_browser: N passed, N failed".
set -u
TS_BIN=${TS_BUILD:-build}/tessera
SHARED=${TS_SHARED:-../shared}
MODEL=$SHARED/models/facts-qwen3-14m
SHOT=${TS_BUILD:-build}/server-screenshot.png
. tests/server/lib.bash

pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_browser: $*"; }
finish() {
    echo "test_browser: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

CHROME=${TS_CHROMIUM:-}
if [ -z "$CHROME" ]; then
    for c in chromium chromium-browser google-chrome; do
        command -v "$c" >/dev/null 2>&1 && { CHROME=$c; break; }
    done
fi

tmp=$(mktemp -d)
SPID=""; CPID=""
cleanup() {
    [ -n "$CPID" ] && { kill -TERM "$CPID" 2>/dev/null; sleep 0.5; kill -KILL "$CPID" 2>/dev/null; }
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ -x "$TS_BIN" ] || { bad "$TS_BIN not built"; finish; }
[ -n "$CHROME" ] || { bad "chromium not found (scripts/deps.sh --test installs it)"; finish; }
ts_npm_ready || { bad "npm packages could not be installed"; finish; }

port=$(ts_free_port)
KEY=sk-tessera-browser
if ts_start_server "$tmp/server.log" "$port" -m "$MODEL" --api-key "$KEY"; then SPID=$TS_PID; ok; else bad "server did not start"; finish; fi

mkdir -p "$tmp/profile" "$(dirname "$SHOT")"
"$CHROME" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --no-default-browser-check --disable-extensions --disable-background-networking --disable-sync \
    --window-size=1280,860 --remote-debugging-address=127.0.0.1 --remote-debugging-port=0 \
    --user-data-dir="$tmp/profile" about:blank >"$tmp/chromium.log" 2>&1 &
CPID=$!

out=$(TS_URL="http://127.0.0.1:$port" TS_KEY=$KEY TS_CDP_DIR="$tmp/profile" TS_MODEL_DIR=$MODEL TS_SCREENSHOT=$SHOT \
      timeout 120 node tests/server/browser_test.mjs 2>&1)
rc=$?
printf '%s\n' "$out" | grep -E '^(FAIL|note)' || true
line=$(printf '%s\n' "$out" | grep -E '^browser_test: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -n 20
    bad "browser_test.mjs crashed (exit $rc)"
    tail -n 10 "$tmp/chromium.log"
else
    p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    pass=$((pass + p)); fail=$((fail + f))
fi
[ "$fail" -eq 0 ] && echo "screenshot: $SHOT"

ts_stop_server "$SPID"; st=$?; SPID=""
if [ "$st" -eq 0 ]; then ok; else bad "server exited with status $st after SIGTERM"; fi
[ "$fail" -eq 0 ] || { echo "--- server log (tail)"; tail -n 15 "$tmp/server.log"; }
finish
