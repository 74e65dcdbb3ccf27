/* ts_buf against a plain reference string: random sequences of appends,
 * putc, printf, reserve and clear; after every operation the buffer holds
 * the reference's bytes and a NUL right after them (the contract callers
 * rely on when they hand data to strlen-based code). reserve on a fresh
 * buffer once left data without its NUL: a chat message without content
 * then read past a 64-byte allocation in the server. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "test.h"

static uint64_t rs = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n) { return ts_test_rnd(&rs, n); }

/* The buffer equals ref[0, n) and is NUL-terminated (data may be NULL only
 * while nothing was ever reserved). */
static int same(const ts_buf *b, const char *ref, size_t n) {
    if (b->len != n) return 0;
    if (!b->data) return n == 0;
    return b->cap > n && memcmp(b->data, ref, n) == 0 && b->data[n] == '\0' && strlen(b->data) <= n;
}

static void test_fresh_reserve(void) {
    ts_buf b = {0};
    CHECK(ts_buf_reserve(&b, 0) == TS_OK);
    CHECK(b.data != NULL && b.data[0] == '\0' && strlen(b.data) == 0);
    ts_buf_free(&b);
    CHECK(ts_buf_reserve(&b, 1000) == TS_OK); /* reused after free */
    CHECK(b.data != NULL && b.data[0] == '\0' && b.len == 0 && b.cap > 1000);
    ts_buf_clear(&b);
    CHECK(b.data[0] == '\0');
    ts_buf_free(&b);
}

static void test_random(void) {
    enum { MAXN = 1 << 16 };
    char *ref = malloc(MAXN + 64);
    CHECK(ref != NULL);
    if (!ref) return;
    for (int round = 0; round < 200; round++) {
        ts_buf b = {0};
        size_t n = 0;
        int ok = 1;
        for (int op = 0; op < 60 && ok; op++) {
            char piece[48];
            size_t k = rnd(40);
            for (size_t i = 0; i < k; i++) piece[i] = (char)(1 + rnd(255)); /* no NUL inside */
            switch (rnd(6)) {
            case 0:
                if (n + k < MAXN && ts_buf_append(&b, piece, k) == TS_OK) memcpy(ref + n, piece, k), n += k;
                break;
            case 1:
                if (n + 1 < MAXN && ts_buf_putc(&b, 'x') == TS_OK) ref[n++] = 'x';
                break;
            case 2: {
                int v = (int)rnd(100000);
                char tmp[32];
                int m = snprintf(tmp, sizeof tmp, "<%d>", v);
                if (n + (size_t)m < MAXN && ts_buf_printf(&b, "<%d>", v) == TS_OK)
                    memcpy(ref + n, tmp, (size_t)m), n += (size_t)m;
                break;
            }
            case 3:
                ts_buf_reserve(&b, rnd(5000));
                break;
            case 4:
                if (rnd(8) == 0) ts_buf_clear(&b), n = 0;
                break;
            default:
                ts_buf_reserve(&b, 0);
                break;
            }
            ok = same(&b, ref, n);
        }
        CHECKF(ok, "round %d: the buffer differs from the reference or lost its NUL", round);
        ts_buf_free(&b);
    }
    free(ref);
}

int main(void) {
    test_fresh_reserve();
    test_random();
    return ts_test_done("buf");
}
