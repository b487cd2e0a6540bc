/* The row-local ops: embedding, rms_norm, rope, silu_mul, add, copy.  Each
 * checks its arguments on the host, turns tensors into the kernels' views
 * and queues one launch on the instance's stream. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "cuda-impl.h"

#define ROPE_MAX_ROT_DIM 8192   /* its cos/sin table lives in shared memory */

int cuda_embedding(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *table,
                   const struct zl_tensor *tokens)
{
    static const char op[] = "embedding";
    struct zl_cuda_rows o, t, tok;
    int rc;
    if ((rc = cuda_check_rows(ctx, op, "out", out, CUDA_DT_FLOAT, &o)) < 0 ||
        (rc = cuda_check_rows(ctx, op, "table", table, CUDA_DT_FLOAT, &t)) < 0 ||
        (rc = cuda_check_rows(ctx, op, "tokens", tokens, CUDA_DT_I32, &tok)) < 0)
        return rc;
    if (tok.n > 1 && (tok.d != 1 || tok.stride != (int64_t)sizeof(int32_t)))
        return zl_cuda_host->error(ZL_EINVAL, "cuda embedding: tokens must be a contiguous "
                                   "vector [n_tok]");
    if (tok.n * tok.d != o.n || o.d != t.d)
        return zl_cuda_host->error(ZL_EINVAL, "cuda embedding: out [%lld, %lld], want [%lld, %lld] "
                                   "(tokens, table row)", (long long)o.n, (long long)o.d,
                                   (long long)(tok.n * tok.d), (long long)t.d);
    if (o.n == 0)
        return ZL_OK;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    /* ids live on the device: the kernel flags a bad one and sync() reports it */
    if (cuda_graph_dry(ctx))
        return ZL_OK;
    cuda_idle_first_op(ctx);
    ZL_CUDA_TRY(zl_cuda_embedding(&o, &t, tok.data, ctx->err, ctx->stream));
    return ZL_OK;
}

int cuda_rms_norm(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                  struct zl_tensor *residual, const struct zl_tensor *weight, float eps)
{
    static const char op[] = "rms_norm";
    struct zl_cuda_rows o, xr, w, res = {0};
    int rc;
    if ((rc = cuda_check_rows(ctx, op, "x", x, CUDA_DT_FLOAT, &xr)) < 0 ||
        (rc = cuda_check_rows(ctx, op, "out", out, CUDA_DT_FLOAT, &o)) < 0 ||
        (rc = cuda_check_rows(ctx, op, "weight", weight, CUDA_DT_FLOAT, &w)) < 0 ||
        (rc = cuda_check_same(op, "out", &o, "x", &xr, 1)) < 0)
        return rc;
    if (residual && ((rc = cuda_check_rows(ctx, op, "residual", residual, CUDA_DT_FLOAT, &res)) < 0 ||
                     (rc = cuda_check_same(op, "residual", &res, "x", &xr, 1)) < 0))
        return rc;
    if (w.n != 1 || w.d != xr.d)
        return zl_cuda_host->error(ZL_EINVAL, "cuda rms_norm: weight [%lld, %lld], want [%lld]",
                                   (long long)w.n, (long long)w.d, (long long)xr.d);
    if (!(eps >= 0) || isinf(eps))
        return zl_cuda_host->error(ZL_EINVAL, "cuda rms_norm: eps %g is not a finite value >= 0",
                                   (double)eps);
    if (xr.n == 0)
        return ZL_OK;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    if (cuda_graph_dry(ctx))
        return ZL_OK;
    ZL_CUDA_TRY(zl_cuda_rms_norm(&o, &xr, &res, &w, eps, ctx->stream));
    return ZL_OK;
}

