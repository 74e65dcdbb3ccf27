/* The scheduler: one step of continuous batching.
 *
 * Requests wait in FCFS order. Admission takes the prompt's cached prefix
 * blocks (content-addressed), then needs free KV for the rest of the prompt.
 * Each step batches every running request: decodes first (one token each),
 * then prefill pieces in admission order up to the token budget, so a long
 * prompt is chunked and never stalls decodes. When KV runs out mid-flight,
 * the most recently admitted request is preempted: its blocks are released
 * (published ones stay findable, so its recompute is mostly cache hits) and
 * it goes back to the front of the queue with its generated tokens. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/engine_int.h"
#include "engine/generate.h"

static const uint8_t *fingerprint(ts_engine *e) { return e->rt->model->fingerprint; }

static ts_status block_hash(ts_engine *e, ts_req *r, int b, uint8_t out[32]) {
    int bs = e->rt->kv->block_size;
    const void *salt = r->has_salt ? r->salt : NULL;
    size_t salt_len = r->salt_len;
    if (r->n_segs) ts_echunks_block_salt(e, r, b, &salt, &salt_len);
    return ts_kv_block_hash(out, b ? r->hashes[b - 1] : NULL, r->tokens + (size_t)b * bs, bs,
                            fingerprint(e), salt, salt_len);
}

static bool ensure_tables(ts_req *r, int n_blocks) {
    if (n_blocks <= r->cap_blocks) return true;
    int cap = r->cap_blocks, cap2 = r->cap_blocks;
    if (!ts_grow((void **)&r->blocks, &cap, n_blocks, sizeof *r->blocks)) return false;
    if (!ts_grow((void **)&r->hashes, &cap2, cap, sizeof *r->hashes)) return false;
    r->cap_blocks = cap < cap2 ? cap : cap2;
    return true;
}

/* Looks up r's leading full prompt blocks in the prefix cache and takes
 * the hits. At least one prompt token is always left to compute, so that
 * its logits exist and no shared block is written. */
static void take_cached_prefix(ts_engine *e, ts_req *r) {
    ts_kv *kv = e->rt->kv;
    int bs = kv->block_size;
    int max_blocks = (r->n_tokens - 1) / bs;
    r->n_hashed = 0;
    if (!e->o.prefix_cache || !ensure_tables(r, max_blocks + 1)) return;
    for (int b = 0; b < max_blocks; b++) {
        if (block_hash(e, r, b, r->hashes[b])) break;
        int32_t hit = ts_kv_lookup(kv, r->hashes[b], r->tokens + (size_t)b * bs);
        if (hit < 0) break;
        r->blocks[r->n_blocks++] = hit;
        r->n_hashed = b + 1;
    }
    r->n_computed = r->n_blocks * bs;
}

/* Gives r blocks for slots [0, n_slots); false if the pool cannot. */
static bool reserve(ts_engine *e, ts_req *r, int n_slots) {
    ts_kv *kv = e->rt->kv;
    int need = (n_slots + kv->block_size - 1) / kv->block_size;
    if (need <= r->n_blocks) return true;
    if (need - r->n_blocks > ts_kv_n_avail(kv) || !ensure_tables(r, need)) return false;
    while (r->n_blocks < need) r->blocks[r->n_blocks++] = ts_kv_alloc(kv);
    return true;
}

/* Returns r's blocks and puts it back at the front of the queue (drain()
 * keeps the queue's capacity above waiting + running). */
static void preempt(ts_engine *e, int idx) {
    ts_req *r = e->running[idx];
    ts_kv_release_table(e->rt->kv, r->blocks, r->n_blocks);
    r->n_blocks = 0;
    r->n_computed = 0;
    r->n_hashed = 0;
    memmove(e->running + idx, e->running + idx + 1, (size_t)(e->n_running - idx - 1) * sizeof *e->running);
    e->n_running--;
    memmove(e->waiting + 1, e->waiting, (size_t)e->n_waiting * sizeof *e->waiting);
    e->waiting[0] = r;
    e->n_waiting++;
    e->st.preemptions++;
}

