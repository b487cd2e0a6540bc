/* The weight loader (GGUF names, Q/K unpermute, dummy weights, broken
 * inputs) and the simple engine's input checks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlight/log.h>
#include <zlight/memory.h>
#include <zlight/tensor.h>
#include <zlight/status.h>
#include <zlight/weight_loader.h>

#include "engine-simple.h"
#include "weight-loader-impl.h"

#define FIX ZL_TEST_SRCDIR "/fixtures/llama/"

static void setup(void)
{
    setenv("ZLIGHT_PLUGIN_PATH", ZL_TOP_BUILDDIR "/kernels/cpu/.libs:" ZL_TOP_BUILDDIR "/models/llama/.libs", 1);
    zl_log_set_level(ZL_LOG_ERROR);
}

TestSuite(wnames);
TestSuite(wloader, .init = setup);

Test(wnames, hf_to_gguf)
{
    static const char *const pairs[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
        {"model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
        {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.7.post_attention_layernorm.weight", "blk.7.ffn_norm.weight"},
        {"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
        {"model.layers.7.mlp.up_proj.weight", "blk.7.ffn_up.weight"},
        {"model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight"},
        {"rope_freqs.weight", "rope_freqs.weight"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char out[128];
        int qk;
        cr_assert_eq(zl_wnames_to_gguf(pairs[i][0], out, sizeof out, &qk), 1);
        cr_assert_str_eq(out, pairs[i][1]);
        cr_assert_eq(qk, strstr(pairs[i][0], "q_proj") ? 1 : strstr(pairs[i][0], "k_proj") ? 2 : 0);
    }
    char tiny[8];
    int qk;
    cr_assert_eq(zl_wnames_to_gguf("model.layers.3.mlp.up_proj.weight", tiny, sizeof tiny, &qk), 0);
}

/* The inverse of llama.cpp's permute (reshape(H, 2, D/2, ...).swapaxes(1, 2)):
 * GGUF row h*D + 2i + s holds HF row h*D + s*D/2 + i. */
Test(wnames, unpermute_inverts_the_converter)
{
    const int64_t heads = 3, d = 8, rows = heads * d;
    int seen[24] = {0};
    for (int64_t h = 0; h < heads; h++)
        for (int64_t s = 0; s < 2; s++)
            for (int64_t i = 0; i < d / 2; i++) {
                int64_t hf = h * d + s * (d / 2) + i, gg = h * d + 2 * i + s;
                cr_assert_eq(zl_wnames_unpermute_row(hf, rows, heads), gg);
                seen[gg]++;
            }
    for (int i = 0; i < rows; i++)
        cr_assert_eq(seen[i], 1);
}

Test(wnames, dummy_tensors_follow_the_config)
{
    struct zl_hf_config c;
    const char *j = "{\"model_type\": \"qwen2\", \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                    "\"num_attention_heads\": 2, \"vocab_size\": 16, \"tie_word_embeddings\": true}";
    cr_assert_eq(zl_hf_config_parse(j, strlen(j), "t", &c), ZL_OK, "%s", zl_last_error());
    cr_assert(!zl_wdummy_has(&c, "lm_head.weight"));
    cr_assert(zl_wdummy_has(&c, "model.layers.0.self_attn.q_proj.bias"));
    cr_assert(!zl_wdummy_has(&c, "model.layers.0.self_attn.o_proj.bias"));
    cr_assert(!zl_wdummy_has(&c, "model.layers.0.mlp.up_proj.bias"));
    cr_assert(zl_wdummy_has(&c, "model.layers.0.mlp.up_proj.weight"));
    float a[64], b[16], n[4];
    zl_wdummy_fill(7, "x.weight", 0, 64, a);
    zl_wdummy_fill(7, "x.weight", 40, 16, b); /* a slice equals the same part of the whole */
    cr_assert_arr_eq(a + 40, b, sizeof b);
    zl_wdummy_fill(8, "x.weight", 40, 16, b);
    cr_assert(memcmp(a + 40, b, sizeof b) != 0, "the seed changes the values");
    for (int i = 0; i < 64; i++)
        cr_assert(a[i] >= -0.05f && a[i] < 0.05f);
    zl_wdummy_fill(7, "model.norm.weight", 0, 4, n);
    cr_assert(n[0] == 1.0f && n[3] == 1.0f);
    /* the threaded, converting fill gives the same values, chunks and all */
    int64_t big = 3 * 65536 * 2 + 123;
    float *f = malloc((size_t)big * sizeof *f);
    uint16_t *h = malloc((size_t)big * sizeof *h), *want = malloc((size_t)big * sizeof *want);
    zl_wdummy_fill(7, "x.weight", 5, big, f);
    cr_assert_eq(zl_dtype_convert(ZL_DTYPE_BF16, want, ZL_DTYPE_F32, f, (size_t)big), ZL_OK);
    cr_assert_eq(zl_wdummy_fill_dtype(7, "x.weight", 5, big, ZL_DTYPE_BF16, h), ZL_OK);
    cr_assert_arr_eq(h, want, (size_t)big * sizeof *h);
    float *g = malloc((size_t)big * sizeof *g);
    cr_assert_eq(zl_wdummy_fill_dtype(7, "x.weight", 5, big, ZL_DTYPE_F32, g), ZL_OK);
    cr_assert_arr_eq(g, f, (size_t)big * sizeof *g);
    free(f);
    free(g);
    free(h);
    free(want);
}

