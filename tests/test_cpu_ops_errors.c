/* Every op of the CPU backend rejects bad shapes, dtypes, devices and batch
 * descriptions with ZL_EINVAL (ZL_ERANGE for token ids, in test_cpu_ops.c)
 * and a message naming the op and the mismatch; nothing is touched. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/status.h>

#include "test_cpu_ops.h"

TestSuite(cpu_errors, .init = cpuops_setup, .fini = cpuops_teardown);

#define ERR(call, needle) expect_error((call), ZL_EINVAL, (needle), #call)

static float buf_a[4096], buf_b[4096], buf_c[4096];

/* t = f32 [rows, cols] over buf (row-major, contiguous) */
static struct zl_tensor t2(float *buf, int64_t rows, int64_t cols)
{
    struct zl_tensor t;
    make_tensor(&t, ZL_DTYPE_F32, 2, (int64_t[]){rows, cols}, buf);
    return t;
}

static struct zl_tensor t3(float *buf, int64_t n, int64_t h, int64_t d)
{
    struct zl_tensor t;
    make_tensor(&t, ZL_DTYPE_F32, 3, (int64_t[]){n, h, d}, buf);
    return t;
}

Test(cpu_errors, linear)
{
    struct zl_bctx *ctx = cpuops_open(0, 2);
    struct zl_tensor x = t2(buf_a, 2, 8), w = t2(buf_b, 4, 8), out = t2(buf_c, 2, 4), bad;
    cr_assert_eq(be->linear(ctx, &out, &x, &w, NULL), ZL_OK, "%s", zl_last_error());
    bad = x, bad.dtype = ZL_DTYPE_F16;
    ERR(be->linear(ctx, &out, &bad, &w, NULL), "cpu linear: x is f16, want f32");
    bad = w, bad.dtype = ZL_DTYPE_I32;
    ERR(be->linear(ctx, &out, &x, &bad, NULL), "cpu linear: w is i32");
    bad = t2(buf_b, 4, 7);
    ERR(be->linear(ctx, &out, &x, &bad, NULL), "inner sizes differ");
    bad = t2(buf_c, 2, 5);
    ERR(be->linear(ctx, &bad, &x, &w, NULL), "cpu linear: out [2, 5], want [2, 4]");
    bad = t2(buf_c + 100, 1, 3);
    ERR(be->linear(ctx, &out, &x, &w, &bad), "cpu linear: bias [1, 3], want [4]");
    bad = out, bad.device = 1;
    ERR(be->linear(ctx, &bad, &x, &w, NULL), "out is on device 1");
    ERR(be->linear(ctx, &out, &x, NULL, NULL), "cpu linear: w is NULL");
    bad = x, bad.data = NULL;
    ERR(be->linear(ctx, &out, &bad, &w, NULL), "x has no data");
    bad = t2(buf_b, 4, 4), bad.nb[1] = 8;
    ERR(be->linear(ctx, &out, &x, &bad, NULL), "strided along its innermost dim");
    bad = t2(buf_a + 4, 2, 4);
    ERR(be->linear(ctx, &bad, &x, &w, NULL), "out overlaps");
    bad = t3(buf_a, 2, 2, 2), bad.nb[0] = 64;
    ERR(be->linear(ctx, &out, &bad, &w, NULL), "do not form rows");
    be->close(ctx);
}

