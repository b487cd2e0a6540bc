/* kv_write and paged causal attention over the block table (varlen batch,
 * chunked prefill and decode alike, GQA/MQA), f32 online softmax.
 *
 * A task is (query token, range of query heads), all heads by default: it
 * walks the context tile by tile and, within a tile, every kv head of its
 * range, so the cache is read front to back.  (One task per kv head read a
 * head_dim piece of each token row; the hardware prefetchers pulled in the
 * whole rows anyway, and a long context ran ~10x slower.)  K/V rows of a
 * tile are read once for all the query heads of a kv head (GQA).  Ranges
 * split only when there are fewer tokens than threads (decode); tasks are
 * handed out dynamically since causal tokens have different context lengths.
 * Each head's arithmetic is the same whatever the split (batch invariance). */
#include "config.h"

#include <math.h>
#include <stdatomic.h>

#include "cpu-impl.h"

#define TILE 64                 /* kv positions per softmax rescale (within one block) */
/* Positions per softmax segment: a context is walked in segments whose
 * states merge in order, whoever computes them, so a decode of few rows
 * can split its context over the threads and stay bitwise the same as one
 * task walking it.  A multiple of TILE and of power-of-two block sizes up
 * to 256, so there segment edges are tile edges. */
#define SEG 512
#define MIN_WORK_PER_THREAD 65536
/* Query rows of one sequence a prefill task walks together: each K row is
 * then loaded (and converted) once for QB rows of a head (tile_4x3), each V
 * tile converted once for them.  Every dot and softmax step is the one a
 * task of one row would do: the same tiles, kernels that sum a dot the same
 * way whatever their shape, each row's own state. */
#define QB 4

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
    int64_t group, range, n_ranges;     /* q heads per kv head, per task, tasks per token */
    int64_t n_segs;                     /* split: SEG segments per (token, range) task */
    int64_t qb;                         /* query rows a task (QB for long prefills, else 1) */
    float *part;                        /* split: [token][q head][segment] states; else NULL */
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

/* sc[g * TILE + r] = q_g . k_r for the ng query heads from q0 (nb[1] apart)
 * and t K rows from kr (row_stride apart): 4 heads x 2 rows at a time, so
 * GQA heads share each loaded K vector.  Every dot is summed in the same
 * order whatever the tile (batch invariance). */
static void scores(const struct attn_job *j, const char *q0, const char *kr, size_t row_stride,
                   int64_t ng, int64_t t, float *sc)
{
    const struct cpu_kernels *k = j->ctx->k;
    const enum zl_dtype dt = j->cache->dtype;
    const int64_t hd = j->cache->head_dim;
    const size_t qs = (size_t)j->q->nb[1];
    float o[8];
    int64_t g = 0;
    for (; g + 4 <= ng; g += 4) {
        const float *qg = (const float *)(q0 + (size_t)g * qs);
        int64_t r = 0;
        for (; r + 2 <= t; r += 2) {
            k->tile_4x2(qg, qs, kr + (size_t)r * row_stride, row_stride, dt, hd, o);
            for (int e = 0; e < 8; e++)
                sc[(g + e / 2) * TILE + r + e % 2] = o[e];
        }
        for (; r < t; r++)
            for (int e = 0; e < 4; e++)
                k->tile_1x1((const float *)((const char *)qg + (size_t)e * qs), 0,
                            kr + (size_t)r * row_stride, 0, dt, hd, &sc[(g + e) * TILE + r]);
    }
    for (; g < ng; g++) {
        const float *qg = (const float *)(q0 + (size_t)g * qs);
        int64_t r = 0;
        for (; r + 4 <= t; r += 4)
            k->tile_1x4(qg, 0, kr + (size_t)r * row_stride, row_stride, dt, hd, sc + g * TILE + r);
        for (; r < t; r++)
            k->tile_1x1(qg, 0, kr + (size_t)r * row_stride, 0, dt, hd, sc + g * TILE + r);
    }
}

/* sc[q * ld + r] = q_q . k_r for QB query rows of one head from q0 (xs
 * bytes apart) and t K rows: 4 rows x 3 keys at a time. */
