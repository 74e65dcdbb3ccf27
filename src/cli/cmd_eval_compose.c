/* eval-qa --mode full|exact|reuse|repair[:POLICY][/plain|/headers]: each
 * case's documents become chunks (a document that recurs is reused),
 * composed with the case's level-0 prefix, document headers and question.
 *
 * Layout. The level-0 prefix is the instruction followed by the first
 * document's header ("<|im_start|>system\n" + system + "\n\n[Document 1]\n"),
 * so every chunk is encoded right after a document header, as it is read
 * in a prompt; the later headers are text parts. "/plain" ends the prefix
 * after the instruction instead (every header is text, chunks are encoded
 * with no header before them): the layout of ANCHORS.md's experiment.
 * "/headers" is the default layout with the headers of documents 2..n
 * registered as chunks too (their KV reused, not computed). The
 * composed tokens are the case's prompt either way.
 *
 * POLICY: first (default), last, edges, query (SCORED with query scores) or
 * deviation (SCORED with the deviation oracle); see engine/compose.h.
 *
 * Prefix. reuse and repair keep the level-0 prefix's KV from one case to
 * the next (ts_compose keeps a sequence's common prefix, as a serving
 * engine's prefix cache does); full and exact behave as before.
 *
 * Cost. prefill_tokens counts every token computed, chunk encoding
 * included; compose_prefill_tokens only those computed while composing
 * (text parts, repaired tokens, and the prefix where it was not kept);
 * prefill_frac divides it by what full prefill computes for the same
 * cases (every token of every case), and prefill_frac_prefix_recomputed
 * adds back the kept prefix tokens. */
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
    long n_tokens;  /* the whole composition */
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
    cp->n_tokens += n;
    return true;
}

/* Splits a case into prefix / headers / documents / question tail (the
 * ChatML layout the facts model was trained with); checks the
 * concatenation is the case's prompt. */
