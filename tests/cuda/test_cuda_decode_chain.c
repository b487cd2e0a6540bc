/* decoder_layers (backend.h, API minor 7): every layer of a one-token step
 * of one sequence in one call, against the model's per-layer ops on the
 * same inputs (linear_rope_kv, attention, linear_fused with the residual,
 * linear_fused with the norm and SwiGLU, linear_fused with the residual;
 * test_cuda_qkv_rope, test_cuda_fused and test_cuda_decode check those
 * against float64).
 *
 * Tolerance: both paths round at the same points with the same formulas;
 * only f32 summation orders differ (the dot products, the norm's sum of
 * squares, the softmax).  Those move a rounded intermediate by at most one
 * unit of T now and then, and the flips propagate through the following
 * products and the residual stream.  Per element of x and of each layer's
 * new K and V rows: |chain - ops| <= 8 u_T (|ops| + rms(ops)), u_T the
 * dtype's unit roundoff (2^-8 bf16, 2^-11 f16): a few flipped units carried
 * through every layer, where a wrong head, pairing, rotation, key or
 * softmax weight is off by the values' own size.  Cases: GQA groups 1 to
 * 8, head_dim 64 and 128, contexts from the first token (one key) to 2000
 * keys (32 splits), block sizes 16 and 32, bf16 and f16, one layer of
 * Llama-3.1-8B's shapes, down rows that fill a slot alone (the warps share
 * their columns), o tiles of an odd number of rows (a warp takes two rows,
 * the last one alone).  The cache must be untouched outside the new
 * token's rows, bit for bit.
 *
 * Run again inside a device-graph bracket: the recording pass must ask
 * for a direct rerun (the chain's launch depends on the step's data), and
 * that rerun must give the same results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define EPS 1e-5f

struct ccase {
    enum zl_dtype dt;
    int layers, d, f, nh, nkv, hd, ctx, bs;  /* ctx: keys before this token */
};

struct weights {
    void *wqkv, *wo, *wgu, *wdown, *an, *fn;    /* device */
    struct zl_tensor t[6];
};

static void *rand_dev(enum zl_dtype dt, size_t n, double lim)
{
    void *h = rand_raw(dt, n, -lim, lim, NULL);
    void *d = dnew(h, n * esize(dt));
    free(h);
    return d;
}

static void make_layer(const struct ccase *c, struct weights *w, struct zl_decoder_layer *l)
{
    const int64_t qd = (int64_t)c->nh * c->hd, rows = qd + 2 * (int64_t)c->nkv * c->hd;
    /* uniform +-sqrt(3 / cols): products of unit variance */
    w->wqkv = rand_dev(c->dt, (size_t)(rows * c->d), sqrt(3.0 / c->d));
    w->wo = rand_dev(c->dt, (size_t)(c->d * qd), sqrt(3.0 / (double)qd));
    w->wgu = rand_dev(c->dt, (size_t)(2 * (int64_t)c->f * c->d), sqrt(3.0 / c->d));
    w->wdown = rand_dev(c->dt, (size_t)((int64_t)c->d * c->f), sqrt(3.0 / c->f));
    void *an = rand_raw(ZL_DTYPE_F32, (size_t)c->d, 0.5, 1.5, NULL);
    void *fn = rand_raw(ZL_DTYPE_F32, (size_t)c->d, 0.5, 1.5, NULL);
    w->an = dnew(an, (size_t)c->d * 4);
    w->fn = dnew(fn, (size_t)c->d * 4);
    free(an), free(fn);
    tensor(&w->t[0], ZL_DTYPE_F32, 1, (int64_t[]){c->d}, w->an);
    tensor(&w->t[1], c->dt, 2, (int64_t[]){rows, c->d}, w->wqkv);
    tensor(&w->t[2], c->dt, 2, (int64_t[]){c->d, qd}, w->wo);
    tensor(&w->t[3], ZL_DTYPE_F32, 1, (int64_t[]){c->d}, w->fn);
    tensor(&w->t[4], c->dt, 2, (int64_t[]){2 * (int64_t)c->f, c->d}, w->wgu);
    tensor(&w->t[5], c->dt, 2, (int64_t[]){c->d, c->f}, w->wdown);
    *l = (struct zl_decoder_layer){&w->t[0], &w->t[1], &w->t[2], &w->t[3], &w->t[4], &w->t[5]};
}

