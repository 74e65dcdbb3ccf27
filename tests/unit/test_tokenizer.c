/* Unit tests of the tokenizer on tiny tokenizer.json files built here:
 * BPE against a plain quadratic reference, both merge forms, ignore_merges,
 * added tokens, TemplateProcessing, NFC, streaming decode against decode,
 * bad files and bad input. */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tok/tokenizer.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* GPT-2's byte -> code point table, built the way its bytes_to_unicode
 * describes it: printable ranges keep their value, the rest get 256 + n. */
static uint32_t byte_cp[256];
static void build_byte_map(void) {
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        byte_cp[b] = keep ? (uint32_t)b : 256 + n++;
    }
}

/* The vocab string of a byte string. */
static void bl_string(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = byte_cp[(unsigned char)s[i]];
        if (cp < 0x80) {
            out[k++] = (char)cp;
        } else {
            out[k++] = (char)(0xc0 | (cp >> 6));
            out[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[k] = '\0';
}

/* Merges of the tiny model, in rank order, as byte strings. */
static const char *const merge_l[] = {"h", "l", "he", "hell", "o", "w", "a", "aa",
                                      " ", " w", "r", "d", "e", "l", " wo"};
static const char *const merge_r[] = {"e", "l", "ll", "o", " ", "o", "a", "aa",
                                      "w", "o", "d", " ", "l", "o", "rd"};
#define N_MERGES (sizeof merge_l / sizeof *merge_l)
static char vocab_str[256 + N_MERGES + 1][16]; /* byte strings by id */
static int n_vocab;

static int vocab_find(const char *s) {
    for (int i = 0; i < n_vocab; i++)
        if (strcmp(vocab_str[i], s) == 0) return i;
    return -1;
}

/* Builds a tokenizer.json with the 256 byte tokens (ids 0..255, in byte
 * order), one token per merge, extra_vocab "abc" (no merge makes it) and
 * the given extra top-level members. */
static json_t *tiny_json(bool pair_merges, bool ignore_merges, const char *normalizer) {
    char bl[160];
    json_t *vocab = json_object(), *merges = json_array();
    n_vocab = 0;
    for (int b = 0; b < 256; b++) {
        vocab_str[n_vocab][0] = (char)b;
        vocab_str[n_vocab][1] = '\0';
        char c = (char)b;
        bl_string(&c, 1, bl);
        json_object_set_new(vocab, bl, json_integer(n_vocab++));
    }
    for (size_t m = 0; m < N_MERGES; m++) {
        char cat[16], bl_l[64], bl_r[64];
        snprintf(cat, sizeof cat, "%s%s", merge_l[m], merge_r[m]);
        bl_string(merge_l[m], strlen(merge_l[m]), bl_l);
        bl_string(merge_r[m], strlen(merge_r[m]), bl_r);
        if (pair_merges) {
            json_array_append_new(merges, json_pack("[ss]", bl_l, bl_r));
        } else {
            snprintf(bl, sizeof bl, "%s %s", bl_l, bl_r);
            json_array_append_new(merges, json_string(bl));
        }
        if (vocab_find(cat) < 0) {
            strcpy(vocab_str[n_vocab], cat);
            bl_string(cat, strlen(cat), bl);
            json_object_set_new(vocab, bl, json_integer(n_vocab++));
        }
    }
    strcpy(vocab_str[n_vocab], "abc");
    json_object_set_new(vocab, "abc", json_integer(n_vocab++));
    json_t *model = json_pack("{s:s, s:o, s:o, s:b, s:b}", "type", "BPE", "vocab", vocab,
                              "merges", merges, "byte_fallback", 0, "ignore_merges", ignore_merges);
    json_t *added = json_pack(
        "[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}, {s:i, s:s, s:b, s:b, s:b, s:b, s:b},"
        " {s:i, s:s, s:b, s:b, s:b, s:b, s:b}, {s:i, s:s, s:b, s:b, s:b, s:b, s:b}]",
        "id", 300, "content", "<|x|>", "special", 1, "lstrip", 0, "rstrip", 0, "normalized", 0, "single_word", 0,
        "id", 301, "content", "<|x|>y", "special", 1, "lstrip", 0, "rstrip", 0, "normalized", 0, "single_word", 0,
        "id", 302, "content", "<L>", "special", 0, "lstrip", 1, "rstrip", 1, "normalized", 0, "single_word", 0,
        "id", 303, "content", "<bos>", "special", 1, "lstrip", 0, "rstrip", 0, "normalized", 0, "single_word", 0);
    json_t *root = json_pack(
        "{s:o, s:o, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:b, s:b, s:b}}", "model", model,
        "added_tokens", added, "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0,
        "trim_offsets", 0, "use_regex", 0, "decoder", "type", "ByteLevel", "add_prefix_space", 0,
        "trim_offsets", 0, "use_regex", 0);
    json_object_set_new(root, "normalizer", normalizer ? json_pack("{s:s}", "type", normalizer)
                                                       : json_null());
    json_object_set_new(root, "post_processor",
        json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}}",
                  "type", "TemplateProcessing", "single", "SpecialToken", "id", "<bos>", "type_id", 0,
                  "Sequence", "id", "A", "type_id", 0, "special_tokens", "<bos>", "id", "<bos>",
                  "ids", 303, "tokens", "<bos>"));
    return root;
}

