/* The CPU op table: every op on every ISA this CPU has, against the scalar
 * reference on random inputs of awkward shapes; the reference itself
 * against naive double-precision formulas written here; the attention merge
 * (split = whole, empty = identity, associativity). Outputs are poisoned
 * with NaN before each run so that unwritten elements fail. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#include <string.h>

#include "base/pool.h"
#include "ops/cpu/cpu.h"
#include "ops/cpu/cpu_internal.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rnd(void) { return (float)((rnd_u32() & 0xffffff) / 8388608.0 - 1.0); }
static void fill(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = rnd();
}
static void poison(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}

static double rel_err_d(const float *a, const double *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i])) return INFINITY;
        d += (a[i] - b[i]) * (a[i] - b[i]);
        r += b[i] * b[i];
    }
    return r == 0 ? (d == 0 ? 0 : INFINITY) : sqrt(d / r);
}

static const char *isa_name(ts_cpu_isa i) {
    return i == TS_ISA_AVX512 ? "avx512" : i == TS_ISA_AVX2 ? "avx2" : "scalar";
}

/* ---- matmul ---- */

static void make_weights(void *dst, ts_dtype dt, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (dt == TS_DT_F32) {
            ((float *)dst)[i] = rnd();
        } else if (dt == TS_DT_BF16) {
            float f = rnd();
            uint32_t u;
            memcpy(&u, &f, 4);
            ((uint16_t *)dst)[i] = (uint16_t)(u >> 16);
        } else { /* f16 with exponents 10..16: |x| in [2^-5, 4) */
            uint32_t r = rnd_u32();
            ((uint16_t *)dst)[i] = (uint16_t)((r & 0x8000) | ((10 + r % 7) << 10) | (r >> 6 & 0x3ff));
        }
    }
}

/* The reference matmul against a double-precision formula, on one case. */
static void check_ref_matmul(void) {
    int n = 3, rows = 5, cols = 7;
    float x[21], y[15], b[5];
    uint16_t w[35];
    fill(x, 21);
    fill(b, 5);
    make_weights(w, TS_DT_F16, 35);
    ts_wmat wm = {.data = w, .dtype = TS_DT_F16, .rows = rows, .cols = cols};
    for (int prec = 0; prec < 2; prec++) {
        ts_ref_matmul(NULL, y, x, n, &wm, b, (ts_prec)prec);
        double e[15];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < rows; j++) {
                double s = b[j];
                for (int k = 0; k < cols; k++) {
                    float xv = x[i * cols + k];
                    if (prec) { /* bf16 round to nearest even, done by hand */
                        uint32_t u;
                        memcpy(&u, &xv, 4);
                        uint32_t lsb = (u >> 16) & 1;
                        u = (u + 0x7fff + lsb) & 0xffff0000u;
                        memcpy(&xv, &u, 4);
                    }
                    uint16_t h = w[j * cols + k];
                    double wv = ldexp((double)(0x400 | (h & 0x3ff)), ((h >> 10) & 0x1f) - 25);
                    s += xv * (h & 0x8000 ? -wv : wv);
                }
                e[i * rows + j] = s;
            }
        CHECKF(rel_err_d(y, e, 15) < 1e-6, "ref matmul vs double, prec %d", prec);
    }
}

