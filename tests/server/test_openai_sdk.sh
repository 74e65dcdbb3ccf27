#!/usr/bin/env bash
# Drives "tessera serve" with the official OpenAI Node SDK (tests/server/
# sdk_test.mjs): one server without an API key and one with two keys.
# Run from the project root. Prints "test_openai_sdk: N passed, N failed".
set -u
TS_BIN=${TS_BUILD:-build}/tessera
SHARED=${TS_SHARED:-../shared}
MODEL=$SHARED/models/facts-qwen3-14m
. tests/server/lib.bash

pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_openai_sdk: $*"; }
finish() {
    echo "test_openai_sdk: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

tmp=$(mktemp -d)
PID1=""; PID2=""
cleanup() {
    [ -n "$PID1" ] && kill -KILL "$PID1" 2>/dev/null
    [ -n "$PID2" ] && kill -KILL "$PID2" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ -x "$TS_BIN" ] || { bad "$TS_BIN not built"; finish; }
[ -f "$MODEL/config.json" ] || { bad "model $MODEL missing"; finish; }
ts_npm_ready || { bad "npm packages could not be installed"; finish; }

KEY_A="sk-tessera-test-a"
KEY_B="sk-tessera-test-b"
port1=$(ts_free_port)
if ts_start_server "$tmp/server1.log" "$port1" -m "$MODEL"; then
    PID1=$TS_PID; ok
else
    bad "server without a key did not start"; finish
fi
# The second server has a small queue (for the 429 check) and two API keys.
port2=$(ts_free_port)
if ts_start_server "$tmp/server2.log" "$port2" -m "$MODEL" --api-key "$KEY_A" --api-key "$KEY_B" \
        --max-running 1 --max-waiting 1; then
    PID2=$TS_PID; ok
else
    bad "server with --api-key did not start"
fi

out=$(TS_URL="http://127.0.0.1:$port1" TS_URL_KEYED="${PID2:+http://127.0.0.1:$port2}" \
      TS_KEY_A=$KEY_A TS_KEY_B=$KEY_B TS_MODEL_DIR=$MODEL TS_PID1=$PID1 \
      node tests/server/sdk_test.mjs 2>&1)
rc=$?
printf '%s\n' "$out" | grep -v -E '^sdk_test: [0-9]+ passed' | grep -E '^(FAIL|note)' || true
line=$(printf '%s\n' "$out" | grep -E '^sdk_test: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -n 20
    bad "sdk_test.mjs crashed (exit $rc)"
else
    p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    pass=$((pass + p)); fail=$((fail + f))
    [ "$rc" -eq 0 ] || [ "$f" -ne 0 ] || bad "sdk_test.mjs exited $rc"
fi

# SIGTERM: both servers exit cleanly (status 0); sdk_test.mjs has already
# sent server 1 its SIGTERM with a stream in flight.
for v in PID1 PID2; do
    pid=${!v}
    [ -n "$pid" ] || continue
    ts_stop_server "$pid"; st=$?
    eval "$v=''"
    if [ "$st" -eq 0 ]; then ok; else
        bad "server $v exited with status $st after SIGTERM"
        tail -n 5 "$tmp/server${v#PID}.log"
    fi
done
if [ "$fail" -ne 0 ]; then
    echo "--- server1 log (tail)"; tail -n 15 "$tmp/server1.log"
    [ -f "$tmp/server2.log" ] && { echo "--- server2 log (tail)"; tail -n 15 "$tmp/server2.log"; }
fi
finish
