#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "model/cascade.h"

/* Largest token count of a step replayed from graphs. By default 8: the
 * matrix products of up to 8 rows are single kernels (no cuBLAS, no
 * scratch); a backend may offer more (ts_ops.graph_rows), up to this. */
#define TS_FWD_GRAPH_DEFAULT 8
#define TS_FWD_GRAPH_MAX 64

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
    float *logits;   /* [n_logits][vocab] (on the device when dev) */
    int32_t *ids, *pos, *slot; /* [n_tok] views into ib (host) or ib_d (device) */
    ts_attn_seq *aseq;         /* [n_seq] host descriptors; blocks on the device when dev */
    /* host int32 staging: ids, pos, slot [n_tok each], then (dev only) the
     * block tables, the cascade levels' blocks and the cascade rows */
    int32_t *ib;
    size_t cap_ib;
    /* device backend (ops->dev_alloc set): the scratch above lives there */
    bool dev;
    int32_t *ib_d;            /* device copy of ib */
    size_t cap_ib_d;
    const int32_t **lvl_blocks; /* [n_levels] device block tables of the cascade levels */
    const int32_t *rows_d;    /* device copy of plan.rows */
    int cap_lvl;
    float *logits_h;          /* host copy of logits (page-locked when the backend can) */
    bool logits_h_pinned;
    float *hook_x;            /* host copy of the residual stream for the hook */
    size_t cap_hook;
    ts_status dev_st;         /* first failure of a download inside a run */
    ts_err dev_err;
    /* decode graphs (backends with capture): per token count n <= graph_rows,
     * per layer, the ops before attention and those after it, recorded once and
     * replayed; valid while the scratch pointers stay those of generation gen */
    void **graphs;            /* [TS_FWD_GRAPH_MAX][n_layers][2] or NULL */
    /* whole decode steps (every sequence one token and its logits, no cascade,
     * backend with attention_decode): one graph per token count */
    void *step_graphs[TS_FWD_GRAPH_MAX];
    float *dec_part;          /* attention_decode scratch for graph_rows rows */
    float *dl_scratch;        /* decode_layers scratch (one-sequence steps), or NULL */
    ts_dec_layer *dl;         /* [n_layers] its layer table (host) */
    float *dec_big;           /* the same for larger decode batches (not in graphs) */
    int cap_dec_big;          /* sequences dec_big holds */
    bool all_decode;          /* this step: every sequence one token, no cascade */
    bool logits_dev;          /* ts_fwd_set_logits_on_device */
    int n_logits_last;        /* logit rows of the last run */
    void *smp_d;              /* device: rows, ids of ts_fwd_sample */
    size_t cap_smp;
    const int32_t *info_d;    /* device [n_seq][2]: block table offset in ib_d, n_kv */
    const int32_t *own_d;     /* cascade steps: the same from each sequence's kv_start
                                 (a block boundary): its own slots only */
    int own_max;              /* the most own slots of a sequence this step */
    bool graphs_on;
    int graph_rows;           /* steps of up to this many rows use graphs */
    bool graph_warm[TS_FWD_GRAPH_MAX]; /* a step of n rows (n > 8) ran uncaptured once */
    uint64_t gen, graph_gen;  /* scratch generation; the one graphs were recorded in */
    uint64_t graph_ep;        /* the backend's graph_epoch they were recorded in */
};


/* Scratch memory: the backend's device memory when it has one, else host. */
static void *s_alloc(ts_fwd *f, size_t bytes) {
    if (f->dev) return f->ops->dev_alloc(f->ops->ctx, bytes ? bytes : 4);
    return malloc(bytes ? bytes : 1);
}

static void s_free(ts_fwd *f, void *p) {
    if (!p) return;
    if (f->dev) f->ops->dev_free(f->ops->ctx, p);
    else free(p);
}

static void free_graphs(ts_fwd *f) {
    for (int i = 0; i < TS_FWD_GRAPH_MAX; i++) {
        if (f->step_graphs[i]) f->ops->graph_free(f->ops->ctx, f->step_graphs[i]);
        f->step_graphs[i] = NULL;
    }
    if (!f->graphs) return;
    size_t n = (size_t)TS_FWD_GRAPH_MAX * f->m->cfg.n_layers * 2;
    for (size_t i = 0; i < n; i++) {
        f->ops->graph_free(f->ops->ctx, f->graphs[i]);
        f->graphs[i] = NULL;
    }
}

/* Drops every recorded graph when memory they point at moved since they
 * were recorded: the forward's scratch (gen) or the backend's (its epoch). */
static void graphs_fresh(ts_fwd *f) {
    /* graphs of up to 8 rows point at no backend scratch */
    uint64_t ep = f->graph_rows > TS_FWD_GRAPH_DEFAULT && f->ops->graph_epoch
                      ? f->ops->graph_epoch(f->ops->ctx) : 0;
    if (f->graph_gen == f->gen && f->graph_ep == ep) return;
    free_graphs(f);
    f->graph_gen = f->gen, f->graph_ep = ep;
}

