/* kv_write and attention: argument checks, the batch's host arrays uploaded
 * (once per step: kv_write and attention of every layer see the same bytes,
 * and cuda_upload skips an identical upload) and their ids checked (once
 * per distinct batch too), then one launch each. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

/* Device copies of the batch's arrays for n_tok query rows, their lengths,
 * block ids and slots checked against the cache c unless these very bytes
 * passed for the same geometry already. */
static int upload_batch(struct zl_bctx *ctx, const char *op, const struct zl_kv_cache *c,
                        const struct zl_attn_batch *b, int64_t n_tok, struct zl_cuda_batch *out)
{
    size_t i4 = sizeof(int32_t);
    /* a graph pass widens the table: one width for a range of lengths */
    int32_t cols = cuda_graph_pass(ctx) ? cuda_graph_table_cols(b->max_blocks) : b->max_blocks;
    struct cuda_part parts[4] = {
        {.src = b->q_start, .bytes = ((size_t)b->n_seqs + 1) * i4},
        {.src = b->kv_len, .bytes = (size_t)b->n_seqs * i4},
        {.src = b->block_table, .rows = (size_t)b->n_seqs, .row_bytes = (size_t)b->max_blocks * i4,
         .pitch = (size_t)cols * i4},
        {.src = b->slot, .bytes = (size_t)n_tok * i4},
    };
    void *dev[4];
    int rc = cuda_upload(ctx, &ctx->meta, op, parts, 4, dev);
    if (rc < 0)
        return rc;
    int64_t key[4] = {c->block_size, b->max_blocks, n_tok, b->n_seqs}; /* block_size >= 1 */
    if (memcmp(ctx->meta.checked, key, sizeof key)) {
        if ((rc = cuda_check_batch_ids(op, c, b, n_tok)) < 0)
            return rc;
        memcpy(ctx->meta.checked, key, sizeof key);
    }
    *out = (struct zl_cuda_batch){.n_seqs = b->n_seqs, .max_blocks = cols,
                                  .q_start = dev[0], .kv_len = dev[1], .block_table = dev[2],
                                  .slot = dev[3]};
    return ZL_OK;
}

/* Tuning build only: ZL_SKIP_ATTN=1 makes rope_kv_write and attention do
 * nothing (a timing floor for the rest of the step; the tokens are wrong). */
static int skip_attention(void)
{
#ifdef ZL_GEMV_TUNING
    static int skip = -1;
    if (skip < 0)
        skip = getenv("ZL_SKIP_ATTN") != NULL;
    return skip;
#else
    return 0;
#endif
}

int cuda_kv_write(struct zl_bctx *ctx, const struct zl_kv_cache *cache, int32_t layer,
                  const struct zl_tensor *k, const struct zl_tensor *v,
                  const struct zl_attn_batch *batch)
{
    static const char op[] = "kv_write";
    struct zl_cuda_heads kh, vh;
    struct zl_cuda_kv kv;
    struct zl_cuda_batch db;
    int rc;
    if ((rc = cuda_check_heads(ctx, op, "k", k, CUDA_DT_FLOAT, &kh)) < 0 ||
        (rc = cuda_check_heads(ctx, op, "v", v, CUDA_DT_FLOAT, &vh)) < 0 ||
        (rc = cuda_check_kv(op, cache, layer, batch, kh.n, &kv)) < 0 ||
        (rc = cuda_check_heads_shape(op, "k", &kh, kh.n, kv.n_kv_heads, kv.head_dim)) < 0 ||
        (rc = cuda_check_heads_shape(op, "v", &vh, kh.n, kv.n_kv_heads, kv.head_dim)) < 0)
        return rc;
    if (kh.dtype != vh.dtype)
        return zl_cuda_host->error(ZL_EINVAL, "cuda kv_write: k is %s but v is %s",
                                   cuda_dtype_name(kh.dtype), cuda_dtype_name(vh.dtype));
    if (kh.n == 0)
        return ZL_OK;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    if ((rc = upload_batch(ctx, op, cache, batch, kh.n, &db)) < 0 || cuda_graph_dry(ctx))
        return rc;
    ZL_CUDA_TRY(zl_cuda_kv_write(&kv, &kh, &vh, db.slot, ctx->stream));
    return ZL_OK;
}

