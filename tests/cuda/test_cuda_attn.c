/* kv_write and paged attention against float64 references on fresh random
 * inputs: decode over many lengths, varlen prefill, chunked prefill on a
 * cached prefix of 4096+ tokens over hundreds of blocks, GQA, MQA and MHA,
 * head_dim 64/80/128/256, block sizes 8/16/32, block tables in random pool
 * order padded with -1, a padded block stride, q/k/v as views into fused
 * QKV rows, a sequence with no new tokens, f32 activations over a bf16 cache.
 * The prefill cases with f16/bf16 q and cache and head_dim 64/128 run the
 * tensor-core flash kernel (attention-prefill.cu; head_dim 128 on an
 * H100/H200 the wgmma one of attention-prefill-wg.cu when ZL_PREFILL_WG
 * asks for it; run-gpu-tests.sh runs both): a 2048-token Llama-3.1-8B
 * prompt (32/8 heads of 128), odd lengths 1/17/0/100/333 in one batch,
 * chunked prefill over shuffled 16-token blocks, MHA, MQA, q and out as
 * strided views with 16-byte aligned rows (the vector path) and with odd
 * widths (the 2-byte path); mixed steps whose leading decodes go to the
 * decode kernel and the rest to the flash kernel.  The output is poisoned
 * (NaN) before each run.
 *
 * kv_write is exact (one rounding to the cache dtype) and must leave every
 * other byte of the pool alone: the whole pool is compared.
 *
 * attention, per output element d of a (token, head) with weights
 * w_p = exp(s_p - max s), u = 2^-24, u_T the output dtype's unit roundoff:
 *   tol = u_T |o_d| + (u_P + 2 (2 E_s + (ctx + 16) u)) sum_p w_p |v_pd| / sum_p w_p
 *         + f16 only: ctx 2^-25 max_p |v_pd| / sum_p w_p
 * E_s = (hd + 2) u scale max_p sum_d |q_d k_pd| bounds each score's f32
 * error (a dot product of hd terms, then the scale), which becomes a
 * relative error of its weight (twice: numerator and denominator); the
 * online softmax sums ctx weighted values in f32 (gamma_ctx), expf/ex2 and
 * the rescalings add a few u (the 16); the factor 2 covers the final
 * division, the merge of partial sums and the tensor cores' f32
 * accumulation (which may truncate instead of rounding).  u_P is the
 * rounding of the weights to the 16-bit input dtype before the P V product
 * (a tensor-core kernel multiplies 16-bit operands: u_P = 2^-8 for bf16,
 * 2^-11 for f16; 0 with an f32 cache, whose kernel keeps P in f32); the
 * weights' sum is kept in f32 from the unrounded values, so each term
 * w_p v_pd is off by at most u_P w_p |v_pd|.  f16 weights under 2^-14 are
 * subnormal with an absolute spacing of 2^-24 (half of it lost per weight),
 * the last term.  For bf16 this makes the error of an output about 2^-8 of
 * the mean |v| it averages plus 2^-9 of itself: with |v| < 1 an absolute
 * error under 1e-2, and in practice (random rounding directions) a few
 * times less; the printed worst err/tol says how close a run came. */
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
    unsigned acts;              /* bits 1 << ct_act index to run (0: every activation dtype) */
    int sample;                 /* > 0: check every sample-th token and the last 8 (big cases) */
    int pad;                    /* q, k, v and out rows 16-byte aligned, out strided too */
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
    s->q_start[0] = 0;
    for (int i = 0; i < c->n_seqs; i++)
        s->q_start[i + 1] = s->q_start[i] + c->n_new[i];
    s->n_tok = s->q_start[c->n_seqs];
    s->table = ct_paged_table(c->n_seqs, c->kv_len, s->q_start, c->bs, &s->max_blocks, &s->pool,
                              &s->slot);
}

