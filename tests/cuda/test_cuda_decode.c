/* Decode attention (one query row per sequence: the tensor-core split-KV
 * kernel of attention-decode.cu, and its per-warp variant for batches whose
 * pairs fill the GPU) through the backend's attention op against
 * float64 references on fresh random inputs: batch 1/2/7/32/72/128/136, contexts
 * 1, 15, 16, 17, 511, 1024, 4097 and 16384 mixed within a batch, GQA
 * groups 1 (MHA), 4, 8 and 16 (MQA), head_dim 64/128, bf16 and f16, block
 * sizes 16 and 32 over a shuffled pool with spare blocks, q and out as
 * strided views (odd row pitch), and two shapes the kernel declines (group
 * 32, head_dim 80) that the generic kernel must still get right.
 *
 * The pool starts as NaN everywhere (0xffff: NaN in f16 and bf16); only
 * the K/V rows of the layer under test at positions < kv_len get values.
 * A read of the other layer, a spare block, the block padding or a key
 * past kv_len turns the output into NaN and fails.  The output is poisoned
 * first, and the elements between the strided out rows must stay poisoned.
 *
 * Tolerance, per output element d of a (sequence, head) with weights
 * w_p = exp(s_p - max s), u = 2^-24, u_T the dtype's unit roundoff:
 *   tol = u_T |o_d| + (u_T + 2 (2 E_s + (ctx + 32) u)) A_d + F
 *   A_d = sum_p w_p |v_pd| / sum_p w_p
 * Inputs are 16-bit values, so their products are exact in f32; each score
 * carries the f32 error of an hd-term dot product plus the scaling,
 * E_s = (hd + 4) u scale max_p sum_d |q_d k_pd|, a relative error of its
 * weight (twice: numerator and denominator); the softmax sums ctx weighted
 * values in f32 (gamma_ctx) and exp2, the rescalings and the split combine
 * add a few u (the 32).  P is rounded to the cache dtype before the P V
 * MMA while the denominator sums the unrounded weights: at most u_T A_d.
 * F: in f16 a weight under 2^-14 is subnormal and rounds with absolute
 * error up to 2^-25, so F = 2^-25 sum_p |v_pd| / sum_p w_p (0 for bf16).
 * The output rounding is u_T |o_d|.  Each case also reports
 * max |err| / max |ref| and requires it under 1e-2 (the usual bound for
 * 16-bit operands).  ZL_TEST_BACKEND=cpu runs the f32 version of every
 * case (u_T = u then), which checks the references on a machine without
 * a GPU.  Each case runs twice and must give the same bytes (the split
 * merge's counters and order); a linear runs between the two, so the
 * second call has that linear's weights to prefetch into L2 (a hint that
 * must change no byte; the weight's size is no multiple of 16). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define U32 0x1p-24
#define N_LAYERS 2
#define LAYER 1
#define MAX_CTX_LIST 8

struct dcase {
    const char *name;
    int n_seqs;
    int n_ctx;                  /* contexts cycle through ctx[0..n_ctx-1] ... */
    int ctx[MAX_CTX_LIST];
    int first_ctx;              /* ... except sequence 0's when > 0 */
    int hq, hkv, hd, bs;
};

static const struct dcase cases[] = {
    {"batch 1 ctx 512 (Llama-3-8B layer)", 1, 1, {512}, 0, 32, 8, 128, 16},
    {"batch 7 MHA", 7, 7, {1, 15, 16, 17, 511, 1024, 4097}, 0, 4, 4, 64, 32},
    {"batch 32 GQA-4 mixed", 32, 8, {1, 15, 16, 17, 511, 1024, 17, 511}, 4097, 32, 8, 128, 16},
    {"batch 128 GQA-8 mixed", 128, 6, {1, 15, 16, 17, 511, 1024}, 4097, 16, 2, 64, 16},
    {"batch 2 MQA-8 ctx 16384", 2, 1, {4097}, 16384, 8, 1, 128, 32},
    {"batch 7 MQA-16", 7, 7, {1, 15, 16, 17, 511, 1024, 4097}, 0, 16, 1, 128, 16},
    /* 576 and 1088 (sequence, kv head) pairs: the per-warp kernel's plan on
     * an H100 (more than half of 132 SMs x 8 resident warps at head_dim
     * 128, x 16 at 64) */
    {"batch 72 GQA-4 (per-warp kernel)", 72, 6, {1, 15, 16, 17, 511, 1024}, 2000, 32, 8, 128, 16},
    {"batch 136 GQA-2 hd 64 (per-warp kernel)", 136, 4, {1, 17, 100, 64}, 0, 16, 8, 64, 32},
    {"declined: group 32 (generic kernel)", 3, 3, {17, 300, 1}, 0, 32, 1, 128, 16},
    {"declined: head_dim 80 (generic kernel)", 3, 3, {33, 16, 2}, 0, 4, 2, 80, 32},
};

