/* ts_kv_check: verifies every invariant of the block pool, for tests and
 * debug builds. Linear in the pool and index sizes; allocates nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kv/kv.h"
#include "kv/kv_int.h"

enum { M_FREE = 1, M_LRU = 2, M_INDEX = 4 };

static bool broken(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool broken(char *why, size_t n, const char *fmt, ...) {
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return false;
}

bool ts_kv_check(const ts_kv *kv, char *why, size_t n) {
    int32_t nb = kv->n_blocks;
    if (kv->n_free < 0 || kv->n_free > nb || kv->n_used < 0 || kv->n_cached < 0 ||
        (int64_t)kv->n_free + kv->n_used + kv->n_cached != nb)
        return broken(why, n, "counts: free %d + used %d + cached %d != %d blocks", kv->n_free,
                      kv->n_used, kv->n_cached, nb);
    uint8_t *mark = kv->mark; /* scratch owned by the pool */
    memset(mark, 0, (size_t)nb);

    for (int32_t i = 0; i < kv->n_free; i++) {
        int32_t b = kv->free_stack[i];
        if (b < 0 || b >= nb) return broken(why, n, "free stack[%d] = %d out of range", i, b);
        if (mark[b]) return broken(why, n, "block %d twice on the free stack", b);
        mark[b] = M_FREE;
        if (kv->refs[b] != 0) return broken(why, n, "free block %d has refcount %d", b, kv->refs[b]);
        if (kv->flags[b]) return broken(why, n, "free block %d has flags %d", b, kv->flags[b]);
    }

    int32_t prev = -1, count = 0;
    for (int32_t b = kv->lru_head; b >= 0; b = kv->lru_next[b]) {
        if (b >= nb) return broken(why, n, "LRU link to %d out of range", b);
        if (mark[b]) return broken(why, n, "block %d on the LRU list is also %s", b,
                                   mark[b] == M_FREE ? "free" : "earlier on the list (cycle)");
        mark[b] = M_LRU;
        if (kv->lru_prev[b] != prev)
            return broken(why, n, "LRU block %d: prev %d, expected %d", b, kv->lru_prev[b], prev);
        if (kv->refs[b] != 0) return broken(why, n, "cached block %d has refcount %d", b, kv->refs[b]);
        if (kv->flags[b] != (TS_KV_F_PUBLISHED | TS_KV_F_IN_LRU))
            return broken(why, n, "cached block %d has flags %d", b, kv->flags[b]);
        prev = b;
        count++;
    }
    if (kv->lru_tail != prev) return broken(why, n, "LRU tail %d, list ends at %d", kv->lru_tail, prev);
    if (count != kv->n_cached) return broken(why, n, "LRU holds %d blocks, n_cached %d", count, kv->n_cached);

    int32_t used = 0, published = 0;
    uint64_t extra = 0;
    for (int32_t b = 0; b < nb; b++) {
        if (kv->refs[b] < 0) return broken(why, n, "block %d refcount %d", b, kv->refs[b]);
        if (kv->flags[b] & TS_KV_F_PUBLISHED) published++;
        if (kv->refs[b] > 0) {
            if (mark[b]) return broken(why, n, "used block %d is also %s", b, mark[b] == M_FREE ? "free" : "cached");
            if (kv->flags[b] & TS_KV_F_IN_LRU) return broken(why, n, "used block %d flagged in LRU", b);
            used++;
            extra += (uint64_t)kv->refs[b] - 1;
        } else if (!mark[b]) {
            return broken(why, n, "block %d leaked: refcount 0, neither free nor cached", b);
        }
        if (kv->refs[b] == 0 && (kv->flags[b] & TS_KV_F_PUBLISHED) && mark[b] != M_LRU)
            return broken(why, n, "published block %d with refcount 0 is not on the LRU list", b);
        if (kv->lru_prev[b] >= nb || kv->lru_next[b] >= nb)
            return broken(why, n, "block %d has LRU links out of range", b);
        if (mark[b] != M_LRU && (kv->lru_prev[b] != -1 || kv->lru_next[b] != -1))
            return broken(why, n, "block %d off the LRU list keeps links", b);
    }
    if (used != kv->n_used) return broken(why, n, "%d blocks used, n_used %d", used, kv->n_used);
    if (extra != kv->extra_refs)
        return broken(why, n, "extra references %llu, counter %llu", (unsigned long long)extra,
                      (unsigned long long)kv->extra_refs);

    int32_t entries = 0;
    for (uint32_t s = 0; s <= kv->index_mask; s++) {
        int32_t b = kv->index[s];
        if (b < 0) continue;
        if (b >= nb) return broken(why, n, "index slot %u holds block %d out of range", s, b);
        if (mark[b] & M_INDEX) return broken(why, n, "block %d twice in the index", b);
        mark[b] |= M_INDEX;
        if (!(kv->flags[b] & TS_KV_F_PUBLISHED))
            return broken(why, n, "index slot %u holds unpublished block %d", s, b);
        if (ts_kv_index_find(kv, kv->hash[b]) != b || ts_kv_index_find_block(kv, b) != (int64_t)s)
            return broken(why, n, "block %d at index slot %u is not what its hash finds", b, s);
        entries++;
    }
    if (entries != published)
        return broken(why, n, "index holds %d entries, %d blocks published", entries, published);
    if (why && n) why[0] = 0;
    return true;
}
