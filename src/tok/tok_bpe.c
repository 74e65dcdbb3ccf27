/* Byte-level BPE core: GPT-2's byte <-> unicode map, the vocab and merge
 * hash tables, and the merge loop run on one pre-token. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_internal.h"

/* GPT-2 keeps printable Latin-1 bytes as themselves and moves the others
 * (0-32, 127-160, 173) to 256 + their index among those 68 bytes. */
uint32_t ts_tok_byte_to_cp(unsigned b) {
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return b + 162;
    if (b == 173) return 323;
    return b;
}

int ts_tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) {
        if (cp <= 32 || (cp >= 127 && cp <= 160) || cp == 173) return -1;
        return (int)cp;
    }
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(cp - 162);
    if (cp == 323) return 173;
    return -1;
}

uint32_t ts_tok_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n && c < (1u << 30)) c <<= 1;
    return c;
}

ts_status ts_tok_strmap_init(ts_tok_strmap *m, size_t n_keys) {
    uint32_t cap = pow2_at_least(n_keys * 2 + 1);
    m->slots = malloc(sizeof *m->slots * cap);
    if (!m->slots) return TS_ERR_NOMEM;
    memset(m->slots, 0xff, sizeof *m->slots * cap);
    m->mask = cap - 1;
    return TS_OK;
}

int32_t ts_tok_strmap_put(ts_tok_strmap *m, const ts_tok_entry *entries, int32_t id) {
    const ts_tok_entry *e = &entries[id];
    uint32_t i = ts_tok_hash(e->str, e->str_len) & m->mask;
    for (;;) {
        int32_t s = m->slots[i];
        if (s < 0) {
            m->slots[i] = id;
            return -1;
        }
        if (entries[s].str_len == e->str_len && memcmp(entries[s].str, e->str, e->str_len) == 0)
            return s;
        i = (i + 1) & m->mask;
    }
}

int32_t ts_tok_strmap_get(const ts_tok_strmap *m, const ts_tok_entry *entries,
                          const char *s, size_t n) {
    if (!m->slots) return -1;
    uint32_t i = ts_tok_hash(s, n) & m->mask;
    for (;;) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (entries[id].str_len == n && memcmp(entries[id].str, s, n) == 0) return id;
        i = (i + 1) & m->mask;
    }
}

static uint32_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (uint32_t)k;
}

ts_status ts_tok_merges_init(ts_tokenizer *t, size_t n_merges) {
    uint32_t cap = pow2_at_least(n_merges * 2 + 1);
    t->merges = malloc(sizeof *t->merges * cap);
    if (!t->merges) return TS_ERR_NOMEM;
    for (uint32_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = cap - 1;
    return TS_OK;
}

void ts_tok_merges_put(ts_tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint32_t i = pair_hash(key) & t->merge_mask;
    while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
    t->merges[i].key = key;
    t->merges[i].rank = rank;
    t->merges[i].id = id;
}

const ts_tok_merge *ts_tok_merges_get(const ts_tokenizer *t, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint32_t i = pair_hash(key) & t->merge_mask;
    for (;;) {
        const ts_tok_merge *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* A candidate merge in the word's min-heap: lowest rank first, then the
 * leftmost position, which is the order HF's BPE applies merges in. */
typedef struct cand {
    int32_t rank, pos, id;
} cand;

static bool cand_less(const cand *a, const cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *mv = &last;
        if (l < *n && cand_less(&h[l], mv)) { m = l; mv = &h[l]; }
        if (r < *n && cand_less(&h[r], mv)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* The pre-token as a vocab string (each byte as its GPT-2 character), for
 * ignore_merges: a pre-token already in the vocab is emitted as is. */
static int32_t whole_word_id(const ts_tokenizer *t, const unsigned char *s, size_t n) {
    char stack[256];
    char *buf = n * 2 <= sizeof stack ? stack : malloc(n * 2);
    if (!buf) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = ts_tok_byte_to_cp(s[i]);
        if (cp < 0x80) {
            buf[k++] = (char)cp;
        } else {
            buf[k++] = (char)(0xc0 | (cp >> 6));
            buf[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    int32_t id = ts_tok_strmap_get(&t->vocab, t->entries, buf, k);
    if (buf != stack) free(buf);
    return id;
}

ts_status ts_tok_bpe_word(const ts_tokenizer *t, const unsigned char *s, size_t n,
                          int32_t **ids, size_t *n_ids, size_t *cap) {
    if (n == 0) return TS_OK;
    if (t->ignore_merges) {
        int32_t id = whole_word_id(t, s, n);
        if (id >= 0) return ts_tok_ids_push(ids, n_ids, cap, id);
    }
    /* symbols: id, prev, next per position; heap holds at most n - 1
     * initial pairs plus two per merge (at most n - 1 merges). */
    int32_t *sym = malloc(sizeof *sym * n * 3);
    cand *heap = malloc(sizeof *heap * (n * 3 + 1));
    if (!sym || !heap) {
        free(sym);
        free(heap);
        return TS_ERR_NOMEM;
    }
    int32_t *prev = sym + n, *next = sym + 2 * n;
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id < 0) {
            if (t->unk_id < 0) continue; /* HF drops characters it cannot map */
            id = t->unk_id;
        }
        sym[ns++] = id;
    }
    for (size_t i = 0; i < ns; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const ts_tok_merge *m = ts_tok_merges_get(t, sym[i], sym[i + 1]);
        if (m) heap_push(heap, &nh, (cand){m->rank, (int32_t)i, m->id});
    }
    while (nh > 0) {
        cand c = heap_pop(heap, &nh);
        int32_t p = c.pos, q = next[p];
        if (sym[p] < 0 || q < 0) continue;
        const ts_tok_merge *m = ts_tok_merges_get(t, sym[p], sym[q]);
        if (!m || m->id != c.id) continue;
        sym[p] = c.id;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        sym[q] = -1;
        if (prev[p] >= 0) {
            m = ts_tok_merges_get(t, sym[prev[p]], sym[p]);
            if (m) heap_push(heap, &nh, (cand){m->rank, prev[p], m->id});
        }
        if (next[p] >= 0) {
            m = ts_tok_merges_get(t, sym[p], sym[next[p]]);
            if (m) heap_push(heap, &nh, (cand){m->rank, p, m->id});
        }
    }
    ts_status st = TS_OK;
    for (int32_t i = ns ? 0 : -1; i >= 0 && st == TS_OK; i = next[i])
        st = ts_tok_ids_push(ids, n_ids, cap, sym[i]);
    free(sym);
    free(heap);
    return st;
}
