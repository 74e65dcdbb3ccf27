/* Decode attention walked in block order, for one KV element type: included
 * by attn_tmpl.h after attn_kv_tmpl.h, with the same KV_T, KV_LD(p) and
 * KVF(name) defined.
 *
 * A decode step (every sequence one query position) reads each sequence's
 * whole K and V once for a handful of rows. Walking one KV head at a time
 * reads one 4 KiB run per block and head (block 16, head_dim 128, f16),
 * scattered 32 KiB apart, and the streams restart at every run. Here an
 * item is (sequence, piece of its KV range) for every KV head: each group
 * of VW slots is scored and added for KV head 0, 1, ... in turn, and as a
 * block's heads are contiguous in the pool ([block][head][slot][dim]), the
 * pools are read front to back. The rows PF_AHEAD heads on (in this group
 * or the next) are prefetched while a head is worked on: K while scoring,
 * V during P V.
 *
 * Within a head the work is the one of attn_kv_tmpl.h for a single query
 * position: the rows of the GQA group see the same slots, so nothing is
 * masked; Q sits in registers while scoring, and each row's VW scores end
 * in one vector (V_RED4 / V_REDV) instead of a horizontal sum per slot. Slots
 * are named by their element offset in the pools, the same for K and V, and
 * head h's rows are h * block_size * head_dim further on. */

/* Brings the rows of n slots (offsets off[0, n)) of pool p towards L1. */
TS_INLINE_A void KVF(dec_prefetch)(const KV_T *p, const size_t *off, int n, int HD) {
    for (int u = 0; u < n; u++)
        _Pragma("GCC unroll 8")
        for (int b = 0; b < HD * (int)sizeof(KV_T); b += 64)
            _mm_prefetch((const char *)(p + off[u]) + b, _MM_HINT_T0);
}

/* S[r][0, VW) = Q[r] . K[off[t]] for VW slots and NR <= 4 rows (q[r * HD /
 * VW + c]: vector c of row r; S rows TS_AC apart). Each K vector is widened
 * once for every row; the 4 x NR dot products of 4 slots end in one vector
 * a row through V_RED4, and those of the VW slots in V_REDV. The rows of
 * slots pf[0, VW) of pool pk are prefetched on the way. */
TS_INLINE_A void KVF(dec_qk)(float *S, const VF *q, int NR, const KV_T *k, const size_t *off,
                             int HD, const KV_T *pk, const size_t *pf) {
    VF x[4][VW / 4];
    _Pragma("GCC unroll 4")
    for (int g = 0; g < VW / 4; g++) {
        if (pk) KVF(dec_prefetch)(pk, pf + 4 * g, 4, HD);
        VF acc[4][4];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < NR; r++)
            for (int u = 0; u < 4; u++) acc[r][u] = V_ZERO();
        _Pragma("GCC unroll 16")
        for (int c = 0; c < HD / VW; c++)
            _Pragma("GCC unroll 4")
            for (int u = 0; u < 4; u++) {
                VF kv = KV_LD(k + off[4 * g + u] + c * VW);
                _Pragma("GCC unroll 4")
                for (int r = 0; r < NR; r++)
                    acc[r][u] = V_FMA(q[r * (HD / VW) + c], kv, acc[r][u]);
            }
        _Pragma("GCC unroll 4")
        for (int r = 0; r < NR; r++) x[r][g] = V_RED4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < NR; r++) V_STORE(S + (size_t)r * TS_AC, V_REDV(x[r]));
}

/* O[r] += sum_t P[r][t] V[off[t]] over t < n for NR <= 4 rows (P = S, rows
 * TS_AC apart; O rows HD apart), in column strips kept in registers while
 * the slots go by; the rows of slots pf[0, n) of pool pv (NULL: none) are
 * prefetched on the way. */
TS_INLINE_A void KVF(dec_pv)(float *O, const float *S, const KV_T *v, const size_t *off, int n,
                             int NR, int HD, const KV_T *pv, const size_t *pf) {
    enum { W = V_NREG >= 32 ? 8 : 4 };
    int w = NR > 2 ? W / 2 : W; /* NR x w accumulators: half the registers */
    if (w > HD / VW) w = HD / VW;
    for (int c = 0; c < HD; c += w * VW) {
        VF o[4][8];
        PV_LOAD_ROWS(o, O, HD, c, NR, w)
        for (int t = 0; t < n; t++) {
            if (pv)
                _Pragma("GCC unroll 8")
                for (size_t b = 0; b < (size_t)w * VW * sizeof(KV_T); b += 64)
                    _mm_prefetch((const char *)(pv + pf[t] + c) + b, _MM_HINT_T0);
            const KV_T *vp = v + off[t] + c;
            VF x[8];
            _Pragma("GCC unroll 8")
            for (int u = 0; u < w; u++) x[u] = KV_LD(vp + u * VW);
            PV_FMA_ROWS(o, x, S, t, NR, w)
        }
        PV_STORE_ROWS(O, HD, c, o, NR, w)
    }
}

/* Runs one item: sequence s (its last query position), piece ks of its KV
 * range (j->n_split > 1: the partials go to j->part_o/part_l), every KV
 * head with NR = group rows each, head_dim HD <= 128 (both constants here).
 * scr: Q and O of every q head, then S (NR rows of TS_AC), M and L. */
