/* Cascade attention's shared level (ts_ops.attention_shared), written once
 * over the vector vocabulary of attn_tmpl.h (included after it by
 * attn_avx2.c and attn_avx512.c, which also define ATTN_SHARED_FN).
 *
 * Many query rows (from different sequences) attend non-causally to the same
 * prefix. For one KV head, the "state rows" are every (listed row, q head of
 * the GQA group) pair, each with its own online softmax (max M, sum L,
 * unnormalised output O). The prefix is walked in tiles of TS_AC slots: the
 * tile's K rows are loaded and every state row's scores computed from them
 * (a 4-row x 2-slot register block, so each K vector feeds 4 rows), then the
 * tile's V rows update every state row's O (a 2-row x 4-vector block). So
 * each K/V tile leaves memory once per step for all rows and heads of its
 * group, and then stays in L1/L2 while it is reused.
 *
 * Work split. Work item = (KV head, chunk of rows, range of tiles):
 *  - rows are chunked only so that one item's state (Q and O of up to
 *    TS_SH_ROWS state rows: 128 KiB at head_dim 128) stays in L2; with
 *    decode batches up to 64 rows at GQA 2 there is one chunk, so K/V are
 *    read exactly once;
 *  - the tiles of the prefix are split into ranges only when there are too
 *    few (head, chunk) items to keep the threads busy (fewer than 4 per
 *    thread). Splitting the KV range never re-reads K/V; each range leaves a
 *    partial (o, lse) per state row in shared scratch, and a second pool run
 *    merges the partials by the log-sum-exp rule (ts_attn_merge).
 * Items are handed out through an atomic counter. */

#define TS_SH_ROWS 128 /* state rows per item (rows x q heads of the group) */

typedef struct shared_job {
    ts_cpu *cpu;
    const ts_attn_shared *a;
    int group, rpc, n_rc, n_split, tps, n_tiles; /* rpc: listed rows per chunk;
                                                    tps: tiles per split */
    long n_items;
    float *part_o; /* n_split > 1: [n_split][n_rows][n_heads][head_dim] */
    float *part_l; /*               [n_split][n_rows][n_heads] */
    _Atomic long next;
    _Atomic int fail;
} shared_job;

/* S[r][t] = Q[r] . K[t] for r < R, t < cn (S rows TS_AC apart). */
static void sh_scores(float *S, const float *Q, int R, int hd, const float *const *kp, int cn) {
    int r = 0;
    for (; r + 4 <= R; r += 4) {
        const float *q0 = Q + (size_t)r * hd, *q1 = q0 + hd, *q2 = q1 + hd, *q3 = q2 + hd;
        float *s0 = S + (size_t)r * TS_AC;
        int t = 0;
        for (; t + 2 <= cn; t += 2) {
            const float *k0 = kp[t], *k1 = kp[t + 1];
            VF a00 = V_ZERO(), a01 = V_ZERO(), a10 = V_ZERO(), a11 = V_ZERO();
            VF a20 = V_ZERO(), a21 = V_ZERO(), a30 = V_ZERO(), a31 = V_ZERO();
            for (int c = 0; c < hd; c += VW) {
                VF x0 = V_LOAD(k0 + c), x1 = V_LOAD(k1 + c), y;
                y = V_LOAD(q0 + c), a00 = V_FMA(y, x0, a00), a01 = V_FMA(y, x1, a01);
                y = V_LOAD(q1 + c), a10 = V_FMA(y, x0, a10), a11 = V_FMA(y, x1, a11);
                y = V_LOAD(q2 + c), a20 = V_FMA(y, x0, a20), a21 = V_FMA(y, x1, a21);
                y = V_LOAD(q3 + c), a30 = V_FMA(y, x0, a30), a31 = V_FMA(y, x1, a31);
            }
            s0[t] = V_HSUM(a00), s0[t + 1] = V_HSUM(a01);
            s0[TS_AC + t] = V_HSUM(a10), s0[TS_AC + t + 1] = V_HSUM(a11);
            s0[2 * TS_AC + t] = V_HSUM(a20), s0[2 * TS_AC + t + 1] = V_HSUM(a21);
            s0[3 * TS_AC + t] = V_HSUM(a30), s0[3 * TS_AC + t + 1] = V_HSUM(a31);
        }
        for (; t < cn; t++)
            for (int i = 0; i < 4; i++) s0[i * TS_AC + t] = dotv_f32(q0 + (size_t)i * hd, kp[t], hd);
    }
    for (; r < R; r++)
        for (int t = 0; t < cn; t++) S[(size_t)r * TS_AC + t] = dotv_f32(Q + (size_t)r * hd, kp[t], hd);
}

