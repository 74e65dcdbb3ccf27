/* The op table: every kernel the forward pass uses, behind function pointers
 * so that a backend (CPU reference, CPU SIMD, CUDA) can be swapped without
 * touching the model code.
 *
 * Conventions: activations are row-major f32; a "row" is one token. Weight
 * matrices keep the checkpoint's dtype and layout ([out][in], as Hugging Face
 * stores nn.Linear). KV is stored per KV head in fixed-size blocks (paged),
 * never expanded to query heads. */
#ifndef TS_OPS_OPS_H
#define TS_OPS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "io/safetensors.h"

/* A weight matrix view: data[rows][cols] in dtype (F32, F16 or BF16). */
typedef struct ts_wmat {
    const void *data;
    ts_dtype dtype;
    int rows; /* output features */
    int cols; /* input features */
} ts_wmat;

/* Precision of matrix products. F32: activations stay f32, weights are
 * widened to f32 (results match a float64 reference to ~1e-6). BF16:
 * activations are rounded to bf16 (nearest even) and multiplied with bf16
 * dot products (2x the arithmetic rate; ~1e-3 relative error), used for
 * large prefills. Weights are never rounded: with F32/F16 weights, BF16
 * only rounds the activations and the products are formed in f32. */
typedef enum ts_prec { TS_PREC_F32 = 0, TS_PREC_BF16 } ts_prec;

/* One sequence's part of an attention call. */
typedef struct ts_attn_seq {
    int q_start;            /* first row of this sequence in q / out */
    int n_q;                /* its query rows */
    int n_kv;               /* KV slots it attends to (cached + new) */
    const int32_t *blocks;  /* block table: slot t is in block blocks[t / block_size],
                               row t % block_size */
    int kv_start;           /* first visible slot (0 = all); cascade attention sets it to
                               the length of the prefix attended by attention_shared */
} ts_attn_seq;

/* Attention over paged KV for a batch of sequences.
 * Causal: query row i (0-based within the sequence) sees slots
 * [kv_start, n_kv - n_q + i]; otherwise every query sees [kv_start, n_kv).
 * A row whose range is empty (n_kv == 0, or kv_start past its last slot)
 * yields out = 0 and lse = -inf: the neutral element of the log-sum-exp merge. */
typedef struct ts_attn {
    float *out;             /* [n_tok][n_heads * head_dim] */
    float *lse;             /* optional [n_tok][n_heads]: natural-log log-sum-exp of the
                               scaled scores, for merging partial results; may be NULL */
    const float *q;         /* [n_tok][n_heads * head_dim], RoPE applied */
    const void *k, *v;      /* this layer's pool: [n_blocks][n_kv_heads][block_size][head_dim] */
    ts_dtype kv_dtype;      /* elements of k and v: TS_DT_F32 (0, every backend), or
                               TS_DT_F16 or TS_DT_BF16 (backends whose kv_half is set) */
    int n_heads, n_kv_heads, head_dim, block_size; /* n_heads % n_kv_heads == 0,
                                                       head_dim <= 512 */
    float scale;            /* usually 1/sqrt(head_dim) */
    bool causal;
    int n_seq;
    const ts_attn_seq *seqs;
} ts_attn;

/* One row of device sampling (ts_ops.sample): the sampler's params (as
 * ts_sample_params; top_k 0 and top_p 1 are off) and the uniform number
 * u in [0, 1) that its PRNG gives the draw (unused when temp is 0). */
typedef struct ts_sample_row {
    double u;
    float temp, top_p, min_p;
    int32_t top_k;
} ts_sample_row;

/* One shared level of cascade attention (see ts_ops.attention_shared). */
typedef struct ts_attn_shared {
    float *out;              /* [n_tok][n_heads * head_dim], rows indexed like q */
    float *lse;              /* [n_tok][n_heads], required (natural log, as ts_attn) */
    const float *q;          /* [n_tok][n_heads * head_dim], RoPE applied */
    const int32_t *rows;     /* [n_rows] distinct query rows, any order, possibly from
                                several sequences, that all see the prefix */
    int n_rows;
    const void *k, *v;       /* this layer's pool, laid out as ts_attn's */
    ts_dtype kv_dtype;       /* as ts_attn's */
    const int32_t *blocks;   /* the prefix's block table: slot t in blocks[t / block_size] */
    int n_kv;                /* prefix slots; 0 gives every listed row out = 0, lse = -inf */
    int n_heads, n_kv_heads, head_dim, block_size; /* as ts_attn */
    float scale;
    /* attention_cascade only (attention_shared ignores them): listed row r is
     * sequence r's single query row, whose own slots (after the prefix) are
     * own_info[2 r] = offset of their block table in own_tables, own_info[2 r
     * + 1] = their count (as attention_decode's tables / info; device). */
    const int32_t *own_tables, *own_info;
} ts_attn_shared;

