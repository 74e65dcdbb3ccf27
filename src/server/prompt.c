/* Chunk markers in rendered chat prompts. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "server/prompt.h"

static const char TAG[] = "ts-chunk:";

ts_status ts_prompt_append_text(ts_buf *b, const char *text, size_t n) {
    size_t i = 0;
    while (i < n) {
        const char *m = memchr(text + i, TS_PROMPT_MARK, n - i);
        size_t end = m ? (size_t)(m - text) : n;
        if (end > i && ts_buf_append(b, text + i, end - i)) return TS_ERR_NOMEM;
        i = end + 1;
    }
    return ts_buf_reserve(b, 0);
}

ts_status ts_prompt_append_marker(ts_buf *b, int i) {
    return ts_buf_printf(b, "%c%s%d%c", TS_PROMPT_MARK, TAG, i, TS_PROMPT_MARK);
}

ts_status ts_prompt_split(char *s, const char *const *chunk_ids, int n_chunks,
                          ts_prompt_part **parts, int *n_parts, ts_err *err) {
    *parts = NULL;
    *n_parts = 0;
    /* at most one text part before each marker, plus one at the end */
    ts_prompt_part *p = calloc((size_t)2 * (size_t)n_chunks + 1, sizeof *p);
    unsigned char *seen = calloc((size_t)n_chunks + 1, 1);
    if (!p || !seen) {
        free(p);
        free(seen);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    int n = 0;
    ts_status st = TS_OK;
    char *text = s;
    for (char *m; !st && (m = strchr(text, TS_PROMPT_MARK));) {
        char *tag = m + 1, *end = tag;
        long idx = -1;
        if (!strncmp(tag, TAG, sizeof TAG - 1)) idx = strtol(tag + sizeof TAG - 1, &end, 10);
        if (idx < 0 || idx >= n_chunks || *end != TS_PROMPT_MARK || end == tag + sizeof TAG - 1) {
            st = ts_fail(err, TS_ERR_INVALID, "the rendered prompt holds a damaged chunk marker");
            break;
        }
        if (seen[idx]++) {
            st = ts_fail(err, TS_ERR_INVALID, "the chat template repeated chunk %s",
                         chunk_ids[idx]);
            break;
        }
        *m = '\0';
        if (*text) p[n++].text = text;
        p[n++].chunk = chunk_ids[idx];
        text = end + 1;
    }
    if (!st && *text) p[n++].text = text;
    for (int i = 0; !st && i < n_chunks; i++)
        if (!seen[i])
            st = ts_fail(err, TS_ERR_INVALID, "the chat template dropped chunk %s", chunk_ids[i]);
    free(seen);
    if (st) {
        free(p);
        return st;
    }
    *parts = p;
    *n_parts = n;
    return TS_OK;
}
