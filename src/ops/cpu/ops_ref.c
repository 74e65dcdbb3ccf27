/* Scalar reference for every op: plain loops, double accumulators, no
 * threads, no scratch. The SIMD kernels are tested against these, and the
 * backend falls back to them when a fast path cannot run. */
#include <math.h>

#include "ops/cpu/cpu_internal.h"

/* TS_PREC_BF16 rounds each activation to bf16 (nearest even) first; the
 * weights are used as stored (bf16 products are exact in f32/f64). */
void ts_ref_matmul(void *ctx, float *y, const float *x, int n, const ts_wmat *w,
                   const float *bias, ts_prec prec) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * (size_t)w->cols;
        for (int j = 0; j < w->rows; j++) {
            double acc = 0.0;
            for (int k = 0; k < w->cols; k++) {
                float xv = prec == TS_PREC_BF16 ? ts_round_bf16(xi[k]) : xi[k];
                acc += (double)xv * (double)ts_wmat_at(w, j, k);
            }
            if (bias) acc += bias[j];
            y[(size_t)i * (size_t)w->rows + (size_t)j] = (float)acc;
        }
    }
}

void ts_ref_embed(void *ctx, float *out, const ts_wmat *table, const int32_t *ids, int n) {
    (void)ctx;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < table->cols; c++)
            out[(size_t)i * (size_t)table->cols + (size_t)c] = ts_wmat_at(table, ids[i], c);
}

void ts_ref_rmsnorm(void *ctx, float *y, const float *x, const float *g, int n, int d,
                    float eps) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * (size_t)d;
        float *yi = y + (size_t)i * (size_t)d;
        double ss = 0.0;
        for (int c = 0; c < d; c++) ss += (double)xi[c] * xi[c];
        float inv = (float)(1.0 / sqrt(ss / d + eps));
        for (int c = 0; c < d; c++) yi[c] = xi[c] * inv * g[c];
    }
}

void ts_ref_add_rmsnorm(void *ctx, float *y, float *x, const float *r, const float *g, int n,
                        int d, float eps) {
    for (size_t i = 0; i < (size_t)n * (size_t)d; i++) x[i] += r[i];
    ts_ref_rmsnorm(ctx, y, x, g, n, d, eps);
}

void ts_ref_rope(void *ctx, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                 const float *inv_freq) {
    (void)ctx;
    int half = head_dim / 2;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < half; j++) {
            float ang = (float)pos[i] * inv_freq[j]; /* f32, as transformers */
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < n_heads; h++) {
                float *xh = x + ((size_t)i * (size_t)n_heads + (size_t)h) * (size_t)head_dim;
                float a = xh[j], b = xh[j + half];
                xh[j] = a * c - b * s;
                xh[j + half] = b * c + a * s;
            }
        }
    }
}

