/* The row-local ops of a backend (embedding, rms_norm, rope, silu_mul, add,
 * copy) against float64 references on fresh random inputs, in every
 * activation dtype, with odd sizes and strided views; plus argument errors.
 *
 * Tolerances (u_T = unit roundoff of the output dtype: 2^-24 f32, 2^-11
 * f16, 2^-8 bf16; u = 2^-24 for the f32 arithmetic inside the kernels).
 * References are computed on the very inputs the backend reads (already
 * rounded to their dtype), so only the backend's own arithmetic and its
 * final rounding count:
 *   embedding, copy    exact: a conversion rounds once, as the reference.
 *   add                u_T |ref|: one f32 add (exact for f16/bf16 inputs),
 *                      one rounding.
 *   silu_mul           (u_T + 16 u) |ref|: expf (2 ulp), add, divide, multiply.
 *   rms_norm           (u_T + (d/256 + 16) u) |ref|: sum of squares of d
 *                      terms, d/256 per thread then a 256-way tree, or 8
 *                      per thread then a d/8-way tree on 16-byte rows (the CPU
 *                      sums in double), rsqrt (2 ulp), two products.  The
 *                      updated residual is exact: f32 sum, one rounding.
 *   rope               u_T |ref| + 8 u af (|x1| + |x2|): sincosf of the same
 *                      f32 angle (2 ulp, |cos|, |sin| <= 1), the af product
 *                      and a two-term f32 sum.  Untouched elements exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define U32 0x1p-24

/* Host buffer of n doubles. */
static double *dnum(size_t n)
{
    return xmalloc(n * sizeof(double));
}

/* ---- embedding ---- */

static void embedding_case(enum zl_dtype out_dt, enum zl_dtype tab_dt, int64_t vocab, int64_t d,
                           int64_t n)
{
    double *tv;
    void *tab = rand_raw(tab_dt, (size_t)(vocab * d), -2, 2, &tv);
    int32_t *ids = xmalloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++)
        ids[i] = i == 0 ? 0 : i == 1 ? (int32_t)vocab - 1 : rng_int(0, (int)vocab - 1);
    void *dtab = dnew(tab, (size_t)(vocab * d) * esize(tab_dt));
    void *dids = dnew(ids, (size_t)n * sizeof *ids);
    size_t ob = (size_t)(n * d) * esize(out_dt);
    void *dout = dmalloc(ob);
    dpoison(dout, ob);
    struct zl_tensor to, tt, ti;
    tensor(&to, out_dt, 2, (int64_t[]){n, d}, dout);
    tensor(&tt, tab_dt, 2, (int64_t[]){vocab, d}, dtab);
    tensor(&ti, ZL_DTYPE_I32, 1, (int64_t[]){n}, dids);
    char what[128];
    snprintf(what, sizeof what, "embedding %s<-%s [%lld of %lld, %lld]", zl_dtype_name(out_dt),
             zl_dtype_name(tab_dt), (long long)n, (long long)vocab, (long long)d);
    if (ct_ok(be->embedding(bctx, &to, &tt, &ti), what) && ct_sync(what)) {
        double *ref = dnum((size_t)(n * d));
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < d; c++)
                ref[i * d + c] = round_dt(out_dt, tv[ids[i] * d + c]);
        ct_check_dev(what, dout, out_dt, ref, NULL, (size_t)(n * d));
        free(ref);
    }
    /* an id past the table: ZL_ERANGE from the op (CPU) or at sync (device) */
    ids[n / 2] = (int32_t)vocab;
    dput(dids, ids, (size_t)n * sizeof *ids);
    int rc = be->embedding(bctx, &to, &tt, &ti);
    if (rc == ZL_OK)
        rc = be->sync(bctx);
    int again = be->sync(bctx);
    ct_result(rc == ZL_ERANGE && strstr(zl_last_error(), "id") && again == ZL_OK,
              "%s: id %lld out of range gives ZL_ERANGE (rc %d, then sync %d: %s)", what,
              (long long)vocab, rc, again, zl_last_error());
    dfree(dtab);
    dfree(dids);
    dfree(dout);
    free(tab);
    free(tv);
    free(ids);
}

