/* Batch-1 decode through the whole model on the GPU (ts_runtime "cuda"),
 * with the time split that says where a step goes:
 *   step   - ms per decode token (ts_fwd_run, ending with the logits download)
 *   queue  - host time to queue every op of the step; when it is close to
 *            step the GPU waits for the host (launch-bound), when it is
 *            much smaller the GPU work itself is the limit
 * next to the memory roofline: weight bytes read per token / 3.35 TB/s (H100
 * SXM HBM3 datasheet). Usage: bench_decode MODEL_DIR [context ...]
 * (default contexts 128 and 1024; 128 generated tokens after each). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/runtime.h"
#include "engine/seq.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t wbytes(const ts_wmat *w) {
    return (size_t)w->rows * (size_t)w->cols * (w->dtype == TS_DT_F32 ? 4 : 2);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_decode MODEL_DIR [context ...]\n");
        return 2;
    }
    ts_runtime_opts o = ts_runtime_opts_default();
    o.device = "cuda";
    ts_runtime *rt = NULL;
    ts_err err;
    if (ts_runtime_open(argv[1], &o, &rt, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return 1;
    }
    const ts_model *m = rt->model;
    size_t bytes = wbytes(&m->lm_head); /* the embedding reads one row */
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ts_layer *L = &m->layers[l];
        bytes += wbytes(&L->wq) + wbytes(&L->wk) + wbytes(&L->wv) + wbytes(&L->wo) +
                 wbytes(&L->w_gate) + wbytes(&L->w_up) + wbytes(&L->w_down);
    }
    double floor_ms = (double)bytes / 3.35e12 * 1e3;
    printf("%s on %s: %.1f MB of weights read per token; roofline %.3f ms = %.0f tok/s\n",
           argv[1], ts_runtime_device_name(rt), bytes / 1e6, floor_ms, 1e3 / floor_ms);
    printf("%8s %8s %10s %10s %10s %10s %8s\n", "context", "tok/s", "step ms", "queue ms",
           "matmul q", "attn q", "of roof");
    int ctxs[8] = {128, 1024}, n_ctx = 2, gen = 128;
    if (argc > 2) {
        n_ctx = 0;
        for (int i = 2; i < argc && n_ctx < 8; i++) ctxs[n_ctx++] = atoi(argv[i]);
    }
    int rc = 0;
    for (int ci = 0; ci < n_ctx && !rc; ci++) {
        int P = ctxs[ci], total = P + gen + 1;
        int32_t *ids = malloc((size_t)total * sizeof *ids);
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < total; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ids[i] = (int32_t)(x % 32000);
        }
        ts_seq seq = {0};
        const float *lg;
        rc = ts_seq_reserve(&seq, rt->kv, total, &err);
        ts_fwd_seq fs = {.tokens = ids, .n = P, .blocks = seq.blocks, .n_logits = 1};
        if (!rc) rc = ts_fwd_run(rt->fwd, &fs, 1, &lg, &err);
        /* warm-up steps, then timed ones */
        int past = P;
        for (int g = 0; !rc && g < 4; g++, past++) {
            fs = (ts_fwd_seq){.tokens = ids + past, .n = 1, .n_past = past, .blocks = seq.blocks,
                              .n_logits = 1};
            rc = ts_fwd_run(rt->fwd, &fs, 1, &lg, &err);
        }
        ts_fwd_reset_times(rt->fwd);
        double t0 = now_ms();
        int steps = 0;
        for (; !rc && past < total - 1; past++, steps++) {
            fs = (ts_fwd_seq){.tokens = ids + past, .n = 1, .n_past = past, .blocks = seq.blocks,
                              .n_logits = 1};
            rc = ts_fwd_run(rt->fwd, &fs, 1, &lg, &err);
        }
        double ms = (now_ms() - t0) / (steps ? steps : 1);
        if (rc) {
            fprintf(stderr, "bench_decode: %s\n", err.msg);
        } else {
            ts_fwd_times t = ts_fwd_get_times(rt->fwd);
            printf("%8d %8.1f %10.3f %10.3f %10.3f %10.3f %7.1f%%\n", P, 1e3 / ms, ms,
                   t.queue_ms / steps, t.matmul_ms / steps,
                   t.attention_ms / steps, 100 * floor_ms / ms);
        }
        ts_seq_reset(&seq, rt->kv);
        ts_seq_free(&seq);
        free(ids);
    }
    ts_runtime_close(rt);
    return rc ? 1 : 0;
}