static ts_status load_root(json_t *root, ts_tokenizer **tok, ts_err *err) {
    char *s = json_dumps(root, JSON_COMPACT);
    ts_status st = ts_tok_load_json(s, strlen(s), "tiny.json", tok, err);
    free(s);
    return st;
}

/* Reference BPE: merge the lowest-ranked adjacent pair (leftmost on ties)
 * until none is left; symbols are byte strings. */
static size_t ref_bpe(const char *s, size_t n, int *out) {
    char sym[256][16];
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        sym[ns][0] = s[i];
        sym[ns++][1] = '\0';
    }
    for (;;) {
        size_t best = SIZE_MAX, at = 0;
        for (size_t i = 0; i + 1 < ns; i++)
            for (size_t m = 0; m < N_MERGES && m < best; m++)
                if (strcmp(sym[i], merge_l[m]) == 0 && strcmp(sym[i + 1], merge_r[m]) == 0) {
                    best = m;
                    at = i;
                }
        if (best == SIZE_MAX) break;
        char joined[32];
        snprintf(joined, sizeof joined, "%s%s", sym[at], sym[at + 1]);
        memcpy(sym[at], joined, sizeof sym[at]);
        sym[at][sizeof sym[at] - 1] = '\0';
        memmove(sym[at + 1], sym[at + 2], (ns - at - 2) * sizeof sym[0]);
        ns--;
    }
    for (size_t i = 0; i < ns; i++) out[i] = vocab_find(sym[i]);
    return ns;
}

static void test_bpe_vs_reference(void) {
    static const char alphabet[] = "helowrda ";
    ts_tokenizer *toks[2] = {NULL, NULL};
    ts_err err = {{0}};
    for (int f = 0; f < 2; f++) {
        json_t *root = tiny_json(f == 1, false, NULL);
        CHECKF(load_root(root, &toks[f], &err) == TS_OK, "tiny load: %s", err.msg);
        json_decref(root);
    }
    if (!toks[0] || !toks[1]) return;
    /* The same file written with \u escapes only (exercises the vocab
     * scanner's string decoding) must encode identically. */
    ts_tokenizer *esc = NULL;
    json_t *root = tiny_json(false, false, NULL);
    char *dump = json_dumps(root, JSON_ENSURE_ASCII | JSON_INDENT(1));
    CHECKF(ts_tok_load_json(dump, strlen(dump), "tiny.json", &esc, &err) == TS_OK, "%s", err.msg);
    free(dump);
    json_decref(root);
    static const char probe[] = "hello \"wo\\rld\xc3\xa9\x7f\x01";
    int32_t *i1 = NULL, *i2 = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK(esc && ts_tok_encode(esc, probe, sizeof probe - 1, false, &i1, &n1, NULL) == TS_OK);
    CHECK(ts_tok_encode(toks[0], probe, sizeof probe - 1, false, &i2, &n2, NULL) == TS_OK);
    CHECK(n1 == n2 && n1 > 0 && memcmp(i1, i2, n1 * sizeof *i1) == 0);
    free(i1);
    free(i2);
    ts_tok_free(esc);
    CHECK(ts_tok_n_vocab(toks[0]) == 304);
    int n_cases = getenv("TS_TEST_LIGHT") ? 200 : 1000;
    for (int c = 0; c < n_cases; c++) {
        char text[64];
        size_t n = 1 + rnd(40);
        for (size_t i = 0; i < n; i++) text[i] = alphabet[rnd(sizeof alphabet - 1)];
        int want[64];
        size_t nw = ref_bpe(text, n, want);
        for (int f = 0; f < 2; f++) {
            int32_t *ids;
            size_t ni;
            CHECK(ts_tok_encode(toks[f], text, n, false, &ids, &ni, NULL) == TS_OK);
            bool same = ni == nw;
            for (size_t i = 0; same && i < ni; i++) same = ids[i] == want[i];
            CHECKF(same, "\"%.*s\" (%s merges): %zu ids, reference %zu", (int)n, text,
                   f ? "pair" : "string", ni, nw);
            free(ids);
        }
    }
    ts_tok_free(toks[0]);
    ts_tok_free(toks[1]);
}