/* ---- rms_norm ---- */

static void rms_norm_case(enum zl_dtype dt, enum zl_dtype w_dt, int64_t n, int64_t d, int with_res,
                          int alias)
{
    size_t nd = (size_t)(n * d), bytes = nd * esize(dt);
    double *xv, *rv = NULL, *wv;
    void *x = rand_raw(dt, nd, -3, 3, &xv);
    void *res = with_res ? rand_raw(dt, nd, -3, 3, &rv) : NULL;
    void *w = rand_raw(w_dt, (size_t)d, -1.5, 1.5, &wv);
    void *dx = dnew(x, bytes), *dw = dnew(w, (size_t)d * esize(w_dt));
    void *dres = res ? dnew(res, bytes) : NULL;
    void *dout = alias ? dx : dmalloc(bytes);
    if (!alias)
        dpoison(dout, bytes);
    const float eps = 1e-5f;
    struct zl_tensor to, tx, tr, tw;
    tensor(&tx, dt, 2, (int64_t[]){n, d}, dx);
    tensor(&to, dt, 2, (int64_t[]){n, d}, dout);
    tensor(&tw, w_dt, 1, (int64_t[]){d}, dw);
    if (res)
        tensor(&tr, dt, 2, (int64_t[]){n, d}, dres);
    char what[160];
    snprintf(what, sizeof what, "rms_norm %s w %s [%lld, %lld]%s%s", zl_dtype_name(dt),
             zl_dtype_name(w_dt), (long long)n, (long long)d, with_res ? " +residual" : "",
             alias ? " out=x" : "");
    if (ct_ok(be->rms_norm(bctx, &to, &tx, res ? &tr : NULL, &tw, eps), what) && ct_sync(what)) {
        double *src = dnum(nd), *ref = dnum(nd), *tol = dnum(nd);
        for (size_t i = 0; i < nd; i++)
            src[i] = res ? round_dt(dt, (double)(float)(xv[i] + rv[i])) : xv[i];
        for (int64_t r = 0; r < n; r++) {
            double ss = 0;
            for (int64_t c = 0; c < d; c++)
                ss += src[r * d + c] * src[r * d + c];
            double scale = 1 / sqrt(ss / (double)d + eps);
            for (int64_t c = 0; c < d; c++) {
                double v = src[r * d + c] * scale * wv[c];
                ref[r * d + c] = v;
                tol[r * d + c] = fabs(v) * (ulp_half(dt) + ((double)d / 256 + 16) * U32);
            }
        }
        ct_check_dev(what, dout, dt, ref, tol, nd);
        if (res) {
            char w2[200];
            snprintf(w2, sizeof w2, "%s: residual", what);
            ct_check_dev(w2, dres, dt, src, NULL, nd);
        }
        free(src);
        free(ref);
        free(tol);
    }
    if (!alias)
        dfree(dout);
    dfree(dx);
    dfree(dw);
    dfree(dres);
    free(x);
    free(res);
    free(w);
    free(xv);
    free(rv);
    free(wv);
}

/* ---- rope ---- */

static void rope_rotate_ref(double *row, const float *inv, int half, float p, double af,
                            double *tol, enum zl_dtype dt)
{
    for (int j = 0; j < half; j++) {
        float th = p * inv[j];              /* the f32 angle, as HF and the backends form it */
        double c = cos((double)th) * af, s = sin((double)th) * af;
        double x1 = row[j], x2 = row[j + half];
        row[j] = x1 * c - x2 * s;
        row[j + half] = x2 * c + x1 * s;
        double e = 8 * U32 * af * (fabs(x1) + fabs(x2));
        tol[j] = ulp_half(dt) * fabs(row[j]) + e;
        tol[j + half] = ulp_half(dt) * fabs(row[j + half]) + e;
    }
}

