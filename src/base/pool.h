/* ts_pool: a fixed pool of worker threads for data-parallel kernels.
 *
 * ts_pool_run(pool, fn, ctx) calls fn(ctx, ith, nth) once for each ith in
 * [0, nth), nth = ts_pool_size(pool), and returns when all have finished.
 * Share ith runs on worker ith, or on the caller (thread 0, after its own
 * share) when that worker has not started it by then: shares must not wait
 * for each other, and per-share state belongs to ith, not to the OS thread.
 * Workers spin briefly between jobs, so back-to-back small kernels (a decode
 * step issues hundreds) do not pay a wake-up each.
 * Only one thread may call ts_pool_run at a time. */
#ifndef TS_BASE_POOL_H
#define TS_BASE_POOL_H

typedef struct ts_pool ts_pool;
typedef void (*ts_pool_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 counts the caller. Returns NULL on allocation failure. */
ts_pool *ts_pool_create(int n_threads);
void ts_pool_destroy(ts_pool *pool);
int ts_pool_size(const ts_pool *pool);
void ts_pool_run(ts_pool *pool, ts_pool_fn fn, void *ctx);

/* Splits [0, n) into nth near-equal ranges; sets [*lo, *hi) for thread ith. */
static inline void ts_pool_range(long n, int ith, int nth, long *lo, long *hi) {
    long per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

#endif
