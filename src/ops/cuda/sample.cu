/* Token sampling on the device, one block per row of logits, reproducing
 * the host sampler (src/engine/sampler.c) without its repetition penalty:
 * - temp == 0: argmax, NaN never chosen, the lowest id among equal maxima,
 *   0 when every logit is NaN (top-k, top-p and min-p do not apply);
 * - temp > 0: v = logit * (1 / temp) (or logit / temp where 1 / temp
 *   overflows); drawable = not NaN and not -inf; nothing drawable gives 0.
 *   top-k keeps v >= the k-th largest drawable v (ties with it stay);
 *   weight w = exp(v - max) in double, rounded to float (or v == +inf ? 1 : 0
 *   when max is +inf): CUDA's expf is off by up to 2 ulp where glibc's is
 *   correctly rounded, enough to move a token across min_p or a draw's
 *   boundary; rounded from double, both sides agree;
 *   top-p keeps the tokens, ranked by (w descending, id ascending), whose
 *   preceding mass is below top_p * (sum of w); min-p keeps w >= min_p;
 *   r = u * (sum of kept w, in double), and the token is the first kept
 *   one in id order whose running sum exceeds r (the last kept token of
 *   positive weight if rounding leaves r at the top).
 *
 * Layout: warp w owns ids [w * chunk, (w + 1) * chunk), its lanes reading
 * 32 consecutive ids at a time, 8 loads in flight; passes that need id
 * order (the draw, the top-p tie cut) walk one warp's chunk in that order.
 * The cuts are radix descents (11, 11, 10 bits) over the float bits of v
 * (top-k: counts) and of w (top-p: masses in double); once the first
 * level has found the bin that holds the cut, its few tokens are gathered
 * into shared memory and the rest of the descent reads only them. When
 * top-k leaves few tokens (<= SMP_SMALL) and they fit there, the row ends
 * in shared memory: sorted by id, top-p by each token's preceding mass,
 * and the draw made by one thread exactly as the host makes it.
 *
 * Sums are formed in another order than the host's sequential ones, so
 * they can differ by double rounding: a draw or a top-p cut within ~1e-16
 * (relative) of a boundary may differ from the host's. */
#include <math.h>

#include "ops/cuda/cuda_internal.cuh"

#define SMP_THREADS 1024
#define SMP_WARPS (SMP_THREADS / 32)
#define SMP_UNROLL 8
#define SMP_BINS 2048
#define SMP_CAP 8192 /* tokens of one bin gathered into shared memory */
#define SMP_SMALL 2048 /* top-k sets up to this size finish in shared memory */

/* What a row keeps, uniform over the block once the cuts are found. */
typedef struct smp_cut {
    float temp, inv_t;
    bool use_div;
    float mx;      /* largest drawable v */
    float floor_v; /* top-k: keep v >= floor_v (-inf: no cut) */
    bool cut_p;    /* top-p: keep w > wb, and w == wb up to id idb */
    float wb;
    int idb;
    float min_p;
} smp_cut;

typedef struct smp_shared {
    float f[SMP_WARPS];
    int i[SMP_WARPS];
    double d[SMP_WARPS];
    double mass[SMP_BINS];
    int count[SMP_BINS];
    int n_list, bin, above, pick, idb;
    double before;
    unsigned key[SMP_CAP]; /* gathered tokens: key bits and ids */
    int id[SMP_CAP];
} smp_shared; /* dynamic shared memory: it exceeds the static 48 KB */

__device__ __forceinline__ float smp_v(const smp_cut &c, float x) {
    return c.use_div ? x / c.temp : x * c.inv_t;
}

/* The weight of logit x after top-k (a negative number: not kept). */
__device__ __forceinline__ float smp_w_k(const smp_cut &c, float x) {
    float v = smp_v(c, x);
    if (!(v > -INFINITY) || !(v >= c.floor_v)) return -1.0f;
    return c.mx == INFINITY ? (v == INFINITY ? 1.0f : 0.0f) : (float)exp((double)(v - c.mx));
}

/* The weight of token i (logit x) if it survives every cut, else < 0. */
__device__ __forceinline__ float smp_kept(const smp_cut &c, int i, float x) {
    float w = smp_w_k(c, x);
    if (c.cut_p && (w < c.wb || (w == c.wb && i > c.idb))) return -1.0f;
    if (c.min_p > 0.0f && w < c.min_p) return -1.0f;
    return w;
}

