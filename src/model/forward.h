/* The forward pass over a batch of sequences.
 *
 * One call runs any mix of prefill pieces and decode tokens: each sequence
 * contributes n new tokens at explicit RoPE positions, written to the given
 * KV slots, attending causally to everything already in its block table.
 *
 * Backends with device memory (ops->dev_alloc set, e.g. CUDA): the model's
 * weights and f32 vectors and the KV pool's storage must already be device
 * memory (ts_runtime arranges it). The workspace is then allocated on the
 * device; each run uploads ids, positions, slots and the block tables in one
 * copy, runs every op on the device (cascade merges included), and
 * downloads the logits, so *logits is host memory as on the CPU. Hooks and
 * chunk capture get host copies (a download each, for tests and chunk
 * encoding). On backends with capture (CUDA graphs), steps of up to 8
 * tokens replay per layer the ops before and after attention, recorded on
 * first use per token count; TS_CUDA_GRAPHS=0 in the environment (read at
 * ts_fwd_create) runs every op directly. The times split below counts queueing only on such a backend;
 * total_ms includes the wait for the step. */
#ifndef TS_MODEL_FORWARD_H
#define TS_MODEL_FORWARD_H

#include "kv/kv.h"
#include "model/model.h"
#include "ops/ops.h"

typedef struct ts_fwd_seq {
    const int32_t *tokens;  /* [n] new token ids; each checked < vocab */
    int n;                  /* >= 1 */
    int n_past;             /* KV slots already filled; the new tokens go to slots
                               n_past .. n_past + n - 1 */
    const int32_t *pos;     /* [n] RoPE positions, or NULL for n_past + i */
    const int32_t *blocks;  /* block table covering n_past + n slots */
    int n_logits;           /* logits for the last n_logits new tokens (0..n) */
} ts_fwd_seq;

/* Called after each decoder layer with the residual stream x[n_tok][hidden]
 * (layer = 1..n_layers; 0 is the embedding). For tests and debugging. */
typedef void (*ts_fwd_hook)(void *ctx, int layer, const float *x, int n_tok, int hidden);

typedef struct ts_fwd ts_fwd;

/* Workspace for running m with ops over kv. Grows on demand, so the first
 * large batch allocates and later ones do not. */
ts_fwd *ts_fwd_create(const ts_model *m, const ts_ops *ops, ts_kv *kv);
void ts_fwd_destroy(ts_fwd *f);

/* A call in which some sequence brings at least min_rows new tokens (a
 * prefill piece) runs its matrix products in prec; other calls (decode) in
 * F32 (default: F32 always). TS_PREC_BF16 doubles prefill speed at ~1e-3
 * relative error. Deciding per piece rather than per row count keeps a
 * prompt's KV the same whether or not a cached prefix shortened its piece
 * (the backend's prec products must not depend on the number of rows). */
void ts_fwd_set_prec(ts_fwd *f, ts_prec prec, int min_rows);
void ts_fwd_set_hook(ts_fwd *f, ts_fwd_hook hook, void *ctx);
/* Cascade attention over block-table prefixes shared by several sequences
 * of a batch: -1 where it pays (measured break-even), 0 never, 1 always. */
void ts_fwd_set_cascade(ts_fwd *f, int mode);
/* Whether the last ts_fwd_run used cascade attention. */
bool ts_fwd_used_cascade(const ts_fwd *f);

/* Captures K (before RoPE) and V of batch rows [row0, row0 + n_rows) of the
 * next ts_fwd_run calls into k_out and v_out, each
 * [n_layers][n_rows][n_kv_heads * head_dim] (the chunk layout). n_rows = 0
 * stops capturing. The buffers must outlive the calls. */
void ts_fwd_set_capture(ts_fwd *f, int row0, int n_rows, float *k_out, float *v_out);

/* Cumulative wall time of ts_fwd_run calls since creation or the last reset:
 * all of it, the matrix products (weights) and attention (incl. cascade
 * levels and merges); the rest is norms, RoPE, activations, KV writes. */
typedef struct ts_fwd_times {
    double total_ms, matmul_ms, attention_ms;
    double queue_ms; /* device backends: until every op of the step was queued
                        (the rest of total_ms is waiting for the GPU); = total on the CPU */
} ts_fwd_times;
ts_fwd_times ts_fwd_get_times(const ts_fwd *f);
void ts_fwd_reset_times(ts_fwd *f);

/* Whether ts_fwd_sample works (a device backend with a sampling op). */
bool ts_fwd_can_sample(const ts_fwd *f);
/* On a device backend, on = true makes the following ts_fwd_run calls keep
 * the logits on the device (*logits is then a device pointer, and errors of
 * the step surface in ts_fwd_sample); ts_fwd_sample then draws the tokens. */
void ts_fwd_set_logits_on_device(ts_fwd *f, bool on);
/* Draws ids[n_rows] from the last run's logits rows on the device, row i
 * by rows[i] (host memory; see the ops' sample). n_rows must be that run's
 * logit rows. */
ts_status ts_fwd_sample(ts_fwd *f, int n_rows, const ts_sample_row *rows, int32_t *ids,
                        ts_err *err);

/* Runs the batch. On success *logits points to [sum n_logits][vocab] f32
 * owned by f, valid until the next call; rows follow the order of seqs. */
ts_status ts_fwd_run(ts_fwd *f, const ts_fwd_seq *seqs, int n_seqs, const float **logits,
                     ts_err *err);

#endif