static void rope_case(enum zl_dtype dt, int64_t n, int64_t hq, int64_t hkv, int64_t hd, int rot,
                      float af, int with_k)
{
    int64_t width = (hq + 2 * hkv) * hd + 3; /* fused qkv rows plus a pad */
    size_t nw = (size_t)(n * width), bytes = nw * esize(dt);
    double *v;
    void *h = rand_raw(dt, nw, -2, 2, &v);
    void *d = dnew(h, bytes);
    int32_t *pos = xmalloc((size_t)n * sizeof *pos);
    for (int64_t i = 0; i < n; i++)
        pos[i] = i == 0 ? 0 : i == 1 ? 131071 : rng_int(0, 40000);
    void *dpos = dnew(pos, (size_t)n * sizeof *pos);
    int half = rot / 2;
    float *inv = xmalloc((size_t)half * sizeof *inv);
    for (int j = 0; j < half; j++)
        inv[j] = (float)pow(500000.0, -2.0 * j / rot);
    struct zl_tensor tq, tk, tp;
    heads_view(&tq, dt, n, hq, hd, width, 0, d);
    heads_view(&tk, dt, n, hkv, hd, width, hq * hd, d);
    tensor(&tp, ZL_DTYPE_I32, 1, (int64_t[]){n}, dpos);
    struct zl_rope rp = {.rot_dim = rot, .inv_freq = inv, .attn_factor = af};
    char what[160];
    snprintf(what, sizeof what, "rope %s [%lld, %lld+%lld, %lld] rot %d af %.2f%s",
             zl_dtype_name(dt), (long long)n, (long long)hq, (long long)hkv, (long long)hd, rot,
             (double)af, with_k ? "" : " (q only)");
    if (ct_ok(be->rope(bctx, &tq, with_k ? &tk : NULL, &tp, &rp), what) && ct_sync(what)) {
        double *ref = dnum(nw), *tol = dnum(nw);
        memcpy(ref, v, nw * sizeof *ref);
        memset(tol, 0, nw * sizeof *tol); /* what is not rotated stays bit-exact */
        for (int64_t i = 0; i < n; i++)
            for (int64_t hh = 0; hh < hq + (with_k ? hkv : 0); hh++) {
                size_t off = (size_t)(i * width + hh * hd);
                rope_rotate_ref(ref + off, inv, half, (float)pos[i], af, tol + off, dt);
            }
        ct_check_dev(what, d, dt, ref, tol, nw);
        free(ref);
        free(tol);
    }
    dfree(d);
    dfree(dpos);
    free(h);
    free(v);
    free(pos);
    free(inv);
}

/* ---- rope_kv_write: the fused op against rope then kv_write ----
 * Both paths run on fresh copies of one random QKV buffer into two poisoned
 * pools; q and every byte of the pools must come out identical (the fused
 * kernel rounds k through the activation dtype, as the pair does). */