static void expect_ids(const ts_tokenizer *tok, const char *text, bool add_special,
                       const int *want, size_t nw) {
    int32_t *ids = NULL;
    size_t n = 0;
    ts_err err = {{0}};
    ts_status st = ts_tok_encode(tok, text, strlen(text), add_special, &ids, &n, &err);
    bool same = st == TS_OK && n == nw;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    CHECKF(same, "encode \"%s\": got %zu ids (%d %d ...), want %zu (%s)", text, n,
           n > 0 ? ids[0] : -1, n > 1 ? ids[1] : -1, nw, err.msg);
    free(ids);
}

static void test_features(void) {
    ts_tokenizer *tok = NULL, *im = NULL;
    ts_err err = {{0}};
    json_t *root = tiny_json(false, false, "NFC");
    CHECKF(load_root(root, &tok, &err) == TS_OK, "tiny NFC: %s", err.msg);
    json_decref(root);
    root = tiny_json(false, true, NULL);
    CHECKF(load_root(root, &im, &err) == TS_OK, "tiny ignore_merges: %s", err.msg);
    json_decref(root);
    if (!tok || !im) return;
    int abc = vocab_find("abc"), a = 'a', b = 'b', c = 'c';
    /* ignore_merges: a pre-token in the vocab maps straight to its id. */
    expect_ids(im, "abc", false, (int[]){abc}, 1);
    expect_ids(tok, "abc", false, (int[]){a, b, c}, 3);
    /* Added tokens: longest match, special or not, lstrip/rstrip. */
    int hello = vocab_find("hello"), h = 'h';
    expect_ids(tok, "<|x|>yhello", false, (int[]){301, hello}, 2);
    expect_ids(tok, "<|x|>hello", false, (int[]){300, hello}, 2);
    expect_ids(tok, "h  <L>  h", false, (int[]){h, 302, h}, 3);
    expect_ids(tok, "<|x|", false, (int[]){'<', '|', 'x', '|'}, 4);
    /* TemplateProcessing adds <bos> only with add_special. */
    expect_ids(tok, "h", true, (int[]){303, h}, 2);
    expect_ids(tok, "h", false, (int[]){h}, 1);
    /* NFC: e + combining acute encodes as the precomposed U+00E9. */
    expect_ids(tok, "e\xcc\x81", false, (int[]){0xc3, 0xa9}, 2);
    expect_ids(im, "e\xcc\x81", false, (int[]){'e', 0xcc, 0x81}, 3);
    /* Lookups. */
    CHECK(ts_tok_lookup(tok, "<|x|>") == 300);
    CHECK(ts_tok_lookup(tok, "nope") == -1);
    CHECK(ts_tok_is_special(tok, 300) && !ts_tok_is_special(tok, 302) && !ts_tok_is_special(tok, 5));
    size_t pl = 0;
    const char *p = ts_tok_piece(tok, ' ', &pl);
    CHECK(p && pl == 1 && p[0] == ' ');
    CHECK(ts_tok_piece(tok, 304, &pl) == NULL && ts_tok_piece(tok, -1, &pl) == NULL);
    /* Decode with and without special tokens. */
    ts_buf out = {0};
    CHECK(ts_tok_decode(tok, (int32_t[]){303, hello, 300, ' '}, 4, false, &out, NULL) == TS_OK);
    CHECKF(out.data && strcmp(out.data, "<bos>hello<|x|> ") == 0, "decode: \"%s\"", out.data);
    ts_buf_clear(&out);
    CHECK(ts_tok_decode(tok, (int32_t[]){303, hello, 300, ' '}, 4, true, &out, NULL) == TS_OK);
    CHECKF(out.data && strcmp(out.data, "hello ") == 0, "decode skip: \"%s\"", out.data);
    /* Bad input. */
    CHECK(ts_tok_decode(tok, (int32_t[]){1, 304}, 2, false, &out, &err) == TS_ERR_INVALID);
    CHECK(ts_tok_decode(tok, (int32_t[]){-5}, 1, false, &out, &err) == TS_ERR_INVALID);
    int32_t *ids = NULL;
    size_t n = 0;
    static const char *const bad_utf8[] = {"a\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf",
                                           "\xf4\x90\x80\x80", "ok\xe2\x82"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++)
        CHECKF(ts_tok_encode(tok, bad_utf8[i], strlen(bad_utf8[i]), false, &ids, &n, &err) ==
                   TS_ERR_INVALID, "invalid UTF-8 case %zu accepted", i);
    CHECK(ts_tok_encode(tok, "", 0, true, &ids, &n, &err) == TS_OK && n == 1);
    free(ids);
    ts_buf_free(&out);
    ts_tok_free(tok);
    ts_tok_free(im);
}

