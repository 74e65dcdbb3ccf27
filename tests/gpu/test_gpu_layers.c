/* ts_ops.decode_layers (the persistent one-token decode kernel,
 * src/ops/cuda/decode_layers.cu) against the op sequence it replaces, run
 * on the same device from the same inputs: per layer matmul_ex (RMSNorm
 * folded in) over q, k, v, qk_rope_kv, attention_decode, matmul_ex o with the
 * residual add, matmul_ex gate/up with SwiGLU, matmul_ex down with the add
 * (each of those is checked against the CPU reference by test_gpu_fused).
 * Random bf16 layers of awkward shapes (GQA groups 1-4, head_dim 32/64/128,
 * biases, q/k-norm, block sizes 5 and 16, contexts from the first token to
 * 2000, KV pools of f32, f16 and bf16), three consecutive steps on one
 * scratch (its counters must reset),
 * shuffled block tables. Checks the residual stream after every step and
 * the KV pools (the new slot's K and V) to 1e-5 relative L2 error, and that
 * the op declines what it cannot take without queueing anything.
 * Needs a GPU: run by tests/gpu/run.sh. */
#include "gpu_util.h"
#include "test.h"

#define TOL 1e-5

static const ts_ops *ops;
static double worst;

typedef struct shape {
    int H, F, nh, nkv, hd, bs, n_kv, n_layers;
    bool bias, qk_norm;
    ts_dtype dt; /* KV elements */
} shape;

/* A random bf16 matrix on the device, entries ~ U(-1, 1) / sqrt(cols). */
static ts_wmat rand_w(int rows, int cols) {
    size_t n = (size_t)rows * cols;
    uint16_t *p = xmalloc(n * 2);
    float s = 1.0f / sqrtf((float)cols);
    for (size_t i = 0; i < n; i++) p[i] = ts_f32_to_bf16(rnd() * s);
    ts_wmat h = {p, TS_DT_BF16, rows, cols}, d;
    if (ts_cuda_wmat_upload(g_cu, &h, &d, NULL) != TS_OK) die_cuda("weights");
    free(p);
    return d;
}
static float *rand_dev(size_t n, float base, float scale) {
    float *h = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) h[i] = base + rnd() * scale;
    float *d = dup_dev(h, n * 4);
    free(h);
    return d;
}

/* The op sequence of decode_step for one token (the reference). */
static void ref_step(const shape *s, const ts_decode_layers *d, float *part) {
    for (int l = 0; l < s->n_layers; l++) {
        const ts_dec_layer *L = &d->layers[l];
        float *const qkv[3] = {d->q, d->k, d->v}, *const xs[1] = {d->x}, *const hs[1] = {d->h};
        const ts_wmat wqkv[3] = {L->wq, L->wk, L->wv}, wgu[2] = {L->w_gate, L->w_up};
        const float *const bqkv[3] = {L->bq, L->bk, L->bv}, *const bo[1] = {L->bo};
        ts_matmul_ex e = {.y = qkv, .x = d->x, .n = 1, .w = wqkv, .bias = bqkv, .n_w = 3,
                          .norm_g = L->attn_norm, .norm_eps = d->eps};
        ops->matmul_ex(ops->ctx, &e);
        ops->qk_rope_kv(ops->ctx, d->q, d->k, d->v, L->q_norm, L->k_norm, d->eps, d->pos,
                        d->inv_freq, L->k_pool, L->v_pool, d->kv_dtype, d->slot, 1, s->nh, s->nkv, s->hd,
                        s->bs);
        ops->attention_decode(ops->ctx, d->att, NULL, part, d->q, L->k_pool, L->v_pool, d->kv_dtype,
                              d->tables, d->info, 1, s->nh, s->nkv, s->hd, s->bs, d->scale);
        e = (ts_matmul_ex){.y = xs, .x = d->att, .n = 1, .w = &L->wo, .bias = bo, .n_w = 1,
                           .accumulate = true};
        ops->matmul_ex(ops->ctx, &e);
        e = (ts_matmul_ex){.y = hs, .x = d->x, .n = 1, .w = wgu, .n_w = 2, .swiglu = true,
                           .norm_g = L->ffn_norm, .norm_eps = d->eps};
        ops->matmul_ex(ops->ctx, &e);
        e = (ts_matmul_ex){.y = xs, .x = d->h, .n = 1, .w = &L->w_down, .n_w = 1,
                           .accumulate = true};
        ops->matmul_ex(ops->ctx, &e);
    }
}

