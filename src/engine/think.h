/* Streaming separation of a reasoning model's <think>...</think> part from
 * its answer. Text is fed as it is decoded; each piece is routed to the
 * reasoning or the answer side. A tag split across pieces is held back until
 * it can be decided. If the prompt already opened the think block (some
 * templates end with "<think>\n"), start with in_think = true. */
#ifndef TS_ENGINE_THINK_H
#define TS_ENGINE_THINK_H

#include <stdbool.h>
#include "base/buf.h"

typedef struct ts_think {
    bool in_think;
    bool seen_answer;    /* non-space answer text seen: no more think blocks */
    bool closed;         /* a think block has ended (answer text follows it) */
    ts_buf hold;         /* a possible partial tag */
} ts_think;

void ts_think_init(ts_think *t, bool in_think);
/* Routes text to reasoning/answer (either may be NULL to drop it). */
ts_status ts_think_feed(ts_think *t, const char *text, size_t len, ts_buf *reasoning,
                        ts_buf *answer);
/* Flushes held text at the end of the stream. */
ts_status ts_think_finish(ts_think *t, ts_buf *reasoning, ts_buf *answer);
void ts_think_free(ts_think *t);

#endif
