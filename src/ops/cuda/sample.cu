/* Token sampling on the device, one block per row of logits, reproducing
 * the host sampler (src/engine/sampler.c) without its repetition penalty:
 * - temp == 0: argmax, NaN never chosen, the lowest id among equal maxima,
 *   0 when every logit is NaN (top-k, top-p and min-p do not apply);
 * - temp > 0: v = logit * (1 / temp) (or logit / temp where 1 / temp
 *   overflows); drawable = not NaN and not -inf; nothing drawable gives 0.
 *   top-k keeps v >= the k-th largest drawable v (ties with it stay);
 *   weight w = expf(v - max) (or v == +inf ? 1 : 0 when max is +inf);
 *   top-p keeps the tokens, ranked by (w descending, id ascending), whose
 *   preceding mass is below top_p * (sum of w); min-p keeps w >= min_p;
 *   r = u * (sum of kept w, in double), and the token is the first kept
 *   one in id order whose running sum exceeds r (the last kept token of
 *   positive weight if rounding leaves r at the top).
 * The selections run as radix descents over the float bits of v (top-k:
 * counts) and of w (top-p: masses in double). Sums are formed in another
 * order than the host's sequential ones, so they can differ by double
 * rounding: a draw or a top-p cut within ~1e-16 (relative) of a boundary
 * may differ from the host's. */
#include <math.h>

#include "ops/cuda/cuda_internal.cuh"

#define SMP_THREADS 1024
#define SMP_WARPS (SMP_THREADS / 32)
#define SMP_BINS 2048

/* What a row keeps, uniform over the block once the selections are done. */
typedef struct smp_cut {
    float temp, inv_t;
    bool use_div;
    float mx;           /* largest drawable v */
    float floor_v;      /* top-k: keep v >= floor_v (-inf: no cut) */
    bool cut_p;         /* top-p cuts: keep w > wb, and the first ties_kept
                           tokens (in id order) of w == wb */
    float wb;
    int ties_kept;
    float min_p;
} smp_cut;

typedef struct smp_shared {
    float f[SMP_WARPS];
    int i[SMP_WARPS];
    double d[SMP_WARPS];
    double mass[SMP_BINS];
    int count[SMP_BINS];
    int bin, above, pick;
    double before;
} smp_shared;

__device__ __forceinline__ float smp_v(const smp_cut &c, float x) {
    return c.use_div ? x / c.temp : x * c.inv_t;
}

/* The weight of logit x after top-k (a negative number: not kept). */
__device__ __forceinline__ float smp_w_k(const smp_cut &c, float x) {
    float v = smp_v(c, x);
    if (!(v > -INFINITY) || !(v >= c.floor_v)) return -1.0f;
    return c.mx == INFINITY ? (v == INFINITY ? 1.0f : 0.0f) : expf(v - c.mx);
}

/* Order-preserving key of a float (larger value, larger key). */
__device__ __forceinline__ unsigned smp_key(float v) {
    unsigned u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

__device__ __forceinline__ float smp_unkey(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? k & 0x7fffffffu : ~k);
}

/* Sum over the block (every thread gets it). */
__device__ double smp_sum(smp_shared *s, double x) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    __syncthreads();
    if (lane == 0) s->d[warp] = x;
    __syncthreads();
    double t = 0.0;
    for (int w = 0; w < SMP_WARPS; w++) t += s->d[w];
    return t;
}

/* Exclusive prefix over thread order of x, and the total in *total. */
__device__ int smp_scan(smp_shared *s, int x, int *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int incl = x;
    for (int o = 1; o < 32; o <<= 1) {
        int t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    __syncthreads();
    if (lane == 31) s->i[warp] = incl;
    __syncthreads();
    int before = 0, all = 0;
    for (int w = 0; w < SMP_WARPS; w++) {
        if (w < warp) before += s->i[w];
        all += s->i[w];
    }
    *total = all;
    return before + incl - x;
}

/* Argmax row (temp == 0). */
__device__ void smp_argmax(smp_shared *s, int32_t *id, const float *x, int vocab) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float bv = -INFINITY;
    int bi = -1;
    for (int i = tid; i < vocab; i += SMP_THREADS) {
        float v = x[i];
        if (isnan(v)) continue;
        if (bi < 0 || v > bv) bv = v, bi = i;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
    }
    if (lane == 0) s->f[warp] = bv, s->i[warp] = bi;
    __syncthreads();
    if (tid == 0) {
        float v = -INFINITY;
        int b = -1;
        for (int w = 0; w < SMP_WARPS; w++)
            if (s->i[w] >= 0 && (b < 0 || s->f[w] > v || (s->f[w] == v && s->i[w] < b)))
                v = s->f[w], b = s->i[w];
        *id = b < 0 ? 0 : b;
    }
}

/* The radix levels over 32-bit keys: 11, 11 and 10 bits. Wide first
 * levels spread a row's values over many bins, so few lanes of a warp
 * collide on one bin's atomics. */
__constant__ int smp_shift[3] = {21, 10, 0};
__constant__ unsigned smp_width[3] = {0x7ffu, 0x7ffu, 0x3ffu};