ts_fwd *ts_fwd_create(const ts_model *m, const ts_ops *ops, ts_kv *kv) {
    ts_fwd *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->m = m;
    f->ops = ops;
    f->kv = kv;
    f->dev = ops->dev_alloc != NULL;
    const char *g = getenv("TS_CUDA_GRAPHS"); /* "0" turns decode graphs off */
    f->graphs_on = f->dev && ops->capture_begin && !(g && !strcmp(g, "0"));
    f->graph_rows = ops->graph_rows > 0 ? ops->graph_rows : TS_FWD_GRAPH_DEFAULT;
    if (f->graph_rows > TS_FWD_GRAPH_MAX) f->graph_rows = TS_FWD_GRAPH_MAX;
    f->prec = TS_PREC_F32;
    f->prec_min_rows = 1 << 30;
    return f;
}

void ts_fwd_destroy(ts_fwd *f) {
    if (!f) return;
    float **sc[] = {&f->x, &f->xb, &f->tmp, &f->q, &f->k, &f->v, &f->att, &f->att2,
                    &f->lse, &f->lse2, &f->gate, &f->up, &f->rows, &f->logits, &f->dec_part, &f->dec_big, &f->dl_scratch};
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) s_free(f, *sc[i]);
    if (f->dev) f->ops->dev_free(f->ops->ctx, f->ib_d);
    if (f->dev) f->ops->dev_free(f->ops->ctx, f->smp_d);
    if (f->logits_h_pinned) f->ops->host_free(f->ops->ctx, f->logits_h);
    else free(f->logits_h);
    free_graphs(f);
    free(f->graphs);
    free(f->dl);
    free(f->ib); free(f->aseq); free(f->lvl_blocks); free(f->hook_x);
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

/* Replaces scratch buffer *p by one of bytes (contents are not kept). */
static int sgrow(ts_fwd *f, float **p, size_t bytes) {
    s_free(f, *p);
    *p = s_alloc(f, bytes);
    return *p != NULL;
}

/* The host staging buffer holds at least n int32 (contents kept). */
static int grow_ib(ts_fwd *f, size_t n) {
    if (n <= f->cap_ib) return 1;
    size_t cap = f->cap_ib ? f->cap_ib : 256;
    while (cap < n) cap *= 2;
    if (!grow((void **)&f->ib, cap * sizeof *f->ib)) return 0;
    f->cap_ib = cap;
    return 1;
}

