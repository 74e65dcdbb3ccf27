#!/usr/bin/env bash
# End-to-end checks of "tessera serve" with curl: every endpoint, the error
# codes (400 malformed / wrong type / body limit / over context, 401, 404,
# 405, 429), seeded fuzzing of the request bodies (fuzz_requests.py;
# TS_FUZZ_REQUESTS, TS_FUZZ_SEED), tenant isolation of chunks, cancellation
# on disconnect and a clean SIGTERM exit. Uses $TS_BUILD (default build)
# and $TS_SHARED.
# Prints "test_server_c: N passed, N failed".
set -u
B=${TS_BUILD:-build}
S=${TS_SHARED:-../shared}
T="$B/tessera"
MODEL="$S/models/facts-qwen3-14m"
pass=0; fail=0
tmp=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    [ -n "${JV_PID:-}" ] && kill "$JV_PID" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_server_c: $*" >&2; }
check() { if eval "$2"; then ok; else bad "$1"; fi; }
finish() {
    echo "test_server_c: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}
# jv FILE EXPR: a Python expression over the JSON in FILE (as d), answered
# by one Python process for the whole test (starting one per check is slow)
coproc JV { python3 -S -u -c '
import json, sys
for line in sys.stdin:
    f, e = line.rstrip("\n").split("\t", 1)
    try:
        d = json.load(open(f))
        r = str(eval(e))
    except Exception as x:
        r = "<error: %s>" % x
    print(r.replace("\n", "\\n"), flush=True)
'; }
jv() {
    local line
    printf '%s\t%s\n' "$1" "$2" >&"${JV[1]}"
    IFS= read -r line <&"${JV[0]}"
    printf '%s\n' "$line"
}

# start LOG ARGS...: starts a server on a free port; sets PID and U
start() {
    local log=$1; shift
    "$T" serve -m "$MODEL" --port 0 --threads 2 "$@" 2>"$log" &
    PID=$!
    PIDS+=("$PID")
    local port=""
    for _ in $(seq 1 600); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$log")
        [ -n "$port" ] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    U="http://127.0.0.1:$port"
    [ -n "$port" ]
}
# stop PID LOG: SIGTERM; waits up to 20 s; echoes the exit status
stop() {
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && kill -KILL "$1"
    wait "$1" 2>/dev/null
}
# req METHOD PATH [BODY] [curl args...]: sets code; the body lands in $tmp/b
req() {
    local m=$1 p=$2 d=${3-}
    shift; shift; [ $# -gt 0 ] && shift
    if [ -n "$d" ]; then
        code=$(curl -s -m 120 -o "$tmp/b" -w '%{http_code}' -X "$m" -H 'Content-Type: application/json' \
               --data-binary "$d" "$@" "$U$p")
    else
        code=$(curl -s -m 120 -o "$tmp/b" -w '%{http_code}' -X "$m" "$@" "$U$p")
    fi
}
is_error_obj() { # the OpenAI error shape
    [ "$(jv "$tmp/b" 'all(k in d["error"] for k in ("message","type","param","code")) and len(d["error"]["message"]) > 0')" = True ]
}

[ -x "$T" ] || { bad "$T not built"; finish; }
[ -f "$MODEL/config.json" ] || { bad "$MODEL missing"; finish; }

# ---------------------------------------------------------------- server 1
if ! start "$tmp/s1.log" --max-body 65536; then bad "server did not start: $(tail -n 3 "$tmp/s1.log")"; finish; fi
S1=$PID

req GET /health
check "GET /health ($code)" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"status\"]")" = ok ]'
req GET /
check "GET / serves the page ($code)" '[ "$code" = 200 ] && grep -qi "<html" "$tmp/b"'
ctype=$(curl -s -o /dev/null -w '%{content_type}' "$U/")
check "GET / is text/html ($ctype)" '[[ "$ctype" == text/html* ]]'
req GET /v1/models
check "GET /v1/models ($code)" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"data\"][0][\"id\"]")" = facts-qwen3-14m ]'

req GET /v1/models/facts-qwen3-14m
check "GET /v1/models/{id} ($code)" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"object\"]")" = model ]'
req GET /v1/models/other
check "GET /v1/models/other: 404 ($code)" '[ "$code" = 404 ] && is_error_obj'

