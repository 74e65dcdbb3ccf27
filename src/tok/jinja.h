/* Jinja: tessera's interpreter for the subset of Jinja2 that Hugging Face
 * chat templates use, configured as transformers configures it
 * (trim_blocks, lstrip_blocks, the loopcontrols extension, a tojson that is
 * json.dumps(x, ensure_ascii=False), raise_exception(msg), strftime_now(fmt)).
 *
 * A parsed template is immutable: several threads may render it at once.
 * Rendering is bounded by ts_jinja_limits, so a runaway template ends with an
 * error instead of hanging or exhausting memory. */
#ifndef TS_TOK_JINJA_H
#define TS_TOK_JINJA_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "tessera.h"
#include "base/buf.h"

typedef struct ts_jinja ts_jinja;

/* Bounds on one render. A zero field takes the default in brackets. */
typedef struct ts_jinja_limits {
    uint64_t max_steps;     /* statements + expressions + loop iterations [20,000,000] */
    size_t max_output;      /* bytes of rendered text [16 MiB] */
    size_t max_memory;      /* bytes of working memory (values, strings) [256 MiB] */
    int max_depth;          /* nested macro calls / expression depth [200] */
} ts_jinja_limits;

/* Parses len bytes of template source. On success *out owns a copy of
 * everything it needs (src may be freed). A syntax error gives
 * TS_ERR_FORMAT with "template line N: ..." in err. */
ts_status ts_jinja_parse(const char *src, size_t len, ts_jinja **out, ts_err *err);
void ts_jinja_free(ts_jinja *t);

/* Renders t with the variables of vars (a JSON object, may be NULL) and
 * appends the text to out; nothing is appended on failure. Variables not in
 * vars are Jinja's Undefined. Type errors, undefined attribute access and
 * raise_exception(msg) give TS_ERR_INVALID with the message ("template line
 * N: ..."); a limit reached gives TS_ERR_CAPACITY. limits may be NULL. */
ts_status ts_jinja_render(const ts_jinja *t, const json_t *vars,
                          const ts_jinja_limits *limits, ts_buf *out, ts_err *err);

#endif
