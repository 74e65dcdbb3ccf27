/* Stop-string matcher tests: random texts cut at random byte positions
 * (mid-character included), compared with the obvious reference: strstr of
 * every stop string over the whole text (the first to complete wins). After every piece the released
 * amount must equal a brute-force "safe prefix" computed over the text so
 * far, and must end on a character boundary. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "engine/stop.h"
#include "test.h"

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) { return ts_test_rnd(&rs, n); }

/* Text is built from these atoms, so stop strings overlap it often. */
static const char *atoms[] = {"a", "b", " ", "<", "/", ">", "s", "\xc3\xa9" /* é */,
                              "\xe2\x82\xac" /* € */, "\xf0\x9f\x98\x80" /* 😀 */};
enum { N_ATOMS = sizeof atoms / sizeof atoms[0] };

/* Reference: bytes of the text released once all of it is fed, and the
 * index of the matching stop (-1). strstr finds each stop's first (hence
 * earliest-ending) occurrence; the one ending first wins, then the earliest
 * start, then the lowest index. */
static size_t ref_cut(const char *text, const char *const *stops, size_t ns, int *which) {
    size_t best = strlen(text), best_end = (size_t)-1;
    *which = -1;
    for (size_t j = 0; j < ns; j++) {
        const char *h = strstr(text, stops[j]);
        if (!h) continue;
        size_t at = (size_t)(h - text), end = at + strlen(stops[j]);
        if (end < best_end || (end == best_end && at < best)) {
            best = at;
            best_end = end;
            *which = (int)j;
        }
    }
    return best;
}

/* Reference safe prefix of t[0..L) (no stop inside it): the first i whose
 * tail t[i..L) is a proper prefix of a stop string, moved back to a
 * character boundary of the full text `full`. */
static size_t ref_safe(const char *full, size_t L, const char *const *stops, size_t ns) {
    size_t r = L;
    for (size_t i = 0; i < L && r == L; i++)
        for (size_t j = 0; j < ns; j++)
            if (strlen(stops[j]) > L - i && strncmp(stops[j], full + i, L - i) == 0) r = i;
    while (r > 0 && (full[r] & 0xc0) == 0x80) r--;
    return r;
}

static int is_boundary(const char *full, size_t r) { return (full[r] & 0xc0) != 0x80; }

/* Feeds n bytes, emits (appends to out, consumes) what is safe. */
static bool feed(ts_stop *m, const char *p, size_t n, ts_buf *out) {
    size_t ok = 0;
    bool hit = ts_stop_feed(m, p, n, &ok);
    ts_buf_append(out, ts_stop_text(m), ok);
    ts_stop_consume(m, ok);
    return hit;
}

static void run_case(const char *const *stops, size_t ns, const char *text, int *fails) {
    ts_stop *m = NULL;
    if (ts_stop_create(stops, ns, &m, NULL) != TS_OK) {
        (*fails)++;
        return;
    }
    size_t L = strlen(text);
    int want_which;
    size_t want = ref_cut(text, stops, ns, &want_which);
    ts_buf out = {0};
    size_t pos = 0;
    bool stopped = false;
    int bad = 0;
    while (pos < L) {
        size_t k = 1 + rnd(7);
        if (k > L - pos) k = L - pos;
        stopped = feed(m, text + pos, k, &out);
        pos += k;
        if (stopped) {
            if (out.len != want || ts_stop_pending(m) != 0) bad = 2;
            /* feeding after the stop emits nothing */
            if (!feed(m, "zz", 2, &out) || out.len != want) bad = 3;
            break;
        }
        /* nothing held that the reference would release, nothing released
         * that it would hold */
        if (out.len != ref_safe(text, pos, stops, ns)) bad = 4;
        if (!is_boundary(text, out.len)) bad = 5;
        if (out.len + ts_stop_pending(m) != pos) bad = 6;
        if (memcmp(ts_stop_text(m), text + out.len, ts_stop_pending(m)) != 0) bad = 9;
    }
    if (!stopped) { /* end of stream: the rest goes out */
        feed(m, NULL, 0, &out);
        ts_buf_append(&out, ts_stop_text(m), ts_stop_pending(m));
    }
    if (out.len != want || (want && memcmp(out.data, text, want) != 0)) bad = 7;
    if (ts_stop_matched(m) != want_which) bad = 8;
    if (bad) {
        (*fails)++;
        if (*fails <= 3)
            fprintf(stderr, "stop case failed (code %d): text '%s' released %zu want %zu\n",
                    bad, text, out.len, want);
    }
    ts_buf_free(&out);
    ts_stop_destroy(m);
}

