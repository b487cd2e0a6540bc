/* Element types and scalar conversions between f32 and the narrow floats.
 *
 * All four narrow formats (f16, bf16, fp8 e4m3, fp8 e5m2) are handled by one
 * encoder and one decoder parameterised by exponent and mantissa widths; the
 * per-format wrappers pass constants, so the compiler specialises each.  The
 * code is integer bit manipulation only: no _Float16, no FPU rounding modes,
 * and flush-to-zero settings of the caller cannot change the results. */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <zlight/dtype.h>

struct dtype_info {
    const char *name;
    const char *alias;  /* second accepted spelling for zl_dtype_parse, or NULL */
    unsigned bits;
    int is_float;
};

static const struct dtype_info dtype_table[ZL_DTYPE_COUNT] = {
    [ZL_DTYPE_F32] = {"f32", "float32", 32, 1},
    [ZL_DTYPE_F16] = {"f16", "float16", 16, 1},
    [ZL_DTYPE_BF16] = {"bf16", "bfloat16", 16, 1},
    [ZL_DTYPE_F8_E4M3] = {"f8_e4m3", NULL, 8, 1},
    [ZL_DTYPE_F8_E5M2] = {"f8_e5m2", NULL, 8, 1},
    [ZL_DTYPE_I8] = {"i8", NULL, 8, 0},
    [ZL_DTYPE_U8] = {"u8", NULL, 8, 0},
    [ZL_DTYPE_I32] = {"i32", NULL, 32, 0},
    [ZL_DTYPE_I64] = {"i64", NULL, 64, 0},
    [ZL_DTYPE_Q4_PACKED] = {"q4", NULL, 4, 0},
};

static int dtype_valid(enum zl_dtype dt)
{
    return (unsigned)dt < ZL_DTYPE_COUNT;
}

const char *zl_dtype_name(enum zl_dtype dt)
{
    return dtype_valid(dt) ? dtype_table[dt].name : "invalid";
}

int zl_dtype_parse(const char *name, enum zl_dtype *out)
{
    if (!name || !out)
        return zl_error(ZL_EINVAL, "zl_dtype_parse: NULL argument");
    /* Case-insensitive so safetensors' "BF16" / "F8_E4M3" parse directly. */
    for (unsigned i = 0; i < ZL_DTYPE_COUNT; i++) {
        const struct dtype_info *d = &dtype_table[i];
        if (!strcasecmp(name, d->name) || (d->alias && !strcasecmp(name, d->alias))) {
            *out = (enum zl_dtype)i;
            return ZL_OK;
        }
    }
    return zl_error(ZL_EINVAL, "unknown dtype \"%s\" (expected f32, f16, bf16, f8_e4m3, "
                    "f8_e5m2, i8, u8, i32, i64 or q4)", name);
}

unsigned zl_dtype_bits(enum zl_dtype dt)
{
    return dtype_valid(dt) ? dtype_table[dt].bits : 0;
}

size_t zl_dtype_row_bytes(enum zl_dtype dt, size_t n)
{
    unsigned bits = zl_dtype_bits(dt);
    if (bits == 0)
        return 0;
    if (bits >= 8)
        return n * (bits / 8);
    /* Sub-byte: round up without overflowing n * bits. */
    return n / (8 / bits) + (n % (8 / bits) != 0);
}

int zl_dtype_is_float(enum zl_dtype dt)
{
    return dtype_valid(dt) && dtype_table[dt].is_float;
}

/* ---- scalar conversions ------------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Rounds the magnitude `m` shifted right by `shift` (1..24) to nearest,
 * ties to even. */