static void rope_kv_case(enum zl_dtype dt, enum zl_dtype cdt, int64_t n, int64_t hq, int64_t hkv,
                         int64_t hd, int rot)
{
    char what[160];
    snprintf(what, sizeof what, "rope_kv_write %s -> cache %s, %lld tokens, hq %lld hkv %lld hd %lld "
             "rot %d", zl_dtype_name(dt), zl_dtype_name(cdt), (long long)n, (long long)hq,
             (long long)hkv, (long long)hd, rot);
    if (!ZL_BACKEND_HAS(be, rope_kv_write) || !be->rope_kv_write) {
        ct_result(ct_is_cpu(), "%s: the backend has no fused op", what);
        return;
    }
    const int32_t bs = 16, layers = 2, layer = 1;
    int32_t nblk = (int32_t)((n + bs - 1) / bs) + 3;
    int64_t width = (hq + 2 * hkv) * hd;
    size_t nw = (size_t)(n * width), bytes = nw * esize(dt);
    size_t stride = (size_t)layers * 2 * (size_t)bs * (size_t)(hkv * hd) * esize(cdt);
    void *h = rand_raw(dt, nw, -2, 2, NULL);
    void *d[2] = {dnew(h, bytes), dnew(h, bytes)}, *pool[2] = {dmalloc(stride * (size_t)nblk),
                                                              dmalloc(stride * (size_t)nblk)};
    int32_t *pos = xmalloc((size_t)n * sizeof *pos), *table = xmalloc((size_t)nblk * sizeof *table);
    int32_t *slot = xmalloc((size_t)n * sizeof *slot);
    for (int32_t b = 0; b < nblk; b++)
        table[b] = b;
    for (int32_t b = nblk - 1; b > 0; b--) {   /* a shuffled block table */
        int32_t j = rng_int(0, b), t = table[b];
        table[b] = table[j];
        table[j] = t;
    }
    for (int64_t i = 0; i < n; i++) {
        pos[i] = (int32_t)i + 7;
        slot[i] = table[i / bs] * bs + (int32_t)(i % bs);
    }
    int32_t qs[2] = {0, (int32_t)n}, kvl[1] = {(int32_t)n};
    struct zl_attn_batch batch = {.n_seqs = 1, .max_blocks = nblk, .q_start = qs, .kv_len = kvl,
                                  .block_table = table, .slot = slot};
    void *dpos = dnew(pos, (size_t)n * sizeof *pos);
    float *inv = xmalloc((size_t)(rot / 2) * sizeof *inv);
    for (int j = 0; j < rot / 2; j++)
        inv[j] = (float)pow(500000.0, -2.0 * j / rot);
    struct zl_rope rp = {.rot_dim = rot, .inv_freq = inv, .attn_factor = 1.0f};
    struct zl_tensor tp;
    tensor(&tp, ZL_DTYPE_I32, 1, (int64_t[]){n}, dpos);
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
        struct zl_tensor tq, tk, tv;
        heads_view(&tq, dt, n, hq, hd, width, 0, d[k]);
        heads_view(&tk, dt, n, hkv, hd, width, hq * hd, d[k]);
        heads_view(&tv, dt, n, hkv, hd, width, (hq + hkv) * hd, d[k]);
        struct zl_kv_cache cache = {.base = pool[k], .block_stride = stride, .block_size = bs,
                                    .n_layers = layers, .n_kv_heads = (int32_t)hkv,
                                    .head_dim = (int32_t)hd, .dtype = cdt};
        dpoison(pool[k], stride * (size_t)nblk);
        if (k == 0)
            ok = ct_ok(be->rope(bctx, &tq, &tk, &tp, &rp), what) &&
                 ct_ok(be->kv_write(bctx, &cache, layer, &tk, &tv, &batch), what);
        else
            ok = ct_ok(be->rope_kv_write(bctx, &tq, &tk, &tv, &tp, &rp, &cache, layer, &batch), what);
        ok = ok && ct_sync(what);
    }
    if (ok) {
        size_t pb = stride * (size_t)nblk;
        char *a = xmalloc(bytes), *b = xmalloc(bytes), *pa = xmalloc(pb), *pbuf = xmalloc(pb);
        dget(a, d[0], bytes);
        dget(b, d[1], bytes);
        dget(pa, pool[0], pb);
        dget(pbuf, pool[1], pb);
        size_t qbytes = (size_t)(hq * hd) * esize(dt), row = (size_t)width * esize(dt);
        int q_same = 1;
        for (int64_t i = 0; i < n; i++)
            q_same &= memcmp(a + (size_t)i * row, b + (size_t)i * row, qbytes) == 0;
        ct_result(q_same && memcmp(pa, pbuf, pb) == 0, "%s: q %s, cache %s", what,
                  q_same ? "identical" : "DIFFERS", memcmp(pa, pbuf, pb) ? "DIFFERS" : "identical");
        free(a);
        free(b);
        free(pa);
        free(pbuf);
    }
    for (int k = 0; k < 2; k++) {
        dfree(d[k]);
        dfree(pool[k]);
    }
    dfree(dpos);
    free(h);
    free(pos);
    free(table);
    free(slot);
    free(inv);
}

