/* safetensors reader.  A file is: u64 LE header length N, N bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}),
 * then the data; offsets are relative to the data.  As in the reference
 * implementation, tensors must tile the data exactly (sorted by offset, no
 * gap, no overlap, nothing after the last), so a corrupt header is caught
 * before anything reads tensor bytes. */
#include "config.h"

#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>

#include <zlight/log.h>
#include <zlight/safetensors.h>

#include "weights-impl.h"

#define INDEX_NAME "model.safetensors.index.json"

struct st_file {
    char *path;
    struct zl_wmap map;
    json_t *header;         /* owns the tensor name and dtype strings */
};

struct zl_safetensors {
    char *path;
    struct st_file *files;
    int n_files;
    struct zl_safetensors_tensor *t;
    int64_t n, cap;
    struct zl_wnames names;
    json_t *index;          /* owns the shard names while opening */
};

/* Element size in bits of every dtype the format defines; zlight handles
 * those with a zl_dtype. */
static const struct st_dtype {
    const char *name;
    unsigned bits;
    int zl;                 /* enum zl_dtype, or -1 */
} st_dtypes[] = {
    {"F32", 32, ZL_DTYPE_F32}, {"F16", 16, ZL_DTYPE_F16}, {"BF16", 16, ZL_DTYPE_BF16},
    {"F8_E4M3", 8, ZL_DTYPE_F8_E4M3}, {"F8_E5M2", 8, ZL_DTYPE_F8_E5M2}, {"I8", 8, ZL_DTYPE_I8},
    {"U8", 8, ZL_DTYPE_U8}, {"I32", 32, ZL_DTYPE_I32}, {"I64", 64, ZL_DTYPE_I64},
    {"BOOL", 8, -1}, {"F64", 64, -1}, {"I16", 16, -1}, {"U16", 16, -1}, {"U32", 32, -1},
    {"U64", 64, -1}, {"F8_E8M0", 8, -1}, {"F6_E2M3", 6, -1}, {"F6_E3M2", 6, -1}, {"F4", 4, -1},
};

static const struct st_dtype *dtype_lookup(const char *s)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0)
            return &st_dtypes[i];
    return NULL;
}

static int grow(struct zl_safetensors *st, size_t more)
{
    if ((size_t)(st->cap - st->n) >= more)
        return ZL_OK;
    size_t cap = (size_t)st->n + more + 16;
    void *p = realloc(st->t, cap * sizeof *st->t);
    if (!p)
        return zl_error(ZL_ENOMEM, "%s: out of memory", st->path);
    st->t = p;
    st->cap = (int64_t)cap;
    return ZL_OK;
}

