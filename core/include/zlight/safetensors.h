/* safetensors reader: one file, or a Hugging Face directory of shards.
 *
 *   struct zl_safetensors *st;
 *   if (zl_safetensors_open("/models/llama", &st) < 0) die(zl_last_error());
 *   const struct zl_safetensors_tensor *w;
 *   if (zl_safetensors_get(st, "model.norm.weight", &w) == 0) use(w->data, w->shape[0]);
 *   zl_safetensors_close(st);
 */
#ifndef ZLIGHT_SAFETENSORS_H
#define ZLIGHT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/dtype.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZL_SAFETENSORS_MAX_DIMS 4
/* Headers above this size are rejected (as the reference implementation does). */
#define ZL_SAFETENSORS_MAX_HEADER (100u << 20)

struct zl_safetensors;

/* One tensor; every pointer stays valid until zl_safetensors_close. */
struct zl_safetensors_tensor {
    const char *name;
    const char *file;           /* path of the file (shard) holding it */
    const char *dtype_name;     /* as written in the header: "BF16", "F8_E4M3", "BOOL", ... */
    enum zl_dtype dtype;        /* meaningful only when `supported` */
    int32_t supported;          /* 0: dtype (BOOL, F64, U16, ...) or rank > 4 not handled by
                                 * zlight; zl_safetensors_get refuses it with the reason */
    uint32_t n_dims;            /* rank as written (0 = scalar) */
    int64_t shape[ZL_SAFETENSORS_MAX_DIMS]; /* row-major, outermost first; unused = 1 */
    const void *data;           /* into the mapping; not necessarily aligned */
    size_t nbytes;              /* product(shape) * element size */
    uint64_t offset;            /* of the data from the start of its file */
};

/* Opens `path`: a .safetensors file, a model.safetensors.index.json, or a
 * directory (its model.safetensors.index.json when present, else its
 * model.safetensors, else every *.safetensors in it).  The files are
 * mapped, not read.  Status:
 * ZL_ENOTFOUND (no such file, no safetensors in the directory, a shard
 * named by the index missing), ZL_EIO, ZL_EINVAL (malformed header or
 * index; the message names the file and the tensor), ZL_EUNSUPPORTED (a
 * dtype unknown to the format), ZL_ERANGE (size overflow), ZL_ENOMEM.
 * *out is NULL on failure. */
ZL_API int zl_safetensors_open(const char *path, struct zl_safetensors **out);

/* Parses one safetensors image already in memory (tests, fuzzing).  `buf`
 * is not copied and must outlive the object; `name` is used in messages
 * (NULL: "<memory>").  Same status codes as zl_safetensors_open. */
ZL_API int zl_safetensors_parse_buffer(const void *buf, size_t len, const char *name,
                                       struct zl_safetensors **out);

/* Unmaps and frees; NULL is a no-op. */
ZL_API void zl_safetensors_close(struct zl_safetensors *st);

/* Path given at open (for messages). */
ZL_API const char *zl_safetensors_path(const struct zl_safetensors *st);

/* Number of files (shards) mapped. */
ZL_API int zl_safetensors_n_files(const struct zl_safetensors *st);

ZL_API int64_t zl_safetensors_n_tensors(const struct zl_safetensors *st);
/* Tensor i in file order (shards in index order), NULL when out of range. */
ZL_API const struct zl_safetensors_tensor *zl_safetensors_tensor(const struct zl_safetensors *st,
                                                                 int64_t i);
/* Index of `name`, -1 when absent. */
ZL_API int64_t zl_safetensors_find(const struct zl_safetensors *st, const char *name);

/* *out = tensor `name`.  ZL_ENOTFOUND when absent, ZL_EUNSUPPORTED when its
 * dtype or rank is not handled (both named in the message). */
ZL_API int zl_safetensors_get(const struct zl_safetensors *st, const char *name,
                              const struct zl_safetensors_tensor **out);

/* Checks that tensor `name` exists with `dtype` (ZL_DTYPE_COUNT: any
 * supported dtype) and shape[0..n_dims-1].  ZL_ENOTFOUND when missing,
 * ZL_EINVAL on a mismatch, e.g.
 * "model.layers.3.mlp.up_proj.weight: shape [512, 128] in FILE, expected [1536, 128]". */
ZL_API int zl_safetensors_expect(const struct zl_safetensors *st, const char *name,
                                 enum zl_dtype dtype, int n_dims, const int64_t *shape);

/* Value of `key` in the first file's __metadata__ (e.g. "format"), NULL
 * when absent. */
ZL_API const char *zl_safetensors_metadata(const struct zl_safetensors *st, const char *key);

#ifdef __cplusplus
}
#endif
#endif
