/* Token sampler; see sampler.h for the pipeline and its contract. */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* One surviving token: v is its (scaled) logit until the softmax, then its
 * unnormalised weight exp(v - max). */
/* Weight buckets: weight_bucket() of a weight in [0, 1] is at most
 * 0x3f8 (1.0 maps to 0, 0.0 to 0x3f8). */
#define TS_SAMPLER_BUCKETS (0x3f8 + 1)
/* Up to this k, top-k uses a heap pass instead of quickselect. */
#define TS_SAMPLER_HEAP_K 256

typedef struct ts_cand {
    float v;
    int32_t id;
} ts_cand;

struct ts_sampler {
    ts_sample_params p;
    int32_t n_vocab;
    uint64_t rng[4];   /* xoshiro256** state */
    uint32_t *mark;    /* [n_vocab] history stamp, to penalise each id once */
    uint32_t stamp;
    ts_cand *cand;     /* [n_vocab] scratch */
    double hist[TS_SAMPLER_BUCKETS]; /* top-p mass per weight bucket */
    float heap[TS_SAMPLER_HEAP_K];   /* small top-k selection */
};

/* ---- PRNG: splitmix64 seeding, xoshiro256** stream ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t r = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return r;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) {
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

void ts_sampler_reseed(ts_sampler *s, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

/* ---- params ---- */

ts_sample_params ts_sample_params_default(void) {
    ts_sample_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.seed = 0;
    return p;
}

