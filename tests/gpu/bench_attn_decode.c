/* attention_decode (the decode step's attention) at serving batch sizes:
 * Qwen3-0.6B heads (16 q / 8 KV, head_dim 128), f32 and bf16 KV in 16-slot blocks
 * scattered over the pool, every sequence at the same context. Prints the
 * median of 9 timings (each 10 back-to-back calls between events) and the
 * KV bytes read per second against the H100's 3.35 TB/s.
 * Usage: bench_attn_decode */
#include "gpu_util.h"

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    const ts_ops *ops = gpu_start(NULL);
    const int NH = 16, NKV = 8, HD = 128, BS = 16;
    const struct { int b, ctx; } cases[] = {{1, 128},   {1, 1024},  {1, 4096},  {8, 1024},
                                            {8, 4096},  {64, 512},  {64, 1024}, {64, 4096},
                                            {256, 512}, {256, 1024}};
    printf("%-28s %10s %10s %8s\n", "attention_decode", "us/call", "KV GB/s", "of peak");
    const size_t nc = sizeof cases / sizeof cases[0];
    for (size_t cj = 0; cj < 2 * nc; cj++) {
        size_t ci = cj % nc;
        ts_dtype dt = cj < nc ? TS_DT_F32 : TS_DT_BF16;
        int B = cases[ci].b, ctx = cases[ci].ctx, nbs = (ctx + BS - 1) / BS, nb = B * nbs;
        size_t pool = (size_t)nb * NKV * BS * HD;
        size_t pb = pool * ts_kv_elem_bytes(dt);
        void *kp = ts_cuda_alloc(g_cu, pb), *vp = ts_cuda_alloc(g_cu, pb);
        if (!kp || !vp) die_cuda("pool");
        ts_cuda_memset(g_cu, kp, 0, pb), ts_cuda_memset(g_cu, vp, 0, pb);
        int32_t *perm = xmalloc((size_t)nb * 4), *info = xmalloc((size_t)B * 8);
        for (int i = 0; i < nb; i++) perm[i] = i;
        shuffle(perm, nb);
        for (int s = 0; s < B; s++) info[2 * s] = s * nbs, info[2 * s + 1] = ctx;
        int32_t *tab_d = dup_dev(perm, (size_t)nb * 4), *info_d = dup_dev(info, (size_t)B * 8);
        size_t np = TS_ATTN_DECODE_PART(B, NH, HD);
        float *part = nan_dev(np), *q = nan_dev((size_t)B * NH * HD), *out = nan_dev((size_t)B * NH * HD);
        ts_cuda_memset(g_cu, part, 0, np * 4);
        float *hq = xmalloc((size_t)B * NH * HD * 4);
        fill(hq, (size_t)B * NH * HD, 1.0f);
        if (ts_cuda_upload(g_cu, q, hq, (size_t)B * NH * HD * 4, NULL) != TS_OK) die_cuda("q");
        float t[9];
        for (int r = -2; r < 9; r++) {
            ts_cuda_event *e0 = ts_cuda_event_record(g_cu);
            for (int k = 0; k < 10; k++)
                ops->attention_decode(ops->ctx, out, NULL, part, q, kp, vp, dt, tab_d, info_d, B, NH, NKV,
                                      HD, BS, 0.088f);
            ts_cuda_event *e1 = ts_cuda_event_record(g_cu);
            if (r >= 0) t[r] = ts_cuda_event_ms(g_cu, e0, e1) * 100.0f; /* us a call */
            ts_cuda_event_free(e0), ts_cuda_event_free(e1);
        }
        if (ts_cuda_last_error(g_cu)) die_cuda("attention_decode");
        qsort(t, 9, sizeof t[0], cmpf);
        double bytes = (double)B * ctx * NKV * HD * ts_kv_elem_bytes(dt) * 2;
        char name[64];
        snprintf(name, sizeof name, "%s batch %d, context %d", kv_name(dt), B, ctx);
        printf("%-28s %10.1f %10.0f %7.0f%%\n", name, t[4], bytes / (t[4] * 1e3),
               100.0 * bytes / (t[4] * 1e3) / 3350.0);
        dfree(kp), dfree(vp), dfree(tab_d), dfree(info_d), dfree(part), dfree(q), dfree(out);
        free(perm), free(info), free(hq);
    }
    ts_cuda_destroy(g_cu);
    return 0;
}
