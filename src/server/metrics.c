/* Server metrics and their Prometheus text format. */
#include <string.h>

#include "server/metrics.h"

static const double TTFT_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double ITL_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static const char *const FINISH[4] = {"stop", "length", "cancelled", "error"};

static void hist_init(ts_hist *h, const double *b, int n) {
    memset(h, 0, sizeof *h);
    h->n_bounds = n;
    memcpy(h->bounds, b, (size_t)n * sizeof *b);
}

void ts_metrics_init(ts_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    hist_init(&m->ttft, TTFT_BOUNDS, (int)(sizeof TTFT_BOUNDS / sizeof *TTFT_BOUNDS));
    hist_init(&m->itl, ITL_BOUNDS, (int)(sizeof ITL_BOUNDS / sizeof *ITL_BOUNDS));
}

void ts_metrics_free(ts_metrics *m) {
    if (m) pthread_mutex_destroy(&m->mu);
}

void ts_hist_observe(ts_hist *h, double x) {
    int i = 0;
    while (i < h->n_bounds && x > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += x;
    h->count++;
}

void ts_metrics_status(ts_metrics *m, int code) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_status && m->status_code[i] != code) i++;
    if (i == m->n_status && m->n_status < (int)(sizeof m->status_code / sizeof *m->status_code)) {
        m->status_code[i] = code;
        m->n_status++;
    }
    if (i < m->n_status) m->status_count[i]++;
    pthread_mutex_unlock(&m->mu);
}

void ts_metrics_finish(ts_metrics *m, const char *finish) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < 4; i++)
        if (!strcmp(finish, FINISH[i])) m->finish[i]++;
    pthread_mutex_unlock(&m->mu);
}

void ts_metrics_ttft(ts_metrics *m, double s) {
    pthread_mutex_lock(&m->mu);
    ts_hist_observe(&m->ttft, s);
    pthread_mutex_unlock(&m->mu);
}

void ts_metrics_itl(ts_metrics *m, double s) {
    pthread_mutex_lock(&m->mu);
    ts_hist_observe(&m->itl, s);
    pthread_mutex_unlock(&m->mu);
}

void ts_metrics_engine(ts_metrics *m, const ts_engine_stats *st, double now_ms) {
    pthread_mutex_lock(&m->mu);
    m->eng = *st;
    /* one rate sample per 250 ms at most */
    int last = (m->rate_head + TS_RATE_WINDOW - 1) % TS_RATE_WINDOW;
    if (!m->rate_len || now_ms - m->rate_t[last] >= 250) {
        m->rate_t[m->rate_head] = now_ms;
        m->rate_n[m->rate_head] = st->generated_tokens;
        m->rate_head = (m->rate_head + 1) % TS_RATE_WINDOW;
        if (m->rate_len < TS_RATE_WINDOW) m->rate_len++;
    }
    pthread_mutex_unlock(&m->mu);
}

static double rate_locked(const ts_metrics *m) {
    if (m->rate_len < 2) return 0;
    int last = (m->rate_head + TS_RATE_WINDOW - 1) % TS_RATE_WINDOW;
    /* the oldest sample no more than 10 s before the newest */
    int first = last;
    for (int k = 1; k < m->rate_len; k++) {
        int i = (last - k + TS_RATE_WINDOW) % TS_RATE_WINDOW;
        if (m->rate_t[last] - m->rate_t[i] > 10000) break;
        first = i;
    }
    double dt = (m->rate_t[last] - m->rate_t[first]) / 1e3;
    return dt > 0 ? (double)(m->rate_n[last] - m->rate_n[first]) / dt : 0;
}

