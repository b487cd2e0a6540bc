/* rope_attention (backend.h, API minor 6): rope_kv_write then attention in
 * one call, which the CUDA backend fuses into the decode attention kernel
 * for decode steps.
 *
 * Exact: on fresh random inputs, out and every byte of the cache pool must
 * equal what rope_kv_write then attention leave, bit for bit (the op's
 * contract; test_cuda_ops and test_cuda_decode check those two against
 * float64).  Each case runs both on identical copies of q/k/v rows (inside
 * fused QKV rows of odd width), a pool that is NaN except for the old keys
 * of the layer under test, and poisoned outputs.  Decode cases: batch 1 to
 * 128 (72: the per-warp kernel), contexts 1 (the new key is the only one), 15-17 (around a tile and
 * a block), 511, 1024, 4097 and 16384 (many splits), GQA groups 1, 4, 8 and
 * 16, head_dim 64 and 128, block sizes 16 and 32, attn_factor 1 and 0.8,
 * positions = kv_len - 1 or random up to 60000, bf16 and f16.  There q must
 * come back untouched: the fused kernel rotates q on the way in, the two
 * ops rotate it in memory, so an untouched q shows the fused path ran.
 * Cases the fused kernel does not take run the two ops inside the op and
 * must leave q rotated like them: partial rotary, a mixed step (decodes
 * then a prompt chunk), a prefill step, f32, a GQA group of 32, head_dim
 * 80.  Each case runs the op twice; the second call (its out poisoned
 * again) must give the same bytes.  Bad arguments are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define N_LAYERS 2
#define LAYER 1
#define MAX_SEQS 128

struct rcase {
    const char *name;
    enum zl_dtype dt;
    int n_seqs, n_ctx;
    int ctx[8];                 /* kv_len after the step, cycling */
    int prefill;                /* the last sequence has this many new rows (0: decode) */
    int hq, hkv, hd, bs, rot;   /* rot: rot_dim, 0 = hd */
    float af;
    int rand_pos;               /* positions random, not kv_len - 1 */
    int fused;                  /* the CUDA kernel takes it (q stays untouched) */
};

#define BF ZL_DTYPE_BF16
#define HF ZL_DTYPE_F16
static const struct rcase cases[] = {
    {"decode batch 1 ctx 512 (Llama-3-8B layer)", BF, 1, 1, {512}, 0, 32, 8, 128, 16, 0, 1.0f, 0, 1},
    {"decode batch 1 ctx 512 (Llama-3-8B layer)", HF, 1, 1, {512}, 0, 32, 8, 128, 16, 0, 1.0f, 0, 1},
    {"decode batch 32 GQA-4 mixed ctx", BF, 32, 7, {1, 15, 16, 17, 511, 1024, 4097}, 0, 32, 8, 128, 16, 0, 1.0f, 0, 1},
    {"decode batch 32 GQA-4 mixed ctx", HF, 32, 7, {1, 15, 16, 17, 511, 1024, 4097}, 0, 32, 8, 128, 16, 0, 0.8f, 1, 1},
    {"decode batch 7 MHA hd 64", BF, 7, 7, {1, 16, 17, 63, 64, 65, 2000}, 0, 4, 4, 64, 32, 0, 0.8f, 1, 1},
    {"decode batch 7 MHA hd 64", HF, 7, 7, {1, 16, 17, 63, 64, 65, 2000}, 0, 4, 4, 64, 32, 0, 1.0f, 0, 1},
    {"decode batch 128 GQA-8 hd 64", BF, 128, 6, {1, 15, 16, 17, 511, 1024}, 0, 16, 2, 64, 16, 0, 1.0f, 1, 1},
    {"decode batch 3 MQA-16", HF, 3, 3, {300, 1, 33}, 0, 16, 1, 128, 16, 0, 0.8f, 1, 1},
    {"decode batch 2 MQA-8 ctx 16384", BF, 2, 2, {16384, 4097}, 0, 8, 1, 128, 32, 0, 1.0f, 0, 1},
    /* 576 pairs: the per-warp kernel's plan on an H100 */
    {"decode batch 72 GQA-4 (per-warp kernel)", BF, 72, 6, {1, 15, 16, 17, 511, 1024}, 0, 32, 8, 128, 16, 0, 1.0f, 1, 1},
    {"decode batch 72 GQA-4 (per-warp kernel)", HF, 72, 6, {1, 15, 16, 17, 511, 1024}, 0, 32, 8, 128, 16, 0, 0.8f, 0, 1},
    {"two ops: partial rotary", BF, 5, 5, {1, 17, 100, 512, 33}, 0, 8, 2, 128, 16, 64, 1.0f, 1, 0},
    {"two ops: mixed step", BF, 3, 3, {40, 7, 29}, 9, 8, 2, 128, 16, 0, 1.0f, 0, 0},
    {"two ops: prefill step", HF, 1, 1, {70}, 33, 8, 2, 64, 16, 0, 0.8f, 0, 0},
    {"two ops: f32", ZL_DTYPE_F32, 4, 4, {1, 17, 300, 64}, 0, 8, 2, 64, 16, 0, 1.0f, 1, 0},
    {"two ops: GQA group 32", BF, 3, 3, {17, 300, 1}, 0, 32, 1, 128, 16, 0, 1.0f, 0, 0},
    {"two ops: head_dim 80", BF, 3, 3, {33, 16, 2}, 0, 4, 2, 80, 32, 0, 1.0f, 0, 0},
};

