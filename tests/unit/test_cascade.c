/* Cascade attention kernels: for random batches of sequences sharing a
 * prefix (and, two levels deep, a system prefix shared by all plus a
 * document shared by some), attention_shared over each shared level +
 * per-sequence attention from kv_start + ts_attn_merge_rows must equal the
 * plain causal attention over each sequence's whole block table. Also:
 * kv_start against a double-precision formula written here (empty ranges
 * give out 0, lse -inf and merge neutrally), attention_shared of every ISA
 * against the reference, and the reference against per-row ts_attn.
 * Outputs are poisoned with NaN first, so unwritten values fail. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "base/pool.h"
#include "ops/cpu/cpu.h"
#include "ops/cpu/cpu_internal.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static int rnd_int(int n) { return (int)(rnd_u32() % (uint32_t)n); }
static float rnd(void) { return (float)((rnd_u32() & 0xffffff) / 8388608.0 - 1.0); }
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = rnd() * scale;
}
static void poison(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}
static void shuffle(int32_t *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = rnd_int(i + 1);
        int32_t t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

/* lse values equal within tol; infinities must match exactly; NaN fails. */
static int lse_close(const float *a, const float *b, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return 0;
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i]) return 0;
        } else if (fabs((double)a[i] - b[i]) > tol * (1 + fabs((double)b[i]))) {
            return 0;
        }
    }
    return 1;
}

/* ---- the backends under test ---- */

#define MAX_BE 8
typedef struct backend {
    ts_pool *pool;
    ts_cpu *cpu;
    const ts_ops *ops;
    char name[32];
} backend;
static backend be[MAX_BE];
static int n_be;

static void backends_open(int light) {
    ts_cpu_isa best = ts_cpu_isa_detect();
    static const int threads[] = {1, 2, 3};
    for (ts_cpu_isa isa = TS_ISA_SCALAR; isa <= best; isa++)
        for (int ti = 0; ti < 3 && n_be < MAX_BE; ti++) {
            if ((isa == TS_ISA_SCALAR || light) && threads[ti] == 3) continue;
            if (isa == TS_ISA_SCALAR && threads[ti] != 1) continue;
            backend *b = &be[n_be];
            b->pool = ts_pool_create(threads[ti]);
            b->cpu = ts_cpu_create(b->pool, isa);
            CHECK(b->cpu != NULL);
            if (!b->cpu) continue;
            b->ops = ts_cpu_ops(b->cpu);
            CHECK(b->ops->attention_shared != NULL);
            snprintf(b->name, sizeof b->name, "%s/%d", b->ops->name, threads[ti]);
            n_be++;
        }
}

static void backends_close(void) {
    for (int i = 0; i < n_be; i++) ts_cpu_destroy(be[i].cpu), ts_pool_destroy(be[i].pool);
}

/* ---- a batch sharing prefixes ---- */

#define MAX_SEQ 8
typedef struct batch {
    int n_heads, n_kv_heads, hd, bs;
    int p_sys, p_doc;        /* shared slots: all sequences / sequences s < n_doc */
    int n_seq, n_doc, n_tok, n_blocks;
    ts_attn_seq seqs[MAX_SEQ];
    int32_t *tables[MAX_SEQ];
    int32_t *sys_blocks, *doc_blocks; /* pointers into a permuted list of all blocks */
    int32_t *perm;
    float *q, *k, *v;
} batch;

/* Sequences with own suffixes of random length (>= their query rows, ragged),
 * a system prefix of p_sys slots for all, a document of p_doc slots for the
 * first n_doc. Block ids are a random permutation of the pool. */
