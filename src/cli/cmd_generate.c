/* generate and chat: text completion with streaming output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/think.h"

typedef struct out_ctx {
    ts_think think;
    bool show_thinking, answer_started;
    ts_buf reasoning, answer;
} out_ctx;

/* Streams generated text: the answer to stdout, reasoning to stdout only
 * with --show-thinking (marked), dropping whitespace between the two. */
static void on_text(void *ctx, const char *text, size_t len) {
    out_ctx *o = ctx;
    ts_buf_clear(&o->reasoning);
    ts_buf_clear(&o->answer);
    ts_think_feed(&o->think, text, len, &o->reasoning, &o->answer);
    if (o->show_thinking && o->reasoning.len) fwrite(o->reasoning.data, 1, o->reasoning.len, stdout);
    const char *p = o->answer.data;
    size_t n = o->answer.len;
    if (!o->answer_started && o->think.closed) /* the blank line after </think> */
        while (n && strchr(" \t\r\n", *p)) p++, n--;
    if (n) {
        o->answer_started = true;
        fwrite(p, 1, n, stdout);
    }
    fflush(stdout);
}

static void print_stats(const ts_gen_stats *st) {
    fflush(stdout); /* the completion first, then the stats line */
    double pre = st->ttft_ms > 0 ? st->n_prompt / (st->ttft_ms / 1e3) : 0;
    double dec = st->decode_ms > 0 && st->n_gen > 1 ? (st->n_gen - 1) / (st->decode_ms / 1e3) : 0;
    fprintf(stderr,
            "[prompt %d tokens (%d reused), ttft %.1f ms, prefill %.1f tok/s, decode %.1f tok/s, "
            "%d tokens, finish %s]\n",
            st->n_prompt + st->n_reused, st->n_reused, st->ttft_ms, pre, dec, st->n_gen, st->finish);
}

static ts_gen_opts gen_opts(cli_args *a, out_ctx *o) {
    ts_gen_opts g = ts_gen_opts_default();
    g.sample = a->sample;
    g.max_tokens = a->n_predict;
    g.stop = a->stop;
    g.n_stop = a->n_stop;
    g.on_text = on_text;
    g.ctx = o;
    return g;
}

/* True when the rendered prompt leaves a <think> block open. */
static bool prompt_opens_think(const ts_buf *p) {
    const char *open = NULL, *s = p->data;
    for (const char *q = s; (q = strstr(q, "<think>")); q++) open = q;
    return open && !strstr(open, "</think>");
}

int cmd_generate(cli_args *a) {
    if (a->prompt_file) return cmd_generate_batch(a);
    if (!a->prompt) {
        fprintf(stderr, "error: generate needs -p TEXT or -f PROMPTS_FILE\n");
        return 2;
    }
    ts_runtime *rt = cli_open(a);
    if (!rt) return 1;
    ts_buf prompt = {0};
    ts_err err;
    int rc = 1;
    if (a->chat) {
        if (cli_chat_prompt(rt, a->system, a->prompt, a->no_think ? 0 : -1, &prompt, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            goto done;
        }
    } else {
        ts_buf_puts(&prompt, a->prompt);
    }
    int n = 0;
    int32_t *ids = cli_tokenize(rt, prompt.data, !a->chat, &n);
    if (!ids) goto done;
    out_ctx o = {.show_thinking = a->show_thinking};
    ts_think_init(&o.think, prompt_opens_think(&prompt));
    ts_gen_opts g = gen_opts(a, &o);
    ts_seq seq = {0};
    ts_gen_stats st;
    if (ts_generate(rt, &seq, ids, n, &g, NULL, &st, &err)) {
        fprintf(stderr, "\nerror: %s\n", err.msg);
    } else {
        on_text(&o, "", 0);
        ts_buf_clear(&o.answer);
        ts_think_finish(&o.think, a->show_thinking ? &o.reasoning : NULL, &o.answer);
        fwrite(o.answer.data ? o.answer.data : "", 1, o.answer.len, stdout);
        putchar('\n');
        print_stats(&st);
        rc = 0;
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    ts_think_free(&o.think);
    ts_buf_free(&o.reasoning);
    ts_buf_free(&o.answer);
    free(ids);
done:
    ts_buf_free(&prompt);
    ts_runtime_close(rt);
    return rc;
}

/* Interactive chat: the conversation is re-rendered each turn and the KV of
 * the unchanged prefix is reused. Empty line or EOF ends it. */
int cmd_chat(cli_args *a) {
    ts_runtime *rt = cli_open(a);
    if (!rt) return 1;
    if (!rt->chat) {
        fprintf(stderr, "error: %s has no chat template\n", a->model);
        ts_runtime_close(rt);
        return 1;
    }
    size_t cap = 64, n_msgs = 0;
    ts_chat_msg *msgs = calloc(cap, sizeof *msgs);
    char **owned = calloc(cap, sizeof *owned);
    if (a->system) msgs[n_msgs++] = (ts_chat_msg){"system", a->system};
    ts_seq seq = {0};
    ts_buf prompt = {0};
    char line[8192];
    int rc = 0;
    for (;;) {
        fprintf(stderr, "> ");
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) break;
        if (n_msgs + 2 > cap) {
            fprintf(stderr, "the conversation is at its limit of %zu messages\n", cap);
            break;
        }
        owned[n_msgs] = strdup(line);
        msgs[n_msgs] = (ts_chat_msg){"user", owned[n_msgs]};
        n_msgs++;
        ts_err err;
        ts_buf_clear(&prompt);
        int n = 0;
        int32_t *ids = NULL;
        if (ts_chat_render(rt->chat, msgs, n_msgs, true, a->no_think ? 0 : -1, &prompt, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            rc = 1;
            break;
        }
        if (!(ids = cli_tokenize(rt, prompt.data, false, &n))) { rc = 1; break; }
        out_ctx o = {.show_thinking = a->show_thinking};
        ts_think_init(&o.think, prompt_opens_think(&prompt));
        ts_gen_opts g = gen_opts(a, &o);
        ts_buf reply = {0};
        ts_gen_stats st;
        ts_status s = ts_generate(rt, &seq, ids, n, &g, &reply, &st, &err);
        free(ids);
        ts_think_free(&o.think);
        ts_buf_free(&o.reasoning);
        ts_buf_free(&o.answer);
        if (s) {
            fprintf(stderr, "\nerror: %s\n", err.msg);
            ts_buf_free(&reply);
            n_msgs--;
            free(owned[n_msgs]);
            continue;
        }
        putchar('\n');
        print_stats(&st);
        owned[n_msgs] = reply.data ? reply.data : strdup("");
        msgs[n_msgs] = (ts_chat_msg){"assistant", owned[n_msgs]};
        n_msgs++;
    }
    for (size_t i = 0; i < n_msgs; i++) free(owned[i]);
    free(owned);
    free(msgs);
    ts_buf_free(&prompt);
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    ts_runtime_close(rt);
    return rc;
}
