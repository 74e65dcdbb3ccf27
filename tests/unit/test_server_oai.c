/* Server response pieces without a network: the reasoning split of chat
 * replies (streamed piece by piece and whole) and the server-sent events
 * of a chat stream (server/oai_common.c). */
#include <string.h>

#include "server/srv_int.h"
#include "test.h"

static void gen_init(ts_gen *g, ts_server *s, ts_gen_kind kind, bool in_think) {
    memset(g, 0, sizeof *g);
    g->srv = s;
    g->kind = kind;
    snprintf(g->rid, sizeof g->rid, "chatcmpl-test");
    ts_think_init(&g->think, in_think);
}

static void gen_free(ts_gen *g) {
    ts_think_free(&g->think);
    ts_buf_free(&g->reasoning);
    ts_buf_free(&g->answer);
    ts_buf_free(&g->out);
}

/* The generated text cut into pieces of every size gives the same
 * reasoning and answer as the whole text at once. */
static void test_route(void) {
    ts_server s;
    memset(&s, 0, sizeof s);
    s.model_name = "m";
    const char *text = "<think>\nFirst, the plan.\n</think>\n\nThe answer is 42.";
    const char *want_r = "First, the plan.", *want_a = "The answer is 42.";
    size_t n = strlen(text);
    ts_gen g;
    gen_init(&g, &s, TS_GEN_CHAT, false);
    ts_oai_route(&g, text, n, true);
    while (g.reasoning.len && strchr(" \n", g.reasoning.data[g.reasoning.len - 1])) g.reasoning.len--;
    CHECKF(g.reasoning.len == strlen(want_r) && !memcmp(g.reasoning.data, want_r, g.reasoning.len),
           "reasoning '%.*s'", (int)g.reasoning.len, g.reasoning.data);
    CHECKF(g.answer.data && !strcmp(g.answer.data, want_a), "answer '%s'", g.answer.data);
    gen_free(&g);
    int bad = 0;
    for (size_t step = 1; step <= 7; step++) {
        gen_init(&g, &s, TS_GEN_CHAT, false);
        ts_buf r = {0}, a = {0};
        for (size_t i = 0; i < n; i += step) {
            size_t k = i + step > n ? n - i : step;
            ts_buf_clear(&g.reasoning);
            ts_buf_clear(&g.answer);
            ts_oai_route(&g, text + i, k, i + k == n);
            ts_buf_append(&r, g.reasoning.data ? g.reasoning.data : "", g.reasoning.len);
            ts_buf_append(&a, g.answer.data ? g.answer.data : "", g.answer.len);
        }
        while (r.len && strchr(" \n", r.data[r.len - 1])) r.len--;
        if (r.len != strlen(want_r) || memcmp(r.data, want_r, r.len) || !a.data || strcmp(a.data, want_a)) {
            if (!bad) fprintf(stderr, "step %zu: reasoning '%.*s' answer '%s'\n", step, (int)r.len, r.data, a.data);
            bad++;
        }
        ts_buf_free(&r);
        ts_buf_free(&a);
        gen_free(&g);
    }
    CHECKF(bad == 0, "%d piece sizes route differently", bad);
    /* a template that opened <think> itself; and a plain completion keeps tags */
    gen_init(&g, &s, TS_GEN_CHAT, true);
    ts_oai_route(&g, "plan</think>\nok", 15, true);
    CHECK(g.answer.data && !strcmp(g.answer.data, "ok") && g.reasoning.len >= 4 && !memcmp(g.reasoning.data, "plan", 4));
    gen_free(&g);
    gen_init(&g, &s, TS_GEN_COMPLETION, false);
    ts_oai_route(&g, "<think>x</think>y", 17, true);
    CHECK(g.answer.data && !strcmp(g.answer.data, "<think>x</think>y") && !g.reasoning.len);
    gen_free(&g);
}

static void test_sse(void) {
    ts_server s;
    memset(&s, 0, sizeof s);
    s.model_name = "m";
    ts_gen g;
    gen_init(&g, &s, TS_GEN_CHAT, false);
    g.include_usage = true;
    ts_oai_sse(&g, "Hel", 3, false);
    ts_oai_sse(&g, "lo", 2, false);
    snprintf(g.finish, sizeof g.finish, "length");
    g.n_prompt = 5, g.n_gen = 2, g.n_cached = 1;
    ts_oai_sse(&g, "", 0, true);
    CHECK(g.sse_state == 2);
    /* parse the events back */
    int n_ev = 0, bad = 0;
    ts_buf content = {0};
    const char *p = g.out.data ? g.out.data : "";
    bool done = false;
    json_t *last = NULL;
    while (*p) {
        const char *e = strstr(p, "\n\n");
        if (strncmp(p, "data: ", 6) || !e) { bad++; break; }
        if (!strncmp(p + 6, "[DONE]", 6)) { done = !e[2]; break; }
        json_t *j = json_loadb(p + 6, (size_t)(e - p - 6), 0, NULL);
        if (!j) { bad++; break; }
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        const char *c = json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
        if (c) ts_buf_puts(&content, c);
        if (strcmp(json_string_value(json_object_get(j, "object")), "chat.completion.chunk")) bad++;
        json_decref(last);
        last = j;
        n_ev++;
        p = e + 2;
    }
    CHECKF(bad == 0 && done, "events malformed or no final [DONE]: %s", g.out.data);
    CHECKF(content.data && !strcmp(content.data, "Hello"), "content '%s'", content.data);
    CHECK(n_ev == 5); /* role, Hel, lo, finish, usage */
    json_t *u = json_object_get(last, "usage");
    CHECK(json_array_size(json_object_get(last, "choices")) == 0 &&
          json_integer_value(json_object_get(u, "total_tokens")) == 7 &&
          json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")) == 1);
    json_decref(last);
    CHECK(strstr(g.out.data, "\"finish_reason\":\"length\"") != NULL);
    ts_buf_free(&content);
    gen_free(&g);
}

int main(void) {
    test_route();
    test_sse();
    return ts_test_done("test_server_oai");
}