/* One run's activations (device) and tensors over them. */
struct acts {
    void *x, *qkv, *att, *a, *h, *gu, *o;
    struct zl_tensor tx, tqkv, tatt, ta, th, tgu, to, q3, k3, v3, att3;
};

static void make_acts(const struct ccase *c, const void *x0, struct acts *r)
{
    const int64_t qd = (int64_t)c->nh * c->hd, kvd = (int64_t)c->nkv * c->hd, w = qd + 2 * kvd;
    const size_t es = esize(c->dt);
    r->x = dnew(x0, (size_t)c->d * es);
    r->qkv = dmalloc((size_t)w * es);
    r->att = dmalloc((size_t)qd * es);
    r->a = dmalloc((size_t)c->f * es);
    r->h = dmalloc((size_t)c->d * es);
    r->gu = dmalloc((size_t)2 * c->f * es);
    r->o = dmalloc((size_t)c->d * es);
    tensor(&r->tx, c->dt, 2, (int64_t[]){1, c->d}, r->x);
    tensor(&r->tqkv, c->dt, 2, (int64_t[]){1, w}, r->qkv);
    tensor(&r->tatt, c->dt, 2, (int64_t[]){1, qd}, r->att);
    tensor(&r->ta, c->dt, 2, (int64_t[]){1, c->f}, r->a);
    tensor(&r->th, c->dt, 2, (int64_t[]){1, c->d}, r->h);
    tensor(&r->tgu, c->dt, 2, (int64_t[]){1, 2 * (int64_t)c->f}, r->gu);
    tensor(&r->to, c->dt, 2, (int64_t[]){1, c->d}, r->o);
    heads_view(&r->q3, c->dt, 1, c->nh, c->hd, w, 0, r->qkv);
    heads_view(&r->k3, c->dt, 1, c->nkv, c->hd, w, qd, r->qkv);
    heads_view(&r->v3, c->dt, 1, c->nkv, c->hd, w, qd + kvd, r->qkv);
    heads_view(&r->att3, c->dt, 1, c->nh, c->hd, qd, 0, r->att);
}

static void free_acts(struct acts *r)
{
    dfree(r->x), dfree(r->qkv), dfree(r->att), dfree(r->a), dfree(r->h), dfree(r->gu);
    dfree(r->o);
}

/* The model's layer_fused, layer by layer. */
static int run_ops(const struct ccase *c, const struct zl_decoder_layer *ls, struct acts *r,
                   struct zl_kv_cache *cache, struct zl_tensor *pos, const struct zl_rope *rope,
                   const struct zl_attn_batch *b, float scale, const char *what)
{
    for (int il = 0; il < c->layers; il++) {
        const struct zl_decoder_layer *l = &ls[il];
        struct zl_linear_fuse f = {.norm = l->attn_norm, .eps = EPS, .tmp_x = &r->th};
        const struct zl_rope_kv rk = {&r->q3, &r->k3, &r->v3, pos, rope, cache, il, b};
        if (!ct_ok(be->linear_rope_kv(bctx, &r->tqkv, &r->tx, l->wqkv, NULL, &f, &rk), what) ||
            !ct_ok(be->attention(bctx, &r->att3, &r->q3, cache, il, b, scale), what))
            return 0;
        f = (struct zl_linear_fuse){.residual = &r->tx, .tmp_out = &r->to};
        if (!ct_ok(be->linear_fused(bctx, &r->tx, &r->tatt, l->wo, NULL, &f), what))
            return 0;
        f = (struct zl_linear_fuse){.norm = l->ffn_norm, .eps = EPS, .swiglu = 1, .tmp_x = &r->th,
                                    .tmp_out = &r->tgu};
        if (!ct_ok(be->linear_fused(bctx, &r->ta, &r->tx, l->w_gu, NULL, &f), what))
            return 0;
        f = (struct zl_linear_fuse){.residual = &r->tx, .tmp_out = &r->to};
        if (!ct_ok(be->linear_fused(bctx, &r->tx, &r->ta, l->w_down, NULL, &f), what))
            return 0;
    }
    return ct_sync(what);
}

