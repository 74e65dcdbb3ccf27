/* ts_pool: every thread index runs exactly once per run, runs do not
 * overlap, and pools can be created and destroyed repeatedly. */
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/pool.h"
#include "test.h"

#define MAX_T 4

typedef struct {
    _Atomic int count[MAX_T];
    _Atomic int bad_nth;
    int nth_expected;
    long sum[MAX_T]; /* each thread writes only its own slot */
} run_ctx;

static void job(void *vctx, int ith, int nth) {
    run_ctx *c = vctx;
    if (nth != c->nth_expected || ith < 0 || ith >= nth) {
        atomic_fetch_add(&c->bad_nth, 1);
        return;
    }
    atomic_fetch_add(&c->count[ith], 1);
    long lo, hi;
    ts_pool_range(1000, ith, nth, &lo, &hi);
    long s = 0;
    for (long i = lo; i < hi; i++) s += i;
    c->sum[ith] = s;
}

int main(void) {
    int light = getenv("TS_TEST_LIGHT") != NULL;
    int n_runs = light ? 1000 : 5000;

    /* ranges cover [0, n) exactly */
    for (int nth = 1; nth <= 5; nth++) {
        long n = 17, prev = 0;
        int ok = 1;
        for (int i = 0; i < nth; i++) {
            long lo, hi;
            ts_pool_range(n, i, nth, &lo, &hi);
            ok &= lo == prev && hi >= lo;
            prev = hi;
        }
        CHECKF(ok && prev == n, "ts_pool_range nth=%d", nth);
    }

    for (int nt = 1; nt <= MAX_T; nt++) {
        ts_pool *p = ts_pool_create(nt);
        CHECK(p != NULL);
        if (!p) continue;
        CHECK(ts_pool_size(p) == nt);
        run_ctx c;
        memset(&c, 0, sizeof c);
        c.nth_expected = nt;
        int sums_ok = 1, counts_ok = 1;
        for (int r = 0; r < n_runs; r++) {
            memset(c.sum, 0xff, sizeof c.sum);
            ts_pool_run(p, job, &c);
            /* after return every share must be complete */
            long total = 0;
            for (int i = 0; i < nt; i++) total += c.sum[i];
            sums_ok &= total == 999L * 1000 / 2;
            for (int i = 0; i < nt; i++) counts_ok &= atomic_load(&c.count[i]) == r + 1;
            if (r == n_runs / 2) usleep(2000); /* let workers fall asleep once */
        }
        CHECKF(sums_ok, "all shares done when run returns (nt=%d)", nt);
        CHECKF(counts_ok, "each ith once per run (nt=%d)", nt);
        CHECKF(atomic_load(&c.bad_nth) == 0, "ith/nth valid (nt=%d)", nt);
        ts_pool_destroy(p);
    }

    /* create / destroy churn, with and without runs in between */
    int churn_ok = 1;
    for (int i = 0; i < (light ? 20 : 100); i++) {
        int nt = 1 + i % MAX_T;
        ts_pool *p = ts_pool_create(nt);
        if (!p) {
            churn_ok = 0;
            continue;
        }
        run_ctx c;
        memset(&c, 0, sizeof c);
        c.nth_expected = nt;
        for (int r = 0; r < i % 3; r++) ts_pool_run(p, job, &c);
        for (int t = 0; t < nt; t++) churn_ok &= atomic_load(&c.count[t]) == i % 3;
        ts_pool_destroy(p);
    }
    CHECK(churn_ok);
    ts_pool_destroy(NULL);

    /* run overhead, for information only */
    ts_pool *p = ts_pool_create(2);
    if (p) {
        run_ctx c;
        memset(&c, 0, sizeof c);
        c.nth_expected = 2;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int r = 0; r < 2000; r++) ts_pool_run(p, job, &c);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 2000 / 1e3;
        printf("pool: %.2f us per 2-thread run\n", us);
        ts_pool_destroy(p);
    }
    return ts_test_done("test_pool");
}
