#!/usr/bin/env bash
# End-to-end checks of build/tessera's commands on the shipped models.
# Uses $TS_BUILD (default build) and $TS_SHARED (default ../shared).
set -u
B=${TS_BUILD:-build}
S=${TS_SHARED:-../shared}
T="$B/tessera"
FACTS="$S/models/facts-qwen3-14m"
QWEN="$S/golden/qwen3-tiny-random"
LLAMA="$S/golden/llama3-tiny-random"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_cli: $*" >&2; }
check() { if eval "$2"; then ok; else bad "$1"; fi; }

# generate: only the completion on stdout, one stats line on stderr
q='How many people live in Valvalford?'
sys=$'You answer questions using only the documents below.\n\n[Document 1]\nValvalford is a city located in Helara. It was founded in 1721 by Pel Isnorwen. About 800,585 people live there. Valvalford is famous for its silver observatories.'
"$T" generate -m "$FACTS" --chat --system "$sys" -p "$q" -n 32 --threads 2 >"$tmp/out" 2>"$tmp/err"
check "generate exit status" '[ $? -eq 0 ]'
check "generate answers from the document" 'grep -q "800,585" "$tmp/out"'
check "generate prints one stats line" '[ "$(grep -c "ttft" "$tmp/err")" -eq 1 ]'

# seeded sampling is reproducible
"$T" generate -m "$FACTS" -p "Valvalford is" -n 16 --temp 0.9 --seed 7 >"$tmp/s1" 2>/dev/null
"$T" generate -m "$FACTS" -p "Valvalford is" -n 16 --temp 0.9 --seed 7 >"$tmp/s2" 2>/dev/null
check "same seed, same text" 'cmp -s "$tmp/s1" "$tmp/s2"'

# tokenize matches the golden ids (with special tokens: HF's default)
ids=$("$T" tokenize -m "$LLAMA" --text "Hello, world!")
want=$(python3 -c "import json;c=json.load(open('$S/golden/tokenizer_cases.json'))['llama3'];print([x['ids_with_special'] for x in c if x['text']=='Hello, world!'][0])" 2>/dev/null)
check "tokenize llama3 'Hello, world!' ($ids vs $want)" '[ -n "$want" ] && [ "$ids" = "$want" ]'

# logits: the last position equals the reference file
pids=$(python3 -c "import json;r=json.load(open('$QWEN/reference.json'));print(','.join(map(str,r['prompts'][0]['ids'])))")
"$T" logits -m "$QWEN" --ids "$pids" --out "$tmp/l.f32" --threads 2
check "logits exit status" '[ $? -eq 0 ]'
check "logits match reference" 'python3 - "$tmp/l.f32" "$QWEN/last_logits_0.f32" <<PY
import sys, struct, math
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
if len(a) != len(b): sys.exit(1)
n = len(a) // 4
x = struct.unpack("<%df" % n, a); y = struct.unpack("<%df" % n, b)
num = sum((p - q) ** 2 for p, q in zip(x, y)); den = sum(q * q for q in y)
sys.exit(0 if math.sqrt(num / den) < 1e-4 else 1)
PY'

