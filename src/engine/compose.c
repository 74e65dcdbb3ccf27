#include "engine/compose.h"
#include "engine/place.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

struct ts_composer {
    ts_runtime *rt;
    ts_chunk_reg *reg;
    int32_t *prefix;
    int n_prefix;
    uint8_t enc_id[32];
    ts_compose_stats st;
    ts_chunk_store *store;
    int32_t *tokens;      /* scratch: the composed token list */
    int cap_tokens;
    ts_place_scratch ps;  /* placement buffers */
    ts_repair_kind repair; /* REPAIR's policy */
    ts_repair_source repair_src;
};

ts_status ts_composer_create(ts_runtime *rt, const int32_t *prefix, int n_prefix, uint64_t budget,
                             ts_composer **out, ts_err *err) {
    *out = NULL;
    if (n_prefix < 1) return ts_fail(err, TS_ERR_INVALID, "compose: the level-0 prefix is empty");
    ts_composer *c = calloc(1, sizeof *c);
    if (!c || !(c->prefix = malloc((size_t)n_prefix * sizeof *prefix))) {
        free(c);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    memcpy(c->prefix, prefix, (size_t)n_prefix * sizeof *prefix);
    c->n_prefix = n_prefix;
    c->rt = rt;
    ts_status s = ts_chunk_encoding_id(rt->model->fingerprint, prefix, (size_t)n_prefix, c->enc_id);
    if (s) s = ts_fail(err, s, "compose: cannot hash the level-0 prefix");
    if (!s) s = ts_chunk_reg_create(budget, &c->reg, err);
    if (s) {
        ts_composer_destroy(c);
        return s;
    }
    *out = c;
    return TS_OK;
}

void ts_composer_destroy(ts_composer *c) {
    if (!c) return;
    ts_chunk_reg_destroy(c->reg);
    free(c->prefix);
    free(c->tokens);
    ts_place_scratch_free(&c->ps);
    free(c);
}

ts_chunk_reg *ts_composer_registry(ts_composer *c) { return c->reg; }
void ts_composer_set_store(ts_composer *c, ts_chunk_store *store) { c->store = store; }
ts_compose_stats ts_composer_stats(const ts_composer *c) { return c->st; }
void ts_composer_set_repair(ts_composer *c, ts_repair_kind kind, ts_repair_source src) {
    c->repair = kind;
    c->repair_src = src;
}

static bool reserve_tokens(ts_composer *c, int n) {
    if (n <= c->cap_tokens) return true;
    int32_t *p = realloc(c->tokens, (size_t)n * sizeof *p);
    if (!p) return false;
    c->tokens = p;
    c->cap_tokens = n;
    return true;
}

/* Runs prefix + ids in a scratch sequence, capturing the chunk rows' K
 * (before RoPE) and V, and attaches them to chunk h. */
static ts_status encode(ts_composer *c, ts_chunk *h, const int32_t *ids, int n, ts_err *err) {
    ts_runtime *rt = c->rt;
    const ts_model_config *mc = &rt->model->cfg;
    size_t per = (size_t)mc->n_layers * (size_t)n * (size_t)mc->n_kv_heads * (size_t)mc->head_dim;
    float *k = malloc(per * sizeof *k), *v = malloc(per * sizeof *v);
    int total = c->n_prefix + n;
    /* its own token list: c->tokens may hold a composition in progress */
    int32_t *toks = malloc((size_t)total * sizeof *toks);
    ts_status s = TS_OK;
    if (!k || !v || !toks) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_seq seq = {0};
    if (!s) {
        memcpy(toks, c->prefix, (size_t)c->n_prefix * sizeof *ids);
        memcpy(toks + c->n_prefix, ids, (size_t)n * sizeof *ids);
        s = ts_seq_reserve(&seq, rt->kv, total, err);
    }
    if (!s) {
        ts_fwd_seq fs = {.tokens = toks, .n = total, .blocks = seq.blocks, .n_logits = 0};
        const float *lg;
        ts_fwd_set_capture(rt->fwd, c->n_prefix, n, k, v);
        s = ts_fwd_run(rt->fwd, &fs, 1, &lg, err);
        ts_fwd_set_capture(rt->fwd, 0, 0, NULL, NULL);
        c->st.prefill_tokens += total;
        c->st.encode_tokens += total;
    }
    if (!s) {
        ts_chunk_shape shape = {mc->n_layers, mc->n_kv_heads, mc->head_dim};
        s = ts_chunk_attach_kv(c->reg, h, shape, k, v, err);
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    free(toks);
    free(k);
    free(v);
    return s;
}

/* Tries to fill chunk id's KV from the store; false if it has none usable. */
static bool store_load(ts_composer *c, const ts_chunk_id *id) {
    ts_chunk *h = NULL;
    if (ts_chunk_load_for(c->rt, c->store, c->reg, id, &h, NULL) != TS_OK) return false;
    ts_chunk_info info;
    ts_chunk_get_info(c->reg, h, &info);
    bool ok = info.has_kv;
    ts_chunk_release(c->reg, h);
    return ok;
}

ts_status ts_composer_register(ts_composer *c, const int32_t *ids, int n, ts_chunk_type type,
                               ts_chunk_id *id_out, ts_err *err) {
    ts_chunk_id id;
    bool existed = false;
    ts_chunk *h = NULL;
    ts_status s = ts_chunk_reg_register(c->reg, ids, (size_t)n, type, c->enc_id,
                                        c->rt->model->fingerprint, &id, &existed, &h, err);
    if (s) return s;
    ts_chunk_info info;
    ts_chunk_get_info(c->reg, h, &info);
    if (info.has_kv) {
        c->st.chunk_hits++;
    } else if (c->store && store_load(c, &id)) {
        c->st.chunk_hits++;
        c->st.store_loads++;
    } else {
        c->st.chunk_misses++;
        s = encode(c, h, ids, n, err);
        ts_err serr;
        if (!s && c->store) ts_chunk_store_save(c->store, c->reg, h, &serr); /* best effort */
    }
    ts_chunk_release(c->reg, h);
    if (id_out) *id_out = id;
    return s;
}

/* Writes chunk h's KV into seq's slots [slot, slot + n), rotating K by the
 * new positions. */
static ts_status place(ts_composer *c, ts_seq *seq, const ts_chunk_info *info, int slot,
                       ts_err *err) {
    return ts_place_chunk(c->rt, info, 0, info->n_tokens, slot, seq->blocks, &c->ps, err);
}

/* Computes tokens ids[n] at seq's slots [slot, slot + n) in context. */
static ts_status compute(ts_composer *c, ts_seq *seq, const int32_t *ids, int n, int slot,
                         bool want_logits, const float **logits, ts_err *err) {
    for (int done = 0; done < n;) {
        int k = n - done < 512 ? n - done : 512;
        ts_fwd_seq fs = {.tokens = ids + done, .n = k, .n_past = slot + done, .blocks = seq->blocks,
                         .n_logits = want_logits && done + k == n ? 1 : 0};
        ts_status s = ts_fwd_run(c->rt->fwd, &fs, 1, logits, err);
        if (s) return s;
        done += k;
    }
    c->st.prefill_tokens += n;
    return TS_OK;
}

/* SCORED's scores, the CacheBlend criterion measured exactly: a full
 * prefill of the composition (tokens[total], into a scratch sequence,
 * counted as computed) gives every token's K (before RoPE) and V in full
 * context; chunk token t scores the squared L2 distance between those and
 * its cached K and V at layer 1 (layer 0's K and V do not depend on the
 * context). An oracle for measuring the selection, not a saving: it costs
 * more than FULL. scores[i] gets chunk i's [n] scores (malloc'd). */
static ts_status deviation_scores(ts_composer *c, const ts_part *parts, int n_parts, int total,
                                  float **scores, ts_err *err) {
    ts_runtime *rt = c->rt;
    const ts_model_config *mc = &rt->model->cfg;
    size_t kvd = (size_t)mc->n_kv_heads * (size_t)mc->head_dim;
    size_t per = (size_t)mc->n_layers * (size_t)total * kvd;
    int layer = mc->n_layers > 1 ? 1 : 0;
    float *k = malloc(per * sizeof *k), *v = malloc(per * sizeof *v);
    ts_status s = k && v ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_seq tmp = {0};
    if (!s) s = ts_seq_reserve(&tmp, rt->kv, total, err);
    if (!s) {
        ts_fwd_seq fs = {.tokens = c->tokens, .n = total, .blocks = tmp.blocks, .n_logits = 0};
        const float *lg;
        ts_fwd_set_capture(rt->fwd, 0, total, k, v);
        s = ts_fwd_run(rt->fwd, &fs, 1, &lg, err);
        ts_fwd_set_capture(rt->fwd, 0, 0, NULL, NULL);
        c->st.prefill_tokens += total;
    }
    ts_seq_reset(&tmp, rt->kv);
    ts_seq_free(&tmp);
    int slot = c->n_prefix, ci = 0;
    for (int i = 0; !s && i < n_parts; slot += parts[i].n, i++) {
        const ts_part *p = &parts[i];
        if (!p->is_chunk) continue;
        ts_chunk_id id;
        ts_chunk *h = NULL;
        s = ts_composer_register(c, p->ids, p->n, p->type, &id, err);
        if (!s) s = ts_chunk_reg_lookup(c->reg, &id, rt->model->fingerprint, &h, err);
        float *sc = !s ? malloc((size_t)p->n * sizeof *sc) : NULL;
        if (!s && !sc) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        if (!s) {
            ts_chunk_info info;
            ts_chunk_get_info(c->reg, h, &info);
            for (int t = 0; t < p->n; t++) {
                const float *kf = k + ((size_t)layer * total + (size_t)(slot + t)) * kvd;
                const float *vf = v + ((size_t)layer * total + (size_t)(slot + t)) * kvd;
                const float *kc = info.k ? info.k + ((size_t)layer * p->n + (size_t)t) * kvd : kf;
                const float *vc = info.v ? info.v + ((size_t)layer * p->n + (size_t)t) * kvd : vf;
                double d = 0;
                for (size_t j = 0; j < kvd; j++)
                    d += (double)(kf[j] - kc[j]) * (kf[j] - kc[j]) + (double)(vf[j] - vc[j]) * (vf[j] - vc[j]);
                sc[t] = (float)d;
            }
            scores[ci++] = sc;
        }
        ts_chunk_release(c->reg, h);
    }
    free(k);
    free(v);
    return s;
}

/* REPAIR's selection for the chunk parts: a chunk that is the first part
 * sits where it was encoded (right after the prefix) and needs nothing. */
static ts_status plan_repair(ts_composer *c, const ts_part *parts, int n_parts, int total, float frac,
                             ts_repair_plan *plan, ts_err *err) {
    int32_t *len = malloc((size_t)n_parts * sizeof *len);
    bool *home = malloc((size_t)n_parts * sizeof *home);
    float **sc = calloc((size_t)n_parts, sizeof *sc);
    int nc = 0;
    for (int i = 0; len && home && i < n_parts; i++)
        if (parts[i].is_chunk) {
            home[nc] = i == 0;
            len[nc++] = parts[i].n;
        }
    ts_status s = len && home && sc ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (!s && c->repair == TS_REPAIR_SCORED && c->repair_src == TS_REPAIR_SRC_DEVIATION)
        s = deviation_scores(c, parts, n_parts, total, sc, err);
    if (!s && c->repair == TS_REPAIR_SCORED && c->repair_src != TS_REPAIR_SRC_DEVIATION) {
        const int32_t **ids = malloc(((size_t)nc + 1) * sizeof *ids);
        for (int i = 0, j = 0; ids && i < n_parts; i++)
            if (parts[i].is_chunk) ids[j++] = parts[i].ids;
        for (int i = 0; ids && i < nc; i++)
            if (!(sc[i] = malloc((size_t)len[i] * sizeof *sc[i]))) break;
        bool ok = ids != NULL;
        for (int i = 0; ok && i < nc; i++) ok = sc[i] != NULL;
        const ts_part *q = &parts[n_parts - 1]; /* the request's own text (the last part) */
        s = ok ? ts_repair_query_scores(nc, ids, len, q->ids, q->n, sc, err)
               : ts_fail(err, TS_ERR_NOMEM, "out of memory");
        free(ids);
    }
    ts_repair_policy pol = ts_repair_policy_default(c->repair, frac);
    pol.global = true; /* SCORED: the budget where the scores are highest */
    if (!s) s = ts_repair_select(&pol, nc, len, home, (const float *const *)sc, plan, err);
    for (int i = 0; sc && i < nc; i++) free(sc[i]);
    free(sc);
    free(len);
    free(home);
    return s;
}

ts_status ts_compose(ts_composer *c, ts_seq *seq, const ts_part *parts, int n_parts,
                     ts_compose_mode mode, float repair_frac, const float **logits, ts_err *err) {
    ts_runtime *rt = c->rt;
    int total = c->n_prefix;
    for (int i = 0; i < n_parts; i++) total += parts[i].n;
    if (total > rt->model->cfg.max_pos)
        return ts_fail(err, TS_ERR_CAPACITY, "the composition needs %d tokens but the context is %d",
                       total, rt->model->cfg.max_pos);
    if (!n_parts || parts[n_parts - 1].is_chunk)
        return ts_fail(err, TS_ERR_INVALID, "compose: the last part must be text");
    if (!reserve_tokens(c, total)) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    int at = 0;
    memcpy(c->tokens, c->prefix, (size_t)c->n_prefix * sizeof *c->tokens);
    at = c->n_prefix;
    for (int i = 0; i < n_parts; i++) {
        memcpy(c->tokens + at, parts[i].ids, (size_t)parts[i].n * sizeof *c->tokens);
        at += parts[i].n;
    }
    if (mode == TS_COMPOSE_FULL || mode == TS_COMPOSE_EXACT) {
        int keep = 0;
        if (mode == TS_COMPOSE_EXACT) /* a true prefix already in seq; at least one to compute */
            while (keep < seq->n_tokens && keep < total - 1 && seq->tokens[keep] == c->tokens[keep]) keep++;
        seq->n_tokens = keep;
        c->st.reused_tokens += keep;
        ts_status s = ts_seq_reserve(seq, rt->kv, total, err);
        if (!s) s = compute(c, seq, c->tokens + keep, total - keep, keep, true, logits, err);
        if (!s) s = ts_seq_push(seq, c->tokens + keep, total - keep, err);
        return s;
    }
    /* REUSE / REPAIR: prefix computed (or kept), chunks placed, text computed */
    int keep = 0;
    while (keep < seq->n_tokens && keep < c->n_prefix && seq->tokens[keep] == c->tokens[keep]) keep++;
    seq->n_tokens = keep;
    ts_status s = ts_seq_reserve(seq, rt->kv, total, err);
    if (!s && keep < c->n_prefix) s = compute(c, seq, c->tokens + keep, c->n_prefix - keep, keep, false, logits, err);
    c->st.reused_tokens += keep;
    ts_repair_plan plan = {0};
    if (!s && mode == TS_COMPOSE_REPAIR) s = plan_repair(c, parts, n_parts, total, repair_frac, &plan, err);
    int slot = c->n_prefix, ci = 0;
    for (int i = 0; !s && i < n_parts; i++) {
        const ts_part *p = &parts[i];
        if (!p->is_chunk) {
            s = compute(c, seq, p->ids, p->n, slot, i == n_parts - 1, logits, err);
        } else {
            ts_chunk_id id;
            s = ts_composer_register(c, p->ids, p->n, p->type, &id, err);
            ts_chunk *h = NULL;
            if (!s) s = ts_chunk_reg_lookup(c->reg, &id, rt->model->fingerprint, &h, err);
            if (!s) {
                ts_chunk_info info;
                ts_chunk_get_info(c->reg, h, &info);
                s = info.has_kv ? place(c, seq, &info, slot, err)
                                : ts_fail(err, TS_ERR_CAPACITY, "chunk KV does not fit the registry budget");
                ts_chunk_release(c->reg, h);
            }
            c->st.reused_tokens += p->n;
            /* the chunk's selected spans, in slot order, each over everything before it */
            for (int j = mode == TS_COMPOSE_REPAIR ? plan.first[ci] : 0;
                 !s && mode == TS_COMPOSE_REPAIR && j < plan.first[ci + 1]; j++) {
                const ts_repair_span *sp = &plan.spans[j];
                s = compute(c, seq, p->ids + sp->off, sp->n, slot + sp->off, false, logits, err);
                c->st.reused_tokens -= sp->n;
            }
            ci++;
        }
        slot += p->n;
    }
    ts_repair_plan_free(&plan);
    if (!s) s = ts_seq_push(seq, c->tokens + seq->n_tokens, total - seq->n_tokens, err);
    return s;
}