/* Streaming decode of ids, pushed one at a time, then flushed. */
static ts_status stream_all(const ts_tokenizer *tok, const int32_t *ids, size_t n, bool skip,
                            ts_buf *out) {
    ts_tok_stream s;
    ts_tok_stream_init(&s, tok, skip);
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        ts_status st = ts_tok_stream_push(&s, ids[i], out);
        if (st) return st;
        /* Nothing emitted may end inside a UTF-8 character. */
        if (out->len > before) {
            const unsigned char *d = (const unsigned char *)out->data;
            size_t j = out->len - 1, back = 0;
            while (j > 0 && back < 3 && (d[j] & 0xc0) == 0x80) {
                j--;
                back++;
            }
            size_t need = d[j] < 0x80 ? 1 : d[j] >= 0xf0 ? 4 : d[j] >= 0xe0 ? 3 : 2;
            CHECKF(back + 1 == need, "streaming emitted half a character");
        }
    }
    return ts_tok_stream_flush(&s, out);
}

static void test_streaming(const ts_tokenizer *tok, const char *what, int rounds) {
    int32_t nv = ts_tok_n_vocab(tok);
    int mismatches = 0;
    for (int r = 0; r < rounds; r++) {
        int32_t ids[24];
        size_t n = 1 + rnd(24);
        for (size_t i = 0; i < n; i++) {
            /* Mostly single bytes (partial characters), sometimes anything. */
            ids[i] = rnd(3) ? (int32_t)(0x80 + rnd(0x80)) % nv : (int32_t)rnd((uint32_t)nv);
            if (ids[i] < 0 || ids[i] >= nv || !ts_tok_piece(tok, ids[i], NULL)) ids[i] = 'a' % nv;
        }
        bool skip = rnd(2);
        ts_buf a = {0}, b = {0};
        CHECK(ts_tok_decode(tok, ids, n, skip, &a, NULL) == TS_OK);
        CHECK(stream_all(tok, ids, n, skip, &b) == TS_OK);
        if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)) mismatches++;
        ts_buf_free(&a);
        ts_buf_free(&b);
    }
    CHECKF(mismatches == 0, "%s: %d of %d streamed decodes differ from decode", what, mismatches,
           rounds);
}