static void scores_rows(const struct attn_job *j, const char *q0, size_t xs, const char *kr,
                        size_t row_stride, int64_t t, float *sc, int64_t ld)
{
    const struct cpu_kernels *k = j->ctx->k;
    const enum zl_dtype dt = j->cache->dtype;
    const int64_t hd = j->cache->head_dim;
    float o[12];
    int64_t r = 0;
    for (; r + 3 <= t; r += 3) {
        k->tile_4x3((const float *)q0, xs, kr + (size_t)r * row_stride, row_stride, dt, hd, o);
        for (int e = 0; e < 12; e++)
            sc[(e / 3) * ld + r + e % 3] = o[e];
    }
    for (; r < t; r++)
        for (int q = 0; q < QB; q++)
            k->tile_1x1((const float *)(q0 + (size_t)q * xs), 0, kr + (size_t)r * row_stride, 0, dt,
                        hd, &sc[q * ld + r]);
}

/* Online softmax update of one head with the t scores sg (scaled here) and
 * the f32 V rows vf (vs floats apart): running max m, sum l, accumulator
 * acc[hd]. */
static void softmax_update(const struct attn_job *j, float *sg, const float *vf, int64_t vs,
                           int64_t t, float *m, float *l, float *acc)
{
    const struct cpu_kernels *k = j->ctx->k;
    const int64_t hd = j->cache->head_dim;
    float mt = *m;
    for (int64_t r = 0; r < t; r++) {
        sg[r] *= j->scale;
        if (sg[r] > mt)
            mt = sg[r];
    }
    if (mt > *m) {  /* new running max: rescale what was summed so far */
        float corr = expf(*m - mt);
        *l *= corr;
        for (int64_t d = 0; d < hd; d++)
            acc[d] *= corr;
        *m = mt;
    }
    *l += k->exp_sum(sg, mt, t);
    k->axpy_rows(acc, sg, vf, vs, t, hd);
}

/* Prefetches the K and V bytes of kv heads [kv_lo, kv_hi) of the tile of
 * t positions at `slot`: the next tile is then on its way while this one
 * computes (the kv-head loop reads a row piecewise, which the hardware
 * prefetchers do not follow). */
static void prefetch_tile(const struct attn_job *j, int64_t slot, int64_t t, int64_t kv_lo,
                          int64_t kv_hi)
{
    const struct zl_kv_cache *c = j->cache;
    const size_t head = (size_t)c->head_dim * cpu_dtype_size(c->dtype);
    const size_t row_stride = (size_t)c->n_kv_heads * head;
    for (int kv = 0; kv < 2; kv++) {
        const char *p = cpu_kv_row(c, j->layer, kv, slot) + (size_t)kv_lo * head;
        for (int64_t r = 0; r < t; r++)
            for (size_t b = 0; b < (size_t)(kv_hi - kv_lo) * head; b += 64)
                __builtin_prefetch(p + (size_t)r * row_stride + b, 0, 1);  /* to L2: L1 is too small */
    }
}

/* The tile from position p0: *t positions (within one block) at *slot. */
static void tile_at(const struct zl_kv_cache *c, const int32_t *table, int64_t p0,
                    int64_t ctx_len, int64_t *slot, int64_t *t)
{
    int64_t bs = c->block_size, off = p0 % bs;
    *t = bs - off;
    if (*t > TILE)
        *t = TILE;
    if (*t > ctx_len - p0)
        *t = ctx_len - p0;
    *slot = (int64_t)table[p0 / bs] * bs + off;
}

/* Context length of query row i (its own position + 1); *seq gets its sequence. */
static int64_t ctx_of(const struct zl_attn_batch *b, int64_t i, int32_t *seq)
{
    int32_t s = seq_of(b, i);
    *seq = s;
    return b->kv_len[s] - (b->q_start[s + 1] - b->q_start[s]) + (i - b->q_start[s]) + 1;
}

/* A head's softmax state: acc[hd], then m and l, padded to whole cache
 * lines so acc stays aligned for P.V's vector loads and stores. */
#define ST_FLOATS(hd) (((hd) + 2 + 15) & ~(int64_t)15)
#define ST(st, g, hd) ((st) + (g) * ST_FLOATS(hd))
#define ST_M(h, hd) ((h)[(hd)])
#define ST_L(h, hd) ((h)[(hd) + 1])

