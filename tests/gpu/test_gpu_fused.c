/* The CUDA backend's fused ops against the CPU reference composition of
 * the ops they replace (src/ops/cpu/ops_ref.c, double accumulators), on
 * fresh random inputs of awkward shapes:
 * - matmul_multi (q, k, v of one input) = matmul per weight;
 * - matmul_swiglu = matmul gate, matmul up, swiglu;
 * - qk_rope_kv = per-head rmsnorm of q and k, rope of both, kv_write;
 * - matmul_ex (RMSNorm folded in before, residual add after) = rmsnorm,
 *   matmul (or matmul, matmul, swiglu), then y += the result;
 * - attention_decode (lengths and block tables read on the device) =
 *   attention with one query row per sequence.
 * f32 arithmetic must stay under 1e-5 relative L2 error, bf16 activations
 * under 1e-2; outputs are NaN-poisoned before each run, words past each
 * output must stay poisoned, pool slots not written must keep their values.
 * Needs a GPU: run by tests/gpu/run.sh. */
#include "gpu_util.h"
#include "test.h"

#define TOL_F32 1e-5
#define TOL_BF16 1e-2
#define TOL_KV16 1e-4 /* a 16-bit KV pool written from f32 rows vs the CPU's rounding */
#define PAD 19 /* poisoned floats after each output */

static const ts_ops *ops;
static double worst[5];

/* f16 bits of f (|f| < 2; mantissa truncated, tiny values flushed to 0). */
static uint16_t to_f16(float f) {
    int e;
    float m = frexpf(fabsf(f), &e); /* |f| = m 2^e, m in [0.5, 1) */
    uint16_t s = (uint16_t)(f < 0 ? 0x8000 : 0);
    if (f == 0 || e + 14 <= 0) return s;
    return (uint16_t)(s | (e + 14) << 10 | (uint16_t)((2 * m - 1) * 1024));
}

/* A random weight matrix of dtype dt: host copy h (data owned), device copy d. */
static void make_w(ts_wmat *h, ts_wmat *d, ts_dtype dt, int rows, int cols) {
    size_t nw = (size_t)rows * cols;
    float *src = xmalloc(nw * 4);
    fill(src, nw, 1.0f);
    void *data;
    if (dt == TS_DT_F32) data = src;
    else {
        uint16_t *p = xmalloc(nw * 2);
        for (size_t i = 0; i < nw; i++)
            p[i] = dt == TS_DT_BF16 ? ts_f32_to_bf16(src[i]) : to_f16(src[i]);
        free(src);
        data = p;
    }
    *h = (ts_wmat){data, dt, rows, cols};
    if (ts_cuda_wmat_upload(g_cu, h, d, NULL) != TS_OK) die_cuda("weights");
}

/* Downloads n floats + PAD, checks the PAD stay NaN; returns the floats. */
static float *get_padded(const float *d, size_t n, const char *what) {
    float *h = xmalloc((n + PAD) * 4);
    get(h, d, (n + PAD) * 4);
    int bad = 0;
    for (int i = 0; i < PAD; i++) bad += !isnan(h[n + (size_t)i]);
    CHECKF(!bad, "%s: %d words written past the output", what, bad);
    return h;
}

static void check_err(int k, double e, bool bf16, const char *what, int n) {
    if (e > worst[k] || isnan(e)) worst[k] = e;
    CHECKF(e < (bf16 ? TOL_BF16 : TOL_F32), "%s n %d: rel err %g", what, n, e);
}

