/* Scalar f16/bf16 <-> f32 conversions for the CPU backend.
 *
 *   float f = cpu_bf16_to_f32(w[i]);
 *   uint16_t h = cpu_f32_to_f16(f);          // round to nearest even
 *   cpu_row_to_f32(tmp, ZL_DTYPE_F16, row, n);
 *
 * Plugins do not link libzlight (DESIGN §2), so the backend carries its own
 * copies; they are bit-exact with zl_f32_to_f16() and friends (dtype.h):
 * round to nearest even, NaN stays a quiet NaN with its sign, overflow to
 * Inf, subnormals kept.  The vector paths (F16C) live in cpu-kernels-avx2.c. */
#ifndef ZL_CPU_CONVERT_H
#define ZL_CPU_CONVERT_H

#include <stdint.h>
#include <string.h>

#include <zlight/dtype.h>

static inline uint32_t cpu_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float cpu_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float cpu_bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    return cpu_bits_f32(u | ((b & 0x7fffu) > 0x7f80u ? 0x400000u : 0)); /* NaN quietened */
}

static inline uint16_t cpu_f32_to_bf16(float f)
{
    uint32_t u = cpu_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)          /* NaN: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);               /* RNE; carries into Inf correctly */
    return (uint16_t)(u >> 16);
}

static inline float cpu_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7fffu, man = em & 0x3ffu;
    /* Exponent and mantissa moved into f32 position read as an f32 that is
     * 2^-112 times the value, normal or subnormal alike: one exact multiply
     * rebiases it.  Inf/NaN (quietened, payload kept) by a select, so the
     * loops have no branch and vectorise. */
    uint32_t finite = cpu_f32_bits(cpu_bits_f32(em << 13) * 0x1p112f);
    uint32_t quiet = ((man + 0x3ffu) & 0x400u) << 12;   /* 0x400000 when man != 0 */
    uint32_t special = 0x7f800000u | (man << 13) | quiet;
    uint32_t is_special = 0u - (uint32_t)(em >= 0x7c00u);
    return cpu_bits_f32(sign | (special & is_special) | (finite & ~is_special));
}

static inline uint16_t cpu_f32_to_f16(float f)
{
    uint32_t u = cpu_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)                           /* NaN: quiet, top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u)                          /* rounds to >= 65536: Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {                         /* below 2^-14: subnormal or 0 */
        /* scaling by 2^-24 units is exact up to the RNE of the float add */
        float v = cpu_bits_f32(a) + 0.5f;          /* 0.5 = 2^-1: lsb weight 2^-24 */
        return (uint16_t)(sign | (cpu_f32_bits(v) - cpu_f32_bits(0.5f)));
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += ((uint32_t)(15 - 127) << 23) + 0xfffu + mant_odd;
    return (uint16_t)(sign | (a >> 13));
}

/* Bytes per element of the dtypes the backend handles (f32, f16, bf16, i32);
 * libzlight's zl_dtype_row_bytes is out of reach of a plugin. */
static inline size_t cpu_dtype_size(enum zl_dtype dt)
{
    return (dt == ZL_DTYPE_F16 || dt == ZL_DTYPE_BF16) ? 2 : 4;
}

/* Element i of a row of dtype dt (f32, f16 or bf16) as f32. */
static inline float cpu_load_f32(const void *row, enum zl_dtype dt, int64_t i)
{
    switch (dt) {
    case ZL_DTYPE_F16: return cpu_f16_to_f32(((const uint16_t *)row)[i]);
    case ZL_DTYPE_BF16: return cpu_bf16_to_f32(((const uint16_t *)row)[i]);
    default: return ((const float *)row)[i];
    }
}

/* dst[0..n) = src[0..n) of dtype dt (f32, f16 or bf16) as f32. */
static inline void cpu_row_to_f32(float *dst, enum zl_dtype dt, const void *src, int64_t n)
{
    const uint16_t *s16 = src;
    switch (dt) {
    case ZL_DTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = cpu_f16_to_f32(s16[i]);
        break;
    case ZL_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = cpu_bf16_to_f32(s16[i]);
        break;
    default:
        memmove(dst, src, (size_t)n * sizeof(float));
        break;
    }
}

/* dst[0..n) of dtype dt (f32, f16 or bf16) = src[0..n), rounded to nearest even. */
static inline void cpu_row_from_f32(void *dst, enum zl_dtype dt, const float *src, int64_t n)
{
    uint16_t *d16 = dst;
    switch (dt) {
    case ZL_DTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            d16[i] = cpu_f32_to_f16(src[i]);
        break;
    case ZL_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            d16[i] = cpu_f32_to_bf16(src[i]);
        break;
    default:
        memmove(dst, src, (size_t)n * sizeof(float));
        break;
    }
}

#endif