static void batch_make(batch *b, int G, int n_kv_heads, int hd, int bs, int n_seq, int p_sys,
                       int p_doc, int n_doc) {
    memset(b, 0, sizeof *b);
    b->n_heads = G * n_kv_heads, b->n_kv_heads = n_kv_heads, b->hd = hd, b->bs = bs;
    b->p_sys = p_sys, b->p_doc = p_doc, b->n_seq = n_seq, b->n_doc = n_doc;
    int own[MAX_SEQ], nq[MAX_SEQ], nb = p_sys / bs + p_doc / bs;
    for (int s = 0; s < n_seq; s++) {
        nq[s] = rnd_int(3) == 0 ? 1 + rnd_int(9) : 1; /* mostly decode, some prefill chunks */
        own[s] = nq[s] + rnd_int(40);
        nb += (own[s] + bs - 1) / bs;
    }
    b->n_blocks = nb + 2;
    b->perm = malloc(sizeof(int32_t) * (size_t)b->n_blocks);
    for (int i = 0; i < b->n_blocks; i++) b->perm[i] = i;
    shuffle(b->perm, b->n_blocks);
    b->sys_blocks = b->perm;
    b->doc_blocks = b->perm + p_sys / bs;
    int next = p_sys / bs + p_doc / bs, tok = 0;
    for (int s = 0; s < n_seq; s++) {
        int pre = p_sys + (s < n_doc ? p_doc : 0), nob = (own[s] + bs - 1) / bs;
        int32_t *t = malloc(sizeof(int32_t) * (size_t)(pre / bs + nob));
        memcpy(t, b->sys_blocks, sizeof(int32_t) * (size_t)(p_sys / bs));
        if (s < n_doc) memcpy(t + p_sys / bs, b->doc_blocks, sizeof(int32_t) * (size_t)(p_doc / bs));
        memcpy(t + pre / bs, b->perm + next, sizeof(int32_t) * (size_t)nob);
        next += nob;
        b->tables[s] = t;
        b->seqs[s] = (ts_attn_seq){.q_start = tok, .n_q = nq[s], .n_kv = pre + own[s], .blocks = t};
        tok += nq[s];
    }
    b->n_tok = tok;
    size_t pool = (size_t)b->n_blocks * (size_t)n_kv_heads * (size_t)bs * (size_t)hd;
    size_t nqf = (size_t)tok * (size_t)b->n_heads * (size_t)hd;
    b->q = malloc(sizeof(float) * nqf);
    b->k = malloc(sizeof(float) * pool);
    b->v = malloc(sizeof(float) * pool);
    fill(b->q, nqf, 3.0f); /* peaky softmax, so errors in the max show */
    fill(b->k, pool, 1.0f);
    fill(b->v, pool, 1.0f);
}

static void batch_free(batch *b) {
    for (int s = 0; s < b->n_seq; s++) free(b->tables[s]);
    free(b->perm), free(b->q), free(b->k), free(b->v);
}

static ts_attn batch_attn(batch *b, float *out, float *lse, bool causal) {
    return (ts_attn){.out = out, .lse = lse, .q = b->q, .k = b->k, .v = b->v,
                     .n_heads = b->n_heads, .n_kv_heads = b->n_kv_heads, .head_dim = b->hd,
                     .block_size = b->bs, .scale = 1.0f / sqrtf((float)b->hd), .causal = causal,
                     .n_seq = b->n_seq, .seqs = b->seqs};
}

static ts_attn_shared batch_shared(batch *b, float *out, float *lse, const int32_t *rows,
                                   int n_rows, const int32_t *blocks, int n_kv) {
    return (ts_attn_shared){.out = out, .lse = lse, .q = b->q, .rows = rows, .n_rows = n_rows,
                            .k = b->k, .v = b->v, .blocks = blocks, .n_kv = n_kv,
                            .n_heads = b->n_heads, .n_kv_heads = b->n_kv_heads,
                            .head_dim = b->hd, .block_size = b->bs,
                            .scale = 1.0f / sqrtf((float)b->hd)};
}

/* Whether every value of the listed rows is a number and every value of the
 * other rows is still the NaN poison. */
static int rows_written_only(const float *x, int n_tok, size_t width, const int32_t *rows,
                             int n_rows) {
    int ok = 1;
    for (int r = 0; r < n_tok; r++) {
        int listed = 0;
        for (int i = 0; i < n_rows; i++) listed |= rows[i] == r;
        for (size_t c = 0; c < width; c++) ok &= listed ? !isnan(x[r * width + c]) : isnan(x[r * width + c]);
    }
    return ok;
}

/* ---- cascade == full ---- */

