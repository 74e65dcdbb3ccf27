/* ts_runtime: a loaded model with everything needed to run it on one
 * device (tokenizer, chat template, thread pool, backend ops, KV pool,
 * forward workspace). The engine and the CLI build on this.
 *
 * Devices. opts.device "cpu" (or NULL) runs on the CPU backend. "cuda" (or
 * "cuda:N" for GPU N) runs the forward pass on the CUDA backend: the weights
 * are uploaded once (their dtype kept, bf16 stays bf16; norms, biases and
 * RoPE frequencies f32), the KV pool's storage (kv->k[l], kv->v[l]) and the
 * forward workspace are device memory, while the pool's bookkeeping (block
 * tables, prefix cache) stays on the host. ts_fwd_run still returns host
 * logits, so samplers and the engine are unchanged. The CUDA backend exists
 * only in builds made with `make CUDA=1`; elsewhere "cuda" fails with
 * TS_ERR_UNSUPPORTED and says so. */
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
    const char *device;     /* "cpu", "cuda" or "cuda:N"; NULL: $TS_DEVICE, else "cpu"
                               (ts_engine_opts.device passes one) */
    const char *kv_dtype;   /* KV pool elements, "f32", "f16" or "bf16"; NULL:
                               $TS_KV_DTYPE, else f32 */
} ts_runtime_opts;

typedef struct ts_runtime {
    ts_model *model;
    ts_tokenizer *tok;
    ts_chat *chat;          /* NULL when the model has no chat template */
    ts_pool *pool;
    ts_cpu *cpu;            /* always created (host helpers); runs the model on "cpu" */
    /* ops for code outside the forward pass that works on host rows (chunk
     * placement: rope and kv_write). On the CPU: the CPU backend. On CUDA:
     * ts_cuda_host_ops (rope's x/pos/inv_freq and kv_write's k/v/slot are host
     * arrays; the KV pools are rt->kv's, on the device; other entries take
     * device pointers as ops/cuda/cuda.h says). */
    const ts_ops *ops;
    ts_kv *kv;
    ts_fwd *fwd;
    int32_t eos[TS_MAX_EOS + 1];
    int n_eos;
    /* device state (NULL on the CPU) */
    void *gpu;              /* the ts_cuda backend */
    const ts_ops *dev_ops;  /* its op table (device pointers), used by fwd */
    ts_model *dev_model;    /* model with every tensor pointer on the device */
    void *dev_weights;      /* one device allocation holding them */
    ts_kv_mem kv_mem;       /* device allocator of the KV storage */
} ts_runtime;

ts_runtime_opts ts_runtime_opts_default(void);
/* Opens the model in model_dir on opts->device (see above). Errors: bad
 * options (TS_ERR_INVALID), checkpoint problems, no CUDA backend in this
 * build or no usable GPU (TS_ERR_UNSUPPORTED), device memory (TS_ERR_NOMEM). */
ts_status ts_runtime_open(const char *model_dir, const ts_runtime_opts *opts, ts_runtime **out,
                          ts_err *err);
void ts_runtime_close(ts_runtime *rt);
bool ts_runtime_is_eos(const ts_runtime *rt, int32_t id);
/* "cpu", or the GPU's name for a CUDA runtime (for reports). */
const char *ts_runtime_device_name(const ts_runtime *rt);

#endif
