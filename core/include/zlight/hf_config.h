/* Model hyper-parameters from a Hugging Face config.json (or GGUF metadata)
 * and sampling defaults from generation_config.json.
 *
 *   struct zl_hf_config c;
 *   if (zl_hf_config_load("/models/llama/config.json", &c) < 0) die(zl_last_error());
 *   printf("%s: %lld layers, %lld kv heads\n", c.model_type,
 *          (long long)c.num_hidden_layers, (long long)c.num_key_value_heads);
 */
#ifndef ZLIGHT_HF_CONFIG_H
#define ZLIGHT_HF_CONFIG_H

#include <stdint.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_gguf;

#define ZL_HF_MAX_TOKEN_IDS 8

enum zl_rope_scaling_type {
    ZL_ROPE_SCALING_NONE = 0,   /* absent, null or "default" */
    ZL_ROPE_SCALING_LINEAR = 1,
    ZL_ROPE_SCALING_DYNAMIC = 2,
    ZL_ROPE_SCALING_LLAMA3 = 3,
    ZL_ROPE_SCALING_YARN = 4,
    ZL_ROPE_SCALING_LONGROPE = 5,
    ZL_ROPE_SCALING_OTHER = 6,  /* another name, kept in `name` */
};

/* rope_scaling; fields absent from the file are 0. */
struct zl_rope_scaling {
    enum zl_rope_scaling_type type;
    char name[32];                      /* "type" or "rope_type" as written */
    double factor;
    double low_freq_factor, high_freq_factor;           /* llama3 */
    int64_t original_max_position_embeddings;           /* llama3, yarn, dynamic */
    double beta_fast, beta_slow, mscale, mscale_all_dim; /* yarn (DeepSeek-V2) */
    double attention_factor;                            /* yarn */
};

/* Integer fields absent from the file are 0 unless a default is noted. */
struct zl_hf_config {
    char model_type[64];                /* "llama", "mistral", "qwen2", "mixtral", "deepseek_v2" */
    char architecture[128];             /* architectures[0], "" when absent */
    int64_t hidden_size;                /* required */
    int64_t intermediate_size;
    int64_t num_hidden_layers;          /* required */
    int64_t num_attention_heads;        /* required */
    int64_t num_key_value_heads;        /* default num_attention_heads */
    int64_t head_dim;                   /* default hidden_size / num_attention_heads */
    int64_t rope_dim;                   /* rotated dims per head: head_dim * partial_rotary_factor, GGUF rope.dimension_count */
    int64_t vocab_size;                 /* required */
    int64_t max_position_embeddings;    /* default 2048 */
    double rms_norm_eps;                /* default 1e-6 */
    double rope_theta;                  /* default 10000 */
    struct zl_rope_scaling rope_scaling;
    int32_t tie_word_embeddings;        /* default 0 */
    int32_t attention_bias;             /* default 0; 1 for model_type qwen2 */
    int32_t mlp_bias;                   /* default 0 */
    char hidden_act[32];                /* default "silu" */
    char torch_dtype[16];               /* "bfloat16", ...; "" when absent */
    int32_t n_bos, n_eos;               /* ids listed (int or list in the file) */
    int64_t bos_token_id[ZL_HF_MAX_TOKEN_IDS];
    int64_t eos_token_id[ZL_HF_MAX_TOKEN_IDS];
    char quant_method[32];              /* quantization_config.quant_method, "" when absent */
    int64_t sliding_window;             /* 0: none (absent or null) */
    /* Mixture of experts (Mixtral, DeepSeek-V2) */
    int64_t num_local_experts;          /* Mixtral */
    int64_t num_experts_per_tok;
    int64_t n_routed_experts, n_shared_experts;         /* DeepSeek-V2 */
    int64_t moe_intermediate_size;
    int64_t first_k_dense_replace;
    int64_t moe_layer_freq;             /* default 1 */
    int64_t n_group, topk_group;
    double routed_scaling_factor;       /* default 1 */
    int32_t norm_topk_prob;
    char topk_method[32];
    char scoring_func[32];
    /* Multi-head latent attention (DeepSeek-V2) */
    int64_t kv_lora_rank, q_lora_rank;  /* q_lora_rank 0: no q compression */
    int64_t qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
};

struct zl_hf_generation_config {
    int32_t n_eos;
    int64_t eos_token_id[ZL_HF_MAX_TOKEN_IDS];
    int64_t bos_token_id;               /* -1 when absent */
    int64_t pad_token_id;               /* -1 when absent */
    double temperature;                 /* default 1 */
    double top_p;                       /* default 1 */
    int64_t top_k;                      /* default 50 */
    double repetition_penalty;          /* default 1 */
    int64_t max_new_tokens;             /* -1 when absent */
    int32_t do_sample;                  /* default 0 */
};

/* Parses config.json at `path` (a file, or a directory holding one) into
 * *out.  Unknown keys are ignored; null counts as absent.  ZL_ENOTFOUND /
 * ZL_EIO when unreadable, ZL_EINVAL for invalid JSON, a missing required
 * key, a key of the wrong type or an inconsistent value (message names the
 * file and the key).  *out is fully written either way. */
ZL_API int zl_hf_config_load(const char *path, struct zl_hf_config *out);

/* Same from a JSON text in memory; `name` is used in messages. */
ZL_API int zl_hf_config_parse(const char *json, size_t len, const char *name,
                              struct zl_hf_config *out);

/* Fills *out from GGUF metadata (general.architecture, then
 * <arch>.embedding_length, .block_count, .feed_forward_length,
 * .attention.head_count[_kv], .attention.layer_norm_rms_epsilon,
 * .rope.freq_base, .context_length, .rope.dimension_count, the MoE/MLA keys,
 * tokenizer.ggml.tokens for the vocabulary, and tie_word_embeddings = no
 * output.weight tensor).  ZL_EINVAL naming the file and key on a missing
 * required key or a wrong type. */
ZL_API int zl_hf_config_from_gguf(const struct zl_gguf *g, struct zl_hf_config *out);

/* Parses generation_config.json (a file, or a directory holding one).
 * ZL_ENOTFOUND when absent (callers usually keep the defaults then, which
 * *out holds in every case), ZL_EINVAL as for config.json. */
ZL_API int zl_hf_generation_config_load(const char *path, struct zl_hf_generation_config *out);
ZL_API int zl_hf_generation_config_parse(const char *json, size_t len, const char *name,
                                         struct zl_hf_generation_config *out);

/* Name of a rope scaling type ("none", "linear", ...). */
ZL_API const char *zl_rope_scaling_name(enum zl_rope_scaling_type t);

#ifdef __cplusplus
}
#endif
#endif
