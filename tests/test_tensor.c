/* Tensor descriptors: init/strides, views, reshape, permute, rows, convert,
 * describe, and every error path's status. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <zlight/tensor.h>

static char buf[4096];  /* fake data: only addresses matter unless converting */

static void expect_err(int rc, int want, const char *needle)
{
    cr_assert_eq(rc, want, "status %d (%s), want %d; %s", rc, zl_status_str(rc), want,
                 zl_last_error());
    cr_assert(strstr(zl_last_error(), needle), "message \"%s\" lacks \"%s\"", zl_last_error(),
              needle);
}

Test(tensor, init_strides)
{
    struct zl_tensor t;
    int64_t shape[3] = {2, 3, 4};
    cr_assert_eq(zl_tensor_init(&t, ZL_DTYPE_F32, 3, shape, buf, ZL_TENSOR_HOST), ZL_OK);
    cr_assert_eq(t.n_dims, 3);
    cr_assert_eq(t.data, buf);
    cr_assert_null(t.name);
    cr_assert_eq(t.device, -1);
    cr_assert_eq(t.ne[0], 2); cr_assert_eq(t.ne[1], 3); cr_assert_eq(t.ne[2], 4);
    cr_assert_eq(t.ne[3], 1);
    cr_assert_eq(t.nb[0], 48); cr_assert_eq(t.nb[1], 16); cr_assert_eq(t.nb[2], 4);
    cr_assert_eq(t.nb[3], 0);
    cr_assert_eq(zl_tensor_nelements(&t), 24);
    cr_assert_eq(zl_tensor_nrows(&t), 6);
    cr_assert_eq(zl_tensor_nbytes(&t), 96);
    cr_assert(zl_tensor_is_contiguous(&t));

    int64_t q[2] = {3, 8};
    cr_assert_eq(zl_tensor_init(&t, ZL_DTYPE_Q4_PACKED, 2, q, buf, 0), ZL_OK);
    cr_assert_eq(t.nb[0], 4);
    cr_assert_eq(t.nb[1], 0);  /* a nibble has no byte stride */
    cr_assert_eq(zl_tensor_nbytes(&t), 12);
    cr_assert(zl_tensor_is_contiguous(&t));

    int64_t z[2] = {0, 5};
    cr_assert_eq(zl_tensor_init(&t, ZL_DTYPE_BF16, 2, z, NULL, ZL_TENSOR_HOST), ZL_OK);
    cr_assert_eq(zl_tensor_nelements(&t), 0);
    cr_assert_eq(zl_tensor_nrows(&t), 0);
    cr_assert_eq(zl_tensor_nbytes(&t), 0);
}

