/* GGUF (v2/v3) reader: metadata, tensor infos and dequantization.
 *
 *   struct zl_gguf *g;
 *   if (zl_gguf_open("model.gguf", &g) < 0) die(zl_last_error());
 *   int64_t k = zl_gguf_find_key(g, "llama.block_count");
 *   uint64_t n_layer = k >= 0 ? zl_gguf_get_u64(g, k) : 0;
 *   zl_gguf_close(g);
 */
#ifndef ZLIGHT_GGUF_H
#define ZLIGHT_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/dtype.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Metadata value types; numbering of the GGUF specification. */
enum zl_gguf_type {
    ZL_GGUF_TYPE_UINT8 = 0,
    ZL_GGUF_TYPE_INT8 = 1,
    ZL_GGUF_TYPE_UINT16 = 2,
    ZL_GGUF_TYPE_INT16 = 3,
    ZL_GGUF_TYPE_UINT32 = 4,
    ZL_GGUF_TYPE_INT32 = 5,
    ZL_GGUF_TYPE_FLOAT32 = 6,
    ZL_GGUF_TYPE_BOOL = 7,
    ZL_GGUF_TYPE_STRING = 8,
    ZL_GGUF_TYPE_ARRAY = 9,
    ZL_GGUF_TYPE_UINT64 = 10,
    ZL_GGUF_TYPE_INT64 = 11,
    ZL_GGUF_TYPE_FLOAT64 = 12,
    ZL_GGUF_TYPE_COUNT,
    ZL_GGUF_TYPE_INVALID = -1,
};

/* Tensor element types; numbering of ggml (values 4, 5, 31-33, 36-38 were
 * removed upstream and are rejected). */
enum zl_ggml_type {
    ZL_GGML_TYPE_F32 = 0,
    ZL_GGML_TYPE_F16 = 1,
    ZL_GGML_TYPE_Q4_0 = 2,
    ZL_GGML_TYPE_Q4_1 = 3,
    ZL_GGML_TYPE_Q5_0 = 6,
    ZL_GGML_TYPE_Q5_1 = 7,
    ZL_GGML_TYPE_Q8_0 = 8,
    ZL_GGML_TYPE_Q8_1 = 9,
    ZL_GGML_TYPE_Q2_K = 10,
    ZL_GGML_TYPE_Q3_K = 11,
    ZL_GGML_TYPE_Q4_K = 12,
    ZL_GGML_TYPE_Q5_K = 13,
    ZL_GGML_TYPE_Q6_K = 14,
    ZL_GGML_TYPE_Q8_K = 15,
    ZL_GGML_TYPE_IQ2_XXS = 16,
    ZL_GGML_TYPE_IQ2_XS = 17,
    ZL_GGML_TYPE_IQ3_XXS = 18,
    ZL_GGML_TYPE_IQ1_S = 19,
    ZL_GGML_TYPE_IQ4_NL = 20,
    ZL_GGML_TYPE_IQ3_S = 21,
    ZL_GGML_TYPE_IQ2_S = 22,
    ZL_GGML_TYPE_IQ4_XS = 23,
    ZL_GGML_TYPE_I8 = 24,
    ZL_GGML_TYPE_I16 = 25,
    ZL_GGML_TYPE_I32 = 26,
    ZL_GGML_TYPE_I64 = 27,
    ZL_GGML_TYPE_F64 = 28,
    ZL_GGML_TYPE_IQ1_M = 29,
    ZL_GGML_TYPE_BF16 = 30,
    ZL_GGML_TYPE_TQ1_0 = 34,
    ZL_GGML_TYPE_TQ2_0 = 35,
    ZL_GGML_TYPE_MXFP4 = 39,
    ZL_GGML_TYPE_COUNT = 40,
};

#define ZL_GGUF_MAX_DIMS 4
#define ZL_GGUF_DEFAULT_ALIGNMENT 32

struct zl_gguf;

/* One tensor of the file.  The data pointer stays valid until zl_gguf_close. */
struct zl_gguf_tensor_info {
    const char *name;           /* NUL-terminated */
    enum zl_ggml_type type;
    uint32_t n_dims;            /* 1..4 */
    int64_t ne[ZL_GGUF_MAX_DIMS];    /* ggml order: ne[0] is the contiguous row length; unused = 1 */
    int64_t shape[ZL_GGUF_MAX_DIMS]; /* row-major (PyTorch/numpy) order: shape[i] = ne[n_dims-1-i] */
    uint64_t offset;            /* bytes from the start of the data section */
    const void *data;           /* into the mapping; aligned to general.alignment in the file */
    size_t nbytes;              /* rows * zl_ggml_row_bytes(type, ne[0]) */
    int64_t n_rows;             /* ne[1] * ne[2] * ne[3] */
};

/* Maps and parses `path`.  Status: ZL_ENOTFOUND / ZL_EIO (cannot open or map),
 * ZL_EINVAL (malformed: bad magic, truncated, counts past the end, strings
 * past the end, misaligned or out-of-range tensor data, nested arrays...),
 * ZL_EUNSUPPORTED (version other than 2/3, big-endian file, unknown ggml
 * type), ZL_ENOMEM.  Every message names the file and, where one is
 * involved, the key or tensor.  *out is NULL on failure. */
ZL_API int zl_gguf_open(const char *path, struct zl_gguf **out);

/* Parses a GGUF image already in memory (tests, fuzzing, embedded files).
 * `buf` is not copied and must outlive the object; `name` is used in
 * messages (NULL: "<memory>").  Same status codes as zl_gguf_open. */
