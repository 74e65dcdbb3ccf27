/* Chat templates against Hugging Face: every case of
 * ../shared/golden/chat_template_cases.json rendered with the template of
 * the matching golden model folder must give exactly HF's string, and its
 * tokenization (without added special tokens) exactly HF's ids. */
#include <string.h>
#include <jansson.h>
#include "test.h"
#include "tok/chat.h"
#include "tok/tokenizer.h"

static void run_model(json_t *cases, const char *key, const char *model) {
    char dir[512], tokpath[600];
    snprintf(dir, sizeof dir, "%s/golden/%s", ts_test_shared(), model);
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", dir);
    ts_err err = {{0}};
    ts_chat *chat = NULL;
    CHECKF(ts_chat_load(dir, &chat, &err) == TS_OK, "%s: load: %s", model, err.msg);
    ts_tokenizer *tok = NULL;
    CHECKF(ts_tok_load(tokpath, &tok, &err) == TS_OK, "%s: tokenizer: %s", model, err.msg);
    json_t *list = json_object_get(cases, key);
    CHECKF(json_is_array(list) && json_array_size(list) > 0, "no cases for %s", key);
    if (!chat) { ts_tok_free(tok); return; }
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) {
        json_t *kw = json_object_get(c, "kwargs");
        /* through the message API */
        json_t *msgs = json_object_get(c, "messages");
        size_t n = json_array_size(msgs);
        ts_chat_msg m[16];
        CHECK(n <= 16);
        if (n > 16) continue;
        for (size_t k = 0; k < n; k++) {
            json_t *e = json_array_get(msgs, k);
            m[k].role = json_string_value(json_object_get(e, "role"));
            m[k].content = json_string_value(json_object_get(e, "content"));
        }
        json_t *th = json_object_get(kw, "enable_thinking");
        int think = th ? json_is_true(th) : -1;
        bool agp = json_is_true(json_object_get(kw, "add_generation_prompt"));
        const char *want = json_string_value(json_object_get(c, "rendered"));
        ts_buf out = {0};
        ts_status st = ts_chat_render(chat, m, n, agp, think, &out, &err);
        CHECKF(st == TS_OK, "%s case %zu: %s", key, i, err.msg);
        CHECKF(st == TS_OK && want && out.data && !strcmp(out.data, want),
               "%s case %zu: rendered\n---\n%s\n--- want\n%s\n---", key, i, out.data ? out.data : "", want);
        /* through the JSON API, with the kwargs as given */
        json_t *vars = json_deep_copy(kw);
        json_object_set(vars, "messages", msgs);
        ts_buf out2 = {0};
        st = ts_chat_render_json(chat, vars, &out2, &err);
        CHECKF(st == TS_OK && want && out2.data && !strcmp(out2.data, want), "%s case %zu (json): %s", key, i, err.msg);
        json_decref(vars);
        ts_buf_free(&out2);
        /* ids */
        json_t *ids = json_object_get(c, "ids");
        if (tok && out.data && json_is_array(ids)) {
            int32_t *got = NULL;
            size_t n_got = 0;
            st = ts_tok_encode(tok, out.data, out.len, false, &got, &n_got, &err);
            CHECKF(st == TS_OK, "%s case %zu: encode: %s", key, i, err.msg);
            bool same = st == TS_OK && n_got == json_array_size(ids);
            for (size_t k = 0; same && k < n_got; k++)
                same = got[k] == (int32_t)json_integer_value(json_array_get(ids, k));
            CHECKF(same, "%s case %zu: ids differ (%zu vs %zu)", key, i, n_got, json_array_size(ids));
            free(got);
        }
        ts_buf_free(&out);
    }
    ts_tok_free(tok);
    ts_chat_free(chat);
}

int main(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/golden/chat_template_cases.json", ts_test_shared());
    json_error_t je;
    json_t *cases = json_load_file(path, 0, &je);
    CHECKF(cases != NULL, "%s: %s", path, je.text);
    if (cases) {
        run_model(cases, "qwen3", "qwen3-tiny-random");
        run_model(cases, "llama3", "llama3-tiny-random");
    }
    json_decref(cases);
    return ts_test_done("test_chat_template_cases");
}