static void check_matmul(const ts_ops *ops, const char *isa, int nth) {
    static const int ns[] = {1, 3, 8, 17, 64};
    static const int shapes[][2] = {{7, 48}, {33, 130}, {70, 300}, {64, 128}, {5, 33}};
    static const ts_dtype dts[] = {TS_DT_BF16, TS_DT_F32, TS_DT_F16};
    for (size_t d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
                int rows = shapes[s][0], cols = shapes[s][1], n = ns[ni];
                size_t es = dts[d] == TS_DT_F32 ? 4 : 2;
                void *w = malloc((size_t)rows * cols * es);
                float *x = malloc(sizeof(float) * n * cols), *b = malloc(sizeof(float) * rows);
                float *y = malloc(sizeof(float) * n * rows), *r = malloc(sizeof(float) * n * rows);
                float *r16 = malloc(sizeof(float) * n * rows);
                make_weights(w, dts[d], (size_t)rows * cols);
                fill(x, (size_t)n * cols);
                fill(b, rows);
                ts_wmat wm = {.data = w, .dtype = dts[d], .rows = rows, .cols = cols};
                const float *bias = (s & 1) ? b : NULL;
                ts_ref_matmul(NULL, r, x, n, &wm, bias, TS_PREC_F32);
                ts_ref_matmul(NULL, r16, x, n, &wm, bias, TS_PREC_BF16);
                poison(y, (size_t)n * rows);
                ops->matmul(ops->ctx, y, x, n, &wm, bias, TS_PREC_F32);
                double e = ts_test_rel_err(y, r, (size_t)n * rows);
                CHECKF(e < 1e-5, "%s/%d matmul f32 %s n=%d %dx%d err %g", isa, nth,
                       ts_dtype_name(dts[d]), n, rows, cols, e);
                poison(y, (size_t)n * rows);
                ops->matmul(ops->ctx, y, x, n, &wm, bias, TS_PREC_BF16);
                e = ts_test_rel_err(y, r, (size_t)n * rows);
                double e16 = ts_test_rel_err(y, r16, (size_t)n * rows);
                CHECKF(e < 1e-2 && e16 < 1e-5, "%s/%d matmul bf16 %s n=%d %dx%d err %g / %g", isa,
                       nth, ts_dtype_name(dts[d]), n, rows, cols, e, e16);
                free(w), free(x), free(b), free(y), free(r), free(r16);
            }
}

/* ---- element-wise ops ---- */

static void check_elementwise(const ts_ops *ops, const char *isa, int nth, int check_ref) {
    static const int shapes[][2] = {{1, 48}, {3, 130}, {17, 64}, {64, 1024}};
    for (size_t s = 0; s < 4; s++) {
        int n = shapes[s][0], d = shapes[s][1];
        size_t m = (size_t)n * d;
        float *x = malloc(m * 4), *x2 = malloc(m * 4), *r = malloc(m * 4), *y = malloc(m * 4),
              *ry = malloc(m * 4), *g = malloc(d * 4);
        double *e = malloc(m * sizeof(double));
        fill(x, m);
        fill(r, m);
        fill(g, d);
        /* rmsnorm */
        poison(y, m);
        ops->rmsnorm(ops->ctx, y, x, g, n, d, 1e-6f);
        ts_ref_rmsnorm(NULL, ry, x, g, n, d, 1e-6f);
        CHECKF(ts_test_rel_err(y, ry, m) < 1e-6, "%s/%d rmsnorm %dx%d", isa, nth, n, d);
        if (check_ref) {
            for (int i = 0; i < n; i++) {
                double ss = 0;
                for (int c = 0; c < d; c++) ss += (double)x[i * d + c] * x[i * d + c];
                for (int c = 0; c < d; c++)
                    e[i * d + c] = x[i * d + c] / sqrt(ss / d + 1e-6) * g[c];
            }
            CHECKF(rel_err_d(ry, e, m) < 1e-6, "ref rmsnorm vs double %dx%d", n, d);
        }
        /* add_rmsnorm */
        memcpy(x2, x, m * 4);
        poison(y, m);
        ops->add_rmsnorm(ops->ctx, y, x2, r, g, n, d, 1e-6f);
        for (size_t i = 0; i < m; i++) e[i] = x[i] + r[i];
        CHECKF(rel_err_d(x2, e, m) < 1e-7, "%s/%d add_rmsnorm residual", isa, nth);
        ts_ref_rmsnorm(NULL, ry, x2, g, n, d, 1e-6f);
        CHECKF(ts_test_rel_err(y, ry, m) < 1e-6, "%s/%d add_rmsnorm %dx%d", isa, nth, n, d);
        /* swiglu, in place on gate */
        memcpy(x2, x, m * 4);
        ops->swiglu(ops->ctx, x2, x2, r, n, d);
        for (size_t i = 0; i < m; i++) e[i] = x[i] / (1 + exp(-(double)x[i])) * r[i];
        CHECKF(rel_err_d(x2, e, m) < 1e-6, "%s/%d swiglu %dx%d", isa, nth, n, d);
        /* rope: d = n_heads * head_dim */
        int hd = d % 64 == 0 ? 64 : d % 16 == 0 ? 16 : 2, nh = d / hd;
        int32_t *pos = malloc(sizeof(int32_t) * n);
        float *inv = malloc(sizeof(float) * hd / 2);
        for (int i = 0; i < n; i++) pos[i] = (int32_t)(rnd_u32() % 5000);
        for (int j = 0; j < hd / 2; j++) inv[j] = (float)(1.0 / pow(1e6, 2.0 * j / hd));
        memcpy(x2, x, m * 4);
        ops->rope(ops->ctx, x2, pos, n, nh, hd, inv);
        for (int i = 0; i < n; i++)
            for (int h = 0; h < nh; h++)
                for (int j = 0; j < hd / 2; j++) {
                    size_t o = ((size_t)i * nh + h) * hd;
                    double ang = (float)pos[i] * inv[j]; /* the f32 product, as transformers */
                    double a = x[o + j], b = x[o + j + hd / 2];
                    e[o + j] = a * cos(ang) - b * sin(ang);
                    e[o + j + hd / 2] = b * cos(ang) + a * sin(ang);
                }
        CHECKF(rel_err_d(x2, e, m) < 1e-5, "%s/%d rope %dx%d", isa, nth, n, d);
        free(pos), free(inv);
        free(x), free(x2), free(r), free(y), free(ry), free(g), free(e);
    }
    /* embed: rows of a bf16 table */
    int vocab = 37, cols = 33, n = 5;
    uint16_t *t = malloc(sizeof(uint16_t) * vocab * cols);
    make_weights(t, TS_DT_BF16, (size_t)vocab * cols);
    ts_wmat tm = {.data = t, .dtype = TS_DT_BF16, .rows = vocab, .cols = cols};
    int32_t ids[5] = {0, 36, 7, 7, 20};
    float out[5 * 33];
    poison(out, 5 * 33);
    ops->embed(ops->ctx, out, &tm, ids, n);
    int ok = 1;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < cols; c++) {
            uint32_t u = (uint32_t)t[ids[i] * cols + c] << 16;
            float f;
            memcpy(&f, &u, 4);
            ok &= out[i * cols + c] == f;
        }
    CHECKF(ok, "%s/%d embed", isa, nth);
    free(t);
}

