"""PyTorch's attention on the cascade benchmark's shapes, for the side-by-side
figure of bench_gpu (tests/gpu/bench_gpu.c): decode attention for a batch of
64 sequences, one query row each, 16 query heads over 8 KV heads (GQA),
head_dim 128, each sequence attending to a 4096-token shared prefix plus 32
tokens of its own (4128 keys), the K/V of every sequence materialised as
PyTorch needs them (the prefix repeated per sequence).
torch.nn.functional.scaled_dot_product_attention(..., enable_gqa=True), bf16
and f32, CUDA events, median of 50 runs after 10 warm-ups, alternating two
input sets. Prints one JSON object."""
import json
import statistics

import torch
import torch.nn.functional as F

B, HQ, HKV, D, L = 64, 16, 8, 128, 4096 + 32


def bench(dtype):
    sets = []
    for _ in range(2):
        q = torch.randn(B, HQ, 1, D, device="cuda", dtype=dtype)
        k = torch.randn(B, HKV, L, D, device="cuda", dtype=dtype)
        v = torch.randn(B, HKV, L, D, device="cuda", dtype=dtype)
        sets.append((q, k, v))
    for i in range(10):
        F.scaled_dot_product_attention(*sets[i % 2], enable_gqa=True)
    times = []
    for i in range(50):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        F.scaled_dot_product_attention(*sets[i % 2], enable_gqa=True)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1000.0)
    kv_bytes = 2 * B * HKV * L * D * sets[0][1].element_size()
    us = statistics.median(times)
    return {"us": round(us, 1), "kv_bytes": kv_bytes, "tb_s": round(kv_bytes / us / 1e6, 2)}


with torch.inference_mode():
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
           "shape": f"B={B} q_heads={HQ} kv_heads={HKV} head_dim={D} keys={L}",
           "bf16": bench(torch.bfloat16), "f32": bench(torch.float32)}
print(json.dumps(out))
