/* Token sampling on the device, one block per row of logits, reproducing
 * the host sampler (src/engine/sampler.c) for its plain cases:
 * - temp == 0: argmax, NaN never chosen, the lowest id among equal maxima,
 *   0 when every logit is NaN;
 * - temp > 0 (no top-k, top-p, min-p or penalty): v = logit * (1 / temp)
 *   (or logit / temp where 1 / temp overflows), drawable = not NaN and not
 *   -inf, weight = expf(v - max) (or v == +inf ? 1 : 0 when max is +inf),
 *   r = u * (sum of weights, in double), and the token is the first in id
 *   order whose running sum exceeds r (the last token of positive weight
 *   if rounding leaves r at the top); 0 when nothing is drawable.
 * The running sum is formed per thread segment and then across segments,
 * so it can differ from the host's sequential sum by double rounding: a
 * draw within ~1e-16 of a boundary may pick the neighbouring token. */
#include <math.h>

#include "ops/cuda/cuda_internal.cuh"

#define SMP_THREADS 1024

__device__ __forceinline__ float smp_scale(float x, float temp, float inv_t, bool use_div) {
    return use_div ? x / temp : x * inv_t;
}

__global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(int32_t *ids, const float *logits, int vocab, const float *temps,
                  const double *us) {
    __shared__ float f_s[SMP_THREADS / 32];
    __shared__ int i_s[SMP_THREADS / 32];
    __shared__ double d_s[SMP_THREADS / 32];
    __shared__ int pick;
    ts_pdl_wait();
    ts_pdl_trigger();
    const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *x = logits + (size_t)row * vocab;
    const float temp = temps[row];
    const int seg = (vocab + SMP_THREADS - 1) / SMP_THREADS;
    const int lo = min(vocab, tid * seg), hi = min(vocab, lo + seg);
    if (temp == 0.0f) { /* argmax: (value, lowest id) */
        float bv = -INFINITY;
        int bi = -1;
        for (int i = lo; i < hi; i++) {
            float v = x[i];
            if (isnan(v)) continue;
            if (bi < 0 || v > bv) bv = v, bi = i;
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
        }
        if (lane == 0) f_s[warp] = bv, i_s[warp] = bi;
        __syncthreads();
        if (tid == 0) {
            float v = -INFINITY;
            int b = -1;
            for (int w = 0; w < SMP_THREADS / 32; w++)
                if (i_s[w] >= 0 && (b < 0 || f_s[w] > v || (f_s[w] == v && i_s[w] < b)))
                    v = f_s[w], b = i_s[w];
            ids[row] = b < 0 ? 0 : b;
        }
        return;
    }
    const float inv_t = 1.0f / temp;
    const bool use_div = !isfinite(inv_t);
    /* the maximum over drawable tokens */
    float mx = -INFINITY;
    for (int i = lo; i < hi; i++) {
        float v = smp_scale(x[i], temp, inv_t, use_div);
        if (v > -INFINITY && v > mx) mx = v; /* false for NaN */
    }
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) f_s[warp] = mx;
    __syncthreads();
    mx = f_s[0];
    for (int w = 1; w < SMP_THREADS / 32; w++) mx = fmaxf(mx, f_s[w]);
    if (mx == -INFINITY) { /* nothing drawable */
        if (tid == 0) ids[row] = 0;
        return;
    }
    /* this thread's segment: sum of weights and its last token of positive weight */
    double sum = 0.0;
    int last = -1;
    for (int i = lo; i < hi; i++) {
        float v = smp_scale(x[i], temp, inv_t, use_div);
        if (!(v > -INFINITY)) continue;
        float w = mx == INFINITY ? (v == INFINITY ? 1.0f : 0.0f) : expf(v - mx);
        if (w > 0.0f) last = i;
        sum += (double)w;
    }
    /* inclusive scan of the segment sums: warps, then across warps */
    double incl = sum;
    for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    __syncthreads(); /* f_s reads above are done before d_s / pick are written */
    if (lane == 31) d_s[warp] = incl;
    if (tid == 0) pick = -1;
    __syncthreads();
    double before = 0.0, total = 0.0;
    for (int w = 0; w < SMP_THREADS / 32; w++) {
        if (w < warp) before += d_s[w];
        total += d_s[w];
    }
    incl += before;
    double excl = incl - sum;
    double r = us[row] * total;
    /* the segment where the running sum first exceeds r walks itself */
    if (sum > 0.0 && r < incl && r >= excl) {
        double cum = excl;
        int found = last;
        for (int i = lo; i < hi; i++) {
            float v = smp_scale(x[i], temp, inv_t, use_div);
            if (!(v > -INFINITY)) continue;
            float w = mx == INFINITY ? (v == INFINITY ? 1.0f : 0.0f) : expf(v - mx);
            if (w <= 0.0f) continue;
            cum += (double)w;
            if (r < cum) {
                found = i;
                break;
            }
        }
        pick = found; /* one thread: the intervals [excl, incl) do not overlap */
    }
    /* rounding left r at the top: the last token of positive weight */
    __syncthreads();
    if (pick < 0) {
        int l = last;
        for (int o = 16; o > 0; o >>= 1) l = max(l, __shfl_xor_sync(0xffffffffu, l, o));
        if (lane == 0) i_s[warp] = l;
        __syncthreads();
        if (tid == 0) {
            int b = -1;
            for (int w = 0; w < SMP_THREADS / 32; w++) b = max(b, i_s[w]);
            ids[row] = b < 0 ? 0 : b;
        }
        return;
    }
    if (tid == 0) ids[row] = pick;
}

void ts_cuda_sample(void *ctx, int32_t *ids, const float *logits, int n, int vocab,
                    const float *temp, const double *u) {
    ts_cuda *c = (ts_cuda *)ctx;
    if (!ts_cuda_live(c) || n <= 0) return;
    if (vocab <= 0) {
        TS_BAD(c, "sample: vocabulary size");
        return;
    }
    ts_cuda_launch(c, "sample_kernel", sample_kernel, dim3((unsigned)n), dim3(SMP_THREADS), 0,
                   ids, logits, vocab, temp, u);
}
