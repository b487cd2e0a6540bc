/* CPU backend ops through the op table, as a model calls them: linear,
 * embedding, rms_norm, silu_mul, add, copy, rope and open, against plain
 * double-precision references on fresh random inputs (seed printed; set
 * ZL_TEST_SEED to repeat), in every kernel mode (scalar, AVX2) and with 1
 * and 3 threads.  Attention and kv_write are in test_cpu_ops_attn.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "test_cpu_ops.h"

#define F32 ZL_DTYPE_F32
#define F16 ZL_DTYPE_F16
#define BF16 ZL_DTYPE_BF16
#define NO_BIAS ZL_DTYPE_COUNT
#define SENTINEL 12345.0f

static const int thread_counts[] = {1, 3};
#define FOR_EACH_CTX(ctx)                                                                        \
    for (int m_ = 0; m_ < cpuops_n_modes(); m_++)                                                \
        for (int t_ = 0; t_ < 2; t_++)                                                           \
            for (struct zl_bctx *ctx = cpuops_open(m_, thread_counts[t_]); ctx;                  \
                 be->close(ctx), ctx = NULL)

TestSuite(cpu_ops, .init = cpuops_setup, .fini = cpuops_teardown);

/* ---- linear ---- */

/* out[n, o] = x[n, k] @ w[o, k]^T + bias, x and out optionally strided views.
 * Tolerance: 2e-6 * sum_k |x w| (+|bias|), about 32 f32 ulps of the terms'
 * magnitude.  The weights are rounded to wdt identically in the reference,
 * so only the order of the f32 additions differs; random-sign sums of k
 * terms drift ~sqrt(k) ulps per partial sum, far inside that, while any
 * dropped or misplaced term moves the result by ~1/k of the sum (>= 2.4e-4
 * here), far outside it. */
static void check_linear(struct zl_bctx *ctx, int64_t n, int64_t k, int64_t o, enum zl_dtype wdt,
                         enum zl_dtype bdt, int strided)
{
    int64_t xw = strided ? k + 5 : k, xc0 = strided ? 2 : 0;
    int64_t ow = strided ? o + 3 : o, oc0 = strided ? 1 : 0;
    double *xr, *wr, *br = NULL;
    float *xb = rand_elems(F32, (size_t)(n * xw), -1, 1, &xr);
    void *wb = rand_elems(wdt, (size_t)(o * k), -1, 1, &wr);
    void *bb = bdt != NO_BIAS ? rand_elems(bdt, (size_t)o, -1, 1, &br) : NULL;
    float *ob = xmalloc((size_t)(n * ow) * sizeof(float));
    for (int64_t i = 0; i < n * ow; i++)
        ob[i] = SENTINEL;
    struct zl_tensor x, w, b, out;
    make_view2(&x, F32, n, k, xw, xc0, xb);
    make_tensor(&w, wdt, 2, (int64_t[]){o, k}, wb);
    if (bb)
        make_tensor(&b, bdt, 1, (int64_t[]){o}, bb);
    make_view2(&out, F32, n, o, ow, oc0, ob);
    cr_assert_eq(be->linear(ctx, &out, &x, &w, bb ? &b : NULL), ZL_OK, "%s", zl_last_error());

    double *ref = xmalloc((size_t)(n * o) * sizeof(double)), *tol = xmalloc((size_t)(n * o) * sizeof(double));
    float *got = xmalloc((size_t)(n * o) * sizeof(float));
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < o; c++) {
            double s = br ? br[c] : 0, a = br ? fabs(br[c]) : 0;
            for (int64_t i = 0; i < k; i++) {
                double t = xr[r * xw + xc0 + i] * wr[c * k + i];
                s += t;
                a += fabs(t);
            }
            ref[r * o + c] = s;
            tol[r * o + c] = 2e-6 * a;
            got[r * o + c] = ob[r * ow + oc0 + c];
        }
    char what[128];
    snprintf(what, sizeof what, "linear n=%lld k=%lld o=%lld w=%s bias=%s%s", (long long)n,
             (long long)k, (long long)o, zl_dtype_name(wdt), bdt == NO_BIAS ? "none" : zl_dtype_name(bdt),
             strided ? " strided" : "");
    expect_close(got, ref, tol, (size_t)(n * o), what);
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < ow; c++)
            if (c < oc0 || c >= oc0 + o)
                cr_expect_eq(ob[r * ow + c], SENTINEL, "%s: wrote outside out", what);
    free(xb), free(wb), free(bb), free(ob), free(xr), free(wr), free(br), free(ref), free(tol),
        free(got);
}