/* O[r] += sum_t P[r][t] V[t] for r < R (P = S after the softmax step). */
static void sh_pv(float *O, const float *P, int R, int hd, const float *const *vp, int cn) {
    int r = 0;
    for (; r + 2 <= R; r += 2) {
        const float *p0 = P + (size_t)r * TS_AC, *p1 = p0 + TS_AC;
        float *o0 = O + (size_t)r * hd, *o1 = o0 + hd;
        int c = 0;
        for (; c + 4 * VW <= hd; c += 4 * VW) {
            VF x0 = V_LOAD(o0 + c), x1 = V_LOAD(o0 + c + VW), x2 = V_LOAD(o0 + c + 2 * VW),
               x3 = V_LOAD(o0 + c + 3 * VW);
            VF y0 = V_LOAD(o1 + c), y1 = V_LOAD(o1 + c + VW), y2 = V_LOAD(o1 + c + 2 * VW),
               y3 = V_LOAD(o1 + c + 3 * VW);
            for (int t = 0; t < cn; t++) {
                const float *v = vp[t] + c;
                VF b0 = V_SET1(p0[t]), b1 = V_SET1(p1[t]), w;
                w = V_LOAD(v), x0 = V_FMA(b0, w, x0), y0 = V_FMA(b1, w, y0);
                w = V_LOAD(v + VW), x1 = V_FMA(b0, w, x1), y1 = V_FMA(b1, w, y1);
                w = V_LOAD(v + 2 * VW), x2 = V_FMA(b0, w, x2), y2 = V_FMA(b1, w, y2);
                w = V_LOAD(v + 3 * VW), x3 = V_FMA(b0, w, x3), y3 = V_FMA(b1, w, y3);
            }
            V_STORE(o0 + c, x0), V_STORE(o0 + c + VW, x1), V_STORE(o0 + c + 2 * VW, x2);
            V_STORE(o0 + c + 3 * VW, x3);
            V_STORE(o1 + c, y0), V_STORE(o1 + c + VW, y1), V_STORE(o1 + c + 2 * VW, y2);
            V_STORE(o1 + c + 3 * VW, y3);
        }
        for (; c < hd; c += VW) {
            VF x = V_LOAD(o0 + c), y = V_LOAD(o1 + c);
            for (int t = 0; t < cn; t++) {
                VF w = V_LOAD(vp[t] + c);
                x = V_FMA(V_SET1(p0[t]), w, x), y = V_FMA(V_SET1(p1[t]), w, y);
            }
            V_STORE(o0 + c, x), V_STORE(o1 + c, y);
        }
    }
    for (; r < R; r++) {
        const float *p0 = P + (size_t)r * TS_AC;
        float *o0 = O + (size_t)r * hd;
        for (int c = 0; c < hd; c += VW) {
            VF x = V_LOAD(o0 + c);
            for (int t = 0; t < cn; t++) x = V_FMA(V_SET1(p0[t]), V_LOAD(vp[t] + c), x);
            V_STORE(o0 + c, x);
        }
    }
}