# errors: one sentence, non-zero exit, no crash
"$T" logits -m "$QWEN" --ids 1,999999999 --out "$tmp/x" 2>"$tmp/e"; rc=$?
check "out-of-range id rejected (rc=$rc)" '[ $rc -eq 1 ] && grep -q "out of range" "$tmp/e"'
"$T" generate -m "$tmp/nonexistent" -p hi 2>"$tmp/e"; rc=$?
check "missing model dir (rc=$rc)" '[ $rc -eq 1 ] && grep -q "config.json" "$tmp/e"'
mkdir -p "$tmp/arch"; sed 's/Qwen3ForCausalLM/MambaForCausalLM/' "$QWEN/config.json" >"$tmp/arch/config.json"
"$T" generate -m "$tmp/arch" -p hi 2>"$tmp/e"; rc=$?
check "unknown architecture (rc=$rc)" '[ $rc -eq 1 ] && grep -q "Qwen3ForCausalLM" "$tmp/e"'
mkdir -p "$tmp/trunc"; cp "$QWEN"/*.json "$tmp/trunc/"; head -c 100000 "$QWEN/model.safetensors" >"$tmp/trunc/model.safetensors"
"$T" generate -m "$tmp/trunc" -p hi 2>"$tmp/e"; rc=$?
check "truncated checkpoint (rc=$rc)" '[ $rc -eq 1 ] && grep -q "model.safetensors" "$tmp/e"'

# generate -f: one prompt per line as one batch, completions in order,
# identical to running each alone
printf 'Valvalford is\nThe capital of\nValvalford is a city\n' >"$tmp/prompts"
"$T" generate -m "$FACTS" -f "$tmp/prompts" -n 8 --threads 2 --exact >"$tmp/batch" 2>/dev/null
check "generate -f exit status" '[ $? -eq 0 ] && [ "$(wc -l <"$tmp/batch")" -eq 3 ]'
: >"$tmp/single"
while IFS= read -r line; do
    "$T" generate -m "$FACTS" -p "$line" -n 8 --threads 2 --exact 2>/dev/null | sed 's/$/\\n/' | tr -d '\n' | sed 's/\\n$//' >>"$tmp/single"
    echo >>"$tmp/single"
done <"$tmp/prompts"
check "generate -f equals one at a time" 'cmp -s "$tmp/batch" "$tmp/single"'

# bench: one JSON object, warm figures (median of reps after an untimed
# warm-up) and the cold first run's beside them
"$T" bench -m "$FACTS" --prompt 24 --gen 6 --depth 40 --reps 2 --threads 2 >"$tmp/b" 2>"$tmp/e"
check "bench exit status" '[ $? -eq 0 ]'
check "bench: positive warm and cold figures, the arguments echoed" 'python3 -c "
import json,sys; r=json.load(open(\"$tmp/b\"))
ok=all(r[k]>0 for k in (\"prefill_tok_s\",\"decode_tok_s\",\"cold_prefill_tok_s\",\"cold_decode_tok_s\"))
sys.exit(0 if ok and r[\"prompt\"]==24 and r[\"gen\"]==6 and r[\"depth\"]==40 and r[\"reps\"]==2 else 1)"'

# bench-shared: sharing is exact and holds the prefix once
"$T" bench-shared -m "$FACTS" --requests 4 --prefix 128 --suffix 8 --gen 8 --threads 2 >"$tmp/bs" 2>"$tmp/e"
check "bench-shared exit status" '[ $? -eq 0 ]'
check "bench-shared: identical outputs, hits, KV <= 1.2x ideal" 'python3 -c "
import json,sys; r=json.load(open(\"$tmp/bs\"))
sys.exit(0 if r[\"outputs_identical\"] and r[\"prefix_hit_rate\"]>0.5 and r[\"kv_used_over_ideal\"]<=1.2 and r[\"cascade_steps\"]>0 else 1)"'

# chunk composition: repair recovers over reuse on average; a second process
# reads the chunks back from the directory store; a corrupted file is
# refused and recomputed with the same answers
for m in reuse repair; do
    "$T" eval-qa -m "$FACTS" --cases "$FACTS/eval_dev.json" --limit 6 --mode $m --repair-frac 1.0 \
        --chunk-store "$tmp/chunks" --threads 2 --exact >"$tmp/c_$m" 2>"$tmp/e"
    check "eval-qa --mode $m exit status" '[ $? -eq 0 ]'
done
check "repair(1.0) agrees with full" 'python3 -c "
import json,sys; r=json.load(open(\"$tmp/c_repair\"))
sys.exit(0 if r[\"agreement_with_full\"]==1.0 and r[\"store_loads\"]>0 else 1)"'
f=$(ls "$tmp/chunks" | head -n 1)
printf '\001' | dd of="$tmp/chunks/$f" bs=1 seek=200 conv=notrunc 2>/dev/null
"$T" eval-qa -m "$FACTS" --cases "$FACTS/eval_dev.json" --limit 6 --mode reuse \
    --chunk-store "$tmp/chunks" --threads 2 --exact >"$tmp/c_again" 2>"$tmp/e"
check "corrupt chunk file refused and recomputed" 'grep -q "corrupt" "$tmp/e" && python3 -c "
import json,sys; a=json.load(open(\"$tmp/c_reuse\")); b=json.load(open(\"$tmp/c_again\"))
sys.exit(0 if a[\"accuracy\"]==b[\"accuracy\"] and b[\"store_loads\"]>0 else 1)"'

# eval-qa on facts-qwen3-14m: accuracy and agreement with HF's outputs
limit=""; [ -n "${TS_TEST_LIGHT:-}" ] && limit="--limit 16"
"$T" eval-qa -m "$FACTS" --cases "$FACTS/eval_dev.json" --threads 2 $limit >"$tmp/eval" 2>"$tmp/e"
check "eval-qa exit status" '[ $? -eq 0 ]'
cat "$tmp/eval"
check "eval-qa accuracy >= 0.98 and reference match >= 0.98" 'python3 -c "
import json,sys; r=json.load(open(\"$tmp/eval\"))
sys.exit(0 if r[\"accuracy\"]>=0.98 and r[\"reference_match\"]>=0.98 and r[\"prompt_mismatches\"]==0 else 1)"'

# an f16 KV cache: the same accuracy bar, and chunks placed into it with
# repair(1.0) give the answers of the full prefill over the same cache
"$T" eval-qa -m "$FACTS" --cases "$FACTS/eval_dev.json" --threads 2 --kv-dtype f16 $limit \
    >"$tmp/eval16" 2>"$tmp/e"
check "eval-qa --kv-dtype f16 exit status" '[ $? -eq 0 ]'
check "eval-qa --kv-dtype f16 accuracy >= 0.98 and reference match >= 0.98" 'python3 -c "
import json,sys; r=json.load(open(\"$tmp/eval16\"))
sys.exit(0 if r[\"accuracy\"]>=0.98 and r[\"reference_match\"]>=0.98 and r[\"prompt_mismatches\"]==0 else 1)"'
"$T" eval-qa -m "$FACTS" --cases "$FACTS/eval_dev.json" --limit 6 --mode repair --repair-frac 1.0 \
    --threads 2 --exact --kv-dtype f16 >"$tmp/c16" 2>"$tmp/e"
check "eval-qa --kv-dtype f16 --mode repair(1.0) agrees with full" 'python3 -c "
import json,sys; r=json.load(open(\"$tmp/c16\"))
sys.exit(0 if r[\"agreement_with_full\"]==1.0 else 1)"'
# a bf16 KV cache (f32's range in half the bytes): the same accuracy bar
"$T" eval-qa -m "$FACTS" --cases "$FACTS/eval_dev.json" --threads 2 --kv-dtype bf16 $limit \
    >"$tmp/evalb16" 2>"$tmp/e"
check "eval-qa --kv-dtype bf16 exit status" '[ $? -eq 0 ]'
check "eval-qa --kv-dtype bf16 accuracy >= 0.98 and reference match >= 0.98" 'python3 -c "
import json,sys; r=json.load(open(\"$tmp/evalb16\"))
sys.exit(0 if r[\"accuracy\"]>=0.98 and r[\"reference_match\"]>=0.98 and r[\"prompt_mismatches\"]==0 else 1)"'
"$T" generate -m "$FACTS" -p hi -n 2 --kv-dtype q8 >/dev/null 2>"$tmp/e"
check "--kv-dtype q8 refused with a clear error" '[ $? -ne 0 ] && grep -q "expected f32, f16 or bf16" "$tmp/e"'

echo "test_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
