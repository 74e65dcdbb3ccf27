/* The engine's chunks (see engine_chunks.h): registry and store, the chunk
 * API of tessera.h, prompts built from parts, and KV placement. */
#include "engine/engine_chunks.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/engine_int.h"
#include "engine/place.h"
#include "engine/repair.h"
#include "engine/seq.h"

struct ts_echunks {
    ts_chunk_reg *reg;
    ts_chunk_store *store;
    int32_t *prefix;          /* [n_prefix] level-0 prefix chunks are encoded after */
    int n_prefix;
    uint8_t enc_id[32];       /* unsalted encoding id */
    /* ids registered and not yet encoded, under e->lock */
    ts_chunk_id *todo;
    int n_todo, cap_todo;
    /* stepping thread only */
    uint8_t *salt_buf;        /* scratch for ts_echunks_block_salt */
    size_t cap_salt;
    ts_place_scratch ps;
    uint64_t hits, misses, tokens_reused, store_loads;
};

static const char salt_tag[] = "tessera.chunk.salt.v1";
static const char place_tag[] = "tessera.placed.v1";

/* Encoding id of chunks under salt: the plain one without a salt, else
 * SHA-256(tag, enc, salt). */
static ts_status salted_enc(const ts_echunks *c, const void *salt, size_t salt_len,
                            uint8_t out[32]) {
    if (!salt) {
        memcpy(out, c->enc_id, 32);
        return TS_OK;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, salt_tag, sizeof salt_tag) &&
             EVP_DigestUpdate(ctx, c->enc_id, 32) && EVP_DigestUpdate(ctx, salt, salt_len) &&
             EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    return ok && len == 32 ? TS_OK : TS_ERR_NOMEM;
}

static void store_log(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "tessera: chunk store: %s\n", msg);
}

ts_status ts_echunks_create(ts_engine *e, ts_err *err) {
    ts_echunks *c = calloc(1, sizeof *c);
    if (!c) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    e->chunks = c;
    ts_runtime *rt = e->rt;
    ts_status s = TS_OK;
    if (e->o.chunk_prefix && *e->o.chunk_prefix) {
        size_t n = 0;
        s = ts_tok_encode(rt->tok, e->o.chunk_prefix, strlen(e->o.chunk_prefix), false,
                          &c->prefix, &n, err);
        if (!s && n > (size_t)rt->model->cfg.max_pos / 2)
            s = ts_fail(err, TS_ERR_CAPACITY, "the chunk prefix is %zu tokens, too long", n);
        c->n_prefix = (int)n;
    }
    if (!s && ts_chunk_encoding_id(rt->model->fingerprint, c->prefix ? c->prefix : (int32_t[]){0},
                                   (size_t)c->n_prefix, c->enc_id))
        s = ts_fail(err, TS_ERR_NOMEM, "cannot hash the chunk prefix");
    uint64_t budget = e->o.chunk_bytes;
    if (!budget)
        budget = (uint64_t)ts_kv_block_bytes(rt->kv->n_layers, rt->kv->n_kv_heads, rt->kv->head_dim,
                                              rt->kv->block_size, rt->kv->dtype) *
                 (uint64_t)rt->kv->n_blocks / 2;
    if (!s) s = ts_chunk_reg_create(budget, &c->reg, err);
    if (!s) ts_chunk_reg_set_keep_tokens(c->reg, true);
    char spec[1024];
    const char *where = NULL;
    if (!s && e->o.chunk_redis && *e->o.chunk_redis) {
        snprintf(spec, sizeof spec, "redis://%s", e->o.chunk_redis);
        where = spec;
    } else if (!s && e->o.chunk_dir && *e->o.chunk_dir) {
        snprintf(spec, sizeof spec, "dir:%s", e->o.chunk_dir);
        where = spec;
    }
    if (where) s = ts_chunk_store_open(where, store_log, NULL, &c->store, err);
    return s;
}

void ts_echunks_destroy(ts_engine *e) {
    ts_echunks *c = e->chunks;
    if (!c) return;
    ts_chunk_reg_destroy(c->reg);
    ts_chunk_store_close(c->store);
    free(c->prefix);
    free(c->todo);
    free(c->salt_buf);
    ts_place_scratch_free(&c->ps);
    free(c);
    e->chunks = NULL;
}

