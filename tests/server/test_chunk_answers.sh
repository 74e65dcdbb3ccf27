#!/usr/bin/env bash
# Documents cited as chunks through the server, encoded after the
# instruction and a document header (--chunk-prefix): reuse and repair
# answer the facts model's questions as well as exact (full prefill) does,
# within one case. Prints "test_chunk_answers: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
TS_BIN=${TS_BUILD:-build}/tessera
. tests/server/lib.bash
n_cases=12
[ -n "${TS_TEST_LIGHT:-}" ] && n_cases=6
pass=0; fail=0
port=$(ts_free_port)
log=$(mktemp)
trap 'ts_stop_server "${TS_PID:-}" >/dev/null 2>&1; rm -f "$log"' EXIT
prefix=$'<|im_start|>system\nYou answer questions using only the documents below.\n\n[Document 1]\n'
if ts_start_server "$log" "$port" -m ../shared/models/facts-qwen3-14m --chunk-prefix "$prefix"; then
    out=$(python3 tests/server/chunk_answers.py "$port" "$n_cases")
    echo "$out"
    exact=$(echo "$out" | awk '$1=="exact"{print $2}')
    total=$(echo "$out" | awk '$1=="exact"{print $3}')
    for m in reuse repair; do
        got=$(echo "$out" | awk -v m=$m '$1==m{print $2}')
        if [ -n "$got" ] && [ -n "$exact" ] && [ "$got" -ge $((exact - 1)) ] && [ "$exact" -ge $((total - 2)) ]; then
            pass=$((pass + 1))
        else
            echo "FAIL $m: $got of $total right, exact $exact" >&2; fail=$((fail + 1))
        fi
    done
    ts_stop_server "$TS_PID"; rc=$?; TS_PID=
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); else echo "FAIL server exit $rc" >&2; fail=$((fail + 1)); fi
else
    fail=$((fail + 1))
fi
echo "test_chunk_answers: $pass passed, $fail failed"
[ $fail -eq 0 ]
