/* Flash-style paged attention, written once over a small vector vocabulary
 * and included by attn_avx2.c and attn_avx512.c, which define:
 *   VF, VW (floats per vector), V_LOAD, V_STORE, V_FMA(a, b, c) = a*b + c,
 *   V_MUL, V_ADD, V_MAX, V_SET1, V_ZERO, V_HSUM, V_HMAX, V_EXP, ATTN_FN, and
 *   KV_WIDEN(dst, src, n): n f16 values (n % VW == 0) to f32.
 * f16 pools: each chunk's K and V rows are widened into a per-thread tile
 * first, so the kernels below only ever see f32 rows.
 *
 * Work item = (sequence, KV head, tile of query positions). Its rows are
 * every (query position, q head of the GQA group) pair, so each K and V
 * row is loaded once from memory and used by all of them (decode: one pass
 * over the KV head for the whole group). KV is walked in chunks of TS_AC
 * slots with an online softmax (running max m, sum l, output O rescaled
 * when m grows), so no n x n score matrix exists. Items are handed out
 * through an atomic counter because causal tiles differ in cost. A row sees
 * slots [kv_start, its last]; an empty range leaves L = 0: out 0, lse -inf. */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>

#define TS_INLINE_A static inline __attribute__((always_inline))

#define TS_AC 64      /* KV slots per chunk (a multiple of VW) */
#define TS_AROWS 32   /* rows per work item: query positions x group */
#define TS_APF 8      /* KV slots prefetched ahead */

typedef struct attn_job {
    ts_cpu *cpu;
    const ts_attn *a;
    int group, tq, n_tiles_max;
    long n_items;
    _Atomic long next;
    _Atomic int fail;
} attn_job;

static float dotv(const float *a, const float *b, int hd) {
    VF s0 = V_ZERO(), s1 = V_ZERO();
    int c = 0;
    for (; c + 2 * VW <= hd; c += 2 * VW) {
        s0 = V_FMA(V_LOAD(a + c), V_LOAD(b + c), s0);
        s1 = V_FMA(V_LOAD(a + c + VW), V_LOAD(b + c + VW), s1);
    }
    if (c < hd) s0 = V_FMA(V_LOAD(a + c), V_LOAD(b + c), s0);
    return V_HSUM(V_ADD(s0, s1));
}

/* *s0 = a0 . b, *s1 = a1 . b: one pass over b for two query rows. */
static void dotv2(const float *a0, const float *a1, const float *b, int hd, float *s0,
                  float *s1) {
    VF x0 = V_ZERO(), x1 = V_ZERO(), y0 = V_ZERO(), y1 = V_ZERO();
    int c = 0;
    for (; c + 2 * VW <= hd; c += 2 * VW) {
        VF b0 = V_LOAD(b + c), b1 = V_LOAD(b + c + VW);
        x0 = V_FMA(V_LOAD(a0 + c), b0, x0);
        x1 = V_FMA(V_LOAD(a0 + c + VW), b1, x1);
        y0 = V_FMA(V_LOAD(a1 + c), b0, y0);
        y1 = V_FMA(V_LOAD(a1 + c + VW), b1, y1);
    }
    if (c < hd) {
        VF b0 = V_LOAD(b + c);
        x0 = V_FMA(V_LOAD(a0 + c), b0, x0);
        y0 = V_FMA(V_LOAD(a1 + c), b0, y0);
    }
    *s0 = V_HSUM(V_ADD(x0, x1));
    *s1 = V_HSUM(V_ADD(y0, y1));
}

/* O[r] += sum_t P[r][t] V[t] for R <= 4 rows (P = S, row stride TS_AC) over
 * slots t0 .. t0 + cn - 1, every row seeing every slot. Each 2-vector column
 * strip of O stays in registers while the slots stream by, so O is loaded
 * and stored once per chunk instead of once per slot. */