/* ---- attention ---- */

typedef struct acase {
    int n_heads, n_kv_heads, hd, bs, n_seq, n_tok, n_blocks;
    ts_attn_seq seqs[4];
    int32_t *blocks;
    float *q, *k, *v;
} acase;

/* Sequences with the given n_q / n_kv, block tables a random permutation. */
static void acase_make(acase *c, int n_heads, int n_kv_heads, int hd, int n_seq, const int *nq,
                       const int *nkv) {
    memset(c, 0, sizeof *c);
    c->n_heads = n_heads, c->n_kv_heads = n_kv_heads, c->hd = hd, c->bs = 16, c->n_seq = n_seq;
    int nb = 0;
    for (int s = 0; s < n_seq; s++) nb += (nkv[s] + c->bs - 1) / c->bs;
    c->n_blocks = nb + 3;
    c->blocks = malloc(sizeof(int32_t) * c->n_blocks);
    for (int i = 0; i < c->n_blocks; i++) c->blocks[i] = i;
    for (int i = c->n_blocks - 1; i > 0; i--) {
        int j = (int)(rnd_u32() % (uint32_t)(i + 1));
        int32_t t = c->blocks[i];
        c->blocks[i] = c->blocks[j], c->blocks[j] = t;
    }
    int tok = 0, b = 0;
    for (int s = 0; s < n_seq; s++) {
        c->seqs[s] = (ts_attn_seq){.q_start = tok, .n_q = nq[s], .n_kv = nkv[s], .blocks = c->blocks + b};
        tok += nq[s];
        b += (nkv[s] + c->bs - 1) / c->bs;
    }
    c->n_tok = tok;
    size_t pool = (size_t)c->n_blocks * n_kv_heads * c->bs * hd;
    c->q = malloc(sizeof(float) * ((size_t)tok * n_heads * hd + 1));
    c->k = malloc(sizeof(float) * pool);
    c->v = malloc(sizeof(float) * pool);
    fill(c->q, (size_t)tok * n_heads * hd);
    fill(c->k, pool);
    fill(c->v, pool);
    for (size_t i = 0; i < (size_t)tok * n_heads * hd; i++) c->q[i] *= 3.0f; /* peakier softmax */
}