static inline uint32_t shift_round_even(uint32_t m, unsigned shift)
{
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

/* f32 -> a narrow float of E exponent bits and M mantissa bits (bias
 * 2^(E-1)-1), returned right-aligned with the sign at bit E+M.  `fn` is the
 * E4M3FN convention: no Inf, only S.1111.111 is NaN, overflow saturates. */
static inline uint32_t narrow_encode(uint32_t x, unsigned E, unsigned M, int fn)
{
    const uint32_t sign = (x >> 31) << (E + M);
    const uint32_t a = x & 0x7fffffffu;
    const int bias = (1 << (E - 1)) - 1;
    const int emin = 1 - bias;                       /* unbiased min normal exponent */
    const uint32_t exp_ones = ((1u << E) - 1) << M;  /* Inf, or NaN with payload */
    const uint32_t max_finite = fn ? exp_ones | ((1u << M) - 2) : exp_ones - 1;
    const unsigned drop = 23 - M;                    /* f32 mantissa bits that go */

    if (a > 0x7f800000u) {
        if (fn)
            return sign | exp_ones | ((1u << M) - 1);
        /* Quiet NaN: keep the top payload bits, force the quiet bit. */
        return sign | exp_ones | (1u << (M - 1)) | ((a & 0x7fffffu) >> drop);
    }
    if (a == 0x7f800000u)
        return sign | (fn ? max_finite : exp_ones);

    int e = (int)(a >> 23) - 127;  /* unbiased; f32 subnormals treated as e = -126 */
    uint32_t r;
    if (e >= emin) {
        /* Normal in the target: rebias the exponent in place and round away
         * the low bits; a mantissa carry bumps the exponent, up to Inf. */
        uint32_t rebased = a - ((uint32_t)(127 - bias) << 23);
        r = drop ? shift_round_even(rebased, drop) : rebased;
    } else {
        uint32_t m = a & 0x7fffffu;
        if (a >> 23)
            m |= 0x800000u;  /* hidden bit of a normal f32 */
        else
            e = -126;
        unsigned shift = drop + (unsigned)(emin - e);
        if (shift > 24)
            return sign;     /* below half the smallest subnormal: m < 2^24 */
        /* A carry out of the subnormal range lands on the min normal. */
        r = shift_round_even(m, shift);
    }
    if (r > max_finite)
        r = fn ? max_finite : exp_ones;
    return sign | r;
}

/* The inverse: exact, since every narrow value is an f32 value. */
static inline uint32_t narrow_decode(uint32_t v, unsigned E, unsigned M, int fn)
{
    const uint32_t sign = (v >> (E + M) & 1u) << 31;
    const int bias = (1 << (E - 1)) - 1;
    uint32_t exp = (v >> M) & ((1u << E) - 1);
    uint32_t man = v & ((1u << M) - 1);
    const unsigned up = 23 - M;

    if (exp == (1u << E) - 1) {
        if (fn) {
            if (man == (1u << M) - 1)
                return sign | 0x7fc00000u;
        } else if (man == 0) {
            return sign | 0x7f800000u;
        } else {
            return sign | 0x7fc00000u | (man << up);
        }
    }
    if (exp == 0) {
        if (man == 0)
            return sign;
        if (bias == 127)  /* same exponent range (bf16): subnormal stays subnormal */
            return sign | (man << up);
        /* Normalise: shift the leading 1 up to the hidden-bit position. */
        int e = 1 - bias;
        while (!(man & (1u << M))) {
            man <<= 1;
            e--;
        }
        return sign | ((uint32_t)(e + 127) << 23) | ((man & ((1u << M) - 1)) << up);
    }
    return sign | ((exp - (uint32_t)bias + 127) << 23) | (man << up);
}

/* Internal inline forms: the exported functions below can be interposed,
 * so the compiler would not inline them into the array loops. */
static inline uint16_t f16_enc(float f) { return (uint16_t)narrow_encode(f32_bits(f), 5, 10, 0); }
static inline float f16_dec(uint16_t h) { return bits_f32(narrow_decode(h, 5, 10, 0)); }
static inline uint16_t bf16_enc(float f) { return (uint16_t)narrow_encode(f32_bits(f), 8, 7, 0); }
/* bf16 is the top half of an f32: a shift, with NaN quietened (the generic
 * decoder gives the same; this form is branch-free for the loops). */
static inline float bf16_dec(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    return bits_f32(u | ((b & 0x7fffu) > 0x7f80u ? 0x400000u : 0));
}
static inline uint8_t e4m3_enc(float f) { return (uint8_t)narrow_encode(f32_bits(f), 4, 3, 1); }
static inline float e4m3_dec(uint8_t v) { return bits_f32(narrow_decode(v, 4, 3, 1)); }
static inline uint8_t e5m2_enc(float f) { return (uint8_t)narrow_encode(f32_bits(f), 5, 2, 0); }
static inline float e5m2_dec(uint8_t v) { return bits_f32(narrow_decode(v, 5, 2, 0)); }

uint16_t zl_f32_to_f16(float f) { return f16_enc(f); }
float zl_f16_to_f32(uint16_t h) { return f16_dec(h); }
uint16_t zl_f32_to_bf16(float f) { return bf16_enc(f); }
float zl_bf16_to_f32(uint16_t b) { return bf16_dec(b); }
uint8_t zl_f32_to_f8_e4m3(float f) { return e4m3_enc(f); }
float zl_f8_e4m3_to_f32(uint8_t v) { return e4m3_dec(v); }
uint8_t zl_f32_to_f8_e5m2(float f) { return e5m2_enc(f); }
float zl_f8_e5m2_to_f32(uint8_t v) { return e5m2_dec(v); }

/* ---- array conversions ------------------------------------------------- */

/* dst[i] = fn(src[i]) for n elements of the given pointer types. */
#define MAP_N(dst_t, src_t, fn)                                   \
    for (size_t i = 0; i < n; i++)                               \
        ((dst_t *)dst)[i] = fn(((const src_t *)src)[i])

/* Decodes n elements of a float dtype into f32. */
static void to_f32(float *dst, enum zl_dtype dt, const void *src, size_t n)
{
    switch (dt) {
    case ZL_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case ZL_DTYPE_F16: MAP_N(float, uint16_t, f16_dec); break;
    case ZL_DTYPE_BF16: MAP_N(float, uint16_t, bf16_dec); break;
    case ZL_DTYPE_F8_E4M3: MAP_N(float, uint8_t, e4m3_dec); break;
    case ZL_DTYPE_F8_E5M2: MAP_N(float, uint8_t, e5m2_dec); break;
    default: break;  /* callers pass float dtypes only */
    }
}

/* Encodes n f32 values into a float dtype. */
static void from_f32(enum zl_dtype dt, void *dst, const float *src, size_t n)
{
    switch (dt) {
    case ZL_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case ZL_DTYPE_F16: MAP_N(uint16_t, float, f16_enc); break;
    case ZL_DTYPE_BF16: MAP_N(uint16_t, float, bf16_enc); break;
    case ZL_DTYPE_F8_E4M3: MAP_N(uint8_t, float, e4m3_enc); break;
    case ZL_DTYPE_F8_E5M2: MAP_N(uint8_t, float, e5m2_enc); break;
    default: break;
    }
}
#undef MAP_N

int zl_dtype_convert(enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                     const void *src, size_t n)
{
    if (!dtype_valid(dst_dt) || !dtype_valid(src_dt))
        return zl_error(ZL_EINVAL, "zl_dtype_convert: invalid dtype value %d -> %d",
                        (int)src_dt, (int)dst_dt);
    if (n == 0)
        return ZL_OK;
    if (!dst || !src)
        return zl_error(ZL_EINVAL, "zl_dtype_convert: NULL buffer for %zu elements", n);
    if (dst_dt == src_dt) {
        if (dst != src)
            memmove(dst, src, zl_dtype_row_bytes(dst_dt, n));
        return ZL_OK;
    }
    if (!zl_dtype_is_float(dst_dt) || !zl_dtype_is_float(src_dt))
        return zl_error(ZL_EUNSUPPORTED, "no conversion from %s to %s",
                        zl_dtype_name(src_dt), zl_dtype_name(dst_dt));
    if (src_dt == ZL_DTYPE_F32) {
        from_f32(dst_dt, dst, src, n);
    } else if (dst_dt == ZL_DTYPE_F32) {
        to_f32(dst, src_dt, src, n);
    } else {
        /* Narrow to narrow through f32: decoding is exact, so this rounds once. */
        float tmp[512];
        size_t sb = zl_dtype_bits(src_dt) / 8, db = zl_dtype_bits(dst_dt) / 8;
        for (size_t i = 0; i < n; i += 512) {
            size_t k = n - i < 512 ? n - i : 512;
            to_f32(tmp, src_dt, (const char *)src + i * sb, k);
            from_f32(dst_dt, (char *)dst + i * db, tmp, k);
        }
    }
    return ZL_OK;
}
