#!/usr/bin/env bash
# bench-batch (nano-vllm's throughput workload) on facts-qwen3-14m: the JSON
# summary's fields, every requested token generated (ignore_eos), the
# workload file written with --out matching the summary (independently
# re-read in Python) and the same seed giving the same workload; bad
# ranges fail with a message. Uses $TS_BUILD and $TS_SHARED.
set -u
B=${TS_BUILD:-build}
S=${TS_SHARED:-../shared}
T="$B/tessera"
M="$S/models/facts-qwen3-14m"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL bench_batch: $*" >&2; }
check() { if eval "$2"; then ok; else bad "$1"; fi; }

"$T" bench-batch -m "$M" --requests 7 --in-min 4 --in-max 30 --out-min 2 --out-max 12 --seed 11 \
    --out "$tmp/w1.json" >"$tmp/o1.json" 2>"$tmp/e1"
check "bench-batch exits 0 ($(head -c 200 "$tmp/e1"))" '[ $? -eq 0 ]'
python3 - "$tmp/o1.json" "$tmp/w1.json" >"$tmp/py" 2>&1 <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = json.load(open(sys.argv[2]))
assert s["requests"] == 7 == len(w), (s, len(w))
assert s["failed"] == 0, s
want = sum(r["max_tokens"] for r in w)
assert s["output_tokens"] == want == s["output_tokens_requested"], (s, want)
assert s["prompt_tokens"] == sum(len(r["prompt_ids"]) for r in w), s
for r in w:
    assert 4 <= len(r["prompt_ids"]) <= 30 and 2 <= r["max_tokens"] <= 12, r
    assert all(0 <= i < 4096 for i in r["prompt_ids"]), r
for k in ("seconds", "output_tok_s", "total_tok_s", "ttft_ms_mean", "ttft_ms_p50", "peak_running", "steps"):
    assert s[k] > 0, (k, s)
assert 1 <= s["peak_running"] <= 7, s
print("ok")
PY
check "summary agrees with the workload ($(tail -c 300 "$tmp/py"))" 'grep -qx ok "$tmp/py"'

"$T" bench-batch -m "$M" --requests 7 --in-min 4 --in-max 30 --out-min 2 --out-max 12 --seed 11 \
    --out "$tmp/w2.json" >/dev/null 2>&1
check "same seed, same workload" 'cmp -s "$tmp/w1.json" "$tmp/w2.json"'
"$T" bench-batch -m "$M" --requests 7 --in-min 4 --in-max 30 --out-min 2 --out-max 12 --seed 12 \
    --out "$tmp/w3.json" >/dev/null 2>&1
check "another seed, another workload" '! cmp -s "$tmp/w1.json" "$tmp/w3.json"'

"$T" bench-batch -m "$M" --requests 2 --in-min 9 --in-max 3 >"$tmp/o4" 2>"$tmp/e4"
check "in-min > in-max fails" '[ $? -eq 2 ] && grep -q "in-min" "$tmp/e4" && [ ! -s "$tmp/o4" ]'
"$T" bench-batch -m "$M" --requests 2 --out-min 0 >/dev/null 2>"$tmp/e5"
check "out-min 0 fails" '[ $? -ne 0 ] && [ -s "$tmp/e5" ]'

echo "test_bench_batch: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