Test(cpu_errors, embedding_norm_elementwise)
{
    struct zl_bctx *ctx = cpuops_open(0, 1);
    int32_t ids[2] = {0, 1};
    struct zl_tensor tok, table = t2(buf_a, 10, 8), out = t2(buf_c, 2, 8), bad;
    make_tensor(&tok, ZL_DTYPE_I32, 1, (int64_t[]){2}, ids);
    cr_assert_eq(be->embedding(ctx, &out, &table, &tok), ZL_OK, "%s", zl_last_error());
    bad = tok, bad.dtype = ZL_DTYPE_F32;
    ERR(be->embedding(ctx, &out, &table, &bad), "cpu embedding: tokens is f32, want i32");
    bad = t2(buf_c, 2, 7);
    ERR(be->embedding(ctx, &bad, &table, &tok), "cpu embedding: out [2, 7], want [2, 8]");
    make_tensor(&bad, ZL_DTYPE_I32, 2, (int64_t[]){1, 2}, ids);
    bad.ne[0] = 2, bad.ne[1] = 1;
    ERR(be->embedding(ctx, &out, &table, &bad), "cpu embedding: tokens must be contiguous");
    make_tensor(&bad, ZL_DTYPE_I32, 2, (int64_t[]){2, 2}, buf_b);
    ERR(be->embedding(ctx, &out, &table, &bad), "cpu embedding: tokens must be a vector");

    struct zl_tensor x = t2(buf_a, 2, 8), w = t2(buf_b, 1, 8), res = t2(buf_c, 2, 8);
    cr_assert_eq(be->rms_norm(ctx, &x, &x, &res, &w, 1e-6f), ZL_OK, "%s", zl_last_error());
    bad = t2(buf_b, 1, 7);
    ERR(be->rms_norm(ctx, &x, &x, NULL, &bad, 1e-6f), "cpu rms_norm: weight [1, 7], want [8]");
    bad = t2(buf_c, 3, 8);
    ERR(be->rms_norm(ctx, &x, &x, &bad, &w, 1e-6f), "cpu rms_norm: residual [3, 8] vs x [2, 8]");
    ERR(be->rms_norm(ctx, &x, &x, NULL, &w, -1.0f), "cpu rms_norm: eps");
    ERR(be->rms_norm(ctx, &x, &x, NULL, &w, NAN), "cpu rms_norm: eps");
    bad = t2(buf_c, 2, 9);
    ERR(be->rms_norm(ctx, &bad, &x, NULL, &w, 1e-6f), "cpu rms_norm: out [2, 9] vs x [2, 8]");

    struct zl_tensor g = t2(buf_a, 2, 8), u = t2(buf_b, 2, 8);
    bad = t2(buf_b, 2, 9);
    ERR(be->silu_mul(ctx, &out, &g, &bad), "cpu silu_mul: out [2, 8] vs up [2, 9]");
    bad = out, bad.dtype = ZL_DTYPE_F16;
    ERR(be->silu_mul(ctx, &bad, &g, &u), "cpu silu_mul: out is f16");
    bad = u, bad.dtype = ZL_DTYPE_BF16;
    ERR(be->add(ctx, &out, &g, &bad), "cpu add: b is bf16");
    bad = t2(buf_b, 4, 4);
    ERR(be->add(ctx, &out, &g, &bad), "cpu add: out [2, 8] vs b [4, 4]");
    bad = t2(buf_b, 2, 4);
    ERR(be->copy(ctx, &out, &bad), "cpu copy: out [2, 8] vs src [2, 4]");
    bad = g, bad.dtype = ZL_DTYPE_I32;
    ERR(be->copy(ctx, &out, &bad), "cpu copy: src is i32");
    be->close(ctx);
}

Test(cpu_errors, rope)
{
    struct zl_bctx *ctx = cpuops_open(0, 1);
    int32_t pos[2] = {0, 1};
    float inv[4] = {1, 0.1f, 0.01f, 0.001f};
    struct zl_rope r = {.rot_dim = 8, .inv_freq = inv, .attn_factor = 1};
    struct zl_tensor q = t3(buf_a, 2, 4, 8), k = t3(buf_b, 2, 2, 8), p, bad;
    make_tensor(&p, ZL_DTYPE_I32, 1, (int64_t[]){2}, pos);
    cr_assert_eq(be->rope(ctx, &q, &k, &p, &r), ZL_OK, "%s", zl_last_error());
    bad = t2(buf_a, 2, 32);
    ERR(be->rope(ctx, &bad, &k, &p, &r), "cpu rope: q has 2 dims, want 3");
    bad = t3(buf_b, 2, 2, 6);
    ERR(be->rope(ctx, &q, &bad, &p, &r), "cpu rope: k [2, 2, 6] does not match q");
    bad = p, bad.ne[0] = 1;
    ERR(be->rope(ctx, &q, &k, &bad, &r), "cpu rope: positions has 1 elements, want 2");
    bad = p, bad.dtype = ZL_DTYPE_F32;
    ERR(be->rope(ctx, &q, &k, &bad, &r), "cpu rope: positions is f32, want i32");
    struct zl_rope br = r;
    br.rot_dim = 7;
    ERR(be->rope(ctx, &q, &k, &p, &br), "cpu rope: rot_dim 7");
    br.rot_dim = 10;
    ERR(be->rope(ctx, &q, &k, &p, &br), "cpu rope: rot_dim 10");
    br = r, br.inv_freq = NULL;
    ERR(be->rope(ctx, &q, &k, &p, &br), "inv_freq");
    ERR(be->rope(ctx, &q, &k, &p, NULL), "cpu rope: rot_dim");
    be->close(ctx);
}

/* A valid 1-sequence step (2 new tokens onto 3 cached ones, block size 4)
 * that each case below breaks in one place. */
struct kv_fixture {
    float pool[2 * 2 * 2 * 4 * 2 * 8];  /* 2 blocks x 2 layers x K/V x 4 tokens x 2 heads x 8 */
    int32_t q_start[2], kv_len[1], table[2], slot[2];
    struct zl_kv_cache cache;
    struct zl_attn_batch batch;
    struct zl_tensor q, k, v, out;
};

