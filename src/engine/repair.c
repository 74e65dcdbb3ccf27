#include "engine/repair.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

ts_repair_policy ts_repair_policy_default(ts_repair_kind kind, float frac) {
    return (ts_repair_policy){.kind = kind, .frac = frac, .max_spans = 4};
}

static const char *const kind_names[] = {"first", "last", "edges", "scored"};

ts_status ts_repair_kind_parse(const char *s, ts_repair_kind *out, ts_err *err) {
    for (int i = 0; s && i < 4; i++)
        if (!strcmp(s, kind_names[i])) {
            *out = (ts_repair_kind)i;
            return TS_OK;
        }
    return ts_fail(err, TS_ERR_INVALID, "repair: unknown policy '%s' (first, last, edges or scored)",
                   s ? s : "(null)");
}

const char *ts_repair_kind_name(ts_repair_kind k) {
    return (unsigned)k < 4 ? kind_names[k] : "unknown";
}

void ts_repair_plan_free(ts_repair_plan *plan) {
    if (!plan) return;
    free(plan->first);
    free(plan->spans);
    memset(plan, 0, sizeof *plan);
}

/* Token order for SCORED picks: higher score first, then earlier offset. */
typedef struct pick {
    float score;
    int32_t off;
} pick;

static int by_score(const void *a, const void *b) {
    const pick *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->off > y->off) - (x->off < y->off);
}

/* A missing score is 0; NaN ranks last. */
static float score_at(const float *s, int32_t off) {
    if (!s) return 0.0f;
    return isnan(s[off]) ? -INFINITY : s[off];
}

/* SCORED for one chunk of n tokens and budget k: the top k tokens, merged
 * into at most max_spans spans (shortest gaps filled), then trimmed back to
 * k tokens by dropping the lowest-scored span ends. Writes the spans to
 * sp (room for k) and returns their number. */
static int select_scored(const float *s, int32_t n, int32_t k, int max_spans, pick *scratch,
                         uint8_t *sel, ts_repair_span *sp) {
    if (k <= 0) return 0;
    for (int32_t t = 0; t < n; t++) scratch[t] = (pick){score_at(s, t), t};
    qsort(scratch, (size_t)n, sizeof *scratch, by_score);
    memset(sel, 0, (size_t)n);
    for (int32_t i = 0; i < k; i++) sel[scratch[i].off] = 1;
    int ns = 0;
    for (int32_t t = 0; t < n; t++) {
        if (!sel[t]) continue;
        if (ns && sp[ns - 1].off + sp[ns - 1].n == t) sp[ns - 1].n++;
        else sp[ns++] = (ts_repair_span){t, 1};
    }
    while (ns > max_spans) { /* fill the shortest gap (earliest on ties) */
        int best = 0;
        int32_t gap = INT32_MAX;
        for (int i = 0; i + 1 < ns; i++) {
            int32_t g = sp[i + 1].off - (sp[i].off + sp[i].n);
            if (g < gap) gap = g, best = i;
        }
        sp[best].n = sp[best + 1].off + sp[best + 1].n - sp[best].off;
        memmove(sp + best + 1, sp + best + 2, (size_t)(ns - best - 2) * sizeof *sp);
        ns--;
    }
    long total = 0;
    for (int i = 0; i < ns; i++) total += sp[i].n;
    while (total > k) { /* drop the lowest-scored end (latest on ties) */
        int bi = -1;
        bool bhead = false;
        float bs = INFINITY;
        for (int i = 0; i < ns; i++) {
            float h = score_at(s, sp[i].off), t = score_at(s, sp[i].off + sp[i].n - 1);
            if (h <= bs) bs = h, bi = i, bhead = true;
            if (t <= bs) bs = t, bi = i, bhead = false;
        }
        if (bhead) sp[bi].off++;
        sp[bi].n--;
        total--;
        if (!sp[bi].n) {
            memmove(sp + bi, sp + bi + 1, (size_t)(ns - bi - 1) * sizeof *sp);
            ns--;
        }
    }
    return ns;
}