TS_INLINE_A void pv_strip(float *O, const float *S, const float *const *vr, int cn, int R,
                          int hd) {
    for (int c = 0; c < hd; c += 2 * VW) {
        VF o[4][2];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            o[r][0] = V_LOAD(O + (size_t)r * hd + c);
            o[r][1] = V_LOAD(O + (size_t)r * hd + c + VW);
        }
        for (int t = 0; t < cn; t++) {
            VF v0 = V_LOAD(vr[t] + c), v1 = V_LOAD(vr[t] + c + VW);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < R; r++) {
                VF p = V_SET1(S[(size_t)r * TS_AC + t]);
                o[r][0] = V_FMA(p, v0, o[r][0]);
                o[r][1] = V_FMA(p, v1, o[r][1]);
            }
        }
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            V_STORE(O + (size_t)r * hd + c, o[r][0]);
            V_STORE(O + (size_t)r * hd + c + VW, o[r][1]);
        }
    }
}

/* The row at element offset off of a pool as f32: the pool's own (f32) or
 * widened into dst[hd] (f16). */
TS_INLINE_A const float *kv_row_f32(float *dst, const void *pool, ts_dtype dt, size_t off,
                                    int hd) {
    if (dt != TS_DT_F16) return (const float *)pool + off;
    KV_WIDEN(dst, (const uint16_t *)pool + off, hd);
    return dst;
}

/* kr[t], vr[t] = K and V rows of KV head h for slots t0 .. t0 + n - 1 (one
 * division for the whole range instead of one per slot); f16 rows are
 * widened into tile[2 n][head_dim]. */
static void kv_rows(const float **kr, const float **vr, const ts_attn *a, const int32_t *blocks,
                    int h, int t0, int n, float *tile) {
    int bs = a->block_size, b = t0 / bs, o = t0 % bs, hd = a->head_dim;
    for (int t = 0; t < n; t++) {
        size_t off = (((size_t)blocks[b] * (size_t)a->n_kv_heads + (size_t)h) * (size_t)bs +
                      (size_t)o) * (size_t)hd;
        kr[t] = kv_row_f32(tile + (size_t)(2 * t) * hd, a->k, a->kv_dtype, off, hd);
        vr[t] = kv_row_f32(tile + (size_t)(2 * t + 1) * hd, a->v, a->kv_dtype, off, hd);
        if (++o == bs) o = 0, b++;
    }
}

static void pv_small(float *O, const float *S, const float *const *vr, int cn, int R, int hd) {
    switch (R) {
    case 1: pv_strip(O, S, vr, cn, 1, hd); break;
    case 2: pv_strip(O, S, vr, cn, 2, hd); break;
    case 3: pv_strip(O, S, vr, cn, 3, hd); break;
    default: pv_strip(O, S, vr, cn, 4, hd); break;
    }
}

