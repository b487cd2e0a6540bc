/* GGUF reader: maps the file, validates every count, string and offset
 * against the file size before trusting it, and copies the metadata
 * (NUL-terminated strings, naturally aligned arrays) so callers never read
 * unaligned or unterminated bytes.  Tensor data stays in the mapping. */
#include "config.h"

#include <limits.h>
#include <stdio.h>

#include "gguf-impl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

static const char GGUF_MAGIC[4] = {'G', 'G', 'U', 'F'};

/* ---- arena: many small strings without a malloc each ---- */

struct zl_gguf_blk {
    struct zl_gguf_blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

static void *arena_alloc(struct zl_gguf *g, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct zl_gguf_blk *b = g->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = g->arena;
        b->used = 0;
        b->cap = cap;
        g->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

/* ---- bounds-checked little-endian reader ---- */

struct rd {
    struct zl_gguf *g;
    size_t pos;
};

static size_t rd_left(const struct rd *r)
{
    return r->g->size - r->pos;
}

static int rd_trunc(const struct rd *r, const char *what)
{
    return zl_error(ZL_EINVAL, "%s: truncated file: %s at offset %zu runs past the end (%zu bytes)",
                    r->g->path, what, r->pos, r->g->size);
}

static int rd_raw(struct rd *r, void *dst, size_t n, const char *what)
{
    if (rd_left(r) < n)
        return rd_trunc(r, what);
    memcpy(dst, r->g->base + r->pos, n);
    r->pos += n;
    return ZL_OK;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
    return rd_raw(r, v, 4, what);
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
    return rd_raw(r, v, 8, what);
}

/* A length-prefixed string, copied NUL-terminated into the arena. */
static int rd_str(struct rd *r, struct zl_gguf_str *s, const char *what)
{
    uint64_t len;
    int rc = rd_u64(r, &len, what);
    if (rc < 0)
        return rc;
    if (len > rd_left(r))
        return zl_error(ZL_EINVAL, "%s: %s at offset %zu has length %llu, past the end of the file",
                        r->g->path, what, r->pos - 8, (unsigned long long)len);
    char *p = arena_alloc(r->g, (size_t)len + 1);
    if (!p)
        return zl_error(ZL_ENOMEM, "%s: out of memory", r->g->path);
    memcpy(p, r->g->base + r->pos, (size_t)len);
    p[len] = '\0';
    r->pos += (size_t)len;
    s->s = p;
    s->len = (size_t)len;
    return ZL_OK;
}

static const char *const type_names[ZL_GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

ZL_API const char *zl_gguf_type_name(enum zl_gguf_type t)
{
    return t >= 0 && t < ZL_GGUF_TYPE_COUNT ? type_names[t] : "invalid";
}

/* Bytes of a fixed-size scalar type, 0 for string/array/invalid. */
static size_t scalar_size(uint32_t t)
{
    static const unsigned char sz[ZL_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < ZL_GGUF_TYPE_COUNT ? sz[t] : 0;
}

/* Decodes a scalar of type t from p into kv->v. */
static void scalar_decode(enum zl_gguf_type t, const unsigned char *p, struct zl_gguf_kv *kv)
{
    switch (t) {
    case ZL_GGUF_TYPE_UINT8: case ZL_GGUF_TYPE_BOOL: kv->v.u = p[0]; break;
    case ZL_GGUF_TYPE_INT8: kv->v.i = (int8_t)p[0]; break;
    case ZL_GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
    case ZL_GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i = x; break; }
    case ZL_GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
    case ZL_GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i = x; break; }
    case ZL_GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f = x; break; }
    case ZL_GGUF_TYPE_UINT64: memcpy(&kv->v.u, p, 8); break;
    case ZL_GGUF_TYPE_INT64: memcpy(&kv->v.i, p, 8); break;
    case ZL_GGUF_TYPE_FLOAT64: memcpy(&kv->v.f, p, 8); break;
    default: break;
    }
}

static int read_array(struct rd *r, struct zl_gguf_kv *kv)
{
    struct zl_gguf *g = r->g;
    uint32_t at;
    int rc = rd_u32(r, &at, "array element type");
    if (rc < 0)
        return rc;
    if (rd_u64(r, &kv->n, "array length") < 0)
        return zl_error_wrap(ZL_EINVAL, "key '%s'", kv->key);
    kv->arr_type = (enum zl_gguf_type)at;
    if (at == ZL_GGUF_TYPE_ARRAY)
        return zl_error(ZL_EUNSUPPORTED, "%s: key '%s': nested arrays are not supported",
                        g->path, kv->key);
    if (at == ZL_GGUF_TYPE_STRING) {
        /* every string costs at least its 8-byte length */
        if (kv->n > rd_left(r) / 8)
            return zl_error(ZL_EINVAL, "%s: key '%s': string array of %llu elements exceeds the file",
                            g->path, kv->key, (unsigned long long)kv->n);
        struct zl_gguf_str *s = arena_alloc(g, (size_t)kv->n * sizeof *s + 1);
        if (!s)
            return zl_error(ZL_ENOMEM, "%s: out of memory", g->path);
        for (uint64_t j = 0; j < kv->n; j++)
            if ((rc = rd_str(r, &s[j], "array string")) < 0)
                return zl_error_wrap(rc, "key '%s' element %llu", kv->key, (unsigned long long)j);
        kv->arr = s;
        return ZL_OK;
    }
    size_t es = scalar_size(at);
    if (!es)
        return zl_error(ZL_EINVAL, "%s: key '%s': invalid array element type %u", g->path,
                        kv->key, at);
    if (kv->n > rd_left(r) / es)
        return zl_error(ZL_EINVAL, "%s: key '%s': array of %llu %s exceeds the file", g->path,
                        kv->key, (unsigned long long)kv->n, type_names[at]);
    size_t nb = (size_t)kv->n * es;
    kv->arr = arena_alloc(g, nb + 1);
    if (!kv->arr)
        return zl_error(ZL_ENOMEM, "%s: out of memory", g->path);
    memcpy(kv->arr, g->base + r->pos, nb);
    r->pos += nb;
    return ZL_OK;
}

static int read_kv(struct rd *r, int64_t i)
{
    struct zl_gguf *g = r->g;
    struct zl_gguf_kv *kv = &g->kv[i];
    struct zl_gguf_str key;
    uint32_t t;
    int rc = rd_str(r, &key, "metadata key");
    if (rc < 0)
        return zl_error_wrap(rc, "metadata entry %lld", (long long)i);
    kv->key = key.s;
    if (zl_wnames_add(&g->kv_names, kv->key, i) >= 0)
        return zl_error(ZL_EINVAL, "%s: duplicate metadata key '%s'", g->path, kv->key);
    if ((rc = rd_u32(r, &t, "metadata value type")) < 0)
        return zl_error_wrap(rc, "key '%s'", kv->key);
    kv->type = (enum zl_gguf_type)t;
    if (t == ZL_GGUF_TYPE_STRING) {
        if ((rc = rd_str(r, &kv->str, "string value")) < 0)
            return zl_error_wrap(rc, "key '%s'", kv->key);
        return ZL_OK;
    }
    if (t == ZL_GGUF_TYPE_ARRAY)
        return read_array(r, kv);
    size_t es = scalar_size(t);
    if (!es)
        return zl_error(ZL_EINVAL, "%s: key '%s': invalid value type %u", g->path, kv->key, t);
    if (rd_left(r) < es)
        return zl_error_wrap(rd_trunc(r, "value"), "key '%s'", kv->key);
    scalar_decode(kv->type, g->base + r->pos, kv);
    r->pos += es;
    return ZL_OK;
}

static int read_tensor_info(struct rd *r, int64_t i)
{
    struct zl_gguf *g = r->g;
    struct zl_gguf_tensor_info *t = &g->tensors[i];
    struct zl_gguf_str name;
    uint32_t nd, type;
    int rc = rd_str(r, &name, "tensor name");
    if (rc < 0)
        return zl_error_wrap(rc, "tensor info %lld", (long long)i);
    t->name = name.s;
    if (zl_wnames_add(&g->tensor_names, t->name, i) >= 0)
        return zl_error(ZL_EINVAL, "%s: duplicate tensor name '%s'", g->path, t->name);
    if ((rc = rd_u32(r, &nd, "n_dims")) < 0)
        return zl_error_wrap(rc, "tensor '%s'", t->name);
    if (nd < 1 || nd > ZL_GGUF_MAX_DIMS)
        return zl_error(ZL_EINVAL, "%s: tensor '%s': %u dimensions (expected 1..%d)", g->path,
                        t->name, nd, ZL_GGUF_MAX_DIMS);
    t->n_dims = nd;
    for (int d = 0; d < ZL_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if ((rc = rd_u64(r, &v, "dimension")) < 0)
            return zl_error_wrap(rc, "tensor '%s'", t->name);
        if (v > INT64_MAX)
            return zl_error(ZL_EINVAL, "%s: tensor '%s': dimension %u is %llu (negative)", g->path,
                            t->name, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    if ((rc = rd_u32(r, &type, "tensor type")) < 0 || (rc = rd_u64(r, &t->offset, "tensor offset")) < 0)
        return zl_error_wrap(rc, "tensor '%s'", t->name);
    t->type = (enum zl_ggml_type)type;
    if (!zl_ggml_type_name(t->type))
        return zl_error(ZL_EUNSUPPORTED, "%s: tensor '%s': unknown ggml type %u", g->path, t->name,
                        type);
    for (uint32_t d = 0; d < nd; d++)
        t->shape[d] = t->ne[nd - 1 - d];
    for (uint32_t d = nd; d < ZL_GGUF_MAX_DIMS; d++)
        t->shape[d] = 1;
    size_t be = zl_ggml_block_elems(t->type);
    if (t->ne[0] % (int64_t)be)
        return zl_error(ZL_EINVAL, "%s: tensor '%s': row length %lld is not a multiple of the %s block size %zu",
                        g->path, t->name, (long long)t->ne[0], zl_ggml_type_name(t->type), be);
    uint64_t rows = 1, nb;
    for (int d = 1; d < ZL_GGUF_MAX_DIMS; d++)
        if (!zl_wmul(rows, (uint64_t)t->ne[d], &rows))
            goto overflow;
    if (!zl_wmul(rows, (uint64_t)t->ne[0], &nb) || nb > INT64_MAX ||
        !zl_wmul(rows, zl_ggml_block_bytes(t->type), &nb) ||
        !zl_wmul(nb, (uint64_t)t->ne[0] / be, &nb) || nb > SIZE_MAX)
        goto overflow;
    t->n_rows = (int64_t)rows;
    t->nbytes = (size_t)nb;
    return ZL_OK;
overflow:
    return zl_error(ZL_ERANGE, "%s: tensor '%s': size overflows", g->path, t->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const struct zl_gguf_tensor_info *x = *(const struct zl_gguf_tensor_info *const *)a;
    const struct zl_gguf_tensor_info *y = *(const struct zl_gguf_tensor_info *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places each tensor in the data section: aligned, inside the file, and
 * not overlapping another tensor. */
static int place_tensors(struct zl_gguf *g)
{
    uint64_t data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct zl_gguf_tensor_info *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return zl_error(ZL_EINVAL, "%s: tensor '%s': offset %llu is not a multiple of the alignment %zu",
                            g->path, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return zl_error(ZL_EINVAL, "%s: tensor '%s': data [%llu, +%zu) lies outside the data section (%llu bytes; file truncated?)",
                            g->path, t->name, (unsigned long long)t->offset, t->nbytes,
                            (unsigned long long)data_size);
        t->data = g->base + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2)
        return ZL_OK;
    const struct zl_gguf_tensor_info **s = malloc((size_t)g->n_tensors * sizeof *s);
    if (!s)
        return zl_error(ZL_ENOMEM, "%s: out of memory", g->path);
    for (int64_t i = 0; i < g->n_tensors; i++)
        s[i] = &g->tensors[i];
    qsort(s, (size_t)g->n_tensors, sizeof *s, cmp_offset);
    int rc = ZL_OK;
    for (int64_t i = 1; i < g->n_tensors && rc == ZL_OK; i++)
        if (s[i - 1]->offset + s[i - 1]->nbytes > s[i]->offset && s[i]->nbytes && s[i - 1]->nbytes)
            rc = zl_error(ZL_EINVAL, "%s: tensors '%s' and '%s' overlap in the data section",
                          g->path, s[i - 1]->name, s[i]->name);
    free(s);
    return rc;
}

static int read_alignment(struct zl_gguf *g)
{
    g->alignment = ZL_GGUF_DEFAULT_ALIGNMENT;
    int64_t k = zl_gguf_find_key(g, "general.alignment");
    if (k < 0)
        return ZL_OK;
    const struct zl_gguf_kv *kv = &g->kv[k];
    if (kv->type != ZL_GGUF_TYPE_UINT32)
        return zl_error(ZL_EINVAL, "%s: key 'general.alignment' has type %s, expected uint32",
                        g->path, zl_gguf_type_name(kv->type));
    if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)))
        return zl_error(ZL_EINVAL, "%s: key 'general.alignment' = %llu is not a power of two",
                        g->path, (unsigned long long)kv->v.u);
    g->alignment = (size_t)kv->v.u;
    return ZL_OK;
}

static int parse(struct zl_gguf *g)
{
    struct rd r = {g, 0};
    char magic[4];
    uint64_t n_tensors, n_kv;
    int rc;
    if (g->size < 4 || memcmp(g->base, GGUF_MAGIC, 4) != 0)
        return zl_error(ZL_EINVAL, "%s: not a GGUF file (bad magic)", g->path);
    if ((rc = rd_raw(&r, magic, 4, "magic")) < 0 || (rc = rd_u32(&r, &g->version, "version")) < 0)
        return rc;
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version)
            return zl_error(ZL_EUNSUPPORTED, "%s: big-endian GGUF files are not supported", g->path);
        return zl_error(ZL_EUNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)",
                        g->path, g->version);
    }
    if ((rc = rd_u64(&r, &n_tensors, "tensor count")) < 0 || (rc = rd_u64(&r, &n_kv, "metadata count")) < 0)
        return rc;
    /* a kv takes at least 13 bytes, a tensor info at least 28 */
    if (n_kv > rd_left(&r) / 13)
        return zl_error(ZL_EINVAL, "%s: metadata count %llu exceeds the file size", g->path,
                        (unsigned long long)n_kv);
    if (n_tensors > rd_left(&r) / 28)
        return zl_error(ZL_EINVAL, "%s: tensor count %llu exceeds the file size", g->path,
                        (unsigned long long)n_tensors);
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors || zl_wnames_init(&g->kv_names, n_kv) < 0 ||
        zl_wnames_init(&g->tensor_names, n_tensors) < 0)
        return zl_error(ZL_ENOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_kv; i++, g->n_kv++)
        if ((rc = read_kv(&r, (int64_t)i)) < 0)
            return rc;
    if ((rc = read_alignment(g)) < 0)
        return rc;
    for (uint64_t i = 0; i < n_tensors; i++, g->n_tensors++)
        if ((rc = read_tensor_info(&r, (int64_t)i)) < 0)
            return rc;
    g->data_offset = ((uint64_t)r.pos + g->alignment - 1) / g->alignment * g->alignment;
    return place_tensors(g);
}