/* rope_kv_write's checks, inv_freq and batch uploads (after which a
 * recording pass is done): what its kernel and linear_rope_kv's fused
 * epilogue launch with. */
static int rope_kv_prepare(struct zl_bctx *ctx, const char *op, const struct zl_rope_kv *r,
                           struct cuda_rope_args *a, struct zl_cuda_heads *vh,
                           struct zl_cuda_kv *kv, struct zl_cuda_batch *db)
{
    int rc;
    if (!r->k)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: k is required", op);
    if ((rc = cuda_check_heads(ctx, op, "v", r->v, CUDA_DT_FLOAT, vh)) < 0 ||
        (rc = cuda_rope_prepare(ctx, op, r->q, r->k, r->positions, r->rope, a)) < 0 ||
        (rc = cuda_check_kv(op, r->cache, r->layer, r->batch, a->k.n, kv)) < 0 ||
        (rc = cuda_check_heads_shape(op, "k", &a->k, a->k.n, kv->n_kv_heads, kv->head_dim)) < 0 ||
        (rc = cuda_check_heads_shape(op, "v", vh, a->k.n, kv->n_kv_heads, kv->head_dim)) < 0)
        return rc;
    if (vh->dtype != a->k.dtype)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: k is %s but v is %s", op,
                                   cuda_dtype_name(a->k.dtype), cuda_dtype_name(vh->dtype));
    if (a->q.n == 0)
        return ZL_OK;
    return upload_batch(ctx, op, r->cache, r->batch, a->q.n, db);
}

/* rope_kv_write's kernel on its checked arguments. */
static int rope_kv_run(struct zl_bctx *ctx, const struct cuda_rope_args *a,
                       const struct zl_cuda_heads *vh, const struct zl_rope *rope,
                       const struct zl_cuda_kv *kv, const int32_t *slot)
{
    ZL_CUDA_TRY(zl_cuda_rope_kv_write(&a->q, &a->k, vh, a->pos, a->pos_step, a->freq,
                                      rope->rot_dim, rope->attn_factor, kv, slot, ctx->stream));
    return ZL_OK;
}

int cuda_rope_kv_write(struct zl_bctx *ctx, struct zl_tensor *q, const struct zl_tensor *k,
                       const struct zl_tensor *v, const struct zl_tensor *positions,
                       const struct zl_rope *rope, const struct zl_kv_cache *cache, int32_t layer,
                       const struct zl_attn_batch *batch)
{
    static const char op[] = "rope_kv_write";
    const struct zl_rope_kv r = {q, k, v, positions, rope, cache, layer, batch};
    struct cuda_rope_args a;
    struct zl_cuda_heads vh;
    struct zl_cuda_kv kv;
    struct zl_cuda_batch db;
    int rc = rope_kv_prepare(ctx, op, &r, &a, &vh, &kv, &db);
    if (rc < 0 || a.q.n == 0 || skip_attention() || cuda_graph_dry(ctx))
        return rc;
    return rope_kv_run(ctx, &a, &vh, rope, &kv, db.slot);
}

int cuda_rope_kv_gemv_args(struct zl_bctx *ctx, const char *op, const struct zl_rope_kv *r,
                           struct zl_cuda_gemv_rope *g)
{
    struct zl_cuda_batch db = {0};
    return cuda_rope_kv_batch_args(ctx, op, r, g, &db);
}

int cuda_rope_kv_batch_args(struct zl_bctx *ctx, const char *op, const struct zl_rope_kv *r,
                            struct zl_cuda_gemv_rope *g, struct zl_cuda_batch *db)
{
    struct cuda_rope_args a;
    struct zl_cuda_heads vh;
    int rc = rope_kv_prepare(ctx, op, r, &a, &vh, &g->cache, db);
    if (rc < 0)
        return rc;
    g->pos = a.pos;
    g->pos_step = a.pos_step;
    g->inv_freq = a.freq;
    g->attn_factor = r->rope->attn_factor;
    g->n_q_heads = (int32_t)a.q.heads;
    g->slot = db->slot;
    return ZL_OK;
}

