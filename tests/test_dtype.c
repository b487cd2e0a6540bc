/* Element types and f32 <-> f16 / bf16 / fp8 conversions.
 *
 * The references below are written from the format definitions with double
 * arithmetic (ldexp, exact midpoints), sharing no bit tricks with
 * core/dtype.c:
 *   decode: value = (-1)^s * 2^(e-bias) * (1 + m/2^M), subnormal 2^(1-bias) * m/2^M;
 *   encode: the nearest value from the sorted table of all finite values,
 *           ties to the even code; IEEE formats overflow to Inf from the
 *           midpoint between max and 2^(emax+1); E4M3FN saturates at 448.
 *
 * Coverage of f32 -> narrow.  By default: the direct reference on a strided
 * sweep of all 2^32 f32 patterns (stride 1021, 4.2M patterns, every exponent
 * and sign) and at every rounding boundary (each midpoint between adjacent
 * representable values, and its f32 neighbours +-1 and +-2 ulp, both signs,
 * overflow and subnormal boundaries included), about 0.5 s in all.
 * Exhaustive: with ZL_TEST_EXHAUSTIVE=1 the *_every_f32 tests check all 2^32
 * patterns for each format (otherwise they skip, saying so).  That walks the
 * patterns in order against the reference midpoint table, since the encoding
 * of |x| is monotonic in its bit pattern; it takes 15-25 s per format on
 * the shared 2-core CI machine, too slow for every `make check`.  Last full
 * run: all four formats passed, 90 s in all (2026-11-24, gcc 12 -O2).
 *
 * Hand cross-check, not needed by the tests: decodes of all codes and the
 * encodings of 6M f32 patterns (strided + random) equal numpy.float16 and
 * ml_dtypes 0.6 bfloat16 / float8_e4m3fn (within +-448, where ml_dtypes does
 * not saturate) / float8_e5m2 bit for bit.  */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <zlight/dtype.h>

struct fmt {
    const char *name;
    unsigned E, M;
    int fn;  /* E4M3FN: no Inf, one NaN per sign, saturation */
    uint32_t (*enc)(float);
    float (*dec)(uint32_t);
};

static uint32_t enc_f16(float f) { return zl_f32_to_f16(f); }
static float dec_f16(uint32_t v) { return zl_f16_to_f32((uint16_t)v); }
static uint32_t enc_bf16(float f) { return zl_f32_to_bf16(f); }
static float dec_bf16(uint32_t v) { return zl_bf16_to_f32((uint16_t)v); }
static uint32_t enc_e4m3(float f) { return zl_f32_to_f8_e4m3(f); }
static float dec_e4m3(uint32_t v) { return zl_f8_e4m3_to_f32((uint8_t)v); }
static uint32_t enc_e5m2(float f) { return zl_f32_to_f8_e5m2(f); }
static float dec_e5m2(uint32_t v) { return zl_f8_e5m2_to_f32((uint8_t)v); }

static const struct fmt F16 = {"f16", 5, 10, 0, enc_f16, dec_f16};
static const struct fmt BF16 = {"bf16", 8, 7, 0, enc_bf16, dec_bf16};
static const struct fmt E4M3 = {"e4m3", 4, 3, 1, enc_e4m3, dec_e4m3};
static const struct fmt E5M2 = {"e5m2", 5, 2, 0, enc_e5m2, dec_e5m2};

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static int bias(const struct fmt *F) { return (1 << (F->E - 1)) - 1; }
static uint32_t sign_bit(const struct fmt *F) { return 1u << (F->E + F->M); }
static uint32_t exp_ones(const struct fmt *F) { return ((1u << F->E) - 1) << F->M; }
/* Largest positive finite code. */
static uint32_t max_code(const struct fmt *F) { return F->fn ? exp_ones(F) | ((1u << F->M) - 2) : exp_ones(F) - 1; }

enum cls { FINITE, INF, NAN_ };

