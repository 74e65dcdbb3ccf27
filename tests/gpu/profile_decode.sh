#!/usr/bin/env bash
# Where a batch-1 decode step's GPU time goes: Nsight Compute timings of
# every kernel of a few decode steps (base clocks, caches not flushed), summed by kernel
# name, next to the step time. Usage (GPU machine):
#   tests/gpu/profile_decode.sh TESSERA MODEL_DIR [out dir]
set -u
T=$1 M=$2 O=${3:-/tmp}
"$T" bench -m "$M" --device cuda --prompt 128 --gen 64 --reps 3 2>&1 | tail -1
TS_CUDA_GRAPHS=0 "$T" bench -m "$M" --device cuda --prompt 128 --gen 64 --reps 1 2>&1 | tail -1
command -v nsys >/dev/null && echo "nsys: $(command -v nsys)"
# prefill of 128 tokens, then decode: skip the load and prefill kernels and
# take about three decode steps (~10-12 kernels a layer, 28 layers)
ncu --clock-control base --cache-control none --metrics gpu__time_duration.sum --csv --launch-skip 3000 \
    --launch-count 1000 "$T" bench -m "$M" --device cuda --prompt 128 --gen 40 --reps 1 \
    >"$O/ncu.csv" 2>"$O/ncu.err"
python3 - "$O/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    v = float(r[vi].replace(",", "")); u = r[ui]
    v = v / 1000 if u == "nsecond" else v if u == "usecond" else v * 1000
    name = r[ki].split("(")[0][:60]; tot[name] += v; cnt[name] += 1
all_us = sum(tot.values()); n = sum(cnt.values())
print(f"{n} kernels, {all_us:.0f} us in kernels")
for k, v in sorted(tot.items(), key=lambda x: -x[1]):
    print(f"{v:9.1f} us {cnt[k]:5d} x {v / cnt[k]:7.2f} us  {k}")
PY
