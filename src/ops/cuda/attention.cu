/* Host side of paged attention on the device: plans work items (query-row
 * tiles x head chunks x KV splits) for ts_attn and ts_attn_shared, stages
 * them to the device, launches attn_kernel (attn_kernel.cuh) for the
 * head_dim class, and combines split partials by log-sum-exp. */
#include <limits.h>
#include <stdlib.h>

#include "ops/cuda/attn_kernel.cuh"

/* Merges S partial states per (list position, head) into the outputs. One
 * warp per (position, head). */
__global__ void attn_combine_kernel(ts_attn_args a, int S) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (size_t)a.n_list * a.n_heads) return;
    size_t i = w / a.n_heads, h = w % a.n_heads;
    size_t plane = (size_t)a.n_list * a.n_heads;
    float m = -INFINITY;
    for (int s = 0; s < S; s++) m = fmaxf(m, a.p_lse[s * plane + w]);
    size_t row = (size_t)a.rows[i];
    float *o = a.out + (row * a.n_heads + h) * a.head_dim;
    if (m == -INFINITY) {
        for (int c = lane; c < a.head_dim; c += 32) o[c] = 0.0f;
        if (lane == 0 && a.lse) a.lse[row * a.n_heads + h] = -INFINITY;
        return;
    }
    float den = 0.0f;
    for (int s = 0; s < S; s++) {
        float l = a.p_lse[s * plane + w];
        den += l == -INFINITY ? 0.0f : expf(l - m);
    }
    float inv = 1.0f / den;
    for (int c = lane; c < a.head_dim; c += 32) {
        float acc = 0.0f;
        for (int s = 0; s < S; s++) {
            float l = a.p_lse[s * plane + w];
            if (l != -INFINITY) acc += expf(l - m) * a.p_out[(s * plane + w) * a.head_dim + c];
        }
        o[c] = acc * inv;
    }
    if (lane == 0 && a.lse) a.lse[row * a.n_heads + h] = m + logf(den);
}

/* The head_dim classes: chunk T and registers R per class. */
#define ATT_CLASSES(X) X(64, 64, 4) X(128, 32, 8) X(256, 16, 16) X(512, 16, 32)

bool ts_cuda_attn_init(ts_cuda *c) {
    int k = 0;
    int smem;
#define SMEM(E, T, R)                                                                      \
    TS_CU(c, cudaFuncSetAttribute(attn_kernel<T, R, E>,                                    \
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, smem))
#define X(HD, T, R)                                                                        \
    smem = (int)(ts_attn_smem_floats(HD, T) * sizeof(float));                              \
    if (!SMEM(float, T, R) || !SMEM(__half, T, R) || !SMEM(__nv_bfloat16, T, R)) return false; \
    if (!TS_CU(c, cudaOccupancyMaxActiveBlocksPerMultiprocessor(                           \
                      &c->att_bps[k], attn_kernel<T, R, float>, ATT_THREADS,               \
                      ts_attn_smem_floats(HD, T) * sizeof(float))))                        \
        return false;                                                                      \
    if (c->att_bps[k] < 1) c->att_bps[k] = 1;                                              \
    k++;
    ATT_CLASSES(X)
#undef X
#undef SMEM
    return true;
}

/* A planned call: items then the row list, staged in one copy. */
typedef struct plan {
    ts_attn_item *items;
    int n_items, cap_items;
    int32_t *rows; /* host row list (flat attention only) */
    int n_list;
} plan;

static bool plan_push(plan *p, ts_attn_item it) {
    if (p->n_items == p->cap_items) {
        int cap = p->cap_items ? 2 * p->cap_items : 256;
        ts_attn_item *n = (ts_attn_item *)realloc(p->items, (size_t)cap * sizeof *n);
        if (!n) return false;
        p->items = n;
        p->cap_items = cap;
    }
    p->items[p->n_items++] = it;
    return true;
}

/* Adds the items of rows [r0, r0 + n) (list positions) over slots [lo, hi),
 * row k seeing slots <= diag + k, split S ways. */
