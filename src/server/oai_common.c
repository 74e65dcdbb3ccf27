/* Pieces shared by the OpenAI endpoints: sampling fields, usage, the
 * reasoning split, server-sent event chunks and non-streamed replies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/srv_int.h"

/* Replies 400 naming the field; always returns false. */
static bool bad_field(struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res,
                      const char *param, const char *what) {
    *res = ts_reply_error(c, r, 400, param, "invalid_value", "'%s' must be %s", param, what);
    return false;
}

/* A number field in [lo, hi] (absent or null leaves *out). */
static bool num_field(json_t *body, const char *name, double lo, double hi, float *out,
                      struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res) {
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return true;
    char what[96];
    snprintf(what, sizeof what, "a number from %g to %g", lo, hi);
    if (!json_is_number(v)) return bad_field(c, r, res, name, what);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return bad_field(c, r, res, name, what);
    *out = (float)x;
    return true;
}

/* An integer field in [lo, hi]; *set tells whether it was given. */
static bool int_field(json_t *body, const char *name, long long lo, long long hi, long long *out,
                      bool *set, struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res) {
    json_t *v = json_object_get(body, name);
    if (set) *set = false;
    if (!v || json_is_null(v)) return true;
    char what[96];
    snprintf(what, sizeof what, "an integer from %lld to %lld", lo, hi);
    if (!json_is_integer(v)) return bad_field(c, r, res, name, what);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad_field(c, r, res, name, what);
    *out = x;
    if (set) *set = true;
    return true;
}

static bool bool_field(json_t *body, const char *name, bool *out, struct MHD_Connection *c,
                       ts_http_req *r, enum MHD_Result *res) {
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return bad_field(c, r, res, name, "true or false");
    *out = json_is_true(v);
    return true;
}

static uint64_t random_seed(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t x = (uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)t.tv_sec;
    static _Atomic uint64_t n;
    x ^= ++n * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    return x;
}

bool ts_oai_params(ts_server *s, json_t *body, ts_request *q, const char **stop, int max_stop,
                   ts_gen *g, struct MHD_Connection *c, ts_http_req *r, enum MHD_Result *res) {
    const ts_model_config *cfg = &s->rt->model->cfg;
    ts_sample_params *p = &q->sample;
    p->temperature = cfg->gen_temperature >= 0 ? cfg->gen_temperature : 1.0f;
    p->top_p = cfg->gen_top_p > 0 && cfg->gen_top_p <= 1 ? cfg->gen_top_p : 1.0f;
    p->top_k = cfg->gen_top_k > 0 ? cfg->gen_top_k : 0;
    if (!num_field(body, "temperature", 0, 2, &p->temperature, c, r, res)) return false;
    if (!num_field(body, "top_p", 0, 1, &p->top_p, c, r, res)) return false;
    if (p->top_p == 0) { /* OpenAI accepts 0: only the most likely token */
        p->top_p = 1;
        p->temperature = 0;
    }
    if (!num_field(body, "min_p", 0, 1, &p->min_p, c, r, res)) return false;
    if (!num_field(body, "repetition_penalty", 0.01, 100, &p->repetition_penalty, c, r, res))
        return false;
    long long v = 0;
    bool set = false;
    if (!int_field(body, "top_k", -1, 1 << 30, &v, &set, c, r, res)) return false;
    if (set) p->top_k = v < 0 ? 0 : (int)v;
    if (!int_field(body, "seed", INT64_MIN, INT64_MAX, &v, &set, c, r, res)) return false;
    p->seed = set ? (uint64_t)v : random_seed();
    q->max_tokens = s->ctx_len;
    if (!int_field(body, "max_tokens", 1, 1 << 30, &v, &set, c, r, res)) return false;
    if (set) q->max_tokens = (int)v;
    if (!int_field(body, "max_completion_tokens", 1, 1 << 30, &v, &set, c, r, res)) return false;
    if (set) q->max_tokens = (int)v;
    if (!int_field(body, "n", 1, 1, &v, &set, c, r, res)) return false;
    if (!bool_field(body, "ignore_eos", &q->ignore_eos, c, r, res)) return false;
    if (!bool_field(body, "stream", &g->stream, c, r, res)) return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad_field(c, r, res, "stream_options", "an object");
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu) && !json_is_boolean(iu))
            return bad_field(c, r, res, "stream_options.include_usage", "true or false");
        g->include_usage = json_is_true(iu);
    }
    json_t *st = json_object_get(body, "stop");
    q->n_stop = 0;
    if (json_is_string(st)) {
        if (json_string_length(st)) stop[q->n_stop++] = json_string_value(st);
    } else if (json_is_array(st)) {
        if (json_array_size(st) > (size_t)max_stop) {
            char what[64];
            snprintf(what, sizeof what, "a string or an array of at most %d strings", max_stop);
            return bad_field(c, r, res, "stop", what);
        }
        size_t i;
        json_t *x;
        json_array_foreach(st, i, x) {
            if (!json_is_string(x)) return bad_field(c, r, res, "stop", "a string or an array of strings");
            if (json_string_length(x)) stop[q->n_stop++] = json_string_value(x);
        }
    } else if (st && !json_is_null(st)) {
        return bad_field(c, r, res, "stop", "a string or an array of strings");
    }
    q->stop = q->n_stop ? stop : NULL;
    json_t *cm = json_object_get(body, "chunk_mode");
    if (cm && !json_is_null(cm)) {
        const char *m = json_string_value(cm);
        if (m && !strcmp(m, "exact")) q->chunk_mode = TS_CHUNKS_EXACT;
        else if (m && !strcmp(m, "reuse")) q->chunk_mode = TS_CHUNKS_REUSE;
        else if (m && !strcmp(m, "repair")) q->chunk_mode = TS_CHUNKS_REPAIR;
        else return bad_field(c, r, res, "chunk_mode", "\"exact\", \"reuse\" or \"repair\"");
    }
    q->repair_frac = -1;
    if (!num_field(body, "repair_frac", 0, 1, &q->repair_frac, c, r, res)) return false;
    return true;
}

