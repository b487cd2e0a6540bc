/* A persistent worker pool: threads start once per instance and wait on a
 * condition variable between ops, so an op costs a wake-up, not a
 * pthread_create (a decode step runs hundreds of ops). */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>

#include "cpu-impl.h"

struct cpu_pool {
    int n;                      /* threads including the caller */
    int started;                /* workers actually created */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t gen;               /* bumped per job; workers run each gen once */
    int pending;                /* workers still inside the current job */
    int nth;                    /* threads taking part in the current job */
    int stop;
    cpu_task_fn fn;
    void *arg;
};

struct cpu_worker_arg {
    struct cpu_pool *pool;
    int ith;
};

static void *cpu_worker(void *p)
{
    struct cpu_worker_arg *wa = p;
    struct cpu_pool *pool = wa->pool;
    int ith = wa->ith;
    uint64_t seen = 0;
    free(wa);
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (pool->gen == seen && !pool->stop)
            pthread_cond_wait(&pool->wake, &pool->mu);
        if (pool->stop)
            break;
        seen = pool->gen;
        if (ith >= pool->nth)
            continue;           /* not needed for this job */
        cpu_task_fn fn = pool->fn;
        void *arg = pool->arg;
        int nth = pool->nth;
        pthread_mutex_unlock(&pool->mu);
        fn(arg, ith, nth);
        pthread_mutex_lock(&pool->mu);
        if (--pool->pending == 0)
            pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int cpu_pool_create(int n, struct cpu_pool **out)
{
    struct cpu_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return cpu_host->error(ZL_ENOMEM, "cpu backend: cannot allocate the thread pool");
    pool->n = n < 1 ? 1 : n;
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
    pthread_mutex_lock(&pool->mu);
    pool->stop = 1;
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
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->nth = nth;
    pool->pending = nth - 1;
    pool->gen++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, nth);
    pthread_mutex_lock(&pool->mu);
    while (pool->pending > 0)
        pthread_cond_wait(&pool->done, &pool->mu);
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
