/* Server lifecycle (engine thread, libmicrohttpd daemon, shutdown),
 * routing, authentication and the small endpoints. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "engine/generate.h"
#include "server/prompt.h"
#include "server/srv_int.h"

/* ---- the engine thread ---- */

static void *engine_main(void *arg) {
    ts_server *s = arg;
    int busy = 0;
    ts_err err;
    while (!atomic_load(&s->quit)) {
        if (!busy) ts_engine_wait(s->eng, 100);
        ts_status st = ts_engine_step(s->eng, &busy, &err);
        if (st && s->log) s->log(s->log_ctx, err.msg);
        ts_engine_stats es;
        ts_engine_get_stats(s->eng, &es);
        ts_metrics_engine(&s->metrics, &es, ts_now_ms());
        if (st) {
            busy = 0;
            usleep(10000); /* a failing step (out of memory) must not spin */
        }
    }
    return NULL;
}

/* ---- small endpoints ---- */

static json_t *model_obj(ts_server *s) {
    return json_pack("{s:s,s:s,s:I,s:s,s:i}", "id", s->model_name, "object", "model", "created",
                     (json_int_t)s->started, "owned_by", "tessera", "max_model_len", s->ctx_len);
}

enum MHD_Result ts_api_models(ts_server *s, struct MHD_Connection *c, ts_http_req *r) {
    return ts_reply_json(c, r, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", model_obj(s)));
}

enum MHD_Result ts_api_metrics(ts_server *s, struct MHD_Connection *c, ts_http_req *r) {
    ts_buf b = {0};
    ts_metrics_render(&s->metrics, &b);
    ts_buf_printf(&b, "# HELP tessera_open_requests Generations whose reply is not finished.\n"
                      "# TYPE tessera_open_requests gauge\ntessera_open_requests %d\n",
                  atomic_load(&s->n_gens));
    enum MHD_Result res = ts_reply_text(c, r, 200, "text/plain; version=0.0.4; charset=utf-8",
                                        b.data ? b.data : "", b.len);
    ts_buf_free(&b);
    return res;
}

/* ---- routing ---- */

/* Index of the key in the Authorization header, -1 when absent or wrong. */
static int find_key(ts_server *s, struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return -1;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h);
    for (int i = 0; i < s->n_keys; i++)
        if (strlen(s->keys[i]) == n && !CRYPTO_memcmp(h, s->keys[i], n)) return i;
    return -1;
}

static enum MHD_Result method_not_allowed(struct MHD_Connection *c, ts_http_req *r,
                                          const char *method, const char *url, const char *allow) {
    return ts_reply_error(c, r, 405, NULL, "method_not_allowed", "%s %s is not allowed (use %s)",
                          method, url, allow);
}

