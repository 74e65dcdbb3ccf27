#include "engine/think.h"

#include <string.h>

static const char OPEN[] = "<think>", CLOSE[] = "</think>";

void ts_think_init(ts_think *t, bool in_think) {
    memset(t, 0, sizeof *t);
    t->in_think = in_think;
}

static ts_status out(ts_think *t, const char *p, size_t n, ts_buf *reasoning, ts_buf *answer) {
    if (!n) return TS_OK;
    if (t->in_think) return reasoning ? ts_buf_append(reasoning, p, n) : TS_OK;
    for (size_t i = 0; i < n && !t->seen_answer; i++)
        if (!strchr(" \t\r\n", p[i])) t->seen_answer = true;
    return answer ? ts_buf_append(answer, p, n) : TS_OK;
}

/* Length of the longest suffix of s[0,n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *s, size_t n, const char *tag) {
    size_t tl = strlen(tag);
    for (size_t k = tl - 1; k > 0; k--)
        if (k <= n && memcmp(s + n - k, tag, k) == 0) return k;
    return 0;
}

ts_status ts_think_feed(ts_think *t, const char *text, size_t len, ts_buf *reasoning,
                        ts_buf *answer) {
    if (ts_buf_append(&t->hold, text, len)) return TS_ERR_NOMEM;
    ts_status s = TS_OK;
    for (;;) {
        const char *tag = t->in_think ? CLOSE : (t->seen_answer ? NULL : OPEN);
        const char *h = t->hold.data ? t->hold.data : "";
        size_t n = t->hold.len;
        if (!tag) {
            s = out(t, h, n, reasoning, answer);
            ts_buf_clear(&t->hold);
            return s;
        }
        const char *hit = memmem(h, n, tag, strlen(tag));
        if (hit) {
            size_t before = (size_t)(hit - h), skip = before + strlen(tag);
            if ((s = out(t, h, before, reasoning, answer))) return s;
            if (t->in_think) t->closed = true;
            t->in_think = !t->in_think;
            memmove(t->hold.data, h + skip, n - skip);
            t->hold.len = n - skip;
            t->hold.data[t->hold.len] = '\0';
            continue;
        }
        size_t keep = partial_suffix(h, n, tag);
        if ((s = out(t, h, n - keep, reasoning, answer))) return s;
        memmove(t->hold.data, h + n - keep, keep);
        t->hold.len = keep;
        t->hold.data[keep] = '\0';
        return TS_OK;
    }
}

ts_status ts_think_finish(ts_think *t, ts_buf *reasoning, ts_buf *answer) {
    ts_status s = out(t, t->hold.data ? t->hold.data : "", t->hold.len, reasoning, answer);
    ts_buf_clear(&t->hold);
    return s;
}

void ts_think_free(ts_think *t) { ts_buf_free(&t->hold); }
