/* Flash-style paged attention, written once over a small vector vocabulary
 * and included by attn_avx2.c and attn_avx512.c, which define:
 *   VF, VW (floats per vector), V_LOAD, V_STORE, V_FMA(a, b, c) = a*b + c,
 *   V_MUL, V_ADD, V_MAX, V_SET1, V_ZERO, V_HSUM, V_HMAX, V_EXP, ATTN_FN,
 *   V_LOAD_H(p), V_LOAD_B(p): VW f16 or bf16 values widened to a VF,
 *   V_HSUM4(a, b, c, d, out):
 *   out[0..3] = the four vectors' sums, V_RED4(a, b, c, d) and V_REDV(x):
 *   VW vectors' sums as one vector, V_REDV over the VW / 4 results of
 *   V_RED4 on vectors 0-3, 4-7, ..., and V_NREG: vector registers.
 * The per-item kernels (attn_kv_tmpl.h) are compiled once per pool element
 * type (f32, f16, bf16), loading K and V rows in place.
 *
 * Work item = (sequence, KV head, tile of query positions). Its rows are
 * every (query position, q head of the GQA group) pair, so each K and V
 * row is loaded once from memory and used by all of them (decode: one pass
 * over the KV head for the whole group). KV is walked in chunks of TS_AC
 * slots with an online softmax (running max m, sum l, output O rescaled
 * when m grows), so no n x n score matrix exists. Items are handed out
 * through an atomic counter because causal tiles differ in cost. A row sees
 * slots [kv_start, its last]; an empty range leaves L = 0: out 0, lse -inf.
 *
 * Decode steps have few items (one per sequence and KV head), too few to
 * share out evenly, so there each item's KV range is split into pieces of
 * whole chunks: each piece leaves a partial (out, lse) per row in scratch,
 * and a second pool run merges them by the log-sum-exp rule. For groups of
 * 1 or 2 and head_dim 64 or 128, a decode item instead covers every KV head
 * of a sequence's piece, walked in block order (attn_dec_tmpl.h), so that
 * the pools stream front to back. */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>

#define TS_INLINE_A static inline __attribute__((always_inline))

/* head_dim 64 and 128 get their own unrolled copies of the item kernel,
 * except in sanitizer builds, where those copies only multiply compile time
 * (the generic copy runs the same loads and stores). */
#if defined(__SANITIZE_ADDRESS__)
#define TS_ATTN_UNROLL_HD 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TS_ATTN_UNROLL_HD 0
#endif
#endif
#ifndef TS_ATTN_UNROLL_HD
#define TS_ATTN_UNROLL_HD 1
#endif

#define TS_AC 64      /* KV slots per chunk (a multiple of VW) */
#define TS_AROWS 32   /* rows per work item: query positions x group */
#define TS_MERGE_HEADS 256 /* most q heads a split decode merges */

typedef struct attn_job {
    ts_cpu *cpu;
    const ts_attn *a;
    int group, tq, n_tiles_max;
    int n_split, sps, n_tok; /* KV pieces per item, slots per piece, rows of q */
    bool by_block;           /* decode items of every KV head, walked in block order */
    float *part_o;           /* n_split > 1: [n_split][n_tok][n_heads][head_dim] */
    float *part_l;           /*              [n_split][n_tok][n_heads] */
    long n_items;
    _Atomic long next;
    _Atomic int fail;
} attn_job;

/* The row at element offset off of a pool as f32: the pool's own (f32) or
 * widened into dst[hd] (f16, bf16). */
TS_INLINE_A const float *kv_row_f32(float *dst, const void *pool, ts_dtype dt, size_t off,
                                    int hd) {
    const uint16_t *h = (const uint16_t *)pool + off;
    if (dt == TS_DT_F16)
        for (int c = 0; c < hd; c += VW) V_STORE(dst + c, V_LOAD_H(h + c));
    else if (dt == TS_DT_BF16)
        for (int c = 0; c < hd; c += VW) V_STORE(dst + c, V_LOAD_B(h + c));
    else
        return (const float *)pool + off;
    return dst;
}

