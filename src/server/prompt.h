/* Chat prompts with chunk parts. A message's content parts are flattened
 * into one string in which each chunk part is a marker
 * ("\x1ets-chunk:<index>\x1e"); the chat template renders the messages as
 * usual, and the rendered text is split back at the markers into
 * ts_prompt_part text and chunk parts. User text never contains the
 * marker byte (0x1e is removed from it). */
#ifndef TS_SERVER_PROMPT_H
#define TS_SERVER_PROMPT_H

#include "base/buf.h"
#include "tessera.h"

#define TS_PROMPT_MARK '\x1e'

/* Appends text[0..n) to b without any 0x1e byte. */
ts_status ts_prompt_append_text(ts_buf *b, const char *text, size_t n);
/* Appends the marker of chunk index i (>= 0) to b. */
ts_status ts_prompt_append_marker(ts_buf *b, int i);
/* Splits rendered (NUL-terminated; modified in place: markers become NULs)
 * into parts: text parts point into rendered, chunk part k cites
 * chunk_ids[index]. Every index in [0, n_chunks) must appear exactly once
 * (else TS_ERR_INVALID: the template dropped or repeated a chunk).
 * *parts is malloc'd (free()); empty text parts are left out. */
ts_status ts_prompt_split(char *rendered, const char *const *chunk_ids, int n_chunks,
                          ts_prompt_part **parts, int *n_parts, ts_err *err);

#endif