static void acase_free(acase *c) { free(c->blocks), free(c->q), free(c->k), free(c->v); }

static ts_attn acase_attn(acase *c, float *out, float *lse, bool causal) {
    return (ts_attn){.out = out, .lse = lse, .q = c->q, .k = c->k, .v = c->v, .n_heads = c->n_heads,
                     .n_kv_heads = c->n_kv_heads, .head_dim = c->hd, .block_size = c->bs,
                     .scale = 1.0f / sqrtf((float)c->hd), .causal = causal, .n_seq = c->n_seq,
                     .seqs = c->seqs};
}

/* softmax(q k^T) v in double, straight from the definition. */
static void naive_attn(const acase *c, bool causal, double *out, double *lse) {
    int hd = c->hd, G = c->n_heads / c->n_kv_heads;
    double *sc = malloc(sizeof(double) * 4096);
    for (int s = 0; s < c->n_seq; s++) {
        const ts_attn_seq *sq = &c->seqs[s];
        for (int i = 0; i < sq->n_q; i++)
            for (int h = 0; h < c->n_heads; h++) {
                size_t row = (size_t)(sq->q_start + i) * c->n_heads + h;
                int nvis = causal ? sq->n_kv - sq->n_q + i + 1 : sq->n_kv;
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t < nvis; t++) {
                    const float *k = c->k + (((size_t)sq->blocks[t / c->bs] * c->n_kv_heads + h / G) * c->bs + t % c->bs) * hd;
                    double d = 0;
                    for (int e = 0; e < hd; e++) d += (double)c->q[row * hd + e] * k[e];
                    sc[t] = d / sqrt((double)hd);
                    if (sc[t] > mx) mx = sc[t];
                }
                for (int t = 0; t < nvis; t++) sum += exp(sc[t] - mx);
                for (int e = 0; e < hd; e++) {
                    double o = 0;
                    for (int t = 0; t < nvis; t++) {
                        const float *v = c->v + (((size_t)sq->blocks[t / c->bs] * c->n_kv_heads + h / G) * c->bs + t % c->bs) * hd;
                        o += exp(sc[t] - mx) / sum * v[e];
                    }
                    out[row * hd + e] = nvis > 0 ? o : 0.0;
                }
                lse[row] = nvis > 0 ? mx + log(sum) : -INFINITY;
            }
    }
    free(sc);
}

static int lse_close(const float *a, const float *b, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return 0;
        if (isinf(b[i]) || isinf(a[i])) {
            if (a[i] != b[i]) return 0;
        } else if (fabs((double)a[i] - b[i]) > tol) {
            return 0;
        }
    }
    return 1;
}

/* 16-bit pools (dt f16 or bf16): the reference over f32 pools holding the
 * same (rounded) values is the expectation for the op, and for the
 * reference's own 16-bit path. a is c's case (out/lse are overwritten).
 * With a bf16 pool the AVX-512 kernel multiplies bf16 operands (q rounded
 * to bf16 for q.k, softmax weights rounded for p.V) where every row sees
 * every slot of a chunk, so its bound is the bf16 one, 1e-2. */