/* Order-preserving key of a float (larger value, larger key). */
__device__ __forceinline__ unsigned smp_key(float v) {
    unsigned u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

__device__ __forceinline__ float smp_unkey(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? k & 0x7fffffffu : ~k);
}

/* The radix levels over 32-bit keys: wide first levels spread a row over
 * many bins, so few lanes of a warp collide on one bin's atomics. */
__constant__ int smp_shift[3] = {21, 10, 0};
__constant__ unsigned smp_width[3] = {0x7ffu, 0x7ffu, 0x3ffu};

__device__ __forceinline__ int smp_chunk(int vocab) {
    return ((vocab + SMP_WARPS - 1) / SMP_WARPS + 31) & ~31;
}

/* f(i, x[i]) for every id, each warp over its chunk; order-free. */
template <typename F>
__device__ __forceinline__ void smp_pass(const float *x, int vocab, F f) {
    const int lane = threadIdx.x & 31, chunk = smp_chunk(vocab);
    const int lo = (threadIdx.x >> 5) * chunk, hi = min(vocab, lo + chunk);
    for (int base = lo; base < hi; base += 32 * SMP_UNROLL) {
        float v[SMP_UNROLL];
#pragma unroll
        for (int j = 0; j < SMP_UNROLL; j++) {
            int i = base + j * 32 + lane;
            v[j] = i < hi ? __ldg(x + i) : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < SMP_UNROLL; j++) {
            int i = base + j * 32 + lane;
            if (i < hi) f(i, v[j]);
        }
    }
}

template <typename T>
__device__ __forceinline__ T smp_warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

template <typename T>
__device__ __forceinline__ T smp_warp_incl(T x) {
    const int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        T t = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += t;
    }
    return x;
}

/* Sum over the block (every thread gets it). */
__device__ double smp_sum(smp_shared *s, double x) {
    x = smp_warp_sum(x);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) s->d[threadIdx.x >> 5] = x;
    __syncthreads();
    double t = 0.0;
    for (int w = 0; w < SMP_WARPS; w++) t += s->d[w];
    return t;
}

/* Exclusive prefix of x over thread order; *total: the block's sum. */
__device__ double smp_scan(smp_shared *s, double x, double *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double incl = smp_warp_incl(x);
    __syncthreads();
    if (lane == 31) s->d[warp] = incl;
    __syncthreads();
    double before = 0.0, all = 0.0;
    for (int w = 0; w < SMP_WARPS; w++) {
        if (w < warp) before += s->d[w];
        all += s->d[w];
    }
    *total = all;
    return before + incl - x;
}

/* Warp 0 walks the bins [0, nb) from the top down, adding val[b] to
 * *before while before + val[b] < need; sets s->bin to the bin where it
 * reaches need (-1: never) and leaves in *before the sum of the bins above
 * it. Each lane sums a run of bins, a scan over the lanes finds the run
 * where need is reached, and that lane walks it. nb: a multiple of 32. */
