/* The per-item kernels of attn_tmpl.h for one KV element type, included
 * by it once per type with KV_T (the pool's element type), KV_LD(p) (VW
 * elements at p widened to a VF), KVF(name) (the type's name for each
 * function) and KV_APF (slots prefetched ahead) defined. */

static float KVF(dotv)(const float *a, const KV_T *b, int hd) {
    VF s0 = V_ZERO(), s1 = V_ZERO();
    int c = 0;
    for (; c + 2 * VW <= hd; c += 2 * VW) {
        s0 = V_FMA(V_LOAD(a + c), KV_LD(b + c), s0);
        s1 = V_FMA(V_LOAD(a + c + VW), KV_LD(b + c + VW), s1);
    }
    if (c < hd) s0 = V_FMA(V_LOAD(a + c), KV_LD(b + c), s0);
    return V_HSUM(V_ADD(s0, s1));
}

/* *s0 = a0 . b, *s1 = a1 . b: one pass over b for two query rows. */
static void KVF(dotv2)(const float *a0, const float *a1, const KV_T *b, int hd, float *s0,
                       float *s1) {
    VF x0 = V_ZERO(), x1 = V_ZERO(), y0 = V_ZERO(), y1 = V_ZERO();
    int c = 0;
    for (; c + 2 * VW <= hd; c += 2 * VW) {
        VF b0 = KV_LD(b + c), b1 = KV_LD(b + c + VW);
        x0 = V_FMA(V_LOAD(a0 + c), b0, x0);
        x1 = V_FMA(V_LOAD(a0 + c + VW), b1, x1);
        y0 = V_FMA(V_LOAD(a1 + c), b0, y0);
        y1 = V_FMA(V_LOAD(a1 + c + VW), b1, y1);
    }
    if (c < hd) {
        VF b0 = KV_LD(b + c);
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
TS_INLINE_A void KVF(pv_strip)(float *O, const float *S, const KV_T *const *vr, int cn,
                               int R, int hd) {
    for (int c = 0; c < hd; c += 2 * VW) {
        VF o[4][2];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            o[r][0] = V_LOAD(O + (size_t)r * hd + c);
            o[r][1] = V_LOAD(O + (size_t)r * hd + c + VW);
        }
        for (int t = 0; t < cn; t++) {
            VF v0 = KV_LD(vr[t] + c), v1 = KV_LD(vr[t] + c + VW);
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

/* kr[t], vr[t] = K and V rows of KV head h for slots t0 .. t0 + n - 1: one
 * division for the whole range instead of one per slot. */
static void KVF(kv_rows)(const KV_T **kr, const KV_T **vr, const ts_attn *a,
                         const int32_t *blocks, int h, int t0, int n) {
    int bs = a->block_size, b = t0 / bs, o = t0 % bs;
    size_t hd = (size_t)a->head_dim;
    for (int t = 0; t < n; t++) {
        size_t off = (((size_t)blocks[b] * (size_t)a->n_kv_heads + (size_t)h) * (size_t)bs +
                      (size_t)o) * hd;
        kr[t] = (const KV_T *)a->k + off;
        vr[t] = (const KV_T *)a->v + off;
        if (++o == bs) o = 0, b++;
    }
}

static void KVF(pv_small)(float *O, const float *S, const KV_T *const *vr, int cn, int R,
                          int hd) {
    switch (R) {
    case 1: KVF(pv_strip)(O, S, vr, cn, 1, hd); break;
    case 2: KVF(pv_strip)(O, S, vr, cn, 2, hd); break;
    case 3: KVF(pv_strip)(O, S, vr, cn, 3, hd); break;
    default: KVF(pv_strip)(O, S, vr, cn, 4, hd); break;
    }
}

/* Runs one item: sequence s, KV head h, query positions [i0, i1). */
static void KVF(attn_item)(const attn_job *j, float *scr, int s, int h, int i0, int i1) {
    const ts_attn *a = j->a;
    const ts_attn_seq *sq = &a->seqs[s];
    int hd = a->head_dim, G = j->group, R = (i1 - i0) * G;
    size_t qstride = (size_t)a->n_heads * (size_t)hd;
    float *Q = scr, *O = Q + (size_t)R * hd, *S = O + (size_t)R * hd, *M = S + (size_t)R * TS_AC,
          *L = M + R;
    int lim[TS_AROWS]; /* last visible slot per row */
    int tmax = 0, lmin = INT_MAX;
    const KV_T *kr[TS_AC + KV_APF], *vr[TS_AC + KV_APF]; /* this chunk's rows and a few more */
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
        int nr = tmax - t0 < TS_AC + KV_APF ? tmax - t0 : TS_AC + KV_APF;
        KVF(kv_rows)(kr, vr, a, sq->blocks, h, t0, nr);
        /* scores; K and V rows KV_APF slots ahead are prefetched (blocks are
         * scattered, so hardware prefetch cannot follow the table) */
        for (int t = 0; t < cn; t++) {
            if (t + KV_APF < nr) {
                const char *kn = (const char *)kr[t + KV_APF], *vn = (const char *)vr[t + KV_APF];
                for (size_t c = 0; c < (size_t)hd * sizeof(KV_T); c += 64) {
                    _mm_prefetch(kn + c, _MM_HINT_T0);
                    _mm_prefetch(vn + c, _MM_HINT_T0);
                }
            }
            const KV_T *kp = kr[t];
            int r = 0;
            for (; r + 2 <= R; r += 2) {
                float *s0 = S + (size_t)r * TS_AC + t, *s1 = s0 + TS_AC;
                if (t0 + t <= lim[r] && t0 + t <= lim[r + 1]) {
                    KVF(dotv2)(Q + (size_t)r * hd, Q + (size_t)(r + 1) * hd, kp, hd, s0, s1);
                } else {
                    *s0 = t0 + t <= lim[r] ? KVF(dotv)(Q + (size_t)r * hd, kp, hd) : -INFINITY;
                    *s1 = t0 + t <= lim[r + 1] ? KVF(dotv)(Q + (size_t)(r + 1) * hd, kp, hd)
                                               : -INFINITY;
                }
            }
            for (; r < R; r++)
                S[(size_t)r * TS_AC + t] =
                    t0 + t <= lim[r] ? KVF(dotv)(Q + (size_t)r * hd, kp, hd) : -INFINITY;
        }
        /* online softmax */
        for (int r = 0; r < R; r++)
            softmax_chunk(S + (size_t)r * TS_AC, cn, &M[r], &L[r], O + (size_t)r * hd, hd);
        /* O += P V */
        if (R <= 4 && hd % (2 * VW) == 0 && t0 + cn - 1 <= lmin) {
            /* few rows that see the whole chunk (decode): O in registers, a
             * column strip of 2 vectors at a time over every slot */
            KVF(pv_small)(O, S, vr, cn, R, hd);
            continue;
        }
        for (int t = 0; t < cn; t++) {
            const KV_T *vp = vr[t];
            for (int r = 0; r < R; r++) {
                float p = S[(size_t)r * TS_AC + t];
                if (p == 0.0f) continue;
                VF vpv = V_SET1(p);
                float *Or = O + (size_t)r * hd;
                for (int c = 0; c < hd; c += VW)
                    V_STORE(Or + c, V_FMA(vpv, KV_LD(vp + c), V_LOAD(Or + c)));
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

