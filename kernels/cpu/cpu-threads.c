/* A persistent worker pool: threads start once per instance, so an op
 * costs a hand-off, not a pthread_create (a decode step runs hundreds of
 * ops).  The hand-off spins for a short while before it blocks: ops of a
 * step follow each other within microseconds, and a futex wake-up per op
 * (the first version) cost more than the op on small models.  Past the
 * spin both sides sleep on condition variables, so an idle engine burns
 * no CPU.
 *
 * A job is published as one word, generation << 16 | thread count, so a
 * worker that skips a job (its index is past the count) never reads the
 * next job's fields half written.  The sleep paths pair a seq_cst store
 * with a seq_cst load on each side (Dekker): a publisher that sees no
 * sleeper is seen by the worker's recheck, and one that sees a sleeper
 * broadcasts under the mutex the sleeper holds until it waits. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "cpu-impl.h"

#define SPIN_NS 100000          /* spin this long before blocking (100 us) */
#define SPIN_CHECK 64           /* pause rounds between clock reads */

struct cpu_pool {
    int n;                      /* threads including the caller */
    int started;                /* workers actually created */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    _Atomic uint64_t job;       /* generation << 16 | threads taking part */
    _Atomic int pending;        /* workers still inside the current job */
    _Atomic int sleepers;       /* workers blocked (or about to block) on wake */
    _Atomic int caller_waits;   /* the caller blocked (or about to) on done */
    _Atomic int stop;
    cpu_task_fn fn;             /* written before the job word, read after it */
    void *arg;
};

struct cpu_worker_arg {
    struct cpu_pool *pool;
    int ith;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until done(pool, ref) or SPIN_NS pass; returns done's last answer. */
static int spin_until(int (*done)(struct cpu_pool *, uint64_t), struct cpu_pool *pool, uint64_t ref)
{
    int64_t t0 = 0;
    for (int i = 0;; i++) {
        if (done(pool, ref))
            return 1;
        cpu_relax();
        if (i % SPIN_CHECK == SPIN_CHECK - 1) {
            int64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > SPIN_NS)
                return 0;
        }
    }
}

static int job_changed(struct cpu_pool *pool, uint64_t seen)
{
    return atomic_load_explicit(&pool->job, memory_order_acquire) != seen ||
           atomic_load_explicit(&pool->stop, memory_order_relaxed);
}

static int job_finished(struct cpu_pool *pool, uint64_t unused)
{
    (void)unused;
    return atomic_load_explicit(&pool->pending, memory_order_acquire) == 0;
}

/* The next job word after `seen` (or any word once stop is set). */
static uint64_t wait_job(struct cpu_pool *pool, uint64_t seen)
{
    if (!spin_until(job_changed, pool, seen)) {
        pthread_mutex_lock(&pool->mu);
        atomic_fetch_add(&pool->sleepers, 1);
        while (atomic_load(&pool->job) == seen && !atomic_load(&pool->stop))
            pthread_cond_wait(&pool->wake, &pool->mu);
        atomic_fetch_sub(&pool->sleepers, 1);
        pthread_mutex_unlock(&pool->mu);
    }
    return atomic_load_explicit(&pool->job, memory_order_acquire);
}

static void *cpu_worker(void *p)
{
    struct cpu_worker_arg *wa = p;
    struct cpu_pool *pool = wa->pool;
    int ith = wa->ith;
    uint64_t seen = 0;
    free(wa);
    for (;;) {
        seen = wait_job(pool, seen);
        if (atomic_load(&pool->stop))
            break;
        int nth = (int)(seen & 0xffff);
        if (ith >= nth)
            continue;           /* not needed for this job */
        pool->fn(pool->arg, ith, nth);
        if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_waits)) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

int cpu_pool_create(int n, struct cpu_pool **out)
{
    struct cpu_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return cpu_host->error(ZL_ENOMEM, "cpu backend: cannot allocate the thread pool");
    pool->n = n < 1 ? 1 : n;     /* open() caps it at CPU_MAX_THREADS: 16 bits */
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->th = calloc((size_t)pool->n, sizeof *pool->th);
    if (!pool->th) {
        cpu_pool_free(pool);
        return cpu_host->error(ZL_ENOMEM, "cpu backend: cannot allocate the thread pool");
    }
    for (int i = 1; i < pool->n; i++) {
        struct cpu_worker_arg *wa = malloc(sizeof *wa);
        int rc = wa ? 0 : -1;
        if (wa) {
            wa->pool = pool;
            wa->ith = i;
            rc = pthread_create(&pool->th[i], NULL, cpu_worker, wa);
            if (rc != 0)
                free(wa);
        }
        if (rc != 0) {
            cpu_pool_free(pool);
            return cpu_host->error(ZL_EBACKEND, "cpu backend: cannot start worker thread %d of %d",
                                   i, n);
        }
        pool->started = i;
    }
    *out = pool;
    return ZL_OK;
}

void cpu_pool_free(struct cpu_pool *pool)
{
    if (!pool)
        return;
    atomic_store(&pool->stop, 1);
    pthread_mutex_lock(&pool->mu);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i <= pool->started; i++)
        pthread_join(pool->th[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->mu);
    free(pool->th);
    free(pool);
}

int cpu_pool_size(const struct cpu_pool *pool)
{
    return pool->n;
}

void cpu_pool_run(struct cpu_pool *pool, int want, cpu_task_fn fn, void *arg)
{
    int nth = (want <= 0 || want > pool->n) ? pool->n : want;
    if (nth == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, nth - 1);
    uint64_t job = atomic_load_explicit(&pool->job, memory_order_relaxed);
    atomic_store(&pool->job, ((job >> 16) + 1) << 16 | (uint64_t)nth);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, nth);
    if (spin_until(job_finished, pool, 0))
        return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->caller_waits, 1);
    while (atomic_load(&pool->pending) > 0)
        pthread_cond_wait(&pool->done, &pool->mu);
    atomic_store(&pool->caller_waits, 0);
    pthread_mutex_unlock(&pool->mu);
}

int cpu_pool_want(const struct cpu_pool *pool, int64_t work, int64_t per_thread)
{
    int64_t t = work / per_thread + 1;
    return t >= pool->n ? 0 : (int)t;
}

void cpu_split(int64_t n, int64_t grain, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t units = (n + grain - 1) / grain;
    int64_t a = units * ith / nth, b = units * (ith + 1) / nth;
    *lo = a * grain < n ? a * grain : n;
    *hi = b * grain < n ? b * grain : n;
}