static void test_multi(ts_dtype dt, int n, bool with_bias) {
    int cols = dt == TS_DT_F32 ? 260 : 512 + 8 * rnd_int(80);
    int rows[3] = {1 + rnd_int(700), 1 + rnd_int(300), 1 + rnd_int(300)};
    ts_wmat h[3], d[3];
    float *b[3], *b_d[3], *y_d[3];
    size_t nx = (size_t)n * cols;
    float *x = xmalloc(nx * 4);
    fill(x, nx, 2.0f);
    float *x_d = dup_dev(x, nx * 4);
    for (int i = 0; i < 3; i++) {
        make_w(&h[i], &d[i], dt, rows[i], cols);
        b[i] = xmalloc((size_t)rows[i] * 4);
        fill(b[i], (size_t)rows[i], 1.0f);
        b_d[i] = with_bias && i != 1 ? dup_dev(b[i], (size_t)rows[i] * 4) : NULL;
        y_d[i] = nan_dev((size_t)n * rows[i] + PAD);
    }
    for (int p = 0; p < 2; p++) {
        ts_prec prec = p ? TS_PREC_BF16 : TS_PREC_F32;
        for (int i = 0; i < 3; i++) ts_cuda_memset(g_cu, y_d[i], 0xff, ((size_t)n * rows[i] + PAD) * 4);
        float *const ys[3] = {y_d[0], y_d[1], y_d[2]};
        const float *const bs[3] = {b_d[0], b_d[1], b_d[2]};
        ops->matmul_multi(ops->ctx, ys, x_d, n, d, bs, 3, prec);
        for (int i = 0; i < 3; i++) {
            size_t ny = (size_t)n * rows[i];
            float *y = get_padded(y_d[i], ny, "matmul_multi"), *ref = xmalloc(ny * 4);
            ts_ref_matmul(NULL, ref, x, n, &h[i], b_d[i] ? b[i] : NULL, prec);
            check_err(0, rel_err(y, ref, ny), p, "matmul_multi", n);
            free(y), free(ref);
        }
    }
    for (int i = 0; i < 3; i++) {
        ts_cuda_wmat_free(g_cu, &d[i]);
        free((void *)h[i].data), free(b[i]);
        dfree(b_d[i]), dfree(y_d[i]);
    }
    free(x), dfree(x_d);
}

static void test_swiglu(ts_dtype dt, int n) {
    int cols = dt == TS_DT_F32 ? 132 : 256 + 8 * rnd_int(100), rows = 1 + rnd_int(1500);
    ts_wmat hg, dg, hu, du;
    make_w(&hg, &dg, dt, rows, cols);
    make_w(&hu, &du, dt, rows, cols);
    size_t nx = (size_t)n * cols, ny = (size_t)n * rows;
    float *x = xmalloc(nx * 4), *g = xmalloc(ny * 4), *u = xmalloc(ny * 4), *ref = xmalloc(ny * 4);
    fill(x, nx, 2.0f);
    float *x_d = dup_dev(x, nx * 4), *o_d = nan_dev(ny + PAD);
    for (int p = 0; p < 2; p++) {
        ts_prec prec = p ? TS_PREC_BF16 : TS_PREC_F32;
        ts_cuda_memset(g_cu, o_d, 0xff, (ny + PAD) * 4);
        ops->matmul_swiglu(ops->ctx, o_d, x_d, n, &dg, &du, prec);
        float *o = get_padded(o_d, ny, "matmul_swiglu");
        ts_ref_matmul(NULL, g, x, n, &hg, NULL, prec);
        ts_ref_matmul(NULL, u, x, n, &hu, NULL, prec);
        ts_ref_swiglu(NULL, ref, g, u, n, rows);
        check_err(1, rel_err(o, ref, ny), p, "matmul_swiglu", n);
        free(o);
    }
    ts_cuda_wmat_free(g_cu, &dg), ts_cuda_wmat_free(g_cu, &du);
    free((void *)hg.data), free((void *)hu.data);
    free(x), free(g), free(u), free(ref), dfree(x_d), dfree(o_d);
}

