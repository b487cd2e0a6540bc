/* safetensors reader: every dtype of a file written by the reference
 * serializer, a sharded HF directory, and broken inputs (each must give a
 * clean error naming the file and the tensor). */
#include <math.h>

#include <zlight/dtype.h>
#include <zlight/safetensors.h>

#include "test_weights.h"

#define ALL FIX "/all_dtypes.safetensors"
#define SHARDED FIX "/sharded"

static const struct zl_safetensors_tensor *get(struct zl_safetensors *st, const char *name)
{
    const struct zl_safetensors_tensor *t;
    int rc = zl_safetensors_get(st, name, &t);
    cr_assert_eq(rc, ZL_OK, "%s: %s", name, zl_last_error());
    return t;
}

static void check_all_dtypes(struct zl_safetensors *st)
{
    cr_assert_eq(zl_safetensors_n_tensors(st), 13);
    static const struct { const char *name; enum zl_dtype dt; } fl[] = {
        {"t.f32", ZL_DTYPE_F32}, {"t.f16", ZL_DTYPE_F16}, {"t.bf16", ZL_DTYPE_BF16},
        {"t.f8_e4m3", ZL_DTYPE_F8_E4M3}, {"t.f8_e5m2", ZL_DTYPE_F8_E5M2},
    };
    for (size_t k = 0; k < 5; k++) {
        const struct zl_safetensors_tensor *t = get(st, fl[k].name);
        cr_assert_eq(t->dtype, fl[k].dt, "%s", fl[k].name);
        cr_assert_eq(t->n_dims, 2);
        cr_assert_eq(t->shape[0], 2);
        cr_assert_eq(t->shape[1], 3);
        cr_assert_eq(t->nbytes, 6 * zl_dtype_bits(fl[k].dt) / 8);
        float v[6];
        cr_assert_eq(zl_dtype_convert(ZL_DTYPE_F32, v, fl[k].dt, t->data, 6), ZL_OK);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(v[i], (i - 2) * 0.25f, "%s[%d] = %g", fl[k].name, i, v[i]);
    }
    const struct zl_safetensors_tensor *t = get(st, "t.i8");
    for (int i = 0; i < 6; i++)
        cr_assert_eq(((const int8_t *)t->data)[i], i - 3);
    t = get(st, "t.u8");
    for (int i = 0; i < 6; i++)
        cr_assert_eq(((const uint8_t *)t->data)[i], i * 40);
    int32_t i32[6];
    int64_t i64[6];
    memcpy(i32, get(st, "t.i32")->data, sizeof i32);   /* data need not be aligned */
    memcpy(i64, get(st, "t.i64")->data, sizeof i64);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(i32[i], (i - 3) * 100000);
        cr_assert_eq(i64[i], (i - 3) * 1000000000000LL);
    }
    cr_assert_eq(get(st, "t.i64")->dtype, ZL_DTYPE_I64);
    t = get(st, "t.3d");
    cr_assert_eq(t->n_dims, 3);
    cr_assert_eq(t->shape[2], 3);
    t = get(st, "t.scalar");
    cr_assert_eq(t->n_dims, 0);
    float s;
    memcpy(&s, t->data, 4);
    cr_assert_eq(s, 7.5f);
    cr_assert_eq(get(st, "t.empty")->nbytes, 0);
    tw_assert_err(zl_safetensors_get(st, "t.bool", &t), ZL_EUNSUPPORTED, "t.bool", "BOOL");
    cr_assert_null(t);
    cr_assert_str_eq(zl_safetensors_tensor(st, zl_safetensors_find(st, "t.bool"))->dtype_name, "BOOL");
    cr_assert_str_eq(zl_safetensors_metadata(st, "format"), "pt");
    cr_assert_null(zl_safetensors_metadata(st, "absent"));
    cr_assert_eq(zl_safetensors_find(st, "nope"), -1);
    cr_assert_null(zl_safetensors_tensor(st, 13));
}

