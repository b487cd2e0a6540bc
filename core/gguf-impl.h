/* Layout of struct zl_gguf (core/gguf.c), shared with core/gguf-dequant.c
 * and core/hf-config.c. */
#ifndef ZLIGHT_GGUF_IMPL_H
#define ZLIGHT_GGUF_IMPL_H

#include <zlight/gguf.h>

#include "weights-impl.h"

struct zl_gguf_str {
    const char *s;      /* NUL-terminated copy */
    size_t len;
};

struct zl_gguf_kv {
    const char *key;
    enum zl_gguf_type type;
    enum zl_gguf_type arr_type;     /* ARRAY only */
    uint64_t n;                     /* ARRAY only: element count */
    union {
        uint64_t u;                 /* unsigned integers and bool */
        int64_t i;                  /* signed integers */
        double f;                   /* float32 / float64 */
    } v;
    struct zl_gguf_str str;         /* STRING */
    void *arr;                      /* ARRAY: n elements of arr_type, or n struct zl_gguf_str */
};

struct zl_gguf_blk;                 /* arena block (gguf.c) */

struct zl_gguf {
    char *path;                     /* for messages */
    struct zl_wmap map;             /* zero when parsing a caller's buffer */
    const uint8_t *base;
    size_t size;
    uint32_t version;
    size_t alignment;
    uint64_t data_offset;
    int64_t n_kv;
    struct zl_gguf_kv *kv;          /* [n_kv] */
    int64_t n_tensors;
    struct zl_gguf_tensor_info *tensors;    /* [n_tensors] */
    struct zl_wnames kv_names, tensor_names;
    struct zl_gguf_blk *arena;      /* strings, arrays, names */
};

#endif