static int finish(struct zl_gguf *g, int rc, struct zl_gguf **out)
{
    if (rc < 0) {
        zl_gguf_close(g);
        return rc;
    }
    *out = g;
    return ZL_OK;
}

static struct zl_gguf *gguf_new(const char *name)
{
    struct zl_gguf *g = calloc(1, sizeof *g);
    if (g && !(g->path = strdup(name ? name : "<memory>"))) {
        free(g);
        g = NULL;
    }
    return g;
}

ZL_API int zl_gguf_parse_buffer(const void *buf, size_t len, const char *name,
                                struct zl_gguf **out)
{
    *out = NULL;
    struct zl_gguf *g = gguf_new(name);
    if (!g)
        return zl_error(ZL_ENOMEM, "out of memory");
    g->base = buf;
    g->size = buf ? len : 0;
    return finish(g, parse(g), out);
}

ZL_API int zl_gguf_open(const char *path, struct zl_gguf **out)
{
    *out = NULL;
    struct zl_gguf *g = gguf_new(path);
    if (!g)
        return zl_error(ZL_ENOMEM, "out of memory");
    int rc = zl_wmap_open(path, &g->map);
    if (rc == ZL_OK) {
        g->base = g->map.base;
        g->size = g->map.size;
        rc = parse(g);
    }
    return finish(g, rc, out);
}