# chat, not streamed: the answer comes from the document in the system message
sys='You answer questions using only the documents below.\n\n[Document 1]\nValvalford is a city located in Helara. It was founded in 1721 by Pel Isnorwen. About 800,585 people live there. Valvalford is famous for its silver observatories.'
msgs='[{"role":"system","content":"'"$sys"'"},{"role":"user","content":"How many people live in Valvalford?"}]'
req POST /v1/chat/completions '{"model":"x","messages":'"$msgs"',"temperature":0,"max_tokens":40}'
cp "$tmp/b" "$tmp/chat1"
check "chat 200 ($code)" '[ "$code" = 200 ]'
check "chat answers from the document" '[ "$(jv "$tmp/chat1" "\"800,585\" in d[\"choices\"][0][\"message\"][\"content\"]")" = True ]'
check "chat object and finish_reason" '[ "$(jv "$tmp/chat1" "(d[\"object\"], d[\"choices\"][0][\"finish_reason\"], d[\"choices\"][0][\"message\"][\"role\"])")" = "('"'"'chat.completion'"'"', '"'"'stop'"'"', '"'"'assistant'"'"')" ]'
check "chat usage adds up" '[ "$(jv "$tmp/chat1" "d[\"usage\"][\"total_tokens\"] == d[\"usage\"][\"prompt_tokens\"] + d[\"usage\"][\"completion_tokens\"] and d[\"usage\"][\"prompt_tokens\"] > 50 and \"cached_tokens\" in d[\"usage\"][\"prompt_tokens_details\"]")" = True ]'
# the same prompt again: its prefix comes from the cache
req POST /v1/chat/completions '{"messages":'"$msgs"',"temperature":0,"max_tokens":40}'
check "repeated prompt reuses cached tokens" '[ "$(jv "$tmp/b" "d[\"usage\"][\"prompt_tokens_details\"][\"cached_tokens\"] > 0")" = True ]'

# streamed: SSE chunks whose deltas add up to the non-streamed answer, then usage, then [DONE]
curl -s -N -m 120 "$U/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages":'"$msgs"',"temperature":0,"max_tokens":40,"stream":true,"stream_options":{"include_usage":true}}' >"$tmp/sse"
python3 - "$tmp/sse" "$tmp/chat1" >"$tmp/sse.out" 2>&1 <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]).read().split("\n\n") if l.strip()]
assert all(l.startswith("data: ") for l in lines), "every event is a data line"
assert lines[-1] == "data: [DONE]", "ends with [DONE]"
ev = [json.loads(l[6:]) for l in lines[:-1]]
assert all(e["object"] == "chat.completion.chunk" for e in ev)
assert ev[0]["choices"][0]["delta"].get("role") == "assistant"
text = "".join(c["delta"].get("content") or "" for e in ev for c in e["choices"])
ref = json.load(open(sys.argv[2]))
assert text == ref["choices"][0]["message"]["content"], (text, ref)
fin = [c["finish_reason"] for e in ev for c in e["choices"] if c["finish_reason"]]
assert fin == ["stop"], fin
assert ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] == ref["usage"]["completion_tokens"]
print("ok")
PY
check "streamed chat equals the non-streamed one ($(tail -n 1 "$tmp/sse.out"))" 'grep -q "^ok$" "$tmp/sse.out"'

