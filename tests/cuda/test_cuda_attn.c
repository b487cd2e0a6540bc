/* kv_write and paged attention against float64 references on fresh random
 * inputs: decode over many lengths, varlen prefill, chunked prefill on a
 * cached prefix of 4096+ tokens over hundreds of blocks, GQA, MQA and MHA,
 * head_dim 64/80/128/256, block sizes 8/16/32, block tables in random pool
 * order padded with -1, a padded block stride, q/k/v as views into fused
 * QKV rows, a sequence with no new tokens, f32 activations over a bf16 cache.
 *
 * kv_write is exact (one rounding to the cache dtype) and must leave every
 * other byte of the pool alone: the whole pool is compared.
 *
 * attention, per output element d of a (token, head) with weights
 * w_p = exp(s_p - max s), u = 2^-24, u_T the output dtype's unit roundoff:
 *   tol = u_T |o_d| + 2 (2 E_s + (ctx + 16) u) sum_p w_p |v_pd| / sum_p w_p
 * E_s = (hd + 2) u scale max_p sum_d |q_d k_pd| bounds each score's f32
 * error (a dot product of hd terms, then the scale), which becomes a
 * relative error of its weight (twice: numerator and denominator); the
 * online softmax sums ctx weighted values in f32 (gamma_ctx), expf and the
 * rescalings add a few u (the 16); the factor 2 covers the final division
 * and the merge of the warps' partial sums. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define U32 0x1p-24
#define MAX_SEQS 8
#define N_LAYERS 2
#define LAYER 1

struct attn_case {
    const char *name;
    int n_seqs;
    int n_new[MAX_SEQS], kv_len[MAX_SEQS];
    int hq, hkv, hd, bs;
    int write_new;              /* kv_write the new tokens first (else they are in the pool) */
};

/* Everything one run of a case needs, host side. */
struct setup {
    const struct attn_case *c;
    enum zl_dtype act, cdt;
    int n_tok, pool, max_blocks;
    size_t block_stride, pool_elems;
    int32_t q_start[MAX_SEQS + 1], *table, *slot;
    double *image;              /* the pool as doubles (what the cache holds) */
};

static size_t cache_index(const struct setup *s, int64_t slot, int kv, int head, int d)
{
    const struct attn_case *c = s->c;
    int64_t blk = slot / c->bs, off = slot % c->bs;
    return (size_t)blk * (s->block_stride / esize(s->cdt)) +
           ((((size_t)LAYER * 2 + (size_t)kv) * (size_t)c->bs + (size_t)off) * (size_t)c->hkv +
            (size_t)head) * (size_t)c->hd + (size_t)d;
}

