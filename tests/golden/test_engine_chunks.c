/* Chunks through the engine (facts-qwen3-14m): prompts given as parts that
 * cite registered chunks.
 *  - EXACT gives the same text as the plain prompt;
 *  - REUSE gives the same greedy tokens as the composer's REUSE reference
 *    (kv placed at the same slots), decoded step by step here;
 *  - placed KV never leaks into plain prompts through the prefix cache,
 *    while requests placing the same chunks share blocks;
 *  - chunks are per salt; bad ids, bad parts and over-long compositions are
 *    refused at submit; the registry budget and a directory store shared by
 *    two engines work; the pool ends clean. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/compose.h"
#include "engine/engine.h"
#include "kv/kv.h"
#include "test.h"

typedef struct result {
    ts_buf text;
    int32_t toks[64];
    int n_toks, n_cached, n_prompt;
    const char *finish;
    bool done;
} result;

static void on_event(void *ctx, const ts_event *ev) {
    result *r = ctx;
    if (ev->kind == TS_EVENT_TEXT) {
        ts_buf_append(&r->text, ev->text, ev->len);
        if (ev->token >= 0 && r->n_toks < 64) r->toks[r->n_toks++] = ev->token;
    } else {
        r->done = true;
        r->finish = ev->finish;
        r->n_cached = ev->n_cached;
        r->n_prompt = ev->n_prompt;
    }
}

typedef struct fcase {
    char *system, *tail;
    char *docs[16], *heads[16];
    int n_docs;
} fcase;

static int load_cases(const char *dir, fcase *out, int want) {
    char path[600];
    snprintf(path, sizeof path, "%s/eval_dev.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    json_t *cases = json_object_get(root, "cases");
    int n = 0;
    for (size_t i = 0; n < want && i < json_array_size(cases); i += 11) {
        json_t *c = json_array_get(cases, i);
        const char *sys = json_string_value(json_object_get(c, "system"));
        const char *q = json_string_value(json_object_get(c, "question"));
        json_t *docs = json_object_get(c, "documents");
        if (!sys || !q || !json_is_array(docs) || json_array_size(docs) > 16) continue;
        fcase *f = &out[n++];
        memset(f, 0, sizeof *f);
        ts_buf b = {0};
        ts_buf_printf(&b, "<|im_start|>system\n%s", sys);
        f->system = strdup(b.data);
        for (size_t d = 0; d < json_array_size(docs); d++) {
            ts_buf_clear(&b);
            ts_buf_printf(&b, "\n\n[Document %zu]\n", d + 1);
            f->heads[f->n_docs] = strdup(b.data);
            f->docs[f->n_docs++] = strdup(json_string_value(json_array_get(docs, d)));
        }
        ts_buf_clear(&b);
        ts_buf_printf(&b, "<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", q);
        f->tail = strdup(b.data);
        ts_buf_free(&b);
    }
    json_decref(root);
    return n;
}

static void free_case(fcase *f) {
    free(f->system);
    free(f->tail);
    for (int i = 0; i < f->n_docs; i++) {
        free(f->docs[i]);
        free(f->heads[i]);
    }
}

static ts_engine *make(const char *dir, const char *prefix, uint64_t chunk_bytes,
                       const char *store_dir) {
    ts_engine_opts o = ts_engine_opts_default();
    o.n_threads = 2;
    o.exact = true;
    o.chunk_prefix = prefix;
    o.chunk_bytes = chunk_bytes;
    o.chunk_dir = store_dir;
    ts_engine *e = NULL;
    ts_err err;
    if (ts_engine_create(dir, &o, &e, &err)) fprintf(stderr, "engine: %s\n", err.msg);
    return e;
}

/* Parts of case f: system, then header + chunk per document, then the tail.
 * ids[d] are the registered chunk ids (NULL: documents as text). */
static int build_parts(const fcase *f, char ids[][TS_CHUNK_ID_HEX + 1], ts_prompt_part *p) {
    int n = 0;
    p[n++] = (ts_prompt_part){.text = f->system};
    for (int d = 0; d < f->n_docs; d++) {
        p[n++] = (ts_prompt_part){.text = f->heads[d]};
        p[n++] = ids ? (ts_prompt_part){.chunk = ids[d]} : (ts_prompt_part){.text = f->docs[d]};
    }
    p[n++] = (ts_prompt_part){.text = f->tail};
    return n;
}