# completions: a string prompt and the same prompt as token ids agree
req POST /v1/completions '{"prompt":"Valvalford is a city","temperature":0,"max_tokens":12}'
cp "$tmp/b" "$tmp/cmpl1"
check "completions 200 ($code)" '[ "$code" = 200 ] && [ "$(jv "$tmp/cmpl1" "d[\"object\"]")" = text_completion ]'
ids=$("$T" tokenize -m "$MODEL" --text "Valvalford is a city" 2>/dev/null)
req POST /v1/completions '{"prompt":'"$ids"',"temperature":0,"max_tokens":12}'
check "completions from token ids equal those from text" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"choices\"][0][\"text\"]")" = "$(jv "$tmp/cmpl1" "d[\"choices\"][0][\"text\"]")" ] && [ "$(jv "$tmp/cmpl1" "d[\"usage\"][\"completion_tokens\"]")" = 12 ]'
# the chat prompt written out by hand: the same answer as the chat endpoint
raw='<|im_start|>system\n'"$sys"'<|im_end|>\n<|im_start|>user\nHow many people live in Valvalford?<|im_end|>\n<|im_start|>assistant\n'
req POST /v1/completions '{"prompt":"'"$raw"'","temperature":0,"max_tokens":40}'
check "completions of the rendered chat prompt equal the chat answer" '[ "$(jv "$tmp/b" "d[\"choices\"][0][\"text\"]")" = "$(jv "$tmp/chat1" "d[\"choices\"][0][\"message\"][\"content\"]")" ]'
word=$(jv "$tmp/chat1" 'd["choices"][0]["message"]["content"].split()[2]')
req POST /v1/completions '{"prompt":"'"$raw"'","temperature":0,"max_tokens":40,"stop":["zzz"," '"$word"'"]}'
want=$(jv "$tmp/chat1" 'd["choices"][0]["message"]["content"].split(" '"$word"'")[0]')
check "a stop string ends the text before it ('$word')" '[ "$(jv "$tmp/b" "d[\"choices\"][0][\"text\"]")" = "$want" ] && [ "$(jv "$tmp/b" "d[\"choices\"][0][\"finish_reason\"]")" = stop ]'

# chunks: register, list, get, cite, delete
doc='Valvalford is a city located in Helara. It was founded in 1721 by Pel Isnorwen. About 800,585 people live there.'
req POST /v1/chunks '{"text":"'"$doc"'","type":"document"}'
cid=$(jv "$tmp/b" 'd["id"]')
check "POST /v1/chunks ($code $(head -c 200 "$tmp/b"))" '[ "$code" = 200 ] && [ ${#cid} -eq 64 ] && [ "$(jv "$tmp/b" "d[\"tokens\"] > 10 and d[\"object\"] == \"chunk\"")" = True ]'
req GET /v1/chunks
check "GET /v1/chunks lists it" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "\"$cid\" in [c[\"id\"] for c in d[\"data\"]]")" = True ]'
req GET "/v1/chunks/$cid"
check "GET /v1/chunks/{id}" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"id\"]")" = "$cid" ]'
cite='[{"role":"system","content":[{"type":"text","text":"You answer questions using only the documents below.\n\n[Document 1]\n"},{"type":"chunk","chunk_id":"'"$cid"'"}]},{"role":"user","content":"How many people live in Valvalford?"}]'
req POST /v1/chat/completions '{"messages":'"$cite"',"temperature":0,"max_tokens":40,"chunk_mode":"exact"}'
check "chat citing a chunk ($code $(head -c 200 "$tmp/b"))" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "\"800,585\" in d[\"choices\"][0][\"message\"][\"content\"]")" = True ]'
req POST /v1/chat/completions '{"messages":[{"role":"user","content":[{"type":"chunk","chunk_id":"'"$(printf 'e%.0s' $(seq 64))"'"}]}]}'
check "citing an unknown chunk: 404 naming it ($code)" '[ "$code" = 404 ] && is_error_obj && grep -q eeeeeeee "$tmp/b"'
req POST /v1/chat/completions '{"messages":[{"role":"user","content":[{"type":"chunk","chunk_id":"nothex"}]}]}'
check "a malformed chunk id: 400 ($code)" '[ "$code" = 400 ] && is_error_obj'
req POST /v1/chunks '{"ids":'"$ids"',"type":"code"}'
n_ids=$(( $(printf '%s' "$ids" | tr -cd ',' | wc -c) + 1 ))
check "POST /v1/chunks with token ids ($code)" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"tokens\"]")" = "$n_ids" ] && [ "$(jv "$tmp/b" "d[\"type\"]")" = code ]'
req POST /v1/chunks '{"text":"abc","type":"poem"}'
check "unknown chunk type: 400 ($code)" '[ "$code" = 400 ] && is_error_obj'
req POST /v1/chunks '{"text":""}'
check "empty chunk: 400 ($code)" '[ "$code" = 400 ] && is_error_obj'
req DELETE "/v1/chunks/$cid"
check "DELETE /v1/chunks/{id}" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"deleted\"]")" = True ]'
req GET "/v1/chunks/$cid"
check "deleted chunk: 404 ($code)" '[ "$code" = 404 ] && is_error_obj'

