#include "engine/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "ops/cuda/cuda.h"

/* The CUDA backend is linked only in `make CUDA=1` builds (the Makefile then
 * forces ts_cuda_create into the link); elsewhere these weak references
 * resolve to NULL and "cuda" is refused with a message. */
#pragma weak ts_cuda_create
#pragma weak ts_cuda_destroy
#pragma weak ts_cuda_ops
#pragma weak ts_cuda_host_ops
#pragma weak ts_cuda_device_name

ts_runtime_opts ts_runtime_opts_default(void) {
    return (ts_runtime_opts){.n_threads = 0, .kv_bytes = 0, .block_size = 16,
                             .isa = TS_ISA_AUTO, .fast_prefill = true};
}

/* ---- uploading the model to the device ---- */

typedef struct dev_up {
    const ts_ops *o;
    char *base;       /* device arena; NULL while counting */
    size_t off;
    ts_status st;
    ts_err *err;
} dev_up;

/* Reserves bytes in the arena (256-byte aligned) and, in the second pass,
 * uploads host there; returns the device address (NULL for no data). */
static const void *put(dev_up *u, const void *host, size_t bytes) {
    if (!host || !bytes) return NULL;
    size_t at = u->off;
    u->off += (bytes + 255) & ~(size_t)255;
    if (!u->base || u->st) return NULL;
    u->st = u->o->upload(u->o->ctx, u->base + at, host, bytes, u->err);
    return u->base + at;
}

static void put_wmat(dev_up *u, ts_wmat *w) {
    size_t es = w->dtype == TS_DT_F32 ? 4 : (w->dtype == TS_DT_F16 || w->dtype == TS_DT_BF16) ? 2 : 0;
    if (!es && !u->st)
        u->st = ts_fail(u->err, TS_ERR_UNSUPPORTED, "cuda: weight dtype %d is not supported",
                        (int)w->dtype);
    w->data = put(u, w->data, (size_t)w->rows * (size_t)w->cols * es);
}

/* Fills d (a copy of m with its own layers array) with device pointers. */
static void put_model(dev_up *u, const ts_model *m, ts_model *d) {
    const ts_model_config *c = &m->cfg;
    size_t H = (size_t)c->hidden * 4, hd = (size_t)c->head_dim * 4;
    size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd;
    memcpy(d->layers, m->layers, (size_t)c->n_layers * sizeof *d->layers);
    d->embed = m->embed;
    put_wmat(u, &d->embed);
    d->lm_head = m->lm_head;
    if (m->lm_head.data == m->embed.data) d->lm_head.data = d->embed.data; /* tied */
    else put_wmat(u, &d->lm_head);
    d->final_norm = put(u, m->final_norm, H);
    d->inv_freq = (float *)put(u, m->inv_freq, (size_t)(c->head_dim / 2) * 4);
    for (int l = 0; l < c->n_layers; l++) {
        const ts_layer *s = &m->layers[l];
        ts_layer *L = &d->layers[l];
        L->attn_norm = put(u, s->attn_norm, H);
        L->ffn_norm = put(u, s->ffn_norm, H);
        L->q_norm = put(u, s->q_norm, hd);
        L->k_norm = put(u, s->k_norm, hd);
        L->bq = put(u, s->bq, qd);
        L->bk = put(u, s->bk, kvd);
        L->bv = put(u, s->bv, kvd);
        L->bo = put(u, s->bo, H);
        ts_wmat *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) put_wmat(u, w[i]);
    }
}