/* Warp 0 walks the bins [0, nb) from the top down, adding val[b] to
 * *before while before + val[b] < need; sets s->bin to the bin where it
 * reaches need (-1: never) and *before to the sum of the bins above it.
 * Each lane sums a run of bins, a scan over the lanes finds the run where
 * need is reached, and that lane walks it. nb: a multiple of 32. */
template <typename T>
__device__ void smp_walk(smp_shared *s, const T *val, int nb, T need, T *before) {
    const int lane = threadIdx.x & 31, run = nb / 32;
    const int top = nb - 1 - lane * run; /* this lane's bins: top down to top - run + 1 */
    T sum = 0;
    for (int b = top; b > top - run; b--) sum += val[b];
    T incl = sum;
    for (int o = 1; o < 32; o <<= 1) {
        T t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    T base = *before;
    unsigned hit = __ballot_sync(0xffffffffu, base + incl >= need);
    if (!hit) {
        if (lane == 0) s->bin = -1;
        return;
    }
    if (lane == __ffs(hit) - 1) {
        T acc = base + incl - sum;
        int b = top;
        while (b > top - run + 1 && !(acc + val[b] >= need)) acc += val[b--];
        s->bin = b;
        *before = acc;
    }
}

/* The k-th largest drawable v (k >= 1), or -inf if fewer are drawable: a
 * radix descent over the keys, counting from the top. */
__device__ float smp_kth(smp_shared *s, const smp_cut &c, const float *x, int vocab, int k) {
    const int tid = threadIdx.x, lane = tid & 31;
    unsigned prefix = 0, mask = 0;
    if (tid == 0) s->above = 0;
    for (int l = 0; l < 3; l++) {
        const int shift = smp_shift[l];
        const unsigned width = smp_width[l];
        for (int b = tid; b < SMP_BINS; b += SMP_THREADS) s->count[b] = 0;
        __syncthreads();
        for (int i = tid; i < vocab; i += SMP_THREADS) {
            float v = smp_v(c, x[i]);
            unsigned key = smp_key(v);
            bool in = v > -INFINITY && (key & mask) == prefix;
            unsigned b = in ? (key >> shift) & width : 0xffffffffu;
            /* one atomic per distinct bin of the warp */
            unsigned peers = __match_any_sync(__activemask(), b);
            if (in && lane == __ffs(peers) - 1) atomicAdd(&s->count[b], __popc(peers));
        }
        __syncthreads();
        if (tid < 32) smp_walk<int>(s, s->count, (int)width + 1, k, &s->above);
        __syncthreads();
        if (s->bin < 0) return -INFINITY; /* fewer than k drawable */
        prefix |= (unsigned)s->bin << shift;
        mask |= width << shift;
    }
    return smp_unkey(prefix);
}

/* Top-p over the weights after top-k (z = their sum): sets c->cut_p, wb
 * and ties_kept. The descent walks the weights from the largest, adding
 * whole bins while the mass stays below the target; the bin where it
 * reaches the target holds the last kept token. */
__device__ void smp_top_p(smp_shared *s, smp_cut *c, const float *x, int vocab, double target) {
    const int tid = threadIdx.x;
    unsigned prefix = 0, mask = 0;
    if (tid == 0) s->before = 0.0;
    int ties = 0;
    for (int l = 0; l < 3; l++) {
        const int shift = smp_shift[l];
        const unsigned width = smp_width[l];
        for (int b = tid; b < SMP_BINS; b += SMP_THREADS) s->mass[b] = 0.0, s->count[b] = 0;
        __syncthreads();
        for (int i = tid; i < vocab; i += SMP_THREADS) {
            float w = smp_w_k(*c, x[i]);
            if (w < 0.0f) continue;
            unsigned key = __float_as_uint(w); /* w >= 0: the bits are ordered */
            if ((key & mask) != prefix) continue;
            unsigned b = (key >> shift) & width;
            atomicAdd(&s->mass[b], (double)w);
            atomicAdd(&s->count[b], 1);
        }
        __syncthreads();
        if (tid < 32) smp_walk<double>(s, s->mass, (int)width + 1, target, &s->before);
        __syncthreads();
        if (s->bin < 0) { /* rounding: the target is never reached */
            c->cut_p = false;
            return;
        }
        prefix |= (unsigned)s->bin << shift;
        mask |= width << shift;
        ties = s->count[s->bin];
        __syncthreads(); /* read before the next level clears the bins */
    }
    /* ties of wb in id order: the r-th (from 0) is kept while
     * before + r * wb < target; the first always is */
    float wb = __uint_as_float(prefix);
    double m = s->before;
    double q = ceil((target - m) / (double)wb);
    int r = q < 1.0 ? 1 : q > (double)ties ? ties : (int)q;
    while (r > 1 && !(m + (double)(r - 1) * wb < target)) r--;
    while (r < ties && m + (double)r * wb < target) r++;
    c->cut_p = true;
    c->wb = wb;
    c->ties_kept = r;
}

__global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(int32_t *ids, const float *logits, int vocab, const ts_sample_row *rows) {
    __shared__ smp_shared s;
    ts_pdl_wait();
    ts_pdl_trigger();
    const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *x = logits + (size_t)row * vocab;
    const ts_sample_row p = rows[row];
    if (p.temp == 0.0f) {
        smp_argmax(&s, ids + row, x, vocab);
        return;
    }
    smp_cut c;
    c.temp = p.temp;
    c.inv_t = 1.0f / p.temp;
    c.use_div = !isfinite(c.inv_t);
    c.floor_v = -INFINITY;
    c.cut_p = false;
    c.min_p = p.min_p;
    /* the largest drawable v */
    float mx = -INFINITY;
    for (int i = tid; i < vocab; i += SMP_THREADS) {
        float v = smp_v(c, x[i]);
        if (v > -INFINITY && v > mx) mx = v; /* false for NaN */
    }
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) s.f[warp] = mx;
    __syncthreads();
    mx = s.f[0];
    for (int w = 1; w < SMP_WARPS; w++) mx = fmaxf(mx, s.f[w]);
    if (mx == -INFINITY) { /* nothing drawable */
        if (tid == 0) ids[row] = 0;
        return;
    }
    c.mx = mx;
    if (p.top_k > 0 && p.top_k < vocab) c.floor_v = smp_kth(&s, c, x, vocab, p.top_k);
    if (p.top_p < 1.0f) {
        double z = 0.0;
        for (int i = tid; i < vocab; i += SMP_THREADS) {
            float w = smp_w_k(c, x[i]);
            if (w >= 0.0f) z += (double)w;
        }
        z = smp_sum(&s, z);
        smp_top_p(&s, &c, x, vocab, (double)p.top_p * z);
    }
    /* this thread's segment of ids, in order */
    const int seg = (vocab + SMP_THREADS - 1) / SMP_THREADS;
    const int lo = min(vocab, tid * seg), hi = min(vocab, lo + seg);
    int tie0 = 0;
    if (c.cut_p) { /* rank of this segment's first tie among all ties */
        int n_tie = 0, total;
        for (int i = lo; i < hi; i++) n_tie += smp_w_k(c, x[i]) == c.wb;
        tie0 = smp_scan(&s, n_tie, &total);
    }
    /* kept weight of id i (0 when not kept), walking the segment in order */
#define SMP_KEPT(i, w, tie)                                                 \
    float w = smp_w_k(c, x[i]);                                             \
    if (c.cut_p && w == c.wb && tie++ >= c.ties_kept) w = -1.0f;            \
    if (c.cut_p && w < c.wb) w = -1.0f;                                     \
    if (c.min_p > 0.0f && w < c.min_p) w = -1.0f;
    double sum = 0.0;
    int last = -1;
    for (int i = lo, tie = tie0; i < hi; i++) {
        SMP_KEPT(i, w, tie)
        if (w < 0.0f) continue;
        if (w > 0.0f) last = i;
        sum += (double)w;
    }
    /* inclusive scan of the segment sums: warps, then across warps */
    double incl = sum;
    for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    __syncthreads();
    if (lane == 31) s.d[warp] = incl;
    if (tid == 0) s.pick = -1;
    __syncthreads();
    double before = 0.0, total = 0.0;
    for (int w = 0; w < SMP_WARPS; w++) {
        if (w < warp) before += s.d[w];
        total += s.d[w];
    }
    incl += before;
    double excl = incl - sum;
    double r = p.u * total;
    /* the segment where the running sum first exceeds r walks itself */
    if (sum > 0.0 && r < incl && r >= excl) {
        double cum = excl;
        int found = last;
        for (int i = lo, tie = tie0; i < hi; i++) {
            SMP_KEPT(i, w, tie)
            if (w <= 0.0f) continue;
            cum += (double)w;
            if (r < cum) {
                found = i;
                break;
            }
        }
        s.pick = found; /* one thread: the intervals [excl, incl) do not overlap */
    }
#undef SMP_KEPT
    /* rounding left r at the top: the last kept token of positive weight */
    __syncthreads();
    if (s.pick < 0) {
        int l = last;
        for (int o = 16; o > 0; o >>= 1) l = max(l, __shfl_xor_sync(0xffffffffu, l, o));
        __syncthreads();
        if (lane == 0) s.i[warp] = l;
        __syncthreads();
        if (tid == 0) {
            int b = -1;
            for (int w = 0; w < SMP_WARPS; w++) b = max(b, s.i[w]);
            ids[row] = b < 0 ? 0 : b;
        }
        return;
    }
    if (tid == 0) ids[row] = s.pick;
}

void ts_cuda_sample(void *ctx, int32_t *ids, const float *logits, int n, int vocab,
                    const ts_sample_row *rows) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (vocab <= 0) {
        TS_BAD(c, "sample: vocabulary size");
        return;
    }
    ts_cuda_launch(c, "sample_kernel", sample_kernel, dim3((unsigned)n), dim3(SMP_THREADS), 0,
                   ids, logits, vocab, rows);
}
