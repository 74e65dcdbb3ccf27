/* The chunk registry: a chained hash table from id to chunk, an LRU list of
 * findable chunks (most recent at the head), reference counts, and a byte
 * budget enforced by evicting unreferenced chunks from the LRU tail. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "kv/chunk.h"

struct ts_chunk {
    ts_chunk_id id;
    ts_chunk_type type;
    uint8_t model_fp[32];
    uint8_t enc_id[32];
    int32_t n_tokens;
    int32_t *tokens;        /* [n_tokens], owned */
    ts_chunk_shape shape;   /* zeros until KV is attached */
    float *kv;              /* K then V, each [n_layers][n_tokens][kvh*hd]; owned */
    uint64_t bytes;         /* counted against the budget */
    uint64_t hits, last_use_ms;
    uint64_t uses;          /* ts_chunk_note_use calls */
    int32_t refs;
    bool removed;           /* out of the table and the LRU; freed at refs == 0 */
    ts_chunk *hnext;        /* hash chain */
    ts_chunk *prev, *next;  /* LRU list (findable chunks only) */
};

struct ts_chunk_reg {
    pthread_mutex_t mu;
    ts_chunk **buckets;
    size_t n_buckets;       /* power of two */
    uint32_t n_chunks, n_pending;
    ts_chunk *lru_head, *lru_tail;
    ts_chunk *pending;      /* removed but referenced, linked by prev/next */
    uint64_t budget, bytes_used;
    uint64_t hits, misses, evictions, rejected;
    bool keep_tokens;       /* evict KV first, whole chunks only when that is not enough */
};

static const char id_tag[] = "tessera.chunk.v1"; /* versions the id encoding */
static const char enc_tag[] = "tessera.chunk.enc.v1";

/* ---- ids ---- */

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* SHA-256 of: tag (with its NUL), head[n_head], n as u32, tokens as i32,
 * all little-endian. Fixed-size fields then a counted list: injective. */
static ts_status digest(const char *tag, size_t tag_len, const uint8_t *head, size_t n_head,
                        const int32_t *tokens, size_t n, uint8_t out[32]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return TS_ERR_NOMEM;
    uint8_t len_le[4];
    put_le32(len_le, (uint32_t)n);
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, tag, tag_len) &&
             EVP_DigestUpdate(ctx, head, n_head) && EVP_DigestUpdate(ctx, len_le, 4);
    uint8_t buf[256];
    for (size_t i = 0; ok && i < n;) {
        size_t m = 0;
        for (; i < n && m + 4 <= sizeof buf; i++, m += 4) put_le32(buf + m, (uint32_t)tokens[i]);
        ok = EVP_DigestUpdate(ctx, buf, m);
    }
    unsigned len = 0;
    if (ok) ok = EVP_DigestFinal_ex(ctx, out, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? TS_OK : TS_ERR_NOMEM;
}

ts_status ts_chunk_id_compute(const uint8_t model_fp[32], const uint8_t enc_id[32],
                              const int32_t *tokens, size_t n, ts_chunk_id *out) {
    if (!model_fp || !enc_id || !out || (n > 0 && !tokens) || n > TS_CHUNK_MAX_TOKENS)
        return TS_ERR_INVALID;
    uint8_t head[64];
    memcpy(head, model_fp, 32);
    memcpy(head + 32, enc_id, 32);
    return digest(id_tag, sizeof id_tag, head, sizeof head, tokens, n, out->b);
}

ts_status ts_chunk_encoding_id(const uint8_t model_fp[32], const int32_t *prefix, size_t n,
                               uint8_t out[32]) {
    if (!model_fp || !out || (n > 0 && !prefix) || n > TS_CHUNK_MAX_TOKENS) return TS_ERR_INVALID;
    return digest(enc_tag, sizeof enc_tag, model_fp, 32, prefix, n, out);
}