/* o[hd] = softmax(scale q.K) V over the first ctx positions of seq i, with tol. */
static void attend_ref(const struct setup *s, int seq, int ctx, int kvh, const double *q,
                       double scale, double *o, double *tol)
{
    const struct attn_case *c = s->c;
    const int32_t *row = s->table + seq * s->max_blocks;
    double *sc = xmalloc((size_t)ctx * sizeof *sc), mx = -INFINITY, dmax = 0;
    double *vmax = xmalloc((size_t)c->hd * sizeof *vmax);
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
    /* P rounded to 16 bits before a tensor-core P V (see the header) */
    double up = s->cdt == s->act && s->act != ZL_DTYPE_F32 ? ulp_half(s->act) : 0;
    double rel = up + 2 * (2 * es + (ctx + 16) * U32);
    for (int d = 0; d < c->hd; d++)
        o[d] = 0, tol[d] = 0, vmax[d] = 0;
    for (int p = 0; p < ctx; p++) {
        int64_t slot = (int64_t)row[p / c->bs] * c->bs + p % c->bs;
        const double *v = s->image + cache_index(s, slot, 1, kvh, 0);
        double w = exp(sc[p] - mx);
        den += w;
        for (int d = 0; d < c->hd; d++) {
            o[d] += w * v[d], tol[d] += w * fabs(v[d]);
            vmax[d] = fabs(v[d]) > vmax[d] ? fabs(v[d]) : vmax[d];
        }
    }
    double sub = s->cdt == ZL_DTYPE_F16 && s->act == ZL_DTYPE_F16 ? ctx * 0x1p-25 : 0;
    for (int d = 0; d < c->hd; d++) {
        o[d] /= den;
        tol[d] = ulp_half(s->act) * fabs(o[d]) + (rel * tol[d] + sub * vmax[d]) / den;
    }
    free(sc);
    free(vmax);
}

/* Compares the output rows (all, or every sample-th token and the last 8)
 * with the reference; with sampling, every element must still be finite
 * (the poison of an unwritten row is NaN). */
static void check_out(const struct setup *s, const double *qkv, int64_t width, const void *dout,
                      int64_t owidth, float scale, const char *what)
{
    const struct attn_case *c = s->c;
    size_t row = (size_t)c->hq * (size_t)c->hd, es = esize(s->act);
    size_t nall = (size_t)s->n_tok * (size_t)owidth;
    char *all = xmalloc((nall ? nall : 1) * es);
    dget(all, dout, nall * es);
    if (c->sample) {
        double *v = to_double(s->act, all, nall);
        size_t bad = nall;
        for (int tok = 0; tok < s->n_tok && bad == nall; tok++)
            for (size_t e = 0; e < row && bad == nall; e++)
                if (!isfinite(v[(size_t)tok * (size_t)owidth + e]))
                    bad = (size_t)tok * (size_t)owidth + e;
        ct_result(bad == nall, "%s: every element written and finite%s", what,
                  bad == nall ? "" : " (a NaN: unwritten or overflowed)");
        free(v);
    }
    int *pick = xmalloc((size_t)(s->n_tok ? s->n_tok : 1) * sizeof *pick), np = 0;
    for (int i = 0; i < c->n_seqs; i++)
        for (int t = 0; t < c->n_new[i]; t++)
            if (!c->sample || t % c->sample == 0 || t >= c->n_new[i] - 8)
                pick[np++] = s->q_start[i] + t;
    size_t no = (size_t)np * row;
    double *ref = xmalloc((no ? no : 1) * sizeof *ref), *tol = xmalloc((no ? no : 1) * sizeof *tol);
    char *got = xmalloc((no ? no : 1) * es);
    int group = c->hq / c->hkv;
    for (int n = 0; n < np; n++) {
        int tok = pick[n], i = 0;
        while (s->q_start[i + 1] <= tok)
            i++;
        int ctx = c->kv_len[i] - (s->q_start[i + 1] - tok) + 1;
        for (int h = 0; h < c->hq; h++) {
            size_t at = ((size_t)n * (size_t)c->hq + (size_t)h) * (size_t)c->hd;
            attend_ref(s, i, ctx, h / group,
                       qkv + (size_t)tok * (size_t)width + (size_t)h * (size_t)c->hd,
                       (double)scale, ref + at, tol + at);
        }
        memcpy(got + (size_t)n * row * es, all + (size_t)tok * (size_t)owidth * es, row * es);
    }
    ct_check(what, got, s->act, ref, tol, no);
    free(all);
    free(got);
    free(pick);
    free(ref);
    free(tol);
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
    /* fused qkv rows [n_tok, (hq + 2 hkv) hd + 1], or + 8 elements with pad
     * (16-byte aligned rows); out rows hq hd + 1 (+ 24 elements with pad) */
    int64_t width = (int64_t)(c->hq + 2 * c->hkv) * c->hd + (c->pad ? 8 : 1);
    int64_t owidth = (int64_t)c->hq * c->hd + (c->pad ? 24 : 1);
    size_t nq = (size_t)s.n_tok * (size_t)width;
    double *qkv;
    void *qkv_raw = rand_raw(act, nq ? nq : 1, -1, 1, &qkv);
    void *dqkv = dnew(qkv_raw, (nq ? nq : 1) * esize(act));
    struct zl_tensor tq, tk, tv, to;
    heads_view(&tq, act, s.n_tok, c->hq, c->hd, width, 0, dqkv);
    heads_view(&tk, act, s.n_tok, c->hkv, c->hd, width, (int64_t)c->hq * c->hd, dqkv);
    heads_view(&tv, act, s.n_tok, c->hkv, c->hd, width, (int64_t)(c->hq + c->hkv) * c->hd, dqkv);
    size_t ob = (size_t)s.n_tok * (size_t)owidth * esize(act);
    void *dout = dmalloc(ob ? ob : 16);
    dpoison(dout, ob);
    heads_view(&to, act, s.n_tok, c->hq, c->hd, owidth, 0, dout);
    char what[200];
    snprintf(what, sizeof what, "%s: q %s, cache %s, hq %d hkv %d hd %d bs %d, %d tokens, %d blocks%s",
             c->name, zl_dtype_name(act), zl_dtype_name(cdt), c->hq, c->hkv, c->hd, c->bs,
             s.n_tok, s.pool, c->sample ? " (sampled rows)" : "");
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
        ct_sync(what))
        check_out(&s, qkv, width, dout, owidth, scale, what);
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

