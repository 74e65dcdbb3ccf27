/* Single-sequence generation on a runtime: prefill (in pieces), then
 * sample/decode until EOS, a stop string or max_tokens. The batched,
 * continuously scheduled engine builds on the same forward pass. */
#ifndef TS_ENGINE_GENERATE_H
#define TS_ENGINE_GENERATE_H

#include "engine/runtime.h"
#include "engine/sampler.h"
#include "engine/seq.h"

typedef struct ts_gen_opts {
    ts_sample_params sample;
    int max_tokens;                 /* generated tokens at most (> 0) */
    const char *const *stop;        /* stop strings (not emitted), may be NULL */
    int n_stop;
    bool skip_special;              /* drop special tokens from the text (default true) */
    int prefill_chunk;              /* tokens per prefill forward call; 0 = 512 */
    /* called with each piece of complete UTF-8 text as it is produced */
    void (*on_text)(void *ctx, const char *text, size_t len);
    void *ctx;
} ts_gen_opts;

typedef struct ts_gen_stats {
    int n_prompt;          /* tokens prefilled by this call */
    int n_reused;          /* prompt tokens whose KV was already in the sequence */
    int n_gen;             /* tokens generated */
    double ttft_ms;        /* call start to first token sampled */
    double decode_ms;      /* first token to the end */
    const char *finish;    /* "stop" (EOS or stop string) or "length" */
} ts_gen_stats;

ts_gen_opts ts_gen_opts_default(void);

/* Makes seq hold prompt[n_prompt] (reusing the KV of the longest common prefix
 * already in seq), then generates. The generated text is appended to out
 * (may be NULL) and streamed to opts->on_text. seq keeps the prompt and the
 * generated tokens' KV for a following turn. */
ts_status ts_generate(ts_runtime *rt, ts_seq *seq, const int32_t *prompt, int n_prompt,
                      const ts_gen_opts *opts, ts_buf *out, ts_gen_stats *stats, ts_err *err);

/* Prefills tokens into seq and returns the logits of its last token in
 * *logits (owned by the runtime, valid until its next forward call). */
ts_status ts_prefill(ts_runtime *rt, ts_seq *seq, const int32_t *ids, int n, int chunk,
                     const float **logits, ts_err *err);

/* Milliseconds on a monotonic clock. */
double ts_now_ms(void);

#endif
