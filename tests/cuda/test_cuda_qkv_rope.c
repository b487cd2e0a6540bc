/* linear_rope_kv (backend.h, API minor 4): the QKV projection with its
 * RMSNorm, RoPE and KV-cache write in one call.
 *
 * Exact: on fresh random inputs, out (q rotated, k and v as the product)
 * and every byte of a poisoned cache pool must equal what linear_fused
 * then rope_kv_write leave, bit for bit.  That is the op's contract, and
 * test_cuda_fused / test_cuda_ops check those two against float64.  Cases:
 * n = 1, 3, 8 tokens (the fused GEMV epilogue) and 9 (past the GEMV: the
 * two ops), bf16 and f16, Llama-3.1-8B's heads (32 q, 8 kv, head_dim 128
 * over 4096 inputs), a small GQA shape and one whose row pairs do not fill
 * the last GEMV block (3 q + 1 kv heads of 48: 120 pairs); random positions
 * up to 60000 and scattered slots; attn_factor 1 and 0.8.  The unfused
 * paths of the op are checked the same way: a bias, q/k/v that are not
 * out's [q | k | v] columns (the fused epilogue writes only that layout).
 *
 * Against float64 too (the fused cases): q and k rotated, with the angle
 * as the kernels form it (the f32 product p * inv_freq, then cos/sin in
 * double), v as the product.  Per element, u = 2^-24, u_T the dtype's
 * rounding, S = sum_k |w_k xn_k|: the product x is off by e_x = u_T |x| +
 * (2 i + 32) u S + 2 u_T S (test_cuda_fused's norm bound), and a rotated
 * value x1 c - x2 s by |c| e_x1 + |s| e_x2 + 8 u (|x1| + |x2|) (sincosf's
 * few ulps, the scaled cos/sin and the three f32 operations) + u_T |ref|
 * (its rounding). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define U32 0x1p-24
#define EPS 1e-5f
#define BS 16       /* cache block size */
#define LAYERS 2
#define LAYER 1

struct qcase {
    enum zl_dtype dt;
    int n;
    int64_t hq, hkv, hd, k;     /* heads, head_dim, input width */
    float af;
    int bias, split;            /* a bias; q/k/v in separate buffers */
};

/* One run's device state: out (the QKV rows), q/k/v views, the pool. */
struct run {
    void *out, *q, *k, *v, *pool;
};

/* Reference rows [n, width] of the product and their tolerance. */
static void product_ref(const struct qcase *c, const double *x, const double *w, const double *nw,
                        double *acc, double *err)
{
    const int64_t width = (c->hq + 2 * c->hkv) * c->hd;
    const double ut = ulp_half(c->dt);
    double *xn = xmalloc((size_t)c->k * sizeof *xn);
    for (int t = 0; t < c->n; t++) {
        const double *xr = x + t * c->k;
        double ss = 0;
        for (int64_t j = 0; j < c->k; j++)
            ss += xr[j] * xr[j];
        double inv = 1.0 / sqrt(ss / (double)c->k + (double)EPS);
        for (int64_t j = 0; j < c->k; j++)
            xn[j] = round_dt(c->dt, xr[j] * inv * nw[j]);
        for (int64_t r = 0; r < width; r++) {
            double s = 0, a = 0;
            for (int64_t j = 0; j < c->k; j++) {
                s += w[r * c->k + j] * xn[j];
                a += fabs(w[r * c->k + j] * xn[j]);
            }
            acc[t * width + r] = s;
            err[t * width + r] = ut * fabs(s) + (2.0 * (double)c->k + 32) * U32 * a + 2 * ut * a;
        }
    }
    free(xn);
}

