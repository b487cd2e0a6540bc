/* A model made ready for the engine: plugins from the search path, the
 * backend instance, the weights through the core loader into one memory
 * reservation (weights + a full step's workspace + the KV budget), and the
 * EOS ids.  zl_engine_create plans the reservation on first use. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/engine.h>
#include <zlight/hf_config.h>
#include <zlight/log.h>
#include <zlight/memory.h>
#include <zlight/registry.h>
#include <zlight/weight_loader.h>

struct zl_engine_model {
    struct zl_registry *own_reg;        /* loaded here when the caller gave none */
    const struct zl_registry *reg;      /* the one in use */
    const struct zl_backend_ops *be;
    struct zl_bctx *bctx;
    struct zl_wloader *wl;
    struct zl_mem *mem;
    const struct zl_model_ops *mo;
    struct zl_model *model;
    int32_t eos[ZL_HF_MAX_TOKEN_IDS];
    int32_t n_eos;
};

struct zl_engine_model_params zl_engine_model_default_params(void)
{
    struct zl_engine_model_params p;
    memset(&p, 0, sizeof(p));
    p.backend = "cpu";
    p.dtype = ZL_DTYPE_COUNT;
    p.kv_tokens = 65536;
    return p;
}

void zl_engine_model_free(struct zl_engine_model *m)
{
    if (!m)
        return;
    if (m->mo && m->model)
        m->mo->destroy(m->model);
    zl_mem_free(m->mem);
    if (m->be && m->bctx)
        m->be->close(m->bctx);
    zl_wloader_free(m->wl);
    zl_registry_free(m->own_reg);
    free(m);
}

const struct zl_hf_config *zl_engine_model_config(const struct zl_engine_model *m)
{
    return zl_wloader_config(m->wl);
}

static int open_backend(struct zl_engine_model *m, const struct zl_engine_model_params *p)
{
    if (p->registry) {
        m->reg = p->registry;
    } else {
        int rc = zl_registry_create(NULL, &m->own_reg);
        if (rc < 0)
            return rc;
        zl_registry_load_search_path(m->own_reg, p->plugin_paths, (size_t)p->n_plugin_paths);
        m->reg = m->own_reg;
    }
    const char *name = p->backend ? p->backend : "cpu";
    if (!(m->be = zl_registry_pick_backend(m->reg, name)))
        return zl_error_wrap(ZL_ENOTFOUND, "engine: backend '%s' (set ZLIGHT_PLUGIN_PATH?)", name);
    /* API minor 0 ended at `flags`; later members are checked where used */
    if (m->be->size < offsetof(struct zl_backend_ops, act_dtypes) || !m->be->open)
        return zl_error(ZL_EABI, "engine: backend '%s' lacks the op table", name);
    ZL_INFO("engine", "backend '%s': %s", name, m->be->description ? m->be->description : "?");
    struct zl_backend_open_params op = {sizeof(op), 0, p->threads};
    return m->be->open(&op, &m->bctx);
}

/* Weights, a step of sched's size (activations bounded from the config,
 * logits of every sequence) and the KV budget, in one reservation. */
static int reserve(struct zl_engine_model *m, const struct zl_engine_model_params *p,
                   const struct zl_sched_params *s, enum zl_dtype dt)
{
    const struct zl_hf_config *c = zl_wloader_config(m->wl);
    size_t per_tok = (size_t)(8 * c->hidden_size + 4 * (c->num_attention_heads + c->num_key_value_heads) *
                              c->head_dim + 3 * c->intermediate_size) * 4;
    size_t step = (size_t)s->max_num_batched_tokens * per_tok +
                  (size_t)s->max_num_seqs * (size_t)(c->vocab_size + c->hidden_size) * 8;
    size_t kv = (size_t)c->num_hidden_layers * 2 * (size_t)c->num_key_value_heads * (size_t)c->head_dim *
                4 * (size_t)p->kv_tokens;
    struct zl_mem_params mp = zl_mem_default_params();
    mp.reserve_bytes = zl_wloader_weight_bytes(m->wl, dt) + step + kv + (16u << 20);
    mp.name = p->backend;
    int host = ZL_BACKEND_ON_HOST(m->be);
    /* the KV pool takes whatever the share leaves; a share of host RAM is
     * not what gpu_memory_utilization means, so the CPU backend keeps the
     * kv_tokens sizing */
    if (p->memory_utilization > 0 && !host) {
        int rc = zl_mem_budget(m->be, 0, p->memory_utilization, &mp.reserve_bytes);
        if (rc < 0)
            return rc;
    }
    int rc = zl_mem_allocator_from_backend(m->be, &mp.allocator);
    if (host)
        mp.allocator.flags |= ZL_MEM_HOST_VISIBLE;
    return rc < 0 ? rc : zl_mem_create(&mp, &m->mem);
}