static void check_attention_half(const ts_ops *ops, acase *c, ts_attn *a, float *out, float *lse,
                                 float *ro, float *rl, const char *isa, int nth, ts_dtype dt) {
    size_t pool = (size_t)c->n_blocks * c->n_kv_heads * c->bs * c->hd;
    size_t no = (size_t)c->n_tok * c->n_heads * c->hd, nl = (size_t)c->n_tok * c->n_heads;
    uint16_t *kh = malloc(pool * 2), *vh = malloc(pool * 2);
    float *kr = malloc(pool * 4), *vr = malloc(pool * 4);
    const char *dn = dt == TS_DT_F16 ? "f16" : "bf16";
    for (size_t i = 0; i < pool; i++) {
        if (dt == TS_DT_F16) {
            kh[i] = ts_f32_to_f16(c->k[i]), vh[i] = ts_f32_to_f16(c->v[i]);
            kr[i] = ts_f16_to_f32(kh[i]), vr[i] = ts_f16_to_f32(vh[i]);
        } else {
            kh[i] = ts_f32_to_bf16(c->k[i]), vh[i] = ts_f32_to_bf16(c->v[i]);
            kr[i] = ts_bf16_to_f32(kh[i]), vr[i] = ts_bf16_to_f32(vh[i]);
        }
    }
    ts_attn r = *a;
    r.out = ro, r.lse = rl, r.k = kr, r.v = vr, r.kv_dtype = TS_DT_F32;
    ts_ref_attention(NULL, &r);
    ts_attn h = r;
    h.out = out, h.lse = lse, h.k = kh, h.v = vh, h.kv_dtype = dt;
    poison(out, no), poison(lse, nl);
    ts_ref_attention(NULL, &h);
    CHECKF(ts_test_rel_err(out, ro, no) < 1e-6 && lse_close(lse, rl, nl, 1e-6),
           "ref attention %s pool vs widened f32 pool", dn);
    poison(out, no), poison(lse, nl);
    ops->attention(ops->ctx, &h);
    double e = ts_test_rel_err(out, ro, no);
    CHECKF(e < 1e-5 && lse_close(lse, rl, nl, 1e-5), "%s/%d attention %s pool G=%d hd=%d err %g",
           isa, nth, dn, c->n_heads / c->n_kv_heads, c->hd, e);
    free(kh), free(vh), free(kr), free(vr);
}

