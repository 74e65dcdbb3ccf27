/* Engine API: creation, the thread-safe inbox for submit/cancel, events. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "engine/engine_int.h"
#include "engine/engine.h"
#include "engine/generate.h"

static void stats_now(ts_engine *e, ts_engine_stats *out);

ts_engine_opts ts_engine_opts_default(void) {
    return (ts_engine_opts){.block_size = 16, .max_batch_tokens = 512, .max_running = 64,
                            .max_waiting = 4096, .prefix_cache = true, .cascade = -1,
                            .chunk_mode = TS_CHUNKS_REPAIR, .repair_frac = 0.03f};
}

ts_request ts_request_default(void) {
    return (ts_request){.sample = ts_sample_params_default(), .max_tokens = 256,
                        .repair_frac = -1.0f};
}

bool ts_grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

ts_status ts_engine_create(const char *dir, const ts_engine_opts *opts, ts_engine **out,
                           ts_err *err) {
    *out = NULL;
    ts_engine_opts o = opts ? *opts : ts_engine_opts_default();
    if (o.max_batch_tokens <= 0) o.max_batch_tokens = 512;
    if (o.max_running <= 0) o.max_running = 64;
    if (o.max_waiting <= 0) o.max_waiting = 4096;
    if (o.block_size <= 0) o.block_size = 16;
    if (o.chunk_mode <= TS_CHUNKS_DEFAULT || o.chunk_mode > TS_CHUNKS_REPAIR) o.chunk_mode = TS_CHUNKS_REPAIR;
    if (!(o.repair_frac >= 0 && o.repair_frac <= 1)) o.repair_frac = 0.03f;
    ts_engine *e = calloc(1, sizeof *e);
    if (!e) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    e->o = o;
    const char *ds = getenv("TS_DEVICE_SAMPLE");
    e->dev_sample = !(ds && !strcmp(ds, "0"));
    e->next_id = 1;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    ts_runtime_opts ro = ts_runtime_opts_default();
    ro.n_threads = o.n_threads;
    ro.kv_bytes = o.kv_bytes;
    ro.block_size = o.block_size;
    ro.fast_prefill = !o.exact;
    ro.isa = (ts_cpu_isa)o.isa;
    ro.device = o.device;
    ro.kv_dtype = o.kv_dtype;
    ts_status s = ts_runtime_open(dir, &ro, &e->rt, err);
    if (!s) {
        e->row = malloc((size_t)e->rt->model->cfg.vocab * sizeof *e->row);
        if (!e->row) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    if (!s) s = ts_echunks_create(e, err);
    if (s) {
        ts_engine_destroy(e);
        return s;
    }
    ts_fwd_set_cascade(e->rt->fwd, o.cascade);
    stats_now(e, &e->snap);
    *out = e;
    return TS_OK;
}

static void free_req(ts_engine *e, ts_req *r) {
    if (!r) return;
    ts_echunks_release(e, r);
    free(r->tokens);
    free(r->blocks);
    free(r->hashes);
    free(r->salt);
    ts_sampler_destroy(r->smp);
    ts_stop_destroy(r->stop);
    free(r);
}

void ts_engine_finish(ts_engine *e, ts_req *r, const char *finish, ts_status st, const char *msg) {
    /* release whatever text the stop matcher still holds back */
    if (strcmp(finish, "stop") && r->stop) {
        ts_buf_clear(&e->piece);
        ts_tok_stream_flush(&r->ds, &e->piece);
        size_t ok = 0;
        ts_stop_feed(r->stop, e->piece.data ? e->piece.data : "", e->piece.len, &ok);
        size_t rest = ts_stop_pending(r->stop);
        if (rest && r->cb) {
            ts_event ev = {.kind = TS_EVENT_TEXT, .id = r->id, .text = ts_stop_text(r->stop),
                           .len = rest, .token = -1};
            r->cb(r->cb_ctx, &ev);
        }
    }
    ts_kv_release_table(e->rt->kv, r->blocks, r->n_blocks);
    r->n_blocks = 0;
    if (!strcmp(finish, "cancelled")) e->st.requests_cancelled++;
    else if (!strcmp(finish, "error")) e->st.requests_failed++;
    else e->st.requests_done++;
    if (r->cb) {
        ts_event ev = {.kind = TS_EVENT_DONE, .id = r->id, .finish = finish, .status = st,
                       .error = msg, .n_prompt = r->n_prompt, .n_cached = r->n_cached,
                       .n_gen = r->n_gen, .ttft_ms = r->ttft_ms, .token = -1};
        r->cb(r->cb_ctx, &ev);
    }
    pthread_mutex_lock(&e->lock);
    e->n_queued_total--;
    pthread_mutex_unlock(&e->lock);
    free_req(e, r);
}