ZL_API int zl_gguf_parse_buffer(const void *buf, size_t len, const char *name,
                                struct zl_gguf **out);

/* Frees everything (unmaps the file); NULL is a no-op. */
ZL_API void zl_gguf_close(struct zl_gguf *g);

/* The file name given at open (for messages). */
ZL_API const char *zl_gguf_path(const struct zl_gguf *g);
ZL_API uint32_t zl_gguf_version(const struct zl_gguf *g);
ZL_API size_t zl_gguf_alignment(const struct zl_gguf *g);
/* Byte offset of the data section from the start of the file. */
ZL_API uint64_t zl_gguf_data_offset(const struct zl_gguf *g);

/* ---- metadata ---- */

ZL_API int64_t zl_gguf_n_kv(const struct zl_gguf *g);
/* Key of entry i (NUL-terminated), NULL when i is out of range. */
ZL_API const char *zl_gguf_key(const struct zl_gguf *g, int64_t i);
/* Index of `key`, -1 when absent. */
ZL_API int64_t zl_gguf_find_key(const struct zl_gguf *g, const char *key);
/* Type of entry i; ZL_GGUF_TYPE_INVALID when i is out of range. */
ZL_API enum zl_gguf_type zl_gguf_kv_type(const struct zl_gguf *g, int64_t i);
/* "uint8" ... "float64", "array", "string"; "invalid" for others. */
ZL_API const char *zl_gguf_type_name(enum zl_gguf_type t);

/* Scalar accessors.  They never fail: a value of another kind (or a bad
 * index) gives NULL / 0, so check zl_gguf_kv_type first when it matters.
 * get_str: NUL-terminated copy, *len (may be NULL) its length in bytes.
 * get_i64 / get_u64: any integer or bool entry, converted (u64 above
 * INT64_MAX saturates in get_i64; negatives give 0 in get_u64).
 * get_f64: float32/float64 and integer entries. */
ZL_API const char *zl_gguf_get_str(const struct zl_gguf *g, int64_t i, size_t *len);
ZL_API int64_t zl_gguf_get_i64(const struct zl_gguf *g, int64_t i);
ZL_API uint64_t zl_gguf_get_u64(const struct zl_gguf *g, int64_t i);
ZL_API double zl_gguf_get_f64(const struct zl_gguf *g, int64_t i);

/* Arrays.  get_arr_type: element type (ZL_GGUF_TYPE_INVALID when entry i is
 * not an array).  get_arr_n: element count (0 when not an array).
 * get_arr_str: element j of a string array (NUL-terminated), NULL otherwise.
 * get_arr_data: naturally aligned copy of a numeric array's n elements of
 * get_arr_type (bool: one byte each), NULL for string arrays / non-arrays. */
ZL_API enum zl_gguf_type zl_gguf_get_arr_type(const struct zl_gguf *g, int64_t i);
ZL_API size_t zl_gguf_get_arr_n(const struct zl_gguf *g, int64_t i);
ZL_API const char *zl_gguf_get_arr_str(const struct zl_gguf *g, int64_t i, size_t j, size_t *len);
ZL_API const void *zl_gguf_get_arr_data(const struct zl_gguf *g, int64_t i);

/* ---- tensors ---- */

ZL_API int64_t zl_gguf_n_tensors(const struct zl_gguf *g);
/* Index of tensor `name`, -1 when absent. */
ZL_API int64_t zl_gguf_find_tensor(const struct zl_gguf *g, const char *name);
/* Info of tensor i (owned by g), NULL when out of range. */
ZL_API const struct zl_gguf_tensor_info *zl_gguf_tensor(const struct zl_gguf *g, int64_t i);

/* ---- ggml types and dequantization (core/gguf-dequant.c) ---- */

/* "F32", "Q4_1", ...; NULL for values that are not ggml types. */
ZL_API const char *zl_ggml_type_name(enum zl_ggml_type t);
/* Elements per block (1 for plain types) and bytes per block; 0 for
 * values that are not ggml types. */
ZL_API size_t zl_ggml_block_elems(enum zl_ggml_type t);
ZL_API size_t zl_ggml_block_bytes(enum zl_ggml_type t);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block
 * size or t is not a ggml type. */
ZL_API size_t zl_ggml_row_bytes(enum zl_ggml_type t, int64_t n);
/* Whether zl_ggml_dequantize handles t (F32, F16, BF16, Q8_0, Q4_0, Q4_1). */
ZL_API int zl_ggml_can_dequantize(enum zl_ggml_type t);

/* Converts n elements (a multiple of the block size) of type `src_t` at
 * `src` into `dst` as f32, f16 or bf16 (narrowing rounds to nearest even
 * from the exact f32 value).  ZL_EUNSUPPORTED for other types, ZL_EINVAL
 * for a bad n. */
ZL_API int zl_ggml_dequantize(enum zl_ggml_type src_t, const void *src, int64_t n,
                              enum zl_dtype dst_dt, void *dst);

/* Dequantizes rows [row0, row0 + n_rows) of tensor t (rows of ne[0]
 * elements, flattened over ne[1..3]) into dst, n_rows * ne[0] elements of
 * dst_dt.  ZL_ERANGE when the rows are out of range; messages name the
 * tensor. */
ZL_API int zl_gguf_dequantize_rows(const struct zl_gguf_tensor_info *t, int64_t row0,
                                   int64_t n_rows, enum zl_dtype dst_dt, void *dst);

#ifdef __cplusplus
}
#endif
#endif