/* True if a running request still prefilling starts with the same first
 * block as r: r waits so that it can reuse that prefix instead of
 * computing it a second time. */
static bool shares_pending_prefix(ts_engine *e, ts_req *r) {
    if (!r->has_first_hash) return false;
    int bs = e->rt->kv->block_size;
    for (int i = 0; i < e->n_running; i++) {
        ts_req *o = e->running[i];
        if (o->has_first_hash && o->n_computed < bs &&
            !memcmp(o->first_hash, r->first_hash, 32))
            return true;
    }
    return false;
}

static void publish(ts_engine *e, ts_req *r);

/* At admission: writes the KV of every chunk slot r places (its blocks
 * cover the prompt) and moves past placed slots; a failure makes r compute
 * those tokens instead. */
static void place_chunks(ts_engine *e, ts_req *r) {
    if (!r->n_segs) return;
    if (ts_echunks_place(e, r, NULL)) {
        ts_echunks_release(e, r);
        return;
    }
    r->n_computed = ts_echunks_skip_placed(r, r->n_computed);
    publish(e, r);
}

static void admit(ts_engine *e) {
    ts_kv *kv = e->rt->kv;
    int i = 0;
    while (i < e->n_waiting && e->n_running < e->o.max_running) {
        ts_req *r = e->waiting[i];
        if (!r->has_first_hash && e->o.prefix_cache && r->n_tokens > kv->block_size &&
            ensure_tables(r, 1) && !block_hash(e, r, 0, r->first_hash))
            r->has_first_hash = true;
        if (shares_pending_prefix(e, r)) { /* group with the request computing it */
            i++;
            continue;
        }
        if (e->n_running == 0 && (int64_t)r->n_tokens + 1 > (int64_t)kv->n_blocks * kv->block_size) {
            /* grew past the whole pool while generating: nothing can make room */
            memmove(e->waiting + i, e->waiting + i + 1, (size_t)(e->n_waiting - i - 1) * sizeof *e->waiting);
            e->n_waiting--;
            ts_engine_finish(e, r, "length", TS_OK, NULL);
            continue;
        }
        if (!ts_grow((void **)&e->running, &e->cap_running, e->n_running + 1, sizeof *e->running))
            break;
        if (r->n_segs && ts_echunks_ready(e, r, NULL) == TS_ERR_CAPACITY)
            break; /* its chunks' KV needs pool blocks now in use */
        take_cached_prefix(e, r);
        /* the whole prompt plus the first generated token must fit now */
        if (!reserve(e, r, r->n_tokens + 1)) {
            ts_kv_release_table(kv, r->blocks, r->n_blocks);
            r->n_blocks = 0;
            r->n_computed = 0;
            break; /* FCFS: later requests do not jump ahead */
        }
        if (r->n_gen == 0) r->n_cached = r->n_computed;
        e->st.cached_tokens += (uint64_t)r->n_computed;
        place_chunks(e, r);
        e->running[e->n_running++] = r;
        memmove(e->waiting + i, e->waiting + i + 1, (size_t)(e->n_waiting - i - 1) * sizeof *e->waiting);
        e->n_waiting--;
    }
}

/* Publishes r's newly completed full blocks in the prefix cache. */
static void publish(ts_engine *e, ts_req *r) {
    ts_kv *kv = e->rt->kv;
    int bs = kv->block_size;
    if (!e->o.prefix_cache) return;
    int full = r->n_computed / bs;
    for (int b = r->n_hashed; b < full; b++) {
        if (block_hash(e, r, b, r->hashes[b])) return;
        int32_t got = ts_kv_publish(kv, r->blocks[b], r->hashes[b], r->tokens + (size_t)b * bs);
        if (got >= 0 && got != r->blocks[b]) { /* an identical block exists: share it */
            ts_kv_release(kv, r->blocks[b]);
            r->blocks[b] = got;
        }
        r->n_hashed = b + 1;
    }
}

