/* eval-qa: answers each case's question from its documents and scores the
 * answers (format of ../shared/models/facts-qwen3-14m/eval_dev.json). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool cli_same_trimmed(const char *a, const char *b) {
    while (*a && strchr(" \t\r\n", *a)) a++;
    while (*b && strchr(" \t\r\n", *b)) b++;
    size_t na = strlen(a), nb = strlen(b);
    while (na && strchr(" \t\r\n", a[na - 1])) na--;
    while (nb && strchr(" \t\r\n", b[nb - 1])) nb--;
    return na == nb && !memcmp(a, b, na);
}

/* Builds the case's system message: system + "\n\n[Document i]\n" + doc... */
static bool case_system(json_t *c, ts_buf *sys) {
    json_t *docs = json_object_get(c, "documents");
    const char *system = json_string_value(json_object_get(c, "system"));
    if (!system || !json_is_array(docs)) return false;
    ts_buf_puts(sys, system);
    for (size_t i = 0; i < json_array_size(docs); i++) {
        const char *d = json_string_value(json_array_get(docs, i));
        if (!d) return false;
        ts_buf_printf(sys, "\n\n[Document %zu]\n%s", i + 1, d);
    }
    return true;
}

int cmd_eval_qa(cli_args *a) {
    if (!a->cases) {
        fprintf(stderr, "error: eval-qa needs --cases FILE\n");
        return 2;
    }
    json_error_t jerr;
    json_t *root = json_load_file(a->cases, 0, &jerr);
    if (!root) {
        fprintf(stderr, "error: %s: line %d: %s\n", a->cases, jerr.line, jerr.text);
        return 1;
    }
    json_t *cases = json_is_array(root) ? root : json_object_get(root, "cases");
    if (!json_is_array(cases)) {
        fprintf(stderr, "error: %s: expected a list of cases or an object with \"cases\"\n", a->cases);
        json_decref(root);
        return 1;
    }
    ts_runtime *rt = cli_open(a);
    if (!rt) {
        json_decref(root);
        return 1;
    }
    if (!rt->chat) {
        fprintf(stderr, "error: %s has no chat template\n", a->model);
        ts_runtime_close(rt);
        json_decref(root);
        return 1;
    }
    size_t n_cases = json_array_size(cases);
    if (a->limit && (size_t)a->limit < n_cases) n_cases = (size_t)a->limit;
    if (a->mode) {
        int r = cmd_eval_compose(a, cases, n_cases, rt);
        ts_runtime_close(rt);
        json_decref(root);
        return r;
    }
    int correct = 0, agree = 0, n_ref = 0, prompt_mismatch = 0, done = 0, rc = 0;
    long prefill_tokens = 0, gen_tokens = 0;
    double ttft_sum = 0, decode_ms = 0;
    ts_seq seq = {0};
    ts_buf sys = {0}, prompt = {0}, out = {0};
    for (size_t i = 0; i < n_cases; i++) {
        json_t *c = json_array_get(cases, i);
        const char *q = json_string_value(json_object_get(c, "question"));
        const char *ans = json_string_value(json_object_get(c, "answer"));
        const char *ref = json_string_value(json_object_get(c, "reference_output"));
        const char *want_prompt = json_string_value(json_object_get(c, "prompt"));
        ts_buf_clear(&sys);
        ts_buf_clear(&prompt);
        ts_buf_clear(&out);
        if (!q || !ans || !case_system(c, &sys)) {
            fprintf(stderr, "error: %s: case %zu lacks system, documents, question or answer\n",
                    a->cases, i);
            rc = 1;
            break;
        }
        ts_err err;
        if (cli_chat_prompt(rt, sys.data, q, -1, &prompt, &err)) {
            fprintf(stderr, "error: case %zu: %s\n", i, err.msg);
            rc = 1;
            break;
        }
        if (want_prompt && strcmp(want_prompt, prompt.data)) prompt_mismatch++;
        int n = 0;
        int32_t *ids = cli_tokenize(rt, prompt.data, false, &n);
        if (!ids) { rc = 1; break; }
        ts_gen_opts g = ts_gen_opts_default();
        g.max_tokens = a->n_predict < 64 ? a->n_predict : 64;
        ts_gen_stats st;
        /* a fresh sequence per case: every prompt is prefilled in full */
        ts_seq_reset(&seq, rt->kv);
        ts_status s = ts_generate(rt, &seq, ids, n, &g, &out, &st, &err);
        free(ids);
        if (s) {
            fprintf(stderr, "error: case %zu: %s\n", i, err.msg);
            rc = 1;
            break;
        }
        const char *got = out.data ? out.data : "";
        correct += cli_same_trimmed(got, ans);
        if (ref) {
            n_ref++;
            agree += cli_same_trimmed(got, ref);
        }
        prefill_tokens += st.n_prompt;
        gen_tokens += st.n_gen;
        ttft_sum += st.ttft_ms;
        decode_ms += st.decode_ms;
        done++;
    }
    if (!rc) {
        printf("{\"cases\": %d, \"accuracy\": %.4f, \"reference_match\": %.4f, "
               "\"ttft_ms_mean\": %.3f, \"prefill_tokens\": %ld, \"generated_tokens\": %ld, "
               "\"decode_tok_s\": %.1f, \"prompt_mismatches\": %d}\n",
               done, done ? (double)correct / done : 0.0, n_ref ? (double)agree / n_ref : 0.0,
               done ? ttft_sum / done : 0.0, prefill_tokens, gen_tokens,
               decode_ms > 0 ? (gen_tokens - done) / (decode_ms / 1e3) : 0.0, prompt_mismatch);
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    ts_buf_free(&sys);
    ts_buf_free(&prompt);
    ts_buf_free(&out);
    ts_runtime_close(rt);
    json_decref(root);
    return rc;
}
