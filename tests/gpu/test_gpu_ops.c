/* Every CUDA kernel against the CPU reference (src/ops/cpu/ops_ref.c, double
 * accumulators) on fresh random inputs of awkward shapes: ragged lengths,
 * GQA ratios 1, 2, 3 and 8, head_dim 64 and 128, odd widths. Error is
 * ||out - ref|| / ||ref||: f32 arithmetic must stay under 1e-5, bf16
 * operands under 1e-2 (also checked against the unrounded f64 product),
 * attention_shared's tensor-core path on 16-bit KV under tol_kv16_mma()
 * (gpu_util.h);
 * K/V pools are f32, f16 and bf16 (the reference reads the same bits);
 * NaN never passes. Device outputs are poisoned (NaN) before each run, and
 * rows an op must not touch are checked to still be poisoned. Needs a GPU:
 * not part of `make test`; run by tests/gpu/run.sh. */
#include <time.h>

#include "gpu_util.h"
#include "test.h"

#define TOL_F32 1e-5
#define TOL_BF16 1e-2

static double worst[16];
static const char *worst_name[16] = {"embed", "rmsnorm", "add_rmsnorm", "rope", "swiglu",
                                     "kv_write", "matmul f32", "matmul bf16 (vs rounded ref)",
                                     "matmul bf16 (vs f64 exact)", "attention out",
                                     "attention lse", "attention_shared out",
                                     "attention_shared lse", "merge_rows", "attention_cascade",
                                     NULL};
static void note(int k, double e) {
    if (e > worst[k] || isnan(e)) worst[k] = e;
}

static const ts_ops *ops;

/* ---- elementwise ops ---- */

static void widen_table(uint16_t *dst16, float *dst32, const float *src, size_t n, ts_dtype dt) {
    for (size_t i = 0; i < n; i++) {
        if (dt == TS_DT_BF16) dst16[i] = ts_f32_to_bf16(src[i]);
        else if (dt == TS_DT_F16) {
            /* a value exactly representable in f16: k / 1024 for |k| < 1024 */
            int k = (int)(src[i] * 1023.0f);
            uint16_t h = 0;
            if (k != 0) {
                uint32_t a = (uint32_t)abs(k);
                int e = 0;
                while (a < 1024) a <<= 1, e++;
                h = (uint16_t)(((k < 0) << 15) | ((15 - e) << 10) | (a & 0x3ff));
            }
            dst16[i] = h;
        } else dst32[i] = src[i];
    }
}

static void test_embed(void) {
    const ts_dtype dts[3] = {TS_DT_F32, TS_DT_F16, TS_DT_BF16};
    for (int di = 0; di < 3; di++) {
        int rows = 37 + rnd_int(50), cols = 1 + rnd_int(700), n = 1 + rnd_int(20);
        size_t nt = (size_t)rows * cols;
        float *src = xmalloc(nt * 4), *t32 = xmalloc(nt * 4);
        uint16_t *t16 = xmalloc(nt * 2);
        fill(src, nt, 1.0f);
        widen_table(t16, t32, src, nt, dts[di]);
        ts_wmat h = {dts[di] == TS_DT_F32 ? (void *)t32 : (void *)t16, dts[di], rows, cols}, d;
        CHECK(ts_cuda_wmat_upload(g_cu, &h, &d, NULL) == TS_OK);
        int32_t *ids = xmalloc((size_t)n * 4);
        for (int i = 0; i < n; i++) ids[i] = rnd_int(rows);
        int32_t *ids_d = dup_dev(ids, (size_t)n * 4);
        float *out_d = nan_dev((size_t)n * cols), *out = xmalloc((size_t)n * cols * 4),
              *ref = xmalloc((size_t)n * cols * 4);
        ops->embed(ops->ctx, out_d, &d, ids_d, n);
        get(out, out_d, (size_t)n * cols * 4);
        ts_ref_embed(NULL, ref, &h, ids, n);
        double e = rel_err(out, ref, (size_t)n * cols);
        note(0, e);
        CHECKF(e == 0, "embed dtype %d rows %d cols %d: rel err %g", (int)dts[di], rows, cols, e);
        ts_cuda_wmat_free(g_cu, &d);
        dfree(ids_d), dfree(out_d);
        free(src), free(t32), free(t16), free(ids), free(out), free(ref);
    }
}

