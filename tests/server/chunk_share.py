"""Two servers sharing one Redis chunk store (run by test_chunk_redis_share.sh):
a chunk registered and used on server A is cited on server B, which never
registered it; B loads it from Redis and answers as A does. Prints
"check NAME ok|FAIL detail" lines."""
import json
import sys
import urllib.error
import urllib.request

port_a, port_b = int(sys.argv[1]), int(sys.argv[2])
case = json.load(open("../shared/models/facts-qwen3-14m/eval_dev.json"))["cases"][3]


def call(port, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read().decode()
    return json.loads(raw) if path != "/metrics" else raw


def metric(port, name):
    for line in call(port, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def check(name, ok, detail=""):
    print(f"check {name} {'ok' if ok else 'FAIL'} {detail}", flush=True)


ids = [call(port_a, "/v1/chunks", {"text": d, "type": "document"})["id"] for d in case["documents"]]


def ask(port):
    parts = [{"type": "text", "text": case["system"]}]
    for i, cid in enumerate(ids):
        parts += [{"type": "text", "text": f"\n\n[Document {i + 1}]\n"}, {"type": "chunk", "chunk_id": cid}]
    msgs = [{"role": "system", "content": parts}, {"role": "user", "content": case["question"]}]
    r = call(port, "/v1/chat/completions", {"messages": msgs, "max_tokens": 40, "temperature": 0,
                                            "chunk_mode": "reuse"})
    return r["choices"][0]["message"]["content"]


a = ask(port_a)
check("store_up_a", metric(port_a, "tessera_chunk_store_up") == 1)
try:
    call(port_b, f"/v1/chunks/{ids[0]}")
    seen = True
except urllib.error.HTTPError:
    seen = False
check("b_finds_chunk_through_store", seen)
b = ask(port_b)
check("same_answer", a == b, f"a={a!r} b={b!r}")
check("right_answer", a.strip() == case["answer"].strip(), repr(a))
loads = metric(port_b, "tessera_chunk_store_loads_total")
check("b_loaded_from_redis", loads is not None and loads >= len(ids), f"loads={loads}")
check("b_computed_nothing_twice", metric(port_b, "tessera_chunk_misses_total") in (None, 0.0),
      f"misses={metric(port_b, 'tessera_chunk_misses_total')}")
