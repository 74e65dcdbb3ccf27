#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "engine/stop.h"

double ts_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

ts_gen_opts ts_gen_opts_default(void) {
    return (ts_gen_opts){.sample = ts_sample_params_default(), .max_tokens = 256,
                         .skip_special = true, .prefill_chunk = 512};
}

ts_status ts_prefill(ts_runtime *rt, ts_seq *seq, const int32_t *ids, int n, int chunk,
                     const float **logits, ts_err *err) {
    if (chunk <= 0) chunk = 512;
    const ts_model_config *c = &rt->model->cfg;
    if ((long)seq->n_tokens + n > c->max_pos)
        return ts_fail(err, TS_ERR_CAPACITY,
                       "the prompt needs %ld tokens but the model's context is %d",
                       (long)seq->n_tokens + n, c->max_pos);
    ts_status s = ts_seq_reserve(seq, rt->kv, seq->n_tokens + n, err);
    if (s) return s;
    for (int done = 0; done < n;) {
        int k = n - done < chunk ? n - done : chunk;
        ts_fwd_seq fs = {.tokens = ids + done, .n = k, .n_past = seq->n_tokens,
                         .blocks = seq->blocks, .n_logits = done + k == n ? 1 : 0};
        s = ts_fwd_run(rt->fwd, &fs, 1, logits, err);
        if (!s) s = ts_seq_push(seq, ids + done, k, err);
        if (s) return s;
        done += k;
    }
    return TS_OK;
}

/* Emits text through the stop matcher; returns true when a stop string hit. */
static bool emit(ts_stop *stop, const ts_gen_opts *o, ts_buf *out, const char *p, size_t n) {
    size_t ok = 0;
    bool hit = ts_stop_feed(stop, p, n, &ok);
    const char *txt = ts_stop_text(stop);
    if (ok) {
        if (out) ts_buf_append(out, txt, ok);
        if (o->on_text) o->on_text(o->ctx, txt, ok);
        ts_stop_consume(stop, ok);
    }
    return hit;
}

ts_status ts_generate(ts_runtime *rt, ts_seq *seq, const int32_t *prompt, int n_prompt,
                      const ts_gen_opts *o, ts_buf *out, ts_gen_stats *st, ts_err *err) {
    ts_gen_stats tmp;
    if (!st) st = &tmp;
    memset(st, 0, sizeof *st);
    if (n_prompt < 1) return ts_fail(err, TS_ERR_INVALID, "the prompt is empty");
    if (o->max_tokens < 1) return ts_fail(err, TS_ERR_INVALID, "max tokens must be positive");
    int32_t vocab = rt->model->cfg.vocab;
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= vocab)
            return ts_fail(err, TS_ERR_INVALID, "token id %d is out of range (the model has %d)",
                           prompt[i], vocab);
    double t0 = ts_now_ms();
    /* reuse the cached prefix, but always recompute the last prompt token */
    int keep = 0;
    while (keep < seq->n_tokens && keep < n_prompt - 1 && seq->tokens[keep] == prompt[keep]) keep++;
    seq->n_tokens = keep;
    st->n_reused = keep;
    st->n_prompt = n_prompt - keep;

    ts_sampler *smp = NULL;
    ts_stop *stop = NULL;
    ts_status s = ts_sampler_create(&o->sample, vocab, &smp, err);
    if (!s) s = ts_stop_create(o->stop, o->n_stop, &stop, err);
    const float *logits = NULL;
    if (!s) s = ts_prefill(rt, seq, prompt + keep, n_prompt - keep, o->prefill_chunk, &logits, err);
    float *row = s ? NULL : malloc((size_t)vocab * sizeof *row);
    if (!s && !row) s = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_tok_stream ds;
    ts_tok_stream_init(&ds, rt->tok, o->skip_special);
    ts_buf piece = {0};
    st->finish = "length";
    double t_first = t0;
    while (!s) {
        memcpy(row, logits, (size_t)vocab * sizeof *row);
        int32_t id = ts_sampler_sample(smp, row, seq->tokens, (size_t)seq->n_tokens);
        if (st->n_gen++ == 0) {
            t_first = ts_now_ms();
            st->ttft_ms = t_first - t0;
        }
        if (ts_runtime_is_eos(rt, id)) {
            st->finish = "stop";
            break;
        }
        ts_buf_clear(&piece);
        ts_tok_stream_push(&ds, id, &piece);
        if (emit(stop, o, out, piece.data ? piece.data : "", piece.len)) {
            st->finish = "stop";
            break;
        }
        if (st->n_gen >= o->max_tokens) break;
        if (seq->n_tokens + 1 > rt->model->cfg.max_pos) break;
        s = ts_seq_reserve(seq, rt->kv, seq->n_tokens + 1, err);
        if (s) break;
        ts_fwd_seq fs = {.tokens = &id, .n = 1, .n_past = seq->n_tokens, .blocks = seq->blocks,
                         .n_logits = 1};
        s = ts_fwd_run(rt->fwd, &fs, 1, &logits, err);
        if (!s) s = ts_seq_push(seq, &id, 1, err);
    }
    if (!s && strcmp(st->finish, "length") == 0) { /* release held-back text */
        ts_buf_clear(&piece);
        ts_tok_stream_flush(&ds, &piece);
        emit(stop, o, out, piece.data ? piece.data : "", piece.len);
        emit(stop, o, out, NULL, 0);
        size_t rest = ts_stop_pending(stop);
        if (rest) {
            if (out) ts_buf_append(out, ts_stop_text(stop), rest);
            if (o->on_text) o->on_text(o->ctx, ts_stop_text(stop), rest);
        }
    }
    st->decode_ms = ts_now_ms() - t_first;
    ts_buf_free(&piece);
    free(row);
    ts_stop_destroy(stop);
    ts_sampler_destroy(smp);
    return s;
}
