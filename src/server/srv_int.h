/* Internals shared by the server's files: the server object, a request's
 * connection state, HTTP replies, generations and metrics. */
#ifndef TS_SERVER_SRV_INT_H
#define TS_SERVER_SRV_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/buf.h"
#include "engine/engine.h"
#include "engine/think.h"
#include "server/metrics.h"
#include "server/server.h"

typedef struct ts_gen ts_gen;

struct ts_server {
    ts_engine *eng;
    ts_runtime *rt;
    struct MHD_Daemon *mhd;
    pthread_t eng_thread;
    bool eng_started;
    atomic_bool quit;        /* engine thread: leave the loop */
    atomic_bool stopping;    /* no new generations */
    char *model_name;
    int ctx_len;             /* the model's context in tokens */
    size_t max_body;
    int n_keys;
    char *keys[TS_SERVER_MAX_KEYS];
    unsigned char salts[TS_SERVER_MAX_KEYS][32]; /* SHA-256 of each key */
    char *chunk_prefix;      /* what text chunks are encoded after, or NULL */
    int port;
    long long started;       /* wall clock, seconds */
    ts_metrics metrics;
    void (*log)(void *ctx, const char *msg);
    void *log_ctx;
    pthread_mutex_t lock;    /* guards the list of generations in flight */
    ts_gen *active;
    atomic_int n_gens;       /* generations alive (replies not yet sent) */
};

/* What one HTTP request carries between libmicrohttpd's calls. */
typedef struct ts_http_req {
    ts_buf body;
    bool too_big;
    int key;                 /* index of the API key used, -1 = none */
    int status;              /* HTTP status replied (metrics) */
} ts_http_req;

/* The tenant salt of a request (NULL/0 without API keys). */
static inline const void *ts_srv_salt(const ts_server *s, const ts_http_req *r, size_t *len) {
    if (r->key < 0) {
        *len = 0;
        return NULL;
    }
    *len = 32;
    return s->salts[r->key];
}

