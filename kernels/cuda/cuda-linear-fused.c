/* linear_fused (backend.h, API minor 2): a decode-sized step runs as one
 * GEMV with the RMSNorm in its prologue or the SwiGLU / residual add in its
 * epilogue (gemv.cu zl_cuda_gemv_ex), which saves a launch and its gap per
 * fused op; anything else runs the unfused ops on the model's scratch.
 * linear_rope_kv (API minor 4) adds RoPE and the KV-cache write to the QKV
 * GEMV's epilogue the same way, else runs linear_fused and rope_kv_write. */
#include "config.h"

#include <stdlib.h>

#include "cuda-impl.h"

static const char op[] = "linear_fused";

/* f->residual as rows *rr when it may be added into out o (it is out
 * itself, element for element, or lies apart from it); 0 otherwise. */
static int residual_rows(struct zl_bctx *ctx, const struct zl_linear_fuse *f,
                         const struct zl_cuda_rows *o, struct zl_cuda_rows *rr)
{
    if (cuda_check_rows(ctx, op, "residual", f->residual, CUDA_DT_FLOAT, rr) < 0)
        return 0;
    return (rr->data == o->data && rr->stride == o->stride) || !cuda_rows_overlap(rr, o);
}

/* A fused GEMV's checked arguments (g.res points into it). */
struct gemv_call {
    struct zl_cuda_rows o, xr, wr, nr, rr;
    struct zl_cuda_gemv_fuse g;
};

/* The fused GEMV's arguments when it can take the step; 0 otherwise, also
 * for bad arguments: the unfused ops then name the problem. */
static int gemv_args(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                     const struct zl_tensor *w, const struct zl_linear_fuse *f,
                     struct gemv_call *c)
{
    if (cuda_check_rows(ctx, op, "out", out, CUDA_DT_FLOAT, &c->o) < 0 ||
        cuda_check_rows(ctx, op, "x", x, CUDA_DT_FLOAT, &c->xr) < 0 ||
        cuda_check_rows(ctx, op, "w", w, CUDA_DT_FLOAT, &c->wr) < 0 || c->xr.n < 1 ||
        c->xr.n > ZL_CUDA_GEMV_MAX_ROWS)
        return 0;
    c->g = (struct zl_cuda_gemv_fuse){NULL, f->eps, f->swiglu, NULL, NULL};
    if (f->norm) {
        if (cuda_check_rows(ctx, op, "norm", f->norm, 1u << ZL_DTYPE_F32, &c->nr) < 0 ||
            c->nr.n * c->nr.d != c->xr.d)
            return 0;
        c->g.norm_w = c->nr.data;
    }
    if (f->residual) {
        if (!residual_rows(ctx, f, &c->o, &c->rr))
            return 0;
        c->g.res = &c->rr;
    }
    return !cuda_rows_overlap(&c->o, &c->xr) && !cuda_rows_overlap(&c->o, &c->wr) &&
           !(f->norm && cuda_rows_overlap(&c->o, &c->nr));
}

/* The fused GEMV when it takes the step, else cudaErrorNotSupported. */
static cudaError_t try_gemv(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                            const struct zl_tensor *w, const struct zl_linear_fuse *f)
{
    struct gemv_call c;
    if (!gemv_args(ctx, out, x, w, f, &c) || !zl_cuda_gemv_ex_takes(&c.o, &c.xr, &c.wr, &c.g))
        return cudaErrorNotSupported;
    cudaError_t e = cudaSetDevice(ctx->device);
    if (e == cudaSuccess && cuda_graph_dry(ctx))
        return cudaSuccess;
    return e != cudaSuccess ? e : zl_cuda_gemv_ex(&c.o, &c.xr, &c.wr, &c.g, ctx->stream);
}

/* The SwiGLU or the residual add in gemm-tma.cu's epilogue (9-64 tokens,
 * x already normalised): 1 when it does not take the step. */
static int try_tma(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                   const struct zl_tensor *w, const struct zl_linear_fuse *f)
{
    struct zl_cuda_rows o, xr, wr, rr;
    struct zl_cuda_gemm_tma_fuse tf = {NULL, f->swiglu};
    if (cuda_check_rows(ctx, op, "out", out, CUDA_DT_FLOAT, &o) < 0 ||
        cuda_check_rows(ctx, op, "x", x, CUDA_DT_FLOAT, &xr) < 0 ||
        cuda_check_rows(ctx, op, "w", w, CUDA_DT_FLOAT, &wr) < 0 ||
        cuda_rows_overlap(&o, &xr) || cuda_rows_overlap(&o, &wr))
        return 1;
    if (f->residual) {
        if (!residual_rows(ctx, f, &o, &rr))
            return 1;
        tf.res = &rr;
    }
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    return cuda_linear_tma(ctx, &o, &xr, &wr, &tf);
}

/* Columns [c0, c0 + nc) of a 2-d tensor. */
static struct zl_tensor cols(const struct zl_tensor *t, int64_t c0, int64_t nc)
{
    struct zl_tensor v = *t;
    v.ne[1] = nc;
    v.data = (char *)t->data + c0 * t->nb[1];
    return v;
}

