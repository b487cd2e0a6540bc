/* linear_fused (backend.h, API minor 2) against float64 references on fresh
 * random inputs: the RMSNorm prologue (QKV), norm + SwiGLU (gate/up), the
 * SwiGLU alone (gate/up in the separate-op layers), the residual
 * epilogue with out == residual (o and down projections), each at n = 1,
 * 3, 8 tokens (the fused GEMV of gemv.cu) and 9, 17, 32, 33 (gemm-tma.cu
 * on an H100/H200, else the unfused ops on the scratch), bf16 and f16, shapes with tails (rows not a
 * multiple of 16); a bias (the unfused path at any n); bad fuse lists.  Also exact
 * checks: with a residual, the fused GEMV must equal linear then add bit
 * for bit (same products, same rounding), and for n > 8 linear_fused must
 * equal the ops it stands for, except with a SwiGLU: on an H100/H200
 * gemm-tma.cu takes 9-64 tokens and tiles [gate; up] by 64 gate rows and
 * their up rows, where linear tiles 128 consecutive rows, so k is split at
 * other places (both within the tolerance).  [768, 520] is a SwiGLU shape
 * it takes (rows a multiple of 128).
 *
 * Tolerance per element, u = 2^-24, u_T the dtype's rounding (2^-8 bf16,
 * 2^-11 f16), S = sum_k |w_k xn_k| over the (normalised) inputs:
 *   product e = (2 i + 32) u S (+ 2 u_T S with a norm)
 *               (+ u_T |x w| + u |b| with an f32 bias, which the linear
 *               op adds after rounding the product to the 16-bit out)
 * as test_cuda_gemv argues for the tensor-core sum; the extra 2 u_T S
 * with a norm: the kernel's 1/rms may differ from the reference's in its
 * last f32 bit (another summation order), flipping the rounding of a
 * normalised input by one unit (2 u_T of it).  Then
 *   plain:    u_T |ref| + e
 *   residual: u_T |acc| + e + u_T |ref|         (two roundings)
 *   swiglu:   gate and up off by e_g = u_T |g| + e, e_u likewise after
 *             their rounding; silu' <= 1.1, so 1.1 e_g (|u| + e_u) +
 *             (|silu g| + 1.1 e_g) e_u + u_T |ref| + 8 u |ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define U32 0x1p-24
#define GEMV_MAX_ROWS 8 /* kernels/cuda: steps up to this many tokens run the fused GEMV */
#define EPS 1e-5f

/* M_SWI: the SwiGLU alone (the model's separate-op layers past the fused
 * GEMV's rows, whose norm also adds the residual) */
enum mode { M_NORM, M_SWIGLU, M_RESID, M_SWI, N_MODES };
static const char *const mode_name[] = {"norm", "norm+swiglu", "residual", "swiglu"};
static int is_swi(enum mode m) { return m == M_SWIGLU || m == M_SWI; }
static int has_norm(enum mode m) { return m == M_NORM || m == M_SWIGLU; }

struct fcase {
    enum zl_dtype dt;
    int n;
    int64_t o, k;               /* w [o, k]; swiglu: o = 2f */
    enum mode mode;
    int bias;
};

/* [rows, cols] contiguous device tensor. */
static void mat(struct zl_tensor *t, enum zl_dtype dt, int64_t rows, int64_t cols, void *d)
{
    tensor(t, dt, 2, (int64_t[]){rows, cols}, d);
}

/* Reference out (and tolerance) of one case, on the host in float64. */
static void reference(const struct fcase *c, const double *x, const double *w, const double *nw,
                      const double *b, const double *res, double *ref, double *tol)
{
    const double ut = ulp_half(c->dt);
    const int64_t k = c->k, o = c->o, f = is_swi(c->mode) ? o / 2 : o;
    double *xn = xmalloc((size_t)k * sizeof *xn), *acc = xmalloc((size_t)o * sizeof *acc),
           *e = xmalloc((size_t)o * sizeof *e);
    for (int t = 0; t < c->n; t++) {
        const double *xr = x + t * k;
        int norm = has_norm(c->mode);
        double ss = 0;
        for (int64_t j = 0; j < k; j++)
            ss += xr[j] * xr[j];
        double inv = 1.0 / sqrt(ss / (double)k + (double)EPS);
        for (int64_t j = 0; j < k; j++)
            xn[j] = norm ? round_dt(c->dt, xr[j] * inv * nw[j]) : xr[j];
        for (int64_t r = 0; r < o; r++) {
            double s = 0, a = 0;
            for (int64_t j = 0; j < k; j++) {
                s += w[r * k + j] * xn[j];
                a += fabs(w[r * k + j] * xn[j]);
            }
            e[r] = (2.0 * (double)k + 32) * U32 * a + (norm ? 2 * ut * a : 0);
            if (b) { /* an f32 bias on a 16-bit out is added after a rounding */
                e[r] += ut * fabs(s) + U32 * fabs(b[r]);
                s += b[r];
            }
            acc[r] = s;
        }
        for (int64_t r = 0; r < f; r++) {
            double *rf = ref + t * f + r, *tf = tol + t * f + r;
            if (c->mode == M_NORM) {
                *rf = acc[r];
                *tf = ut * fabs(*rf) + e[r];
            } else if (c->mode == M_RESID) {
                *rf = acc[r] + res[t * o + r];
                *tf = ut * fabs(acc[r]) + e[r] + ut * fabs(*rf);
            } else {
                double g = acc[r], u = acc[f + r], sg = g / (1 + exp(-g));
                double eg = ut * fabs(g) + e[r], eu = ut * fabs(u) + e[f + r];
                *rf = sg * u;
                *tf = 1.1 * eg * (fabs(u) + eu) + (fabs(sg) + 1.1 * eg) * eu +
                      (ut + 8 * U32) * fabs(*rf);
            }
        }
    }
    free(xn);
    free(acc);
    free(e);
}

