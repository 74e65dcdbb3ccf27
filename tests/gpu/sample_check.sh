#!/usr/bin/env bash
# Sampling on the device through the engine (generate -f, 12 prompts: a
# decode batch larger than the graph size): greedy text equal to the CPU's,
# and seeded sampling (temperature; top-k + top-p + min-p) equal with
# TS_DEVICE_SAMPLE=0 (host sampling of the same GPU logits). Usage: sample_check.sh TESSERA FACTS_DIR
# greedy generate -f, 12 prompts, GPU (device sampling) vs CPU
T=$1 F=$2
for i in $(seq 1 12); do echo "Document $i: The river Aldmere flows past mill number $i. Question: which river? Answer:"; done > /tmp/b.txt
$T generate -m $F -f /tmp/b.txt -n 24 --exact --device cpu > /tmp/c.txt 2>/dev/null
$T generate -m $F -f /tmp/b.txt -n 24 --device cuda > /tmp/g.txt 2>/tmp/g.err
cmp -s /tmp/c.txt /tmp/g.txt && [ -s /tmp/g.txt ] && echo "generate -f 12: GPU = CPU" || { echo "generate -f DIFFERS"; head -3 /tmp/c.txt /tmp/g.txt /tmp/g.err; }
TS_DEVICE_SAMPLE=0 $T generate -m $F -f /tmp/b.txt -n 24 --temp 0.7 --seed 5 --device cuda > /tmp/h.txt 2>/dev/null
$T generate -m $F -f /tmp/b.txt -n 24 --temp 0.7 --seed 5 --device cuda > /tmp/d.txt 2>/dev/null
cmp -s /tmp/h.txt /tmp/d.txt && [ -s /tmp/d.txt ] && echo "generate -f 12 seeded t=0.7: device sampling = host sampling" || { echo "sampled DIFFERS"; diff /tmp/h.txt /tmp/d.txt | head -5; }
# top-k, top-p and min-p on the device against host sampling of the same logits
TS_DEVICE_SAMPLE=0 $T generate -m $F -f /tmp/b.txt -n 24 --temp 0.9 --top-k 20 --top-p 0.9 --min-p 0.02 --seed 7 --device cuda > /tmp/h2.txt 2>/dev/null
$T generate -m $F -f /tmp/b.txt -n 24 --temp 0.9 --top-k 20 --top-p 0.9 --min-p 0.02 --seed 7 --device cuda > /tmp/d2.txt 2>/dev/null
cmp -s /tmp/h2.txt /tmp/d2.txt && [ -s /tmp/d2.txt ] && echo "generate -f 12 seeded top-k/top-p/min-p: device sampling = host sampling" || { echo "top-k/top-p sampled DIFFERS"; diff /tmp/h2.txt /tmp/d2.txt | head -5; }
