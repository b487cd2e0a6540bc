/* struct zl_weight_loader over safetensors, GGUF or dummy weights: finds a
 * tensor by its HF name, checks its shape, converts (or dequantizes) it to
 * the model's dtype in a host staging buffer, and uploads it with the
 * backend's copy_to_device into the memory manager's weights region. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlight/gguf.h>
#include <zlight/log.h>
#include <zlight/safetensors.h>
#include <zlight/tensor.h>

#include "weight-loader-impl.h"

#define WL_ALIGN 256

struct zl_wloader {
    struct zl_weight_loader ops;
    enum zl_wloader_format format;
    char *path;
    struct zl_hf_config config;
    struct zl_safetensors *st;
    struct zl_gguf *gguf;
    uint64_t seed;
    const struct zl_backend_ops *be;
    int device;
    struct zl_mem *mem;
    void *stage[2];                 /* host staging: converted data, dequantized source */
    size_t stage_cap[2];
    char **names;                   /* copies of loaded names (tensors borrow them) */
    size_t n_names, cap_names;
    size_t loaded;
};

/* What load() found for one name, in HF (row-major) terms. */
struct wsrc {
    int n_dims;
    int64_t shape[4];
    const char *file;
    const struct zl_safetensors_tensor *st;
    const struct zl_gguf_tensor_info *gg;
    int qk;                         /* GGUF llama attn_q (1) / attn_k (2): rows permuted */
};