static enum MHD_Result route(ts_server *s, struct MHD_Connection *c, ts_http_req *r,
                             const char *url, const char *method) {
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        enum MHD_Result res = MHD_queue_response(c, 204, resp);
        MHD_destroy_response(resp);
        r->status = 204;
        return res;
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return method_not_allowed(c, r, method, url, "GET");
        return ts_reply_static(c, r, 200, "text/html; charset=utf-8", ts_web_page, ts_web_page_len);
    }
    if (!strcmp(url, "/health")) {
        if (!get) return method_not_allowed(c, r, method, url, "GET");
        return ts_reply_json(c, r, 200, json_pack("{s:s}", "status", "ok"));
    }
    if (s->n_keys && (r->key = find_key(s, c)) < 0)
        return ts_reply_error(c, r, 401, NULL, "invalid_api_key",
                              "a valid API key is required (Authorization: Bearer KEY)");
    if (r->too_big)
        return ts_reply_error(c, r, 400, NULL, "body_too_large",
                              "the request body is larger than the server's limit of %zu bytes "
                              "(--max-body)", s->max_body);
    if (!strcmp(url, "/metrics")) {
        if (!get) return method_not_allowed(c, r, method, url, "GET");
        return ts_api_metrics(s, c, r);
    }
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/models")) {
        if (!get) return method_not_allowed(c, r, method, url, "GET");
        return ts_api_models(s, c, r);
    }
    if (!strncmp(url, "/v1/models/", 11)) {
        if (!get) return method_not_allowed(c, r, method, url, "GET");
        if (strcmp(url + 11, s->model_name))
            return ts_reply_error(c, r, 404, "model", "model_not_found", "model '%.100s' does not exist",
                                  url + 11);
        return ts_reply_json(c, r, 200, model_obj(s));
    }
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions")) {
        if (!post) return method_not_allowed(c, r, method, url, "POST");
        return ts_api_chat(s, c, r);
    }
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions")) {
        if (!post) return method_not_allowed(c, r, method, url, "POST");
        return ts_api_completions(s, c, r);
    }
    if (!strcmp(url, "/v1/chunks")) return ts_api_chunks(s, c, r, method, NULL);
    if (!strncmp(url, "/v1/chunks/", 11) && url[11] && !strchr(url + 11, '/'))
        return ts_api_chunks(s, c, r, method, url + 11);
    return ts_reply_error(c, r, 404, NULL, "unknown_url", "no route %s %s", method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    ts_server *s = cls;
    ts_http_req *r = *con_cls;
    (void)version;
    if (!r) { /* headers only so far */
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->key = -1;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && r->body.len + *upload_size > s->max_body) {
            r->too_big = true; /* read on, but keep nothing */
            ts_buf_free(&r->body);
        }
        if (!r->too_big && ts_buf_append(&r->body, upload, *upload_size)) r->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    return route(s, c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode how) {
    ts_server *s = cls;
    ts_http_req *r = *con_cls;
    (void)c;
    if (!r) return;
    int code = r->status ? r->status : 499;
    /* a streamed reply cut short by the client */
    if (how != MHD_REQUEST_TERMINATED_COMPLETED_OK && code == 200) code = 499;
    ts_metrics_status(&s->metrics, code);
    ts_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

/* ---- lifecycle ---- */

/* The user-message prefix of the chat template: what a chunk cited in a
 * user message follows. NULL when the model has no template. */
static char *chunk_prefix(const char *model_dir) {
    ts_chat *chat = NULL;
    if (ts_chat_load(model_dir, &chat, NULL)) return NULL;
    ts_buf mark = {0}, out = {0};
    ts_prompt_append_marker(&mark, 0);
    ts_chat_msg m = {"user", mark.data};
    char *res = NULL;
    if (!ts_chat_render(chat, &m, 1, false, -1, &out, NULL)) {
        char *p = strstr(out.data, mark.data);
        if (p) {
            *p = '\0';
            res = strdup(out.data);
        }
    }
    ts_buf_free(&mark);
    ts_buf_free(&out);
    ts_chat_free(chat);
    return res;
}

static const char *host_of(const ts_server_opts *o) {
    return o->host && strcmp(o->host, "localhost") ? o->host : "127.0.0.1";
}

static bool host_ok(const ts_server_opts *o) {
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host_of(o), a) == 1 || inet_pton(AF_INET6, host_of(o), a) == 1;
}

static ts_status listen_on(ts_server *s, const ts_server_opts *o, ts_err *err) {
    const char *host = host_of(o);
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    struct sockaddr *sa;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC;
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)o->port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)o->port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        return ts_fail(err, TS_ERR_INVALID, "--host expects an IPv4 or IPv6 address, got '%s'", host);
    }
    errno = 0;
    s->mhd = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                              MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)(o->max_connections > 0 ? o->max_connections : 512),
                              MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)(o->conn_timeout_s > 0 ? o->conn_timeout_s : 300),
                              MHD_OPTION_END);
    if (!s->mhd)
        return ts_fail(err, TS_ERR_IO, "cannot listen on %s port %d (%s)", host, o->port,
                       errno ? strerror(errno) : "address in use?");
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    return TS_OK;
}

