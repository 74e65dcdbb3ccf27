/* bench-chunks: time to first token and answers through the engine for
 * prompts that cite registered chunks (the server's path), against the
 * same prompts sent as plain text.
 *
 * Every case's documents are registered and computed before timing
 * (--chunks-cached of eval-qa). The system prompt is in the prefix cache
 * for every mode, as it is for a running server; documents as plain text
 * are computed (full prefill), as chunks placed (reuse) or placed and
 * partly recomputed (repair). Requests run one at a time.
 *
 * Chunks are encoded after the first case's instruction and the header
 * "[Document 1]" (the context a document is read in; --system TEXT sets
 * another encoding prefix, e.g. the instruction alone, to compare). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct answer {
    ts_buf text;
    double ttft_ms;
    bool done;
} answer;

static void on_event(void *ctx, const ts_event *ev) {
    answer *a = ctx;
    if (ev->kind == TS_EVENT_TEXT) ts_buf_append(&a->text, ev->text, ev->len);
    else {
        a->done = true;
        a->ttft_ms = ev->ttft_ms;
    }
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

enum { MAX_PARTS = 80 };

typedef struct fcase {
    ts_buf system, tail, heads[32];
    const char *docs[32], *want;
    char ids[32][TS_CHUNK_ID_HEX + 1];
    int n_docs;
} fcase;

static bool load_case(json_t *c, fcase *f) {
    memset(f, 0, sizeof *f);
    const char *sys = json_string_value(json_object_get(c, "system"));
    const char *q = json_string_value(json_object_get(c, "question"));
    json_t *docs = json_object_get(c, "documents");
    f->want = json_string_value(json_object_get(c, "answer"));
    if (!sys || !q || !json_is_array(docs) || json_array_size(docs) > 32) return false;
    ts_buf_printf(&f->system, "<|im_start|>system\n%s", sys);
    for (size_t d = 0; d < json_array_size(docs); d++) {
        f->docs[d] = json_string_value(json_array_get(docs, d));
        if (!f->docs[d]) return false;
        ts_buf_printf(&f->heads[d], "\n\n[Document %zu]\n", d + 1);
        f->n_docs = (int)d + 1;
    }
    ts_buf_printf(&f->tail, "<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", q);
    return true;
}

static void free_case(fcase *f) {
    ts_buf_free(&f->system);
    ts_buf_free(&f->tail);
    for (int i = 0; i < 32; i++) ts_buf_free(&f->heads[i]);
}

static int parts_of(const fcase *f, bool chunks, ts_prompt_part *p) {
    int n = 0;
    p[n++] = (ts_prompt_part){.text = f->system.data};
    for (int d = 0; d < f->n_docs; d++) {
        p[n++] = (ts_prompt_part){.text = f->heads[d].data};
        p[n++] = chunks ? (ts_prompt_part){.chunk = f->ids[d]} : (ts_prompt_part){.text = f->docs[d]};
    }
    p[n++] = (ts_prompt_part){.text = f->tail.data};
    return n;
}

typedef struct mode_run {
    const char *name;
    int mode;             /* ts_chunk_mode; EXACT with plain text = full */
    bool chunks;
    double *ttft;
    int correct, same_as_full;
    uint64_t prefill, reused;
} mode_run;

