/* ts_kv block pool: refcounts, content hashes, prefix index, LRU of cached
 * blocks, and a property test of random operations against a plain model
 * kept here (refcounts from block tables, the LRU order, the published set). */
#include <openssl/evp.h>
#include <string.h>

#include "kv/kv.h"
#include "test.h"

#define HB TS_KV_HASH_BYTES

static int light(void) {
    const char *s = getenv("TS_TEST_LIGHT");
    return s && *s && strcmp(s, "0");
}

/* ---- hashing ---------------------------------------------------------- */

/* The encoding documented in kv.h, built byte by byte, hashed in one go. */
static void ref_hash(uint8_t out[HB], const uint8_t *prev, const int32_t *tok, int n,
                     const uint8_t *fp, const void *salt, size_t salt_len) {
    static uint8_t buf[4096];
    size_t m = 0;
    const char tag[] = "tessera.kv.block.v1";
    memcpy(buf, tag, sizeof tag);
    m += sizeof tag;
    buf[m++] = prev != NULL;
    if (prev) memcpy(buf + m, prev, HB), m += HB;
    memcpy(buf + m, fp, HB), m += HB;
    for (int i = 0; i < 4; i++) buf[m++] = (uint8_t)((uint32_t)n >> (8 * i));
    for (int t = 0; t < n; t++)
        for (int i = 0; i < 4; i++) buf[m++] = (uint8_t)((uint32_t)tok[t] >> (8 * i));
    buf[m++] = salt != NULL;
    if (salt) {
        for (int i = 0; i < 8; i++) buf[m++] = (uint8_t)((uint64_t)salt_len >> (8 * i));
        memcpy(buf + m, salt, salt_len), m += salt_len;
    }
    unsigned len = 0;
    EVP_Digest(buf, m, out, &len, EVP_sha256(), NULL);
}

static void test_hash(void) {
    uint8_t fp[HB], fp2[HB], prev[HB], zero[HB] = {0};
    for (int i = 0; i < HB; i++) fp[i] = (uint8_t)(i * 7 + 1), fp2[i] = fp[i], prev[i] = (uint8_t)(255 - i);
    fp2[31] ^= 1;
    int32_t tok[300], tok2[300];
    for (int i = 0; i < 300; i++) tok[i] = tok2[i] = i * 40503 - 70000; /* negatives too */

    uint8_t a[HB], b[HB], r[HB];
    /* matches the documented encoding, including inputs longer than one internal chunk */
    int ns[] = {0, 1, 16, 64, 65, 300};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        CHECK(ts_kv_block_hash(a, prev, tok, ns[k], fp, "tenant", 6) == TS_OK);
        ref_hash(r, prev, tok, ns[k], fp, "tenant", 6);
        CHECKF(!memcmp(a, r, HB), "hash of %d tokens differs from the reference encoding", ns[k]);
        CHECK(ts_kv_block_hash(a, NULL, tok, ns[k], fp, NULL, 0) == TS_OK);
        ref_hash(r, NULL, tok, ns[k], fp, NULL, 0);
        CHECKF(!memcmp(a, r, HB), "hash of %d tokens (no prev, no salt) differs", ns[k]);
    }

    ts_kv_block_hash(a, prev, tok, 16, fp, "s", 1);
    ts_kv_block_hash(b, prev, tok, 16, fp, "s", 1);
    CHECK(!memcmp(a, b, HB)); /* deterministic */
    ts_kv_block_hash(b, NULL, tok, 16, fp, "s", 1);
    CHECK(memcmp(a, b, HB)); /* prev vs none */
    ts_kv_block_hash(b, zero, tok, 16, fp, "s", 1);
    CHECK(memcmp(a, b, HB)); /* another prev */
    uint8_t none[HB];
    ts_kv_block_hash(none, NULL, tok, 16, fp, "s", 1);
    CHECK(memcmp(none, b, HB)); /* an all-zero prev is not "no prev" */
    tok2[5]++;
    ts_kv_block_hash(b, prev, tok2, 16, fp, "s", 1);
    CHECK(memcmp(a, b, HB)); /* one token changed */
    tok2[5]--;
    ts_kv_block_hash(b, prev, tok, 15, fp, "s", 1);
    CHECK(memcmp(a, b, HB)); /* one token fewer */
    int32_t sw[16];
    memcpy(sw, tok, sizeof sw);
    sw[0] = tok[1], sw[1] = tok[0];
    ts_kv_block_hash(b, prev, sw, 16, fp, "s", 1);
    CHECK(memcmp(a, b, HB)); /* order matters */
    ts_kv_block_hash(b, prev, tok, 16, fp2, "s", 1);
    CHECK(memcmp(a, b, HB)); /* model fingerprint */
    ts_kv_block_hash(b, prev, tok, 16, fp, "t", 1);
    CHECK(memcmp(a, b, HB)); /* salt content */
    ts_kv_block_hash(b, prev, tok, 16, fp, "ss", 2);
    CHECK(memcmp(a, b, HB)); /* salt length */
    uint8_t s_none[HB], s_empty[HB];
    ts_kv_block_hash(s_none, prev, tok, 16, fp, NULL, 0);
    ts_kv_block_hash(s_empty, prev, tok, 16, fp, "", 0);
    CHECK(memcmp(s_none, s_empty, HB)); /* empty salt is not no salt */
    CHECK(memcmp(s_none, a, HB) && memcmp(s_empty, a, HB));

    CHECK(ts_kv_block_hash(a, prev, tok, -1, fp, NULL, 0) == TS_ERR_INVALID);
    CHECK(ts_kv_block_hash(a, prev, NULL, 4, fp, NULL, 0) == TS_ERR_INVALID);
    CHECK(ts_kv_block_hash(a, prev, tok, 4, NULL, NULL, 0) == TS_ERR_INVALID);
    CHECK(ts_kv_block_hash(a, prev, tok, 4, fp, NULL, 3) == TS_ERR_INVALID);
}

