/* Token sampler: turns one row of logits into a token id.
 *
 * The pipeline follows Hugging Face `generate` (logits processors, then
 * warpers, in this order):
 *   1. repetition penalty over the distinct ids in the history
 *      (logit > 0 ? logit / penalty : logit * penalty);
 *   2. temperature == 0: greedy argmax (lowest id wins a tie), stop here;
 *   3. logits / temperature;
 *   4. top-k: keep every token whose logit is >= the k-th largest
 *      (ties at the boundary are all kept, as HF does);
 *   5. softmax over what is left;
 *   6. top-p: walking from the most probable token down, keep a token while
 *      the mass of the tokens before it is < top_p (the smallest set whose
 *      mass reaches top_p; the top token is always kept);
 *   7. min-p: drop tokens whose probability is < min_p * the top probability;
 *   8. renormalise and draw with the sampler's own PRNG: one uniform number
 *      u, and the first kept token in id order whose running mass exceeds
 *      u * (kept mass). (Ties in steps 4 and 6 rank by id, lowest first.)
 *
 * Non-finite logits: NaN is treated as -inf (never chosen); -inf tokens are
 * never chosen. If some logits are +inf, the draw is uniform over the +inf
 * tokens (greedy picks the lowest such id). If every logit is NaN or -inf,
 * the result is token 0.
 *
 * Reproducibility: the PRNG is xoshiro256** seeded through splitmix64, so
 * the same seed, params and logits give the same tokens on every platform.
 * The sampler owns its scratch (sized for the vocabulary at creation) and
 * does no allocation per token. Not thread-safe: one sampler per sequence. */
#ifndef TS_ENGINE_SAMPLER_H
#define TS_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tessera.h"

/* ts_sample_params is declared in tessera.h (part of the public API). */

/* Greedy defaults: temperature 0, top_k 0, top_p 1, min_p 0,
 * repetition_penalty 1, seed 0. */
ts_sample_params ts_sample_params_default(void);

/* TS_OK, or TS_ERR_INVALID naming the first bad field: temperature < 0,
 * top_k < 0, top_p outside (0, 1], min_p outside [0, 1], penalty <= 0,
 * any NaN or infinite value. */
ts_status ts_sample_params_validate(const ts_sample_params *p, ts_err *err);

typedef struct ts_sampler ts_sampler;

/* Creates a sampler for a vocabulary of n_vocab (> 0) tokens with params p
 * (validated as above; copied). *out is set only on success; the caller
 * destroys it with ts_sampler_destroy. */
ts_status ts_sampler_create(const ts_sample_params *p, int32_t n_vocab,
                            ts_sampler **out, ts_err *err);

/* Frees the sampler; NULL is a no-op. */
void ts_sampler_destroy(ts_sampler *s);

/* Restarts the PRNG from seed (as if created with that seed). */
void ts_sampler_reseed(ts_sampler *s, uint64_t seed);

/* The params the sampler was created with. */
const ts_sample_params *ts_sampler_params(const ts_sampler *s);

/* Whether the params leave out the repetition penalty, the one step that
 * needs the history: such draws can be made elsewhere (on a GPU, see
 * ts_ops.sample) from the params and one uniform number, ts_sampler_draw. */
bool ts_sampler_on_device(const ts_sampler *s);
/* The next uniform number in [0, 1) of the sampler's PRNG, as
 * ts_sampler_sample draws it for a non-greedy token. */
double ts_sampler_draw(ts_sampler *s);

/* Picks a token from logits[n_vocab], which the call may overwrite (penalty
 * and temperature are applied in place). history[n_history] holds the ids
 * seen so far (prompt and generated) for the repetition penalty; ids outside
 * [0, n_vocab) are ignored; it may be NULL when n_history is 0. Returns an id
 * in [0, n_vocab). */
int32_t ts_sampler_sample(ts_sampler *s, float *logits, const int32_t *history,
                          size_t n_history);

#endif