/* attention_decode's pieces per (sequence, KV head) and its scratch size. */
#define TS_ATTN_DECODE_SPLITS 32
#define TS_ATTN_DECODE_PART(n_seq, n_heads, head_dim)                          \
    ((size_t)(n_seq) * (((size_t)(n_heads) + 31) / 32 * 32 +                    \
                        (size_t)(n_heads) * TS_ATTN_DECODE_SPLITS * ((size_t)(head_dim) + 1)))

/* A product with its neighbours folded in (ts_ops.matmul_ex): for i < n_w,
 *   y[i][n][w[i].rows] (accumulate: +=) = x' . w[i]^T (+ bias[i] when bias and bias[i])
 * where x' = x, or rmsnorm(x[n][cols]) * norm_g[cols] with norm_eps when norm_g
 * is set (x itself unchanged); swiglu: n_w == 2 (gate, up) and
 *   y[0] (accumulate: +=) = silu(x' . w[0]^T) * (x' . w[1]^T).
 * Every w[i] has the same cols; n_w <= 4; no y[i] aliases x. */
typedef struct ts_matmul_ex {
    float *const *y;
    const float *x;
    int n;
    const ts_wmat *w;
    const float *const *bias; /* may be NULL */
    int n_w;
    const float *norm_g;      /* NULL: no norm */
    float norm_eps;
    bool accumulate, swiglu;
    ts_prec prec;
} ts_matmul_ex;

/* One decoder layer as ts_ops.decode_layers reads it (device pointers). */
typedef struct ts_dec_layer {
    ts_wmat wq, wk, wv, wo, w_gate, w_up, w_down; /* shapes as the model's (ts_layer) */
    const float *bq, *bk, *bv, *bo;     /* biases, or NULL */
    const float *attn_norm, *ffn_norm;  /* [hidden] */
    const float *q_norm, *k_norm;       /* [head_dim] each (Qwen3), or both NULL */
    void *k_pool, *v_pool;              /* this layer's KV pool, laid out as ts_attn's */
} ts_dec_layer;

/* Every decoder layer of a decode step of ONE sequence and one token (see
 * ts_ops.decode_layers). Device pointers but for layers (a host array). */
typedef struct ts_decode_layers {
    float *x;                  /* [hidden]: the embedded token in; the residual stream after
                                  the last layer out (before the final norm) */
    float *q, *k, *v, *att;    /* scratch: [n_heads*hd], [n_kv_heads*hd] x 2, [n_heads*hd] */
    float *h;                  /* scratch: [ffn] */
    void *scratch;             /* TS_DECODE_LAYERS_SCRATCH bytes, zero-filled before its
                                  first use (calls leave it fit for the next) */
    const ts_dec_layer *layers;
    int n_layers, hidden, ffn, n_heads, n_kv_heads, head_dim, block_size;
    ts_dtype kv_dtype;
    float eps, scale;          /* RMSNorm epsilon; attention scale */
    const int32_t *pos, *slot; /* [1]: the token's position and KV slot */
    const float *inv_freq;     /* [head_dim / 2] */
    const int32_t *tables, *info; /* as attention_decode's, for one sequence (n_kv counts
                                     the new token) */
} ts_decode_layers;
#define TS_DECODE_LAYERS_SCRATCH(n_heads, n_kv_heads, head_dim)                         \
    (4 * (64 + (size_t)(n_kv_heads) + (size_t)(n_heads) * 32 * ((size_t)(head_dim) + 1)))

