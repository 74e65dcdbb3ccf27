/* Minimal test harness: each test binary counts checks and ends with
 * "N passed, N failed"; tests/run.sh adds the counts up. */
#ifndef TS_TEST_H
#define TS_TEST_H

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int ts_test_pass, ts_test_fail;

#define CHECK(cond) CHECKF(cond, "%s", #cond)
#define CHECKF(cond, ...)                                                \
    do {                                                                 \
        if (cond) {                                                      \
            ts_test_pass++;                                              \
        } else {                                                         \
            ts_test_fail++;                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                \
            fputc('\n', stderr);                                         \
        }                                                                \
    } while (0)

/* A xorshift64 draw in [0, n) from the state *s (seeded non-zero): the
 * tests' reproducible random inputs. */
static inline uint32_t ts_test_rnd(uint64_t *s, uint32_t n) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 32) % n;
}

/* Path of the shared data folder (../shared seen from the project root);
 * overridable with TS_SHARED for out-of-tree runs. */
static inline const char *ts_test_shared(void) {
    const char *s = getenv("TS_SHARED");
    return s ? s : "../shared";
}

/* ||a - b|| / ||b|| in double; NaN anywhere gives +inf, so it never passes a
 * bound. Both zero: 0. */
static inline double ts_test_rel_err(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    if (r == 0) return d == 0 ? 0 : INFINITY;
    double e = sqrt(d / r);
    return isnan(e) ? INFINITY : e;
}

/* Replays every file of a fuzz seed corpus (up to 64 KiB each) through
 * accept(data, n, name), which returns whether the parser took it. Checks
 * that the corpus exists and that at least one seed is accepted. */
static inline void ts_test_replay_corpus(const char *dir,
                                         int (*accept)(const unsigned char *, size_t, const char *)) {
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "no %s", dir);
    if (!d) return;
    int files = 0, ok = 0;
    struct dirent *e;
    static unsigned char buf[1 << 16];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        files++;
        ok += accept(buf, n, e->d_name) != 0;
    }
    closedir(d);
    CHECKF(files > 0 && ok > 0, "%s: %d files, %d accepted", dir, files, ok);
}

static inline int ts_test_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, ts_test_pass, ts_test_fail);
    return ts_test_fail ? 1 : 0;
}

#endif