int cmd_bench_chunks(cli_args *a) {
    if (!a->cases) {
        fprintf(stderr, "bench-chunks: --cases FILE is required\n");
        return 2;
    }
    json_error_t je;
    json_t *root = json_load_file(a->cases, 0, &je);
    json_t *cases = json_is_object(root) ? json_object_get(root, "cases") : root;
    if (!json_is_array(cases)) {
        fprintf(stderr, "bench-chunks: %s: no case list (%s)\n", a->cases, je.text);
        json_decref(root);
        return 1;
    }
    size_t n_cases = json_array_size(cases);
    if (a->limit > 0 && (size_t)a->limit < n_cases) n_cases = (size_t)a->limit;
    fcase *cs = calloc(n_cases ? n_cases : 1, sizeof *cs);
    size_t n_ok = 0;
    for (size_t i = 0; cs && i < n_cases; i++)
        if (load_case(json_array_get(cases, i), &cs[n_ok])) n_ok++;
        else free_case(&cs[n_ok]);
    if (!n_ok) {
        fprintf(stderr, "bench-chunks: %s: no usable case\n", a->cases);
        free(cs);
        json_decref(root);
        return 1;
    }
    ts_engine_opts o = cli_engine_opts(a);
    /* chunks are encoded in the context documents are read in: after the
     * instruction and a document header (--system TEXT replaces it) */
    ts_buf pfx = {0};
    if (a->system) ts_buf_puts(&pfx, a->system);
    else ts_buf_printf(&pfx, "%s%s", cs[0].system.data, cs[0].heads[0].data);
    o.chunk_prefix = pfx.data;
    o.repair_frac = a->repair_frac;
    /* every document stays computed (--kv-mem sets the registry budget) */
    o.chunk_bytes = a->kv_mem ? ts_parse_size(a->kv_mem) : (uint64_t)4 << 30;
    ts_engine *e = NULL;
    ts_err err;
    ts_status cs_ = ts_engine_create(a->model, &o, &e, &err);
    ts_buf_free(&pfx);
    if (cs_) {
        fprintf(stderr, "bench-chunks: %s\n", err.msg);
        for (size_t i = 0; i < n_ok; i++) free_case(&cs[i]);
        free(cs);
        json_decref(root);
        return 1;
    }
    int rc = 0;
    /* register every document and compute its KV before timing */
    for (size_t i = 0; !rc && i < n_ok; i++)
        for (int d = 0; !rc && d < cs[i].n_docs; d++) {
            ts_chunk_desc desc;
            if (ts_engine_chunk_register(e, cs[i].docs[d], NULL, 0, "document", NULL, 0, &desc, &err)) {
                fprintf(stderr, "bench-chunks: %s\n", err.msg);
                rc = 1;
            }
            memcpy(cs[i].ids[d], desc.id, sizeof desc.id);
        }
    while (!rc && ts_engine_wait(e, 0)) ts_engine_step(e, NULL, &err);
    mode_run runs[3] = {{"full", TS_CHUNKS_EXACT, false, NULL, 0, 0, 0, 0},
                        {"reuse", TS_CHUNKS_REUSE, true, NULL, 0, 0, 0, 0},
                        {"repair", TS_CHUNKS_REPAIR, true, NULL, 0, 0, 0, 0}};
    ts_buf *full_text = calloc(n_ok, sizeof *full_text);
    for (int m = 0; m < 3 && !rc; m++) {
        mode_run *r = &runs[m];
        r->ttft = calloc(n_ok, sizeof *r->ttft);
        ts_engine_stats s0, s1;
        ts_engine_step(e, NULL, &err);
        ts_engine_get_stats(e, &s0);
        for (size_t i = 0; i < n_ok && !rc; i++) {
            ts_prompt_part p[MAX_PARTS];
            ts_request q = ts_request_default();
            q.parts = p;
            q.n_parts = parts_of(&cs[i], r->chunks, p);
            q.chunk_mode = r->mode;
            q.max_tokens = a->n_predict > 0 ? a->n_predict : 32;
            answer ans = {0};
            if (ts_engine_submit(e, &q, on_event, &ans, NULL, &err) || ts_engine_run(e, &err)) {
                fprintf(stderr, "bench-chunks: case %zu: %s\n", i, err.msg);
                rc = 1;
                break;
            }
            const char *got = ans.text.data ? ans.text.data : "";
            r->ttft[i] = ans.ttft_ms;
            r->correct += cs[i].want && cli_same_trimmed(got, cs[i].want);
            if (m == 0) ts_buf_append(&full_text[i], got, strlen(got));
            r->same_as_full += cli_same_trimmed(got, full_text[i].data ? full_text[i].data : "");
            ts_buf_free(&ans.text);
        }
        ts_engine_step(e, NULL, &err);
        ts_engine_get_stats(e, &s1);
        r->prefill = s1.prefill_tokens - s0.prefill_tokens;
        r->reused = s1.chunk_tokens_reused - s0.chunk_tokens_reused;
    }
    if (!rc) {
        json_t *out = json_object();
        json_object_set_new(out, "cases", json_integer((json_int_t)n_ok));
        json_object_set_new(out, "repair_frac", json_real(o.repair_frac));
        double full_med = 0;
        /* the target is about prompts of 8-12 documents */
        double full_med8 = 0;
        double *sub = calloc(n_ok, sizeof *sub);
        for (int m = 0; m < 3 && sub; m++) {
            mode_run *r = &runs[m];
            size_t k = 0;
            for (size_t i = 0; i < n_ok; i++)
                if (cs[i].n_docs >= 8) sub[k++] = r->ttft[i];
            if (!k) continue;
            qsort(sub, k, sizeof *sub, cmp_double);
            double med = sub[k / 2];
            if (m == 0) full_med8 = med;
            json_t *j = json_object();
            json_object_set_new(j, "cases", json_integer((json_int_t)k));
            json_object_set_new(j, "ttft_ms_median", json_real(med));
            json_object_set_new(j, "ttft_speedup_vs_full", json_real(med > 0 ? full_med8 / med : 0));
            char name[32];
            snprintf(name, sizeof name, "%s_8plus_docs", r->name);
            json_object_set_new(out, name, j);
        }
        free(sub);
        for (int m = 0; m < 3; m++) {
            mode_run *r = &runs[m];
            qsort(r->ttft, n_ok, sizeof *r->ttft, cmp_double);
            double sum = 0;
            for (size_t i = 0; i < n_ok; i++) sum += r->ttft[i];
            double med = r->ttft[n_ok / 2];
            if (m == 0) full_med = med;
            json_t *j = json_object();
            json_object_set_new(j, "accuracy", json_real((double)r->correct / (double)n_ok));
            json_object_set_new(j, "agreement_with_full", json_real((double)r->same_as_full / (double)n_ok));
            json_object_set_new(j, "ttft_ms_mean", json_real(sum / (double)n_ok));
            json_object_set_new(j, "ttft_ms_median", json_real(med));
            json_object_set_new(j, "ttft_speedup_vs_full", json_real(med > 0 ? full_med / med : 0));
            json_object_set_new(j, "prefill_tokens", json_integer((json_int_t)r->prefill));
            json_object_set_new(j, "chunk_tokens_reused", json_integer((json_int_t)r->reused));
            json_object_set_new(out, r->name, j);
        }
        char *s = json_dumps(out, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(out);
    }
    for (int m = 0; m < 3; m++) free(runs[m].ttft);
    for (size_t i = 0; i < n_ok; i++) {
        ts_buf_free(&full_text[i]);
        free_case(&cs[i]);
    }
    free(full_text);
    free(cs);
    ts_engine_destroy(e);
    json_decref(root);
    return rc;
}
