#include "model/model.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/half.h"

/* Finds name and checks its dtype is a float type and its shape is exactly
 * (d0) or (d0, d1) (d1 = 0 for a vector). */
static ts_status find_checked(const ts_st *st, const char *name, int64_t d0, int64_t d1,
                              const ts_tensor **out, ts_err *err) {
    const ts_tensor *t = ts_st_find(st, name);
    if (!t) return ts_fail(err, TS_ERR_FORMAT, "checkpoint: tensor '%s' is missing", name);
    if (t->dtype != TS_DT_F32 && t->dtype != TS_DT_F16 && t->dtype != TS_DT_BF16)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                       t->file, name, ts_dtype_name(t->dtype));
    int want_dims = d1 ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char got[96] = "", *p = got;
        for (int i = 0; i < t->n_dims; i++)
            p += snprintf(p, (size_t)(got + sizeof got - p), "%s%lld", i ? ", " : "",
                          (long long)t->shape[i]);
        if (d1)
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: tensor '%s' has shape [%s] but config.json implies [%lld, %lld]",
                           t->file, name, got, (long long)d0, (long long)d1);
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s' has shape [%s] but config.json implies [%lld]", t->file,
                       name, got, (long long)d0);
    }
    *out = t;
    return TS_OK;
}

static ts_status bind_mat(const ts_st *st, const char *name, int rows, int cols, ts_wmat *w,
                          ts_err *err) {
    const ts_tensor *t;
    ts_status s = find_checked(st, name, rows, cols, &t, err);
    if (s) return s;
    *w = (ts_wmat){.data = t->data, .dtype = t->dtype, .rows = rows, .cols = cols};
    return TS_OK;
}

/* Widens a vector tensor into dst[n]. */
static ts_status bind_vec(const ts_st *st, const char *name, int n, float *dst, ts_err *err) {
    const ts_tensor *t;
    ts_status s = find_checked(st, name, n, 0, &t, err);
    if (s) return s;
    for (int i = 0; i < n; i++) {
        if (t->dtype == TS_DT_F32) memcpy(&dst[i], (const char *)t->data + 4 * (size_t)i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * (size_t)i, 2);
            dst[i] = t->dtype == TS_DT_BF16 ? ts_bf16_to_f32(h) : ts_f16_to_f32(h);
        }
    }
    return TS_OK;
}

/* SHA-256 over the config's shape fields, the tensor table and a sample of
 * each tensor's bytes: two checkpoints that differ in weights differ here. */
static void fingerprint(ts_model *m) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, &m->cfg, sizeof m->cfg);
    for (size_t i = 0; i < ts_st_count(m->st); i++) {
        const ts_tensor *t = ts_st_at(m->st, i);
        EVP_DigestUpdate(ctx, t->name, strlen(t->name) + 1);
        EVP_DigestUpdate(ctx, t->shape, sizeof t->shape);
        size_t k = t->nbytes < 256 ? t->nbytes : 256;
        if (k) {
            EVP_DigestUpdate(ctx, t->data, k);
            EVP_DigestUpdate(ctx, (const char *)t->data + t->nbytes - k, k);
        }
    }
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, m->fingerprint, &len);
    EVP_MD_CTX_free(ctx);
}

static ts_status bind_layer(ts_model *m, int i, float **cursor, ts_err *err) {
    const ts_model_config *c = &m->cfg;
    ts_layer *L = &m->layers[i];
    int hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    char name[160];
    ts_status s;
#define NAME(fmt) (snprintf(name, sizeof name, "model.layers.%d." fmt, i), name)
#define VEC(field, fmt, n)                                         \
    do {                                                           \
        float *v = *cursor;                                        \
        *cursor += (n);                                            \
        if ((s = bind_vec(m->st, NAME(fmt), (n), v, err))) return s; \
        L->field = v;                                              \
    } while (0)
    VEC(attn_norm, "input_layernorm.weight", c->hidden);
    VEC(ffn_norm, "post_attention_layernorm.weight", c->hidden);
    if (c->qk_norm) {
        VEC(q_norm, "self_attn.q_norm.weight", hd);
        VEC(k_norm, "self_attn.k_norm.weight", hd);
    }
    if (c->qkv_bias) {
        VEC(bq, "self_attn.q_proj.bias", q_dim);
        VEC(bk, "self_attn.k_proj.bias", kv_dim);
        VEC(bv, "self_attn.v_proj.bias", kv_dim);
    }
    if (c->o_bias) VEC(bo, "self_attn.o_proj.bias", c->hidden);
    if ((s = bind_mat(m->st, NAME("self_attn.q_proj.weight"), q_dim, c->hidden, &L->wq, err)) ||
        (s = bind_mat(m->st, NAME("self_attn.k_proj.weight"), kv_dim, c->hidden, &L->wk, err)) ||
        (s = bind_mat(m->st, NAME("self_attn.v_proj.weight"), kv_dim, c->hidden, &L->wv, err)) ||
        (s = bind_mat(m->st, NAME("self_attn.o_proj.weight"), c->hidden, q_dim, &L->wo, err)) ||
        (s = bind_mat(m->st, NAME("mlp.gate_proj.weight"), c->ffn, c->hidden, &L->w_gate, err)) ||
        (s = bind_mat(m->st, NAME("mlp.up_proj.weight"), c->ffn, c->hidden, &L->w_up, err)) ||
        (s = bind_mat(m->st, NAME("mlp.down_proj.weight"), c->hidden, c->ffn, &L->w_down, err)))
        return s;
#undef VEC
#undef NAME
    return TS_OK;
}

ts_status ts_model_load(const char *dir, ts_model **out, ts_progress_fn progress, void *cb_ctx,
                        ts_err *err) {
    *out = NULL;
    ts_model *m = calloc(1, sizeof *m);
    if (!m) return ts_fail(err, TS_ERR_NOMEM, "out of memory loading %s", dir);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    ts_status s = ts_config_load(dir, &m->cfg, err);
    if (!s) s = ts_st_open_dir(dir, &m->st, progress, cb_ctx, err);
    if (s) {
        ts_model_free(m);
        return s;
    }
    const ts_model_config *c = &m->cfg;
    size_t per_layer = 3 * (size_t)c->hidden + 2 * (size_t)c->head_dim +
                       (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
    size_t n_small = per_layer * c->n_layers + c->hidden + c->head_dim / 2;
    m->small = malloc(n_small * sizeof(float));
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->small || !m->layers) {
        ts_model_free(m);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory loading %s", dir);
    }
    float *cursor = m->small;
    s = bind_mat(m->st, "model.embed_tokens.weight", c->vocab, c->hidden, &m->embed, err);
    if (!s) {
        if (c->tie_embeddings) m->lm_head = m->embed; /* as transformers: tied wins */
        else s = bind_mat(m->st, "lm_head.weight", c->vocab, c->hidden, &m->lm_head, err);
    }
    if (!s) {
        float *v = cursor;
        cursor += c->hidden;
        s = bind_vec(m->st, "model.norm.weight", c->hidden, v, err);
        m->final_norm = v;
    }
    for (int i = 0; !s && i < c->n_layers; i++) s = bind_layer(m, i, &cursor, err);
    if (s) {
        ts_model_free(m);
        return s;
    }
    m->inv_freq = cursor;
    ts_config_rope_freqs(c, m->inv_freq);
    fingerprint(m);
    *out = m;
    return TS_OK;
}

void ts_model_free(ts_model *m) {
    if (!m) return;
    ts_st_close(m->st);
    free(m->small);
    free(m->layers);
    free(m);
}
