#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "model/cascade.h"

struct ts_fwd {
    const ts_model *m;
    const ts_ops *ops;
    ts_kv *kv;
    ts_prec prec;
    int prec_min_rows;
    ts_fwd_hook hook;
    void *hook_ctx;
    int cascade;
    bool used_cascade;
    ts_cascade_plan plan;
    ts_fwd_times times;
    int cap_row0, cap_n;     /* rows whose pre-RoPE K and V are captured */
    float *cap_k, *cap_v;
    int cap_tok, cap_seq, cap_logits;
    float *x;        /* [n_tok][hidden] residual stream */
    float *xb;       /* [n_tok][hidden] normed input of a sublayer */
    float *tmp;      /* [n_tok][hidden] sublayer output */
    float *q;        /* [n_tok][n_heads*head_dim] */
    float *k, *v;    /* [n_tok][n_kv_heads*head_dim] */
    float *att;      /* [n_tok][n_heads*head_dim] */
    float *att2;     /* [n_tok][n_heads*head_dim] one cascade level's partial output */
    float *lse, *lse2; /* [n_tok][n_heads] log-sum-exp of the partial outputs */
    float *gate, *up;/* [n_tok][ffn] */
    float *rows;     /* [n_logits][hidden] rows gathered for the LM head */
    float *logits;   /* [n_logits][vocab] */
    int32_t *ids, *pos, *slot; /* [n_tok] */
    ts_attn_seq *aseq;         /* [n_seq] */
};

ts_fwd *ts_fwd_create(const ts_model *m, const ts_ops *ops, ts_kv *kv) {
    ts_fwd *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->m = m;
    f->ops = ops;
    f->kv = kv;
    f->prec = TS_PREC_F32;
    f->prec_min_rows = 1 << 30;
    return f;
}

void ts_fwd_destroy(ts_fwd *f) {
    if (!f) return;
    free(f->x); free(f->xb); free(f->tmp); free(f->q); free(f->k); free(f->v);
    free(f->att); free(f->att2); free(f->lse); free(f->lse2); free(f->gate); free(f->up); free(f->rows); free(f->logits);
    free(f->ids); free(f->pos); free(f->slot); free(f->aseq);
    ts_cascade_plan_free(&f->plan);
    free(f);
}

void ts_fwd_set_prec(ts_fwd *f, ts_prec prec, int min_rows) {
    f->prec = prec;
    f->prec_min_rows = min_rows < 1 ? 1 : min_rows;
}

void ts_fwd_set_cascade(ts_fwd *f, int mode) { f->cascade = mode; }

bool ts_fwd_used_cascade(const ts_fwd *f) { return f->used_cascade; }

ts_fwd_times ts_fwd_get_times(const ts_fwd *f) { return f->times; }

void ts_fwd_set_capture(ts_fwd *f, int row0, int n_rows, float *k_out, float *v_out) {
    f->cap_row0 = row0;
    f->cap_n = n_rows > 0 ? n_rows : 0;
    f->cap_k = k_out;
    f->cap_v = v_out;
}

void ts_fwd_reset_times(ts_fwd *f) { memset(&f->times, 0, sizeof f->times); }

void ts_fwd_set_hook(ts_fwd *f, ts_fwd_hook hook, void *ctx) {
    f->hook = hook;
    f->hook_ctx = ctx;
}

static int grow(void **p, size_t bytes) {
    void *q = realloc(*p, bytes ? bytes : 1);
    if (!q) return 0;
    *p = q;
    return 1;
}

