#!/usr/bin/env bash
# One command for the GPU machine: runs the GPU tests, the whole-model runs
# and the timing tables, and prints a summary table last.
# Builds nothing: the binaries come prebuilt (make CUDA=1 B=build-cuda
# build-cuda/tessera gpu-tests build-cuda/tools/make_random_qwen3, then carry
# them). Usage: tests/gpu/run.sh [bin dir]
# Environment:
#   TS_SHARED      the shared data (golden/, models/facts-qwen3-14m,
#                  tokenizers/qwen3); default ../shared
#   TESSERA        the CLI built with CUDA=1 (default build-cuda/tessera)
#   MAKE_RANDOM    tools/make_random_qwen3 (default build-cuda/tools/...)
#   TS_GPU_PARTS   which parts to run: any of "ops model cli bench" (default all)
#   TS_GPU_MODELS  passed to test_gpu_model: any of "qwen3 llama3 facts"
#   TS_GPU_MEMCHECK=1  also runs compute-sanitizer over test_gpu_ops (slow)
set -u
dir=${1:-build-cuda/tests/gpu}
S=${TS_SHARED:-../shared}
export TS_SHARED=$S
T=${TESSERA:-build-cuda/tessera}
MR=${MAKE_RANDOM:-build-cuda/tools/make_random_qwen3}
parts=${TS_GPU_PARTS:-ops model cli bench}
has() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
# cuBLAS: the toolkit's, else the one PyTorch's wheels bring
if ! ldconfig -p 2>/dev/null | grep -q libcublas.so.13 && [ ! -e /usr/local/cuda/lib64/libcublas.so.13 ]; then
    py=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))' 2>/dev/null)
    [ -n "$py" ] && export LD_LIBRARY_PATH="$py/lib:${LD_LIBRARY_PATH:-}"
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>/dev/null)
echo "$gpu"
pass=0; fail=0
summary=()
row() { summary+=("$(printf '| %-44s | %s |' "$1" "$2")"); }
ok() { pass=$((pass + 1)); row "$1" "ok${2:+ ($2)}"; }
bad() { fail=$((fail + 1)); row "$1" "FAILED${2:+ ($2)}"; echo "FAILED: $1 ${2:-}"; }

for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    case $name in test_gpu_model) has model || continue ;; *) has ops || continue ;; esac
    out=$("$t" 2>&1); rc=$?
    echo "$out"
    line=$(echo "$out" | grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' | tail -1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed/\1/')
        pass=$((pass + p)); fail=$((fail + f))
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && fail=$((fail + 1))
        row "$name" "$p passed, $f failed"
    else
        echo "$t: crashed (exit $rc)"; bad "$name" "crashed, exit $rc"
    fi
done
# the compiled wgmma loops against the register clobber ptxas once made
# (sass_check.py); needs the toolkit's cuobjdump
CO=$(command -v cuobjdump || ls /usr/local/cuda*/bin/cuobjdump 2>/dev/null | head -1)
if has ops && [ -x "$dir/test_gpu_ops" ] && [ -n "$CO" ]; then
    python3 "$(dirname "$0")/sass_check.py" --self-test || bad "sass_check.py --self-test"
    sc=$("$CO" -sass "$dir/test_gpu_ops" | python3 "$(dirname "$0")/sass_check.py" 2>&1); rc=$?
    echo "$sc"
    [ $rc -eq 0 ] && ok "sass_check: wgmma loops keep q" "$(echo "$sc" | tail -1 | sed 's/sass_check: //')" \
        || bad "sass_check: wgmma loops keep q" "$(echo "$sc" | grep -m1 FAIL | cut -c1-80)"
fi
if has ops && [ -x "$dir/bench_gpu" ]; then
    "$dir/bench_gpu" || bad bench_gpu "exit $?"
    # PyTorch SDPA on the cascade table's shapes, same run (needs torch)
    sd=$(python3 "$(dirname "$0")/bench_sdpa.py" 2>&1 | tail -1)
    echo "sdpa: $sd"
    echo "$sd" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["bf16"]["us"], d["f32"]["us"])' >/tmp/sdpa.txt 2>/dev/null \
        && row "PyTorch SDPA B=64 x 4128 keys (bf16 / f32 us)" "$(cat /tmp/sdpa.txt)" || bad "bench_sdpa.py" "$sd"
fi

