#!/usr/bin/env bash
# The OpenAI-compatible server on the GPU (GPU machine, binaries carried):
# documents cited as chunks answer the facts model's questions in every
# chunk mode (exact, reuse, repair) as tests/server/test_chunk_answers.sh
# demands on the CPU, and a streamed chat completion ends with [DONE].
# Prints "server on the GPU: ..." lines; exit 0 when all hold.
# Usage: server_check.sh TESSERA SHARED_DIR
set -u
T=$1 S=$2
F=$S/models/facts-qwen3-14m
port=18477 log=$(mktemp)
prefix=$'<|im_start|>system\nYou answer questions using only the documents below.\n\n[Document 1]\n'
"$T" serve --host 127.0.0.1 --port $port -m "$F" --device cuda --chunk-prefix "$prefix" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
up=0
for i in $(seq 1 300); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null && { up=1; break; }
    kill -0 $pid 2>/dev/null || break
    sleep 0.2
done
[ $up = 1 ] || { echo "server on the GPU: FAIL did not start"; tail -5 "$log"; exit 1; }
out=$(TS_SHARED=$S python3 "$(dirname "$0")/../server/chunk_answers.py" $port 12)
echo "$out" | sed 's/^/server on the GPU: chunk mode /'
rc=0
exact=$(echo "$out" | awk '$1=="exact"{print $2}') total=$(echo "$out" | awk '$1=="exact"{print $3}')
for m in reuse repair; do
    got=$(echo "$out" | awk -v m=$m '$1==m{print $2}')
    [ -n "$got" ] && [ -n "$exact" ] && [ "$got" -ge $((exact - 1)) ] && [ "$exact" -ge $((total - 2)) ] || {
        echo "server on the GPU: FAIL $m $got of $total, exact $exact"; rc=1; }
done
python3 - $port <<'PY' || rc=1
import json, sys, urllib.request
port = int(sys.argv[1])
body = {"messages": [{"role": "user", "content": "Tell me about the river."}], "max_tokens": 16,
        "temperature": 0.7, "top_p": 0.9, "top_k": 20, "seed": 3, "stream": True}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                             data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
lines = [l.decode().strip() for l in urllib.request.urlopen(req, timeout=60)]
events = [l[6:] for l in lines if l.startswith("data: ")]
ok = events and events[-1] == "[DONE]" and len(events) >= 3
print("server on the GPU: stream", "ok" if ok else "FAIL", len(events), "events")
sys.exit(0 if ok else 1)
PY
kill $pid; wait $pid 2>/dev/null
exit $rc
