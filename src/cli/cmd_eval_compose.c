/* eval-qa --mode full|exact|reuse|repair: each case's documents become
 * chunks (a document that recurs is reused), composed with the case's
 * instruction (the level-0 prefix), document headers and question. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/err.h"
#include "engine/compose.h"

typedef struct case_parts {
    ts_part parts[64];
    int32_t *owned[64];
    int n_parts;
    int32_t *prefix;
    int n_prefix;
} case_parts;

static void free_parts(case_parts *cp) {
    for (int i = 0; i < cp->n_parts; i++) free(cp->owned[i]);
    free(cp->prefix);
    memset(cp, 0, sizeof *cp);
}

static bool add_part(ts_runtime *rt, case_parts *cp, const char *text, bool chunk) {
    if (cp->n_parts == 64) return false;
    int n = 0;
    int32_t *ids = cli_tokenize(rt, text, false, &n);
    if (!ids) return false;
    cp->owned[cp->n_parts] = ids;
    cp->parts[cp->n_parts++] = (ts_part){.is_chunk = chunk, .ids = ids, .n = n, .type = TS_CHUNK_DOCUMENT};
    return true;
}

/* Splits a case into prefix / headers / documents / question tail (the
 * ChatML layout the facts model was trained with); checks the
 * concatenation is the case's prompt. */
static bool build_parts(ts_runtime *rt, json_t *c, case_parts *cp, bool *mismatch) {
    const char *system = json_string_value(json_object_get(c, "system"));
    const char *q = json_string_value(json_object_get(c, "question"));
    const char *want = json_string_value(json_object_get(c, "prompt"));
    json_t *docs = json_object_get(c, "documents");
    if (!system || !q || !json_is_array(docs)) return false;
    ts_buf all = {0}, tmp = {0};
    ts_buf_printf(&tmp, "<|im_start|>system\n%s", system);
    ts_buf_append(&all, tmp.data, tmp.len);
    int n = 0;
    cp->prefix = cli_tokenize(rt, tmp.data, false, &n);
    cp->n_prefix = n;
    bool ok = cp->prefix != NULL;
    for (size_t i = 0; ok && i < json_array_size(docs); i++) {
        const char *d = json_string_value(json_array_get(docs, i));
        ts_buf_clear(&tmp);
        ts_buf_printf(&tmp, "\n\n[Document %zu]\n", i + 1);
        ts_buf_append(&all, tmp.data, tmp.len);
        ok = d && add_part(rt, cp, tmp.data, false) && add_part(rt, cp, d, true);
        if (d) ts_buf_puts(&all, d);
    }
    ts_buf_clear(&tmp);
    ts_buf_printf(&tmp, "<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", q);
    ts_buf_append(&all, tmp.data, tmp.len);
    ok = ok && add_part(rt, cp, tmp.data, false);
    *mismatch = want && all.data && strcmp(want, all.data) != 0;
    ts_buf_free(&all);
    ts_buf_free(&tmp);
    return ok;
}

static bool same_trimmed(const char *a, const char *b) {
    while (*a && strchr(" \t\r\n", *a)) a++;
    while (*b && strchr(" \t\r\n", *b)) b++;
    size_t na = strlen(a), nb = strlen(b);
    while (na && strchr(" \t\r\n", a[na - 1])) na--;
    while (nb && strchr(" \t\r\n", b[nb - 1])) nb--;
    return na == nb && !memcmp(a, b, na);
}

/* Composes and answers one case in mode; appends the answer to out. */
static ts_status answer(ts_runtime *rt, ts_composer *cm, ts_seq *seq, case_parts *cp,
                        ts_compose_mode mode, float frac, ts_buf *out, double *ttft, ts_err *err) {
    double t0 = ts_now_ms();
    const float *lg;
    if (mode != TS_COMPOSE_EXACT) ts_seq_reset(seq, rt->kv);
    ts_status s = ts_compose(cm, seq, cp->parts, cp->n_parts, mode, frac, &lg, err);
    if (s) return s;
    ts_gen_opts g = ts_gen_opts_default();
    g.max_tokens = 64;
    ts_gen_stats st;
    /* the composed tokens are all in seq: generation recomputes only the last */
    int32_t *ids = malloc((size_t)seq->n_tokens * sizeof *ids);
    if (!ids) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    memcpy(ids, seq->tokens, (size_t)seq->n_tokens * sizeof *ids);
    s = ts_generate(rt, seq, ids, seq->n_tokens, &g, out, &st, err);
    free(ids);
    *ttft = ts_now_ms() - t0 - st.decode_ms;
    return s;
}

static void log_store(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "chunk store: %s\n", msg);
}