#define BF16_ONLY (1u << 1)
#define HALF_ONLY (1u << 1 | 1u << 2) /* bf16 and f16: the tensor-core kernel */

static const struct attn_case cases[] = {
    {"decode GQA", 5, {1, 1, 1, 1, 1}, {1, 17, 100, 513, 2049}, 32, 8, 128, 16, 1, 0, 0, 0},
    {"varlen prefill GQA-3", 3, {1, 37, 130}, {1, 37, 130}, 12, 4, 64, 16, 1, 0, 0, 0},
    {"chunked prefill on a 4100-token prefix + long decode, MQA", 2, {160, 1}, {4260, 4097},
     8, 1, 128, 16, 1, 0, 0, 0},
    {"MHA hd 80 bs 32, a sequence with no new token", 4, {5, 1, 0, 64}, {70, 33, 50, 64},
     10, 10, 80, 32, 0, 0, 0, 0},
    {"hd 256 bs 8", 2, {3, 1}, {40, 9}, 4, 2, 256, 8, 1, 0, 0, 0},
    /* the tensor-core prefill kernel */
    {"2048-token prompt, Llama-3.1-8B layer (GQA 32/8)", 1, {2048}, {2048}, 32, 8, 128, 16, 1,
     BF16_ONLY, 29, 1},
    {"prompt hd 64 GQA 8/2, aligned strided q/out", 1, {300}, {300}, 8, 2, 64, 16, 1, HALF_ONLY,
     0, 1},
    {"odd lengths 1/17/0/100/333 in one batch", 5, {1, 17, 0, 100, 333}, {1, 17, 40, 100, 333},
     16, 4, 128, 16, 1, 0, 0, 0},
    {"chunked prefill, shuffled 16-token blocks, plus decodes", 4, {200, 64, 1, 129},
     {900, 64, 77, 1153}, 8, 2, 128, 16, 1, HALF_ONLY, 0, 1},
    {"chunked prefill hd 64, odd-width views", 2, {100, 250}, {355, 251}, 8, 4, 64, 16, 1,
     HALF_ONLY, 0, 0},
    {"MHA 8/8 hd 64, bs 32", 2, {130, 70}, {130, 300}, 8, 8, 64, 32, 1, HALF_ONLY, 0, 1},
    {"MQA 8/1 hd 128, 257 tokens", 1, {257}, {257}, 8, 1, 128, 16, 1, HALF_ONLY, 0, 0},
    /* the wgmma kernel's edges (H100/H200): a second warpgroup with no rows
     * or a few, 8- and 32-token blocks, a chunk's rows over a cached prefix */
    {"prompts of 64/65/127/128/129 tokens, bs 8", 5, {64, 65, 127, 128, 129},
     {64, 65, 127, 128, 129}, 8, 2, 128, 8, 1, HALF_ONLY, 0, 1},
    {"chunks of 63 and 190 rows over 1000 and 77 cached, MHA 4/4 hd 128, bs 32", 2, {63, 190},
     {1063, 267}, 4, 4, 128, 32, 1, HALF_ONLY, 0, 0},
    /* mixed steps, decodes first as the scheduler orders them: the decode
     * kernel takes the leading one-row sequences, the flash kernel the rest */
    {"mixed step: 3 decodes then 2 prefill chunks (GQA 32/8)", 5, {1, 1, 1, 200, 64},
     {513, 2049, 77, 900, 64}, 32, 8, 128, 16, 1, HALF_ONLY, 0, 0},
    {"mixed step hd 64: a decode then a prompt and a 1-token chunk", 3, {1, 130, 1},
     {40, 130, 300}, 8, 2, 64, 16, 1, HALF_ONLY, 0, 1},
};

int main(void)
{
    int rc = ct_setup("attention");
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int a = 0; a < ct_n_act(); a++) {
            enum zl_dtype act = ct_act(a);
            if (cases[i].acts && !(cases[i].acts & 1u << a))
                continue;
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
