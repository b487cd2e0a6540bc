/* Tensor descriptors: layout arithmetic, views and element-wise conversion.
 * Nothing here allocates; see zlight/tensor.h for the layout conventions. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <zlight/tensor.h>

static int q4(const struct zl_tensor *t)
{
    return t->dtype == ZL_DTYPE_Q4_PACKED;
}

/* Validates what every function relies on, so a descriptor assembled by
 * hand (the struct is public) cannot drive pointer arithmetic astray. */
static int check_desc(const struct zl_tensor *t, const char *fn)
{
    if (!t)
        return zl_error(ZL_EINVAL, "%s: NULL tensor", fn);
    if (t->n_dims < 1 || t->n_dims > ZL_TENSOR_MAX_DIMS)
        return zl_error(ZL_EINVAL, "%s: n_dims %d outside 1..%d", fn, (int)t->n_dims,
                        ZL_TENSOR_MAX_DIMS);
    if (!zl_dtype_bits(t->dtype))
        return zl_error(ZL_EINVAL, "%s: invalid dtype value %d", fn, (int)t->dtype);
    for (int d = 0; d < t->n_dims; d++)
        if (t->ne[d] < 0 || t->nb[d] < 0)
            return zl_error(ZL_EINVAL, "%s: negative size or stride in dim %d", fn, d);
    return ZL_OK;
}

/* Contiguous strides for t's ne and dtype into nb (unused tail 0).  Returns
 * 0, or -1 when the element count or byte size does not fit int64_t and
 * size_t.  Quiet: zl_tensor_is_contiguous must not touch the error message. */
static int contiguous_strides(const struct zl_tensor *t, int64_t nb[ZL_TENSOR_MAX_DIMS])
{
    const uint64_t limit = (uint64_t)INT64_MAX < SIZE_MAX ? (uint64_t)INT64_MAX : SIZE_MAX;
    int inner = t->n_dims - 1;
    uint64_t elsize = zl_dtype_bits(t->dtype) / 8;  /* 0 for the packed Q4 */
    uint64_t count = (uint64_t)t->ne[inner];
    if (count > limit / (elsize ? elsize : 1))
        return -1;
    /* Bytes of everything inside the current dim; starts at one row. */
    uint64_t span = zl_dtype_row_bytes(t->dtype, (size_t)count);
    memset(nb, 0, ZL_TENSOR_MAX_DIMS * sizeof nb[0]);
    nb[inner] = (int64_t)elsize;
    for (int d = inner - 1; d >= 0; d--) {
        uint64_t n = (uint64_t)t->ne[d];
        nb[d] = (int64_t)span;
        if (n && (span > limit / n || count > limit / n))
            return -1;
        span *= n;
        count *= n;
    }
    return 0;
}

/* Appends like snprintf into buf[0..n), counting on past a full buffer. */
ZL_PRINTF(4, 5)
static void put(char *buf, size_t n, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(*len < n ? buf + *len : NULL, *len < n ? n - *len : 0, fmt, ap);
    va_end(ap);
    *len += k > 0 ? (size_t)k : 0;
}

