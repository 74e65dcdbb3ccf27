/* Chunk composition on facts-qwen3-14m:
 * - EXACT equals FULL;
 * - a chunk placed where it was encoded (right after the level-0 prefix)
 *   under REUSE equals FULL: pre-RoPE K rotated at its slot is what a
 *   prefill computes;
 * - REPAIR with fraction 1 recomputes every chunk token in context, in
 *   order, and so equals FULL wherever the chunks sit (several chunks,
 *   shifted positions, a chunk used twice);
 * - every repair policy (first, last, edges, scored by query or by the
 *   deviation oracle) with fraction 1 equals FULL, and a partial repair
 *   counts exactly the selected tokens (and the oracle's prefill);
 * - REUSE of chunks away from their encoding position differs from FULL
 *   (the missing context is real), and chunk ids are content-addressed;
 * - ts_repair_select: deterministic, within budget, spans sorted and
 *   disjoint, home chunks untouched, the budget split by largest
 *   remainder, SCORED picks equal a plain top-k reference (per chunk and
 *   global), and query scores follow their formula. */
#include <string.h>

#include "engine/compose.h"
#include "engine/repair.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Plain reference of SCORED without merging: is token t among the k best
 * (higher score first, earlier offset on ties)? */
static bool ref_top(const float *s, int n, int k, int t) {
    int better = 0;
    for (int u = 0; u < n; u++)
        if (s[u] > s[t] || (s[u] == s[t] && u < t)) better++;
    return better < k;
}

/* Checks one plan's invariants; returns the tokens of chunk i in *per. */
static void check_plan(const ts_repair_plan *pl, int nc, const int32_t *len, const bool *home,
                       int max_spans, long *per) {
    CHECK(pl->n_chunks == nc && pl->first[0] == 0 && pl->first[nc] == pl->n_spans);
    long tot = 0;
    for (int i = 0; i < nc; i++) {
        per[i] = 0;
        CHECK(pl->first[i] <= pl->first[i + 1]);
        CHECKF(pl->first[i + 1] - pl->first[i] <= max_spans, "chunk %d: %d spans", i,
               pl->first[i + 1] - pl->first[i]);
        for (int j = pl->first[i]; j < pl->first[i + 1]; j++) {
            const ts_repair_span *sp = &pl->spans[j];
            CHECK(sp->n >= 1 && sp->off >= 0 && sp->off + sp->n <= len[i]);
            if (j > pl->first[i]) CHECK(sp->off > pl->spans[j - 1].off + pl->spans[j - 1].n);
            per[i] += sp->n;
        }
        if (home && home[i]) CHECK(per[i] == 0);
        tot += per[i];
    }
    CHECK(tot == pl->n_tokens);
}