/* The float64 check of a fused run: q (in out) and the cache's k and v. */
static void check_ref(const struct qcase *c, const char *what, const double *acc,
                      const double *err, const int32_t *pos, const int32_t *slot,
                      const float *inv, const struct run *d, size_t pool_bytes)
{
    const int64_t hd = c->hd, hh = hd / 2, width = (c->hq + 2 * c->hkv) * hd;
    const int64_t kvrow = c->hkv * hd, nq = c->n * c->hq * hd, nk = c->n * kvrow;
    const double ut = ulp_half(c->dt);
    /* expected values in the order: q [n][hq*hd], then k, v [n][hkv*hd] */
    size_t all = (size_t)(nq + 2 * nk);
    double *ref = xmalloc(all * sizeof *ref), *tol = xmalloc(all * sizeof *tol);
    for (int t = 0; t < c->n; t++)
        for (int64_t h = 0; h < c->hq + 2 * c->hkv; h++)
            for (int64_t j = 0; j < hd; j++) {
                const int64_t col = h * hd + j, jj = j % hh;
                const double *a = acc + t * width + h * hd, *e = err + t * width + h * hd;
                double r = a[j], tl = e[j];
                if (h < c->hq + c->hkv) {
                    float ang = (float)pos[t] * inv[jj];    /* as the kernels form it */
                    double co = cos((double)ang) * c->af, sn = sin((double)ang) * c->af;
                    double x1 = a[jj], x2 = a[jj + hh];
                    r = j < hh ? x1 * co - x2 * sn : x2 * co + x1 * sn;
                    tl = fabs(co) * e[j < hh ? jj : jj + hh] + fabs(sn) * e[j < hh ? jj + hh : jj] +
                         8 * U32 * (fabs(x1) + fabs(x2)) + ut * fabs(r);
                }
                size_t at = h < c->hq ? (size_t)(t * c->hq * hd + col)
                            : h < c->hq + c->hkv ? (size_t)(nq + t * kvrow + col - c->hq * hd)
                                                 : (size_t)(nq + nk + t * kvrow + col - (c->hq + c->hkv) * hd);
                ref[at] = r;
                tol[at] = tl;
            }
    /* gather what the op wrote into the same order */
    const size_t es = esize(c->dt), row = (size_t)width * es;
    char *o = xmalloc((size_t)c->n * row), *p = xmalloc(pool_bytes), *got = xmalloc(all * es);
    dget(o, d->out, (size_t)c->n * row);
    dget(p, d->pool, pool_bytes);
    const size_t blk = (size_t)LAYERS * 2 * BS * (size_t)kvrow * es;
    for (int t = 0; t < c->n; t++) {
        memcpy(got + (size_t)(t * c->hq * hd) * es, o + (size_t)t * row, (size_t)(c->hq * hd) * es);
        for (int kv = 0; kv < 2; kv++) {
            size_t src = (size_t)(slot[t] / BS) * blk +
                         ((size_t)(LAYER * 2 + kv) * BS + (size_t)(slot[t] % BS)) * (size_t)kvrow * es;
            memcpy(got + (size_t)(nq + kv * nk + t * kvrow) * es, p + src, (size_t)kvrow * es);
        }
    }
    char w2[260];
    snprintf(w2, sizeof w2, "%s vs float64 (q, cache k and v)", what);
    ct_check(w2, got, c->dt, ref, tol, all);
    free(ref), free(tol), free(o), free(p), free(got);
}