# errors
req POST /v1/chat/completions '{"messages": [}'
check "malformed JSON: 400 ($code)" '[ "$code" = 400 ] && is_error_obj && [ "$(jv "$tmp/b" "d[\"error\"][\"type\"]")" = invalid_request_error ]'
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}'
check "temperature of the wrong type: 400 naming it ($code)" '[ "$code" = 400 ] && [ "$(jv "$tmp/b" "d[\"error\"][\"param\"]")" = temperature ]'
req POST /v1/completions '{"prompt":"hi","max_tokens":"many"}'
check "max_tokens of the wrong type: 400 ($code)" '[ "$code" = 400 ] && [ "$(jv "$tmp/b" "d[\"error\"][\"param\"]")" = max_tokens ]'
req POST /v1/chat/completions '{"messages":"hello"}'
check "messages of the wrong type: 400 ($code)" '[ "$code" = 400 ] && is_error_obj'
# each of these bodies is invalid somewhere: 400 with an error object, and the server lives on
n400=0; nbad=""
m='[{"role":"user","content":"hi"}]'
while IFS= read -r body; do
    req POST /v1/chat/completions "$body"
    if [ "$code" = 400 ] && is_error_obj; then n400=$((n400 + 1)); else nbad="$nbad [$code $body]"; fi
done <<EOF_BODIES
[]
"text"
{"messages":[]}
{"messages":[1]}
{"messages":[{"role":1,"content":"hi"}]}
{"messages":[{"content":"hi"}]}
{"messages":[{"role":"user","content":5}]}
{"messages":[{"role":"user","content":[{"type":"chunk"}]}]}
{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}
{"messages":[{"role":"user","content":[{"type":"text","text":7}]}]}
{"messages":[{"role":"user","content":["hi"]}]}
{"messages":$m,"stop":[1]}
{"messages":$m,"stop":5}
{"messages":$m,"stream":"yes"}
{"messages":$m,"stream_options":"x"}
{"messages":$m,"stream_options":{"include_usage":1}}
{"messages":$m,"seed":1.5}
{"messages":$m,"max_tokens":0}
{"messages":$m,"max_tokens":-3}
{"messages":$m,"top_p":2}
{"messages":$m,"temperature":-1}
{"messages":$m,"n":2}
{"messages":$m,"chunk_mode":"fast"}
{"messages":$m,"stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}
EOF_BODIES
check "24 invalid chat bodies give 400 ($n400;$nbad)" '[ "$n400" = 24 ]'
n400=0; nbad=""
while IFS= read -r body; do
    req POST /v1/completions "$body"
    if [ "$code" = 400 ] && is_error_obj; then n400=$((n400 + 1)); else nbad="$nbad [$code $body]"; fi
done <<EOF_BODIES
{}
{"prompt":{}}
{"prompt":[]}
{"prompt":[1,-2]}
{"prompt":[1,"a"]}
{"prompt":["a","b"]}
{"prompt":[99999999]}
{"prompt":""}
EOF_BODIES
check "8 invalid completion bodies give 400 ($n400;$nbad)" '[ "$n400" = 8 ]'
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"unknown_field":{"x":[1]}}'
check "unknown fields are ignored ($code)" '[ "$code" = 200 ]'
# messages without text (content absent, null or []) render as empty ones;
# the first read past a buffer's end once (found by fuzz_requests.py under ASan)
for body in '[{"role":"user"}]' '[{"role":"user","content":null},{"role":"user","content":"hi"}]' \
        '[{"role":"system","content":[]},{"role":"user","content":[]}]'; do
    req POST /v1/chat/completions '{"messages":'"$body"',"max_tokens":2}'
    check "messages $body: 200 ($code)" '[ "$code" = 200 ]'