static void test_stream_cases(void) {
    ts_tokenizer *tok = NULL;
    json_t *root = tiny_json(false, false, NULL);
    CHECK(load_root(root, &tok, NULL) == TS_OK);
    json_decref(root);
    if (!tok) return;
    /* "é" as two byte tokens: nothing after the first, the whole char after
     * the second. */
    ts_tok_stream s;
    ts_buf out = {0};
    ts_tok_stream_init(&s, tok, false);
    CHECK(ts_tok_stream_push(&s, 0xc3, &out) == TS_OK && out.len == 0);
    CHECK(ts_tok_stream_push(&s, 0xa9, &out) == TS_OK && out.len == 2 &&
          memcmp(out.data, "\xc3\xa9", 2) == 0);
    CHECK(ts_tok_stream_push(&s, 999, &out) == TS_ERR_INVALID);
    /* A truncated 3-byte sequence then 'a': one U+FFFD (maximal subpart). */
    ts_buf_clear(&out);
    CHECK(ts_tok_decode(tok, (int32_t[]){0xe4, 0xbd, 'a'}, 3, false, &out, NULL) == TS_OK);
    CHECK(out.len == 4 && memcmp(out.data, "\xef\xbf\xbd" "a", 4) == 0);
    /* F0 80: 80 cannot follow F0, so two replacement characters. */
    ts_buf_clear(&out);
    CHECK(ts_tok_decode(tok, (int32_t[]){0xf0, 0x80}, 2, false, &out, NULL) == TS_OK);
    CHECK(out.len == 6 && memcmp(out.data, "\xef\xbf\xbd\xef\xbf\xbd", 6) == 0);
    /* Pending bytes at the end come out as one U+FFFD on flush. */
    ts_buf_clear(&out);
    ts_tok_stream_init(&s, tok, false);
    CHECK(ts_tok_stream_push(&s, 0xf0, &out) == TS_OK && ts_tok_stream_push(&s, 0x9f, &out) == TS_OK);
    CHECK(out.len == 0 && ts_tok_stream_flush(&s, &out) == TS_OK && out.len == 3);
    ts_buf_free(&out);
    test_streaming(tok, "tiny", getenv("TS_TEST_LIGHT") ? 300 : 3000);
    ts_tok_free(tok);

    char path[512];
    snprintf(path, sizeof path, "%s/models/facts-qwen3-14m/tokenizer.json", ts_test_shared());
    ts_err err = {{0}};
    CHECKF(ts_tok_load(path, &tok, &err) == TS_OK, "%s", err.msg);
    if (tok) test_streaming(tok, "facts-qwen3-14m", getenv("TS_TEST_LIGHT") ? 300 : 3000);
    ts_tok_free(tok);
}

/* Loads root after edit; checks the status and that the message names the
 * file. */
static void expect_bad(json_t *root, ts_status want, const char *what) {
    ts_tokenizer *tok = NULL;
    ts_err err = {{0}};
    ts_status st = load_root(root, &tok, &err);
    CHECKF(st == want && tok == NULL && strstr(err.msg, "tiny.json") != NULL,
           "%s: status %d (%s), want %d", what, st, err.msg, want);
    ts_tok_free(tok);
    json_decref(root);
}

