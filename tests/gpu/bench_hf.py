"""Hugging Face transformers `generate` on the workload `tessera bench-batch
--out FILE` wrote (nano-vllm's bench.py: random prompt ids, per-request
output lengths, EOS ignored), on the same GPU, for a side-by-side figure.

Requests are sorted by output length and run in batches of --batch (left
padding); each batch generates its longest request's length with EOS off
(min_new_tokens = max_new_tokens). Throughput counts only the tokens each
request asked for, over the whole wall time (padding and the extra steps of
shorter requests are the cost of static batching). Sampling: temperature
0.6, top-k and top-p off, as nano-vllm's bench.

Usage: python3 bench_hf.py MODEL_DIR WORKLOAD.json [--batch 64] [--limit N]
Prints one JSON object."""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("workload")
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--limit", type=int, default=0, help="run only the first N requests")
ap.add_argument("--attn", default="sdpa")
args = ap.parse_args()

reqs = json.load(open(args.workload))
if args.limit:
    reqs = reqs[: args.limit]
model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16,
                                             attn_implementation=args.attn).cuda().eval()
pad = 0
order = sorted(range(len(reqs)), key=lambda i: reqs[i]["max_tokens"])

def run_batch(idx):
    n = len(idx)
    longest = max(len(reqs[i]["prompt_ids"]) for i in idx)
    ids = torch.full((n, longest), pad, dtype=torch.long)
    mask = torch.zeros((n, longest), dtype=torch.long)
    for r, i in enumerate(idx):
        p = reqs[i]["prompt_ids"]
        ids[r, longest - len(p):] = torch.tensor(p)
        mask[r, longest - len(p):] = 1
    new = max(reqs[i]["max_tokens"] for i in idx)
    out = model.generate(input_ids=ids.cuda(), attention_mask=mask.cuda(), do_sample=True,
                         temperature=0.6, top_k=0, top_p=1.0, max_new_tokens=new,
                         min_new_tokens=new, pad_token_id=pad)
    return out.shape[1] - longest

with torch.inference_mode():
    run_batch(order[:2])  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    steps = 0
    for b in range(0, len(order), args.batch):
        steps += run_batch(order[b:b + args.batch])
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0

useful = sum(r["max_tokens"] for r in reqs)
prompt = sum(len(r["prompt_ids"]) for r in reqs)
print(json.dumps({"engine": "transformers " + __import__("transformers").__version__,
                  "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                  "requests": len(reqs), "batch": args.batch, "prompt_tokens": prompt,
                  "output_tokens": useful, "decode_steps": steps, "seconds": round(secs, 3),
                  "output_tok_s": round(useful / secs, 1)}))
