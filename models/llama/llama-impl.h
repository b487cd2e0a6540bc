/* Internals of the llama model plugin (Llama 1/2/3.x, Mistral, Qwen2), shared
 * by its files; not installed.
 *
 *   struct llama_hparams hp;  llama_hparams_from_config(cfg, &hp);
 *   float inv[256];  float attn;  llama_rope_inv_freq(&hp, 0, inv, &attn);
 *   llama_load_weights(m, p->weights);        // every tensor through the loader
 *   llama_forward(m, batch, logits);          // backend ops only
 */
#ifndef ZL_LLAMA_IMPL_H
#define ZL_LLAMA_IMPL_H

#include <stdint.h>

#include <zlight/backend.h>
#include <zlight/hf_config.h>
#include <zlight/model.h>
#include <zlight/plugin.h>

/* The host table given to init(); errors and logs go through it. */
extern const struct zl_host *llama_host;

#define LLAMA_MAX_ROT 1024 /* rotated dims per head we accept */

/* What the forward needs from config.json, validated once. */
struct llama_hparams {
    int32_t n_embd, n_ff, n_layer, n_head, n_kv_head, head_dim, rot_dim;
    int32_t n_vocab, max_pos;
    float eps;
    double rope_theta;
    struct zl_rope_scaling rs;
    int tied, qkv_bias, o_bias, mlp_bias;
};

/* Q, K and V (and gate and up) are concatenated by rows at load, so each
 * pair or triple is one GEMM per step reading the activations once. */
struct llama_layer {
    struct zl_tensor attn_norm;     /* [n_embd] */
    struct zl_tensor wqkv;          /* [(n_head + 2 n_kv_head) * head_dim, n_embd]: q, k, v rows */
    struct zl_tensor bqkv;          /* [rows of wqkv]; data NULL without bias */
    struct zl_tensor wo;            /* [n_embd, n_head * head_dim] */
    struct zl_tensor bo;            /* [n_embd]; data NULL without bias */
    struct zl_tensor ffn_norm;      /* [n_embd] */
    struct zl_tensor w_gu;          /* [2 n_ff, n_embd]: gate rows, then up rows */
    struct zl_tensor b_gu;          /* [2 n_ff]; mlp_bias only */
    struct zl_tensor w_down;        /* [n_embd, n_ff] */
    struct zl_tensor b_down;        /* [n_embd]; mlp_bias only */
};

struct zl_model {
    struct llama_hparams hp;
    const struct zl_backend_ops *be;
    struct zl_bctx *bctx;
    int32_t device;
    enum zl_dtype wdtype;           /* weights on the device */
    enum zl_dtype adtype;           /* activations: wdtype when the backend takes it, else f32 */
    struct zl_tensor tok_embd;      /* [n_vocab, n_embd] */
    struct zl_tensor out_norm;      /* [n_embd] */
    struct zl_tensor lm_head;       /* [n_vocab, n_embd]; tok_embd when tied */
    struct llama_layer *layers;     /* [n_layer] */
    float inv_freq[LLAMA_MAX_ROT / 2]; /* [rot_dim / 2] for positions < max_pos */
    float attn_factor;
    float *freq_factors;            /* [rot_dim / 2] GGUF rope_freqs.weight divisors, or NULL */
    struct zl_decoder_layer *dec;   /* [n_layer] views for decoder_layers, made on first use */
    int dec_none;                   /* biases: decoder_layers never takes this model */
};

/* Checks and copies the config (model_type, sizes, flags); ZL_EINVAL naming the key. */
int llama_hparams_from_config(const struct zl_hf_config *c, struct llama_hparams *hp);

/* Inverse frequencies [rot_dim / 2] and the cos/sin factor for a step whose
 * largest position is max_pos_in_batch (only dynamic NTK depends on it),
 * following transformers' modeling_rope_utils for every scaling type.
 * ZL_EUNSUPPORTED for longrope and unknown types. */
int llama_rope_inv_freq(const struct llama_hparams *hp, int64_t max_pos_in_batch, float *inv_freq,
                        float *attn_factor);

int llama_load_weights(struct zl_model *m, const struct zl_weight_loader *wl);

size_t llama_workspace_bytes(const struct zl_model *m, int32_t max_tokens, int32_t max_logits);
int llama_forward(struct zl_model *m, const struct zl_forward_batch *b, struct zl_tensor *logits);

#endif