/* got vs ref (n values of dt, host) within 8 u_T (|ref| + rms(ref)). */
static void compare(const char *what, enum zl_dtype dt, const void *got, const void *ref, size_t n)
{
    double *r = to_double(dt, ref, n), *tol = xmalloc(n * sizeof *tol), ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += r[i] * r[i];
    const double rms = sqrt(ss / (double)n);
    for (size_t i = 0; i < n; i++)
        tol[i] = 8 * ulp_half(dt) * (fabs(r[i]) + rms);
    ct_check(what, got, dt, r, tol, n);
    free(r), free(tol);
}

/* The chain inside a graph bracket: the recording pass must ask for a
 * direct rerun (nothing may sync inside the bracket; a recording pass
 * that queued the chain would run it twice over the same x, which the
 * comparison with the per-layer ops then catches); 1 when it went so. */
static int bracketed(const struct zl_decoder_stack *st, const char *what)
{
    if (!ct_ok(be->graph_begin(bctx), what))
        return 0;
    int rc = be->decoder_layers(bctx, st);
    int g = be->graph_end(bctx, rc == ZL_OK);
    int ok = rc == ZL_OK && g == ZL_GRAPH_AGAIN;
    ct_result(ok, "%s: the recording pass asks for a direct rerun (decoder_layers rc %d, "
              "graph_end rc %d)", what, rc, g);
    if (g == ZL_GRAPH_AGAIN) { /* the bracket is open until its rerun ends */
        rc = be->decoder_layers(bctx, st);
        g = be->graph_end(bctx, ok && rc == ZL_OK);
        ct_result(ok && rc == ZL_OK && g == ZL_OK, "%s: the direct rerun runs the chain "
                  "(decoder_layers rc %d, graph_end rc %d)", what, rc, g);
        ok = ok && rc == ZL_OK && g == ZL_OK;
    }
    return ok;
}