/* ---- lookups ---- */

static void fill_desc(const ts_chunk_entry *en, ts_chunk_desc *d) {
    memset(d, 0, sizeof *d);
    ts_chunk_id_to_hex(&en->id, d->id);
    d->type = ts_chunk_type_name(en->type);
    d->n_tokens = en->n_tokens;
    d->has_kv = en->has_kv;
    d->bytes = en->bytes;
    d->hits = en->uses;
    d->last_use_ms = en->last_use_ms;
}

/* Finds chunk hex of this salt, trying the store for one not registered
 * here. On success *out is held. */
static ts_status find(ts_engine *e, const char *hex, const void *salt, size_t salt_len,
                      ts_chunk **out, ts_err *err) {
    ts_echunks *c = e->chunks;
    ts_chunk_id id;
    uint8_t enc[32];
    ts_status s = ts_chunk_id_from_hex(hex ? hex : "", &id, err);
    if (s) return s;
    if (salted_enc(c, salt, salt_len, enc)) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    const uint8_t *fp = e->rt->model->fingerprint;
    s = ts_chunk_reg_lookup(c->reg, &id, fp, out, NULL);
    if (s == TS_ERR_NOTFOUND && c->store) {
        s = ts_chunk_load_for(e->rt, c->store, c->reg, &id, out, NULL);
        if (!s) {
            pthread_mutex_lock(&e->lock);
            c->store_loads++;
            pthread_mutex_unlock(&e->lock);
        }
    }
    if (s == TS_ERR_INVALID) return ts_fail(err, s, "chunk %s was made for another model", hex);
    if (!s) {
        ts_chunk_info info;
        ts_chunk_get_info(c->reg, *out, &info);
        if (memcmp(info.enc_id, enc, 32)) { /* another tenant's, or another prefix's */
            ts_chunk_release(c->reg, *out);
            *out = NULL;
            s = TS_ERR_NOTFOUND;
        }
    }
    if (s) return ts_fail(err, TS_ERR_NOTFOUND, "chunk %s is not registered", hex);
    return TS_OK;
}

ts_status ts_engine_chunk_register(ts_engine *e, const char *text, const int32_t *ids,
                                   size_t n_ids, const char *type, const void *salt,
                                   size_t salt_len, ts_chunk_desc *desc, ts_err *err) {
    ts_echunks *c = e->chunks;
    ts_chunk_type ty = TS_CHUNK_DOCUMENT;
    ts_status s = type ? ts_chunk_type_parse(type, &ty, err) : TS_OK;
    if (s) return s;
    if (salt_len && !salt) return ts_fail(err, TS_ERR_INVALID, "cache salt length without a salt");
    int32_t *own = NULL;
    size_t n = n_ids;
    if (text) {
        s = ts_tok_encode(e->rt->tok, text, strlen(text), false, &own, &n, err);
        if (s) return s;
        ids = own;
    }
    const ts_model_config *mc = &e->rt->model->cfg;
    if (!n || !ids) s = ts_fail(err, TS_ERR_INVALID, "the chunk is empty");
    else if (n + (size_t)c->n_prefix + 1 > (size_t)mc->max_pos)
        s = ts_fail(err, TS_ERR_CAPACITY, "the chunk is %zu tokens; the context holds %d", n, mc->max_pos);
    for (size_t i = 0; !s && i < n; i++)
        if (ids[i] < 0 || ids[i] >= mc->vocab)
            s = ts_fail(err, TS_ERR_INVALID, "token id %d is out of range (the model has %d)",
                        ids[i], mc->vocab);
    uint8_t enc[32];
    if (!s && salted_enc(c, salt, salt_len, enc)) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_chunk_id id;
    ts_chunk *h = NULL;
    if (!s) s = ts_chunk_reg_register(c->reg, ids, n, ty, enc, e->rt->model->fingerprint, &id,
                                      NULL, &h, err);
    free(own);
    if (s) return s;
    ts_chunk_info info;
    ts_chunk_get_info(c->reg, h, &info);
    if (desc) {
        ts_chunk_entry en = {.id = id, .type = info.type, .n_tokens = info.n_tokens,
                             .has_kv = info.has_kv};
        fill_desc(&en, desc);
    }
    ts_chunk_release(c->reg, h);
    if (!info.has_kv) { /* computed by the stepping thread when it is free */
        pthread_mutex_lock(&e->lock);
        if (ts_grow((void **)&c->todo, &c->cap_todo, c->n_todo + 1, sizeof *c->todo))
            c->todo[c->n_todo++] = id;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->lock);
    }
    return TS_OK;
}