/* The format definition, evaluated in double. */
static enum cls ref_decode(const struct fmt *F, uint32_t code, double *out)
{
    int s = (code >> (F->E + F->M)) & 1;
    uint32_t e = (code >> F->M) & ((1u << F->E) - 1), m = code & ((1u << F->M) - 1);
    uint32_t emax = (1u << F->E) - 1, mmax = (1u << F->M) - 1;
    if (F->fn ? (e == emax && m == mmax) : (e == emax && m)) return NAN_;
    double v;
    if (!F->fn && e == emax)
        v = INFINITY;
    else if (e == 0)
        v = ldexp((double)m, 1 - bias(F) - (int)F->M);
    else
        v = ldexp((double)((1u << F->M) + m), (int)e - bias(F) - (int)F->M);
    *out = s ? -v : v;
    return isinf(v) ? INF : FINITE;
}

/* Positive finite values by code, then (IEEE formats) the value 2^(emax+1)
 * that the Inf code would have with an unbounded exponent. */
static double *value_table(const struct fmt *F, uint32_t *n_out)
{
    uint32_t n = max_code(F) + 1;
    double *v = malloc((n + 1) * sizeof *v);
    cr_assert(v);
    for (uint32_t c = 0; c < n; c++)
        cr_assert_eq(ref_decode(F, c, &v[c]), FINITE, "%s code %#x", F->name, c);
    v[n] = ldexp(1.0, (int)((1u << F->E) - 1) - bias(F) + F->fn);
    for (uint32_t c = 1; c <= n; c++) cr_assert(v[c] > v[c - 1], "%s table not sorted", F->name);
    *n_out = n;
    return v;
}

/* Nearest table value to finite |x|, ties to the even code. */
static uint32_t ref_encode(const struct fmt *F, const double *tab, uint32_t n, float x)
{
    uint32_t s = signbit(x) ? sign_bit(F) : 0;
    if (isnan(x)) return s | exp_ones(F) | ((1u << F->M) - 1);  /* any NaN: callers test the class */
    double a = fabs((double)x);
    if (isinf(a)) return s | (F->fn ? max_code(F) : exp_ones(F));
    uint32_t lo = 0, hi = n;  /* largest c with tab[c] <= a */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (tab[mid] <= a) lo = mid; else hi = mid;
    }
    if (lo == n - 1 && F->fn) return s | lo;     /* satfinite */
    if (lo == n - 1 && a >= tab[n]) return s | n; /* far beyond: Inf */
    double midpoint = (tab[lo] + tab[lo + 1]) / 2;  /* exact: <= M+2 significant bits */
    uint32_t c = a < midpoint ? lo : a > midpoint ? lo + 1 : (lo & 1 ? lo + 1 : lo);
    return s | c;  /* code n is Inf for IEEE formats */
}

static void check_decode_all(const struct fmt *F)
{
    for (uint32_t c = 0; c < 2 * sign_bit(F); c++) {
        double want;
        enum cls k = ref_decode(F, c, &want);
        float got = F->dec(c);
        uint32_t gb = fbits(got);
        cr_assert_eq(!!signbit(got), !!(c & sign_bit(F)), "%s %#x sign", F->name, c);
        if (k == NAN_) {
            cr_assert(isnan(got), "%s %#x should be NaN", F->name, c);
            cr_assert(gb & 0x00400000u, "%s %#x NaN not quiet (%#x)", F->name, c, gb);
        } else {
            cr_assert(!isnan(got) && (double)got == want, "%s %#x: got %a want %a", F->name, c,
                      (double)got, want);
        }
    }
}

Test(dtype_decode, f16_all_65536) { check_decode_all(&F16); }
Test(dtype_decode, bf16_all_65536) { check_decode_all(&BF16); }
Test(dtype_decode, e4m3_all_256) { check_decode_all(&E4M3); }
Test(dtype_decode, e5m2_all_256) { check_decode_all(&E5M2); }

