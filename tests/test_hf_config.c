/* HF config.json / generation_config.json and GGUF metadata ->
 * struct zl_hf_config: real-style configs of each family, defaults, and
 * clear errors naming the file and the key. */
#include <math.h>

#include <zlight/gguf.h>
#include <zlight/hf_config.h>

#include "test_weights.h"

static struct zl_hf_config load(const char *path)
{
    struct zl_hf_config c;
    cr_assert_eq(zl_hf_config_load(path, &c), ZL_OK, "%s", zl_last_error());
    return c;
}

Test(hf_config, llama31_directory)
{
    struct zl_hf_config c = load(FIX "/sharded");
    cr_assert_str_eq(c.model_type, "llama");
    cr_assert_str_eq(c.architecture, "LlamaForCausalLM");
    cr_assert_eq(c.hidden_size, 16);
    cr_assert_eq(c.intermediate_size, 48);
    cr_assert_eq(c.num_hidden_layers, 2);
    cr_assert_eq(c.num_attention_heads, 4);
    cr_assert_eq(c.num_key_value_heads, 2);
    cr_assert_eq(c.head_dim, 4);
    cr_assert_eq(c.rope_dim, 4);
    cr_assert_eq(c.vocab_size, 32);
    cr_assert_eq(c.max_position_embeddings, 131072);
    cr_assert_eq(c.rms_norm_eps, 1e-5);
    cr_assert_eq(c.rope_theta, 500000.0);
    cr_assert_eq(c.rope_scaling.type, ZL_ROPE_SCALING_LLAMA3);
    cr_assert_str_eq(c.rope_scaling.name, "llama3");
    cr_assert_eq(c.rope_scaling.factor, 8.0);
    cr_assert_eq(c.rope_scaling.low_freq_factor, 1.0);
    cr_assert_eq(c.rope_scaling.high_freq_factor, 4.0);
    cr_assert_eq(c.rope_scaling.original_max_position_embeddings, 8192);
    cr_assert_eq(c.tie_word_embeddings, 0);
    cr_assert_eq(c.attention_bias, 0);
    cr_assert_str_eq(c.hidden_act, "silu");
    cr_assert_str_eq(c.torch_dtype, "bfloat16");
    cr_assert_eq(c.n_bos, 1);
    cr_assert_eq(c.bos_token_id[0], 1);
    cr_assert_eq(c.n_eos, 3);
    cr_assert(c.eos_token_id[0] == 2 && c.eos_token_id[1] == 3 && c.eos_token_id[2] == 4);
    cr_assert_str_eq(c.quant_method, "");
    cr_assert_eq(c.sliding_window, 0);
    cr_assert_str_eq(zl_rope_scaling_name(c.rope_scaling.type), "llama3");
}