/* The step's batch and cache geometry for one case. */
struct geo {
    int32_t kv_len[MAX_SEQS], q_start[MAX_SEQS + 1];
    int32_t *table, *slot, *pos;
    int max_blocks, n_tok, pool;
    size_t block_elems, pool_elems;
};

static void make_geo(const struct rcase *c, struct geo *g)
{
    g->n_tok = 0;
    for (int s = 0; s < c->n_seqs; s++) {
        g->kv_len[s] = c->ctx[s % c->n_ctx];
        int rows = s == c->n_seqs - 1 && c->prefill ? c->prefill : 1;
        if (g->kv_len[s] < rows)
            g->kv_len[s] = rows;
        g->q_start[s] = g->n_tok;
        g->n_tok += rows;
    }
    g->q_start[c->n_seqs] = g->n_tok;
    g->table = ct_paged_table(c->n_seqs, g->kv_len, g->q_start, c->bs, &g->max_blocks, &g->pool,
                              &g->slot);
    g->pos = xmalloc((size_t)g->n_tok * sizeof *g->pos);
    for (int s = 0; s < c->n_seqs; s++)
        for (int t = g->q_start[s]; t < g->q_start[s + 1]; t++)
            g->pos[t] = c->rand_pos ? rng_int(0, 60000)
                                    : g->kv_len[s] - (g->q_start[s + 1] - t);
    size_t es = esize(c->dt);
    g->block_elems = (size_t)N_LAYERS * 2 * (size_t)c->bs * (size_t)c->hkv * (size_t)c->hd + 16 / es;
    g->pool_elems = (size_t)g->pool * g->block_elems;
}

/* The pool as uploaded: NaN except the old keys (and values) of LAYER. */
static unsigned char *make_pool(const struct rcase *c, const struct geo *g)
{
    size_t es = esize(c->dt), row = (size_t)c->hkv * (size_t)c->hd;
    unsigned char *raw = xmalloc(g->pool_elems * es);
    memset(raw, 0xff, g->pool_elems * es);
    float *f = xmalloc(row * sizeof *f);
    for (int s = 0; s < c->n_seqs; s++) {
        int old = g->kv_len[s] - (g->q_start[s + 1] - g->q_start[s]);
        for (int p = 0; p < old; p++)
            for (int kv = 0; kv < 2; kv++) {
                for (size_t d = 0; d < row; d++)
                    f[d] = (float)rng_uniform(-1, 1);
                int32_t blk = g->table[s * g->max_blocks + p / c->bs];
                size_t at = (size_t)blk * g->block_elems +
                            (((size_t)LAYER * 2 + (size_t)kv) * (size_t)c->bs +
                             (size_t)(p % c->bs)) * row;
                zl_dtype_convert(c->dt, raw + at * es, ZL_DTYPE_F32, f, row);
            }
    }
    free(f);
    return raw;
}

/* Device state of one path. */
struct side {
    void *qkv, *pool, *out;
};

static int same_dev(const void *a, const void *b, size_t bytes)
{
    unsigned char *x = xmalloc(bytes), *y = xmalloc(bytes);
    dget(x, a, bytes);
    dget(y, b, bytes);
    int same = !memcmp(x, y, bytes);
    free(x);
    free(y);
    return same;
}