static void test_random(void) {
    static const char *const set_a[] = {"</s>", "ab\xe2\x82\xac", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
                                        "aaa b", "b"};
    static const char *const set_b[] = {"a a a a", "<<", "\xc3\xa9/"};
    static const char *const set_c[] = {"s>"};
    struct { const char *const *s; size_t n; } sets[] = {
        {set_a, 4}, {set_a, 5}, {set_b, 3}, {set_c, 1}, {NULL, 0}};
    int n_cases = getenv("TS_TEST_LIGHT") ? 300 : 2000;
    for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
        int fails = 0, matched = 0;
        for (int c = 0; c < n_cases; c++) {
            char text[512];
            size_t len = 0;
            int n_atoms = (int)rnd(60);
            for (int a = 0; a < n_atoms; a++) {
                const char *at = atoms[rnd(N_ATOMS)];
                /* sometimes plant a stop string */
                if (sets[si].n && rnd(40) == 0) at = sets[si].s[rnd((uint32_t)sets[si].n)];
                size_t al = strlen(at);
                if (len + al >= sizeof text) break;
                memcpy(text + len, at, al);
                len += al;
            }
            text[len] = '\0';
            int w;
            if (ref_cut(text, sets[si].s, sets[si].n, &w) < len) matched++;
            run_case(sets[si].s, sets[si].n, text, &fails);
        }
        CHECKF(fails == 0, "stop set %zu: %d of %d random cases differ", si, fails, n_cases);
        if (sets[si].n) CHECKF(matched > n_cases / 10, "set %zu: too few matches (%d)", si, matched);
    }
}

static void test_basics(void) {
    ts_stop *m = NULL;
    ts_err err = {{0}};
    const char *empty[] = {"ok", ""};
    CHECK(ts_stop_create(empty, 2, &m, &err) == TS_ERR_INVALID && !m && err.msg[0]);
    const char *badutf[] = {"\xc3"};
    CHECK(ts_stop_create(badutf, 1, &m, NULL) == TS_ERR_INVALID && !m);
    const char *overlong[] = {"\xc0\xaf"};
    CHECK(ts_stop_create(overlong, 1, &m, NULL) == TS_ERR_INVALID && !m);
    ts_stop_destroy(NULL);

    /* no stops: only an incomplete character is held back */
    CHECK(ts_stop_create(NULL, 0, &m, NULL) == TS_OK);
    if (!m) return;
    size_t ok;
    CHECK(!ts_stop_feed(m, "x\xe2\x82", 3, &ok) && ok == 1 && ts_stop_text(m)[0] == 'x');
    /* not consumed: counted again */
    CHECK(!ts_stop_feed(m, "\xac", 1, &ok) && ok == 4 && ts_stop_pending(m) == 4);
    ts_stop_consume(m, ok);
    CHECK(ts_stop_pending(m) == 0 && ts_stop_text(m)[0] == 0);
    CHECK(!ts_stop_feed(m, "\xf0\x9f", 2, &ok) && ok == 0 && ts_stop_pending(m) == 2);
    ts_stop_consume(m, 99); /* clamped */
    CHECK(ts_stop_pending(m) == 0);
    ts_stop_destroy(m);

    /* a match spanning three pieces; then reset starts a new stream */
    const char *stops[] = {"<|im_end|>", "\n\nUser:"};
    CHECK(ts_stop_create(stops, 2, &m, NULL) == TS_OK);
    if (!m) return;
    CHECK(!ts_stop_feed(m, "Hello <|im", 10, &ok) && ok == 6 && ts_stop_pending(m) == 10);
    ts_stop_consume(m, ok);
    CHECK(!ts_stop_feed(m, "_en", 3, &ok) && ok == 0);
    CHECK(ts_stop_feed(m, "d|> tail", 8, &ok) && ok == 0 && ts_stop_matched(m) == 0);
    CHECK(ts_stop_pending(m) == 0);
    ts_stop_reset(m);
    CHECK(ts_stop_matched(m) == -1 && ts_stop_pending(m) == 0);
    CHECK(!ts_stop_feed(m, "A <|x", 5, &ok) && ok == 5); /* false start */
    ts_stop_consume(m, ok);
    CHECK(!ts_stop_feed(m, "\n\nUs", 4, &ok) && ok == 0 && ts_stop_pending(m) == 4);
    CHECK(ts_stop_feed(m, "er: hi", 6, &ok) && ok == 0 && ts_stop_matched(m) == 1);
    ts_stop_reset(m);
    /* text before the stop, not yet consumed, is all safe */
    CHECK(ts_stop_feed(m, "ok<|im_end|>x", 13, &ok) && ok == 2 &&
          memcmp(ts_stop_text(m), "ok", 2) == 0);
    CHECK(ts_stop_feed(m, "more", 4, &ok) && ok == 2);
    ts_stop_destroy(m);

    /* the first stop to complete wins: "b" inside "ab!" */
    const char *nested[] = {"ab!", "b"};
    CHECK(ts_stop_create(nested, 2, &m, NULL) == TS_OK);
    if (!m) return;
    CHECK(ts_stop_feed(m, "xab!", 4, &ok) && ok == 2 && ts_stop_matched(m) == 1);
    ts_stop_destroy(m);
}

int main(void) {
    test_basics();
    test_random();
    return ts_test_done("stop");
}