static void check_cascade(int G, int hd, int bs, int n_seq, int p_sys, int p_doc, int n_doc) {
    int n_kv_heads = G == 8 ? 1 : 2;
    batch b;
    batch_make(&b, G, n_kv_heads, hd, bs, n_seq, p_sys, p_doc, n_doc);
    size_t no = (size_t)b.n_tok * b.n_heads * hd, nl = (size_t)b.n_tok * b.n_heads;
    size_t ow = (size_t)b.n_heads * hd;
    float *fo = malloc(no * 4), *fl = malloc(nl * 4), *o1 = malloc(no * 4), *l1 = malloc(nl * 4),
          *o2 = malloc(no * 4), *l2 = malloc(nl * 4), *o3 = malloc(no * 4), *l3 = malloc(nl * 4);
    ts_attn full = batch_attn(&b, fo, fl, true);
    poison(fo, no), poison(fl, nl);
    ts_ref_attention(NULL, &full);

    /* rows of all sequences, shuffled; the document's rows (sequences < n_doc) */
    int32_t all[64], doc[64];
    int n_all = b.n_tok, n_docr = 0;
    for (int r = 0; r < n_all; r++) all[r] = r;
    shuffle(all, n_all);
    for (int s = 0; s < n_doc; s++)
        for (int i = 0; i < b.seqs[s].n_q; i++) doc[n_docr++] = b.seqs[s].q_start + i;
    shuffle(doc, n_docr);

    for (int e = 0; e < n_be; e++) {
        const ts_ops *ops = be[e].ops;
        /* level 1: the system prefix, every row */
        poison(o1, no), poison(l1, nl);
        ts_attn_shared sh = batch_shared(&b, o1, l1, all, n_all, b.sys_blocks, p_sys);
        ops->attention_shared(ops->ctx, &sh);
        CHECKF(rows_written_only(o1, b.n_tok, ow, all, n_all) &&
                   rows_written_only(l1, b.n_tok, (size_t)b.n_heads, all, n_all),
               "%s shared level writes its rows", be[e].name);
        /* level 2: the document, its rows only */
        if (n_doc > 0) {
            poison(o2, no), poison(l2, nl);
            sh = batch_shared(&b, o2, l2, doc, n_docr, b.doc_blocks, p_doc);
            ops->attention_shared(ops->ctx, &sh);
            CHECKF(rows_written_only(o2, b.n_tok, ow, doc, n_docr) &&
                       rows_written_only(l2, b.n_tok, (size_t)b.n_heads, doc, n_docr),
                   "%s document level writes only its rows", be[e].name);
            ts_attn_merge_rows(o1, l1, o2, l2, doc, n_docr, b.n_heads, hd);
        }
        /* last level: each sequence's own slots, causal */
        for (int s = 0; s < n_seq; s++) b.seqs[s].kv_start = p_sys + (s < n_doc ? p_doc : 0);
        poison(o3, no), poison(l3, nl);
        ts_attn own = batch_attn(&b, o3, l3, true);
        ops->attention(ops->ctx, &own);
        for (int s = 0; s < n_seq; s++) b.seqs[s].kv_start = 0;
        ts_attn_merge_rows(o1, l1, o3, l3, all, n_all, b.n_heads, hd);
        double err = ts_test_rel_err(o1, fo, no);
        CHECKF(err < 1e-5 && lse_close(l1, fl, nl, 1e-5),
               "%s cascade == full: G=%d hd=%d bs=%d seqs=%d sys=%d doc=%d x%d err %g", be[e].name,
               G, hd, bs, n_seq, p_sys, p_doc, n_doc, err);
    }
    free(fo), free(fl), free(o1), free(l1), free(o2), free(l2), free(o3), free(l3);
    batch_free(&b);
}

/* ---- kv_start against the definition ---- */

/* softmax over slots [ks, last] in double; empty: out 0, lse -inf. */
static void naive_range(const batch *b, bool causal, double *out, double *lse) {
    int hd = b->hd, G = b->n_heads / b->n_kv_heads;
    double *sc = malloc(sizeof(double) * 1024);
    for (int s = 0; s < b->n_seq; s++) {
        const ts_attn_seq *sq = &b->seqs[s];
        for (int i = 0; i < sq->n_q; i++)
            for (int h = 0; h < b->n_heads; h++) {
                size_t row = (size_t)(sq->q_start + i) * b->n_heads + h;
                int last = causal ? sq->n_kv - sq->n_q + i : sq->n_kv - 1;
                double mx = -INFINITY, sum = 0;
                for (int t = sq->kv_start; t <= last; t++) {
                    const float *k = b->k + (((size_t)sq->blocks[t / b->bs] * b->n_kv_heads + h / G) * b->bs + t % b->bs) * hd;
                    double d = 0;
                    for (int c = 0; c < hd; c++) d += (double)b->q[row * hd + c] * k[c];
                    sc[t] = d / sqrt((double)hd);
                    if (sc[t] > mx) mx = sc[t];
                }
                for (int t = sq->kv_start; t <= last; t++) sum += exp(sc[t] - mx);
                for (int c = 0; c < hd; c++) {
                    double o = 0;
                    for (int t = sq->kv_start; t <= last; t++) {
                        const float *v = b->v + (((size_t)sq->blocks[t / b->bs] * b->n_kv_heads + h / G) * b->bs + t % b->bs) * hd;
                        o += exp(sc[t] - mx) / sum * v[c];
                    }
                    out[row * hd + c] = sum > 0 ? o : 0.0;
                }
                lse[row] = sum > 0 ? mx + log(sum) : -INFINITY;
            }
    }
    free(sc);
}