static void run_case(const struct qcase *c)
{
    const int64_t hd = c->hd, width = (c->hq + 2 * c->hkv) * hd, kvrow = c->hkv * hd;
    const size_t es = esize(c->dt), ob = (size_t)(c->n * width) * es;
    const int32_t nblk = c->n + 5;
    const size_t stride = (size_t)LAYERS * 2 * BS * (size_t)kvrow * es,
                 pool_bytes = stride * (size_t)nblk;
    char what[200];
    snprintf(what, sizeof what, "linear_rope_kv %s n=%d hq %lld hkv %lld hd %lld k %lld af %.1f%s%s",
             zl_dtype_name(c->dt), c->n, (long long)c->hq, (long long)c->hkv, (long long)hd,
             (long long)c->k, c->af, c->bias ? " + bias" : "", c->split ? " split q/k/v" : "");

    double *x, *w, *nw;
    void *xr = rand_raw(c->dt, (size_t)(c->n * c->k), -1, 1, &x);
    void *wr = rand_raw(c->dt, (size_t)(width * c->k), -0.5, 0.5, &w);
    void *nwr = rand_raw(ZL_DTYPE_F32, (size_t)c->k, 0.5, 1.5, &nw);
    void *br = rand_raw(ZL_DTYPE_F32, (size_t)width, -1, 1, NULL);
    void *qkv = rand_raw(c->dt, (size_t)(c->n * width), -2, 2, NULL);
    void *dx = dnew(xr, (size_t)(c->n * c->k) * es), *dw = dnew(wr, (size_t)(width * c->k) * es);
    void *dnw = dnew(nwr, (size_t)c->k * 4), *db = dnew(br, (size_t)width * 4);
    void *dtx = dmalloc((size_t)(c->n * c->k) * es);

    /* random positions, scattered distinct slots of a shuffled pool */
    int32_t *pos = xmalloc((size_t)c->n * sizeof *pos), *table = xmalloc((size_t)nblk * sizeof *table);
    int32_t *slot = xmalloc((size_t)c->n * sizeof *slot), *perm = rng_perm(nblk * BS);
    for (int32_t b = 0; b < nblk; b++)
        table[b] = b;
    for (int i = 0; i < c->n; i++) {
        pos[i] = rng_int(0, 60000);
        slot[i] = perm[i];
    }
    int32_t qs[2] = {0, c->n}, kvl[1] = {c->n};
    struct zl_attn_batch batch = {.n_seqs = 1, .max_blocks = nblk, .q_start = qs, .kv_len = kvl,
                                  .block_table = table, .slot = slot};
    void *dpos = dnew(pos, (size_t)c->n * sizeof *pos);
    float *inv = xmalloc((size_t)(hd / 2) * sizeof *inv);
    for (int64_t j = 0; j < hd / 2; j++)
        inv[j] = (float)pow(500000.0, -2.0 * (double)j / (double)hd);
    struct zl_rope rp = {.rot_dim = (int32_t)hd, .inv_freq = inv, .attn_factor = c->af};
    struct zl_tensor tx, tw, tnw, tb, ttx, tp;
    tensor(&tx, c->dt, 2, (int64_t[]){c->n, c->k}, dx);
    tensor(&tw, c->dt, 2, (int64_t[]){width, c->k}, dw);
    tensor(&tnw, ZL_DTYPE_F32, 1, (int64_t[]){c->k}, dnw);
    tensor(&tb, ZL_DTYPE_F32, 1, (int64_t[]){width}, db);
    tensor(&ttx, c->dt, 2, (int64_t[]){c->n, c->k}, dtx);
    tensor(&tp, ZL_DTYPE_I32, 1, (int64_t[]){c->n}, dpos);
    struct zl_linear_fuse f = {.norm = &tnw, .eps = EPS, .tmp_x = &ttx};

    /* run 0: linear_rope_kv; run 1: linear_fused then rope_kv_write */
    struct run d[2];
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
        d[k].out = dmalloc(ob);
        d[k].pool = dmalloc(pool_bytes);
        dpoison(d[k].out, ob);
        dpoison(d[k].pool, pool_bytes);
        struct zl_tensor to, tq, tk, tv;
        tensor(&to, c->dt, 2, (int64_t[]){c->n, width}, d[k].out);
        if (c->split) { /* q, v, k order in one buffer: not out's layout */
            d[k].q = dmalloc(ob);
            heads_view(&tq, c->dt, c->n, c->hq, hd, width, 0, d[k].q);
            heads_view(&tv, c->dt, c->n, c->hkv, hd, width, c->hq * hd, d[k].q);
            heads_view(&tk, c->dt, c->n, c->hkv, hd, width, (c->hq + c->hkv) * hd, d[k].q);
        } else {
            d[k].q = NULL;
            heads_view(&tq, c->dt, c->n, c->hq, hd, width, 0, d[k].out);
            heads_view(&tk, c->dt, c->n, c->hkv, hd, width, c->hq * hd, d[k].out);
            heads_view(&tv, c->dt, c->n, c->hkv, hd, width, (c->hq + c->hkv) * hd, d[k].out);
        }
        if (c->split) /* the same random q/k/v rows for both runs */
            dput(d[k].q, qkv, ob);
        struct zl_kv_cache cache = {.base = d[k].pool, .block_stride = stride, .block_size = BS,
                                    .n_layers = LAYERS, .n_kv_heads = (int32_t)c->hkv,
                                    .head_dim = (int32_t)hd, .dtype = c->dt};
        const struct zl_rope_kv r = {&tq, &tk, &tv, &tp, &rp, &cache, LAYER, &batch};
        const struct zl_tensor *bias = c->bias ? &tb : NULL;
        if (k == 0)
            ok = ct_ok(be->linear_rope_kv(bctx, &to, &tx, &tw, bias, &f, &r), what);
        else
            ok = ct_ok(be->linear_fused(bctx, &to, &tx, &tw, bias, &f), what) &&
                 ct_ok(be->rope_kv_write(bctx, &tq, &tk, &tv, &tp, &rp, &cache, LAYER, &batch), what);
        ok = ok && ct_sync(what);
    }
    if (ok) {
        char *a = xmalloc(ob), *b = xmalloc(ob), *pa = xmalloc(pool_bytes), *pb = xmalloc(pool_bytes);
        dget(a, d[0].out, ob);
        dget(b, d[1].out, ob);
        dget(pa, d[0].pool, pool_bytes);
        dget(pb, d[1].pool, pool_bytes);
        int same_out = !memcmp(a, b, ob), same_pool = !memcmp(pa, pb, pool_bytes);
        if (c->split) { /* the views: the rotated q there */
            dget(a, d[0].q, ob);
            dget(b, d[1].q, ob);
            same_out &= !memcmp(a, b, ob);
        }
        ct_result(same_out && same_pool, "%s == linear_fused + rope_kv_write: out %s, cache %s",
                  what, same_out ? "identical" : "DIFFERS", same_pool ? "identical" : "DIFFERS");
        free(a), free(b), free(pa), free(pb);
        if (!c->bias && !c->split && c->n <= 8) {
            double *acc = xmalloc((size_t)(c->n * width) * sizeof *acc),
                   *err = xmalloc((size_t)(c->n * width) * sizeof *err);
            product_ref(c, x, w, nw, acc, err);
            check_ref(c, what, acc, err, pos, slot, inv, &d[0], pool_bytes);
            free(acc), free(err);
        }
    }
    for (int k = 0; k < 2; k++) {
        dfree(d[k].out);
        dfree(d[k].pool);
        if (d[k].q)
            dfree(d[k].q);
    }
    dfree(dx), dfree(dw), dfree(dnw), dfree(db), dfree(dtx), dfree(dpos);
    free(xr), free(wr), free(nwr), free(br), free(qkv), free(x), free(w), free(nw);
    free(pos), free(table), free(slot), free(perm), free(inv);
}