ts_status ts_engine_chunk_get(ts_engine *e, const char *id, const void *salt, size_t salt_len,
                              ts_chunk_desc *out, ts_err *err) {
    ts_chunk *h = NULL;
    ts_status s = find(e, id, salt, salt_len, &h, err);
    if (s) return s;
    ts_chunk_info info;
    ts_chunk_get_info(e->chunks->reg, h, &info);
    ts_chunk_release(e->chunks->reg, h);
    /* the full row (bytes, hits) comes from the list */
    ts_chunk_entry *all = NULL;
    size_t n = 0;
    s = ts_chunk_reg_list(e->chunks->reg, &all, &n, err);
    bool found = false;
    for (size_t i = 0; !s && i < n && !found; i++)
        if (!memcmp(all[i].id.b, info.id.b, 32)) {
            fill_desc(&all[i], out);
            found = true;
        }
    free(all);
    if (!s && !found) s = ts_fail(err, TS_ERR_NOTFOUND, "chunk %s is not registered", id);
    return s;
}

ts_status ts_engine_chunk_list(ts_engine *e, const void *salt, size_t salt_len,
                               ts_chunk_desc **out, size_t *n_out, ts_err *err) {
    *out = NULL;
    *n_out = 0;
    uint8_t enc[32];
    if (salted_enc(e->chunks, salt, salt_len, enc)) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_chunk_entry *all = NULL;
    size_t n = 0;
    ts_status s = ts_chunk_reg_list(e->chunks->reg, &all, &n, err);
    if (s) return s;
    ts_chunk_desc *d = n ? calloc(n, sizeof *d) : NULL;
    if (n && !d) {
        free(all);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!memcmp(all[i].enc_id, enc, 32)) fill_desc(&all[i], &d[k++]);
    free(all);
    if (!k) {
        free(d);
        d = NULL;
    }
    *out = d;
    *n_out = k;
    return TS_OK;
}

ts_status ts_engine_chunk_remove(ts_engine *e, const char *id, const void *salt, size_t salt_len,
                                 ts_err *err) {
    ts_chunk *h = NULL;
    ts_status s = find(e, id, salt, salt_len, &h, err);
    if (s) return s;
    ts_chunk_info info;
    ts_chunk_get_info(e->chunks->reg, h, &info);
    ts_chunk_id cid = info.id;
    ts_chunk_release(e->chunks->reg, h);
    s = ts_chunk_reg_remove(e->chunks->reg, &cid, err);
    if (!s && e->chunks->store) ts_chunk_store_del(e->chunks->store, &cid, NULL);
    return s;
}

/* ---- prompts from parts ---- */

static ts_status append(ts_req *r, const int32_t *ids, size_t n, int max_pos, ts_err *err) {
    if ((size_t)r->n_tokens + n > (size_t)max_pos)
        return ts_fail(err, TS_ERR_CAPACITY,
                       "the prompt is longer than the model's context of %d tokens", max_pos);
    if (!ts_grow((void **)&r->tokens, &r->cap_tokens, r->n_tokens + (int)n + 1, sizeof *r->tokens))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (n) memcpy(r->tokens + r->n_tokens, ids, n * sizeof *ids);
    r->n_tokens += (int)n;
    return TS_OK;
}

/* Chooses the chunk tokens r recomputes (src/engine/repair.h): frac of all
 * its chunk tokens, split over the chunks by length, each chunk's first
 * tokens. The choice depends only on the cited chunks, not on the rest of
 * the prompt, so requests citing the same chunks at the same places get
 * the same layout and share those blocks (and cascade attention). Scoring
 * the tokens by the question (ts_repair_query_scores, eval-qa's
 * repair:query) was one answer better on 100 hard cases but gives every
 * question its own layout. */