static void run_case(const struct ccase *c, int in_bracket)
{
    const int64_t kvd = (int64_t)c->nkv * c->hd;
    const size_t es = esize(c->dt);
    char what[200];
    snprintf(what, sizeof what, "decoder_layers %s %d layers d %d f %d heads %d/%d hd %d ctx %d bs %d%s",
             zl_dtype_name(c->dt), c->layers, c->d, c->f, c->nh, c->nkv, c->hd, c->ctx, c->bs,
             in_bracket ? " in a graph bracket" : "");

    struct weights *w = xmalloc((size_t)c->layers * sizeof *w);
    struct zl_decoder_layer *ls = xmalloc((size_t)c->layers * sizeof *ls);
    for (int i = 0; i < c->layers; i++)
        make_layer(c, &w[i], &ls[i]);
    int kv_len = c->ctx + 1, max_blocks, nblk;
    int32_t qs[2] = {0, 1}, *slot;
    int32_t *table = ct_paged_table(1, &kv_len, qs, c->bs, &max_blocks, &nblk, &slot);
    struct zl_attn_batch b = {.n_seqs = 1, .max_blocks = max_blocks, .q_start = qs,
                              .kv_len = &kv_len, .block_table = table, .slot = slot};
    const size_t stride = (size_t)c->layers * 2 * (size_t)c->bs * (size_t)kvd * es;
    const size_t pool_bytes = stride * (size_t)nblk;
    void *pool0 = rand_raw(c->dt, pool_bytes / es, -1, 1, NULL); /* the earlier keys, and junk */
    void *x0 = rand_raw(c->dt, (size_t)c->d, -1, 1, NULL);
    int32_t p = c->ctx + rng_int(0, 5000);
    void *dpos = dnew(&p, sizeof p);
    struct zl_tensor tpos;
    tensor(&tpos, ZL_DTYPE_I32, 1, (int64_t[]){1}, dpos);
    float *inv = xmalloc((size_t)(c->hd / 2) * sizeof *inv);
    for (int j = 0; j < c->hd / 2; j++)
        inv[j] = (float)pow(500000.0, -2.0 * j / (double)c->hd);
    struct zl_rope rope = {.rot_dim = c->hd, .inv_freq = inv, .attn_factor = 1.0f};
    const float scale = 1.0f / sqrtf((float)c->hd);

    void *pools[2] = {NULL, NULL};
    struct acts r[2];
    int ok = 1, made = 0;
    for (int k = 0; k < 2 && ok; k++, made++) {
        pools[k] = dnew(pool0, pool_bytes);
        make_acts(c, x0, &r[k]);
        struct zl_kv_cache cache = {.base = pools[k], .block_stride = stride, .block_size = c->bs,
                                    .n_layers = c->layers, .n_kv_heads = c->nkv,
                                    .head_dim = c->hd, .dtype = c->dt};
        if (k == 0) {
            const struct zl_rope_kv rk = {&r[k].q3, &r[k].k3, &r[k].v3, &tpos, &rope, &cache, 0, &b};
            const struct zl_decoder_stack st = {c->layers, ls, EPS, scale, &r[k].tx, &r[k].tqkv,
                                                &r[k].tatt, &r[k].ta, &rk};
            if (in_bracket) {
                ok = bracketed(&st, what) && ct_sync(what);
                continue;
            }
            int rc = be->decoder_layers(bctx, &st);
            if (rc == ZL_DECLINED)
                ct_result(0, "%s: declined (an sm_90 device takes this shape)", what);
            ok = rc != ZL_DECLINED && ct_ok(rc, what) && ct_sync(what);
        } else {
            ok = run_ops(c, ls, &r[k], &cache, &tpos, &rope, &b, scale, what);
        }
    }
    if (ok) {
        char *xa = xmalloc((size_t)c->d * es), *xb = xmalloc((size_t)c->d * es);
        dget(xa, r[0].x, (size_t)c->d * es);
        dget(xb, r[1].x, (size_t)c->d * es);
        char m[260];
        snprintf(m, sizeof m, "%s: x vs the per-layer ops", what);
        compare(m, c->dt, xa, xb, (size_t)c->d);
        char *pa = xmalloc(pool_bytes), *pb = xmalloc(pool_bytes);
        dget(pa, pools[0], pool_bytes);
        dget(pb, pools[1], pool_bytes);
        /* the new rows of every layer, then the rest of the pool bit for bit */
        const size_t row = (size_t)kvd * es, blk = (size_t)slot[0] / (size_t)c->bs;
        char *na = xmalloc(2 * (size_t)c->layers * row), *nb = xmalloc(2 * (size_t)c->layers * row);
        for (int l = 0; l < c->layers; l++)
            for (int kv = 0; kv < 2; kv++) {
                size_t at = blk * stride + (((size_t)l * 2 + (size_t)kv) * (size_t)c->bs +
                                            (size_t)slot[0] % (size_t)c->bs) * row;
                memcpy(na + (size_t)(2 * l + kv) * row, pa + at, row);
                memcpy(nb + (size_t)(2 * l + kv) * row, pb + at, row);
                memcpy(pa + at, (char *)pool0 + at, row), memcpy(pb + at, (char *)pool0 + at, row);
            }
        snprintf(m, sizeof m, "%s: new K/V rows vs the per-layer ops", what);
        compare(m, c->dt, na, nb, 2 * (size_t)c->layers * (size_t)kvd);
        ct_result(!memcmp(pa, pool0, pool_bytes), "%s: the rest of the cache untouched", what);
        free(xa), free(xb), free(pa), free(pb), free(na), free(nb);
    }
    for (int k = 0; k < made; k++) {
        dfree(pools[k]);
        free_acts(&r[k]);
    }
    for (int i = 0; i < c->layers; i++) {
        dfree(w[i].wqkv), dfree(w[i].wo), dfree(w[i].wgu), dfree(w[i].wdown);
        dfree(w[i].an), dfree(w[i].fn);
    }
    free(w), free(ls), free(table), free(slot), free(pool0), free(x0), free(inv);
    dfree(dpos);
}

