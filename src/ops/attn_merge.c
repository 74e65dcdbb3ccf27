/* Log-sum-exp merge of two partial attention states (see ops.h). Computed
 * relative to the larger lse so no exponential overflows; two empty states
 * (-inf, -inf) stay empty instead of producing inf - inf = NaN. */
#include <math.h>

#include "ops/ops.h"

void ts_attn_merge(float *o_a, float *lse_a, const float *o_b, const float *lse_b, int n,
                   int n_heads, int head_dim) {
    for (long r = 0; r < (long)n * n_heads; r++) {
        float la = lse_a[r], lb = lse_b[r];
        float *oa = o_a + r * head_dim;
        const float *ob = o_b + r * head_dim;
        if (lb == -INFINITY) continue; /* b is empty: a unchanged */
        if (la == -INFINITY) {         /* a is empty: take b */
            for (int c = 0; c < head_dim; c++) oa[c] = ob[c];
            lse_a[r] = lb;
            continue;
        }
        float m = la > lb ? la : lb;
        float wa = expf(la - m), wb = expf(lb - m); /* one of them is 1 */
        float inv = 1.0f / (wa + wb);
        for (int c = 0; c < head_dim; c++) oa[c] = (oa[c] * wa + ob[c] * wb) * inv;
        lse_a[r] = m + logf(wa + wb);
    }
}