/* Creates the CUDA backend, uploads the model and points rt at them. */
static ts_status open_cuda(ts_runtime *rt, const char *device, ts_err *err) {
    if (!ts_cuda_create || !ts_cuda_ops || !ts_cuda_host_ops || !ts_cuda_destroy)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "--device %s: this build has no CUDA backend; rebuild with make CUDA=1",
                       device);
    int dev = 0;
    if (device[4] == ':') {
        char *end;
        long v = strtol(device + 5, &end, 10);
        if (!device[5] || *end || v < 0 || v > 1024)
            return ts_fail(err, TS_ERR_INVALID, "--device %s: expected cuda or cuda:N", device);
        dev = (int)v;
    } else if (device[4]) {
        return ts_fail(err, TS_ERR_INVALID, "--device %s: expected cpu, cuda or cuda:N", device);
    }
    ts_err cerr;
    rt->gpu = ts_cuda_create(dev, &cerr);
    if (!rt->gpu) return ts_fail(err, TS_ERR_UNSUPPORTED, "--device %s: %s", device, cerr.msg);
    rt->dev_ops = ts_cuda_ops(rt->gpu);
    rt->ops = ts_cuda_host_ops(rt->gpu);
    const ts_model *m = rt->model;
    ts_model *d = malloc(sizeof *d);
    ts_layer *layers = calloc((size_t)m->cfg.n_layers, sizeof *layers);
    if (!d || !layers) {
        free(d);
        free(layers);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    *d = *m;
    d->st = NULL;    /* owns nothing: the host model keeps the mappings */
    d->small = NULL;
    d->layers = layers;
    rt->dev_model = d;
    dev_up u = {.o = rt->dev_ops, .err = err};
    put_model(&u, m, d); /* count */
    if (u.st) return u.st;
    size_t total = u.off;
    rt->dev_weights = rt->dev_ops->dev_alloc(rt->dev_ops->ctx, total);
    if (!rt->dev_weights) {
        ts_err e2;
        rt->dev_ops->sync(rt->dev_ops->ctx, &e2);
        return ts_fail(err, TS_ERR_NOMEM, "--device %s: cannot hold the weights (%zu MiB): %s",
                       device, total >> 20, e2.msg);
    }
    u = (dev_up){.o = rt->dev_ops, .base = rt->dev_weights, .err = err};
    put_model(&u, m, d);
    if (u.st) return u.st;
    rt->kv_mem = (ts_kv_mem){.alloc = rt->dev_ops->dev_alloc, .free = rt->dev_ops->dev_free,
                             .ctx = rt->dev_ops->ctx};
    return TS_OK;
}

const char *ts_runtime_device_name(const ts_runtime *rt) {
    if (rt->gpu && ts_cuda_device_name) return ts_cuda_device_name(rt->gpu);
    return "cpu";
}

static void add_eos(ts_runtime *rt, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < rt->n_eos; i++)
        if (rt->eos[i] == id) return;
    if (rt->n_eos < TS_MAX_EOS + 1) rt->eos[rt->n_eos++] = id;
}