/* What the op must refuse, and what it must decline without touching memory. */
static void edges(void)
{
    int rc = be->decoder_layers(bctx, NULL);
    ct_result(rc == ZL_EINVAL, "decoder_layers without arguments refused: %s", zl_last_error());
    const struct ccase c = {ZL_DTYPE_BF16, 1, 256, 512, 4, 2, 64, 10, 16};
    struct weights w;
    struct zl_decoder_layer l;
    make_layer(&c, &w, &l);
    void *x0 = rand_raw(c.dt, 2 * (size_t)c.d, -1, 1, NULL);
    struct acts r;
    make_acts(&c, x0, &r);
    int32_t qs[2] = {0, 2}, kvl = 12, table[2] = {0, 1}, slot[2] = {10, 11};
    struct zl_attn_batch b = {.n_seqs = 1, .max_blocks = 2, .q_start = qs, .kv_len = &kvl,
                              .block_table = table, .slot = slot};
    void *pool = dmalloc(2 * 2 * 16 * 2 * 64 * 2);
    struct zl_kv_cache cache = {.base = pool, .block_stride = 2 * 16 * 2 * 64 * 2, .block_size = 16,
                                .n_layers = 1, .n_kv_heads = 2, .head_dim = 64, .dtype = c.dt};
    float inv[32] = {0};
    struct zl_rope rope = {.rot_dim = 64, .inv_freq = inv, .attn_factor = 1.0f};
    struct zl_tensor tpos, x2;
    void *dpos = dmalloc(8);
    tensor(&tpos, ZL_DTYPE_I32, 1, (int64_t[]){2}, dpos);
    tensor(&x2, c.dt, 2, (int64_t[]){2, c.d}, r.x);
    const struct zl_rope_kv rk = {&r.q3, &r.k3, &r.v3, &tpos, &rope, &cache, 0, &b};
    const struct zl_decoder_stack st = {1, &l, EPS, 0.125f, &x2, &r.tqkv, &r.tatt, &r.ta, &rk};
    rc = be->decoder_layers(bctx, &st);
    ct_result(rc == ZL_DECLINED, "decoder_layers declines a two-token step (rc %d)", rc);
    rope.rot_dim = 32;
    qs[1] = 1;
    const struct zl_decoder_stack st1 = {1, &l, EPS, 0.125f, &r.tx, &r.tqkv, &r.tatt, &r.ta, &rk};
    rc = be->decoder_layers(bctx, &st1);
    ct_result(rc == ZL_DECLINED, "decoder_layers declines partial rotary (rc %d)", rc);
    dfree(pool), dfree(dpos);
    free_acts(&r);
    dfree(w.wqkv), dfree(w.wo), dfree(w.wgu), dfree(w.wdown), dfree(w.an), dfree(w.fn);
    free(x0);
}

int main(void)
{
    int rc = ct_setup("decoder_layers");
    if (rc)
        return rc;
    if (!ZL_BACKEND_HAS(be, decoder_layers) || !be->decoder_layers)
        return ct_skip("this backend has no decoder_layers (the model runs its layers op by op)");
    /* dt, layers, d, f, heads, kv heads, head_dim, ctx, block size */
    static const struct ccase cases[] = {
        {ZL_DTYPE_BF16, 3, 512, 1408, 8, 2, 64, 100, 16},
        {ZL_DTYPE_BF16, 2, 1024, 2816, 8, 8, 128, 0, 16},
        {ZL_DTYPE_F16, 2, 768, 2048, 12, 4, 64, 300, 32},
        {ZL_DTYPE_BF16, 2, 2048, 5632, 16, 2, 128, 1999, 16},
        {ZL_DTYPE_F16, 1, 1024, 2752, 14, 2, 64, 63, 16},
        {ZL_DTYPE_BF16, 1, 4096, 14336, 32, 8, 128, 700, 16},
        /* down rows of 18 KB: one a slot, its columns shared by the warps
         * (1125 chunks: the last warp's share is shorter) */
        {ZL_DTYPE_BF16, 2, 256, 9000, 4, 1, 64, 40, 16},
        /* o tiles of 3 rows (5120 columns a row): a paired unit and a
         * single one a tile, and a last tile of one row */
        {ZL_DTYPE_BF16, 1, 1024, 2048, 40, 8, 128, 50, 16},
    };
    /* ZL_GEMV_QUICK=1 (run-gpu-tests.sh's memcheck pass): without the
     * Llama-3.1-8B layer, minutes under memcheck */
    const char *quick = getenv("ZL_GEMV_QUICK");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (quick && *quick == '1' && cases[i].d == 4096) {
            printf("decoder_layers: the d 4096 case left out (ZL_GEMV_QUICK=1)\n");
            continue;
        }
        run_case(&cases[i], 0);
    }
    if (ZL_BACKEND_HAS(be, graph_end) && be->graph_begin && be->graph_end)
        run_case(&cases[0], 1);
    else
        printf("decoder_layers: no graph bracket case (this backend has no device graphs)\n");
    edges();
    return ct_finish();
}
