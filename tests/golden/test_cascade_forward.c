/* Cascade attention in the forward pass: sequences whose block tables
 * share prefix blocks (a tree: all share a system prefix, pairs share a
 * document) decoded in one batch give the same logits with cascade on as
 * with it off, and as each sequence computed alone from scratch. */
#include <string.h>

#include "engine/runtime.h"
#include "test.h"

enum { BS = 16, SYS = 4, DOC = 3, OWN = 2, NSEQ = 4 };

int main(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/facts-qwen3-14m", ts_test_shared());
    ts_runtime_opts o = ts_runtime_opts_default();
    o.n_threads = 2;
    o.fast_prefill = false;
    o.kv_bytes = 16u << 20;
    o.block_size = BS;
    ts_runtime *rt = NULL;
    ts_err err;
    CHECKF(ts_runtime_open(dir, &o, &rt, &err) == TS_OK, "open: %s", err.msg);
    if (!rt) return ts_test_done("test_cascade_forward");
    size_t V = (size_t)rt->model->cfg.vocab;
    ts_kv *kv = rt->kv;
    /* tokens: a system prefix (SYS blocks) for all, a document (DOC blocks)
     * per pair, own tokens (OWN blocks + 5) per sequence */
    int n_tok = (SYS + DOC + OWN) * BS + 5;
    int32_t tok[NSEQ][(SYS + DOC + OWN) * BS + 5], table[NSEQ][SYS + DOC + OWN + 1];
    uint32_t x = 7;
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < n_tok; i++) {
            x = x * 1103515245u + 12345u;
            int shared_with = i < SYS * BS ? 0 : i < (SYS + DOC) * BS ? 1 + s / 2 : 10 + s;
            tok[s][i] = (int32_t)(((x >> 8) % 3000) + 100);
            if (shared_with < 10) tok[s][i] = (int32_t)(100 + (i * 31 + shared_with * 977) % 3000);
        }
    /* prefill: seq 0 computes the system prefix; seqs share its blocks, each
     * pair's first member computes the document, the rest is private */
    const float *lg;
    int n_blocks = SYS + DOC + OWN + 1;
    for (int s = 0; s < NSEQ; s++)
        for (int b = 0; b < n_blocks; b++) {
            bool sys = b < SYS, doc = !sys && b < SYS + DOC;
            if (sys && s > 0) table[s][b] = table[0][b];
            else if (doc && s % 2) table[s][b] = table[s - 1][b];
            else table[s][b] = ts_kv_alloc(kv);
        }
    for (int s = 0; s < NSEQ; s++) {
        int from = s == 0 ? 0 : (s % 2 ? (SYS + DOC) * BS : SYS * BS);
        ts_fwd_seq fs = {.tokens = tok[s] + from, .n = n_tok - 1 - from, .n_past = from,
                         .blocks = table[s], .n_logits = 0};
        CHECK(ts_fwd_run(rt->fwd, &fs, 1, &lg, &err) == TS_OK);
    }
    /* one decode step for all four, cascade on then off */
    ts_fwd_seq batch[NSEQ];
    for (int s = 0; s < NSEQ; s++)
        batch[s] = (ts_fwd_seq){.tokens = &tok[s][n_tok - 1], .n = 1, .n_past = n_tok - 1,
                                .blocks = table[s], .n_logits = 1};
    float *on = malloc(NSEQ * V * sizeof *on), *off = malloc(NSEQ * V * sizeof *off);
    ts_fwd_set_cascade(rt->fwd, 1);
    CHECK(ts_fwd_run(rt->fwd, batch, NSEQ, &lg, &err) == TS_OK);
    CHECK(ts_fwd_used_cascade(rt->fwd));
    memcpy(on, lg, NSEQ * V * sizeof *on);
    ts_fwd_set_cascade(rt->fwd, 0);
    CHECK(ts_fwd_run(rt->fwd, batch, NSEQ, &lg, &err) == TS_OK);
    CHECK(!ts_fwd_used_cascade(rt->fwd));
    memcpy(off, lg, NSEQ * V * sizeof *off);
    /* each alone, from scratch, in fresh blocks */
    for (int s = 0; s < NSEQ; s++) {
        int32_t own[SYS + DOC + OWN + 1];
        for (int b = 0; b < n_blocks; b++) own[b] = ts_kv_alloc(kv);
        ts_fwd_seq fs = {.tokens = tok[s], .n = n_tok, .blocks = own, .n_logits = 1};
        CHECK(ts_fwd_run(rt->fwd, &fs, 1, &lg, &err) == TS_OK);
        double e_on = ts_test_rel_err(on + s * V, lg, V), e_off = ts_test_rel_err(off + s * V, lg, V);
        CHECKF(e_on < 1e-5 && e_off < 1e-5, "seq %d: cascade %.3g, flat %.3g vs alone", s, e_on, e_off);
        for (int b = 0; b < n_blocks; b++) ts_kv_release(kv, own[b]);
    }
    free(on);
    free(off);
    ts_runtime_close(rt);
    return ts_test_done("test_cascade_forward");
}