/* Block tables over a shuffled pool with spare blocks, slots of the new tokens. */
static void make_tables(struct setup *s)
{
    const struct attn_case *c = s->c;
    int used = 0;
    s->max_blocks = 1;
    s->q_start[0] = 0;
    for (int i = 0; i < c->n_seqs; i++) {
        int nb = (c->kv_len[i] + c->bs - 1) / c->bs;
        used += nb;
        s->max_blocks = nb + 1 > s->max_blocks ? nb + 1 : s->max_blocks;
        s->q_start[i + 1] = s->q_start[i] + c->n_new[i];
    }
    s->n_tok = s->q_start[c->n_seqs];
    s->pool = used + 3;
    int32_t *perm = xmalloc((size_t)s->pool * sizeof *perm);
    for (int i = 0; i < s->pool; i++)
        perm[i] = i;
    for (int i = s->pool - 1; i > 0; i--) {
        int j = rng_int(0, i);
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    s->table = xmalloc((size_t)(c->n_seqs * s->max_blocks) * sizeof *s->table);
    s->slot = xmalloc((size_t)(s->n_tok ? s->n_tok : 1) * sizeof *s->slot);
    int next = 0;
    for (int i = 0; i < c->n_seqs; i++) {
        int32_t *row = s->table + i * s->max_blocks;
        int nb = (c->kv_len[i] + c->bs - 1) / c->bs;
        for (int j = 0; j < s->max_blocks; j++)
            row[j] = j < nb ? perm[next++] : -1;
        for (int t = 0; t < c->n_new[i]; t++) {
            int pos = c->kv_len[i] - c->n_new[i] + t;
            s->slot[s->q_start[i] + t] = row[pos / c->bs] * c->bs + pos % c->bs;
        }
    }
    free(perm);
}

/* o[hd] = softmax(scale q.K) V over the first ctx positions of seq i, with tol. */
static void attend_ref(const struct setup *s, int seq, int ctx, int kvh, const double *q,
                       double scale, double *o, double *tol)
{
    const struct attn_case *c = s->c;
    const int32_t *row = s->table + seq * s->max_blocks;
    double *sc = xmalloc((size_t)ctx * sizeof *sc), mx = -INFINITY, dmax = 0;
    for (int p = 0; p < ctx; p++) {
        int64_t slot = (int64_t)row[p / c->bs] * c->bs + p % c->bs;
        const double *k = s->image + cache_index(s, slot, 0, kvh, 0);
        double dot = 0, da = 0;
        for (int d = 0; d < c->hd; d++)
            dot += q[d] * k[d], da += fabs(q[d] * k[d]);
        sc[p] = dot * scale;
        mx = sc[p] > mx ? sc[p] : mx;
        dmax = da > dmax ? da : dmax;
    }
    double es = (c->hd + 2) * U32 * scale * dmax, den = 0;
    double rel = 2 * (2 * es + (ctx + 16) * U32);
    for (int d = 0; d < c->hd; d++)
        o[d] = 0, tol[d] = 0;
    for (int p = 0; p < ctx; p++) {
        int64_t slot = (int64_t)row[p / c->bs] * c->bs + p % c->bs;
        const double *v = s->image + cache_index(s, slot, 1, kvh, 0);
        double w = exp(sc[p] - mx);
        den += w;
        for (int d = 0; d < c->hd; d++)
            o[d] += w * v[d], tol[d] += w * fabs(v[d]);
    }
    for (int d = 0; d < c->hd; d++) {
        o[d] /= den;
        tol[d] = ulp_half(s->act) * fabs(o[d]) + rel * tol[d] / den;
    }
    free(sc);
}

static void run_case(const struct attn_case *c, enum zl_dtype act, enum zl_dtype cdt)
{
    struct setup s = {.c = c, .act = act, .cdt = cdt};
    make_tables(&s);
    size_t es = esize(cdt);
    size_t need = (size_t)N_LAYERS * 2 * (size_t)c->bs * (size_t)c->hkv * (size_t)c->hd * es;
    s.block_stride = need + 64;     /* padding between blocks: the stride must be honoured */
    s.pool_elems = (size_t)s.pool * s.block_stride / es;
    void *pool_raw = rand_raw(cdt, s.pool_elems, -1, 1, &s.image);
    void *dpool = dnew(pool_raw, s.pool_elems * es);
    struct zl_kv_cache cache = {.base = dpool, .block_stride = s.block_stride, .block_size = c->bs,
                                .n_layers = N_LAYERS, .n_kv_heads = c->hkv, .head_dim = c->hd,
                                .dtype = cdt};
    int32_t kv_len[MAX_SEQS];
    memcpy(kv_len, c->kv_len, sizeof kv_len);
    struct zl_attn_batch batch = {.n_seqs = c->n_seqs, .max_blocks = s.max_blocks,
                                  .q_start = s.q_start, .kv_len = kv_len,
                                  .block_table = s.table, .slot = s.slot};
    /* fused qkv rows [n_tok, (hq + 2 hkv) hd + 1] */
    int64_t width = (int64_t)(c->hq + 2 * c->hkv) * c->hd + 1;
    size_t nq = (size_t)s.n_tok * (size_t)width;
    double *qkv;
    void *qkv_raw = rand_raw(act, nq ? nq : 1, -1, 1, &qkv);
    void *dqkv = dnew(qkv_raw, (nq ? nq : 1) * esize(act));
    struct zl_tensor tq, tk, tv, to;
    heads_view(&tq, act, s.n_tok, c->hq, c->hd, width, 0, dqkv);
    heads_view(&tk, act, s.n_tok, c->hkv, c->hd, width, (int64_t)c->hq * c->hd, dqkv);
    heads_view(&tv, act, s.n_tok, c->hkv, c->hd, width, (int64_t)(c->hq + c->hkv) * c->hd, dqkv);
    size_t ob = (size_t)s.n_tok * (size_t)(c->hq * c->hd) * esize(act);
    void *dout = dmalloc(ob ? ob : 16);
    dpoison(dout, ob);
    tensor(&to, act, 3, (int64_t[]){s.n_tok, c->hq, c->hd}, dout);
    char what[200];
    snprintf(what, sizeof what, "%s: q %s, cache %s, hq %d hkv %d hd %d bs %d, %d tokens, %d blocks",
             c->name, zl_dtype_name(act), zl_dtype_name(cdt), c->hq, c->hkv, c->hd, c->bs,
             s.n_tok, s.pool);
    int ok = 1;
    if (c->write_new) {
        char w2[240];
        snprintf(w2, sizeof w2, "kv_write %s", what);
        ok = ct_ok(be->kv_write(bctx, &cache, LAYER, &tk, &tv, &batch), w2) && ct_sync(w2);
        for (int i = 0; ok && i < s.n_tok; i++)
            for (int kv = 0; kv < 2; kv++)
                for (int h = 0; h < c->hkv; h++)
                    for (int d = 0; d < c->hd; d++)
                        s.image[cache_index(&s, s.slot[i], kv, h, d)] = round_dt(
                            cdt, qkv[(size_t)i * (size_t)width +
                                     (size_t)(c->hq + kv * c->hkv + h) * (size_t)c->hd + (size_t)d]);
        ok = ok && ct_check_dev(w2, dpool, cdt, s.image, NULL, s.pool_elems);
    }
    float scale = 1.0f / sqrtf((float)c->hd);
    if (ok && ct_ok(be->attention(bctx, &to, &tq, &cache, LAYER, &batch, scale), what) &&
        ct_sync(what)) {
        size_t no = (size_t)s.n_tok * (size_t)(c->hq * c->hd);
        double *ref = xmalloc((no ? no : 1) * sizeof *ref), *tol = xmalloc((no ? no : 1) * sizeof *tol);
        int group = c->hq / c->hkv;
        for (int i = 0; i < c->n_seqs; i++)
            for (int t = 0; t < c->n_new[i]; t++) {
                int tok = s.q_start[i] + t, ctx = c->kv_len[i] - c->n_new[i] + t + 1;
                for (int h = 0; h < c->hq; h++) {
                    size_t at = ((size_t)tok * (size_t)c->hq + (size_t)h) * (size_t)c->hd;
                    attend_ref(&s, i, ctx, h / group,
                               qkv + (size_t)tok * (size_t)width + (size_t)h * (size_t)c->hd,
                               (double)scale, ref + at, tol + at);
                }
            }
        ct_check_dev(what, dout, act, ref, tol, no);
        free(ref);
        free(tol);
    }
    dfree(dpool);
    dfree(dqkv);
    dfree(dout);
    free(pool_raw);
    free(s.image);
    free(qkv_raw);
    free(qkv);
    free(s.table);
    free(s.slot);
}

static const struct attn_case cases[] = {
    {"decode GQA", 5, {1, 1, 1, 1, 1}, {1, 17, 100, 513, 2049}, 32, 8, 128, 16, 1},
    {"varlen prefill GQA-3", 3, {1, 37, 130}, {1, 37, 130}, 12, 4, 64, 16, 1},
    {"chunked prefill on a 4100-token prefix + long decode, MQA", 2, {160, 1}, {4260, 4097},
     8, 1, 128, 16, 1},
    {"MHA hd 80 bs 32, a sequence with no new token", 4, {5, 1, 0, 64}, {70, 33, 50, 64},
     10, 10, 80, 32, 0},
    {"hd 256 bs 8", 2, {3, 1}, {40, 9}, 4, 2, 256, 8, 1},
};

int main(void)
{
    int rc = ct_setup("attention");
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int a = 0; a < ct_n_act(); a++) {
            enum zl_dtype act = ct_act(a);
            run_case(&cases[i], act, act);
            if (act == ZL_DTYPE_F32)   /* f32 activations over a bf16 cache */
                run_case(&cases[i], act, ZL_DTYPE_BF16);
        }
    /* no query rows: nothing to do, and not an error */
    struct zl_kv_cache cache = {.base = (void *)16, .block_stride = 4096, .block_size = 16,
                                .n_layers = 1, .n_kv_heads = 1, .head_dim = 8,
                                .dtype = ZL_DTYPE_F32};
    int32_t q_start[1] = {0};
    struct zl_attn_batch empty = {.n_seqs = 0, .q_start = q_start};
    void *d = dmalloc(64);
    struct zl_tensor q;
    tensor(&q, ZL_DTYPE_F32, 3, (int64_t[]){0, 1, 8}, d);
    ct_result(be->attention(bctx, &q, &q, &cache, 0, &empty, 0.5f) == ZL_OK && ct_sync("empty"),
              "attention with no tokens: %s", zl_last_error());
    dfree(d);
    return ct_finish();
}