static void check_one(const struct fmt *F, const double *tab, uint32_t n, uint32_t u)
{
    float x = bitsf(u);
    uint32_t got = F->enc(x), want = ref_encode(F, tab, n, x);
    if (isnan(x)) {
        double d;
        cr_assert_eq(ref_decode(F, got, &d), NAN_, "%s(NaN %#x) = %#x not NaN", F->name, u, got);
        cr_assert_eq(got & sign_bit(F), want & sign_bit(F), "%s(NaN %#x) sign", F->name, u);
        return;
    }
    cr_assert_eq(got, want, "%s(%a = %#x): got %#x want %#x", F->name, (double)x, u, got, want);
}

/* The reference at every midpoint, its f32 neighbours and the values. */
static void check_boundaries(const struct fmt *F)
{
    uint32_t n;
    double *tab = value_table(F, &n);
    for (uint32_t c = 0; c < n; c++) {
        double mid = (tab[c] + tab[c + 1]) / 2;
        float fm = (float)mid;
        cr_assert_eq((double)fm, mid, "%s midpoint %a not an f32", F->name, mid);
        for (int64_t k = -2; k <= 2; k++) {
            int64_t u = (int64_t)fbits(fm) + k;
            if (u < 0 || u > 0x7f800000) continue;
            check_one(F, tab, n, (uint32_t)u);
            check_one(F, tab, n, (uint32_t)u | 0x80000000u);
        }
        check_one(F, tab, n, fbits((float)tab[c]));
    }
    free(tab);
}

Test(dtype_encode, f16_midpoints) { check_boundaries(&F16); }
Test(dtype_encode, bf16_midpoints) { check_boundaries(&BF16); }
Test(dtype_encode, e4m3_midpoints) { check_boundaries(&E4M3); }
Test(dtype_encode, e5m2_midpoints) { check_boundaries(&E5M2); }

/* The direct reference on a stride of all f32 patterns (a prime, so every
 * exponent and low-bit pattern is visited), NaNs and Infs included. */
static void check_strided(const struct fmt *F)
{
    uint32_t n;
    double *tab = value_table(F, &n);
    for (uint64_t u = 0; u <= 0xffffffffu; u += 1021)
        check_one(F, tab, n, (uint32_t)u);
    free(tab);
}

Test(dtype_encode, f16_strided) { check_strided(&F16); }
Test(dtype_encode, bf16_strided) { check_strided(&BF16); }
Test(dtype_encode, e4m3_strided) { check_strided(&E4M3); }
Test(dtype_encode, e5m2_strided) { check_strided(&E5M2); }

/* Every f32 pattern: walk |x| upward against the reference midpoints. */
static void check_exhaustive(const struct fmt *F)
{
    const char *env = getenv("ZL_TEST_EXHAUSTIVE");
    if (!env || strcmp(env, "1"))
        cr_skip_test("all 2^32 f32 patterns take ~20 s per format; set ZL_TEST_EXHAUSTIVE=1");
    uint32_t n;
    double *tab = value_table(F, &n);
    uint32_t n_mid = F->fn ? n - 1 : n;  /* E4M3FN has no midpoint towards Inf */
    uint32_t *mid = malloc(n_mid * sizeof *mid);
    cr_assert(mid);
    for (uint32_t c = 0; c < n_mid; c++) mid[c] = fbits((float)((tab[c] + tab[c + 1]) / 2));
    const uint32_t sb = sign_bit(F);
    uint32_t c = 0, bad = 0, first_bad = 0;
    for (uint32_t u = 0; u <= 0x7f800000u; u++) {
        while (c < n_mid && u > mid[c]) c++;
        uint32_t want = (c < n_mid && u == mid[c]) ? (c & 1 ? c + 1 : c) : c;
        if (u == 0x7f800000u) want = F->fn ? n - 1 : n;
        uint32_t got = F->enc(bitsf(u)), gotn = F->enc(bitsf(u | 0x80000000u));
        if ((got != want || gotn != (want | sb)) && !bad++) first_bad = u;
    }
    cr_assert_eq(bad, 0, "%s: %u of 2^31 magnitudes wrong, first %#x: got %#x want %#x",
                 F->name, bad, first_bad, F->enc(bitsf(first_bad)),
                 ref_encode(F, tab, n, bitsf(first_bad)));
    /* NaNs: stay NaN, keep the sign, quiet (or the single E4M3FN NaN). */
    for (uint32_t s = 0; s < 2; s++) {
        for (uint32_t m = 1; m < 0x800000u; m++) {
            uint32_t u = s << 31 | 0x7f800000u | m, got = F->enc(bitsf(u));
            double d;
            int ok = ref_decode(F, got, &d) == NAN_ && !(got & sb) == !s &&
                     (F->fn || (got >> (F->M - 1) & 1));
            if (!ok && !bad++) first_bad = u;
        }
    }
    cr_assert_eq(bad, 0, "%s: %u NaN patterns wrong, first %#x", F->name, bad, first_bad);
    free(mid);
    free(tab);
}