static void test_qk_rope_kv(int nh, int nkv, int hd, int bs, int n, bool norm, ts_dtype dt) {
    int n_blocks = (n + bs - 1) / bs + 3;
    size_t pool = (size_t)n_blocks * nkv * bs * hd, nq = (size_t)n * nh * hd, nk = (size_t)n * nkv * hd;
    float *q = xmalloc(nq * 4), *k = xmalloc(nk * 4), *v = xmalloc(nk * 4);
    float *kp = xmalloc(pool * 4), *vp = xmalloc(pool * 4), *gq = xmalloc((size_t)hd * 4);
    size_t pb = pool * ts_kv_elem_bytes(dt); /* a pool's bytes */
    void *kp16 = xmalloc(pb), *vp16 = xmalloc(pb);
    float *gk = xmalloc((size_t)hd * 4), *inv = xmalloc((size_t)hd / 2 * 4);
    int32_t *pos = xmalloc((size_t)n * 4), *slot = xmalloc((size_t)n_blocks * bs * 4);
    fill(q, nq, 3.0f), fill(k, nk, 3.0f), fill(v, nk, 1.0f), fill(kp, pool, 1.0f), fill(vp, pool, 1.0f);
    kv_encode(kp16, kp, pool, dt), kv_encode(vp16, vp, pool, dt);
    for (int j = 0; j < hd; j++) gq[j] = 1.0f + 0.5f * rnd(), gk[j] = 1.0f + 0.5f * rnd();
    for (int j = 0; j < hd / 2; j++) inv[j] = powf(1e6f, -2.0f * (float)j / (float)hd);
    for (int i = 0; i < n; i++) pos[i] = rnd_int(40000);
    for (int i = 0; i < n_blocks * bs; i++) slot[i] = i;
    shuffle(slot, n_blocks * bs); /* the first n: distinct random slots */
    float *q_d = dup_dev(q, nq * 4), *k_d = dup_dev(k, nk * 4), *v_d = dup_dev(v, nk * 4);
    void *kp_d = dup_dev(kp16, pb), *vp_d = dup_dev(vp16, pb);
    float *gq_d = dup_dev(gq, (size_t)hd * 4), *gk_d = dup_dev(gk, (size_t)hd * 4);
    float *inv_d = dup_dev(inv, (size_t)hd / 2 * 4);
    int32_t *pos_d = dup_dev(pos, (size_t)n * 4), *slot_d = dup_dev(slot, (size_t)n * 4);
    ops->qk_rope_kv(ops->ctx, q_d, k_d, v_d, norm ? gq_d : NULL, norm ? gk_d : NULL, 1e-6f, pos_d,
                    inv_d, kp_d, vp_d, dt, slot_d, n, nh, nkv, hd, bs);
    if (norm) {
        ts_ref_rmsnorm(NULL, q, q, gq, n * nh, hd, 1e-6f);
        ts_ref_rmsnorm(NULL, k, k, gk, n * nkv, hd, 1e-6f);
    }
    ts_ref_rope(NULL, q, pos, n, nh, hd, inv);
    ts_ref_rope(NULL, k, pos, n, nkv, hd, inv);
    ts_ref_kv_write(NULL, kp16, vp16, dt, k, v, slot, n, nkv, hd, bs);
    float *q2 = xmalloc(nq * 4), *k2 = xmalloc(nk * 4), *kp2 = xmalloc(pool * 4), *vp2 = xmalloc(pool * 4);
    get(q2, q_d, nq * 4), get(k2, k_d, nk * 4);
    get(kp, kp_d, pb), get(vp, vp_d, pb); /* raw device pools */
    kv_decode(kp2, kp, pool, dt), kv_decode(vp2, vp, pool, dt);
    kv_decode(kp, kp16, pool, dt), kv_decode(vp, vp16, pool, dt); /* the reference's */
    double e = rel_err(q2, q, nq);
    double e2 = rel_err(k2, k, nk);
    if (e2 > e) e = e2;
    /* the pools (slots not written must be unchanged): a 16-bit element may
     * round the other way where the f32 results differ in the last bit, a
     * rare one-step (2^-9) difference, far under TOL_KV16 in the norm;
     * rounding that is wrong everywhere gives ~1e-3 */
    double ep = rel_err(kp2, kp, pool), e4 = rel_err(vp2, vp, pool);
    if (e4 > ep) ep = e4;
    if (e > worst[2] || isnan(e)) worst[2] = e;
    CHECKF(e < TOL_F32 && ep < (dt == TS_DT_F32 ? TOL_F32 : TOL_KV16),
           "qk_rope_kv %s heads %d/%d hd %d bs %d n %d norm %d: rel err %g, pools %g", kv_name(dt),
           nh, nkv, hd, bs, n, norm, e, ep);
    free(q), free(k), free(v), free(kp), free(vp), free(gq), free(gk), free(inv), free(pos), free(slot);
    free(kp16), free(vp16);
    free(q2), free(k2), free(kp2), free(vp2);
    dfree(q_d), dfree(k_d), dfree(v_d), dfree(kp_d), dfree(vp_d), dfree(gq_d), dfree(gk_d);
    dfree(inv_d), dfree(pos_d), dfree(slot_d);
}