static void check_kv_start(int G, int hd, bool causal) {
    int n_kv_heads = G == 8 ? 1 : 2;
    batch b;
    batch_make(&b, G, n_kv_heads, hd, 16, 5, 32, 0, 0);
    /* kv_start: 0, in the middle, past some causal rows' last slot, == n_kv */
    for (int s = 0; s < b.n_seq; s++) {
        ts_attn_seq *sq = &b.seqs[s];
        int lim = sq->n_kv - sq->n_q; /* the first row's last slot (causal) */
        switch (s % 5) {
        case 0: sq->kv_start = 0; break;
        case 1: sq->kv_start = 1 + rnd_int(sq->n_kv - 1); break;
        case 2: sq->kv_start = lim + sq->n_q / 2 + 1; break; /* empty for early rows */
        case 3: sq->kv_start = sq->n_kv; break;              /* empty for all */
        default: sq->kv_start = lim; break;                  /* one slot for row 0 */
        }
    }
    size_t no = (size_t)b.n_tok * b.n_heads * hd, nl = (size_t)b.n_tok * b.n_heads;
    double *eo = malloc(no * sizeof(double)), *el = malloc(nl * sizeof(double));
    float *o = malloc(no * 4), *l = malloc(nl * 4), *x = malloc(no * 4), *xl = malloc(nl * 4),
          *y = malloc(no * 4), *yl = malloc(nl * 4);
    naive_range(&b, causal, eo, el);
    float *eof = malloc(no * 4), *elf = malloc(nl * 4);
    for (size_t i = 0; i < no; i++) eof[i] = (float)eo[i];
    for (size_t i = 0; i < nl; i++) elf[i] = (float)el[i];
    int n_empty = 0;
    for (size_t i = 0; i < nl; i++) n_empty += el[i] == -INFINITY;
    CHECKF(n_empty > 0, "kv_start case has empty rows");
    for (int e = 0; e < n_be; e++) {
        const ts_ops *ops = be[e].ops;
        ts_attn a = batch_attn(&b, o, l, causal);
        poison(o, no), poison(l, nl);
        ops->attention(ops->ctx, &a);
        double err = ts_test_rel_err(o, eof, no);
        int exact_empty = 1;
        for (size_t r = 0; r < nl; r++)
            if (el[r] == -INFINITY)
                for (int c = 0; c < hd; c++) exact_empty &= o[r * hd + c] == 0.0f;
        CHECKF(err < 1e-5 && lse_close(l, elf, nl, 1e-5) && exact_empty,
               "%s kv_start G=%d hd=%d causal=%d err %g", be[e].name, G, hd, causal, err);
        /* the empty rows merge neutrally, on either side; never NaN */
        fill(x, no, 1.0f), fill(xl, nl, 2.0f);
        memcpy(y, x, no * 4), memcpy(yl, xl, nl * 4);
        ts_attn_merge(y, yl, o, l, b.n_tok, b.n_heads, hd);
        int ok = 1;
        for (size_t r = 0; r < nl; r++) {
            if (el[r] != -INFINITY) continue;
            ok &= yl[r] == xl[r] && memcmp(y + r * hd, x + r * hd, (size_t)hd * 4) == 0;
        }
        memcpy(y, o, no * 4), memcpy(yl, l, nl * 4);
        ts_attn_merge(y, yl, y, yl, b.n_tok, b.n_heads, hd); /* self-merge: empties stay empty */
        for (size_t r = 0; r < nl; r++) {
            if (el[r] != -INFINITY) continue;
            ok &= yl[r] == -INFINITY;
            for (int c = 0; c < hd; c++) ok &= y[r * hd + c] == 0.0f;
        }
        CHECKF(ok, "%s kv_start empty rows merge neutrally", be[e].name);
    }
    free(eo), free(el), free(o), free(l), free(x), free(xl), free(y), free(yl), free(eof), free(elf);
    batch_free(&b);
}

