/* Golden tokenizer test: every case of ../shared/golden/tokenizer_cases.json
 * (HF tokenizers 0.23.2) for Qwen3 and Llama 3 -- ids without and with
 * special tokens, and the decoded text -- plus the facts-qwen3-14m
 * tokenizer: reference ids of its reference.json prompts and the round trip
 * of every eval_dev.json prompt. Also prints load and encode timings. */
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "tok/tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECKF(j != NULL, "%s: %s", path, e.text);
    return j;
}

/* Compares ids with the JSON array want; reports the first difference. */
static void check_ids(const char *model, size_t ci, const char *what, const int32_t *ids,
                      size_t n, const json_t *want) {
    size_t nw = json_array_size(want);
    size_t i = 0;
    while (i < n && i < nw && ids[i] == json_integer_value(json_array_get(want, i))) i++;
    CHECKF(i == n && n == nw,
           "%s case %zu (%s): %zu ids, want %zu; first difference at %zu: got %d, want %lld",
           model, ci, what, n, nw, i, i < n ? ids[i] : -1,
           i < nw ? (long long)json_integer_value(json_array_get(want, i)) : -1LL);
}

static void run_cases(const char *model, const ts_tokenizer *tok, const json_t *cases) {
    size_t ci;
    json_t *c;
    json_array_foreach(cases, ci, c) {
        const json_t *tj = json_object_get(c, "text");
        const char *text = json_string_value(tj);
        size_t len = json_string_length(tj);
        int32_t *ids = NULL;
        size_t n = 0;
        ts_err err = {{0}};
        ts_status st = ts_tok_encode(tok, text, len, false, &ids, &n, &err);
        CHECKF(st == TS_OK, "%s case %zu: encode failed: %s", model, ci, err.msg);
        if (st == TS_OK) check_ids(model, ci, "ids", ids, n, json_object_get(c, "ids"));
        free(ids);
        ids = NULL;
        st = ts_tok_encode(tok, text, len, true, &ids, &n, &err);
        CHECKF(st == TS_OK, "%s case %zu: encode(add_special) failed: %s", model, ci, err.msg);
        if (st == TS_OK)
            check_ids(model, ci, "ids_with_special", ids, n, json_object_get(c, "ids_with_special"));
        free(ids);
        /* "decoded" is HF decode(ids) keeping special tokens (the
         * <|im_start|> case shows they were not skipped). */
        const json_t *want_ids = json_object_get(c, "ids");
        size_t nw = json_array_size(want_ids);
        int32_t *w = malloc(sizeof *w * (nw ? nw : 1));
        for (size_t i = 0; i < nw; i++) w[i] = (int32_t)json_integer_value(json_array_get(want_ids, i));
        ts_buf out = {0};
        st = ts_tok_decode(tok, w, nw, false, &out, &err);
        const char *want = json_string_value(json_object_get(c, "decoded"));
        CHECKF(st == TS_OK && out.len == strlen(want) && memcmp(out.data ? out.data : "", want, out.len) == 0,
               "%s case %zu: decoded \"%s\", want \"%s\"", model, ci, out.data ? out.data : "", want);
        ts_buf_free(&out);
        free(w);
    }
}

