/* Tensor descriptors: a pointer, an element type, a shape and byte strides.
 *
 *   struct zl_tensor w, row0;                   // no allocation anywhere here
 *   int64_t shape[2] = {n_vocab, n_embd};
 *   zl_tensor_init(&w, ZL_DTYPE_BF16, 2, shape, ptr, ZL_TENSOR_HOST);
 *   zl_tensor_view(&row0, &w, 0, 0, 1);         // [1, n_embd], shares ptr
 *   zl_tensor_convert(&f32_dst, &w);             // bf16 -> f32, any strides
 */
#ifndef ZLIGHT_TENSOR_H
#define ZLIGHT_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/dtype.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZL_TENSOR_MAX_DIMS 4
#define ZL_TENSOR_HOST (-1)   /* `device` of a tensor in host memory */

/* A tensor is a descriptor, not an owner: it never allocates or frees `data`
 * (the memory manager and the weight loader own the bytes).  The struct is
 * transparent on purpose, like DLPack's DLTensor: models and backend kernels
 * read ne/nb/data in their innermost loops, and a function call per field
 * there would cost more than the ABI rigidity it avoids.  Fields are only
 * appended (with ABI_VERSION bumps), and plugins may copy the struct by value.
 *
 * Dimension order is row-major / numpy / safetensors order: ne[0] is the
 * OUTERMOST dimension and ne[n_dims-1] the innermost (fastest varying), so a
 * shape comment [n_tok, n_embd] means ne[0] = n_tok, ne[1] = n_embd and a
 * contiguous tensor has nb[n_dims-1] = element size.  (ggml and GGUF use the
 * reverse; the GGUF loader flips its dims once at load time.)  Entries at
 * index >= n_dims hold ne = 1, nb = 0 and are ignored by every function.
 *
 * Strides are in bytes and never negative.  ZL_DTYPE_Q4_PACKED packs two
 * elements per byte along the innermost dimension, which therefore must be
 * even, stays packed (no view of odd offset or length, no permute that moves
 * it) and has nb[n_dims-1] = 0: a nibble has no byte stride; a row's size is
 * zl_dtype_row_bytes(ZL_DTYPE_Q4_PACKED, ne[n_dims-1]). */
struct zl_tensor {
    void *data;             /* first element; NULL only for a layout not yet placed */
    const char *name;       /* borrowed, e.g. "model.layers.0.mlp.up_proj.weight"; may be NULL */
    int64_t ne[ZL_TENSOR_MAX_DIMS]; /* [ne[0] outermost, ..., ne[n_dims-1] innermost] elements */
    int64_t nb[ZL_TENSOR_MAX_DIMS]; /* byte stride of each dim of ne; same order */
    enum zl_dtype dtype;    /* element type of every element */
    int32_t n_dims;         /* 1..ZL_TENSOR_MAX_DIMS */
    int32_t device;         /* ZL_TENSOR_HOST (-1) or a device ordinal >= 0 of the backend */
    uint32_t flags;         /* 0; reserved for appended uses */
};

/* Fills `t` as a contiguous row-major tensor of `shape[0..n_dims-1]`
 * (outermost first) over `data` (may be NULL; name = NULL, flags = 0).
 * ZL_EINVAL: n_dims outside 1..4, a negative size, invalid dtype, device
 * < -1, odd innermost size for Q4_PACKED.  ZL_ERANGE: the element count or
 * byte size overflows int64_t / size_t.  On failure `t` is untouched. */
ZL_API int zl_tensor_init(struct zl_tensor *t, enum zl_dtype dtype, int n_dims,
                          const int64_t *shape, void *data, int device);

/* Number of elements (product of ne[0..n_dims-1]; 0 if any is 0). */
ZL_API int64_t zl_tensor_nelements(const struct zl_tensor *t);

/* Number of rows: elements / innermost size (0 for an empty tensor). */
ZL_API int64_t zl_tensor_nrows(const struct zl_tensor *t);

/* Bytes of memory the elements span from `data`: for a contiguous tensor
 * zl_dtype_row_bytes(dtype, nelements); for a strided view the distance
 * to the end of its last element.  0 for an empty tensor. */
ZL_API size_t zl_tensor_nbytes(const struct zl_tensor *t);

/* 1 when the strides are exactly those zl_tensor_init computes for ne
 * (dims of size 1 may have any stride), else 0. */
ZL_API int zl_tensor_is_contiguous(const struct zl_tensor *t);

/* `dst` = elements [start, start+len) of `src` along `dim`, same memory, no
 * copy; the other dims, strides, name and device are kept.  dst may be src.
 * ZL_ERANGE when the range is outside 0..ne[dim]; ZL_EINVAL for a bad dim
 * or (Q4_PACKED) an odd start or len on the innermost dim. */
ZL_API int zl_tensor_view(struct zl_tensor *dst, const struct zl_tensor *src,
                          int dim, int64_t start, int64_t len);

/* `dst` = `src` with a new shape (outermost first; one entry may be -1 to
 * be inferred) over the same memory.  Contiguous sources only:
 * ZL_EUNSUPPORTED otherwise; ZL_EINVAL when the element count differs or
 * the shape is bad.  dst may be src. */
ZL_API int zl_tensor_reshape(struct zl_tensor *dst, const struct zl_tensor *src,
                             int n_dims, const int64_t *shape);

/* `dst` dim i = `src` dim perm[i] (numpy.transpose semantics): only ne and
 * nb move, no copy.  perm must be a permutation of 0..n_dims-1 (ZL_EINVAL).
 * ZL_EUNSUPPORTED when it moves the innermost dim of a Q4_PACKED tensor.
 * dst may be src. */
ZL_API int zl_tensor_permute(struct zl_tensor *dst, const struct zl_tensor *src,
                             const int *perm);

/* Swaps dims d0 and d1 (a permute). */
ZL_API int zl_tensor_transpose(struct zl_tensor *dst, const struct zl_tensor *src,
                               int d0, int d1);

/* Address of row `i` (rows = the innermost-dim vectors, numbered row-major
 * over the outer dims, 0 <= i < zl_tensor_nrows).  Elements of the row are
 * nb[n_dims-1] bytes apart.  NULL, with zl_last_error() set, when i is out
 * of range or data is NULL.  Host or device address alike (no access). */
ZL_API void *zl_tensor_row(const struct zl_tensor *t, int64_t i);

/* Element-wise dst = src converted to dst->dtype (see zl_dtype_convert for
 * the pairs and rounding).  Same n_dims and ne required (ZL_EINVAL); any
 * strides on either side; dst and src must not overlap unless identical.
 * Host tensors only: ZL_EUNSUPPORTED when either is on a device. */
ZL_API int zl_tensor_convert(struct zl_tensor *dst, const struct zl_tensor *src);

/* Writes the dtype and shape, outermost first, into buf like snprintf:
 * "bf16[2, 3]", with " strided" appended for a non-contiguous tensor and
 * " @dev0" for one on device 0.  Returns the length it needed (>= n means
 * truncated; buf may be NULL when n is 0), ZL_EINVAL on a bad descriptor. */
ZL_API int zl_tensor_describe(const struct zl_tensor *t, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
