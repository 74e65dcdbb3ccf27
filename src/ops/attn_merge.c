/* Log-sum-exp merge of two partial attention states (see ops.h). Computed
 * relative to the larger lse so no exponential overflows; two empty states
 * (-inf, -inf) stay empty instead of producing inf - inf = NaN. */
#include <math.h>

#include "ops/ops.h"

/* One head of one row: (oa, *la) <- merge((oa, *la), (ob, lb)). */
static void merge_head(float *oa, float *la, const float *ob, float lb, int head_dim) {
    float l = *la;
    if (lb == -INFINITY) return; /* b is empty: a unchanged */
    if (l == -INFINITY) {        /* a is empty: take b */
        for (int c = 0; c < head_dim; c++) oa[c] = ob[c];
        *la = lb;
        return;
    }
    float m = l > lb ? l : lb;
    float wa = expf(l - m), wb = expf(lb - m); /* one of them is 1 */
    float inv = 1.0f / (wa + wb);
    for (int c = 0; c < head_dim; c++) oa[c] = (oa[c] * wa + ob[c] * wb) * inv;
    *la = m + logf(wa + wb);
}

void ts_attn_merge(float *o_a, float *lse_a, const float *o_b, const float *lse_b, int n,
                   int n_heads, int head_dim) {
    for (long r = 0; r < (long)n * n_heads; r++)
        merge_head(o_a + r * head_dim, lse_a + r, o_b + r * head_dim, lse_b[r], head_dim);
}

void ts_attn_merge_rows(float *o_a, float *lse_a, const float *o_b, const float *lse_b,
                        const int32_t *rows, int n_rows, int n_heads, int head_dim) {
    for (int i = 0; i < n_rows; i++) {
        size_t r0 = (size_t)rows[i] * (size_t)n_heads;
        for (int h = 0; h < n_heads; h++) {
            size_t r = r0 + (size_t)h;
            merge_head(o_a + r * (size_t)head_dim, lse_a + r, o_b + r * (size_t)head_dim,
                       lse_b[r], head_dim);
        }
    }
}