/* Reads a JSON non-negative integer. */
static int get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* Fills t from one header entry; file offsets are checked later. */
static int parse_entry(const char *file, const char *name, json_t *e, uint64_t data_size,
                       struct zl_safetensors_tensor *t)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    t->file = file;
    if (!json_is_object(e))
        return zl_error(ZL_EINVAL, "%s: tensor '%s': header entry is not an object", file, name);
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
           *offs = json_object_get(e, "data_offsets");
    if (!json_is_string(dt))
        return zl_error(ZL_EINVAL, "%s: tensor '%s': missing or non-string \"dtype\"", file, name);
    if (!json_is_array(shape))
        return zl_error(ZL_EINVAL, "%s: tensor '%s': missing or non-array \"shape\"", file, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return zl_error(ZL_EINVAL, "%s: tensor '%s': \"data_offsets\" is not an array of 2 integers",
                        file, name);
    t->dtype_name = json_string_value(dt);
    const struct st_dtype *d = dtype_lookup(t->dtype_name);
    if (!d)
        return zl_error(ZL_EUNSUPPORTED, "%s: tensor '%s': unknown dtype \"%s\"", file, name,
                        t->dtype_name);
    uint64_t nel = 1, bits, begin, end;
    size_t nd = json_array_size(shape);
    for (size_t i = 0; i < nd; i++) {
        uint64_t s;
        if (!get_u64(json_array_get(shape, i), &s))
            return zl_error(ZL_EINVAL, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                            file, name, i);
        if (!zl_wmul(nel, s, &nel))
            return zl_error(ZL_ERANGE, "%s: tensor '%s': element count overflows", file, name);
        if (i < ZL_SAFETENSORS_MAX_DIMS)
            t->shape[i] = (int64_t)s;
    }
    for (size_t i = nd; i < ZL_SAFETENSORS_MAX_DIMS; i++)
        t->shape[i] = 1;
    t->n_dims = nd > UINT32_MAX ? UINT32_MAX : (uint32_t)nd;
    if (!zl_wmul(nel, d->bits, &bits) || nel > INT64_MAX)
        return zl_error(ZL_ERANGE, "%s: tensor '%s': byte size overflows", file, name);
    if (bits % 8)
        return zl_error(ZL_EINVAL, "%s: tensor '%s': %" PRIu64 " elements of %s are not whole bytes",
                        file, name, nel, t->dtype_name);
    if (!get_u64(json_array_get(offs, 0), &begin) || !get_u64(json_array_get(offs, 1), &end))
        return zl_error(ZL_EINVAL, "%s: tensor '%s': \"data_offsets\" is not an array of 2 integers",
                        file, name);
    if (begin > end || end > data_size)
        return zl_error(ZL_EINVAL, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] out of range (data is %" PRIu64 " bytes; truncated file?)",
                        file, name, begin, end, data_size);
    if (end - begin != bits / 8)
        return zl_error(ZL_EINVAL, "%s: tensor '%s': shape x %s is %" PRIu64 " bytes but data_offsets span %" PRIu64,
                        file, name, t->dtype_name, bits / 8, end - begin);
    t->nbytes = (size_t)(bits / 8);
    t->offset = begin;      /* relative for now; made absolute by the caller */
    t->supported = d->zl >= 0 && nd <= ZL_SAFETENSORS_MAX_DIMS;
    t->dtype = d->zl >= 0 ? (enum zl_dtype)d->zl : ZL_DTYPE_U8;
    return ZL_OK;
}

static int cmp_begin(const void *a, const void *b)
{
    const struct zl_safetensors_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Checks that tensors [first, st->n) tile [0, data_size) exactly. */
static int check_tiling(struct zl_safetensors *st, int64_t first, const char *file,
                        uint64_t data_size)
{
    size_t n = (size_t)(st->n - first);
    struct zl_safetensors_tensor *s = malloc((n ? n : 1) * sizeof *s);
    if (!s)
        return zl_error(ZL_ENOMEM, "%s: out of memory", file);
    if (n)
        memcpy(s, st->t + first, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_begin);
    uint64_t pos = 0;
    int rc = ZL_OK;
    for (size_t i = 0; i < n && rc == ZL_OK; i++) {
        if (s[i].offset < pos)
            rc = zl_error(ZL_EINVAL, "%s: tensors '%s' and '%s' overlap (data_offsets %" PRIu64 " < %" PRIu64 ")",
                          file, s[i - 1].name, s[i].name, s[i].offset, pos);
        else if (s[i].offset > pos)
            rc = zl_error(ZL_EINVAL, "%s: tensor '%s': data is not contiguous (gap of %" PRIu64 " bytes before it)",
                          file, s[i].name, s[i].offset - pos);
        pos = s[i].offset + s[i].nbytes;
    }
    if (rc == ZL_OK && pos != data_size)
        rc = zl_error(ZL_EINVAL, "%s: %" PRIu64 " bytes after the last tensor are not described by the header",
                      file, data_size - pos);
    free(s);
    return rc;
}

/* Parses the header of f (already mapped / set) and appends its tensors. */
static int parse_file(struct zl_safetensors *st, struct st_file *f, const uint8_t *base,
                      size_t size)
{
    const char *file = f->path;
    uint64_t hlen;
    if (size < 8)
        return zl_error(ZL_EINVAL, "%s: truncated file (%zu bytes, no header length)", file, size);
    memcpy(&hlen, base, 8);
    if (hlen > size - 8)
        return zl_error(ZL_EINVAL, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes; truncated?)",
                        file, hlen, size);
    if (hlen > ZL_SAFETENSORS_MAX_HEADER)
        return zl_error(ZL_EINVAL, "%s: header length %" PRIu64 " exceeds the %u-byte limit", file,
                        hlen, ZL_SAFETENSORS_MAX_HEADER);
    json_error_t err;
    f->header = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!f->header)
        return zl_error(ZL_EINVAL, "%s: invalid JSON header: %s (at byte %d)", file, err.text,
                        err.position);
    if (!json_is_object(f->header))
        return zl_error(ZL_EINVAL, "%s: header is not a JSON object", file);
    uint64_t data_size = size - 8 - hlen;
    const uint8_t *data = base + 8 + hlen;
    int64_t first = st->n;
    int rc = grow(st, json_object_size(f->header));
    const char *name;
    json_t *e;
    json_object_foreach(f->header, name, e) {
        if (rc < 0)
            break;
        if (strcmp(name, "__metadata__") == 0) {
            const char *k;
            json_t *v;
            if (!json_is_object(e))
                return zl_error(ZL_EINVAL, "%s: __metadata__ is not an object", file);
            json_object_foreach(e, k, v) if (!json_is_string(v))
                return zl_error(ZL_EINVAL, "%s: __metadata__ key '%s' is not a string", file, k);
            continue;
        }
        struct zl_safetensors_tensor *t = &st->t[st->n];
        if ((rc = parse_entry(file, name, e, data_size, t)) < 0)
            return rc;
        t->data = data + t->offset;
        st->n++;
    }
    if (rc < 0 || (rc = check_tiling(st, first, file, data_size)) < 0)
        return rc;
    for (int64_t i = first; i < st->n; i++)
        st->t[i].offset += 8 + hlen;
    return ZL_OK;
}

