/* generate -f: every line of a file is a prompt; all run as one batch
 * through the engine; completions print in order, one per line (newlines
 * inside a completion are written as \n). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct slot {
    ts_buf text;
    bool done;
    const char *finish;
} slot;

static void on_event(void *ctx, const ts_event *ev) {
    slot *s = ctx;
    if (ev->kind == TS_EVENT_TEXT) ts_buf_append(&s->text, ev->text, ev->len);
    else {
        s->done = true;
        s->finish = ev->finish;
    }
}

/* Reads lines of path (without terminators); returns the count or -1. */
static int read_lines(const char *path, char ***out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char **lines = NULL, *line = NULL;
    size_t cap = 0;
    int n = 0, cap_lines = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (n == cap_lines) {
            int c = cap_lines ? 2 * cap_lines : 64;
            char **p = realloc(lines, (size_t)c * sizeof *p);
            if (!p) break;
            lines = p;
            cap_lines = c;
        }
        lines[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    *out = lines;
    return n;
}

int cmd_generate_batch(cli_args *a) {
    char **lines = NULL;
    int n = read_lines(a->prompt_file, &lines);
    if (n < 0) {
        fprintf(stderr, "error: cannot read %s\n", a->prompt_file);
        return 1;
    }
    ts_engine_opts o = cli_engine_opts(a);
    o.cascade = !a->cascade || !strcmp(a->cascade, "auto") ? -1 : !strcmp(a->cascade, "on");
    if (a->kv_mem && !(o.kv_bytes = ts_parse_size(a->kv_mem))) {
        fprintf(stderr, "error: --kv-mem expects a size such as 512M or 4G\n");
        return 2;
    }
    ts_engine *e = NULL;
    ts_err err;
    if (ts_engine_create(a->model, &o, &e, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    slot *slots = calloc((size_t)n + 1, sizeof *slots);
    ts_runtime *rt = ts_engine_runtime(e);
    int rc = 0;
    double t0 = ts_now_ms();
    for (int i = 0; i < n; i++) {
        ts_request q = ts_request_default();
        q.sample = a->sample;
        q.max_tokens = a->n_predict;
        q.stop = a->stop;
        q.n_stop = a->n_stop;
        ts_buf prompt = {0};
        if (a->chat) {
            if (cli_chat_prompt(rt, a->system, lines[i], a->no_think ? 0 : -1, &prompt, &err)) {
                fprintf(stderr, "error: line %d: %s\n", i + 1, err.msg);
                rc = 1;
            }
        } else {
            ts_buf_puts(&prompt, lines[i]);
        }
        int n_ids = 0;
        int32_t *ids = rc ? NULL : cli_tokenize(rt, prompt.data ? prompt.data : "", !a->chat, &n_ids);
        q.ids = ids;
        q.n_ids = (size_t)n_ids;
        if (!ids) {
            slots[i].done = true;
            slots[i].finish = "error";
        } else if (ts_engine_submit(e, &q, on_event, &slots[i], NULL, &err)) {
            fprintf(stderr, "error: line %d: %s\n", i + 1, err.msg);
            slots[i].done = true;
            slots[i].finish = "error";
        }
        free(ids);
        ts_buf_free(&prompt);
        rc = 0;
    }
    if (ts_engine_run(e, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    }
    double ms = ts_now_ms() - t0;
    for (int i = 0; i < n; i++) {
        const char *t = slots[i].text.data ? slots[i].text.data : "";
        for (; *t; t++) {
            if (*t == '\n') fputs("\\n", stdout);
            else if (*t != '\r') putchar(*t);
        }
        putchar('\n');
        ts_buf_free(&slots[i].text);
        free(lines[i]);
    }
    ts_engine_stats st;
    ts_engine_get_stats(e, &st);
    fprintf(stderr, "[%d prompts, %llu prefilled + %llu cached tokens, %llu generated, %.1f ms, %.1f tok/s]\n",
            n, (unsigned long long)st.prefill_tokens, (unsigned long long)st.cached_tokens,
            (unsigned long long)st.generated_tokens, ms, st.generated_tokens / (ms / 1e3));
    free(slots);
    free(lines);
    ts_engine_destroy(e);
    return rc;
}