ts_status ts_repair_select(const ts_repair_policy *p, int n_chunks, const int32_t *len,
                           const bool *at_home, const float *const *scores, ts_repair_plan *out,
                           ts_err *err) {
    memset(out, 0, sizeof *out);
    if (!p || n_chunks < 0 || (n_chunks && !len))
        return ts_fail(err, TS_ERR_INVALID, "repair: bad arguments");
    if (!(p->frac >= 0.0f && p->frac <= 1.0f))
        return ts_fail(err, TS_ERR_INVALID, "repair: fraction %g is outside [0, 1]", (double)p->frac);
    if ((unsigned)p->kind > TS_REPAIR_SCORED)
        return ts_fail(err, TS_ERR_INVALID, "repair: unknown policy %d", (int)p->kind);
    if (p->kind == TS_REPAIR_SCORED && n_chunks && !scores)
        return ts_fail(err, TS_ERR_INVALID, "repair: the scored policy needs scores");
    long sum = 0, elig = 0;
    int32_t maxlen = 0;
    for (int i = 0; i < n_chunks; i++) {
        if (len[i] < 1) return ts_fail(err, TS_ERR_INVALID, "repair: chunk %d has length %d", i, (int)len[i]);
        sum += len[i];
        if (!at_home || !at_home[i]) elig += len[i];
        if (len[i] > maxlen) maxlen = len[i];
    }
    long budget = lround((double)p->frac * (double)sum);
    if (budget > elig) budget = elig;
    int32_t *k = calloc((size_t)n_chunks + 1, sizeof *k);
    long *rem = calloc((size_t)n_chunks + 1, sizeof *rem);
    out->first = calloc((size_t)n_chunks + 1, sizeof *out->first);
    ts_status s = k && rem && out->first ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    long given = 0;
    if (!s && p->kind == TS_REPAIR_SCORED && p->global && budget > 0) {
        /* the budget highest scores over all eligible chunks */
        pick *all = malloc((size_t)elig * sizeof *all);
        int32_t *owner = malloc((size_t)elig * sizeof *owner);
        if (!all || !owner) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        long m = 0;
        for (int i = 0; !s && i < n_chunks; i++) {
            if (at_home && at_home[i]) continue;
            for (int32_t t = 0; t < len[i]; t++) {
                all[m] = (pick){score_at(scores[i], t), (int32_t)m};
                owner[m++] = i;
            }
        }
        if (!s) qsort(all, (size_t)m, sizeof *all, by_score); /* ties: lower global index */
        for (long j = 0; !s && j < budget; j++) k[owner[all[j].off]]++;
        given = budget;
        free(all);
        free(owner);
    }
    /* largest remainder: k[i] = budget * len[i] / elig, leftovers to the largest remainders */
    for (int i = 0; !s && given < budget && i < n_chunks; i++) {
        if (at_home && at_home[i]) continue;
        long num = budget * (long)len[i];
        k[i] = (int32_t)(num / elig);
        rem[i] = num % elig;
        given += k[i];
    }
    while (!s && given < budget && !(p->kind == TS_REPAIR_SCORED && p->global)) {
        int bi = -1;
        for (int i = 0; i < n_chunks; i++)
            if ((!at_home || !at_home[i]) && k[i] < len[i] && (bi < 0 || rem[i] > rem[bi])) bi = i;
        if (bi < 0) break;
        k[bi]++;
        rem[bi] = -1;
        given++;
    }
    /* spans: at most 2 per chunk for FIRST/LAST/EDGES, max_spans for SCORED */
    int per = p->kind == TS_REPAIR_SCORED ? (p->max_spans > 0 ? p->max_spans : 4) : 2;
    size_t cap = (size_t)n_chunks * (size_t)per + 1;
    pick *scratch = NULL;
    uint8_t *sel = NULL;
    if (!s) out->spans = malloc(cap * sizeof *out->spans);
    if (!s && p->kind == TS_REPAIR_SCORED) {
        scratch = malloc((size_t)maxlen * sizeof *scratch + 1);
        sel = malloc((size_t)maxlen + 1);
    }
    if (!s && (!out->spans || (p->kind == TS_REPAIR_SCORED && (!scratch || !sel))))
        s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_repair_span *tmp = NULL;
    if (!s && p->kind == TS_REPAIR_SCORED && !(tmp = malloc(((size_t)maxlen + 1) * sizeof *tmp)))
        s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    int ns = 0;
    for (int i = 0; !s && i < n_chunks; i++) {
        out->first[i] = ns;
        int32_t n = len[i], q = k[i];
        if (q <= 0) continue;
        switch (p->kind) {
        case TS_REPAIR_FIRST: out->spans[ns++] = (ts_repair_span){0, q}; break;
        case TS_REPAIR_LAST: out->spans[ns++] = (ts_repair_span){n - q, q}; break;
        case TS_REPAIR_EDGES: {
            int32_t a = (q + 1) / 2, b = q - a;
            if (b > 0 && a + b < n) {
                out->spans[ns++] = (ts_repair_span){0, a};
                out->spans[ns++] = (ts_repair_span){n - b, b};
            } else {
                out->spans[ns++] = (ts_repair_span){0, q}; /* the two halves meet */
            }
            break;
        }
        case TS_REPAIR_SCORED: {
            int m = select_scored(scores[i], n, q, per, scratch, sel, tmp);
            memcpy(out->spans + ns, tmp, (size_t)m * sizeof *tmp);
            ns += m;
            break;
        }
        }
        for (int j = out->first[i]; j < ns; j++) out->n_tokens += out->spans[j].n;
    }
    if (!s) {
        out->first[n_chunks] = ns;
        out->n_spans = ns;
        out->n_chunks = n_chunks;
    }
    free(k);
    free(rem);
    free(scratch);
    free(sel);
    free(tmp);
    if (s) ts_repair_plan_free(out);
    return s;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

ts_status ts_repair_query_scores(int n_chunks, const int32_t *const *ids, const int32_t *len,
                                 const int32_t *query, int n_query, float *const *scores,
                                 ts_err *err) {
    if (n_chunks < 0 || n_query < 0 || (n_chunks && (!ids || !len || !scores)) || (n_query && !query))
        return ts_fail(err, TS_ERR_INVALID, "repair: bad arguments");
    for (int i = 0; i < n_chunks; i++)
        if (len[i] < 1 || !ids[i] || !scores[i])
            return ts_fail(err, TS_ERR_INVALID, "repair: chunk %d has no tokens", i);
    /* distinct query ids, sorted */
    int32_t *q = malloc(((size_t)n_query + 1) * sizeof *q);
    int nq = 0;
    int *df = NULL;
    uint8_t *has = NULL;
    if (q) {
        memcpy(q, query, (size_t)n_query * sizeof *q);
        qsort(q, (size_t)n_query, sizeof *q, cmp_i32);
        for (int j = 0; j < n_query; j++)
            if (!nq || q[nq - 1] != q[j]) q[nq++] = q[j];
        df = calloc((size_t)nq + 1, sizeof *df);
        has = calloc(((size_t)n_chunks + 1) * ((size_t)nq + 1), 1);
    }
    if (!q || !df || !has) {
        free(q);
        free(df);
        free(has);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_chunks; i++)
        for (int32_t t = 0; t < len[i]; t++) {
            const int32_t *f = bsearch(&ids[i][t], q, (size_t)nq, sizeof *q, cmp_i32);
            if (f) has[(size_t)i * (size_t)nq + (size_t)(f - q)] = 1;
        }
    for (int i = 0; i < n_chunks; i++)
        for (int j = 0; j < nq; j++) df[j] += has[(size_t)i * (size_t)nq + (size_t)j];
    for (int i = 0; i < n_chunks; i++) {
        double r = 0;
        for (int j = 0; j < nq; j++)
            if (has[(size_t)i * (size_t)nq + (size_t)j]) r += log((1.0 + n_chunks) / (1.0 + df[j]));
        for (int32_t t = 0; t < len[i]; t++)
            scores[i][t] = (float)(r + 1e-3 * (double)(len[i] - t) / (double)len[i]);
    }
    free(q);
    free(df);
    free(has);
    return TS_OK;
}
