/* kv_write and paged attention of the CPU backend through the op table:
 * varlen batches mixing prefill, chunked prefill (earlier tokens already in
 * the cache) and decode over several blocks; MHA, GQA and MQA; f32, f16
 * and bf16 caches; q/k/v as views of one fused QKV output.  The pool is
 * poisoned with NaN bytes and the block tables are shuffled, so any read of
 * a wrong slot, block or layer shows. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "test_cpu_ops.h"

struct seqspec {
    int32_t cached, n_new;      /* tokens already in the cache, tokens of this step */
};

struct attn_setup {
    enum zl_dtype dt;
    int32_t bs, hq, hk, hd;
    uint64_t perm_stream;       /* which shuffle of the pool blocks */
};

#define N_LAYERS 2
#define LAYER 1                 /* the layer written and read; layer 0 must stay poisoned */

/* Token j of sequence s: q, k, v rows [h, hd] drawn from a stream of (s, j)
 * alone, so a chunked or reordered run sees the same values. */
static void token_rows(int s, int32_t j, const struct attn_setup *a, float *q, float *k, float *v)
{
    rng_seed(0x5eed0000ull + (uint64_t)s * 100003u + (uint64_t)j);
    for (int32_t i = 0; i < a->hq * a->hd; i++)
        q[i] = rng_uniform(-1, 1);
    for (int32_t i = 0; i < a->hk * a->hd; i++) {
        k[i] = rng_uniform(-1, 1);
        v[i] = rng_uniform(-2, 2);
    }
}

/* f32 values as the cache holds them (rounded to dt). */
static double rounded(enum zl_dtype dt, float x)
{
    uint32_t buf = 0;
    float back;
    zl_dtype_convert(dt, &buf, ZL_DTYPE_F32, &x, 1);
    zl_dtype_convert(ZL_DTYPE_F32, &back, dt, &buf, 1);
    return back;
}

/* Runs one batch: kv_write of the cached tokens (an earlier step), then
 * kv_write of this step's tokens and attention; checks the cache bytes and
 * the output against a double reference.  Returns out [n_new total, hq, hd]. */
