/* Chunk composition on facts-qwen3-14m:
 * - EXACT equals FULL;
 * - a chunk placed where it was encoded (right after the level-0 prefix)
 *   under REUSE equals FULL: pre-RoPE K rotated at its slot is what a
 *   prefill computes;
 * - REPAIR with fraction 1 recomputes every chunk token in context, in
 *   order, and so equals FULL wherever the chunks sit (several chunks,
 *   shifted positions, a chunk used twice);
 * - REUSE of chunks away from their encoding position differs from FULL
 *   (the missing context is real), and chunk ids are content-addressed. */
#include <string.h>

#include "engine/compose.h"
#include "test.h"

static int32_t *tok(ts_runtime *rt, const char *s, int *n) {
    int32_t *ids = NULL;
    size_t k = 0;
    ts_err err;
    if (ts_tok_encode(rt->tok, s, strlen(s), false, &ids, &k, &err)) return NULL;
    *n = (int)k;
    return ids;
}

/* Logits of the last token of a composition, copied. */
static float *run(ts_composer *cm, ts_runtime *rt, const ts_part *p, int n, ts_compose_mode mode,
                  float frac) {
    ts_seq seq = {0};
    const float *lg = NULL;
    ts_err err;
    float *out = NULL;
    if (ts_compose(cm, &seq, p, n, mode, frac, &lg, &err) == TS_OK) {
        size_t V = (size_t)rt->model->cfg.vocab;
        out = malloc(V * sizeof *out);
        memcpy(out, lg, V * sizeof *out);
    } else {
        fprintf(stderr, "compose: %s\n", err.msg);
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    return out;
}

int main(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/facts-qwen3-14m", ts_test_shared());
    ts_runtime_opts o = ts_runtime_opts_default();
    o.n_threads = 2;
    o.fast_prefill = false;
    o.kv_bytes = 64u << 20;
    ts_runtime *rt = NULL;
    ts_err err;
    CHECKF(ts_runtime_open(dir, &o, &rt, &err) == TS_OK, "open: %s", err.msg);
    if (!rt) return ts_test_done("test_compose");
    size_t V = (size_t)rt->model->cfg.vocab;
    int np, n1, n2, nh1, nh2, nt;
    int32_t *prefix = tok(rt, "<|im_start|>system\nYou answer questions using only the documents below.", &np);
    int32_t *d1 = tok(rt, "Valvalford is a city located in Helara. It was founded in 1721 by Pel Isnorwen.", &n1);
    int32_t *d2 = tok(rt, "Kaquomere is a city located in Ulara. About 723,302 people live there.", &n2);
    int32_t *h1 = tok(rt, "\n\n[Document 1]\n", &nh1);
    int32_t *h2 = tok(rt, "\n\n[Document 2]\n", &nh2);
    int32_t *tail = tok(rt, "<|im_end|>\n<|im_start|>user\nIn which year was Valvalford founded?<|im_end|>\n<|im_start|>assistant\n", &nt);
    CHECK(prefix && d1 && d2 && h1 && h2 && tail);
    ts_composer *cm = NULL;
    CHECK(ts_composer_create(rt, prefix, np, 0, &cm, &err) == TS_OK);

    /* a chunk right after the prefix: where it was encoded */
    ts_part at_home[2] = {{.is_chunk = true, .ids = d1, .n = n1, .type = TS_CHUNK_DOCUMENT},
                          {.ids = tail, .n = nt}};
    float *full = run(cm, rt, at_home, 2, TS_COMPOSE_FULL, 0);
    float *reuse = run(cm, rt, at_home, 2, TS_COMPOSE_REUSE, 0);
    float *exact = run(cm, rt, at_home, 2, TS_COMPOSE_EXACT, 0);
    CHECK(full && reuse && exact);
    if (full && reuse && exact) {
        CHECKF(ts_test_rel_err(reuse, full, V) < 1e-5, "reuse at home vs full: %.3g", ts_test_rel_err(reuse, full, V));
        CHECKF(ts_test_rel_err(exact, full, V) < 1e-6, "exact vs full: %.3g", ts_test_rel_err(exact, full, V));
    }
    free(full); free(reuse); free(exact);

    /* two documents, headers in between, d1 used twice: shifted positions */
    ts_part mixed[6] = {{.ids = h2, .n = nh2},
                        {.is_chunk = true, .ids = d2, .n = n2, .type = TS_CHUNK_DOCUMENT},
                        {.ids = h1, .n = nh1},
                        {.is_chunk = true, .ids = d1, .n = n1, .type = TS_CHUNK_DOCUMENT},
                        {.is_chunk = true, .ids = d1, .n = n1, .type = TS_CHUNK_DOCUMENT},
                        {.ids = tail, .n = nt}};
    full = run(cm, rt, mixed, 6, TS_COMPOSE_FULL, 0);
    float *repair = run(cm, rt, mixed, 6, TS_COMPOSE_REPAIR, 1.0f);
    reuse = run(cm, rt, mixed, 6, TS_COMPOSE_REUSE, 0);
    CHECK(full && repair && reuse);
    if (full && repair && reuse) {
        CHECKF(ts_test_rel_err(repair, full, V) < 1e-5, "repair(1.0) vs full: %.3g", ts_test_rel_err(repair, full, V));
        CHECKF(ts_test_rel_err(reuse, full, V) > 1e-4, "reuse away from home should differ: %.3g",
               ts_test_rel_err(reuse, full, V));
    }
    free(full); free(repair); free(reuse);

    /* identity: same content, same id; stats count the reuse */
    ts_chunk_id a, b;
    CHECK(ts_composer_register(cm, d1, n1, TS_CHUNK_DOCUMENT, &a, &err) == TS_OK);
    CHECK(ts_composer_register(cm, d1, n1, TS_CHUNK_RAG, &b, &err) == TS_OK);
    CHECK(!memcmp(&a, &b, sizeof a));
    ts_compose_stats st = ts_composer_stats(cm);
    CHECK(st.chunk_hits >= 3 && st.chunk_misses == 2);
    /* bad input: a composition longer than the context, a chunk last */
    ts_seq seq = {0};
    const float *lg;
    int32_t *big = calloc(5000, sizeof *big);
    ts_part too_long[2] = {{.is_chunk = true, .ids = big, .n = 5000}, {.ids = tail, .n = nt}};
    CHECK(ts_compose(cm, &seq, too_long, 2, TS_COMPOSE_REUSE, 0, &lg, &err) == TS_ERR_CAPACITY);
    CHECK(ts_compose(cm, &seq, at_home, 1, TS_COMPOSE_REUSE, 0, &lg, &err) == TS_ERR_INVALID);
    ts_seq_free(&seq);
    char why[200];
    CHECKF(ts_kv_check(rt->kv, why, sizeof why), "pool: %s", why);
    free(big);
    ts_composer_destroy(cm);
    free(prefix); free(d1); free(d2); free(h1); free(h2); free(tail);
    ts_runtime_close(rt);
    return ts_test_done("test_compose");
}