/* ---- silu_mul, add ---- */

enum ew { EW_SILU, EW_ADD };

static void elementwise_case(enum ew kind, enum zl_dtype dt, int64_t n, int64_t f, int in_place,
                             int64_t pad)
{
    /* a and b are views into one fused [n, 2f + pad] buffer (gate | up | pad);
     * pad 1 misaligns the rows (the one-block-per-row kernel), f and pad
     * multiples of 8 keep them 16-byte aligned (the 16-byte chunk kernel) */
    int64_t width = 2 * f + pad;
    size_t nw = (size_t)(n * width), nf = (size_t)(n * f), es = esize(dt);
    double *v;
    void *h = rand_raw(dt, nw, -6, 6, &v);
    void *d = dnew(h, nw * es);
    void *dout = in_place ? d : dmalloc(nf * es);
    if (!in_place)
        dpoison(dout, nf * es);
    struct zl_tensor ta, tb, to;
    view2(&ta, dt, n, f, width, 0, d);
    view2(&tb, dt, n, f, width, f, d);
    if (in_place)
        to = ta;
    else
        tensor(&to, dt, 2, (int64_t[]){n, f}, dout);
    char what[128];
    snprintf(what, sizeof what, "%s %s [%lld, %lld] row %lld%s", kind == EW_SILU ? "silu_mul" : "add",
             zl_dtype_name(dt), (long long)n, (long long)f, (long long)width,
             in_place ? " out=a" : "");
    int rc = kind == EW_SILU ? be->silu_mul(bctx, &to, &ta, &tb) : be->add(bctx, &to, &ta, &tb);
    if (ct_ok(rc, what) && ct_sync(what)) {
        double *ref = dnum(nf), *tol = dnum(nf);
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < f; c++) {
                double a = v[i * width + c], b = v[i * width + f + c];
                double r = kind == EW_SILU ? a / (1 + exp(-a)) * b : a + b;
                ref[i * f + c] = r;
                tol[i * f + c] = fabs(r) * (ulp_half(dt) + (kind == EW_SILU ? 16 * U32 : 0));
            }
        void *got = xmalloc(nw * es);
        if (in_place) {     /* read the out view back out of the fused rows */
            dget(got, d, nw * es);
            for (int64_t i = 0; i < n; i++)
                memmove((char *)got + (size_t)(i * f) * es, (char *)got + (size_t)(i * width) * es,
                        (size_t)f * es);
        } else {
            dget(got, dout, nf * es);
        }
        ct_check(what, got, dt, ref, tol, nf);
        free(got);
        free(ref);
        free(tol);
    }
    if (!in_place)
        dfree(dout);
    dfree(d);
    free(h);
    free(v);
}

/* ---- copy ---- */

static void copy_case(enum zl_dtype dst_dt, enum zl_dtype src_dt, int64_t n, int64_t d)
{
    int64_t width = d + 5;
    size_t nw = (size_t)(n * width), nd = (size_t)(n * d);
    double *v;
    void *h = rand_raw(src_dt, nw, -1000, 1000, &v);
    void *ds = dnew(h, nw * esize(src_dt));
    void *dd = dmalloc(nd * esize(dst_dt));
    dpoison(dd, nd * esize(dst_dt));
    struct zl_tensor ts, td;
    view2(&ts, src_dt, n, d, width, 3, ds);
    tensor(&td, dst_dt, 2, (int64_t[]){n, d}, dd);
    char what[128];
    snprintf(what, sizeof what, "copy %s<-%s [%lld, %lld] from strided rows", zl_dtype_name(dst_dt),
             zl_dtype_name(src_dt), (long long)n, (long long)d);
    if (ct_ok(be->copy(bctx, &td, &ts), what) && ct_sync(what)) {
        double *ref = dnum(nd);
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < d; c++)
                ref[i * d + c] = round_dt(dst_dt, v[i * width + 3 + c]);
        ct_check_dev(what, dd, dst_dt, ref, NULL, nd);
        free(ref);
    }
    dfree(ds);
    dfree(dd);
    free(h);
    free(v);
}

