/* kv_write and paged causal attention over the block table (varlen batch,
 * chunked prefill and decode alike, GQA/MQA), f32 online softmax.
 *
 * A task is (query token, kv head, slice of that kv head's query heads): the
 * K/V rows of a tile are read once for all the heads of the slice (GQA
 * shares them), and tasks are handed out dynamically because causal tokens
 * have different context lengths. */
#include "config.h"

#include <math.h>
#include <stdatomic.h>

#include "cpu-impl.h"

#define TILE 64                 /* kv positions per softmax rescale (within one block) */
#define MIN_WORK_PER_THREAD 65536

/* ---- kv_write ---- */

struct kvw_job {
    const struct zl_kv_cache *cache;
    int32_t layer;
    const struct zl_tensor *t[2];       /* k, v [n, n_kv_heads, head_dim] */
    const int32_t *slot;
};

static void kvw_task(void *arg, int ith, int nth)
{
    const struct kvw_job *j = arg;
    const struct zl_kv_cache *c = j->cache;
    size_t head_bytes = (size_t)c->head_dim * cpu_dtype_size(c->dtype);
    int64_t lo, hi;
    cpu_split(j->t[0]->ne[0], 1, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        for (int kv = 0; kv < 2; kv++) {
            const struct zl_tensor *t = j->t[kv];
            char *dst = cpu_kv_row(c, j->layer, kv, j->slot[i]);
            for (int32_t h = 0; h < c->n_kv_heads; h++) {
                const float *src = (const float *)((const char *)t->data + (size_t)i * (size_t)t->nb[0] +
                                                   (size_t)h * (size_t)t->nb[1]);
                cpu_row_from_f32(dst + (size_t)h * head_bytes, c->dtype, src, c->head_dim);
            }
        }
}

/* t is [n_tok, n_kv_heads, head_dim] of the cache's geometry. */
static int check_heads(const char *op, const char *name, const struct zl_tensor *t,
                       int64_t n_tok, int64_t heads, int64_t head_dim)
{
    if (t->ne[0] != n_tok || t->ne[1] != heads || t->ne[2] != head_dim)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s [%lld, %lld, %lld], want [%lld, %lld, %lld]",
                               op, name, (long long)t->ne[0], (long long)t->ne[1],
                               (long long)t->ne[2], (long long)n_tok, (long long)heads,
                               (long long)head_dim);
    return ZL_OK;
}

int cpu_kv_write(struct zl_bctx *ctx, const struct zl_kv_cache *cache, int32_t layer,
                 const struct zl_tensor *k, const struct zl_tensor *v,
                 const struct zl_attn_batch *batch)
{
    static const char op[] = "kv_write";
    int rc;
    if ((rc = cpu_check_3d(op, "k", k, CPU_DT_F32)) < 0 ||
        (rc = cpu_check_3d(op, "v", v, CPU_DT_F32)) < 0 ||
        (rc = cpu_check_kv(op, cache, layer, batch, k->ne[0])) < 0 ||
        (rc = check_heads(op, "k", k, k->ne[0], cache->n_kv_heads, cache->head_dim)) < 0 ||
        (rc = check_heads(op, "v", v, k->ne[0], cache->n_kv_heads, cache->head_dim)) < 0)
        return rc;
    struct kvw_job j = {.cache = cache, .layer = layer, .t = {k, v}, .slot = batch->slot};
    int64_t work = k->ne[0] * cache->n_kv_heads * cache->head_dim * 2;
    cpu_pool_run(ctx->pool, cpu_pool_want(ctx->pool, work, MIN_WORK_PER_THREAD), kvw_task, &j);
    return ZL_OK;
}

/* ---- attention ---- */

struct attn_job {
    struct zl_bctx *ctx;
    const struct zl_tensor *q, *out;
    const struct zl_kv_cache *cache;
    const struct zl_attn_batch *b;
    int32_t layer;
    float scale;
    int64_t group, slice, n_slices;     /* q heads per kv head, per task, tasks per kv head */
    int64_t n_tasks;
    atomic_llong next;
};