Test(safetensors, all_dtypes_file)
{
    struct zl_safetensors *st;
    cr_assert_eq(zl_safetensors_open(ALL, &st), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_safetensors_n_files(st), 1);
    check_all_dtypes(st);
    const struct zl_safetensors_tensor *t = get(st, "t.f32");
    cr_assert_str_eq(t->file, ALL);
    zl_safetensors_close(st);
    zl_safetensors_close(NULL);
}

Test(safetensors, all_dtypes_buffer)
{
    size_t n;
    unsigned char *buf = tw_read(ALL, &n);
    struct zl_safetensors *st;
    cr_assert_eq(zl_safetensors_parse_buffer(buf, n, "mem.st", &st), ZL_OK, "%s", zl_last_error());
    check_all_dtypes(st);
    zl_safetensors_close(st);
    free(buf);
}

static void check_sharded(const char *path)
{
    struct zl_safetensors *st;
    cr_assert_eq(zl_safetensors_open(path, &st), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_safetensors_n_files(st), 2);
    cr_assert_eq(zl_safetensors_n_tensors(st), 8);
    const struct zl_safetensors_tensor *t = get(st, "lm_head.weight");
    cr_assert(strstr(t->file, "model-00002-of-00002.safetensors"), "%s", t->file);
    cr_assert(strstr(get(st, "model.embed_tokens.weight")->file, "00001-of"));
    int64_t up[2] = {48, 16}, bad[2] = {16, 48};
    cr_assert_eq(zl_safetensors_expect(st, "model.layers.1.mlp.up_proj.weight", ZL_DTYPE_BF16, 2, up), ZL_OK,
                 "%s", zl_last_error());
    cr_assert_eq(zl_safetensors_expect(st, "model.layers.1.mlp.up_proj.weight", ZL_DTYPE_COUNT, 2, up), ZL_OK);
    tw_assert_err(zl_safetensors_expect(st, "model.layers.0.mlp.up_proj.weight", ZL_DTYPE_BF16, 2, bad),
                  ZL_EINVAL, "model.layers.0.mlp.up_proj.weight: shape [48, 16] in ",
                  "model-00001-of-00002.safetensors, expected [16, 48]");
    tw_assert_err(zl_safetensors_expect(st, "model.layers.0.mlp.up_proj.weight", ZL_DTYPE_F16, 2, up),
                  ZL_EINVAL, "model.layers.0.mlp.up_proj.weight: dtype BF16 in ", "expected f16");
    tw_assert_err(zl_safetensors_expect(st, "model.norm.weight", ZL_DTYPE_BF16, 2, up), ZL_EINVAL,
                  "shape [16] in");
    tw_assert_err(zl_safetensors_expect(st, "model.layers.2.mlp.up_proj.weight", ZL_DTYPE_BF16, 2, up),
                  ZL_ENOTFOUND, "model.layers.2.mlp.up_proj.weight", "missing", path);
    zl_safetensors_close(st);
}

Test(safetensors, sharded_directory) { check_sharded(SHARDED); }
Test(safetensors, sharded_index_path) { check_sharded(SHARDED "/model.safetensors.index.json"); }

static void copy_fixture(const char *from, const char *dir, const char *name)
{
    char p[512];
    size_t n;
    unsigned char *a = tw_read(from, &n);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    tw_write(p, a, n);
    free(a);
}

static int64_t count_in_dir(const char *dir)
{
    struct zl_safetensors *st;
    cr_assert_eq(zl_safetensors_open(dir, &st), ZL_OK, "%s", zl_last_error());
    int64_t n = zl_safetensors_n_tensors(st);
    zl_safetensors_close(st);
    return n;
}

Test(safetensors, directory_without_index)
{
    char dir[256], p[512];
    tw_mkdtemp(dir, sizeof dir);
    /* two files, no model.safetensors: both */
    copy_fixture(SHARDED "/model-00001-of-00002.safetensors", dir, "a.safetensors");
    copy_fixture(SHARDED "/model-00002-of-00002.safetensors", dir, "b.safetensors");
    cr_assert_eq(count_in_dir(dir), 8);
    /* model.safetensors present: only it (the others may be adapters or copies) */
    copy_fixture(SHARDED "/model-00001-of-00002.safetensors", dir, "model.safetensors");
    cr_assert_eq(count_in_dir(dir), 4);
    static const char *const names[] = {"a.safetensors", "b.safetensors", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        remove(p);
    }
    struct zl_safetensors *st;
    tw_assert_err(zl_safetensors_open(dir, &st), ZL_ENOTFOUND, dir, "no model.safetensors.index.json");
    cr_assert_null(st);
    tw_rmdir(dir);
}