typedef struct ts_ops {
    const char *name; /* "cpu-ref", "cpu-avx2", "cpu-avx512", "cuda" */
    bool kv_half;     /* kv_write, attention, attention_shared (and qk_rope_kv,
                         attention_decode where set) take f16 and bf16 pools */
    void *ctx;        /* backend state passed as each op's first argument */

    /* y[n][w->rows] = x[n][w->cols] . w^T (+ bias[w->rows] when bias != NULL) */
    void (*matmul)(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                   const float *bias, ts_prec prec);
    /* out[n][table->cols] = rows ids[n] of table, widened to f32. ids are valid. */
    void (*embed)(void *ctx, float *out, const ts_wmat *table, const int32_t *ids, int n);
    /* y[n][d] = x / sqrt(mean(x^2) + eps) * g[d]; y may alias x. */
    void (*rmsnorm)(void *ctx, float *y, const float *x, const float *g, int n, int d,
                    float eps);
    /* Fused residual: x[n][d] += r[n][d], then y = rmsnorm(x). */
    void (*add_rmsnorm)(void *ctx, float *y, float *x, const float *r, const float *g,
                        int n, int d, float eps);
    /* In place on x[n][n_heads][head_dim]: rotate-half RoPE (HF Llama/Qwen layout:
     * pairs (j, j + head_dim/2)) by angle pos[i] * inv_freq[j], the angle computed in
     * f32 as transformers does. */
    void (*rope)(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                 const float *inv_freq);
    /* out[n][d] = silu(gate[n][d]) * up[n][d]; out may alias gate. */
    void (*swiglu)(void *ctx, float *out, const float *gate, const float *up, int n, int d);
    /* Stores k, v rows [n][n_kv_heads * head_dim] at pool slots slot[n]
     * (slot = block * block_size + row) of a pool laid out as ts_attn's, with
     * elements of kv_dtype (f16, bf16: rounded to nearest even; as ts_attn's). */
    void (*kv_write)(void *ctx, void *k_pool, void *v_pool, ts_dtype kv_dtype, const float *k,
                     const float *v, const int32_t *slot, int n, int n_kv_heads,
                     int head_dim, int block_size);
    /* Optional fused ops (NULL: the forward pass runs the unfused ops). Each
     * computes what its unfused sequence computes, to rounding.
     * matmul_multi: n_w products of one input, for i < n_w:
     *   y[i][n][w[i].rows] = x[n][cols] . w[i]^T (+ bias[i][w[i].rows] when bias
     *   and bias[i]); every w[i] has the same cols (q, k and v; n_w <= 4). */
    void (*matmul_multi)(void *ctx, float *const *y, const float *x, int n,
                         const ts_wmat *w, const float *const *bias, int n_w, ts_prec prec);
    /* matmul_swiglu: the MLP's first half,
     *   out[n][w_gate->rows] = silu(x . w_gate^T) * (x . w_up^T);
     * w_gate and w_up have the same shape; out does not alias x. */
    void (*matmul_swiglu)(void *ctx, float *out, const float *x, int n, const ts_wmat *w_gate,
                          const ts_wmat *w_up, ts_prec prec);
    /* matmul_ex: see ts_matmul_ex (the decode step folds each sublayer's
     * RMSNorm into the next products and the residual add into the last). */
    void (*matmul_ex)(void *ctx, const ts_matmul_ex *a);
    /* sample: one token a row of logits[n][vocab], on the device, ids[n]:
     * row i by rows[i] exactly as ts_sampler_sample with those params and no
     * repetition penalty, drawing rows[i].u (src/ops/cuda/sample.cu says
     * where the two may differ). rows: device. */
    void (*sample)(void *ctx, int32_t *ids, const float *logits, int n, int vocab,
                   const ts_sample_row *rows);
    /* qk_rope_kv: in place on q[n][n_heads][hd] and k[n][n_kv_heads][hd]:
     * per-head RMSNorm by q_norm / k_norm[hd] (both NULL: none), then RoPE (as
     * rope); then stores k and v[n][n_kv_heads][hd] at slot[n] (as kv_write,
     * elements of kv_dtype). */
    void (*qk_rope_kv)(void *ctx, float *q, float *k, const float *v, const float *q_norm,
                       const float *k_norm, float eps, const int32_t *pos,
                       const float *inv_freq, void *k_pool, void *v_pool, ts_dtype kv_dtype,
                       const int32_t *slot, int n, int n_heads, int n_kv_heads, int head_dim,
                       int block_size);
    /* attention_decode: attention for n_seq sequences of one query row each
     * (row s of q and out, [n_seq][n_heads * head_dim]) whose KV lengths and
     * block tables are read from device memory, so that the launch does not
     * depend on them (a decode step recorded once and replayed):
     * info[2 s] = offset of seq s's block table in tables, info[2 s + 1] = its
     * n_kv (>= 0; 0 gives out = 0). Equals attention with n_q = 1, causal.
     * lse: NULL, or [n_seq][n_heads] natural-log sums as ts_attn's (-inf for
     * n_kv 0): cascade runs it over each sequence's own slots (the table
     * offset and n_kv in info then start at its first own block).
     * part: scratch of TS_ATTN_DECODE_PART(n_seq, n_heads, head_dim) floats,
     * zero-filled before its first use (calls leave it fit for the next).
     * k, v: the pool, elements of kv_dtype (as ts_attn's). */
    void (*attention_decode)(void *ctx, float *out, float *lse, float *part, const float *q,
                             const void *k, const void *v, ts_dtype kv_dtype,
                             const int32_t *tables,
                             const int32_t *info, int n_seq, int n_heads, int n_kv_heads,
                             int head_dim, int block_size, float scale);
    /* decode_layers (optional): runs every layer of a ts_decode_layers step
     * exactly as the fused sequence of decode_step (matmul_ex with the norm,
     * qk_rope_kv, attention_decode, matmul_ex ...) computes it, to rounding, in
     * one launch. Returns false, having queued nothing, when the backend
     * cannot take this shape; the caller then runs the ops one by one.
     * The CUDA backend sets it unless TS_CUDA_LAYERS=0. */
    bool (*decode_layers)(void *ctx, const ts_decode_layers *a);
    void (*attention)(void *ctx, const ts_attn *a);
    /* Cascade attention's shared level: every listed row attends, non-causally,
     * to the same n_kv prefix slots. The result per row equals a non-causal
     * ts_attn over (blocks, n_kv) for that row alone; the K/V of the prefix are
     * streamed once for all rows and q heads. Writes out and lse of the listed
     * rows only. */
    void (*attention_shared)(void *ctx, const ts_attn_shared *a);
    /* attention_cascade (optional): a decode step's whole cascade attention
     * in one op: for each listed row, attention over the shared prefix and
     * its own slots (own_tables / own_info) together, in out and lse; equal
     * to attention_shared, attention_decode over the own slots and
     * attn_merge_rows, to rounding. Returns false, having queued nothing,
     * when the backend cannot take the shape; the caller then runs those. */
    bool (*attention_cascade)(void *ctx, const ts_attn_shared *a);

    /* ---- device memory (added for the GPU engine; all NULL on host backends,
     * whose tensors are ordinary host memory). On a device backend every
     * tensor pointer an op receives is device memory (src/ops/cuda/cuda.h);
     * these move data in and out. Failures are sticky in the backend and
     * reported by sync (and by upload/download, which sync). ---- */
    /* Zero-filled device buffer, or NULL (bytes == 0, or failure). */
    void *(*dev_alloc)(void *ctx, size_t bytes);
    void (*dev_free)(void *ctx, void *p); /* NULL is a no-op; waits for queued work */
    /* Synchronous copies host -> device, device -> host (waits for queued work). */
    ts_status (*upload)(void *ctx, void *dev, const void *host, size_t bytes, ts_err *err);
    ts_status (*download)(void *ctx, void *host, const void *dev, size_t bytes, ts_err *err);
    /* Queued device -> device copy. */
    void (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Waits for queued work; TS_OK or the backend's sticky error. */
    ts_status (*sync)(void *ctx, ts_err *err);
    /* Page-locked host memory (faster downloads), or NULL; free(NULL) no-op. */
    void *(*host_alloc)(void *ctx, size_t bytes);
    void (*host_free)(void *ctx, void *p);
    /* ts_attn_merge_rows with device arrays (rows too); NULL on host backends,
     * where callers use ts_attn_merge_rows itself. */
    void (*attn_merge_rows)(void *ctx, float *o_a, float *lse_a, const float *o_b,
                            const float *lse_b, const int32_t *rows, int n_rows, int n_heads,
                            int head_dim);
    /* Recorded work (CUDA graphs; NULL where unsupported). Between
     * capture_begin (false: not started) and capture_end, ops are recorded,
     * not run; capture_end returns a replayable graph, or NULL (nothing ran:
     * run the ops again uncaptured). A graph keeps the pointers and sizes it
     * was recorded with; only ops that queue plain kernels may be captured. */
    bool (*capture_begin)(void *ctx);
    void *(*capture_end)(void *ctx);
    void (*replay)(void *ctx, void *graph);
    void (*graph_free)(void *ctx, void *graph); /* NULL is a no-op */
    /* graph_rows: decode steps of up to this many rows may be recorded (0:
     * the forward's default, 8; the CUDA backend offers 64, where products
     * above 8 rows may be cuBLAS calls, recorded too). graph_epoch changes
     * whenever memory the backend lent a recorded graph (its scratch)
     * moved: graphs recorded before are stale then. NULL: it never moves. */
    int graph_rows;
    uint64_t (*graph_epoch)(void *ctx);
} ts_ops;

/* Merges partial attention states in place: (o_a, lse_a) <- merge((o_a, lse_a),
 * (o_b, lse_b)) for n rows of n_heads heads of head_dim, by
 * lse = log(e^lse_a + e^lse_b), o = (o_a e^lse_a + o_b e^lse_b) / e^lse.
 * The empty state (o = 0, lse = -inf) is neutral; never produces NaN from it. */
void ts_attn_merge(float *o_a, float *lse_a, const float *o_b, const float *lse_b, int n,
                   int n_heads, int head_dim);

/* ts_attn_merge restricted to the rows rows[0..n_rows) of arrays laid out
 * [n_tok][n_heads * head_dim] (o) and [n_tok][n_heads] (lse); rows distinct (a
 * repeated row would be merged twice); other rows are
 * not touched. Used to fold a shared level into a sequence's own level. */
void ts_attn_merge_rows(float *o_a, float *lse_a, const float *o_b, const float *lse_b,
                        const int32_t *rows, int n_rows, int n_heads, int head_dim);

#endif
