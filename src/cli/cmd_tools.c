/* tokenize and logits: small inspection commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_tokenize(cli_args *a) {
    if (!a->text) {
        fprintf(stderr, "error: tokenize needs --text TEXT\n");
        return 2;
    }
    ts_err err;
    ts_tokenizer *tok = NULL;
    if (ts_tok_load_dir(a->model, &tok, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (ts_tok_encode(tok, a->text, strlen(a->text), !a->no_special, &ids, &n, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    } else {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        puts("]");
    }
    free(ids);
    ts_tok_free(tok);
    return rc;
}

/* Parses "1,2,3" into ids; prints and returns NULL on a bad list. */
static int32_t *parse_ids(const char *s, int vocab, int *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return NULL;
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ',')) {
            fprintf(stderr, "error: --ids expects comma-separated integers, got '%s'\n", s);
            free(ids);
            return NULL;
        }
        if (v < 0 || v >= vocab) {
            fprintf(stderr, "error: token id %ld is out of range (the model has %d tokens)\n", v, vocab);
            free(ids);
            return NULL;
        }
        ids[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!k) {
        fprintf(stderr, "error: --ids is empty\n");
        free(ids);
        return NULL;
    }
    *n = k;
    return ids;
}

int cmd_logits(cli_args *a) {
    if (!a->ids || !a->out) {
        fprintf(stderr, "error: logits needs --ids LIST and --out FILE\n");
        return 2;
    }
    a->exact = true; /* reference-grade logits */
    ts_runtime *rt = cli_open(a);
    if (!rt) return 1;
    int n = 0, rc = 1;
    int32_t *ids = parse_ids(a->ids, rt->model->cfg.vocab, &n);
    ts_seq seq = {0};
    const float *logits;
    ts_err err;
    if (ids) {
        if (ts_prefill(rt, &seq, ids, n, 0, &logits, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
        } else {
            FILE *f = fopen(a->out, "wb");
            size_t vocab = (size_t)rt->model->cfg.vocab;
            if (!f || fwrite(logits, sizeof(float), vocab, f) != vocab) {
                fprintf(stderr, "error: cannot write %s: %s\n", a->out, strerror(errno));
            } else {
                rc = 0;
            }
            if (f && fclose(f) && !rc) {
                fprintf(stderr, "error: cannot write %s: %s\n", a->out, strerror(errno));
                rc = 1;
            }
        }
    }
    free(ids);
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    ts_runtime_close(rt);
    return rc;
}