/* Queues parts[n] in mode (repair_frac < 0: the engine's), results to out. */
static ts_status submit1(ts_engine *e, const ts_prompt_part *p, int n, int mode, float repair_frac,
                         const char *salt, int max_tokens, result *out, ts_err *err) {
    memset(out, 0, sizeof *out);
    ts_request q = ts_request_default();
    q.parts = p;
    q.n_parts = n;
    q.chunk_mode = mode;
    q.repair_frac = repair_frac;
    q.max_tokens = max_tokens;
    q.ignore_eos = true;
    if (salt) {
        q.cache_salt = salt;
        q.cache_salt_len = strlen(salt);
    }
    return ts_engine_submit(e, &q, on_event, out, NULL, err);
}

/* submit1 with the engine's repair fraction, then runs the engine dry. */
static ts_status run1(ts_engine *e, const ts_prompt_part *p, int n, int mode, const char *salt,
                      int max_tokens, result *out, ts_err *err) {
    ts_status s = submit1(e, p, n, mode, -1.0f, salt, max_tokens, out, err);
    if (!s) s = ts_engine_run(e, err);
    return s;
}

static void check_pool_clean(ts_engine *e, const char *tag) {
    ts_kv *kv = ts_engine_runtime(e)->kv;
    char why[256] = "";
    CHECKF(ts_kv_check(kv, why, sizeof why), "%s: pool invariant: %s", tag, why);
    ts_kv_stats ks;
    ts_kv_get_stats(kv, &ks);
    CHECKF(ks.n_used == 0, "%s: %d blocks still used", tag, ks.n_used);
}