/* One row's online-softmax step over a chunk of scores Sr[0, cn): Sr
 * becomes e^(s - m) for the new running max m (0 from cn up to the next
 * multiple of VW), and the row's sum *L and output Or[hd] are rescaled from
 * the old max *M to m. A row that sees nothing in the chunk gets Sr = 0 and
 * keeps *M, *L and Or. */
TS_INLINE_A void softmax_chunk(float *Sr, int cn, float *M, float *L, float *Or, int hd) {
    int n = (cn + VW - 1) / VW * VW; /* entries from n on are never read */
    for (int t = cn; t < n; t++) Sr[t] = -INFINITY;
    VF mx = V_SET1(-INFINITY);
    for (int t = 0; t < n; t += VW) mx = V_MAX(mx, V_LOAD(Sr + t));
    float cm = V_HMAX(mx);
    if (cm == -INFINITY) {
        for (int t = 0; t < n; t += VW) V_STORE(Sr + t, V_ZERO());
        return;
    }
    float mn = cm > *M ? cm : *M;
    float corr = mn > *M ? expf(*M - mn) : 1.0f; /* 0 on a row's first chunk */
    VF sum = V_ZERO();
    for (int t = 0; t < n; t += VW) {
        VF p = V_EXP(V_ADD(V_LOAD(Sr + t), V_SET1(-mn)));
        V_STORE(Sr + t, p);
        sum = V_ADD(sum, p);
    }
    *L = *L * corr + V_HSUM(sum);
    *M = mn;
    if (corr != 1.0f) {
        VF vc = V_SET1(corr);
        for (int c = 0; c < hd; c += VW) V_STORE(Or + c, V_MUL(V_LOAD(Or + c), vc));
    }
}

/* Brings the row of n bytes at p towards L1. */
TS_INLINE_A void kv_prefetch_row(const void *p, size_t n) {
    for (size_t c = 0; c < n; c += 64) _mm_prefetch((const char *)p + c, _MM_HINT_T0);
}

/* off[t] = the element offset in the pools of KV head h's row for slot t0 +
 * t, t < n: one table lookup per block, the rows within a block hd apart. */
static void kv_offs(size_t *off, const ts_attn *a, const int32_t *blocks, int h, int t0, int n) {
    int bs = a->block_size, b = t0 / bs, o = t0 % bs;
    size_t hd = (size_t)a->head_dim, nkh = (size_t)a->n_kv_heads;
    for (int t = 0; t < n; b++, o = 0) {
        size_t x = (((size_t)blocks[b] * nkh + (size_t)h) * (size_t)bs + (size_t)o) * hd;
        int e = t + bs - o < n ? t + bs - o : n;
        for (; t < e; t++, x += hd) off[t] = x;
    }
}

/* KV_APF: slots prefetched ahead, ~4 KiB of K and of V at head_dim 128
 * (f16 rows: 8 slots streamed 32 GB/s, 16 slots 37, 32 slots no more) */
#define KV_T float
#define KV_LD(p) V_LOAD(p)
#define KVF(name) name##_f32
#define KV_APF 8
#include "ops/cpu/attn_kv_tmpl.h"
#include "ops/cpu/attn_dec_tmpl.h"
#undef KV_T
#undef KV_LD
#undef KVF
#undef KV_APF
#define KV_T uint16_t
#define KV_LD(p) V_LOAD_H(p)
#define KVF(name) name##_f16
#define KV_APF 16
#include "ops/cpu/attn_kv_tmpl.h"
#include "ops/cpu/attn_dec_tmpl.h"
#undef KV_LD
#undef KVF
#define KV_LD(p) V_LOAD_B(p)
#define KVF(name) name##_bf16
#include "ops/cpu/attn_kv_tmpl.h"
#include "ops/cpu/attn_dec_tmpl.h"
#undef KV_T
#undef KV_LD
#undef KVF
#undef KV_APF