ZL_API void zl_gguf_close(struct zl_gguf *g)
{
    if (!g)
        return;
    zl_wmap_close(&g->map);
    zl_wnames_free(&g->kv_names);
    zl_wnames_free(&g->tensor_names);
    while (g->arena) {
        struct zl_gguf_blk *b = g->arena;
        g->arena = b->next;
        free(b);
    }
    free(g->kv);
    free(g->tensors);
    free(g->path);
    free(g);
}

ZL_API const char *zl_gguf_path(const struct zl_gguf *g) { return g->path; }
ZL_API uint32_t zl_gguf_version(const struct zl_gguf *g) { return g->version; }
ZL_API size_t zl_gguf_alignment(const struct zl_gguf *g) { return g->alignment; }
ZL_API uint64_t zl_gguf_data_offset(const struct zl_gguf *g) { return g->data_offset; }
ZL_API int64_t zl_gguf_n_kv(const struct zl_gguf *g) { return g->n_kv; }
ZL_API int64_t zl_gguf_n_tensors(const struct zl_gguf *g) { return g->n_tensors; }

static const struct zl_gguf_kv *kv_at(const struct zl_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

ZL_API const char *zl_gguf_key(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

ZL_API int64_t zl_gguf_find_key(const struct zl_gguf *g, const char *key)
{
    return g ? zl_wnames_find(&g->kv_names, key) : -1;
}

ZL_API enum zl_gguf_type zl_gguf_kv_type(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : ZL_GGUF_TYPE_INVALID;
}

ZL_API const char *zl_gguf_get_str(const struct zl_gguf *g, int64_t i, size_t *len)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    int ok = kv && kv->type == ZL_GGUF_TYPE_STRING;
    if (len)
        *len = ok ? kv->str.len : 0;
    return ok ? kv->str.s : NULL;
}

static int is_unsigned(enum zl_gguf_type t)
{
    return t == ZL_GGUF_TYPE_UINT8 || t == ZL_GGUF_TYPE_UINT16 || t == ZL_GGUF_TYPE_UINT32 ||
           t == ZL_GGUF_TYPE_UINT64 || t == ZL_GGUF_TYPE_BOOL;
}

static int is_signed(enum zl_gguf_type t)
{
    return t == ZL_GGUF_TYPE_INT8 || t == ZL_GGUF_TYPE_INT16 || t == ZL_GGUF_TYPE_INT32 ||
           t == ZL_GGUF_TYPE_INT64;
}

ZL_API int64_t zl_gguf_get_i64(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    if (!kv)
        return 0;
    if (is_unsigned(kv->type))
        return kv->v.u > INT64_MAX ? INT64_MAX : (int64_t)kv->v.u;
    return is_signed(kv->type) ? kv->v.i : 0;
}

ZL_API uint64_t zl_gguf_get_u64(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    if (!kv)
        return 0;
    if (is_unsigned(kv->type))
        return kv->v.u;
    return is_signed(kv->type) && kv->v.i > 0 ? (uint64_t)kv->v.i : 0;
}

ZL_API double zl_gguf_get_f64(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    if (!kv)
        return 0;
    if (kv->type == ZL_GGUF_TYPE_FLOAT32 || kv->type == ZL_GGUF_TYPE_FLOAT64)
        return kv->v.f;
    if (is_unsigned(kv->type))
        return (double)kv->v.u;
    return is_signed(kv->type) ? (double)kv->v.i : 0;
}

ZL_API enum zl_gguf_type zl_gguf_get_arr_type(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == ZL_GGUF_TYPE_ARRAY ? kv->arr_type : ZL_GGUF_TYPE_INVALID;
}

ZL_API size_t zl_gguf_get_arr_n(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == ZL_GGUF_TYPE_ARRAY ? (size_t)kv->n : 0;
}

ZL_API const char *zl_gguf_get_arr_str(const struct zl_gguf *g, int64_t i, size_t j, size_t *len)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    int ok = kv && kv->type == ZL_GGUF_TYPE_ARRAY && kv->arr_type == ZL_GGUF_TYPE_STRING && j < kv->n;
    const struct zl_gguf_str *s = ok ? &((const struct zl_gguf_str *)kv->arr)[j] : NULL;
    if (len)
        *len = s ? s->len : 0;
    return s ? s->s : NULL;
}

ZL_API const void *zl_gguf_get_arr_data(const struct zl_gguf *g, int64_t i)
{
    const struct zl_gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != ZL_GGUF_TYPE_ARRAY || kv->arr_type == ZL_GGUF_TYPE_STRING)
        return NULL;
    return kv->arr;
}

ZL_API int64_t zl_gguf_find_tensor(const struct zl_gguf *g, const char *name)
{
    return g ? zl_wnames_find(&g->tensor_names, name) : -1;
}

ZL_API const struct zl_gguf_tensor_info *zl_gguf_tensor(const struct zl_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
