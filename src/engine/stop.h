/* Stop strings over a streamed, detokenized text.
 *
 * The matcher is fed the text piece by piece (a piece may end in the middle
 * of a UTF-8 character or of a stop string). After each piece it tells how
 * long a prefix of the pending text can be emitted for sure:
 * it holds back the longest suffix that is a proper prefix of some stop
 * string, and an incomplete UTF-8 character at the end. When a stop string
 * occurs, the text before it may be emitted and everything from the
 * stop string on is dropped; later pieces are ignored. The occurrence that
 * counts is the one that completes first in the text (earliest end; on a
 * tie the earliest start, then the lowest index), as generation stops as
 * soon as a stop string is complete: with stops "b" and "ab!" the text
 * "xab!" stops at "b" and releases "xa". This choice does not depend on how
 * the text is split into pieces. Everything emitted, plus what is pending
 * at the end of the stream, is the whole text cut there. */
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

/* Appends piece[0..n) (piece may be NULL when n is 0) to the pending text
 * and sets *n_safe to how many bytes at the front of ts_stop_text() may be
 * emitted now; the caller emits them and calls ts_stop_consume (bytes not
 * consumed stay pending and are counted again by the next call). Returns
 * true once a stop string has matched: the pending text then ends right
 * before it (*n_safe covers all of it) and further pieces are ignored.
 * If memory for the piece cannot be had, the piece is dropped and the call
 * reports the pending text only. */
bool ts_stop_feed(ts_stop *m, const char *piece, size_t n, size_t *n_safe);

/* The pending text (ts_stop_pending bytes, NUL-terminated; never NULL),
 * valid until the next feed, consume or reset. */
const char *ts_stop_text(const ts_stop *m);

/* Drops the first n pending bytes (n is clamped to what is pending). */
void ts_stop_consume(ts_stop *m, size_t n);

/* Bytes pending: not yet consumed. At the end of a stream without a match,
 * all of them may be emitted (possibly ending in an incomplete character). */
size_t ts_stop_pending(const ts_stop *m);

/* Index (into the stops given at creation) of the stop string that matched,
 * or -1 (see the top of this file for which occurrence counts). */
int ts_stop_matched(const ts_stop *m);

#endif