ts_status ts_runtime_open(const char *dir, const ts_runtime_opts *opts, ts_runtime **out,
                          ts_err *err) {
    *out = NULL;
    ts_runtime_opts o = opts ? *opts : ts_runtime_opts_default();
    if (o.block_size <= 0) o.block_size = 16;
    if (!o.device) o.device = getenv("TS_DEVICE"); /* runtimes opened by the engine */
    bool cuda = o.device && !strncmp(o.device, "cuda", 4);
    if (o.device && !cuda && strcmp(o.device, "cpu"))
        return ts_fail(err, TS_ERR_INVALID, "--device %s: expected cpu, cuda or cuda:N", o.device);
    if (o.n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        o.n_threads = cuda ? 1 : nc > 0 ? (int)nc : 1; /* on a GPU the CPU only helps */
    }
    if (o.n_threads > 256) return ts_fail(err, TS_ERR_INVALID, "--threads: at most 256");
    ts_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    char path[4200];
    ts_status s = ts_model_load(dir, &rt->model, o.progress, o.progress_ctx, err);
    if (!s) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        s = ts_tok_load_dir(dir, &rt->tok, err);
    }
    if (s) goto fail;
    const ts_model_config *c = &rt->model->cfg;
    if (ts_tok_n_vocab(rt->tok) > c->vocab) {
        s = ts_fail(err, TS_ERR_FORMAT,
                    "%s: the tokenizer has %d ids but the model only %d", path,
                    ts_tok_n_vocab(rt->tok), c->vocab);
        goto fail;
    }
    ts_err cerr;
    if (ts_chat_load(dir, &rt->chat, &cerr) != TS_OK) rt->chat = NULL; /* chat is optional */
    for (int i = 0; i < c->n_eos; i++) add_eos(rt, c->eos_ids[i]);

    rt->pool = ts_pool_create(o.n_threads);
    rt->cpu = rt->pool ? ts_cpu_create(rt->pool, o.isa) : NULL;
    if (!rt->cpu) {
        s = ts_fail(err, TS_ERR_NOMEM, "cannot start %d threads", o.n_threads);
        goto fail;
    }
    rt->ops = ts_cpu_ops(rt->cpu);
    if (cuda && (s = open_cuda(rt, o.device, err))) goto fail;
    ts_dtype kvt = TS_DT_F32;
    if (!o.kv_dtype) o.kv_dtype = getenv("TS_KV_DTYPE");
    if (o.kv_dtype && (!strcmp(o.kv_dtype, "f16") || !strcmp(o.kv_dtype, "bf16"))) {
        kvt = o.kv_dtype[0] == 'f' ? TS_DT_F16 : TS_DT_BF16;
        if (!(rt->gpu ? rt->dev_ops : rt->ops)->kv_half) {
            s = ts_fail(err, TS_ERR_INVALID, "--kv-dtype %s: the %s backend keeps f32 KV only",
                        o.kv_dtype, o.device);
            goto fail;
        }
    } else if (o.kv_dtype && *o.kv_dtype && strcmp(o.kv_dtype, "f32")) {
        s = ts_fail(err, TS_ERR_INVALID, "--kv-dtype %s: expected f32, f16 or bf16", o.kv_dtype);
        goto fail;
    }
    size_t bb = ts_kv_block_bytes(c->n_layers, c->n_kv_heads, c->head_dim, o.block_size, kvt);
    uint64_t budget = o.kv_bytes;
    if (!budget) {
        budget = (uint64_t)bb * ((uint64_t)c->max_pos * 8 / (uint64_t)o.block_size + 1);
        if (budget > (2ull << 30)) budget = 2ull << 30;
    }
    uint64_t n_blocks = budget / bb;
    if (n_blocks < 1) {
        s = ts_fail(err, TS_ERR_INVALID, "--kv-mem: %llu bytes hold no KV block (one needs %zu)",
                    (unsigned long long)budget, bb);
        goto fail;
    }
    if (n_blocks > (1u << 30)) n_blocks = 1u << 30;
    s = ts_kv_create_mem(c->n_layers, c->n_kv_heads, c->head_dim, o.block_size,
                         (int32_t)n_blocks, kvt, rt->gpu ? &rt->kv_mem : NULL, &rt->kv, err);
    if (s) {
        if (rt->gpu && s == TS_ERR_NOMEM)
            s = ts_fail(err, TS_ERR_NOMEM, "--device %s: no device memory for a %llu MiB KV pool",
                        o.device, (unsigned long long)((uint64_t)n_blocks * bb >> 20));
        goto fail;
    }
    if (rt->gpu)
        rt->fwd = ts_fwd_create(rt->dev_model, rt->dev_ops, rt->kv);
    else
        rt->fwd = ts_fwd_create(rt->model, rt->ops, rt->kv);
    if (!rt->fwd) {
        s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* bf16 products only pay with native bf16 dot products (AVX-512 BF16);
     * elsewhere rounding the activations costs time and buys nothing */
    /* (on CUDA, products stay f32-exact: 3 bf16 parts on the tensor cores) */
    if (!rt->gpu && o.fast_prefill && ts_cpu_isa_used(rt->cpu) == TS_ISA_AVX512)
        ts_fwd_set_prec(rt->fwd, TS_PREC_BF16, 2);
    *out = rt;
    return TS_OK;
fail:
    ts_runtime_close(rt);
    return s;
}

void ts_runtime_close(ts_runtime *rt) {
    if (!rt) return;
    ts_fwd_destroy(rt->fwd);
    ts_kv_destroy(rt->kv);
    if (rt->gpu) {
        rt->dev_ops->dev_free(rt->dev_ops->ctx, rt->dev_weights);
        ts_cuda_destroy(rt->gpu);
    }
    if (rt->dev_model) free(rt->dev_model->layers);
    free(rt->dev_model);
    ts_cpu_destroy(rt->cpu);
    ts_pool_destroy(rt->pool);
    ts_chat_free(rt->chat);
    ts_tok_free(rt->tok);
    ts_model_free(rt->model);
    free(rt);
}

bool ts_runtime_is_eos(const ts_runtime *rt, int32_t id) {
    for (int i = 0; i < rt->n_eos; i++)
        if (rt->eos[i] == id) return true;
    return false;
}