static void test_layers(shape s) {
    const int qd = s.nh * s.hd, kd = s.nkv * s.hd, steps = 3;
    const int max_kv = s.n_kv + steps, nb_seq = (max_kv + s.bs - 1) / s.bs, n_blocks = nb_seq + 3;
    size_t pool = (size_t)n_blocks * s.nkv * s.bs * s.hd, es = ts_kv_elem_bytes(s.dt);
    ts_dec_layer *lt = xmalloc((size_t)s.n_layers * sizeof *lt), *lr = xmalloc((size_t)s.n_layers * sizeof *lr);
    for (int l = 0; l < s.n_layers; l++) {
        ts_dec_layer *L = &lt[l];
        *L = (ts_dec_layer){.wq = rand_w(qd, s.H), .wk = rand_w(kd, s.H), .wv = rand_w(kd, s.H),
                            .wo = rand_w(s.H, qd), .w_gate = rand_w(s.F, s.H),
                            .w_up = rand_w(s.F, s.H), .w_down = rand_w(s.H, s.F),
                            .attn_norm = rand_dev((size_t)s.H, 1.0f, 0.3f),
                            .ffn_norm = rand_dev((size_t)s.H, 1.0f, 0.3f)};
        if (s.bias) {
            L->bq = rand_dev((size_t)qd, 0.0f, 0.5f), L->bk = rand_dev((size_t)kd, 0.0f, 0.5f);
            L->bv = rand_dev((size_t)kd, 0.0f, 0.5f), L->bo = rand_dev((size_t)s.H, 0.0f, 0.5f);
        }
        if (s.qk_norm) {
            L->q_norm = rand_dev((size_t)s.hd, 1.0f, 0.3f);
            L->k_norm = rand_dev((size_t)s.hd, 1.0f, 0.3f);
        }
        L->k_pool = kv_dev_rand(pool, s.dt, 1.0f, NULL);
        L->v_pool = kv_dev_rand(pool, s.dt, 1.0f, NULL);
        lr[l] = *L; /* the reference runs on its own copy of the pools */
        lr[l].k_pool = ts_cuda_alloc(g_cu, pool * es), lr[l].v_pool = ts_cuda_alloc(g_cu, pool * es);
        ts_cuda_copy(g_cu, lr[l].k_pool, L->k_pool, pool * es);
        ts_cuda_copy(g_cu, lr[l].v_pool, L->v_pool, pool * es);
    }
    int32_t *perm = xmalloc((size_t)n_blocks * 4);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    shuffle(perm, n_blocks);
    int32_t *tab_d = dup_dev(perm, (size_t)nb_seq * 4);
    float *inv = xmalloc((size_t)s.hd * 2);
    for (int j = 0; j < s.hd / 2; j++) inv[j] = (float)pow(1e6, -2.0 * j / s.hd);
    float *inv_d = dup_dev(inv, (size_t)s.hd * 2);
    float *x0 = xmalloc((size_t)s.H * 4), *xt = xmalloc((size_t)s.H * 4), *xr = xmalloc((size_t)s.H * 4);
    fill(x0, (size_t)s.H, 1.0f);
    float *xt_d = dup_dev(x0, (size_t)s.H * 4), *xr_d = dup_dev(x0, (size_t)s.H * 4);
    size_t sc = TS_DECODE_LAYERS_SCRATCH(s.nh, s.nkv, s.hd);
    void *scratch = ts_cuda_alloc(g_cu, sc);
    size_t pb = TS_ATTN_DECODE_PART(1, s.nh, s.hd) * 4;
    float *part = ts_cuda_alloc(g_cu, pb);
    ts_cuda_memset(g_cu, scratch, 0, sc), ts_cuda_memset(g_cu, part, 0, pb);
    int32_t *ib_d = ts_cuda_alloc(g_cu, 16);
    char what[160];
    snprintf(what, sizeof what, "H %d F %d heads %d/%d hd %d bs %d kv %d layers %d %s KV%s%s", s.H,
             s.F, s.nh, s.nkv, s.hd, s.bs, s.n_kv, s.n_layers, kv_name(s.dt),
             s.bias ? " bias" : "", s.qk_norm ? " qk-norm" : "");
    for (int st = 0; st < steps; st++) {
        int n_kv = s.n_kv + st, t = n_kv - 1;
        int32_t ib[4] = {t, perm[t / s.bs] * s.bs + t % s.bs, 0, n_kv}; /* pos, slot, info */
        if (ts_cuda_upload(g_cu, ib_d, ib, sizeof ib, NULL) != TS_OK) die_cuda("upload");
        ts_decode_layers d = {.q = nan_dev((size_t)qd), .k = nan_dev((size_t)kd),
                              .v = nan_dev((size_t)kd), .att = nan_dev((size_t)qd),
                              .h = nan_dev((size_t)s.F), .scratch = scratch,
                              .n_layers = s.n_layers, .hidden = s.H, .ffn = s.F, .n_heads = s.nh,
                              .n_kv_heads = s.nkv, .head_dim = s.hd, .block_size = s.bs,
                              .kv_dtype = s.dt, .eps = 1e-6f,
                              .scale = 1.0f / sqrtf((float)s.hd), .pos = ib_d, .slot = ib_d + 1,
                              .inv_freq = inv_d, .tables = tab_d, .info = ib_d + 2};
        ts_decode_layers r = d;
        d.x = xt_d, d.layers = lt;
        r.x = xr_d, r.layers = lr;
        bool took = ops->decode_layers(ops->ctx, &d);
        CHECKF(took, "decode_layers declined %s", what);
        ref_step(&s, &r, part);
        get(xt, xt_d, (size_t)s.H * 4), get(xr, xr_d, (size_t)s.H * 4);
        double e = rel_err(xt, xr, (size_t)s.H);
        /* the new slot of every layer's pools */
        size_t off = ((size_t)(ib[1] / s.bs) * s.nkv * s.bs + (size_t)(ib[1] % s.bs)) * s.hd;
        for (int l = 0; l < s.n_layers; l++)
            for (int kvh = 0; kvh < s.nkv; kvh++)
                for (int w = 0; w < 2; w++) {
                    size_t o = off + (size_t)kvh * s.bs * s.hd;
                    float a[128], b[128], raw[128];
                    get(raw, (char *)(w ? lt[l].v_pool : lt[l].k_pool) + o * es, (size_t)s.hd * es);
                    kv_decode(a, raw, (size_t)s.hd, s.dt);
                    get(raw, (char *)(w ? lr[l].v_pool : lr[l].k_pool) + o * es, (size_t)s.hd * es);
                    kv_decode(b, raw, (size_t)s.hd, s.dt);
                    double ek = rel_err(a, b, (size_t)s.hd);
                    if (s.dt != TS_DT_F32) { /* 16-bit: at most one step of rounding apart
                                               (f32 results a bit apart may round apart),
                                               or, near zero, within TOL of the vector's
                                               largest element (the f32 results' own
                                               difference, which no rounding step covers
                                               there) */
                        double step = s.dt == TS_DT_BF16 ? 0x1p-7 : 0x1p-10, big = 0;
                        for (int i = 0; i < s.hd; i++) big = fmax(big, fabs((double)b[i]));
                        ek = 0;
                        for (int i = 0; i < s.hd; i++)
                            if (!(fabs((double)a[i] - b[i]) <=
                                  step * fabs((double)b[i]) + TOL * big + 0x1p-24)) {
                                if (ek == 0)
                                    printf("  %s layer %d KV head %d %s[%d]: %.9g vs %.9g (largest %.3g)\n",
                                           what, l, kvh, w ? "v" : "k", i, a[i], b[i], big);
                                ek = INFINITY;
                            }
                    }
                    if (ek > e || isnan(ek)) e = ek;
                }
        if (e > worst || isnan(e)) worst = e;
        CHECKF(e < TOL, "decode_layers %s step %d: rel err %g", what, st, e);
        dfree(d.q), dfree(d.k), dfree(d.v), dfree(d.att), dfree(d.h);
    }
    for (int l = 0; l < s.n_layers; l++) {
        ts_wmat *w[7] = {&lt[l].wq, &lt[l].wk, &lt[l].wv, &lt[l].wo, &lt[l].w_gate, &lt[l].w_up,
                         &lt[l].w_down};
        for (int i = 0; i < 7; i++) ts_cuda_wmat_free(g_cu, w[i]);
        const float *v[8] = {lt[l].bq, lt[l].bk, lt[l].bv, lt[l].bo, lt[l].attn_norm,
                             lt[l].ffn_norm, lt[l].q_norm, lt[l].k_norm};
        for (int i = 0; i < 8; i++) dfree((void *)v[i]);
        dfree(lt[l].k_pool), dfree(lt[l].v_pool), dfree(lr[l].k_pool), dfree(lr[l].v_pool);
    }
    free(lt), free(lr), free(perm), free(inv), free(x0), free(xt), free(xr);
    dfree(tab_d), dfree(inv_d), dfree(xt_d), dfree(xr_d), dfree(scratch), dfree(part), dfree(ib_d);
}