/* --model-name, or the model directory's last component. */
static ts_status model_name(ts_server *s, const char *name, const char *dir, ts_err *err) {
    char *d = strdup(name ? name : dir);
    if (!d) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    size_t n = strlen(d);
    while (!name && n > 1 && d[n - 1] == '/') d[--n] = '\0';
    const char *b = name ? NULL : strrchr(d, '/');
    s->model_name = b && b[1] ? strdup(b + 1) : strdup(d);
    free(d);
    return s->model_name ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
}

int ts_server_port(const ts_server *s) { return s ? s->port : 0; }

ts_status ts_server_start(const char *model_dir, const ts_engine_opts *eopts,
                          const ts_server_opts *opts, ts_server **out, ts_err *err) {
    *out = NULL;
    ts_server_opts o = opts ? *opts : (ts_server_opts){0};
    if (o.n_keys < 0 || o.n_keys > TS_SERVER_MAX_KEYS)
        return ts_fail(err, TS_ERR_INVALID, "at most %d API keys", TS_SERVER_MAX_KEYS);
    if (o.port < 0 || o.port > 65535)
        return ts_fail(err, TS_ERR_INVALID, "--port expects 0 to 65535, got %d", o.port);
    if (!host_ok(&o)) /* before the model is loaded */
        return ts_fail(err, TS_ERR_INVALID, "--host expects an IPv4 or IPv6 address, got '%s'",
                       host_of(&o));
    ts_server *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    ts_metrics_init(&s->metrics);
    s->metrics.t_start = ts_now_ms();
    s->started = (long long)time(NULL);
    s->log = o.log;
    s->log_ctx = o.log_ctx;
    s->max_body = o.max_body ? o.max_body : (size_t)1 << 20;
    ts_status st = TS_OK;
    for (int i = 0; i < o.n_keys && !st; i++) {
        if (!o.keys[i] || !*o.keys[i]) st = ts_fail(err, TS_ERR_INVALID, "an API key is empty");
        else if (!(s->keys[i] = strdup(o.keys[i]))) st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        else {
            SHA256((const unsigned char *)o.keys[i], strlen(o.keys[i]), s->salts[i]);
            s->n_keys++;
        }
    }
    if (!st) st = model_name(s, o.model_name, model_dir, err);
    ts_engine_opts eo = eopts ? *eopts : ts_engine_opts_default();
    if (!st && !eo.chunk_prefix) eo.chunk_prefix = s->chunk_prefix = chunk_prefix(model_dir);
    if (!st) st = ts_engine_create(model_dir, &eo, &s->eng, err);
    if (!st) {
        s->rt = ts_engine_runtime(s->eng);
        s->ctx_len = s->rt->model->cfg.max_pos;
        if (pthread_create(&s->eng_thread, NULL, engine_main, s))
            st = ts_fail(err, TS_ERR_NOMEM, "cannot start the engine thread");
        else s->eng_started = true;
    }
    if (!st) st = listen_on(s, &o, err);
    if (st) {
        ts_server_stop(s);
        return st;
    }
    *out = s;
    return TS_OK;
}

void ts_server_stop(ts_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, true);
    MHD_socket lfd = MHD_INVALID_SOCKET;
    if (s->mhd) lfd = MHD_quiesce_daemon(s->mhd);
    ts_gen_cancel_all(s);
    /* let the cancelled requests send the end of their replies (streams end
     * with [DONE]) before the daemon shuts every socket; at most 5 s */
    for (int i = 0; i < 500 && atomic_load(&s->n_gens) > 0; i++) usleep(10000);
    /* joins the connection threads */
    if (s->mhd) MHD_stop_daemon(s->mhd);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    atomic_store(&s->quit, true);
    if (s->eng_started) pthread_join(s->eng_thread, NULL);
    ts_engine_destroy(s->eng);
    for (int i = 0; i < s->n_keys; i++) free(s->keys[i]);
    free(s->model_name);
    free(s->chunk_prefix);
    ts_metrics_free(&s->metrics);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