Test(hf_config, generation_config)
{
    struct zl_hf_generation_config g;
    cr_assert_eq(zl_hf_generation_config_load(FIX "/sharded", &g), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(g.n_eos, 2);
    cr_assert(g.eos_token_id[0] == 2 && g.eos_token_id[1] == 3);
    cr_assert_eq(g.bos_token_id, 1);
    cr_assert_eq(g.pad_token_id, 0);
    cr_assert_eq(g.temperature, 0.6);
    cr_assert_eq(g.top_p, 0.9);
    cr_assert_eq(g.top_k, 20);
    cr_assert_eq(g.repetition_penalty, 1.1);
    cr_assert_eq(g.max_new_tokens, 256);
    cr_assert_eq(g.do_sample, 1);
    const char *j = "{\"eos_token_id\": 7}";
    cr_assert_eq(zl_hf_generation_config_parse(j, strlen(j), "g.json", &g), ZL_OK);
    cr_assert(g.n_eos == 1 && g.eos_token_id[0] == 7);
    cr_assert(g.temperature == 1.0 && g.top_k == 50 && g.bos_token_id == -1 && g.max_new_tokens == -1);
    tw_assert_err(zl_hf_generation_config_load(FIX "/configs", &g), ZL_ENOTFOUND, "generation_config.json");
    j = "{\"top_k\": \"many\"}";
    tw_assert_err(zl_hf_generation_config_parse(j, strlen(j), "g.json", &g), ZL_EINVAL, "g.json",
                  "key 'top_k' must be an integer, got string");
    j = "{\"eos_token_id\": [1, \"x\"]}";
    tw_assert_err(zl_hf_generation_config_parse(j, strlen(j), "g.json", &g), ZL_EINVAL, "g.json",
                  "'eos_token_id'");
}

Test(hf_config, mistral_qwen2_mixtral_deepseek)
{
    struct zl_hf_config c = load(FIX "/configs/mistral.json");
    cr_assert_eq(c.head_dim, 128);      /* explicit, not 4096 / 32 */
    cr_assert_eq(c.num_key_value_heads, 8);
    cr_assert_eq(c.sliding_window, 0);  /* null */
    cr_assert_eq(c.n_eos, 1);
    c = load(FIX "/configs/qwen2.json");
    cr_assert_eq(c.tie_word_embeddings, 1);
    cr_assert_eq(c.attention_bias, 1);  /* implied by qwen2 */
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.rms_norm_eps, 1e-6);
    cr_assert_eq(c.rope_scaling.type, ZL_ROPE_SCALING_NONE);
    cr_assert_eq(c.sliding_window, 32768);
    cr_assert_eq(c.eos_token_id[0], 151645);
    c = load(FIX "/configs/mixtral.json");
    cr_assert_eq(c.num_local_experts, 8);
    cr_assert_eq(c.num_experts_per_tok, 2);
    cr_assert_str_eq(c.quant_method, "gptq");
    c = load(FIX "/configs/deepseek_v2.json");
    cr_assert_str_eq(c.model_type, "deepseek_v2");
    cr_assert_eq(c.n_routed_experts, 64);
    cr_assert_eq(c.n_shared_experts, 2);
    cr_assert_eq(c.num_experts_per_tok, 6);
    cr_assert_eq(c.moe_intermediate_size, 1408);
    cr_assert_eq(c.first_k_dense_replace, 1);
    cr_assert_eq(c.kv_lora_rank, 512);
    cr_assert_eq(c.q_lora_rank, 0);     /* null */
    cr_assert_eq(c.qk_nope_head_dim, 128);
    cr_assert_eq(c.qk_rope_head_dim, 64);
    cr_assert_eq(c.v_head_dim, 128);
    cr_assert_str_eq(c.topk_method, "greedy");
    cr_assert_str_eq(c.scoring_func, "softmax");
    cr_assert_eq(c.rope_theta, 10000.0);    /* integer in the file */
    cr_assert_eq(c.rope_scaling.type, ZL_ROPE_SCALING_YARN);
    cr_assert_eq(c.rope_scaling.factor, 40.0);
    cr_assert_eq(c.rope_scaling.beta_fast, 32.0);
    cr_assert_eq(c.rope_scaling.beta_slow, 1.0);
    cr_assert_eq(c.rope_scaling.mscale, 0.707);
    cr_assert_eq(c.rope_scaling.mscale_all_dim, 0.707);
    cr_assert_eq(c.rope_scaling.original_max_position_embeddings, 4096);
}

static int parse(const char *json, struct zl_hf_config *c)
{
    return zl_hf_config_parse(json, strlen(json), "cfg.json", c);
}

#define BASE "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 10"