/* ---- argument errors: rejected on the host, nothing queued ---- */

static void expect_rc(int rc, int want, const char *needle, const char *what)
{
    ct_result(rc == want && strstr(zl_last_error(), needle) != NULL, "error %s: rc %d want %d, "
              "\"%s\" (needs \"%s\")", what, rc, want, zl_last_error(), needle);
}

/* upload (API minor 8): queued in order with the ops and never waited
 * for, so the host array may change as soon as it returns.  A first
 * upload, a copy op that reads it, a second upload over the same bytes,
 * then more uploads than there are staging slots: the copy must see the
 * first bytes, the buffer the second, every later one its own. */
static void upload_case(void)
{
    enum { N = 1024, MORE = 40 };
    if (!ZL_BACKEND_HAS(be, upload) || !be->upload) {
        ct_result(0, "upload: the CUDA backend has no upload op");
        return;
    }
    float *h = xmalloc(sizeof(float) * N * (MORE + 2)), *got = xmalloc(sizeof(float) * N);
    void *da = dmalloc(sizeof(float) * N), *db = dmalloc(sizeof(float) * N);
    void *dm = dmalloc(sizeof(float) * N * MORE);
    dpoison(db, sizeof(float) * N);
    struct zl_tensor ta, tb;
    tensor(&ta, ZL_DTYPE_F32, 2, (int64_t[]){1, N}, da);
    tensor(&tb, ZL_DTYPE_F32, 2, (int64_t[]){1, N}, db);
    for (int i = 0; i < N; i++)
        h[i] = (float)i;
    int ok = ct_ok(be->upload(bctx, da, h, sizeof(float) * N), "upload first");
    for (int i = 0; i < N; i++)
        h[i] = -1.0f;                   /* the call has returned: its bytes are taken */
    ok = ok && ct_ok(be->copy(bctx, &tb, &ta), "upload: copy op after it");
    for (int i = 0; i < N; i++)
        h[N + i] = (float)(2 * i + 1);
    ok = ok && ct_ok(be->upload(bctx, da, h + N, sizeof(float) * N), "upload second");
    for (int k = 0; ok && k < MORE; k++) {
        for (int i = 0; i < N; i++)
            h[2 * N + i] = (float)(k * N + i);
        ok = ct_ok(be->upload(bctx, (float *)dm + (size_t)k * N, h + 2 * N, sizeof(float) * N),
                   "upload, many");
    }
    int bad_copy = 0, bad_second = 0, bad_more = 0;
    if (ok && ct_sync("upload")) {
        dget(got, db, sizeof(float) * N);
        for (int i = 0; i < N; i++)
            bad_copy += got[i] != (float)i;
        dget(got, da, sizeof(float) * N);
        for (int i = 0; i < N; i++)
            bad_second += got[i] != (float)(2 * i + 1);
        for (int k = 0; k < MORE; k++) {
            dget(got, (float *)dm + (size_t)k * N, sizeof(float) * N);
            for (int i = 0; i < N; i++)
                bad_more += got[i] != (float)(k * N + i);
        }
        ct_result(bad_copy + bad_second + bad_more == 0, "upload: in order with the ops, the "
                  "host array free on return: %d / %d / %d wrong values (the copy op's input, "
                  "the second upload, %d more)", bad_copy, bad_second, bad_more, MORE);
    }
    expect_rc(be->upload(bctx, NULL, h, 4), ZL_EINVAL, "cuda upload", "upload to NULL");
    dfree(da);
    dfree(db);
    dfree(dm);
    free(h);
    free(got);
}

