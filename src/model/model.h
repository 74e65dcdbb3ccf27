/* A decoder-only transformer (Qwen3, Llama, Qwen2) bound to a Hugging Face
 * checkpoint. Large matrices are views into the memory-mapped safetensors;
 * only the small vectors (norm gains, biases) are widened to f32 copies. */
#ifndef TS_MODEL_MODEL_H
#define TS_MODEL_MODEL_H

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "ops/ops.h"

typedef struct ts_layer {
    const float *attn_norm;  /* [hidden] */
    const float *ffn_norm;   /* [hidden] */
    const float *q_norm;     /* [head_dim] (Qwen3) or NULL */
    const float *k_norm;     /* [head_dim] (Qwen3) or NULL */
    const float *bq, *bk, *bv; /* [n_heads*hd], [n_kv*hd], [n_kv*hd] (Qwen2) or NULL */
    const float *bo;         /* [hidden] (Llama/Qwen3 with attention_bias) or NULL */
    ts_wmat wq;              /* [n_heads*head_dim][hidden] */
    ts_wmat wk, wv;          /* [n_kv_heads*head_dim][hidden] */
    ts_wmat wo;              /* [hidden][n_heads*head_dim] */
    ts_wmat w_gate, w_up;    /* [ffn][hidden] */
    ts_wmat w_down;          /* [hidden][ffn] */
} ts_layer;

typedef struct ts_model {
    ts_model_config cfg;
    ts_st *st;               /* owns the mappings */
    ts_wmat embed;           /* [vocab][hidden] */
    ts_wmat lm_head;         /* [vocab][hidden]; the embedding when tied */
    const float *final_norm; /* [hidden] */
    ts_layer *layers;        /* [n_layers] */
    float *inv_freq;         /* [head_dim/2] RoPE frequencies */
    float *small;            /* owns every f32 vector above */
    char dir[4096];
    unsigned char fingerprint[32]; /* SHA-256 of config + tensor table: identifies the weights */
} ts_model;

/* Loads config.json and the safetensors in dir and checks that every tensor
 * the architecture needs is present with the shape the config implies.
 * progress (may be NULL) is called while the checkpoint is validated. */
ts_status ts_model_load(const char *dir, ts_model **out, ts_progress_fn progress,
                        void *cb_ctx, ts_err *err);
void ts_model_free(ts_model *m);

#endif