bool ts_engine_emit_token(ts_engine *e, ts_req *r, int32_t id) {
    ts_buf_clear(&e->piece);
    ts_tok_stream_push(&r->ds, id, &e->piece);
    size_t ok = 0;
    bool hit = ts_stop_feed(r->stop, e->piece.data ? e->piece.data : "", e->piece.len, &ok);
    if (ok && r->cb) {
        ts_event ev = {.kind = TS_EVENT_TEXT, .id = r->id, .text = ts_stop_text(r->stop),
                       .len = ok, .token = id};
        r->cb(r->cb_ctx, &ev);
    }
    if (ok) ts_stop_consume(r->stop, ok);
    return hit;
}

ts_status ts_engine_submit(ts_engine *e, const ts_request *q, ts_event_fn cb, void *cb_ctx,
                           int64_t *id, ts_err *err) {
    const ts_model_config *c = &e->rt->model->cfg;
    if (q->max_tokens < 1) return ts_fail(err, TS_ERR_INVALID, "max_tokens must be at least 1");
    ts_status s = ts_sample_params_validate(&q->sample, err);
    if (s) return s;
    if (q->cache_salt_len && !q->cache_salt)
        return ts_fail(err, TS_ERR_INVALID, "cache salt length without a salt");
    ts_req *r = calloc(1, sizeof *r);
    if (!r) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (q->cache_salt) { /* before the prompt: chunk lookups are per salt */
        r->salt = malloc(q->cache_salt_len ? q->cache_salt_len : 1);
        if (!r->salt) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        else {
            memcpy(r->salt, q->cache_salt, q->cache_salt_len);
            r->salt_len = q->cache_salt_len;
            r->has_salt = true;
        }
    }
    if (s) {
    } else if (q->n_parts) {
        s = ts_echunks_build_prompt(e, q, r, err);
    } else if (q->text) {
        size_t n = 0;
        s = ts_tok_encode(e->rt->tok, q->text, strlen(q->text), false, &r->tokens, &n, err);
        if (!s && n > (size_t)c->max_pos) s = TS_ERR_CAPACITY;
        r->n_tokens = r->cap_tokens = (int)(n < (size_t)c->max_pos ? n : (size_t)c->max_pos);
    } else {
        if (q->n_ids > (size_t)c->max_pos) s = TS_ERR_CAPACITY;
        else if (!(r->tokens = malloc((q->n_ids ? q->n_ids : 1) * sizeof *r->tokens)))
            s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        else {
            if (q->n_ids) memcpy(r->tokens, q->ids, q->n_ids * sizeof *r->tokens);
            r->n_tokens = r->cap_tokens = (int)q->n_ids;
        }
    }
    size_t n_prompt = q->text || q->n_parts ? (size_t)r->n_tokens : q->n_ids;
    if (s == TS_ERR_CAPACITY)
        s = ts_fail(err, TS_ERR_CAPACITY,
                    "the prompt is longer than the model's context of %d tokens", c->max_pos);
    if (!s && n_prompt == 0) s = ts_fail(err, TS_ERR_INVALID, "the prompt is empty");
    for (int i = 0; !s && i < r->n_tokens; i++)
        if (r->tokens[i] < 0 || r->tokens[i] >= c->vocab)
            s = ts_fail(err, TS_ERR_INVALID, "token id %d is out of range (the model has %d)",
                        r->tokens[i], c->vocab);
    ts_kv *kv = e->rt->kv;
    if (!s && (int64_t)r->n_tokens + 1 > (int64_t)kv->n_blocks * kv->block_size)
        s = ts_fail(err, TS_ERR_CAPACITY,
                    "the prompt needs %d tokens of KV but the whole pool holds %lld (raise --kv-mem)",
                    r->n_tokens + 1, (long long)kv->n_blocks * kv->block_size);
    if (!s) s = ts_sampler_create(&q->sample, c->vocab, &r->smp, err);
    if (!s) s = ts_stop_create(q->stop, (size_t)(q->stop ? q->n_stop : 0), &r->stop, err);
    if (s) {
        free_req(e, r);
        return s;
    }
    r->n_prompt = r->n_tokens;
    r->max_tokens = q->max_tokens;
    r->ignore_eos = q->ignore_eos;
    r->cb = cb;
    r->cb_ctx = cb_ctx;
    ts_tok_stream_init(&r->ds, e->rt->tok, true);
    r->t_submit = ts_now_ms();
    pthread_mutex_lock(&e->lock);
    if (e->n_queued_total >= e->o.max_waiting) {
        pthread_mutex_unlock(&e->lock);
        free_req(e, r);
        return ts_fail(err, TS_ERR_BUSY, "the request queue is full (%d requests)",
                       e->o.max_waiting);
    }
    if (!ts_grow((void **)&e->inbox, &e->cap_inbox, e->n_inbox + 1, sizeof *e->inbox)) {
        pthread_mutex_unlock(&e->lock);
        free_req(e, r);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    r->id = e->next_id++;
    e->inbox[e->n_inbox++] = r;
    e->n_queued_total++;
    if (id) *id = r->id;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    return TS_OK;
}

void ts_engine_cancel(ts_engine *e, int64_t id) {
    pthread_mutex_lock(&e->lock);
    if (ts_grow((void **)&e->cancels, &e->cap_cancels, e->n_cancels + 1, sizeof *e->cancels))
        e->cancels[e->n_cancels++] = id;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

/* Moves the inbox to the waiting queue and applies cancellations. */
static ts_status drain(ts_engine *e, ts_err *err) {
    pthread_mutex_lock(&e->lock);
    ts_status s = TS_OK;
    /* room for every request in waiting, so that preemption can always
     * move a running one back without allocating */
    if (!ts_grow((void **)&e->waiting, &e->cap_waiting,
                 e->n_waiting + e->n_inbox + e->n_running + 1, sizeof *e->waiting)) {
        s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    } else if (e->n_inbox) {
        memcpy(e->waiting + e->n_waiting, e->inbox, (size_t)e->n_inbox * sizeof *e->inbox);
        e->n_waiting += e->n_inbox;
        e->n_inbox = 0;
    }
    int n_c = e->n_cancels;
    int64_t *c = n_c ? malloc((size_t)n_c * sizeof *c) : NULL;
    if (c) memcpy(c, e->cancels, (size_t)n_c * sizeof *c);
    if (c || !n_c) e->n_cancels = 0;
    pthread_mutex_unlock(&e->lock);
    for (int k = 0; c && k < n_c; k++) {
        for (int i = 0; i < e->n_waiting; i++)
            if (e->waiting[i]->id == c[k]) e->waiting[i]->cancelled = true;
        for (int i = 0; i < e->n_running; i++)
            if (e->running[i]->id == c[k]) e->running[i]->cancelled = true;
    }
    free(c);
    /* finish cancelled requests wherever they are */
    int w = 0;
    for (int i = 0; i < e->n_waiting; i++) {
        ts_req *r = e->waiting[i];
        if (r->cancelled) ts_engine_finish(e, r, "cancelled", TS_OK, NULL);
        else e->waiting[w++] = r;
    }
    e->n_waiting = w;
    w = 0;
    for (int i = 0; i < e->n_running; i++) {
        ts_req *r = e->running[i];
        if (r->cancelled) ts_engine_finish(e, r, "cancelled", TS_OK, NULL);
        else e->running[w++] = r;
    }
    e->n_running = w;
    return s;
}

ts_status ts_engine_step(ts_engine *e, int *n_busy, ts_err *err) {
    ts_status s = drain(e, err);
    if (!s && (e->n_waiting || e->n_running)) s = ts_sched_step(e, err);
    else if (!s) ts_echunks_encode_pending(e); /* idle: compute newly registered chunks */
    ts_engine_stats snap;
    stats_now(e, &snap);
    pthread_mutex_lock(&e->lock);
    e->snap = snap;
    pthread_mutex_unlock(&e->lock);
    if (n_busy) {
        pthread_mutex_lock(&e->lock);
        *n_busy = e->n_queued_total;
        pthread_mutex_unlock(&e->lock);
    }
    return s;
}

ts_status ts_engine_run(ts_engine *e, ts_err *err) {
    int busy = 1;
    ts_status s = TS_OK;
    while (!s && busy) s = ts_engine_step(e, &busy, err);
    return s;
}

bool ts_engine_wait(ts_engine *e, int timeout_ms) {
    pthread_mutex_lock(&e->lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    while (e->n_queued_total == 0 && e->n_cancels == 0 && !ts_echunks_has_pending(e)) {
        int rc = timeout_ms < 0 ? pthread_cond_wait(&e->cond, &e->lock)
                                : pthread_cond_timedwait(&e->cond, &e->lock, &until);
        if (rc == ETIMEDOUT) break;
    }
    bool any = e->n_queued_total > 0 || e->n_cancels > 0 || ts_echunks_has_pending(e);
    pthread_mutex_unlock(&e->lock);
    return any;
}

/* Stats now (stepping thread). */
static void stats_now(ts_engine *e, ts_engine_stats *out) {
    *out = e->st;
    ts_kv_stats ks;
    ts_kv_get_stats(e->rt->kv, &ks);
    out->prefix_hits = ks.hits;
    out->prefix_misses = ks.misses;
    out->evictions = ks.evictions;
    out->kv_blocks_total = ks.n_blocks;
    out->kv_blocks_used = ks.n_used;
    out->kv_blocks_cached = ks.n_cached;
    out->kv_blocks_free = ks.n_free;
    out->kv_bytes_shared = ks.bytes_shared;
    out->n_running = e->n_running;
    out->n_waiting = e->n_waiting;
    ts_echunks_stats(e, out);
}

void ts_engine_get_stats(ts_engine *e, ts_engine_stats *out) {
    pthread_mutex_lock(&e->lock);
    *out = e->snap;
    pthread_mutex_unlock(&e->lock);
}

void ts_engine_destroy(ts_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_inbox; i++) free_req(e, e->inbox[i]);
    for (int i = 0; i < e->n_waiting; i++) ts_engine_finish(e, e->waiting[i], "cancelled", TS_OK, NULL);
    for (int i = 0; i < e->n_running; i++) ts_engine_finish(e, e->running[i], "cancelled", TS_OK, NULL);
    free(e->inbox);
    free(e->cancels);
    free(e->waiting);
    free(e->running);
    free(e->batch);
    free(e->batch_req);
    free(e->row);
    ts_buf_free(&e->piece);
    ts_echunks_destroy(e);
    ts_runtime_close(e->rt);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    free(e);
}

ts_runtime *ts_engine_runtime(ts_engine *e) { return e->rt; }