/* 600 s: room for a loaded 2-core machine (CI runs these; ~20 s each idle). */
Test(dtype_encode, f16_every_f32, .timeout = 600) { check_exhaustive(&F16); }
Test(dtype_encode, bf16_every_f32, .timeout = 600) { check_exhaustive(&BF16); }
Test(dtype_encode, e4m3_every_f32, .timeout = 600) { check_exhaustive(&E4M3); }
Test(dtype_encode, e5m2_every_f32, .timeout = 600) { check_exhaustive(&E5M2); }

/* Fixed points from the format specs, readable on their own. */
Test(dtype_encode, known_values)
{
    cr_assert_eq(zl_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(zl_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(zl_f32_to_f16(65519.99f), 0x7bff);       /* below the overflow midpoint */
    cr_assert_eq(zl_f32_to_f16(65520.0f), 0x7c00);        /* the midpoint: ties to Inf (even) */
    cr_assert_eq(zl_f32_to_f16(ldexpf(1, -24)), 0x0001);  /* smallest subnormal */
    cr_assert_eq(zl_f32_to_f16(ldexpf(1, -25)), 0x0000);  /* half of it: ties to 0 */
    cr_assert_eq(zl_f32_to_f16(bitsf(0x33000001u)), 0x0001);
    cr_assert_eq(zl_f32_to_f16(ldexpf(1023, -24) + ldexpf(1, -25)), 0x0400); /* into min normal */
    cr_assert_eq(zl_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);      /* tie, even down */
    cr_assert_eq(zl_f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02);  /* tie, even up */
    cr_assert_eq(zl_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(zl_f32_to_f16(-INFINITY), 0xfc00);
    cr_assert_eq(zl_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(zl_f32_to_bf16(bitsf(0x3f808000u)), 0x3f80);
    cr_assert_eq(zl_f32_to_bf16(bitsf(0x3f818000u)), 0x3f82);
    cr_assert_eq(zl_f32_to_bf16(bitsf(0x7f7f7fffu)), 0x7f7f);
    cr_assert_eq(zl_f32_to_bf16(bitsf(0x7f7f8000u)), 0x7f80);  /* overflow tie -> Inf */
    cr_assert_eq(zl_f32_to_bf16(bitsf(0x00008000u)), 0x0000);  /* f32 subnormal tie */
    cr_assert_eq(zl_f32_to_bf16(bitsf(0x00018000u)), 0x0002);
    cr_assert_eq(zl_f32_to_f8_e4m3(448.0f), 0x7e);
    cr_assert_eq(zl_f32_to_f8_e4m3(464.0f), 0x7e);      /* satfinite, never the NaN 0x7f */
    cr_assert_eq(zl_f32_to_f8_e4m3(1e30f), 0x7e);
    cr_assert_eq(zl_f32_to_f8_e4m3(-INFINITY), 0xfe);
    cr_assert_eq(zl_f32_to_f8_e4m3(NAN), 0x7f);
    cr_assert_eq(zl_f32_to_f8_e4m3(-NAN), 0xff);
    cr_assert_eq(zl_f32_to_f8_e4m3(ldexpf(1, -9)), 0x01);  /* smallest subnormal */
    cr_assert_eq(zl_f32_to_f8_e4m3(ldexpf(1, -10)), 0x00);
    cr_assert_eq(zl_f32_to_f8_e4m3(ldexpf(3, -10)), 0x02);
    cr_assert_eq(zl_f32_to_f8_e5m2(57344.0f), 0x7b);
    cr_assert_eq(zl_f32_to_f8_e5m2(61439.0f), 0x7b);
    cr_assert_eq(zl_f32_to_f8_e5m2(61440.0f), 0x7c);    /* overflow tie -> Inf */
    cr_assert_eq(zl_f32_to_f8_e5m2(INFINITY), 0x7c);
    cr_assert_eq(zl_f32_to_f8_e5m2(-NAN), 0xfe);
    cr_assert_eq(zl_f32_to_f8_e5m2(ldexpf(1, -16)), 0x01);
    cr_assert_eq(zl_f32_to_f8_e5m2(ldexpf(1, -17)), 0x00);
    cr_assert_eq(zl_f8_e4m3_to_f32(0x7e), 448.0f);
    cr_assert_eq(zl_f8_e5m2_to_f32(0x7b), 57344.0f);
    cr_assert_eq(zl_f16_to_f32(0x0001), ldexpf(1, -24));
    cr_assert_eq(zl_bf16_to_f32(0x0001), ldexpf(1, -133));
}

/* NaN payloads: the top payload bits survive a round trip, quieted. */
Test(dtype_encode, nan_payload)
{
    cr_assert_eq(zl_f32_to_f16(bitsf(0x7f802000u)), 0x7e01);  /* signalling in, quiet out */
    cr_assert_eq(fbits(zl_f16_to_f32(0x7c01)), 0x7fc02000u);
    cr_assert_eq(fbits(zl_f16_to_f32(0xfe00)), 0xffc00000u);
    cr_assert_eq(zl_f32_to_f16(zl_f16_to_f32(0xfe55)), 0xfe55);
    cr_assert_eq(zl_f32_to_bf16(bitsf(0xff810000u)), 0xffc1);
    cr_assert_eq(zl_f32_to_bf16(zl_bf16_to_f32(0x7fc5)), 0x7fc5);
}

Test(dtype, names_and_sizes)
{
    static const char *names[ZL_DTYPE_COUNT] = {"f32", "f16", "bf16", "f8_e4m3", "f8_e5m2",
                                                "i8", "u8", "i32", "i64", "q4"};
    static const unsigned bits[ZL_DTYPE_COUNT] = {32, 16, 16, 8, 8, 8, 8, 32, 64, 4};
    for (int i = 0; i < ZL_DTYPE_COUNT; i++) {
        enum zl_dtype dt;
        cr_assert_str_eq(zl_dtype_name((enum zl_dtype)i), names[i]);
        cr_assert_eq(zl_dtype_parse(names[i], &dt), ZL_OK);
        cr_assert_eq(dt, i);
        cr_assert_eq(zl_dtype_bits(dt), bits[i]);
        cr_assert_eq(zl_dtype_is_float(dt), i <= ZL_DTYPE_F8_E5M2);
    }
    static const struct { const char *name; enum zl_dtype dt; } aliases[] = {
        {"bfloat16", ZL_DTYPE_BF16}, {"float32", ZL_DTYPE_F32}, {"float16", ZL_DTYPE_F16},
        {"F8_E4M3", ZL_DTYPE_F8_E4M3} /* safetensors spelling */, {"BF16", ZL_DTYPE_BF16}};
    enum zl_dtype dt;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        cr_assert_eq(zl_dtype_parse(aliases[i].name, &dt), ZL_OK, "%s", aliases[i].name);
        cr_assert_eq(dt, aliases[i].dt, "%s", aliases[i].name);
    }
    cr_assert_eq(zl_dtype_parse("f64", &dt), ZL_EINVAL);
    cr_assert(strstr(zl_last_error(), "\"f64\""), "%s", zl_last_error());
    cr_assert_eq(zl_dtype_parse(NULL, &dt), ZL_EINVAL);
    cr_assert_str_eq(zl_dtype_name(ZL_DTYPE_COUNT), "invalid");
    cr_assert_str_eq(zl_dtype_name((enum zl_dtype)-1), "invalid");
    cr_assert_eq(zl_dtype_bits(ZL_DTYPE_COUNT), 0);
    cr_assert_eq(zl_dtype_is_float(ZL_DTYPE_COUNT), 0);
    cr_assert_eq(zl_dtype_row_bytes(ZL_DTYPE_Q4_PACKED, 4096), 2048);
    cr_assert_eq(zl_dtype_row_bytes(ZL_DTYPE_Q4_PACKED, 3), 2);
    cr_assert_eq(zl_dtype_row_bytes(ZL_DTYPE_Q4_PACKED, SIZE_MAX), SIZE_MAX / 2 + 1);
    cr_assert_eq(zl_dtype_row_bytes(ZL_DTYPE_BF16, 7), 14);
    cr_assert_eq(zl_dtype_row_bytes(ZL_DTYPE_I64, 3), 24);
    cr_assert_eq(zl_dtype_row_bytes(ZL_DTYPE_COUNT, 3), 0);
}

/* Array conversion of every float pair equals the scalar f32 route (decode
 * is exact, so narrow -> narrow must round once). */
Test(dtype, convert_all_float_pairs)
{
    enum { N = 1500 };  /* over the 512-element internal chunk */
    static float src32[N], back[N], want[N];
    static unsigned char a[N * 4], b[N * 4];
    for (int i = 0; i < N; i++)
        src32[i] = i % 97 == 0 ? NAN : ldexpf((float)((i * 7919) % 2001 - 1000), (i % 41) - 25);
    const struct fmt *fm[] = {NULL, &F16, &BF16, &E4M3, &E5M2};  /* index = dtype */
    for (int s = 0; s <= ZL_DTYPE_F8_E5M2; s++) {
        for (int d = 0; d <= ZL_DTYPE_F8_E5M2; d++) {
            cr_assert_eq(zl_dtype_convert((enum zl_dtype)s, a, ZL_DTYPE_F32, src32, N), ZL_OK);
            cr_assert_eq(zl_dtype_convert((enum zl_dtype)d, b, (enum zl_dtype)s, a, N), ZL_OK);
            cr_assert_eq(zl_dtype_convert(ZL_DTYPE_F32, back, (enum zl_dtype)d, b, N), ZL_OK);
            for (int i = 0; i < N; i++) {
                float x = src32[i];
                if (s) x = fm[s]->dec(fm[s]->enc(x));
                if (d) x = fm[d]->dec(fm[d]->enc(x));
                want[i] = x;
            }
            for (int i = 0; i < N; i++)
                cr_assert(fbits(back[i]) == fbits(want[i]) || (isnan(back[i]) && isnan(want[i])),
                          "%s->%s [%d]: %a vs %a", zl_dtype_name((enum zl_dtype)s),
                          zl_dtype_name((enum zl_dtype)d), i, (double)back[i], (double)want[i]);
        }
    }
}

Test(dtype, convert_errors_and_identity)
{
    int32_t x[3] = {1, -2, 3}, y[3] = {0};
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_I32, y, ZL_DTYPE_I32, x, 3), ZL_OK);
    cr_assert_eq(memcmp(x, y, sizeof x), 0);
    uint8_t q[2] = {0x21, 0x43}, r[2] = {0};
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_Q4_PACKED, r, ZL_DTYPE_Q4_PACKED, q, 4), ZL_OK);
    cr_assert_eq(memcmp(q, r, 2), 0);
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_F32, y, ZL_DTYPE_I32, x, 3), ZL_EUNSUPPORTED);
    cr_assert(strstr(zl_last_error(), "i32") && strstr(zl_last_error(), "f32"), "%s",
              zl_last_error());
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_F16, y, ZL_DTYPE_Q4_PACKED, q, 2), ZL_EUNSUPPORTED);
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_COUNT, y, ZL_DTYPE_F32, x, 3), ZL_EINVAL);
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_F16, NULL, ZL_DTYPE_F32, x, 3), ZL_EINVAL);
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_F16, NULL, ZL_DTYPE_F32, NULL, 0), ZL_OK);
}