struct zl_cuda_attn_shape cuda_attn_shape(const struct zl_attn_batch *b, int32_t s0, int32_t s1)
{
    struct zl_cuda_attn_shape sh = {0, 0};
    for (int32_t s = s0; s < s1; s++) {
        int32_t nq = b->q_start[s + 1] - b->q_start[s];
        sh.max_q_len = nq > sh.max_q_len ? nq : sh.max_q_len;
        sh.max_kv_len = b->kv_len[s] > sh.max_kv_len ? b->kv_len[s] : sh.max_kv_len;
    }
    return sh;
}

int32_t cuda_attn_decode_prefix(const struct zl_attn_batch *b)
{
    int32_t nd = 0;
    while (b->q_start[0] == 0 && nd < b->n_seqs && b->q_start[nd + 1] - b->q_start[nd] == 1)
        nd++;
    return nd;
}

/* While a decode step attends over short contexts (little K/V), HBM idles
 * and the next linear's weights stream into L2 for free: the decode kernel
 * asks for them (cp.async.bulk.prefetch.L2), the GEMV then reads L2.  Which
 * weights follow a layer's attention is learned from the previous step (a
 * hint only: a wrong one costs bandwidth, never a result). */
#define PF_MAX_KV ((size_t)8 << 20)       /* K/V bytes a call reads, at most */
#define PF_MAX_W ((size_t)40 << 20)       /* of the 50 MB L2 */

void cuda_prefetch_learn(struct zl_bctx *ctx, const struct zl_tensor *w)
{
    int32_t l = ctx->pf.after;
    ctx->pf.after = -1;
    if (l < 0 || l >= CUDA_PF_LAYERS)
        return;
    /* rows of contiguous elements from a 16-byte boundary (the bulk
     * prefetch's granule); the span ends at the last element */
    struct zl_cuda_prefetch h = {0};
    if (w && w->data && w->n_dims == 2 && w->ne[0] > 0 && w->nb[0] >= 0 &&
        w->nb[1] == (int64_t)cuda_dtype_size(w->dtype) && !((uintptr_t)w->data & 15)) {
        h.bytes = (size_t)(w->ne[0] - 1) * (size_t)w->nb[0] + (size_t)(w->ne[1] * w->nb[1]);
        h.data = h.bytes <= PF_MAX_W ? w->data : NULL;
    }
    ctx->pf.next[l].w = h;
    ctx->pf.next[l].frees = cuda_frees();
}

/* A weight seen in a linear is in use until the next free: a hint from
 * before a free might point at unmapped memory and is dropped. */
const struct zl_cuda_prefetch *cuda_prefetch_hint(const struct zl_bctx *ctx, int32_t layer,
                                                  int32_t n_kv_heads, int32_t head_dim,
                                                  enum zl_dtype dt, int32_t nd, int32_t max_kv_len)
{
    size_t kv_bytes = (size_t)nd * (size_t)max_kv_len * 2 * (size_t)n_kv_heads *
                      (size_t)head_dim * cuda_dtype_size(dt);
    if (!ctx->pf.on || layer < 0 || layer >= CUDA_PF_LAYERS || nd < 1 || kv_bytes > PF_MAX_KV)
        return NULL;
    const struct zl_cuda_prefetch *h = &ctx->pf.next[layer].w;
    return h->data && h->bytes && ctx->pf.next[layer].frees == cuda_frees() ? h : NULL;
}

/* The tensor-core kernels first: one query row per sequence goes to the
 * decode kernel, anything else to the flash kernel.  A mixed step (the
 * scheduler puts decodes first) is split: its leading one-row sequences
 * run the decode kernel and the rest the flash kernel, whose 64-row query
 * tiles would otherwise hold one row each and read every KV head once per
 * query head.  The generic kernel takes what the tensor-core ones decline
 * with cudaErrorNotSupported (f32, unusual head sizes), for the whole batch. */
