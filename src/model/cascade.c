#include "model/cascade.h"

#include <stdlib.h>
#include <string.h>

/* Blocks of s that are complete before its new tokens. */
static int full_blocks(const ts_fwd_seq *s, int bs) { return s->n_past / bs; }

static const ts_fwd_seq *g_seqs; /* qsort context (planning is single-threaded) */
static int g_bs;

/* Orders sequences by their complete blocks, so sharers are adjacent. */
static int cmp_tables(const void *a, const void *b) {
    const ts_fwd_seq *x = &g_seqs[*(const int *)a], *y = &g_seqs[*(const int *)b];
    int nx = full_blocks(x, g_bs), ny = full_blocks(y, g_bs);
    for (int i = 0; i < nx && i < ny; i++)
        if (x->blocks[i] != y->blocks[i]) return x->blocks[i] < y->blocks[i] ? -1 : 1;
    return (nx > ny) - (nx < ny);
}

static bool grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Length of the block prefix shared by ord[lo, hi) from block d on. */
static int common_len(const ts_fwd_seq *seqs, const int *ord, int lo, int hi, int d, int bs) {
    int len = full_blocks(&seqs[ord[lo]], bs);
    for (int k = lo + 1; k < hi; k++) {
        const ts_fwd_seq *a = &seqs[ord[lo]], *b = &seqs[ord[k]];
        int fb = full_blocks(b, bs);
        if (fb < len) len = fb;
        int i = d;
        while (i < len && a->blocks[i] == b->blocks[i]) i++;
        len = i;
    }
    return len;
}

typedef struct ctx {
    ts_cascade_plan *p;
    const ts_fwd_seq *seqs;
    const int *row0, *ord;
    int bs;
    ts_cascade_rule rule;
} ctx;

static bool build(const ctx *c, int lo, int hi, int start);

/* End of the run from i of sequences whose block d is the same block. */
static int run_end(const ctx *c, int i, int hi, int d) {
    const ts_fwd_seq *a = &c->seqs[c->ord[i]];
    int j = i + 1;
    if (full_blocks(a, c->bs) <= d) return j;
    while (j < hi && full_blocks(&c->seqs[c->ord[j]], c->bs) > d &&
           c->seqs[c->ord[j]].blocks[d] == a->blocks[d])
        j++;
    return j;
}

/* ord[i, j) share blocks [start, d]. Makes a level from start if they share
 * enough blocks; otherwise looks for subgroups that share more. */
static bool sub(const ctx *c, int i, int j, int start) {
    ts_cascade_plan *p = c->p;
    int len = common_len(c->seqs, c->ord, i, j, start, c->bs);
    long saved = (long)(j - i - 1) * (len - start) * c->bs;
    if (len - start >= c->rule.min_blocks && saved >= c->rule.min_saved) {
        if (!grow((void **)&p->levels, &p->cap_levels, p->n_levels + 1, sizeof *p->levels))
            return false;
        ts_cascade_level *L = &p->levels[p->n_levels++];
        *L = (ts_cascade_level){.blocks = c->seqs[c->ord[i]].blocks + start,
                                .n_kv = (len - start) * c->bs, .row_start = p->n_rows};
        for (int k = i; k < j; k++) {
            const ts_fwd_seq *s = &c->seqs[c->ord[k]];
            if (!grow((void **)&p->rows, &p->cap_rows, p->n_rows + s->n, sizeof *p->rows))
                return false;
            for (int r = 0; r < s->n; r++) p->rows[p->n_rows++] = c->row0[c->ord[k]] + r;
            p->levels[p->n_levels - 1].n_rows += s->n;
            p->kv_start[c->ord[k]] = len * c->bs;
        }
        return build(c, i, j, len);
    }
    for (int k = i; k < j;) { /* split where they diverge, at block len */
        int e = run_end(c, k, j, len);
        if (e - k >= c->rule.min_sharers && !sub(c, k, e, start)) return false;
        k = e;
    }
    return true;
}

/* ord[lo, hi) share blocks [0, start), already covered by levels. */
static bool build(const ctx *c, int lo, int hi, int start) {
    for (int i = lo; i < hi;) {
        int j = run_end(c, i, hi, start);
        if (j - i >= c->rule.min_sharers && full_blocks(&c->seqs[c->ord[i]], c->bs) > start &&
            !sub(c, i, j, start))
            return false;
        i = j;
    }
    return true;
}

int ts_cascade_plan_build(ts_cascade_plan *p, const ts_fwd_seq *seqs, int n_seq, int bs,
                          ts_cascade_rule rule) {
    p->n_levels = 0;
    p->n_rows = 0;
    if (rule.min_sharers < 2) rule.min_sharers = 2;
    if (rule.min_blocks < 1) rule.min_blocks = 1;
    if (!grow((void **)&p->kv_start, &p->cap_seq, n_seq, sizeof *p->kv_start)) return -1;
    if (n_seq > p->cap_order) { /* scratch grows, never shrinks: no allocation per step */
        int cap = 0, cap2 = 0;
        free(p->order);
        free(p->row0);
        p->order = NULL;
        p->row0 = NULL;
        if (!grow((void **)&p->order, &cap, n_seq, sizeof *p->order) ||
            !grow((void **)&p->row0, &cap2, n_seq, sizeof *p->row0))
            return -1;
        p->cap_order = cap < cap2 ? cap : cap2;
    }
    int *row0 = p->row0;
    int row = 0;
    for (int s = 0; s < n_seq; s++) {
        p->kv_start[s] = 0;
        p->order[s] = s;
        row0[s] = row;
        row += seqs[s].n;
    }
    g_seqs = seqs;
    g_bs = bs;
    qsort(p->order, (size_t)n_seq, sizeof *p->order, cmp_tables);
    ctx c = {.p = p, .seqs = seqs, .row0 = row0, .ord = p->order, .bs = bs, .rule = rule};
    bool ok = build(&c, 0, n_seq, 0);
    return ok ? p->n_levels : -1;
}

void ts_cascade_plan_free(ts_cascade_plan *p) {
    free(p->levels);
    free(p->rows);
    free(p->kv_start);
    free(p->order);
    free(p->row0);
    memset(p, 0, sizeof *p);
}
