#ifndef TS_PV_ROWS
#define TS_PV_ROWS
/* A P.V strip's steps (included once per KV type; VF, V_* as the ISA file
 * defines them): o[r][u] = O[r ld + c + u VW] for rows r < nr and vectors
 * u < nw; o[r][u] += S[r TS_AC + t] x[u]; O[r ld + c + u VW] = o[r][u]. */
#define PV_FMA_ROWS(o, x, S, t, nr, nw)                                                          \
    _Pragma("GCC unroll 4") for (int r_ = 0; r_ < (nr); r_++) {                                  \
        VF p_ = V_SET1((S)[(size_t)r_ * TS_AC + (t)]);                                           \
        _Pragma("GCC unroll 8") for (int u_ = 0; u_ < (nw); u_++)                                \
            (o)[r_][u_] = V_FMA(p_, (x)[u_], (o)[r_][u_]);                                       \
    }
#define PV_LOAD_ROWS(o, O, ld, c, nr, nw)                                                        \
    _Pragma("GCC unroll 4") for (int r_ = 0; r_ < (nr); r_++)                                    \
        _Pragma("GCC unroll 8") for (int u_ = 0; u_ < (nw); u_++)                                \
            (o)[r_][u_] = V_LOAD((O) + (size_t)r_ * (ld) + (c) + u_ * VW);
#define PV_STORE_ROWS(O, ld, c, o, nr, nw)                                                       \
    _Pragma("GCC unroll 4") for (int r_ = 0; r_ < (nr); r_++)                                    \
        _Pragma("GCC unroll 8") for (int u_ = 0; u_ < (nw); u_++)                                \
            V_STORE((O) + (size_t)r_ * (ld) + (c) + u_ * VW, (o)[r_][u_]);
#endif

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

/* S[r][0..3] = Q[r] . k[0..3] for nq <= 4 query rows (row stride hd; S row
 * stride TS_AC): four slots at a time, so each K vector is widened once for
 * every row and the 4 x nq dot products end in V_HSUM4 reductions instead
 * of one horizontal sum each. */
TS_INLINE_A void KVF(qk_x4)(float *S, const float *Q, int nq, const KV_T *const *k, int hd) {
    VF acc[4][4];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < nq; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = V_ZERO();
    _Pragma("GCC unroll 16")
    for (int c = 0; c < hd; c += VW) {
        _Pragma("GCC unroll 4")
        for (int u = 0; u < 4; u++) {
            VF kv = KV_LD(k[u] + c);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < nq; r++)
                acc[r][u] = V_FMA(V_LOAD(Q + (size_t)r * hd + c), kv, acc[r][u]);
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < nq; r++)
        V_HSUM4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], S + (size_t)r * TS_AC);
}

/* qk_x4 for R rows, in groups of as many as the registers hold. */
TS_INLINE_A void KVF(qk_rows_x4)(float *S, const float *Q, int R, const KV_T *const *k, int hd) {
    enum { QR = V_NREG >= 32 ? 4 : 2 };
    for (int r = 0; r < R; r += QR) {
        float *Sr = S + (size_t)r * TS_AC;
        const float *Qr = Q + (size_t)r * hd;
        switch (R - r < QR ? R - r : QR) {
        case 1: KVF(qk_x4)(Sr, Qr, 1, k, hd); break;
        case 2: KVF(qk_x4)(Sr, Qr, 2, k, hd); break;
        case 3: KVF(qk_x4)(Sr, Qr, 3, k, hd); break;
        default: KVF(qk_x4)(Sr, Qr, 4, k, hd); break;
        }
    }
}

/* O[r] += sum_t P[r][t] V[t] for R <= 4 rows (P = S, row stride TS_AC) over
 * slots t0 .. t0 + cn - 1, every row seeing every slot. A column strip of W
 * vectors of every row's O stays in registers while the slots stream by, so
 * O is loaded and stored once per chunk and each V vector is widened once
 * for all rows. The same columns of the next chunk's V rows pf[0, npf) are
 * prefetched as they go. */