static void attn_task(void *vctx, int ith, int nth) {
    (void)nth;
    attn_job *j = vctx;
    const ts_attn *a = j->a;
    size_t R = (size_t)j->tq * (size_t)j->group;
    size_t floats = 2 * R * (size_t)a->head_dim + R * TS_AC + 2 * R; /* Q, O, S, M, L */
    if (j->by_block) /* Q, O, M, L of every q head */
        floats = 2 * (size_t)a->n_heads * ((size_t)a->head_dim + 1) + (size_t)j->group * TS_AC;
    float *scr = ts_scratch_get(&j->cpu->thr[ith], floats * sizeof(float));
    if (!scr) {
        j->fail = 1;
        return;
    }
    /* item = ((s * n_kv_heads + h) * n_tiles_max + tile) * n_split + piece,
     * or s * n_split + piece by_block */
    for (;;) {
        long it = atomic_fetch_add(&j->next, 1);
        if (it >= j->n_items) break;
        if (j->by_block) {
            int ks = (int)(it % j->n_split), s = (int)(it / j->n_split);
            if (a->kv_dtype == TS_DT_F16) dec_item_f16(j, scr, s, ks);
            else if (a->kv_dtype == TS_DT_BF16) dec_item_bf16(j, scr, s, ks);
            else dec_item_f32(j, scr, s, ks);
            continue;
        }
        int ks = (int)(it % j->n_split);
        it /= j->n_split;
        int tile = (int)(it % j->n_tiles_max);
        long sh = it / j->n_tiles_max;
        int h = (int)(sh % a->n_kv_heads), s = (int)(sh / a->n_kv_heads);
        const ts_attn_seq *sq = &a->seqs[s];
        int i0 = tile * j->tq;
        if (i0 >= sq->n_q) continue;
        int i1 = i0 + j->tq < sq->n_q ? i0 + j->tq : sq->n_q;
        if (a->kv_dtype == TS_DT_F16) attn_item_f16(j, scr, s, h, i0, i1, ks);
        else if (a->kv_dtype == TS_DT_BF16) attn_item_bf16(j, scr, s, h, i0, i1, ks);
        else attn_item_f32(j, scr, s, h, i0, i1, ks);
    }
}

/* o[n_heads][hd], l[n_heads] = the log-sum-exp merge of the n_split
 * partials of one row: the first at part_o[p0 * hd], part_l[p0], the next
 * per rows of heads further on each (layout [split][rows][n_heads]). Shared
 * by the paged kernel's split decode and the cascade's split prefix. */
static void merge_pieces(float *o, float *l, const float *part_o, const float *part_l, size_t p0,
                         size_t per, int n_split, int n_heads, int hd) {
    memcpy(o, part_o + p0 * (size_t)hd, (size_t)n_heads * (size_t)hd * sizeof(float));
    memcpy(l, part_l + p0, (size_t)n_heads * sizeof(float));
    for (int ks = 1; ks < n_split; ks++) {
        size_t p = (size_t)ks * per + p0;
        ts_attn_merge(o, l, part_o + p * (size_t)hd, part_l + p, 1, n_heads, hd);
    }
}

/* out (and lse) of every sequence's row = the merge of its n_split
 * partials (split steps have one row a sequence; rows of q no sequence
 * names are left alone). */
static void attn_merge_task(void *vctx, int ith, int nth) {
    const attn_job *j = vctx;
    const ts_attn *a = j->a;
    size_t hd = (size_t)a->head_dim, nh = (size_t)a->n_heads, per = (size_t)j->n_tok * nh;
    long lo, hi;
    ts_pool_range(a->n_seq, ith, nth, &lo, &hi);
    for (long s = lo; s < hi; s++) {
        if (a->seqs[s].n_q < 1) continue;
        size_t i = (size_t)a->seqs[s].q_start;
        float l[TS_MERGE_HEADS], *lp = a->lse ? a->lse + i * nh : l;
        merge_pieces(a->out + i * nh * hd, lp, j->part_o, j->part_l, i * nh, per, j->n_split,
                     a->n_heads, a->head_dim);
    }
}

