#include "engine/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/err.h"

ts_runtime_opts ts_runtime_opts_default(void) {
    return (ts_runtime_opts){.n_threads = 0, .kv_bytes = 0, .block_size = 16,
                             .isa = TS_ISA_AUTO, .fast_prefill = true};
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
    if (o.n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        o.n_threads = nc > 0 ? (int)nc : 1;
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
    size_t bb = ts_kv_block_bytes(c->n_layers, c->n_kv_heads, c->head_dim, o.block_size);
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
    s = ts_kv_create(c->n_layers, c->n_kv_heads, c->head_dim, o.block_size, (int32_t)n_blocks,
                     &rt->kv, err);
    if (s) goto fail;
    rt->fwd = ts_fwd_create(rt->model, rt->ops, rt->kv);
    if (!rt->fwd) {
        s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* bf16 products only pay with native bf16 dot products (AVX-512 BF16);
     * elsewhere rounding the activations costs time and buys nothing */
    if (o.fast_prefill && ts_cpu_isa_used(rt->cpu) == TS_ISA_AVX512)
        ts_fwd_set_prec(rt->fwd, TS_PREC_BF16, 16);
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
