#!/usr/bin/env python3
"""Seeded mutation fuzzing of a running "tessera serve" over HTTP.

Starts from valid request bodies for every POST endpoint, mutates them
(values of the wrong type or at the edges, keys removed or added, arrays
repeated, nesting, and raw-byte damage: truncation, flipped bytes, invalid
UTF-8) and sends each to the server. Every reply must be
  - 200 with the endpoint's JSON (or, streamed, SSE events ending in
    "data: [DONE]"), or
  - 4xx (400, 404, 413, 429) with an OpenAI error object,
and the connection must never break: a 5xx, a reset or a timeout is a
failure (under the sanitizer build a memory error kills the server, which
shows up here as resets). Bodies that would ask for long generations keep
max_tokens small, so a run stays quick.

Usage: fuzz_requests.py BASE_URL [--seed S] [--count N]
(registers one chunk first, so that chunk citations resolve)
Prints one line per failure and "fuzz_requests: N passed, N failed";
exits 1 on any failure. Standard library only.
"""
import argparse
import copy
import http.client
import json
import random
import sys
import urllib.parse

DOC = ("Valvalford is a city located in Helara. It was founded in 1721 by Pel "
       "Isnorwen. About 800,585 people live there.")


def seeds(chunk):
    sys_msg = {"role": "system", "content": "Answer from the documents.\n\n[Document 1]\n" + DOC}
    user = {"role": "user", "content": "How many people live in Valvalford?"}
    chat = [
        {"messages": [sys_msg, user], "max_tokens": 4, "temperature": 0},
        {"messages": [user], "max_tokens": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
         "min_p": 0.05, "seed": 7, "stop": ["\n", "."], "repetition_penalty": 1.1},
        {"messages": [user], "max_tokens": 3, "stream": True,
         "stream_options": {"include_usage": True}},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Who founded it?"}]}],
         "max_tokens": 3, "chat_template_kwargs": {"enable_thinking": False}},
        {"messages": [user, {"role": "assistant", "content": "About 800,585."}, user],
         "max_completion_tokens": 3, "n": 1, "model": "facts-qwen3-14m"},
    ]
    if chunk:
        chat.append({"messages": [{"role": "user", "content": [
            {"type": "chunk", "chunk_id": chunk},
            {"type": "text", "text": "Who founded Valvalford?"}]}],
            "max_tokens": 3, "chunk_mode": "reuse"})
    comp = [
        {"prompt": "The capital of Helara is", "max_tokens": 4},
        {"prompt": [1, 2, 3, 4], "max_tokens": 2, "temperature": 1.0, "seed": 3},
        {"prompt": "Once", "max_tokens": 3, "stream": True, "stop": "x", "logprobs": None},
    ]
    chunks = [{"text": DOC, "type": "document"}, {"content": "A short note."}, {"ids": [1, 2, 3]}]
    return ([("/v1/chat/completions", b) for b in chat] +
            [("/v1/completions", b) for b in comp] + [("/v1/chunks", b) for b in chunks])


EDGE = [None, True, False, 0, -1, 1, 2, 7, 2**31, -2**31, 2**63 - 1, -2**63, 2**64, 10**30,
        0.5, -0.0, 1e-308, 1e308, -1e308, "", "a", "0", "1e9", "null", "\u0000", "\uffff",
        "\U0001F600" * 3, "é" * 50, "<|im_start|>", "<think>", "{{ x }}", "{% for %}",
        [], [1], ["a"], [None], {}, {"a": 1}, {"type": "text"}, {"type": "chunk"}]


def rand_value(rng, depth=0):
    r = rng.random()
    if r < 0.55 or depth > 3:
        return copy.deepcopy(rng.choice(EDGE))
    if r < 0.7:
        return "x" * rng.choice([100, 1000, 5000, 20000, 70000])
    if r < 0.85:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["role", "content", "type", "text", "chunk_id", "x"]): rand_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def paths(v):
    """Every (container, key) in the tree, for replacing or deleting."""
    out = []
    if isinstance(v, dict):
        for k in list(v):
            out.append((v, k))
            out += paths(v[k])
    elif isinstance(v, list):
        for i in range(len(v)):
            out.append((v, i))
            out += paths(v[i])
    return out