static void kv_fixture_init(struct kv_fixture *f)
{
    memset(f, 0, sizeof *f);
    f->cache = (struct zl_kv_cache){.base = f->pool, .block_stride = sizeof f->pool / 2,
                                    .block_size = 4, .n_layers = 2, .n_kv_heads = 2,
                                    .head_dim = 8, .dtype = ZL_DTYPE_F32};
    f->q_start[1] = 2, f->kv_len[0] = 5, f->table[0] = 1, f->table[1] = 0;
    f->slot[0] = 1 * 4 + 3, f->slot[1] = 0 * 4 + 0;
    f->batch = (struct zl_attn_batch){.n_seqs = 1, .max_blocks = 2, .q_start = f->q_start,
                                      .kv_len = f->kv_len, .block_table = f->table,
                                      .slot = f->slot};
    f->q = t3(buf_a, 2, 4, 8), f->k = t3(buf_b, 2, 2, 8), f->v = t3(buf_b + 32, 2, 2, 8);
    f->out = t3(buf_c, 2, 4, 8);
}

Test(cpu_errors, kv_write_and_attention)
{
    struct zl_bctx *ctx = cpuops_open(0, 2);
    struct kv_fixture f;
    struct zl_tensor bad;
    kv_fixture_init(&f);
    cr_assert_eq(be->kv_write(ctx, &f.cache, 1, &f.k, &f.v, &f.batch), ZL_OK, "%s", zl_last_error());
    ERR(be->kv_write(ctx, &f.cache, 2, &f.k, &f.v, &f.batch), "cpu kv_write: layer 2 outside 0..1");
    bad = t3(buf_b, 2, 1, 8);
    ERR(be->kv_write(ctx, &f.cache, 0, &bad, &f.v, &f.batch), "cpu kv_write: k [2, 1, 8], want [2, 2, 8]");
    ERR(be->kv_write(ctx, &f.cache, 0, &f.k, NULL, &f.batch), "cpu kv_write: v is NULL");
    ERR(be->kv_write(ctx, &f.cache, 0, &f.k, &f.v, NULL), "cpu kv_write: batch is NULL");
    f.cache.dtype = ZL_DTYPE_I32;
    ERR(be->kv_write(ctx, &f.cache, 0, &f.k, &f.v, &f.batch), "cpu kv_write: cache dtype i32");
    kv_fixture_init(&f);
    f.cache.block_stride -= 4;
    ERR(be->kv_write(ctx, &f.cache, 0, &f.k, &f.v, &f.batch), "block_stride");
    kv_fixture_init(&f);
    f.slot[1] = -1;
    ERR(be->kv_write(ctx, &f.cache, 0, &f.k, &f.v, &f.batch), "cpu kv_write: token 1 has slot -1");
    kv_fixture_init(&f);
    f.q_start[1] = 1;
    ERR(be->kv_write(ctx, &f.cache, 0, &f.k, &f.v, &f.batch), "q_start spans 0..1, want 0..2");
    kv_fixture_init(&f);
    f.kv_len[0] = 1;
    ERR(be->kv_write(ctx, &f.cache, 0, &f.k, &f.v, &f.batch), "sequence 0 has 2 new tokens and kv_len 1");

    kv_fixture_init(&f);
    cr_assert_eq(be->kv_write(ctx, &f.cache, 1, &f.k, &f.v, &f.batch), ZL_OK);
    memset(f.pool, 0, sizeof f.pool);
    cr_assert_eq(be->attention(ctx, &f.out, &f.q, &f.cache, 1, &f.batch, 0.35f), ZL_OK, "%s",
                 zl_last_error());
    struct zl_tensor out3 = t3(buf_c, 2, 3, 8);
    bad = t3(buf_a, 2, 3, 8);
    ERR(be->attention(ctx, &out3, &bad, &f.cache, 1, &f.batch, 0.35f), "heads are not a multiple");
    bad = t3(buf_a, 2, 4, 4);
    ERR(be->attention(ctx, &f.out, &bad, &f.cache, 1, &f.batch, 0.35f), "cpu attention: out [2, 4, 8], want [2, 4, 4]");
    bad = t3(buf_c, 2, 4, 4);
    ERR(be->attention(ctx, &bad, &f.q, &f.cache, 1, &f.batch, 0.35f), "cpu attention: out [2, 4, 4], want [2, 4, 8]");
    bad = f.q, bad.dtype = ZL_DTYPE_F16;
    ERR(be->attention(ctx, &f.out, &bad, &f.cache, 1, &f.batch, 0.35f), "cpu attention: q is f16");
    ERR(be->attention(ctx, &f.out, &f.q, &f.cache, 1, &f.batch, NAN), "cpu attention: scale");
    f.kv_len[0] = 9;
    ERR(be->attention(ctx, &f.out, &f.q, &f.cache, 1, &f.batch, 0.35f), "(max 8 for max_blocks 2)");
    kv_fixture_init(&f);
    f.table[1] = -1;
    ERR(be->attention(ctx, &f.out, &f.q, &f.cache, 1, &f.batch, 0.35f), "cpu attention: sequence 0 block 1 has id -1");
    kv_fixture_init(&f);
    f.cache.base = NULL;
    ERR(be->attention(ctx, &f.out, &f.q, &f.cache, 1, &f.batch, 0.35f), "cpu attention: cache has no base");
    be->close(ctx);
}