static void test_bad_files(void) {
    ts_tokenizer *tok = NULL;
    ts_err err = {{0}};
    CHECK(ts_tok_load_json("{\"model\":", 9, "tiny.json", &tok, &err) == TS_ERR_FORMAT);
    CHECK(ts_tok_load("/nonexistent/tokenizer.json", &tok, &err) == TS_ERR_IO && tok == NULL);
    ts_tok_free(NULL);

    json_t *r;
    r = tiny_json(false, false, NULL);
    json_object_del(json_object_get(r, "model"), "vocab");
    expect_bad(r, TS_ERR_FORMAT, "missing vocab");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(r, "model"), "vocab", json_array());
    expect_bad(r, TS_ERR_FORMAT, "vocab of the wrong type");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz", json_string("1"));
    expect_bad(r, TS_ERR_FORMAT, "string id");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz", json_integer(5));
    expect_bad(r, TS_ERR_FORMAT, "duplicate id");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz", json_integer(-1));
    expect_bad(r, TS_ERR_FORMAT, "negative id");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz",
                        json_integer(1LL << 40));
    expect_bad(r, TS_ERR_FORMAT, "huge id");
    r = tiny_json(false, false, NULL);
    json_array_append_new(json_object_get(json_object_get(r, "model"), "merges"), json_string("zz q"));
    expect_bad(r, TS_ERR_FORMAT, "merge naming unknown tokens");
    r = tiny_json(false, false, NULL);
    json_array_append_new(json_object_get(json_object_get(r, "model"), "merges"), json_string("a c"));
    expect_bad(r, TS_ERR_FORMAT, "merge whose result is not in the vocab");
    r = tiny_json(false, false, NULL);
    json_array_append_new(json_object_get(json_object_get(r, "model"), "merges"), json_string("abc"));
    expect_bad(r, TS_ERR_FORMAT, "merge without a space");
    r = tiny_json(false, false, NULL);
    json_array_append_new(json_object_get(json_object_get(r, "model"), "merges"), json_integer(3));
    expect_bad(r, TS_ERR_FORMAT, "merge of the wrong type");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(r, "model"), "type", json_string("WordPiece"));
    expect_bad(r, TS_ERR_UNSUPPORTED, "WordPiece model");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(r, "model"), "byte_fallback", json_true());
    expect_bad(r, TS_ERR_UNSUPPORTED, "byte_fallback");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(r, "model"), "ignore_merges", json_string("yes"));
    expect_bad(r, TS_ERR_FORMAT, "ignore_merges of the wrong type");
    r = tiny_json(false, false, "NFKC");
    expect_bad(r, TS_ERR_UNSUPPORTED, "NFKC normalizer");
    r = tiny_json(false, false, NULL);
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
    expect_bad(r, TS_ERR_UNSUPPORTED, "Whitespace pre-tokenizer");
    r = tiny_json(false, false, NULL);
    json_object_set_new(r, "pre_tokenizer",
        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s}]}", "type", "Sequence", "pretokenizers",
                  "type", "Split", "pattern", "Regex", "\\s+", "behavior", "Removed", "invert", 0,
                  "type", "ByteLevel"));
    expect_bad(r, TS_ERR_UNSUPPORTED, "Split behavior Removed");
    r = tiny_json(false, false, NULL);
    json_object_set_new(r, "pre_tokenizer",
        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s}]}", "type", "Sequence", "pretokenizers",
                  "type", "Split", "pattern", "Regex", "(unclosed", "behavior", "Isolated", "invert", 0,
                  "type", "ByteLevel"));
    expect_bad(r, TS_ERR_FORMAT, "regex that does not compile");
    r = tiny_json(false, false, NULL);
    json_object_set_new(r, "decoder", json_pack("{s:s}", "type", "WordPiece"));
    expect_bad(r, TS_ERR_UNSUPPORTED, "WordPiece decoder");
    r = tiny_json(false, false, NULL);
    json_array_append_new(json_object_get(r, "added_tokens"),
                          json_pack("{s:i, s:s, s:b}", "id", 300, "content", "<dup>", "special", 1));
    expect_bad(r, TS_ERR_FORMAT, "two added tokens with one id");
    r = tiny_json(false, false, NULL);
    json_array_append_new(json_object_get(r, "added_tokens"),
                          json_pack("{s:i, s:s}", "id", 'q', "content", "<other>"));
    expect_bad(r, TS_ERR_FORMAT, "added token reusing a vocab id with other text");
    r = tiny_json(false, false, NULL);
    json_object_set_new(json_object_get(r, "post_processor"), "type", json_string("BertProcessing"));
    expect_bad(r, TS_ERR_UNSUPPORTED, "BertProcessing");

    /* The same file loaded from disk works. */
    json_t *good = tiny_json(true, false, NULL);
    char path[] = "/tmp/ts_tok_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        close(fd);
        CHECK(json_dump_file(good, path, 0) == 0);
        CHECKF(ts_tok_load(path, &tok, &err) == TS_OK, "%s", err.msg);
        ts_tok_free(tok);
        unlink(path);
    }
    json_decref(good);
}

int main(void) {
    build_byte_map();
    test_bpe_vs_reference();
    test_features();
    test_stream_cases();
    test_bad_files();
    return ts_test_done("test_tokenizer");
}