static void test_select(void) {
    ts_err err;
    int rounds = getenv("TS_TEST_LIGHT") ? 40 : 300;
    for (int r = 0; r < rounds; r++) {
        int nc = 1 + (int)rnd(12);
        int32_t len[12];
        bool home[12];
        float *sc[12];
        long sum = 0, elig = 0, per[12], per2[12];
        for (int i = 0; i < nc; i++) {
            len[i] = 1 + (int32_t)rnd(r % 3 ? 80 : 5);
            home[i] = i == 0 && rnd(2);
            sum += len[i];
            if (!home[i]) elig += len[i];
            sc[i] = malloc((size_t)len[i] * sizeof *sc[i]);
            for (int t = 0; t < len[i]; t++) sc[i][t] = (float)rnd(7); /* many ties */
        }
        float frac = (float)rnd(101) / 100.0f;
        ts_repair_kind kind = (ts_repair_kind)rnd(4);
        ts_repair_policy pol = ts_repair_policy_default(kind, frac);
        pol.max_spans = kind == TS_REPAIR_SCORED ? (int)rnd(3) + (rnd(2) ? 1 : 100) : 0;
        pol.global = kind == TS_REPAIR_SCORED && rnd(2);
        int max_spans = kind == TS_REPAIR_SCORED ? pol.max_spans : kind == TS_REPAIR_EDGES ? 2 : 1;
        ts_repair_plan a = {0}, b = {0};
        CHECK(ts_repair_select(&pol, nc, len, home, (const float *const *)sc, &a, &err) == TS_OK);
        CHECK(ts_repair_select(&pol, nc, len, home, (const float *const *)sc, &b, &err) == TS_OK);
        check_plan(&a, nc, len, home, max_spans, per);
        check_plan(&b, nc, len, home, max_spans, per2);
        CHECK(a.n_spans == b.n_spans && !memcmp(a.first, b.first, (size_t)(nc + 1) * sizeof *a.first) &&
              !memcmp(a.spans, b.spans, (size_t)a.n_spans * sizeof *a.spans)); /* deterministic */
        long budget = lround((double)frac * (double)sum);
        if (budget > elig) budget = elig;
        if (kind != TS_REPAIR_SCORED) { /* exact budget, each chunk floor or ceil of its share */
            CHECKF(a.n_tokens == budget, "kind %d: %ld tokens for a budget of %ld", kind, a.n_tokens, budget);
            for (int i = 0; i < nc; i++)
                if (!home[i]) {
                    double share = (double)budget * len[i] / (double)elig;
                    CHECK(per[i] >= (long)floor(share) && per[i] <= (long)ceil(share));
                }
        } else {
            CHECK(a.n_tokens <= budget);
            if (pol.global && pol.max_spans >= 100) CHECK(a.n_tokens == budget);
        }
        for (int i = 0; i < nc; i++) {
            int j0 = a.first[i], j1 = a.first[i + 1];
            if (kind == TS_REPAIR_FIRST && per[i]) CHECK(j1 - j0 == 1 && a.spans[j0].off == 0);
            if (kind == TS_REPAIR_LAST && per[i])
                CHECK(j1 - j0 == 1 && a.spans[j0].off + a.spans[j0].n == len[i]);
            if (pol.global && pol.max_spans >= 100) { /* the global top-budget set, plainly */
                for (int t = 0; t < len[i]; t++) {
                    bool in = false;
                    for (int j = j0; j < j1; j++) in |= t >= a.spans[j].off && t < a.spans[j].off + a.spans[j].n;
                    long better = 0;
                    for (int i2 = 0; i2 < nc; i2++)
                        for (int u = 0; !home[i2] && u < len[i2]; u++)
                            better += sc[i2][u] > sc[i][t] ||
                                      (sc[i2][u] == sc[i][t] && (i2 < i || (i2 == i && u < t)));
                    CHECKF(in == (!home[i] && better < budget), "global: token %d of chunk %d", t, i);
                }
                continue;
            }
            if (kind == TS_REPAIR_SCORED && pol.max_spans >= 100) { /* no merging: the top-k set */
                int k = 0;
                for (int j = j0; j < j1; j++) k += a.spans[j].n;
                long share = (long)floor((double)budget * len[i] / (double)elig);
                CHECK(home[i] || k >= share);
                for (int t = 0; t < len[i]; t++) {
                    bool in = false;
                    for (int j = j0; j < j1; j++) in |= t >= a.spans[j].off && t < a.spans[j].off + a.spans[j].n;
                    CHECKF(in == ref_top(sc[i], len[i], k, t), "scored: token %d of chunk %d", t, i);
                }
            }
        }
        ts_repair_plan_free(&a);
        ts_repair_plan_free(&b);
        for (int i = 0; i < nc; i++) free(sc[i]);
    }
    /* query scores against a plain reference of their formula */
    {
        int32_t c0[] = {5, 6, 7, 5}, c1[] = {6, 8, 9}, c2[] = {7, 7, 10, 11, 6}, q[] = {6, 10, 10, 42, 7};
        const int32_t *ids[3] = {c0, c1, c2};
        int32_t ln[3] = {4, 3, 5};
        float s0[4], s1[3], s2[5];
        float *const out[3] = {s0, s1, s2};
        CHECK(ts_repair_query_scores(3, ids, ln, q, 5, out, &err) == TS_OK);
        /* 6 is in every chunk (weight 0), 7 in two, 10 in one, 42 in none */
        double w7 = log(4.0 / 3.0), w10 = log(4.0 / 2.0), r[3] = {w7, 0, w7 + w10};
        for (int i = 0; i < 3; i++)
            for (int t = 0; t < ln[i]; t++)
                CHECKF(fabs(out[i][t] - (r[i] + 1e-3 * (ln[i] - t) / ln[i])) < 1e-5, "query score %d/%d", i, t);
        CHECK(ts_repair_query_scores(1, ids, ln, NULL, 2, out, &err) == TS_ERR_INVALID);
    }
    /* bad arguments */
    ts_repair_plan pl = {0};
    int32_t l1[2] = {5, 0};
    ts_repair_policy pol = ts_repair_policy_default(TS_REPAIR_FIRST, 0.5f);
    CHECK(ts_repair_select(&pol, 2, l1, NULL, NULL, &pl, &err) == TS_ERR_INVALID);
    l1[1] = 3;
    pol.frac = 1.5f;
    CHECK(ts_repair_select(&pol, 2, l1, NULL, NULL, &pl, &err) == TS_ERR_INVALID);
    pol.frac = NAN;
    CHECK(ts_repair_select(&pol, 2, l1, NULL, NULL, &pl, &err) == TS_ERR_INVALID);
    pol = ts_repair_policy_default(TS_REPAIR_SCORED, 0.5f);
    CHECK(ts_repair_select(&pol, 2, l1, NULL, NULL, &pl, &err) == TS_ERR_INVALID);
    ts_repair_kind k;
    CHECK(ts_repair_kind_parse("edges", &k, &err) == TS_OK && k == TS_REPAIR_EDGES);
    CHECK(ts_repair_kind_parse("middle", &k, &err) == TS_ERR_INVALID);
    ts_repair_plan_free(&pl);
    ts_repair_plan_free(NULL);
}

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
    test_select();
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
    reuse = run(cm, rt, mixed, 6, TS_COMPOSE_REUSE, 0);
    CHECK(full && reuse);
    for (int kind = TS_REPAIR_FIRST; kind <= TS_REPAIR_EDGES; kind++) {
        ts_composer_set_repair(cm, (ts_repair_kind)kind, TS_REPAIR_SRC_QUERY);
        float *repair = run(cm, rt, mixed, 6, TS_COMPOSE_REPAIR, 1.0f);
        CHECK(repair);
        if (full && repair)
            CHECKF(ts_test_rel_err(repair, full, V) < 1e-5, "repair %s (1.0) vs full: %.3g",
                   ts_repair_kind_name((ts_repair_kind)kind), ts_test_rel_err(repair, full, V));
        /* a partial repair computes the text (prefix included) and exactly the selected tokens */
        ts_compose_stats s0 = ts_composer_stats(cm);
        float *part = run(cm, rt, mixed, 6, TS_COMPOSE_REPAIR, 0.3f);
        ts_compose_stats s1 = ts_composer_stats(cm);
        int32_t lens[3] = {n2, n1, n1};
        ts_repair_policy pol = ts_repair_policy_default((ts_repair_kind)kind, 0.3f);
        ts_repair_plan pl = {0};
        CHECK(ts_repair_select(&pol, 3, lens, NULL, NULL, &pl, &err) == TS_OK);
        CHECKF(s1.prefill_tokens - s0.prefill_tokens == np + nh1 + nh2 + nt + pl.n_tokens,
               "repair %d: %ld computed, want %ld", kind, s1.prefill_tokens - s0.prefill_tokens,
               (long)(np + nh1 + nh2 + nt) + pl.n_tokens);
        CHECK(pl.n_tokens == lround(0.3 * (n1 + n1 + n2)));
        if (part && full && reuse) /* between reuse and full: differs from both */
            CHECK(ts_test_rel_err(part, full, V) > 1e-6 && ts_test_rel_err(part, reuse, V) > 1e-6);
        ts_repair_plan_free(&pl);
        free(repair);
        free(part);
    }
    /* SCORED with query scores: fraction 1 is FULL; a partial one costs the
     * text and exactly the budget */
    ts_composer_set_repair(cm, TS_REPAIR_SCORED, TS_REPAIR_SRC_QUERY);
    float *qfull = run(cm, rt, mixed, 6, TS_COMPOSE_REPAIR, 1.0f);
    CHECK(qfull);
    if (qfull && full)
        CHECKF(ts_test_rel_err(qfull, full, V) < 1e-5, "repair query (1.0) vs full: %.3g", ts_test_rel_err(qfull, full, V));
    free(qfull);
    {
        ts_compose_stats q0 = ts_composer_stats(cm);
        float *qp = run(cm, rt, mixed, 6, TS_COMPOSE_REPAIR, 0.2f);
        ts_compose_stats q1 = ts_composer_stats(cm);
        CHECK(qp && q1.prefill_tokens - q0.prefill_tokens == np + nh1 + nh2 + nt + lround(0.2 * (n1 + n1 + n2)));
        free(qp);
    }
    /* SCORED (the deviation oracle): fraction 1 is FULL; a partial one costs
     * the text, one full prefill for the scores and the selected tokens */
    ts_composer_set_repair(cm, TS_REPAIR_SCORED, TS_REPAIR_SRC_DEVIATION);
    float *sfull = run(cm, rt, mixed, 6, TS_COMPOSE_REPAIR, 1.0f);
    CHECK(sfull);
    if (sfull && full)
        CHECKF(ts_test_rel_err(sfull, full, V) < 1e-5, "repair scored (1.0) vs full: %.3g", ts_test_rel_err(sfull, full, V));
    ts_compose_stats s0 = ts_composer_stats(cm);
    float *spart = run(cm, rt, mixed, 6, TS_COMPOSE_REPAIR, 0.2f);
    ts_compose_stats s1 = ts_composer_stats(cm);
    long text = np + nh1 + nh2 + nt, all = text + n1 + n1 + n2, sel = lround(0.2 * (n1 + n1 + n2));
    CHECKF(s1.prefill_tokens - s0.prefill_tokens <= text + all + sel &&
           s1.prefill_tokens - s0.prefill_tokens >= text + all + 1,
           "scored: %ld computed", s1.prefill_tokens - s0.prefill_tokens);
    CHECK(spart);
    free(sfull);
    free(spart);
    ts_composer_set_repair(cm, TS_REPAIR_FIRST, TS_REPAIR_SRC_QUERY);
    if (full && reuse)
        CHECKF(ts_test_rel_err(reuse, full, V) > 1e-4, "reuse away from home should differ: %.3g",
               ts_test_rel_err(reuse, full, V));
    free(full); free(reuse);

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