static void test_rmsnorm(void) {
    const int ds[5] = {1, 100, 1000, 1024, 4097};
    for (int k = 0; k < 5; k++) {
        int n = 1 + rnd_int(9), d = ds[k];
        size_t nd = (size_t)n * d;
        float *x = xmalloc(nd * 4), *r = xmalloc(nd * 4), *g = xmalloc((size_t)d * 4);
        float *y = xmalloc(nd * 4), *ref = xmalloc(nd * 4), *x2 = xmalloc(nd * 4);
        fill(x, nd, 3.0f), fill(r, nd, 1.0f), fill(g, (size_t)d, 2.0f);
        float *x_d = dup_dev(x, nd * 4), *r_d = dup_dev(r, nd * 4), *g_d = dup_dev(g, (size_t)d * 4);
        float *y_d = nan_dev(nd);
        ops->rmsnorm(ops->ctx, y_d, x_d, g_d, n, d, 1e-6f);
        get(y, y_d, nd * 4);
        ts_ref_rmsnorm(NULL, ref, x, g, n, d, 1e-6f);
        double e = rel_err(y, ref, nd);
        note(1, e);
        CHECKF(e < TOL_F32, "rmsnorm n %d d %d: rel err %g", n, d, e);
        /* in place (y aliases x) */
        ops->rmsnorm(ops->ctx, x_d, x_d, g_d, n, d, 1e-6f);
        get(y, x_d, nd * 4);
        e = rel_err(y, ref, nd);
        CHECKF(e < TOL_F32, "rmsnorm in place n %d d %d: rel err %g", n, d, e);
        /* fused residual */
        CHECK(ts_cuda_upload(g_cu, x_d, x, nd * 4, NULL) == TS_OK);
        ts_cuda_memset(g_cu, y_d, 0xff, nd * 4);
        ops->add_rmsnorm(ops->ctx, y_d, x_d, r_d, g_d, n, d, 1e-5f);
        memcpy(x2, x, nd * 4);
        ts_ref_add_rmsnorm(NULL, ref, x2, r, g, n, d, 1e-5f);
        get(y, y_d, nd * 4);
        e = rel_err(y, ref, nd);
        get(x, x_d, nd * 4);
        double ex = rel_err(x, x2, nd);
        note(2, e > ex ? e : ex);
        CHECKF(e < TOL_F32 && ex < TOL_F32, "add_rmsnorm n %d d %d: rel err y %g x %g", n, d, e, ex);
        dfree(x_d), dfree(r_d), dfree(g_d), dfree(y_d);
        free(x), free(r), free(g), free(y), free(ref), free(x2);
    }
}

static void test_rope(void) {
    const int hds[2] = {64, 128};
    for (int k = 0; k < 4; k++) {
        int hd = hds[k & 1], n = 1 + rnd_int(12), nh = 1 + rnd_int(9);
        size_t nx = (size_t)n * nh * hd;
        float *x = xmalloc(nx * 4), *ref = xmalloc(nx * 4), *out = xmalloc(nx * 4);
        float *inv = xmalloc((size_t)hd / 2 * 4);
        int32_t *pos = xmalloc((size_t)n * 4);
        fill(x, nx, 2.0f);
        for (int j = 0; j < hd / 2; j++) inv[j] = (float)pow(1e6, -2.0 * j / hd);
        for (int i = 0; i < n; i++) pos[i] = rnd_int(k < 2 ? 4096 : 40000);
        float *x_d = dup_dev(x, nx * 4), *inv_d = dup_dev(inv, (size_t)hd / 2 * 4);
        int32_t *pos_d = dup_dev(pos, (size_t)n * 4);
        ops->rope(ops->ctx, x_d, pos_d, n, nh, hd, inv_d);
        get(out, x_d, nx * 4);
        memcpy(ref, x, nx * 4);
        ts_ref_rope(NULL, ref, pos, n, nh, hd, inv);
        double e = rel_err(out, ref, nx);
        note(3, e);
        CHECKF(e < TOL_F32, "rope n %d heads %d hd %d: rel err %g", n, nh, hd, e);
        dfree(x_d), dfree(inv_d), dfree(pos_d);
        free(x), free(ref), free(out), free(inv), free(pos);
    }
}

static void test_swiglu(void) {
    for (int k = 0; k < 3; k++) {
        int n = 1 + rnd_int(7), d = 1 + rnd_int(3000);
        size_t nd = (size_t)n * d;
        float *g = xmalloc(nd * 4), *u = xmalloc(nd * 4), *out = xmalloc(nd * 4),
              *ref = xmalloc(nd * 4);
        fill(g, nd, 8.0f), fill(u, nd, 2.0f);
        float *g_d = dup_dev(g, nd * 4), *u_d = dup_dev(u, nd * 4), *o_d = nan_dev(nd);
        ops->swiglu(ops->ctx, o_d, g_d, u_d, n, d);
        get(out, o_d, nd * 4);
        ts_ref_swiglu(NULL, ref, g, u, n, d);
        double e = rel_err(out, ref, nd);
        /* aliasing: out == gate */
        ops->swiglu(ops->ctx, g_d, g_d, u_d, n, d);
        get(out, g_d, nd * 4);
        double e2 = rel_err(out, ref, nd);
        note(4, e > e2 ? e : e2);
        CHECKF(e < TOL_F32 && e2 < TOL_F32, "swiglu n %d d %d: rel err %g (aliased %g)", n, d, e, e2);
        dfree(g_d), dfree(u_d), dfree(o_d);
        free(g), free(u), free(out), free(ref);
    }
}

