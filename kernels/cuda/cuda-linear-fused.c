/* linear_fused (backend.h, API minor 2): a decode-sized step runs as one
 * GEMV with the RMSNorm in its prologue or the SwiGLU / residual add in its
 * epilogue (gemv.cu zl_cuda_gemv_ex), which saves a launch and its gap per
 * fused op; anything else runs the unfused ops on the model's scratch. */
#include "config.h"

#include "cuda-impl.h"

static const char op[] = "linear_fused";

/* The fused GEMV when it takes the step (cudaErrorNotSupported otherwise,
 * also for bad arguments: the unfused ops then name the problem). */
static cudaError_t try_gemv(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                            const struct zl_tensor *w, const struct zl_linear_fuse *f)
{
    struct zl_cuda_rows o, xr, wr, nr, rr;
    if (cuda_check_rows(ctx, op, "out", out, CUDA_DT_FLOAT, &o) < 0 ||
        cuda_check_rows(ctx, op, "x", x, CUDA_DT_FLOAT, &xr) < 0 ||
        cuda_check_rows(ctx, op, "w", w, CUDA_DT_FLOAT, &wr) < 0 || xr.n < 1 ||
        xr.n > ZL_CUDA_GEMV_MAX_ROWS)
        return cudaErrorNotSupported;
    struct zl_cuda_gemv_fuse g = {NULL, f->eps, f->swiglu, NULL};
    if (f->norm) {
        if (cuda_check_rows(ctx, op, "norm", f->norm, 1u << ZL_DTYPE_F32, &nr) < 0 ||
            nr.n * nr.d != xr.d)
            return cudaErrorNotSupported;
        g.norm_w = nr.data;
    }
    if (f->residual) {
        if (cuda_check_rows(ctx, op, "residual", f->residual, CUDA_DT_FLOAT, &rr) < 0)
            return cudaErrorNotSupported;
        /* the residual may be out itself (element for element), else apart */
        int same = rr.data == o.data && rr.stride == o.stride;
        if (!same && cuda_rows_overlap(&rr, &o))
            return cudaErrorNotSupported;
        g.res = &rr;
    }
    if (cuda_rows_overlap(&o, &xr) || cuda_rows_overlap(&o, &wr) ||
        (f->norm && cuda_rows_overlap(&o, &nr)))
        return cudaErrorNotSupported;
    cudaError_t e = cudaSetDevice(ctx->device);
    if (e == cudaSuccess && cuda_graph_dry(ctx))
        return cudaSuccess;
    return e != cudaSuccess ? e : zl_cuda_gemv_ex(&o, &xr, &wr, &g, ctx->stream);
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