TS_INLINE_A void KVF(dec_item_hd)(const attn_job *j, float *scr, int s, int ks, int NR, int HD) {
    enum { PF_AHEAD = 1 }; /* heads: 4 KiB of K and of V at head_dim 128, f16 */
    const ts_attn *a = j->a;
    const ts_attn_seq *sq = &a->seqs[s];
    if (sq->n_q < 1) return;
    const KV_T *kp = (const KV_T *)a->k, *vp = (const KV_T *)a->v;
    int nkh = a->n_kv_heads;
    size_t nh = (size_t)a->n_heads, qstride = nh * (size_t)HD,
           hstr = (size_t)a->block_size * (size_t)HD; /* from one KV head's rows to the next's */
    float *Q = scr, *O = Q + nh * HD, *S = O + nh * HD, *M = S + (size_t)NR * TS_AC, *L = M + nh;
    size_t row = (size_t)(sq->q_start + sq->n_q - 1);
    for (size_t r = 0; r < nh; r++) {
        for (int c = 0; c < HD; c += VW) {
            V_STORE(Q + r * HD + c, V_MUL(V_LOAD(a->q + row * qstride + r * HD + c), V_SET1(a->scale)));
            V_STORE(O + r * HD + c, V_ZERO());
        }
        M[r] = -INFINITY;
        L[r] = 0.0f;
    }
    /* a decode row sees every slot (causal: it is the last); slots before
     * kv_start belong to a shared level computed elsewhere */
    int tmax = sq->n_kv, first = sq->kv_start > 0 ? sq->kv_start : 0;
    if (j->n_split > 1) {
        if (first < ks * j->sps) first = ks * j->sps;
        if (tmax > (ks + 1) * j->sps) tmax = (ks + 1) * j->sps;
    }
    size_t off[2][VW]; /* this group's offsets and the next's, in turn */
    if (first < tmax) {
        int n0 = tmax - first < VW ? tmax - first : VW;
        kv_offs(off[0], a, sq->blocks, 0, first, n0);
        KVF(dec_prefetch)(kp, off[0], n0, HD);
        KVF(dec_prefetch)(vp, off[0], n0, HD);
    }
    for (int t0 = first, hf = 0; t0 < tmax; t0 += VW, hf ^= 1) {
        int n = tmax - t0 < VW ? tmax - t0 : VW, nn = tmax - t0 - n < VW ? tmax - t0 - n : VW;
        size_t *cur = off[hf], *nx = off[hf ^ 1];
        if (nn > 0) kv_offs(nx, a, sq->blocks, 0, t0 + n, nn);
        /* a short last group scores whole vectors of slots (the last row
         * again; softmax_chunk drops those scores) and prefetches that row
         * for the heads of the next group */
        for (int t = n; t < VW; t++) cur[t] = cur[n - 1];
        if (nn > 0)
            for (int t = nn; t < VW; t++) nx[t] = nx[nn - 1];
        for (int h = 0; h < nkh; h++) {
            const KV_T *kh = kp + (size_t)h * hstr, *vh = vp + (size_t)h * hstr, *pk = NULL,
                       *pv = NULL;
            const size_t *po = cur;
            if (h + PF_AHEAD < nkh) {
                pk = kh + PF_AHEAD * hstr, pv = vh + PF_AHEAD * hstr;
            } else if (nn > 0) {
                pk = kp + (size_t)(h + PF_AHEAD - nkh) * hstr;
                pv = vp + (size_t)(h + PF_AHEAD - nkh) * hstr;
                po = nx;
            }
            float *Qh = Q + (size_t)h * NR * HD, *Oh = O + (size_t)h * NR * HD;
            VF q[4 * (128 / VW)];
            _Pragma("GCC unroll 4")
            for (int r = 0; r < NR; r++)
                _Pragma("GCC unroll 8")
                for (int c = 0; c < HD / VW; c++) q[r * (HD / VW) + c] = V_LOAD(Qh + (size_t)r * HD + c * VW);
            KVF(dec_qk)(S, q, NR, kh, cur, HD, pk, po);
            for (int r = 0; r < NR; r++)
                softmax_chunk(S + (size_t)r * TS_AC, n, &M[h * NR + r], &L[h * NR + r],
                              Oh + (size_t)r * HD, HD);
            KVF(dec_pv)(Oh, S, vh, cur, n, NR, HD, pv, po);
        }
    }
    for (size_t r = 0; r < nh; r++) {
        float *o = a->out + row * qstride + r * HD;
        float *l = a->lse ? a->lse + row * nh + r : NULL;
        if (j->n_split > 1) {
            size_t pr = ((size_t)ks * (size_t)j->n_tok + row) * nh + r;
            o = j->part_o + pr * (size_t)HD;
            l = j->part_l + pr;
        }
        float inv = L[r] > 0.0f ? 1.0f / L[r] : 0.0f;
        for (int c = 0; c < HD; c += VW) V_STORE(o + c, V_MUL(V_LOAD(O + r * HD + c), V_SET1(inv)));
        if (l) *l = L[r] > 0.0f ? M[r] + logf(L[r]) : -INFINITY;
    }
}

/* dec_item_hd for the group and head sizes compiled (dec_item_ok). */
static void KVF(dec_item)(const attn_job *j, float *scr, int s, int ks) {
    int g = j->group, hd = j->a->head_dim;
    if (g == 2 && hd == 128) KVF(dec_item_hd)(j, scr, s, ks, 2, 128);
    else if (g == 2) KVF(dec_item_hd)(j, scr, s, ks, 2, 64);
    else if (hd == 128) KVF(dec_item_hd)(j, scr, s, ks, 1, 128);
    else KVF(dec_item_hd)(j, scr, s, ks, 1, 64);
}