double ts_metrics_rate(ts_metrics *m) {
    pthread_mutex_lock(&m->mu);
    double r = rate_locked(m);
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void put_hist(ts_buf *o, const char *name, const char *help, const ts_hist *h) {
    ts_buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        ts_buf_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    ts_buf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                  (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->count);
}

static void put_one(ts_buf *o, const char *name, const char *type, const char *help, double v) {
    ts_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.10g\n", name, help, name, type, name, v);
}

static double ratio(uint64_t hit, uint64_t miss) {
    return hit + miss ? (double)hit / (double)(hit + miss) : 0;
}

ts_status ts_metrics_render(ts_metrics *m, ts_buf *o) {
    pthread_mutex_lock(&m->mu);
    const ts_engine_stats *e = &m->eng;
    ts_buf_puts(o, "# HELP tessera_requests_total HTTP requests answered, by status code.\n"
                   "# TYPE tessera_requests_total counter\n");
    for (int i = 0; i < m->n_status; i++)
        ts_buf_printf(o, "tessera_requests_total{status=\"%d\"} %llu\n", m->status_code[i],
                      (unsigned long long)m->status_count[i]);
    ts_buf_puts(o, "# HELP tessera_generations_total Generations finished, by finish reason.\n"
                   "# TYPE tessera_generations_total counter\n");
    for (int i = 0; i < 4; i++)
        ts_buf_printf(o, "tessera_generations_total{finish_reason=\"%s\"} %llu\n", FINISH[i],
                      (unsigned long long)m->finish[i]);
    put_hist(o, "tessera_time_to_first_token_seconds", "Time from submission to the first token.",
             &m->ttft);
    put_hist(o, "tessera_inter_token_latency_seconds", "Time between consecutive streamed tokens.",
             &m->itl);
    put_one(o, "tessera_generated_tokens_total", "counter", "Tokens generated.",
            (double)e->generated_tokens);
    put_one(o, "tessera_prompt_tokens_total", "counter", "Prompt tokens computed (prefill).",
            (double)e->prefill_tokens);
    put_one(o, "tessera_cached_prompt_tokens_total", "counter",
            "Prompt tokens whose KV came from the prefix cache.", (double)e->cached_tokens);
    put_one(o, "tessera_tokens_per_second", "gauge",
            "Generated tokens per second over the last 10 s.", rate_locked(m));
    ts_buf_printf(o, "# HELP tessera_kv_blocks KV pool blocks by state.\n"
                     "# TYPE tessera_kv_blocks gauge\n"
                     "tessera_kv_blocks{state=\"used\"} %d\ntessera_kv_blocks{state=\"free\"} %d\n"
                     "tessera_kv_blocks{state=\"cached\"} %d\ntessera_kv_blocks{state=\"total\"} %d\n",
                  e->kv_blocks_used, e->kv_blocks_free, e->kv_blocks_cached, e->kv_blocks_total);
    put_one(o, "tessera_prefix_cache_hits_total", "counter", "Prefix cache block lookups that hit.",
            (double)e->prefix_hits);
    put_one(o, "tessera_prefix_cache_misses_total", "counter", "Prefix cache block lookups that missed.",
            (double)e->prefix_misses);
    put_one(o, "tessera_prefix_cache_hit_rate", "gauge", "Prefix cache hits / lookups since start.",
            ratio(e->prefix_hits, e->prefix_misses));
    put_one(o, "tessera_chunk_hits_total", "counter", "Chunk parts whose KV was already computed.",
            (double)e->chunk_hits);
    put_one(o, "tessera_chunk_misses_total", "counter", "Chunk parts whose KV had to be computed.",
            (double)e->chunk_misses);
    put_one(o, "tessera_chunk_hit_rate", "gauge", "Chunk hits / chunk parts since start.",
            ratio(e->chunk_hits, e->chunk_misses));
    put_one(o, "tessera_chunk_tokens_reused_total", "counter",
            "Prompt tokens whose KV came from a chunk.", (double)e->chunk_tokens_reused);
    put_one(o, "tessera_chunk_store_loads_total", "counter",
            "Chunks read back from the persistent store.", (double)e->chunk_store_loads);
    put_one(o, "tessera_chunks", "gauge", "Chunks registered.", (double)e->chunks);
    put_one(o, "tessera_chunk_bytes", "gauge", "Memory held by the chunk registry.",
            (double)e->chunk_bytes);
    put_one(o, "tessera_chunk_store_up", "gauge", "0 when a configured chunk store is unavailable.",
            e->chunk_store_ok ? 1 : 0);
    put_one(o, "tessera_kv_bytes_shared", "gauge", "KV bytes not duplicated thanks to sharing.",
            (double)e->kv_bytes_shared);
    put_one(o, "tessera_kv_evictions_total", "counter", "Cached KV blocks evicted.",
            (double)e->evictions);
    put_one(o, "tessera_preemptions_total", "counter", "Running requests preempted.",
            (double)e->preemptions);
    put_one(o, "tessera_requests_running", "gauge", "Requests running.", e->n_running);
    put_one(o, "tessera_requests_waiting", "gauge", "Requests queued.", e->n_waiting);
    put_one(o, "tessera_cascade_steps_total", "counter", "Steps that used cascade attention.",
            (double)e->cascade_steps);
    pthread_mutex_unlock(&m->mu);
    return TS_OK;
}