Test(hf_config, defaults_and_errors)
{
    struct zl_hf_config c;
    cr_assert_eq(parse("{" BASE "}", &c), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(c.num_key_value_heads, 4);
    cr_assert_eq(c.head_dim, 16);
    cr_assert_eq(c.rms_norm_eps, 1e-6);
    cr_assert_eq(c.rope_theta, 10000.0);
    cr_assert_eq(c.max_position_embeddings, 2048);
    cr_assert_eq(c.n_eos, 0);
    cr_assert_eq(parse("{" BASE ", \"hidden_size\": 64.0, \"future_key\": {\"x\": [1]}}", &c), ZL_OK);
    cr_assert_eq(parse("{" BASE ", \"partial_rotary_factor\": 0.5}", &c), ZL_OK);
    cr_assert_eq(c.rope_dim, 8);
    cr_assert_eq(parse("{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}", &c), ZL_OK);
    cr_assert_eq(c.rope_scaling.type, ZL_ROPE_SCALING_LINEAR);
    cr_assert_eq(parse("{" BASE ", \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.5}}", &c), ZL_OK);
    cr_assert_eq(c.rope_scaling.type, ZL_ROPE_SCALING_DYNAMIC);
    cr_assert_eq(parse("{" BASE ", \"rope_scaling\": {\"rope_type\": \"default\"}}", &c), ZL_OK);
    cr_assert_eq(c.rope_scaling.type, ZL_ROPE_SCALING_NONE);
    cr_assert_eq(parse("{" BASE ", \"rope_scaling\": {\"rope_type\": \"mrope\", \"factor\": 1}}", &c), ZL_OK);
    cr_assert_eq(c.rope_scaling.type, ZL_ROPE_SCALING_OTHER);
    cr_assert_str_eq(c.rope_scaling.name, "mrope");

    tw_assert_err(parse("{" BASE ", \"hidden_size\": \"64\"}", &c), ZL_EINVAL, "cfg.json",
                  "key 'hidden_size' must be an integer, got string");
    tw_assert_err(parse("{\"hidden_size\": \"64\"}", &c), ZL_EINVAL, "key 'hidden_size'");
    tw_assert_err(parse("{" BASE ", \"hidden_size\": 64.5}", &c), ZL_EINVAL, "'hidden_size'", "integer");
    tw_assert_err(parse("{" BASE ", \"rms_norm_eps\": \"1e-5\"}", &c), ZL_EINVAL, "'rms_norm_eps'", "number");
    tw_assert_err(parse("{" BASE ", \"tie_word_embeddings\": 1}", &c), ZL_EINVAL, "'tie_word_embeddings'",
                  "boolean, got integer");
    tw_assert_err(parse("{" BASE ", \"model_type\": 3}", &c), ZL_EINVAL, "'model_type'", "string");
    tw_assert_err(parse("{" BASE ", \"architectures\": \"Llama\"}", &c), ZL_EINVAL, "'architectures'");
    tw_assert_err(parse("{" BASE ", \"eos_token_id\": [1, 2.5]}", &c), ZL_EINVAL, "'eos_token_id'");
    tw_assert_err(parse("{" BASE ", \"rope_scaling\": 2}", &c), ZL_EINVAL, "'rope_scaling'", "object");
    tw_assert_err(parse("{" BASE ", \"rope_scaling\": {\"factor\": 2}}", &c), ZL_EINVAL, "rope_scaling.type");
    tw_assert_err(parse("{" BASE ", \"rope_scaling\": {\"type\": \"yarn\"}}", &c), ZL_EINVAL,
                  "rope_scaling.factor");
    tw_assert_err(parse("{" BASE ", \"quantization_config\": {\"quant_method\": 4}}", &c), ZL_EINVAL,
                  "quant_method");
    tw_assert_err(parse("{" BASE ", \"num_key_value_heads\": 3}", &c), ZL_EINVAL, "'num_key_value_heads'");
    tw_assert_err(parse("{" BASE ", \"hidden_size\": 66}", &c), ZL_EINVAL, "head_dim");
    tw_assert_err(parse("{\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 10}", &c),
                  ZL_EINVAL, "cfg.json", "'hidden_size' is missing");
    tw_assert_err(parse("{" BASE ", \"sliding_window\": -1}", &c), ZL_EINVAL, "'sliding_window'");
    tw_assert_err(parse("{" BASE, &c), ZL_EINVAL, "cfg.json", "invalid JSON");
    tw_assert_err(parse("[]", &c), ZL_EINVAL, "cfg.json", "not a JSON object");
    tw_assert_err(zl_hf_config_load(FIX "/absent", &c), ZL_ENOTFOUND, "absent");
    tw_assert_err(zl_hf_config_load(FIX "/configs", &c), ZL_ENOTFOUND, "configs/config.json");
}

Test(hf_config, from_gguf)
{
    struct zl_gguf *g;
    cr_assert_eq(zl_gguf_open(FIX "/tiny.gguf", &g), ZL_OK, "%s", zl_last_error());
    struct zl_hf_config c;
    cr_assert_eq(zl_hf_config_from_gguf(g, &c), ZL_OK, "%s", zl_last_error());
    cr_assert_str_eq(c.model_type, "llama");
    cr_assert_eq(c.hidden_size, 64);
    cr_assert_eq(c.num_hidden_layers, 2);
    cr_assert_eq(c.intermediate_size, 192);
    cr_assert_eq(c.num_attention_heads, 4);
    cr_assert_eq(c.num_key_value_heads, 2);
    cr_assert_eq(c.head_dim, 16);
    cr_assert_eq(c.rope_dim, 16);
    cr_assert_eq(c.rms_norm_eps, (double)1e-5f);
    cr_assert_eq(c.rope_theta, 500000.0);
    cr_assert_eq(c.max_position_embeddings, 256);
    cr_assert_eq(c.vocab_size, 5);
    cr_assert_eq(c.tie_word_embeddings, 1);     /* no output.weight */
    cr_assert(c.n_bos == 1 && c.bos_token_id[0] == 0);
    cr_assert(c.n_eos == 1 && c.eos_token_id[0] == 1);
    zl_gguf_close(g);
}

Test(hf_config, from_gguf_errors)
{
    struct tw_buf b = {0};
    struct zl_gguf *g;
    struct zl_hf_config c;
    /* llama.block_count as a string */
    tw_gguf_header(&b, 3, 0, 2);
    tw_str(&b, "general.architecture");
    tw_u32(&b, ZL_GGUF_TYPE_STRING);
    tw_str(&b, "llama");
    tw_str(&b, "llama.block_count");
    tw_u32(&b, ZL_GGUF_TYPE_STRING);
    tw_str(&b, "two");
    cr_assert_eq(zl_gguf_parse_buffer(b.p, b.n, "m.gguf", &g), ZL_OK, "%s", zl_last_error());
    tw_assert_err(zl_hf_config_from_gguf(g, &c), ZL_EINVAL, "m.gguf",
                  "key 'llama.block_count' must be an integer, got string");
    zl_gguf_close(g);
    /* no architecture */
    b.n = 0;
    tw_gguf_header(&b, 3, 0, 0);
    cr_assert_eq(zl_gguf_parse_buffer(b.p, b.n, "m.gguf", &g), ZL_OK);
    tw_assert_err(zl_hf_config_from_gguf(g, &c), ZL_EINVAL, "m.gguf", "general.architecture");
    zl_gguf_close(g);
    /* architecture only: required keys missing */
    b.n = 0;
    tw_gguf_header(&b, 3, 0, 1);
    tw_str(&b, "general.architecture");
    tw_u32(&b, ZL_GGUF_TYPE_STRING);
    tw_str(&b, "qwen2");
    cr_assert_eq(zl_gguf_parse_buffer(b.p, b.n, "m.gguf", &g), ZL_OK);
    tw_assert_err(zl_hf_config_from_gguf(g, &c), ZL_EINVAL, "m.gguf", "missing");
    zl_gguf_close(g);
    free(b.p);
}

/* transformers 5.x writes rope_theta and the scaling inside "rope_parameters". */
Test(hf_config, transformers5_rope_parameters)
{
    char path[512];
    snprintf(path, sizeof path, "%s/hf5-config-%d.json", ZL_TEST_BUILDDIR, (int)getpid());
    static const char base[] = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100, ";
    char js[1024];
    snprintf(js, sizeof js, "%s\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}}", base);
    tw_write(path, js, strlen(js));
    struct zl_hf_config c = load(path);
    cr_expect_eq(c.rope_theta, 500000.0);
    cr_expect_eq(c.rope_scaling.type, ZL_ROPE_SCALING_NONE);
    snprintf(js, sizeof js, "%s\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0,"
             " \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
             " \"original_max_position_embeddings\": 8192}}", base);
    tw_write(path, js, strlen(js));
    c = load(path);
    cr_expect_eq(c.rope_theta, 500000.0);
    cr_expect_eq(c.rope_scaling.type, ZL_ROPE_SCALING_LLAMA3);
    cr_expect_eq(c.rope_scaling.factor, 8.0);
    cr_expect_eq(c.rope_scaling.original_max_position_embeddings, 8192);
    /* a top-level rope_theta (4.x) wins; a bad value names the key */
    snprintf(js, sizeof js, "%s\"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_theta\": 5.0}}", base);
    tw_write(path, js, strlen(js));
    c = load(path);
    cr_expect_eq(c.rope_theta, 10000.0);
    snprintf(js, sizeof js, "%s\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": \"x\"}}", base);
    tw_write(path, js, strlen(js));
    struct zl_hf_config bad;
    cr_expect_eq(zl_hf_config_load(path, &bad), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "rope_parameters.rope_theta") != NULL, "%s", zl_last_error());
    unlink(path);
}