ZL_API struct zl_wloader_params zl_wloader_default_params(void)
{
    struct zl_wloader_params p = {0, 0};
    return p;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* config.json for a directory, a config.json itself, or the one beside a file. */
static int load_hf_config(const char *path, struct zl_hf_config *c)
{
    if (is_dir(path) || ends_with(path, ".json"))
        return zl_hf_config_load(path, c);
    char *dir = strdup(path);
    if (!dir)
        return zl_error(ZL_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int rc = zl_hf_config_load(slash ? dir : ".", c);
    free(dir);
    return rc;
}

static int is_gguf(const char *path)
{
    if (ends_with(path, ".gguf"))
        return 1;
    char magic[4] = {0};
    FILE *f = is_dir(path) ? NULL : fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "GGUF", 4);
}

static int wl_has(void *ctx, const char *name);
static int wl_load(void *ctx, const char *name, enum zl_dtype dtype, int n_dims,
                   const int64_t *shape, const int64_t rows[2], struct zl_tensor *out);
static int wl_alloc(void *ctx, size_t bytes, void **out);
static int wl_load_into(void *ctx, const char *name, const int64_t rows[2], struct zl_tensor *dst);

ZL_API int zl_wloader_open(const char *path, const struct zl_wloader_params *params,
                           struct zl_wloader **out)
{
    struct zl_wloader_params p = params ? *params : zl_wloader_default_params();
    if (out)
        *out = NULL;
    if (!path || !out)
        return zl_error(ZL_EINVAL, "weight loader: path and out are required");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return zl_error(errno == ENOENT ? ZL_ENOTFOUND : ZL_EIO, "%s: %s", path, strerror(errno));
    struct zl_wloader *wl = calloc(1, sizeof *wl);
    if (!wl || !(wl->path = strdup(path))) {
        free(wl);
        return zl_error(ZL_ENOMEM, "weight loader: out of memory");
    }
    wl->ops = (struct zl_weight_loader){sizeof wl->ops, wl, wl_has, wl_load, wl_alloc, wl_load_into};
    wl->seed = p.seed;
    int rc;
    if (p.dummy) {
        wl->format = ZL_WLOADER_DUMMY;
        rc = load_hf_config(path, &wl->config);
    } else if (is_gguf(path)) {
        wl->format = ZL_WLOADER_GGUF;
        rc = zl_gguf_open(path, &wl->gguf);
        if (rc == ZL_OK)
            rc = zl_hf_config_from_gguf(wl->gguf, &wl->config);
    } else {
        wl->format = ZL_WLOADER_SAFETENSORS;
        rc = load_hf_config(path, &wl->config);
        if (rc == ZL_OK)
            rc = zl_safetensors_open(path, &wl->st);
    }
    if (rc < 0) {
        zl_wloader_free(wl);
        return rc;
    }
    *out = wl;
    return ZL_OK;
}

ZL_API void zl_wloader_free(struct zl_wloader *wl)
{
    if (!wl)
        return;
    zl_safetensors_close(wl->st);
    zl_gguf_close(wl->gguf);
    for (size_t i = 0; i < wl->n_names; i++)
        free(wl->names[i]);
    free(wl->names);
    free(wl->stage[0]);
    free(wl->stage[1]);
    free(wl->path);
    free(wl);
}

ZL_API enum zl_wloader_format zl_wloader_get_format(const struct zl_wloader *wl)
{
    return wl->format;
}

ZL_API const struct zl_hf_config *zl_wloader_config(const struct zl_wloader *wl)
{
    return &wl->config;
}

ZL_API void zl_wloader_bind(struct zl_wloader *wl, const struct zl_backend_ops *be, int device,
                            struct zl_mem *mem)
{
    wl->be = be;
    wl->device = device;
    wl->mem = mem;
}

ZL_API const struct zl_weight_loader *zl_wloader_ops(struct zl_wloader *wl)
{
    return &wl->ops;
}

ZL_API size_t zl_wloader_loaded_bytes(const struct zl_wloader *wl)
{
    return wl->loaded;
}

static enum zl_dtype float_or(enum zl_dtype dt, enum zl_dtype fallback)
{
    return dt == ZL_DTYPE_F32 || dt == ZL_DTYPE_F16 || dt == ZL_DTYPE_BF16 ? dt : fallback;
}

ZL_API enum zl_dtype zl_wloader_default_dtype(const struct zl_wloader *wl)
{
    if (wl->format == ZL_WLOADER_SAFETENSORS) {
        const struct zl_safetensors_tensor *t = zl_safetensors_tensor(wl->st, 0);
        int64_t i = zl_safetensors_find(wl->st, "model.embed_tokens.weight");
        if (i >= 0)
            t = zl_safetensors_tensor(wl->st, i);
        return t && t->supported ? float_or(t->dtype, ZL_DTYPE_BF16) : ZL_DTYPE_BF16;
    }
    if (wl->format == ZL_WLOADER_GGUF) {
        int64_t i = zl_gguf_find_tensor(wl->gguf, "blk.0.attn_q.weight");
        const struct zl_gguf_tensor_info *t = zl_gguf_tensor(wl->gguf, i >= 0 ? i : 0);
        if (t && t->type == ZL_GGML_TYPE_F32)
            return ZL_DTYPE_F32;
        if (t && t->type == ZL_GGML_TYPE_BF16)
            return ZL_DTYPE_BF16;
        return ZL_DTYPE_F16; /* f16 holds dequantized blocks more closely than bf16 */
    }
    return ZL_DTYPE_BF16;
}

static size_t tensor_bytes(int64_t nelem, int n_dims, enum zl_dtype dt)
{
    size_t es = n_dims <= 1 ? 4 : zl_dtype_bits(dt) / 8;
    return ((size_t)nelem * es + WL_ALIGN - 1) / WL_ALIGN * WL_ALIGN + WL_ALIGN;
}

ZL_API size_t zl_wloader_weight_bytes(const struct zl_wloader *wl, enum zl_dtype dt)
{
    size_t sum = 0;
    if (wl->format == ZL_WLOADER_SAFETENSORS) {
        for (int64_t i = 0; i < zl_safetensors_n_tensors(wl->st); i++) {
            const struct zl_safetensors_tensor *t = zl_safetensors_tensor(wl->st, i);
            int64_t n = 1;
            for (uint32_t d = 0; d < t->n_dims; d++)
                n *= t->shape[d];
            sum += tensor_bytes(n, (int)t->n_dims, dt);
        }
    } else if (wl->format == ZL_WLOADER_GGUF) {
        for (int64_t i = 0; i < zl_gguf_n_tensors(wl->gguf); i++) {
            const struct zl_gguf_tensor_info *t = zl_gguf_tensor(wl->gguf, i);
            sum += tensor_bytes(t->n_rows * t->ne[0], (int)t->n_dims, dt);
        }
    } else {
        /* matrices in dt; vectors (norms, biases) in f32, none longer than
         * the widest of hidden, intermediate and q rows */
        const struct zl_hf_config *c = &wl->config;
        int64_t nvec, n = zl_wdummy_param_count(c, &nvec);
        int64_t widest = c->hidden_size > c->intermediate_size ? c->hidden_size : c->intermediate_size;
        if (c->num_attention_heads * c->head_dim > widest)
            widest = c->num_attention_heads * c->head_dim;
        sum = (size_t)n * (zl_dtype_bits(dt) / 8) + (size_t)(nvec + 4) * 2 * WL_ALIGN +
              (size_t)nvec * (size_t)widest * 4;
    }
    return sum;
}

static int stage(struct zl_wloader *wl, int i, size_t bytes, void **out)
{
    if (wl->stage_cap[i] < bytes) {
        void *p = realloc(wl->stage[i], bytes);
        if (!p)
            return zl_error(ZL_ENOMEM, "weight loader: no %zu bytes of staging memory", bytes);
        wl->stage[i] = p;
        wl->stage_cap[i] = bytes;
    }
    *out = wl->stage[i];
    return ZL_OK;
}

static const char *intern(struct zl_wloader *wl, const char *name)
{
    if (wl->n_names == wl->cap_names) {
        size_t cap = wl->cap_names ? 2 * wl->cap_names : 64;
        char **p = realloc(wl->names, cap * sizeof *p);
        if (!p)
            return NULL;
        wl->names = p;
        wl->cap_names = cap;
    }
    char *s = strdup(name);
    if (s)
        wl->names[wl->n_names++] = s;
    return s;
}

/* Finds `name` and its shape; for GGUF also the mapped tensor. */
static int find_src(struct zl_wloader *wl, const char *name, struct wsrc *s)
{
    memset(s, 0, sizeof *s);
    if (wl->format == ZL_WLOADER_SAFETENSORS) {
        int rc = zl_safetensors_get(wl->st, name, &s->st);
        if (rc < 0)
            return rc;
        s->n_dims = (int)s->st->n_dims;
        memcpy(s->shape, s->st->shape, sizeof s->shape);
        s->file = s->st->file;
        return ZL_OK;
    }
    if (wl->format == ZL_WLOADER_DUMMY) {
        if (!zl_wdummy_has(&wl->config, name))
            return zl_error(ZL_ENOTFOUND, "%s: tensor '%s' not in a dummy checkpoint of this config",
                            wl->path, name);
        s->n_dims = -1; /* shape as expected */
        s->file = "dummy weights";
        return ZL_OK;
    }
    char gname[256];
    if (!zl_wnames_to_gguf(name, gname, sizeof gname, &s->qk))
        return zl_error(ZL_EINVAL, "%s: tensor name '%s' too long", wl->path, name);
    int64_t i = zl_gguf_find_tensor(wl->gguf, gname);
    if (i < 0)
        return zl_error(ZL_ENOTFOUND, "%s: tensor '%s' (GGUF '%s') not found", wl->path, name, gname);
    s->gg = zl_gguf_tensor(wl->gguf, i);
    if (!zl_ggml_can_dequantize(s->gg->type))
        return zl_error(ZL_EUNSUPPORTED, "%s: tensor '%s': GGUF type %s cannot be dequantized",
                        wl->path, gname, zl_ggml_type_name(s->gg->type) ? zl_ggml_type_name(s->gg->type) : "?");
    s->n_dims = (int)s->gg->n_dims;
    memcpy(s->shape, s->gg->shape, sizeof s->shape);
    s->file = wl->path;
    if (strcmp(wl->config.model_type, "llama") != 0)
        s->qk = 0; /* only the llama converter permutes */
    return ZL_OK;
}

static int check_shape(const char *name, const struct wsrc *s, int n_dims, const int64_t *shape)
{
    int same = s->n_dims < 0 || s->n_dims == n_dims;
    for (int d = 0; same && s->n_dims >= 0 && d < n_dims; d++)
        same = s->shape[d] == shape[d];
    if (same)
        return ZL_OK;
    char got[96], want[96];
    int g = 0, w = 0;
    for (int d = 0; d < s->n_dims && g < (int)sizeof got; d++)
        g += snprintf(got + g, sizeof got - (size_t)g, "%s%lld", d ? ", " : "", (long long)s->shape[d]);
    for (int d = 0; d < n_dims && w < (int)sizeof want; d++)
        w += snprintf(want + w, sizeof want - (size_t)w, "%s%lld", d ? ", " : "", (long long)shape[d]);
    return zl_error(ZL_EINVAL, "%s: shape [%s] in %s, expected [%s]", name, got, s->file, want);
}

/* GGUF: the whole tensor dequantized to dt, then rows gathered (unpermuted). */
static int fill_gguf(struct zl_wloader *wl, const struct wsrc *s, enum zl_dtype dt, int64_t r0,
                     int64_t nr, int64_t inner, void *dst)
{
    const struct zl_gguf_tensor_info *t = s->gg;
    size_t es = zl_dtype_bits(dt) / 8, row = (size_t)inner * es;
    void *all = NULL;
    int rc = stage(wl, 1, (size_t)(t->n_rows * t->ne[0]) * es, &all);
    if (rc == ZL_OK)
        rc = zl_gguf_dequantize_rows(t, 0, t->n_rows, dt, all);
    if (rc < 0)
        return rc;
    int64_t heads = s->qk == 1 ? wl->config.num_attention_heads : wl->config.num_key_value_heads;
    for (int64_t r = 0; r < nr; r++) {
        int64_t src = s->qk ? zl_wnames_unpermute_row(r0 + r, s->shape[0], heads) : r0 + r;
        memcpy((char *)dst + (size_t)r * row, (char *)all + (size_t)src * row, row);
    }
    return ZL_OK;
}

/* Converts rows [r0, r0 + nr) of the source into dst (host, nr * inner of dt). */
static int fill(struct zl_wloader *wl, const char *name, const struct wsrc *s, enum zl_dtype dt,
                int64_t r0, int64_t nr, int64_t inner, void *dst)
{
    if (s->gg)
        return fill_gguf(wl, s, dt, r0, nr, inner, dst);
    int64_t n = nr * inner;
    if (s->st) {
        const char *src = (const char *)s->st->data + (size_t)(r0 * inner) * (zl_dtype_bits(s->st->dtype) / 8);
        int rc = zl_dtype_convert(dt, dst, s->st->dtype, src, (size_t)n);
        return rc < 0 ? zl_error_wrap(rc, "%s (%s)", name, s->file) : rc;
    }
    return zl_wdummy_fill_dtype(wl->seed, name, r0 * inner, n, dt, dst);
}

/* Shared by load and load_into: rows checked, data converted and uploaded to dev_dst. */
static int upload(struct zl_wloader *wl, const char *name, const struct wsrc *s, enum zl_dtype dt,
                  const int64_t *shape, int n_dims, const int64_t rows[2], void *dev_dst,
                  int64_t *nr_out)
{
    int64_t r0 = rows ? rows[0] : 0, r1 = rows ? rows[1] : shape[0], inner = 1;
    if (r0 < 0 || r1 > shape[0] || r0 > r1)
        return zl_error(ZL_ERANGE, "%s: rows [%lld, %lld) outside its %lld rows", name,
                        (long long)r0, (long long)r1, (long long)shape[0]);
    for (int d = 1; d < n_dims; d++)
        inner *= shape[d];
    size_t bytes = (size_t)((r1 - r0) * inner) * (zl_dtype_bits(dt) / 8);
    void *host = NULL;
    int rc = stage(wl, 0, bytes ? bytes : 1, &host);
    if (rc == ZL_OK)
        rc = fill(wl, name, s, dt, r0, r1 - r0, inner, host);
    if (rc == ZL_OK && bytes)
        rc = wl->be->copy_to_device(wl->device, dev_dst, host, bytes);
    if (rc < 0)
        return rc;
    wl->loaded += bytes;
    *nr_out = r1 - r0;
    return ZL_OK;
}

static int wl_has(void *ctx, const char *name)
{
    struct zl_wloader *wl = ctx;
    if (wl->format == ZL_WLOADER_SAFETENSORS)
        return zl_safetensors_find(wl->st, name) >= 0;
    if (wl->format == ZL_WLOADER_DUMMY)
        return zl_wdummy_has(&wl->config, name);
    char gname[256];
    int qk;
    return zl_wnames_to_gguf(name, gname, sizeof gname, &qk) && zl_gguf_find_tensor(wl->gguf, gname) >= 0;
}

static int check_dtype(const char *name, enum zl_dtype dt)
{
    if (dt == ZL_DTYPE_F32 || dt == ZL_DTYPE_F16 || dt == ZL_DTYPE_BF16)
        return ZL_OK;
    return zl_error(ZL_EUNSUPPORTED, "%s: loading as %s: f32, f16 or bf16 only", name, zl_dtype_name(dt));
}

static int wl_load(void *ctx, const char *name, enum zl_dtype dt, int n_dims, const int64_t *shape,
                   const int64_t rows[2], struct zl_tensor *out)
{
    struct zl_wloader *wl = ctx;
    struct wsrc s;
    int rc;
    if (!wl->be || !wl->mem)
        return zl_error(ZL_ESTATE, "weight loader: zl_wloader_bind was not called");
    if (n_dims < 1 || n_dims > ZL_TENSOR_MAX_DIMS)
        return zl_error(ZL_EINVAL, "%s: %d dims requested", name, n_dims);
    if ((rc = check_dtype(name, dt)) < 0 || (rc = find_src(wl, name, &s)) < 0 ||
        (rc = check_shape(name, &s, n_dims, shape)) < 0)
        return rc;
    int64_t r0 = rows ? rows[0] : 0, r1 = rows ? rows[1] : shape[0], inner = 1;
    for (int d = 1; d < n_dims; d++)
        inner *= shape[d];
    size_t bytes = r1 > r0 && r0 >= 0 ? (size_t)((r1 - r0) * inner) * (zl_dtype_bits(dt) / 8) : 0;
    void *dev = NULL;
    if (bytes && (rc = zl_mem_weights_alloc(wl->mem, bytes, &dev)) < 0)
        return zl_error_wrap(rc, "%s", name);
    int64_t nr;
    if ((rc = upload(wl, name, &s, dt, shape, n_dims, rows, dev, &nr)) < 0)
        return rc;
    int64_t oshape[ZL_TENSOR_MAX_DIMS];
    memcpy(oshape, shape, (size_t)n_dims * sizeof *shape);
    oshape[0] = nr;
    if ((rc = zl_tensor_init(out, dt, n_dims, oshape, dev, wl->device)) < 0)
        return rc;
    out->name = intern(wl, name);
    return ZL_OK;
}

static int wl_alloc(void *ctx, size_t bytes, void **out)
{
    struct zl_wloader *wl = ctx;
    if (!wl->mem)
        return zl_error(ZL_ESTATE, "weight loader: zl_wloader_bind was not called");
    return zl_mem_weights_alloc(wl->mem, bytes, out);
}

static int wl_load_into(void *ctx, const char *name, const int64_t rows[2], struct zl_tensor *dst)
{
    struct zl_wloader *wl = ctx;
    struct wsrc s;
    int rc;
    if (!wl->be)
        return zl_error(ZL_ESTATE, "weight loader: zl_wloader_bind was not called");
    if (!dst || !dst->data || !zl_tensor_is_contiguous(dst))
        return zl_error(ZL_EINVAL, "%s: load_into needs a placed contiguous tensor", name);
    if ((rc = check_dtype(name, dst->dtype)) < 0 || (rc = find_src(wl, name, &s)) < 0)
        return rc;
    /* The full shape: dst's when it takes the whole tensor; with a row
     * slice, the source's, whose inner dims must match dst's. */
    int64_t shape[ZL_TENSOR_MAX_DIMS];
    memcpy(shape, dst->ne, sizeof shape);
    if (rows && s.n_dims >= 0)
        shape[0] = s.shape[0];
    else if (rows)
        shape[0] = rows[1];
    if ((rc = check_shape(name, &s, dst->n_dims, shape)) < 0)
        return rc;
    int64_t all[2] = {0, shape[0]}, nr;
    const int64_t *r = rows ? rows : all;
    if (r[1] - r[0] != dst->ne[0])
        return zl_error(ZL_EINVAL, "%s: %lld rows into a tensor of %lld", name,
                        (long long)(r[1] - r[0]), (long long)dst->ne[0]);
    return upload(wl, name, &s, dst->dtype, shape, dst->n_dims, r, dst->data, &nr);
}