static int generate(const char *model, int dummy, const int32_t *prompt, int32_t len, int32_t n,
                    int32_t *out)
{
    struct zl_simple_params p = zl_simple_default_params();
    p.model_path = model;
    p.dummy = dummy;
    p.threads = 2;
    struct zl_simple *e;
    int rc = zl_simple_create(&p, &e);
    if (rc < 0)
        return rc;
    rc = zl_simple_generate(e, 1, &prompt, &len, n, &out, NULL);
    zl_simple_free(e);
    return rc;
}

Test(wloader, dummy_weights_from_config_alone)
{
    int32_t prompt[3] = {5, 6, 7}, a[8], b[8];
    cr_assert_eq(generate(FIX "qwen2/config.json", 1, prompt, 3, 8, a), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(generate(FIX "llama31", 1, prompt, 3, 8, b), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(generate(FIX "qwen2", 1, prompt, 3, 8, b), ZL_OK, "%s", zl_last_error());
    cr_assert_arr_eq(a, b, sizeof a, "dummy weights are reproducible");
}

Test(wloader, default_dtypes)
{
    struct zl_wloader *wl;
    cr_assert_eq(zl_wloader_open(FIX "llama2", NULL, &wl), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_wloader_get_format(wl), ZL_WLOADER_SAFETENSORS);
    cr_assert_eq(zl_wloader_default_dtype(wl), ZL_DTYPE_BF16);
    cr_assert_str_eq(zl_wloader_config(wl)->model_type, "llama");
    cr_assert(zl_wloader_weight_bytes(wl, ZL_DTYPE_BF16) > 200000);
    zl_wloader_free(wl);
    cr_assert_eq(zl_wloader_open(FIX "llama31.q8_0.gguf", NULL, &wl), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_wloader_get_format(wl), ZL_WLOADER_GGUF);
    cr_assert_eq(zl_wloader_default_dtype(wl), ZL_DTYPE_F16);
    cr_assert(zl_wloader_ops(wl)->has(zl_wloader_ops(wl)->ctx, "model.layers.1.self_attn.k_proj.weight"));
    cr_assert(!zl_wloader_ops(wl)->has(zl_wloader_ops(wl)->ctx, "model.layers.2.self_attn.k_proj.weight"));
    zl_wloader_free(wl);
}

/* A scratch model directory: `config` as config.json and, when `st` is
 * given, a symlink to that safetensors file. */
static const char *scratch(const char *tag, const char *config, const char *st)
{
    static char dir[256];
    snprintf(dir, sizeof dir, "%s/llama-scratch-%s-%d", ZL_TEST_BUILDDIR, tag, (int)getpid());
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(config, f);
    fclose(f);
    if (st) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        unlink(path);
        cr_assert_eq(symlink(st, path), 0);
    }
    return dir;
}

static void scratch_rm(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

#define LLAMA2_CFG(extra) "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4, " \
    "\"vocab_size\": 256, \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-5, " extra "}"

static void expect_error(const char *model, int status, const char *words)
{
    int32_t prompt[2] = {1, 2}, out[2];
    int rc = generate(model, 0, prompt, 2, 2, out);
    cr_assert_eq(rc, status, "%s: status %d (%s), want %d", model, rc, zl_last_error(), status);
    cr_assert(strstr(zl_last_error(), words), "message '%s' lacks '%s'", zl_last_error(), words);
}

Test(wloader, broken_inputs_name_the_file_and_tensor)
{
    expect_error(FIX "no-such-model", ZL_ENOTFOUND, "no-such-model");
    const char *st = ZL_TEST_SRCDIR "/fixtures/llama/llama2/model.safetensors";
    /* a layer the checkpoint lacks */
    const char *d = scratch("missing", LLAMA2_CFG("\"intermediate_size\": 128, \"num_hidden_layers\": 3"), st);
    expect_error(d, ZL_ENOTFOUND, "model.layers.2.input_layernorm.weight");
    scratch_rm(d);
    /* a config that disagrees with the tensor shapes */
    d = scratch("shape", LLAMA2_CFG("\"intermediate_size\": 96, \"num_hidden_layers\": 2"), st);
    expect_error(d, ZL_EINVAL, "model.layers.0.mlp.gate_proj.weight: shape [128, 64]");
    scratch_rm(d);
    /* a truncated safetensors header */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/llama-broken-%d.safetensors", ZL_TEST_BUILDDIR, (int)getpid());
    FILE *f = fopen(bad, "wb");
    cr_assert_not_null(f);
    fwrite("\xff\x00\x00\x00\x00\x00\x00\x00{\"a\":", 1, 13, f);
    fclose(f);
    d = scratch("header", LLAMA2_CFG("\"intermediate_size\": 128, \"num_hidden_layers\": 2"), bad);
    expect_error(d, ZL_EINVAL, "header length 255 runs past the end");
    scratch_rm(d);
    unlink(bad);
    /* a GGUF that is not one */
    expect_error(FIX "llama2/config.json.gguf", ZL_ENOTFOUND, "config.json.gguf");
}

Test(wloader, bad_prompts)
{
    struct zl_simple_params p = zl_simple_default_params();
    p.model_path = FIX "llama2";
    struct zl_simple *e;
    cr_assert_eq(zl_simple_create(&p, &e), ZL_OK, "%s", zl_last_error());
    int32_t big[2] = {1, 256}, out[4], *o = out, len = 2;
    const int32_t *pp = big;
    cr_assert_eq(zl_simple_generate(e, 1, &pp, &len, 2, &o, NULL), ZL_ERANGE);
    cr_assert(strstr(zl_last_error(), "256"), "%s", zl_last_error());
    int32_t *lng = calloc(4097, sizeof *lng);
    len = 4097;
    pp = lng;
    cr_assert_eq(zl_simple_generate(e, 1, &pp, &len, 2, &o, NULL), ZL_ERANGE);
    cr_assert(strstr(zl_last_error(), "max_position_embeddings"), "%s", zl_last_error());
    free(lng);
    len = 0;
    cr_assert_eq(zl_simple_generate(e, 1, &pp, &len, 2, &o, NULL), ZL_EINVAL);
    zl_simple_free(e);
}

/* A prompt longer than one prefill step is chunked; the result must not
 * change (DESIGN §4: chunked prefill gives the same tokens). */
Test(wloader, long_prompt_spans_blocks)
{
    int32_t prompt[300], a[4], b[4];
    for (int i = 0; i < 300; i++)
        prompt[i] = 3 + (i * 37) % 250;
    cr_assert_eq(generate(FIX "llama2", 0, prompt, 300, 4, a), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(generate(FIX "llama2", 0, prompt, 300, 4, b), ZL_OK, "%s", zl_last_error());
    cr_assert_arr_eq(a, b, sizeof a);
}

/* ---- the loader's own contract, over a host "device" ---- */

static int host_copy(int device, void *dst, const void *src, size_t bytes)
{
    (void)device;
    memcpy(dst, src, bytes);
    return ZL_OK;
}

static const struct zl_backend_ops host_be = {.size = sizeof(struct zl_backend_ops),
                                              .copy_to_device = host_copy};

struct opened {
    struct zl_wloader *wl;
    struct zl_mem *mem;
    const struct zl_weight_loader *ops;
};

static void open_bound(const char *path, struct opened *o)
{
    cr_assert_eq(zl_wloader_open(path, NULL, &o->wl), ZL_OK, "%s", zl_last_error());
    struct zl_mem_params mp = zl_mem_default_params();
    mp.reserve_bytes = zl_wloader_weight_bytes(o->wl, ZL_DTYPE_F32) + (1u << 20);
    cr_assert_eq(zl_mem_create(&mp, &o->mem), ZL_OK, "%s", zl_last_error());
    zl_wloader_bind(o->wl, &host_be, 0, o->mem);
    o->ops = zl_wloader_ops(o->wl);
}

static void close_bound(struct opened *o)
{
    zl_wloader_free(o->wl);
    zl_mem_free(o->mem);
}

/* GGUF F16 rows (permuted by the converter) come back in HF order: equal
 * to the bf16 safetensors values (bf16 -> f16 is exact for them). */
Test(wloader, gguf_rows_equal_safetensors_rows)
{
    struct opened st, gg;
    open_bound(FIX "llama31", &st);
    open_bound(FIX "llama31.f16.gguf", &gg);
    static const char *const names[] = {"model.layers.0.self_attn.q_proj.weight",
                                        "model.layers.1.self_attn.k_proj.weight",
                                        "model.layers.1.mlp.down_proj.weight", "model.norm.weight"};
    static const int64_t shapes[][2] = {{64, 64}, {32, 64}, {64, 128}, {64, 0}};
    for (int i = 0; i < 4; i++) {
        struct zl_tensor a, b;
        int nd = shapes[i][1] ? 2 : 1;
        cr_assert_eq(st.ops->load(st.ops->ctx, names[i], ZL_DTYPE_F32, nd, shapes[i], NULL, &a), ZL_OK,
                     "%s", zl_last_error());
        cr_assert_eq(gg.ops->load(gg.ops->ctx, names[i], ZL_DTYPE_F32, nd, shapes[i], NULL, &b), ZL_OK,
                     "%s", zl_last_error());
        cr_assert_str_eq(b.name, names[i]);
        cr_assert_arr_eq(a.data, b.data, zl_tensor_nbytes(&a), "%s differs between formats", names[i]);
    }
    close_bound(&st);
    close_bound(&gg);
}

/* rows = [begin, end) of the outermost dim, for tensor-parallel shards and
 * fused weights; load_into fills a slice of a bigger tensor. */
Test(wloader, row_slices_and_load_into)
{
    struct opened o;
    open_bound(FIX "llama31.f16.gguf", &o);
    const char *name = "model.layers.0.self_attn.k_proj.weight";
    int64_t shape[2] = {32, 64}, rows[2] = {8, 24};
    struct zl_tensor all, part, fused;
    cr_assert_eq(o.ops->load(o.ops->ctx, name, ZL_DTYPE_F32, 2, shape, NULL, &all), ZL_OK);
    cr_assert_eq(o.ops->load(o.ops->ctx, name, ZL_DTYPE_F32, 2, shape, rows, &part), ZL_OK);
    cr_assert_eq(part.ne[0], 16);
    cr_assert_arr_eq(part.data, (float *)all.data + 8 * 64, 16 * 64 * sizeof(float));
    void *buf;
    cr_assert_eq(o.ops->alloc(o.ops->ctx, 48 * 64 * sizeof(float), &buf), ZL_OK);
    int64_t fshape[2] = {48, 64};
    cr_assert_eq(zl_tensor_init(&fused, ZL_DTYPE_F32, 2, fshape, buf, 0), ZL_OK);
    struct zl_tensor view;
    cr_assert_eq(zl_tensor_view(&view, &fused, 0, 16, 32), ZL_OK);
    cr_assert_eq(o.ops->load_into(o.ops->ctx, name, NULL, &view), ZL_OK, "%s", zl_last_error());
    cr_assert_arr_eq(view.data, all.data, 32 * 64 * sizeof(float));
    int64_t bad[2] = {30, 40};
    cr_assert_eq(o.ops->load(o.ops->ctx, name, ZL_DTYPE_F32, 2, shape, bad, &part), ZL_ERANGE);
    cr_assert_eq(o.ops->load(o.ops->ctx, name, ZL_DTYPE_I8, 2, shape, NULL, &part), ZL_EUNSUPPORTED);
    shape[1] = 65;
    cr_assert_eq(o.ops->load(o.ops->ctx, name, ZL_DTYPE_F32, 2, shape, NULL, &part), ZL_EINVAL);
    cr_assert(strstr(zl_last_error(), "shape [32, 64]") && strstr(zl_last_error(), "llama31.f16.gguf"),
              "%s", zl_last_error());
    cr_assert_eq(o.ops->load(o.ops->ctx, "model.layers.9.mlp.up_proj.weight", ZL_DTYPE_F32, 2, shape,
                             NULL, &part), ZL_ENOTFOUND);
    cr_assert(strstr(zl_last_error(), "blk.9.ffn_up.weight"), "%s", zl_last_error());
    close_bound(&o);
}

/* A sharded checkpoint (model.safetensors.index.json): tensors come from
 * either shard; the model then names the first tensor the shards lack. */
Test(wloader, sharded_checkpoint)
{
    const char *dir = ZL_TEST_SRCDIR "/fixtures/weights/sharded";
    struct opened o;
    open_bound(dir, &o);
    int64_t embd[2] = {32, 16}, head[2] = {32, 16};
    struct zl_tensor a, b;
    cr_assert_eq(o.ops->load(o.ops->ctx, "model.embed_tokens.weight", ZL_DTYPE_BF16, 2, embd, NULL, &a),
                 ZL_OK, "%s", zl_last_error());
    cr_assert_eq(o.ops->load(o.ops->ctx, "lm_head.weight", ZL_DTYPE_F32, 2, head, NULL, &b), ZL_OK,
                 "%s", zl_last_error());
    cr_assert(!o.ops->has(o.ops->ctx, "model.layers.0.self_attn.q_proj.weight"));
    close_bound(&o);
    expect_error(dir, ZL_ENOTFOUND, "model.layers.0.self_attn.q_proj.weight");
}
