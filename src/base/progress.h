/* ts_progress: a one-line progress report for slow loads, drawn on stderr
 * only when stderr is a terminal ("loading <label>: 512 MB / 1.2 GB checked,
 * 0.8 s"), at most about ten times a second. Silent otherwise, so logs and
 * tests stay clean. */
#ifndef TS_BASE_PROGRESS_H
#define TS_BASE_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ts_progress {
    char label[128];
    double t0;        /* start time (monotonic seconds) */
    double last_draw; /* when the line was last drawn; < 0 before the first */
    uint64_t done, total;
    bool tty;         /* stderr is a terminal: draw, else stay quiet */
    bool drawn;       /* a line is on the screen and needs ending */
} ts_progress;

/* Starts a report named label (copied, truncated to fit). Draws nothing. */
void ts_progress_start(ts_progress *p, const char *label);
/* Records done of total bytes; redraws the line when stderr is a terminal
 * and at least 0.1 s passed since the last draw (or this is the first). */
void ts_progress_update(ts_progress *p, uint64_t done, uint64_t total);
/* Adapter with the ts_progress_fn signature (io/safetensors.h): ctx is a
 * ts_progress started by the caller. */
void ts_progress_cb(void *ctx, uint64_t done, uint64_t total);
/* Draws the final state and ends the line, if anything was drawn. */
void ts_progress_finish(ts_progress *p);

/* Writes the line's text (without "\r") into buf, e.g. "loading x: 512 MB /
 * 1.2 GB checked, 0.8 s". Exposed for tests. */
void ts_progress_format(char *buf, size_t size, const char *label, uint64_t done, uint64_t total,
                        double seconds);
/* Human size: "812 B", "40 KB", "512 MB", "1.2 GB" (binary multiples). */
void ts_progress_bytes(char *buf, size_t size, uint64_t bytes);

#endif
