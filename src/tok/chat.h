/* Chat templates: the model's own Jinja chat_template (tokenizer_config.json
 * "chat_template", or chat_template.jinja), rendered by tessera's Jinja
 * interpreter (tok/jinja.h), plus splitting of <think> reasoning. */
#ifndef TS_TOK_CHAT_H
#define TS_TOK_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include "tessera.h"
#include "base/buf.h"
#include "tok/jinja.h"

typedef struct ts_chat_msg {
    const char *role;    /* "system", "user", "assistant", "tool" */
    const char *content;
} ts_chat_msg;

typedef struct ts_chat ts_chat;

/* Loads the template and the bos/eos token strings from model_dir:
 * chat_template.jinja if present, else tokenizer_config.json
 * "chat_template" (a string, or a list of {name, template} of which
 * "default" is taken); bos_token / eos_token from tokenizer_config.json
 * (a string or {"content": ...}). A missing template or bad JSON gives an
 * error naming the file; a template syntax error gives TS_ERR_FORMAT. */
ts_status ts_chat_load(const char *model_dir, ts_chat **out, ts_err *err);
/* From template source text (bos/eos may be NULL: the variable is then
 * undefined in the template). Copies what it needs. */
ts_status ts_chat_from_source(const char *source, const char *bos, const char *eos,
                              ts_chat **out, ts_err *err);
/* Frees chat; NULL is a no-op. */
void ts_chat_free(ts_chat *chat);

/* Renders messages as Hugging Face's apply_chat_template(messages,
 * add_generation_prompt=..., enable_thinking=...) does. enable_thinking: -1
 * leaves the variable undefined (the template's default), 0 or 1 defines
 * it. Appends to out; nothing is appended on failure. A template error
 * (raise_exception, a type error) gives TS_ERR_INVALID with its message. */
ts_status ts_chat_render(const ts_chat *chat, const ts_chat_msg *msgs, size_t n_msgs,
                         bool add_generation_prompt, int enable_thinking, ts_buf *out,
                         ts_err *err);

/* Renders with caller-built variables (a JSON object: messages with
 * tool_calls, tools, documents, any template kwargs). bos_token and
 * eos_token are added from the model unless vars sets them. Appends to
 * out; nothing is appended on failure. */
ts_status ts_chat_render_json(const ts_chat *chat, const json_t *vars, ts_buf *out, ts_err *err);

/* Splits generated text into reasoning (inside <think>...</think>, also when
 * the opening tag was part of the prompt) and answer. Both are views into
 * text: [*r, *r + *r_len) and [*a, *a + *a_len), whitespace-trimmed. */
void ts_chat_split_thinking(const char *text, size_t len, const char **r, size_t *r_len,
                            const char **a, size_t *a_len);

#endif