static ts_status plan_repair(ts_req *r, float frac, ts_err *err) {
    int n = r->n_segs;
    if (!n) return TS_OK;
    int32_t *len = malloc((size_t)n * sizeof *len);
    if (!len) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) len[i] = r->segs[i].n;
    ts_repair_policy pol = ts_repair_policy_default(TS_REPAIR_FIRST, frac);
    ts_repair_plan plan = {0};
    ts_status s = ts_repair_select(&pol, n, len, NULL, NULL, &plan, err);
    for (int i = 0; !s && i < n; i++) {
        ts_req_seg *g = &r->segs[i];
        for (int k = plan.first[i]; k < plan.first[i + 1] && g->n_rep < TS_SEG_MAX_REPAIR; k++)
            g->rep[g->n_rep++] = (ts_span){g->start + plan.spans[k].off, plan.spans[k].n};
    }
    ts_repair_plan_free(&plan);
    free(len);
    return s;
}

/* Whether slot t of g takes the chunk's KV (not recomputed). */
static bool seg_placed(const ts_req_seg *g, int t) {
    if (t < g->start || t >= g->place_end) return false;
    for (int k = 0; k < g->n_rep; k++)
        if (t >= g->rep[k].start && t < g->rep[k].start + g->rep[k].n) return false;
    return true;
}

ts_status ts_echunks_build_prompt(ts_engine *e, const ts_request *q, ts_req *r, ts_err *err) {
    ts_echunks *c = e->chunks;
    const int max_pos = e->rt->model->cfg.max_pos;
    int mode = q->chunk_mode ? q->chunk_mode : e->o.chunk_mode;
    if (mode < TS_CHUNKS_DEFAULT || mode > TS_CHUNKS_REPAIR)
        return ts_fail(err, TS_ERR_INVALID, "unknown chunk mode %d", q->chunk_mode);
    if (!mode) mode = TS_CHUNKS_REPAIR;
    float frac = q->repair_frac >= 0 ? q->repair_frac : e->o.repair_frac;
    if (!(frac >= 0 && frac <= 1))
        return ts_fail(err, TS_ERR_INVALID, "repair_frac must be in [0, 1]");
    if (q->n_parts < 0 || q->n_parts > 1 << 16)
        return ts_fail(err, TS_ERR_INVALID, "bad number of prompt parts (%d)", q->n_parts);
    if (!ts_grow((void **)&r->segs, &r->cap_segs, q->n_parts, sizeof *r->segs))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status s = TS_OK;
    for (int i = 0; !s && i < q->n_parts; i++) {
        const ts_prompt_part *p = &q->parts[i];
        int kinds = (p->text != NULL) + (p->ids != NULL) + (p->chunk != NULL);
        if (kinds != 1) {
            s = ts_fail(err, TS_ERR_INVALID, "prompt part %d must have exactly one of text, ids, chunk", i);
        } else if (p->text) {
            int32_t *ids = NULL;
            size_t n = 0;
            s = ts_tok_encode(e->rt->tok, p->text, strlen(p->text), false, &ids, &n, err);
            if (!s) s = append(r, ids, n, max_pos, err);
            free(ids);
        } else if (p->ids) {
            s = append(r, p->ids, p->n_ids, max_pos, err);
        } else {
            ts_chunk *h = NULL;
            s = find(e, p->chunk, r->salt, r->salt_len, &h, err);
            ts_chunk_info info;
            if (!s) {
                ts_chunk_get_info(c->reg, h, &info);
                ts_chunk_note_use(c->reg, h);
            }
            int start = r->n_tokens;
            if (!s) s = append(r, info.tokens, (size_t)info.n_tokens, max_pos, err);
            if (!s && mode != TS_CHUNKS_EXACT) {
                r->segs[r->n_segs++] = (ts_req_seg){.start = start, .n = info.n_tokens,
                                                    .place_end = start + info.n_tokens, .h = h};
                h = NULL;
            }
            ts_chunk_release(c->reg, h);
        }
    }
    if (!s && mode == TS_CHUNKS_REPAIR && frac > 0) s = plan_repair(r, frac, err);
    /* the prompt's last token is always computed (its logits start decoding) */
    if (!s && r->n_segs && r->segs[r->n_segs - 1].place_end >= r->n_tokens)
        r->segs[r->n_segs - 1].place_end = r->n_tokens - 1;
    return s;
}