# ---- the CLI on the GPU against the CPU (same binary, same machine) ----
F=$S/models/facts-qwen3-14m
if has cli && [ -x "$T" ] && [ -d "$F" ]; then
    tmp=$(mktemp -d)
    prompts=("The capital of France is" "Q: Who wrote the report on the river? A:" "Once upon a time")
    same=0
    for p in "${prompts[@]}"; do
        "$T" generate -m "$F" -p "$p" -n 64 --exact --device cpu >"$tmp/c.txt" 2>/dev/null
        "$T" generate -m "$F" -p "$p" -n 64 --device cuda >"$tmp/g.txt" 2>"$tmp/g.err"
        if cmp -s "$tmp/c.txt" "$tmp/g.txt" && [ -s "$tmp/g.txt" ]; then same=$((same + 1)); else
            echo "generate differs for '$p':"; head -c 300 "$tmp/c.txt"; echo; head -c 300 "$tmp/g.txt"; echo; cat "$tmp/g.err"
        fi
    done
    [ $same -eq ${#prompts[@]} ] && ok "generate -n 64: GPU text = CPU text" "$same/${#prompts[@]} prompts" \
        || bad "generate -n 64: GPU text = CPU text" "$same/${#prompts[@]}"
    # batch through the engine (generate -f), cascade on
    doc="Document: The river Aldmere flows through the town of Brenwick, where the old mill stands beside the stone bridge that the mason Harlan Voss built in 1820 for the wool merchants."
    printf '%s\n' "$doc Question: Who built the bridge? Answer:" "$doc Question: Which town does the river flow through? Answer:" \
        "$doc Question: When was the bridge built? Answer:" "${prompts[@]}" \
        "$doc Question: Who stands beside the bridge? Answer:" "$doc Question: What does the mill grind? Answer:" \
        "Tell me about the river." "The mason was" "In 1820 the merchants" "A town called" >"$tmp/batch.txt"
    # 12 sequences: decode steps above the graph size (8) take the other path
    "$T" generate -m "$F" -f "$tmp/batch.txt" -n 32 --exact --cascade on --device cpu >"$tmp/bc.txt" 2>/dev/null
    "$T" generate -m "$F" -f "$tmp/batch.txt" -n 32 --cascade on --device cuda >"$tmp/bg.txt" 2>"$tmp/bg.err"
    if cmp -s "$tmp/bc.txt" "$tmp/bg.txt" && [ -s "$tmp/bg.txt" ]; then ok "generate -f (engine batch): GPU = CPU"
    else bad "generate -f (engine batch): GPU = CPU"; cat "$tmp/bg.err"; diff "$tmp/bc.txt" "$tmp/bg.txt" | head; fi
    # TS_CUDA_GRAPH_ROWS=64 (opt-in): steps of 9-64 rows recorded as graphs
    # too, cuBLAS inside; the 12 sequences, and 40 (the 12 again) with
    # cascade on and off, against the CPU
    for i in 1 2 3 4; do cat "$tmp/batch.txt"; done | head -40 >"$tmp/b40.txt"
    for cas in on off; do
        "$T" generate -m "$F" -f "$tmp/b40.txt" -n 16 --exact --cascade $cas --device cpu >"$tmp/b40c$cas.txt" 2>/dev/null
    done
    for run in "batch.txt 32 on bc.txt" "b40.txt 16 on b40con.txt" "b40.txt 16 off b40coff.txt"; do
        read -r in ng cas ref <<<"$run"
        TS_CUDA_GRAPH_ROWS=64 "$T" generate -m "$F" -f "$tmp/$in" -n "$ng" --cascade "$cas" --device cuda >"$tmp/gr.txt" 2>"$tmp/gr.err"
        if cmp -s "$tmp/$ref" "$tmp/gr.txt" && [ -s "$tmp/gr.txt" ]; then ok "graphs to 64 rows: generate -f $in, cascade $cas: GPU = CPU"
        else bad "graphs to 64 rows: generate -f $in, cascade $cas: GPU = CPU"; cat "$tmp/gr.err"; diff "$tmp/$ref" "$tmp/gr.txt" | head; fi
    done
    # every sequence behind one shared document: a decode step's cascade runs
    # as one attention_cascade op on the GPU (the CPU runs the levels apart)
    grep -F "$doc" "$tmp/batch.txt" >"$tmp/shared.txt"
    "$T" generate -m "$F" -f "$tmp/shared.txt" -n 32 --exact --cascade on --device cpu >"$tmp/sc.txt" 2>/dev/null
    "$T" generate -m "$F" -f "$tmp/shared.txt" -n 32 --cascade on --device cuda >"$tmp/sg.txt" 2>"$tmp/sg.err"
    if cmp -s "$tmp/sc.txt" "$tmp/sg.txt" && [ -s "$tmp/sg.txt" ]; then ok "generate -f, one shared prefix (attention_cascade): GPU = CPU" "$(wc -l <"$tmp/sg.txt") prompts"
    else bad "generate -f, one shared prefix (attention_cascade): GPU = CPU"; cat "$tmp/sg.err"; diff "$tmp/sc.txt" "$tmp/sg.txt" | head; fi
    # sampling on the device: greedy batch = CPU, seeded sampling = host sampling
    sc=$(bash "$(dirname "$0")/sample_check.sh" "$T" "$F" 2>&1); echo "$sc"
    [ "$(echo "$sc" | grep -c -e '= CPU' -e '= host sampling')" -eq 3 ] && ok "device sampling (greedy, seeded t=0.7, top-k/top-p/min-p)" \
        || bad "device sampling" "$(echo "$sc" | head -c 200)"
    # the engine honours the device (a missing GPU must fail, not fall back to the CPU)
    if "$T" generate -m "$F" -f "$tmp/batch.txt" -n 4 --device cuda:99 >/dev/null 2>"$tmp/e99"; then
        bad "generate -f --device cuda:99 fails"; else grep -q 'cuda:99' "$tmp/e99" && ok "generate -f --device cuda:99 fails" \
        || bad "generate -f --device cuda:99 message" "$(head -c 200 "$tmp/e99")"; fi
    # eval-qa: whole-prompt prefill, then chunks placed (reuse mode); f32
    # and bf16 KV pools (both devices round K/V the same way)
    for kv in f32 bf16; do for mode in "" reuse; do
        m="${mode:+--mode $mode} --kv-dtype $kv"
        "$T" eval-qa -m "$F" --cases "$F/eval_dev.json" $m --exact --device cpu >"$tmp/ec.json" 2>/dev/null
        "$T" eval-qa -m "$F" --cases "$F/eval_dev.json" $m --device cuda >"$tmp/eg.json" 2>"$tmp/eg.err"
        ac=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$tmp/ec.json" 2>/dev/null)
        ag=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$tmp/eg.json" 2>/dev/null)
        echo "eval-qa ${mode:-full prompt} $kv KV: cpu $(cat "$tmp/ec.json")"
        echo "eval-qa ${mode:-full prompt} $kv KV: gpu $(cat "$tmp/eg.json")"; cat "$tmp/eg.err"
        if [ -n "$ag" ] && [ "$ag" = "$ac" ]; then ok "eval-qa ${mode:-} $kv KV: GPU accuracy = CPU" "$ag"
        else bad "eval-qa ${mode:-} $kv KV: GPU accuracy = CPU" "gpu ${ag:-none}, cpu ${ac:-none}"; fi
    done; done
    # the engine batch with cascade on a bf16 pool (the shared level's
    # tensor-core path rounds the probabilities to bf16: lines may differ
    # where two tokens are nearly tied; report how many agree, fail below 10/12)
    "$T" generate -m "$F" -f "$tmp/batch.txt" -n 32 --exact --cascade on --kv-dtype bf16 --device cpu >"$tmp/bc16.txt" 2>/dev/null
    "$T" generate -m "$F" -f "$tmp/batch.txt" -n 32 --cascade on --kv-dtype bf16 --device cuda >"$tmp/bg16.txt" 2>"$tmp/bg16.err"
    n16=$(python3 -c 'import sys; a, b = (open(f).read().split("\n") for f in sys.argv[1:]); print(sum(x == y and x != "" for x, y in zip(a, b)))' "$tmp/bc16.txt" "$tmp/bg16.txt")
    [ "$n16" -ge 10 ] && ok "generate -f, cascade, bf16 KV: GPU lines = CPU lines" "$n16/12" \
        || { bad "generate -f, cascade, bf16 KV: GPU lines = CPU lines" "$n16/12"; cat "$tmp/bg16.err"; }
    # the OpenAI-compatible server on the GPU: chunks in every mode, streaming
    sv=$(bash "$(dirname "$0")/server_check.sh" "$T" "$S" 2>&1); src=$?; echo "$sv"
    [ $src -eq 0 ] && ok "serve --device cuda (chunks exact/reuse/repair, stream)" \
        "$(echo "$sv" | grep 'chunk mode' | awk '{print $7"="$8"/"$9}' | tr '\n' ' ')" \
        || bad "serve --device cuda" "$(echo "$sv" | grep FAIL | head -c 200)"
    rm -rf "$tmp"
fi

# ---- batch-1 decode on a Qwen3-0.6B-shaped random checkpoint ----
if has bench && [ -x "$T" ] && [ -x "$MR" ]; then
    M=/tmp/qwen3-0.6b-random
    [ -s "$M/model.safetensors" ] || "$MR" "$M" --tokenizer "$S/tokenizers/qwen3" >/dev/null
    wb=$(stat -c %s "$M/model.safetensors") # tied: embed = lm_head, read whole once a token
    for gen in 128; do
        js=$("$T" bench -m "$M" --device cuda --prompt 128 --gen $gen --reps 3 2>&1 | tail -1)
        echo "bench: $js"
        tg=$(echo "$js" | python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tok_s"])' 2>/dev/null)
        pp=$(echo "$js" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prefill_tok_s"])' 2>/dev/null)
        if [ -n "$tg" ]; then
            roof=$(python3 -c "print('%.0f' % (3.35e12 / $wb))")
            pct=$(python3 -c "print('%.0f' % (100 * $tg / (3.35e12 / $wb)))")
            ok "0.6B decode b=1 (prompt 128, gen $gen)" "$tg tok/s; roofline $roof tok/s ($((wb / 1000000)) MB/token at 3.35 TB/s): ${pct}%"
            row "0.6B prefill 128 tokens" "$pp tok/s"
        else
            bad "0.6B bench" "$js"
        fi
    done
    # where a decode step goes (host queueing vs waiting for the GPU)
    if [ -x "$dir/bench_decode" ]; then "$dir/bench_decode" "$M" 128 1024 || bad bench_decode "exit $?"; fi
    # the engine with shared prefixes: prefix cache and cascade on vs off
    js=$("$T" bench-shared -m "$M" --device cuda --requests 16 --prefix 1024 --suffix 32 --gen 16 2>&1 | tail -1)
    echo "bench-shared: $js"
    echo "$js" | python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null && ok "bench-shared 0.6B on the GPU (16 x 1024 prefix)" \
        || bad "bench-shared 0.6B on the GPU" "$js"
    # batched decode with steps of 9-64 rows recorded as graphs, against the default
    for gr in 8 64; do
        js=$(TS_CUDA_GRAPH_ROWS=$gr "$T" bench-shared -m "$M" --device cuda --requests 16 --prefix 1024 --suffix 32 --gen 16 2>&1 | tail -1)
        echo "bench-shared TS_CUDA_GRAPH_ROWS=$gr: $js"
        bb=$(TS_CUDA_GRAPH_ROWS=$gr "$T" bench-batch -m "$M" --device cuda --requests 32 --seed 1 2>&1 | tail -1)
        echo "bench-batch 32 TS_CUDA_GRAPH_ROWS=$gr: $bb"
        row "TS_CUDA_GRAPH_ROWS=$gr: bench-shared flat / cascade, bench-batch 32 (tok/s)" \
            "$(echo "$js" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["decode_tok_s_flat"], d["decode_tok_s_cascade"])' 2>/dev/null) $(echo "$bb" | python3 -c 'import json,sys; print(json.load(sys.stdin)["output_tok_s"])' 2>/dev/null)"
    done
fi

# memory checker over the op tests (TS_GPU_MEMCHECK=1; slow)
if [ "${TS_GPU_MEMCHECK:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    if TS_GPU_SEED=1 timeout 300 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
        "$dir/test_gpu_ops" > /tmp/memcheck.log 2>&1; then
        ok "memcheck test_gpu_ops"
    else
        grep -v "^=========     " /tmp/memcheck.log | grep -m 30 "========="; bad "memcheck test_gpu_ops"
    fi
fi
echo
echo "GPU: $gpu"
echo "| what | result |"
echo "| --- | --- |"
printf '%s\n' "${summary[@]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