template <typename T>
__device__ void smp_walk(smp_shared *s, const T *val, int nb, T need, T *before) {
    const int lane = threadIdx.x & 31, run = nb / 32;
    const int top = nb - 1 - lane * run; /* this lane's bins: top down to top - run + 1 */
    T sum = 0;
    for (int b = top; b > top - run; b--) sum += val[b];
    T incl = smp_warp_incl(sum);
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

__device__ void smp_clear(smp_shared *s, bool mass) {
    for (int b = threadIdx.x; b < SMP_BINS; b += SMP_THREADS) {
        s->count[b] = 0;
        if (mass) s->mass[b] = 0.0;
    }
}

/* Adds one token to bin b's count (and mass). b = ~0u: nothing. (Plain
 * shared atomics: grouping a warp's equal bins with __match_any_sync first
 * measured twice as slow.) */
__device__ __forceinline__ void smp_bin(smp_shared *s, unsigned b, bool mass, float w) {
    if (b == ~0u) return;
    atomicAdd(&s->count[b], 1);
    if (mass) atomicAdd(&s->mass[b], (double)w);
}

/* Levels 1 and 2 of a descent (level 0 is binned by the caller's pass):
 * key(i, x) gives token i's key or ~0u (not a candidate); w(key) its mass
 * when mass is set. After level 0 found s->bin with n tokens, they are
 * gathered into s->key / s->id when they fit, and the later levels read
 * them there. need: the count (top-k, as int in *above) or mass (top-p,
 * in *before) to reach. Returns the key of the cut, or ~0u if a walk
 * never reached need; *ties: the tokens with exactly that key. */
/* Gathers into s->key / s->id (s->n_list of them, in no order) the tokens
 * whose key(i, x) (~0u: none) satisfies take(key); the caller knows that
 * at most SMP_CAP do. One atomic per warp and step. */
template <typename K, typename P>
__device__ void smp_gather(smp_shared *s, const float *x, int vocab, K key, P take) {
    const int lane = threadIdx.x & 31;
    __syncthreads();
    if (threadIdx.x == 0) s->n_list = 0;
    __syncthreads();
    smp_pass(x, vocab, [&](int i, float xv) {
        unsigned k = key(i, xv);
        bool in = k != ~0u && take(k);
        unsigned act = __activemask(), hit = __ballot_sync(act, in);
        int at = 0;
        if (hit && lane == __ffs(hit) - 1) at = atomicAdd(&s->n_list, __popc(hit));
        at = __shfl_sync(act, at, __ffs(hit ? hit : 1u) - 1) + __popc(hit & ((1u << lane) - 1u));
        if (in) s->key[at] = k, s->id[at] = i;
    });
    __syncthreads();
}

/* pre: the caller has gathered the bin's tokens (among others) already. */
template <bool MASS, typename K>
__device__ unsigned smp_descend(smp_shared *s, const float *x, int vocab, K key, int need_k,
                                double need_p, int *ties, bool pre) {
    const int tid = threadIdx.x;
    if (s->bin < 0) return ~0u;
    unsigned prefix = (unsigned)s->bin << smp_shift[0], mask = smp_width[0] << smp_shift[0];
    const bool list = pre || s->count[s->bin] <= SMP_CAP;
    __syncthreads(); /* every thread has read bin and count */
    if (list && !pre) /* gather the bin's tokens */
        smp_gather(s, x, vocab, key, [&](unsigned k) { return (k & mask) == prefix; });
    if (!list && tid == 0) s->n_list = -1; /* not gathered */
    __syncthreads();
    for (int l = 1; l < 3; l++) {
        const int shift = smp_shift[l];
        const unsigned width = smp_width[l];
        smp_clear(s, MASS);
        __syncthreads();
        if (list) {
            for (int j = tid; j < s->n_list; j += SMP_THREADS) {
                unsigned k = s->key[j];
                bool in = (k & mask) == prefix;
                smp_bin(s, in ? (k >> shift) & width : ~0u, MASS, __uint_as_float(k));
            }
        } else {
            smp_pass(x, vocab, [&](int i, float xv) {
                unsigned k = key(i, xv);
                bool in = k != ~0u && (k & mask) == prefix;
                smp_bin(s, in ? (k >> shift) & width : ~0u, MASS, __uint_as_float(k));
            });
        }
        __syncthreads();
        if (tid < 32) {
            if (MASS) smp_walk<double>(s, s->mass, (int)width + 1, need_p, &s->before);
            else smp_walk<int>(s, s->count, (int)width + 1, need_k, &s->above);
        }
        __syncthreads();
        if (s->bin < 0) return ~0u;
        prefix |= (unsigned)s->bin << shift;
        mask |= width << shift;
        *ties = s->count[s->bin];
        __syncthreads(); /* read before the next level clears the bins */
    }
    return prefix;
}

/* Argmax row (temp == 0). */
__device__ void smp_argmax(smp_shared *s, int32_t *id, const float *x, int vocab) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float bv = -INFINITY;
    int bi = -1;
    smp_pass(x, vocab, [&](int i, float v) {
        if (isnan(v)) return;
        if (bi < 0 || v > bv || (v == bv && i < bi)) bv = v, bi = i;
    });
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

/* Top-p: finds wb and idb (c->cut_p stays false when rounding keeps all).
 * Level 0 of the descent comes from the caller's pass, which binned only
 * the weights >= lo. */
__device__ void smp_top_p(smp_shared *s, smp_cut *c, const float *x, int vocab, double target,
                          float lo) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int ties = 0;
    const smp_cut ck = *c;
    auto key = [&](int, float xv) {
        float w = smp_w_k(ck, xv);
        return w < 0.0f || w < lo ? ~0u : __float_as_uint(w); /* w >= 0: ordered bits */
    };
    unsigned kb = smp_descend<true>(s, x, vocab, key, 0, target, &ties, false);
    if (kb == ~0u) return; /* rounding: the target is never reached */
    /* the first r ties of wb in id order are kept: the r-th (from 0) while
     * before + r * wb < target; the first always is */
    float wb = __uint_as_float(kb);
    double m = s->before;
    double q = ceil((target - m) / (double)wb);
    int r = q < 1.0 ? 1 : q > (double)ties ? ties : (int)q;
    while (r > 1 && !(m + (double)(r - 1) * wb < target)) r--;
    while (r < ties && m + (double)r * wb < target) r++;
    /* idb: the id of the r-th tie */
    __syncthreads();
    if (tid == 0) s->idb = -1;
    __syncthreads();
    const int n_list = s->n_list;
    if (n_list >= 0) { /* the ties are among the gathered tokens */
        int best = -1;
        for (int j = tid; j < n_list; j += SMP_THREADS) {
            if (s->key[j] != kb) continue;
            int rank = 0; /* ties of lower id */
            if (r < ties)
                for (int q = 0; q < n_list; q++) rank += s->key[q] == kb && s->id[q] < s->id[j];
            if (r == ties || rank == r - 1) best = max(best, s->id[j]);
        }
        for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
        if (lane == 0 && best >= 0) atomicMax(&s->idb, best);
    } else if (r == ties) { /* all ties: the largest tie id */
        int mxid = -1;
        smp_pass(x, vocab, [&](int i, float xv) {
            if (key(i, xv) == kb) mxid = max(mxid, i);
        });
        for (int o = 16; o > 0; o >>= 1) mxid = max(mxid, __shfl_xor_sync(0xffffffffu, mxid, o));
        if (lane == 0) atomicMax(&s->idb, mxid);
    } else { /* r < ties: count ties per warp chunk, then the warp holding the r-th walks */
        int n = 0;
        smp_pass(x, vocab, [&](int i, float xv) { n += key(i, xv) == kb; });
        n = smp_warp_sum(n);
        if (lane == 0) s->i[warp] = n;
        __syncthreads();
        int before = 0;
        for (int w = 0; w < warp; w++) before += s->i[w];
        if (before < r && r <= before + n) { /* this warp: the (r - before)-th of its ties */
            const int chunk = smp_chunk(vocab), lo = warp * chunk, hi = min(vocab, lo + chunk);
            int need = r - before;
            for (int b = lo; b < hi; b += 32) {
                int i = b + lane;
                unsigned t = __ballot_sync(0xffffffffu, i < hi && key(i, x[i]) == kb);
                int p = __popc(t);
                if (need <= p) { /* the lane holding the need-th set bit */
                    bool mine = (t >> lane & 1u) && __popc(t & ((1u << lane) - 1u)) == need - 1;
                    if (mine) s->idb = i;
                    break;
                }
                need -= p;
            }
        }
    }
    __syncthreads();
    c->cut_p = true;
    c->wb = wb;
    c->idb = s->idb;
}