done
python3 -c 'import json; print(json.dumps({"text": "x" * 100000}))' >"$tmp/big.json"
code=$(curl -s -o "$tmp/b" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$tmp/big.json" "$U/v1/chunks")
check "body over --max-body: 400 naming the limit ($code)" '[ "$code" = 400 ] && is_error_obj && grep -q 65536 "$tmp/b"'
python3 -c 'import json; print(json.dumps({"prompt": " ".join(str(i * 7919 % 100003) for i in range(6000)), "max_tokens": 4}))' >"$tmp/long.json"
code=$(curl -s -o "$tmp/b" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$tmp/long.json" "$U/v1/completions")
check "prompt over the context: 400 naming the limit ($code)" '[ "$code" = 400 ] && grep -q "4096" "$tmp/b"'
req GET /v1/nothing
check "unknown route: 404 ($code)" '[ "$code" = 404 ] && is_error_obj'
req GET /v1/chat/completions
check "wrong method: 405 ($code)" '[ "$code" = 405 ] && is_error_obj'
req POST /v1/models '{}'
check "POST /v1/models: 405 ($code)" '[ "$code" = 405 ]'

# a client that disconnects: its request is cancelled and its KV freed
curl -s -N -m 120 "$U/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Tell me about a city."}],"max_tokens":3000,"ignore_eos":true,"stream":true}' >"$tmp/cut" &
cpid=$!
for _ in $(seq 1 100); do [ -s "$tmp/cut" ] && grep -q content "$tmp/cut" && break; sleep 0.1; done
kill -KILL "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
cancelled=""; used=""
for _ in $(seq 1 100); do
    curl -s "$U/metrics" >"$tmp/m"
    cancelled=$(sed -n 's/^tessera_generations_total{finish_reason="cancelled"} //p' "$tmp/m")
    used=$(sed -n 's/^tessera_kv_blocks{state="used"} //p' "$tmp/m")
    open=$(sed -n 's/^tessera_open_requests //p' "$tmp/m")
    [ "${cancelled:-0}" -ge 1 ] && [ "$used" = 0 ] && [ "$open" = 0 ] && break
    sleep 0.1
done
check "disconnect cancels the request (cancelled=$cancelled, used blocks=$used, open=$open)" '[ "${cancelled:-0}" -ge 1 ] && [ "$used" = 0 ] && [ "$open" = 0 ]'

# metrics: every family the issue asks for
for name in 'tessera_requests_total{status="200"}' 'tessera_requests_total{status="400"}' \
        tessera_time_to_first_token_seconds_bucket tessera_time_to_first_token_seconds_count \
        tessera_inter_token_latency_seconds_sum tessera_tokens_per_second tessera_generated_tokens_total \
        'tessera_kv_blocks{state="used"}' 'tessera_kv_blocks{state="free"}' tessera_prefix_cache_hit_rate \
        tessera_chunk_hit_rate tessera_kv_bytes_shared tessera_chunks; do
    check "metrics has $name" 'grep -qF "$name" "$tmp/m"'
done
check "metrics counted first tokens" '[ "$(sed -n "s/^tessera_time_to_first_token_seconds_count //p" "$tmp/m")" -ge 3 ]'

# seeded mutation fuzzing of every POST endpoint (fuzz_requests.py): each
# reply is 200 or a 4xx error object, never a 5xx or a broken connection;
# afterwards no KV block is held and no request is open
fz=$(python3 "$(dirname "$0")/fuzz_requests.py" "$U" --seed "${TS_FUZZ_SEED:-1}" \
     --count "${TS_FUZZ_REQUESTS:-400}" 2>&1); frc=$?
check "fuzzed requests: $(echo "$fz" | tail -n 1) ($(echo "$fz" | tail -n 2 | head -n 1 | sed 's/.*status //'))" '[ $frc -eq 0 ]'
[ $frc -eq 0 ] || echo "$fz" | grep FAIL | head -n 5 >&2
for _ in $(seq 1 100); do
    curl -s -o "$tmp/m" "$U/metrics"
    used=$(sed -n 's/^tessera_kv_blocks{state="used"} //p' "$tmp/m")
    open=$(sed -n 's/^tessera_open_requests //p' "$tmp/m")
    [ "$used" = 0 ] && [ "$open" = 0 ] && break
    sleep 0.1
done
check "after the fuzzing: no KV block held, no request open (used=$used, open=$open)" '[ "$used" = 0 ] && [ "$open" = 0 ]'
req POST /v1/chat/completions '{"messages":'"$msgs"',"temperature":0,"max_tokens":40}'
check "after the fuzzing: the document question still answered" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "\"800,585\" in d[\"choices\"][0][\"message\"][\"content\"]")" = True ]'

