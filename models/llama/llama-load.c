/* Weights of the llama family by their HF names, through the core's loader
 * (which already maps GGUF names, dequantizes and undoes GGUF's Q/K
 * permutation).  Matrices keep the model's weight dtype; norm weights and
 * biases are tiny and stay f32 so the reference numerics hold. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "llama-impl.h"

struct loadctx {
    struct zl_model *m;
    const struct zl_weight_loader *wl;
};

static int load2(struct loadctx *c, const char *name, enum zl_dtype dt, int64_t rows, int64_t cols,
                 struct zl_tensor *out)
{
    int64_t shape[2] = {rows, cols};
    int n = cols ? 2 : 1;
    return c->wl->load(c->wl->ctx, name, dt, n, shape, NULL, out);
}

/* "model.layers.<il>.<suffix>" */
static int load_layer(struct loadctx *c, int il, const char *suffix, enum zl_dtype dt, int64_t rows,
                      int64_t cols, struct zl_tensor *out)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s", il, suffix);
    return load2(c, name, dt, rows, cols, out);
}

static int load_block(struct loadctx *c, int il)
{
    const struct llama_hparams *hp = &c->m->hp;
    struct llama_layer *l = &c->m->layers[il];
    enum zl_dtype w = c->m->wdtype, f = ZL_DTYPE_F32;
    int64_t q_rows = (int64_t)hp->n_head * hp->head_dim, kv_rows = (int64_t)hp->n_kv_head * hp->head_dim;
    int rc;
    if ((rc = load_layer(c, il, "input_layernorm.weight", f, hp->n_embd, 0, &l->attn_norm)) < 0 ||
        (rc = load_layer(c, il, "self_attn.q_proj.weight", w, q_rows, hp->n_embd, &l->wq)) < 0 ||
        (rc = load_layer(c, il, "self_attn.k_proj.weight", w, kv_rows, hp->n_embd, &l->wk)) < 0 ||
        (rc = load_layer(c, il, "self_attn.v_proj.weight", w, kv_rows, hp->n_embd, &l->wv)) < 0 ||
        (rc = load_layer(c, il, "self_attn.o_proj.weight", w, hp->n_embd, q_rows, &l->wo)) < 0 ||
        (rc = load_layer(c, il, "post_attention_layernorm.weight", f, hp->n_embd, 0, &l->ffn_norm)) < 0 ||
        (rc = load_layer(c, il, "mlp.gate_proj.weight", w, hp->n_ff, hp->n_embd, &l->w_gate)) < 0 ||
        (rc = load_layer(c, il, "mlp.up_proj.weight", w, hp->n_ff, hp->n_embd, &l->w_up)) < 0 ||
        (rc = load_layer(c, il, "mlp.down_proj.weight", w, hp->n_embd, hp->n_ff, &l->w_down)) < 0)
        return rc;
    if (hp->qkv_bias &&
        ((rc = load_layer(c, il, "self_attn.q_proj.bias", f, q_rows, 0, &l->bq)) < 0 ||
         (rc = load_layer(c, il, "self_attn.k_proj.bias", f, kv_rows, 0, &l->bk)) < 0 ||
         (rc = load_layer(c, il, "self_attn.v_proj.bias", f, kv_rows, 0, &l->bv)) < 0))
        return rc;
    if (hp->o_bias && (rc = load_layer(c, il, "self_attn.o_proj.bias", f, hp->n_embd, 0, &l->bo)) < 0)
        return rc;
    if (hp->mlp_bias &&
        ((rc = load_layer(c, il, "mlp.gate_proj.bias", f, hp->n_ff, 0, &l->b_gate)) < 0 ||
         (rc = load_layer(c, il, "mlp.up_proj.bias", f, hp->n_ff, 0, &l->b_up)) < 0 ||
         (rc = load_layer(c, il, "mlp.down_proj.bias", f, hp->n_embd, 0, &l->b_down)) < 0))
        return rc;
    return ZL_OK;
}

/* GGUF llama-3 files carry the llama3 rope factors as a tensor
 * (rope_freqs.weight, [rot_dim / 2] divisors) instead of config keys. */
static int load_freq_factors(struct loadctx *c)
{
    struct zl_model *m = c->m;
    const char *name = "rope_freqs.weight";
    if (!c->wl->has(c->wl->ctx, name))
        return ZL_OK;
    struct zl_tensor t;
    int n = m->hp.rot_dim / 2;
    int rc = load2(c, name, ZL_DTYPE_F32, n, 0, &t);
    if (rc < 0)
        return rc;
    m->freq_factors = malloc((size_t)n * sizeof(float));
    if (!m->freq_factors)
        return llama_host->error(ZL_ENOMEM, "llama: out of memory");
    if ((rc = m->be->copy_to_host(m->device, m->freq_factors, t.data, (size_t)n * sizeof(float))) < 0)
        return rc;
    for (int i = 0; i < n; i++)
        m->inv_freq[i] /= m->freq_factors[i];
    return ZL_OK;
}

int llama_load_weights(struct zl_model *m, const struct zl_weight_loader *wl)
{
    struct loadctx c = {m, wl};
    const struct llama_hparams *hp = &m->hp;
    int rc;
    if ((rc = load2(&c, "model.embed_tokens.weight", m->wdtype, hp->n_vocab, hp->n_embd,
                    &m->tok_embd)) < 0 ||
        (rc = load2(&c, "model.norm.weight", ZL_DTYPE_F32, hp->n_embd, 0, &m->out_norm)) < 0)
        return rc;
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = load_block(&c, il)) < 0)
            return rc;
    if (hp->tied)
        m->lm_head = m->tok_embd;
    else if ((rc = load2(&c, "lm_head.weight", m->wdtype, hp->n_vocab, hp->n_embd, &m->lm_head)) < 0)
        return rc;
    return load_freq_factors(&c);
}