/* ---- direct tests ----------------------------------------------------- */

static char why[256];
#define CHECK_POOL(kv) CHECKF(ts_kv_check(kv, why, sizeof why), "ts_kv_check: %s", why)

static void fake_hash(uint8_t h[HB], int id) {
    memset(h, 0, HB);
    for (int i = 0; i < HB; i++) h[i] = (uint8_t)(id * 31 + i * 17 + 3);
}

static void test_refcounts(void) {
    ts_kv *kv;
    CHECK(ts_kv_create(2, 1, 4, 4, 8, &kv, NULL) == TS_OK);
    ts_kv *none = kv;
    CHECK(ts_kv_create(2, 1, 4, 4, 0, &none, NULL) == TS_ERR_INVALID && none == NULL);
    ts_kv_destroy(NULL);
    CHECK_POOL(kv);
    for (int i = 0; i < 8; i++) CHECK(ts_kv_alloc(kv) == i); /* low numbers first */
    CHECK(ts_kv_alloc(kv) == -1);
    CHECK(ts_kv_n_avail(kv) == 0);
    CHECK_POOL(kv);
    CHECK(ts_kv_ref(kv, 3));
    CHECK(ts_kv_ref(kv, 3));
    CHECK(ts_kv_refcount(kv, 3) == 3);
    ts_kv_stats st;
    ts_kv_get_stats(kv, &st);
    CHECK(st.block_bytes == ts_kv_block_bytes(2, 1, 4, 4, TS_DT_F32));
    CHECK(st.bytes_shared == 2 * st.block_bytes);
    CHECK(st.n_used == 8 && st.n_free == 0 && st.n_cached == 0);
    ts_kv_release(kv, 3);
    ts_kv_release(kv, 3);
    ts_kv_release(kv, 3);
    CHECK(ts_kv_refcount(kv, 3) == 0);
    CHECK_POOL(kv);
    /* misuse is counted and harmless */
    ts_kv_release(kv, 3);
    ts_kv_release(kv, -1);
    ts_kv_release(kv, 8);
    CHECK(!ts_kv_ref(kv, 3));
    CHECK(!ts_kv_ref(kv, 99));
    CHECK(ts_kv_refcount(kv, 99) == -1);
    ts_kv_get_stats(kv, &st);
    CHECK(st.bad_release == 3 && st.bad_ref == 2);
    CHECK(st.n_used == 7 && st.n_free == 1 && st.bytes_shared == 0);
    CHECK_POOL(kv);
    CHECK(ts_kv_alloc(kv) == 3);
    CHECK(ts_kv_alloc(kv) == -1);
    int32_t all[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    ts_kv_release_table(kv, all, 8);
    ts_kv_get_stats(kv, &st);
    CHECK(st.n_used == 0 && st.n_free == 8);
    CHECK_POOL(kv);
    /* corruption is detected: a block both free and used */
    kv->refs[kv->free_stack[0]] = 1;
    kv->n_used++, kv->n_free--;
    CHECK(!ts_kv_check(kv, why, sizeof why));
    ts_kv_destroy(kv);
}

static void test_publish_lookup(void) {
    ts_kv *kv;
    CHECK(ts_kv_create(1, 2, 8, 4, 6, &kv, NULL) == TS_OK);
    ts_kv_stats st;
    uint8_t fp[HB] = {1, 2, 3}, h1[HB], h2[HB];
    int32_t t1[4] = {10, 11, 12, 13}, t2[4] = {14, 15, 16, 17};
    ts_kv_block_hash(h1, NULL, t1, 4, fp, NULL, 0);
    ts_kv_block_hash(h2, h1, t2, 4, fp, NULL, 0);

    CHECK(ts_kv_lookup(kv, h1, t1) == -1);
    int32_t a = ts_kv_alloc(kv), b = ts_kv_alloc(kv);
    CHECK(ts_kv_publish(kv, a, h1, t1) == a);
    CHECK(ts_kv_publish(kv, a, h1, t1) == a); /* again: no-op */
    CHECK(ts_kv_publish(kv, a, h2, t2) == -1); /* a block has one hash */
    CHECK(ts_kv_publish(kv, b, h2, t2) == b);
    CHECK(ts_kv_is_published(kv, a) && ts_kv_is_published(kv, b));
    CHECK_POOL(kv);
    /* a second holder */
    CHECK(ts_kv_lookup(kv, h1, t1) == a);
    CHECK(ts_kv_refcount(kv, a) == 2);
    ts_kv_get_stats(kv, &st);
    CHECK(st.hits == 1 && st.misses == 1 && st.bytes_shared == st.block_bytes);
    CHECK(ts_kv_lookup(kv, h1, t2) == -1); /* right hash, wrong tokens */
    ts_kv_get_stats(kv, &st);
    CHECK(st.collisions == 1 && st.misses == 2);
    /* everyone lets go: both stay findable */
    int32_t tab[2] = {a, b};
    ts_kv_release(kv, a);
    ts_kv_release_table(kv, tab, 2);
    ts_kv_get_stats(kv, &st);
    CHECK(st.n_used == 0 && st.n_cached == 2 && st.n_free == 4 && st.bytes_shared == 0);
    CHECK(ts_kv_n_avail(kv) == 6);
    CHECK_POOL(kv);
    /* revival from the LRU list */
    CHECK(ts_kv_lookup(kv, h1, t1) == a);
    CHECK(ts_kv_refcount(kv, a) == 1);
    ts_kv_get_stats(kv, &st);
    CHECK(st.n_used == 1 && st.n_cached == 1);
    CHECK_POOL(kv);
    /* a duplicate computed elsewhere: publish hands back the cached original */
    int32_t c = ts_kv_alloc(kv);
    CHECK(c != b);
    CHECK(ts_kv_publish(kv, c, h2, t2) == b);
    CHECK(ts_kv_refcount(kv, b) == 1 && !ts_kv_is_published(kv, c));
    ts_kv_release(kv, c); /* the caller drops its duplicate */
    ts_kv_get_stats(kv, &st);
    CHECK(st.n_used == 2 && st.n_cached == 0 && st.n_free == 4);
    CHECK_POOL(kv);
    /* a duplicate of a block in use: refcount 2 */
    c = ts_kv_alloc(kv);
    CHECK(ts_kv_publish(kv, c, h1, t1) == a);
    CHECK(ts_kv_refcount(kv, a) == 2);
    ts_kv_release(kv, c);
    /* publishing needs a reference */
    CHECK(ts_kv_publish(kv, c, h1, t1) == -1);
    CHECK(ts_kv_publish(kv, 77, h1, t1) == -1);
    ts_kv_release(kv, a);
    ts_kv_release(kv, a);
    ts_kv_release(kv, b);
    ts_kv_get_stats(kv, &st);
    CHECK(st.n_used == 0 && st.n_cached == 2 && st.bad_release == 0);
    CHECK_POOL(kv);
    ts_kv_destroy(kv);
}

static void test_lru(void) {
    ts_kv *kv;
    CHECK(ts_kv_create(1, 1, 1, 2, 4, &kv, NULL) == TS_OK);
    uint8_t h[4][HB];
    int32_t t[4][2];
    for (int i = 0; i < 4; i++) {
        fake_hash(h[i], i);
        t[i][0] = i, t[i][1] = 100 + i;
        CHECK(ts_kv_alloc(kv) == i);
        CHECK(ts_kv_publish(kv, i, h[i], t[i]) == i);
    }
    int order[4] = {2, 0, 3, 1};
    for (int i = 0; i < 4; i++) ts_kv_release(kv, order[i]);
    CHECK_POOL(kv);
    ts_kv_stats st;
    ts_kv_get_stats(kv, &st);
    CHECK(st.n_free == 0 && st.n_cached == 4);
    /* oldest release goes first */
    CHECK(ts_kv_alloc(kv) == 2);
    CHECK(!ts_kv_is_published(kv, 2));
    CHECK(ts_kv_lookup(kv, h[2], t[2]) == -1);
    CHECK(ts_kv_alloc(kv) == 0);
    /* reviving 3 protects it; 1 is next */
    CHECK(ts_kv_lookup(kv, h[3], t[3]) == 3);
    CHECK(ts_kv_alloc(kv) == 1);
    CHECK(ts_kv_alloc(kv) == -1);
    ts_kv_get_stats(kv, &st);
    CHECK(st.evictions == 3 && st.n_used == 4 && st.n_cached == 0);
    CHECK_POOL(kv);
    /* released again, 3 is the newest: the released table goes last to first */
    for (int i = 0; i < 3; i++) CHECK(ts_kv_publish(kv, i, h[i], t[i]) == i);
    ts_kv_release(kv, 3);
    int32_t tab[3] = {0, 1, 2};
    ts_kv_release_table(kv, tab, 3);
    CHECK(ts_kv_alloc(kv) == 3);
    CHECK(ts_kv_alloc(kv) == 2);
    CHECK(ts_kv_alloc(kv) == 1);
    CHECK(ts_kv_alloc(kv) == 0);
    CHECK_POOL(kv);
    ts_kv_destroy(kv);
}

static void test_collision(void) {
    ts_kv *kv;
    CHECK(ts_kv_create(1, 1, 1, 3, 4, &kv, NULL) == TS_OK);
    uint8_t fab[HB];
    memset(fab, 0x42, HB);
    int32_t t1[3] = {1, 2, 3}, t2[3] = {1, 2, 4};
    int32_t a = ts_kv_alloc(kv), b = ts_kv_alloc(kv);
    CHECK(ts_kv_publish(kv, a, fab, t1) == a);
    CHECK(ts_kv_lookup(kv, fab, t2) == -1);
    /* same hash, other tokens: b stays private, a keeps the hash */
    CHECK(ts_kv_publish(kv, b, fab, t2) == b);
    CHECK(!ts_kv_is_published(kv, b));
    CHECK(ts_kv_refcount(kv, a) == 1);
    ts_kv_stats st;
    ts_kv_get_stats(kv, &st);
    CHECK(st.collisions == 2 && st.misses == 1 && st.hits == 0);
    CHECK(ts_kv_lookup(kv, fab, t1) == a);
    CHECK_POOL(kv);
    ts_kv_release(kv, a);
    ts_kv_release(kv, a);
    ts_kv_release(kv, b);
    ts_kv_get_stats(kv, &st);
    CHECK(st.n_cached == 1 && st.n_free == 3 && st.bad_release == 0);
    CHECK_POOL(kv);
    ts_kv_destroy(kv);
}

/* ---- property test ---------------------------------------------------- */

enum { P_NB = 40, P_BS = 4, P_NSEQ = 8, P_MAXB = 12, P_STREAMS = 12 };

typedef struct {
    int32_t blk[P_MAXB];
    uint8_t h[P_MAXB][HB];
    int pub[P_MAXB]; /* this entry has been published (by this table) */
    int n, stream;
} pseq;

typedef struct {
    ts_kv *kv;
    pseq seq[P_NSEQ];
    uint64_t rng;
    int crowd;
    /* the model */
    int ref[P_NB], pub[P_NB];
    uint8_t hash[P_NB][HB];
    int32_t tok[P_NB][P_BS];
    int lru[P_NB], n_lru;
    uint64_t hits, misses, evictions;
    uint8_t fp[HB];
    int bad; /* first failure stops the run, so one bug is not reported thousands of times */
} prop;

static uint32_t rnd(prop *p, uint32_t n) {
    p->rng = p->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(p->rng >> 33) % n;
}

/* Token ids of block i of a stream: streams of one family and tenant share
 * their first blocks (a system prompt), then each has its own tokens. */
static void stream_tokens(int stream, int i, int32_t out[P_BS]) {
    static const int prefix_blocks[3] = {3, 6, 0};
    int fam = stream % 3;
    for (int j = 0; j < P_BS; j++) {
        int pos = i * P_BS + j;
        out[j] = pos < prefix_blocks[fam] * P_BS ? fam * 1000 + pos : 100000 + stream * 1000 + pos;
    }
}

static void stream_hash(prop *p, int stream, int i, const uint8_t *prev, uint8_t out[HB]) {
    int32_t t[P_BS];
    stream_tokens(stream, i, t);
    int tenant = stream >= P_STREAMS / 2;
    ts_kv_block_hash(out, prev, t, P_BS, p->fp, tenant ? "tenant-b" : NULL, tenant ? 8 : 0);
    if (p->crowd) { /* distinct hashes, but few home slots, wrapping around the table end */
        out[0] = (uint8_t)(0xfc | (out[0] & 3));
        out[1] = out[2] = out[3] = 0xff;
    }
}

static void m_lru_remove(prop *p, int b) {
    for (int i = 0; i < p->n_lru; i++)
        if (p->lru[i] == b) {
            memmove(p->lru + i, p->lru + i + 1, (size_t)(p->n_lru - i - 1) * sizeof *p->lru);
            p->n_lru--;
            return;
        }
    p->bad = 1;
}

static void m_take(prop *p, int b) {
    if (p->ref[b]++ == 0) m_lru_remove(p, b);
}

/* The model's side of dropping one reference. */
static void m_drop(prop *p, int b) {
    if (--p->ref[b] == 0 && p->pub[b]) p->lru[p->n_lru++] = b;
}

static void m_release(prop *p, int b) {
    ts_kv_release(p->kv, b);
    m_drop(p, b);
}

static int32_t m_alloc(prop *p) {
    int32_t r = ts_kv_alloc(p->kv);
    int n_free = 0;
    for (int b = 0; b < P_NB; b++) n_free += !p->ref[b] && !p->pub[b];
    if (n_free) {
        CHECKF(r >= 0 && r < P_NB && !p->ref[r] && !p->pub[r], "alloc gave %d, not a free block", r);
    } else if (p->n_lru) {
        CHECKF(r == p->lru[0], "alloc evicted %d, the oldest cached block is %d", r, p->lru[0]);
        if (r == p->lru[0]) {
            m_lru_remove(p, r);
            p->pub[r] = 0;
            p->evictions++;
        }
    } else {
        CHECKF(r == -1, "alloc gave %d from a full pool", r);
    }
    if (r >= 0 && r < P_NB && p->ref[r] == 0 && !p->pub[r]) p->ref[r] = 1;
    else if (r != -1) p->bad = 1;
    return r;
}

/* Published block holding hash, per the model, or -1. */
static int m_find(prop *p, const uint8_t h[HB]) {
    for (int b = 0; b < P_NB; b++)
        if (p->pub[b] && !memcmp(p->hash[b], h, HB)) return b;
    return -1;
}

static int32_t m_lookup(prop *p, const uint8_t h[HB], const int32_t *tok) {
    int32_t r = ts_kv_lookup(p->kv, h, tok);
    int e = m_find(p, h);
    if (e >= 0 && memcmp(p->tok[e], tok, sizeof p->tok[e])) e = -1; /* never here: real hashes */
    CHECKF(r == e, "lookup gave %d, expected %d", r, e);
    if (r != e) p->bad = 1;
    if (e >= 0) m_take(p, e), p->hits++;
    else p->misses++;
    return e;
}

static void op_grow(prop *p, pseq *s) {
    if (s->n == P_MAXB) return;
    int i = s->n;
    uint8_t h[HB];
    int32_t t[P_BS];
    stream_hash(p, s->stream, i, i ? s->h[i - 1] : NULL, h);
    stream_tokens(s->stream, i, t);
    int chain = 1; /* a prefix is only looked up while every earlier block matched */
    for (int j = 0; j < i; j++) chain &= s->pub[j];
    int32_t b = -1;
    if (chain && rnd(p, 10) < 7) b = m_lookup(p, h, t);
    int pub = b >= 0;
    if (b < 0) b = m_alloc(p);
    if (b < 0) return;
    s->blk[i] = b;
    memcpy(s->h[i], h, HB);
    s->pub[i] = pub;
    s->n++;
}

static void op_publish(prop *p, pseq *s) {
    int i = 0;
    while (i < s->n && s->pub[i]) i++;
    if (i == s->n) return;
    int32_t b = s->blk[i], t[P_BS];
    stream_tokens(s->stream, i, t);
    int32_t r = ts_kv_publish(p->kv, b, s->h[i], t);
    int32_t e;
    if (p->pub[b]) {
        e = memcmp(p->hash[b], s->h[i], HB) ? -1 : b;
    } else {
        e = m_find(p, s->h[i]);
        if (e < 0) {
            e = b;
            p->pub[b] = 1;
            memcpy(p->hash[b], s->h[i], HB);
            memcpy(p->tok[b], t, sizeof t);
        } else {
            m_take(p, e);
        }
    }
    CHECKF(r == e, "publish of %d gave %d, expected %d", b, r, e);
    if (r != e) {
        p->bad = 1;
        return;
    }
    if (e != b) { /* switch to the original and drop the duplicate */
        s->blk[i] = e;
        m_release(p, b);
    }
    s->pub[i] = e >= 0;
}

static void release_seq(prop *p, pseq *s, int keep) {
    while (s->n > keep) m_release(p, s->blk[--s->n]);
}

static void op_fork(prop *p, int from, int to) {
    pseq *a = &p->seq[from], *d = &p->seq[to];
    release_seq(p, d, 0);
    *d = *a;
    for (int i = 0; i < a->n; i++) {
        CHECK(ts_kv_ref(p->kv, a->blk[i]));
        p->ref[a->blk[i]]++;
    }
}

static void op_probe(prop *p) {
    int stream = (int)rnd(p, P_STREAMS), depth = (int)rnd(p, P_MAXB);
    uint8_t h[HB], prev[HB];
    int32_t t[P_BS];
    for (int i = 0; i <= depth; i++) {
        stream_hash(p, stream, i, i ? prev : NULL, h);
        memcpy(prev, h, HB);
    }
    stream_tokens(stream, depth, t);
    int32_t b = m_lookup(p, h, t);
    if (b >= 0) m_release(p, b);
}

static void verify(prop *p, int step) {
    if (!ts_kv_check(p->kv, why, sizeof why)) {
        CHECKF(0, "step %d: ts_kv_check: %s", step, why);
        p->bad = 1;
        return;
    }
    int tables[P_NB] = {0};
    for (int s = 0; s < P_NSEQ; s++)
        for (int i = 0; i < p->seq[s].n; i++) tables[p->seq[s].blk[i]]++;
    int used = 0, cached = 0;
    uint64_t extra = 0;
    for (int b = 0; b < P_NB; b++) {
        int r = ts_kv_refcount(p->kv, b);
        if (r != tables[b] || r != p->ref[b] || ts_kv_is_published(p->kv, b) != (p->pub[b] != 0)) {
            CHECKF(0, "step %d: block %d refcount %d, tables %d, model %d, published %d vs %d", step, b, r,
                   tables[b], p->ref[b], ts_kv_is_published(p->kv, b), p->pub[b]);
            p->bad = 1;
            return;
        }
        used += r > 0;
        cached += r == 0 && p->pub[b];
        extra += r > 0 ? (uint64_t)r - 1 : 0;
    }
    /* the pool's LRU order is the model's */
    int i = 0;
    for (int32_t b = p->kv->lru_head; b >= 0 && i < P_NB; b = p->kv->lru_next[b], i++)
        if (i >= p->n_lru || p->lru[i] != b) break;
    ts_kv_stats st;
    ts_kv_get_stats(p->kv, &st);
    int ok = i == p->n_lru && cached == p->n_lru && st.n_used == used && st.n_cached == cached &&
             st.n_free == P_NB - used - cached && st.bytes_shared == extra * st.block_bytes &&
             st.hits == p->hits && st.misses == p->misses && st.evictions == p->evictions &&
             st.bad_release == 0 && st.bad_ref == 0 && st.collisions == 0;
    CHECKF(ok, "step %d: stats or LRU order differ from the model (lru %d/%d, used %d/%d, hits %llu/%llu)", step, i,
           p->n_lru, st.n_used, used, (unsigned long long)st.hits, (unsigned long long)p->hits);
    if (!ok) p->bad = 1;
}

static void test_property(uint64_t seed, int steps, int crowd) {
    static prop p;
    memset(&p, 0, sizeof p);
    p.rng = seed;
    p.crowd = crowd;
    for (int i = 0; i < HB; i++) p.fp[i] = (uint8_t)(seed * 13 + i);
    CHECK(ts_kv_create(1, 1, 2, P_BS, P_NB, &p.kv, NULL) == TS_OK);
    for (int s = 0; s < P_NSEQ; s++) p.seq[s].stream = (int)rnd(&p, P_STREAMS);
    uint64_t shared_seen = 0;
    for (int step = 0; step < steps && !p.bad; step++) {
        int si = (int)rnd(&p, P_NSEQ);
        pseq *s = &p.seq[si];
        uint32_t op = rnd(&p, 100);
        if (op < 35) {
            op_grow(&p, s);
        } else if (op < 55) {
            op_publish(&p, s);
        } else if (op < 62) {
            int from = (int)rnd(&p, P_NSEQ);
            if (from != si && p.seq[from].n) op_fork(&p, from, si);
        } else if (op < 77) {
            if (s->n) release_seq(&p, s, s->n - 1 - (int)rnd(&p, (uint32_t)s->n));
        } else if (op < 90) {
            /* a finished request: everything goes, the slot takes a new stream */
            ts_kv_release_table(p.kv, s->blk, s->n);
            for (int i = s->n - 1; i >= 0; i--) m_drop(&p, s->blk[i]);
            s->n = 0;
            s->stream = (int)rnd(&p, P_STREAMS);
        } else {
            op_probe(&p);
        }
        verify(&p, step);
        ts_kv_stats st;
        ts_kv_get_stats(p.kv, &st);
        if (st.bytes_shared > shared_seen) shared_seen = st.bytes_shared;
    }
    /* the run exercised what it is meant to */
    CHECKF(p.hits > (uint64_t)steps / 50 && p.evictions > 0 && shared_seen > 0,
           "seed %llu: %llu hits, %llu evictions, max shared %llu bytes", (unsigned long long)seed,
           (unsigned long long)p.hits, (unsigned long long)p.evictions, (unsigned long long)shared_seen);
    for (int s = 0; s < P_NSEQ; s++) release_seq(&p, &p.seq[s], 0);
    verify(&p, steps);
    ts_kv_stats st;
    ts_kv_get_stats(p.kv, &st);
    CHECKF(st.n_used == 0 && st.n_free + st.n_cached == P_NB && st.bad_release == 0,
           "seed %llu: after releasing every table: used %d, free %d, cached %d, bad_release %llu",
           (unsigned long long)seed, st.n_used, st.n_free, st.n_cached, (unsigned long long)st.bad_release);
    printf("property seed %llu%s: %d steps, %llu hits, %llu misses, %llu evictions, %d cached at end\n",
           (unsigned long long)seed, crowd ? " (crowded index)" : "", steps, (unsigned long long)p.hits,
           (unsigned long long)p.misses, (unsigned long long)p.evictions, st.n_cached);
    ts_kv_destroy(p.kv);
}

int main(void) {
    test_hash();
    test_refcounts();
    test_publish_lookup();
    test_lru();
    test_collision();
    int steps = light() ? 3000 : 20000;
    test_property(1, steps, 0);
    test_property(2, steps, 1); /* hashes crowded into a few index slots */
    return ts_test_done("test_kv");
}