ts_status ts_sample_params_validate(const ts_sample_params *p, ts_err *err) {
    if (!p) return ts_fail(err, TS_ERR_INVALID, "sampler: no parameters given");
    /* The comparisons are written so that NaN fails them. */
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return ts_fail(err, TS_ERR_INVALID,
                       "sampler: temperature %g must be a finite number >= 0",
                       (double)p->temperature);
    if (p->top_k < 0)
        return ts_fail(err, TS_ERR_INVALID, "sampler: top_k %d must be >= 0 (0 = off)",
                       p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ts_fail(err, TS_ERR_INVALID, "sampler: top_p %g must be in (0, 1]",
                       (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ts_fail(err, TS_ERR_INVALID, "sampler: min_p %g must be in [0, 1]",
                       (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return ts_fail(err, TS_ERR_INVALID,
                       "sampler: repetition_penalty %g must be a finite number > 0",
                       (double)p->repetition_penalty);
    return TS_OK;
}

/* ---- lifetime ---- */

ts_status ts_sampler_create(const ts_sample_params *p, int32_t n_vocab,
                            ts_sampler **out, ts_err *err) {
    ts_status st = ts_sample_params_validate(p, err);
    if (st != TS_OK) return st;
    if (n_vocab <= 0)
        return ts_fail(err, TS_ERR_INVALID, "sampler: vocabulary size %d must be > 0",
                       (int)n_vocab);
    ts_sampler *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(err, TS_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->mark = calloc((size_t)n_vocab, sizeof *s->mark);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->mark || !s->cand) {
        ts_sampler_destroy(s);
        return ts_fail(err, TS_ERR_NOMEM,
                       "sampler: out of memory for a vocabulary of %d tokens", (int)n_vocab);
    }
    ts_sampler_reseed(s, p->seed);
    *out = s;
    return TS_OK;
}

void ts_sampler_destroy(ts_sampler *s) {
    if (!s) return;
    free(s->mark);
    free(s->cand);
    free(s);
}

const ts_sample_params *ts_sampler_params(const ts_sampler *s) {
    return &s->p;
}

/* ---- selection ---- */

/* Strict total order "a ranks above b": larger value first, then lower id,
 * so that every result is deterministic. Values are never NaN here. */
static inline int ranks_above(const ts_cand *a, const ts_cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cmp_rank(const void *pa, const void *pb) {
    const ts_cand *a = pa, *b = pb;
    if (ranks_above(a, b)) return -1;
    if (ranks_above(b, a)) return 1;
    return 0;
}

static inline void swap_cand(ts_cand *a, ts_cand *b) {
    ts_cand t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(ts_cand *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        ts_cand x = a[i];
        size_t j = i;
        while (j > 0 && ranks_above(&x, &a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* Rearranges a[0..n) so that a[0..k) holds the k top-ranked entries (in no
 * particular order). Quickselect with a median-of-three pivot; a depth budget
 * falls back to a full sort so that the worst case stays O(n log n). */
static void select_top(ts_cand *a, size_t n, size_t k) {
    if (k == 0 || k >= n) return;
    size_t lo = 0, hi = n;
    int budget = 16;
    for (size_t m = n; m > 1; m >>= 1) budget += 2;
    while (hi - lo > 16) {
        if (budget-- == 0) {
            qsort(a + lo, hi - lo, sizeof *a, cmp_rank);
            return;
        }
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        /* order a[lo], a[mid], a[last] by rank; the median goes to last */
        if (ranks_above(&a[mid], &a[lo])) swap_cand(&a[mid], &a[lo]);
        if (ranks_above(&a[last], &a[lo])) swap_cand(&a[last], &a[lo]);
        if (ranks_above(&a[mid], &a[last])) swap_cand(&a[mid], &a[last]);
        ts_cand piv = a[last];
        size_t st = lo;
        for (size_t i = lo; i < last; i++)
            if (ranks_above(&a[i], &piv)) swap_cand(&a[i], &a[st++]);
        swap_cand(&a[st], &a[last]);
        /* now [lo, st) rank above the pivot at st, (st, hi) below it */
        if (k == st || k == st + 1) return;
        if (k < st) hi = st;
        else lo = st + 1;
    }
    insertion_sort(a + lo, hi - lo);
}

/* ---- sampling ---- */

static int32_t argmax(const float *x, int32_t n) {
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(x[i])) continue;
        if (best < 0 || x[i] > x[best]) best = i;
    }
    return best < 0 ? 0 : best;
}

/* A fresh stamp for s->mark (every id then counts as unmarked). */
static uint32_t next_stamp(ts_sampler *s) {
    if (++s->stamp == 0) { /* wrapped: forget old stamps */
        memset(s->mark, 0, (size_t)s->n_vocab * sizeof *s->mark);
        s->stamp = 1;
    }
    return s->stamp;
}

static int cmp_id(const void *pa, const void *pb) {
    const ts_cand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

/* Puts c[0..n) in id order: a sort when n is small against the
 * vocabulary, otherwise one pass over the ids (w[] is id-indexed scratch). */
static void order_by_id(ts_sampler *s, ts_cand *c, size_t n, float *w) {
    if (n < 2) return;
    if (n * 32 < (size_t)s->n_vocab) {
        qsort(c, n, sizeof *c, cmp_id);
        return;
    }
    uint32_t st = next_stamp(s);
    for (size_t i = 0; i < n; i++) {
        s->mark[c[i].id] = st;
        w[c[i].id] = c[i].v;
    }
    size_t m = 0;
    for (int32_t id = 0; id < s->n_vocab; id++)
        if (s->mark[id] == st) c[m++] = (ts_cand){w[id], id};
}

static void apply_penalty(ts_sampler *s, float *logits, const int32_t *history,
                          size_t n_history) {
    float pen = s->p.repetition_penalty;
    if (pen == 1.0f || !history || n_history == 0) return;
    next_stamp(s);
    for (size_t i = 0; i < n_history; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= s->n_vocab || s->mark[id] == s->stamp) continue;
        s->mark[id] = s->stamp;
        float l = logits[id];
        logits[id] = l > 0.0f ? l / pen : l * pen;
    }
}

/* Keeps the top-ranked entries of c[0..n) (by weight) whose preceding mass is
 * below target; returns how many; c[0..result) ends up sorted. Sorts only as
 * far as needed: chunks of growing size are selected, then sorted. */
static size_t top_p_sorted(ts_cand *c, size_t n, double target) {
    double cum = 0.0;
    size_t done = 0, chunk = 64;
    while (done < n) {
        size_t take = n - done < chunk ? n - done : chunk;
        select_top(c + done, n - done, take);
        qsort(c + done, take, sizeof *c, cmp_rank);
        for (size_t i = done; i < done + take; i++) {
            if (i > 0 && cum >= target) return i;
            cum += c[i].v;
        }
        done += take;
        chunk *= 4;
    }
    return n;
}

/* Bucket of a weight w in [0, 1]: the float's exponent and top 3 mantissa
 * bits, counted down from 1.0, so a lower bucket means a larger weight and
 * each bucket spans a factor of 2^(1/8). */
static inline uint32_t weight_bucket(float w) {
    uint32_t u;
    memcpy(&u, &w, sizeof u);
    return (0x3f800000u >> 20) - (u >> 20);
}

/* Same contract as top_p_sorted (the kept entries come first, but only the
 * boundary bucket is sorted). For large candidate sets: one pass sums the
 * mass per weight bucket, the buckets wholly inside the nucleus are kept
 * without sorting, and only the bucket that crosses target is ranked. */
static size_t top_p_cut(ts_sampler *s, ts_cand *c, size_t n, double target) {
    if (n <= 256) return top_p_sorted(c, n, target);
    double *hist = s->hist;
    memset(hist, 0, TS_SAMPLER_BUCKETS * sizeof *hist);
    for (size_t i = 0; i < n; i++) hist[weight_bucket(c[i].v)] += c[i].v;
    double before = 0.0;
    uint32_t b = 0;
    while (b < TS_SAMPLER_BUCKETS && before + hist[b] < target) before += hist[b++];
    if (b == TS_SAMPLER_BUCKETS) return n; /* rounding: keep everything */
    /* move buckets < b to the front, then bucket b */
    size_t m1 = 0;
    for (size_t i = 0; i < n; i++)
        if (weight_bucket(c[i].v) < b) swap_cand(&c[i], &c[m1++]);
    size_t m2 = m1;
    for (size_t i = m1; i < n; i++)
        if (weight_bucket(c[i].v) == b) swap_cand(&c[i], &c[m2++]);
    return m1 + top_p_sorted(c + m1, m2 - m1, target - before);
}

/* The k-th largest of the drawable (non-NaN, > -inf) values of x[0..n) via a
 * k-entry min-heap, or -inf if there are fewer than k. */
static float kth_largest(const float *x, int32_t n, size_t k, float *heap) {
    size_t h = 0;
    for (int32_t i = 0; i < n; i++) {
        float v = x[i];
        if (!(v > -INFINITY)) continue;
        if (h < k) { /* sift up */
            size_t j = h++;
            while (j > 0 && heap[(j - 1) / 2] > v) {
                heap[j] = heap[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            heap[j] = v;
        } else if (v > heap[0]) { /* replace the minimum, sift down */
            size_t j = 0;
            for (;;) {
                size_t l = 2 * j + 1, m = j;
                float mv = v;
                if (l < k && heap[l] < mv) { m = l; mv = heap[l]; }
                if (l + 1 < k && heap[l + 1] < mv) m = l + 1;
                if (m == j) break;
                heap[j] = heap[m];
                j = m;
            }
            heap[j] = v;
        }
    }
    return h < k ? -INFINITY : heap[0];
}

bool ts_sampler_on_device(const ts_sampler *s) { return s->p.repetition_penalty == 1.0f; }

double ts_sampler_draw(ts_sampler *s) { return rng_uniform(s->rng); }

int32_t ts_sampler_sample(ts_sampler *s, float *logits, const int32_t *history,
                          size_t n_history) {
    const ts_sample_params *p = &s->p;
    int32_t nv = s->n_vocab;
    apply_penalty(s, logits, history, n_history);
    if (p->temperature == 0.0f) return argmax(logits, nv);

    /* temperature, in place */
    float inv_t = 1.0f / p->temperature;
    int use_div = !isfinite(inv_t); /* tiny temperature: divide instead */
    for (int32_t i = 0; i < nv; i++)
        logits[i] = use_div ? logits[i] / p->temperature : logits[i] * inv_t;

    /* candidates: drawable tokens (not NaN, not -inf), cut to top-k where
     * everything tied with the k-th value stays */
    ts_cand *c = s->cand;
    size_t n = 0;
    size_t k = p->top_k > 0 && p->top_k < nv ? (size_t)p->top_k : 0;
    float floor_v = -INFINITY; /* keep v > floor_v, or v >= it with top-k */
    if (k > 0 && k <= TS_SAMPLER_HEAP_K) {
        floor_v = kth_largest(logits, nv, k, s->heap);
        k = 0; /* done: the threshold below does the cut */
    }
    for (int32_t i = 0; i < nv; i++) {
        float v = logits[i];
        if (v > -INFINITY && v >= floor_v) { /* both false for NaN */
            c[n].v = v;
            c[n].id = i;
            n++;
        }
    }
    if (n == 0) return 0;
    bool reordered = false; /* c[] left id order */
    if (k > 0 && k < n) {
        reordered = true;
        select_top(c, n, k);
        float kth = c[0].v;
        for (size_t i = 1; i < k; i++)
            if (c[i].v < kth) kth = c[i].v;
        size_t m = k;
        for (size_t i = k; i < n; i++)
            if (c[i].v == kth) swap_cand(&c[i], &c[m++]);
        n = m;
    }

    /* softmax weights relative to the maximum, so the top weight is 1 */
    float mx = c[0].v;
    for (size_t i = 1; i < n; i++)
        if (c[i].v > mx) mx = c[i].v;
    double z = 0.0;
    for (size_t i = 0; i < n; i++) {
        float w;
        if (mx == INFINITY) w = c[i].v == INFINITY ? 1.0f : 0.0f;
        else w = (float)exp((double)(c[i].v - mx)); /* as the device (sample.cu) */
        c[i].v = w;
        z += w;
    }

    if (p->top_p < 1.0f) {
        n = top_p_cut(s, c, n, (double)p->top_p * z);
        reordered = true;
    }

    /* min-p: the top weight is exactly 1, so the threshold is min_p itself */
    if (p->min_p > 0.0f) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!(c[i].v < p->min_p)) c[m++] = c[i];
        n = m; /* the top token (weight 1) always survives */
    }

    /* the draw walks the kept tokens in id order, as the device does */
    if (reordered) order_by_id(s, c, n, logits);
    z = 0.0;
    for (size_t i = 0; i < n; i++) z += c[i].v;
    double r = rng_uniform(s->rng) * z, cum = 0.0;
    int32_t last = c[0].id;
    for (size_t i = 0; i < n; i++) {
        if (c[i].v <= 0.0f) continue;
        cum += c[i].v;
        last = c[i].id;
        if (r < cum) return c[i].id;
    }
    return last; /* rounding left r at the very top of the range */
}
