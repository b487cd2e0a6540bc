/* Model architecture plugins (ZL_PLUGIN_MODEL): registered under each HF
 * `model_type` they handle ("llama", "mistral", "qwen2", ...).
 *
 *   const struct zl_model_ops *mo = zl_registry_find(reg, ZL_PLUGIN_MODEL, hf->model_type);
 *   struct zl_model *m;
 *   mo->create(&params, &m);                 // loads and places the weights
 *   mo->kv_layout(m, &kv);                   // sizes the KV pool
 *   mo->forward(m, &batch, &logits);         // one varlen step
 */
#ifndef ZLIGHT_MODEL_H
#define ZLIGHT_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/backend.h>
#include <zlight/dtype.h>
#include <zlight/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_model;       /* a loaded model; owned by its plugin */
struct zl_hf_config;   /* zlight/hf_config.h: the parsed config.json / GGUF metadata */

/* Weight access the core hands a model while it loads.  Names are HF names
 * ("model.layers.0.self_attn.q_proj.weight") whatever the file format: the
 * core maps GGUF names, dequantizes GGUF block types and undoes GGUF's
 * Q/K row permutation, so models see one view. */
struct zl_weight_loader {
    uint32_t size;          /* sizeof(struct zl_weight_loader) */
    void *ctx;
    /* 1 when the checkpoint has `name`, else 0. */
    int (*has)(void *ctx, const char *name);
    /* Places `name` on the model's device as a contiguous tensor of `dtype`
     * and the expected `shape` (outermost first) in the weights region.
     * ZL_ENOTFOUND: missing tensor; ZL_EINVAL: shape mismatch ("...: shape
     * [512, 128] in FILE, expected [1536, 128]"); messages name the tensor
     * and the file.  `rows` selects a slice of the outermost dim (tensor
     * parallel shards, fused QKV pieces): NULL = all rows. */
    int (*load)(void *ctx, const char *name, enum zl_dtype dtype, int n_dims,
                const int64_t *shape, const int64_t rows[2], struct zl_tensor *out);
    /* Raw weights-region memory for tensors the model builds itself (e.g.
     * concatenated QKV): `bytes` on the device, aligned for any dtype. */
    int (*alloc)(void *ctx, size_t bytes, void **out);
    /* Loads `name` into an existing device tensor (a view into a fused
     * weight): same checks as load, no allocation. */
    int (*load_into)(void *ctx, const char *name, const int64_t rows[2], struct zl_tensor *dst);
};

struct zl_model_params {
    uint32_t size;                          /* sizeof(struct zl_model_params) */
    const struct zl_hf_config *config;
    const struct zl_backend_ops *backend;
    struct zl_bctx *bctx;                   /* instance on `device` */
    int32_t device;
    enum zl_dtype dtype;                    /* weights and activations on the device */
    const struct zl_weight_loader *weights;
    int32_t tp_rank, tp_size;               /* tensor parallel position; 0, 1 */
};

/* KV cache shape a model needs (per token). */
struct zl_kv_layout {
    int32_t n_layers;
    int32_t n_kv_heads;
    int32_t head_dim;
    enum zl_dtype dtype;
    size_t bytes_per_token;                 /* all layers, K and V */
};

/* One forward step over a varlen batch (prefill chunks and decodes mixed). */
struct zl_forward_batch {
    int32_t n_tokens;
    const int32_t *tokens;                  /* [n_tokens] host */
    const int32_t *positions;               /* [n_tokens] host */
    struct zl_attn_batch attn;              /* sequences, block tables, slots */
    const struct zl_kv_cache *cache;
    int32_t n_logits;
    const int32_t *logits_rows;             /* [n_logits] rows of the batch to score */
    void *workspace;                        /* device scratch of workspace_bytes(n_tokens) */
    size_t workspace_bytes;
    /* API minor 9, read only by a model with ZL_MODEL_TOKENS_FROM: NULL, or
     * [n_tokens] where from[i] >= 0 means that row's token is not known on
     * the host yet (tokens[i] is -1): it is what the sample batch queued
     * last picked for its row from[i] (backend.h upload_tokens). */
    const int32_t *token_from;
};

/* zl_model_ops.flags */
#define ZL_MODEL_TOKENS_FROM 1u     /* forward honours zl_forward_batch.token_from */

struct zl_model_ops {
    uint32_t size;                          /* sizeof(struct zl_model_ops) */
    const char *description;
    /* Validates the config, loads and places the weights.  Errors name the
     * config key or tensor.  *out only on success. */
    int (*create)(const struct zl_model_params *p, struct zl_model **out);
    void (*destroy)(struct zl_model *m);    /* NULL-safe, also half-built */
    int (*kv_layout)(const struct zl_model *m, struct zl_kv_layout *out);
    /* Device scratch a step of up to max_tokens tokens and max_logits
     * logits rows needs. */
    size_t (*workspace_bytes)(const struct zl_model *m, int32_t max_tokens, int32_t max_logits);
    /* logits: f32 [n_logits, vocab] on the device, caller-owned.  A decode
     * step may be run up to three times with the same arguments inside a
     * device-graph bracket (backend.h graph_begin): the forward must only
     * copy its inputs in (copy_to_device) and queue backend ops, the same
     * ones for the same batch, and never wait for or read back results. */
    int (*forward)(struct zl_model *m, const struct zl_forward_batch *b, struct zl_tensor *logits);
    int32_t (*vocab_size)(const struct zl_model *m);
    /* ---- API minor 9 ---- */
    uint32_t flags;                         /* ZL_MODEL_* */
};

/* True when the table `mo` was built with member `m` (as ZL_BACKEND_HAS). */
#define ZL_MODEL_HAS(mo, m) ((mo)->size >= offsetof(struct zl_model_ops, m) + sizeof((mo)->m))

#ifdef __cplusplus
}
#endif
#endif