static bool plan_rows(plan *p, const int32_t *blocks, int r0, int n, int group, int lo,
                      int hi, int diag, bool causal, int S) {
    int nh = group < ATT_M ? group : ATT_M;
    int qt = ATT_M / nh;
    for (int i0 = 0; i0 < n; i0 += qt) {
        int nr = n - i0 < qt ? n - i0 : qt;
        int d = causal ? diag + i0 : ATT_NOCAUSAL;
        int top = hi;
        if (causal && (long)d + nr < top) top = d + nr;
        int len = top > lo ? (top - lo + S - 1) / S : 0;
        for (int h0 = 0; h0 < group; h0 += nh) {
            for (int s = 0; s < S; s++) {
                ts_attn_item it;
                it.blocks = blocks;
                it.r0 = r0 + i0;
                it.nr = nr;
                it.h0 = h0;
                it.nh = group - h0 < nh ? group - h0 : nh;
                it.lo = lo + s * len;
                it.hi = lo + (s + 1) * len < top ? lo + (s + 1) * len : top;
                if (it.hi < it.lo) it.hi = it.lo;
                it.diag = d;
                it.split = s;
                if (!plan_push(p, it)) return false;
            }
        }
    }
    return true;
}

/* Splits of the KV range so that the grid fills whole waves of resident
 * blocks: none when the items already fill a wave or the range is short.
 * Pieces of 256 slots at least, or 64 when the items fill under an eighth
 * of a wave (decode of a few sequences: batch-1 Qwen3-0.6B has 8 items, and
 * its unsplit 129-slot attention took 32 us under ncu on an H100 against
 * 21 us + 8 us combine split; prefills keep 256, where shorter pieces cost
 * more than they gain). */
static int pick_splits(const ts_cuda *c, int hd, long blocks, long max_len) {
    int cls = hd <= 64 ? 0 : hd <= 128 ? 1 : hd <= 256 ? 2 : 3;
    long wave = (long)c->n_sm * c->att_bps[cls];
    if (blocks <= 0 || blocks * 2 > wave) return 1;
    /* batch-1 decode of short contexts: pieces of one 32-slot chunk */
    long piece = blocks * 16 <= wave && max_len <= 256 ? 32 : blocks * 8 <= wave ? 64 : 256;
    if (max_len <= 2 * piece) return 1;
    long s = wave / blocks;
    long by_len = max_len / piece;
    if (s > by_len) s = by_len;
    if (s > 64) s = 64;
    return s < 1 ? 1 : (int)s;
}

static bool check_shape(ts_cuda *c, int n_heads, int n_kv_heads, int hd, int bs, ts_dtype dt) {
    if (!ts_kv_dtype_ok(dt) || (dt != TS_DT_F32 && hd % 8)) {
        TS_BAD(c, "attention: KV dtype f32, f16 or bf16 (head_dim a multiple of 8 for 16-bit KV)");
        return false;
    }
    if (n_kv_heads <= 0 || n_heads <= 0 || n_heads % n_kv_heads || hd <= 0 || hd > 512 ||
        hd % 4 || bs <= 0) {
        TS_BAD(c, "attention: heads, head_dim (multiple of 4, <= 512) or block_size");
        return false;
    }
    return true;
}

/* Stages items (+ host rows when given), launches, combines. */
static void launch(ts_cuda *c, plan *p, ts_attn_args a, ts_dtype kv_dtype, int S,
                   const int32_t *dev_rows) {
    size_t ib = (size_t)p->n_items * sizeof(ts_attn_item);
    size_t rb = p->rows ? (size_t)p->n_list * sizeof(int32_t) : 0;
    char *host = (char *)malloc(ib + rb);
    if (!host) {
        TS_BAD(c, "attention: out of host memory");
        return;
    }
    memcpy(host, p->items, ib);
    if (rb) memcpy(host + ib, p->rows, rb);
    char *dev = (char *)ts_cuda_stage(c, &c->meta, host, ib + rb);
    free(host);
    if (!dev) return;
    a.items = (const ts_attn_item *)dev;
    a.rows = rb ? (const int32_t *)(dev + ib) : dev_rows;
    a.n_list = p->n_list;
    a.p_out = a.p_lse = NULL;
    if (S > 1) {
        size_t plane = (size_t)S * p->n_list * a.n_heads;
        float *part = (float *)ts_cuda_scratch_get(c, &c->part,
                                                   plane * (a.head_dim + 1) * sizeof(float));
        if (!part) return;
        a.p_out = part;
        a.p_lse = part + plane * a.head_dim;
    }
    dim3 grid((unsigned)p->n_items, (unsigned)a.n_kv_heads);
    int hd = a.head_dim;
#define X(HD, T, R)                                                                       \
    if (hd <= HD) {                                                                       \
        TS_KV_SWITCH(kv_dtype, E,                                                         \
                     attn_kernel<T, R, E><<<grid, ATT_THREADS,                            \
                                            ts_attn_smem_floats(hd, T) * sizeof(float),   \
                                            c->stream>>>(a));                             \
        if (!TS_LAUNCHED(c, "attn_kernel")) return;                                       \
    } else
    ATT_CLASSES(X) { TS_BAD(c, "attention: head_dim"); return; }
#undef X
    if (S > 1) {
        size_t warps = (size_t)p->n_list * a.n_heads;
        attn_combine_kernel<<<ts_cdiv(warps, 8), 256, 0, c->stream>>>(a, S);
        TS_LAUNCHED(c, "attn_combine_kernel");
    }
}

