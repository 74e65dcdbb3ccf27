/* ts_pool: fixed worker threads woken by a generation counter.
 *
 * A run publishes (fn, ctx), sets `pending` to the number of workers and
 * bumps `gen`. Workers spin on `gen` for a short while (cheap for the
 * back-to-back kernels of a decode step), then sleep on it with a futex so
 * that an idle engine burns no CPU. The caller does share 0, then waits for
 * `pending` to reach zero the same way (spin, then futex).
 *
 * Lost wake-ups are avoided Dekker-style with sequentially consistent
 * atomics: a sleeper announces itself (n_sleep++) before re-checking the
 * word it waits on, and a waker changes the word before reading n_sleep.
 *
 * Shares are claimed: whoever first moves taken[ith] from the previous run's
 * number to this run's runs share ith. After its own share the caller claims every share whose
 * worker has not started yet and runs it itself, so a worker that another
 * process keeps off its core (or that is still waking from the futex)
 * delays a run by nothing; a worker that finds its share taken skips it. */
#include "base/pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TS_PAUSE() _mm_pause()
#else
#define TS_PAUSE() ((void)0)
#endif

/* How long a thread spins before sleeping (nanoseconds). */
#define TS_POOL_SPIN_NS 50000L

typedef struct ts_worker {
    struct ts_pool *pool;
    int ith;
    pthread_t th;
} ts_worker;

struct ts_pool {
    int n;                     /* threads including the caller */
    ts_worker *w;              /* [n - 1] */
    ts_pool_fn fn;
    void *ctx;
    _Atomic int gen;           /* futex word: bumped once per run */
    _Atomic int pending;       /* futex word: workers still running this run */
    _Atomic int n_sleep_gen;   /* workers sleeping on gen */
    _Atomic int caller_sleeps; /* the caller sleeps on pending */
    _Atomic int stop;
    _Atomic int *taken;        /* [n]: the last run (gen) whose share ith was claimed */
};

static long ts_futex(_Atomic int *addr, int op, int val) {
    return syscall(SYS_futex, (int *)addr, op, val, NULL, NULL, 0);
}

static long ts_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Returns once *word != old: spins up to TS_POOL_SPIN_NS, then sleeps. */
static void ts_wait_change(_Atomic int *word, int old, _Atomic int *n_sleep) {
    long t0 = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != old) return;
        TS_PAUSE();
        if ((i & 63) == 63) {
            long t = ts_now_ns();
            if (t0 == 0) t0 = t;
            else if (t - t0 > TS_POOL_SPIN_NS) break;
        }
    }
    for (;;) {
        atomic_fetch_add(n_sleep, 1);
        if (atomic_load(word) == old) ts_futex(word, FUTEX_WAIT_PRIVATE, old);
        atomic_fetch_sub(n_sleep, 1);
        if (atomic_load_explicit(word, memory_order_acquire) != old) return;
    }
}

/* Claims a share for run g: taken holds g - 1 until someone claims it, and
 * a worker that still thinks run g is current while a later run has begun
 * finds a larger value and fails. */
static bool ts_claim(_Atomic int *taken, int g) {
    int expect = (int)((unsigned)g - 1u);
    return atomic_compare_exchange_strong(taken, &expect, g);
}

static void *ts_worker_main(void *arg) {
    ts_worker *w = arg;
    ts_pool *p = w->pool;
    int seen = 0; /* gen's value at creation, before any run */
    for (;;) {
        ts_wait_change(&p->gen, seen, &p->n_sleep_gen);
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (atomic_load(&p->stop)) break;
        if (!ts_claim(&p->taken[w->ith], seen)) continue; /* the caller ran it */
        p->fn(p->ctx, w->ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeps))
            ts_futex(&p->pending, FUTEX_WAKE_PRIVATE, 1);
    }
    return NULL;
}

ts_pool *ts_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    ts_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    if (n_threads > 1) {
        p->w = calloc((size_t)n_threads - 1, sizeof *p->w);
        p->taken = calloc((size_t)n_threads, sizeof *p->taken);
        if (!p->w || !p->taken) {
            free(p->w);
            free(p->taken);
            free(p);
            return NULL;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        ts_worker *w = &p->w[i - 1];
        w->pool = p;
        w->ith = i;
        if (pthread_create(&w->th, NULL, ts_worker_main, w) != 0) {
            p->n = i; /* only threads 1..i-1 exist: shut those down */
            ts_pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

void ts_pool_destroy(ts_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        atomic_store(&p->stop, 1);
        atomic_fetch_add(&p->gen, 1);
        ts_futex(&p->gen, FUTEX_WAKE_PRIVATE, INT_MAX);
        for (int i = 1; i < p->n; i++) pthread_join(p->w[i - 1].th, NULL);
    }
    free(p->w);
    free(p->taken);
    free(p);
}

int ts_pool_size(const ts_pool *p) { return p ? p->n : 1; }

void ts_pool_run(ts_pool *p, ts_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1); /* release: publishes fn, ctx, pending */
    int g = atomic_load(&p->gen);  /* only the caller changes gen */
    if (atomic_load(&p->n_sleep_gen) > 0) ts_futex(&p->gen, FUTEX_WAKE_PRIVATE, INT_MAX);
    fn(ctx, 0, p->n);
    for (int i = 1; i < p->n; i++) /* shares whose worker has not started */
        if (ts_claim(&p->taken[i], g)) {
            fn(ctx, i, p->n);
            atomic_fetch_sub(&p->pending, 1);
        }
    int left;
    while ((left = atomic_load(&p->pending)) != 0)
        ts_wait_change(&p->pending, left, &p->caller_sleeps);
}