/* "bf16[2, 3]", plus the layout suffixes when asked. */
static size_t describe_to(const struct zl_tensor *t, char *buf, size_t n, int layout)
{
    size_t len = 0;
    if (n)
        buf[0] = '\0';
    put(buf, n, &len, "%s[", zl_dtype_name(t->dtype));
    for (int d = 0; d < t->n_dims; d++)
        put(buf, n, &len, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    put(buf, n, &len, "]");
    if (layout && !zl_tensor_is_contiguous(t))
        put(buf, n, &len, " strided");
    if (layout && t->device != ZL_TENSOR_HOST)
        put(buf, n, &len, " @dev%d", (int)t->device);
    return len;
}

int zl_tensor_init(struct zl_tensor *t, enum zl_dtype dtype, int n_dims,
                   const int64_t *shape, void *data, int device)
{
    if (!t || !shape)
        return zl_error(ZL_EINVAL, "zl_tensor_init: NULL argument");
    if (n_dims < 1 || n_dims > ZL_TENSOR_MAX_DIMS)
        return zl_error(ZL_EINVAL, "zl_tensor_init: n_dims %d outside 1..%d", n_dims,
                        ZL_TENSOR_MAX_DIMS);
    if (!zl_dtype_bits(dtype))
        return zl_error(ZL_EINVAL, "zl_tensor_init: invalid dtype value %d", (int)dtype);
    if (device < ZL_TENSOR_HOST)
        return zl_error(ZL_EINVAL, "zl_tensor_init: device %d (use -1 for host)", device);
    for (int d = 0; d < n_dims; d++)
        if (shape[d] < 0)
            return zl_error(ZL_EINVAL, "zl_tensor_init: negative size %" PRId64 " in dim %d",
                            shape[d], d);
    if (dtype == ZL_DTYPE_Q4_PACKED && shape[n_dims - 1] % 2)
        return zl_error(ZL_EINVAL, "zl_tensor_init: q4 innermost size %" PRId64
                        " is odd (two values per byte)", shape[n_dims - 1]);

    struct zl_tensor tmp = {.data = data, .dtype = dtype, .n_dims = n_dims, .device = device};
    for (int d = 0; d < ZL_TENSOR_MAX_DIMS; d++)
        tmp.ne[d] = d < n_dims ? shape[d] : 1;
    if (contiguous_strides(&tmp, tmp.nb) < 0) {
        char desc[128];
        describe_to(&tmp, desc, sizeof desc, 0);
        return zl_error(ZL_ERANGE, "zl_tensor_init: %s overflows the address range "
                        "(more than 2^63 bytes or elements)", desc);
    }
    *t = tmp;
    return ZL_OK;
}

int64_t zl_tensor_nelements(const struct zl_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
        n *= t->ne[d];
    return n;
}

int64_t zl_tensor_nrows(const struct zl_tensor *t)
{
    int64_t inner = t->ne[t->n_dims - 1];
    return inner ? zl_tensor_nelements(t) / inner : 0;
}

size_t zl_tensor_nbytes(const struct zl_tensor *t)
{
    int inner = t->n_dims - 1;
    if (zl_tensor_nelements(t) == 0)
        return 0;
    /* The last row ends one element (or one packed q4 row) past its last start. */
    size_t span = q4(t) ? zl_dtype_row_bytes(t->dtype, (size_t)t->ne[inner])
                        : (size_t)((t->ne[inner] - 1) * t->nb[inner]) + zl_dtype_bits(t->dtype) / 8;
    for (int d = 0; d < inner; d++)
        span += (size_t)((t->ne[d] - 1) * t->nb[d]);
    return span;
}

int zl_tensor_is_contiguous(const struct zl_tensor *t)
{
    int64_t nb[ZL_TENSOR_MAX_DIMS];
    if (contiguous_strides(t, nb) < 0)
        return 0;
    for (int d = 0; d < t->n_dims; d++)
        if (t->ne[d] != 1 && t->nb[d] != nb[d])
            return 0;
    return 1;
}

int zl_tensor_view(struct zl_tensor *dst, const struct zl_tensor *src,
                   int dim, int64_t start, int64_t len)
{
    int rc = check_desc(src, "zl_tensor_view");
    if (rc < 0)
        return rc;
    if (!dst)
        return zl_error(ZL_EINVAL, "zl_tensor_view: NULL dst");
    if (dim < 0 || dim >= src->n_dims)
        return zl_error(ZL_EINVAL, "zl_tensor_view: dim %d of a %d-d tensor", dim,
                        (int)src->n_dims);
    if (start < 0 || len < 0 || start > src->ne[dim] || len > src->ne[dim] - start)
        return zl_error(ZL_ERANGE, "zl_tensor_view: range [%" PRId64 ", %" PRId64 "+%" PRId64
                        ") outside dim %d of size %" PRId64, start, start, len, dim,
                        src->ne[dim]);
    int inner = dim == src->n_dims - 1;
    if (q4(src) && inner && (start % 2 || len % 2))
        return zl_error(ZL_EINVAL, "zl_tensor_view: q4 innermost view needs an even start "
                        "and length (got %" PRId64 ", %" PRId64 ")", start, len);
    struct zl_tensor v = *src;
    size_t off = q4(src) && inner ? (size_t)start / 2 : (size_t)(start * src->nb[dim]);
    if (v.data)
        v.data = (char *)v.data + off;
    v.ne[dim] = len;
    *dst = v;
    return ZL_OK;
}

int zl_tensor_reshape(struct zl_tensor *dst, const struct zl_tensor *src,
                      int n_dims, const int64_t *shape)
{
    int rc = check_desc(src, "zl_tensor_reshape");
    if (rc < 0)
        return rc;
    if (!dst || !shape)
        return zl_error(ZL_EINVAL, "zl_tensor_reshape: NULL argument");
    if (!zl_tensor_is_contiguous(src))
        return zl_error(ZL_EUNSUPPORTED, "zl_tensor_reshape: source is not contiguous "
                        "(convert it into a contiguous tensor first)");
    if (n_dims < 1 || n_dims > ZL_TENSOR_MAX_DIMS)
        return zl_error(ZL_EINVAL, "zl_tensor_reshape: n_dims %d outside 1..%d", n_dims,
                        ZL_TENSOR_MAX_DIMS);
    int64_t want = zl_tensor_nelements(src), fixed[ZL_TENSOR_MAX_DIMS], known = 1;
    int infer = -1, overflow = 0;
    for (int d = 0; d < n_dims; d++) {
        fixed[d] = shape[d];
        if (shape[d] == -1 && infer < 0) {
            infer = d;
            continue;
        }
        if (shape[d] < 0)
            return zl_error(ZL_EINVAL, "zl_tensor_reshape: bad size %" PRId64 " in dim %d "
                            "(only one -1 allowed)", shape[d], d);
        if (shape[d] && known > INT64_MAX / shape[d])
            overflow = 1;
        else
            known *= shape[d];
    }
    if (infer >= 0) {
        if (known == 0 || overflow)
            return zl_error(ZL_EINVAL, "zl_tensor_reshape: cannot infer the -1 dim when the "
                            "others multiply to %s", known ? "an overflow" : "0");
        fixed[infer] = want / known;
        known *= fixed[infer];
    }
    if (overflow || known != want)
        return zl_error(ZL_EINVAL, "zl_tensor_reshape: new shape does not hold the %" PRId64
                        " elements of the source", want);
    const char *name = src->name;
    rc = zl_tensor_init(dst, src->dtype, n_dims, fixed, src->data, src->device);
    if (rc < 0)
        return zl_error_wrap(rc, "zl_tensor_reshape");
    dst->name = name;
    return ZL_OK;
}

int zl_tensor_permute(struct zl_tensor *dst, const struct zl_tensor *src, const int *perm)
{
    int rc = check_desc(src, "zl_tensor_permute");
    if (rc < 0)
        return rc;
    if (!dst || !perm)
        return zl_error(ZL_EINVAL, "zl_tensor_permute: NULL argument");
    unsigned seen = 0;
    for (int d = 0; d < src->n_dims; d++) {
        if (perm[d] < 0 || perm[d] >= src->n_dims || (seen >> perm[d] & 1u))
            return zl_error(ZL_EINVAL, "zl_tensor_permute: perm is not a permutation of "
                            "0..%d (entry %d is %d)", (int)src->n_dims - 1, d, perm[d]);
        seen |= 1u << perm[d];
    }
    int inner = src->n_dims - 1;
    if (q4(src) && perm[inner] != inner)
        return zl_error(ZL_EUNSUPPORTED, "zl_tensor_permute: the packed innermost dim of a "
                        "q4 tensor cannot move");
    struct zl_tensor p = *src;
    for (int d = 0; d < src->n_dims; d++) {
        p.ne[d] = src->ne[perm[d]];
        p.nb[d] = src->nb[perm[d]];
    }
    *dst = p;
    return ZL_OK;
}

int zl_tensor_transpose(struct zl_tensor *dst, const struct zl_tensor *src, int d0, int d1)
{
    int rc = check_desc(src, "zl_tensor_transpose");
    if (rc < 0)
        return rc;
    if (d0 < 0 || d1 < 0 || d0 >= src->n_dims || d1 >= src->n_dims)
        return zl_error(ZL_EINVAL, "zl_tensor_transpose: dims %d, %d of a %d-d tensor", d0, d1,
                        (int)src->n_dims);
    int perm[ZL_TENSOR_MAX_DIMS] = {0, 1, 2, 3};
    perm[d0] = d1;
    perm[d1] = d0;
    return zl_tensor_permute(dst, src, perm);
}

/* Byte offset of row i: split i into outer indices, innermost outer dim first. */
static int64_t row_offset(const struct zl_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->n_dims - 2; d >= 0; d--) {
        off += (i % t->ne[d]) * t->nb[d];
        i /= t->ne[d];
    }
    return off;
}