/* Runs one item: KV head h, listed rows [i0, i1), tiles [k0, k1), split ks. */
static void sh_item(const shared_job *j, float *scr, int h, int i0, int i1, int k0, int k1,
                    int ks) {
    const ts_attn_shared *a = j->a;
    int hd = a->head_dim, G = j->group, R = (i1 - i0) * G;
    size_t qstride = (size_t)a->n_heads * (size_t)hd;
    float *Q = scr, *O = Q + (size_t)R * hd, *S = O + (size_t)R * hd, *M = S + (size_t)R * TS_AC,
          *L = M + R;
    const float *kp[TS_AC], *vp[TS_AC];
    VF sc = V_SET1(a->scale);
    for (int r = 0; r < R; r++) {
        int hq = h * G + r % G;
        const float *q = a->q + (size_t)a->rows[i0 + r / G] * qstride + (size_t)hq * hd;
        for (int c = 0; c < hd; c += VW) {
            V_STORE(Q + (size_t)r * hd + c, V_MUL(V_LOAD(q + c), sc));
            V_STORE(O + (size_t)r * hd + c, V_ZERO());
        }
        M[r] = -INFINITY;
        L[r] = 0.0f;
    }
    for (int tile = k0; tile < k1; tile++) {
        int t0 = tile * TS_AC, cn = a->n_kv - t0 < TS_AC ? a->n_kv - t0 : TS_AC;
        for (int t = 0; t < cn; t++) { /* 16-bit rows widened into the tile after L */
            size_t off = ts_kv_off(a->blocks, t0 + t, h, a->n_kv_heads, a->block_size, hd);
            kp[t] = kv_row_f32(L + R + (size_t)(2 * t) * hd, a->k, a->kv_dtype, off, hd);
            vp[t] = kv_row_f32(L + R + (size_t)(2 * t + 1) * hd, a->v, a->kv_dtype, off, hd);
        }
        sh_scores(S, Q, R, hd, kp, cn);
        /* online softmax: S becomes e^(s - M), O and L rescaled to the new M */
        for (int r = 0; r < R; r++)
            softmax_chunk(S + (size_t)r * TS_AC, cn, &M[r], &L[r], O + (size_t)r * hd, hd);
        sh_pv(O, S, R, hd, vp, cn);
    }
    for (int r = 0; r < R; r++) {
        int i = i0 + r / G, hq = h * G + r % G;
        float *o, *l;
        if (j->n_split > 1) {
            size_t pr = ((size_t)ks * (size_t)a->n_rows + (size_t)i) * (size_t)a->n_heads + (size_t)hq;
            o = j->part_o + pr * (size_t)hd;
            l = j->part_l + pr;
        } else {
            size_t row = (size_t)a->rows[i];
            o = a->out + row * qstride + (size_t)hq * hd;
            l = a->lse + row * (size_t)a->n_heads + (size_t)hq;
        }
        VF vi = V_SET1(L[r] > 0.0f ? 1.0f / L[r] : 0.0f);
        for (int c = 0; c < hd; c += VW) V_STORE(o + c, V_MUL(V_LOAD(O + (size_t)r * hd + c), vi));
        *l = L[r] > 0.0f ? M[r] + logf(L[r]) : -INFINITY;
    }
}

static void sh_task(void *vctx, int ith, int nth) {
    (void)nth;
    shared_job *j = vctx;
    const ts_attn_shared *a = j->a;
    size_t R = (size_t)j->rpc * (size_t)j->group;
    size_t floats = 2 * R * (size_t)a->head_dim + R * TS_AC + 2 * R;
    if (a->kv_dtype != TS_DT_F32) floats += 2 * (size_t)TS_AC * (size_t)a->head_dim; /* tile */
    float *scr = ts_scratch_get(&j->cpu->thr[ith], floats * sizeof(float));
    if (!scr) {
        j->fail = 1;
        return;
    }
    /* item = (h * n_rc + chunk) * n_split + split */
    for (;;) {
        long it = atomic_fetch_add(&j->next, 1);
        if (it >= j->n_items) break;
        int ks = (int)(it % j->n_split);
        long hc = it / j->n_split;
        int rc = (int)(hc % j->n_rc), h = (int)(hc / j->n_rc);
        int i0 = rc * j->rpc, i1 = i0 + j->rpc < a->n_rows ? i0 + j->rpc : a->n_rows;
        int k0 = ks * j->tps, k1 = k0 + j->tps < j->n_tiles ? k0 + j->tps : j->n_tiles;
        if (i0 < i1 && k0 < k1) sh_item(j, scr, h, i0, i1, k0, k1, ks);
    }
}