static int dispatch(struct zl_bctx *ctx, const struct zl_cuda_heads *oh,
                    const struct zl_cuda_heads *qh, const struct zl_cuda_kv *kv,
                    const struct zl_cuda_batch *db, const struct zl_attn_batch *b, float scale,
                    const struct zl_cuda_decode_rope *rope)
{
    int32_t nd = cuda_attn_decode_prefix(b);
    cudaError_t e = cudaSuccess;
    if (nd > 0) { /* sequences [0, nd): q and out rows [0, nd) */
        struct zl_cuda_attn_shape sh = cuda_attn_shape(b, 0, nd);
        /* one split plan for a range of lengths, so a graph captured at one
         * length serves the next ones, and graphs change no result */
        sh.max_kv_len = cuda_graph_kv_bucket(sh.max_kv_len);
        size_t need = zl_cuda_attention_decode_scratch(nd, (int32_t)qh->heads,
                                                       (int32_t)qh->head_dim, sh.max_kv_len);
        int rc = need ? cuda_reserve(ctx, &ctx->attn_scratch, &ctx->attn_scratch_cap, need,
                                     "attention") : ZL_OK;
        if (rc < 0)
            return rc;
        size_t counted = ctx->attn_count_cap;
        rc = cuda_reserve(ctx, &ctx->attn_count, &ctx->attn_count_cap,
                          (size_t)nd * (size_t)kv->n_kv_heads * sizeof(int32_t), "attention");
        if (rc < 0)
            return rc;
        if (ctx->attn_count_cap != counted) /* the kernel keeps them zero from here on */
            ZL_CUDA_TRY(cudaMemsetAsync(ctx->attn_count, 0, ctx->attn_count_cap, ctx->stream));
        if (cuda_graph_dry(ctx))
            return ZL_OK;
        struct zl_cuda_heads o = *oh, q = *qh;
        struct zl_cuda_batch d = *db;
        o.n = q.n = d.n_seqs = nd;
        e = zl_cuda_attention_decode(&o, &q, kv, &d, &sh, scale, ctx->attn_scratch,
                                     ctx->attn_scratch_cap, (int32_t *)ctx->attn_count,
                                     cuda_prefetch_hint(ctx, kv->layer, kv->n_kv_heads,
                                                        kv->head_dim, kv->dtype, nd,
                                                        sh.max_kv_len),
                                     rope, ctx->stream);
        /* the caller asked zl_cuda_attention_decode_takes: with `rope` the
         * cache rows are this launch's to write, so no fallback may run */
        if (e == cudaErrorNotSupported && rope)
            return zl_cuda_host->error(ZL_EBACKEND, "cuda rope_attention: the decode kernel "
                                       "declined a step it said it takes");
    }
    if (e == cudaSuccess && nd < b->n_seqs) {
        if (cuda_graph_dry(ctx))
            return ZL_OK;
        struct zl_cuda_attn_shape sh = cuda_attn_shape(b, nd, b->n_seqs);
        struct zl_cuda_batch p = *db;
        p.n_seqs = b->n_seqs - nd;
        p.q_start += nd;
        p.kv_len += nd;
        p.block_table += (size_t)nd * (size_t)b->max_blocks;
        e = zl_cuda_attention_prefill(oh, qh, kv, &p, &sh, scale, ctx->prefill_wg, ctx->stream);
    }
    /* a kernel declines before it launches: nothing of the batch was written */
    if (e == cudaErrorNotSupported)
        e = zl_cuda_attention(oh, qh, kv, db, scale, ctx->stream);
    ZL_CUDA_TRY(e);
    return ZL_OK;
}