static void state_init(float *st, int64_t hd)
{
    for (int64_t d = 0; d < hd; d++)
        st[d] = 0;
    ST_M(st, hd) = -INFINITY;
    ST_L(st, hd) = 0;
}

/* Positions [p_lo, p_hi) of query rows i .. i+nq-1 of sequence s (row q's
 * context ctx_len + q, nq 1 or QB) for heads h0 .. h0+nh-1: a fresh online
 * softmax per row and head into the states at st (head g of row q at
 * st + q * st_row + g * st_stride).  p_hi is the last row's; a row whose
 * context ends earlier stops there, as it would alone. */
static void attn_segment(const struct attn_job *j, float *scr, int64_t i, int64_t nq, int32_t s,
                         int64_t ctx_len, int64_t h0, int64_t nh, int64_t p_lo, int64_t p_hi,
                         float *st, int64_t st_stride, int64_t st_row)
{
    const struct cpu_kernels *k = j->ctx->k;
    const struct zl_kv_cache *c = j->cache;
    const int64_t hd = c->head_dim, G = j->group;
    const size_t el = cpu_dtype_size(c->dtype), head = (size_t)hd * el;
    const size_t row_stride = (size_t)c->n_kv_heads * head;   /* between tokens */
    const int32_t *table = j->b->block_table + (int64_t)s * j->b->max_blocks;
    const size_t qs0 = (size_t)j->q->nb[0], qs1 = (size_t)j->q->nb[1];

    float *vf = scr, *sc = vf + TILE * hd;      /* scores: [row][head][TILE] */
    const char *qi = (const char *)j->q->data + (size_t)i * qs0;
    for (int64_t q = 0; q < nq; q++)
        for (int64_t g = 0; g < nh; g++)
            state_init(st + q * st_row + g * st_stride, hd);
    const int64_t kv_lo = h0 / G, kv_hi = (h0 + nh - 1) / G + 1, ctx_end = ctx_len + nq - 1;
    for (int64_t p0 = p_lo; p0 < p_hi;) {
        int64_t slot, t, next_slot, next_t;
        tile_at(c, table, p0, p_hi, &slot, &t);
        if (p0 + t < ctx_end) {
            tile_at(c, table, p0 + t, ctx_end, &next_slot, &next_t);
            prefetch_tile(j, next_slot, next_t, kv_lo, kv_hi);
        }
        const char *k0 = cpu_kv_row(c, j->layer, 0, slot), *v0 = cpu_kv_row(c, j->layer, 1, slot);
        for (int64_t kvh = kv_lo; kvh < kv_hi; kvh++) {
            int64_t ga = kvh * G > h0 ? kvh * G : h0;                  /* its q heads in range */
            int64_t gb = (kvh + 1) * G < h0 + nh ? (kvh + 1) * G : h0 + nh;
            if (nq == 1)
                scores(j, qi + (size_t)ga * qs1, k0 + (size_t)kvh * head, row_stride, gb - ga, t,
                       sc + (ga - h0) * TILE);
            else /* QB rows, a head at a time: each K row loaded once for the rows */
                for (int64_t g = ga; g < gb; g++)
                    scores_rows(j, qi + (size_t)g * qs1, qs0, k0 + (size_t)kvh * head, row_stride,
                                t, sc + (g - h0) * TILE, nh * TILE);
            /* V rows as f32 once for all the q heads (and rows) of this kv
             * head; an f32 cache is read where it is (the copy was an
             * eighth of a long prefill) */
            const float *vr = (const float *)(v0 + (size_t)kvh * head);
            int64_t vs = (int64_t)(row_stride / sizeof(float));
            if (c->dtype != ZL_DTYPE_F32) {
                for (int64_t r = 0; r < t; r++)
                    k->to_f32(vf + r * hd, c->dtype, v0 + (size_t)r * row_stride + (size_t)kvh * head, hd);
                vr = vf;
                vs = hd;
            }
            for (int64_t q = 0; q < nq; q++) {
                /* row q's positions in this tile: it stops at its own context */
                const int64_t pq = ctx_len + q < p_hi ? ctx_len + q : p_hi, tq = pq - p0 < t ? pq - p0 : t;
                if (tq <= 0)
                    continue;
                for (int64_t g = ga - h0; g < gb - h0; g++) {
                    float *h = st + q * st_row + g * st_stride;
                    softmax_update(j, sc + (q * nh + g) * TILE, vr, vs, tq, &ST_M(h, hd), &ST_L(h, hd), h);
                }
            }
        }
        p0 += t;
    }
}

