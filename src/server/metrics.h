/* Server metrics: request counts by HTTP status and finish reason,
 * latency histograms, a tokens/s window and the engine's last stats, and
 * their Prometheus text rendering. Every function is thread-safe. */
#ifndef TS_SERVER_METRICS_H
#define TS_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "base/buf.h"
#include "tessera.h"

#define TS_HIST_MAX 16
#define TS_RATE_WINDOW 64

typedef struct ts_hist {
    int n_bounds;
    double bounds[TS_HIST_MAX];   /* upper bounds in seconds, increasing */
    uint64_t counts[TS_HIST_MAX + 1]; /* per bucket (not cumulative); last = +Inf */
    double sum;
    uint64_t count;
} ts_hist;

typedef struct ts_metrics {
    pthread_mutex_t mu;
    int n_status;
    int status_code[24];
    uint64_t status_count[24];
    uint64_t finish[4];           /* stop, length, cancelled, error */
    ts_hist ttft, itl;
    ts_engine_stats eng;          /* the engine thread's last snapshot */
    double rate_t[TS_RATE_WINDOW];/* (ms, generated tokens) samples */
    uint64_t rate_n[TS_RATE_WINDOW];
    int rate_head, rate_len;
    double t_start;
} ts_metrics;

void ts_metrics_init(ts_metrics *m);
void ts_metrics_free(ts_metrics *m);
/* Counts one reply with HTTP status code. */
void ts_metrics_status(ts_metrics *m, int code);
/* Counts a finished generation ("stop", "length", "cancelled", "error"). */
void ts_metrics_finish(ts_metrics *m, const char *finish);
/* Observes a time to first token / an inter-token gap, in seconds. */
void ts_metrics_ttft(ts_metrics *m, double s);
void ts_metrics_itl(ts_metrics *m, double s);
/* Stores an engine stats snapshot taken at now_ms (engine thread). */
void ts_metrics_engine(ts_metrics *m, const ts_engine_stats *st, double now_ms);
/* Generated tokens per second over the last ~10 s of samples. */
double ts_metrics_rate(ts_metrics *m);
/* Appends the Prometheus text exposition of everything to out. */
ts_status ts_metrics_render(ts_metrics *m, ts_buf *out);
/* Adds x to h (pure; no locking). */
void ts_hist_observe(ts_hist *h, double x);

#endif
