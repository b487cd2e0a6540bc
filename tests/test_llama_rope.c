/* The llama plugin's config checks and RoPE inverse frequencies, against
 * transformers' modeling_rope_utils (fixtures/llama/rope.json, written by
 * gen_llama_fixtures.py from ROPE_INIT_FUNCTIONS itself).  The plugin's
 * sources are compiled into this test with a host table over libzlight. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/hf_config.h>
#include <zlight/log.h>
#include <zlight/plugin.h>
#include <zlight/status.h>

#include "llama-impl.h"

static struct zl_host test_host;

static void setup(void)
{
    test_host.size = sizeof test_host;
    test_host.error = zl_error;
    test_host.log = zl_log;
    llama_host = &test_host;
}

TestSuite(llama_rope, .init = setup);
TestSuite(llama_config, .init = setup);

static void config_of(json_t *cfg, struct zl_hf_config *c)
{
    char *text = json_dumps(cfg, 0);
    cr_assert_eq(zl_hf_config_parse(text, strlen(text), "rope.json", c), ZL_OK, "%s", zl_last_error());
    free(text);
}

/* f32 math on both sides, same formulas: a few ulp at most (powf vs
 * torch's pow, fused multiply-adds). */
Test(llama_rope, every_scaling_type_matches_transformers)
{
    json_error_t err;
    json_t *root = json_load_file(ZL_TEST_SRCDIR "/fixtures/llama/rope.json", 0, &err);
    cr_assert_not_null(root, "rope.json: %s", err.text);
    cr_assert(json_array_size(root) >= 8);
    size_t i;
    json_t *cs;
    json_array_foreach(root, i, cs) {
        const char *name = json_string_value(json_object_get(cs, "name"));
        struct zl_hf_config c;
        config_of(json_object_get(cs, "config"), &c);
        strcpy(c.model_type, "llama");
        c.intermediate_size = 1;
        c.vocab_size = 8;
        c.num_hidden_layers = 1;
        struct llama_hparams hp;
        cr_assert_eq(llama_hparams_from_config(&c, &hp), ZL_OK, "%s: %s", name, zl_last_error());
        float inv[LLAMA_MAX_ROT / 2], af;
        int64_t maxp = json_integer_value(json_object_get(cs, "max_pos_in_batch"));
        cr_assert_eq(llama_rope_inv_freq(&hp, maxp, inv, &af), ZL_OK, "%s", name);
        json_t *want = json_object_get(cs, "inv_freq");
        cr_assert_eq((int)json_array_size(want), hp.rot_dim / 2, "%s", name);
        for (int k = 0; k < hp.rot_dim / 2; k++) {
            double w = json_number_value(json_array_get(want, (size_t)k));
            cr_assert(fabs(inv[k] - w) <= 4e-6 * fabs(w) + 1e-30, "%s: inv_freq[%d] = %.9g, transformers %.9g",
                      name, k, inv[k], w);
        }
        double waf = json_number_value(json_object_get(cs, "attention_factor"));
        cr_assert(fabs(af - waf) < 1e-6, "%s: attention factor %g, transformers %g", name, af, waf);
    }
    json_decref(root);
}

static int try_config(const char *json)
{
    struct zl_hf_config c;
    int rc = zl_hf_config_parse(json, strlen(json), "test", &c);
    if (rc < 0)
        return rc; /* the core's parser already refuses some; either check names the key */
    struct llama_hparams hp;
    return llama_hparams_from_config(&c, &hp);
}

#define BASE "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, " \
             "\"vocab_size\": 256, "

Test(llama_config, accepts_llama_mistral_qwen2)
{
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4}"), ZL_OK);
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"mistral\", \"num_attention_heads\": 4, "
                            "\"num_key_value_heads\": 1, \"head_dim\": 24}"), ZL_OK);
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"qwen2\", \"num_attention_heads\": 4}"), ZL_OK);
}

Test(llama_config, qwen2_biases_qkv_only_llama_bias_flag_all)
{
    struct zl_hf_config c;
    struct llama_hparams hp;
    const char *q = "{" BASE "\"model_type\": \"qwen2\", \"num_attention_heads\": 4}";
    cr_assert_eq(zl_hf_config_parse(q, strlen(q), "t", &c), ZL_OK);
    cr_assert_eq(llama_hparams_from_config(&c, &hp), ZL_OK);
    cr_assert(hp.qkv_bias && !hp.o_bias && !hp.mlp_bias);
    const char *l = "{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, "
                    "\"attention_bias\": true, \"mlp_bias\": true}";
    cr_assert_eq(zl_hf_config_parse(l, strlen(l), "t", &c), ZL_OK);
    cr_assert_eq(llama_hparams_from_config(&c, &hp), ZL_OK);
    cr_assert(hp.qkv_bias && hp.o_bias && hp.mlp_bias);
}

Test(llama_config, refuses_bad_configs_with_the_key)
{
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"gpt2\", \"num_attention_heads\": 4}"), ZL_EINVAL);
    cr_assert(strstr(zl_last_error(), "gpt2"), "%s", zl_last_error());
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, "
                            "\"num_key_value_heads\": 3}"), ZL_EINVAL);
    cr_assert(strstr(zl_last_error(), "num_key_value_heads"), "%s", zl_last_error());
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, "
                            "\"hidden_act\": \"gelu\"}"), ZL_EUNSUPPORTED);
    cr_assert(strstr(zl_last_error(), "hidden_act"), "%s", zl_last_error());
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, "
                            "\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2.0}}"),
                 ZL_EUNSUPPORTED);
    cr_assert(strstr(zl_last_error(), "longrope"), "%s", zl_last_error());
    cr_assert_eq(try_config("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, "
                            "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}"),
                 ZL_EINVAL);
    cr_assert(strstr(zl_last_error(), "llama3"), "%s", zl_last_error());
}