/* Splits decode items' KV ranges (every sequence one query position, fewer
 * items than wanted) into pieces of whole chunks and takes the partials'
 * scratch. Items of one KV head: pieces of >= 4 chunks, aiming at 8 items a
 * thread. Items of every KV head in block order (by_block): one item a
 * thread, as each streams best over one long range (measured 2026-12-06:
 * 1, 2 and 4 pieces a thread in that order). Returns false when out of
 * memory. */
static bool attn_plan_split(attn_job *j, int max_q, int max_kv) {
    const ts_attn *a = j->a;
    int nth = j->cpu->nth;
    j->n_split = 1;
    j->sps = INT_MAX;
    if (max_q != 1 || nth < 2 || a->n_heads > TS_MERGE_HEADS) return true;
    long base = j->by_block ? (long)a->n_seq : (long)a->n_seq * a->n_kv_heads;
    long per = j->by_block ? 1 : 8; /* pieces a thread */
    long want = (per * nth + base - 1) / base, chunks = (max_kv + TS_AC - 1) / TS_AC;
    int minc = j->by_block ? 1 : 4;
    if (want > chunks / minc) want = chunks / minc;
    if (want < 2) return true;
    int cps = (int)((chunks + want - 1) / want); /* chunks per piece */
    j->sps = cps * TS_AC;
    j->n_split = (int)((chunks + cps - 1) / cps);
    j->n_tok = 0;
    for (int s = 0; s < a->n_seq; s++)
        if (a->seqs[s].q_start + a->seqs[s].n_q > j->n_tok) j->n_tok = a->seqs[s].q_start + a->seqs[s].n_q;
    size_t nrh = (size_t)j->n_split * (size_t)j->n_tok * (size_t)a->n_heads;
    float *p = ts_scratch_get(&j->cpu->shared, nrh * ((size_t)a->head_dim + 1) * sizeof(float));
    if (!p) return false;
    j->part_o = p;
    j->part_l = p + nrh * (size_t)a->head_dim;
    return true;
}

void ATTN_FN(void *ctx, const ts_attn *a) {
    ts_cpu *cpu = ctx;
    int G = a->n_kv_heads > 0 ? a->n_heads / a->n_kv_heads : 0;
    if (G < 1 || G > TS_AROWS || a->head_dim % VW != 0 || a->n_heads % a->n_kv_heads != 0) {
        ts_ref_attention(ctx, a);
        return;
    }
    attn_job j = {.cpu = cpu, .a = a, .group = G, .tq = TS_AROWS / G};
    int max_q = 0, max_kv = 0;
    for (int s = 0; s < a->n_seq; s++) {
        if (a->seqs[s].n_q > max_q) max_q = a->seqs[s].n_q;
        if (a->seqs[s].n_kv > max_kv) max_kv = a->seqs[s].n_kv;
    }
    if (max_q < j.tq) j.tq = max_q > 0 ? max_q : 1;
    j.n_tiles_max = (max_q + j.tq - 1) / j.tq;
    if (j.n_tiles_max < 1) j.n_tiles_max = 1;
    /* decode steps of groups of 1 or 2 and head sizes 64 or 128: block order
     * (attn_dec_tmpl.h; compiled in sanitizer builds too, so they test it) */
    j.by_block = max_q == 1 && G <= 2 && (a->head_dim == 64 || a->head_dim == 128);
    if (!attn_plan_split(&j, max_q, max_kv)) {
        ts_ref_attention(ctx, a);
        return;
    }
    j.n_items = j.by_block ? (long)a->n_seq * j.n_split
                           : (long)a->n_seq * a->n_kv_heads * j.n_tiles_max * j.n_split;
    atomic_init(&j.next, 0);
    ts_pool_run(cpu->pool, attn_task, &j);
    if (j.fail) {
        ts_ref_attention(ctx, a);
        return;
    }
    if (j.n_split > 1) ts_pool_run(cpu->pool, attn_merge_task, &j);
}