# SIGTERM with a request in flight: the server exits 0
curl -s -N -m 120 "$U/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Tell me about a city."}],"max_tokens":3000,"ignore_eos":true,"stream":true}' >"$tmp/term" &
cpid=$!
for _ in $(seq 1 100); do grep -q content "$tmp/term" 2>/dev/null && break; sleep 0.1; done
stop "$S1"; st=$?
wait "$cpid" 2>/dev/null
check "SIGTERM during a stream: exit status 0 ($st)" '[ "$st" -eq 0 ]'
check "the stream ended with [DONE]" 'grep -q "data: \[DONE\]" "$tmp/term"'
check "no sanitizer report (server 1)" '! grep -q "Sanitizer" "$tmp/s1.log"'

# ---------------------------------------------------------------- server 2: keys, small queue
if start "$tmp/s2.log" --api-key key-one --api-key key-two --max-waiting 1; then
    S2=$PID
    A=(-H 'Authorization: Bearer key-one'); Bk=(-H 'Authorization: Bearer key-two')
    req GET /v1/models
    check "no key: 401 ($code)" '[ "$code" = 401 ] && is_error_obj'
    req GET /v1/models "" -H 'Authorization: Bearer wrong'
    check "wrong key: 401 ($code)" '[ "$code" = 401 ]'
    req GET /health
    check "/health needs no key ($code)" '[ "$code" = 200 ]'
    req GET /
    check "/ needs no key ($code)" '[ "$code" = 200 ]'
    req GET /v1/models "" "${A[@]}"
    check "key one: 200 ($code)" '[ "$code" = 200 ]'
    req POST /v1/chunks '{"text":"'"$doc"'"}' "${A[@]}"
    ca=$(jv "$tmp/b" 'd["id"]')
    req POST /v1/chunks '{"text":"'"$doc"'"}' "${Bk[@]}"
    cb=$(jv "$tmp/b" 'd["id"]')
    check "same text under two keys: two chunks" '[ ${#ca} -eq 64 ] && [ ${#cb} -eq 64 ] && [ "$ca" != "$cb" ]'
    req GET "/v1/chunks/$ca" "" "${Bk[@]}"
    check "key two cannot see key one's chunk ($code)" '[ "$code" = 404 ]'
    req GET /v1/chunks "" "${Bk[@]}"
    check "key two's list lacks key one's chunk" '[ "$(jv "$tmp/b" "\"$ca\" in [c[\"id\"] for c in d[\"data\"]]")" = False ]'
    req DELETE "/v1/chunks/$ca" "" "${Bk[@]}"
    check "key two cannot delete key one's chunk ($code)" '[ "$code" = 404 ]'
    # prefix cache salted per key: key two's first identical prompt has nothing cached
    req POST /v1/chat/completions '{"messages":'"$msgs"',"temperature":0,"max_tokens":4}' "${A[@]}"
    req POST /v1/chat/completions '{"messages":'"$msgs"',"temperature":0,"max_tokens":4}' "${Bk[@]}"
    check "key two does not hit key one's prefix cache" '[ "$code" = 200 ] && [ "$(jv "$tmp/b" "d[\"usage\"][\"prompt_tokens_details\"][\"cached_tokens\"]")" = 0 ]'
    # a burst against --max-waiting 1: some 429, the rest 200
    bpids=()
    for i in 1 2 3 4 5 6; do
        curl -s -m 120 -o /dev/null -w '%{http_code}\n' "$U/v1/chat/completions" "${A[@]}" -H 'Content-Type: application/json' \
            -d '{"messages":[{"role":"user","content":"city '$i'"}],"max_tokens":48,"ignore_eos":true}' >"$tmp/burst$i" &
        bpids+=($!)
    done
    wait "${bpids[@]}" 2>/dev/null
    codes=$(cat "$tmp"/burst* | sort | uniq -c | tr '\n' ' ')
    check "burst: some 429 and some 200 ($codes)" 'cat "$tmp"/burst* | grep -q 429 && cat "$tmp"/burst* | grep -q 200 && ! cat "$tmp"/burst* | grep -qvE "^(200|429)$"'
    stop "$S2"; st=$?
    check "SIGTERM: exit status 0 ($st)" '[ "$st" -eq 0 ]'
    check "no sanitizer report (server 2)" '! grep -q "Sanitizer" "$tmp/s2.log"'
else
    bad "keyed server did not start: $(tail -n 3 "$tmp/s2.log")"
fi
[ "$fail" -ne 0 ] && { echo "--- server logs"; tail -n 20 "$tmp"/s*.log; } >&2
finish
