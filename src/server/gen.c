/* Generations: the bridge between a connection thread and the engine
 * thread. The engine's callback appends text to the generation under its
 * mutex and wakes the connection through an eventfd; the connection waits
 * on that eventfd and on its socket (a hang-up cancels the request). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "engine/generate.h"
#include "server/srv_int.h"

ts_gen *ts_gen_new(ts_server *s, ts_gen_kind kind, struct MHD_Connection *c) {
    ts_gen *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g->efd < 0) {
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    atomic_fetch_add(&s->n_gens, 1);
    g->srv = s;
    g->refs = 1;
    g->kind = kind;
    g->conn_fd = -1;
    const union MHD_ConnectionInfo *ci =
        c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
    if (ci) g->conn_fd = ci->connect_fd;
    ts_make_id(g->rid, sizeof g->rid, kind == TS_GEN_CHAT ? "chatcmpl-" : "cmpl-");
    g->created = (long long)time(NULL);
    return g;
}

void ts_gen_unref(ts_gen *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last) return;
    close(g->efd);
    ts_buf_free(&g->pending);
    ts_buf_free(&g->reasoning);
    ts_buf_free(&g->answer);
    ts_buf_free(&g->out);
    ts_think_free(&g->think);
    pthread_mutex_destroy(&g->mu);
    atomic_fetch_sub(&g->srv->n_gens, 1);
    free(g);
}

static void unlink_active(ts_server *s, ts_gen *g) {
    pthread_mutex_lock(&s->lock);
    if (g->prev) g->prev->next = g->next;
    else if (s->active == g) s->active = g->next;
    if (g->next) g->next->prev = g->prev;
    g->prev = g->next = NULL;
    pthread_mutex_unlock(&s->lock);
}

static void wake(ts_gen *g) {
    uint64_t one = 1;
    ssize_t n = write(g->efd, &one, sizeof one);
    (void)n; /* only fails when the counter is saturated: already awake */
}

/* Runs on the engine thread. */
static void on_event(void *ctx, const ts_event *ev) {
    ts_gen *g = ctx;
    ts_server *s = g->srv;
    double now = ts_now_ms(), gap = -1;
    pthread_mutex_lock(&g->mu);
    if (ev->kind == TS_EVENT_TEXT) {
        if (ev->len) ts_buf_append(&g->pending, ev->text, ev->len);
        if (ev->token >= 0) {
            if (g->t_last > 0) gap = now - g->t_last;
            g->t_last = now;
        }
    } else {
        g->done = true;
        snprintf(g->finish, sizeof g->finish, "%s", ev->finish ? ev->finish : "error");
        g->status = ev->status;
        snprintf(g->error, sizeof g->error, "%s", ev->error ? ev->error : "");
        g->n_prompt = ev->n_prompt;
        g->n_cached = ev->n_cached;
        g->n_gen = ev->n_gen;
        g->ttft_ms = ev->ttft_ms;
    }
    pthread_mutex_unlock(&g->mu);
    if (gap >= 0) ts_metrics_itl(&s->metrics, gap / 1e3);
    wake(g);
    if (ev->kind == TS_EVENT_DONE) {
        ts_metrics_finish(&s->metrics, g->finish);
        if (ev->n_gen > 0) ts_metrics_ttft(&s->metrics, ev->ttft_ms / 1e3);
        unlink_active(s, g);
        ts_gen_unref(g); /* the engine's reference */
    }
}

ts_status ts_gen_submit(ts_gen *g, const ts_request *q, ts_err *err) {
    ts_server *s = g->srv;
    if (atomic_load(&s->stopping))
        return ts_fail(err, TS_ERR_NOMEM, "the server is shutting down");
    pthread_mutex_lock(&g->mu);
    g->refs++;
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_lock(&s->lock);
    g->next = s->active;
    if (s->active) s->active->prev = g;
    s->active = g;
    pthread_mutex_unlock(&s->lock);
    int64_t id = 0;
    ts_status st = ts_engine_submit(s->eng, q, on_event, g, &id, err);
    if (st) {
        unlink_active(s, g);
        ts_gen_unref(g);
        return st;
    }
    pthread_mutex_lock(&s->lock);
    g->id = id;
    g->submitted = true;
    /* shutdown began while submitting: ts_gen_cancel_all missed this one */
    if (atomic_load(&s->stopping)) ts_engine_cancel(s->eng, id);
    pthread_mutex_unlock(&s->lock);
    return TS_OK;
}

