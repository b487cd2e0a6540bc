/* The warm-up request (zl_engine_params.warmup_tokens): one prompt and one
 * decode step run by zl_engine_create before the engine serves.  A fresh
 * CUDA process pays one-time costs on its first steps (kernels loaded on
 * first launch, cuBLASLt's first plans): on an H100 the first 1024-token
 * request of a fresh zlightd took 116 ms to its first token where the
 * next took 32 (median); 51 after a warm-up of 114 ms (BENCHMARKS.md).
 * The warm-up takes most of them instead.  Its
 * events are dropped, and the counters that get_stats reports start after
 * it (e->base), so /metrics counts client requests only. */
#include "config.h"

#include <stdlib.h>

#include <zlight/log.h>

#include "engine-impl.h"

int zl_engine_warm_up(struct zl_engine *e, int32_t n_tokens)
{
    /* capped so that it and its two tokens fit max_model_len and the pool
     * (less a block of slack): a warm-up never keeps a server from starting */
    int64_t pool = (int64_t)(zl_kv_n_blocks(e->kv) - e->pad.held - 1) * e->p.block_size;
    int64_t cap = pool < e->p.sched.max_model_len ? pool : e->p.sched.max_model_len;
    int32_t n = n_tokens < cap - 2 ? n_tokens : (int32_t)(cap - 2);
    if (n < 1)
        return ZL_OK;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    if (!ids)
        return zl_error(ZL_ENOMEM, "engine: out of memory for the warm-up prompt");
    /* spread over the vocabulary (an LCG): no client prompt shares its blocks */
    uint32_t x = 0x2545f491u;
    for (int32_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = (int32_t)((x >> 8) % (uint32_t)e->vocab);
    }
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 2;
    sp.ignore_eos = 1;
    sp.has_seed = 1; /* draws no seed: unseeded clients get the seeds they get without it */
    double t0 = zl_engine_now();
    e->warming = true;
    int rc = zl_engine_submit(e, ids, n, &sp, NULL, NULL);
    free(ids);
    int left = 1;
    while (rc == ZL_OK && left > 0)
        if ((left = zl_engine_step(e)) < 0)
            rc = left;
    e->warming = false;
    if (rc < 0)
        return zl_error_wrap(rc, "engine: the warm-up request of %d tokens failed", n);
    pthread_mutex_lock(&e->mu);
    e->base = e->st;
    pthread_mutex_unlock(&e->mu);
    ZL_INFO("engine", "warm-up: a %d-token prompt and one decode step in %.0f ms", n,
            1e3 * (zl_engine_now() - t0));
    return ZL_OK;
}

static void hist_since(const struct zl_histogram *h, const struct zl_histogram *b,
                       struct zl_histogram *out)
{
    out->count = h->count - b->count;
    out->sum = h->sum - b->sum;
    for (int i = 0; i < ZL_HIST_BUCKETS; i++)
        out->buckets[i] = h->buckets[i] - b->buckets[i];
}

void zl_engine_stats_since(const struct zl_engine_stats *st, const struct zl_engine_stats *base,
                           struct zl_engine_stats *out)
{
    *out = *st; /* the gauges (running, waiting, KV use) as they are */
    out->n_preemptions -= base->n_preemptions;
    out->prefix_queried_tokens -= base->prefix_queried_tokens;
    out->prefix_hit_tokens -= base->prefix_hit_tokens;
    out->prefix_hit_rate = out->prefix_queried_tokens
                               ? (double)out->prefix_hit_tokens / (double)out->prefix_queried_tokens
                               : 0.0;
    out->prompt_tokens -= base->prompt_tokens;
    out->generation_tokens -= base->generation_tokens;
    out->requests_submitted -= base->requests_submitted;
    out->requests_finished -= base->requests_finished;
    out->n_steps -= base->n_steps;
    out->graph_steps -= base->graph_steps;
    out->async_steps -= base->async_steps;
    hist_since(&st->ttft, &base->ttft, &out->ttft);
    hist_since(&st->tpot, &base->tpot, &out->tpot);
    hist_since(&st->itl, &base->itl, &out->itl);
    hist_since(&st->e2e, &base->e2e, &out->e2e);
}