static float *run_attention(struct zl_bctx *ctx, const struct attn_setup *a,
                            const struct seqspec *seqs, int n_seqs)
{
    const size_t el = zl_dtype_row_bytes(a->dt, 1);
    const int32_t width = (a->hq + 2 * a->hk) * a->hd, bs = a->bs;
    int32_t max_blocks = 1, total_blocks = 0, n_tok = 0;
    for (int s = 0; s < n_seqs; s++) {
        int32_t nb = (seqs[s].cached + seqs[s].n_new + bs - 1) / bs;
        max_blocks = nb + 1 > max_blocks ? nb + 1 : max_blocks;
        total_blocks += nb;
        n_tok += seqs[s].n_new;
    }
    const int32_t n_blocks = total_blocks + 3;
    struct zl_kv_cache cache = {.block_size = bs, .n_layers = N_LAYERS, .n_kv_heads = a->hk,
                                .head_dim = a->hd, .dtype = a->dt};
    cache.block_stride = (size_t)N_LAYERS * 2 * (size_t)(bs * a->hk * a->hd) * el + 64;
    unsigned char *pool = xmalloc((size_t)n_blocks * cache.block_stride);
    memset(pool, 0xff, (size_t)n_blocks * cache.block_stride);   /* NaN in every dtype */
    cache.base = pool;

    /* shuffled block ids; unused table entries -1 */
    int32_t *perm = xmalloc((size_t)n_blocks * 4), *table = xmalloc((size_t)(n_seqs * max_blocks) * 4);
    for (int32_t i = 0; i < n_blocks; i++)
        perm[i] = i;
    rng_seed(a->perm_stream);
    for (int32_t i = n_blocks - 1; i > 0; i--) {
        int32_t j = rng_int(0, i), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int s = 0, next = 0; s < n_seqs; s++)
        for (int32_t b = 0; b < max_blocks; b++)
            table[s * max_blocks + b] = b * bs < seqs[s].cached + seqs[s].n_new ? perm[next++] : -1;

    /* two steps: 0 = the cached tokens, 1 = this step's tokens */
    float *out = NULL, *qkv = NULL;
    int32_t *q_start = xmalloc((size_t)(n_seqs + 1) * 4), *kv_len = xmalloc((size_t)n_seqs * 4);
    for (int step = 0; step < 2; step++) {
        int32_t n = 0;
        for (int s = 0; s < n_seqs; s++)
            n += step ? seqs[s].n_new : seqs[s].cached;
        int32_t *slot = xmalloc((size_t)n * 4 + 4);
        free(qkv);
        qkv = xmalloc((size_t)n * (size_t)width * 4 + 4);
        q_start[0] = 0;
        for (int s = 0, i = 0; s < n_seqs; s++) {
            int32_t first = step ? seqs[s].cached : 0, cnt = step ? seqs[s].n_new : seqs[s].cached;
            for (int32_t t = 0; t < cnt; t++, i++) {
                int32_t p = first + t;
                float *row = qkv + (size_t)i * (size_t)width;
                token_rows(s, p, a, row, row + a->hq * a->hd, row + (a->hq + a->hk) * a->hd);
                slot[i] = table[s * max_blocks + p / bs] * bs + p % bs;
            }
            q_start[s + 1] = q_start[s] + cnt;
            kv_len[s] = first + cnt;
        }
        struct zl_attn_batch batch = {.n_seqs = n_seqs, .max_blocks = max_blocks,
                                      .q_start = q_start, .kv_len = kv_len,
                                      .block_table = table, .slot = slot};
        struct zl_tensor tq, tk, tv;
        make_tensor(&tq, ZL_DTYPE_F32, 3, (int64_t[]){n, a->hq, a->hd}, qkv);
        tq.nb[0] = (int64_t)width * 4;
        tk = tq;
        tk.ne[1] = a->hk;
        tk.data = qkv + a->hq * a->hd;
        tv = tk;
        tv.data = qkv + (a->hq + a->hk) * a->hd;
        cr_assert_eq(be->kv_write(ctx, &cache, LAYER, &tk, &tv, &batch), ZL_OK, "%s",
                     zl_last_error());
        if (step == 1) {
            out = xmalloc((size_t)n * (size_t)(a->hq * a->hd) * 4 + 4);
            struct zl_tensor to;
            make_tensor(&to, ZL_DTYPE_F32, 3, (int64_t[]){n, a->hq, a->hd}, out);
            cr_assert_eq(be->attention(ctx, &to, &tq, &cache, LAYER, &batch,
                                       1.0f / sqrtf((float)a->hd)), ZL_OK, "%s", zl_last_error());
        }
        free(slot);
    }

    /* cache contents: every token of every sequence, bit for bit */
    float *q = xmalloc((size_t)(a->hq * a->hd) * 4), *k = xmalloc((size_t)(a->hk * a->hd) * 4);
    float *v = xmalloc((size_t)(a->hk * a->hd) * 4);
    unsigned char *want = xmalloc((size_t)(a->hk * a->hd) * el);
    size_t row = (size_t)(a->hk * a->hd) * el;
    for (int s = 0; s < n_seqs; s++)
        for (int32_t p = 0; p < seqs[s].cached + seqs[s].n_new; p++) {
            token_rows(s, p, a, q, k, v);
            unsigned char *blk = pool + (size_t)table[s * max_blocks + p / bs] * cache.block_stride;
            for (int kv = 0; kv < 2; kv++) {
                zl_dtype_convert(a->dt, want, ZL_DTYPE_F32, kv ? v : k, (size_t)(a->hk * a->hd));
                cr_expect(!memcmp(blk + ((size_t)(LAYER * 2 + kv) * (size_t)bs + (size_t)(p % bs)) * row,
                                  want, row), "kv_write: seq %d token %d %s differs", s, p, kv ? "V" : "K");
                for (size_t i = 0; i < row; i++)   /* same slot of layer 0: untouched */
                    cr_expect_eq(blk[((size_t)kv * (size_t)bs + (size_t)(p % bs)) * row + i], 0xff,
                                 "layer 0 written");
            }
        }

    /* reference: double scores and softmax over the rounded cache values.
     * Tolerance per (token, head), max|V| times: 2 x the score error bound
     * (2e-6 * scale * max_j sum|q k_j|, f32 dots as in linear) + L * 2^-23
     * (expf and the running f32 sums over L positions) + 1e-6; a wrong or
     * missing position moves the output by ~max|V| / L, far more. */
    double *sc = xmalloc(4096 * sizeof(double));
    const double scale = 1.0f / sqrtf((float)a->hd);
    for (int s = 0, i = 0; s < n_seqs; s++)
        for (int32_t t = 0; t < seqs[s].n_new; t++, i++) {
            int32_t L = seqs[s].cached + t + 1;
            cr_assert_leq(L, 4096);
            double (*kr)[a->hk * a->hd] = xmalloc((size_t)L * sizeof *kr);
            double (*vr)[a->hk * a->hd] = xmalloc((size_t)L * sizeof *vr);
            for (int32_t p = 0; p < L; p++) {
                token_rows(s, p, a, q, k, v);
                for (int32_t e = 0; e < a->hk * a->hd; e++)
                    kr[p][e] = rounded(a->dt, k[e]), vr[p][e] = rounded(a->dt, v[e]);
            }
            token_rows(s, L - 1, a, q, k, v);
            for (int32_t h = 0; h < a->hq; h++) {
                int32_t kvh = h / (a->hq / a->hk);
                double mx = -INFINITY, sum = 0, qk_mag = 0, vmax = 0;
                for (int32_t p = 0; p < L; p++) {
                    double d = 0, mag = 0;
                    for (int32_t e = 0; e < a->hd; e++) {
                        d += q[h * a->hd + e] * kr[p][kvh * a->hd + e];
                        mag += fabs(q[h * a->hd + e] * kr[p][kvh * a->hd + e]);
                        vmax = fmax(vmax, fabs(vr[p][kvh * a->hd + e]));
                    }
                    sc[p] = d * scale;
                    mx = fmax(mx, sc[p]);
                    qk_mag = fmax(qk_mag, mag);
                }
                for (int32_t p = 0; p < L; p++)
                    sum += (sc[p] = exp(sc[p] - mx));
                double tol = vmax * (2 * 2e-6 * scale * qk_mag + L * 0x1p-23 + 1e-6);
                for (int32_t e = 0; e < a->hd; e++) {
                    double ref = 0;
                    for (int32_t p = 0; p < L; p++)
                        ref += sc[p] * vr[p][kvh * a->hd + e];
                    ref /= sum;
                    float got = out[((size_t)i * (size_t)a->hq + (size_t)h) * (size_t)a->hd + (size_t)e];
                    if (!(fabs(got - ref) <= tol)) {
                        cr_expect(0, "attention %s bs=%d hq=%d hk=%d hd=%d: seq %d token %d head "
                                  "%d dim %d: got %.9g want %.9g (tol %.3g)", zl_dtype_name(a->dt),
                                  bs, a->hq, a->hk, a->hd, s, t, h, e, (double)got, ref, tol);
                        e = a->hd, h = a->hq;
                    }
                }
            }
            free(kr), free(vr);
        }
    free(sc), free(q), free(k), free(v), free(want), free(perm), free(table), free(q_start),
        free(kv_len), free(qkv), free(pool);
    return out;
}

