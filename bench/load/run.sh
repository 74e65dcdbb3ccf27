#!/usr/bin/env bash
# Load test of "tessera serve" on loopback (not part of make test):
#   bench/load/run.sh [--clients 32] [--warmup 30] [--duration 60] [--max-tokens 32] [--chunks] [--cases N]
#                     [-- extra "tessera serve" options]
# Starts the server with the facts model, runs bench/load/load.mjs against it,
# samples the server's VmRSS, stops the server with SIGTERM and prints the
# figures (JSON) with the commit and machine. Exit status non-zero when any
# request failed, resident memory grew after warm-up, or the server did not
# exit cleanly. Run from the project root.
set -u
TS_BIN=${TS_BUILD:-build}/tessera
SHARED=${TS_SHARED:-../shared}
MODEL=$SHARED/models/facts-qwen3-14m
. tests/server/lib.bash

# the KV pool is sized so that the warm-up fills it (its pages are then all
# resident); give serve options after -- to change it
load_args=(); serve_args=(--kv-mem 128M)
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; serve_args=("$@"); break ;;
        *) load_args+=("$1"); shift ;;
    esac
done

[ -x "$TS_BIN" ] || { echo "$TS_BIN not built (run make)" >&2; exit 1; }

tmp=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM

port=$(ts_free_port)
ts_start_server "$tmp/server.log" "$port" -m "$MODEL" "${serve_args[@]}" || exit 1
PID=$TS_PID

echo "commit:  $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server:  $TS_BIN serve -m $MODEL ${serve_args[*]}"
node bench/load/load.mjs --url "http://127.0.0.1:$port" --model-dir "$MODEL" --pid "$PID" \
    --json "$tmp/result.json" "${load_args[@]}"
rc=$?
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

status=0
[ $rc -eq 0 ] || { echo "FAIL: some requests failed (load.mjs exit $rc)"; status=1; }
if [ -f "$tmp/result.json" ]; then
    # growth after warm-up (in which the KV pool's pages become resident):
    # end vs the first sample after it, 5% or 8 MiB of slack
    node -e '
        const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).rss_kib;
        if (!r.after_warmup || !r.end) { console.log("RSS: not sampled"); process.exit(1); }
        const grow = r.end - r.after_warmup, slack = Math.max(8192, r.after_warmup * 0.05);
        console.log(`RSS after warm-up ${(r.after_warmup / 1024).toFixed(1)} MiB, end ${(r.end / 1024).toFixed(1)} MiB, ` +
                    `max ${(r.max_after_warmup / 1024).toFixed(1)} MiB: growth ${(grow / 1024).toFixed(1)} MiB`);
        process.exit(grow > slack ? 1 : 0);' "$tmp/result.json" || { echo "FAIL: resident memory grew"; status=1; }
fi
ts_stop_server "$PID"; st=$?; PID=""
[ $st -eq 0 ] || { echo "FAIL: server exit status $st after SIGTERM"; tail -n 10 "$tmp/server.log"; status=1; }
exit $status