Test(cpu_ops, linear_sizes_dtypes_views)
{
    static const int64_t shapes[][3] = {{1, 1, 1},  {1, 3, 17},  {1, 4097, 33}, {3, 127, 5},
                                        {5, 17, 127}, {17, 64, 65}, {4, 256, 8},   {9, 8, 3}};
    static const enum zl_dtype wdts[] = {F32, F16, BF16};
    FOR_EACH_CTX(ctx) {
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int d = 0; d < 3; d++) {
                rng_seed(s * 16 + (size_t)d);
                check_linear(ctx, shapes[s][0], shapes[s][1], shapes[s][2], wdts[d],
                             s % 3 == 0 ? NO_BIAS : wdts[(d + s) % 3], (int)(s % 2));
            }
    }
}

/* A row's result must not depend on the batch it came in nor on the thread
 * count (bitwise): greedy outputs may not change with batching (DESIGN §4). */
Test(cpu_ops, linear_batch_and_thread_invariant)
{
    const int64_t n = 7, k = 301, o = 45;
    rng_seed(99);
    float *x = rand_elems(F32, (size_t)(n * k), -1, 1, NULL);
    void *w = rand_elems(BF16, (size_t)(o * k), -1, 1, NULL);
    float *all = xmalloc((size_t)(n * o) * sizeof(float)), *one = xmalloc((size_t)o * sizeof(float));
    float *first = xmalloc((size_t)(n * o) * sizeof(float));
    struct zl_tensor tx, tw, to, x1, o1;
    make_tensor(&tx, F32, 2, (int64_t[]){n, k}, x);
    make_tensor(&tw, BF16, 2, (int64_t[]){o, k}, w);
    make_tensor(&to, F32, 2, (int64_t[]){n, o}, all);
    for (int m = 0; m < cpuops_n_modes(); m++) {
        for (int t = 0; t < 2; t++) {
            struct zl_bctx *ctx = cpuops_open(m, thread_counts[t]);
            cr_assert_eq(be->linear(ctx, &to, &tx, &tw, NULL), ZL_OK, "%s", zl_last_error());
            if (t == 0)
                memcpy(first, all, (size_t)(n * o) * sizeof(float));
            else
                cr_expect(!memcmp(first, all, (size_t)(n * o) * sizeof(float)),
                          "%s: 1 and 3 threads differ", cpuops_mode(m));
            for (int64_t r = 0; r < n; r++) {
                make_tensor(&x1, F32, 2, (int64_t[]){1, k}, x + r * k);
                make_tensor(&o1, F32, 2, (int64_t[]){1, o}, one);
                cr_assert_eq(be->linear(ctx, &o1, &x1, &tw, NULL), ZL_OK);
                cr_expect(!memcmp(one, all + r * o, (size_t)o * sizeof(float)),
                              "%s: row %lld alone differs from the batch", cpuops_mode(m),
                              (long long)r);
            }
            be->close(ctx);
        }
    }
    free(x), free(w), free(all), free(one), free(first);
}

/* The worker pool's hand-offs: thousands of linears on 3 threads whose
 * sizes wake 1, 2 or 3 of them, with pauses past the pool's spin (100 us)
 * now and then so the workers and the caller also take the paths that
 * block.  Every result is compared bitwise with the one-thread run: a job
 * run twice, skipped or read half-published shows as a wrong row. */
Test(cpu_ops, pool_handoffs_spin_and_block)
{
    const int64_t k = 256, outs[3] = {40, 300, 1024};  /* 10k, 77k, 262k multiply-adds */
    rng_seed(7);
    float *x = rand_elems(F32, (size_t)k, -1, 1, NULL);
    void *w = rand_elems(F16, (size_t)(outs[2] * k), -1, 1, NULL);
    float *want[3], *got = xmalloc((size_t)outs[2] * sizeof(float));
    struct zl_tensor tx, tw, to;
    make_tensor(&tx, F32, 2, (int64_t[]){1, k}, x);
    struct zl_bctx *one = cpuops_open(cpuops_n_modes() - 1, 1);
    struct zl_bctx *ctx = cpuops_open(cpuops_n_modes() - 1, 3);
    for (int s = 0; s < 3; s++) {
        want[s] = xmalloc((size_t)outs[s] * sizeof(float));
        make_tensor(&tw, F16, 2, (int64_t[]){outs[s], k}, w);
        make_tensor(&to, F32, 2, (int64_t[]){1, outs[s]}, want[s]);
        cr_assert_eq(be->linear(one, &to, &tx, &tw, NULL), ZL_OK, "%s", zl_last_error());
    }
    for (int i = 0; i < 3000; i++) {
        int s = rng_int(0, 2);
        make_tensor(&tw, F16, 2, (int64_t[]){outs[s], k}, w);
        make_tensor(&to, F32, 2, (int64_t[]){1, outs[s]}, got);
        cr_assert_eq(be->linear(ctx, &to, &tx, &tw, NULL), ZL_OK, "%s", zl_last_error());
        cr_assert(!memcmp(got, want[s], (size_t)outs[s] * sizeof(float)), "call %d (%lld outputs)",
                  i, (long long)outs[s]);
        if (i % 50 == 49)
            usleep(300);
    }
    be->close(ctx);
    be->close(one);
    for (int s = 0; s < 3; s++)
        free(want[s]);
    free(x), free(w), free(got);
}