int cmd_eval_compose(cli_args *a, json_t *cases, size_t n_cases, ts_runtime *rt) {
    ts_compose_mode mode;
    if (!strcmp(a->mode, "full")) mode = TS_COMPOSE_FULL;
    else if (!strcmp(a->mode, "exact")) mode = TS_COMPOSE_EXACT;
    else if (!strcmp(a->mode, "reuse")) mode = TS_COMPOSE_REUSE;
    else if (!strcmp(a->mode, "repair")) mode = TS_COMPOSE_REPAIR;
    else {
        fprintf(stderr, "error: --mode expects full, exact, reuse or repair\n");
        return 2;
    }
    ts_composer *cm = NULL, *ref = NULL;
    ts_chunk_store *store = NULL;
    ts_seq seq = {0}, ref_seq = {0};
    ts_buf out = {0}, full = {0};
    ts_err err;
    int rc = 0, correct = 0, agree = 0, mismatches = 0, done = 0;
    double ttft_sum = 0;
    for (size_t i = 0; i < n_cases && !rc; i++) {
        json_t *c = json_array_get(cases, i);
        case_parts cp = {0};
        bool mismatch = false;
        if (!build_parts(rt, c, &cp, &mismatch)) {
            fprintf(stderr, "error: %s: case %zu is malformed\n", a->cases, i);
            free_parts(&cp);
            rc = 1;
            break;
        }
        mismatches += mismatch;
        if (!cm && (ts_composer_create(rt, cp.prefix, cp.n_prefix, 0, &cm, &err) ||
                    ts_composer_create(rt, cp.prefix, cp.n_prefix, 0, &ref, &err))) {
            fprintf(stderr, "error: %s\n", err.msg);
            free_parts(&cp);
            rc = 1;
            break;
        }
        if (i == 0 && a->chunk_store && !rc) {
            if (ts_chunk_store_open(a->chunk_store, log_store, NULL, &store, &err))
                fprintf(stderr, "warning: chunk store %s unavailable (%s); continuing without it\n",
                        a->chunk_store, err.msg);
            else
                ts_composer_set_store(cm, store);
        }
        if (i == 0 && a->chunks_cached) { /* register every document before timing */
            for (size_t j = 0; j < n_cases && !rc; j++) {
                case_parts cj = {0};
                bool mm;
                if (build_parts(rt, json_array_get(cases, j), &cj, &mm))
                    for (int p = 0; p < cj.n_parts && !rc; p++)
                        if (cj.parts[p].is_chunk &&
                            ts_composer_register(cm, cj.parts[p].ids, cj.parts[p].n, TS_CHUNK_DOCUMENT, NULL, &err))
                            rc = 1;
                free_parts(&cj);
            }
            if (rc) fprintf(stderr, "error: %s\n", err.msg);
        }
        double ttft = 0, t_unused;
        ts_buf_clear(&out);
        ts_buf_clear(&full);
        if (!rc && answer(rt, cm, &seq, &cp, mode, a->repair_frac, &out, &ttft, &err)) rc = 1;
        if (!rc && mode != TS_COMPOSE_FULL && mode != TS_COMPOSE_EXACT &&
            answer(rt, ref, &ref_seq, &cp, TS_COMPOSE_FULL, 0, &full, &t_unused, &err))
            rc = 1;
        if (rc) {
            fprintf(stderr, "error: case %zu: %s\n", i, err.msg);
        } else {
            const char *got = out.data ? out.data : "";
            const char *ans = json_string_value(json_object_get(c, "answer"));
            correct += ans && same_trimmed(got, ans);
            agree += (mode == TS_COMPOSE_FULL || mode == TS_COMPOSE_EXACT) ||
                     same_trimmed(got, full.data ? full.data : "");
            ttft_sum += ttft;
            done++;
        }
        free_parts(&cp);
    }
    if (!rc) {
        ts_compose_stats cs = ts_composer_stats(cm);
        ts_chunk_reg_stats rs = ts_chunk_reg_get_stats(ts_composer_registry(cm));
        printf("{\"mode\": \"%s\", \"cases\": %d, \"accuracy\": %.4f, \"agreement_with_full\": %.4f, "
               "\"ttft_ms_mean\": %.3f, \"prefill_tokens\": %ld, \"reused_tokens\": %ld, "
               "\"kv_bytes\": %llu, \"chunk_hit_rate\": %.4f, \"chunks\": %llu, "
               "\"prompt_mismatches\": %d, \"repair_frac\": %.3f, \"store_loads\": %ld}\n",
               a->mode, done, done ? (double)correct / done : 0.0, done ? (double)agree / done : 0.0,
               done ? ttft_sum / done : 0.0, cs.prefill_tokens, cs.reused_tokens,
               (unsigned long long)rs.bytes_used,
               cs.chunk_hits + cs.chunk_misses ? (double)cs.chunk_hits / (double)(cs.chunk_hits + cs.chunk_misses) : 0.0,
               (unsigned long long)rs.n_chunks, mismatches, mode == TS_COMPOSE_REPAIR ? a->repair_frac : 0.0,
               cs.store_loads);
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    ts_seq_reset(&ref_seq, rt->kv);
    ts_seq_free(&ref_seq);
    ts_buf_free(&out);
    ts_buf_free(&full);
    ts_composer_destroy(cm);
    ts_composer_destroy(ref);
    ts_chunk_store_close(store);
    return rc;
}