/* Sorts s->key / s->id [0, n) by id (bitonic, padded to a power of two
 * with id INT_MAX; n <= SMP_CAP). */
__device__ void smp_sort_ids(smp_shared *s, int n) {
    int m = 1;
    while (m < n) m <<= 1;
    for (int j = n + threadIdx.x; j < m; j += SMP_THREADS) s->id[j] = 0x7fffffff, s->key[j] = 0;
    __syncthreads();
    for (int size = 2; size <= m; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int t = threadIdx.x; t < m / 2; t += SMP_THREADS) {
                int a = 2 * t - (t & (stride - 1)), b = a + stride;
                bool up = (a & size) == 0;
                if ((s->id[a] > s->id[b]) == up) {
                    int ti = s->id[a];
                    unsigned tk = s->key[a];
                    s->id[a] = s->id[b], s->key[a] = s->key[b];
                    s->id[b] = ti, s->key[b] = tk;
                }
            }
            __syncthreads();
        }
}

/* The rest of a row once top-k has left n <= SMP_SMALL tokens, sorted by id
 * in s->id, s->key holding the bits of their weights: top-p by each token's
 * preceding mass (summed over the list), min-p, and the draw as the host
 * makes it (one thread, running sum in id order). Writes *out. */
__device__ void smp_small(smp_shared *s, int n, float top_p, float min_p, double u, int32_t *out) {
    const int tid = threadIdx.x;
    int *keep = s->count; /* n <= SMP_BINS flags */
    double z = 0.0;
    for (int j = tid; j < n; j += SMP_THREADS) z += (double)__uint_as_float(s->key[j]);
    z = smp_sum(s, z);
    const double target = (double)top_p * z;
    for (int j = tid; j < n; j += SMP_THREADS) {
        float w = __uint_as_float(s->key[j]);
        bool k = !(min_p > 0.0f && w < min_p);
        if (k && top_p < 1.0f) { /* the mass ranked above token j (w desc, id asc) */
            double above = 0.0;
            for (int q = 0; q < n; q++) {
                float wq = __uint_as_float(s->key[q]);
                if (wq > w || (wq == w && q < j)) above += (double)wq;
            }
            k = above < target;
        }
        keep[j] = k;
    }
    __syncthreads();
    if (tid != 0) return;
    double zk = 0.0;
    for (int j = 0; j < n; j++)
        if (keep[j]) zk += (double)__uint_as_float(s->key[j]);
    double r = u * zk, cum = 0.0;
    int last = -1;
    for (int j = 0; j < n; j++) {
        float w = __uint_as_float(s->key[j]);
        if (!keep[j] || w <= 0.0f) continue;
        cum += (double)w;
        last = s->id[j];
        if (r < cum) break;
    }
    *out = last < 0 ? 0 : last;
}

