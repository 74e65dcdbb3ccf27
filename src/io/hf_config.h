/* Hugging Face config.json (+ generation_config.json) -> ts_model_config.
 * Accepts transformers 4 (top-level rope_theta / rope_scaling) and 5
 * (rope_parameters) layouts. */
#ifndef TS_IO_HF_CONFIG_H
#define TS_IO_HF_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include "tessera.h"

typedef enum ts_arch { TS_ARCH_QWEN3 = 0, TS_ARCH_LLAMA, TS_ARCH_QWEN2 } ts_arch;
typedef enum ts_rope_type { TS_ROPE_DEFAULT = 0, TS_ROPE_LLAMA3, TS_ROPE_LINEAR } ts_rope_type;

#define TS_MAX_EOS 8

typedef struct ts_model_config {
    ts_arch arch;
    char arch_name[64];     /* as written in "architectures" */
    int n_layers, hidden, n_heads, n_kv_heads, head_dim, ffn, vocab, max_pos;
    float rms_eps;
    bool tie_embeddings;    /* lm_head shares embed_tokens */
    bool qk_norm;           /* Qwen3: RMSNorm per head on q and k */
    bool qkv_bias;          /* biases on q, k, v (Qwen2 always; others when
                               "attention_bias" is true) */
    bool o_bias;            /* bias on o_proj (Llama/Qwen3 "attention_bias";
                               never for Qwen2) */
    /* RoPE (rotate-half layout, as HF Llama/Qwen) */
    double rope_theta;
    ts_rope_type rope_type;
    double rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max_pos;
    /* token ids: -1 when absent */
    int32_t bos_id, pad_id;
    int32_t eos_ids[TS_MAX_EOS];
    int n_eos;              /* union of config.json and generation_config.json */
    /* generation defaults from generation_config.json; <0 when absent */
    float gen_temperature, gen_top_p;
    int gen_top_k;
} ts_model_config;

/* Reads dir/config.json and, if present, dir/generation_config.json.
 * Validates every field (positive bounded sizes, head_dim even, n_heads
 * divisible by n_kv_heads, JSON types; a wrong or missing field is
 * TS_ERR_FORMAT naming it). An unknown architecture, a rope type other than
 * default/llama3/linear, sliding-window attention, a hidden_act other than
 * silu or an MLP bias yield TS_ERR_UNSUPPORTED. cfg is fully written on
 * success (absent ids are -1, absent generation defaults < 0). */
ts_status ts_config_load(const char *dir, ts_model_config *cfg, ts_err *err);
/* Same, from JSON text (name, e.g. the config.json path, is used in messages;
 * gen_json may be NULL). Neither text needs a terminating NUL. */
ts_status ts_config_parse(const char *json, size_t len, const char *gen_json,
                          size_t gen_len, const char *name, ts_model_config *cfg,
                          ts_err *err);

/* Fills inv_freq[head_dim/2] with the per-pair rotation frequencies
 * 1 / theta^(2j/head_dim), then llama3 or linear scaling as transformers
 * applies it; computed in double, rounded to float at the end. */
void ts_config_rope_freqs(const ts_model_config *cfg, float *inv_freq);

#endif