/* ---- embedding and copy: exact conversions ---- */

Test(cpu_ops, embedding_rows_exact)
{
    static const enum zl_dtype dts[] = {F32, F16, BF16};
    const int64_t vocab = 37, n = 9;
    FOR_EACH_CTX(ctx) {
        for (int td = 0; td < 3; td++)
            for (int od = 0; od < 3; od++)
                for (int64_t d = 1; d <= 4097; d = d * 16 + 1) {
                    void *table = rand_elems(dts[td], (size_t)(vocab * d), -2, 2, NULL);
                    int32_t ids[9] = {0, (int32_t)vocab - 1, 5, 5};
                    for (int i = 4; i < n; i++)
                        ids[i] = rng_int(0, (int)vocab - 1);
                    size_t rb = zl_dtype_row_bytes(dts[od], (size_t)d);
                    char *out = xmalloc(rb * (size_t)n), *want = xmalloc(rb);
                    struct zl_tensor to, tt, tk;
                    make_tensor(&to, dts[od], 2, (int64_t[]){n, d}, out);
                    make_tensor(&tt, dts[td], 2, (int64_t[]){vocab, d}, table);
                    make_tensor(&tk, ZL_DTYPE_I32, 1, (int64_t[]){n}, ids);
                    cr_assert_eq(be->embedding(ctx, &to, &tt, &tk), ZL_OK, "%s", zl_last_error());
                    for (int i = 0; i < n; i++) {
                        zl_dtype_convert(dts[od], want, dts[td],
                                         (char *)table + zl_dtype_row_bytes(dts[td], (size_t)(ids[i] * d)),
                                         (size_t)d);
                        cr_expect(!memcmp(out + rb * (size_t)i, want, rb),
                                  "embedding %s->%s d=%lld: row %d differs", zl_dtype_name(dts[td]),
                                  zl_dtype_name(dts[od]), (long long)d, i);
                    }
                    ids[3] = (int32_t)vocab;
                    expect_error(be->embedding(ctx, &to, &tt, &tk), ZL_ERANGE, "cpu embedding",
                                 "token id = vocab");
                    ids[3] = -1;
                    expect_error(be->embedding(ctx, &to, &tt, &tk), ZL_ERANGE, "cpu embedding",
                                 "token id -1");
                    free(table), free(out), free(want);
                }
    }
}

/* Conversions are bit-exact with libzlight's (the plugin carries its own
 * copy): every f16 and bf16 pattern decoded, f32 boundary values and
 * random bit patterns (NaN, Inf, subnormals, ties) encoded. */
