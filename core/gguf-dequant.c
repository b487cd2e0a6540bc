/* ggml tensor types: block geometry of every type (so the reader can
 * validate any file) and dequantization of F32, F16, BF16, Q8_0, Q4_0, Q4_1.
 *
 * The arithmetic is the reference one (ggml's dequantize_row_* and the gguf
 * Python package): d and m are f16 widened to f32, then one f32 multiply and,
 * for Q4_1, one f32 add.  Contracting that into an FMA would change the
 * last bit, so contraction is switched off here; results are then bit-exact
 * with the reference. */
#include "config.h"

#include <stdio.h>

#include "gguf-impl.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#define ZL_NO_CONTRACT
#elif defined(__GNUC__)
#define ZL_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define ZL_NO_CONTRACT
#endif

struct ggml_traits {
    const char *name;
    unsigned short block_elems, block_bytes;
};

static const struct ggml_traits traits[ZL_GGML_TYPE_COUNT] = {
    [ZL_GGML_TYPE_F32] = {"F32", 1, 4},
    [ZL_GGML_TYPE_F16] = {"F16", 1, 2},
    [ZL_GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [ZL_GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [ZL_GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [ZL_GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [ZL_GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [ZL_GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [ZL_GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [ZL_GGML_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [ZL_GGML_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [ZL_GGML_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [ZL_GGML_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [ZL_GGML_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [ZL_GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [ZL_GGML_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [ZL_GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [ZL_GGML_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [ZL_GGML_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [ZL_GGML_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [ZL_GGML_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [ZL_GGML_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [ZL_GGML_TYPE_I8] = {"I8", 1, 1},
    [ZL_GGML_TYPE_I16] = {"I16", 1, 2},
    [ZL_GGML_TYPE_I32] = {"I32", 1, 4},
    [ZL_GGML_TYPE_I64] = {"I64", 1, 8},
    [ZL_GGML_TYPE_F64] = {"F64", 1, 8},
    [ZL_GGML_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [ZL_GGML_TYPE_BF16] = {"BF16", 1, 2},
    [ZL_GGML_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [ZL_GGML_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [ZL_GGML_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

static const struct ggml_traits *traits_of(enum zl_ggml_type t)
{
    return (unsigned)t < ZL_GGML_TYPE_COUNT && traits[t].name ? &traits[t] : NULL;
}

ZL_API const char *zl_ggml_type_name(enum zl_ggml_type t)
{
    const struct ggml_traits *tr = traits_of(t);
    return tr ? tr->name : NULL;
}

ZL_API size_t zl_ggml_block_elems(enum zl_ggml_type t)
{
    const struct ggml_traits *tr = traits_of(t);
    return tr ? tr->block_elems : 0;
}

ZL_API size_t zl_ggml_block_bytes(enum zl_ggml_type t)
{
    const struct ggml_traits *tr = traits_of(t);
    return tr ? tr->block_bytes : 0;
}

ZL_API size_t zl_ggml_row_bytes(enum zl_ggml_type t, int64_t n)
{
    const struct ggml_traits *tr = traits_of(t);
    if (!tr || n < 0 || n % tr->block_elems)
        return 0;
    uint64_t r;
    if (!zl_wmul((uint64_t)n / tr->block_elems, tr->block_bytes, &r) || r > SIZE_MAX)
        return 0;
    return (size_t)r;
}

ZL_API int zl_ggml_can_dequantize(enum zl_ggml_type t)
{
    return t == ZL_GGML_TYPE_F32 || t == ZL_GGML_TYPE_F16 || t == ZL_GGML_TYPE_BF16 ||
           t == ZL_GGML_TYPE_Q8_0 || t == ZL_GGML_TYPE_Q4_0 || t == ZL_GGML_TYPE_Q4_1;
}

static float half_at(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return zl_f16_to_f32(h);
}

/* Each of these converts nb whole blocks to f32. */
ZL_NO_CONTRACT static void deq_q8_0(const unsigned char *src, int64_t nb, float *dst)
{
    for (int64_t b = 0; b < nb; b++, src += 34, dst += 32) {
        float d = half_at(src);
        const int8_t *q = (const int8_t *)(src + 2);
        for (int j = 0; j < 32; j++)
            dst[j] = d * (float)q[j];
    }
}

ZL_NO_CONTRACT static void deq_q4_0(const unsigned char *src, int64_t nb, float *dst)
{
    for (int64_t b = 0; b < nb; b++, src += 18, dst += 32) {
        float d = half_at(src);
        const unsigned char *q = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((q[j] & 0x0f) - 8);
            dst[j + 16] = d * (float)((q[j] >> 4) - 8);
        }
    }
}

ZL_NO_CONTRACT static void deq_q4_1(const unsigned char *src, int64_t nb, float *dst)
{
    for (int64_t b = 0; b < nb; b++, src += 20, dst += 32) {
        float d = half_at(src), m = half_at(src + 2);
        const unsigned char *q = src + 4;
        for (int j = 0; j < 16; j++) {
            float lo = d * (float)(q[j] & 0x0f), hi = d * (float)(q[j] >> 4);
            dst[j] = lo + m;
            dst[j + 16] = hi + m;
        }
    }
}

static void deq_plain(enum zl_ggml_type t, const unsigned char *src, int64_t n, float *dst)
{
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        switch (t) {
        case ZL_GGML_TYPE_F32: memcpy(&dst[i], src + 4 * i, 4); break;
        case ZL_GGML_TYPE_F16: memcpy(&h, src + 2 * i, 2); dst[i] = zl_f16_to_f32(h); break;
        default: memcpy(&h, src + 2 * i, 2); dst[i] = zl_bf16_to_f32(h); break;
        }
    }
}

/* n elements (a multiple of the block size) of type t to f32. */
static void deq_f32(enum zl_ggml_type t, const unsigned char *src, int64_t n, float *dst)
{
    switch (t) {
    case ZL_GGML_TYPE_Q8_0: deq_q8_0(src, n / 32, dst); break;
    case ZL_GGML_TYPE_Q4_0: deq_q4_0(src, n / 32, dst); break;
    case ZL_GGML_TYPE_Q4_1: deq_q4_1(src, n / 32, dst); break;
    default: deq_plain(t, src, n, dst); break;
    }
}

ZL_API int zl_ggml_dequantize(enum zl_ggml_type src_t, const void *src, int64_t n,
                              enum zl_dtype dst_dt, void *dst)
{
    if (!zl_ggml_can_dequantize(src_t))
        return zl_error(ZL_EUNSUPPORTED, "cannot dequantize ggml type %s",
                        zl_ggml_type_name(src_t) ? zl_ggml_type_name(src_t) : "(unknown)");
    if (dst_dt != ZL_DTYPE_F32 && dst_dt != ZL_DTYPE_F16 && dst_dt != ZL_DTYPE_BF16)
        return zl_error(ZL_EUNSUPPORTED, "cannot dequantize to %s (f32, f16 or bf16 only)",
                        zl_dtype_name(dst_dt));
    size_t be = zl_ggml_block_elems(src_t);
    if (n < 0 || n % (int64_t)be)
        return zl_error(ZL_EINVAL, "dequantize %s: %lld elements is not a multiple of the block size %zu",
                        zl_ggml_type_name(src_t), (long long)n, be);
    if (dst_dt == ZL_DTYPE_F32) {
        deq_f32(src_t, src, n, dst);
        return ZL_OK;
    }
    /* narrow through a small f32 buffer, one chunk of whole blocks at a time */
    enum { CHUNK = 4096 };
    float tmp[CHUNK];
    const unsigned char *s = src;
    unsigned char *d = dst;
    size_t rb = zl_ggml_row_bytes(src_t, CHUNK);
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t m = n - i < CHUNK ? n - i : CHUNK;
        deq_f32(src_t, s, m, tmp);
        int rc = zl_dtype_convert(dst_dt, d, ZL_DTYPE_F32, tmp, (size_t)m);
        if (rc < 0)
            return rc;
        s += rb;
        d += (size_t)m * 2;
    }
    return ZL_OK;
}

ZL_API int zl_gguf_dequantize_rows(const struct zl_gguf_tensor_info *t, int64_t row0,
                                   int64_t n_rows, enum zl_dtype dst_dt, void *dst)
{
    if (row0 < 0 || n_rows < 0 || row0 > t->n_rows || n_rows > t->n_rows - row0)
        return zl_error(ZL_ERANGE, "tensor '%s': rows [%lld, +%lld) outside its %lld rows",
                        t->name, (long long)row0, (long long)n_rows, (long long)t->n_rows);
    size_t rb = zl_ggml_row_bytes(t->type, t->ne[0]);
    int rc = zl_ggml_dequantize(t->type, (const unsigned char *)t->data + (size_t)row0 * rb,
                                n_rows * t->ne[0], dst_dt, dst);
    return rc < 0 ? zl_error_wrap(rc, "tensor '%s'", t->name) : ZL_OK;
}
