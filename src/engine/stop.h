/* Stop strings over a streamed, detokenized text.
 *
 * The matcher is fed the text piece by piece (a piece may end in the middle
 * of a UTF-8 character or of a stop string). After each piece it releases
 * the longest prefix of the pending text that can be emitted for sure:
 * it holds back the longest suffix that is a proper prefix of some stop
 * string, and an incomplete UTF-8 character at the end. When a stop string
 * occurs, the text before it is released and everything from the stop
 * string on is dropped; later feeds release nothing. The occurrence that
 * counts is the one that completes first in the text (earliest end; on a
 * tie the earliest start, then the lowest index), as generation stops as
 * soon as a stop string is complete: with stops "b" and "ab!" the text
 * "xab!" stops at "b" and releases "xa". This choice does not depend on how
 * the text is split into pieces. The concatenation of what is released is
 * the whole text cut there (or the whole text, after ts_stop_flush). */
#ifndef TS_ENGINE_STOP_H
#define TS_ENGINE_STOP_H

#include <stdbool.h>
#include <stddef.h>
#include "tessera.h"

typedef struct ts_stop ts_stop;

/* Creates a matcher for stops[0..n_stops) (each NUL-terminated, copied).
 * n_stops may be 0 (then only UTF-8 completion holds text back).
 * TS_ERR_INVALID for an empty stop string or one that is not valid UTF-8.
 * *out is set only on success; destroy with ts_stop_destroy. */
ts_status ts_stop_create(const char *const *stops, size_t n_stops, ts_stop **out,
                         ts_err *err);

/* Frees the matcher; NULL is a no-op. */
void ts_stop_destroy(ts_stop *m);

/* Forgets all pending text and any match, for a new stream. */
void ts_stop_reset(ts_stop *m);

/* Appends piece[0..n) and sets *emit / *n_emit to the text that may be
 * released now (a view into the matcher, valid until the next call on it;
 * *n_emit may be 0). *stopped (may be NULL) becomes true if a stop string
 * has matched, in this piece or before; *emit then ends right before it,
 * and once matched, further feeds release nothing. Returns TS_OK, or
 * TS_ERR_NOMEM (the piece is then not consumed and nothing is released). */
ts_status ts_stop_feed(ts_stop *m, const char *piece, size_t n, const char **emit,
                       size_t *n_emit, bool *stopped);

/* At the end of the stream: releases all text still held back (including an
 * incomplete UTF-8 character), unless a stop string matched. */
void ts_stop_flush(ts_stop *m, const char **emit, size_t *n_emit);

/* Index (into the stops given at creation) of the stop string that matched,
 * or -1 (see the top of this file for which occurrence counts). */
int ts_stop_matched(const ts_stop *m);

/* Bytes currently held back. */
size_t ts_stop_pending(const ts_stop *m);

#endif