static ts_status reserve(ts_fwd *f, int n_tok, int n_seq, int n_logits, ts_err *err) {
    const ts_model_config *c = &f->m->cfg;
    int ok = 1;
    if (n_tok > f->cap_tok) {
        size_t t = (size_t)n_tok;
        size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
        ok = sgrow(f, &f->x, t * c->hidden * 4) && sgrow(f, &f->xb, t * c->hidden * 4) &&
             sgrow(f, &f->tmp, t * c->hidden * 4) && sgrow(f, &f->q, t * qd * 4) &&
             sgrow(f, &f->k, t * kvd * 4) && sgrow(f, &f->v, t * kvd * 4) &&
             sgrow(f, &f->att, t * qd * 4) && sgrow(f, &f->att2, t * qd * 4) &&
             sgrow(f, &f->lse, t * c->n_heads * 4) && sgrow(f, &f->lse2, t * c->n_heads * 4) &&
             sgrow(f, &f->gate, t * c->ffn * 4) && sgrow(f, &f->up, t * c->ffn * 4);
        f->gen++;
        if (ok) f->cap_tok = n_tok;
    }
    if (ok && n_seq > f->cap_seq) {
        ok = grow((void **)&f->aseq, (size_t)n_seq * sizeof *f->aseq);
        if (ok) f->cap_seq = n_seq;
    }
    if (ok && n_logits > f->cap_logits) {
        size_t lb = (size_t)n_logits * c->vocab * 4;
        ok = sgrow(f, &f->rows, (size_t)n_logits * c->hidden * 4) && sgrow(f, &f->logits, lb);
        f->gen++; /* step graphs write the logits */
        if (ok && f->dev) {
            if (f->logits_h_pinned) f->ops->host_free(f->ops->ctx, f->logits_h);
            else free(f->logits_h);
            f->logits_h = f->ops->host_alloc ? f->ops->host_alloc(f->ops->ctx, lb) : NULL;
            f->logits_h_pinned = f->logits_h != NULL;
            if (!f->logits_h) f->logits_h = malloc(lb);
            ok = f->logits_h != NULL;
        }
        if (ok) f->cap_logits = n_logits;
    }
    /* ids, pos, slot */
    ok = ok && grow_ib(f, 3 * (size_t)n_tok);
    if (!ok) {
        f->cap_tok = f->cap_logits = 0; /* buffers may be half replaced: redo next time */
        if (f->dev && f->ops->sync) {
            ts_err derr;
            if (f->ops->sync(f->ops->ctx, &derr))
                return ts_fail(err, TS_ERR_NOMEM, "forward: no device memory for %d tokens (%s)",
                               n_tok, derr.msg);
        }
        return ts_fail(err, TS_ERR_NOMEM, "forward: out of memory for %d tokens", n_tok);
    }
    f->ids = f->ib;
    f->pos = f->ib + n_tok;
    f->slot = f->ib + 2 * (size_t)n_tok;
    return TS_OK;
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
/* On a device backend, auto mode also wants (sharers - 1) x shared slots >=
 * this: on the H100 (bench-shared, Qwen3-0.6B shape, gen 32) cascade decode
 * ran 0.96x / 0.95x flat at 8 / 16 requests x 1024 shared slots (7k, 15k
 * saved) and 1.29x / 1.85x / 2.86x at 64 x 1024, 16 x 4096, 64 x 4096
 * (64k, 61k, 258k). */
#define TS_CASCADE_DEV_MIN_SAVED 32768L

/* Decides cascade levels for this batch and sets each sequence's kv_start. */
static ts_status plan_cascade(ts_fwd *f, const ts_fwd_seq *seqs, int n_seqs, ts_err *err) {
    f->used_cascade = false;
    if (f->cascade == 0 || n_seqs < 2) return TS_OK;
    int bs = f->kv->block_size;
    ts_cascade_rule rule = {.min_sharers = 2,
                            .min_blocks = f->cascade > 0 ? 1 : (TS_CASCADE_MIN_SLOTS + bs - 1) / bs,
                            .min_saved = f->cascade < 0 && f->dev ? TS_CASCADE_DEV_MIN_SAVED : 0};
    int lv = ts_cascade_plan_build(&f->plan, seqs, n_seqs, bs, rule);
    if (lv < 0) return ts_fail(err, TS_ERR_NOMEM, "forward: out of memory planning attention");
    if (lv == 0) return TS_OK;
    for (int s = 0; s < n_seqs; s++) f->aseq[s].kv_start = f->plan.kv_start[s];
    f->used_cascade = true;
    return TS_OK;
}

/* Device backend: copies ids, pos, slot, every block table, the cascade
 * levels' block tables and rows to the device in one upload, and points the
 * descriptors (aseq, lvl_blocks, rows_d) at the device copies. */
static ts_status stage_dev(ts_fwd *f, const ts_fwd_seq *seqs, int n_seqs, int n, ts_err *err) {
    int bs = f->kv->block_size;
    size_t need = 3 * (size_t)n + 4 * (size_t)n_seqs;
    for (int s = 0; s < n_seqs; s++)
        need += (size_t)(seqs[s].n_past + seqs[s].n + bs - 1) / bs;
    int nl = f->used_cascade ? f->plan.n_levels : 0;
    for (int i = 0; i < nl; i++) need += (size_t)(f->plan.levels[i].n_kv + bs - 1) / bs;
    if (nl) need += (size_t)f->plan.n_rows;
    if (!grow_ib(f, need)) return ts_fail(err, TS_ERR_NOMEM, "forward: out of memory");
    if (nl > f->cap_lvl) {
        if (!grow((void **)&f->lvl_blocks, (size_t)nl * sizeof *f->lvl_blocks))
            return ts_fail(err, TS_ERR_NOMEM, "forward: out of memory");
        f->cap_lvl = nl;
    }
    if (need > f->cap_ib_d) {
        f->ops->dev_free(f->ops->ctx, f->ib_d);
        f->cap_ib_d = 0;
        f->ib_d = f->ops->dev_alloc(f->ops->ctx, f->cap_ib * sizeof *f->ib);
        f->gen++;
        if (!f->ib_d) {
            ts_status st = f->ops->sync(f->ops->ctx, err);
            return st ? st : ts_fail(err, TS_ERR_NOMEM, "forward: no device memory");
        }
        f->cap_ib_d = f->cap_ib;
    }
    /* ib holds ids, pos, slot already; append the tables, remembering offsets
     * in the descriptors as device pointers */
    size_t off = 3 * (size_t)n, info = off, own = off + 2 * (size_t)n_seqs;
    off += 4 * (size_t)n_seqs;
    f->own_max = 0;
    for (int s = 0; s < n_seqs; s++) {
        size_t nb = (size_t)(seqs[s].n_past + seqs[s].n + bs - 1) / bs;
        int n_kv = seqs[s].n_past + seqs[s].n, ks = f->aseq[s].kv_start; /* ks % bs == 0 */
        memcpy(f->ib + off, seqs[s].blocks, nb * sizeof *f->ib);
        f->aseq[s].blocks = f->ib_d + off;
        f->ib[info + 2 * (size_t)s] = (int32_t)off;
        f->ib[info + 2 * (size_t)s + 1] = n_kv;
        f->ib[own + 2 * (size_t)s] = (int32_t)off + ks / bs;
        f->ib[own + 2 * (size_t)s + 1] = n_kv > ks ? n_kv - ks : 0;
        if (n_kv - ks > f->own_max) f->own_max = n_kv - ks;
        off += nb;
    }
    f->info_d = f->ib_d + info;
    f->own_d = f->ib_d + own;
    for (int i = 0; i < nl; i++) {
        size_t nb = (size_t)(f->plan.levels[i].n_kv + bs - 1) / bs;
        memcpy(f->ib + off, f->plan.levels[i].blocks, nb * sizeof *f->ib);
        f->lvl_blocks[i] = f->ib_d + off;
        off += nb;
    }
    if (nl) {
        memcpy(f->ib + off, f->plan.rows, (size_t)f->plan.n_rows * sizeof *f->ib);
        f->rows_d = f->ib_d + off;
        off += (size_t)f->plan.n_rows;
    }
    ts_status st = f->ops->upload(f->ops->ctx, f->ib_d, f->ib, off * sizeof *f->ib, err);
    if (st) return st;
    f->ids = f->ib_d;
    f->pos = f->ib_d + n;
    f->slot = f->ib_d + 2 * (size_t)n;
    return TS_OK;
}

/* Records the first failure of a device copy made during a run. */
static void dev_fail(ts_fwd *f, ts_status st, const ts_err *e) {
    if (st && !f->dev_st) {
        f->dev_st = st;
        f->dev_err = *e;
    }
}

/* Calls the hook with a host view of x[n_tok][hidden]. */
static void call_hook(ts_fwd *f, int layer, const float *x, int n_tok, int hidden) {
    if (!f->dev) {
        f->hook(f->hook_ctx, layer, x, n_tok, hidden);
        return;
    }
    size_t bytes = (size_t)n_tok * hidden * sizeof(float);
    ts_err e;
    if (bytes > f->cap_hook) {
        if (!grow((void **)&f->hook_x, bytes)) {
            dev_fail(f, ts_fail(&e, TS_ERR_NOMEM, "forward: out of memory for the hook"), &e);
            return;
        }
        f->cap_hook = bytes;
    }
    ts_status st = f->ops->download(f->ops->ctx, f->hook_x, x, bytes, &e);
    dev_fail(f, st, &e);
    if (!st) f->hook(f->hook_ctx, layer, f->hook_x, n_tok, hidden);
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

/* Layer l up to attention: the sublayer's norm (folding in the previous MLP
 * output), q/k/v, q/k-norm, RoPE and the KV write. */
static void layer_pre(ts_fwd *f, int l, int n, ts_prec prec) {
    const ts_model *m = f->m;
    const ts_model_config *c = &m->cfg;
    const ts_ops *o = f->ops;
    const ts_layer *L = &m->layers[l];
    int hd = c->head_dim;
    if (l == 0) {
        o->rmsnorm(o->ctx, f->xb, f->x, L->attn_norm, n, c->hidden, c->rms_eps);
    } else { /* x += previous MLP output; xb = norm(x) */
        o->add_rmsnorm(o->ctx, f->xb, f->x, f->tmp, L->attn_norm, n, c->hidden, c->rms_eps);
        if (f->hook) call_hook(f, l, f->x, n, c->hidden);
    }
    if (o->matmul_multi) { /* q, k and v in one pass over xb */
        double t = now_ms();
        float *const ys[3] = {f->q, f->k, f->v};
        const ts_wmat ws[3] = {L->wq, L->wk, L->wv};
        const float *const bs[3] = {L->bq, L->bk, L->bv};
        o->matmul_multi(o->ctx, ys, f->xb, n, ws, bs, 3, prec);
        f->times.matmul_ms += now_ms() - t;
    } else {
        matmul(f, f->q, f->xb, n, &L->wq, L->bq, prec);
        matmul(f, f->k, f->xb, n, &L->wk, L->bk, prec);
        matmul(f, f->v, f->xb, n, &L->wv, L->bv, prec);
    }
    bool capture = f->cap_n && f->cap_row0 + f->cap_n <= n;
    if (o->qk_rope_kv && !capture) { /* norm, RoPE and the KV write in one op */
        o->qk_rope_kv(o->ctx, f->q, f->k, f->v, c->qk_norm ? L->q_norm : NULL,
                      c->qk_norm ? L->k_norm : NULL, c->rms_eps, f->pos, m->inv_freq,
                      f->kv->k[l], f->kv->v[l], f->kv->dtype, f->slot, n, c->n_heads,
                      c->n_kv_heads, hd, f->kv->block_size);
        return;
    }
    if (c->qk_norm) { /* RMSNorm over each head's vector */
        o->rmsnorm(o->ctx, f->q, f->q, L->q_norm, n * c->n_heads, hd, c->rms_eps);
        o->rmsnorm(o->ctx, f->k, f->k, L->k_norm, n * c->n_kv_heads, hd, c->rms_eps);
    }
    if (capture) { /* chunk encoding: K before RoPE */
        size_t kvd = (size_t)c->n_kv_heads * hd, rows = (size_t)f->cap_n;
        float *dk = f->cap_k + (size_t)l * rows * kvd, *dv = f->cap_v + (size_t)l * rows * kvd;
        const float *sk = f->k + (size_t)f->cap_row0 * kvd, *sv = f->v + (size_t)f->cap_row0 * kvd;
        if (f->dev) { /* the capture buffers are host memory */
            ts_err e;
            ts_status st = f->ops->download(o->ctx, dk, sk, rows * kvd * 4, &e);
            if (!st) st = f->ops->download(o->ctx, dv, sv, rows * kvd * 4, &e);
            dev_fail(f, st, &e);
        } else {
            memcpy(dk, sk, rows * kvd * 4);
            memcpy(dv, sv, rows * kvd * 4);
        }
    }
    o->rope(o->ctx, f->q, f->pos, n, c->n_heads, hd, m->inv_freq);
    o->rope(o->ctx, f->k, f->pos, n, c->n_kv_heads, hd, m->inv_freq);
    o->kv_write(o->ctx, f->kv->k[l], f->kv->v[l], f->kv->dtype, f->k, f->v, f->slot, n,
                c->n_kv_heads, hd, f->kv->block_size);
}

/* Level i of layer l's cascade as attention_shared's arguments, writing
 * att2 / lse2 (device tables and rows on a device backend). */
static ts_attn_shared level_args(const ts_fwd *f, int l, int i, float scale) {
    const ts_model_config *c = &f->m->cfg;
    const ts_cascade_level *L = &f->plan.levels[i];
    return (ts_attn_shared){.out = f->att2, .lse = f->lse2, .q = f->q,
                            .rows = (f->dev ? f->rows_d : f->plan.rows) + L->row_start,
                            .n_rows = L->n_rows, .k = f->kv->k[l], .v = f->kv->v[l],
                            .kv_dtype = f->kv->dtype,
                            .blocks = f->dev ? f->lvl_blocks[i] : L->blocks, .n_kv = L->n_kv,
                            .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                            .head_dim = c->head_dim, .block_size = f->kv->block_size,
                            .scale = scale};
}

/* Own slots a sequence may have for a decode step's cascade to run as one
 * attention_cascade op (which attends them in a block a row and head). */
#define TS_CASCADE_OWN_MAX 256

/* A decode step whose one cascade level holds every sequence, as one
 * attention_cascade op straight into att / lse; false (nothing queued)
 * where it does not apply. */
static bool cascade_fused(ts_fwd *f, int l, int n_seqs, float scale) {
    const ts_ops *o = f->ops;
    if (!o->attention_cascade || !f->all_decode || !f->dev || f->plan.n_levels != 1 ||
        f->plan.levels[0].n_rows != n_seqs || f->own_max > TS_CASCADE_OWN_MAX)
        return false;
    ts_attn_shared sh = level_args(f, l, 0, scale);
    sh.out = f->att, sh.lse = f->lse, sh.own_tables = f->ib_d, sh.own_info = f->own_d;
    return o->attention_cascade(o->ctx, &sh);
}

/* Layer l's attention over the paged KV (cascade levels merged in). */
static void layer_attention(ts_fwd *f, int l, int n_seqs) {
    const ts_model_config *c = &f->m->cfg;
    const ts_ops *o = f->ops;
    int hd = c->head_dim;
    double t_attn = now_ms();
    float scale = 1.0f / sqrtf((float)hd);
    ts_attn a = {.out = f->att, .q = f->q, .k = f->kv->k[l], .v = f->kv->v[l],
                 .kv_dtype = f->kv->dtype,
                 .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = hd,
                 .block_size = f->kv->block_size, .scale = scale, .causal = true,
                 .n_seq = n_seqs, .seqs = f->aseq};
    if (f->used_cascade && cascade_fused(f, l, n_seqs, scale)) {
        f->times.attention_ms += now_ms() - t_attn;
        return;
    }
    if (f->used_cascade) a.lse = f->lse; /* own slots (from kv_start) first */
    if (f->all_decode && f->dec_big) /* one query row a sequence: split KV, no planning */
        o->attention_decode(o->ctx, f->att, a.lse, f->dec_big, f->q, a.k, a.v, a.kv_dtype,
                            f->ib_d, f->used_cascade ? f->own_d : f->info_d, n_seqs, c->n_heads,
                            c->n_kv_heads, hd, f->kv->block_size, scale);
    else
        o->attention(o->ctx, &a);
    for (int i = 0; f->used_cascade && i < f->plan.n_levels; i++) {
        /* each shared prefix once for every query row that sees it */
        ts_attn_shared sh = level_args(f, l, i, scale);
        o->attention_shared(o->ctx, &sh);
        if (o->attn_merge_rows)
            o->attn_merge_rows(o->ctx, f->att, f->lse, f->att2, f->lse2, sh.rows, sh.n_rows,
                               c->n_heads, hd);
        else
            ts_attn_merge_rows(f->att, f->lse, f->att2, f->lse2, sh.rows, sh.n_rows, c->n_heads,
                               hd);
    }
    f->times.attention_ms += now_ms() - t_attn;
}

/* Layer l after attention: output projection, residual + norm, MLP. */
static void layer_post(ts_fwd *f, int l, int n, ts_prec prec) {
    const ts_model_config *c = &f->m->cfg;
    const ts_ops *o = f->ops;
    const ts_layer *L = &f->m->layers[l];
    matmul(f, f->tmp, f->att, n, &L->wo, L->bo, prec);
    o->add_rmsnorm(o->ctx, f->xb, f->x, f->tmp, L->ffn_norm, n, c->hidden, c->rms_eps);
    if (o->matmul_swiglu) {
        double t = now_ms();
        o->matmul_swiglu(o->ctx, f->gate, f->xb, n, &L->w_gate, &L->w_up, prec);
        f->times.matmul_ms += now_ms() - t;
    } else {
        matmul(f, f->gate, f->xb, n, &L->w_gate, NULL, prec);
        matmul(f, f->up, f->xb, n, &L->w_up, NULL, prec);
        o->swiglu(o->ctx, f->gate, f->gate, f->up, n, c->ffn);
    }
    matmul(f, f->tmp, f->gate, n, &L->w_down, NULL, prec);
}

/* The layers of a one-sequence decode step as one op (ts_ops.decode_layers);
 * false when the backend declines the shape (nothing was queued). */
static bool decode_layers(ts_fwd *f, float scale) {
    const ts_model_config *c = &f->m->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        const ts_layer *L = &f->m->layers[l];
        f->dl[l] = (ts_dec_layer){.wq = L->wq, .wk = L->wk, .wv = L->wv, .wo = L->wo,
                                  .w_gate = L->w_gate, .w_up = L->w_up, .w_down = L->w_down,
                                  .bq = L->bq, .bk = L->bk, .bv = L->bv, .bo = L->bo,
                                  .attn_norm = L->attn_norm, .ffn_norm = L->ffn_norm,
                                  .q_norm = c->qk_norm ? L->q_norm : NULL,
                                  .k_norm = c->qk_norm ? L->k_norm : NULL,
                                  .k_pool = f->kv->k[l], .v_pool = f->kv->v[l]};
    }
    ts_decode_layers d = {.x = f->x, .q = f->q, .k = f->k, .v = f->v, .att = f->att,
                          .h = f->gate, .scratch = f->dl_scratch, .layers = f->dl,
                          .n_layers = c->n_layers, .hidden = c->hidden, .ffn = c->ffn,
                          .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                          .head_dim = c->head_dim, .block_size = f->kv->block_size,
                          .kv_dtype = f->kv->dtype, .eps = c->rms_eps, .scale = scale,
                          .pos = f->pos, .slot = f->slot, .inv_freq = f->m->inv_freq,
                          .tables = f->ib_d, .info = f->info_d};
    return f->ops->decode_layers(f->ops->ctx, &d);
}

/* A whole decode step of n sequences of one token each, logits of every
 * row: no host decision inside, so that it can be recorded as one graph. */
static void decode_step(ts_fwd *f, int n, ts_prec prec) {
    const ts_model *m = f->m;
    const ts_model_config *c = &m->cfg;
    const ts_ops *o = f->ops;
    float scale = 1.0f / sqrtf((float)c->head_dim);
    o->embed(o->ctx, f->x, &m->embed, f->ids, n);
    if (n == 1 && f->dl_scratch && decode_layers(f, scale)) {
        o->rmsnorm(o->ctx, f->xb, f->x, m->final_norm, n, c->hidden, c->rms_eps);
    } else if (!o->matmul_ex || !o->qk_rope_kv) {
        for (int l = 0; l < c->n_layers; l++) {
            layer_pre(f, l, n, prec);
            o->attention_decode(o->ctx, f->att, NULL, f->dec_part, f->q, f->kv->k[l], f->kv->v[l],
                                f->kv->dtype, f->ib_d, f->info_d, n, c->n_heads, c->n_kv_heads,
                                c->head_dim, f->kv->block_size, scale);
            layer_post(f, l, n, prec);
        }
        o->add_rmsnorm(o->ctx, f->xb, f->x, f->tmp, m->final_norm, n, c->hidden, c->rms_eps);
    } else { /* each norm folded into the products after it, each residual add
              * into the product before it: x stays the residual stream */
        for (int l = 0; l < c->n_layers; l++) {
            const ts_layer *L = &m->layers[l];
            float *const qkv[3] = {f->q, f->k, f->v}, *const xs[1] = {f->x}, *const gs[1] = {f->gate};
            const ts_wmat wqkv[3] = {L->wq, L->wk, L->wv}, wgu[2] = {L->w_gate, L->w_up};
            const float *const bqkv[3] = {L->bq, L->bk, L->bv}, *const bo[1] = {L->bo};
            ts_matmul_ex e = {.y = qkv, .x = f->x, .n = n, .w = wqkv, .bias = bqkv, .n_w = 3,
                              .norm_g = L->attn_norm, .norm_eps = c->rms_eps, .prec = prec};
            o->matmul_ex(o->ctx, &e);
            o->qk_rope_kv(o->ctx, f->q, f->k, f->v, c->qk_norm ? L->q_norm : NULL,
                          c->qk_norm ? L->k_norm : NULL, c->rms_eps, f->pos, m->inv_freq,
                          f->kv->k[l], f->kv->v[l], f->kv->dtype, f->slot, n, c->n_heads,
                          c->n_kv_heads, c->head_dim, f->kv->block_size);
            o->attention_decode(o->ctx, f->att, NULL, f->dec_part, f->q, f->kv->k[l], f->kv->v[l],
                                f->kv->dtype, f->ib_d, f->info_d, n, c->n_heads, c->n_kv_heads,
                                c->head_dim, f->kv->block_size, scale);
            e = (ts_matmul_ex){.y = xs, .x = f->att, .n = n, .w = &L->wo, .bias = bo, .n_w = 1,
                               .accumulate = true, .prec = prec};
            o->matmul_ex(o->ctx, &e);
            e = (ts_matmul_ex){.y = gs, .x = f->x, .n = n, .w = wgu, .n_w = 2, .swiglu = true,
                               .norm_g = L->ffn_norm, .norm_eps = c->rms_eps, .prec = prec};
            o->matmul_ex(o->ctx, &e);
            e = (ts_matmul_ex){.y = xs, .x = f->gate, .n = n, .w = &L->w_down, .n_w = 1,
                               .accumulate = true, .prec = prec};
            o->matmul_ex(o->ctx, &e);
        }
        o->rmsnorm(o->ctx, f->xb, f->x, m->final_norm, n, c->hidden, c->rms_eps);
    }
    matmul(f, f->logits, f->xb, n, &m->lm_head, NULL, prec);
}

typedef void (*layer_part)(ts_fwd *f, int l, int n, ts_prec prec);

/* Runs part (0: layer_pre, 1: layer_post) of layer l, from its graph when
 * graphs are in use (recording it the first time). */
static void run_part(ts_fwd *f, layer_part fn, int part, int l, int n, ts_prec prec, bool graph) {
    if (!graph) {
        fn(f, l, n, prec);
        return;
    }
    const ts_ops *o = f->ops;
    graphs_fresh(f); /* an op between the parts may have moved the backend's scratch */
    void **g = &f->graphs[((size_t)(n - 1) * f->m->cfg.n_layers + (size_t)l) * 2 + (size_t)part];
    if (!*g && o->capture_begin(o->ctx)) {
        fn(f, l, n, prec);
        *g = o->capture_end(o->ctx);
    }
    if (*g) o->replay(o->ctx, *g);
    else fn(f, l, n, prec);
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
    int piece = 0; /* the longest run of new tokens of one sequence */
    for (int i = 0; i < n_seqs; i++)
        if (seqs[i].n > piece) piece = seqs[i].n;
    ts_prec prec = piece >= f->prec_min_rows ? f->prec : TS_PREC_F32;
    if ((st = plan_cascade(f, seqs, n_seqs, err))) return st;
    if (f->dev) {
        if (!f->kv->mem)
            return ts_fail(err, TS_ERR_INVALID,
                           "forward: the %s backend needs a KV pool in device memory", o->name);
        if ((st = stage_dev(f, seqs, n_seqs, n, err))) return st;
        f->dev_st = TS_OK;
    }
    int H = c->hidden;

    /* small steps (decode) replay recorded graphs around attention, whose
     * work items change every step; hooks and chunk capture copy to the host
     * mid-layer, so they run uncaptured */
    bool graph = f->graphs_on && n <= f->graph_rows && prec == TS_PREC_F32 && !f->hook &&
                 !f->cap_n;
    /* above 8 rows the products may be cuBLAS calls or use backend scratch
     * that grows on first use: a step of each size first runs uncaptured
     * once, so that such setup happens outside a capture */
    if (graph && n > TS_FWD_GRAPH_DEFAULT && !f->graph_warm[n - 1]) {
        f->graph_warm[n - 1] = true;
        graph = false;
    }
    if (graph && !f->graphs) {
        f->graphs = calloc((size_t)TS_FWD_GRAPH_MAX * c->n_layers * 2, sizeof *f->graphs);
        graph = f->graphs != NULL;
    }
    /* a whole step as one graph: every sequence one token and its logits */
    bool step = graph && o->attention_decode && !f->used_cascade && n == n_seqs &&
                n_logits == n;
    if (step && !f->dec_part) {
        size_t pb = TS_ATTN_DECODE_PART(f->graph_rows, c->n_heads, c->head_dim) * 4;
        f->dec_part = s_alloc(f, pb);
        f->gen++;
        step = f->dec_part != NULL;
    }
    if (step && n == 1 && o->decode_layers && !f->dl_scratch) {
        f->dl = calloc((size_t)c->n_layers, sizeof *f->dl);
        if (f->dl)
            f->dl_scratch = s_alloc(
                f, TS_DECODE_LAYERS_SCRATCH(c->n_heads, c->n_kv_heads, c->head_dim));
        f->gen++;
    }
    if (graph) graphs_fresh(f); /* scratch moved: record again */
    /* decode steps outside a whole-step graph (too large, or with cascade
     * levels: then over each sequence's own slots) still use attention_decode */
    f->all_decode = !step && f->dev && o->attention_decode && n == n_seqs && !f->cap_n;
    if (f->all_decode && n > f->cap_dec_big) {
        s_free(f, f->dec_big);
        f->dec_big = s_alloc(f, TS_ATTN_DECODE_PART(n, c->n_heads, c->head_dim) * 4);
        f->cap_dec_big = f->dec_big ? n : 0;
    }
    if (step) {
        void **g = &f->step_graphs[n - 1];
        if (!*g && o->capture_begin(o->ctx)) {
            decode_step(f, n, prec);
            *g = o->capture_end(o->ctx);
        }
        if (*g) o->replay(o->ctx, *g);
        else decode_step(f, n, prec);
    } else {
        o->embed(o->ctx, f->x, &m->embed, f->ids, n);
        if (f->hook) call_hook(f, 0, f->x, n, H);
        for (int l = 0; l < c->n_layers; l++) {
            run_part(f, layer_pre, 0, l, n, prec, graph);
            layer_attention(f, l, n_seqs);
            run_part(f, layer_post, 1, l, n, prec, graph);
        }
        o->add_rmsnorm(o->ctx, f->xb, f->x, f->tmp, m->final_norm, n, H, c->rms_eps);
        if (f->hook) {
            call_hook(f, c->n_layers, f->x, n, H);
            call_hook(f, c->n_layers + 1, f->xb, n, H); /* after the final norm */
        }
        /* gather the rows whose logits are wanted (one run per sequence), then
         * one LM-head product */
        int r = 0, row = 0;
        for (int s = 0; s < n_seqs; s++) {
            row += seqs[s].n;
            int k = seqs[s].n_logits;
            if (!k) continue;
            float *dst = f->rows + (size_t)r * H;
            const float *src = f->xb + (size_t)(row - k) * H;
            if (f->dev) o->copy(o->ctx, dst, src, (size_t)k * H * 4);
            else memcpy(dst, src, (size_t)k * H * 4);
            r += k;
        }
        /* logits in f32 precision: their rows are few (one a sequence), so
         * the weight stream, not arithmetic, sets the time */
        if (n_logits) matmul(f, f->logits, f->rows, n_logits, &m->lm_head, NULL, TS_PREC_F32);
    }
    *logits = f->logits;
    f->times.queue_ms += now_ms() - t_start;
    f->n_logits_last = n_logits;
    if (f->dev && f->logits_dev) { /* the caller samples on the device */
        f->times.total_ms += now_ms() - t_start;
        return TS_OK;
    }
    if (f->dev) { /* logits to the host; this also waits for the step */
        if (n_logits)
            st = o->download(o->ctx, f->logits_h, f->logits, (size_t)n_logits * c->vocab * 4, err);
        else
            st = o->sync(o->ctx, err);
        if (!st && f->dev_st) {
            st = f->dev_st;
            if (err) *err = f->dev_err;
        }
        if (st) return st;
        *logits = f->logits_h;
    }
    f->times.total_ms += now_ms() - t_start;
    return TS_OK;
}

bool ts_fwd_can_sample(const ts_fwd *f) { return f->dev && f->ops->sample; }

void ts_fwd_set_logits_on_device(ts_fwd *f, bool on) { f->logits_dev = on && ts_fwd_can_sample(f); }

ts_status ts_fwd_sample(ts_fwd *f, int n_rows, const ts_sample_row *rows, int32_t *ids,
                        ts_err *err) {
    const ts_ops *o = f->ops;
    if (!ts_fwd_can_sample(f))
        return ts_fail(err, TS_ERR_UNSUPPORTED, "forward: the %s backend cannot sample", o->name);
    if (n_rows <= 0 || n_rows != f->n_logits_last)
        return ts_fail(err, TS_ERR_INVALID, "forward: %d rows to sample, the last step has %d",
                       n_rows, f->n_logits_last);
    /* device layout: rows [n], then ids [n] int32 */
    size_t bytes = (size_t)n_rows * (sizeof *rows + sizeof *ids);
    if (bytes > f->cap_smp) {
        o->dev_free(o->ctx, f->smp_d);
        f->smp_d = o->dev_alloc(o->ctx, bytes);
        f->cap_smp = f->smp_d ? bytes : 0;
        if (!f->smp_d) {
            ts_status st = o->sync(o->ctx, err);
            return st ? st : ts_fail(err, TS_ERR_NOMEM, "forward: no device memory");
        }
    }
    ts_sample_row *rows_d = f->smp_d;
    int32_t *id_d = (int32_t *)(rows_d + n_rows);
    ts_status st = o->upload(o->ctx, rows_d, rows, (size_t)n_rows * sizeof *rows, err);
    if (st) return st;
    o->sample(o->ctx, id_d, f->logits, n_rows, f->m->cfg.vocab, rows_d);
    st = o->download(o->ctx, ids, id_d, (size_t)n_rows * sizeof *ids, err);
    if (!st && f->dev_st) {
        st = f->dev_st;
        if (err) *err = f->dev_err;
    }
    return st;
}