/* Folds a segment's state sg into the running state st.  One compiled copy
 * (noinline) serves the task that walks its whole context and the merge of
 * split segments, so both round alike.  Into the empty state it is exact
 * (a 0, b 1): a context of one segment gives the bits of a single walk. */
__attribute__((noinline)) static void merge_state(float *st, const float *sg, int64_t hd)
{
    float mn = ST_M(sg, hd) > ST_M(st, hd) ? ST_M(sg, hd) : ST_M(st, hd);
    float a = expf(ST_M(st, hd) - mn), b = expf(ST_M(sg, hd) - mn);
    ST_M(st, hd) = mn;
    ST_L(st, hd) = ST_L(st, hd) * a + ST_L(sg, hd) * b;
    for (int64_t d = 0; d < hd; d++)
        st[d] = st[d] * a + sg[d] * b;
}

static void write_out(const struct attn_job *j, int64_t i, int64_t h, const float *st, int64_t hd)
{
    float *o = (float *)((char *)j->out->data + (size_t)i * (size_t)j->out->nb[0] +
                         (size_t)h * (size_t)j->out->nb[1]);
    float inv = 1.0f / ST_L(st, hd);
    for (int64_t d = 0; d < hd; d++)
        o[d] = st[d] * inv;
}

/* One task's rows i .. i+nq-1 (one sequence), query heads h0 .. h0+nh-1:
 * each row's whole context in SEG-position segments merged in order. */
static void attn_rows(const struct attn_job *j, float *scr, int64_t i, int64_t nq, int64_t h0,
                      int64_t nh)
{
    const int64_t hd = j->cache->head_dim, ns = nq * nh;
    int32_t s;
    int64_t ctx_len = ctx_of(j->b, i, &s), ctx_end = ctx_len + nq - 1;
    float *tot = scr + TILE * hd + j->qb * nh * TILE, *seg = tot + ns * ST_FLOATS(hd);
    for (int64_t g = 0; g < ns; g++)
        state_init(ST(tot, g, hd), hd);
    for (int64_t p = 0; p < ctx_end; p += SEG) {
        attn_segment(j, scr, i, nq, s, ctx_len, h0, nh, p, p + SEG < ctx_end ? p + SEG : ctx_end,
                     seg, ST_FLOATS(hd), nh * ST_FLOATS(hd));
        for (int64_t q = 0; q < nq; q++)
            if (p < ctx_len + q) /* row q has positions in this segment */
                for (int64_t g = 0; g < nh; g++)
                    merge_state(ST(tot, q * nh + g, hd), ST(seg, q * nh + g, hd), hd);
    }
    for (int64_t q = 0; q < nq; q++)
        for (int64_t g = 0; g < nh; g++)
            write_out(j, i + q, h0 + g, ST(tot, q * nh + g, hd), hd);
}

/* Split tasks: (token, head range, segment), each into its slot of
 * j->part; cpu_attention merges them in segment order afterwards. */
static void attn_split_one(const struct attn_job *j, float *scr, int64_t t)
{
    const int64_t hd = j->cache->head_dim, hq = j->q->ne[1];
    int64_t sg = t % j->n_segs, rest = t / j->n_segs;
    int64_t i = rest / j->n_ranges, h0 = rest % j->n_ranges * j->range;
    int64_t nh = hq - h0 < j->range ? hq - h0 : j->range;
    int32_t s;
    int64_t ctx_len = ctx_of(j->b, i, &s), p = sg * SEG;
    if (p >= ctx_len)
        return;     /* past this row's context: the merge skips it */
    /* straight into the slots: a head's are n_segs states apart */
    attn_segment(j, scr, i, 1, s, ctx_len, h0, nh, p, p + SEG < ctx_len ? p + SEG : ctx_len,
                 j->part + ((i * hq + h0) * j->n_segs + sg) * ST_FLOATS(hd), j->n_segs * ST_FLOATS(hd), 0);
}