void ts_echunks_release(ts_engine *e, ts_req *r) {
    for (int i = 0; i < r->n_segs; i++) ts_chunk_release(e->chunks->reg, r->segs[i].h);
    free(r->segs);
    r->segs = NULL;
    r->n_segs = r->cap_segs = 0;
}

/* ---- KV: computing and placing ---- */

/* Computes chunk h's KV after the prefix in a scratch sequence. Sets
 * *pool_short (and fails) when the KV pool has not enough free blocks now
 * but could have later. */
static ts_status encode(ts_engine *e, ts_chunk *h, bool *pool_short, ts_err *err) {
    ts_echunks *c = e->chunks;
    ts_runtime *rt = e->rt;
    const ts_model_config *mc = &rt->model->cfg;
    ts_chunk_info info;
    ts_chunk_get_info(c->reg, h, &info);
    int n = info.n_tokens, total = c->n_prefix + n;
    int need = (total + rt->kv->block_size - 1) / rt->kv->block_size;
    if (need > rt->kv->n_blocks)
        return ts_fail(err, TS_ERR_CAPACITY, "the chunk does not fit the KV pool");
    if (need > ts_kv_n_avail(rt->kv)) {
        *pool_short = true;
        return ts_fail(err, TS_ERR_CAPACITY, "the KV pool is busy");
    }
    size_t per = (size_t)mc->n_layers * (size_t)n * (size_t)mc->n_kv_heads * (size_t)mc->head_dim;
    float *k = malloc(per * sizeof *k), *v = malloc(per * sizeof *v);
    int32_t *toks = malloc((size_t)total * sizeof *toks);
    ts_seq seq = {0};
    ts_status s = k && v && toks ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (!s) {
        if (c->n_prefix) memcpy(toks, c->prefix, (size_t)c->n_prefix * sizeof *toks);
        memcpy(toks + c->n_prefix, info.tokens, (size_t)n * sizeof *toks);
        s = ts_seq_reserve(&seq, rt->kv, total, err);
    }
    for (int done = 0; !s && done < total;) { /* pieces of at most 2048 rows */
        int m = total - done < 2048 ? total - done : 2048;
        int row0 = c->n_prefix > done ? c->n_prefix - done : 0;
        int first = done + row0 - c->n_prefix; /* chunk token of row row0 */
        ts_fwd_seq fs = {.tokens = toks + done, .n = m, .n_past = done, .blocks = seq.blocks};
        const float *lg;
        if (row0 < m) {
            /* capture into a per-piece buffer laid out [layer][m - row0][kvd] */
            size_t kvd = (size_t)mc->n_kv_heads * mc->head_dim, rows = (size_t)(m - row0);
            float *pk = malloc((size_t)mc->n_layers * rows * kvd * sizeof *pk);
            float *pv = malloc((size_t)mc->n_layers * rows * kvd * sizeof *pv);
            if (!pk || !pv) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
            if (!s) {
                ts_fwd_set_capture(rt->fwd, row0, (int)rows, pk, pv);
                s = ts_fwd_run(rt->fwd, &fs, 1, &lg, err);
                ts_fwd_set_capture(rt->fwd, 0, 0, NULL, NULL);
            }
            for (int l = 0; !s && l < mc->n_layers; l++) {
                memcpy(k + ((size_t)l * n + first) * kvd, pk + (size_t)l * rows * kvd, rows * kvd * sizeof *k);
                memcpy(v + ((size_t)l * n + first) * kvd, pv + (size_t)l * rows * kvd, rows * kvd * sizeof *v);
            }
            free(pk);
            free(pv);
        } else {
            s = ts_fwd_run(rt->fwd, &fs, 1, &lg, err);
        }
        done += m;
    }
    if (!s) {
        ts_chunk_shape shape = {mc->n_layers, mc->n_kv_heads, mc->head_dim};
        s = ts_chunk_attach_kv(c->reg, h, shape, k, v, err);
    }
    if (!s) e->st.prefill_tokens += (uint64_t)total;
    if (!s && c->store) ts_chunk_store_save(c->store, c->reg, h, NULL); /* best effort */
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    free(toks);
    free(k);
    free(v);
    return s;
}