static void run_case(const struct rcase *c)
{
    struct geo g;
    make_geo(c, &g);
    const size_t es = esize(c->dt);
    const int64_t qw = (int64_t)(c->hq + 2 * c->hkv) * c->hd + 1, ow = (int64_t)c->hq * c->hd + 3;
    const size_t qb = (size_t)g.n_tok * (size_t)qw * es, ob = (size_t)g.n_tok * (size_t)ow * es;
    const size_t pb = g.pool_elems * es;
    unsigned char *pool = make_pool(c, &g);
    void *qkv = rand_raw(c->dt, (size_t)g.n_tok * (size_t)qw, -2, 2, NULL);
    void *dpos = dnew(g.pos, (size_t)g.n_tok * sizeof *g.pos);
    const int rot = c->rot ? c->rot : c->hd;
    float *inv = xmalloc((size_t)(rot / 2) * sizeof *inv);
    for (int j = 0; j < rot / 2; j++)
        inv[j] = (float)pow(500000.0, -2.0 * (double)j / (double)rot);
    struct zl_rope rp = {.rot_dim = rot, .inv_freq = inv, .attn_factor = c->af};
    struct zl_attn_batch batch = {.n_seqs = c->n_seqs, .max_blocks = g.max_blocks,
                                  .q_start = g.q_start, .kv_len = g.kv_len,
                                  .block_table = g.table, .slot = g.slot};
    struct zl_tensor tp;
    tensor(&tp, ZL_DTYPE_I32, 1, (int64_t[]){g.n_tok}, dpos);
    const float scale = 1.0f / sqrtf((float)c->hd);
    char what[240];
    snprintf(what, sizeof what, "%s: %s, hq %d hkv %d hd %d bs %d rot %d af %.1f, %d rows",
             c->name, zl_dtype_name(c->dt), c->hq, c->hkv, c->hd, c->bs, rot, c->af, g.n_tok);

    /* side 0: rope_kv_write then attention; side 1: rope_attention (twice) */
    struct side d[2];
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        d[k].qkv = dnew(qkv, qb);
        d[k].pool = dnew(pool, pb);
        d[k].out = dmalloc(ob);
        dpoison(d[k].out, ob);
    }
    struct zl_tensor tq[2], tk[2], tv[2], to[2];
    struct zl_kv_cache cache[2];
    for (int k = 0; k < 2; k++) {
        heads_view(&tq[k], c->dt, g.n_tok, c->hq, c->hd, qw, 0, d[k].qkv);
        heads_view(&tk[k], c->dt, g.n_tok, c->hkv, c->hd, qw, (int64_t)c->hq * c->hd, d[k].qkv);
        heads_view(&tv[k], c->dt, g.n_tok, c->hkv, c->hd, qw, (int64_t)(c->hq + c->hkv) * c->hd,
                   d[k].qkv);
        heads_view(&to[k], c->dt, g.n_tok, c->hq, c->hd, ow, 0, d[k].out);
        cache[k] = (struct zl_kv_cache){.base = d[k].pool, .block_stride = g.block_elems * es,
                                        .block_size = c->bs, .n_layers = N_LAYERS,
                                        .n_kv_heads = c->hkv, .head_dim = c->hd, .dtype = c->dt};
    }
    ok = ct_ok(be->rope_kv_write(bctx, &tq[0], &tk[0], &tv[0], &tp, &rp, &cache[0], LAYER, &batch),
               what) &&
         ct_ok(be->attention(bctx, &to[0], &tq[0], &cache[0], LAYER, &batch, scale), what);
    const struct zl_rope_kv r = {&tq[1], &tk[1], &tv[1], &tp, &rp, &cache[1], LAYER, &batch};
    ok = ok && ct_ok(be->rope_attention(bctx, &to[1], &r, scale), what) && ct_sync(what);
    if (ok) {
        int same_out = same_dev(d[0].out, d[1].out, ob), same_pool = same_dev(d[0].pool, d[1].pool, pb);
        ct_result(same_out && same_pool, "%s == rope_kv_write + attention: out %s, cache %s", what,
                  same_out ? "identical" : "DIFFERS", same_pool ? "identical" : "DIFFERS");
        /* q: untouched where the kernel fused the rotation, else rotated
         * in memory as rope_kv_write rotates it */
        unsigned char *q1 = xmalloc(qb);
        dget(q1, d[1].qkv, qb);
        int untouched = !memcmp(q1, qkv, qb);
        if (c->fused)
            ct_result(untouched, "%s: q untouched (the fused kernel ran)", what);
        else
            ct_result(same_dev(d[0].qkv, d[1].qkv, qb) && !untouched,
                      "%s: q rotated in memory as rope_kv_write leaves it (the two ops ran)", what);
        free(q1);
        unsigned char *first = xmalloc(ob), *again = xmalloc(ob);
        dget(first, d[1].out, ob);
        dpoison(d[1].out, ob);
        if (c->fused && ct_ok(be->rope_attention(bctx, &to[1], &r, scale), what) && ct_sync(what)) {
            dget(again, d[1].out, ob);
            ct_result(!memcmp(first, again, ob) && same_dev(d[0].pool, d[1].pool, pb),
                      "%s: a second call gives the same out and cache", what);
        }
        free(first);
        free(again);
    }
    for (int k = 0; k < 2; k++) {
        dfree(d[k].qkv);
        dfree(d[k].pool);
        dfree(d[k].out);
    }
    dfree(dpos);
    free(pool), free(qkv), free(inv), free(g.table), free(g.slot), free(g.pos);
}