/* attention's checks of out and the scale against a checked q and cache. */
static int attention_args(struct zl_bctx *ctx, const char *op, struct zl_tensor *out,
                          const struct zl_cuda_heads *qh, const struct zl_cuda_kv *kv, float scale,
                          struct zl_cuda_heads *oh)
{
    int rc;
    if ((rc = cuda_check_heads(ctx, op, "out", out, CUDA_DT_FLOAT, oh)) < 0 ||
        (rc = cuda_check_heads_shape(op, "out", oh, qh->n, qh->heads, qh->head_dim)) < 0)
        return rc;
    if (qh->head_dim != kv->head_dim || qh->heads < 1 || qh->heads % kv->n_kv_heads)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: q [%lld, %lld, %lld] vs cache %d "
                                   "kv heads of %d: head_dim differs or heads are not a multiple",
                                   op, (long long)qh->n, (long long)qh->heads,
                                   (long long)qh->head_dim, (int)kv->n_kv_heads,
                                   (int)kv->head_dim);
    if (oh->dtype != qh->dtype)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: out is %s but q is %s", op,
                                   cuda_dtype_name(oh->dtype), cuda_dtype_name(qh->dtype));
    if (kv->head_dim > ZL_CUDA_ATTN_MAX_HEAD_DIM)
        return zl_cuda_host->error(ZL_EUNSUPPORTED, "cuda %s: head_dim %d > %d", op,
                                   (int)kv->head_dim, ZL_CUDA_ATTN_MAX_HEAD_DIM);
    if (!isfinite(scale))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: scale %g is not finite", op,
                                   (double)scale);
    return ZL_OK;
}

int cuda_attention(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *q,
                   const struct zl_kv_cache *cache, int32_t layer,
                   const struct zl_attn_batch *batch, float scale)
{
    static const char op[] = "attention";
    struct zl_cuda_heads qh, oh;
    struct zl_cuda_kv kv;
    struct zl_cuda_batch db;
    int rc;
    if ((rc = cuda_check_heads(ctx, op, "q", q, CUDA_DT_FLOAT, &qh)) < 0 ||
        (rc = cuda_check_kv(op, cache, layer, batch, qh.n, &kv)) < 0 ||
        (rc = attention_args(ctx, op, out, &qh, &kv, scale, &oh)) < 0)
        return rc;
    if (qh.n == 0 || skip_attention())
        return ZL_OK;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    if ((rc = upload_batch(ctx, op, cache, batch, qh.n, &db)) < 0 ||
        (rc = dispatch(ctx, &oh, &qh, &kv, &db, batch, scale, NULL)) < 0)
        return rc;
    ctx->pf.after = layer;
    return ZL_OK;
}

/* rope_kv_write then attention (backend.h rope_attention).  A decode step
 * (one row per sequence) runs the decode kernel with the rotation and the
 * cache write inside: one launch less per layer.  Anything else (a prefill
 * or mixed step, partial rotary, f32, other head sizes) runs the two ops'
 * kernels: with a mixed step's prefill rows the flash kernel, or the
 * generic one it may fall back to, would read the decode rows' q too. */
int cuda_rope_attention(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_rope_kv *r,
                        float scale)
{
    static const char op[] = "rope_attention";
    struct cuda_rope_args a;
    struct zl_cuda_heads vh, oh;
    struct zl_cuda_kv kv;
    struct zl_cuda_batch db;
    if (!r || !r->q || !r->batch)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: needs q and a batch", op);
    int rc = rope_kv_prepare(ctx, op, r, &a, &vh, &kv, &db);
    if (rc < 0 || (rc = attention_args(ctx, op, out, &a.q, &kv, scale, &oh)) < 0)
        return rc;
    if (a.q.n == 0 || skip_attention())
        return ZL_OK;
    const int32_t nd = cuda_attn_decode_prefix(r->batch);
    struct zl_cuda_decode_rope dr = {.k = a.k, .v = vh, .pos = a.pos, .pos_step = a.pos_step,
                                     .inv_freq = a.freq, .attn_factor = r->rope->attn_factor,
                                     .slot = db.slot};
    struct zl_cuda_heads od = oh, qd = a.q;
    od.n = qd.n = nd;
    const int fuse = nd == r->batch->n_seqs && r->rope->rot_dim == kv.head_dim &&
                     zl_cuda_attention_decode_takes(&od, &qd, &kv, nd, &dr);
    if (!fuse && !cuda_graph_dry(ctx) &&
        (rc = rope_kv_run(ctx, &a, &vh, r->rope, &kv, db.slot)) < 0)
        return rc;
    if ((rc = dispatch(ctx, &oh, &a.q, &kv, &db, r->batch, scale, fuse ? &dr : NULL)) < 0)
        return rc;
    ctx->pf.after = r->layer;
    return ZL_OK;
}
