/* libFuzzer target for the tokenizer: the input is text, encoded with the
 * facts-qwen3-14m tokenizer (loaded once, from $TS_SHARED or ../shared).
 *  - invalid UTF-8 must give TS_ERR_INVALID (checked against utf8proc);
 *  - valid UTF-8 that is already NFC (the tokenizer's normalizer) and holds
 *    no added-token string must round-trip: decode(encode(x)) == x;
 *  - streaming decode of the ids must equal decode.
 *
 * Build and run from the project root (about a minute):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -Iinclude -Isrc tests/fuzz/fuzz_tokenizer.c src/base/buf.c src/base/err.c \
 *     src/tok/tokenizer.c src/tok/tok_*.c -ljansson -lpcre2-8 -lutf8proc -lm \
 *     -o /tmp/fuzz_tokenizer
 *   mkdir -p /tmp/fuzz_tok_corpus && /tmp/fuzz_tokenizer -max_total_time=60 \
 *     -max_len=512 /tmp/fuzz_tok_corpus */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tokenizer.h"

static ts_tokenizer *tok;

static const char *const added[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>",
                                    "</think>"};

static void fail(const char *what, const uint8_t *data, size_t size) {
    fprintf(stderr, "fuzz_tokenizer: %s for a %zu-byte input\n", what, size);
    (void)data;
    abort(); /* a fuzz target reports a finding by crashing */
}

static bool valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (l <= 0 || cp < 0) return false;
        i += (size_t)l;
    }
    return true;
}

static bool is_nfc(const uint8_t *s, size_t n) {
    if (n == 0) return true;
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t r = utf8proc_map(s, (utf8proc_ssize_t)n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    bool same = r == (utf8proc_ssize_t)n && memcmp(out, s, n) == 0;
    free(out);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) {
        const char *shared = getenv("TS_SHARED");
        char path[512];
        snprintf(path, sizeof path, "%s/models/facts-qwen3-14m/tokenizer.json",
                 shared ? shared : "../shared");
        ts_err err = {{0}};
        if (ts_tok_load(path, &tok, &err) != TS_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
            abort();
        }
    }
    int32_t *ids = NULL;
    size_t n = 0;
    ts_status st = ts_tok_encode(tok, (const char *)data, size, false, &ids, &n, NULL);
    bool valid = valid_utf8(data, size);
    if (!valid) {
        if (st != TS_ERR_INVALID) fail("invalid UTF-8 accepted", data, size);
        return 0;
    }
    if (st != TS_OK) fail("encode failed on valid UTF-8", data, size);
    ts_buf out = {0}, streamed = {0};
    if (ts_tok_decode(tok, ids, n, false, &out, NULL) != TS_OK) fail("decode failed", data, size);
    ts_tok_stream s;
    ts_tok_stream_init(&s, tok, false);
    for (size_t i = 0; i < n; i++)
        if (ts_tok_stream_push(&s, ids[i], &streamed) != TS_OK) fail("stream failed", data, size);
    if (ts_tok_stream_flush(&s, &streamed) != TS_OK) fail("stream flush failed", data, size);
    if (streamed.len != out.len || (out.len && memcmp(streamed.data, out.data, out.len) != 0))
        fail("streaming decode differs from decode", data, size);
    bool has_added = false;
    for (size_t a = 0; a < sizeof added / sizeof *added; a++)
        if (memmem(data, size, added[a], strlen(added[a]))) has_added = true;
    if (!has_added && is_nfc(data, size) &&
        (out.len != size || (size && memcmp(out.data, data, size) != 0)))
        fail("decode(encode(x)) != x", data, size);
    ts_buf_free(&out);
    ts_buf_free(&streamed);
    free(ids);
    return 0;
}