static void test_kv_write(ts_dtype dt) {
    const int hds[2] = {64, 128};
    size_t es = ts_kv_elem_bytes(dt);
    for (int k = 0; k < 4; k++) {
        int hd = hds[k & 1], nkv = 1 + rnd_int(8), bs = k < 2 ? 16 : 5, nb = 6 + rnd_int(6);
        int n_slots = nb * bs, n = 1 + rnd_int(n_slots < 40 ? n_slots : 40);
        size_t pool = (size_t)nb * nkv * bs * hd, rows = (size_t)n * nkv * hd;
        float *kk = xmalloc(rows * 4), *vv = xmalloc(rows * 4), *a = xmalloc(pool * 4),
              *b = xmalloc(pool * 4);
        void *kp, *vp, *out = xmalloc(pool * es);
        void *kp_d = kv_dev_rand(pool, dt, 1, &kp), *vp_d = kv_dev_rand(pool, dt, 1, &vp);
        fill(kk, rows, 1), fill(vv, rows, 1);
        int32_t *slots = xmalloc((size_t)n_slots * 4);
        for (int i = 0; i < n_slots; i++) slots[i] = i;
        shuffle(slots, n_slots);
        float *k_d = dup_dev(kk, rows * 4), *v_d = dup_dev(vv, rows * 4);
        int32_t *s_d = dup_dev(slots, (size_t)n * 4);
        ops->kv_write(ops->ctx, kp_d, vp_d, dt, k_d, v_d, s_d, n, nkv, hd, bs);
        ts_ref_kv_write(NULL, kp, vp, dt, kk, vv, slots, n, nkv, hd, bs);
        double e[2];
        for (int i = 0; i < 2; i++) { /* the same rounding: equal bits */
            get(out, i ? vp_d : kp_d, pool * es);
            kv_decode(a, out, pool, dt), kv_decode(b, i ? vp : kp, pool, dt);
            e[i] = rel_err(a, b, pool);
        }
        note(5, e[0] > e[1] ? e[0] : e[1]);
        CHECKF(e[0] == 0 && e[1] == 0, "kv_write %s n %d kv heads %d hd %d bs %d: rel err %g %g",
               kv_name(dt), n, nkv, hd, bs, e[0], e[1]);
        dfree(kp_d), dfree(vp_d), dfree(k_d), dfree(v_d), dfree(s_d);
        free(kp), free(vp), free(kk), free(vv), free(out), free(a), free(b), free(slots);
    }
}

/* ---- matmul ---- */

static void test_matmul(void) {
    const ts_dtype dts[3] = {TS_DT_BF16, TS_DT_F16, TS_DT_F32};
    /* 9-64 rows of bf16 weights with cols % 8 == 0 take matmul_tc.cu: launches
     * split by columns (256 x 512; 1000 x 1024, whose last band of 128 rows
     * holds 104) and unsplit ones whose last chunk holds 8 of its 64
     * columns (4500 x 264); cols 129 stays on cuBLAS */
    const int shapes[4][2] = {{67, 129}, {256, 512}, {1000, 1024}, {4500, 264}};
    const int ns[7] = {1, 5, 8, 9, 17, 33, 64};
    for (int di = 0; di < 3; di++)
        for (int si = 0; si < 4; si++)
            for (int ni = 0; ni < 7; ni++) {
                int rows = shapes[si][0], cols = shapes[si][1], n = ns[ni];
                if (si == 2 && n == 5) n = 37;
                size_t nw = (size_t)rows * cols, nx = (size_t)n * cols, ny = (size_t)n * rows;
                float *w32 = xmalloc(nw * 4), *src = xmalloc(nw * 4);
                uint16_t *w16 = xmalloc(nw * 2);
                fill(src, nw, 1.0f);
                widen_table(w16, w32, src, nw, dts[di]);
                ts_wmat h = {dts[di] == TS_DT_F32 ? (void *)w32 : (void *)w16, dts[di], rows, cols}, d;
                CHECK(ts_cuda_wmat_upload(g_cu, &h, &d, NULL) == TS_OK);
                float *x = xmalloc(nx * 4), *bias = xmalloc((size_t)rows * 4);
                float *y = xmalloc(ny * 4), *ref = xmalloc(ny * 4), *exact = xmalloc(ny * 4);
                fill(x, nx, 2.0f), fill(bias, (size_t)rows, 1.0f);
                float *x_d = dup_dev(x, nx * 4), *b_d = dup_dev(bias, (size_t)rows * 4);
                float *y_d = nan_dev(ny);
                for (int p = 0; p < 2; p++) {
                    ts_prec prec = p ? TS_PREC_BF16 : TS_PREC_F32;
                    const float *bb = (ni + p) & 1 ? b_d : NULL;
                    ts_cuda_memset(g_cu, y_d, 0xff, ny * 4);
                    ops->matmul(ops->ctx, y_d, x_d, n, &d, bb, prec);
                    get(y, y_d, ny * 4);
                    ts_ref_matmul(NULL, ref, x, n, &h, bb ? bias : NULL, prec);
                    double e = rel_err(y, ref, ny);
                    if (!p) {
                        note(6, e);
                        CHECKF(e < TOL_F32, "matmul f32 dtype %d %dx%d n %d: rel err %g",
                               (int)dts[di], rows, cols, n, e);
                    } else {
                        ts_ref_matmul(NULL, exact, x, n, &h, bb ? bias : NULL, TS_PREC_F32);
                        double e2 = rel_err(y, exact, ny);
                        note(7, e);
                        note(8, e2);
                        CHECKF(e < TOL_BF16 && e2 < TOL_BF16,
                               "matmul bf16 dtype %d %dx%d n %d: rel err %g (vs exact %g)",
                               (int)dts[di], rows, cols, n, e, e2);
                    }
                }
                ts_cuda_wmat_free(g_cu, &d);
                dfree(x_d), dfree(b_d), dfree(y_d);
                free(w32), free(src), free(w16), free(x), free(bias), free(y), free(ref), free(exact);
            }
}

/* ---- attention ---- */

typedef struct kvpool {
    int n_blocks, nkv, bs, hd;
    ts_dtype dt;
    void *k, *v, *k_d, *v_d; /* host and device pools, elements of dt */
    int next; /* next unused block of the permutation */
    int32_t *perm;
} kvpool;