int cuda_rope_prepare(struct zl_bctx *ctx, const char *op, const struct zl_tensor *q,
                      const struct zl_tensor *k, const struct zl_tensor *positions,
                      const struct zl_rope *rope, struct cuda_rope_args *a)
{
    struct zl_cuda_rows pos;
    int rc;
    memset(a, 0, sizeof *a);
    if ((rc = cuda_check_heads(ctx, op, "q", q, CUDA_DT_FLOAT, &a->q)) < 0 ||
        (k && (rc = cuda_check_heads(ctx, op, "k", k, CUDA_DT_FLOAT, &a->k)) < 0) ||
        (rc = cuda_check_rows(ctx, op, "positions", positions, CUDA_DT_I32, &pos)) < 0)
        return rc;
    const struct zl_cuda_heads *qh = &a->q, *kh = &a->k;
    if (k && (kh->n != qh->n || kh->head_dim != qh->head_dim || kh->dtype != qh->dtype))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: k %s [%lld, %lld, %lld] does not match "
                                   "q %s [%lld, %lld, %lld] in dtype, tokens or head_dim", op,
                                   cuda_dtype_name(kh->dtype), (long long)kh->n, (long long)kh->heads,
                                   (long long)kh->head_dim, cuda_dtype_name(qh->dtype),
                                   (long long)qh->n, (long long)qh->heads, (long long)qh->head_dim);
    if (pos.n * pos.d != qh->n || (pos.n > 1 && pos.d != 1))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: positions has %lld elements, want %lld "
                                   "(one per token)", op, (long long)(pos.n * pos.d), (long long)qh->n);
    if (!rope || !rope->inv_freq || rope->rot_dim <= 0 || rope->rot_dim % 2 ||
        rope->rot_dim > qh->head_dim || rope->rot_dim > ROPE_MAX_ROT_DIM ||
        !isfinite(rope->attn_factor))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: rot_dim %d must be even, in 2..head_dim "
                                   "%lld (at most %d), with inv_freq and a finite attn_factor", op,
                                   rope ? (int)rope->rot_dim : 0, (long long)qh->head_dim,
                                   ROPE_MAX_ROT_DIM);
    a->pos = pos.data;
    a->pos_step = pos.n > 1 ? pos.stride / (int64_t)sizeof(int32_t) : 1;
    if (qh->n == 0)
        return ZL_OK;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    struct cuda_part part = {.src = rope->inv_freq,
                             .bytes = (size_t)rope->rot_dim / 2 * sizeof(float)};
    return cuda_upload(ctx, &ctx->freq, op, &part, 1, &a->freq);
}

int cuda_rope(struct zl_bctx *ctx, struct zl_tensor *q, struct zl_tensor *k,
              const struct zl_tensor *positions, const struct zl_rope *rope)
{
    struct cuda_rope_args a;
    int rc = cuda_rope_prepare(ctx, "rope", q, k, positions, rope, &a);
    if (rc < 0 || a.q.n == 0)
        return rc;
    if (cuda_graph_dry(ctx))
        return ZL_OK;
    ZL_CUDA_TRY(zl_cuda_rope(&a.q, &a.k, a.pos, a.pos_step, a.freq, rope->rot_dim,
                             rope->attn_factor, ctx->stream));
    return ZL_OK;
}

/* out, a (and b) as rows of one shape; one dtype unless `convert`. */
static int rows_op(struct zl_bctx *ctx, const char *op, struct zl_cuda_rows *o,
                   struct zl_tensor *out, const char *na, struct zl_cuda_rows *a,
                   const struct zl_tensor *at, const char *nb, struct zl_cuda_rows *b,
                   const struct zl_tensor *bt, int convert)
{
    int rc;
    if ((rc = cuda_check_rows(ctx, op, "out", out, CUDA_DT_FLOAT, o)) < 0 ||
        (rc = cuda_check_rows(ctx, op, na, at, CUDA_DT_FLOAT, a)) < 0 ||
        (rc = cuda_check_same(op, "out", o, na, a, !convert)) < 0)
        return rc;
    if (nb && ((rc = cuda_check_rows(ctx, op, nb, bt, CUDA_DT_FLOAT, b)) < 0 ||
               (rc = cuda_check_same(op, "out", o, nb, b, 1)) < 0))
        return rc;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    return ZL_OK;
}

int cuda_silu_mul(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *gate,
                  const struct zl_tensor *up)
{
    struct zl_cuda_rows o, g, u;
    int rc = rows_op(ctx, "silu_mul", &o, out, "gate", &g, gate, "up", &u, up, 0);
    if (rc < 0 || o.n == 0)
        return rc;
    if (cuda_graph_dry(ctx))
        return ZL_OK;
    ZL_CUDA_TRY(zl_cuda_silu_mul(&o, &g, &u, ctx->stream));
    return ZL_OK;
}

int cuda_add(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *a,
             const struct zl_tensor *b)
{
    struct zl_cuda_rows o, ar, br;
    int rc = rows_op(ctx, "add", &o, out, "a", &ar, a, "b", &br, b, 0);
    if (rc < 0 || o.n == 0)
        return rc;
    if (cuda_graph_dry(ctx))
        return ZL_OK;
    ZL_CUDA_TRY(zl_cuda_add(&o, &ar, &br, ctx->stream));
    return ZL_OK;
}

int cuda_copy_rows(struct zl_bctx *ctx, struct zl_tensor *dst, const struct zl_tensor *src)
{
    struct zl_cuda_rows d, s;
    int rc = rows_op(ctx, "copy", &d, dst, "src", &s, src, NULL, NULL, NULL, 1);
    if (rc < 0 || d.n == 0)
        return rc;
    if (cuda_graph_dry(ctx))
        return ZL_OK;
    ZL_CUDA_TRY(zl_cuda_copy(&d, &s, ctx->stream));
    return ZL_OK;
}