static void check_attention(const ts_ops *ops, const char *isa, int nth, int check_ref, int light) {
    static const int Gs[] = {1, 2, 3, 8}, hds[] = {16, 32, 64, 128};
    for (int gi = 0; gi < 4; gi++)
        for (int hi = 0; hi < 4; hi++) {
            if (light && (gi + hi) % 2) continue;
            for (int mode = 0; mode < 2; mode++) {
                bool causal = mode == 0;
                /* causal: decode, prefill, chunked prefill over cached slots;
                   non-causal: one sequence with no KV at all */
                int nq_c[] = {1, 17, 5}, nkv_c[] = {37, 17, 70};
                int nq_n[] = {3, 2, 1}, nkv_n[] = {0, 50, 130};
                int G = Gs[gi], n_kv_heads = G == 8 ? 1 : 2;
                acase c;
                acase_make(&c, G * n_kv_heads, n_kv_heads, hds[hi], 3, causal ? nq_c : nq_n,
                           causal ? nkv_c : nkv_n);
                size_t no = (size_t)c.n_tok * c.n_heads * c.hd, nl = (size_t)c.n_tok * c.n_heads;
                float *out = malloc(no * 4), *lse = malloc(nl * 4), *ro = malloc(no * 4),
                      *rl = malloc(nl * 4);
                ts_attn a = acase_attn(&c, ro, rl, causal);
                poison(ro, no), poison(rl, nl);
                ts_ref_attention(NULL, &a);
                if (check_ref) {
                    double *eo = malloc(no * sizeof(double)), *el = malloc(nl * sizeof(double));
                    naive_attn(&c, causal, eo, el);
                    float *elf = malloc(nl * 4);
                    for (size_t i = 0; i < nl; i++) elf[i] = (float)el[i];
                    CHECKF(rel_err_d(ro, eo, no) < 1e-6 && lse_close(rl, elf, nl, 1e-5),
                           "ref attention vs naive G=%d hd=%d causal=%d", G, c.hd, causal);
                    free(eo), free(el), free(elf);
                }
                a.out = out, a.lse = lse;
                poison(out, no), poison(lse, nl);
                ops->attention(ops->ctx, &a);
                double e = ts_test_rel_err(out, ro, no);
                CHECKF(e < 1e-5 && lse_close(lse, rl, nl, 1e-5), "%s/%d attention G=%d hd=%d causal=%d err %g",
                       isa, nth, G, c.hd, causal, e);
                /* without lse */
                a.lse = NULL;
                poison(out, no);
                ops->attention(ops->ctx, &a);
                CHECKF(ts_test_rel_err(out, ro, no) < 1e-5, "%s/%d attention no-lse G=%d hd=%d", isa, nth, G, c.hd);
                check_attention_half(ops, &c, &a, out, lse, ro, rl, isa, nth, TS_DT_F16);
                check_attention_half(ops, &c, &a, out, lse, ro, rl, isa, nth, TS_DT_BF16);
                free(out), free(lse), free(ro), free(rl);
                acase_free(&c);
            }
        }
    /* decode steps over long ranges (each sequence one query position): the
     * kernels split each KV range into pieces and merge them; one sequence
     * starts at kv_start (a cascade's own level) */
    static const int dG[] = {1, 2, 4, 8}, dhd[] = {64, 128};
    for (int gi = 0; gi < 4; gi++)
        for (int hi = 0; hi < 2; hi++) {
            if (light && (gi + hi) % 2) continue;
            int G = dG[gi], n_kv_heads = G == 8 ? 1 : 2, nq[] = {1, 1, 1}, nkv[] = {1500, 700, 1111};
            acase c;
            acase_make(&c, G * n_kv_heads, n_kv_heads, dhd[hi], gi % 2 ? 1 : 3, nq, nkv);
            if (c.n_seq > 1) c.seqs[1].kv_start = 300;
            size_t no = (size_t)c.n_tok * c.n_heads * c.hd, nl = (size_t)c.n_tok * c.n_heads;
            float *out = malloc(no * 4), *lse = malloc(nl * 4), *ro = malloc(no * 4),
                  *rl = malloc(nl * 4);
            ts_attn a = acase_attn(&c, ro, rl, true);
            poison(ro, no), poison(rl, nl);
            ts_ref_attention(NULL, &a);
            a.out = out, a.lse = lse;
            poison(out, no), poison(lse, nl);
            ops->attention(ops->ctx, &a);
            double e = ts_test_rel_err(out, ro, no);
            CHECKF(e < 1e-5 && lse_close(lse, rl, nl, 1e-5),
                   "%s/%d decode attention n_seq=%d G=%d hd=%d err %g", isa, nth, c.n_seq, G, c.hd, e);
            a.lse = NULL;
            poison(out, no);
            ops->attention(ops->ctx, &a);
            CHECKF(ts_test_rel_err(out, ro, no) < 1e-5, "%s/%d decode attention no-lse G=%d hd=%d",
                   isa, nth, G, c.hd);
            if (c.n_seq > 1) { /* row 0 named by no sequence: left as it was */
                ts_attn sub = a;
                sub.seqs = c.seqs + 1, sub.n_seq = c.n_seq - 1, sub.lse = lse;
                poison(out, no), poison(lse, nl);
                ops->attention(ops->ctx, &sub);
                size_t rw = (size_t)c.n_heads * c.hd;
                int kept = 1;
                for (size_t i = 0; i < rw; i++) kept &= isnan(out[i]);
                for (int h = 0; h < c.n_heads; h++) kept &= isnan(lse[h]);
                CHECKF(kept && ts_test_rel_err(out + rw, ro + rw, no - rw) < 1e-5,
                       "%s/%d decode attention over a subset of rows G=%d hd=%d", isa, nth, G, c.hd);
            }
            check_attention_half(ops, &c, &a, out, lse, ro, rl, isa, nth, TS_DT_F16);
            check_attention_half(ops, &c, &a, out, lse, ro, rl, isa, nth, TS_DT_BF16);
            free(out), free(lse), free(ro), free(rl);
            acase_free(&c);
        }
    /* kv_write then read back through the block table */
    int n = 5, nkh = 2, hd = 16, bs = 4;
    float kp[8 * 2 * 4 * 16], vp[8 * 2 * 4 * 16], k[5 * 32], v[5 * 32];
    int32_t slot[5] = {0, 7, 13, 30, 21};
    fill(k, 160), fill(v, 160);
    poison(kp, sizeof kp / 4), poison(vp, sizeof vp / 4);
    ops->kv_write(ops->ctx, kp, vp, TS_DT_F32, k, v, slot, n, nkh, hd, bs);
    uint16_t kh[8 * 2 * 4 * 16], vh[8 * 2 * 4 * 16], kb[8 * 2 * 4 * 16], vb[8 * 2 * 4 * 16];
    memset(kh, 0xff, sizeof kh), memset(vh, 0xff, sizeof vh);
    memset(kb, 0xff, sizeof kb), memset(vb, 0xff, sizeof vb);
    ops->kv_write(ops->ctx, kh, vh, TS_DT_F16, k, v, slot, n, nkh, hd, bs);
    ops->kv_write(ops->ctx, kb, vb, TS_DT_BF16, k, v, slot, n, nkh, hd, bs);
    int ok = 1, ok16 = 1, okb = 1;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < nkh; h++)
            for (int e = 0; e < hd; e++) {
                size_t o = (((size_t)(slot[i] / bs) * nkh + h) * bs + slot[i] % bs) * hd + e;
                size_t x = (size_t)(i * nkh + h) * hd + e;
                ok &= kp[o] == k[x] && vp[o] == v[x];
                ok16 &= kh[o] == ts_f32_to_f16(k[x]) && vh[o] == ts_f32_to_f16(v[x]);
                okb &= kb[o] == ts_f32_to_bf16(k[x]) && vb[o] == ts_f32_to_bf16(v[x]);
            }
    CHECKF(ok, "%s/%d kv_write", isa, nth);
    CHECKF(ok16, "%s/%d kv_write f16", isa, nth);
    CHECKF(okb, "%s/%d kv_write bf16", isa, nth);
}