/* A case's device tensors: out [n, f], x [n, k], w [o, k], norm [k],
 * bias [o] (f32), the scratch tmp_x [n, k] and tmp_out [n, o]. */
struct dev {
    struct zl_tensor out, x, w, nw, b, tx, to;
};

static struct dev dev_of(const struct fcase *c, void *dout, void *const buf[6])
{
    const int64_t f = is_swi(c->mode) ? c->o / 2 : c->o;
    struct dev d;
    mat(&d.out, c->dt, c->n, f, dout);
    mat(&d.x, c->dt, c->n, c->k, buf[0]);
    mat(&d.w, c->dt, c->o, c->k, buf[1]);
    tensor(&d.nw, ZL_DTYPE_F32, 1, (int64_t[]){c->k}, buf[2]);
    tensor(&d.b, ZL_DTYPE_F32, 1, (int64_t[]){c->o}, buf[3]);
    mat(&d.tx, c->dt, c->n, c->k, buf[4]);
    mat(&d.to, c->dt, c->n, c->o, buf[5]);
    return d;
}

/* linear_fused of case c into dout. */
static int call(const struct fcase *c, void *dout, void *const buf[6])
{
    struct dev d = dev_of(c, dout, buf);
    struct zl_linear_fuse fu = {.eps = EPS, .tmp_x = &d.tx, .tmp_out = &d.to};
    if (has_norm(c->mode))
        fu.norm = &d.nw;
    fu.swiglu = is_swi(c->mode);
    if (c->mode == M_RESID)
        fu.residual = &d.out;    /* in place, as the model adds into x */
    return be->linear_fused(bctx, &d.out, &d.x, &d.w, c->bias ? &d.b : NULL, &fu);
}

/* The ops linear_fused stands for, into dout (which holds the residual). */
static int unfused(const struct fcase *c, void *dout, void *const buf[6])
{
    const int64_t f = is_swi(c->mode) ? c->o / 2 : c->o;
    struct dev d = dev_of(c, dout, buf);
    struct zl_tensor g, u;
    int rc = ZL_OK;
    const struct zl_tensor *xin = &d.x;
    if (has_norm(c->mode)) {
        rc = be->rms_norm(bctx, &d.tx, &d.x, NULL, &d.nw, EPS);
        xin = &d.tx;
    }
    if (rc == ZL_OK)
        rc = be->linear(bctx, c->mode == M_NORM ? &d.out : &d.to, xin, &d.w, c->bias ? &d.b : NULL);
    if (rc == ZL_OK && c->mode == M_RESID)
        rc = be->add(bctx, &d.out, &d.out, &d.to);
    if (rc == ZL_OK && is_swi(c->mode)) {
        view2(&g, c->dt, c->n, f, c->o, 0, buf[5]);
        view2(&u, c->dt, c->n, f, c->o, f, buf[5]);
        rc = be->silu_mul(bctx, &d.out, &g, &u);
    }
    return rc;
}

