"""Answers with documents cited as chunks, through the HTTP API, against the
expected answers of the facts model's eval cases (run by
test_chunk_answers.sh). Prints one line per mode: MODE CORRECT TOTAL."""
import json
import os
import sys
import urllib.request

port, n_cases = int(sys.argv[1]), int(sys.argv[2])
cases_path = os.environ.get("TS_SHARED", "../shared") + "/models/facts-qwen3-14m/eval_dev.json"
cases = json.load(open(cases_path))["cases"]
cases = [c for i, c in enumerate(cases) if i % 6 == 0][:n_cases]


def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=120))


for mode in ("exact", "reuse", "repair"):
    ok = 0
    for c in cases:
        parts = [{"type": "text", "text": c["system"]}]
        for i, doc in enumerate(c["documents"]):
            cid = post("/v1/chunks", {"text": doc, "type": "document"})["id"]
            parts.append({"type": "text", "text": f"\n\n[Document {i + 1}]\n"})
            parts.append({"type": "chunk", "chunk_id": cid})
        msgs = [{"role": "system", "content": parts}, {"role": "user", "content": c["question"]}]
        r = post("/v1/chat/completions", {"messages": msgs, "max_tokens": 40, "temperature": 0,
                                          "chunk_mode": mode})
        ok += r["choices"][0]["message"]["content"].strip() == c["answer"].strip()
    print(mode, ok, len(cases), flush=True)