static void error_cases(void)
{
    enum zl_dtype dt = ZL_DTYPE_F32;
    void *buf = dmalloc(64 * 64 * 4);
    struct zl_tensor a, b, o, w;
    tensor(&a, dt, 2, (int64_t[]){4, 8}, buf);
    tensor(&b, dt, 2, (int64_t[]){4, 9}, buf);
    tensor(&o, dt, 2, (int64_t[]){4, 8}, (char *)buf + 4096);
    expect_rc(be->add(bctx, &o, &a, &b), ZL_EINVAL, "add", "add shape mismatch");
    tensor(&w, dt, 1, (int64_t[]){7}, buf);
    expect_rc(be->rms_norm(bctx, &o, &a, NULL, &w, 1e-5f), ZL_EINVAL, "weight",
              "rms_norm weight size");
    struct zl_tensor w8;
    tensor(&w8, dt, 1, (int64_t[]){8}, buf);
    expect_rc(be->rms_norm(bctx, &o, &a, NULL, &w8, NAN), ZL_EINVAL, "eps", "rms_norm NaN eps");
    tensor(&w, dt, 2, (int64_t[]){5, 9}, buf);
    expect_rc(be->linear(bctx, &o, &a, &w, NULL), ZL_EINVAL, "linear", "linear inner size");
    if (!ct_is_cpu()) {
        struct zl_tensor host = a;
        host.device = ZL_TENSOR_HOST;
        expect_rc(be->add(bctx, &o, &host, &a), ZL_EINVAL, "device", "add host tensor");
        tensor(&b, ZL_DTYPE_BF16, 2, (int64_t[]){4, 8}, buf);
        expect_rc(be->add(bctx, &o, &a, &b), ZL_EINVAL, "dtype", "add mixed activation dtypes");
    }
    be->sync(bctx);
    dfree(buf);
}

/* Bad lengths, block ids and slots refused, also when the same arrays come
 * back changed in place (the backend checks a batch once and remembers
 * its bytes): every call after a change must check again, a refused batch
 * stays refused, and the same bytes under a smaller block size are checked
 * anew. */
static void batch_error_cases(void)
{
    enum zl_dtype dt = ZL_DTYPE_F32;
    const int32_t bs = 16, hd = 64, nblk = 4;
    size_t stride = (size_t)2 * 2 * (size_t)bs * (size_t)hd * 4; /* 2 layers, 1 kv head */
    void *pool = dmalloc(stride * (size_t)nblk), *buf = dmalloc(2 * (size_t)hd * 4 * 4);
    dpoison(pool, stride * (size_t)nblk);
    struct zl_kv_cache cache = {.base = pool, .block_stride = stride, .block_size = bs,
                                .n_layers = 2, .n_kv_heads = 1, .head_dim = hd, .dtype = dt};
    int32_t qs[3] = {0, 1, 2}, kvl[2] = {5, 20}, table[4] = {3, -1, 0, 2}, slot[2] = {3 * bs + 4, 2 * bs + 3};
    struct zl_attn_batch b = {.n_seqs = 2, .max_blocks = 2, .q_start = qs, .kv_len = kvl,
                              .block_table = table, .slot = slot};
    struct zl_tensor k, v, q, o;
    tensor(&k, dt, 3, (int64_t[]){2, 1, hd}, buf);
    tensor(&v, dt, 3, (int64_t[]){2, 1, hd}, (char *)buf + 2 * hd * 4);
    tensor(&q, dt, 3, (int64_t[]){2, 1, hd}, (char *)buf + 4 * hd * 4);
    tensor(&o, dt, 3, (int64_t[]){2, 1, hd}, (char *)buf + 6 * hd * 4);
    float sc = 0.125f;
    /* kv_write fills the new rows; the others stay NaN, but attention of an
     * unchecked batch is what this is about, not its values */
    ct_ok(be->kv_write(bctx, &cache, 1, &k, &v, &b), "batch errors: kv_write");
    ct_ok(be->attention(bctx, &o, &q, &cache, 1, &b, sc), "batch errors: attention");
    table[3] = -1;
    expect_rc(be->attention(bctx, &o, &q, &cache, 1, &b, sc), ZL_EINVAL, "block 1 has id -1",
              "a block id turned negative in place");
    expect_rc(be->attention(bctx, &o, &q, &cache, 1, &b, sc), ZL_EINVAL, "block 1 has id -1",
              "the same bad batch again");
    table[3] = 2;
    ct_ok(be->attention(bctx, &o, &q, &cache, 1, &b, sc), "batch errors: the id restored");
    slot[1] = -7;
    expect_rc(be->kv_write(bctx, &cache, 1, &k, &v, &b), ZL_EINVAL, "has slot -7",
              "a slot turned negative in place");
    slot[1] = 2 * bs + 3;
    kvl[0] = 2 * bs + 1;
    expect_rc(be->attention(bctx, &o, &q, &cache, 1, &b, sc), ZL_EINVAL, "kv_len 33",
              "kv_len past the table in place");
    kvl[0] = 5;
    ct_ok(be->attention(bctx, &o, &q, &cache, 1, &b, sc), "batch errors: kv_len restored");
    struct zl_kv_cache small = cache;
    small.block_size = 8; /* the same bytes: kv_len 20 no longer fits 2 blocks */
    expect_rc(be->attention(bctx, &o, &q, &small, 1, &b, sc), ZL_EINVAL, "kv_len 20",
              "the same batch under a smaller block size");
    be->sync(bctx);
    dfree(pool);
    dfree(buf);
}