json_t *ts_oai_usage(const ts_gen *g) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", g->n_prompt, "completion_tokens",
                     g->n_gen, "total_tokens", g->n_prompt + g->n_gen, "prompt_tokens_details",
                     "cached_tokens", g->n_cached);
}

const char *ts_oai_finish(const ts_gen *g) {
    return g->finish[0] ? g->finish : "stop";
}

static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

void ts_oai_route(ts_gen *g, const char *text, size_t len, bool last) {
    if (g->kind != TS_GEN_CHAT) {
        ts_buf_append(&g->answer, text, len);
        return;
    }
    size_t a0 = g->answer.len, r0 = g->reasoning.len;
    ts_think_feed(&g->think, text, len, &g->reasoning, &g->answer);
    if (last) ts_think_finish(&g->think, &g->reasoning, &g->answer);
    /* no whitespace at the start of the reasoning, nor between it and the answer */
    if (!g->reasoning_started && g->reasoning.len > r0) {
        size_t k = r0;
        while (k < g->reasoning.len && is_space(g->reasoning.data[k])) k++;
        memmove(g->reasoning.data + r0, g->reasoning.data + k, g->reasoning.len - k + 1);
        g->reasoning.len -= k - r0;
        if (g->reasoning.len > r0) g->reasoning_started = true;
    }
    if (!g->answer_started && g->answer.len > a0) {
        size_t k = a0;
        if (g->think.closed)
            while (k < g->answer.len && is_space(g->answer.data[k])) k++;
        memmove(g->answer.data + a0, g->answer.data + k, g->answer.len - k + 1);
        g->answer.len -= k - a0;
        if (g->answer.len > a0) g->answer_started = true;
    }
}

static void put_event(ts_gen *g, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return;
    ts_buf_printf(&g->out, "data: %s\n\n", s);
    free(s);
}

static json_t *chunk_obj(ts_gen *g, json_t *choice) {
    bool chat = g->kind == TS_GEN_CHAT;
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", g->rid, "object",
                          chat ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)g->created, "model", g->srv->model_name, "choices", choice);
    if (j && g->include_usage) json_object_set_new(j, "usage", json_null());
    return j;
}

static json_t *choice(ts_gen *g, json_t *delta, const char *text, const char *finish) {
    json_t *ch = json_pack("{s:i,s:n}", "index", 0, "logprobs");
    if (g->kind == TS_GEN_CHAT) json_object_set_new(ch, "delta", delta ? delta : json_object());
    else json_object_set_new(ch, "text", json_string(text ? text : ""));
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    return ch;
}