Test(tensor, init_errors)
{
    struct zl_tensor t, saved;
    int64_t ok[2] = {2, 2};
    cr_assert_eq(zl_tensor_init(&t, ZL_DTYPE_F32, 2, ok, buf, ZL_TENSOR_HOST), ZL_OK);
    saved = t;
    expect_err(zl_tensor_init(&t, ZL_DTYPE_F32, 0, ok, buf, -1), ZL_EINVAL, "n_dims 0");
    expect_err(zl_tensor_init(&t, ZL_DTYPE_F32, 5, ok, buf, -1), ZL_EINVAL, "n_dims 5");
    int64_t neg[2] = {2, -1};
    expect_err(zl_tensor_init(&t, ZL_DTYPE_F32, 2, neg, buf, -1), ZL_EINVAL, "negative size -1");
    expect_err(zl_tensor_init(&t, ZL_DTYPE_COUNT, 2, ok, buf, -1), ZL_EINVAL, "dtype");
    expect_err(zl_tensor_init(&t, ZL_DTYPE_F32, 2, ok, buf, -2), ZL_EINVAL, "device -2");
    int64_t odd[2] = {2, 7};
    expect_err(zl_tensor_init(&t, ZL_DTYPE_Q4_PACKED, 2, odd, buf, -1), ZL_EINVAL, "odd");
    int64_t big[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
    expect_err(zl_tensor_init(&t, ZL_DTYPE_U8, 2, big, buf, -1), ZL_ERANGE,
               "u8[1099511627776, 1099511627776] overflows");
    int64_t bytes[1] = {INT64_MAX / 4};  /* elements fit, bytes (x8) do not */
    int64_t u8max[1] = {INT64_MAX};      /* one byte each: fits */
    cr_assert_eq(zl_tensor_init(&t, ZL_DTYPE_U8, 1, u8max, NULL, -1), ZL_OK);
    expect_err(zl_tensor_init(&t, ZL_DTYPE_I64, 1, bytes, buf, -1), ZL_ERANGE, "overflow");
    int64_t four[4] = {1 << 16, 1 << 16, 1 << 16, 1 << 16};  /* 2^64 elements */
    expect_err(zl_tensor_init(&t, ZL_DTYPE_Q4_PACKED, 4, four, buf, -1), ZL_ERANGE, "overflow");
    int64_t edge[2] = {INT64_C(1) << 30, INT64_C(1) << 30};  /* 2^62 bytes of i32: fits */
    cr_assert_eq(zl_tensor_init(&t, ZL_DTYPE_I32, 2, edge, NULL, -1), ZL_OK);
    t = saved;
    expect_err(zl_tensor_init(&t, ZL_DTYPE_I64, 2, edge, NULL, -1), ZL_ERANGE, "overflow");
    cr_assert_eq(memcmp(&t, &saved, sizeof t), 0, "a failed init must not touch t");
    expect_err(zl_tensor_init(NULL, ZL_DTYPE_F32, 2, ok, buf, -1), ZL_EINVAL, "NULL");
}

Test(tensor, views)
{
    struct zl_tensor t, v;
    int64_t shape[2] = {4, 6};
    zl_tensor_init(&t, ZL_DTYPE_F32, 2, shape, buf, ZL_TENSOR_HOST);
    t.name = "w";
    cr_assert_eq(zl_tensor_view(&v, &t, 0, 1, 2), ZL_OK);  /* rows 1..2 */
    cr_assert_eq((char *)v.data, buf + 24);
    cr_assert_eq(v.ne[0], 2); cr_assert_eq(v.ne[1], 6);
    cr_assert(zl_tensor_is_contiguous(&v));
    cr_assert_str_eq(v.name, "w");
    cr_assert_eq(zl_tensor_view(&v, &t, 1, 2, 3), ZL_OK);  /* columns 2..4 */
    cr_assert_eq((char *)v.data, buf + 8);
    cr_assert_eq(v.nb[0], 24); cr_assert_eq(v.nb[1], 4);
    cr_assert(!zl_tensor_is_contiguous(&v));
    cr_assert_eq(zl_tensor_nbytes(&v), 3 * 24 + 2 * 4 + 4);
    cr_assert_eq(zl_tensor_view(&v, &v, 0, 3, 1), ZL_OK);  /* in place: [1, 3] */
    cr_assert_eq((char *)v.data, buf + 8 + 72);
    cr_assert(zl_tensor_is_contiguous(&v), "a single row of adjacent elements");
    cr_assert_eq(zl_tensor_view(&v, &t, 0, 4, 0), ZL_OK);  /* empty at the end */
    cr_assert_eq(zl_tensor_nelements(&v), 0);

    expect_err(zl_tensor_view(&v, &t, 0, 3, 2), ZL_ERANGE, "outside dim 0 of size 4");
    expect_err(zl_tensor_view(&v, &t, 1, -1, 2), ZL_ERANGE, "outside");
    expect_err(zl_tensor_view(&v, &t, 1, 5, INT64_MAX), ZL_ERANGE, "outside");
    expect_err(zl_tensor_view(&v, &t, 0, 5, 0), ZL_ERANGE, "outside");
    expect_err(zl_tensor_view(&v, &t, 2, 0, 1), ZL_EINVAL, "dim 2 of a 2-d");

    int64_t q[2] = {2, 8};
    zl_tensor_init(&t, ZL_DTYPE_Q4_PACKED, 2, q, buf, ZL_TENSOR_HOST);
    cr_assert_eq(zl_tensor_view(&v, &t, 1, 4, 4), ZL_OK);
    cr_assert_eq((char *)v.data, buf + 2);
    cr_assert_eq(zl_tensor_view(&v, &t, 0, 1, 1), ZL_OK);
    cr_assert_eq((char *)v.data, buf + 4);
    expect_err(zl_tensor_view(&v, &t, 1, 1, 2), ZL_EINVAL, "even");
    expect_err(zl_tensor_view(&v, &t, 1, 2, 3), ZL_EINVAL, "even");
}

Test(tensor, reshape)
{
    struct zl_tensor t, r;
    int64_t shape[3] = {2, 3, 4};
    zl_tensor_init(&t, ZL_DTYPE_BF16, 3, shape, buf, 1);
    t.name = "x";
    int64_t s2[2] = {6, 4};
    cr_assert_eq(zl_tensor_reshape(&r, &t, 2, s2), ZL_OK);
    cr_assert_eq(r.ne[0], 6); cr_assert_eq(r.nb[0], 8); cr_assert_eq(r.nb[1], 2);
    cr_assert_eq(r.data, buf); cr_assert_eq(r.device, 1); cr_assert_str_eq(r.name, "x");
    int64_t inf[3] = {-1, 2, 1};
    cr_assert_eq(zl_tensor_reshape(&r, &t, 3, inf), ZL_OK);
    cr_assert_eq(r.ne[0], 12);
    int64_t bad[2] = {5, 5};
    expect_err(zl_tensor_reshape(&r, &t, 2, bad), ZL_EINVAL, "24 elements");
    int64_t two[2] = {-1, -1};
    expect_err(zl_tensor_reshape(&r, &t, 2, two), ZL_EINVAL, "one -1");
    int64_t notdiv[2] = {-1, 5};
    expect_err(zl_tensor_reshape(&r, &t, 2, notdiv), ZL_EINVAL, "24 elements");
    int64_t huge[3] = {INT64_C(1) << 62, 4, 0};  /* product overflows before the 0 */
    expect_err(zl_tensor_reshape(&r, &t, 3, huge), ZL_EINVAL, "elements");
    int64_t zero[2] = {0, -1};
    expect_err(zl_tensor_reshape(&r, &t, 2, zero), ZL_EINVAL, "infer");
    expect_err(zl_tensor_reshape(&r, &t, 5, s2), ZL_EINVAL, "n_dims 5");

    struct zl_tensor tr;
    cr_assert_eq(zl_tensor_transpose(&tr, &t, 1, 2), ZL_OK);
    expect_err(zl_tensor_reshape(&r, &tr, 2, s2), ZL_EUNSUPPORTED, "not contiguous");
}

Test(tensor, permute_transpose_rows)
{
    struct zl_tensor t, p;
    int64_t shape[3] = {2, 3, 4};
    zl_tensor_init(&t, ZL_DTYPE_F32, 3, shape, buf, ZL_TENSOR_HOST);
    int perm[3] = {2, 0, 1};
    cr_assert_eq(zl_tensor_permute(&p, &t, perm), ZL_OK);
    cr_assert_eq(p.ne[0], 4); cr_assert_eq(p.ne[1], 2); cr_assert_eq(p.ne[2], 3);
    cr_assert_eq(p.nb[0], 4); cr_assert_eq(p.nb[1], 48); cr_assert_eq(p.nb[2], 16);
    cr_assert(!zl_tensor_is_contiguous(&p));
    cr_assert_eq(zl_tensor_nbytes(&p), 96);
    /* Row 5 of p = p[2][1][:] = t[1][:][2]. */
    cr_assert_eq((char *)zl_tensor_row(&p, 5), buf + 2 * 4 + 1 * 48);
    cr_assert_eq((char *)zl_tensor_row(&t, 4), buf + 48 + 16);
    cr_assert_null(zl_tensor_row(&t, 6));
    cr_assert(strstr(zl_last_error(), "row 6 of 6"), "%s", zl_last_error());
    cr_assert_null(zl_tensor_row(&t, -1));

    cr_assert_eq(zl_tensor_transpose(&p, &t, 0, 2), ZL_OK);
    cr_assert_eq(p.ne[0], 4); cr_assert_eq(p.ne[2], 2);
    cr_assert_eq(p.nb[0], 4); cr_assert_eq(p.nb[2], 48);
    cr_assert_eq(zl_tensor_transpose(&p, &p, 0, 2), ZL_OK);  /* back, in place */
    cr_assert_eq(memcmp(&p, &t, sizeof p), 0);

    int dup[3] = {0, 0, 1}, out[3] = {0, 1, 3};
    expect_err(zl_tensor_permute(&p, &t, dup), ZL_EINVAL, "not a permutation");
    expect_err(zl_tensor_permute(&p, &t, out), ZL_EINVAL, "not a permutation");
    expect_err(zl_tensor_transpose(&p, &t, 0, 3), ZL_EINVAL, "dims 0, 3");

    int64_t q[2] = {2, 8};
    zl_tensor_init(&t, ZL_DTYPE_Q4_PACKED, 2, q, buf, ZL_TENSOR_HOST);
    expect_err(zl_tensor_transpose(&p, &t, 0, 1), ZL_EUNSUPPORTED, "q4");
    cr_assert_eq((char *)zl_tensor_row(&t, 1), buf + 4);
    t.data = NULL;
    cr_assert_null(zl_tensor_row(&t, 0));
}

/* Element (i0..i3) of a host float tensor as float, by stride arithmetic and
 * the scalar decoders (tested exhaustively in test_dtype). */
static float elem(const struct zl_tensor *t, const int64_t *idx)
{
    const char *p = t->data;
    for (int d = 0; d < t->n_dims; d++) p += idx[d] * t->nb[d];
    uint16_t h;
    switch (t->dtype) {
    case ZL_DTYPE_F32: { float f; memcpy(&f, p, 4); return f; }
    case ZL_DTYPE_F16: memcpy(&h, p, 2); return zl_f16_to_f32(h);
    case ZL_DTYPE_BF16: memcpy(&h, p, 2); return zl_bf16_to_f32(h);
    case ZL_DTYPE_F8_E4M3: return zl_f8_e4m3_to_f32(*(const uint8_t *)p);
    case ZL_DTYPE_F8_E5M2: return zl_f8_e5m2_to_f32(*(const uint8_t *)p);
    default: cr_assert_fail("elem: dtype %d", t->dtype); return 0;
    }
}

static float round_to(enum zl_dtype dt, float x)
{
    switch (dt) {
    case ZL_DTYPE_F16: return zl_f16_to_f32(zl_f32_to_f16(x));
    case ZL_DTYPE_BF16: return zl_bf16_to_f32(zl_f32_to_bf16(x));
    case ZL_DTYPE_F8_E4M3: return zl_f8_e4m3_to_f32(zl_f32_to_f8_e4m3(x));
    case ZL_DTYPE_F8_E5M2: return zl_f8_e5m2_to_f32(zl_f32_to_f8_e5m2(x));
    default: return x;
    }
}

/* Every element of dst equals src's, rounded to dst's type. */
static void check_converted(const struct zl_tensor *dst, const struct zl_tensor *src)
{
    int64_t idx[4] = {0};
    int64_t n = zl_tensor_nelements(src);
    for (int64_t k = 0; k < n; k++) {
        int64_t r = k;
        for (int d = src->n_dims - 1; d >= 0; d--) { idx[d] = r % src->ne[d]; r /= src->ne[d]; }
        float want = round_to(dst->dtype, elem(src, idx)), got = elem(dst, idx);
        cr_assert_eq(got, want, "element %lld: %g vs %g", (long long)k, got, want);
    }
}

Test(tensor, convert_strided)
{
    /* src: f32 [3, 4, 300] (rows longer than the internal 256 chunk), viewed
     * permuted to [300, 3, 4] so its innermost stride is 1200 bytes. */
    enum { A = 3, B = 4, C = 300 };
    static float data[A * B * C];
    for (int i = 0; i < A * B * C; i++) data[i] = (float)((i * 37) % 1001 - 500) / 7.0f;
    struct zl_tensor s, sp, d;
    int64_t shape[3] = {A, B, C}, pshape[3] = {C, A, B};
    zl_tensor_init(&s, ZL_DTYPE_F32, 3, shape, data, ZL_TENSOR_HOST);
    int perm[3] = {2, 0, 1};
    zl_tensor_permute(&sp, &s, perm);

    static uint16_t out16[A * B * C];
    zl_tensor_init(&d, ZL_DTYPE_BF16, 3, pshape, out16, ZL_TENSOR_HOST);
    cr_assert_eq(zl_tensor_convert(&d, &sp), ZL_OK, "%s", zl_last_error());
    check_converted(&d, &sp);

    /* Strided on both sides: f16 dst rows 2 elements wider than needed, src
     * a column view of the bf16 result; then narrow -> fp8. */
    static uint16_t wide[C * A * (B + 2)];
    struct zl_tensor w, wv, sv;
    int64_t wshape[3] = {C, A, B + 2};
    zl_tensor_init(&w, ZL_DTYPE_F16, 3, wshape, wide, ZL_TENSOR_HOST);
    zl_tensor_view(&wv, &w, 2, 1, B - 1);
    zl_tensor_view(&sv, &d, 2, 0, B - 1);
    cr_assert_eq(zl_tensor_convert(&wv, &sv), ZL_OK, "%s", zl_last_error());
    check_converted(&wv, &sv);
    static uint8_t f8[C * A * (B - 1)];
    struct zl_tensor e;
    int64_t eshape[3] = {C, A, B - 1};
    zl_tensor_init(&e, ZL_DTYPE_F8_E4M3, 3, eshape, f8, ZL_TENSOR_HOST);
    cr_assert_eq(zl_tensor_convert(&e, &wv), ZL_OK);
    check_converted(&e, &wv);

    /* Contiguous both sides: the one-call path. */
    static float back[A * B * C];
    struct zl_tensor bk;
    zl_tensor_init(&bk, ZL_DTYPE_F32, 3, pshape, back, ZL_TENSOR_HOST);
    cr_assert_eq(zl_tensor_convert(&bk, &d), ZL_OK);
    check_converted(&bk, &d);
}

Test(tensor, convert_identity_and_errors)
{
    /* i32 transpose copy: identity conversion through strided rows. */
    int32_t m[2][3] = {{1, 2, 3}, {4, 5, 6}}, mt[3][2];
    struct zl_tensor a, at, b;
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2};
    zl_tensor_init(&a, ZL_DTYPE_I32, 2, s23, m, ZL_TENSOR_HOST);
    zl_tensor_transpose(&at, &a, 0, 1);
    zl_tensor_init(&b, ZL_DTYPE_I32, 2, s32, mt, ZL_TENSOR_HOST);
    cr_assert_eq(zl_tensor_convert(&b, &at), ZL_OK);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) cr_assert_eq(mt[i][j], m[j][i]);

    /* q4 rows picked by an outer view. */
    uint8_t q[3][2] = {{0x10, 0x32}, {0x54, 0x76}, {0x98, 0xba}}, qo[2][2];
    struct zl_tensor qa, qv, qb;
    int64_t q34[2] = {3, 4}, q24[2] = {2, 4};
    zl_tensor_init(&qa, ZL_DTYPE_Q4_PACKED, 2, q34, q, ZL_TENSOR_HOST);
    zl_tensor_view(&qv, &qa, 0, 1, 2);
    zl_tensor_init(&qb, ZL_DTYPE_Q4_PACKED, 2, q24, qo, ZL_TENSOR_HOST);
    cr_assert_eq(zl_tensor_convert(&qb, &qv), ZL_OK);
    cr_assert_eq(memcmp(qo, q[1], 4), 0);

    float f[6];
    struct zl_tensor ft;
    zl_tensor_init(&ft, ZL_DTYPE_F32, 2, s32, f, ZL_TENSOR_HOST);
    expect_err(zl_tensor_convert(&ft, &at), ZL_EUNSUPPORTED, "from i32 to f32");
    zl_tensor_init(&ft, ZL_DTYPE_F32, 2, s23, f, ZL_TENSOR_HOST);
    expect_err(zl_tensor_convert(&ft, &b), ZL_EINVAL, "shapes differ");
    struct zl_tensor dev = b;
    dev.device = 0;
    expect_err(zl_tensor_convert(&dev, &b), ZL_EUNSUPPORTED, "host tensors only");
    expect_err(zl_tensor_convert(&b, &dev), ZL_EUNSUPPORTED, "host tensors only");
    struct zl_tensor nodata = b;
    nodata.data = NULL;
    expect_err(zl_tensor_convert(&nodata, &at), ZL_EINVAL, "without data");
    expect_err(zl_tensor_convert(&b, NULL), ZL_EINVAL, "NULL tensor");
    struct zl_tensor bad = b;
    bad.n_dims = 7;
    expect_err(zl_tensor_convert(&bad, &b), ZL_EINVAL, "n_dims 7");
}