static void pool_init(kvpool *p, int n_blocks, int nkv, int bs, int hd, ts_dtype dt) {
    p->n_blocks = n_blocks, p->nkv = nkv, p->bs = bs, p->hd = hd, p->dt = dt;
    size_t n = (size_t)n_blocks * nkv * bs * hd;
    p->k_d = kv_dev_rand(n, dt, 1.0f, &p->k), p->v_d = kv_dev_rand(n, dt, 1.0f, &p->v);
    p->perm = xmalloc((size_t)n_blocks * 4);
    for (int i = 0; i < n_blocks; i++) p->perm[i] = i;
    shuffle(p->perm, n_blocks);
    p->next = 0;
}
static void pool_free(kvpool *p) {
    dfree(p->k_d), dfree(p->v_d);
    free(p->k), free(p->v), free(p->perm);
}
/* A block table of `nb` fresh blocks (host array; the caller frees). */
static int32_t *pool_take(kvpool *p, int nb) {
    int32_t *t = xmalloc((size_t)(nb ? nb : 1) * 4);
    for (int i = 0; i < nb; i++) t[i] = p->perm[(p->next++) % p->n_blocks];
    return t;
}

static void test_attention(int hd, int group, int bs, bool causal, bool with_lse, int long_kv,
                           ts_dtype dt) {
    int nkv = 1 + rnd_int(3), nh = nkv * group, n_seq = 1 + rnd_int(5);
    ts_attn_seq seqs[8];
    int32_t *tabs[8], *tabs_d[8];
    int total_blocks = 0;
    int nq[8], nkvs[8], kst[8];
    for (int s = 0; s < n_seq; s++) {
        int kind = rnd_int(4);
        if (s == 0 && long_kv) kind = 4;
        int kv = 1 + rnd_int(300);
        int q = kind == 0 ? 1 : kind == 1 ? kv : kind == 2 ? 1 + rnd_int(kv) : 1;
        if (kind == 4) kv = long_kv, q = 1 + rnd_int(3);
        if (!causal && kind == 1) q = 1 + rnd_int(40);
        if (q > 160) q = 160;
        int ks = rnd_int(3) == 0 ? rnd_int(kv + 1) : 0; /* kv_start; may hide every slot */
        nq[s] = q, nkvs[s] = kv, kst[s] = ks;
        total_blocks += (kv + bs - 1) / bs;
    }
    kvpool pool;
    pool_init(&pool, total_blocks + 3, nkv, bs, hd, dt);
    int row = rnd_int(2); /* rows no sequence owns (gaps) must stay poisoned */
    for (int s = 0; s < n_seq; s++) {
        int nb = (nkvs[s] + bs - 1) / bs;
        tabs[s] = pool_take(&pool, nb);
        tabs_d[s] = dup_dev(tabs[s], (size_t)(nb ? nb : 1) * 4);
        seqs[s] = (ts_attn_seq){row, nq[s], nkvs[s], tabs[s], kst[s]};
        row += nq[s] + rnd_int(2);
    }
    int n_tok = row + 1;
    char *owned = calloc((size_t)n_tok, 1);
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < nq[s]; i++) owned[seqs[s].q_start + i] = 1;
    size_t nqf = (size_t)n_tok * nh * hd, nl = (size_t)n_tok * nh;
    float *q = xmalloc(nqf * 4), *out = xmalloc(nqf * 4), *ref = xmalloc(nqf * 4);
    float *lse = xmalloc(nl * 4), *lref = xmalloc(nl * 4);
    fill(q, nqf, 2.0f);
    for (size_t i = 0; i < nqf; i++) ref[i] = NAN;
    for (size_t i = 0; i < nl; i++) lref[i] = NAN;
    float *q_d = dup_dev(q, nqf * 4), *o_d = nan_dev(nqf), *l_d = nan_dev(nl);
    ts_attn a = {ref, lref, q, pool.k, pool.v, dt, nh, nkv, hd, bs, 1.0f / sqrtf((float)hd),
                 causal, n_seq, seqs};
    ts_ref_attention(NULL, &a);
    ts_attn_seq dseqs[8];
    for (int s = 0; s < n_seq; s++) dseqs[s] = seqs[s], dseqs[s].blocks = tabs_d[s];
    ts_attn ad = {o_d, with_lse ? l_d : NULL, q_d, pool.k_d, pool.v_d, dt, nh, nkv, hd, bs,
                  a.scale, causal, n_seq, dseqs};
    ops->attention(ops->ctx, &ad);
    get(out, o_d, nqf * 4);
    get(lse, l_d, nl * 4);
    /* compare owned rows (ref and out both NaN elsewhere would fail rel_err,
     * so gather them); unowned rows must still be NaN */
    size_t rw = (size_t)nh * hd, n_own = 0;
    float *oa = xmalloc(nqf * 4), *ob = xmalloc(nqf * 4), *la = xmalloc(nl * 4), *lb = xmalloc(nl * 4);
    int untouched = 1;
    for (int r = 0; r < n_tok; r++) {
        if (owned[r]) {
            memcpy(oa + n_own * rw, out + r * rw, rw * 4);
            memcpy(ob + n_own * rw, ref + r * rw, rw * 4);
            memcpy(la + n_own * nh, lse + (size_t)r * nh, (size_t)nh * 4);
            memcpy(lb + n_own * nh, lref + (size_t)r * nh, (size_t)nh * 4);
            n_own++;
        } else {
            for (size_t c = 0; c < rw; c++) untouched &= isnan(out[r * rw + c]);
            for (int c = 0; c < nh; c++) untouched &= isnan(lse[(size_t)r * nh + c]);
        }
    }
    double e = rel_err(oa, ob, n_own * rw);
    int all_zero = 1; /* every row empty: the reference is 0 and so must out be */
    for (size_t i = 0; i < n_own * rw; i++) all_zero &= ob[i] == 0;
    if (all_zero) {
        e = 0;
        for (size_t i = 0; i < n_own * rw; i++)
            if (oa[i] != 0) e = INFINITY;
    }
    double el = with_lse ? lse_err(la, lb, n_own * nh) : 0;
    if (!with_lse)
        for (size_t i = 0; i < nl; i++) untouched &= isnan(lse[i]);
    free(oa), free(ob), free(la), free(lb), free(owned);
    note(9, e);
    if (with_lse) note(10, el);
    CHECKF(e < TOL_F32 && el < TOL_F32 && untouched,
           "attention %s hd %d group %d bs %d causal %d seqs %d long %d: rel err %g lse %g "
           "untouched %d", kv_name(dt), hd, group, bs, (int)causal, n_seq, long_kv, e, el, untouched);
    for (int s = 0; s < n_seq; s++) free(tabs[s]), dfree(tabs_d[s]);
    dfree(q_d), dfree(o_d), dfree(l_d);
    free(q), free(out), free(ref), free(lse), free(lref);
    pool_free(&pool);
}