void ts_oai_sse(ts_gen *g, const char *text, size_t len, bool done) {
    if (g->sse_state == 0) {
        g->sse_state = 1;
        if (g->kind == TS_GEN_CHAT)
            put_event(g, chunk_obj(g, choice(g, json_pack("{s:s,s:s}", "role", "assistant",
                                                          "content", ""), NULL, NULL)));
    }
    ts_buf_clear(&g->reasoning);
    ts_buf_clear(&g->answer);
    ts_oai_route(g, text, len, done);
    if (g->reasoning.len || g->answer.len) {
        if (g->kind == TS_GEN_CHAT) {
            json_t *d = json_object();
            if (g->reasoning.len)
                json_object_set_new(d, "reasoning_content",
                                    json_stringn(g->reasoning.data, g->reasoning.len));
            if (g->answer.len)
                json_object_set_new(d, "content", json_stringn(g->answer.data, g->answer.len));
            put_event(g, chunk_obj(g, choice(g, d, NULL, NULL)));
        } else {
            put_event(g, chunk_obj(g, choice(g, NULL, g->answer.data, NULL)));
        }
    }
    if (!done) return;
    if (!strcmp(g->finish, "error")) {
        put_event(g, json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message",
                               g->error[0] ? g->error : "generation failed", "type", "server_error",
                               "param", "code"));
    }
    put_event(g, chunk_obj(g, choice(g, NULL, NULL, ts_oai_finish(g))));
    if (g->include_usage) {
        json_t *u = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", g->rid, "object",
                              g->kind == TS_GEN_CHAT ? "chat.completion.chunk" : "text_completion",
                              "created", (json_int_t)g->created, "model", g->srv->model_name,
                              "choices", "usage", ts_oai_usage(g));
        put_event(g, u);
    }
    ts_buf_puts(&g->out, "data: [DONE]\n\n");
    g->sse_state = 2;
}

static void trim_end(ts_buf *b) {
    while (b->len && is_space(b->data[b->len - 1])) b->data[--b->len] = '\0';
}

enum MHD_Result ts_oai_respond(struct MHD_Connection *c, ts_http_req *r, ts_gen **g) {
    if ((*g)->stream) {
        ts_gen *owned = *g;
        *g = NULL; /* the response owns it */
        return ts_gen_stream(c, r, owned);
    }
    ts_buf text = {0};
    enum MHD_Result res;
    if (!ts_gen_wait_done(*g, &text)) {
        r->status = 499; /* the client went away */
        res = MHD_NO;
    } else {
        ts_oai_route(*g, text.data ? text.data : "", text.len, true);
        res = ts_oai_reply(c, r, *g);
    }
    ts_buf_free(&text);
    return res;
}

enum MHD_Result ts_oai_reply(struct MHD_Connection *c, ts_http_req *r, ts_gen *g) {
    if (!strcmp(g->finish, "error")) {
        int code = ts_http_status(g->status, g->error);
        return ts_reply_error(c, r, code == 200 ? 500 : code, NULL, NULL, "%s",
                              g->error[0] ? g->error : "generation failed");
    }
    json_t *ch = json_pack("{s:i,s:n,s:s}", "index", 0, "logprobs", "finish_reason", ts_oai_finish(g));
    if (g->kind == TS_GEN_CHAT) {
        trim_end(&g->reasoning);
        json_t *m = json_pack("{s:s,s:s%}", "role", "assistant", "content",
                              g->answer.data ? g->answer.data : "", g->answer.len);
        if (g->reasoning.len)
            json_object_set_new(m, "reasoning_content",
                                json_stringn(g->reasoning.data, g->reasoning.len));
        json_object_set_new(ch, "message", m);
    } else {
        json_object_set_new(ch, "text", json_stringn(g->answer.data ? g->answer.data : "",
                                                     g->answer.len));
    }
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", g->rid, "object",
                          g->kind == TS_GEN_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)g->created, "model", g->srv->model_name, "choices", ch,
                          "usage", ts_oai_usage(g));
    return ts_reply_json(c, r, 200, j);
}