TestSuite(cpu_attn, .init = cpuops_setup, .fini = cpuops_teardown);

static const enum zl_dtype cache_dts[] = {ZL_DTYPE_F32, ZL_DTYPE_F16, ZL_DTYPE_BF16};

#define FOR_EACH_CTX(ctx)                                                                        \
    for (int m_ = 0; m_ < cpuops_n_modes(); m_++)                                                \
        for (int t_ = 1; t_ <= 3; t_ += 2)                                                       \
            for (struct zl_bctx *ctx = cpuops_open(m_, t_); ctx; be->close(ctx), ctx = NULL)

/* Varlen GQA batch: fresh prefill, chunked prefill onto cached tokens,
 * a one-token sequence, a decode, a long chunk crossing many blocks. */
Test(cpu_attn, gqa_varlen_chunked_prefill_and_decode)
{
    static const struct seqspec seqs[] = {{0, 5}, {7, 3}, {0, 1}, {20, 1}, {33, 17}};
    FOR_EACH_CTX(ctx) {
        for (int d = 0; d < 3; d++) {
            struct attn_setup a = {cache_dts[d], 4, 8, 2, 64, 1};
            free(run_attention(ctx, &a, seqs, 5));
        }
    }
}

/* MQA decode-only batch over several 16-token blocks, including a context
 * that ends exactly on a block boundary and a first token. */
