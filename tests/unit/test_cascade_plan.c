/* The cascade planner: levels found for hand-built trees of shared block
 * prefixes, and for random batches the invariant that makes cascade exact:
 * each sequence's query rows see, through the levels that list them, its
 * own block table's slots [0, kv_start) exactly once, all complete blocks. */
#include <string.h>

#include "model/cascade.h"
#include "test.h"

enum { BS = 16 };

static ts_fwd_seq mk(const int32_t *blocks, int n_past, int n) {
    static int32_t tok[64];
    return (ts_fwd_seq){.tokens = tok, .n = n, .n_past = n_past, .blocks = blocks};
}

/* Checks the invariant for every sequence; returns the covered slots. */
static void check_cover(const ts_cascade_plan *p, const ts_fwd_seq *s, int n_seq, const char *tag) {
    int row0 = 0;
    for (int q = 0; q < n_seq; q++) {
        int covered = 0; /* slots of q's table covered so far, in order */
        bool ok = true;
        /* levels are emitted parent first, so coverage grows in order */
        for (int l = 0; l < p->n_levels; l++) {
            const ts_cascade_level *L = &p->levels[l];
            int hits = 0;
            for (int r = 0; r < L->n_rows; r++)
                if (p->rows[L->row_start + r] >= row0 && p->rows[L->row_start + r] < row0 + s[q].n) hits++;
            if (!hits) continue;
            if (hits != s[q].n) ok = false;               /* all rows or none */
            if (covered % BS) ok = false;
            for (int b = 0; b < L->n_kv / BS; b++)        /* same blocks as q's table */
                if (L->blocks[b] != s[q].blocks[covered / BS + b]) ok = false;
            covered += L->n_kv;
        }
        CHECKF(ok && covered == p->kv_start[q] && covered <= s[q].n_past,
               "%s: sequence %d covered %d, kv_start %d, n_past %d", tag, q, covered,
               p->kv_start[q], s[q].n_past);
        row0 += s[q].n;
    }
}

static uint64_t rng = 12345;
static int rnd(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}

int main(void) {
    ts_cascade_plan p = {0};
    ts_cascade_rule any = {.min_sharers = 2, .min_blocks = 1};

    /* 1: four sequences share three blocks */
    int32_t t1[4][5] = {{1, 2, 3, 10, 11}, {1, 2, 3, 20, 21}, {1, 2, 3, 30, 31}, {1, 2, 3, 40, 41}};
    ts_fwd_seq s1[4];
    for (int i = 0; i < 4; i++) s1[i] = mk(t1[i], 64, 1);
    CHECK(ts_cascade_plan_build(&p, s1, 4, BS, any) == 1);
    CHECK(p.levels[0].n_kv == 48 && p.levels[0].n_rows == 4);
    for (int i = 0; i < 4; i++) CHECK(p.kv_start[i] == 48);
    check_cover(&p, s1, 4, "flat");

    /* 2: a tree: all share block 1; {0,1} share 2,3; {2,3} share 4 */
    int32_t t2[4][4] = {{1, 2, 3, 9}, {1, 2, 3, 8}, {1, 4, 7, 6}, {1, 4, 5, 5}};
    ts_fwd_seq s2[4];
    for (int i = 0; i < 4; i++) s2[i] = mk(t2[i], 64, 2);
    CHECK(ts_cascade_plan_build(&p, s2, 4, BS, any) == 3);
    CHECK(p.kv_start[0] == 48 && p.kv_start[1] == 48 && p.kv_start[2] == 32 && p.kv_start[3] == 32);
    check_cover(&p, s2, 4, "tree");

    /* 3: same tree, levels need 2 blocks: the 1-block root is skipped and the
     * subgroups' levels start at block 0 */
    ts_cascade_rule two = {.min_sharers = 2, .min_blocks = 2};
    CHECK(ts_cascade_plan_build(&p, s2, 4, BS, two) == 2);
    CHECK(p.kv_start[0] == 48 && p.kv_start[2] == 32);
    check_cover(&p, s2, 4, "min_blocks");

    /* 4: a block that is not complete before the new tokens is never shared */
    ts_fwd_seq s4[2] = {mk(t1[0], 40, 1), mk(t1[1], 40, 1)}; /* 2 full blocks */
    CHECK(ts_cascade_plan_build(&p, s4, 2, BS, any) == 1 && p.kv_start[0] == 32);
    check_cover(&p, s4, 2, "partial");

    /* 5: one sequence, or min_sharers above the batch: nothing */
    CHECK(ts_cascade_plan_build(&p, s1, 1, BS, any) == 0);
    ts_cascade_rule many = {.min_sharers = 5, .min_blocks = 1};
    CHECK(ts_cascade_plan_build(&p, s1, 4, BS, many) == 0 && p.kv_start[0] == 0);

    /* 5b: min_saved: 4 sharers x 3 blocks save 3 x 48 = 144 slot reads; a
     * bound above that drops the level, at or below keeps it */
    ts_cascade_rule saved = {.min_sharers = 2, .min_blocks = 1, .min_saved = 3 * 48};
    CHECK(ts_cascade_plan_build(&p, s1, 4, BS, saved) == 1);
    saved.min_saved = 3 * 48 + 1;
    CHECK(ts_cascade_plan_build(&p, s1, 4, BS, saved) == 0 && p.kv_start[0] == 0);
    /* in the tree, the 1-block root saves 3 x 16 = 48 reads, pair {0,1}'s
     * 2 further blocks 1 x 32, pair {2,3}'s 1 further block 1 x 16 */
    saved.min_saved = 32;
    CHECK(ts_cascade_plan_build(&p, s2, 4, BS, saved) == 2);
    CHECK(p.kv_start[0] == 48 && p.kv_start[1] == 48 && p.kv_start[2] == 16 &&
          p.kv_start[3] == 16);
    check_cover(&p, s2, 4, "min_saved 32");
    saved.min_saved = 49; /* no root; alone, {0,1} save 48 and {2,3} 32: none */
    CHECK(ts_cascade_plan_build(&p, s2, 4, BS, saved) == 0);
    check_cover(&p, s2, 4, "min_saved");

    /* 6: random forests */
    int32_t tables[24][12];
    ts_fwd_seq s6[24];
    int trials = getenv("TS_TEST_LIGHT") ? 200 : 2000;
    for (int t = 0; t < trials; t++) {
        int n = 1 + rnd(24);
        for (int i = 0; i < n; i++) {
            int parent = i ? rnd(i) : -1, keep = parent >= 0 ? rnd(12) : 0;
            for (int b = 0; b < 12; b++)
                tables[i][b] = b < keep ? tables[parent][b] : 1000 * (i + 1) + b + 100000 * rnd(2);
            s6[i] = mk(tables[i], rnd(12 * BS), 1 + rnd(3));
        }
        ts_cascade_rule r = {.min_sharers = 2 + rnd(3), .min_blocks = 1 + rnd(3),
                             .min_saved = rnd(2) ? 0 : rnd(8 * BS)};
        int lv = ts_cascade_plan_build(&p, s6, n, BS, r);
        CHECK(lv >= 0);
        for (int l = 0; l < lv; l++) {
            CHECK(p.levels[l].n_kv >= r.min_blocks * BS);
            CHECK((long)(p.levels[l].n_rows - 1) * p.levels[l].n_kv >= r.min_saved ||
                  r.min_saved == 0);
        }
        check_cover(&p, s6, n, "random");
    }
    ts_cascade_plan_free(&p);
    return ts_test_done("test_cascade_plan");
}