void ts_gen_cancel(ts_gen *g) {
    pthread_mutex_lock(&g->mu);
    bool live = g->submitted && !g->done && !g->cancelled;
    g->cancelled = true;
    pthread_mutex_unlock(&g->mu);
    if (live) ts_engine_cancel(g->srv->eng, g->id);
}

void ts_gen_cancel_all(ts_server *s) {
    pthread_mutex_lock(&s->lock);
    for (ts_gen *g = s->active; g; g = g->next)
        if (g->submitted) ts_engine_cancel(s->eng, g->id);
    pthread_mutex_unlock(&s->lock);
}

int ts_gen_wait(ts_gen *g, int timeout_ms) {
    struct pollfd p[2] = {{.fd = g->efd, .events = POLLIN}, {.fd = g->conn_fd, .events = POLLRDHUP}};
    int n = g->conn_fd >= 0 ? 2 : 1;
    int rc = poll(p, (nfds_t)n, timeout_ms);
    if (rc < 0) return errno == EINTR ? 0 : -1;
    if (p[0].revents & POLLIN) {
        uint64_t v;
        ssize_t k = read(g->efd, &v, sizeof v);
        (void)k;
        return 1;
    }
    if (n == 2 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) return -1;
    return 0;
}

bool ts_gen_take(ts_gen *g, ts_buf *text) {
    pthread_mutex_lock(&g->mu);
    if (g->pending.len) ts_buf_append(text, g->pending.data, g->pending.len);
    ts_buf_clear(&g->pending);
    bool done = g->done;
    pthread_mutex_unlock(&g->mu);
    return done;
}

bool ts_gen_wait_done(ts_gen *g, ts_buf *text) {
    for (;;) {
        if (ts_gen_take(g, text)) return true;
        if (ts_gen_wait(g, 1000) < 0) {
            ts_gen_cancel(g);
            return false;
        }
    }
}

/* ---- server-sent events ---- */

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    ts_gen *g = cls;
    (void)pos;
    ts_buf text = {0};
    ssize_t res = 0;
    for (;;) {
        if (g->out_off < g->out.len) {
            size_t n = g->out.len - g->out_off;
            if (n > max) n = max;
            memcpy(buf, g->out.data + g->out_off, n);
            g->out_off += n;
            if (g->out_off == g->out.len) {
                ts_buf_clear(&g->out);
                g->out_off = 0;
            }
            res = (ssize_t)n;
            break;
        }
        if (g->sse_state == 2) {
            res = MHD_CONTENT_READER_END_OF_STREAM;
            break;
        }
        ts_buf_clear(&text);
        bool done = ts_gen_take(g, &text);
        if (text.len || done || g->sse_state == 0) {
            ts_oai_sse(g, text.data ? text.data : "", text.len, done);
            continue;
        }
        int w = ts_gen_wait(g, 15000);
        if (w < 0) {
            ts_gen_cancel(g);
            res = MHD_CONTENT_READER_END_WITH_ERROR;
            break;
        }
        if (w == 0) ts_buf_puts(&g->out, ": keep-alive\n\n"); /* finds dead peers too */
    }
    ts_buf_free(&text);
    return res;
}

static void sse_free(void *cls) {
    ts_gen *g = cls;
    ts_gen_cancel(g);
    ts_gen_unref(g);
}

enum MHD_Result ts_gen_stream(struct MHD_Connection *c, ts_http_req *r, ts_gen *g) {
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, g, sse_free);
    if (!resp) {
        sse_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    enum MHD_Result res = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    return res;
}
