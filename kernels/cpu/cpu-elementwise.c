/* Row-wise ops without reductions: silu_mul, add, copy (with dtype
 * conversion) and the embedding gather, which is a copy of table rows. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "cpu-impl.h"

#define MIN_ELEMS_PER_THREAD 32768
#define CHUNK 256               /* f32 staging for conversions, on the stack */

/* Up to three row views walked in lockstep; rows of src_idx pick source
 * rows (embedding), NULL = the same row number. */
struct ew_job {
    struct cpu_rows out, a, b;
    const int32_t *idx;
    void (*row)(const struct ew_job *j, char *out, const char *a, const char *b);
};

static void ew_task(void *arg, int ith, int nth)
{
    const struct ew_job *j = arg;
    int64_t lo, hi;
    cpu_split(j->out.n, 1, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t src = j->idx ? j->idx[r] : r;
        j->row(j, j->out.data + (size_t)r * j->out.stride, j->a.data + (size_t)src * j->a.stride,
               j->b.data ? j->b.data + (size_t)r * j->b.stride : NULL);
    }
}

static void ew_run(struct zl_bctx *ctx, struct ew_job *j)
{
    cpu_pool_run(ctx->pool, cpu_pool_want(ctx->pool, j->out.n * j->out.d, MIN_ELEMS_PER_THREAD),
                 ew_task, j);
}

static void silu_mul_row(const struct ew_job *j, char *out, const char *a, const char *b)
{
    float *o = (float *)out;
    const float *g = (const float *)a, *u = (const float *)b;
    for (int64_t i = 0; i < j->out.d; i++)
        o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void add_row(const struct ew_job *j, char *out, const char *a, const char *b)
{
    float *o = (float *)out;
    const float *x = (const float *)a, *y = (const float *)b;
    for (int64_t i = 0; i < j->out.d; i++)
        o[i] = x[i] + y[i];
}

/* dst row = src row converted; same dtype is a byte copy (NaN payloads kept). */
static void copy_row(const struct ew_job *j, char *out, const char *a, const char *b)
{
    int64_t d = j->out.d;
    if (j->out.dtype == j->a.dtype) {
        memmove(out, a, (size_t)d * cpu_dtype_size(j->a.dtype));
        return;
    }
    float buf[CHUNK];
    size_t os = cpu_dtype_size(j->out.dtype), is = cpu_dtype_size(j->a.dtype);
    for (int64_t i = 0; i < d; i += CHUNK) {
        int64_t m = d - i < CHUNK ? d - i : CHUNK;
        cpu_row_to_f32(buf, j->a.dtype, a + (size_t)i * is, m);
        cpu_row_from_f32(out + (size_t)i * os, j->out.dtype, buf, m);
    }
}

/* Checks out, a and b (b optional) as rows of equal shapes, then runs `row`
 * over them. */
static int ew_op(struct zl_bctx *ctx, const char *op,
                 void (*row)(const struct ew_job *, char *, const char *, const char *),
                 const struct zl_tensor *out, const char *na, const struct zl_tensor *a,
                 const char *nb, const struct zl_tensor *b, uint32_t dtypes)
{
    struct ew_job j = {.row = row};
    int rc;
    if ((rc = cpu_check_rows(op, "out", out, dtypes, &j.out)) < 0 ||
        (rc = cpu_check_rows(op, na, a, dtypes, &j.a)) < 0 ||
        (rc = cpu_check_same_rows(op, "out", &j.out, na, &j.a)) < 0)
        return rc;
    if (nb && ((rc = cpu_check_rows(op, nb, b, dtypes, &j.b)) < 0 ||
               (rc = cpu_check_same_rows(op, "out", &j.out, nb, &j.b)) < 0))
        return rc;
    ew_run(ctx, &j);
    return ZL_OK;
}

/* out may alias gate or up (element-wise). */
int cpu_silu_mul(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *gate,
                 const struct zl_tensor *up)
{
    return ew_op(ctx, "silu_mul", silu_mul_row, out, "gate", gate, "up", up, CPU_DT_F32);
}

int cpu_add(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *a,
            const struct zl_tensor *b)
{
    return ew_op(ctx, "add", add_row, out, "a", a, "b", b, CPU_DT_F32);
}

int cpu_copy_rows(struct zl_bctx *ctx, struct zl_tensor *dst, const struct zl_tensor *src)
{
    return ew_op(ctx, "copy", copy_row, dst, "src", src, NULL, NULL, CPU_DT_FLOAT);
}

int cpu_embedding(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *table,
                  const struct zl_tensor *tokens)
{
    static const char op[] = "embedding";
    struct ew_job j = {.row = copy_row};
    struct cpu_rows tok;
    int rc;
    if ((rc = cpu_check_rows(op, "out", out, CPU_DT_FLOAT, &j.out)) < 0 ||
        (rc = cpu_check_rows(op, "table", table, CPU_DT_FLOAT, &j.a)) < 0 ||
        (rc = cpu_check_rows(op, "tokens", tokens, CPU_DT_I32, &tok)) < 0)
        return rc;
    if (tok.n > 1 && tok.d != 1)
        return cpu_host->error(ZL_EINVAL, "cpu embedding: tokens must be a vector [n_tok]");
    if (tok.n * tok.d != j.out.n || j.out.d != j.a.d)
        return cpu_host->error(ZL_EINVAL, "cpu embedding: out [%lld, %lld], want [%lld, %lld] "
                               "(tokens, table row)", (long long)j.out.n, (long long)j.out.d,
                               (long long)(tok.n * tok.d), (long long)j.a.d);
    if (tok.n > 1 && tok.stride != sizeof(int32_t))
        return cpu_host->error(ZL_EINVAL, "cpu embedding: tokens must be contiguous");
    j.idx = (const int32_t *)tok.data;
    for (int64_t i = 0; i < j.out.n; i++)
        if (j.idx[i] < 0 || j.idx[i] >= j.a.n)
            return cpu_host->error(ZL_ERANGE, "cpu embedding: token %lld has id %d, outside "
                                   "0..%lld", (long long)i, (int)j.idx[i], (long long)j.a.n - 1);
    ew_run(ctx, &j);
    return ZL_OK;
}