Test(cpu_ops, copy_conversions_bit_exact)
{
    const int64_t n = 65536 + 4096;
    uint16_t *h = xmalloc((size_t)n * 2), *got16 = xmalloc((size_t)n * 2), *want16 = xmalloc((size_t)n * 2);
    uint32_t *f = xmalloc((size_t)n * 4), *got32 = xmalloc((size_t)n * 4), *want32 = xmalloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++)
        h[i] = (uint16_t)i;
    static const uint32_t special[] = {0, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00001u,
                                       0xffbfffffu, 0x00000001u, 0x33000000u, 0x33000001u,
                                       0x387fe000u, 0x38800000u, 0x477fe000u, 0x477ff000u,
                                       0x477fefffu, 0x7f7fffffu, 0x3f808000u, 0x3f818000u};
    for (int64_t i = 0; i < n; i++)
        f[i] = i < 17 ? special[i] : (uint32_t)rng_u64();
    struct { enum zl_dtype dd, sd; void *src, *got, *want; size_t es; } cases[] = {
        {F32, F16, h, got32, want32, 4}, {F32, BF16, h, got32, want32, 4},
        {F16, F32, f, got16, want16, 2}, {BF16, F32, f, got16, want16, 2},
        {BF16, F16, h, got16, want16, 2}, {F16, BF16, h, got16, want16, 2},
    };
    FOR_EACH_CTX(ctx) {
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            struct zl_tensor td, ts;
            make_tensor(&td, cases[c].dd, 2, (int64_t[]){n / 64, 64}, cases[c].got);
            make_tensor(&ts, cases[c].sd, 2, (int64_t[]){n / 64, 64}, cases[c].src);
            cr_assert_eq(be->copy(ctx, &td, &ts), ZL_OK, "%s", zl_last_error());
            zl_dtype_convert(cases[c].dd, cases[c].want, cases[c].sd, cases[c].src, (size_t)n);
            for (int64_t i = 0; i < n; i++)
                if (memcmp((char *)cases[c].got + i * (int64_t)cases[c].es,
                           (char *)cases[c].want + i * (int64_t)cases[c].es, cases[c].es)) {
                    cr_expect(0, "copy %s->%s: element %lld differs", zl_dtype_name(cases[c].sd),
                              zl_dtype_name(cases[c].dd), (long long)i);
                    break;
                }
        }
    }
    free(h), free(got16), free(want16), free(f), free(got32), free(want32);
}

/* copy between strided row views (gathering logits rows). */
Test(cpu_ops, copy_strided_rows)
{
    const int64_t rows = 5, d = 300;
    uint16_t *src = rand_elems(BF16, (size_t)(rows * (d + 7)), -3, 3, NULL);
    float *dst = xmalloc((size_t)(rows * (d + 2)) * sizeof(float));
    FOR_EACH_CTX(ctx) {
        struct zl_tensor ts, td;
        for (int64_t i = 0; i < rows * (d + 2); i++)
            dst[i] = SENTINEL;
        make_view2(&ts, BF16, rows, d, d + 7, 4, src);
        make_view2(&td, F32, rows, d, d + 2, 1, dst);
        cr_assert_eq(be->copy(ctx, &td, &ts), ZL_OK, "%s", zl_last_error());
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < d + 2; c++) {
                float want = c == 0 || c == d + 1 ? SENTINEL : zl_bf16_to_f32(src[r * (d + 7) + 4 + c - 1]);
                if (memcmp(&dst[r * (d + 2) + c], &want, 4)) {
                    cr_expect(0, "copy strided: row %lld col %lld", (long long)r, (long long)c);
                    return;
                }
            }
    }
    free(src), free(dst);
}

/* ---- rms_norm, silu_mul, add ---- */

/* Residual: the f32 sum is exact to compare (one IEEE add).  Output:
 * relative 1e-6 (the kernel sums squares in double, then rounds the scale
 * and two products to f32: a few ulps). */
Test(cpu_ops, rms_norm_residual_alias)
{
    static const int64_t ds[] = {1, 3, 17, 4097};
    FOR_EACH_CTX(ctx) {
        for (int di = 0; di < 4; di++)
            for (int variant = 0; variant < 4; variant++) {
                int64_t n = variant & 1 ? 5 : 1, d = ds[di];
                int with_res = variant & 2, alias = di % 2;
                enum zl_dtype wdt = variant & 1 ? BF16 : F32;
                const float eps = 1e-5f;
                double *wr;
                float *x = rand_elems(F32, (size_t)(n * d), -2, 2, NULL);
                float *res = rand_elems(F32, (size_t)(n * d), -2, 2, NULL);
                float *res0 = xmalloc((size_t)(n * d) * 4), *x0 = xmalloc((size_t)(n * d) * 4);
                memcpy(res0, res, (size_t)(n * d) * 4);
                memcpy(x0, x, (size_t)(n * d) * 4);
                void *w = rand_elems(wdt, (size_t)d, 0.5f, 1.5f, &wr);
                float *out = alias ? x : xmalloc((size_t)(n * d) * 4);
                struct zl_tensor tx, tr, tw, to;
                make_tensor(&tx, F32, 2, (int64_t[]){n, d}, x);
                make_tensor(&tr, F32, 2, (int64_t[]){n, d}, res);
                make_tensor(&tw, wdt, 1, (int64_t[]){d}, w);
                make_tensor(&to, F32, 2, (int64_t[]){n, d}, out);
                cr_assert_eq(be->rms_norm(ctx, &to, &tx, with_res ? &tr : NULL, &tw, eps), ZL_OK,
                             "%s", zl_last_error());
                double *ref = xmalloc((size_t)(n * d) * 8), *tol = xmalloc((size_t)(n * d) * 8);
                for (int64_t r = 0; r < n; r++) {
                    double ss = 0;
                    for (int64_t i = 0; i < d; i++) {
                        float s = with_res ? x0[r * d + i] + res0[r * d + i] : x0[r * d + i];
                        if (with_res)
                            cr_expect_eq(res[r * d + i], s, "rms_norm: residual sum");
                        ss += (double)s * s;
                        ref[r * d + i] = s;
                    }
                    double scale = 1 / sqrt(ss / (double)d + eps);
                    for (int64_t i = 0; i < d; i++) {
                        ref[r * d + i] *= scale * wr[i];
                        tol[r * d + i] = 1e-6 * fabs(ref[r * d + i]) + 1e-30;
                    }
                }
                expect_close(out, ref, tol, (size_t)(n * d), "rms_norm");
                free(x), free(res), free(res0), free(x0), free(w), free(wr), free(ref), free(tol);
                if (!alias)
                    free(out);
            }
    }
}

