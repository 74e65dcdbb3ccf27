#!/usr/bin/env bash
# One command for the GPU machine: runs the GPU tests and the timing table.
# Builds nothing: the binaries come prebuilt (make CUDA=1 B=build-cuda
# gpu-tests, then carry build-cuda/tests/gpu). Usage: tests/gpu/run.sh [bin dir]
set -u
dir=${1:-build-cuda/tests/gpu}
# cuBLAS: the toolkit's, else the one PyTorch's wheels bring
if ! ldconfig -p 2>/dev/null | grep -q libcublas.so.13 && [ ! -e /usr/local/cuda/lib64/libcublas.so.13 ]; then
    py=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))' 2>/dev/null)
    [ -n "$py" ] && export LD_LIBRARY_PATH="$py/lib:${LD_LIBRARY_PATH:-}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>/dev/null
pass=0; fail=0
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1); rc=$?
    echo "$out"
    line=$(echo "$out" | grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' | tail -1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed/\1/')
        pass=$((pass + p)); fail=$((fail + f))
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && fail=$((fail + 1))
    else
        echo "$t: crashed (exit $rc)"; fail=$((fail + 1))
    fi
done
echo "GPU tests: $pass passed, $fail failed"
if [ -x "$dir/bench_gpu" ]; then
    "$dir/bench_gpu" || { echo "bench_gpu: failed (exit $?)"; fail=$((fail + 1)); }
fi
# memory checker over the op tests (TS_GPU_MEMCHECK=1; slow)
if [ "${TS_GPU_MEMCHECK:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    if TS_GPU_SEED=1 timeout 300 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
        "$dir/test_gpu_ops" > /tmp/memcheck.log 2>&1; then
        echo "memcheck: clean"; pass=$((pass + 1))
    else
        echo "memcheck: FAILED"; grep -v "^=========     " /tmp/memcheck.log | grep -m 30 "========="; fail=$((fail + 1))
    fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