/* KV for h: already there, from the store, or computed. *hit says which;
 * *pool_short as encode's. */
static ts_status ensure(ts_engine *e, ts_chunk *h, bool *hit, bool *pool_short, ts_err *err) {
    *pool_short = false;
    ts_echunks *c = e->chunks;
    ts_chunk_info info;
    ts_chunk_get_info(c->reg, h, &info);
    *hit = info.has_kv;
    if (info.has_kv) return TS_OK;
    if (c->store) {
        ts_chunk *g = NULL;
        if (!ts_chunk_load_for(e->rt, c->store, c->reg, &info.id, &g, NULL)) {
            ts_chunk_get_info(c->reg, g, &info);
            ts_chunk_release(c->reg, g);
            if (info.has_kv) {
                pthread_mutex_lock(&e->lock);
                c->store_loads++;
                pthread_mutex_unlock(&e->lock);
                return TS_OK;
            }
        }
    }
    return encode(e, h, pool_short, err);
}

ts_status ts_echunks_ready(ts_engine *e, ts_req *r, ts_err *err) {
    int w = 0;
    for (int i = 0; i < r->n_segs; i++) {
        ts_req_seg *g = &r->segs[i];
        bool hit = false, short_ = false;
        ts_status s = ensure(e, g->h, &hit, &short_, NULL);
        if (short_) return TS_ERR_CAPACITY; /* pool busy: admit later */
        if (s) { /* cannot hold this chunk's KV: compute its tokens in context */
            ts_chunk_release(e->chunks->reg, g->h);
            continue;
        }
        if (hit) e->chunks->hits++;
        else e->chunks->misses++;
        r->segs[w++] = *g;
    }
    r->n_segs = w;
    (void)err;
    return TS_OK;
}

int ts_echunks_next_placed(const ts_req *r, int from) {
    for (int i = 0; i < r->n_segs; i++) {
        const ts_req_seg *g = &r->segs[i];
        int t = from > g->start ? from : g->start;
        for (int k = 0; k < g->n_rep; k++) /* sorted, disjoint: one pass */
            if (t >= g->rep[k].start && t < g->rep[k].start + g->rep[k].n) t = g->rep[k].start + g->rep[k].n;
        if (t < g->place_end) return t;
    }
    return INT32_MAX;
}

/* Places chunk g's slots [a, b) (all placed ones) that lie at or after from. */
static ts_status place_run(ts_engine *e, const ts_req_seg *g, const ts_chunk_info *info, int a,
                           int b, int from, const int32_t *blocks, ts_err *err) {
    if (a < from) a = from;
    if (b > g->place_end) b = g->place_end;
    if (a >= b) return TS_OK;
    ts_status s = ts_place_chunk(e->rt, info, a - g->start, b - a, a, blocks, &e->chunks->ps, err);
    if (!s) e->chunks->tokens_reused += (uint64_t)(b - a);
    return s;
}

ts_status ts_echunks_place(ts_engine *e, ts_req *r, ts_err *err) {
    ts_echunks *c = e->chunks;
    for (int i = 0; i < r->n_segs; i++) {
        const ts_req_seg *g = &r->segs[i];
        if (g->place_end <= r->n_computed) continue;
        ts_chunk_info info;
        ts_chunk_get_info(c->reg, g->h, &info);
        if (!info.has_kv) /* dropped since ts_echunks_ready */
            return ts_fail(err, TS_ERR_CAPACITY, "chunk KV was evicted before placement");
        int a = g->start; /* the gaps between recomputed spans */
        ts_status s = TS_OK;
        for (int k = 0; !s && k < g->n_rep; k++) {
            s = place_run(e, g, &info, a, g->rep[k].start, r->n_computed, r->blocks, err);
            a = g->rep[k].start + g->rep[k].n;
        }
        if (!s) s = place_run(e, g, &info, a, g->place_end, r->n_computed, r->blocks, err);
        if (s) return s;
    }
    return TS_OK;
}