/* The sequence owning query row i (q_start is sorted). */
static int32_t seq_of(const struct zl_attn_batch *b, int64_t i)
{
    int32_t lo = 0, hi = b->n_seqs - 1;
    while (lo < hi) {
        int32_t mid = (lo + hi + 1) / 2;
        if (b->q_start[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* One task: query token i, heads h0 .. h0+ng-1 sharing kv head kvh. */
static void attn_one(const struct attn_job *j, float *scr, int64_t i, int64_t kvh, int64_t h0,
                     int64_t ng)
{
    const struct cpu_kernels *k = j->ctx->k;
    const struct zl_kv_cache *c = j->cache;
    const struct zl_attn_batch *b = j->b;
    const int64_t hd = c->head_dim, bs = c->block_size;
    const size_t el = cpu_dtype_size(c->dtype);
    const size_t row_stride = (size_t)c->n_kv_heads * (size_t)hd * el;   /* between tokens */
    int32_t s = seq_of(b, i);
    int64_t ctx_len = b->kv_len[s] - (b->q_start[s + 1] - b->q_start[s]) + (i - b->q_start[s]) + 1;
    const int32_t *table = b->block_table + (int64_t)s * b->max_blocks;

    float *vf = scr, *sc = vf + TILE * hd, *acc = sc + ng * TILE, *m = acc + ng * hd, *l = m + ng;
    const char *q0 = (const char *)j->q->data + (size_t)i * (size_t)j->q->nb[0] +
                     (size_t)h0 * (size_t)j->q->nb[1];
    for (int64_t g = 0; g < ng; g++) {
        m[g] = -INFINITY;
        l[g] = 0;
        for (int64_t d = 0; d < hd; d++)
            acc[g * hd + d] = 0;
    }
    for (int64_t p0 = 0; p0 < ctx_len;) {
        int64_t off = p0 % bs, t = bs - off;
        if (t > TILE)
            t = TILE;
        if (t > ctx_len - p0)
            t = ctx_len - p0;
        int64_t slot = (int64_t)table[p0 / bs] * bs + off;
        const char *kr = cpu_kv_row(c, j->layer, 0, slot) + (size_t)kvh * (size_t)hd * el;
        const char *vr = cpu_kv_row(c, j->layer, 1, slot) + (size_t)kvh * (size_t)hd * el;
        for (int64_t g = 0; g < ng; g++) {
            const float *qg = (const float *)(q0 + (size_t)g * (size_t)j->q->nb[1]);
            float *sg = sc + g * TILE;
            int64_t r = 0;
            for (; r + 4 <= t; r += 4)
                k->tile_1x4(qg, 0, kr + (size_t)r * row_stride, row_stride, c->dtype, hd, sg + r);
            for (; r < t; r++)
                k->tile_1x1(qg, 0, kr + (size_t)r * row_stride, 0, c->dtype, hd, sg + r);
        }
        /* V rows as f32 once for the whole slice of heads */
        for (int64_t r = 0; r < t; r++)
            k->to_f32(vf + r * hd, c->dtype, vr + (size_t)r * row_stride, hd);
        for (int64_t g = 0; g < ng; g++) {
            float *sg = sc + g * TILE, *ag = acc + g * hd, mt = m[g];
            for (int64_t r = 0; r < t; r++) {
                sg[r] *= j->scale;
                if (sg[r] > mt)
                    mt = sg[r];
            }
            if (mt > m[g]) {  /* new running max: rescale what was summed so far */
                float corr = expf(m[g] - mt);
                l[g] *= corr;
                for (int64_t d = 0; d < hd; d++)
                    ag[d] *= corr;
                m[g] = mt;
            }
            for (int64_t r = 0; r < t; r++) {
                float p = expf(sg[r] - mt);
                l[g] += p;
                k->axpy(ag, p, vf + r * hd, hd);
            }
        }
        p0 += t;
    }
    for (int64_t g = 0; g < ng; g++) {
        float *o = (float *)((char *)j->out->data + (size_t)i * (size_t)j->out->nb[0] +
                             (size_t)(h0 + g) * (size_t)j->out->nb[1]);
        float inv = 1.0f / l[g];
        for (int64_t d = 0; d < hd; d++)
            o[d] = acc[g * hd + d] * inv;
    }
}

static void attn_task(void *arg, int ith, int nth)
{
    struct attn_job *j = arg;
    float *scr = cpu_scratch(j->ctx, ith);
    int64_t per_tok = j->cache->n_kv_heads * j->n_slices;
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= j->n_tasks)
            break;
        int64_t i = t / per_tok, kvh = t % per_tok / j->n_slices, sl = t % j->n_slices;
        int64_t h0 = kvh * j->group + sl * j->slice;
        int64_t ng = j->group - sl * j->slice < j->slice ? j->group - sl * j->slice : j->slice;
        attn_one(j, scr, i, kvh, h0, ng);
    }
}

int cpu_attention(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *q,
                  const struct zl_kv_cache *cache, int32_t layer,
                  const struct zl_attn_batch *batch, float scale)
{
    static const char op[] = "attention";
    int rc;
    if ((rc = cpu_check_3d(op, "q", q, CPU_DT_F32)) < 0 ||
        (rc = cpu_check_3d(op, "out", out, CPU_DT_F32)) < 0 ||
        (rc = cpu_check_kv(op, cache, layer, batch, q->ne[0])) < 0 ||
        (rc = check_heads(op, "out", out, q->ne[0], q->ne[1], q->ne[2])) < 0)
        return rc;
    if (q->ne[2] != cache->head_dim || q->ne[1] < 1 || q->ne[1] % cache->n_kv_heads)
        return cpu_host->error(ZL_EINVAL, "cpu attention: q [%lld, %lld, %lld] vs cache %d kv "
                               "heads of %d: head_dim differs or heads are not a multiple",
                               (long long)q->ne[0], (long long)q->ne[1], (long long)q->ne[2],
                               (int)cache->n_kv_heads, (int)cache->head_dim);
    if (!isfinite(scale))
        return cpu_host->error(ZL_EINVAL, "cpu attention: scale %g is not finite", (double)scale);
    int64_t n = q->ne[0], hd = cache->head_dim, group = q->ne[1] / cache->n_kv_heads;
    if (n == 0)
        return ZL_OK;
    /* Split a kv head's query heads into slices until every thread has tasks
     * (decode of one sequence with few kv heads, MQA above all). */
    int nth = cpu_pool_size(ctx->pool);
    int64_t n_slices = 1;
    while (n * cache->n_kv_heads * n_slices < 2 * nth && n_slices < group)
        n_slices *= 2;
    if (n_slices > group)
        n_slices = group;
    int64_t slice = (group + n_slices - 1) / n_slices;
    n_slices = (group + slice - 1) / slice;
    size_t floats = (size_t)(TILE * hd + slice * TILE + slice * hd + 2 * slice);
    if ((rc = cpu_scratch_reserve(ctx, op, floats)) < 0)
        return rc;
    int64_t ctx_sum = 0;        /* sum of the context lengths: the work */
    for (int32_t s = 0; s < batch->n_seqs; s++) {
        int64_t nn = batch->q_start[s + 1] - batch->q_start[s], kl = batch->kv_len[s];
        ctx_sum += nn * (2 * kl - nn + 1) / 2;
    }
    struct attn_job j = {.ctx = ctx, .q = q, .out = out, .cache = cache, .b = batch,
                         .layer = layer, .scale = scale, .group = group, .slice = slice,
                         .n_slices = n_slices, .n_tasks = n * cache->n_kv_heads * n_slices};
    atomic_init(&j.next, 0);
    cpu_pool_run(ctx->pool, cpu_pool_want(ctx->pool, ctx_sum * q->ne[1] * hd, MIN_WORK_PER_THREAD),
                 attn_task, &j);
    return ZL_OK;
}
