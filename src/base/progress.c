#include "base/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void ts_progress_bytes(char *buf, size_t size, uint64_t b) {
    const double kb = 1024.0, mb = kb * 1024.0, gb = mb * 1024.0;
    if (b >= (uint64_t)gb) snprintf(buf, size, "%.1f GB", (double)b / gb);
    else if (b >= (uint64_t)mb) snprintf(buf, size, "%.0f MB", (double)b / mb);
    else if (b >= (uint64_t)kb) snprintf(buf, size, "%.0f KB", (double)b / kb);
    else snprintf(buf, size, "%u B", (unsigned)b);
}

void ts_progress_format(char *buf, size_t size, const char *label, uint64_t done, uint64_t total,
                        double seconds) {
    char d[32], t[32];
    ts_progress_bytes(d, sizeof d, done);
    ts_progress_bytes(t, sizeof t, total);
    snprintf(buf, size, "loading %s: %s / %s checked, %.1f s", label, d, t, seconds);
}

void ts_progress_start(ts_progress *p, const char *label) {
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->t0 = now_s();
    p->last_draw = -1.0;
    p->done = p->total = 0;
    p->tty = isatty(STDERR_FILENO) == 1;
    p->drawn = false;
}

static void draw(ts_progress *p, double t) {
    char line[256];
    ts_progress_format(line, sizeof line, p->label, p->done, p->total, t - p->t0);
    fprintf(stderr, "\r%s\033[K", line); /* \033[K clears what a longer line left */
    fflush(stderr);
    p->last_draw = t;
    p->drawn = true;
}

void ts_progress_update(ts_progress *p, uint64_t done, uint64_t total) {
    p->done = done;
    p->total = total;
    if (!p->tty) return;
    double t = now_s();
    if (p->last_draw < 0 || t - p->last_draw >= 0.1) draw(p, t);
}

void ts_progress_cb(void *ctx, uint64_t done, uint64_t total) {
    ts_progress_update(ctx, done, total);
}

void ts_progress_finish(ts_progress *p) {
    if (!p->tty || !p->drawn) return;
    draw(p, now_s());
    fputc('\n', stderr);
    p->drawn = false;
}
