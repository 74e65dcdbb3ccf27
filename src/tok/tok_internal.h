/* Internal layout of ts_tokenizer, shared by the tokenizer's files:
 * tokenizer.c (loading and validation), tok_bpe.c (hash tables, byte map,
 * BPE merging), tok_encode.c (added tokens, normalizer, pre-tokenizer,
 * encode) and tok_decode.c (decode, streaming, lookups). Not a public API. */
#ifndef TS_TOK_INTERNAL_H
#define TS_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tok/tokenizer.h"

/* Largest id accepted from a file; bounds the id -> token arrays. */
#define TS_TOK_MAX_ID (1 << 24)

/* One string per id: the token as written in tokenizer.json ("Ġhello")
 * and its bytes after byte-level decoding (" hello"). Both point into
 * ts_tokenizer.arena; str == NULL marks an id with no token. */
typedef struct ts_tok_entry {
    const char *str;
    const char *bytes;
    uint32_t str_len;
    uint32_t bytes_len;
} ts_tok_entry;

/* Open-addressing table from a string to an id (the string is the
 * entry's str), capacity a power of two, empty slots hold -1. */
typedef struct ts_tok_strmap {
    int32_t *slots;
    uint32_t mask;
} ts_tok_strmap;

/* Open-addressing table from a pair of ids to (rank, merged id). */
typedef struct ts_tok_merge {
    uint64_t key;   /* (left << 32) | right; UINT64_MAX marks empty */
    int32_t rank;
    int32_t id;
} ts_tok_merge;

typedef struct ts_tok_added {
    int32_t id;
    const char *content; /* points into the arena */
    uint32_t len;
    bool special, lstrip, rstrip, single_word, normalized;
} ts_tok_added;

typedef enum ts_tok_step_kind { TS_PRE_SPLIT, TS_PRE_BYTELEVEL } ts_tok_step_kind;

/* One pre-tokenizer step. A ByteLevel step with use_regex has re set to
 * the GPT-2 pattern. */
typedef struct ts_tok_step {
    ts_tok_step_kind kind;
    pcre2_code *re;       /* NULL for a ByteLevel step without its regex */
    bool add_prefix_space;
} ts_tok_step;

struct ts_tokenizer {
    char *name;             /* file name used in messages */
    char *arena;            /* every string of the tokenizer */
    size_t arena_len, arena_cap;

    int32_t n_ids;          /* max id + 1 */
    ts_tok_entry *entries;  /* [n_ids] (str offsets resolved after load) */
    uint8_t *is_special;    /* [n_ids] */
    uint8_t *is_added;      /* [n_ids] */
    ts_tok_strmap vocab;    /* str -> id, vocab and added tokens */

    ts_tok_merge *merges;   /* hash table, [merge_mask + 1] */
    uint32_t merge_mask;
    int32_t byte_id[256];   /* id of each byte's one-character token, or -1 */
    int32_t unk_id;         /* -1 when the model has no unk_token */
    bool ignore_merges;

    ts_tok_added *added;    /* sorted by first byte, then longest first */
    size_t n_added;
    uint32_t added_start[257]; /* added[added_start[b]..added_start[b+1]) start with byte b */
    bool has_normalized_added;

    bool nfc;               /* normalizer */
    ts_tok_step *steps;
    size_t n_steps;

    int32_t *prefix_ids, *suffix_ids; /* TemplateProcessing "single" */
    size_t n_prefix, n_suffix;

    bool cleanup_spaces;    /* tokenizer_config.json clean_up_tokenization_spaces */
};

/* tok_bpe.c */
/* GPT-2's byte-to-unicode map: the code point standing for byte b. */
uint32_t ts_tok_byte_to_cp(unsigned b);
/* Byte for a byte-level code point, or -1 if cp is not in the map. */
int ts_tok_cp_to_byte(uint32_t cp);
uint32_t ts_tok_hash(const char *s, size_t n);
ts_status ts_tok_strmap_init(ts_tok_strmap *m, size_t n_keys);
/* Inserts id under entries[id].str; returns the id already there, or -1. */
int32_t ts_tok_strmap_put(ts_tok_strmap *m, const ts_tok_entry *entries, int32_t id);
int32_t ts_tok_strmap_get(const ts_tok_strmap *m, const ts_tok_entry *entries,
                          const char *s, size_t n);
ts_status ts_tok_merges_init(ts_tokenizer *t, size_t n_merges);
/* Adds a merge (later duplicates win, as in HF). */
void ts_tok_merges_put(ts_tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t id);
const ts_tok_merge *ts_tok_merges_get(const ts_tokenizer *t, int32_t left, int32_t right);
/* Runs BPE over one pre-token (raw bytes) and appends its ids to *ids. */
ts_status ts_tok_bpe_word(const ts_tokenizer *t, const unsigned char *s, size_t n,
                          int32_t **ids, size_t *n_ids, size_t *cap);

/* tok_encode.c */
ts_status ts_tok_ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id);
/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
size_t ts_tok_utf8_len(const unsigned char *s, size_t n);
/* Length of the longest valid UTF-8 prefix of s. */
size_t ts_tok_utf8_valid(const char *s, size_t n);

#endif
