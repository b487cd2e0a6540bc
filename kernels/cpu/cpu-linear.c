/* linear: out[n, o] = x[n, i] @ w[o, i]^T (+ bias).  Output columns (weight
 * rows) are split over the threads, so a decode step (n = 1) streams each
 * weight byte exactly once, spread over all cores: memory bound, as it must
 * be.  For n >= 4, 4x3 tiles reuse each loaded weight vector for 4 rows and
 * each x vector for 3 weight rows: 12 accumulators, 3 weight and 1 x
 * registers fill AVX2's 16 (4x2 tiles ran at 60 GFLOP/s a core, 4x3 at 89). */
#include "config.h"

#include "cpu-impl.h"

#define COL_BLOCK 24            /* weight rows kept hot while all x rows pass */
#define MIN_WORK_PER_THREAD 65536 /* multiply-adds; below it a wake-up costs more */

struct linear_job {
    const struct cpu_kernels *k;
    struct cpu_rows x, w, out;
    const void *bias;
    enum zl_dtype bias_dt;
};

static void store(const struct linear_job *j, int64_t r, int64_t c, float v)
{
    if (j->bias)
        v += cpu_load_f32(j->bias, j->bias_dt, c);
    ((float *)(j->out.data + (size_t)r * j->out.stride))[c] = v;
}

/* Rows [r0, r1) of x against weight rows [c0, c1), one x row at a time
 * under each group of 4 weight rows, so the group is read from memory once
 * (it stays in L1 for the other x rows). */
static void rows_1xN(const struct linear_job *j, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    const struct cpu_kernels *k = j->k;
    float acc[4];
    int64_t c = c0;
    for (; c + 4 <= c1; c += 4)
        for (int64_t r = r0; r < r1; r++) {
            const float *x = (const float *)(j->x.data + (size_t)r * j->x.stride);
            k->tile_1x4(x, 0, j->w.data + (size_t)c * j->w.stride, j->w.stride, j->w.dtype,
                        j->x.d, acc);
            for (int t = 0; t < 4; t++)
                store(j, r, c + t, acc[t]);
        }
    for (; c < c1; c++)
        for (int64_t r = r0; r < r1; r++) {
            const float *x = (const float *)(j->x.data + (size_t)r * j->x.stride);
            k->tile_1x1(x, 0, j->w.data + (size_t)c * j->w.stride, 0, j->w.dtype, j->x.d, acc);
            store(j, r, c, acc[0]);
        }
}

static void linear_task(void *arg, int ith, int nth)
{
    const struct linear_job *j = arg;
    const struct cpu_kernels *k = j->k;
    int64_t lo, hi, n = j->x.n;
    cpu_split(j->w.n, 4, ith, nth, &lo, &hi);
    if (n < 4) {
        rows_1xN(j, 0, n, lo, hi);
        return;
    }
    float acc[12];
    for (int64_t cb = lo; cb < hi; cb += COL_BLOCK) {
        int64_t ce = cb + COL_BLOCK < hi ? cb + COL_BLOCK : hi;
        int64_t r = 0;
        for (; r + 4 <= n; r += 4) {
            const float *x = (const float *)(j->x.data + (size_t)r * j->x.stride);
            int64_t c = cb;
            for (; c + 3 <= ce; c += 3) {
                k->tile_4x3(x, j->x.stride, j->w.data + (size_t)c * j->w.stride, j->w.stride,
                            j->w.dtype, j->x.d, acc);
                for (int t = 0; t < 12; t++)
                    store(j, r + t / 3, c + t % 3, acc[t]);
            }
            if (c < ce)
                rows_1xN(j, r, r + 4, c, ce);
        }
        rows_1xN(j, r, n, cb, ce);
    }
}

static int overlaps(const struct cpu_rows *a, const struct cpu_rows *b)
{
    if (!a->n || !a->d || !b->n || !b->d)
        return 0;
    const char *a1 = a->data + (size_t)(a->n - 1) * a->stride + (size_t)a->d * cpu_dtype_size(a->dtype);
    const char *b1 = b->data + (size_t)(b->n - 1) * b->stride + (size_t)b->d * cpu_dtype_size(b->dtype);
    return a->data < b1 && b->data < a1;
}

int cpu_linear(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
               const struct zl_tensor *w, const struct zl_tensor *bias)
{
    static const char op[] = "linear";
    struct linear_job j = {.k = ctx->k};
    int rc;
    if ((rc = cpu_check_rows(op, "x", x, CPU_DT_F32, &j.x)) < 0 ||
        (rc = cpu_check_rows(op, "w", w, CPU_DT_FLOAT, &j.w)) < 0 ||
        (rc = cpu_check_rows(op, "out", out, CPU_DT_F32, &j.out)) < 0)
        return rc;
    if (j.x.d != j.w.d)
        return cpu_host->error(ZL_EINVAL, "cpu linear: x [%lld, %lld] vs w [%lld, %lld]: inner "
                               "sizes differ", (long long)j.x.n, (long long)j.x.d,
                               (long long)j.w.n, (long long)j.w.d);
    if (j.out.n != j.x.n || j.out.d != j.w.n)
        return cpu_host->error(ZL_EINVAL, "cpu linear: out [%lld, %lld], want [%lld, %lld]",
                               (long long)j.out.n, (long long)j.out.d, (long long)j.x.n,
                               (long long)j.w.n);
    if (bias) {
        struct cpu_rows b;
        if ((rc = cpu_check_rows(op, "bias", bias, CPU_DT_FLOAT, &b)) < 0)
            return rc;
        if (b.n != 1 || b.d != j.w.n)
            return cpu_host->error(ZL_EINVAL, "cpu linear: bias [%lld, %lld], want [%lld]",
                                   (long long)b.n, (long long)b.d, (long long)j.w.n);
        j.bias = b.data;
        j.bias_dt = b.dtype;
    }
    if (overlaps(&j.out, &j.x) || overlaps(&j.out, &j.w))
        return cpu_host->error(ZL_EINVAL, "cpu linear: out overlaps x or w");
    int64_t work = j.x.n * j.w.n * (j.x.d ? j.x.d : 1);
    cpu_pool_run(ctx->pool, cpu_pool_want(ctx->pool, work, MIN_WORK_PER_THREAD), linear_task, &j);
    return ZL_OK;
}