/* ---- attention_shared: every ISA against the reference ---- */

static void check_shared(int G, int n_kv_heads, int hd, int n_kv, int n_rows) {
    batch b;
    /* one long sequence holding the prefix; q rows from a batch of n_tok rows */
    int n_tok = n_rows + 3;
    memset(&b, 0, sizeof b);
    b.n_heads = G * n_kv_heads, b.n_kv_heads = n_kv_heads, b.hd = hd, b.bs = 16;
    b.n_blocks = (n_kv + 15) / 16 + 3;
    b.perm = malloc(sizeof(int32_t) * (size_t)b.n_blocks);
    for (int i = 0; i < b.n_blocks; i++) b.perm[i] = i;
    shuffle(b.perm, b.n_blocks);
    size_t pool = (size_t)b.n_blocks * n_kv_heads * 16 * hd, no = (size_t)n_tok * b.n_heads * hd,
           nl = (size_t)n_tok * b.n_heads;
    b.q = malloc(no * 4), b.k = malloc(pool * 4), b.v = malloc(pool * 4);
    fill(b.q, no, 3.0f), fill(b.k, pool, 1.0f), fill(b.v, pool, 1.0f);
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)n_tok);
    for (int i = 0; i < n_tok; i++) rows[i] = i;
    shuffle(rows, n_tok); /* the first n_rows: a random subset in random order */
    float *ro = malloc(no * 4), *rl = malloc(nl * 4), *o = malloc(no * 4), *l = malloc(nl * 4);
    poison(ro, no), poison(rl, nl);
    ts_attn_shared sh = batch_shared(&b, ro, rl, rows, n_rows, b.perm, n_kv);
    ts_ref_attention_shared(NULL, &sh);
    /* the reference is per-row non-causal attention (one sequence per row) */
    ts_attn_seq *seqs = malloc(sizeof(ts_attn_seq) * (size_t)n_rows);
    for (int i = 0; i < n_rows; i++)
        seqs[i] = (ts_attn_seq){.q_start = rows[i], .n_q = 1, .n_kv = n_kv, .blocks = b.perm};
    b.n_seq = 0;
    ts_attn a = batch_attn(&b, o, l, false);
    a.n_seq = n_rows, a.seqs = seqs;
    poison(o, no), poison(l, nl);
    ts_ref_attention(NULL, &a);
    CHECKF(rows_written_only(ro, n_tok, (size_t)b.n_heads * hd, rows, n_rows) &&
               memcmp(o, ro, no * 4) == 0 && memcmp(l, rl, nl * 4) == 0,
           "ref shared == per-row attention G=%d kvh=%d hd=%d n_kv=%d rows=%d", G, n_kv_heads, hd,
           n_kv, n_rows);
    /* fill the NaNs of unlisted rows so that comparisons see listed rows only */
    for (size_t i = 0; i < no; i++)
        if (isnan(ro[i])) ro[i] = 0.0f;
    for (size_t i = 0; i < nl; i++)
        if (isnan(rl[i])) rl[i] = 0.0f;
    for (int e = 0; e < n_be; e++) {
        const ts_ops *ops = be[e].ops;
        poison(o, no), poison(l, nl);
        sh.out = o, sh.lse = l;
        ops->attention_shared(ops->ctx, &sh);
        int only = rows_written_only(o, n_tok, (size_t)b.n_heads * hd, rows, n_rows) &&
                   rows_written_only(l, n_tok, (size_t)b.n_heads, rows, n_rows);
        for (size_t i = 0; i < no; i++)
            if (isnan(o[i])) o[i] = 0.0f;
        for (size_t i = 0; i < nl; i++)
            if (isnan(l[i])) l[i] = 0.0f;
        double err = ts_test_rel_err(o, ro, no);
        CHECKF(only && err < 1e-5 && lse_close(l, rl, nl, 1e-5),
               "%s shared vs ref G=%d kvh=%d hd=%d n_kv=%d rows=%d err %g", be[e].name, G,
               n_kv_heads, hd, n_kv, n_rows, err);
    }
    /* 16-bit pools (f16, bf16): the reference's 16-bit path and every
     * backend against the reference over an f32 pool holding the same
     * rounded values (the shared level widens tiles: f32 arithmetic) */
    uint16_t *kh = malloc(pool * 2), *vh = malloc(pool * 2);
    float *kw = malloc(pool * 4), *vw = malloc(pool * 4);
    for (int di = 0; di < 2; di++) {
        ts_dtype dt = di ? TS_DT_BF16 : TS_DT_F16;
        for (size_t i = 0; i < pool; i++) {
            kh[i] = di ? ts_f32_to_bf16(b.k[i]) : ts_f32_to_f16(b.k[i]);
            vh[i] = di ? ts_f32_to_bf16(b.v[i]) : ts_f32_to_f16(b.v[i]);
            kw[i] = di ? ts_bf16_to_f32(kh[i]) : ts_f16_to_f32(kh[i]);
            vw[i] = di ? ts_bf16_to_f32(vh[i]) : ts_f16_to_f32(vh[i]);
        }
        ts_attn_shared ws = sh;
        ws.out = ro, ws.lse = rl, ws.k = kw, ws.v = vw;
        poison(ro, no), poison(rl, nl);
        ts_ref_attention_shared(NULL, &ws);
        for (size_t i = 0; i < no; i++)
            if (isnan(ro[i])) ro[i] = 0.0f;
        for (size_t i = 0; i < nl; i++)
            if (isnan(rl[i])) rl[i] = 0.0f;
        ts_attn_shared hs = sh;
        hs.k = kh, hs.v = vh, hs.kv_dtype = dt, hs.out = o, hs.lse = l;
        for (int e = -1; e < n_be; e++) {
            poison(o, no), poison(l, nl);
            if (e < 0) ts_ref_attention_shared(NULL, &hs);
            else be[e].ops->attention_shared(be[e].ops->ctx, &hs);
            for (size_t i = 0; i < no; i++)
                if (isnan(o[i])) o[i] = 0.0f;
            for (size_t i = 0; i < nl; i++)
                if (isnan(l[i])) l[i] = 0.0f;
            double err = ts_test_rel_err(o, ro, no);
            CHECKF(err < 1e-5 && lse_close(l, rl, nl, 1e-5),
                   "%s shared %s pool G=%d kvh=%d hd=%d n_kv=%d rows=%d err %g",
                   e < 0 ? "ref" : be[e].name, di ? "bf16" : "f16", G, n_kv_heads, hd, n_kv,
                   n_rows, err);
        }
    }
    free(kh), free(vh), free(kw), free(vw);
    free(rows), free(ro), free(rl), free(o), free(l), free(seqs);
    batch_free(&b);
}