static void test_ex(ts_dtype dt, int n, bool swi, bool norm, bool acc) {
    int cols = dt == TS_DT_F32 ? 516 : 1024, n_w = swi ? 2 : 1 + rnd_int(3);
    int rows[3] = {1 + rnd_int(900), 1 + rnd_int(300), 1 + rnd_int(300)};
    if (swi) rows[1] = rows[0];
    int n_out = swi ? 1 : n_w;
    ts_wmat h[3], d[3];
    size_t nx = (size_t)n * cols;
    float *x = xmalloc(nx * 4), *g = xmalloc((size_t)cols * 4), *xn = xmalloc(nx * 4);
    fill(x, nx, 2.0f);
    for (int j = 0; j < cols; j++) g[j] = 1.0f + 0.5f * rnd();
    float *x_d = dup_dev(x, nx * 4), *g_d = dup_dev(g, (size_t)cols * 4);
    float *y0[3] = {0}, *y_d[3] = {0}, *b[3] = {0}, *b_d[3] = {0};
    for (int i = 0; i < n_w; i++) {
        make_w(&h[i], &d[i], dt, rows[i], cols);
        b[i] = xmalloc((size_t)rows[i] * 4);
        fill(b[i], (size_t)rows[i], 1.0f);
        b_d[i] = !swi && (i + n) % 2 ? dup_dev(b[i], (size_t)rows[i] * 4) : NULL;
    }
    for (int i = 0; i < n_out; i++) {
        size_t ny = (size_t)n * rows[i];
        y0[i] = xmalloc((ny + PAD) * 4);
        fill(y0[i], ny, 1.0f);
        for (int k = 0; k < PAD; k++) y0[i][ny + (size_t)k] = NAN;
        y_d[i] = dup_dev(y0[i], (ny + PAD) * 4);
        if (!acc) ts_cuda_memset(g_cu, y_d[i], 0xff, (ny + PAD) * 4);
    }
    float *const ys[3] = {y_d[0], y_d[1], y_d[2]};
    const float *const bs[3] = {b_d[0], b_d[1], b_d[2]};
    ts_matmul_ex e = {.y = ys, .x = x_d, .n = n, .w = d, .bias = bs, .n_w = n_w,
                      .norm_g = norm ? g_d : NULL, .norm_eps = 1e-6f, .accumulate = acc,
                      .swiglu = swi, .prec = TS_PREC_F32};
    ops->matmul_ex(ops->ctx, &e);
    if (norm) ts_ref_rmsnorm(NULL, xn, x, g, n, cols, 1e-6f);
    else memcpy(xn, x, nx * 4);
    for (int i = 0; i < n_out; i++) {
        size_t ny = (size_t)n * rows[i];
        float *ref = xmalloc(ny * 4), *up = xmalloc(ny * 4);
        ts_ref_matmul(NULL, ref, xn, n, &h[i], b_d[i] ? b[i] : NULL, TS_PREC_F32);
        if (swi) {
            ts_ref_matmul(NULL, up, xn, n, &h[1], NULL, TS_PREC_F32);
            ts_ref_swiglu(NULL, ref, ref, up, n, rows[0]);
        }
        if (acc)
            for (size_t k = 0; k < ny; k++) ref[k] = y0[i][k] + ref[k];
        float *y = get_padded(y_d[i], ny, "matmul_ex");
        double err = rel_err(y, ref, ny);
        if (err > worst[4] || isnan(err)) worst[4] = err;
        CHECKF(err < TOL_F32, "matmul_ex dtype %d n %d n_w %d swiglu %d norm %d acc %d: rel err %g",
               (int)dt, n, n_w, swi, norm, acc, err);
        free(ref), free(up), free(y), free(y0[i]), dfree(y_d[i]);
    }
    for (int i = 0; i < n_w; i++) {
        ts_cuda_wmat_free(g_cu, &d[i]);
        free((void *)h[i].data), free(b[i]), dfree(b_d[i]);
    }
    free(x), free(g), free(xn), dfree(x_d), dfree(g_d);
}