__global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(int32_t *ids, const float *logits, int vocab, const ts_sample_row *rows) {
    extern __shared__ __align__(16) unsigned char smp_mem[];
    smp_shared &s = *reinterpret_cast<smp_shared *>(smp_mem);
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
    const bool top_k = p.top_k > 0 && p.top_k < vocab;
    /* the largest drawable v; top-k's first level */
    if (top_k) smp_clear(&s, false);
    if (tid == 0) s.above = 0, s.before = 0.0;
    __syncthreads();
    float mx = -INFINITY;
    smp_pass(x, vocab, [&](int, float xv) {
        float v = smp_v(c, xv);
        bool in = v > -INFINITY; /* false for NaN */
        if (in && v > mx) mx = v;
        if (top_k) smp_bin(&s, in ? smp_key(v) >> smp_shift[0] : ~0u, false, 0.0f);
    });
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
    if (top_k) {
        if (tid < 32) smp_walk<int>(&s, s.count, SMP_BINS, p.top_k, &s.above);
        __syncthreads();
        int ties = 0;
        const smp_cut ck = c;
        auto vkey = [&](int, float xv) {
            float v = smp_v(ck, xv);
            return v > -INFINITY ? smp_key(v) : ~0u;
        };
        /* few tokens at or above the cut's bin: gather them all at once */
        const int b0 = s.bin;
        const bool pre = b0 >= 0 && s.above + s.count[b0] <= SMP_CAP;
        if (pre)
            smp_gather(&s, x, vocab, vkey,
                       [&](unsigned k) { return (int)(k >> smp_shift[0]) >= b0; });
        unsigned kk = smp_descend<false>(&s, x, vocab, vkey, p.top_k, 0.0, &ties, pre);
        if (kk != ~0u) c.floor_v = smp_unkey(kk); /* else fewer than k drawable */
        const int n_keep = s.above + ties; /* tokens with v >= floor_v */
        __syncthreads();
        if (pre && kk != ~0u && n_keep <= SMP_SMALL) {
            /* drop what is below the cut (id INT_MAX sorts last), weights */
            const int n = s.n_list;
            for (int j = tid; j < n; j += SMP_THREADS)
                if (s.key[j] < kk) s.id[j] = 0x7fffffff;
            __syncthreads();
            smp_sort_ids(&s, n);
            for (int j = tid; j < n_keep; j += SMP_THREADS)
                s.key[j] = __float_as_uint(smp_w_k(c, x[s.id[j]]));
            __syncthreads();
            smp_small(&s, n_keep, p.top_p, p.min_p, p.u, ids + row);
            return;
        }
    }
    if (p.top_p < 1.0f) { /* z, then the first level of top-p's descent */
        double z = 0.0;
        smp_pass(x, vocab, [&](int, float xv) {
            float w = smp_w_k(c, xv);
            if (w >= 0.0f) z += (double)w;
        });
        z = smp_sum(&s, z);
        const double target = (double)p.top_p * z;
        /* Tokens below lo together weigh at most (z - target) / 2, so those
         * at or above it weigh more than target: the last kept token and
         * all that rank above it are >= lo, and lighter ones need no bin. */
        const float lo = __double2float_rd((z - target) / (2.0 * vocab));
        smp_clear(&s, true);
        if (tid == 0) s.before = 0.0;
        __syncthreads();
        smp_pass(x, vocab, [&](int, float xv) {
            float w = smp_w_k(c, xv);
            smp_bin(&s, w >= 0.0f && w >= lo ? __float_as_uint(w) >> smp_shift[0] : ~0u, true, w);
        });
        __syncthreads();
        if (tid < 32) smp_walk<double>(&s, s.mass, SMP_BINS, target, &s.before);
        __syncthreads();
        smp_top_p(&s, &c, x, vocab, target, lo);
    }
    /* the kept mass per warp chunk, and the last kept id of positive weight */
    double sum = 0.0;
    int last = -1;
    smp_pass(x, vocab, [&](int i, float xv) {
        float w = smp_kept(c, i, xv);
        if (w < 0.0f) return;
        if (w > 0.0f) last = max(last, i);
        sum += (double)w;
    });
    sum = smp_warp_sum(sum);
    for (int o = 16; o > 0; o >>= 1) last = max(last, __shfl_xor_sync(0xffffffffu, last, o));
    __syncthreads();
    if (lane == 0) s.d[warp] = sum, s.i[warp] = last;
    if (tid == 0) s.pick = -1;
    __syncthreads();
    double before = 0.0, total = 0.0;
    for (int w = 0; w < SMP_WARPS; w++) {
        if (w < warp) before += s.d[w];
        total += s.d[w];
    }
    const double r = p.u * total;
    /* the warp chunk that holds r (the chunks' ranges do not overlap) */
    if (tid == 0) s.bin = -1;
    __syncthreads();
    if (lane == 0 && sum > 0.0 && r < before + sum && r >= before) s.bin = warp, s.before = before;
    __syncthreads();
    const int wc = s.bin;
    if (wc >= 0) { /* its ids split over the block's threads, walked in order */
        const int chunk = smp_chunk(vocab), lo = wc * chunk, hi = min(vocab, lo + chunk);
        const int q = (hi - lo + SMP_THREADS - 1) / SMP_THREADS;
        const int a = min(hi, lo + tid * q), e = min(hi, a + q);
        double ts = 0.0;
        for (int i = a; i < e; i++) {
            float w = smp_kept(c, i, x[i]);
            if (w > 0.0f) ts += (double)w;
        }
        double tot;
        double excl = s.before + smp_scan(&s, ts, &tot);
        if (ts > 0.0 && r < excl + ts && r >= excl) {
            double cum = excl;
            int found = -1;
            for (int i = a; i < e; i++) {
                float w = smp_kept(c, i, x[i]);
                if (!(w > 0.0f)) continue;
                cum += (double)w;
                found = i;
                if (r < cum) break;
            }
            s.pick = found; /* one thread: the ranges do not overlap */
        }
        __syncthreads();
        if (tid == 0 && s.pick < 0) s.pick = s.i[wc]; /* rounding: the chunk's last */
    }
    __syncthreads();
    if (tid == 0) {
        int id = s.pick;
        if (id < 0) /* rounding left r at the top: the last kept token */
            for (int w = 0; w < SMP_WARPS; w++) id = max(id, s.i[w]);
        ids[row] = id < 0 ? 0 : id;
    }
}

bool ts_cuda_sample_init(ts_cuda *c) {
    return TS_CU(c, cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)sizeof(smp_shared)));
}

void ts_cuda_sample(void *ctx, int32_t *ids, const float *logits, int n, int vocab,
                    const ts_sample_row *rows) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (vocab <= 0) {
        TS_BAD(c, "sample: vocabulary size");
        return;
    }
    ts_cuda_launch(c, "sample_kernel", sample_kernel, dim3((unsigned)n), dim3(SMP_THREADS),
                   sizeof(smp_shared), ids, logits, vocab, rows);
}