/* Compares the listed rows rows[0..n_rows) of out / lse with ref / lref
 * ([*][nh * hd], [*][nh]): *e, *el their errors (rel_err, lse_err); returns whether the unlisted rows
 * rows[n_rows..n_all) are still NaN in out and lse. */
static int cmp_listed(const float *out, const float *lse, const float *ref, const float *lref,
                      const int32_t *rows, int n_rows, int n_all, int nh, int hd, double *e,
                      double *el) {
    size_t rw = (size_t)nh * hd;
    float *oa = xmalloc((size_t)n_rows * rw * 4), *ob = xmalloc((size_t)n_rows * rw * 4);
    float *la = xmalloc((size_t)n_rows * nh * 4), *lb = xmalloc((size_t)n_rows * nh * 4);
    for (int i = 0; i < n_rows; i++) {
        memcpy(oa + i * rw, out + rows[i] * rw, rw * 4), memcpy(ob + i * rw, ref + rows[i] * rw, rw * 4);
        memcpy(la + (size_t)i * nh, lse + (size_t)rows[i] * nh, (size_t)nh * 4);
        memcpy(lb + (size_t)i * nh, lref + (size_t)rows[i] * nh, (size_t)nh * 4);
    }
    *e = rel_err(oa, ob, (size_t)n_rows * rw); /* an all-zero ref needs out exactly 0 */
    *el = lse_err(la, lb, (size_t)n_rows * nh);
    int untouched = 1;
    for (int i = n_rows; i < n_all; i++) {
        for (size_t c = 0; c < rw; c++) untouched &= isnan(out[rows[i] * rw + c]);
        for (int c = 0; c < nh; c++) untouched &= isnan(lse[(size_t)rows[i] * nh + c]);
    }
    free(oa), free(ob), free(la), free(lb);
    return untouched;
}

/* With TS_GPU_DUMP=DIR, a failed case's header ints and arrays into
 * DIR/NAME-N.bin (int count, ints, then each array as a u64 size and bytes),
 * to be examined off the device. */
static void dump_case(const char *name, const int *hdr, int nh, const void *const *arr,
                      const size_t *sz, int n) {
    static int seq;
    const char *dir = getenv("TS_GPU_DUMP");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s-%d.bin", dir, name, seq++);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(&nh, 4, 1, f), fwrite(hdr, 4, (size_t)nh, f);
    for (int i = 0; i < n; i++) {
        uint64_t z = sz[i];
        fwrite(&z, 8, 1, f), fwrite(arr[i], 1, sz[i], f);
    }
    fclose(f);
    printf("dumped %s\n", path);
}

/* One case of attention_shared: nkv KV heads, n_tok query tokens of which
 * n_rows are listed. */