/* ts_f32_to_f16 against the processor's own conversion (F16C, round to
 * nearest even) on special values and random bit patterns; ts_f16_to_f32
 * must give back every finite f16 exactly. */
#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t hw_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f32(uint16_t h) { return _cvtsh_ss(h); }
#endif
static void check_f16(void) {
#if defined(__x86_64__)
    unsigned ea, eb, ec, ed; /* F16C: CPUID leaf 1, ECX bit 29 (clang 14 lacks the builtin's name) */
    if (!__get_cpuid(1, &ea, &eb, &ec, &ed) || !(ec & (1u << 29))) return;
    static const float special[] = {0.0f, -0.0f, 65504.0f, 65519.0f, 65520.0f, 1e9f, -1e9f,
                                    6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f,
                                    2.9802326e-08f, 1e-30f, 1.0f / 3.0f, -2.5f};
    int bad = 0;
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        bad += ts_f32_to_f16(special[i]) != hw_f16(special[i]);
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = rnd_u32();
        if (i & 1) u = (u & 0x8fffffffu) | 0x30000000u; /* around the f16 range */
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        bad += ts_f32_to_f16(f) != hw_f16(f);
    }
    for (uint32_t h = 0; h < 0x10000; h++) {
        float a = ts_f16_to_f32((uint16_t)h), b = hw_f32((uint16_t)h);
        if (!isnan(b)) bad += memcmp(&a, &b, 4) != 0;
    }
    CHECKF(bad == 0, "f16 conversions: %d differ from F16C", bad);
#endif
}

