/* serve: the OpenAI-compatible HTTP server (src/server) until SIGINT or
 * SIGTERM, which stop it cleanly (exit status 0). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server/server.h"

static const char SERVE_USAGE[] =
    "usage: tessera serve -m MODEL_DIR [options]\n"
    "  --host ADDR            address to bind (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
    "  --port N               port (default 8000; 0 = any free port, printed on stderr)\n"
    "  --api-key KEY          require 'Authorization: Bearer KEY' (repeatable; also\n"
    "                         $TESSERA_API_KEY); each key has its own cache\n"
    "  --model-name NAME      model id in the API (default: the directory's name)\n"
    "  --max-body BYTES       largest request body (default 1M)\n"
    "  --max-waiting N        requests queued or running before 429 (default 4096)\n"
    "  --max-running N        sequences decoded together (default 64)\n"
    "  --idle-timeout S       close keep-alive connections idle this long (default 300)\n"
    "  --kv-mem SIZE          KV pool (e.g. 2G)    --threads N    --block-size N\n"
    "  --chunk-mode exact|reuse|repair   default for chunk parts (default repair)\n"
    "  --repair-frac F        share of each chunk recomputed by repair (default 0.03)\n"
    "  --chunk-mem SIZE       chunk registry budget (default half of --kv-mem)\n"
    "  --chunk-prefix TEXT    text chunks are encoded after: what precedes a cited chunk\n"
    "                         in your prompts, e.g. your system prompt and a document\n"
    "                         header (default: the chat template's user-message start)\n"
    "  --chunk-dir DIR        persistent chunk store    --chunk-redis HOST:PORT\n"
    "  --cascade auto|on|off  --exact    --kv-dtype f32|f16|bf16 (KV cache)\n"
    "  --device cpu|cuda|cuda:N   where the model runs (cuda needs a make CUDA=1 build)\n";

static void log_line(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "tessera serve: %s\n", msg);
}

static bool num(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "error: %s expects an integer in [%ld, %ld]\n", flag, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool size_arg(const char *flag, const char *v, uint64_t *out) {
    if (!v || !(*out = ts_parse_size(v))) {
        fprintf(stderr, "error: %s expects a size such as 512M or 4G\n", flag);
        return false;
    }
    return true;
}

/* Parses argv into the engine and server options; false after a message. */
static bool parse(int argc, char **argv, const char **model, ts_engine_opts *eo, ts_server_opts *so) {
    long x;
    uint64_t sz;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(SERVE_USAGE, stdout);
            exit(0);
        }
        if (!strcmp(f, "--exact")) {
            eo->exact = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "error: %s needs a value (see tessera serve --help)\n", f);
            return false;
        }
        i++;
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) *model = v;
        else if (!strcmp(f, "--host")) so->host = v;
        else if (!strcmp(f, "--port")) {
            if (!num(f, v, 0, 65535, &x)) return false;
            so->port = (int)x;
        } else if (!strcmp(f, "--api-key")) {
            if (so->n_keys == TS_SERVER_MAX_KEYS || !*v) {
                fprintf(stderr, "error: --api-key: at most %d non-empty keys\n", TS_SERVER_MAX_KEYS);
                return false;
            }
            so->keys[so->n_keys++] = v;
        } else if (!strcmp(f, "--model-name")) so->model_name = v;
        else if (!strcmp(f, "--max-body")) {
            if (!size_arg(f, v, &sz)) return false;
            so->max_body = (size_t)sz;
        } else if (!strcmp(f, "--max-waiting")) {
            if (!num(f, v, 1, 1 << 20, &x)) return false;
            eo->max_waiting = (int)x;
        } else if (!strcmp(f, "--idle-timeout")) {
            if (!num(f, v, 1, 86400, &x)) return false;
            so->conn_timeout_s = (int)x;
        } else if (!strcmp(f, "--max-running")) {
            if (!num(f, v, 1, 4096, &x)) return false;
            eo->max_running = (int)x;
        } else if (!strcmp(f, "--threads") || !strcmp(f, "-t")) {
            if (!num(f, v, 1, 256, &x)) return false;
            eo->n_threads = (int)x;
        } else if (!strcmp(f, "--block-size")) {
            if (!num(f, v, 1, 4096, &x)) return false;
            eo->block_size = (int)x;
        } else if (!strcmp(f, "--kv-mem")) {
            if (!size_arg(f, v, &eo->kv_bytes)) return false;
        } else if (!strcmp(f, "--chunk-mem")) {
            if (!size_arg(f, v, &eo->chunk_bytes)) return false;
        } else if (!strcmp(f, "--chunk-mode")) {
            if (!strcmp(v, "exact")) eo->chunk_mode = TS_CHUNKS_EXACT;
            else if (!strcmp(v, "reuse")) eo->chunk_mode = TS_CHUNKS_REUSE;
            else if (!strcmp(v, "repair")) eo->chunk_mode = TS_CHUNKS_REPAIR;
            else {
                fprintf(stderr, "error: --chunk-mode expects exact, reuse or repair\n");
                return false;
            }
        } else if (!strcmp(f, "--repair-frac")) {
            char *end;
            float r = strtof(v, &end);
            if (!*v || *end || !(r >= 0 && r <= 1)) {
                fprintf(stderr, "error: --repair-frac expects a number from 0 to 1\n");
                return false;
            }
            eo->repair_frac = r;
        } else if (!strcmp(f, "--chunk-prefix")) eo->chunk_prefix = v;
        else if (!strcmp(f, "--device")) eo->device = v;
        else if (!strcmp(f, "--kv-dtype")) eo->kv_dtype = v;
        else if (!strcmp(f, "--chunk-dir")) eo->chunk_dir = v;
        else if (!strcmp(f, "--chunk-redis")) eo->chunk_redis = v;
        else if (!strcmp(f, "--cascade")) {
            if (!strcmp(v, "auto")) eo->cascade = -1;
            else if (!strcmp(v, "on")) eo->cascade = 1;
            else if (!strcmp(v, "off")) eo->cascade = 0;
            else {
                fprintf(stderr, "error: --cascade expects auto, on or off\n");
                return false;
            }
        } else {
            fprintf(stderr, "error: unknown option '%s' (see tessera serve --help)\n", f);
            return false;
        }
    }
    if (!*model) {
        fprintf(stderr, "error: -m MODEL_DIR is required\n%s", SERVE_USAGE);
        return false;
    }
    return true;
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL;
    ts_engine_opts eo = ts_engine_opts_default();
    eo.repair_frac = -1;
    ts_server_opts so = {.host = "127.0.0.1", .port = 8000, .log = log_line};
    if (!parse(argc, argv, &model, &eo, &so)) return 2;
    const char *env_key = getenv("TESSERA_API_KEY");
    if (env_key && *env_key && so.n_keys < TS_SERVER_MAX_KEYS) so.keys[so.n_keys++] = env_key;
    /* every thread created from here on inherits the blocked signals; this
     * thread takes them with sigwait */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    ts_server *srv = NULL;
    ts_err err;
    if (ts_server_start(model, &eo, &so, &srv, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "tessera serve: listening on http://%s%s%s:%d/ (%s)\n",
            strchr(so.host, ':') ? "[" : "", so.host, strchr(so.host, ':') ? "]" : "",
            ts_server_port(srv), so.n_keys ? "API key required" : "no API key");
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "tessera serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    ts_server_stop(srv);
    fprintf(stderr, "tessera serve: stopped\n");
    return 0;
}