static void test_decode(int n_seq, int nh, int nkv, int hd, int bs, int max_len, ts_dtype dt) {
    int32_t *len = xmalloc((size_t)n_seq * 4), *info = xmalloc((size_t)n_seq * 8);
    int total_blocks = 0;
    for (int s = 0; s < n_seq; s++) {
        len[s] = rnd_int(max_len + 1);
        if (s == 0 && max_len > 0) len[s] = max_len; /* the longest */
        total_blocks += (len[s] + bs - 1) / bs;
    }
    int n_blocks = total_blocks + 4;
    size_t pool = (size_t)n_blocks * nkv * bs * hd, nq = (size_t)n_seq * nh * hd;
    float *q = xmalloc(nq * 4), *ref = xmalloc(nq * 4), *out = xmalloc(nq * 4);
    size_t nl = (size_t)n_seq * nh;
    float *lref = xmalloc(nl * 4), *lse = xmalloc(nl * 4);
    void *kp, *vp;
    void *kp_d = kv_dev_rand(pool, dt, 1.0f, &kp), *vp_d = kv_dev_rand(pool, dt, 1.0f, &vp);
    fill(q, nq, 1.0f);
    int32_t *perm = xmalloc((size_t)n_blocks * 4), *tables = xmalloc((size_t)(total_blocks + 1) * 4);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    shuffle(perm, n_blocks);
    ts_attn_seq *seqs = xmalloc((size_t)n_seq * sizeof *seqs);
    int off = 0;
    for (int s = 0; s < n_seq; s++) {
        int nb = (len[s] + bs - 1) / bs;
        memcpy(tables + off, perm + off, (size_t)nb * 4);
        info[2 * s] = off, info[2 * s + 1] = len[s];
        seqs[s] = (ts_attn_seq){.q_start = s, .n_q = 1, .n_kv = len[s], .blocks = tables + off};
        off += nb;
    }
    float scale = 1.0f / sqrtf((float)hd);
    ts_attn a = {.out = ref, .lse = lref, .q = q, .k = kp, .v = vp, .kv_dtype = dt, .n_heads = nh, .n_kv_heads = nkv,
                 .head_dim = hd, .block_size = bs, .scale = scale, .causal = true,
                 .n_seq = n_seq, .seqs = seqs};
    ts_ref_attention(NULL, &a);
    float *q_d = dup_dev(q, nq * 4);
    int32_t *tab_d = dup_dev(tables, (size_t)(off + 1) * 4), *info_d = dup_dev(info, (size_t)n_seq * 8);
    float *part_d = nan_dev(TS_ATTN_DECODE_PART(n_seq, nh, hd)), *out_d = nan_dev(nq + PAD);
    float *lse_d = nan_dev(nl);
    ts_cuda_memset(g_cu, part_d, 0, TS_ATTN_DECODE_PART(n_seq, nh, hd) * 4); /* its contract */
    /* three runs on one scratch: without lse (the decode step's), with it
     * (cascade's), then the first half of the sequences only (a batch that
     * shrank: each sequence's scratch must not move with n_seq) */
    for (int rep = 0; rep < 3; rep++) {
        int ns = rep < 2 ? n_seq : (n_seq + 1) / 2;
        size_t nqs = (size_t)ns * nh * hd, nls = (size_t)ns * nh;
        ts_cuda_memset(g_cu, out_d, 0xff, (nq + PAD) * 4);
        ts_cuda_memset(g_cu, lse_d, 0xff, nl * 4);
        ops->attention_decode(ops->ctx, out_d, rep ? lse_d : NULL, part_d, q_d, kp_d, vp_d, dt,
                              tab_d, info_d, ns, nh, nkv, hd, bs, scale);
        free(out);
        out = get_padded(out_d, nq, "attention_decode");
        double e = rel_err(out, ref, nqs), el = 0.0;
        get(lse, lse_d, nl * 4);
        if (rep) el = lse_err(lse, lref, nls);
        else
            for (size_t i = 0; i < nl; i++) el += !isnan(lse[i]); /* untouched: still NaN */
        for (size_t i = nqs; i < nq; i++) el += !isnan(out[i]);  /* rows past ns untouched */
        if (e > worst[3] || isnan(e)) worst[3] = e;
        CHECKF(e < TOL_F32 && el < TOL_F32,
               "attention_decode %s seqs %d of %d heads %d/%d hd %d bs %d max %d: rel err %g, lse %g",
               kv_name(dt), ns, n_seq, nh, nkv, hd, bs, max_len, e, el);
    }
    free(len), free(info), free(kp), free(vp), free(q), free(ref), free(out), free(perm);
    free(lref), free(lse);
    dfree(lse_d);
    free(tables), free(seqs);
    dfree(kp_d), dfree(vp_d), dfree(q_d), dfree(tab_d), dfree(info_d), dfree(part_d), dfree(out_d);
}

