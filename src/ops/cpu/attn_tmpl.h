/* Flash-style paged attention, written once over a small vector vocabulary
 * and included by attn_avx2.c and attn_avx512.c, which define:
 *   VF, VW (floats per vector), V_LOAD, V_STORE, V_FMA(a, b, c) = a*b + c,
 *   V_MUL, V_ADD, V_MAX, V_SET1, V_ZERO, V_HSUM, V_HMAX, V_EXP, ATTN_FN, and
 *   V_LOAD_H(p): VW f16 values widened to a VF.
 * The per-item kernels (attn_kv_tmpl.h) are compiled once per pool element
 * type (f32, f16), loading K and V rows in place.
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

typedef struct attn_job {
    ts_cpu *cpu;
    const ts_attn *a;
    int group, tq, n_tiles_max;
    long n_items;
    _Atomic long next;
    _Atomic int fail;
} attn_job;

/* The row at element offset off of a pool as f32: the pool's own (f32) or
 * widened into dst[hd] (f16). */
TS_INLINE_A const float *kv_row_f32(float *dst, const void *pool, ts_dtype dt, size_t off,
                                    int hd) {
    if (dt != TS_DT_F16) return (const float *)pool + off;
    const uint16_t *h = (const uint16_t *)pool + off;
    for (int c = 0; c < hd; c += VW) V_STORE(dst + c, V_LOAD_H(h + c));
    return dst;
}

/* One row's online-softmax step over a chunk of scores Sr[0, cn) (Sr has
 * TS_AC entries; the rest are set to -inf): Sr becomes e^(s - m) for the
 * new running max m, and the row's sum *L and output Or[hd] are rescaled
 * from the old max *M to m. A row that sees nothing in the chunk gets
 * Sr = 0 and keeps *M, *L and Or. */
TS_INLINE_A void softmax_chunk(float *Sr, int cn, float *M, float *L, float *Or, int hd) {
    for (int t = cn; t < TS_AC; t++) Sr[t] = -INFINITY;
    VF mx = V_SET1(-INFINITY);
    for (int t = 0; t < TS_AC; t += VW) mx = V_MAX(mx, V_LOAD(Sr + t));
    float cm = V_HMAX(mx);
    if (cm == -INFINITY) {
        for (int t = 0; t < TS_AC; t += VW) V_STORE(Sr + t, V_ZERO());
        return;
    }
    float mn = cm > *M ? cm : *M;
    float corr = expf(*M - mn); /* 0 on a row's first chunk */
    VF sum = V_ZERO();
    for (int t = 0; t < TS_AC; t += VW) {
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

/* KV_APF: slots prefetched ahead, ~4 KiB of K and of V at head_dim 128
 * (f16 rows: 8 slots streamed 32 GB/s, 16 slots 37, 32 slots no more) */
#define KV_T float
#define KV_LD(p) V_LOAD(p)
#define KVF(name) name##_f32
#define KV_APF 8
#include "ops/cpu/attn_kv_tmpl.h"
#undef KV_T
#undef KV_LD
#undef KVF
#undef KV_APF
#define KV_T uint16_t
#define KV_LD(p) V_LOAD_H(p)
#define KVF(name) name##_f16
#define KV_APF 16
#include "ops/cpu/attn_kv_tmpl.h"
#undef KV_T
#undef KV_LD
#undef KVF
#undef KV_APF

static void attn_task(void *vctx, int ith, int nth) {
    (void)nth;
    attn_job *j = vctx;
    const ts_attn *a = j->a;
    size_t R = (size_t)j->tq * (size_t)j->group;
    size_t floats = 2 * R * (size_t)a->head_dim + R * TS_AC + 2 * R;
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
        if (a->kv_dtype == TS_DT_F16) attn_item_f16(j, scr, s, h, i0, i1);
        else attn_item_f32(j, scr, s, h, i0, i1);
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