int cuda_linear_fused(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                      const struct zl_tensor *w, const struct zl_tensor *bias,
                      const struct zl_linear_fuse *f)
{
    if (!f || !out || !x || !w)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: out, x, w and the fuse list are required",
                                   op);
    if (f->swiglu && f->residual)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: swiglu and a residual together are not "
                                   "defined", op);
    cuda_prefetch_learn(ctx, w);
    if (!bias && (f->norm || f->residual)) {
        cudaError_t e = try_gemv(ctx, out, x, w, f);
        if (e != cudaErrorNotSupported) {
            ZL_CUDA_TRY(e);
            return ZL_OK;
        }
    }
    int rc;
    const struct zl_tensor *xin = x;
    if (f->norm) {
        if (!f->tmp_x)
            return zl_cuda_host->error(ZL_EINVAL, "cuda %s: a norm needs tmp_x", op);
        if ((rc = cuda_rms_norm(ctx, f->tmp_x, x, NULL, f->norm, f->eps)) < 0)
            return rc;
        xin = f->tmp_x;
    }
    if (!f->swiglu && !f->residual)
        return cuda_linear(ctx, out, xin, w, bias);
    if (!bias && (rc = try_tma(ctx, out, xin, w, f)) != 1)
        return rc;
    if (!f->tmp_out || f->tmp_out->n_dims != 2 || (f->swiglu && f->tmp_out->ne[1] % 2))
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: swiglu and residual need a 2-d tmp_out "
                                   "(of even width for swiglu)", op);
    if ((rc = cuda_linear(ctx, f->tmp_out, xin, w, bias)) < 0)
        return rc;
    if (f->residual)
        return cuda_add(ctx, out, f->residual, f->tmp_out);
    int64_t ff = f->tmp_out->ne[1] / 2;
    struct zl_tensor gate = cols(f->tmp_out, 0, ff), up = cols(f->tmp_out, ff, ff);
    return cuda_silu_mul(ctx, out, &gate, &up);
}

/* r's q, k and v are out's [q | k | v] heads in that order, as the fused
 * epilogue writes them (the model's views of its QKV output), full rotary. */
static int rope_layout(const struct zl_tensor *out, const struct zl_rope_kv *r)
{
    if (!r->q || !r->k || !r->v || !r->rope || !r->cache || out->n_dims != 2)
        return 0;
    const struct zl_tensor *t[3] = {r->q, r->k, r->v};
    const int64_t hd = r->cache->head_dim, es = (int64_t)cuda_dtype_size(out->dtype);
    const char *at = out->data;
    for (int i = 0; i < 3; i++) {
        if (t[i]->n_dims != 3 || t[i]->dtype != out->dtype || t[i]->data != at ||
            t[i]->ne[0] != out->ne[0] || t[i]->ne[2] != hd || t[i]->nb[0] != out->nb[0] ||
            t[i]->nb[1] != hd * es || t[i]->nb[2] != es)
            return 0;
        at += t[i]->ne[1] * hd * es;
    }
    return out->nb[1] == es && at == (const char *)out->data + out->ne[1] * es &&
           r->k->ne[1] == r->cache->n_kv_heads && r->v->ne[1] == r->cache->n_kv_heads &&
           r->rope->rot_dim == hd;
}

/* Tuning build only: ZL_ROPE_FUSE=0 runs the two ops (an A/B in one build). */
static int rope_fuse_off(void)
{
#ifdef ZL_GEMV_TUNING
    static int off = -1;
    if (off < 0) {
        const char *v = getenv("ZL_ROPE_FUSE");
        off = v && *v == '0';
    }
    return off;
#else
    return 0;
#endif
}

int cuda_linear_rope_kv(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                        const struct zl_tensor *w, const struct zl_tensor *bias,
                        const struct zl_linear_fuse *f, const struct zl_rope_kv *r)
{
    static const char rop[] = "linear_rope_kv";
    if (!f || !r || !out || !x || !w)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: out, x, w, the fuse list and the rope "
                                   "arguments are required", rop);
    if (f->swiglu || f->residual)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: takes a norm at most (no swiglu or "
                                   "residual)", rop);
    struct gemv_call c;
    if (!bias && f->norm && !rope_fuse_off() && rope_layout(out, r) &&
        gemv_args(ctx, out, x, w, f, &c)) {
        /* the layout decides first, from the cache's geometry; the checks
         * and uploads of rope_kv_write then fill in the device arguments */
        struct zl_cuda_gemv_rope g = {.n_q_heads = (int32_t)r->q->ne[1],
                                      .cache = {.base = r->cache->base,
                                                .block_size = r->cache->block_size,
                                                .n_kv_heads = r->cache->n_kv_heads,
                                                .head_dim = r->cache->head_dim,
                                                .dtype = r->cache->dtype}};
        c.g.rope = &g;
        if (zl_cuda_gemv_ex_takes(&c.o, &c.xr, &c.wr, &c.g)) {
            cuda_prefetch_learn(ctx, w);
            int rc = cuda_rope_kv_gemv_args(ctx, rop, r, &g);
            if (rc < 0 || cuda_graph_dry(ctx))
                return rc;
            ZL_CUDA_TRY(zl_cuda_gemv_ex(&c.o, &c.xr, &c.wr, &c.g, ctx->stream));
            return ZL_OK;
        }
    }
    int rc = cuda_linear_fused(ctx, out, x, w, bias, f);
    if (rc < 0)
        return rc;
    return cuda_rope_kv_write(ctx, r->q, r->k, r->v, r->positions, r->rope, r->cache, r->layer,
                              r->batch);
}
