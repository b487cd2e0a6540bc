/* The decode-sized linear (kernels/cuda/gemv.cu, taken by the backend's
 * `linear` for n <= 8 tokens, x and w of one 16-bit dtype, no bias) against
 * a float64 reference on the same rounded inputs, then a timing section.
 *
 * Cases: Llama-3.1-8B shapes [o, i] = [6144, 4096] (fused QKV), [4096,
 * 4096], [28672, 4096] (fused gate/up), [4096, 14336], [128256, 4096]
 * (lm_head) and odd ones (o = 1, 7, 129, 1000; i = 8, 64, 576, 4104), bf16
 * and f16, n = 1..8 tokens, out f32 and out 16-bit, x and out contiguous or
 * strided views (16-byte aligned rows: the kernel; x at an odd element
 * offset: the kernel declines and cuBLASLt runs, which must be right too).
 * The output is poisoned with NaN first; the columns around an out view
 * must stay poisoned.  Big shapes check the reference on 2048 random rows
 * plus the first and last 32 (the float64 reference of 8 x 128256 x 4096
 * products would take seconds); every element of every output must still
 * have been written (no NaN left).
 *
 * Tolerance per element, S = sum_k |x_k w_k|, u = 2^-24, u_out the output
 * rounding (2^-8 bf16, 2^-11 f16, u for f32):
 *   |got - ref| <= u_out |ref| + (2 i + 32) u S
 * The products of 16-bit values are exact in f32; the tensor cores add
 * them with truncation (not round to nearest), at most 2u relative per
 * addition, i additions on any path (2 i u S); the kernel's sum of at most
 * 16 per-warp partials in f32 adds 16 u S (32 with margin).  u_out |ref|
 * is the final rounding of a 16-bit out (ct_check adds the 1/128 margin for
 * rounding the computed rather than the exact value).  cuBLASLt's path
 * (test_cuda_linear: (i + 3) u S) is inside the same bound.
 *
 * Timing (skipped with ZL_GEMV_QUICK=1, which also trims the big shapes to
 * n = 1, 3, 8 for compute-sanitizer): bf16, out bf16, the five shapes at
 * n = 1 and 8; 8 copies of the weights rotated so nothing is served from
 * the 50 MB L2 (a copy comes back after 7 others: >= 224 MB later); host
 * clock around a batch of 32 calls (4 passes over the copies) and the
 * backend's sync(), median of 50 batches, per call.  Batches, not single
 * calls: a sync and the first launch after it cost several microseconds,
 * a third of a 4096 x 4096 call, and decode runs its linears back to back.
 * Consecutive gemv calls overlap a little (programmatic dependent launch:
 * the next grid starts while this one drains), as they do in a model that
 * makes separate q, k, v or gate, up calls.  Printed as
 *   BENCH gemv [o, i] n=N: X us, Y GB/s of weights
 * and the same shapes through cuBLASLt (a zero bias routes linear past the
 * gemv kernel; the bias goes into cuBLASLt's epilogue) for comparison. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define U32 0x1p-24
#define MAXN 8
#define SAMPLE 2048                 /* random rows checked on big shapes */
#define EDGE 32                     /* plus the first and last EDGE rows */
#define BIG ((int64_t)1 << 22)      /* o * i above this: sampled rows */
#define ROT 8
#define BATCHES 50
#define PASSES 4                    /* 32 calls per sync */

static int quick;

/* n 16-bit values of dt, random sign, exponent over [2^-8, 1), random
 * mantissa: varied magnitudes, no zeros; 4 values per RNG draw (the
 * lm_head has half a billion). */
static uint16_t *rand_w16(enum zl_dtype dt, size_t n)
{
    uint16_t *w = xmalloc(n * 2);
    const int bf = dt == ZL_DTYPE_BF16;
    for (size_t i = 0; i < n; i += 4) {
        uint64_t r = rng_u64();
        for (size_t j = i; j < i + 4 && j < n; j++, r >>= 16) {
            unsigned b = (unsigned)(r & 0xffff), s = b >> 15, e = (b >> 12) & 7;
            w[j] = bf ? (uint16_t)(s << 15 | (126 - e) << 7 | (b & 0x7f))
                      : (uint16_t)(s << 15 | (14 - e) << 10 | (b & 0x3ff));
        }
    }
    return w;
}