static ts_status reserve(ts_fwd *f, int n_tok, int n_seq, int n_logits, ts_err *err) {
    const ts_model_config *c = &f->m->cfg;
    int ok = 1;
    if (n_tok > f->cap_tok) {
        size_t t = (size_t)n_tok;
        size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
        ok = grow((void **)&f->x, t * c->hidden * 4) && grow((void **)&f->xb, t * c->hidden * 4) &&
             grow((void **)&f->tmp, t * c->hidden * 4) && grow((void **)&f->q, t * qd * 4) &&
             grow((void **)&f->k, t * kvd * 4) && grow((void **)&f->v, t * kvd * 4) &&
             grow((void **)&f->att, t * qd * 4) && grow((void **)&f->att2, t * qd * 4) &&
             grow((void **)&f->lse, t * c->n_heads * 4) &&
             grow((void **)&f->lse2, t * c->n_heads * 4) && grow((void **)&f->gate, t * c->ffn * 4) &&
             grow((void **)&f->up, t * c->ffn * 4) && grow((void **)&f->ids, t * 4) &&
             grow((void **)&f->pos, t * 4) && grow((void **)&f->slot, t * 4);
        if (ok) f->cap_tok = n_tok;
    }
    if (ok && n_seq > f->cap_seq) {
        ok = grow((void **)&f->aseq, (size_t)n_seq * sizeof *f->aseq);
        if (ok) f->cap_seq = n_seq;
    }
    if (ok && n_logits > f->cap_logits) {
        ok = grow((void **)&f->rows, (size_t)n_logits * c->hidden * 4) &&
             grow((void **)&f->logits, (size_t)n_logits * c->vocab * 4);
        if (ok) f->cap_logits = n_logits;
    }
    return ok ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "forward: out of memory for %d tokens", n_tok);
}

/* Flattens the batch into ids/pos/slot rows and attention descriptors,
 * checking every id, position and block reference. */
static ts_status prepare(ts_fwd *f, const ts_fwd_seq *seqs, int n_seqs, int *n_tok_out,
                         int *n_logits_out, ts_err *err) {
    const ts_model_config *c = &f->m->cfg;
    long n_tok = 0, n_logits = 0;
    for (int s = 0; s < n_seqs; s++) {
        const ts_fwd_seq *q = &seqs[s];
        if (q->n < 1 || q->n_past < 0 || q->n_logits < 0 || q->n_logits > q->n || !q->tokens ||
            !q->blocks)
            return ts_fail(err, TS_ERR_INVALID, "forward: sequence %d is malformed", s);
        if ((long)q->n_past + q->n > (long)f->kv->block_size * f->kv->n_blocks)
            return ts_fail(err, TS_ERR_CAPACITY, "forward: sequence %d exceeds the KV pool", s);
        n_tok += q->n;
        n_logits += q->n_logits;
    }
    if (n_tok > (1 << 24)) return ts_fail(err, TS_ERR_CAPACITY, "forward: batch too large");
    ts_status st = reserve(f, (int)n_tok, n_seqs, (int)n_logits, err);
    if (st) return st;
    int row = 0, bs = f->kv->block_size;
    for (int s = 0; s < n_seqs; s++) {
        const ts_fwd_seq *q = &seqs[s];
        for (int i = 0; i < q->n; i++, row++) {
            int32_t id = q->tokens[i];
            if (id < 0 || id >= c->vocab)
                return ts_fail(err, TS_ERR_INVALID,
                               "token id %d is out of range (the model has %d tokens)", id,
                               c->vocab);
            int t = q->n_past + i;
            int32_t b = q->blocks[t / bs];
            if (b < 0 || b >= f->kv->n_blocks)
                return ts_fail(err, TS_ERR_INVALID, "forward: block %d is not in the pool", b);
            int32_t p = q->pos ? q->pos[i] : t;
            if (p < 0) return ts_fail(err, TS_ERR_INVALID, "forward: negative position %d", p);
            f->ids[row] = id;
            f->pos[row] = p;
            f->slot[row] = b * bs + t % bs;
        }
        f->aseq[s] = (ts_attn_seq){.q_start = row - q->n, .n_q = q->n,
                                   .n_kv = q->n_past + q->n, .blocks = q->blocks};
    }
    *n_tok_out = (int)n_tok;
    *n_logits_out = (int)n_logits;
    return TS_OK;
}