void *zl_tensor_row(const struct zl_tensor *t, int64_t i)
{
    if (check_desc(t, "zl_tensor_row") < 0)
        return NULL;
    if (!t->data) {
        zl_error(ZL_EINVAL, "zl_tensor_row: tensor has no data");
        return NULL;
    }
    int64_t rows = zl_tensor_nrows(t);
    if (i < 0 || i >= rows) {
        zl_error(ZL_ERANGE, "zl_tensor_row: row %" PRId64 " of %" PRId64, i, rows);
        return NULL;
    }
    return (char *)t->data + row_offset(t, i);
}

/* Converts one row whose elements are strided on either side: gathers into
 * a contiguous chunk, converts, scatters. */
static int convert_strided_row(char *d, int64_t dstride, enum zl_dtype ddt,
                               const char *s, int64_t sstride, enum zl_dtype sdt, int64_t n)
{
    enum { CHUNK = 256 };
    uint64_t sbuf[CHUNK], dbuf[CHUNK];  /* 8 bytes a slot covers every element size */
    size_t ss = zl_dtype_bits(sdt) / 8, ds = zl_dtype_bits(ddt) / 8;
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        for (int64_t j = 0; j < k; j++)
            memcpy((char *)sbuf + j * ss, s + (i + j) * sstride, ss);
        int rc = zl_dtype_convert(ddt, dbuf, sdt, sbuf, (size_t)k);
        if (rc < 0)
            return rc;
        for (int64_t j = 0; j < k; j++)
            memcpy(d + (i + j) * dstride, (char *)dbuf + j * ds, ds);
    }
    return ZL_OK;
}