/* ---- replies (http_util.c); each returns MHD's result of queueing ---- */
/* Sends json (takes the reference) with status. */
enum MHD_Result ts_reply_json(struct MHD_Connection *c, ts_http_req *r, int status, json_t *json);
/* Sends {"error": {"message", "type", "param", "code"}}; param and code may be NULL. */
enum MHD_Result ts_reply_error(struct MHD_Connection *c, ts_http_req *r, int status,
                               const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Sends text with a content type. */
enum MHD_Result ts_reply_text(struct MHD_Connection *c, ts_http_req *r, int status,
                              const char *type, const char *text, size_t len);
/* Sends text that outlives the reply (no copy). */
enum MHD_Result ts_reply_static(struct MHD_Connection *c, ts_http_req *r, int status,
                                const char *type, const char *text, size_t len);
/* The HTTP status that stands for an engine status (queue-full capacity
 * errors, told by their message, give 429). */
int ts_http_status(ts_status st, const char *msg);
/* OpenAI's error type for an HTTP status. */
const char *ts_http_error_type(int status);
/* Error reply from an engine status and its message. */
enum MHD_Result ts_reply_status(struct MHD_Connection *c, ts_http_req *r, ts_status st,
                                const char *param, const char *msg);
/* Parses the body as a JSON object; on failure replies 400 and returns NULL
 * (*res then holds the result to return). */
json_t *ts_parse_body(struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res);
/* A random hex id with a prefix ("chatcmpl-" + 24 hex). */
void ts_make_id(char *out, size_t cap, const char *prefix);

/* ---- generations (gen.c) ---- */
typedef enum ts_gen_kind { TS_GEN_CHAT, TS_GEN_COMPLETION } ts_gen_kind;

struct ts_gen {
    ts_server *srv;
    pthread_mutex_t mu;
    int efd;                 /* eventfd written by the engine thread on every event */
    int refs;                /* the engine's (until DONE) and the connection's */
    int64_t id;              /* engine request id */
    bool submitted;
    /* written by the engine thread under mu */
    ts_buf pending;          /* text not yet taken by the connection */
    bool done;
    char finish[16];
    ts_status status;
    char error[256];
    int n_prompt, n_cached, n_gen;
    double ttft_ms;
    double t_last;           /* ms of the last text event (inter-token latency) */
    /* connection side */
    int conn_fd;
    ts_gen_kind kind;
    bool stream, include_usage, cancelled;
    char rid[48];            /* response id */
    long long created;
    ts_think think;
    bool answer_started, reasoning_started;
    ts_buf reasoning, answer;/* accumulated (non-streamed) or per-piece (streamed) */
    ts_buf out;              /* SSE bytes not yet handed to the socket */
    size_t out_off;
    int sse_state;           /* 0 first chunk due, 1 streaming, 2 ended */
    ts_gen *prev, *next;     /* in srv->active */
};

/* A generation with one reference (the connection's) and an eventfd. */
ts_gen *ts_gen_new(ts_server *s, ts_gen_kind kind, struct MHD_Connection *c);
/* Submits q; on success the engine holds a second reference until DONE. */
ts_status ts_gen_submit(ts_gen *g, const ts_request *q, ts_err *err);
/* Drops a reference; the last one frees. NULL is a no-op. */
void ts_gen_unref(ts_gen *g);
/* Asks the engine to stop the generation (if submitted and not done). */
void ts_gen_cancel(ts_gen *g);
/* Waits up to timeout_ms for an event: 1 event(s) pending, 0 timeout,
 * -1 the client hung up. */
int ts_gen_wait(ts_gen *g, int timeout_ms);
/* Moves pending text into *text (appended) and reports whether DONE came. */
bool ts_gen_take(ts_gen *g, ts_buf *text);
/* Blocks until DONE; on hang-up cancels and returns false. */
bool ts_gen_wait_done(ts_gen *g, ts_buf *text);
/* Serves a streamed generation as server-sent events (takes g's
 * connection reference). */
enum MHD_Result ts_gen_stream(struct MHD_Connection *c, ts_http_req *r, ts_gen *g);
/* Cancels every generation in flight (shutdown). */
void ts_gen_cancel_all(ts_server *s);

/* ---- OpenAI response pieces (oai_common.c) ---- */
/* Reads temperature, top_p, top_k, min_p, repetition_penalty, seed,
 * max_tokens / max_completion_tokens, stop, stream, stream_options into q
 * and g; on a bad field replies 400 and returns false (*res set). stop
 * strings point into body (kept alive by the caller). */
bool ts_oai_params(ts_server *s, json_t *body, ts_request *q, const char **stop, int max_stop,
                   ts_gen *g, struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res);
/* usage object of a finished generation. */
json_t *ts_oai_usage(const ts_gen *g);
/* finish_reason of a finished generation. */
const char *ts_oai_finish(const ts_gen *g);
/* Routes a piece of generated text to g->reasoning / g->answer. */
void ts_oai_route(ts_gen *g, const char *text, size_t len, bool last);
/* Appends the SSE events for text newly taken (and, when done, the final
 * chunk, usage and [DONE]) to g->out. */
void ts_oai_sse(ts_gen *g, const char *text, size_t len, bool done);
/* Non-streamed reply of a finished generation (or an error reply). */
enum MHD_Result ts_oai_reply(struct MHD_Connection *c, ts_http_req *r, ts_gen *g);
/* Answers a submitted generation: streamed (the response takes *g, set to
 * NULL) or, once finished, in one reply; 499 when the client went away. */
enum MHD_Result ts_oai_respond(struct MHD_Connection *c, ts_http_req *r, ts_gen **g);

/* ---- endpoints ---- */
enum MHD_Result ts_api_models(ts_server *s, struct MHD_Connection *c, ts_http_req *r);
enum MHD_Result ts_api_chat(ts_server *s, struct MHD_Connection *c, ts_http_req *r);
enum MHD_Result ts_api_completions(ts_server *s, struct MHD_Connection *c, ts_http_req *r);
enum MHD_Result ts_api_chunks(ts_server *s, struct MHD_Connection *c, ts_http_req *r,
                              const char *method, const char *id);
enum MHD_Result ts_api_metrics(ts_server *s, struct MHD_Connection *c, ts_http_req *r);

/* The embedded chat page (generated from src/server/web/index.html). */
extern const char *const ts_web_page;
extern const size_t ts_web_page_len;

#endif
