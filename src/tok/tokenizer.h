/* Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json.
 *
 * Supports: model.type "BPE" with merges as "a b" strings or ["a","b"]
 * pairs; normalizer NFC (utf8proc) or none; pre_tokenizer Sequence of
 * Split(regex, run through PCRE2 with UTF + UCP) and ByteLevel; added tokens
 * (special or not) matched in the text before pre-tokenization; the
 * post_processor's BOS (TemplateProcessing) when add_special is set;
 * ByteLevel decoding. A ts_tokenizer is immutable after loading and may be
 * used from several threads at once. */
#ifndef TS_TOK_TOKENIZER_H
#define TS_TOK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tessera.h"
#include "base/buf.h"

typedef struct ts_tokenizer ts_tokenizer;

/* Loads path (a tokenizer.json). Every field is validated; a malformed file
 * gives TS_ERR_FORMAT with a message naming the file and the problem. */
ts_status ts_tok_load(const char *path, ts_tokenizer **out, ts_err *err);
/* Loads model_dir/tokenizer.json and, when present,
 * model_dir/tokenizer_config.json, whose clean_up_tokenization_spaces makes
 * ts_tok_decode apply HF's clean-up (" ." -> "." ...), as HF decode does. */
ts_status ts_tok_load_dir(const char *model_dir, ts_tokenizer **out, ts_err *err);
/* Same from JSON text in memory (the fuzz target's entry). */
ts_status ts_tok_load_json(const char *json, size_t len, const char *name,
                           ts_tokenizer **out, ts_err *err);
void ts_tok_free(ts_tokenizer *tok);

/* Number of ids (vocab + added tokens; max id + 1). */
int32_t ts_tok_n_vocab(const ts_tokenizer *tok);

/* Encodes len bytes of UTF-8 text. add_special adds what the
 * post_processor adds (Llama 3: BOS), as HF's add_special_tokens=True.
 * Added/special tokens written in the text are always recognised.
 * *ids is malloc'd and owned by the caller. Invalid UTF-8 -> TS_ERR_INVALID. */
ts_status ts_tok_encode(const ts_tokenizer *tok, const char *text, size_t len,
                        bool add_special, int32_t **ids, size_t *n_ids, ts_err *err);

/* Appends the decoded text of ids to out (as HF decode). skip_special drops
 * special added tokens. Out-of-range ids -> TS_ERR_INVALID. */
ts_status ts_tok_decode(const ts_tokenizer *tok, const int32_t *ids, size_t n_ids,
                        bool skip_special, ts_buf *out, ts_err *err);

/* The raw bytes of one token after byte-level decoding (may be a partial
 * UTF-8 sequence). Returns NULL for an out-of-range id. */
const char *ts_tok_piece(const ts_tokenizer *tok, int32_t id, size_t *len);
/* The id of a token given its vocabulary string ("<|im_end|>"), or -1. */
int32_t ts_tok_lookup(const ts_tokenizer *tok, const char *token);
/* True for special added tokens. */
bool ts_tok_is_special(const ts_tokenizer *tok, int32_t id);

/* Streaming decode: feed ids one by one, get only complete UTF-8 text.
 * Invalid byte sequences are emitted as U+FFFD, as HF does. */
typedef struct ts_tok_stream {
    const ts_tokenizer *tok;
    bool skip_special;
    unsigned char pending[8];
    int n_pending;
} ts_tok_stream;

void ts_tok_stream_init(ts_tok_stream *s, const ts_tokenizer *tok, bool skip_special);
/* Appends to out whatever text id completes. */
ts_status ts_tok_stream_push(ts_tok_stream *s, int32_t id, ts_buf *out);
/* Appends what is still pending (as U+FFFD) at end of stream. */
ts_status ts_tok_stream_flush(ts_tok_stream *s, ts_buf *out);

#endif