static int32_t *tokenize(ts_runtime *rt, const char *text, int *n) {
    int32_t *ids = NULL;
    size_t m = 0;
    if (ts_tok_encode(rt->tok, text, strlen(text), false, &ids, &m, NULL)) return NULL;
    *n = (int)m;
    return ids;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* The composer's REUSE of case f followed by greedy decoding, n tokens. */
static int reference_reuse(ts_engine *e, const fcase *f, int32_t *out, int n_out) {
    ts_runtime *rt = ts_engine_runtime(e);
    int np = 0, n_got = 0;
    int32_t *prefix = tokenize(rt, f->system, &np);
    ts_composer *c = NULL;
    ts_part parts[40];
    int32_t *owned[40];
    int n = 0;
    for (int d = 0; d < f->n_docs; d++) {
        owned[n] = tokenize(rt, f->heads[d], &parts[n].n);
        parts[n] = (ts_part){.is_chunk = false, .ids = owned[n], .n = parts[n].n};
        n++;
        owned[n] = tokenize(rt, f->docs[d], &parts[n].n);
        parts[n] = (ts_part){.is_chunk = true, .ids = owned[n], .n = parts[n].n, .type = TS_CHUNK_DOCUMENT};
        n++;
    }
    owned[n] = tokenize(rt, f->tail, &parts[n].n);
    parts[n] = (ts_part){.ids = owned[n], .n = parts[n].n};
    n++;
    ts_seq seq = {0};
    ts_err err;
    const float *lg = NULL;
    if (prefix && !ts_composer_create(rt, prefix, np, 0, &c, &err) &&
        !ts_compose(c, &seq, parts, n, TS_COMPOSE_REUSE, 0, &lg, &err)) {
        int vocab = rt->model->cfg.vocab;
        while (n_got < n_out) {
            int32_t t = argmax(lg, vocab);
            out[n_got++] = t;
            if (n_got == n_out || ts_seq_reserve(&seq, rt->kv, seq.n_tokens + 1, &err)) break;
            ts_fwd_seq fs = {.tokens = &t, .n = 1, .n_past = seq.n_tokens, .blocks = seq.blocks, .n_logits = 1};
            if (ts_fwd_run(rt->fwd, &fs, 1, &lg, &err) || ts_seq_push(&seq, &t, 1, &err)) break;
        }
    } else {
        fprintf(stderr, "reference: %s\n", err.msg);
    }
    ts_seq_reset(&seq, rt->kv);
    ts_seq_free(&seq);
    ts_composer_destroy(c);
    for (int i = 0; i < n; i++) free(owned[i]);
    free(prefix);
    return n_got;
}

static void register_docs(ts_engine *e, const fcase *f, const char *salt,
                          char ids[][TS_CHUNK_ID_HEX + 1]) {
    for (int d = 0; d < f->n_docs; d++) {
        ts_chunk_desc desc;
        ts_err err;
        ts_status s = ts_engine_chunk_register(e, f->docs[d], NULL, 0, "document", salt,
                                               salt ? strlen(salt) : 0, &desc, &err);
        CHECKF(s == TS_OK, "register: %s", err.msg);
        memcpy(ids[d], desc.id, sizeof desc.id);
        CHECK(desc.n_tokens > 0 && strlen(desc.id) == TS_CHUNK_ID_HEX);
    }
}

static void check_modes(ts_engine *e, fcase *cs, int n_cases) {
    const int max_tok = 6;
    for (int i = 0; i < n_cases; i++) {
        fcase *f = &cs[i];
        char ids[16][TS_CHUNK_ID_HEX + 1];
        register_docs(e, f, NULL, ids);
        ts_prompt_part p[40];
        ts_err err;
        result plain, exact, reuse, again;
        int n = build_parts(f, NULL, p);
        CHECK(run1(e, p, n, TS_CHUNKS_EXACT, NULL, max_tok, &plain, &err) == TS_OK);
        n = build_parts(f, ids, p);
        CHECKF(run1(e, p, n, TS_CHUNKS_EXACT, NULL, max_tok, &exact, &err) == TS_OK, "%s", err.msg);
        CHECKF(exact.n_toks == plain.n_toks && !memcmp(exact.toks, plain.toks, sizeof(int32_t) * (size_t)plain.n_toks),
               "case %d: EXACT with chunks differs from the plain prompt", i);
        CHECKF(run1(e, p, n, TS_CHUNKS_REUSE, NULL, max_tok, &reuse, &err) == TS_OK, "%s", err.msg);
        int32_t ref[8];
        int n_ref = reference_reuse(e, f, ref, max_tok);
        CHECKF(n_ref == max_tok && reuse.n_toks == max_tok &&
                   !memcmp(ref, reuse.toks, sizeof(int32_t) * max_tok),
               "case %d: engine REUSE tokens differ from the composer's REUSE", i);
        /* the same placement again: its blocks come from the prefix cache */
        CHECK(run1(e, p, n, TS_CHUNKS_REUSE, NULL, max_tok, &again, &err) == TS_OK);
        CHECKF(again.n_toks == reuse.n_toks && !memcmp(again.toks, reuse.toks, sizeof(int32_t) * (size_t)reuse.n_toks),
               "case %d: a repeated REUSE request differs", i);
        CHECKF(again.n_cached > reuse.n_cached, "case %d: repeated REUSE reused %d cached tokens (first %d)",
               i, again.n_cached, reuse.n_cached);
        /* the plain prompt again: must not pick up placed blocks */
        result plain2;
        n = build_parts(f, NULL, p);
        CHECK(run1(e, p, n, TS_CHUNKS_EXACT, NULL, max_tok, &plain2, &err) == TS_OK);
        CHECKF(plain2.n_toks == plain.n_toks && !memcmp(plain2.toks, plain.toks, sizeof(int32_t) * (size_t)plain.n_toks),
               "case %d: the plain prompt changed after REUSE runs (cache contamination)", i);
        /* REPAIR with every chunk token recomputed is a full prefill */
        result rep;
        n = build_parts(f, ids, p);
        CHECK(submit1(e, p, n, TS_CHUNKS_REPAIR, 1.0f, NULL, max_tok, &rep, &err) == TS_OK &&
              ts_engine_run(e, &err) == TS_OK);
        CHECKF(rep.n_toks == plain.n_toks && !memcmp(rep.toks, plain.toks, sizeof(int32_t) * (size_t)plain.n_toks),
               "case %d: REPAIR 1.0 differs from the plain prompt", i);
        ts_buf_free(&plain.text);
        ts_buf_free(&plain2.text);
        ts_buf_free(&exact.text);
        ts_buf_free(&reuse.text);
        ts_buf_free(&again.text);
        ts_buf_free(&rep.text);
    }
    ts_engine_stats st;
    ts_engine_step(e, NULL, NULL);
    ts_engine_get_stats(e, &st);
    CHECKF(st.chunk_tokens_reused > 0 && st.chunk_hits > 0, "stats: %llu reused, %llu hits",
           (unsigned long long)st.chunk_tokens_reused, (unsigned long long)st.chunk_hits);
    check_pool_clean(e, "modes");
}

static void check_api_errors(ts_engine *e, fcase *f) {
    char ids[16][TS_CHUNK_ID_HEX + 1], ids_b[16][TS_CHUNK_ID_HEX + 1];
    register_docs(e, f, "tenant-a", ids);
    register_docs(e, f, "tenant-b", ids_b);
    CHECK(strcmp(ids[0], ids_b[0]) != 0);           /* per salt */
    char again[1][TS_CHUNK_ID_HEX + 1];
    fcase one = *f;
    one.n_docs = 1;
    register_docs(e, &one, "tenant-a", again);
    CHECK(!strcmp(again[0], ids[0]));               /* content-addressed */
    ts_err err;
    ts_chunk_desc d;
    CHECK(ts_engine_chunk_get(e, ids[0], "tenant-a", 8, &d, &err) == TS_OK && !strcmp(d.id, ids[0]));
    CHECKF(d.hits == 0, "a chunk no request cited has %llu hits", (unsigned long long)d.hits);
    CHECK(ts_engine_chunk_get(e, ids[0], "tenant-b", 8, &d, &err) == TS_ERR_NOTFOUND);
    CHECK(ts_engine_chunk_get(e, ids[0], NULL, 0, &d, &err) == TS_ERR_NOTFOUND);
    CHECK(ts_engine_chunk_get(e, "zz", "tenant-a", 8, &d, &err) == TS_ERR_INVALID);
    ts_chunk_desc *all = NULL;
    size_t n_all = 0;
    CHECK(ts_engine_chunk_list(e, "tenant-b", 8, &all, &n_all, &err) == TS_OK);
    CHECKF((int)n_all == f->n_docs, "tenant-b lists %zu chunks, registered %d", n_all, f->n_docs);
    for (size_t i = 0; i < n_all; i++) CHECK(strcmp(all[i].id, ids[0]) != 0);
    free(all);
    ts_prompt_part p[40];
    result r;
    int n = build_parts(f, ids, p);
    CHECK(run1(e, p, n, TS_CHUNKS_REUSE, "tenant-b", 2, &r, &err) == TS_ERR_NOTFOUND);
    CHECK(strstr(err.msg, "not registered") != NULL);
    CHECK(run1(e, p, n, TS_CHUNKS_REUSE, "tenant-a", 2, &r, &err) == TS_OK && r.n_toks == 2);
    ts_buf_free(&r.text);
    CHECK(ts_engine_chunk_get(e, ids[0], "tenant-a", 8, &d, &err) == TS_OK);
    CHECKF(d.hits == 1, "one request cited the chunk: %llu hits", (unsigned long long)d.hits);
    ts_prompt_part bad[2] = {{.text = "x", .chunk = ids[0]}, {.text = "y"}};
    CHECK(run1(e, bad, 2, TS_CHUNKS_REUSE, "tenant-a", 2, &r, &err) == TS_ERR_INVALID);
    ts_prompt_part unknown[2] = {{.chunk = "0000000000000000000000000000000000000000000000000000000000000000"},
                                 {.text = "y"}};
    CHECK(run1(e, unknown, 2, TS_CHUNKS_REUSE, NULL, 2, &r, &err) == TS_ERR_NOTFOUND);
    /* a composition longer than the context */
    int max_pos = ts_engine_runtime(e)->model->cfg.max_pos;
    int reps = max_pos / (d.n_tokens > 0 ? d.n_tokens : 1) + 2;
    ts_prompt_part *lots = calloc((size_t)reps + 1, sizeof *lots);
    for (int i = 0; i < reps; i++) lots[i].chunk = ids[0];
    lots[reps].text = "?";
    CHECK(run1(e, lots, reps + 1, TS_CHUNKS_REUSE, "tenant-a", 2, &r, &err) == TS_ERR_CAPACITY);
    CHECK(strstr(err.msg, "context") != NULL);
    free(lots);
    CHECK(ts_engine_chunk_remove(e, ids[0], "tenant-b", 8, &err) == TS_ERR_NOTFOUND);
    CHECK(ts_engine_chunk_remove(e, ids[0], "tenant-a", 8, &err) == TS_OK);
    CHECK(ts_engine_chunk_get(e, ids[0], "tenant-a", 8, &d, &err) == TS_ERR_NOTFOUND);
    CHECK(run1(e, p, n, TS_CHUNKS_REUSE, "tenant-a", 2, &r, &err) == TS_ERR_NOTFOUND);
    check_pool_clean(e, "api");
}

/* A registry budget that holds the tokens but no chunk's KV: the chunks
 * are computed in context instead, which is the plain prompt's answer. */
static void check_budget(const char *dir, fcase *f) {
    ts_engine *big = make(dir, f->system, 0, NULL), *tiny = make(dir, f->system, 64 << 10, NULL);
    CHECK(big && tiny);
    if (big && tiny) {
        char ids[16][TS_CHUNK_ID_HEX + 1], ids2[16][TS_CHUNK_ID_HEX + 1];
        register_docs(big, f, NULL, ids);
        register_docs(tiny, f, NULL, ids2);
        ts_prompt_part p[40];
        int n = build_parts(f, ids, p);
        result a, b;
        ts_err err;
        int n_plain = build_parts(f, NULL, p);
        CHECK(run1(big, p, n_plain, TS_CHUNKS_EXACT, NULL, 4, &a, &err) == TS_OK);
        n = build_parts(f, ids2, p);
        ts_status s = run1(tiny, p, n, TS_CHUNKS_REUSE, NULL, 4, &b, &err);
        CHECKF(s == TS_OK, "tiny budget: %s", err.msg);
        CHECKF(b.n_toks == 4 && !memcmp(a.toks, b.toks, sizeof(int32_t) * 4),
               "tiny budget: chunks computed in context differ from the plain prompt");
        check_pool_clean(tiny, "budget");
        ts_buf_free(&a.text);
        ts_buf_free(&b.text);
    }
    ts_engine_destroy(big);
    ts_engine_destroy(tiny);
}

/* Engine 1 registers and computes; engine 2 cites the ids without having
 * registered them and loads them from the shared directory store. */
static void check_store(const char *dir, fcase *f) {
    char tmp[] = "/tmp/ts-echunks-XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK(!"mkdtemp");
        return;
    }
    ts_engine *e1 = make(dir, f->system, 0, tmp), *e2 = make(dir, f->system, 0, tmp);
    CHECK(e1 && e2);
    if (e1 && e2) {
        char ids[16][TS_CHUNK_ID_HEX + 1];
        register_docs(e1, f, NULL, ids);
        ts_prompt_part p[40];
        int n = build_parts(f, ids, p);
        result a, b;
        ts_err err;
        CHECK(run1(e1, p, n, TS_CHUNKS_REUSE, NULL, 5, &a, &err) == TS_OK);
        ts_status s = run1(e2, p, n, TS_CHUNKS_REUSE, NULL, 5, &b, &err);
        CHECKF(s == TS_OK, "second engine: %s", err.msg);
        CHECKF(a.n_toks == b.n_toks && !memcmp(a.toks, b.toks, sizeof(int32_t) * (size_t)a.n_toks),
               "second engine's answer differs");
        ts_engine_stats st;
        ts_engine_step(e2, NULL, NULL);
        ts_engine_get_stats(e2, &st);
        CHECKF(st.chunk_store_loads >= (uint64_t)f->n_docs && st.chunk_store_ok,
               "second engine loaded %llu chunks from the store",
               (unsigned long long)st.chunk_store_loads);
        ts_buf_free(&a.text);
        ts_buf_free(&b.text);
    }
    ts_engine_destroy(e1);
    ts_engine_destroy(e2);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

/* Requests citing the same chunks at the same places, with different
 * questions, run together: they share the placed blocks, the step uses
 * cascade attention, and each answer is the one it gets alone. Redis
 * configured but down: the engine works and says the store is down. */
static void check_shared(const char *dir, fcase *cs, int n_cases) {
    ts_engine_opts o = ts_engine_opts_default();
    o.n_threads = 2;
    o.exact = true;
    o.cascade = 1;
    o.chunk_prefix = cs[0].system;
    o.chunk_redis = "127.0.0.1:1"; /* nothing listens there */
    ts_engine *e = NULL;
    ts_err err;
    CHECK(ts_engine_create(dir, &o, &e, &err) == TS_OK);
    if (!e) return;
    fcase *f = &cs[0];
    char ids[16][TS_CHUNK_ID_HEX + 1];
    register_docs(e, f, NULL, ids);
    enum { N = 4 };
    ts_prompt_part p[N][40];
    int n[N];
    result alone[N], together[N];
    for (int i = 0; i < N; i++) {
        n[i] = build_parts(f, ids, p[i]);
        p[i][n[i] - 1].text = cs[i % n_cases].tail; /* another question */
        CHECK(run1(e, p[i], n[i], TS_CHUNKS_REPAIR, NULL, 4, &alone[i], &err) == TS_OK);
    }
    ts_engine_stats before, after;
    ts_engine_get_stats(e, &before);
    for (int i = 0; i < N; i++)
        CHECK(submit1(e, p[i], n[i], TS_CHUNKS_REPAIR, -1.0f, NULL, 4, &together[i], &err) == TS_OK);
    CHECK(ts_engine_run(e, &err) == TS_OK);
    ts_engine_get_stats(e, &after);
    for (int i = 0; i < N; i++) {
        CHECKF(together[i].n_toks == 4 && !memcmp(together[i].toks, alone[i].toks, 4 * sizeof(int32_t)),
               "shared: request %d differs from its run alone", i);
        /* the repair layout does not depend on the question: everything up to
         * the question's block comes from the cache */
        CHECKF(together[i].n_cached >= together[i].n_prompt - 48,
               "shared: request %d reused %d of %d prompt tokens", i, together[i].n_cached,
               together[i].n_prompt);
        ts_buf_free(&alone[i].text);
        ts_buf_free(&together[i].text);
    }
    CHECKF(after.cascade_steps > before.cascade_steps, "shared: no cascade step");
    CHECK(!after.chunk_store_ok);
    check_pool_clean(e, "shared");
    ts_engine_destroy(e);
}

/* A pool that holds about two of these prompts: six chunk-citing requests
 * at once are admitted in turns and preempted while decoding, and each
 * still gets the answer it gets alone. */
static void check_preemption(const char *dir, fcase *cs, int n_cases) {
    enum { N = 6, GEN = 40 };
    ts_engine *big = make(dir, cs[0].system, 0, NULL);
    CHECK(big != NULL);
    if (!big) return;
    ts_prompt_part p[N][40];
    int n[N], longest = 0;
    char ids[N][16][TS_CHUNK_ID_HEX + 1];
    result alone[N], together[N];
    ts_err err;
    for (int i = 0; i < N; i++) {
        fcase *f = &cs[i % n_cases];
        register_docs(big, f, NULL, ids[i]);
        n[i] = build_parts(f, ids[i], p[i]);
        CHECKF(run1(big, p[i], n[i], TS_CHUNKS_REPAIR, NULL, GEN, &alone[i], &err) == TS_OK, "%s", err.msg);
        if (alone[i].n_prompt > longest) longest = alone[i].n_prompt;
    }
    ts_engine_destroy(big);
    /* room for two of the longest prompts, not for their generations too */
    ts_engine_opts o = ts_engine_opts_default();
    o.n_threads = 2;
    o.exact = true;
    o.chunk_prefix = cs[0].system;
    o.max_batch_tokens = 96;
    o.chunk_bytes = 64u << 20;
    ts_runtime *rt0 = NULL;
    const ts_model_config *mc = NULL;
    ts_engine *e = NULL;
    CHECK(ts_engine_create(dir, &o, &e, &err) == TS_OK);
    if (e) {
        rt0 = ts_engine_runtime(e);
        mc = &rt0->model->cfg;
        size_t per_tok = (size_t)mc->n_layers * mc->n_kv_heads * mc->head_dim * 4 * 2;
        ts_engine_destroy(e);
        o.kv_bytes = (uint64_t)(2 * longest + GEN / 2) * per_tok;
        e = NULL;
        CHECKF(ts_engine_create(dir, &o, &e, &err) == TS_OK, "%s", err.msg);
    }
    if (!e) return;
    for (int i = 0; i < N; i++) {
        char again[16][TS_CHUNK_ID_HEX + 1];
        register_docs(e, &cs[i % n_cases], NULL, again);
        CHECK(!strcmp(again[0], ids[i][0])); /* same content, same id in another engine */
    }
    ts_engine_stats before, after;
    ts_engine_get_stats(e, &before);
    for (int i = 0; i < N; i++)
        CHECK(submit1(e, p[i], n[i], TS_CHUNKS_REPAIR, -1.0f, NULL, GEN, &together[i], &err) == TS_OK);
    CHECK(ts_engine_run(e, &err) == TS_OK);
    ts_engine_step(e, NULL, &err);
    ts_engine_get_stats(e, &after);
    for (int i = 0; i < N; i++) {
        CHECKF(together[i].n_toks == alone[i].n_toks &&
                   !memcmp(together[i].toks, alone[i].toks, sizeof(int32_t) * (size_t)alone[i].n_toks),
               "preemption: request %d differs from its run alone", i);
        ts_buf_free(&alone[i].text);
        ts_buf_free(&together[i].text);
    }
    CHECKF(after.preemptions > before.preemptions, "no preemption happened");
    check_pool_clean(e, "preemption");
    ts_engine_destroy(e);
}

/* Chunks back to back (no text between them), at the start and in the
 * middle: every mode completes; REPAIR 1.0 is the plain prompt. */
static void check_adjacent(ts_engine *e, fcase *f) {
    char ids[16][TS_CHUNK_ID_HEX + 1];
    register_docs(e, f, NULL, ids);
    ts_prompt_part p[40], plain[40];
    int n = 0, np = 0;
    for (int d = 0; d < f->n_docs; d++) {
        p[n++] = (ts_prompt_part){.chunk = ids[d]};
        plain[np++] = (ts_prompt_part){.text = f->docs[d]};
    }
    p[n++] = (ts_prompt_part){.text = f->tail};
    plain[np++] = (ts_prompt_part){.text = f->tail};
    result want, got;
    ts_err err;
    CHECK(run1(e, plain, np, TS_CHUNKS_EXACT, NULL, 4, &want, &err) == TS_OK);
    for (int mode = TS_CHUNKS_EXACT; mode <= TS_CHUNKS_REPAIR; mode++) {
        ts_status s = run1(e, p, n, mode, NULL, 4, &got, &err);
        CHECKF(s == TS_OK && got.n_toks == 4 && !strcmp(got.finish, "length"),
               "adjacent chunks, mode %d: %s", mode, s ? err.msg : got.finish);
        ts_buf_free(&got.text);
    }
    CHECK(submit1(e, p, n, TS_CHUNKS_REPAIR, 1.0f, NULL, 4, &got, &err) == TS_OK &&
          ts_engine_run(e, &err) == TS_OK);
    CHECKF(got.n_toks == want.n_toks && !memcmp(got.toks, want.toks, sizeof(int32_t) * (size_t)want.n_toks),
           "adjacent chunks: REPAIR 1.0 differs from the plain prompt");
    ts_buf_free(&got.text);
    ts_buf_free(&want.text);
    check_pool_clean(e, "adjacent");
}

int main(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/facts-qwen3-14m", ts_test_shared());
    bool light = getenv("TS_TEST_LIGHT") != NULL;
    fcase cs[8];
    int n_cases = load_cases(dir, cs, 8);
    CHECK(n_cases > 0);
    if (n_cases > 0) {
        ts_engine *e = make(dir, cs[0].system, 0, NULL);
        CHECK(e != NULL);
        if (e) {
            check_modes(e, cs, light && n_cases > 2 ? 2 : n_cases);
            check_api_errors(e, &cs[0]);
            for (int i = 0; i < n_cases; i++)
                if (cs[i].n_docs >= 3) {
                    check_adjacent(e, &cs[i]);
                    break;
                }
        }
        ts_engine_destroy(e);
        check_budget(dir, &cs[1 % n_cases]);
        check_store(dir, &cs[0]);
        check_shared(dir, cs, n_cases);
        check_preemption(dir, cs, n_cases);
    }
    for (int i = 0; i < n_cases; i++) free_case(&cs[i]);
    return ts_test_done("test_engine_chunks");
}