static bool push_token(ts_req *r, int32_t id) {
    if (!ts_grow((void **)&r->tokens, &r->cap_tokens, r->n_tokens + 1, sizeof *r->tokens))
        return false;
    r->tokens[r->n_tokens++] = id;
    return true;
}

/* Makes sure every running request has a block for the slots it computes
 * this step, preempting the youngest requests while the pool is short. */
static void plan(ts_engine *e, int budget) {
    for (int i = 0; i < e->n_running; i++) e->running[i]->step_n = 0;
    /* decodes first, then prefill pieces in admission order */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < e->n_running; i++) {
            ts_req *r = e->running[i];
            int pending = r->n_tokens - r->n_computed;
            if ((pass == 0) != (pending == 1) || r->step_n) continue;
            int n = pending < budget ? pending : budget;
            if (pass == 0) n = 1; /* decodes always run */
            int end = r->n_computed + n;
            r->n_pieces = 0;
            if (r->n_segs && pass == 1) { /* spans between placed chunk slots */
                r->n_pieces = ts_echunks_pieces(r, n, r->n_tokens, r->pieces, 16);
                n = 0;
                for (int k = 0; k < r->n_pieces; k++) n += r->pieces[k].n;
                if (r->n_pieces) end = r->pieces[r->n_pieces - 1].start + r->pieces[r->n_pieces - 1].n;
            }
            if (n <= 0) continue;
            while (!reserve(e, r, end)) {
                if (e->n_running == 1 || i == e->n_running - 1) {
                    n = 0; /* r itself is the youngest: preempt it */
                    break;
                }
                preempt(e, e->n_running - 1);
            }
            if (!n) {
                preempt(e, i);
                i--;
                continue;
            }
            r->step_n = n;
            budget -= n;
        }
    }
}

/* Takes r out of the running list. */
static void drop_running(ts_engine *e, ts_req *r) {
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i] == r) {
            memmove(e->running + i, e->running + i + 1, (size_t)(e->n_running - i - 1) * sizeof *e->running);
            e->n_running--;
            return;
        }
}

/* Draws the step's tokens on the device: each sampled row gets its
 * request's params and one uniform number from its sampler (greedy rows
 * none), in row order. *ids is malloc'ed [rows]. */
