/* Argument checks of the ops: a bad shape, dtype, device or batch becomes
 * ZL_EINVAL with "cuda OP: ..." on the host, before anything is queued, so
 * no kernel ever sees an index it could run wild with.  The views built
 * here (rows, heads, one cache layer) are what the launchers take. */
#include "config.h"

#include <stdio.h>

#include "cuda-impl.h"

const char *cuda_dtype_name(enum zl_dtype dt)
{
    static const char *const names[] = {"f32", "f16", "bf16", "f8_e4m3", "f8_e5m2",
                                        "i8", "u8", "i32", "i64", "q4"};
    return (unsigned)dt < sizeof names / sizeof *names ? names[dt] : "invalid";
}

size_t cuda_dtype_size(enum zl_dtype dt)
{
    switch (dt) {
    case ZL_DTYPE_F32: case ZL_DTYPE_I32: return 4;
    case ZL_DTYPE_F16: case ZL_DTYPE_BF16: return 2;
    case ZL_DTYPE_I64: return 8;
    default: return 1;
    }
}

/* Common part: placed, on our device, allowed dtype, sane sizes, a
 * contiguous innermost dim. */
static int check_tensor(const struct zl_bctx *ctx, const char *op, const char *name,
                        const struct zl_tensor *t, uint32_t dtypes)
{
    if (!t)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s is NULL", op, name);
    if (t->n_dims < 1 || t->n_dims > ZL_TENSOR_MAX_DIMS)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s has %d dims", op, name, (int)t->n_dims);
    if (t->device != ctx->device)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s is on device %d, the instance on %d",
                                   op, name, (int)t->device, ctx->device);
    if ((unsigned)t->dtype >= 32 || !(dtypes & (1u << t->dtype))) {
        char want[64] = "";
        size_t len = 0;
        for (int dt = 0; dt < ZL_DTYPE_COUNT; dt++)
            if (dtypes & (1u << dt) && len < sizeof want)
                len += (size_t)snprintf(want + len, sizeof want - len, "%s%s", len ? "/" : "",
                                        cuda_dtype_name((enum zl_dtype)dt));
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s is %s, want %s", op, name,
                                   cuda_dtype_name(t->dtype), want);
    }
    for (int i = 0; i < t->n_dims; i++)
        if (t->ne[i] < 0 || t->nb[i] < 0)
            return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s has a negative size or stride",
                                       op, name);
    if (!t->data)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s has no data", op, name);
    int last = t->n_dims - 1;
    if (t->ne[last] > 1 && (size_t)t->nb[last] != cuda_dtype_size(t->dtype))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s is strided along its innermost dim",
                                   op, name);
    return ZL_OK;
}

int cuda_check_rows(const struct zl_bctx *ctx, const char *op, const char *name,
                    const struct zl_tensor *t, uint32_t dtypes, struct zl_cuda_rows *out)
{
    int rc = check_tensor(ctx, op, name, t, dtypes);
    if (rc < 0)
        return rc;
    int last = t->n_dims - 1;
    int64_t n = 1, stride = 0;
    /* outer dims collapse when each stride is the next one's times its size */
    for (int i = last - 1; i >= 0; i--) {
        if (t->ne[i] == 1)
            continue;
        if (stride && t->nb[i] != stride * t->ne[i + 1])
            return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s's outer dims do not form rows of "
                                       "one stride", op, name);
        if (!stride)
            stride = t->nb[i];
        n *= t->ne[i];
    }
    out->data = t->data;
    out->n = n;
    out->d = t->ne[last];
    out->stride = stride ? stride : t->ne[last] * (int64_t)cuda_dtype_size(t->dtype);
    out->dtype = t->dtype;
    return ZL_OK;
}

int cuda_check_heads(const struct zl_bctx *ctx, const char *op, const char *name,
                     const struct zl_tensor *t, uint32_t dtypes, struct zl_cuda_heads *out)
{
    int rc = check_tensor(ctx, op, name, t, dtypes);
    if (rc < 0)
        return rc;
    if (t->n_dims != 3)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s has %d dims, want 3 [n, heads, "
                                   "head_dim]", op, name, (int)t->n_dims);
    *out = (struct zl_cuda_heads){.data = t->data, .n = t->ne[0], .heads = t->ne[1],
                                  .head_dim = t->ne[2], .nb0 = t->nb[0], .nb1 = t->nb[1],
                                  .dtype = t->dtype};
    return ZL_OK;
}

int cuda_check_same(const char *op, const char *na, const struct zl_cuda_rows *a, const char *nb,
                    const struct zl_cuda_rows *b, int same_dtype)
{
    if (a->n != b->n || a->d != b->d)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s [%lld, %lld] vs %s [%lld, %lld]", op,
                                   na, (long long)a->n, (long long)a->d, nb, (long long)b->n,
                                   (long long)b->d);
    if (same_dtype && a->dtype != b->dtype)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s is %s but %s is %s (one activation "
                                   "dtype per op)", op, na, cuda_dtype_name(a->dtype), nb,
                                   cuda_dtype_name(b->dtype));
    return ZL_OK;
}