static void test_attention_shared_case(int hd, int group, int bs, int n_kv, ts_dtype dt, int nkv,
                                       int n_tok, int n_rows) {
    int nh = nkv * group;
    kvpool pool;
    int nb = (n_kv + bs - 1) / bs;
    pool_init(&pool, nb + 2, nkv, bs, hd, dt);
    int32_t *tab = pool_take(&pool, nb), *tab_d = dup_dev(tab, (size_t)(nb ? nb : 1) * 4);
    int32_t *rows = xmalloc((size_t)n_tok * 4);
    for (int i = 0; i < n_tok; i++) rows[i] = i;
    shuffle(rows, n_tok);
    int32_t *rows_d = dup_dev(rows, (size_t)n_rows * 4);
    size_t nqf = (size_t)n_tok * nh * hd, nl = (size_t)n_tok * nh;
    float *q = xmalloc(nqf * 4), *out = xmalloc(nqf * 4), *ref = xmalloc(nqf * 4);
    float *lse = xmalloc(nl * 4), *lref = xmalloc(nl * 4);
    fill(q, nqf, 2.0f);
    for (size_t i = 0; i < nqf; i++) ref[i] = NAN;
    for (size_t i = 0; i < nl; i++) lref[i] = NAN;
    float *q_d = dup_dev(q, nqf * 4), *o_d = nan_dev(nqf), *l_d = nan_dev(nl);
    ts_attn_shared a = {ref, lref, q, rows, n_rows, pool.k, pool.v, dt, tab, n_kv, nh, nkv, hd, bs,
                        1.0f / sqrtf((float)hd), NULL, NULL};
    ts_ref_attention_shared(NULL, &a);
    ts_attn_shared ad = a;
    ad.out = o_d, ad.lse = l_d, ad.q = q_d, ad.rows = rows_d, ad.k = pool.k_d,
    ad.v = pool.v_d, ad.blocks = tab_d;
    ops->attention_shared(ops->ctx, &ad);
    get(out, o_d, nqf * 4);
    get(lse, l_d, nl * 4);
    /* listed rows match; unlisted rows are still NaN in both */
    double e, el;
    int untouched = cmp_listed(out, lse, ref, lref, rows, n_rows, n_tok, nh, hd, &e, &el);
    note(11, e);
    note(12, el);
    if (getenv("TS_GPU_SHAPE")) printf("  %s: rel err %.3g lse %.3g\n", kv_name(dt), e, el);
    double tol = dt == TS_DT_F32 ? TOL_F32 : tol_kv16_mma();
    CHECKF(e < tol && el < tol && untouched,
           "attention_shared %s hd %d group %d bs %d n_kv %d rows %d/%d: rel err %g lse %g "
           "untouched %d", kv_name(dt), hd, group, bs, n_kv, n_rows, n_tok, e, el, untouched);
    if (!(e < tol && el < tol)) {
        size_t es = dt == TS_DT_F32 ? 4 : 2, pn = (size_t)(nb + 2) * nkv * bs * hd;
        int hdr[10] = {hd, group, bs, n_kv, n_rows, n_tok, nkv, nh, nb, (int)dt};
        const void *arr[9] = {q, pool.k, pool.v, tab, rows, out, lse, ref, lref};
        size_t sz[9] = {nqf * 4, pn * es, pn * es, (size_t)nb * 4, (size_t)n_tok * 4,
                        nqf * 4, nl * 4, nqf * 4, nl * 4};
        dump_case("attention_shared", hdr, 10, arr, sz, 9);
    }
    dfree(q_d), dfree(o_d), dfree(l_d), dfree(tab_d), dfree(rows_d);
    free(tab), free(rows), free(q), free(out), free(ref), free(lse), free(lref);
    pool_free(&pool);
}

static void test_attention_shared(int hd, int group, int bs, int n_kv, ts_dtype dt) {
    int nkv = 1 + rnd_int(3), n_tok = 2 + rnd_int(70);
    test_attention_shared_case(hd, group, bs, n_kv, dt, nkv, n_tok, 1 + rnd_int(n_tok));
}

/* TS_GPU_SHAPE=hd,group,bs,n_kv,n_kv_heads,tokens,rows,reps: only that
 * attention_shared case, reps times for each KV type in TS_GPU_SHAPE_DT
 * (letters f, h, b for f32, f16, bf16; default "fhb"), to narrow a failure
 * down (tests/gpu/NOTES.md). */
static void run_shape(const char *shape) {
    int v[8];
    if (sscanf(shape, "%d,%d,%d,%d,%d,%d,%d,%d", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) != 8 || (v[0] != 64 && v[0] != 128) || v[1] < 1 || v[2] < 1 || v[3] < 0 ||
        v[4] < 1 || v[5] < 1 || v[6] < 1 || v[6] > v[5] || v[7] < 1) {
        CHECKF(0, "TS_GPU_SHAPE=%s: want hd (64|128),group,bs,n_kv,n_kv_heads,tokens,rows<=tokens,reps",
               shape);
        return;
    }
    const char *order = getenv("TS_GPU_SHAPE_DT");
    for (int r = 0; r < v[7]; r++)
        for (const char *o = order ? order : "fhb"; *o; o++) {
            ts_dtype dt = *o == 'f' ? TS_DT_F32 : *o == 'h' ? TS_DT_F16 : TS_DT_BF16;
            test_attention_shared_case(v[0], v[1], v[2], v[3], dt, v[4], v[5], v[6]);
        }
}

/* attention_cascade: n_seq decode rows (row s = sequence s) over a shared
 * prefix and each sequence's own slots, against the CPU's shared level,
 * attention over the own slots and merge_rows; rows not listed stay NaN. */