static bool build_parts(ts_runtime *rt, json_t *c, int layout, case_parts *cp, bool *mismatch) {
    bool plain = layout == 1;
    const char *system = json_string_value(json_object_get(c, "system"));
    const char *q = json_string_value(json_object_get(c, "question"));
    const char *want = json_string_value(json_object_get(c, "prompt"));
    json_t *docs = json_object_get(c, "documents");
    if (!system || !q || !json_is_array(docs)) return false;
    ts_buf all = {0}, tmp = {0};
    /* every part is tokenized on its own, in both layouts, so the composed
     * tokens are the same: only where the level-0 prefix ends differs */
    bool fold = !plain && json_array_size(docs) > 0;  /* first header in the prefix */
    ts_buf_printf(&tmp, "<|im_start|>system\n%s", system);
    ts_buf_append(&all, tmp.data, tmp.len);
    int n = 0;
    cp->prefix = cli_tokenize(rt, tmp.data, false, &n);
    cp->n_prefix = n;
    cp->n_tokens = n;
    bool ok = cp->prefix != NULL;
    for (size_t i = 0; ok && i < json_array_size(docs); i++) {
        const char *d = json_string_value(json_array_get(docs, i));
        ts_buf_clear(&tmp);
        ts_buf_printf(&tmp, "\n\n[Document %zu]\n", i + 1);
        ts_buf_append(&all, tmp.data, tmp.len);
        if (fold && !i) { /* the first header joins the prefix */
            int nh = 0;
            int32_t *h = cli_tokenize(rt, tmp.data, false, &nh);
            int32_t *p = h ? realloc(cp->prefix, (size_t)(cp->n_prefix + nh) * sizeof *p) : NULL;
            if (p) {
                memcpy(p + cp->n_prefix, h, (size_t)nh * sizeof *p);
                cp->prefix = p;
                cp->n_prefix += nh;
                cp->n_tokens += nh;
            }
            free(h);
            ok = p != NULL;
        } else {
            ok = add_part(rt, cp, tmp.data, layout == 2);
        }
        ok = ok && d && add_part(rt, cp, d, true);
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

/* Composes and answers one case in mode; appends the answer to out. */
static ts_status answer(ts_runtime *rt, ts_composer *cm, ts_seq *seq, case_parts *cp,
                        ts_compose_mode mode, float frac, ts_buf *out, double *ttft, ts_err *err) {
    double t0 = ts_now_ms();
    const float *lg;
    if (mode == TS_COMPOSE_FULL) ts_seq_reset(seq, rt->kv);
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
    ts_repair_kind policy = TS_REPAIR_FIRST;
    char name[64];
    snprintf(name, sizeof name, "%s", a->mode);
    char *slash = strchr(name, '/'), *colon = strchr(name, ':');
    int layout = !slash ? 0 : !strcmp(slash, "/plain") ? 1 : !strcmp(slash, "/headers") ? 2 : -1;
    if (slash) *slash = '\0';
    if (colon) *colon = '\0';
    ts_err perr;
    if (!strcmp(name, "full")) mode = TS_COMPOSE_FULL;
    else if (!strcmp(name, "exact")) mode = TS_COMPOSE_EXACT;
    else if (!strcmp(name, "reuse")) mode = TS_COMPOSE_REUSE;
    else if (!strcmp(name, "repair")) mode = TS_COMPOSE_REPAIR;
    else mode = (ts_compose_mode)-1;
    ts_repair_source src = TS_REPAIR_SRC_QUERY;
    const char *pname = colon ? colon + 1 : "first";
    if (!strcmp(pname, "query") || !strcmp(pname, "deviation")) {
        policy = TS_REPAIR_SCORED;
        src = !strcmp(pname, "query") ? TS_REPAIR_SRC_QUERY : TS_REPAIR_SRC_DEVIATION;
    } else if (ts_repair_kind_parse(pname, &policy, &perr) || policy == TS_REPAIR_SCORED) {
        mode = (ts_compose_mode)-1;
    }
    if ((int)mode < 0 || layout < 0 || (colon && mode != TS_COMPOSE_REPAIR)) {
        fprintf(stderr, "error: --mode expects full, exact, reuse or repair[:first|last|edges|query|deviation], "
                        "optionally followed by /plain or /headers\n");
        return 2;
    }
    ts_composer *cm = NULL, *ref = NULL;
    ts_chunk_store *store = NULL;
    ts_seq seq = {0}, ref_seq = {0};
    ts_buf out = {0}, full = {0};
    ts_err err;
    int rc = 0, correct = 0, agree = 0, mismatches = 0, done = 0;
    long full_tokens = 0, kept_tokens = 0, compose_tokens = 0;
    double ttft_sum = 0;
    for (size_t i = 0; i < n_cases && !rc; i++) {
        json_t *c = json_array_get(cases, i);
        case_parts cp = {0};
        bool mismatch = false;
        if (!build_parts(rt, c, layout, &cp, &mismatch)) {
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
        if (i == 0) ts_composer_set_repair(cm, policy, src);
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
                if (build_parts(rt, json_array_get(cases, j), layout, &cj, &mm))
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
        ts_compose_stats before = cm ? ts_composer_stats(cm) : (ts_compose_stats){0};
        int kept = 0; /* the prefix tokens reuse and repair will keep (as ts_compose finds them) */
        if (mode == TS_COMPOSE_REUSE || mode == TS_COMPOSE_REPAIR)
            while (kept < seq.n_tokens && kept < cp.n_prefix && seq.tokens[kept] == cp.prefix[kept]) kept++;
        if (!rc && answer(rt, cm, &seq, &cp, mode, a->repair_frac, &out, &ttft, &err)) rc = 1;
        if (!rc) {
            ts_compose_stats after = ts_composer_stats(cm);
            compose_tokens += (after.prefill_tokens - after.encode_tokens) -
                              (before.prefill_tokens - before.encode_tokens);
            full_tokens += cp.n_tokens;
            kept_tokens += kept;
        }
        if (!rc && mode != TS_COMPOSE_FULL && mode != TS_COMPOSE_EXACT &&
            answer(rt, ref, &ref_seq, &cp, TS_COMPOSE_FULL, 0, &full, &t_unused, &err))
            rc = 1;
        if (rc) {
            fprintf(stderr, "error: case %zu: %s\n", i, err.msg);
        } else {
            const char *got = out.data ? out.data : "";
            const char *ans = json_string_value(json_object_get(c, "answer"));
            correct += ans && cli_same_trimmed(got, ans);
            agree += (mode == TS_COMPOSE_FULL || mode == TS_COMPOSE_EXACT) ||
                     cli_same_trimmed(got, full.data ? full.data : "");
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
               "\"prompt_mismatches\": %d, \"repair_frac\": %.3f, \"store_loads\": %ld, "
               "\"repair_policy\": \"%s\", \"layout\": \"%s\", \"compose_prefill_tokens\": %ld, "
               "\"full_prefill_tokens\": %ld, \"prefill_frac\": %.4f, \"prefill_frac_prefix_recomputed\": %.4f}\n",
               a->mode, done, done ? (double)correct / done : 0.0, done ? (double)agree / done : 0.0,
               done ? ttft_sum / done : 0.0, cs.prefill_tokens, cs.reused_tokens,
               (unsigned long long)rs.bytes_used,
               cs.chunk_hits + cs.chunk_misses ? (double)cs.chunk_hits / (double)(cs.chunk_hits + cs.chunk_misses) : 0.0,
               (unsigned long long)rs.n_chunks, mismatches, mode == TS_COMPOSE_REPAIR ? a->repair_frac : 0.0,
               cs.store_loads, mode == TS_COMPOSE_REPAIR ? pname : "none",
               layout == 1 ? "plain" : layout == 2 ? "headers-as-chunks" : "header", compose_tokens, full_tokens,
               full_tokens ? (double)compose_tokens / (double)full_tokens : 0.0,
               full_tokens ? (double)(compose_tokens + kept_tokens) / (double)full_tokens : 0.0);
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
