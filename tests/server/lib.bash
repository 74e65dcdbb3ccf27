# Shell helpers shared by the server tests and the load test (sourced, not run;
# named .bash so that make test, which runs tests/server/*.sh, skips it).
# Callers run from the project root and set: TS_BIN (the tessera binary).

TS_SERVER_DIR=tests/server

# Installs the pinned npm packages into tests/server/node_modules when they
# are missing or older than package-lock.json. Returns non-zero on failure.
ts_npm_ready() {
    local d=$TS_SERVER_DIR
    if [ -f "$d/node_modules/.package-lock.json" ] && [ ! "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ]; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || { echo "npm not found (scripts/deps.sh --test installs it)" >&2; return 1; }
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || {
        echo "npm ci failed in $d (the npm registry must be reachable)" >&2; return 1; }
}

# Prints a free TCP port on 127.0.0.1.
ts_free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# ts_start_server LOG PORT ARGS... : starts "tessera serve" in the background,
# sets TS_PID, and waits (up to 60 s) for GET /health to answer 200.
ts_start_server() {
    local log=$1 port=$2; shift 2
    "$TS_BIN" serve --host 127.0.0.1 --port "$port" "$@" >"$log" 2>&1 &
    TS_PID=$!
    local i
    for i in $(seq 1 600); do
        if ! kill -0 "$TS_PID" 2>/dev/null; then
            echo "server exited during start-up; its log:" >&2; tail -n 20 "$log" >&2; return 1
        fi
        if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))' \
                "http://127.0.0.1:$port/health" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "server did not become healthy in 60 s; its log:" >&2; tail -n 20 "$log" >&2
    return 1
}

# ts_stop_server PID : SIGTERM, then waits up to 10 s (SIGKILL after that).
# Returns the server's exit status (137 if it had to be killed).
ts_stop_server() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return $?; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "server $pid ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
}