TS_INLINE_A void KVF(pv_strip)(float *O, const float *S, const KV_T *const *vr, int cn,
                               int R, int W, int hd, const KV_T *const *pf, int npf) {
    for (int c = 0; c < hd; c += W * VW) {
        VF o[4][8];
        PV_LOAD_ROWS(o, O, hd, c, R, W)
        for (int t = 0; t < cn; t++) {
            if (t < npf)
                _Pragma("GCC unroll 8")
                for (size_t b = 0; b < (size_t)W * VW * sizeof(KV_T); b += 64)
                    _mm_prefetch((const char *)(pf[t] + c) + b, _MM_HINT_T0);
            VF v[8];
            _Pragma("GCC unroll 8")
            for (int w = 0; w < W; w++) v[w] = KV_LD(vr[t] + c + w * VW);
            PV_FMA_ROWS(o, v, S, t, R, W)
        }
        PV_STORE_ROWS(O, hd, c, o, R, W)
    }
}

/* kr[t], vr[t] = K and V rows of KV head h for slots t0 .. t0 + n - 1
 * (n <= 2 TS_AC: a chunk and the next one's, prefetched). */
static void KVF(kv_rows)(const KV_T **kr, const KV_T **vr, const ts_attn *a,
                         const int32_t *blocks, int h, int t0, int n) {
    size_t off[2 * TS_AC];
    kv_offs(off, a, blocks, h, t0, n);
    for (int t = 0; t < n; t++) kr[t] = (const KV_T *)a->k + off[t], vr[t] = (const KV_T *)a->v + off[t];
}

/* pv_strip with the widest strip (2, 4 or 8 vectors) whose R x W
 * accumulators fit in half the registers and that divides hd (a multiple
 * of 2 VW). */
TS_INLINE_A void KVF(pv_small)(float *O, const float *S, const KV_T *const *vr, int cn, int R,
                               int hd, const KV_T *const *pf, int npf) {
    int w = V_NREG / 2 / R >= 8 ? 8 : V_NREG / 2 / R >= 4 ? 4 : 2;
    while (w > 2 && hd % (w * VW) != 0) w /= 2;
#define PV_R(RR)                                                                                \
    case RR:                                                                                    \
        if (w == 8) KVF(pv_strip)(O, S, vr, cn, RR, 8, hd, pf, npf);                            \
        else if (w == 4) KVF(pv_strip)(O, S, vr, cn, RR, 4, hd, pf, npf);                       \
        else KVF(pv_strip)(O, S, vr, cn, RR, 2, hd, pf, npf);                                   \
        break;
    switch (R) {
        PV_R(1)
        PV_R(2)
        PV_R(3)
        default: PV_R(4)
    }
#undef PV_R
}

/* Prefetches for slot t of a chunk (see the chunk loop below). */
TS_INLINE_A void KVF(chunk_prefetch)(const KV_T *const *kr, const KV_T *const *vr, int t, int cn,
                                     int nr, bool first, int hd) {
    if (first) {
        if (t + KV_APF < cn) kv_prefetch_row(kr[t + KV_APF], hd * sizeof(KV_T));
        kv_prefetch_row(vr[t], hd * sizeof(KV_T));
    }
    if (t + TS_AC < nr) kv_prefetch_row(kr[t + TS_AC], hd * sizeof(KV_T));
}

/* Runs one item: sequence s, KV head h, query positions [i0, i1), piece ks
 * of the KV range (j->n_split > 1: its partial goes to j->part_o/part_l),
 * head_dim hd (a constant where the caller can make it one). */