void ts_ref_swiglu(void *ctx, float *out, const float *gate, const float *up, int n, int d) {
    (void)ctx;
    for (size_t i = 0; i < (size_t)n * (size_t)d; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ts_ref_kv_write(void *ctx, void *k_pool, void *v_pool, ts_dtype kv_dtype, const float *k,
                     const float *v, const int32_t *slot, int n, int n_kv_heads, int head_dim,
                     int block_size) {
    (void)ctx;
    size_t hd = (size_t)head_dim;
    for (int i = 0; i < n; i++) {
        size_t b = (size_t)(slot[i] / block_size), r = (size_t)(slot[i] % block_size);
        for (int h = 0; h < n_kv_heads; h++) {
            size_t dst = ((b * (size_t)n_kv_heads + (size_t)h) * (size_t)block_size + r) * hd;
            size_t src = ((size_t)i * (size_t)n_kv_heads + (size_t)h) * hd;
            if (kv_dtype == TS_DT_F16 || kv_dtype == TS_DT_BF16) {
                uint16_t *kd = (uint16_t *)k_pool + dst, *vd = (uint16_t *)v_pool + dst;
                uint16_t (*cv)(float) = kv_dtype == TS_DT_F16 ? ts_f32_to_f16 : ts_f32_to_bf16;
                for (size_t c = 0; c < hd; c++) {
                    kd[c] = cv(k[src + c]);
                    vd[c] = cv(v[src + c]);
                }
            } else {
                memcpy((float *)k_pool + dst, k + src, hd * sizeof(float));
                memcpy((float *)v_pool + dst, v + src, hd * sizeof(float));
            }
        }
    }
}

static double ts_ref_dot(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* One query head q against slots [lo, hi] of KV head kvh: two passes, the
 * maximum score, then the softmax weights applied to V (scores recomputed,
 * not stored). An empty range gives o = 0 and *lse = -inf. */
static void ts_ref_attn_head(float *o, float *lse, const float *q, const void *kpool,
                             const void *vpool, ts_dtype dt, const int32_t *blocks, int lo,
                             int hi, int kvh, int n_kv_heads, int block_size, int hd,
                             float scale) {
    double acc[512];
    float kb[512], vb[512];
    double m = -INFINITY, sum = 0.0;
    for (int t = lo; t <= hi; t++) {
        const float *k = ts_kv_row(kb, kpool, dt, blocks, t, kvh, n_kv_heads, block_size, hd);
        double sc = ts_ref_dot(q, k, hd) * scale;
        if (sc > m) m = sc;
    }
    for (int c = 0; c < hd && c < 512; c++) acc[c] = 0.0;
    for (int t = lo; t <= hi; t++) {
        const float *k = ts_kv_row(kb, kpool, dt, blocks, t, kvh, n_kv_heads, block_size, hd);
        const float *v = ts_kv_row(vb, vpool, dt, blocks, t, kvh, n_kv_heads, block_size, hd);
        double p = exp(ts_ref_dot(q, k, hd) * scale - m);
        sum += p;
        for (int c = 0; c < hd && c < 512; c++) acc[c] += p * v[c];
    }
    for (int c = 0; c < hd; c++) o[c] = sum > 0.0 && c < 512 ? (float)(acc[c] / sum) : 0.0f;
    if (lse) *lse = sum > 0.0 ? (float)(m + log(sum)) : -INFINITY;
}

void ts_ref_attention(void *ctx, const ts_attn *a) {
    (void)ctx;
    int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    size_t qstride = (size_t)a->n_heads * (size_t)hd;
    for (int s = 0; s < a->n_seq; s++) {
        const ts_attn_seq *sq = &a->seqs[s];
        int lo = sq->kv_start > 0 ? sq->kv_start : 0;
        for (int i = 0; i < sq->n_q; i++) {
            int last = a->causal ? sq->n_kv - sq->n_q + i : sq->n_kv - 1;
            size_t row = (size_t)(sq->q_start + i);
            for (int h = 0; h < a->n_heads; h++)
                ts_ref_attn_head(a->out + row * qstride + (size_t)h * (size_t)hd,
                                 a->lse ? a->lse + row * (size_t)a->n_heads + (size_t)h : NULL,
                                 a->q + row * qstride + (size_t)h * (size_t)hd, a->k, a->v,
                                 a->kv_dtype, sq->blocks, lo, last, h / group, a->n_kv_heads, a->block_size,
                                 hd, a->scale);
        }
    }
}

void ts_ref_attention_shared(void *ctx, const ts_attn_shared *a) {
    (void)ctx;
    int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    size_t qstride = (size_t)a->n_heads * (size_t)hd;
    for (int i = 0; i < a->n_rows; i++) {
        size_t row = (size_t)a->rows[i];
        for (int h = 0; h < a->n_heads; h++)
            ts_ref_attn_head(a->out + row * qstride + (size_t)h * (size_t)hd,
                             a->lse + row * (size_t)a->n_heads + (size_t)h,
                             a->q + row * qstride + (size_t)h * (size_t)hd, a->k, a->v,
                             a->kv_dtype, a->blocks, 0, a->n_kv - 1, h / group, a->n_kv_heads,
                             a->block_size, hd, a->scale);
    }
}