def mutate(rng, body):
    b = copy.deepcopy(body)
    for _ in range(rng.randint(1, 2)):
        ps = paths(b)
        op = rng.random()
        if not ps or op < 0.05:
            b = rand_value(rng)  # the whole body replaced
            continue
        cont, key = rng.choice(ps)
        if op < 0.6:
            cont[key] = rand_value(rng)
        elif op < 0.75:
            del cont[key]
        elif op < 0.85 and isinstance(cont[key], list):
            cont[key] = cont[key] * rng.choice([2, 17, 300])
        elif op < 0.92:
            deep = rand_value(rng)
            for _ in range(rng.choice([10, 100, 500])):
                deep = [deep]
            cont[key] = deep
        elif isinstance(cont, dict):
            cont[rng.choice(["extra", "logit_bias", "tools", "user", "response_format"])] = rand_value(rng)
    # keep generations short: a fuzzed max_tokens stays, but large ones rarely
    if isinstance(b, dict):
        for k in ("max_tokens", "max_completion_tokens"):
            if isinstance(b.get(k), int) and not isinstance(b.get(k), bool) and b[k] > 8 and rng.random() < 0.9:
                b[k] = 8
        if "max_tokens" not in b and "max_completion_tokens" not in b and rng.random() < 0.9:
            b["max_tokens"] = 4
    return b


def damage(rng, raw):
    """Raw-byte damage to a serialised body."""
    r = rng.random()
    if r < 0.3 and raw:
        return raw[:rng.randrange(len(raw))]
    if r < 0.55 and raw:
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if r < 0.8:
        cut = rng.randrange(len(raw) + 1)
        return raw[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xf4\x90\x80\x80"]) + raw[cut:]
    return raw + b"}" * rng.randint(1, 3)


def check(path, status, ctype, data, stream):
    """Returns None if the reply is acceptable, else why not."""
    if status >= 500:
        return "status %d" % status
    if status != 200:
        if status not in (400, 404, 413, 429):
            return "unexpected status %d" % status
        try:
            e = json.loads(data)["error"]
            if not isinstance(e["message"], str) or not e["message"]:
                return "error without a message"
        except Exception as x:
            return "status %d without an error object (%s)" % (status, x)
        return None
    if stream and "text/event-stream" in ctype:
        text = data.decode("utf-8", "replace")
        if "data: [DONE]" not in text:
            return "stream without [DONE]"
        for line in text.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                try:
                    json.loads(line[6:])
                except Exception:
                    return "stream event is not JSON: %r" % line[:80]
        return None
    try:
        d = json.loads(data)
    except Exception:
        return "200 without JSON"
    if path == "/v1/chunks":
        return None if isinstance(d.get("id"), str) else "chunk reply without an id"
    if not isinstance(d.get("choices"), list) or not d["choices"]:
        return "200 without choices"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    rng = random.Random(a.seed)
    chunk = ""
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
        conn.request("POST", "/v1/chunks", body=json.dumps({"text": DOC, "type": "document"}),
                     headers={"Content-Type": "application/json"})
        chunk = json.loads(conn.getresponse().read())["id"]
        conn.close()
    except Exception as x:
        print("FAIL fuzz_requests: registering a chunk: %s" % x)
        print("fuzz_requests: 0 passed, 1 failed")
        sys.exit(1)
    base = seeds(chunk)
    passed = failed = 0
    seen = {}  # status -> count
    for i in range(a.count):
        path, body = rng.choice(base)
        mb = mutate(rng, body)
        raw = json.dumps(mb, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        if rng.random() < 0.15:
            raw = damage(rng, raw)
        stream = isinstance(mb, dict) and mb.get("stream") is True
        why = None
        try:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
            conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            seen[resp.status] = seen.get(resp.status, 0) + 1
            why = check(path, resp.status, resp.getheader("Content-Type", ""), data, stream)
            conn.close()
        except Exception as x:
            why = "connection: %s: %s" % (type(x).__name__, x)
        if why:
            failed += 1
            print("FAIL fuzz_requests #%d %s: %s; body %r" % (i, path, why, raw[:300]))
            if why.startswith("connection"):
                break  # the server is gone: later requests say nothing more
        else:
            passed += 1
    print("fuzz_requests: replies by status %s" % dict(sorted(seen.items())))
    print("fuzz_requests: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
