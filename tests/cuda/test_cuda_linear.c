/* linear (cuBLASLt on the GPU) against a float64 reference on fresh random
 * inputs: odd sizes, decode (n = 1) and prefill shapes, Llama-sized ones,
 * strided x and out views (the columns around the out view must stay
 * untouched), bias through the epilogue and through the bias kernel, and
 * every dtype combination the backend takes.
 *
 * Tolerance per element, with S = sum_k |x_k w_k| (+ |b|), u = 2^-24:
 *   u_out (|ref| + [bias] |ref - b|) + (k + 3) u S + [x to f16] u_f16 S
 * (9-64 tokens of 16-byte aligned 16-bit rows run gemm-tma.cu on an
 * H100/H200, whose splits of k are another order, covered the same way).
 * (k + 3) u S is the classic worst-case bound of an f32 sum of k products
 * (gamma_k: bf16/f16 products are exact in f32, and any blocking or split-k
 * order is covered) plus the three f32 roundings of the f32-x-by-bf16-w
 * path, which sums the products of three exact bf16 parts of x.
 * u_out |ref| is the final rounding; with a bias the product may be rounded
 * to the output dtype before the bias is added and rounded again (cuBLASLt's
 * bf16 bias epilogue does, as does the bias kernel): the |ref - b| term.
 * f32 x against f16 w is rounded to f16 on the GPU (documented in
 * kernels/cuda), at most u_f16 S more; the CPU keeps x in f32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define U32 0x1p-24

struct lin_case {
    int64_t n, k, o;
    enum zl_dtype x, w, out, bias;  /* bias ZL_DTYPE_COUNT: none */
    int strided;                    /* 1: x and out are views into wider rows; 2: out only */
};

static void linear_case(const struct lin_case *c)
{
    const int64_t n = c->n, k = c->k, o = c->o;
    const int64_t xw = c->strided == 1 ? k + 7 : k, x0 = c->strided == 1 ? 3 : 0;
    const int64_t ow = c->strided ? o + 13 : o, o0 = c->strided ? 5 : 0;
    const int has_bias = c->bias != ZL_DTYPE_COUNT;
    double *xv, *wv, *bv = NULL;
    void *x = rand_raw(c->x, (size_t)(n * xw), -1, 1, &xv);
    void *w = rand_raw(c->w, (size_t)(o * k), -1, 1, &wv);
    void *b = has_bias ? rand_raw(c->bias, (size_t)o, -1, 1, &bv) : NULL;
    size_t ob = (size_t)(n * ow) * esize(c->out);
    void *dx = dnew(x, (size_t)(n * xw) * esize(c->x)), *dw = dnew(w, (size_t)(o * k) * esize(c->w));
    void *db = b ? dnew(b, (size_t)o * esize(c->bias)) : NULL;
    void *dout = dmalloc(ob);
    dpoison(dout, ob);
    struct zl_tensor tx, tw, tb, to;
    view2(&tx, c->x, n, k, xw, x0, dx);
    tensor(&tw, c->w, 2, (int64_t[]){o, k}, dw);
    if (b)
        tensor(&tb, c->bias, 1, (int64_t[]){o}, db);
    view2(&to, c->out, n, o, ow, o0, dout);
    char what[200];
    snprintf(what, sizeof what, "linear x %s w %s -> %s [%lld, %lld] x [%lld, %lld]^T%s%s%s",
             zl_dtype_name(c->x), zl_dtype_name(c->w), zl_dtype_name(c->out), (long long)n,
             (long long)k, (long long)o, (long long)k, has_bias ? " +bias " : "",
             has_bias ? zl_dtype_name(c->bias) : "", c->strided ? " strided" : "");
    if (ct_ok(be->linear(bctx, &to, &tx, &tw, b ? &tb : NULL), what) && ct_sync(what)) {
        size_t no = (size_t)(n * o), es = esize(c->out);
        double *ref = xmalloc(no * sizeof *ref), *tol = xmalloc(no * sizeof *tol);
        double rounding = c->x == ZL_DTYPE_F32 && c->w == ZL_DTYPE_F16 ? ulp_half(c->w) : 0;
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < o; j++) {
                double sum = 0, sa = 0;
                const double *xr = xv + r * xw + x0, *wr = wv + j * k;
                for (int64_t t = 0; t < k; t++) {
                    sum += xr[t] * wr[t];
                    sa += fabs(xr[t] * wr[t]);
                }
                if (bv)
                    sum += bv[j], sa += fabs(bv[j]);
                ref[r * o + j] = sum;
                tol[r * o + j] = ulp_half(c->out) * (fabs(sum) + (bv ? fabs(sum - bv[j]) : 0)) +
                                 ((double)k + 3) * U32 * sa + rounding * sa;
            }
        unsigned char *got = xmalloc(ob), *view = xmalloc(no * es);
        dget(got, dout, ob);
        int untouched = 1;  /* bytes around the view still hold the 0xff poison */
        for (int64_t r = 0; r < n; r++) {
            for (int64_t j = 0; j < ow; j++)
                for (size_t e = 0; (j < o0 || j >= o0 + o) && e < es; e++)
                    untouched &= got[(size_t)(r * ow + j) * es + e] == 0xff;
            memcpy(view + (size_t)(r * o) * es, got + (size_t)(r * ow + o0) * es, (size_t)o * es);
        }
        if (c->strided)
            ct_result(untouched, "%s: columns outside the out view untouched", what);
        ct_check(what, view, c->out, ref, tol, no);
        free(view);
        free(got);
        free(ref);
        free(tol);
    }
    dfree(dx);
    dfree(dw);
    dfree(db);
    dfree(dout);
    free(x);
    free(w);
    free(b);
    free(xv);
    free(wv);
    free(bv);
}

