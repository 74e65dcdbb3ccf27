/* The two big members of tokenizer.json, model.vocab and model.merges, as
 * flat lists. A dedicated scanner reads them straight from the text
 * (jansson needs several hundred ms for a 150k-token vocab); everything
 * else is left to jansson. Internal to src/tok. */
#ifndef TS_TOK_JSON_H
#define TS_TOK_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "tessera.h"

typedef struct ts_tok_str {
    const char *s; /* not NUL-terminated in general */
    uint32_t len;
} ts_tok_str;

typedef struct ts_tok_vocab_item {
    ts_tok_str key;
    long long id; /* unchecked: validated by the loader */
} ts_tok_vocab_item;

/* One merges entry: either an "a b" string (b.s == NULL) or a pair. */
typedef struct ts_tok_merge_item {
    ts_tok_str a, b;
} ts_tok_merge_item;

typedef struct ts_tok_lists {
    ts_tok_vocab_item *vocab;
    size_t n_vocab;
    ts_tok_merge_item *merges;
    size_t n_merges;
    char *strings;   /* decoded strings of the scanner; NULL for jansson's */
    char *rest;      /* the JSON text with vocab and merges blanked to {} and [] */
    size_t rest_len;
} ts_tok_lists;

/* Scans json for model.vocab and model.merges. Returns false (and frees
 * what it made) on anything unexpected: the caller then parses the whole
 * text with jansson, which names the problem. */
bool ts_tok_scan_lists(const char *json, size_t len, ts_tok_lists *l);

/* Fills l from an already parsed model object whose vocab is an object and
 * merges an array; strings point into model. A vocab value that is not an
 * integer or a merge that is neither a string nor a pair of strings gives
 * TS_ERR_FORMAT naming the file (name). */
ts_status ts_tok_lists_from_json(const json_t *model, ts_tok_lists *l, const char *name,
                                 ts_err *err);

void ts_tok_lists_free(ts_tok_lists *l);

#endif