/* One weight matrix and 8 tokens of x, with the float64 reference of the
 * checked rows for all 8 tokens (a case with n tokens uses the first n). */
struct wcase {
    enum zl_dtype dt;
    int64_t o, k;
    uint16_t *w, *x;                /* host [o, k], [8, k] */
    void *dw;
    int64_t n_rows, *rows;          /* checked rows, ascending */
    double *ref, *sa;               /* [8][n_rows] sum x w, sum |x w| */
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void pick_rows(struct wcase *c)
{
    if (c->o * c->k <= BIG) {
        c->n_rows = c->o;
        c->rows = xmalloc((size_t)c->o * sizeof *c->rows);
        for (int64_t r = 0; r < c->o; r++)
            c->rows[r] = r;
        return;
    }
    int64_t m = 0, *r = xmalloc((SAMPLE + 2 * EDGE) * sizeof *r);
    for (int64_t i = 0; i < EDGE; i++)
        r[m++] = i, r[m++] = c->o - 1 - i;
    for (int i = 0; i < SAMPLE; i++)
        r[m++] = (int64_t)(rng_u64() % (uint64_t)c->o);
    qsort(r, (size_t)m, sizeof *r, cmp_i64);
    int64_t u = 0;
    for (int64_t i = 0; i < m; i++)
        if (!u || r[u - 1] != r[i])
            r[u++] = r[i];
    c->n_rows = u;
    c->rows = r;
}

static void wcase_init(struct wcase *c, enum zl_dtype dt, int64_t o, int64_t k)
{
    memset(c, 0, sizeof *c);
    c->dt = dt, c->o = o, c->k = k;
    c->w = rand_w16(dt, (size_t)(o * k));
    double *xv;
    c->x = rand_raw(dt, (size_t)(MAXN * k), -1, 1, &xv);
    c->dw = dnew(c->w, (size_t)(o * k) * 2);
    pick_rows(c);
    c->ref = xmalloc((size_t)(MAXN * c->n_rows) * sizeof *c->ref);
    c->sa = xmalloc((size_t)(MAXN * c->n_rows) * sizeof *c->sa);
    float *wf = xmalloc((size_t)k * sizeof *wf);
    for (int64_t i = 0; i < c->n_rows; i++) {
        if (zl_dtype_convert(ZL_DTYPE_F32, wf, dt, c->w + c->rows[i] * k, (size_t)k) != ZL_OK) {
            fprintf(stderr, "convert: %s\n", zl_last_error());
            exit(1);
        }
        for (int t = 0; t < MAXN; t++) {
            const double *xr = xv + t * k;
            double s = 0, a = 0;
            for (int64_t j = 0; j < k; j++) {
                double p = xr[j] * (double)wf[j];
                s += p;
                a += fabs(p);
            }
            c->ref[t * c->n_rows + i] = s;
            c->sa[t * c->n_rows + i] = a;
        }
    }
    free(wf);
    free(xv);
}

static void wcase_free(struct wcase *c)
{
    dfree(c->dw);
    free(c->w);
    free(c->x);
    free(c->rows);
    free(c->ref);
    free(c->sa);
}

/* x layouts: contiguous; rows k + 24 wide at column 8 (16-byte aligned,
 * strided: the kernel); rows k + 7 wide at column 3 (misaligned: cuBLASLt). */
enum { LAY_DENSE, LAY_STRIDED, LAY_ODD };

static void run_case(const struct wcase *c, int n, enum zl_dtype out_dt, int lay)
{
    const int64_t k = c->k, o = c->o;
    const int64_t xw = lay == LAY_DENSE ? k : lay == LAY_STRIDED ? k + 24 : k + 7;
    const int64_t x0 = lay == LAY_DENSE ? 0 : lay == LAY_STRIDED ? 8 : 3;
    const int64_t ow = lay == LAY_DENSE ? o : o + 13, o0 = lay == LAY_DENSE ? 0 : 5;
    const size_t es = esize(out_dt), ob = (size_t)(n * ow) * es;
    uint16_t *xh = xmalloc((size_t)(n * xw) * 2);
    memset(xh, 0, (size_t)(n * xw) * 2);
    for (int t = 0; t < n; t++)
        memcpy(xh + t * xw + x0, c->x + t * k, (size_t)k * 2);
    void *dx = dnew(xh, (size_t)(n * xw) * 2), *dout = dmalloc(ob);
    dpoison(dout, ob);
    struct zl_tensor tx, tw, to;
    view2(&tx, c->dt, n, k, xw, x0, dx);
    tensor(&tw, c->dt, 2, (int64_t[]){o, k}, c->dw);
    view2(&to, out_dt, n, o, ow, o0, dout);
    char what[200];
    snprintf(what, sizeof what, "gemv %s -> %s [%d, %lld] x [%lld, %lld]^T%s", zl_dtype_name(c->dt),
             zl_dtype_name(out_dt), n, (long long)k, (long long)o, (long long)k,
             lay == LAY_DENSE ? "" : lay == LAY_STRIDED ? " strided" : " x misaligned (cuBLASLt)");
    if (ct_ok(be->linear(bctx, &to, &tx, &tw, NULL), what) && ct_sync(what)) {
        unsigned char *got = xmalloc(ob);
        dget(got, dout, ob);
        const int64_t m = c->n_rows;
        unsigned char *sel = xmalloc((size_t)(n * m) * es);
        double *ref = xmalloc((size_t)(n * m) * sizeof *ref), *tol = xmalloc((size_t)(n * m) * sizeof *tol);
        int untouched = 1;
        size_t unwritten = 0;
        float *row = xmalloc((size_t)o * sizeof *row);
        for (int t = 0; t < n; t++) {
            const unsigned char *g = got + (size_t)(t * ow) * es;
            for (int64_t j = 0; j < ow; j++)
                for (size_t e = 0; (j < o0 || j >= o0 + o) && e < es; e++)
                    untouched &= g[(size_t)j * es + e] == 0xff;
            zl_dtype_convert(ZL_DTYPE_F32, row, out_dt, g + (size_t)o0 * es, (size_t)o);
            for (int64_t j = 0; j < o; j++)
                unwritten += isnan(row[j]) != 0;
            for (int64_t i = 0; i < m; i++) {
                memcpy(sel + (size_t)(t * m + i) * es, g + (size_t)(o0 + c->rows[i]) * es, es);
                double r = c->ref[t * m + i];
                ref[t * m + i] = r;
                tol[t * m + i] = ulp_half(out_dt) * fabs(r) + (2.0 * (double)k + 32) * U32 * c->sa[t * m + i];
            }
        }
        ct_result(unwritten == 0, "%s: all %lld outputs written (%zu NaN)", what,
                  (long long)(n * o), unwritten);
        if (lay != LAY_DENSE)
            ct_result(untouched, "%s: columns outside the out view untouched", what);
        ct_check(what, sel, out_dt, ref, tol, (size_t)(n * m));
        free(row);
        free(sel);
        free(ref);
        free(tol);
        free(got);
    }
    dfree(dx);
    dfree(dout);
    free(xh);
}

/* Median seconds per call over BATCHES batches of PASSES * ROT calls (the
 * weight copies in turn); -1 on an error. */
static double time_linear(struct zl_tensor *to, struct zl_tensor *tx, struct zl_tensor *tw,
                          struct zl_tensor *tb)
{
    double t[BATCHES];
    for (int r = -2; r < BATCHES; r++) {    /* two warm-up batches */
        double t0 = ct_now();
        for (int i = 0; i < PASSES * ROT; i++)
            if (be->linear(bctx, to, tx, &tw[i % ROT], tb) != ZL_OK)
                return -1;
        if (be->sync(bctx) != ZL_OK)
            return -1;
        if (r >= 0)
            t[r] = (ct_now() - t0) / (PASSES * ROT);
    }
    qsort(t, BATCHES, sizeof *t, ct_cmp_double);
    return t[BATCHES / 2];
}

static void bench_shape(int64_t o, int64_t k)
{
    const enum zl_dtype dt = ZL_DTYPE_BF16;
    const size_t wb = (size_t)(o * k) * 2;
    uint16_t *w = rand_w16(dt, (size_t)(o * k));
    void *dw[ROT], *bias0 = xmalloc((size_t)o * 2);
    memset(bias0, 0, (size_t)o * 2);
    struct zl_tensor tw[ROT], tx, to, tb;
    for (int i = 0; i < ROT; i++) {
        dw[i] = dnew(w, wb);
        tensor(&tw[i], dt, 2, (int64_t[]){o, k}, dw[i]);
    }
    free(w);
    uint16_t *x = rand_w16(dt, (size_t)(MAXN * k));
    void *dx = dnew(x, (size_t)(MAXN * k) * 2), *dout = dmalloc((size_t)(MAXN * o) * 2);
    void *db = dnew(bias0, (size_t)o * 2);
    free(x);
    free(bias0);
    tensor(&tb, dt, 1, (int64_t[]){o}, db);
    static const int ns[] = {1, 8};
    for (int ni = 0; ni < 2; ni++) {
        int n = ns[ni];
        tensor(&tx, dt, 2, (int64_t[]){n, k}, dx);
        tensor(&to, dt, 2, (int64_t[]){n, o}, dout);
        double s = time_linear(&to, &tx, tw, NULL);
        if (s < 0)
            printf("BENCH gemv [%lld, %lld] n=%d: failed: %s\n", (long long)o, (long long)k, n,
                   zl_last_error());
        else
            printf("BENCH gemv [%lld, %lld] n=%d: %.1f us, %.0f GB/s of weights\n", (long long)o,
                   (long long)k, n, s * 1e6, (double)wb / s * 1e-9);
        s = time_linear(&to, &tx, tw, &tb);
        if (s >= 0)
            printf("BENCH cublaslt [%lld, %lld] n=%d: %.1f us, %.0f GB/s of weights\n", (long long)o,
                   (long long)k, n, s * 1e6, (double)wb / s * 1e-9);
    }
    for (int i = 0; i < ROT; i++)
        dfree(dw[i]);
    dfree(dx);
    dfree(dout);
    dfree(db);
}

int main(void)
{
    int rc = ct_setup("gemv");
    if (rc)
        return rc;
    if (ct_is_cpu()) {
        return ct_skip("the CPU backend takes f32 activations only");
    }
    const char *q = getenv("ZL_GEMV_QUICK");
    quick = q && *q && *q != '0';
    static const int64_t big[][2] = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336},
                                     {128256, 4096}};
    static const int64_t odd[][2] = {{1, 8}, {7, 64}, {129, 576}, {1000, 4104}, {129, 8},
                                     {1000, 64}, {7, 4104}, {1, 576}};
    const enum zl_dtype dts[] = {ZL_DTYPE_BF16, ZL_DTYPE_F16};
    for (int di = 0; di < 2; di++) {
        const enum zl_dtype dt = dts[di];
        for (size_t s = 0; s < sizeof odd / sizeof *odd; s++) {
            struct wcase c;
            wcase_init(&c, dt, odd[s][0], odd[s][1]);
            for (int n = 1; n <= MAXN; n++) {
                run_case(&c, n, ZL_DTYPE_F32, n % 3 == 1 ? LAY_STRIDED : LAY_DENSE);
                run_case(&c, n, dt, n % 3 == 2 ? LAY_STRIDED : n == 6 ? LAY_ODD : LAY_DENSE);
            }
            wcase_free(&c);
        }
        for (size_t s = 0; s < sizeof big / sizeof *big; s++) {
            struct wcase c;
            wcase_init(&c, dt, big[s][0], big[s][1]);
            for (int n = 1; n <= MAXN; n++) {
                if (quick && n != 1 && n != 3 && n != MAXN)
                    continue;
                run_case(&c, n, ZL_DTYPE_F32, n % 2 ? LAY_DENSE : LAY_STRIDED);
                run_case(&c, n, dt, n % 2 ? LAY_STRIDED : LAY_DENSE);
            }
            wcase_free(&c);
        }
    }
    if (!quick)
        for (size_t s = 0; s < sizeof big / sizeof *big; s++)
            bench_shape(big[s][0], big[s][1]);
    return ct_finish();
}
