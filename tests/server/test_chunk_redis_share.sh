#!/usr/bin/env bash
# Two tessera servers share chunks through a real redis-server on loopback:
# B cites a chunk only A registered and computed, loads its KV from Redis
# and answers exactly as A does (tests/server/chunk_share.py).
# Prints "test_chunk_redis_share: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
TS_BIN=${TS_BUILD:-build}/tessera
. tests/server/lib.bash
pass=0; fail=0
rport=$(ts_free_port); pa=$(ts_free_port); pb=$(ts_free_port)
la=$(mktemp); lb=$(mktemp)
RPID=; PA=; PB=
cleanup() {
    ts_stop_server "$PA" >/dev/null 2>&1; ts_stop_server "$PB" >/dev/null 2>&1
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
    rm -f "$la" "$lb"
}
trap cleanup EXIT
if ! command -v redis-server >/dev/null 2>&1; then
    echo "FAIL redis-server is not installed (scripts/deps.sh --test installs it)" >&2
    echo "test_chunk_redis_share: 0 passed, 1 failed"; exit 1
fi
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
RPID=$!
# the servers must find Redis up, or server A would not save its chunks
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break
    sleep 0.1
done
prefix=$'<|im_start|>system\nYou answer questions using only the documents below.\n\n[Document 1]\n'
args=(-m ../shared/models/facts-qwen3-14m --chunk-prefix "$prefix" --chunk-redis "127.0.0.1:$rport")
if ts_start_server "$la" "$pa" "${args[@]}"; then PA=$TS_PID; fi
if ts_start_server "$lb" "$pb" "${args[@]}"; then PB=$TS_PID; fi
if [ -n "$PA" ] && [ -n "$PB" ]; then
    out=$(python3 tests/server/chunk_share.py "$pa" "$pb" 2>&1)
    echo "$out"
    pass=$(echo "$out" | grep -c '^check .* ok')
    fail=$(echo "$out" | grep -c '^check .* FAIL')
    [ "$pass" -ge 6 ] || fail=$((fail + 1))
else
    fail=$((fail + 1))
fi
echo "test_chunk_redis_share: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
