/* Chat templates: the model's own Jinja chat_template (tokenizer_config.json
 * "chat_template", or chat_template.jinja), rendered by tessera's Jinja
 * interpreter (tok/jinja.h), plus splitting of <think> reasoning. */
#ifndef TS_TOK_CHAT_H
#define TS_TOK_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include "tessera.h"
#include "base/buf.h"

typedef struct ts_chat_msg {
    const char *role;    /* "system", "user", "assistant", "tool" */
    const char *content;
} ts_chat_msg;

typedef struct ts_chat ts_chat;

/* Loads the template and the bos/eos token strings from model_dir. */
ts_status ts_chat_load(const char *model_dir, ts_chat **out, ts_err *err);
/* From template source text (bos/eos may be NULL). */
ts_status ts_chat_from_source(const char *source, const char *bos, const char *eos,
                              ts_chat **out, ts_err *err);
void ts_chat_free(ts_chat *chat);

/* Renders messages. enable_thinking: -1 leaves the variable undefined (the
 * template's default), 0 or 1 defines it. Appends to out. */
ts_status ts_chat_render(const ts_chat *chat, const ts_chat_msg *msgs, size_t n_msgs,
                         bool add_generation_prompt, int enable_thinking, ts_buf *out,
                         ts_err *err);

/* Splits generated text into reasoning (inside <think>...</think>, also when
 * the opening tag was part of the prompt) and answer. Both are views into
 * text: [*r, *r + *r_len) and [*a, *a + *a_len), whitespace-trimmed. */
void ts_chat_split_thinking(const char *text, size_t len, const char **r, size_t *r_len,
                            const char **a, size_t *a_len);

#endif
