/* Batch-1 decode kernels one by one at the clocks the GPU runs at: each op
 * of a Qwen3-0.6B layer (and the LM head) recorded 24 times in a row into a
 * CUDA graph (weights rotating over copies that together exceed L2, as a
 * real step streams them), the graph replayed, the median replay divided by
 * 24. Prints us per call and GB/s of weights. Usage: bench_gemv */
#include "gpu_util.h"

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

#define REPS 24
#define COPIES 8

typedef struct bench {
    const char *name;
    int kind; /* 0 matmul, 1 multi (3), 2 swiglu, 3 rmsnorm, 4 qk_rope_kv, 5 attention_decode */
    int rows[3], cols;
    int ctx;
} bench;

static const ts_ops *ops;

static ts_wmat upload_w(int rows, int cols) {
    size_t n = (size_t)rows * cols;
    uint16_t *h = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = ts_f32_to_bf16(rnd());
    ts_wmat hw = {h, TS_DT_BF16, rows, cols}, d;
    if (ts_cuda_wmat_upload(g_cu, &hw, &d, NULL) != TS_OK) die_cuda("weights");
    free(h);
    return d;
}

int main(void) {
    ops = gpu_start(NULL);
    const bench bs[] = {
        {"q/k/v fused (2048+1024+1024 x 1024)", 1, {2048, 1024, 1024}, 1024, 0},
        {"q alone (2048 x 1024)", 0, {2048}, 1024, 0},
        {"o (1024 x 2048)", 0, {1024}, 2048, 0},
        {"gate/up + SwiGLU (2 x 3072 x 1024)", 2, {3072}, 1024, 0},
        {"down (1024 x 3072)", 0, {1024}, 3072, 0},
        {"LM head (151936 x 1024)", 0, {151936}, 1024, 0},
        {"add + RMSNorm (1 x 1024)", 3, {0}, 1024, 0},
        {"q/k norm + RoPE + KV write", 4, {0}, 0, 0},
        {"attention_decode ctx 128", 5, {0}, 0, 128},
        {"attention_decode ctx 1024", 5, {0}, 0, 1024},
    };
    const int NH = 16, NKV = 8, HD = 128, BS = 16, NB = 256;
    float *x = nan_dev(4096), *y = nan_dev(151936 * 2), *y2 = nan_dev(4096), *y3 = nan_dev(4096);
    float *hx = xmalloc(4096 * 4);
    fill(hx, 4096, 1.0f);
    if (ts_cuda_upload(g_cu, x, hx, 4096 * 4, NULL) != TS_OK) die_cuda("upload");
    if (ts_cuda_upload(g_cu, y2, hx, 4096 * 4, NULL) != TS_OK) die_cuda("upload");
    float *g = dup_dev(hx, 1024 * 4), *inv = dup_dev(hx, 64 * 4);
    size_t pool = (size_t)NB * NKV * BS * HD;
    float *kp = nan_dev(pool), *vp = nan_dev(pool);
    ts_cuda_memset(g_cu, kp, 0, pool * 4), ts_cuda_memset(g_cu, vp, 0, pool * 4);
    int32_t tab[2 + 128], zero[2] = {0, 0};
    for (int i = 0; i < 128; i++) tab[2 + i] = i * 2;
    int32_t *pos_d = dup_dev(zero, 8), *tab_d = dup_dev(tab, sizeof tab), *part = NULL;
    float *part_d = nan_dev(TS_ATTN_DECODE_PART(1, NH, HD)), *q = nan_dev(NH * HD), *att = nan_dev(NH * HD);
    ts_cuda_memset(g_cu, q, 0, NH * HD * 4);
    ts_cuda_memset(g_cu, part_d, 0, TS_ATTN_DECODE_PART(1, NH, HD) * 4);
    (void)part;
    printf("%-40s %10s %10s\n", "kernel (batch 1)", "us/call", "GB/s");
    for (size_t b = 0; b < sizeof bs / sizeof bs[0]; b++) {
        const bench *B = &bs[b];
        int nw = B->kind == 1 ? 3 : B->kind == 2 ? 2 : B->kind == 0 ? 1 : 0;
        int copies = B->kind == 0 && B->rows[0] > 100000 ? 1 : COPIES;
        ts_wmat w[COPIES][3];
        size_t bytes = 0;
        for (int c = 0; c < copies; c++)
            for (int i = 0; i < nw; i++) {
                w[c][i] = upload_w(B->rows[B->kind == 2 ? 0 : i], B->cols);
                if (!c) bytes += (size_t)w[c][i].rows * w[c][i].cols * 2;
            }
        int32_t info[2] = {2, B->ctx};
        int32_t *info_d = dup_dev(info, 8);
        if (!ops->capture_begin(ops->ctx)) die_cuda("capture");
        for (int r = 0; r < REPS; r++) {
            ts_wmat *W = w[r % copies];
            switch (B->kind) {
            case 0: ops->matmul(ops->ctx, y, B->cols == 1024 ? x : y2, 1, &W[0], NULL, TS_PREC_F32); break;
            case 1: {
                float *const ys[3] = {y, y2 + 2048, y3};
                const float *const bz[3] = {NULL, NULL, NULL};
                ops->matmul_multi(ops->ctx, ys, x, 1, W, bz, 3, TS_PREC_F32);
                break;
            }
            case 2: ops->matmul_swiglu(ops->ctx, y, x, 1, &W[0], &W[1], TS_PREC_F32); break;
            case 3: ops->add_rmsnorm(ops->ctx, y3, y2, x, g, 1, 1024, 1e-6f); break;
            case 4:
                ops->qk_rope_kv(ops->ctx, q, y3, y2, g, g, 1e-6f, pos_d, inv, kp, vp, TS_DT_F32, pos_d, 1, NH,
                                NKV, HD, BS);
                break;
            case 5:
                ops->attention_decode(ops->ctx, att, NULL, part_d, q, kp, vp, TS_DT_F32, tab_d, info_d, 1, NH, NKV,
                                      HD, BS, 0.088f);
                break;
            }
        }
        void *graph = ops->capture_end(ops->ctx);
        if (!graph) die_cuda("graph");
        float t[15];
        for (int i = 0; i < 3; i++) ops->replay(ops->ctx, graph);
        for (int i = 0; i < 15; i++) {
            ts_cuda_event *e0 = ts_cuda_event_record(g_cu);
            ops->replay(ops->ctx, graph);
            ts_cuda_event *e1 = ts_cuda_event_record(g_cu);
            t[i] = ts_cuda_event_ms(g_cu, e0, e1) * 1000.0f / REPS;
            ts_cuda_event_free(e0), ts_cuda_event_free(e1);
        }
        if (ts_cuda_last_error(g_cu)) die_cuda(B->name);
        qsort(t, 15, sizeof t[0], cmpf);
        if (B->kind == 5) bytes = (size_t)B->ctx * NKV * HD * 4 * 2;
        printf("%-40s %10.2f %10.0f\n", B->name, t[7], bytes ? bytes / (t[7] * 1e3) : 0.0);
        ops->graph_free(ops->ctx, graph);
        for (int c = 0; c < copies; c++)
            for (int i = 0; i < nw; i++) ts_cuda_wmat_free(g_cu, &w[c][i]);
        dfree(info_d);
    }
    ts_cuda_destroy(g_cu);
    return 0;
}