static void golden_cases(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/golden/tokenizer_cases.json", ts_test_shared());
    json_t *cases = load_json(path);
    if (!cases) return;
    static const char *const models[] = {"qwen3", "llama3"};
    for (int m = 0; m < 2; m++) {
        const json_t *list = json_object_get(cases, models[m]);
        CHECKF(json_array_size(list) > 0, "no cases for %s", models[m]);
        /* The golden model folder (with tokenizer_config.json) ... */
        snprintf(path, sizeof path, "%s/golden/%s-tiny-random", ts_test_shared(), models[m]);
        ts_tokenizer *tok = NULL;
        ts_err err = {{0}};
        double t0 = now_s();
        ts_status st = ts_tok_load_dir(path, &tok, &err);
        double t1 = now_s();
        CHECKF(st == TS_OK, "load %s: %s", path, err.msg);
        if (st) continue;
        printf("%s: loaded %d ids in %.0f ms\n", models[m], ts_tok_n_vocab(tok), 1e3 * (t1 - t0));
        run_cases(models[m], tok, list);

        /* Encoding speed on ~10 KB of mixed text. */
        ts_buf big = {0};
        size_t ci;
        json_t *c;
        while (big.len < 10000)
            json_array_foreach(list, ci, c) ts_buf_puts(&big, json_string_value(json_object_get(c, "text")));
        int32_t *ids = NULL;
        size_t n = 0;
        t0 = now_s();
        st = ts_tok_encode(tok, big.data, big.len, false, &ids, &n, &err);
        t1 = now_s();
        CHECKF(st == TS_OK, "%s: encode of %zu bytes failed: %s", models[m], big.len, err.msg);
        printf("%s: encoded %zu bytes into %zu ids in %.2f ms\n", models[m], big.len, n,
               1e3 * (t1 - t0));
        ts_buf dec = {0};
        st = ts_tok_decode(tok, ids, n, false, &dec, &err);
        CHECKF(st == TS_OK && dec.len == big.len && memcmp(dec.data, big.data, big.len) == 0,
               "%s: the 10 KB text does not round-trip", models[m]);
        ts_buf_free(&dec);
        free(ids);
        ts_buf_free(&big);
        ts_tok_free(tok);

        /* ... and the same tokenizer.json from ../shared/tokenizers. */
        snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", ts_test_shared(), models[m]);
        st = ts_tok_load(path, &tok, &err);
        CHECKF(st == TS_OK, "load %s: %s", path, err.msg);
        if (st == TS_OK) run_cases(models[m], tok, list);
        ts_tok_free(tok);
    }
    json_decref(cases);
}

static void facts_model(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/facts-qwen3-14m", ts_test_shared());
    ts_tokenizer *tok = NULL;
    ts_err err = {{0}};
    ts_status st = ts_tok_load_dir(path, &tok, &err);
    CHECKF(st == TS_OK, "load %s: %s", path, err.msg);
    if (st) return;
    CHECK(ts_tok_n_vocab(tok) == 4096);

    /* Reference ids of the chat prompts in reference.json. */
    snprintf(path, sizeof path, "%s/models/facts-qwen3-14m/reference.json", ts_test_shared());
    json_t *ref = load_json(path);
    size_t i;
    json_t *c;
    int n_ref = 0;
    json_array_foreach(ref, i, c) {
        const json_t *p = json_object_get(c, "prompt");
        int32_t *ids = NULL;
        size_t n = 0;
        st = ts_tok_encode(tok, json_string_value(p), json_string_length(p), false, &ids, &n, &err);
        CHECKF(st == TS_OK, "facts reference %zu: %s", i, err.msg);
        if (st == TS_OK) check_ids("facts-qwen3-14m reference", i, "ids", ids, n, json_object_get(c, "ids"));
        free(ids);
        n_ref++;
    }
    CHECK(n_ref > 0);
    json_decref(ref);

    /* decode(encode(prompt)) == prompt over eval_dev.json. */
    snprintf(path, sizeof path, "%s/models/facts-qwen3-14m/eval_dev.json", ts_test_shared());
    json_t *dev = load_json(path);
    int n_ok = 0, n_all = 0;
    json_array_foreach(json_object_get(dev, "cases"), i, c) {
        const json_t *p = json_object_get(c, "prompt");
        int32_t *ids = NULL;
        size_t n = 0;
        ts_buf out = {0};
        st = ts_tok_encode(tok, json_string_value(p), json_string_length(p), false, &ids, &n, &err);
        if (st == TS_OK) st = ts_tok_decode(tok, ids, n, false, &out, &err);
        bool ok = st == TS_OK && out.len == json_string_length(p) &&
                  memcmp(out.data, json_string_value(p), out.len) == 0;
        CHECKF(ok, "facts eval_dev case %zu does not round-trip", i);
        n_ok += ok;
        n_all++;
        free(ids);
        ts_buf_free(&out);
    }
    CHECK(n_all == 240);
    printf("facts-qwen3-14m: %d reference prompts, %d/%d eval_dev prompts round-trip\n", n_ref,
           n_ok, n_all);
    json_decref(dev);
    ts_tok_free(tok);
}

int main(void) {
    golden_cases();
    facts_model();
    return ts_test_done("test_tokenizer_cases");
}