static void attn_task(void *arg, int ith, int nth)
{
    struct attn_job *j = arg;
    float *scr = cpu_scratch(j->ctx, ith);
    int64_t hq = j->q->ne[1];
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= j->n_tasks)
            break;
        if (j->part) {
            attn_split_one(j, scr, t);
            continue;
        }
        int64_t b = t / j->n_ranges, h0 = t % j->n_ranges * j->range;
        int64_t nh = hq - h0 < j->range ? hq - h0 : j->range, n = j->q->ne[0];
        /* rows [b qb, b qb + qb): QB of one sequence together, else one by one */
        int64_t i = b * j->qb, end = i + j->qb < n ? i + j->qb : n;
        int32_t s = seq_of(j->b, i);
        if (end - i == QB && j->b->q_start[s + 1] >= end)
            attn_rows(j, scr, i, QB, h0, nh);
        else
            for (; i < end; i++)
                attn_rows(j, scr, i, 1, h0, nh);
    }
}

/* After split tasks: each row's heads merge their segments in order. */
static void merge_split(const struct attn_job *j, float *tot)
{
    const int64_t hd = j->cache->head_dim, hq = j->q->ne[1];
    for (int64_t i = 0; i < j->q->ne[0]; i++) {
        int32_t s;
        int64_t ctx_len = ctx_of(j->b, i, &s);
        for (int64_t h = 0; h < hq; h++) {
            state_init(tot, hd);
            for (int64_t sg = 0; sg * SEG < ctx_len; sg++)
                merge_state(tot, j->part + ((i * hq + h) * j->n_segs + sg) * ST_FLOATS(hd), hd);
            write_out(j, i, h, tot, hd);
        }
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
    /* Split the query heads into ranges only until every thread has tasks
     * (decode of few sequences); whole kv heads' groups while they last. */
    int nth = cpu_pool_size(ctx->pool);
    int64_t hq = q->ne[1], n_ranges = 1;
    while (n * n_ranges < 2 * nth && n_ranges < hq)
        n_ranges *= 2;
    int64_t range = (hq + n_ranges - 1) / n_ranges;
    if (range > group && range % group)
        range = (range + group - 1) / group * group;
    n_ranges = (hq + range - 1) / range;
    /* A long prefill walks QB rows a task (while every thread keeps tasks) */
    int64_t qb = n >= (int64_t)QB * 2 * nth * n_ranges ? QB : 1;
    /* tile V and scores, then two states per row and head (running, segment) */
    size_t floats = (size_t)(TILE * hd + qb * range * TILE + 2 * qb * range * ST_FLOATS(hd));
    if ((rc = cpu_scratch_reserve(ctx, op, floats)) < 0)
        return rc;
    int64_t ctx_sum = 0, ctx_max = 0;   /* the work; the longest context */
    for (int32_t s = 0; s < batch->n_seqs; s++) {
        int64_t nn = batch->q_start[s + 1] - batch->q_start[s], kl = batch->kv_len[s];
        ctx_sum += nn * (2 * kl - nn + 1) / 2;
        if (nn > 0 && kl > ctx_max)
            ctx_max = kl;
    }
    struct attn_job j = {.ctx = ctx, .q = q, .out = out, .cache = cache, .b = batch,
                         .layer = layer, .scale = scale, .group = group, .range = range,
                         .n_ranges = n_ranges, .n_segs = 1, .qb = qb,
                         .n_tasks = (n + qb - 1) / qb * n_ranges};
    /* Too few tasks for the threads (a decode of a few sequences, here or
     * because the kv groups do not divide among them): split the contexts
     * into their segments too, and merge after. */
    int64_t n_segs = (ctx_max + SEG - 1) / SEG;
    if (n * n_ranges < 2 * nth && n_segs > 1) {
        if ((rc = cpu_shared_reserve(ctx, op, (size_t)(n * hq * n_segs * ST_FLOATS(hd)))) < 0)
            return rc;
        j.part = ctx->shared;
        j.n_segs = n_segs;
        j.n_tasks = n * n_ranges * n_segs;
        j.qb = 1;
    }
    atomic_init(&j.next, 0);
    cpu_pool_run(ctx->pool, cpu_pool_want(ctx->pool, ctx_sum * q->ne[1] * hd, MIN_WORK_PER_THREAD),
                 attn_task, &j);
    if (j.part)
        merge_split(&j, cpu_scratch(ctx, 0));
    return ZL_OK;
}
