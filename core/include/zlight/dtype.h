/* Element types and scalar conversions.
 *
 *   uint16_t h = zl_f32_to_f16(1.5f);          // round to nearest even
 *   float f = zl_bf16_to_f32(zl_f32_to_bf16(x));
 *   size_t row = zl_dtype_row_bytes(ZL_DTYPE_Q4_PACKED, 4096);
 *   printf("%s\n", zl_dtype_name(ZL_DTYPE_BF16));   // "bf16"
 */
#ifndef ZLIGHT_DTYPE_H
#define ZLIGHT_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Append only: values are stored in files and cross the plugin ABI. */
enum zl_dtype {
    ZL_DTYPE_F32 = 0,
    ZL_DTYPE_F16 = 1,
    ZL_DTYPE_BF16 = 2,
    ZL_DTYPE_F8_E4M3 = 3,   /* OCP FP8 E4M3FN: no Inf, NaN = S.1111.111, max 448 */
    ZL_DTYPE_F8_E5M2 = 4,   /* OCP FP8 E5M2: IEEE-like, Inf and NaN, max 57344 */
    ZL_DTYPE_I8 = 5,
    ZL_DTYPE_U8 = 6,
    ZL_DTYPE_I32 = 7,
    ZL_DTYPE_I64 = 8,
    ZL_DTYPE_Q4_PACKED = 9, /* two 4-bit values per byte, low nibble first; scales live elsewhere */
    ZL_DTYPE_COUNT
};

/* "f32", "f16", "bf16", "f8_e4m3", "f8_e5m2", "i8", "u8", "i32", "i64", "q4";
 * "invalid" for others. */
ZL_API const char *zl_dtype_name(enum zl_dtype dt);

/* Inverse of zl_dtype_name (also accepts "float32", "float16", "bfloat16").
 * ZL_EINVAL for unknown names. */
ZL_API int zl_dtype_parse(const char *name, enum zl_dtype *out);

/* Bits per element (4 for Q4_PACKED); 0 for invalid values. */
ZL_API unsigned zl_dtype_bits(enum zl_dtype dt);

/* Bytes holding n elements (rounded up to whole bytes); 0 for invalid dt. */
ZL_API size_t zl_dtype_row_bytes(enum zl_dtype dt, size_t n);

ZL_API int zl_dtype_is_float(enum zl_dtype dt);

/* Conversions.  Narrowing is round-to-nearest-even; NaN stays NaN (quiet,
 * sign kept); overflow goes to Inf where the format has it.  For E4M3 (no
 * Inf) out-of-range values and Inf saturate to +-448 (the OCP "satfinite"
 * convention used by cuBLASLt and the scaled-FP8 checkpoints). */
ZL_API uint16_t zl_f32_to_f16(float f);
ZL_API float zl_f16_to_f32(uint16_t h);
ZL_API uint16_t zl_f32_to_bf16(float f);
ZL_API float zl_bf16_to_f32(uint16_t b);
ZL_API uint8_t zl_f32_to_f8_e4m3(float f);
ZL_API float zl_f8_e4m3_to_f32(uint8_t v);
ZL_API uint8_t zl_f32_to_f8_e5m2(float f);
ZL_API float zl_f8_e5m2_to_f32(uint8_t v);

/* Converts n elements between any two of f32, f16, bf16, f8_e4m3, f8_e5m2
 * (and the identity for every type).  ZL_EUNSUPPORTED for other pairs. */
ZL_API int zl_dtype_convert(enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                            const void *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