/* A linear on a [37, 25] weight: what the backend learns to prefetch
 * during the next attention of the layer just attended.  Its buffers stay
 * allocated until the next call (a free voids the hint). */
static void *g_lin[3];

static void linear_release(void)
{
    for (int i = 0; i < 3; i++) {
        dfree(g_lin[i]);
        g_lin[i] = NULL;
    }
}

static void linear_after(enum zl_dtype dt, const char *what)
{
    linear_release();
    int64_t ws[2] = {37, 25}, xs[2] = {1, 25}, os[2] = {1, 37};
    void *hw = rand_raw(dt, 37 * 25, -1, 1, NULL), *hx = rand_raw(dt, 25, -1, 1, NULL);
    g_lin[0] = dnew(hw, 37 * 25 * esize(dt));
    g_lin[1] = dnew(hx, 25 * esize(dt));
    g_lin[2] = dmalloc(37 * esize(dt));
    struct zl_tensor tw, tx, tout;
    tensor(&tw, dt, 2, ws, g_lin[0]);
    tensor(&tx, dt, 2, xs, g_lin[1]);
    tensor(&tout, dt, 2, os, g_lin[2]);
    ct_ok(be->linear(bctx, &tout, &tx, &tw, NULL), what);
    free(hw);
    free(hx);
}

/* One run: the pool (raw, host copy), tables, views. */
struct run {
    const struct dcase *c;
    enum zl_dtype dt;
    int *kv_len, pool, max_blocks;
    int32_t *q_start, *table, *slot;
    size_t block_elems, pool_elems;     /* block_stride in elements */
    unsigned char *raw;                 /* the pool as the device holds it */
    float lut[65536];                   /* 16-bit pattern -> value */
};