/* gate and up as views of one fused [n, 2f] gate_up output, as a model
 * has them.  Tolerance relative 1e-6: expf and a division, a few ulps. */
Test(cpu_ops, silu_mul_fused_views)
{
    static const int64_t fs[] = {1, 17, 127, 1000};
    FOR_EACH_CTX(ctx) {
        for (int fi = 0; fi < 4; fi++) {
            const int64_t n = 3, f = fs[fi];
            double *gu_ref;
            float *gu = rand_elems(F32, (size_t)(n * 2 * f), -8, 8, &gu_ref);
            float *out = xmalloc((size_t)(n * f) * 4);
            double *ref = xmalloc((size_t)(n * f) * 8), *tol = xmalloc((size_t)(n * f) * 8);
            struct zl_tensor tg, tu, to;
            make_view2(&tg, F32, n, f, 2 * f, 0, gu);
            make_view2(&tu, F32, n, f, 2 * f, f, gu);
            make_tensor(&to, F32, 2, (int64_t[]){n, f}, out);
            cr_assert_eq(be->silu_mul(ctx, &to, &tg, &tu), ZL_OK, "%s", zl_last_error());
            for (int64_t r = 0; r < n; r++)
                for (int64_t i = 0; i < f; i++) {
                    double g = gu_ref[r * 2 * f + i], u = gu_ref[r * 2 * f + f + i];
                    ref[r * f + i] = g / (1 + exp(-g)) * u;
                    tol[r * f + i] = 1e-6 * fabs(ref[r * f + i]) + 1e-30;
                }
            expect_close(out, ref, tol, (size_t)(n * f), "silu_mul");
            free(gu), free(gu_ref), free(out), free(ref), free(tol);
        }
    }
}

/* One IEEE add per element: exact; out may alias a or b. */
Test(cpu_ops, add_exact_alias)
{
    const int64_t n = 3, d = 4097;
    FOR_EACH_CTX(ctx) {
        float *a = rand_elems(F32, (size_t)(n * d), -1, 1, NULL);
        float *b = rand_elems(F32, (size_t)(n * d), -1, 1, NULL);
        float *want = xmalloc((size_t)(n * d) * 4);
        for (int64_t i = 0; i < n * d; i++)
            want[i] = a[i] + b[i];
        struct zl_tensor ta, tb;
        make_tensor(&ta, F32, 2, (int64_t[]){n, d}, a);
        make_tensor(&tb, F32, 2, (int64_t[]){n, d}, b);
        cr_assert_eq(be->add(ctx, &tb, &ta, &tb), ZL_OK, "%s", zl_last_error());
        cr_expect(!memcmp(b, want, (size_t)(n * d) * 4), "add (out aliases b) differs");
        free(a), free(b), free(want);
    }
}

/* ---- rope ---- */

/* q and k are views into one fused qkv row [n, (hq + 2 hk) * hd] (v must
 * stay untouched).  The angle is the f32 product pos * inv_freq[j] in
 * both (HF computes it in f32); cos/sin in double in the reference.
 * Tolerance 1e-6 * (|x1| + |x2|) * attn_factor: cosf/sinf within an ulp
 * or two, then one rounded multiply-add. */