int main(void) {
    ts_err err;
    ops = gpu_start("test_gpu_fused");
    CHECK(ops->matmul_multi && ops->matmul_swiglu && ops->qk_rope_kv && ops->matmul_ex &&
          ops->attention_decode);
    const ts_dtype dts[3] = {TS_DT_BF16, TS_DT_F16, TS_DT_F32};
    const int ns[9] = {1, 2, 3, 8, 9, 17, 33, 64, 70};
    for (int di = 0; di < 3; di++)
        for (int ni = 0; ni < 9; ni++) {
            test_multi(dts[di], ns[ni], (ni + di) & 1);
            test_swiglu(dts[di], ns[ni]);
        }
    const int heads[4][2] = {{16, 8}, {4, 4}, {6, 2}, {24, 3}}, hds[3] = {64, 128, 96};
    const ts_dtype kvt[3] = {TS_DT_F32, TS_DT_F16, TS_DT_BF16};
    for (int h = 0; h < 4; h++)
        for (int d = 0; d < 3; d++)
            for (int ni = 0; ni < 3; ni++)
                test_qk_rope_kv(heads[h][0], heads[h][1], hds[d], (h + d) & 1 ? 16 : 5,
                                ni == 0 ? 1 : ni == 1 ? 3 : 17, (h + ni) % 3 != 0,
                                kvt[(h + d + ni) % 3]);
    const int ens[6] = {1, 3, 8, 9, 20, 64};
    for (int di = 0; di < 2; di++)
        for (int ni = 0; ni < 6; ni++)
            for (int k = 0; k < 8; k++)
                test_ex(di ? TS_DT_F32 : TS_DT_BF16, ens[ni], k & 1, k & 2, k & 4);
    const int seqs[4] = {1, 3, 8, 40}, lens[4] = {1, 37, 700, 3000};
    for (int h = 0; h < 4; h++)
        for (int d = 0; d < 3; d++)
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < 3; k++)
                    test_decode(seqs[(h + d + i) % 4], heads[h][0], heads[h][1], hds[d],
                                (h + i) & 1 ? 16 : 5, lens[i], kvt[k]);
    for (int k = 0; k < 3; k++) {
        test_decode(2, 8, 8, 256, 16, 100, kvt[k]); /* group 1, the widest head */
        test_decode(4, 32, 4, 128, 16, 0, kvt[k]);  /* empty ranges give 0 */
        /* enough (sequence, KV head) pairs for fewer pieces each, down to two */
        test_decode(70, 16, 8, 128, 16, 300, kvt[k]);
        test_decode(130, 6, 2, 64, 5, 700, kvt[k]);
        test_decode(300, 16, 8, 128, 16, 200, kvt[k]);
        test_decode(300, 8, 8, 96, 16, 0, kvt[k]);
    }
    if (ts_cuda_sync(g_cu, &err) != TS_OK) CHECKF(0, "sticky error: %s", err.msg);
    printf("worst relative errors: matmul_multi %.3g, matmul_swiglu %.3g, qk_rope_kv %.3g, "
           "attention_decode %.3g, matmul_ex %.3g\n", worst[0], worst[1], worst[2], worst[3],
           worst[4]);
    ts_cuda_destroy(g_cu);
    return ts_test_done("test_gpu_fused");
}