/* Non-causal attention over KV split in parts, merged with ts_attn_merge. */
static void check_merge(void) {
    int nq[1] = {3}, nkv[1] = {48};
    acase c;
    acase_make(&c, 4, 2, 32, 1, nq, nkv);
    size_t no = 3 * 4 * 32, nl = 3 * 4;
    float wo[384], wl[12], po[3][384], pl[3][12];
    ts_attn a = acase_attn(&c, wo, wl, false);
    ts_ref_attention(NULL, &a);
    const int32_t *blocks = c.seqs[0].blocks;
    for (int p = 0; p < 3; p++) { /* part p: slots [16p, 16p + 16) = block p */
        c.seqs[0].n_kv = 16;
        c.seqs[0].blocks = blocks + p;
        a = acase_attn(&c, po[p], pl[p], false);
        ts_ref_attention(NULL, &a);
    }
    c.seqs[0].blocks = blocks;
    float ao[384], al[12], bo[384], bl[12];
    /* (0 + 1) + 2 */
    memcpy(ao, po[0], sizeof ao), memcpy(al, pl[0], sizeof al);
    ts_attn_merge(ao, al, po[1], pl[1], 3, 4, 32);
    ts_attn_merge(ao, al, po[2], pl[2], 3, 4, 32);
    CHECKF(ts_test_rel_err(ao, wo, no) < 1e-6 && lse_close(al, wl, nl, 1e-5), "merge of 3 parts = whole");
    /* 0 + (1 + 2) */
    memcpy(bo, po[1], sizeof bo), memcpy(bl, pl[1], sizeof bl);
    ts_attn_merge(bo, bl, po[2], pl[2], 3, 4, 32);
    float co[384], cl[12];
    memcpy(co, po[0], sizeof co), memcpy(cl, pl[0], sizeof cl);
    ts_attn_merge(co, cl, bo, bl, 3, 4, 32);
    CHECKF(ts_test_rel_err(co, ao, no) < 1e-6 && lse_close(cl, al, nl, 1e-6), "merge associative");
    /* the empty state is neutral on either side */
    float eo[384] = {0}, el[12];
    for (int i = 0; i < 12; i++) el[i] = -INFINITY;
    memcpy(bo, po[0], sizeof bo), memcpy(bl, pl[0], sizeof bl);
    ts_attn_merge(bo, bl, eo, el, 3, 4, 32);
    CHECK(memcmp(bo, po[0], sizeof bo) == 0 && memcmp(bl, pl[0], sizeof bl) == 0);
    memcpy(bo, eo, sizeof bo), memcpy(bl, el, sizeof bl);
    ts_attn_merge(bo, bl, po[0], pl[0], 3, 4, 32);
    CHECK(memcmp(bo, po[0], sizeof bo) == 0 && memcmp(bl, pl[0], sizeof bl) == 0);
    /* empty + empty stays empty, no NaN */
    memcpy(bo, eo, sizeof bo), memcpy(bl, el, sizeof bl);
    ts_attn_merge(bo, bl, eo, el, 3, 4, 32);
    int ok = 1;
    for (int i = 0; i < 384; i++) ok &= bo[i] == 0.0f;
    for (int i = 0; i < 12; i++) ok &= bl[i] == -INFINITY;
    CHECKF(ok, "empty + empty stays empty");
    acase_free(&c);
}

int main(void) {
    int light = getenv("TS_TEST_LIGHT") != NULL;
    check_ref_matmul();
    check_f16();
    ts_cpu_isa best = ts_cpu_isa_detect();
    printf("test_ops: best ISA %s\n", isa_name(best));
    static const int threads[] = {1, 2, 3};
    for (ts_cpu_isa isa = TS_ISA_SCALAR; isa <= best; isa++) {
        for (size_t ti = 0; ti < 3; ti++) {
            if (light && threads[ti] == 3) continue;
            if (isa == TS_ISA_SCALAR && threads[ti] != 1) continue;
            ts_pool *pool = ts_pool_create(threads[ti]);
            ts_cpu *cpu = ts_cpu_create(pool, isa);
            CHECK(cpu != NULL);
            if (!cpu) continue;
            CHECK(ts_cpu_isa_used(cpu) == isa);
            const ts_ops *ops = ts_cpu_ops(cpu);
            CHECK(strcmp(ops->name, isa == TS_ISA_AVX512 ? "cpu-avx512"
                                    : isa == TS_ISA_AVX2 ? "cpu-avx2" : "cpu-ref") == 0);
            const char *nm = isa_name(isa);
            if (isa != TS_ISA_SCALAR) check_matmul(ops, nm, threads[ti]);
            check_elementwise(ops, nm, threads[ti], isa == TS_ISA_SCALAR);
            check_attention(ops, nm, threads[ti], isa == TS_ISA_SCALAR, light);
            ts_cpu_destroy(cpu);
            ts_pool_destroy(pool);
        }
    }
    check_merge();
    ts_cpu_destroy(NULL);
    return ts_test_done("test_ops");
}