/* Arguments the op must refuse with ZL_EINVAL before touching memory. */
static void bad_args(void)
{
    void *d = dmalloc(64 * 64 * 2);
    struct zl_tensor out, x, w, nw;
    tensor(&out, ZL_DTYPE_BF16, 2, (int64_t[]){1, 32}, d);
    tensor(&x, ZL_DTYPE_BF16, 2, (int64_t[]){1, 32}, d);
    tensor(&w, ZL_DTYPE_BF16, 2, (int64_t[]){32, 32}, d);
    tensor(&nw, ZL_DTYPE_F32, 1, (int64_t[]){32}, d);
    const struct zl_rope_kv r = {0};
    struct zl_linear_fuse swi = {.norm = &nw, .eps = EPS, .swiglu = 1};
    int rc = be->linear_rope_kv(bctx, &out, &x, &w, NULL, &swi, &r);
    ct_result(rc == ZL_EINVAL, "linear_rope_kv with swiglu refused: %s", zl_last_error());
    struct zl_linear_fuse res = {.residual = &out};
    rc = be->linear_rope_kv(bctx, &out, &x, &w, NULL, &res, &r);
    ct_result(rc == ZL_EINVAL, "linear_rope_kv with a residual refused: %s", zl_last_error());
    struct zl_linear_fuse nf = {.norm = &nw, .eps = EPS};
    rc = be->linear_rope_kv(bctx, &out, &x, &w, NULL, &nf, NULL);
    ct_result(rc == ZL_EINVAL, "linear_rope_kv without rope arguments refused: %s",
              zl_last_error());
    dfree(d);
}

int main(void)
{
    int rc = ct_setup("linear_rope_kv");
    if (rc)
        return rc;
    if (!ZL_BACKEND_HAS(be, linear_rope_kv) || !be->linear_rope_kv)
        return ct_skip("this backend has no linear_rope_kv (the model runs the separate ops)");
    static const enum zl_dtype dts[2] = {ZL_DTYPE_BF16, ZL_DTYPE_F16};
    static const int ns[4] = {1, 3, 8, 9};
    /* hq, hkv, hd, k */
    static const int64_t shapes[3][4] = {{32, 8, 128, 4096}, {4, 2, 64, 136}, {3, 1, 48, 72}};
    for (int s = 0; s < 3; s++)
        for (int dt = 0; dt < 2; dt++)
            for (int i = 0; i < 4; i++) {
                if (s == 0 && dt == 1 && ns[i] != 8)
                    continue; /* the big shape in f16 once: its reference is slow */
                struct qcase c = {dts[dt], ns[i], shapes[s][0], shapes[s][1], shapes[s][2],
                                  shapes[s][3], (s + i) % 2 ? 0.8f : 1.0f, 0, 0};
                run_case(&c);
            }
    for (int i = 0; i < 2; i++) { /* the unfused paths at n = 3 */
        struct qcase c = {ZL_DTYPE_BF16, 3, 4, 2, 64, 136, 1.0f, i == 0, i == 1};
        run_case(&c);
    }
    bad_args();
    return ct_finish();
}