/* Runs one item: sequence s, KV head h, query positions [i0, i1). */
static void attn_item(const attn_job *j, float *scr, int s, int h, int i0, int i1) {
    const ts_attn *a = j->a;
    const ts_attn_seq *sq = &a->seqs[s];
    int hd = a->head_dim, G = j->group, R = (i1 - i0) * G;
    size_t qstride = (size_t)a->n_heads * (size_t)hd;
    float *Q = scr, *O = Q + (size_t)R * hd, *S = O + (size_t)R * hd, *M = S + (size_t)R * TS_AC,
          *L = M + R;
    int lim[TS_AROWS]; /* last visible slot per row */
    int tmax = 0, lmin = INT_MAX;
    const float *kr[TS_AC + TS_APF], *vr[TS_AC + TS_APF]; /* this chunk's rows and a few more */
    for (int r = 0; r < R; r++) {
        int i = i0 + r / G, hq = h * G + r % G;
        const float *q = a->q + (size_t)(sq->q_start + i) * qstride + (size_t)hq * hd;
        VF sc = V_SET1(a->scale);
        for (int c = 0; c < hd; c += VW) {
            V_STORE(Q + (size_t)r * hd + c, V_MUL(V_LOAD(q + c), sc));
            V_STORE(O + (size_t)r * hd + c, V_ZERO());
        }
        lim[r] = a->causal ? sq->n_kv - sq->n_q + i : sq->n_kv - 1;
        if (lim[r] + 1 > tmax) tmax = lim[r] + 1;
        if (lim[r] < lmin) lmin = lim[r];
        M[r] = -INFINITY;
        L[r] = 0.0f;
    }
    /* slots before kv_start belong to a shared level computed elsewhere */
    for (int t0 = sq->kv_start > 0 ? sq->kv_start : 0; t0 < tmax; t0 += TS_AC) {
        int cn = tmax - t0 < TS_AC ? tmax - t0 : TS_AC;
        int nr = tmax - t0 < TS_AC + TS_APF ? tmax - t0 : TS_AC + TS_APF;
        if (a->kv_dtype == TS_DT_F16) nr = cn; /* widened rows are in cache already */
        kv_rows(kr, vr, a, sq->blocks, h, t0, nr, L + R);
        /* scores; K and V rows TS_APF slots ahead are prefetched (blocks are
         * scattered, so hardware prefetch cannot follow the table) */
        for (int t = 0; t < cn; t++) {
            if (t + TS_APF < nr) {
                const char *kn = (const char *)kr[t + TS_APF], *vn = (const char *)vr[t + TS_APF];
                for (size_t c = 0; c < (size_t)hd * sizeof(float); c += 64) {
                    _mm_prefetch(kn + c, _MM_HINT_T0);
                    _mm_prefetch(vn + c, _MM_HINT_T0);
                }
            }
            const float *kp = kr[t];
            int r = 0;
            for (; r + 2 <= R; r += 2) {
                float *s0 = S + (size_t)r * TS_AC + t, *s1 = s0 + TS_AC;
                if (t0 + t <= lim[r] && t0 + t <= lim[r + 1]) {
                    dotv2(Q + (size_t)r * hd, Q + (size_t)(r + 1) * hd, kp, hd, s0, s1);
                } else {
                    *s0 = t0 + t <= lim[r] ? dotv(Q + (size_t)r * hd, kp, hd) : -INFINITY;
                    *s1 = t0 + t <= lim[r + 1] ? dotv(Q + (size_t)(r + 1) * hd, kp, hd)
                                               : -INFINITY;
                }
            }
            for (; r < R; r++)
                S[(size_t)r * TS_AC + t] =
                    t0 + t <= lim[r] ? dotv(Q + (size_t)r * hd, kp, hd) : -INFINITY;
        }
        /* online softmax */
        for (int r = 0; r < R; r++) {
            float *Sr = S + (size_t)r * TS_AC;
            for (int t = cn; t < TS_AC; t++) Sr[t] = -INFINITY;
            VF mx = V_SET1(-INFINITY);
            for (int t = 0; t < TS_AC; t += VW) mx = V_MAX(mx, V_LOAD(Sr + t));
            float cm = V_HMAX(mx);
            if (cm == -INFINITY) { /* row sees nothing in this chunk */
                for (int t = 0; t < TS_AC; t += VW) V_STORE(Sr + t, V_ZERO());
                continue;
            }
            float mn = cm > M[r] ? cm : M[r];
            float corr = expf(M[r] - mn); /* 0 on the first chunk */
            VF sum = V_ZERO();
            for (int t = 0; t < TS_AC; t += VW) {
                VF p = V_EXP(V_ADD(V_LOAD(Sr + t), V_SET1(-mn)));
                V_STORE(Sr + t, p);
                sum = V_ADD(sum, p);
            }
            L[r] = L[r] * corr + V_HSUM(sum);
            M[r] = mn;
            if (corr != 1.0f) {
                VF vc = V_SET1(corr);
                float *Or = O + (size_t)r * hd;
                for (int c = 0; c < hd; c += VW) V_STORE(Or + c, V_MUL(V_LOAD(Or + c), vc));
            }
        }
        /* O += P V */
        if (R <= 4 && hd % (2 * VW) == 0 && t0 + cn - 1 <= lmin) {
            /* few rows that see the whole chunk (decode): O in registers, a
             * column strip of 2 vectors at a time over every slot */
            pv_small(O, S, vr, cn, R, hd);
            continue;
        }
        for (int t = 0; t < cn; t++) {
            const float *vp = vr[t];
            for (int r = 0; r < R; r++) {
                float p = S[(size_t)r * TS_AC + t];
                if (p == 0.0f) continue;
                VF vpv = V_SET1(p);
                float *Or = O + (size_t)r * hd;
                for (int c = 0; c < hd; c += VW)
                    V_STORE(Or + c, V_FMA(vpv, V_LOAD(vp + c), V_LOAD(Or + c)));
            }
        }
    }
    for (int r = 0; r < R; r++) {
        int i = i0 + r / G, hq = h * G + r % G;
        size_t row = (size_t)(sq->q_start + i);
        float *o = a->out + row * qstride + (size_t)hq * hd;
        float inv = L[r] > 0.0f ? 1.0f / L[r] : 0.0f;
        VF vi = V_SET1(inv);
        for (int c = 0; c < hd; c += VW) V_STORE(o + c, V_MUL(V_LOAD(O + (size_t)r * hd + c), vi));
        if (a->lse)
            a->lse[row * (size_t)a->n_heads + (size_t)hq] =
                L[r] > 0.0f ? M[r] + logf(L[r]) : -INFINITY;
    }
}

