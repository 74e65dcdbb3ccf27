#!/usr/bin/env bash
# The nano-vllm throughput workload on the GPU machine, tessera and
# Hugging Face transformers side by side on one random Qwen3-0.6B-shaped
# checkpoint (nano-vllm publishes 1434 tok/s for Qwen3-0.6B on an RTX 4070
# laptop GPU). Usage (GPU machine, binaries carried):
#   tests/gpu/nanovllm.sh TESSERA MAKE_RANDOM TOKENIZER_DIR [requests] [hf batch]
set -u
T=$1 MR=$2 TOK=$3 N=${4:-256} HB=${5:-64}
M=/tmp/qwen3-0.6b-random
[ -s "$M/model.safetensors" ] || "$MR" "$M" --tokenizer "$TOK" >/dev/null || exit 1
"$T" bench-batch -m "$M" --device cuda --requests "$N" --temp 0.6 --seed 1 --kv-mem 48G \
    --out /tmp/workload.json || exit 1
PYTHONUNBUFFERED=1 python3 "$(dirname "$0")/bench_hf.py" "$M" /tmp/workload.json --batch "$HB"
