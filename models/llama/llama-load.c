/* Weights of the llama family by their HF names, through the core's loader
 * (which already maps GGUF names, dequantizes and undoes GGUF's Q/K
 * permutation).  Matrices keep the model's weight dtype; norm weights and
 * biases are tiny and stay f32 so the reference numerics hold. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A contiguous [rows, cols] (cols 0: [rows]) tensor of dt at data. */
static void place(struct zl_tensor *t, enum zl_dtype dt, int64_t rows, int64_t cols, void *data,
                  int device)
{
    size_t esz = dt == ZL_DTYPE_F32 ? 4 : 2;
    memset(t, 0, sizeof *t);
    t->data = data;
    t->dtype = dt;
    t->device = device;
    for (int i = 0; i < ZL_TENSOR_MAX_DIMS; i++)
        t->ne[i] = 1;
    t->n_dims = cols ? 2 : 1;
    t->ne[0] = rows;
    t->nb[t->n_dims - 1] = (int64_t)esz;
    if (cols) {
        t->ne[1] = cols;
        t->nb[0] = cols * (int64_t)esz;
    }
}

/* Loads the `n` tensors "model.layers.<il>.<suffix[i]>" of rows[i] rows
 * each, one below the other, into one new [sum rows, cols] tensor. */
static int load_fused(struct loadctx *c, int il, int n, const char *const *suffix,
                      const int64_t *rows, enum zl_dtype dt, int64_t cols, struct zl_tensor *out)
{
    struct zl_model *m = c->m;
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += rows[i];
    size_t esz = dt == ZL_DTYPE_F32 ? 4 : 2, row = (size_t)(cols ? cols : 1) * esz;
    void *base;
    int rc = c->wl->alloc(c->wl->ctx, (size_t)total * row, &base);
    if (rc < 0)
        return rc;
    place(out, dt, total, cols, base, m->device);
    int64_t r0 = 0;
    for (int i = 0; i < n; i++) {
        char name[160];
        struct zl_tensor part;
        snprintf(name, sizeof name, "model.layers.%d.%s", il, suffix[i]);
        place(&part, dt, rows[i], cols, (char *)base + (size_t)r0 * row, m->device);
        if ((rc = c->wl->load_into(c->wl->ctx, name, NULL, &part)) < 0)
            return rc;
        r0 += rows[i];
    }
    return ZL_OK;
}

static int load_block(struct loadctx *c, int il)
{
    const struct llama_hparams *hp = &c->m->hp;
    struct llama_layer *l = &c->m->layers[il];
    enum zl_dtype w = c->m->wdtype, f = ZL_DTYPE_F32;
    int64_t q_rows = (int64_t)hp->n_head * hp->head_dim, kv_rows = (int64_t)hp->n_kv_head * hp->head_dim;
    static const char *const qkv_w[3] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                         "self_attn.v_proj.weight"};
    static const char *const qkv_b[3] = {"self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                         "self_attn.v_proj.bias"};
    static const char *const gu_w[2] = {"mlp.gate_proj.weight", "mlp.up_proj.weight"};
    static const char *const gu_b[2] = {"mlp.gate_proj.bias", "mlp.up_proj.bias"};
    const int64_t qkv_rows[3] = {q_rows, kv_rows, kv_rows}, gu_rows[2] = {hp->n_ff, hp->n_ff};
    int rc;
    if ((rc = load_layer(c, il, "input_layernorm.weight", f, hp->n_embd, 0, &l->attn_norm)) < 0 ||
        (rc = load_fused(c, il, 3, qkv_w, qkv_rows, w, hp->n_embd, &l->wqkv)) < 0 ||
        (rc = load_layer(c, il, "self_attn.o_proj.weight", w, hp->n_embd, q_rows, &l->wo)) < 0 ||
        (rc = load_layer(c, il, "post_attention_layernorm.weight", f, hp->n_embd, 0, &l->ffn_norm)) < 0 ||
        (rc = load_fused(c, il, 2, gu_w, gu_rows, w, hp->n_embd, &l->w_gu)) < 0 ||
        (rc = load_layer(c, il, "mlp.down_proj.weight", w, hp->n_embd, hp->n_ff, &l->w_down)) < 0)
        return rc;
    if (hp->qkv_bias && (rc = load_fused(c, il, 3, qkv_b, qkv_rows, f, 0, &l->bqkv)) < 0)
        return rc;
    if (hp->o_bias && (rc = load_layer(c, il, "self_attn.o_proj.bias", f, hp->n_embd, 0, &l->bo)) < 0)
        return rc;
    if (hp->mlp_bias &&
        ((rc = load_fused(c, il, 2, gu_b, gu_rows, f, 0, &l->b_gu)) < 0 ||
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