static void attn_task(void *vctx, int ith, int nth) {
    (void)nth;
    attn_job *j = vctx;
    const ts_attn *a = j->a;
    size_t R = (size_t)j->tq * (size_t)j->group;
    size_t floats = 2 * R * (size_t)a->head_dim + R * TS_AC + 2 * R;
    if (a->kv_dtype == TS_DT_F16) floats += 2 * (size_t)TS_AC * (size_t)a->head_dim; /* tile */
    float *scr = ts_scratch_get(&j->cpu->thr[ith], floats * sizeof(float));
    if (!scr) {
        j->fail = 1;
        return;
    }
    /* item = (s * n_kv_heads + h) * n_tiles_max + tile */
    for (;;) {
        long it = atomic_fetch_add(&j->next, 1);
        if (it >= j->n_items) break;
        int tile = (int)(it % j->n_tiles_max);
        long sh = it / j->n_tiles_max;
        int h = (int)(sh % a->n_kv_heads), s = (int)(sh / a->n_kv_heads);
        const ts_attn_seq *sq = &a->seqs[s];
        int i0 = tile * j->tq;
        if (i0 >= sq->n_q) continue;
        int i1 = i0 + j->tq < sq->n_q ? i0 + j->tq : sq->n_q;
        attn_item(j, scr, s, h, i0, i1);
    }
}

void ATTN_FN(void *ctx, const ts_attn *a) {
    ts_cpu *cpu = ctx;
    int G = a->n_kv_heads > 0 ? a->n_heads / a->n_kv_heads : 0;
    if (G < 1 || G > TS_AROWS || a->head_dim % VW != 0 || a->n_heads % a->n_kv_heads != 0) {
        ts_ref_attention(ctx, a);
        return;
    }
    attn_job j = {.cpu = cpu, .a = a, .group = G, .tq = TS_AROWS / G};
    int max_q = 0;
    for (int s = 0; s < a->n_seq; s++)
        if (a->seqs[s].n_q > max_q) max_q = a->seqs[s].n_q;
    if (max_q < j.tq) j.tq = max_q > 0 ? max_q : 1;
    j.n_tiles_max = (max_q + j.tq - 1) / j.tq;
    if (j.n_tiles_max < 1) j.n_tiles_max = 1;
    j.n_items = (long)a->n_seq * a->n_kv_heads * j.n_tiles_max;
    atomic_init(&j.next, 0);
    ts_pool_run(cpu->pool, attn_task, &j);
    if (j.fail) ts_ref_attention(ctx, a);
}
