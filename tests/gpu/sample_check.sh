#!/usr/bin/env bash
# Sampling on the device through the engine (generate -f, 12 prompts: a
# decode batch larger than the graph size): greedy text equal to the CPU's,
# and seeded temperature sampling equal with TS_DEVICE_SAMPLE=0 (host
# sampling of the same GPU logits). Usage: sample_check.sh TESSERA FACTS_DIR
# greedy generate -f, 12 prompts, GPU (device sampling) vs CPU
T=$1 F=$2
for i in $(seq 1 12); do echo "Document $i: The river Aldmere flows past mill number $i. Question: which river? Answer:"; done > /tmp/b.txt
$T generate -m $F -f /tmp/b.txt -n 24 --exact --device cpu > /tmp/c.txt 2>/dev/null
$T generate -m $F -f /tmp/b.txt -n 24 --device cuda > /tmp/g.txt 2>/tmp/g.err
cmp -s /tmp/c.txt /tmp/g.txt && [ -s /tmp/g.txt ] && echo "generate -f 12: GPU = CPU" || { echo "generate -f DIFFERS"; head -3 /tmp/c.txt /tmp/g.txt /tmp/g.err; }
TS_DEVICE_SAMPLE=0 $T generate -m $F -f /tmp/b.txt -n 24 --temp 0.7 --seed 5 --device cuda > /tmp/h.txt 2>/dev/null
$T generate -m $F -f /tmp/b.txt -n 24 --temp 0.7 --seed 5 --device cuda > /tmp/d.txt 2>/dev/null
cmp -s /tmp/h.txt /tmp/d.txt && [ -s /tmp/d.txt ] && echo "generate -f 12 seeded t=0.7: device sampling = host sampling" || { echo "sampled DIFFERS"; diff /tmp/h.txt /tmp/d.txt | head -5; }
