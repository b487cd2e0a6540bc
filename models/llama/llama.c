/* The llama model plugin: registers model types "llama", "mistral" and
 * "qwen2" (GGUF general.architecture "llama" maps to "llama").  One decoder
 * covers them: RMSNorm, rotary attention (MHA/GQA/MQA, optional qkv/o bias),
 * SwiGLU MLP (optional bias), optionally tied lm_head. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "llama-impl.h"

const struct zl_host *llama_host;

static int bad_key(const char *key, const char *why, long long v)
{
    return llama_host->error(ZL_EINVAL, "llama: config key '%s' %s (got %lld)", key, why, v);
}

static int check_range(const char *key, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi)
        return bad_key(key, v < lo ? "is too small" : "is too large", (long long)v);
    return ZL_OK;
}

int llama_hparams_from_config(const struct zl_hf_config *c, struct llama_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    static const char *const types[] = {"llama", "mistral", "qwen2"};
    int known = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        known |= !strcmp(c->model_type, types[i]);
    if (!known)
        return llama_host->error(ZL_EINVAL, "llama: model_type '%s' is not handled here",
                                 c->model_type);
    if (c->hidden_act[0] && strcmp(c->hidden_act, "silu") != 0)
        return llama_host->error(ZL_EUNSUPPORTED, "llama: config key 'hidden_act' is '%s', only silu",
                                 c->hidden_act);
    const int64_t big = (int64_t)1 << 30;
    int rc;
    if ((rc = check_range("hidden_size", c->hidden_size, 1, big)) < 0 ||
        (rc = check_range("intermediate_size", c->intermediate_size, 1, big)) < 0 ||
        (rc = check_range("num_hidden_layers", c->num_hidden_layers, 1, 4096)) < 0 ||
        (rc = check_range("num_attention_heads", c->num_attention_heads, 1, 4096)) < 0 ||
        (rc = check_range("num_key_value_heads", c->num_key_value_heads, 1, c->num_attention_heads)) < 0 ||
        (rc = check_range("head_dim", c->head_dim, 2, 4096)) < 0 ||
        (rc = check_range("vocab_size", c->vocab_size, 1, big)) < 0 ||
        (rc = check_range("max_position_embeddings", c->max_position_embeddings, 1, big)) < 0)
        return rc;
    if (c->num_attention_heads % c->num_key_value_heads)
        return bad_key("num_key_value_heads", "must divide num_attention_heads",
                       (long long)c->num_key_value_heads);
    int64_t rot = c->rope_dim ? c->rope_dim : c->head_dim;
    if (rot < 2 || rot > c->head_dim || rot % 2 || rot > LLAMA_MAX_ROT)
        return bad_key("rope dimension", "must be even and at most head_dim", (long long)rot);
    if (!(c->rms_norm_eps > 0))
        return llama_host->error(ZL_EINVAL, "llama: config key 'rms_norm_eps' must be > 0");
    if (!(c->rope_theta > 1))
        return llama_host->error(ZL_EINVAL, "llama: config key 'rope_theta' must be > 1");
    const struct zl_rope_scaling *rs = &c->rope_scaling;
    if (rs->type != ZL_ROPE_SCALING_NONE && !(rs->factor > 0))
        return llama_host->error(ZL_EINVAL, "llama: config key 'rope_scaling.factor' must be > 0");
    if (rs->type == ZL_ROPE_SCALING_LLAMA3 &&
        (rs->original_max_position_embeddings <= 0 || rs->low_freq_factor == rs->high_freq_factor))
        return llama_host->error(ZL_EINVAL, "llama: rope_scaling llama3 needs "
                                 "original_max_position_embeddings and distinct low/high_freq_factor");
    if (rs->type == ZL_ROPE_SCALING_LONGROPE || rs->type == ZL_ROPE_SCALING_OTHER)
        return llama_host->error(ZL_EUNSUPPORTED, "llama: rope_scaling type '%s' is not supported",
                                 rs->name);
    hp->n_embd = (int32_t)c->hidden_size;
    hp->n_ff = (int32_t)c->intermediate_size;
    hp->n_layer = (int32_t)c->num_hidden_layers;
    hp->n_head = (int32_t)c->num_attention_heads;
    hp->n_kv_head = (int32_t)c->num_key_value_heads;
    hp->head_dim = (int32_t)c->head_dim;
    hp->rot_dim = (int32_t)rot;
    hp->n_vocab = (int32_t)c->vocab_size;
    hp->max_pos = (int32_t)c->max_position_embeddings;
    hp->eps = (float)c->rms_norm_eps;
    hp->rope_theta = c->rope_theta;
    hp->rs = *rs;
    hp->tied = c->tie_word_embeddings != 0;
    /* HF llama: attention_bias covers q, k, v and o; qwen2 biases q, k, v only. */
    int qwen2 = !strcmp(c->model_type, "qwen2");
    hp->qkv_bias = qwen2 || c->attention_bias;
    hp->o_bias = !qwen2 && c->attention_bias;
    hp->mlp_bias = c->mlp_bias != 0;
    if (c->sliding_window > 0 && c->sliding_window < c->max_position_embeddings && llama_host->log)
        llama_host->log(ZL_LOG_WARN, "llama", "sliding_window %lld is not applied: sequences longer "
                        "than it attend to all their tokens (transformers would not)",
                        (long long)c->sliding_window);
    return ZL_OK;
}