int zl_tensor_convert(struct zl_tensor *dst, const struct zl_tensor *src)
{
    int rc = check_desc(src, "zl_tensor_convert");
    if (rc < 0 || (rc = check_desc(dst, "zl_tensor_convert")) < 0)
        return rc;
    if (src->device != ZL_TENSOR_HOST || dst->device != ZL_TENSOR_HOST)
        return zl_error(ZL_EUNSUPPORTED, "zl_tensor_convert: host tensors only (src on %d, "
                        "dst on %d); use the backend to convert on a device",
                        (int)src->device, (int)dst->device);
    if (dst->n_dims != src->n_dims ||
        memcmp(dst->ne, src->ne, (size_t)src->n_dims * sizeof src->ne[0]))
        return zl_error(ZL_EINVAL, "zl_tensor_convert: shapes differ");
    int64_t n = zl_tensor_nelements(src);
    if (n == 0)
        return ZL_OK;
    if (!dst->data || !src->data)
        return zl_error(ZL_EINVAL, "zl_tensor_convert: tensor without data");
    if (dst->dtype != src->dtype &&
        (!zl_dtype_is_float(dst->dtype) || !zl_dtype_is_float(src->dtype)))
        return zl_error(ZL_EUNSUPPORTED, "zl_tensor_convert: no conversion from %s to %s",
                        zl_dtype_name(src->dtype), zl_dtype_name(dst->dtype));
    if (zl_tensor_is_contiguous(src) && zl_tensor_is_contiguous(dst))
        return zl_dtype_convert(dst->dtype, dst->data, src->dtype, src->data, (size_t)n);

    int inner = src->n_dims - 1;
    int64_t len = src->ne[inner], rows = n / len;
    int64_t ds = dst->nb[inner], ss = src->nb[inner];
    /* Rows whose elements are adjacent (always so for packed q4) convert in one call. */
    int packed = q4(src) || (ds == (int64_t)zl_dtype_bits(dst->dtype) / 8 &&
                             ss == (int64_t)zl_dtype_bits(src->dtype) / 8);
    for (int64_t r = 0; r < rows; r++) {
        char *d = (char *)dst->data + row_offset(dst, r);
        const char *s = (const char *)src->data + row_offset(src, r);
        rc = packed ? zl_dtype_convert(dst->dtype, d, src->dtype, s, (size_t)len)
                    : convert_strided_row(d, ds, dst->dtype, s, ss, src->dtype, len);
        if (rc < 0)
            return rc;
    }
    return ZL_OK;
}

int zl_tensor_describe(const struct zl_tensor *t, char *buf, size_t n)
{
    int rc = check_desc(t, "zl_tensor_describe");
    if (rc < 0)
        return rc;
    if (!buf && n)
        return zl_error(ZL_EINVAL, "zl_tensor_describe: NULL buffer of size %zu", n);
    size_t len = describe_to(t, buf, n, 1);  /* <= 4 dims: far below INT_MAX */
    return (int)len;
}