static ts_status sample_on_device(ts_engine *e, int n_seq, int32_t **ids, ts_err *err) {
    int rows = 0;
    for (int k = 0; k < n_seq; k++) rows += e->batch[k].n_logits;
    *ids = NULL;
    if (!rows) return TS_OK; /* nothing to sample this step */
    ts_sample_row *sr = malloc((size_t)rows * sizeof *sr);
    *ids = malloc((size_t)rows * sizeof **ids);
    ts_status st = TS_OK;
    if (!sr || !*ids) st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (int k = 0, row = 0; !st && k < n_seq; k++) {
        if (!e->batch[k].n_logits) continue;
        ts_sampler *smp = e->batch_req[k]->smp;
        const ts_sample_params *p = ts_sampler_params(smp);
        sr[row] = (ts_sample_row){.temp = p->temperature, .top_k = p->top_k,
                                  .top_p = p->top_p, .min_p = p->min_p};
        sr[row].u = p->temperature > 0.0f ? ts_sampler_draw(smp) : 0.0;
        row++;
    }
    if (!st) st = ts_fwd_sample(e->rt->fwd, rows, sr, *ids, err);
    free(sr);
    if (st) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

ts_status ts_sched_step(ts_engine *e, ts_err *err) {
    ts_runtime *rt = e->rt;
    admit(e);
    plan(e, e->o.max_batch_tokens);
    int n_entries = 0;
    for (int i = 0; i < e->n_running; i++) {
        ts_req *r = e->running[i];
        n_entries += r->step_n ? (r->n_pieces ? r->n_pieces : 1) : 0;
    }
    int cap = e->cap_batch;
    if (!ts_grow((void **)&e->batch, &cap, n_entries, sizeof *e->batch) ||
        !ts_grow((void **)&e->batch_req, &e->cap_batch, n_entries, sizeof *e->batch_req))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    int n_seq = 0;
    for (int i = 0; i < e->n_running; i++) {
        ts_req *r = e->running[i];
        if (!r->step_n) continue;
        if (!r->n_pieces) { /* one contiguous piece */
            r->pieces[0] = (ts_span){r->n_computed, r->step_n};
            r->n_pieces = 1;
        }
        for (int k = 0; k < r->n_pieces; k++) { /* in slot order: later pieces see earlier ones */
            const ts_span *p = &r->pieces[k];
            bool last = p->start + p->n == r->n_tokens;
            e->batch[n_seq] = (ts_fwd_seq){.tokens = r->tokens + p->start, .n = p->n,
                                           .n_past = p->start, .blocks = r->blocks,
                                           .n_logits = last ? 1 : 0};
            e->batch_req[n_seq++] = r;
        }
    }
    if (!n_seq) return TS_OK;
    /* sampling on the device when no row needs a repetition penalty: the
     * logits then stay there (TS_DEVICE_SAMPLE=0 turns this off) */
    bool dev_sample = ts_fwd_can_sample(rt->fwd) && e->dev_sample;
    for (int k = 0; dev_sample && k < n_seq; k++)
        dev_sample = !e->batch[k].n_logits || ts_sampler_on_device(e->batch_req[k]->smp);
    ts_fwd_set_logits_on_device(rt->fwd, dev_sample);
    const float *logits;
    ts_err ferr;
    ts_status s = ts_fwd_run(rt->fwd, e->batch, n_seq, &logits, &ferr);
    int32_t *ids = NULL;
    if (!s && dev_sample) s = sample_on_device(e, n_seq, &ids, &ferr);
    if (s) { /* the batch's requests end with the error; the engine goes on */
        free(ids);
        for (int k = 0; k < n_seq; k++) {
            ts_req *r = e->batch_req[k];
            if (k + 1 < n_seq && e->batch_req[k + 1] == r) continue;
            drop_running(e, r);
            ts_engine_finish(e, r, "error", s, ferr.msg);
        }
        return TS_OK;
    }
    e->st.steps++;
    if (ts_fwd_used_cascade(rt->fwd)) e->st.cascade_steps++;
    const int32_t vocab = rt->model->cfg.vocab;
    int row = 0;
    for (int k = 0; k < n_seq; k++) {
        ts_req *r = e->batch_req[k];
        if (k + 1 < n_seq && e->batch_req[k + 1] == r) continue; /* handled at its last piece */
        bool from_prompt = r->n_computed < r->n_prompt;
        const ts_span *p = &r->pieces[r->n_pieces - 1];
        r->n_computed = p->start + p->n;
        if (r->n_segs) r->n_computed = ts_echunks_skip_placed(r, r->n_computed);
        r->n_pieces = 0;
        if (from_prompt) e->st.prefill_tokens += (uint64_t)r->step_n;
        publish(e, r);
        if (!e->batch[k].n_logits) continue;
        int32_t id;
        if (ids) {
            id = ids[row++];
        } else {
            memcpy(e->row, logits + (size_t)row++ * vocab, (size_t)vocab * sizeof *e->row);
            id = ts_sampler_sample(r->smp, e->row, r->tokens, (size_t)r->n_tokens);
        }
        if (r->n_gen++ == 0) r->ttft_ms = ts_now_ms() - r->t_submit;
        e->st.generated_tokens++;
        const char *finish = NULL;
        if (!r->ignore_eos && ts_runtime_is_eos(rt, id)) finish = "stop";
        else if (ts_engine_emit_token(e, r, id)) finish = "stop";
        else if (r->n_gen >= r->max_tokens) finish = "length";
        else if (r->n_tokens + 1 > rt->model->cfg.max_pos) finish = "length";
        else if (!push_token(r, id)) finish = "error";
        if (finish) {
            drop_running(e, r);
            ts_engine_finish(e, r, finish, strcmp(finish, "error") ? TS_OK : TS_ERR_NOMEM,
                             strcmp(finish, "error") ? NULL : "out of memory");
        }
    }
    free(ids);
    return TS_OK;
}