static void test_attention_cascade(int hd, int group, int bs, int n_kv, ts_dtype dt) {
    int nkv = 1 + rnd_int(3), nh = nkv * group, n_seq = 2 + rnd_int(40);
    int n_rows = 1 + rnd_int(n_seq), pb = (n_kv + bs - 1) / bs;
    int own[48], own_blocks = 0;
    for (int s = 0; s < n_seq; s++) {
        own[s] = rnd_int(4) == 0 ? 0 : rnd_int(5) == 0 ? 100 + rnd_int(200) : 1 + rnd_int(40);
        own_blocks += (own[s] + bs - 1) / bs;
    }
    kvpool pool;
    pool_init(&pool, pb + own_blocks + 2, nkv, bs, hd, dt);
    int32_t *ptab = pool_take(&pool, pb), *ptab_d = dup_dev(ptab, (size_t)(pb ? pb : 1) * 4);
    int32_t *otab = xmalloc((size_t)(own_blocks + 1) * 4), info[96];
    ts_attn_seq seqs[48];
    for (int s = 0, off = 0; s < n_seq; s++) {
        int nb = (own[s] + bs - 1) / bs;
        int32_t *t = pool_take(&pool, nb);
        memcpy(otab + off, t, (size_t)nb * 4);
        free(t);
        info[2 * s] = off, info[2 * s + 1] = own[s];
        seqs[s] = (ts_attn_seq){s, 1, own[s], otab + off, 0};
        off += nb;
    }
    int32_t *otab_d = dup_dev(otab, (size_t)(own_blocks + 1) * 4), *info_d = dup_dev(info, (size_t)n_seq * 8);
    int32_t rows[48];
    for (int i = 0; i < n_seq; i++) rows[i] = i;
    shuffle(rows, n_seq); /* the first n_rows are listed */
    int32_t *rows_d = dup_dev(rows, (size_t)n_rows * 4);
    size_t nqf = (size_t)n_seq * nh * hd, nl = (size_t)n_seq * nh;
    float *q = xmalloc(nqf * 4), *out = xmalloc(nqf * 4), *ref = xmalloc(nqf * 4), *ref2 = xmalloc(nqf * 4);
    float *lse = xmalloc(nl * 4), *lref = xmalloc(nl * 4), *lref2 = xmalloc(nl * 4);
    fill(q, nqf, 2.0f);
    float scale = 1.0f / sqrtf((float)hd);
    ts_attn_shared a = {ref, lref, q, rows, n_rows, pool.k, pool.v, dt, ptab, n_kv, nh, nkv, hd, bs,
                        scale, NULL, NULL};
    ts_ref_attention_shared(NULL, &a);
    ts_attn own_a = {ref2, lref2, q, pool.k, pool.v, dt, nh, nkv, hd, bs, scale, true, n_seq, seqs};
    ts_ref_attention(NULL, &own_a);
    ts_attn_merge_rows(ref, lref, ref2, lref2, rows, n_rows, nh, hd);
    float *q_d = dup_dev(q, nqf * 4), *o_d = nan_dev(nqf), *l_d = nan_dev(nl);
    ts_attn_shared ad = a;
    ad.out = o_d, ad.lse = l_d, ad.q = q_d, ad.rows = rows_d, ad.k = pool.k_d, ad.v = pool.v_d;
    ad.blocks = ptab_d, ad.own_tables = otab_d, ad.own_info = info_d;
    bool took = ops->attention_cascade(ops->ctx, &ad);
    int untouched = 1;
    double e = INFINITY, el = INFINITY;
    if (took) {
        get(out, o_d, nqf * 4);
        get(lse, l_d, nl * 4);
        untouched = cmp_listed(out, lse, ref, lref, rows, n_rows, n_seq, nh, hd, &e, &el);
    }
    note(14, e > el ? e : el);
    double tol = dt == TS_DT_F32 ? TOL_F32 : tol_kv16_mma();
    CHECKF(took && e < tol && el < tol && untouched,
           "attention_cascade %s hd %d group %d bs %d prefix %d rows %d/%d: took %d rel err %g lse %g "
           "untouched %d", kv_name(dt), hd, group, bs, n_kv, n_rows, n_seq, took, e, el, untouched);
    dfree(q_d), dfree(o_d), dfree(l_d), dfree(ptab_d), dfree(otab_d), dfree(info_d), dfree(rows_d);
    free(ptab), free(otab), free(q), free(out), free(ref), free(ref2), free(lse), free(lref), free(lref2);
    pool_free(&pool);
}

static void test_merge_rows(void) {
    for (int k = 0; k < 4; k++) {
        int n = 3 + rnd_int(30), nh = 1 + rnd_int(8), hd = k & 1 ? 128 : 64;
        size_t no = (size_t)n * nh * hd, nl = (size_t)n * nh;
        float *oa = xmalloc(no * 4), *ob = xmalloc(no * 4), *la = xmalloc(nl * 4),
              *lb = xmalloc(nl * 4), *out = xmalloc(no * 4), *lout = xmalloc(nl * 4);
        fill(oa, no, 1), fill(ob, no, 1), fill(la, nl, 10), fill(lb, nl, 10);
        for (size_t i = 0; i < nl; i++) { /* empty states on either side, or both */
            int r = rnd_int(6);
            if (r == 0 || r == 2) {
                la[i] = -INFINITY;
                for (int c = 0; c < hd; c++) oa[i * hd + c] = 0;
            }
            if (r == 1 || r == 2) {
                lb[i] = -INFINITY;
                for (int c = 0; c < hd; c++) ob[i * hd + c] = 0;
            }
        }
        int32_t *rows = xmalloc((size_t)n * 4);
        for (int i = 0; i < n; i++) rows[i] = i;
        shuffle(rows, n);
        int n_rows = k == 3 ? n : 1 + rnd_int(n);
        float *oa_d = dup_dev(oa, no * 4), *ob_d = dup_dev(ob, no * 4);
        float *la_d = dup_dev(la, nl * 4), *lb_d = dup_dev(lb, nl * 4);
        int32_t *r_d = dup_dev(rows, (size_t)n_rows * 4);
        if (k == 3) {
            ts_cuda_attn_merge(g_cu, oa_d, la_d, ob_d, lb_d, n, nh, hd);
            ts_attn_merge(oa, la, ob, lb, n, nh, hd);
        } else {
            ts_cuda_attn_merge_rows(g_cu, oa_d, la_d, ob_d, lb_d, r_d, n_rows, nh, hd);
            ts_attn_merge_rows(oa, la, ob, lb, rows, n_rows, nh, hd);
        }
        get(out, oa_d, no * 4);
        get(lout, la_d, nl * 4);
        double e = rel_err(out, oa, no), el = lse_err(lout, la, nl);
        note(13, e > el ? e : el);
        CHECKF(e < TOL_F32 && el < TOL_F32, "merge%s n %d heads %d: rel err %g lse %g",
               k == 3 ? "" : "_rows", n, nh, e, el);
        dfree(oa_d), dfree(ob_d), dfree(la_d), dfree(lb_d), dfree(r_d);
        free(oa), free(ob), free(la), free(lb), free(out), free(lout), free(rows);
    }
}