/* A safetensors image with this header and `data_len` bytes of data. */
static unsigned char *mk(const char *json, size_t data_len, size_t *n)
{
    uint64_t h = strlen(json);
    *n = 8 + h + data_len;
    unsigned char *p = calloc(1, *n);
    memcpy(p, &h, 8);
    memcpy(p + 8, json, h);
    return p;
}

static int parse_json(const char *json, size_t data_len)
{
    size_t n;
    unsigned char *p = mk(json, data_len, &n);
    struct zl_safetensors *st = (void *)1;
    int rc = zl_safetensors_parse_buffer(p, n, "bad.safetensors", &st);
    if (rc == ZL_OK)
        zl_safetensors_close(st);
    else
        cr_assert_null(st);
    free(p);
    return rc;
}

#define E(json, len, want, ...) tw_assert_err(parse_json(json, len), want, "bad.safetensors", __VA_ARGS__)

Test(safetensors, broken_headers)
{
    cr_assert_eq(parse_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), ZL_OK,
                 "%s", zl_last_error());
    cr_assert_eq(parse_json("{}", 0), ZL_OK);
    E("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "'a'", "dtype");
    E("{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "'a'", "dtype");
    E("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "'a'", "shape");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":\"x\",\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "'a'", "shape");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "'a'", "shape[0]");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "'a'", "shape[0]");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, ZL_EINVAL, "'a'", "data_offsets");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", 8, ZL_EINVAL, "'a'", "data_offsets");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, ZL_EINVAL, "'a'", "out of range");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, ZL_EINVAL, "'a'", "out of range");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "'a'", "12 bytes", "span 8");
    E("{\"a\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ZL_EUNSUPPORTED, "'a'", "F7");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8,
      ZL_ERANGE, "'a'", "overflow");
    E("{\"a\":{\"dtype\":\"I64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8, ZL_ERANGE,
      "'a'", "overflow");
    E("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, ZL_EINVAL, "'a'", "whole bytes");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, ZL_EINVAL, "'a'", "'b'", "overlap");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, ZL_EINVAL, "'b'", "contiguous");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, ZL_EINVAL, "4 bytes after the last");
    E("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ZL_EINVAL, "duplicate", "a");
    E("[1,2]", 0, ZL_EINVAL, "not a JSON object");
    E("{\"a\":[1]}", 0, ZL_EINVAL, "'a'", "not an object");
    E("{\"__metadata__\":{\"k\":1}}", 0, ZL_EINVAL, "__metadata__", "'k'");
    E("{\"__metadata__\":[]}", 0, ZL_EINVAL, "__metadata__");
    E("{\"a\":", 0, ZL_EINVAL, "invalid JSON");
}

Test(safetensors, truncations)
{
    size_t n;
    unsigned char *buf = tw_read(ALL, &n);
    struct zl_safetensors *st;
    tw_assert_err(zl_safetensors_parse_buffer(buf, 4, "t.st", &st), ZL_EINVAL, "t.st", "truncated");
    tw_assert_err(zl_safetensors_parse_buffer(buf, 100, "t.st", &st), ZL_EINVAL, "t.st", "header length",
                  "past the end");
    /* losing the last bytes cuts into the tensor stored last */
    tw_assert_err(zl_safetensors_parse_buffer(buf, n - 1, "t.st", &st), ZL_EINVAL, "t.st", "out of range",
                  "truncated");
    /* every truncation fails cleanly */
    for (size_t len = 0; len < n; len++) {
        cr_assert_lt(zl_safetensors_parse_buffer(buf, len, "t.st", &st), 0, "len %zu", len);
        cr_assert_null(st);
    }
    /* header length past the end */
    unsigned char *c = malloc(n);
    memcpy(c, buf, n);
    uint64_t h = n;
    memcpy(c, &h, 8);
    tw_assert_err(zl_safetensors_parse_buffer(c, n, "t.st", &st), ZL_EINVAL, "t.st", "past the end");
    h = UINT64_MAX;
    memcpy(c, &h, 8);
    tw_assert_err(zl_safetensors_parse_buffer(c, n, "t.st", &st), ZL_EINVAL, "t.st", "past the end");
    /* a byte of the JSON replaced */
    memcpy(c, buf, n);
    c[8] = '!';
    tw_assert_err(zl_safetensors_parse_buffer(c, n, "t.st", &st), ZL_EINVAL, "t.st", "invalid JSON");
    /* through a real file: the path is named */
    char dir[256], p[512];
    tw_mkdtemp(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/trunc.safetensors", dir);
    tw_write(p, buf, n - 10);
    tw_assert_err(zl_safetensors_open(p, &st), ZL_EINVAL, p, "truncated");
    tw_write(p, buf, 0);
    tw_assert_err(zl_safetensors_open(p, &st), ZL_EINVAL, p, "truncated");
    tw_rmdir(dir);
    tw_assert_err(zl_safetensors_open(FIX "/nonexistent.safetensors", &st), ZL_ENOTFOUND, "nonexistent");
    free(c);
    free(buf);
}

/* Copies the sharded fixture into a temporary directory with `index` as its
 * index.json and opens it. */
static int open_with_index(const char *index, char *dir, size_t cap)
{
    char p[512];
    tw_mkdtemp(dir, cap);
    static const char *const shards[] = {"model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, SHARDED "/%s", shards[i]);
        copy_fixture(p, dir, shards[i]);
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    tw_write(p, index, strlen(index));
    struct zl_safetensors *st;
    int rc = zl_safetensors_open(dir, &st);
    zl_safetensors_close(st);
    return rc;
}

Test(safetensors, broken_index)
{
    char dir[256];
    cr_assert_eq(open_with_index("{\"weight_map\":{\"lm_head.weight\":\"model-00002-of-00002.safetensors\"}}",
                                 dir, sizeof dir), ZL_OK, "%s", zl_last_error());
    tw_rmdir(dir);
    tw_assert_err(open_with_index("{\"weight_map\":{\"lm_head.weight\":\"model-00003-of-00003.safetensors\"}}",
                                  dir, sizeof dir), ZL_ENOTFOUND, "model-00003-of-00003.safetensors",
                  "lm_head.weight");
    tw_rmdir(dir);
    tw_assert_err(open_with_index("{\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00002.safetensors\","
                                  "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}",
                                  dir, sizeof dir), ZL_EINVAL, "lm_head.weight", "listed in", "found in");
    tw_rmdir(dir);
    tw_assert_err(open_with_index("{\"weight_map\":{\"x.weight\":\"model-00001-of-00002.safetensors\"}}",
                                  dir, sizeof dir), ZL_ENOTFOUND, "x.weight", "missing from its shard",
                  "model-00001-of-00002.safetensors");
    tw_rmdir(dir);
    tw_assert_err(open_with_index("{\"weight_map\":{\"x.weight\":\"../etc/passwd\"}}", dir, sizeof dir),
                  ZL_EINVAL, "x.weight", "model.safetensors.index.json");
    tw_rmdir(dir);
    tw_assert_err(open_with_index("{\"weight_map\":[]}", dir, sizeof dir), ZL_EINVAL, "weight_map");
    tw_rmdir(dir);
    tw_assert_err(open_with_index("{\"weight_map\":", dir, sizeof dir), ZL_EINVAL,
                  "model.safetensors.index.json");
    tw_rmdir(dir);
}

/* Inputs the fuzzer found (or that were hand-made to cover parser corners):
 * each must give a clean error. */
static int parse_st(const void *b, size_t n, const char *name)
{
    struct zl_safetensors *st;
    int rc = zl_safetensors_parse_buffer(b, n, name, &st);
    zl_safetensors_close(st);
    return rc;
}

Test(safetensors, fuzz_regressions) { tw_regressions("st-", parse_st); }