static void llama_destroy(struct zl_model *m)
{
    if (!m)
        return;
    free(m->layers);
    free(m->dec);
    free(m->freq_factors);
    free(m);
}

static int llama_create(const struct zl_model_params *p, struct zl_model **out)
{
    if (!p || !p->config || !p->backend || !p->weights || !out)
        return llama_host->error(ZL_EINVAL, "llama: create needs config, backend and weights");
    if (p->tp_size > 1)
        return llama_host->error(ZL_EUNSUPPORTED, "llama: tensor parallel (tp_size %d) not yet",
                                 (int)p->tp_size);
    if (p->dtype != ZL_DTYPE_F32 && p->dtype != ZL_DTYPE_F16 && p->dtype != ZL_DTYPE_BF16)
        return llama_host->error(ZL_EUNSUPPORTED, "llama: weights dtype %d: f32, f16 or bf16 only",
                                 (int)p->dtype);
    struct zl_model *m = calloc(1, sizeof *m);
    if (!m)
        return llama_host->error(ZL_ENOMEM, "llama: out of memory");
    int rc = llama_hparams_from_config(p->config, &m->hp);
    if (rc == ZL_OK)
        rc = llama_rope_inv_freq(&m->hp, 0, m->inv_freq, &m->attn_factor);
    if (rc < 0) {
        llama_destroy(m);
        return rc;
    }
    m->be = p->backend;
    m->bctx = p->bctx;
    m->device = p->device;
    m->wdtype = p->dtype;
    /* 16-bit activations where the backend runs them (HF's numerics in
     * that dtype); f32 otherwise (the CPU backend) */
    m->adtype = ZL_DTYPE_F32;
    if (ZL_BACKEND_HAS(p->backend, act_dtypes) && (p->backend->act_dtypes & (1u << p->dtype)))
        m->adtype = p->dtype;
    m->layers = calloc((size_t)m->hp.n_layer, sizeof *m->layers);
    if (!m->layers) {
        llama_destroy(m);
        return llama_host->error(ZL_ENOMEM, "llama: out of memory");
    }
    if ((rc = llama_load_weights(m, p->weights)) < 0) {
        llama_destroy(m);
        return rc;
    }
    *out = m;
    return ZL_OK;
}

static int llama_kv_layout(const struct zl_model *m, struct zl_kv_layout *out)
{
    out->n_layers = m->hp.n_layer;
    out->n_kv_heads = m->hp.n_kv_head;
    out->head_dim = m->hp.head_dim;
    /* K/V in the activation dtype, as HF keeps its cache: f32 on the CPU
     * backend, bf16/f16 where the backend runs 16-bit activations (half the
     * cache bytes, and the tensor-core attention kernels take it) */
    out->dtype = m->adtype;
    out->bytes_per_token = (size_t)m->hp.n_layer * 2 * (size_t)m->hp.n_kv_head *
                           (size_t)m->hp.head_dim * (m->adtype == ZL_DTYPE_F32 ? 4 : 2);
    return ZL_OK;
}

static int32_t llama_vocab_size(const struct zl_model *m)
{
    return m->hp.n_vocab;
}

static const struct zl_model_ops llama_ops = {
    .size = sizeof(struct zl_model_ops),
    .description = "Llama 1/2/3.x, Mistral and Qwen2 decoders",
    .create = llama_create,
    .destroy = llama_destroy,
    .kv_layout = llama_kv_layout,
    .workspace_bytes = llama_workspace_bytes,
    .forward = llama_forward,
    .vocab_size = llama_vocab_size,
    .flags = ZL_MODEL_TOKENS_FROM,
};

static int llama_init(const struct zl_host *host)
{
    llama_host = host;
    static const char *const names[] = {"llama", "mistral", "qwen2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int rc = host->register_ops(ZL_PLUGIN_MODEL, names[i], &llama_ops);
        if (rc < 0)
            return rc;
    }
    return ZL_OK;
}

ZL_PLUGIN_DEFINE("llama", "0.1.0", "Llama / Mistral / Qwen2 model plugin", llama_init, NULL)
