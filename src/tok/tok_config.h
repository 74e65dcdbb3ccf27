/* Reading the pipeline sections of tokenizer.json (normalizer,
 * pre_tokenizer, post_processor, decoder) into a ts_tokenizer. Internal. */
#ifndef TS_TOK_CONFIG_H
#define TS_TOK_CONFIG_H

#include <jansson.h>

#include "tok/tok_internal.h"

/* Fills t->nfc, t->steps, t->prefix_ids / suffix_ids from root; anything
 * tessera does not implement gives TS_ERR_UNSUPPORTED naming it. Needs the
 * vocab loaded (TemplateProcessing ids are range-checked). */
ts_status ts_tok_load_config(ts_tokenizer *t, const json_t *root, const char *name, ts_err *err);

/* Reads an optional boolean member of obj (where names obj in messages);
 * absent or null gives def, any other non-boolean TS_ERR_FORMAT. */
ts_status ts_tok_json_bool(const json_t *obj, const char *key, bool def, bool *out,
                           const char *name, const char *where, ts_err *err);

#endif