int main(void)
{
    int rc = ct_setup("ops");
    if (rc)
        return rc;
    static const enum zl_dtype tabs[] = {ZL_DTYPE_F32, ZL_DTYPE_BF16, ZL_DTYPE_F16};
    for (int a = 0; a < ct_n_act(); a++) {
        enum zl_dtype dt = ct_act(a);
        for (int t = 0; t < 3; t++)
            embedding_case(dt, tabs[t], 1001, 4097, 37);
        rms_norm_case(dt, ZL_DTYPE_BF16, 1, 4096, 1, 0);
        rms_norm_case(dt, ZL_DTYPE_F32, 7, 1001, 0, 0);
        rms_norm_case(dt, dt, 33, 5120, 1, 1);
        rms_norm_case(dt, ZL_DTYPE_BF16, 3, 16384, 0, 1);
        rms_norm_case(dt, ZL_DTYPE_F32, 32, 8192, 1, 0);
        rope_case(dt, 19, 32, 8, 128, 128, 1.0f, 1);
        rope_case(dt, 5, 6, 2, 96, 64, 1.25f, 1);      /* partial rotary, yarn-like factor */
        rope_case(dt, 3, 4, 4, 64, 64, 1.0f, 0);
        rope_kv_case(dt, dt, 37, 32, 8, 128, 128);
        rope_kv_case(dt, ZL_DTYPE_BF16, 5, 6, 2, 96, 64);   /* partial rotary, converted cache */
        rope_kv_case(dt, dt, 1, 8, 1, 64, 64);
        elementwise_case(EW_SILU, dt, 19, 1001, 0, 1);
        elementwise_case(EW_SILU, dt, 2, 14336, 1, 1);
        elementwise_case(EW_SILU, dt, 32, 14336, 0, 0);
        elementwise_case(EW_SILU, dt, 5, 1000, 1, 8);
        elementwise_case(EW_ADD, dt, 13, 4099, 0, 1);
        elementwise_case(EW_ADD, dt, 1, 4096, 1, 1);
        elementwise_case(EW_ADD, dt, 32, 4096, 1, 0);
        elementwise_case(EW_ADD, dt, 3, 1000, 0, 8);
        for (int t = 0; t < 3; t++)
            copy_case(dt, tabs[t], 9, 1003);
    }
    upload_case();
    error_cases();
    batch_error_cases();
    return ct_finish();
}