static void run_case(const struct fcase *c)
{
    const int64_t k = c->k, o = c->o, f = is_swi(c->mode) ? o / 2 : o;
    const size_t es = esize(c->dt), ob = (size_t)(c->n * f) * es;
    double *x, *w, *nw, *b, *res = NULL;
    void *xr = rand_raw(c->dt, (size_t)(c->n * k), -1, 1, &x);
    void *wr = rand_raw(c->dt, (size_t)(o * k), -0.5, 0.5, &w);
    void *nwr = rand_raw(ZL_DTYPE_F32, (size_t)k, 0.5, 1.5, &nw);
    void *br = rand_raw(ZL_DTYPE_F32, (size_t)o, -1, 1, &b);
    void *rr = rand_raw(c->dt, (size_t)(c->n * f), -2, 2, &res);
    void *buf[6] = {dnew(xr, (size_t)(c->n * k) * es), dnew(wr, (size_t)(o * k) * es),
                    dnew(nwr, (size_t)k * 4), dnew(br, (size_t)o * 4),
                    dmalloc((size_t)(c->n * k) * es), dmalloc((size_t)(c->n * o) * es)};
    void *dout = dmalloc(ob), *dref = dmalloc(ob);
    char what[160];
    snprintf(what, sizeof what, "linear_fused %s %s n=%d w [%lld, %lld]%s", mode_name[c->mode],
             zl_dtype_name(c->dt), c->n, (long long)o, (long long)k, c->bias ? " + bias" : "");
    if (c->mode == M_RESID)
        dput(dout, rr, ob);
    else
        dpoison(dout, ob);
    double *ref = xmalloc((size_t)(c->n * f) * sizeof *ref), *tol = xmalloc((size_t)(c->n * f) * sizeof *tol);
    reference(c, x, w, nw, c->bias ? b : NULL, res, ref, tol);
    if (ct_ok(call(c, dout, buf), what) && ct_sync(what) &&
        ct_check_dev(what, dout, c->dt, ref, tol, (size_t)(c->n * f)) &&
        (c->mode == M_RESID || (c->n > GEMV_MAX_ROWS && !is_swi(c->mode)))) {
        /* exact: the ops it stands for (a residual at n <= 8: the same GEMV
         * sums, rounded, then added as add() does) */
        char w2[200];
        snprintf(w2, sizeof w2, "%s == the unfused ops, bit for bit", what);
        if (c->mode == M_RESID)
            dput(dref, rr, ob);
        else
            dpoison(dref, ob);
        if (ct_ok(unfused(c, dref, buf), w2) && ct_sync(w2)) {
            void *a = xmalloc(ob), *bb = xmalloc(ob);
            dget(a, dout, ob);
            dget(bb, dref, ob);
            ct_result(memcmp(a, bb, ob) == 0, "%s", w2);
            free(a);
            free(bb);
        }
    }
    for (int i = 0; i < 6; i++)
        dfree(buf[i]);
    dfree(dout), dfree(dref);
    free(xr), free(wr), free(nwr), free(br), free(rr);
    free(x), free(w), free(nw), free(b), free(res), free(ref), free(tol);
}

/* Fuse lists the op must refuse with ZL_EINVAL, without touching memory. */
static void bad_lists(void)
{
    void *d = dmalloc(64 * 64 * 2);
    struct zl_tensor out, x, w, nw;
    mat(&out, ZL_DTYPE_BF16, 40, 32, d);   /* over GEMV_MAX_ROWS: the unfused path */
    mat(&x, ZL_DTYPE_BF16, 40, 32, d);
    mat(&w, ZL_DTYPE_BF16, 32, 32, d);
    tensor(&nw, ZL_DTYPE_F32, 1, (int64_t[]){32}, d);
    struct zl_linear_fuse both = {.norm = &nw, .eps = EPS, .swiglu = 1, .residual = &out};
    int rc = be->linear_fused(bctx, &out, &x, &w, NULL, &both);
    ct_result(rc == ZL_EINVAL, "swiglu with a residual refused: %s", zl_last_error());
    struct zl_linear_fuse no_tmp = {.norm = &nw, .eps = EPS};
    rc = be->linear_fused(bctx, &out, &x, &w, NULL, &no_tmp);
    ct_result(rc == ZL_EINVAL, "a norm over 40 rows without tmp_x refused: %s", zl_last_error());
    rc = be->linear_fused(bctx, &out, &x, &w, NULL, NULL);
    ct_result(rc == ZL_EINVAL, "no fuse list refused: %s", zl_last_error());
    dfree(d);
}

int main(void)
{
    int rc = ct_setup("linear_fused");
    if (rc)
        return rc;
    if (!ZL_BACKEND_HAS(be, linear_fused) || !be->linear_fused) {
        return ct_skip("this backend has no linear_fused (the model runs the separate ops)");
    }
    static const enum zl_dtype dts[2] = {ZL_DTYPE_BF16, ZL_DTYPE_F16};
    static const int ns[7] = {1, 3, 8, 9, 17, 32, 33};
    /* [o, k]: tails everywhere; a Llama-3.1-8B-shaped down projection */
    static const int64_t shapes[5][2] = {{96, 64}, {200, 136}, {1040, 1032}, {768, 520},
                                         {4096, 14336}};
    for (int d = 0; d < 2; d++)
        for (int s = 0; s < 5; s++)
            for (int m = 0; m < N_MODES; m++)
                for (int i = 0; i < 7; i++) {
                    if (s == 4 && (m != M_RESID || ns[i] == 3 || ns[i] == 17 || ns[i] == 33 || d))
                        continue; /* the big shape once: its reference is slow */
                    struct fcase c = {dts[d], ns[i], shapes[s][0], shapes[s][1], m, 0};
                    run_case(&c);
                }
    for (int m = 0; m < N_MODES; m++) { /* a bias: the unfused path even at n = 1 */
        struct fcase c = {ZL_DTYPE_BF16, 1, 200, 136, m, 1};
        run_case(&c);
    }
    bad_lists();
    return ct_finish();
}