int cuda_check_heads_shape(const char *op, const char *name, const struct zl_cuda_heads *h,
                           int64_t n, int64_t heads, int64_t head_dim)
{
    if (h->n != n || h->heads != heads || h->head_dim != head_dim)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s [%lld, %lld, %lld], want [%lld, %lld, "
                                   "%lld]", op, name, (long long)h->n, (long long)h->heads,
                                   (long long)h->head_dim, (long long)n, (long long)heads,
                                   (long long)head_dim);
    return ZL_OK;
}

/* Every sequence's new tokens fit its kv_len and block table, and the
 * blocks it reads have ids >= 0 (the pool's size is the caller's).  The
 * scans OR the ids together (no branch per id: at batch 256 a table is
 * ~20k ids, checked for every layer's ops when the batch changes) and look
 * for the culprit only when the sign bit is set. */
int cuda_check_batch_ids(const char *op, const struct zl_kv_cache *c,
                         const struct zl_attn_batch *b, int64_t n_tok)
{
    int64_t cap = (int64_t)b->max_blocks * c->block_size;
    for (int32_t s = 0; s < b->n_seqs; s++) {
        int32_t n_new = b->q_start[s + 1] - b->q_start[s];
        if (n_new < 0 || b->kv_len[s] < n_new || b->kv_len[s] > cap)
            return zl_cuda_host->error(ZL_EINVAL, "cuda %s: sequence %d has %d new tokens and "
                                       "kv_len %d (at most %lld for max_blocks %d)", op, (int)s,
                                       (int)n_new, (int)b->kv_len[s], (long long)cap,
                                       (int)b->max_blocks);
        const int32_t *row = b->block_table + (int64_t)s * b->max_blocks;
        int32_t used = (b->kv_len[s] + c->block_size - 1) / c->block_size, any = 0;
        for (int32_t j = 0; j < used; j++)
            any |= row[j];
        for (int32_t j = 0; any < 0 && j < used; j++)
            if (row[j] < 0)
                return zl_cuda_host->error(ZL_EINVAL, "cuda %s: sequence %d block %d has id %d",
                                           op, (int)s, (int)j, (int)row[j]);
    }
    int32_t any = 0;
    for (int64_t i = 0; i < n_tok; i++)
        any |= b->slot[i];
    for (int64_t i = 0; any < 0 && i < n_tok; i++)
        if (b->slot[i] < 0)
            return zl_cuda_host->error(ZL_EINVAL, "cuda %s: token %lld has slot %d", op,
                                       (long long)i, (int)b->slot[i]);
    return ZL_OK;
}

/* The batch's counts and arrays exist and q_start spans the n_tok rows. */
static int check_batch(const char *op, const struct zl_attn_batch *b, int64_t n_tok)
{
    if (b->n_seqs < 0 || b->max_blocks < 0 || !b->q_start || (b->n_seqs && !b->kv_len) ||
        (b->n_seqs && b->max_blocks && !b->block_table) || (n_tok && !b->slot))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: batch has a negative count or a NULL "
                                   "array", op);
    if (b->q_start[0] != 0 || b->q_start[b->n_seqs] != n_tok)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: batch q_start spans %d..%d, want "
                                   "0..%lld (the tokens)", op, (int)b->q_start[0],
                                   (int)b->q_start[b->n_seqs], (long long)n_tok);
    return ZL_OK;
}

int cuda_check_kv(const char *op, const struct zl_kv_cache *c, int32_t layer,
                  const struct zl_attn_batch *b, int64_t n_tok, struct zl_cuda_kv *kv)
{
    if (!c || !b)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: %s is NULL", op, c ? "batch" : "cache");
    if (!c->base || c->block_size < 1 || c->n_layers < 1 || c->n_kv_heads < 1 || c->head_dim < 1)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: cache has no base or a size < 1", op);
    if (!(CUDA_DT_FLOAT & (1u << c->dtype)))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: cache dtype %s, want f32/f16/bf16", op,
                                   cuda_dtype_name(c->dtype));
    size_t need = (size_t)c->n_layers * 2 * (size_t)c->block_size * (size_t)c->n_kv_heads *
                  (size_t)c->head_dim * cuda_dtype_size(c->dtype);
    if (c->block_stride < need)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: cache block_stride %zu < the %zu bytes "
                                   "of a block", op, c->block_stride, need);
    if (layer < 0 || layer >= c->n_layers)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: layer %d outside 0..%d", op, (int)layer,
                                   (int)c->n_layers - 1);
    int rc = check_batch(op, b, n_tok);
    if (rc < 0)
        return rc;
    *kv = (struct zl_cuda_kv){.base = c->base, .block_stride = c->block_stride,
                              .block_size = c->block_size, .n_kv_heads = c->n_kv_heads,
                              .head_dim = c->head_dim, .layer = layer, .dtype = c->dtype};
    return ZL_OK;
}

int cuda_rows_overlap(const struct zl_cuda_rows *a, const struct zl_cuda_rows *b)
{
    if (!a->n || !a->d || !b->n || !b->d)
        return 0;
    const char *a0 = a->data, *b0 = b->data;
    const char *a1 = a0 + (a->n - 1) * a->stride + a->d * (int64_t)cuda_dtype_size(a->dtype);
    const char *b1 = b0 + (b->n - 1) * b->stride + b->d * (int64_t)cuda_dtype_size(b->dtype);
    return a0 < b1 && b0 < a1;
}