static struct st_file *add_file(struct zl_safetensors *st, const char *path)
{
    struct st_file *f = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *f);
    if (!f)
        return NULL;
    st->files = f;
    f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path)))
        return NULL;
    st->n_files++;
    return f;
}

static int open_file(struct zl_safetensors *st, const char *path)
{
    struct st_file *f = add_file(st, path);
    if (!f)
        return zl_error(ZL_ENOMEM, "%s: out of memory", path);
    int rc = zl_wmap_open(path, &f->map);
    return rc < 0 ? rc : parse_file(st, f, f->map.base, f->map.size);
}

/* Builds the name table; a name in two files is an error. */
static int index_names(struct zl_safetensors *st)
{
    if (zl_wnames_init(&st->names, (size_t)st->n) < 0)
        return zl_error(ZL_ENOMEM, "%s: out of memory", st->path);
    for (int64_t i = 0; i < st->n; i++) {
        int64_t j = zl_wnames_add(&st->names, st->t[i].name, i);
        if (j >= 0)
            return zl_error(ZL_EINVAL, "%s: tensor '%s' appears in both %s and %s", st->path,
                            st->t[i].name, st->t[j].file, st->t[i].file);
    }
    return ZL_OK;
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static int open_joined(struct zl_safetensors *st, const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    if (!p)
        return zl_error(ZL_ENOMEM, "out of memory");
    int rc = open_file(st, p);
    free(p);
    return rc;
}

/* A shard name must stay inside the model directory. */
static int shard_name_ok(const char *s)
{
    return *s && s[0] != '/' && strcmp(s, "..") != 0 && strncmp(s, "../", 3) != 0 &&
           !strstr(s, "/../") && !(strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0);
}

static int open_index(struct zl_safetensors *st, const char *index_path)
{
    json_error_t err;
    st->index = json_load_file(index_path, JSON_REJECT_DUPLICATES, &err);
    if (!st->index)
        return zl_error(ZL_EINVAL, "%s: %s (line %d)", index_path, err.text, err.line);
    json_t *map = json_object_get(st->index, "weight_map");
    if (!json_is_object(map))
        return zl_error(ZL_EINVAL, "%s: missing or non-object \"weight_map\"", index_path);
    char *dir = strdup(index_path);
    if (!dir)
        return zl_error(ZL_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    const char *name;
    json_t *v;
    int rc = ZL_OK;
    struct zl_wnames shards = {0};
    if (zl_wnames_init(&shards, json_object_size(map)) < 0)
        rc = zl_error(ZL_ENOMEM, "out of memory");
    json_object_foreach(map, name, v) {
        if (rc < 0)
            break;
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            rc = zl_error(ZL_EINVAL, "%s: weight_map entry for tensor '%s' is not a file name in the directory",
                          index_path, name);
            break;
        }
        if (zl_wnames_add(&shards, json_string_value(v), 0) >= 0)
            continue;
        if ((rc = open_joined(st, dir, json_string_value(v))) < 0)
            rc = zl_error_wrap(rc, "%s: shard of tensor '%s'", index_path, name);
    }
    zl_wnames_free(&shards);
    if (rc == ZL_OK)
        rc = index_names(st);
    json_object_foreach(map, name, v) {
        if (rc < 0)
            break;
        int64_t i = zl_safetensors_find(st, name);
        char *want = path_join(dir, json_string_value(v));
        if (!want)
            rc = zl_error(ZL_ENOMEM, "out of memory");
        else if (i < 0)
            rc = zl_error(ZL_ENOTFOUND, "%s: tensor '%s' is missing from its shard %s", index_path,
                          name, want);
        else if (strcmp(st->t[i].file, want) != 0)
            rc = zl_error(ZL_EINVAL, "%s: tensor '%s' is listed in %s but found in %s", index_path,
                          name, want, st->t[i].file);
        free(want);
    }
    if (rc == ZL_OK && (size_t)st->n != json_object_size(map))
        ZL_WARN("safetensors", "%s: %lld tensors in the shards are not in weight_map", index_path,
                (long long)(st->n - (int64_t)json_object_size(map)));
    free(dir);
    return rc;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory without an index: its model.safetensors, or else every
 * *.safetensors in it, sorted. */
static int open_dir_files(struct zl_safetensors *st, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return zl_error(ZL_EIO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    int rc = ZL_OK, only_model = 0;
    struct dirent *e;
    while ((e = readdir(d)) && rc == ZL_OK) {
        if (!has_suffix(e->d_name, ".safetensors") || e->d_name[0] == '.')
            continue;
        if (strcmp(e->d_name, "model.safetensors") == 0)
            only_model = 1;     /* then the others are extras (adapters, consolidated copies) */
        char **p = realloc(names, (n + 1) * sizeof *names);
        if (!p || !(p[n] = strdup(e->d_name))) {
            names = p ? p : names;
            rc = zl_error(ZL_ENOMEM, "out of memory");
            break;
        }
        names = p;
        n++;
    }
    closedir(d);
    if (rc == ZL_OK && n == 0)
        rc = zl_error(ZL_ENOTFOUND, "%s: no %s and no *.safetensors file", dir, INDEX_NAME);
    if (names)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == ZL_OK; i++)
        if (!only_model || strcmp(names[i], "model.safetensors") == 0)
            rc = open_joined(st, dir, names[i]);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc == ZL_OK ? index_names(st) : rc;
}

static int finish(struct zl_safetensors *st, int rc, struct zl_safetensors **out)
{
    json_decref(st->index);
    st->index = NULL;
    if (rc < 0) {
        zl_safetensors_close(st);
        return rc;
    }
    *out = st;
    return ZL_OK;
}

static struct zl_safetensors *st_new(const char *name)
{
    struct zl_safetensors *st = calloc(1, sizeof *st);
    if (st && !(st->path = strdup(name ? name : "<memory>"))) {
        free(st);
        st = NULL;
    }
    return st;
}

ZL_API int zl_safetensors_parse_buffer(const void *buf, size_t len, const char *name,
                                       struct zl_safetensors **out)
{
    *out = NULL;
    struct zl_safetensors *st = st_new(name);
    if (!st)
        return zl_error(ZL_ENOMEM, "out of memory");
    struct st_file *f = add_file(st, st->path);
    int rc = f ? parse_file(st, f, buf, buf ? len : 0) : zl_error(ZL_ENOMEM, "out of memory");
    if (rc == ZL_OK)
        rc = index_names(st);
    return finish(st, rc, out);
}

ZL_API int zl_safetensors_open(const char *path, struct zl_safetensors **out)
{
    *out = NULL;
    struct zl_safetensors *st = st_new(path);
    if (!st)
        return zl_error(ZL_ENOMEM, "out of memory");
    struct stat sb;
    int rc;
    if (stat(path, &sb) < 0) {
        rc = zl_error(errno == ENOENT ? ZL_ENOTFOUND : ZL_EIO, "%s: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        char *ix = path_join(path, INDEX_NAME);
        if (!ix)
            rc = zl_error(ZL_ENOMEM, "out of memory");
        else if (access(ix, F_OK) == 0)
            rc = open_index(st, ix);
        else
            rc = open_dir_files(st, path);
        free(ix);
    } else if (has_suffix(path, ".index.json")) {
        rc = open_index(st, path);
    } else {
        rc = open_file(st, path);
        if (rc == ZL_OK)
            rc = index_names(st);
    }
    return finish(st, rc, out);
}

ZL_API void zl_safetensors_close(struct zl_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n_files; i++) {
        zl_wmap_close(&st->files[i].map);
        json_decref(st->files[i].header);
        free(st->files[i].path);
    }
    json_decref(st->index);
    zl_wnames_free(&st->names);
    free(st->files);
    free(st->t);
    free(st->path);
    free(st);
}

ZL_API const char *zl_safetensors_path(const struct zl_safetensors *st) { return st->path; }
ZL_API int zl_safetensors_n_files(const struct zl_safetensors *st) { return st->n_files; }
ZL_API int64_t zl_safetensors_n_tensors(const struct zl_safetensors *st) { return st->n; }

ZL_API const struct zl_safetensors_tensor *zl_safetensors_tensor(const struct zl_safetensors *st,
                                                                 int64_t i)
{
    return st && i >= 0 && i < st->n ? &st->t[i] : NULL;
}

ZL_API int64_t zl_safetensors_find(const struct zl_safetensors *st, const char *name)
{
    return st ? zl_wnames_find(&st->names, name) : -1;
}

ZL_API int zl_safetensors_get(const struct zl_safetensors *st, const char *name,
                              const struct zl_safetensors_tensor **out)
{
    *out = NULL;
    int64_t i = zl_safetensors_find(st, name);
    if (i < 0)
        return zl_error(ZL_ENOTFOUND, "%s: tensor '%s' is missing", st->path, name ? name : "(null)");
    const struct zl_safetensors_tensor *t = &st->t[i];
    if (!t->supported)
        return zl_error(ZL_EUNSUPPORTED, "%s: tensor '%s': %s%s is not supported", t->file, name,
                        t->n_dims > ZL_SAFETENSORS_MAX_DIMS ? "rank above 4 with dtype " : "dtype ",
                        t->dtype_name);
    *out = t;
    return ZL_OK;
}

static void fmt_shape(char *buf, size_t cap, int n, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

ZL_API int zl_safetensors_expect(const struct zl_safetensors *st, const char *name,
                                 enum zl_dtype dtype, int n_dims, const int64_t *shape)
{
    const struct zl_safetensors_tensor *t;
    int rc = zl_safetensors_get(st, name, &t);
    if (rc < 0)
        return rc;
    if (dtype != ZL_DTYPE_COUNT && t->dtype != dtype)
        return zl_error(ZL_EINVAL, "%s: dtype %s in %s, expected %s", name, t->dtype_name, t->file,
                        zl_dtype_name(dtype));
    int same = (int)t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char have[128], want[128];
        fmt_shape(have, sizeof have, (int)t->n_dims, t->shape);
        fmt_shape(want, sizeof want, n_dims > ZL_SAFETENSORS_MAX_DIMS ? ZL_SAFETENSORS_MAX_DIMS : n_dims, shape);
        return zl_error(ZL_EINVAL, "%s: shape %s in %s, expected %s", name, have, t->file, want);
    }
    return ZL_OK;
}

ZL_API const char *zl_safetensors_metadata(const struct zl_safetensors *st, const char *key)
{
    if (!st || st->n_files == 0)
        return NULL;
    json_t *m = json_object_get(json_object_get(st->files[0].header, "__metadata__"), key);
    return json_string_value(m);
}