/* Break-even measured with bench_ops (cascade vs flat decode attention,
 * Qwen3-0.6B heads, 2 threads): cascade wins from a 64-slot shared prefix
 * with 2+ sharers on AVX2 and AVX-512 (docs/PERFORMANCE.md). */
#define TS_CASCADE_MIN_SLOTS 64

/* Decides cascade levels for this batch and sets each sequence's kv_start. */
static ts_status plan_cascade(ts_fwd *f, const ts_fwd_seq *seqs, int n_seqs, ts_err *err) {
    f->used_cascade = false;
    if (f->cascade == 0 || n_seqs < 2) return TS_OK;
    int bs = f->kv->block_size;
    ts_cascade_rule rule = {.min_sharers = 2,
                            .min_blocks = f->cascade > 0 ? 1 : (TS_CASCADE_MIN_SLOTS + bs - 1) / bs};
    int lv = ts_cascade_plan_build(&f->plan, seqs, n_seqs, bs, rule);
    if (lv < 0) return ts_fail(err, TS_ERR_NOMEM, "forward: out of memory planning attention");
    if (lv == 0) return TS_OK;
    for (int s = 0; s < n_seqs; s++) f->aseq[s].kv_start = f->plan.kv_start[s];
    f->used_cascade = true;
    return TS_OK;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A matrix product, its time added to the weights' share. */
static void matmul(ts_fwd *f, float *y, const float *x, int n, const ts_wmat *w, const float *bias,
                   ts_prec prec) {
    double t = now_ms();
    f->ops->matmul(f->ops->ctx, y, x, n, w, bias, prec);
    f->times.matmul_ms += now_ms() - t;
}

static void attention_block(ts_fwd *f, int l, int n, int n_seqs, ts_prec prec) {
    const ts_model *m = f->m;
    const ts_model_config *c = &m->cfg;
    const ts_ops *o = f->ops;
    const ts_layer *L = &m->layers[l];
    int hd = c->head_dim;
    matmul(f, f->q, f->xb, n, &L->wq, L->bq, prec);
    matmul(f, f->k, f->xb, n, &L->wk, L->bk, prec);
    matmul(f, f->v, f->xb, n, &L->wv, L->bv, prec);
    if (c->qk_norm) { /* RMSNorm over each head's vector */
        o->rmsnorm(o->ctx, f->q, f->q, L->q_norm, n * c->n_heads, hd, c->rms_eps);
        o->rmsnorm(o->ctx, f->k, f->k, L->k_norm, n * c->n_kv_heads, hd, c->rms_eps);
    }
    if (f->cap_n && f->cap_row0 + f->cap_n <= n) { /* chunk encoding: K before RoPE */
        size_t kvd = (size_t)c->n_kv_heads * hd, rows = (size_t)f->cap_n;
        memcpy(f->cap_k + (size_t)l * rows * kvd, f->k + (size_t)f->cap_row0 * kvd, rows * kvd * 4);
        memcpy(f->cap_v + (size_t)l * rows * kvd, f->v + (size_t)f->cap_row0 * kvd, rows * kvd * 4);
    }
    o->rope(o->ctx, f->q, f->pos, n, c->n_heads, hd, m->inv_freq);
    o->rope(o->ctx, f->k, f->pos, n, c->n_kv_heads, hd, m->inv_freq);
    o->kv_write(o->ctx, f->kv->k[l], f->kv->v[l], f->k, f->v, f->slot, n, c->n_kv_heads, hd,
                f->kv->block_size);
    double t_attn = now_ms();
    float scale = 1.0f / sqrtf((float)hd);
    ts_attn a = {.out = f->att, .q = f->q, .k = f->kv->k[l], .v = f->kv->v[l],
                 .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = hd,
                 .block_size = f->kv->block_size, .scale = scale, .causal = true,
                 .n_seq = n_seqs, .seqs = f->aseq};
    if (f->used_cascade) a.lse = f->lse; /* own slots (from kv_start) first */
    o->attention(o->ctx, &a);
    for (int i = 0; f->used_cascade && i < f->plan.n_levels; i++) {
        /* each shared prefix once for every query row that sees it */
        const ts_cascade_level *L = &f->plan.levels[i];
        const int32_t *rows = f->plan.rows + L->row_start;
        ts_attn_shared sh = {.out = f->att2, .lse = f->lse2, .q = f->q, .rows = rows,
                             .n_rows = L->n_rows, .k = a.k, .v = a.v, .blocks = L->blocks,
                             .n_kv = L->n_kv, .n_heads = c->n_heads,
                             .n_kv_heads = c->n_kv_heads, .head_dim = hd,
                             .block_size = f->kv->block_size, .scale = scale};
        o->attention_shared(o->ctx, &sh);
        ts_attn_merge_rows(f->att, f->lse, f->att2, f->lse2, rows, L->n_rows, c->n_heads, hd);
    }
    f->times.attention_ms += now_ms() - t_attn;
    matmul(f, f->tmp, f->att, n, &L->wo, L->bo, prec);
}

ts_status ts_fwd_run(ts_fwd *f, const ts_fwd_seq *seqs, int n_seqs, const float **logits,
                     ts_err *err) {
    const ts_model *m = f->m;
    const ts_model_config *c = &m->cfg;
    const ts_ops *o = f->ops;
    int n = 0, n_logits = 0;
    if (n_seqs < 1) return ts_fail(err, TS_ERR_INVALID, "forward: empty batch");
    double t_start = now_ms();
    ts_status st = prepare(f, seqs, n_seqs, &n, &n_logits, err);
    if (st) return st;
    ts_prec prec = n >= f->prec_min_rows ? f->prec : TS_PREC_F32;
    if ((st = plan_cascade(f, seqs, n_seqs, err))) return st;
    int H = c->hidden;

    o->embed(o->ctx, f->x, &m->embed, f->ids, n);
    if (f->hook) f->hook(f->hook_ctx, 0, f->x, n, H);
    for (int l = 0; l < c->n_layers; l++) {
        const ts_layer *L = &m->layers[l];
        if (l == 0) {
            o->rmsnorm(o->ctx, f->xb, f->x, L->attn_norm, n, H, c->rms_eps);
        } else { /* x += previous MLP output; xb = norm(x) */
            o->add_rmsnorm(o->ctx, f->xb, f->x, f->tmp, L->attn_norm, n, H, c->rms_eps);
            if (f->hook) f->hook(f->hook_ctx, l, f->x, n, H);
        }
        attention_block(f, l, n, n_seqs, prec);
        o->add_rmsnorm(o->ctx, f->xb, f->x, f->tmp, L->ffn_norm, n, H, c->rms_eps);
        matmul(f, f->gate, f->xb, n, &L->w_gate, NULL, prec);
        matmul(f, f->up, f->xb, n, &L->w_up, NULL, prec);
        o->swiglu(o->ctx, f->gate, f->gate, f->up, n, c->ffn);
        matmul(f, f->tmp, f->gate, n, &L->w_down, NULL, prec);
    }
    o->add_rmsnorm(o->ctx, f->xb, f->x, f->tmp, m->final_norm, n, H, c->rms_eps);
    if (f->hook) {
        f->hook(f->hook_ctx, c->n_layers, f->x, n, H);
        f->hook(f->hook_ctx, c->n_layers + 1, f->xb, n, H); /* after the final norm */
    }
    /* gather the rows whose logits are wanted, then one LM-head product */
    int r = 0, row = 0;
    for (int s = 0; s < n_seqs; s++) {
        row += seqs[s].n;
        for (int i = row - seqs[s].n_logits; i < row; i++, r++)
            memcpy(f->rows + (size_t)r * H, f->xb + (size_t)i * H, (size_t)H * 4);
    }
    if (n_logits) matmul(f, f->logits, f->rows, n_logits, &m->lm_head, NULL, prec);
    f->times.total_ms += now_ms() - t_start;
    *logits = f->logits;
    return TS_OK;
}