Test(cpu_attn, mqa_decode_several_blocks)
{
    static const struct seqspec seqs[] = {{50, 1}, {15, 1}, {16, 1}, {0, 1}};
    FOR_EACH_CTX(ctx) {
        for (int d = 0; d < 3; d++) {
            struct attn_setup a = {cache_dts[d], 16, 6, 1, 32, 2};
            free(run_attention(ctx, &a, seqs, 4));
        }
    }
}

/* MHA with an odd block size and head_dim (no SIMD-width multiples), a
 * sequence with no new tokens in the batch, and blocks larger than one
 * softmax tile (128 > 64 positions). */
Test(cpu_attn, mha_odd_sizes_and_big_blocks)
{
    static const struct seqspec odd[] = {{4, 4}, {9, 0}, {0, 6}};
    static const struct seqspec big[] = {{200, 1}, {0, 70}};
    FOR_EACH_CTX(ctx) {
        for (int d = 0; d < 3; d++) {
            struct attn_setup a = {cache_dts[d], 3, 3, 3, 17, 3};
            free(run_attention(ctx, &a, odd, 3));
            struct attn_setup b = {cache_dts[d], 128, 4, 2, 128, 4};
            free(run_attention(ctx, &b, big, 2));
        }
    }
}

/* The same token's output is bitwise the same whether its sequence was
 * prefilled at once, in chunks, decoded alone, or batched with others, on
 * other cache blocks: greedy results may not depend on batching (DESIGN §4). */
Test(cpu_attn, batch_and_chunk_invariant)
{
    const int64_t hq = 4, hd = 64, row = hq * hd;
    FOR_EACH_CTX(ctx) {
        for (size_t d = 0; d < sizeof cache_dts / sizeof *cache_dts; d++) {
            const char *dn = zl_dtype_name(cache_dts[d]);
            struct attn_setup a = {cache_dts[d], 16, (int32_t)hq, 2, (int32_t)hd, 5};
            static const struct seqspec whole[] = {{0, 20}};
            float *all = run_attention(ctx, &a, whole, 1);
            /* seq 0 of each batch draws the same rows (token_rows): its last
             * 13 tokens now come as a chunk onto 7 cached ones, next to another
             * sequence, on other blocks */
            struct seqspec again[] = {{7, 13}, {2, 3}};
            a.perm_stream = 6;
            float *part = run_attention(ctx, &a, again, 2);
            cr_expect(!memcmp(part, all + 7 * row, (size_t)(13 * row) * 4),
                      "%s, %s cache: chunked prefill differs from one prefill", cpuops_mode(m_), dn);
            struct seqspec dec[] = {{19, 1}};
            a.perm_stream = 7;
            float *one = run_attention(ctx, &a, dec, 1);
            cr_expect(!memcmp(one, all + 19 * row, (size_t)row * 4),
                      "%s, %s cache: decode differs from prefill", cpuops_mode(m_), dn);
            free(all), free(part), free(one);
        }
    }
}

/* Contexts of several softmax segments (512 positions): the decode of the
 * last token splits its context over the threads (3 threads, one kv group
 * of 3 heads: fewer tasks than threads) and must give the bits of the one
 * prefill that walked it in a single task; with three segments a merge in
 * any other order would round differently.  run_attention checks both
 * against the double reference.  One kernel mode: the split is above it. */
Test(cpu_attn, long_context_split_decode_matches_prefill)
{
    const int64_t hq = 3, hd = 32, row = hq * hd, n = 1100;
    for (int t_ = 1; t_ <= 3; t_ += 2) {
        struct zl_bctx *ctx = cpuops_open(cpuops_n_modes() - 1, t_);
        for (int d = 0; d < 2; d++) {
            struct attn_setup a = {d ? ZL_DTYPE_BF16 : ZL_DTYPE_F32, 16, (int32_t)hq, 1, (int32_t)hd, 8};
            static const struct seqspec whole[] = {{0, n}};
            float *all = run_attention(ctx, &a, whole, 1);
            for (int64_t last = 513; last <= n; last += n - 513) {
                struct seqspec dec[] = {{(int32_t)last - 1, 1}};
                a.perm_stream = 9;
                float *one = run_attention(ctx, &a, dec, 1);
                cr_expect(!memcmp(one, all + (last - 1) * row, (size_t)row * 4),
                          "%d threads, %s cache, context %lld: split decode differs from the prefill",
                          t_, zl_dtype_name(a.dt), (long long)last);
                free(one);
            }
            free(all);
        }
        be->close(ctx);
    }
}
