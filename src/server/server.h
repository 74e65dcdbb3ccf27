/* tessera's HTTP server: an OpenAI-compatible API (models, completions,
 * chat completions with streaming), the chunk API, Prometheus metrics and a
 * chat page, on top of one ts_engine stepped by a thread of its own.
 * Built on libmicrohttpd (one thread per connection). */
#ifndef TS_SERVER_SERVER_H
#define TS_SERVER_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include "tessera.h"

#define TS_SERVER_MAX_KEYS 16

typedef struct ts_server_opts {
    const char *host;        /* IPv4 or IPv6 literal to bind; NULL = "127.0.0.1" */
    int port;                /* 0 = any free port (see ts_server_port) */
    const char *keys[TS_SERVER_MAX_KEYS]; /* API keys; none = no authentication */
    int n_keys;
    size_t max_body;         /* largest request body accepted; 0 = 1 MiB */
    const char *model_name;  /* id in /v1/models; NULL = the model directory's base name */
    int max_connections;     /* 0 = 512 */
    int conn_timeout_s;      /* idle keep-alive connections close after this; 0 = 300 */
    void (*log)(void *ctx, const char *msg); /* engine failures; NULL = silent */
    void *log_ctx;
} ts_server_opts;

typedef struct ts_server ts_server;

/* Creates the engine from model_dir with eopts (eopts->chunk_prefix is
 * replaced by the chat template's user-message prefix when the model has
 * a template and eopts leaves it NULL), starts the engine thread and
 * listens. On error nothing is left running. */
ts_status ts_server_start(const char *model_dir, const ts_engine_opts *eopts,
                          const ts_server_opts *opts, ts_server **out, ts_err *err);
/* The port actually bound (useful with port 0). */
int ts_server_port(const ts_server *s);
/* Stops accepting, cancels requests in flight (their clients get the
 * end of their responses), joins every thread and frees everything.
 * NULL is a no-op. */
void ts_server_stop(ts_server *s);

#endif
