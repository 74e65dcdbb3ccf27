/* make_hard_cases: builds harder QA cases for eval-qa from eval_dev.json's
 * documents. A pool of documents (about 60) is collected with the questions
 * that ask about them; each new case draws 4-12 documents in random order,
 * one of which answers the question, so the same document recurs in
 * different positions and next to different neighbours (what chunk reuse
 * must survive).
 *
 * usage: make_hard_cases IN.json OUT.json [--cases N] [--pool 60] [--seed S] */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct qa {
    const char *doc, *question, *answer;
} qa;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* The document a question is about: the one whose first word (the city)
 * appears in the question. */
static const char *doc_for(json_t *docs, const char *question) {
    for (size_t i = 0; i < json_array_size(docs); i++) {
        const char *d = json_string_value(json_array_get(docs, i));
        size_t w = d ? strcspn(d, " ") : 0;
        char city[128];
        if (!w || w >= sizeof city) continue;
        memcpy(city, d, w);
        city[w] = '\0';
        if (strstr(question, city)) return d;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s IN.json OUT.json [--cases N] [--pool 60] [--seed S]\n", argv[0]);
        return 2;
    }
    int n_cases = 200, pool_max = 60;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--cases")) n_cases = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pool")) pool_max = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) rng = strtoull(argv[i + 1], NULL, 10) * 2654435761ull + 1;
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (n_cases < 1 || pool_max < 12) {
        fprintf(stderr, "--cases must be >= 1 and --pool >= 12\n");
        return 2;
    }
    json_error_t je;
    json_t *root = json_load_file(argv[1], 0, &je);
    json_t *cases = root ? json_object_get(root, "cases") : NULL;
    if (!json_is_array(cases)) {
        fprintf(stderr, "%s: not an eval file (%s)\n", argv[1], root ? "no cases" : je.text);
        return 1;
    }
    const char *system = NULL;
    qa *pool = calloc((size_t)pool_max, sizeof *pool);
    int n_pool = 0;
    for (size_t i = 0; i < json_array_size(cases) && n_pool < pool_max; i++) {
        json_t *c = json_array_get(cases, i);
        const char *q = json_string_value(json_object_get(c, "question"));
        const char *a = json_string_value(json_object_get(c, "answer"));
        if (!system) system = json_string_value(json_object_get(c, "system"));
        const char *d = q ? doc_for(json_object_get(c, "documents"), q) : NULL;
        bool dup = false;
        for (int k = 0; d && k < n_pool; k++) dup |= !strcmp(pool[k].doc, d);
        if (d && a && !dup) pool[n_pool++] = (qa){d, q, a};
    }
    if (n_pool < 12 || !system) {
        fprintf(stderr, "%s: only %d usable documents\n", argv[1], n_pool);
        return 1;
    }
    json_t *out = json_array();
    for (int c = 0; c < n_cases; c++) {
        int n_docs = 4 + (int)rnd(9), target = (int)rnd((uint32_t)n_pool);
        int pick[12], k = 0;
        pick[k++] = target;
        while (k < n_docs) {
            int d = (int)rnd((uint32_t)n_pool);
            bool seen = false;
            for (int j = 0; j < k; j++) seen |= pick[j] == d;
            if (!seen) pick[k++] = d;
        }
        for (int j = n_docs - 1; j > 0; j--) { /* shuffle */
            int r = (int)rnd((uint32_t)j + 1), t = pick[j];
            pick[j] = pick[r];
            pick[r] = t;
        }
        json_t *docs = json_array();
        size_t cap = 256;
        for (int j = 0; j < n_docs; j++) cap += strlen(pool[pick[j]].doc) + 32;
        char *prompt = malloc(cap + strlen(system) + strlen(pool[target].question) + 128);
        int at = sprintf(prompt, "<|im_start|>system\n%s", system);
        for (int j = 0; j < n_docs; j++) {
            json_array_append_new(docs, json_string(pool[pick[j]].doc));
            at += sprintf(prompt + at, "\n\n[Document %d]\n%s", j + 1, pool[pick[j]].doc);
        }
        sprintf(prompt + at, "<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                pool[target].question);
        json_array_append_new(out, json_pack("{s:i, s:o, s:s, s:s, s:s, s:s}", "n_docs", n_docs,
                                             "documents", docs, "system", system, "question",
                                             pool[target].question, "answer", pool[target].answer,
                                             "prompt", prompt));
        free(prompt);
    }
    json_t *file = json_pack("{s:o, s:i}", "cases", out, "pool", n_pool);
    int rc = json_dump_file(file, argv[2], JSON_INDENT(1)) ? 1 : 0;
    if (rc) fprintf(stderr, "cannot write %s\n", argv[2]);
    json_decref(file);
    json_decref(root);
    free(pool);
    return rc;
}
