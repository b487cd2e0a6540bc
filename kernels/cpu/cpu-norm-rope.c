/* rms_norm (with the fused residual add) and rope: row-local ops, split
 * over threads by rows when there are enough of them. */
#include "config.h"

#include <math.h>

#include "cpu-impl.h"

#define MIN_ELEMS_PER_THREAD 32768

/* ---- rms_norm ---- */

struct norm_job {
    struct cpu_rows out, x, res, w;
    int has_res;
    float eps;
};

static void norm_task(void *arg, int ith, int nth)
{
    const struct norm_job *j = arg;
    int64_t lo, hi, d = j->x.d;
    cpu_split(j->x.n, 1, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)(j->x.data + (size_t)r * j->x.stride);
        float *o = (float *)(j->out.data + (size_t)r * j->out.stride);
        const float *src = x;
        if (j->has_res) {
            float *res = (float *)(j->res.data + (size_t)r * j->res.stride);
            for (int64_t i = 0; i < d; i++)
                res[i] += x[i];
            src = res;
        }
        double ss = 0;  /* not a hot loop: double costs nothing here and removes any doubt */
        for (int64_t i = 0; i < d; i++)
            ss += (double)src[i] * src[i];
        float scale = (float)(1.0 / sqrt(ss / (double)(d ? d : 1) + j->eps));
        for (int64_t i = 0; i < d; i++)
            o[i] = src[i] * scale * cpu_load_f32(j->w.data, j->w.dtype, i);
    }
}

int cpu_rms_norm(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                 struct zl_tensor *residual, const struct zl_tensor *weight, float eps)
{
    static const char op[] = "rms_norm";
    struct norm_job j = {.eps = eps, .has_res = residual != NULL};
    int rc;
    if ((rc = cpu_check_rows(op, "x", x, CPU_DT_F32, &j.x)) < 0 ||
        (rc = cpu_check_rows(op, "out", out, CPU_DT_F32, &j.out)) < 0 ||
        (rc = cpu_check_rows(op, "weight", weight, CPU_DT_FLOAT, &j.w)) < 0 ||
        (rc = cpu_check_same_rows(op, "out", &j.out, "x", &j.x)) < 0)
        return rc;
    if (residual && ((rc = cpu_check_rows(op, "residual", residual, CPU_DT_F32, &j.res)) < 0 ||
                     (rc = cpu_check_same_rows(op, "residual", &j.res, "x", &j.x)) < 0))
        return rc;
    if (j.w.n != 1 || j.w.d != j.x.d)
        return cpu_host->error(ZL_EINVAL, "cpu rms_norm: weight [%lld, %lld], want [%lld]",
                               (long long)j.w.n, (long long)j.w.d, (long long)j.x.d);
    if (!(eps >= 0) || isinf(eps))
        return cpu_host->error(ZL_EINVAL, "cpu rms_norm: eps %g is not a finite value >= 0",
                               (double)eps);
    cpu_pool_run(ctx->pool, cpu_pool_want(ctx->pool, j.x.n * j.x.d, MIN_ELEMS_PER_THREAD),
                 norm_task, &j);
    return ZL_OK;
}

/* ---- rope ---- */

struct rope_job {
    struct zl_bctx *ctx;
    const struct zl_tensor *t[2];       /* q, k (k may be NULL) */
    const int32_t *pos;
    size_t pos_stride;
    const struct zl_rope *rope;
};

/* Rotates the heads of token i of t with cos/sin tables cs[0..half), cs[half..2 half). */
static void rope_heads(const struct zl_tensor *t, int64_t i, const float *cs, int64_t half)
{
    for (int64_t h = 0; h < t->ne[1]; h++) {
        float *v = (float *)((char *)t->data + (size_t)i * (size_t)t->nb[0] + (size_t)h * (size_t)t->nb[1]);
        for (int64_t j = 0; j < half; j++) {
            float x1 = v[j], x2 = v[j + half], c = cs[j], s = cs[half + j];
            v[j] = x1 * c - x2 * s;
            v[j + half] = x2 * c + x1 * s;
        }
    }
}

static void rope_task(void *arg, int ith, int nth)
{
    const struct rope_job *j = arg;
    int64_t lo, hi, half = j->rope->rot_dim / 2;
    float *cs = cpu_scratch(j->ctx, ith);
    float af = j->rope->attn_factor;
    cpu_split(j->t[0]->ne[0], 1, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        /* The angle is rounded to f32 as HF computes it (inv_freq @ position in f32). */
        float p = (float)*(const int32_t *)((const char *)j->pos + (size_t)i * j->pos_stride);
        for (int64_t f = 0; f < half; f++) {
            float theta = p * j->rope->inv_freq[f];
            cs[f] = cosf(theta) * af;
            cs[half + f] = sinf(theta) * af;
        }
        for (int t = 0; t < 2; t++)
            if (j->t[t])
                rope_heads(j->t[t], i, cs, half);
    }
}

int cpu_rope(struct zl_bctx *ctx, struct zl_tensor *q, struct zl_tensor *k,
             const struct zl_tensor *positions, const struct zl_rope *rope)
{
    static const char op[] = "rope";
    struct cpu_rows pos;
    int rc;
    if ((rc = cpu_check_3d(op, "q", q, CPU_DT_F32)) < 0 ||
        (k && (rc = cpu_check_3d(op, "k", k, CPU_DT_F32)) < 0) ||
        (rc = cpu_check_rows(op, "positions", positions, CPU_DT_I32, &pos)) < 0)
        return rc;
    if (k && (k->ne[0] != q->ne[0] || k->ne[2] != q->ne[2]))
        return cpu_host->error(ZL_EINVAL, "cpu rope: k [%lld, %lld, %lld] does not match q "
                               "[%lld, %lld, %lld] in tokens or head_dim", (long long)k->ne[0],
                               (long long)k->ne[1], (long long)k->ne[2], (long long)q->ne[0],
                               (long long)q->ne[1], (long long)q->ne[2]);
    if (pos.n * pos.d != q->ne[0] || (pos.n > 1 && pos.d != 1))
        return cpu_host->error(ZL_EINVAL, "cpu rope: positions has %lld elements, want %lld "
                               "(one per token)", (long long)(pos.n * pos.d), (long long)q->ne[0]);
    if (!rope || !rope->inv_freq || rope->rot_dim <= 0 || rope->rot_dim % 2 ||
        rope->rot_dim > q->ne[2] || !isfinite(rope->attn_factor))
        return cpu_host->error(ZL_EINVAL, "cpu rope: rot_dim %d must be even, in 2..head_dim %lld, "
                               "with inv_freq and a finite attn_factor",
                               rope ? (int)rope->rot_dim : 0, (long long)q->ne[2]);
    if ((rc = cpu_scratch_reserve(ctx, op, (size_t)rope->rot_dim)) < 0)
        return rc;
    struct rope_job j = {.ctx = ctx, .t = {q, k}, .pos = (const int32_t *)pos.data,
                         .pos_stride = pos.n > 1 ? pos.stride : sizeof(int32_t), .rope = rope};
    int64_t work = q->ne[0] * (q->ne[1] + (k ? k->ne[1] : 0)) * rope->rot_dim;
    cpu_pool_run(ctx->pool, cpu_pool_want(ctx->pool, work, MIN_ELEMS_PER_THREAD), rope_task, &j);
    return ZL_OK;
}