int main(void)
{
    int rc = ct_setup("linear");
    if (rc)
        return rc;
    const enum zl_dtype F32 = ZL_DTYPE_F32, BF = ZL_DTYPE_BF16, F16 = ZL_DTYPE_F16,
                        NONE = ZL_DTYPE_COUNT;
    /* shapes: decode, odd everything, prefill-ish, a Llama projection */
    static const int64_t shapes[][3] = {{1, 4096, 1000}, {5, 1001, 77}, {33, 2048, 515},
                                        {300, 513, 257}, {1, 1, 3}, {17, 4096, 6144}};
    const int n_shapes = (int)(sizeof shapes / sizeof *shapes);
    /* dtype combinations: x, w, out, bias */
    const enum zl_dtype combos[][4] = {
        {F32, F32, F32, NONE}, {F32, BF, F32, F32}, {F32, F16, F32, NONE},   /* CPU-style */
        {BF, BF, BF, BF}, {BF, BF, F32, NONE}, {BF, BF, BF, F32},              /* bf16 model */
        {F16, F16, F16, F16}, {F16, F16, F32, NONE},                          /* f16 model */
    };
    for (size_t ci = 0; ci < sizeof combos / sizeof *combos; ci++) {
        if (ct_is_cpu() && (combos[ci][0] != F32 || combos[ci][2] != F32))
            continue;   /* the CPU backend takes f32 activations only */
        for (int s = 0; s < n_shapes; s++) {
            struct lin_case c = {shapes[s][0], shapes[s][1], shapes[s][2], combos[ci][0],
                                 combos[ci][1], combos[ci][2], s % 2 ? combos[ci][3] : NONE,
                                 s % 3 != 0};
            linear_case(&c);
        }
    }
    /* 9-64 tokens, x rows 16-byte aligned: gemm-tma.cu on an H100/H200.
     * Its stream-K split cuts tiles of 128 rows between CTAs at any of the
     * 64-column k units: one unit a tile ({17, 64, 130}), a k tail
     * ({9, 520, 96}), a row tail, 16/32/64-token MMA widths, the big k of a
     * down projection; odd ones write into a wider out. */
    static const int64_t tma_shapes[][3] = {{9, 520, 96},     {16, 4096, 512}, {24, 2048, 1000},
                                            {32, 4096, 6144}, {33, 4160, 1111}, {64, 1024, 4096},
                                            {17, 64, 130},    {40, 14336, 256}};
    for (int d = 0; d < 2 && !ct_is_cpu(); d++)
        for (size_t s = 0; s < sizeof tma_shapes / sizeof *tma_shapes; s++) {
            const enum zl_dtype dt = d ? F16 : BF;
            struct lin_case c = {tma_shapes[s][0], tma_shapes[s][1], tma_shapes[s][2], dt, dt, dt,
                                 NONE, s % 2 ? 2 : 0};
            linear_case(&c);
        }
    return ct_finish();
}