TS_INLINE_A void KVF(attn_item_hd)(const attn_job *j, float *scr, int s, int h, int i0, int i1,
                                   int ks, int hd) {
    const ts_attn *a = j->a;
    const ts_attn_seq *sq = &a->seqs[s];
    int G = j->group, R = (i1 - i0) * G;
    size_t qstride = (size_t)a->n_heads * (size_t)hd, nh = (size_t)a->n_heads;
    float *Q = scr, *O = Q + (size_t)R * hd, *S = O + (size_t)R * hd, *M = S + (size_t)R * TS_AC,
          *L = M + R;
    int lim[TS_AROWS]; /* last visible slot per row */
    int tmax = 0, lmin = INT_MAX;
    const KV_T *kr[2 * TS_AC], *vr[2 * TS_AC]; /* this chunk's rows and the next's */
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
    int first = sq->kv_start > 0 ? sq->kv_start : 0;
    if (j->n_split > 1) {
        if (first < ks * j->sps) first = ks * j->sps;
        if (tmax > (ks + 1) * j->sps) tmax = (ks + 1) * j->sps;
    }
    for (int t0 = first; t0 < tmax; t0 += TS_AC) {
        int cn = tmax - t0 < TS_AC ? tmax - t0 : TS_AC;
        int nr = tmax - t0 < 2 * TS_AC ? tmax - t0 : 2 * TS_AC;
        KVF(kv_rows)(kr, vr, a, sq->blocks, h, t0, nr);
        /* Scores of every row for every slot of the chunk, then -inf past
         * each row's last visible slot (the causal diagonal). Blocks are
         * scattered, so hardware prefetch cannot follow the table: the next
         * chunk's K rows are prefetched while this chunk is scored and its V
         * rows during P V, which keeps loads in flight in both phases. The
         * first chunk fetches its own K KV_APF slots ahead and its V a chunk
         * ahead of use. */
        int t = 0;
        for (; t + 4 <= cn; t += 4) {
            for (int u = 0; u < 4; u++) KVF(chunk_prefetch)(kr, vr, t + u, cn, nr, t0 == first, hd);
            KVF(qk_rows_x4)(S + t, Q, R, kr + t, hd);
        }
        for (; t < cn; t++) {
            KVF(chunk_prefetch)(kr, vr, t, cn, nr, t0 == first, hd);
            for (int r = 0; r < R; r++)
                S[(size_t)r * TS_AC + t] = KVF(dotv)(Q + (size_t)r * hd, kr[t], hd);
        }
        if (t0 + cn - 1 > lmin)
            for (int r = 0; r < R; r++)
                for (int u = lim[r] + 1 - t0 > 0 ? lim[r] + 1 - t0 : 0; u < cn; u++)
                    S[(size_t)r * TS_AC + u] = -INFINITY;
        /* online softmax: hidden slots get weight 0 */
        for (int r = 0; r < R; r++)
            softmax_chunk(S + (size_t)r * TS_AC, cn, &M[r], &L[r], O + (size_t)r * hd, hd);
        /* O += P V, up to 4 rows at a time with their column strip in
         * registers over every slot (a hidden slot adds 0 x its V row) */
        if (hd % (2 * VW) == 0) {
            for (int r = 0; r < R; r += 4)
                KVF(pv_small)(O + (size_t)r * hd, S + (size_t)r * TS_AC, vr, cn,
                              R - r < 4 ? R - r : 4, hd, vr + TS_AC, r ? 0 : nr - TS_AC);
            continue;
        }
        for (t = 0; t < cn; t++) {
            const KV_T *vp = vr[t];
            if (t + TS_AC < nr) kv_prefetch_row(vr[t + TS_AC], hd * sizeof(KV_T));
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
        float *l = a->lse ? a->lse + row * nh + (size_t)hq : NULL;
        if (j->n_split > 1) {
            size_t pr = ((size_t)ks * (size_t)j->n_tok + row) * nh + (size_t)hq;
            o = j->part_o + pr * (size_t)hd;
            l = j->part_l + pr;
        }
        float inv = L[r] > 0.0f ? 1.0f / L[r] : 0.0f;
        VF vi = V_SET1(inv);
        for (int c = 0; c < hd; c += VW) V_STORE(o + c, V_MUL(V_LOAD(O + (size_t)r * hd + c), vi));
        if (l) *l = L[r] > 0.0f ? M[r] + logf(L[r]) : -INFINITY;
    }
}

static void KVF(attn_item)(const attn_job *j, float *scr, int s, int h, int i0, int i1, int ks) {
#if TS_ATTN_UNROLL_HD
    switch (j->a->head_dim) { /* the usual head sizes unrolled */
    case 128: KVF(attn_item_hd)(j, scr, s, h, i0, i1, ks, 128); return;
    case 64: KVF(attn_item_hd)(j, scr, s, h, i0, i1, ks, 64); return;
    default: break;
    }
#endif
    KVF(attn_item_hd)(j, scr, s, h, i0, i1, ks, j->a->head_dim);
}