int ts_echunks_skip_placed(const ts_req *r, int slot) {
    /* segments are in slot order: a placed run may end where the next
     * chunk's begins */
    for (int i = 0; i < r->n_segs; i++) {
        const ts_req_seg *g = &r->segs[i];
        if (!seg_placed(g, slot)) continue;
        int end = g->place_end;
        for (int k = 0; k < g->n_rep; k++)
            if (g->rep[k].start > slot && g->rep[k].start < end) end = g->rep[k].start;
        slot = end;
    }
    return slot;
}

int ts_echunks_pieces(const ts_req *r, int n, int end, ts_span *out, int max_out) {
    int k = 0, at = ts_echunks_skip_placed(r, r->n_computed);
    while (n > 0 && at < end && k < max_out) {
        int stop = ts_echunks_next_placed(r, at);
        if (stop > end) stop = end;
        int m = stop - at < n ? stop - at : n;
        out[k++] = (ts_span){at, m};
        n -= m;
        at = ts_echunks_skip_placed(r, at + m);
    }
    return k;
}

void ts_echunks_block_salt(ts_engine *e, const ts_req *r, int b, const void **salt,
                           size_t *salt_len) {
    ts_echunks *c = e->chunks;
    int bs = e->rt->kv->block_size;
    *salt = r->has_salt ? r->salt : NULL;
    *salt_len = r->salt_len;
    int lo = b * bs, hi = lo + bs;
    bool any = false;
    for (int t = lo; t < hi && !any; t++)
        for (int i = 0; i < r->n_segs && !any; i++) any = seg_placed(&r->segs[i], t);
    if (!any) return;
    size_t need = r->salt_len + sizeof place_tag + 32 + (size_t)bs * 4;
    if (need > c->cap_salt) {
        uint8_t *p = realloc(c->salt_buf, need);
        if (!p) return; /* unreachable in practice; the plain hash is then never published */
        c->salt_buf = p;
        c->cap_salt = need;
    }
    uint8_t *p = c->salt_buf;
    if (r->salt_len) memcpy(p, r->salt, r->salt_len);
    p += r->salt_len;
    memcpy(p, place_tag, sizeof place_tag);
    p += sizeof place_tag;
    memcpy(p, c->enc_id, 32);
    p += 32;
    for (int t = lo; t < hi; t++) {
        uint32_t st = 0;
        for (int i = 0; i < r->n_segs; i++) {
            const ts_req_seg *g = &r->segs[i];
            if (seg_placed(g, t)) st = (uint32_t)(t - g->start + 1);
        }
        for (int k = 0; k < 4; k++) *p++ = (uint8_t)(st >> (8 * k));
    }
    *salt = c->salt_buf;
    *salt_len = need;
}

bool ts_echunks_has_pending(ts_engine *e) { return e->chunks && e->chunks->n_todo > 0; }

void ts_echunks_encode_pending(ts_engine *e) {
    ts_echunks *c = e->chunks;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        ts_chunk_id id;
        bool any = c->n_todo > 0;
        if (any) {
            id = c->todo[0];
            memmove(c->todo, c->todo + 1, (size_t)(c->n_todo - 1) * sizeof *c->todo);
            c->n_todo--;
        }
        pthread_mutex_unlock(&e->lock);
        if (!any) return;
        ts_chunk *h = NULL;
        if (ts_chunk_reg_lookup(c->reg, &id, NULL, &h, NULL)) continue; /* removed meanwhile */
        bool hit, short_;
        ensure(e, h, &hit, &short_, NULL);
        ts_chunk_release(c->reg, h);
        if (short_) return; /* pool busy: computed on first use instead */
    }
}

void ts_echunks_stats(ts_engine *e, ts_engine_stats *st) {
    ts_echunks *c = e->chunks;
    st->chunk_hits = c->hits;
    st->chunk_misses = c->misses;
    st->chunk_tokens_reused = c->tokens_reused;
    pthread_mutex_lock(&e->lock);
    st->chunk_store_loads = c->store_loads;
    pthread_mutex_unlock(&e->lock);
    ts_chunk_reg_stats rs = ts_chunk_reg_get_stats(c->reg);
    st->chunks = rs.n_chunks;
    st->chunk_bytes = rs.bytes_used;
    st->chunk_store_ok = true;
    if (c->store) st->chunk_store_ok = ts_chunk_store_get_stats(c->store).available;
}