void ts_cuda_attention(void *ctx, const ts_attn *at) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || at->n_seq <= 0) return;
    if (!check_shape(c, at->n_heads, at->n_kv_heads, at->head_dim, at->block_size, at->kv_dtype)) return;
    int group = at->n_heads / at->n_kv_heads;
    plan p = {};
    long max_len = 0, base_items = 0;
    for (int s = 0; s < at->n_seq; s++) {
        const ts_attn_seq *sq = &at->seqs[s];
        if (sq->n_q <= 0) continue;
        p.n_list += sq->n_q;
        int lo = sq->kv_start > 0 ? sq->kv_start : 0;
        if (sq->n_kv - lo > max_len) max_len = sq->n_kv - lo;
        int nh = group < ATT_M ? group : ATT_M;
        base_items += (long)((sq->n_q + ATT_M / nh - 1) / (ATT_M / nh)) * ((group + nh - 1) / nh);
    }
    if (p.n_list == 0) return;
    int S = pick_splits(c, at->head_dim, base_items * at->n_kv_heads, max_len);
    p.rows = (int32_t *)malloc((size_t)p.n_list * sizeof(int32_t));
    bool ok = p.rows != NULL;
    int pos = 0;
    for (int s = 0; ok && s < at->n_seq; s++) {
        const ts_attn_seq *sq = &at->seqs[s];
        if (sq->n_q <= 0) continue;
        for (int i = 0; i < sq->n_q; i++) p.rows[pos + i] = sq->q_start + i;
        int lo = sq->kv_start > 0 ? sq->kv_start : 0;
        ok = plan_rows(&p, sq->blocks, pos, sq->n_q, group, lo, sq->n_kv,
                       sq->n_kv - sq->n_q, at->causal, S);
        pos += sq->n_q;
    }
    if (!ok) {
        TS_BAD(c, "attention: out of host memory");
    } else {
        ts_attn_args a = {};
        a.q = at->q, a.k = at->k, a.v = at->v, a.out = at->out;
        a.lse = at->lse;
        a.n_heads = at->n_heads, a.n_kv_heads = at->n_kv_heads, a.head_dim = at->head_dim;
        a.block_size = at->block_size, a.group = group, a.scale = at->scale;
        launch(c, &p, a, at->kv_dtype, S, NULL);
    }
    free(p.rows);
    free(p.items);
}

void ts_cuda_attention_shared(void *ctx, const ts_attn_shared *at) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || at->n_rows <= 0) return;
    if (!check_shape(c, at->n_heads, at->n_kv_heads, at->head_dim, at->block_size, at->kv_dtype)) return;
    if (ts_cuda_attn_shared_mma(c, at)) return; /* the tensor cores took it */
    int group = at->n_heads / at->n_kv_heads;
    int nh = group < ATT_M ? group : ATT_M;
    long base_items = (long)((at->n_rows + ATT_M / nh - 1) / (ATT_M / nh)) * ((group + nh - 1) / nh);
    int n_kv = at->n_kv > 0 ? at->n_kv : 0;
    int S = pick_splits(c, at->head_dim, base_items * at->n_kv_heads, n_kv);
    plan p = {};
    p.n_list = at->n_rows;
    if (!plan_rows(&p, at->blocks, 0, at->n_rows, group, 0, n_kv, 0, false, S)) {
        TS_BAD(c, "attention_shared: out of host memory");
    } else {
        ts_attn_args a = {};
        a.q = at->q, a.k = at->k, a.v = at->v, a.out = at->out;
        a.lse = at->lse;
        a.n_heads = at->n_heads, a.n_kv_heads = at->n_kv_heads, a.head_dim = at->head_dim;
        a.block_size = at->block_size, a.group = group, a.scale = at->scale;
        launch(c, &p, a, at->kv_dtype, S, at->rows);
    }
    free(p.items);
}