/* Shapes it must decline, queueing nothing (x stays as it was). */
static void test_declines(void) {
    ts_dec_layer L = {.wq = rand_w(96, 64)};
    float *x = rand_dev(64, 0.0f, 1.0f);
    ts_decode_layers d = {.x = x, .layers = &L, .n_layers = 1, .hidden = 64, .ffn = 64,
                          .n_heads = 1, .n_kv_heads = 1, .head_dim = 96, .block_size = 16,
                          .kv_dtype = TS_DT_F32};
    CHECKF(!ops->decode_layers(ops->ctx, &d), "head_dim 96 taken");
    d.head_dim = 64, d.kv_dtype = TS_DT_I64;
    CHECKF(!ops->decode_layers(ops->ctx, &d), "i64 KV taken");
    d.kv_dtype = TS_DT_F32; /* weights of the wrong shape */
    CHECKF(!ops->decode_layers(ops->ctx, &d), "mismatched weights taken");
    d.n_heads = 8, d.n_kv_heads = 1; /* group 8 */
    CHECKF(!ops->decode_layers(ops->ctx, &d), "group 8 taken");
    ts_err err;
    CHECKF(ts_cuda_sync(g_cu, &err) == TS_OK, "declining left an error: %s", err.msg);
    ts_cuda_wmat_free(g_cu, &L.wq);
    dfree(x);
}