int main(void) {
    int light = getenv("TS_TEST_LIGHT") != NULL;
    backends_open(light);
    printf("test_cascade: %d backends, best ISA %s\n", n_be,
           n_be ? be[n_be - 1].ops->name : "none");
    static const int Gs[] = {1, 2, 3, 8}, hds[] = {64, 128};
    for (int gi = 0; gi < 4; gi++)
        for (int hi = 0; hi < 2; hi++) {
            int G = Gs[gi], hd = hds[hi];
            if (light && (gi + hi) % 2) continue;
            /* one level: prefix of P slots shared by all */
            check_cascade(G, hd, 16, 4 + rnd_int(4), 16 * (1 + rnd_int(12)), 0, 0);
            /* two levels: a system prefix for all, a document for half */
            check_cascade(G, hd, 16, 6, 16 * (1 + rnd_int(4)), 16 * (1 + rnd_int(8)), 3);
            check_kv_start(G, hd, true);
            if (!light) check_kv_start(G, hd, false);
        }
    /* block size 4 and an empty system level (neutral) */
    check_cascade(2, 64, 4, 5, 4 * 9, 4 * 5, 2);
    check_cascade(2, 64, 16, 3, 0, 48, 2);
    /* shared kernel: row chunks (G=8, 70 rows), KV splits (1 KV head),
       a tile tail (n_kv not a multiple of 64), tiny and empty prefixes */
    static const int shp[][5] = {{1, 2, 64, 200, 5},  {2, 8, 128, 97, 33}, {3, 2, 64, 64, 7},
                                 {8, 1, 128, 700, 70}, {2, 1, 128, 1, 3},  {8, 2, 64, 130, 1},
                                 {1, 1, 64, 900, 2},   {2, 2, 128, 0, 4},  {3, 1, 48, 150, 20}};
    for (size_t i = 0; i < sizeof shp / sizeof *shp; i++) {
        if (light && i % 2) continue;
        check_shared(shp[i][0], shp[i][1], shp[i][2], shp[i][3], shp[i][4]);
    }
    backends_close();
    return ts_test_done("test_cascade");
}