/* A failing call is reported, sticks, and stops later ops. */
static void test_errors(void) {
    ts_err err;
    ts_cuda *c = ts_cuda_create(0, &err);
    CHECK(c != NULL);
    if (!c) return;
    CHECK(ts_cuda_last_error(c) == NULL);
    void *huge = ts_cuda_alloc(c, (size_t)1 << 50); /* 1 PiB */
    CHECK(huge == NULL);
    CHECK(ts_cuda_last_error(c) != NULL);
    CHECK(ts_cuda_sync(c, &err) != TS_OK);
    CHECK(strstr(err.msg, "cuda") != NULL);
    printf("error path: %s\n", err.msg);
    ts_cuda_destroy(c);
    c = ts_cuda_create(0, &err);
    CHECK(c != NULL);
    if (!c) return;
    ts_wmat bad = {NULL, TS_DT_I64, 4, 4};
    float *y = ts_cuda_alloc(c, 64);
    ts_cuda_ops(c)->matmul(c, y, y, 1, &bad, NULL, TS_PREC_F32);
    CHECK(ts_cuda_last_error(c) != NULL && strstr(ts_cuda_last_error(c), "dtype"));
    ts_attn_shared as = {0};
    as.n_rows = 1, as.n_heads = 3, as.n_kv_heads = 2, as.head_dim = 64, as.block_size = 16;
    ts_cuda_ops(c)->attention_shared(c, &as); /* ignored: error already set */
    CHECK(ts_cuda_sync(c, NULL) != TS_OK);
    ts_cuda_destroy(c);
    ts_err e2;
    CHECK(ts_cuda_create(99, &e2) == NULL && strstr(e2.msg, "device 99"));
}

int main(void) {
    ts_err err;
    g_cu = ts_cuda_create(0, &err);
    if (!g_cu) {
        fprintf(stderr, "no CUDA backend: %s\n", err.msg);
        printf("test_gpu_ops: 0 passed, 1 failed\n");
        return 1;
    }
    printf("device: %s\n", ts_cuda_device_name(g_cu));
    const char *seed = getenv("TS_GPU_SEED");
    uint64_t sd = seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL);
    g_rng ^= sd * 0x9e3779b97f4a7c15ull;
    if (!g_rng) g_rng = 1;
    printf("seed %llu (TS_GPU_SEED to repeat)\n", (unsigned long long)sd);
    ops = ts_cuda_ops(g_cu);
    const char *shape = getenv("TS_GPU_SHAPE");
    if (shape) {
        run_shape(shape);
        ts_cuda_destroy(g_cu);
        return ts_test_done("test_gpu_ops");
    }
    test_embed();
    test_rmsnorm();
    test_rope();
    test_swiglu();
    const ts_dtype kvt[3] = {TS_DT_F32, TS_DT_F16, TS_DT_BF16};
    for (int d = 0; d < 3; d++) test_kv_write(kvt[d]);
    test_matmul();
    const int groups[4] = {1, 2, 3, 8}, hds[2] = {64, 128};
    for (int gi = 0; gi < 4; gi++)
        for (int hi = 0; hi < 2; hi++) {
            int bs = (gi + hi) & 1 ? 16 : 5;
            for (int d = 0; d < 3; d++) {
                ts_dtype dt = kvt[(d + gi + hi) % 3];
                test_attention(hds[hi], groups[gi], bs, true, true, 0, dt);
                test_attention(hds[hi], groups[gi], bs, false, gi & 1, 0, dt);
                test_attention(hds[hi], groups[gi], 16, true, true, 1500 + rnd_int(1500), dt);
                test_attention_shared(hds[hi], groups[gi], bs, 1 + rnd_int(400), dt);
                test_attention_shared(hds[hi], groups[gi], 16, 2000 + rnd_int(2000), dt);
            }
        }
    for (int d = 0; d < 3; d++) {
        test_attention(256, 2, 16, true, true, 0, kvt[d]);
        test_attention(96, 3, 7, true, true, 900, kvt[d]);
        test_attention_shared(64, 2, 16, 0, kvt[d]);
        test_attention_shared(128, 8, 16, 0, kvt[d]); /* empty prefix, the mma path's widest case */
        test_attention_shared(96, 3, 7, 300, kvt[d]); /* the generic kernel's */
        for (int gi = 0; gi < 4; gi++) {
            test_attention_cascade(128, groups[gi], 16, 1 + rnd_int(3000), kvt[d]);
            test_attention_cascade(64, groups[gi], 5, rnd_int(300), kvt[d]);
        }
        test_attention_cascade(128, 2, 16, 0, kvt[d]); /* no prefix: own slots only */
    }
    test_merge_rows();
    if (ts_cuda_sync(g_cu, &err) != TS_OK) CHECKF(0, "sticky error: %s", err.msg);
    test_errors();
    printf("worst relative errors (f32 bound %g, bf16 bound %g):\n", TOL_F32, TOL_BF16);
    for (int k = 0; worst_name[k]; k++) printf("  %-30s %.3g\n", worst_name[k], worst[k]);
    ts_cuda_destroy(g_cu);
    return ts_test_done("test_gpu_ops");
}