Test(tensor, describe)
{
    struct zl_tensor t, v;
    int64_t shape[2] = {2, 3};
    zl_tensor_init(&t, ZL_DTYPE_BF16, 2, shape, buf, ZL_TENSOR_HOST);
    char s[64];
    cr_assert_eq(zl_tensor_describe(&t, s, sizeof s), 10);
    cr_assert_str_eq(s, "bf16[2, 3]");
    zl_tensor_transpose(&v, &t, 0, 1);
    zl_tensor_describe(&v, s, sizeof s);
    cr_assert_str_eq(s, "bf16[3, 2] strided");
    int64_t one[1] = {4096};
    zl_tensor_init(&t, ZL_DTYPE_F8_E4M3, 1, one, NULL, 3);
    zl_tensor_describe(&t, s, sizeof s);
    cr_assert_str_eq(s, "f8_e4m3[4096] @dev3");
    cr_assert_eq(zl_tensor_describe(&t, s, 5), 19);  /* truncated like snprintf */
    cr_assert_str_eq(s, "f8_e");
    cr_assert_eq(zl_tensor_describe(&t, NULL, 0), 19);
    t.dtype = ZL_DTYPE_COUNT;
    expect_err(zl_tensor_describe(&t, s, sizeof s), ZL_EINVAL, "dtype");
}
