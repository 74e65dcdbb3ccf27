#include "engine/place.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

void ts_place_scratch_free(ts_place_scratch *ps) {
    free(ps->k);
    free(ps->v);
    free(ps->pos);
    free(ps->slots);
    memset(ps, 0, sizeof *ps);
}

static bool grow(ts_place_scratch *ps, size_t rows, size_t kvd) {
    if (rows <= ps->cap_rows) return true;
    float *k = realloc(ps->k, rows * kvd * sizeof *k);
    if (k) ps->k = k;
    float *v = realloc(ps->v, rows * kvd * sizeof *v);
    if (v) ps->v = v;
    int32_t *p = realloc(ps->pos, rows * sizeof *p);
    if (p) ps->pos = p;
    int32_t *s = realloc(ps->slots, rows * sizeof *s);
    if (s) ps->slots = s;
    if (!k || !v || !p || !s) return false;
    ps->cap_rows = rows;
    return true;
}

ts_status ts_place_chunk(ts_runtime *rt, const ts_chunk_info *info, int off, int m, int slot,
                         const int32_t *blocks, ts_place_scratch *ps, ts_err *err) {
    const ts_model_config *mc = &rt->model->cfg;
    if (!info->has_kv || off < 0 || m < 0 || off + m > info->n_tokens || slot < 0)
        return ts_fail(err, TS_ERR_INVALID, "place: bad chunk range");
    if (!m) return TS_OK;
    size_t n = (size_t)info->n_tokens, kvd = (size_t)mc->n_kv_heads * mc->head_dim;
    if (!grow(ps, (size_t)m, kvd)) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    int bs = rt->kv->block_size;
    for (int i = 0; i < m; i++) {
        int t = slot + i;
        ps->pos[i] = t;
        ps->slots[i] = blocks[t / bs] * bs + t % bs;
    }
    const ts_ops *o = rt->ops;
    for (int l = 0; l < mc->n_layers; l++) {
        size_t at = ((size_t)l * n + (size_t)off) * kvd;
        memcpy(ps->k, info->k + at, (size_t)m * kvd * sizeof *ps->k);
        memcpy(ps->v, info->v + at, (size_t)m * kvd * sizeof *ps->v);
        o->rope(o->ctx, ps->k, ps->pos, m, mc->n_kv_heads, mc->head_dim, rt->model->inv_freq);
        o->kv_write(o->ctx, rt->kv->k[l], rt->kv->v[l], rt->kv->dtype, ps->k, ps->v, ps->slots, m,
                    mc->n_kv_heads, mc->head_dim, bs);
    }
    return TS_OK;
}

ts_status ts_chunk_load_for(ts_runtime *rt, ts_chunk_store *store, ts_chunk_reg *reg,
                            const ts_chunk_id *id, ts_chunk **out, ts_err *err) {
    const ts_model_config *mc = &rt->model->cfg;
    ts_chunk_expect exp = {.model_fp = rt->model->fingerprint,
                           .shape = {mc->n_layers, mc->n_kv_heads, mc->head_dim}};
    return ts_chunk_store_load(store, reg, id, &exp, out, err);
}