void ts_chunk_id_to_hex(const ts_chunk_id *id, char out[TS_CHUNK_HEX_LEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < TS_CHUNK_ID_BYTES; i++) {
        out[2 * i] = digits[id->b[i] >> 4];
        out[2 * i + 1] = digits[id->b[i] & 15];
    }
    out[TS_CHUNK_HEX_LEN] = '\0';
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

ts_status ts_chunk_id_from_hex(const char *hex, ts_chunk_id *out, ts_err *err) {
    if (!hex || !out) return ts_fail(err, TS_ERR_INVALID, "chunk id: missing");
    size_t len = strnlen(hex, TS_CHUNK_HEX_LEN + 1);
    if (len != TS_CHUNK_HEX_LEN)
        return ts_fail(err, TS_ERR_INVALID, "chunk id: expected %d hex characters, got %s%zu",
                       TS_CHUNK_HEX_LEN, len > TS_CHUNK_HEX_LEN ? "more than " : "",
                       len > TS_CHUNK_HEX_LEN ? (size_t)TS_CHUNK_HEX_LEN : len);
    for (int i = 0; i < TS_CHUNK_ID_BYTES; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return ts_fail(err, TS_ERR_INVALID, "chunk id: character %d is not a hex digit",
                           hi < 0 ? 2 * i : 2 * i + 1);
        out->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return TS_OK;
}

static const char *const type_names[TS_CHUNK_N_TYPES] = {"system", "document", "code", "rag",
                                                         "query"};

const char *ts_chunk_type_name(ts_chunk_type t) {
    return (unsigned)t < TS_CHUNK_N_TYPES ? type_names[t] : "unknown";
}

ts_status ts_chunk_type_parse(const char *s, ts_chunk_type *out, ts_err *err) {
    for (int i = 0; s && i < TS_CHUNK_N_TYPES; i++) {
        if (strcmp(s, type_names[i]) == 0) {
            *out = (ts_chunk_type)i;
            return TS_OK;
        }
    }
    return ts_fail(err, TS_ERR_INVALID,
                   "chunk type '%.40s' is not one of system, document, code, rag, query",
                   s ? s : "");
}

uint64_t ts_chunk_kv_bytes(ts_chunk_shape shape, int64_t n_tokens) {
    if (shape.n_layers <= 0 || shape.n_kv_heads <= 0 || shape.head_dim <= 0 || n_tokens <= 0)
        return 0;
    /* each factor < 2^31, so check step by step against 2^62 */
    const uint64_t lim = (uint64_t)1 << 62;
    uint64_t b = (uint64_t)shape.n_layers * (uint64_t)shape.n_kv_heads;
    if (b > lim / (uint64_t)shape.head_dim) return 0;
    b *= (uint64_t)shape.head_dim;
    if (b > lim / (uint64_t)n_tokens) return 0;
    b *= (uint64_t)n_tokens;
    if (b > lim / 4) return 0;
    return b * 4;
}

/* ---- registry internals (called with the mutex held) ---- */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t bucket_of(const ts_chunk_reg *reg, const ts_chunk_id *id) {
    uint64_t h; /* SHA-256 output is uniform: its first bytes will do */
    memcpy(&h, id->b, sizeof h);
    return (size_t)(h & (reg->n_buckets - 1));
}

static ts_chunk *table_find(const ts_chunk_reg *reg, const ts_chunk_id *id) {
    for (ts_chunk *c = reg->buckets[bucket_of(reg, id)]; c; c = c->hnext)
        if (memcmp(c->id.b, id->b, TS_CHUNK_ID_BYTES) == 0) return c;
    return NULL;
}

static void table_unlink(ts_chunk_reg *reg, ts_chunk *c) {
    ts_chunk **pp = &reg->buckets[bucket_of(reg, &c->id)];
    while (*pp && *pp != c) pp = &(*pp)->hnext;
    if (*pp) *pp = c->hnext;
    c->hnext = NULL;
}

/* Doubles the bucket array when the table is more than twice as full as it
 * is wide; a failed allocation just leaves longer chains. */
static void table_maybe_grow(ts_chunk_reg *reg) {
    if (reg->n_chunks < 2 * reg->n_buckets || reg->n_buckets > ((size_t)1 << 28)) return;
    size_t nb = reg->n_buckets * 2;
    ts_chunk **b = calloc(nb, sizeof *b);
    if (!b) return;
    ts_chunk **old = reg->buckets;
    size_t n_old = reg->n_buckets;
    reg->buckets = b;
    reg->n_buckets = nb;
    for (size_t i = 0; i < n_old; i++) {
        for (ts_chunk *c = old[i], *nx; c; c = nx) {
            nx = c->hnext;
            size_t k = bucket_of(reg, &c->id);
            c->hnext = b[k];
            b[k] = c;
        }
    }
    free(old);
}

static void lru_unlink(ts_chunk_reg *reg, ts_chunk *c) {
    if (c->prev) c->prev->next = c->next; else reg->lru_head = c->next;
    if (c->next) c->next->prev = c->prev; else reg->lru_tail = c->prev;
    c->prev = c->next = NULL;
}

static void lru_push_front(ts_chunk_reg *reg, ts_chunk *c) {
    c->prev = NULL;
    c->next = reg->lru_head;
    if (reg->lru_head) reg->lru_head->prev = c; else reg->lru_tail = c;
    reg->lru_head = c;
}

static void touch(ts_chunk_reg *reg, ts_chunk *c) {
    c->last_use_ms = now_ms();
    if (reg->lru_head != c) {
        lru_unlink(reg, c);
        lru_push_front(reg, c);
    }
}

static void chunk_free(ts_chunk *c) {
    if (!c) return;
    free(c->tokens);
    free(c->kv);
    free(c);
}

/* Takes a findable chunk out of the table and the LRU list. */
static void detach(ts_chunk_reg *reg, ts_chunk *c) {
    table_unlink(reg, c);
    lru_unlink(reg, c);
    c->removed = true;
    reg->n_chunks--;
}

static void pending_push(ts_chunk_reg *reg, ts_chunk *c) {
    c->prev = NULL;
    c->next = reg->pending;
    if (reg->pending) reg->pending->prev = c;
    reg->pending = c;
    reg->n_pending++;
}

static void pending_unlink(ts_chunk_reg *reg, ts_chunk *c) {
    if (c->prev) c->prev->next = c->next; else reg->pending = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    reg->n_pending--;
}

static void destroy_detached(ts_chunk_reg *reg, ts_chunk *c) {
    reg->bytes_used -= c->bytes;
    chunk_free(c);
}

/* Evicts unreferenced chunks, least recently used first, until `extra` more
 * bytes fit in the budget. Returns whether they fit. */
static bool make_room(ts_chunk_reg *reg, uint64_t extra) {
    if (!reg->budget) return true;
    /* keep_tokens: first drop the KV of unreferenced chunks (they stay
     * registered and are recomputed on their next use) */
    for (ts_chunk *c = reg->lru_tail; reg->keep_tokens && c && reg->bytes_used + extra > reg->budget;
         c = c->prev) {
        if (c->refs || !c->kv) continue;
        uint64_t kv_bytes = 2 * ts_chunk_kv_bytes(c->shape, c->n_tokens);
        free(c->kv);
        c->kv = NULL;
        c->shape = (ts_chunk_shape){0, 0, 0};
        c->bytes -= kv_bytes;
        reg->bytes_used -= kv_bytes;
        reg->evictions++;
    }
    ts_chunk *c = reg->lru_tail;
    while (reg->bytes_used + extra > reg->budget && c) {
        ts_chunk *prev = c->prev;
        if (c->refs == 0) {
            detach(reg, c);
            destroy_detached(reg, c);
            reg->evictions++;
        }
        c = prev;
    }
    return reg->bytes_used + extra <= reg->budget;
}

void ts_chunk_reg_set_keep_tokens(ts_chunk_reg *reg, bool keep) {
    if (!reg) return;
    pthread_mutex_lock(&reg->mu);
    reg->keep_tokens = keep;
    pthread_mutex_unlock(&reg->mu);
}

/* ---- registry API ---- */

ts_status ts_chunk_reg_create(uint64_t budget_bytes, ts_chunk_reg **out, ts_err *err) {
    if (!out) return ts_fail(err, TS_ERR_INVALID, "chunk registry: no output pointer");
    *out = NULL;
    ts_chunk_reg *reg = calloc(1, sizeof *reg);
    if (!reg) return ts_fail(err, TS_ERR_NOMEM, "chunk registry: out of memory");
    reg->n_buckets = 256;
    reg->buckets = calloc(reg->n_buckets, sizeof *reg->buckets);
    if (!reg->buckets || pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg->buckets);
        free(reg);
        return ts_fail(err, TS_ERR_NOMEM, "chunk registry: out of memory");
    }
    reg->budget = budget_bytes;
    *out = reg;
    return TS_OK;
}

void ts_chunk_reg_destroy(ts_chunk_reg *reg) {
    if (!reg) return;
    for (size_t i = 0; i < reg->n_buckets; i++) {
        for (ts_chunk *c = reg->buckets[i], *nx; c; c = nx) {
            nx = c->hnext;
            chunk_free(c);
        }
    }
    for (ts_chunk *c = reg->pending, *nx; c; c = nx) { /* their handles die too */
        nx = c->next;
        chunk_free(c);
    }
    free(reg->buckets);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

ts_status ts_chunk_reg_register(ts_chunk_reg *reg, const int32_t *tokens, size_t n,
                                ts_chunk_type type, const uint8_t enc_id[32],
                                const uint8_t model_fp[32], ts_chunk_id *id, bool *existed,
                                ts_chunk **out, ts_err *err) {
    if (out) *out = NULL;
    if (!reg || !tokens || !enc_id || !model_fp || !id)
        return ts_fail(err, TS_ERR_INVALID, "chunk register: missing argument");
    if (n == 0 || n > TS_CHUNK_MAX_TOKENS)
        return ts_fail(err, TS_ERR_INVALID, "chunk register: %zu tokens (must be 1 to %d)", n,
                       TS_CHUNK_MAX_TOKENS);
    if ((unsigned)type >= TS_CHUNK_N_TYPES)
        return ts_fail(err, TS_ERR_INVALID, "chunk register: unknown chunk type %d", (int)type);
    ts_chunk_id cid;
    ts_status st = ts_chunk_id_compute(model_fp, enc_id, tokens, n, &cid);
    if (st != TS_OK) return ts_fail(err, st, "chunk register: cannot compute the chunk id");
    *id = cid;

    /* prepared outside the lock: the copy may be large */
    ts_chunk *c = calloc(1, sizeof *c);
    int32_t *tok = malloc(n * sizeof *tok);
    if (!c || !tok) {
        free(c);
        free(tok);
        return ts_fail(err, TS_ERR_NOMEM, "chunk register: out of memory for %zu tokens", n);
    }
    memcpy(tok, tokens, n * sizeof *tok);
    c->id = cid;
    c->type = type;
    memcpy(c->model_fp, model_fp, 32);
    memcpy(c->enc_id, enc_id, 32);
    c->n_tokens = (int32_t)n;
    c->tokens = tok;
    c->bytes = sizeof *c + n * sizeof *tok;

    pthread_mutex_lock(&reg->mu);
    ts_chunk *have = table_find(reg, &cid);
    if (have) {
        have->hits++;
        reg->hits++;
        touch(reg, have);
        if (out) {
            have->refs++;
            *out = have;
        }
        pthread_mutex_unlock(&reg->mu);
        chunk_free(c);
        if (existed) *existed = true;
        return TS_OK;
    }
    if (!make_room(reg, c->bytes)) {
        pthread_mutex_unlock(&reg->mu);
        chunk_free(c);
        return ts_fail(err, TS_ERR_CAPACITY,
                       "chunk register: %zu tokens do not fit the registry budget of %llu bytes",
                       n, (unsigned long long)reg->budget);
    }
    reg->misses++;
    size_t k = bucket_of(reg, &cid);
    c->hnext = reg->buckets[k];
    reg->buckets[k] = c;
    reg->n_chunks++;
    reg->bytes_used += c->bytes;
    c->last_use_ms = now_ms();
    lru_push_front(reg, c);
    table_maybe_grow(reg);
    if (out) {
        c->refs++;
        *out = c;
    }
    pthread_mutex_unlock(&reg->mu);
    if (existed) *existed = false;
    return TS_OK;
}

static bool shape_eq(ts_chunk_shape a, ts_chunk_shape b) {
    return a.n_layers == b.n_layers && a.n_kv_heads == b.n_kv_heads && a.head_dim == b.head_dim;
}

ts_status ts_chunk_attach_kv(ts_chunk_reg *reg, ts_chunk *c, ts_chunk_shape shape,
                             const float *k, const float *v, ts_err *err) {
    if (!reg || !c || !k || !v) return ts_fail(err, TS_ERR_INVALID, "chunk attach: missing argument");
    uint64_t half = ts_chunk_kv_bytes(shape, c->n_tokens); /* n_tokens is immutable */
    if (!half || half > SIZE_MAX / 2)
        return ts_fail(err, TS_ERR_INVALID,
                       "chunk attach: bad KV shape (%d layers, %d kv heads, head_dim %d)",
                       (int)shape.n_layers, (int)shape.n_kv_heads, (int)shape.head_dim);
    pthread_mutex_lock(&reg->mu);
    bool done = c->kv != NULL, same = shape_eq(c->shape, shape), removed = c->removed;
    pthread_mutex_unlock(&reg->mu);
    if (done)
        return same ? TS_OK
                    : ts_fail(err, TS_ERR_INVALID,
                              "chunk attach: the chunk already holds KV of another shape");
    if (removed) return ts_fail(err, TS_ERR_INVALID, "chunk attach: the chunk was removed");

    float *kv = malloc((size_t)half * 2);
    if (!kv)
        return ts_fail(err, TS_ERR_NOMEM, "chunk attach: out of memory for %llu KV bytes",
                       (unsigned long long)half * 2);
    memcpy(kv, k, (size_t)half);
    memcpy((char *)kv + half, v, (size_t)half);

    pthread_mutex_lock(&reg->mu);
    ts_status st = TS_OK;
    if (c->kv) { /* another thread attached meanwhile */
        st = shape_eq(c->shape, shape) ? TS_OK : TS_ERR_INVALID;
    } else if (c->removed) {
        st = TS_ERR_INVALID;
    } else if (!make_room(reg, half * 2)) {
        st = TS_ERR_CAPACITY;
    } else {
        c->kv = kv;
        kv = NULL;
        c->shape = shape;
        c->bytes += half * 2;
        reg->bytes_used += half * 2;
    }
    uint64_t budget = reg->budget;
    pthread_mutex_unlock(&reg->mu);
    free(kv);
    if (st == TS_ERR_CAPACITY)
        return ts_fail(err, st,
                       "chunk attach: %llu KV bytes do not fit the registry budget of %llu bytes "
                       "(referenced chunks cannot be evicted)",
                       (unsigned long long)half * 2, (unsigned long long)budget);
    if (st != TS_OK)
        return ts_fail(err, st, "chunk attach: the chunk was removed or holds KV of another shape");
    return TS_OK;
}

ts_status ts_chunk_reg_lookup(ts_chunk_reg *reg, const ts_chunk_id *id,
                              const uint8_t model_fp[32], ts_chunk **out, ts_err *err) {
    if (out) *out = NULL;
    if (!reg || !id || !out) return ts_fail(err, TS_ERR_INVALID, "chunk lookup: missing argument");
    char hex[TS_CHUNK_HEX_LEN + 1];
    pthread_mutex_lock(&reg->mu);
    ts_chunk *c = table_find(reg, id);
    if (!c) {
        reg->misses++;
        pthread_mutex_unlock(&reg->mu);
        ts_chunk_id_to_hex(id, hex);
        return ts_fail(err, TS_ERR_NOTFOUND, "chunk %s is not registered", hex);
    }
    if (model_fp && memcmp(c->model_fp, model_fp, 32) != 0) {
        reg->rejected++;
        pthread_mutex_unlock(&reg->mu);
        ts_chunk_id_to_hex(id, hex);
        return ts_fail(err, TS_ERR_INVALID,
                       "chunk %s was made for another model (its model fingerprint differs)", hex);
    }
    c->refs++;
    c->hits++;
    reg->hits++;
    touch(reg, c);
    pthread_mutex_unlock(&reg->mu);
    *out = c;
    return TS_OK;
}

void ts_chunk_note_use(ts_chunk_reg *reg, ts_chunk *c) {
    if (!reg || !c) return;
    pthread_mutex_lock(&reg->mu);
    c->uses++;
    pthread_mutex_unlock(&reg->mu);
}

void ts_chunk_acquire(ts_chunk_reg *reg, ts_chunk *c) {
    if (!reg || !c) return;
    pthread_mutex_lock(&reg->mu);
    c->refs++;
    pthread_mutex_unlock(&reg->mu);
}

void ts_chunk_release(ts_chunk_reg *reg, ts_chunk *c) {
    if (!reg || !c) return;
    pthread_mutex_lock(&reg->mu);
    if (c->refs > 0) c->refs--;
    if (c->refs == 0 && c->removed) {
        pending_unlink(reg, c);
        destroy_detached(reg, c);
    } else if (reg->budget && reg->bytes_used > reg->budget) {
        make_room(reg, 0);
    }
    pthread_mutex_unlock(&reg->mu);
}

void ts_chunk_get_info(ts_chunk_reg *reg, const ts_chunk *c, ts_chunk_info *info) {
    if (!reg || !c || !info) return;
    pthread_mutex_lock(&reg->mu);
    info->id = c->id;
    info->type = c->type;
    memcpy(info->model_fp, c->model_fp, 32);
    memcpy(info->enc_id, c->enc_id, 32);
    info->n_tokens = c->n_tokens;
    info->tokens = c->tokens;
    info->has_kv = c->kv != NULL;
    info->shape = c->shape;
    info->k = c->kv;
    info->v = c->kv ? c->kv + ts_chunk_kv_bytes(c->shape, c->n_tokens) / sizeof(float) : NULL;
    pthread_mutex_unlock(&reg->mu);
}

ts_status ts_chunk_reg_remove(ts_chunk_reg *reg, const ts_chunk_id *id, ts_err *err) {
    if (!reg || !id) return ts_fail(err, TS_ERR_INVALID, "chunk remove: missing argument");
    pthread_mutex_lock(&reg->mu);
    ts_chunk *c = table_find(reg, id);
    if (!c) {
        pthread_mutex_unlock(&reg->mu);
        char hex[TS_CHUNK_HEX_LEN + 1];
        ts_chunk_id_to_hex(id, hex);
        return ts_fail(err, TS_ERR_NOTFOUND, "chunk %s is not registered", hex);
    }
    detach(reg, c);
    if (c->refs == 0) destroy_detached(reg, c);
    else pending_push(reg, c);
    pthread_mutex_unlock(&reg->mu);
    return TS_OK;
}

ts_status ts_chunk_reg_list(ts_chunk_reg *reg, ts_chunk_entry **out, size_t *n, ts_err *err) {
    if (!reg || !out || !n) return ts_fail(err, TS_ERR_INVALID, "chunk list: missing argument");
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&reg->mu);
    size_t cnt = reg->n_chunks;
    ts_chunk_entry *e = cnt ? calloc(cnt, sizeof *e) : NULL;
    if (cnt && !e) {
        pthread_mutex_unlock(&reg->mu);
        return ts_fail(err, TS_ERR_NOMEM, "chunk list: out of memory for %zu entries", cnt);
    }
    size_t i = 0;
    for (ts_chunk *c = reg->lru_head; c && i < cnt; c = c->next, i++) {
        e[i].id = c->id;
        e[i].type = c->type;
        memcpy(e[i].enc_id, c->enc_id, 32);
        e[i].n_tokens = c->n_tokens;
        e[i].has_kv = c->kv != NULL;
        e[i].bytes = c->bytes;
        e[i].hits = c->hits;
        e[i].uses = c->uses;
        e[i].last_use_ms = c->last_use_ms;
        e[i].refcount = c->refs;
    }
    pthread_mutex_unlock(&reg->mu);
    *out = e;
    *n = i;
    return TS_OK;
}

ts_chunk_reg_stats ts_chunk_reg_get_stats(ts_chunk_reg *reg) {
    ts_chunk_reg_stats s;
    memset(&s, 0, sizeof s);
    if (!reg) return s;
    pthread_mutex_lock(&reg->mu);
    s.hits = reg->hits;
    s.misses = reg->misses;
    s.evictions = reg->evictions;
    s.rejected = reg->rejected;
    s.bytes_used = reg->bytes_used;
    s.budget = reg->budget;
    s.n_chunks = reg->n_chunks;
    s.n_pending = reg->n_pending;
    pthread_mutex_unlock(&reg->mu);
    return s;
}