static double cache_val(const struct run *r, size_t i)
{
    if (r->dt == ZL_DTYPE_F32) {
        float f;
        memcpy(&f, r->raw + i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, r->raw + i * 2, 2);
    return r->lut[h];
}

static size_t cache_index(const struct run *r, int seq, int pos, int kv, int head)
{
    const struct dcase *c = r->c;
    int32_t blk = r->table[seq * r->max_blocks + pos / c->bs];
    return (size_t)blk * r->block_elems +
           ((((size_t)LAYER * 2 + (size_t)kv) * (size_t)c->bs + (size_t)(pos % c->bs)) *
                (size_t)c->hkv + (size_t)head) * (size_t)c->hd;
}

static void make_pool(struct run *r)
{
    const struct dcase *c = r->c;
    r->q_start = xmalloc((size_t)(c->n_seqs + 1) * sizeof *r->q_start);
    for (int i = 0; i <= c->n_seqs; i++)
        r->q_start[i] = i;      /* one new row a sequence: its last key */
    r->table = ct_paged_table(c->n_seqs, r->kv_len, r->q_start, c->bs, &r->max_blocks, &r->pool,
                              &r->slot);
    /* blocks padded by 16 bytes: the stride must be honoured */
    size_t es = esize(r->dt);
    r->block_elems = (size_t)N_LAYERS * 2 * (size_t)c->bs * (size_t)c->hkv * (size_t)c->hd +
                     16 / es;
    r->pool_elems = (size_t)r->pool * r->block_elems;
    r->raw = xmalloc(r->pool_elems * es);
    memset(r->raw, 0xff, r->pool_elems * es);
    float *f = xmalloc((size_t)c->hd * sizeof *f);
    for (int i = 0; i < c->n_seqs; i++)
        for (int p = 0; p < r->kv_len[i]; p++)
            for (int kv = 0; kv < 2; kv++)
                for (int h = 0; h < c->hkv; h++) {
                    for (int d = 0; d < c->hd; d++)
                        f[d] = (float)rng_uniform(-1, 1);
                    zl_dtype_convert(r->dt, r->raw + cache_index(r, i, p, kv, h) * es,
                                     ZL_DTYPE_F32, f, (size_t)c->hd);
                }
    free(f);
    if (r->dt != ZL_DTYPE_F32)
        for (uint32_t h = 0; h < 65536; h++) {
            uint16_t b = (uint16_t)h;
            zl_dtype_convert(ZL_DTYPE_F32, &r->lut[h], r->dt, &b, 1);
        }
}

/* o[hd] and tol[hd] for query q of sequence seq on kv head kvh. */
static void attend_ref(const struct run *r, int seq, int kvh, const double *q, double scale,
                       double *o, double *tol, double *sc, double *vabs)
{
    const struct dcase *c = r->c;
    int ctx = r->kv_len[seq];
    double mx = -INFINITY, dmax = 0, den = 0;
    for (int p = 0; p < ctx; p++) {
        size_t k = cache_index(r, seq, p, 0, kvh);
        double dot = 0, da = 0;
        for (int d = 0; d < c->hd; d++) {
            double kd = cache_val(r, k + (size_t)d);
            dot += q[d] * kd, da += fabs(q[d] * kd);
        }
        sc[p] = dot * scale;
        mx = sc[p] > mx ? sc[p] : mx;
        dmax = da > dmax ? da : dmax;
    }
    double ut = ulp_half(r->dt);
    double es = (c->hd + 4) * U32 * scale * dmax;
    double rel = ut + 2 * (2 * es + (ctx + 32) * U32);
    for (int d = 0; d < c->hd; d++)
        o[d] = 0, tol[d] = 0, vabs[d] = 0;
    for (int p = 0; p < ctx; p++) {
        size_t v = cache_index(r, seq, p, 1, kvh);
        double w = exp(sc[p] - mx);
        den += w;
        for (int d = 0; d < c->hd; d++) {
            double vd = cache_val(r, v + (size_t)d);
            o[d] += w * vd, tol[d] += w * fabs(vd), vabs[d] += fabs(vd);
        }
    }
    double sub = r->dt == ZL_DTYPE_F16 ? 0x1p-25 : 0;
    for (int d = 0; d < c->hd; d++) {
        o[d] /= den;
        tol[d] = ut * fabs(o[d]) + rel * tol[d] / den + sub * vabs[d] / den;
    }
}

static void run_case(const struct dcase *c, enum zl_dtype dt)
{
    struct run *r = xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->c = c;
    r->dt = dt;
    r->kv_len = xmalloc((size_t)c->n_seqs * sizeof *r->kv_len);
    int max_ctx = 0;
    for (int i = 0; i < c->n_seqs; i++) {
        r->kv_len[i] = i == 0 && c->first_ctx > 0 ? c->first_ctx : c->ctx[i % c->n_ctx];
        max_ctx = r->kv_len[i] > max_ctx ? r->kv_len[i] : max_ctx;
    }
    make_pool(r);
    size_t es = esize(dt);
    void *dpool = dnew(r->raw, r->pool_elems * es);
    struct zl_kv_cache cache = {.base = dpool, .block_stride = r->block_elems * es,
                                .block_size = c->bs, .n_layers = N_LAYERS, .n_kv_heads = c->hkv,
                                .head_dim = c->hd, .dtype = dt};
    struct zl_attn_batch batch = {.n_seqs = c->n_seqs, .max_blocks = r->max_blocks,
                                  .q_start = r->q_start, .kv_len = r->kv_len,
                                  .block_table = r->table, .slot = r->slot};
    /* q inside fused QKV rows of odd width; out rows 3 elements wider than needed */
    int n = c->n_seqs;
    int64_t qw = (int64_t)(c->hq + 2 * c->hkv) * c->hd + 1, ow = (int64_t)c->hq * c->hd + 3;
    double *qv;
    void *qraw = rand_raw(dt, (size_t)n * (size_t)qw, -3, 3, &qv);
    void *dq = dnew(qraw, (size_t)n * (size_t)qw * es);
    size_t ob = (size_t)n * (size_t)ow * es;
    void *dout = dmalloc(ob);
    dpoison(dout, ob);
    struct zl_tensor tq, to;
    heads_view(&tq, dt, n, c->hq, c->hd, qw, 0, dq);
    heads_view(&to, dt, n, c->hq, c->hd, ow, 0, dout);
    char what[240];
    snprintf(what, sizeof what, "%s: %s, hq %d hkv %d hd %d bs %d, max ctx %d, %d blocks",
             c->name, zl_dtype_name(dt), c->hq, c->hkv, c->hd, c->bs, max_ctx, r->pool);
    float scale = 1.0f / sqrtf((float)c->hd);
    if (ct_ok(be->attention(bctx, &to, &tq, &cache, LAYER, &batch, scale), what) &&
        ct_sync(what)) {
        size_t no = (size_t)n * (size_t)c->hq * (size_t)c->hd;
        double *ref = xmalloc(no * sizeof *ref), *tol = xmalloc(no * sizeof *tol);
        double *sc = xmalloc((size_t)max_ctx * sizeof *sc), *vabs = xmalloc((size_t)c->hd * 8);
        int group = c->hq / c->hkv;
        for (int i = 0; i < n; i++)
            for (int h = 0; h < c->hq; h++) {
                size_t at = ((size_t)i * (size_t)c->hq + (size_t)h) * (size_t)c->hd;
                attend_ref(r, i, h / group, qv + (size_t)i * (size_t)qw + (size_t)h * (size_t)c->hd,
                           (double)scale, ref + at, tol + at, sc, vabs);
            }
        unsigned char *all = xmalloc(ob), *got = xmalloc(no * es);
        dget(all, dout, ob);
        int pad_ok = 1;
        size_t rowb = (size_t)c->hq * (size_t)c->hd * es;
        for (int i = 0; i < n; i++) {
            memcpy(got + (size_t)i * rowb, all + (size_t)i * (size_t)ow * es, rowb);
            for (size_t b = rowb; b < (size_t)ow * es; b++)
                pad_ok &= all[(size_t)i * (size_t)ow * es + b] == 0xff;
        }
        if (ct_check(what, got, dt, ref, tol, no)) {
            double *g = to_double(dt, got, no), emax = 0, rmax = 0;
            for (size_t i = 0; i < no; i++) {
                double e = fabs(g[i] - ref[i]);
                emax = e > emax ? e : emax;
                rmax = fabs(ref[i]) > rmax ? fabs(ref[i]) : rmax;
            }
            ct_result(emax < 1e-2 * rmax, "%s: max |err| / max |ref| = %.3g (< 1e-2)", what,
                      emax / rmax);
            free(g);
        }
        ct_result(pad_ok, "%s: out row padding untouched", what);
        /* Again on a poisoned output: the same bytes.  The split merge is
         * done by whichever block counts last, on counters the first call
         * must have left at zero; a count left over skips a merge (poison
         * stays), a merge in arrival order changes bits. */
        unsigned char *again = xmalloc(ob);
        linear_after(dt, what);
        dpoison(dout, ob);
        if (ct_ok(be->attention(bctx, &to, &tq, &cache, LAYER, &batch, scale), what) &&
            ct_sync(what)) {
            dget(again, dout, ob);
            ct_result(!memcmp(again, all, ob), "%s: a second call gives the same bytes", what);
        }
        free(again);
        free(all);
        free(got);
        free(ref);
        free(tol);
        free(sc);
        free(vabs);
    }
    dfree(dpool);
    dfree(dq);
    dfree(dout);
    free(qraw);
    free(qv);
    free(r->raw);
    free(r->table);
    free(r->slot);
    free(r->q_start);
    free(r->kv_len);
    free(r);
}

int main(void)
{
    int rc = ct_setup("decode");
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (ct_is_cpu()) {
            run_case(&cases[i], ZL_DTYPE_F32);
            continue;
        }
        run_case(&cases[i], ZL_DTYPE_BF16);
        run_case(&cases[i], ZL_DTYPE_F16);
    }
    linear_release();
    return ct_finish();
}