int main(void) {
    ts_err err;
    setenv("TS_CUDA_LAYERS", "1", 1); /* the op is tested even where the environment turns it off */
    ops = gpu_start("test_gpu_layers");
    CHECK(ops->decode_layers != NULL);
    const shape shapes[] = {
        {1024, 3072, 16, 8, 128, 16, 300, 2, false, true, TS_DT_F32}, /* Qwen3-0.6B's layer */
        {1024, 3072, 16, 8, 128, 16, 300, 2, false, true, TS_DT_BF16},
        {384, 1024, 6, 2, 64, 16, 1, 3, false, true, TS_DT_F32}, /* facts-qwen3-14m, first token */
        {384, 1024, 6, 2, 64, 16, 40, 3, false, true, TS_DT_F16},
        {48, 128, 4, 2, 32, 5, 37, 2, false, true, TS_DT_BF16},  /* the golden Qwen3 */
        {256, 512, 8, 2, 64, 16, 1000, 2, true, false, TS_DT_F32}, /* Qwen2-like: biases, group 4 */
        {512, 1536, 4, 4, 128, 16, 2000, 1, false, false, TS_DT_BF16}, /* group 1, long context */
        {200, 344, 3, 1, 64, 5, 70, 2, true, true, TS_DT_F16},   /* one KV head, ragged rows */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_layers(shapes[i]);
    test_declines();
    if (ts_cuda_sync(g_cu, &err) != TS_OK) CHECKF(0, "sticky error: %s", err.msg);
    printf("worst relative error: decode_layers %.3g\n", worst);
    ts_cuda_destroy(g_cu);
    return ts_test_done("test_gpu_layers");
}