Test(cpu_ops, rope_fused_qkv_views)
{
    static const int64_t hds[] = {64, 6, 128};
    FOR_EACH_CTX(ctx) {
        for (int hi = 0; hi < 3; hi++)
            for (int partial = 0; partial < 2; partial++) {
                const int64_t n = 5, hq = 4, hk = 2, hd = hds[hi];
                const int32_t rot = partial ? (int32_t)(hd / 2 / 2 * 2) : (int32_t)hd;
                const int64_t width = (hq + 2 * hk) * hd;
                float inv_freq[64];
                for (int j = 0; j < rot / 2; j++)
                    inv_freq[j] = (float)pow(10000.0, -2.0 * j / rot);
                struct zl_rope rope = {.rot_dim = rot, .inv_freq = inv_freq,
                                       .attn_factor = partial ? 1.25f : 1.0f};
                int32_t pos[5] = {0, 1, 17, 4097, rng_int(0, 100000)};
                float *qkv = rand_elems(F32, (size_t)(n * width), -1, 1, NULL);
                float *orig = xmalloc((size_t)(n * width) * 4);
                memcpy(orig, qkv, (size_t)(n * width) * 4);
                struct zl_tensor tq, tk, tp;
                make_tensor(&tq, F32, 3, (int64_t[]){n, hq, hd}, qkv);
                tq.nb[0] = width * 4;
                tk = tq;
                tk.ne[1] = hk;
                tk.data = qkv + hq * hd;
                make_tensor(&tp, ZL_DTYPE_I32, 1, (int64_t[]){n}, pos);
                cr_assert_eq(be->rope(ctx, &tq, &tk, &tp, &rope), ZL_OK, "%s", zl_last_error());
                for (int64_t i = 0; i < n; i++)
                    for (int64_t h = 0; h < hq + 2 * hk; h++) {
                        const float *x0 = orig + i * width + h * hd, *x = qkv + i * width + h * hd;
                        int rotated = h < hq + hk;
                        for (int64_t j = 0; j < hd; j++) {
                            double want = x0[j], tol = 0;
                            if (rotated && j < rot) {
                                int64_t jj = j % (rot / 2);
                                double th = (double)((float)pos[i] * inv_freq[jj]);
                                double c = cos(th) * rope.attn_factor, s = sin(th) * rope.attn_factor;
                                double x1 = x0[jj], x2 = x0[jj + rot / 2];
                                want = j < rot / 2 ? x1 * c - x2 * s : x2 * c + x1 * s;
                                tol = 1e-6 * (fabs(x1) + fabs(x2)) * rope.attn_factor;
                            }
                            if (!(fabs(x[j] - want) <= tol)) {
                                cr_expect(0, "rope hd=%lld rot=%d: token %lld head %lld dim %lld: "
                                          "got %.9g want %.9g", (long long)hd, rot, (long long)i,
                                          (long long)h, (long long)j, (double)x[j], want);
                                i = n, h = hq + 2 * hk;
                                break;
                            }
                        }
                    }
                free(qkv), free(orig);
            }
    }
}

/* ---- instances ---- */

Test(cpu_ops, open_params_and_env)
{
    struct zl_bctx *ctx = NULL;
    struct zl_backend_open_params p = {.size = sizeof p, .device = 0, .threads = 0};
    cr_assert_eq(be->open(&p, &ctx), ZL_OK, "threads 0 = online cores: %s", zl_last_error());
    be->close(ctx);
    be->close(NULL);
    p.threads = -1;
    expect_error(be->open(&p, &ctx), ZL_EINVAL, "threads", "threads -1");
    p.threads = 1;
    p.device = 1;
    expect_error(be->open(&p, &ctx), ZL_EINVAL, "device 1", "device 1");
    p.device = 0;
    p.size = 4;
    expect_error(be->open(&p, &ctx), ZL_EINVAL, "params", "old params size");
    expect_error(be->open(NULL, &ctx), ZL_EINVAL, "params", "NULL params");
    p.size = sizeof p;
    setenv("ZLIGHT_CPU_SIMD", "sse9", 1);
    expect_error(be->open(&p, &ctx), ZL_EINVAL, "ZLIGHT_CPU_SIMD", "bad SIMD name");
    unsetenv("ZLIGHT_CPU_SIMD");
    ctx = cpuops_open(0, 1);
    cr_expect_eq(be->sync(ctx), ZL_OK);
    be->close(ctx);
}
