/* ts_runtime: a loaded model with everything needed to run it on one
 * device (tokenizer, chat template, thread pool, backend ops, KV pool,
 * forward workspace). The engine and the CLI build on this. */
#ifndef TS_ENGINE_RUNTIME_H
#define TS_ENGINE_RUNTIME_H

#include "base/pool.h"
#include "kv/kv.h"
#include "model/forward.h"
#include "model/model.h"
#include "ops/cpu/cpu.h"
#include "tok/chat.h"
#include "tok/tokenizer.h"

typedef struct ts_runtime_opts {
    int n_threads;          /* 0 = all cores */
    uint64_t kv_bytes;      /* KV pool budget; 0 = enough for 8 full contexts, capped at 2 GiB */
    int block_size;         /* tokens per KV block; 0 = 16 */
    ts_cpu_isa isa;         /* TS_ISA_AUTO unless testing */
    bool fast_prefill;      /* bf16 activations for prefill matrix products */
    ts_progress_fn progress;/* loading progress (may be NULL) */
    void *progress_ctx;
} ts_runtime_opts;

typedef struct ts_runtime {
    ts_model *model;
    ts_tokenizer *tok;
    ts_chat *chat;          /* NULL when the model has no chat template */
    ts_pool *pool;
    ts_cpu *cpu;
    const ts_ops *ops;
    ts_kv *kv;
    ts_fwd *fwd;
    int32_t eos[TS_MAX_EOS + 1];
    int n_eos;
} ts_runtime;

ts_runtime_opts ts_runtime_opts_default(void);
ts_status ts_runtime_open(const char *model_dir, const ts_runtime_opts *opts, ts_runtime **out,
                          ts_err *err);
void ts_runtime_close(ts_runtime *rt);
bool ts_runtime_is_eos(const ts_runtime *rt, int32_t id);

#endif