/* Arguments the op must refuse with ZL_EINVAL before touching memory. */
static void bad_args(void)
{
    const int hd = 64, hq = 4, hkv = 2, bs = 16;
    void *dq = dmalloc(4096 * 2), *dout = dmalloc(4096 * 2), *dpool = dmalloc(2 * 2 * 2 * bs * hkv * hd * 2);
    int32_t pos = 3, qs[2] = {0, 1}, kvl[1] = {4}, table[1] = {0}, slot[1] = {3};
    void *dpos = dnew(&pos, sizeof pos);
    float inv[32];
    for (int j = 0; j < 32; j++)
        inv[j] = 1.0f / (float)(j + 1);
    struct zl_rope rp = {.rot_dim = hd, .inv_freq = inv, .attn_factor = 1.0f};
    struct zl_attn_batch batch = {.n_seqs = 1, .max_blocks = 1, .q_start = qs, .kv_len = kvl,
                                  .block_table = table, .slot = slot};
    struct zl_kv_cache cache = {.base = dpool, .block_stride = (size_t)2 * 2 * bs * hkv * hd * 2,
                                .block_size = bs, .n_layers = 2, .n_kv_heads = hkv, .head_dim = hd,
                                .dtype = BF};
    struct zl_tensor tq, tk, tv, to, tbad, tp;
    heads_view(&tq, BF, 1, hq, hd, (hq + 2 * hkv) * hd, 0, dq);
    heads_view(&tk, BF, 1, hkv, hd, (hq + 2 * hkv) * hd, hq * hd, dq);
    heads_view(&tv, BF, 1, hkv, hd, (hq + 2 * hkv) * hd, (hq + hkv) * hd, dq);
    heads_view(&to, BF, 1, hq, hd, hq * hd, 0, dout);
    heads_view(&tbad, BF, 1, hq + 1, hd, (hq + 1) * hd, 0, dout);
    tensor(&tp, ZL_DTYPE_I32, 1, (int64_t[]){1}, dpos);
    const struct zl_rope_kv r = {&tq, &tk, &tv, &tp, &rp, &cache, 1, &batch};
    int rc = be->rope_attention(bctx, &to, NULL, 0.125f);
    ct_result(rc == ZL_EINVAL, "rope_attention without rope arguments refused: %s", zl_last_error());
    rc = be->rope_attention(bctx, &tbad, &r, 0.125f);
    ct_result(rc == ZL_EINVAL, "rope_attention with out of another head count refused: %s",
              zl_last_error());
    rc = be->rope_attention(bctx, &to, &r, NAN);
    ct_result(rc == ZL_EINVAL, "rope_attention with a NaN scale refused: %s", zl_last_error());
    const struct zl_rope_kv nok = {&tq, NULL, &tv, &tp, &rp, &cache, 1, &batch};
    rc = be->rope_attention(bctx, &to, &nok, 0.125f);
    ct_result(rc == ZL_EINVAL, "rope_attention without k refused: %s", zl_last_error());
    struct zl_rope odd = rp;
    odd.rot_dim = hd + 2;
    const struct zl_rope_kv bigrot = {&tq, &tk, &tv, &tp, &odd, &cache, 1, &batch};
    rc = be->rope_attention(bctx, &to, &bigrot, 0.125f);
    ct_result(rc == ZL_EINVAL, "rope_attention with rot_dim > head_dim refused: %s", zl_last_error());
    dfree(dq), dfree(dout), dfree(dpool), dfree(dpos);
}

int main(void)
{
    int rc = ct_setup("rope_attention");
    if (rc)
        return rc;
    if (!ZL_BACKEND_HAS(be, rope_attention) || !be->rope_attention)
        return ct_skip("this backend has no rope_attention (the model runs the two ops)");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_case(&cases[i]);
    bad_args();
    return ct_finish();
}