int zl_engine_model_open(const struct zl_engine_model_params *p, const struct zl_sched_params *sched,
                         struct zl_engine_model **out)
{
    *out = NULL;
    if (!p || !p->model_path || !sched)
        return zl_error(ZL_EINVAL, "engine: a model path and scheduler params are required");
    if (p->kv_tokens < 1)
        return zl_error(ZL_EINVAL, "engine: kv_tokens must be >= 1");
    struct zl_engine_model *m = calloc(1, sizeof(*m));
    if (!m)
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    struct zl_wloader_params wp = zl_wloader_default_params();
    wp.dummy = p->dummy;
    wp.seed = p->seed;
    int rc = zl_wloader_open(p->model_path, &wp, &m->wl);
    if (rc == 0)
        rc = open_backend(m, p);
    enum zl_dtype dt = p->dtype != ZL_DTYPE_COUNT || !m->wl ? p->dtype : zl_wloader_default_dtype(m->wl);
    if (rc == 0)
        rc = reserve(m, p, sched, dt);
    const struct zl_hf_config *c = m->wl ? zl_wloader_config(m->wl) : NULL;
    if (rc == 0 && !(m->mo = zl_registry_find(m->reg, ZL_PLUGIN_MODEL, c->model_type)))
        rc = zl_error(ZL_ENOTFOUND, "engine: no model plugin registers model_type '%s'"
                      " (set ZLIGHT_PLUGIN_PATH?)", c->model_type);
    if (rc == 0) {
        zl_wloader_bind(m->wl, m->be, 0, m->mem);
        struct zl_model_params mp = {sizeof(mp), c, m->be, m->bctx, 0, dt, zl_wloader_ops(m->wl), 0, 1};
        rc = m->mo->create(&mp, &m->model);
    }
    if (rc == 0)
        rc = zl_mem_weights_freeze(m->mem);
    if (rc < 0) {
        zl_engine_model_free(m);
        return rc;
    }
    /* EOS: generation_config.json beside the weights wins over config.json */
    struct zl_hf_generation_config gc;
    const int64_t *ids = c->eos_token_id;
    int32_t n = c->n_eos;
    if (zl_hf_generation_config_load(p->model_path, &gc) == 0 && gc.n_eos > 0) {
        ids = gc.eos_token_id;
        n = gc.n_eos;
    }
    zl_clear_error();
    for (int32_t i = 0; i < n && i < ZL_HF_MAX_TOKEN_IDS; i++)
        if (ids[i] >= 0 && ids[i] < c->vocab_size)
            m->eos[m->n_eos++] = (int32_t)ids[i];
    ZL_INFO("engine", "%s: model_type %s, %s weights (%.1f MiB), %d EOS ids", p->model_path,
            c->model_type, zl_dtype_name(dt), (double)zl_wloader_loaded_bytes(m->wl) / (1 << 20),
            m->n_eos);
    *out = m;
    return ZL_OK;
}

void zl_engine_model_fill(struct zl_engine_model *m, struct zl_engine_params *ep)
{
    const struct zl_hf_config *c = zl_wloader_config(m->wl);
    ep->model_ops = m->mo;
    ep->model = m->model;
    ep->backend = m->be;
    ep->bctx = m->bctx;
    ep->device = 0;
    ep->mem = m->mem;
    ep->eos_ids = m->eos;
    ep->n_eos = m->n_eos;
    if (c->max_position_embeddings > 0 && ep->sched.max_model_len > c->max_position_embeddings)
        ep->sched.max_model_len = (int32_t)c->max_position_embeddings;
}