/* Second phase when the KV range was split: folds the partials of every
 * (listed row, head) into out / lse, rows split between threads. */
static void sh_merge_task(void *vctx, int ith, int nth) {
    const shared_job *j = vctx;
    const ts_attn_shared *a = j->a;
    size_t hd = (size_t)a->head_dim, nh = (size_t)a->n_heads;
    size_t split_rows = (size_t)a->n_rows * nh; /* partial rows per split */
    long lo, hi;
    ts_pool_range(a->n_rows, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        size_t row = (size_t)a->rows[i];
        merge_pieces(a->out + row * nh * hd, a->lse + row * nh, j->part_o, j->part_l,
                     (size_t)i * nh, split_rows, j->n_split, a->n_heads, a->head_dim);
    }
}

void ATTN_SHARED_FN(void *ctx, const ts_attn_shared *a) {
    ts_cpu *cpu = ctx;
    int G = a->n_kv_heads > 0 ? a->n_heads / a->n_kv_heads : 0;
    if (G < 1 || G > TS_SH_ROWS || a->head_dim % VW != 0 || a->n_heads % a->n_kv_heads != 0) {
        ts_ref_attention_shared(ctx, a);
        return;
    }
    if (a->n_rows <= 0) return;
    if (a->n_kv <= 0) { /* nothing to attend to: the merge's neutral element */
        size_t qstride = (size_t)a->n_heads * (size_t)a->head_dim;
        for (int i = 0; i < a->n_rows; i++) {
            size_t row = (size_t)a->rows[i];
            memset(a->out + row * qstride, 0, qstride * sizeof(float));
            for (int h = 0; h < a->n_heads; h++) a->lse[row * (size_t)a->n_heads + (size_t)h] = -INFINITY;
        }
        return;
    }
    shared_job j = {.cpu = cpu, .a = a, .group = G};
    int max_rows = TS_SH_ROWS / G;
    j.n_rc = (a->n_rows + max_rows - 1) / max_rows;
    j.rpc = (a->n_rows + j.n_rc - 1) / j.n_rc;
    j.n_tiles = (a->n_kv + TS_AC - 1) / TS_AC;
    long base = (long)a->n_kv_heads * j.n_rc;
    long want = cpu->nth > 1 ? (4L * cpu->nth + base - 1) / base : 1;
    if (want > j.n_tiles) want = j.n_tiles;
    j.tps = (int)((j.n_tiles + want - 1) / want);
    j.n_split = (j.n_tiles + j.tps - 1) / j.tps;
    if (j.n_split > 1) {
        size_t nrh = (size_t)j.n_split * (size_t)a->n_rows * (size_t)a->n_heads;
        float *p = ts_scratch_get(&cpu->shared, nrh * ((size_t)a->head_dim + 1) * sizeof(float));
        if (!p) {
            ts_ref_attention_shared(ctx, a);
            return;
        }
        j.part_o = p;
        j.part_l = p + nrh * (size_t)a->head_dim;
    }
    j.n_items = base * j.n_split;
    atomic_init(&j.next, 0);
    ts_pool_run(cpu->pool, sh_task, &j);
    if (j.fail) {
        ts_ref_attention_shared(ctx, a);
        return;
    }
    if (j.n_split > 1) ts_pool_run(cpu->pool, sh_merge_task, &j);
}
