/* The simple offline driver behind zlight-generate: every prompt gets its KV
 * blocks up front, prefill runs in chunks of at most max_batch_tokens over
 * all sequences, then all sequences decode together, one token each per
 * step, greedily.  The scheduler replaces this with admission, preemption
 * and sampling. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/backend.h>
#include <zlight/log.h>
#include <zlight/memory.h>
#include <zlight/model.h>
#include <zlight/registry.h>
#include <zlight/weight_loader.h>

#include "engine-simple.h"

#define MAX_BATCH_TOKENS 2048
#define MAX_SEQS 256
#define MAX_KV_TOKENS (64 * 1024)

struct zl_simple {
    struct zl_simple_params p;
    struct zl_registry *reg;
    const struct zl_backend_ops *be;
    struct zl_bctx *bctx;
    struct zl_wloader *wl;
    const struct zl_model_ops *mo;
    struct zl_model *model;
    struct zl_mem *mem;
    struct zl_kv_layout kv;
    struct zl_kv_cache cache;
    size_t ws_bytes;
    int32_t vocab;
};

struct zl_simple_params zl_simple_default_params(void)
{
    struct zl_simple_params p = {NULL, "cpu", 0, 0, ZL_DTYPE_COUNT, 0, 16};
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void zl_simple_free(struct zl_simple *e)
{
    if (!e)
        return;
    if (e->mo && e->model)
        e->mo->destroy(e->model);
    zl_mem_free(e->mem);
    if (e->be && e->bctx)
        e->be->close(e->bctx);
    zl_wloader_free(e->wl);
    zl_registry_free(e->reg);
    free(e);
}

const struct zl_hf_config *zl_simple_config(const struct zl_simple *e)
{
    return zl_wloader_config(e->wl);
}

static int open_backend(struct zl_simple *e)
{
    int rc = zl_registry_create(NULL, &e->reg);
    if (rc < 0)
        return rc;
    zl_registry_load_search_path(e->reg, NULL, 0);
    e->be = zl_registry_pick_backend(e->reg, e->p.backend ? e->p.backend : "cpu");
    if (!e->be)
        return zl_error_wrap(ZL_ENOTFOUND, "backend '%s' (set ZLIGHT_PLUGIN_PATH?)", e->p.backend);
    if (e->be->size < sizeof(struct zl_backend_ops) || !e->be->open || !e->be->linear)
        return zl_error(ZL_EABI, "backend '%s' lacks the op table", e->p.backend);
    struct zl_backend_open_params op = {sizeof op, 0, e->p.threads};
    return e->be->open(&op, &e->bctx);
}

/* One reservation: the weights (upper bound), the workspace of the largest
 * step and MAX_KV_TOKENS of cache.  Host and CPU-backend memory is committed
 * on first touch, so unused KV costs address space only. */
static size_t ws_estimate(const struct zl_hf_config *c)
{
    size_t per_tok = (size_t)(8 * c->hidden_size + 4 * c->num_attention_heads * c->head_dim +
                              4 * c->num_key_value_heads * c->head_dim + 3 * c->intermediate_size);
    return MAX_BATCH_TOKENS * per_tok * 4 + (size_t)MAX_SEQS * (size_t)(c->vocab_size + c->hidden_size) * 4 +
           (4u << 20);
}

static int plan_memory(struct zl_simple *e, const struct zl_hf_config *c, enum zl_dtype dt)
{
    size_t kv_tok = (size_t)c->num_hidden_layers * 2 * (size_t)c->num_key_value_heads *
                    (size_t)c->head_dim * 4;
    struct zl_mem_params mp = zl_mem_default_params();
    mp.reserve_bytes = zl_wloader_weight_bytes(e->wl, dt) + ws_estimate(c) + kv_tok * MAX_KV_TOKENS +
                       (16u << 20);
    mp.name = e->p.backend;
    int rc = zl_mem_allocator_from_backend(e->be, &mp.allocator);
    if (rc == ZL_OK)
        rc = zl_mem_create(&mp, &e->mem);
    return rc;
}

static int create_model(struct zl_simple *e, enum zl_dtype dt)
{
    const struct zl_hf_config *c = zl_wloader_config(e->wl);
    e->mo = zl_registry_find(e->reg, ZL_PLUGIN_MODEL, c->model_type);
    if (!e->mo)
        return zl_error(ZL_ENOTFOUND, "no model plugin registers model_type '%s' (set ZLIGHT_PLUGIN_PATH?)",
                        c->model_type);
    zl_wloader_bind(e->wl, e->be, 0, e->mem);
    struct zl_model_params mp = {sizeof mp, c, e->be, e->bctx, 0, dt, zl_wloader_ops(e->wl), 0, 1};
    int rc = e->mo->create(&mp, &e->model);
    if (rc < 0)
        return rc;
    e->mo->kv_layout(e->model, &e->kv);
    e->vocab = e->mo->vocab_size(e->model);
    e->ws_bytes = e->mo->workspace_bytes(e->model, MAX_BATCH_TOKENS, MAX_SEQS);
    size_t block_bytes = e->kv.bytes_per_token * (size_t)e->p.block_size;
    size_t logits = (size_t)MAX_SEQS * (size_t)e->vocab * 4 + 1024;
    if ((rc = zl_mem_weights_freeze(e->mem)) < 0 ||
        (rc = zl_mem_plan(e->mem, e->ws_bytes + logits + 1024, block_bytes)) < 0)
        return rc;
    void *base;
    uint32_t n_blocks;
    if ((rc = zl_mem_kv_pool(e->mem, &base, &e->cache.block_stride, &n_blocks)) < 0)
        return rc;
    e->cache.base = base;
    e->cache.block_size = e->p.block_size;
    e->cache.n_layers = e->kv.n_layers;
    e->cache.n_kv_heads = e->kv.n_kv_heads;
    e->cache.head_dim = e->kv.head_dim;
    e->cache.dtype = e->kv.dtype;
    zl_mem_log_plan(e->mem, (uint32_t)e->p.block_size);
    return ZL_OK;
}

int zl_simple_create(const struct zl_simple_params *p, struct zl_simple **out)
{
    *out = NULL;
    if (!p || !p->model_path)
        return zl_error(ZL_EINVAL, "generate: a model path is required");
    if (p->block_size < 1 || p->block_size > 1024)
        return zl_error(ZL_EINVAL, "generate: block size %d outside 1..1024", p->block_size);
    struct zl_simple *e = calloc(1, sizeof *e);
    if (!e)
        return zl_error(ZL_ENOMEM, "generate: out of memory");
    e->p = *p;
    double t0 = now_s();
    struct zl_wloader_params wp = zl_wloader_default_params();
    wp.dummy = p->dummy;
    wp.seed = p->seed;
    int rc = zl_wloader_open(p->model_path, &wp, &e->wl);
    if (rc == ZL_OK)
        rc = open_backend(e);
    enum zl_dtype dt = p->dtype != ZL_DTYPE_COUNT || !e->wl ? p->dtype : zl_wloader_default_dtype(e->wl);
    if (rc == ZL_OK)
        rc = plan_memory(e, zl_wloader_config(e->wl), dt);
    if (rc == ZL_OK)
        rc = create_model(e, dt);
    if (rc < 0) {
        zl_simple_free(e);
        return rc;
    }
    ZL_INFO("generate", "%s: model_type %s, %s weights (%.1f MiB) loaded in %.2f s", p->model_path,
            zl_wloader_config(e->wl)->model_type, zl_dtype_name(dt),
            (double)zl_wloader_loaded_bytes(e->wl) / (1 << 20), now_s() - t0);
    *out = e;
    return ZL_OK;
}

/* Per-generation state: one row per sequence. */
struct gen {
    int n;
    int32_t max_blocks;
    int32_t *blocks;            /* [n, max_blocks] */
    int32_t *cached;            /* [n] tokens in the cache */
    int32_t *next;              /* [n] token to feed at position cached[s] in decode */
    /* step arrays */
    int32_t *tok, *pos, *slot, *q_start, *kv_len, *table, *rows;
    float *host_logits;         /* [MAX_SEQS, vocab] */
};

static void gen_free(struct zl_simple *e, struct gen *g)
{
    for (int s = 0; g->blocks && s < g->n; s++)
        for (int32_t b = 0; b < g->max_blocks; b++)
            if (g->blocks[s * g->max_blocks + b] >= 0)
                zl_mem_kv_free(e->mem, (uint32_t)g->blocks[s * g->max_blocks + b]);
    free(g->blocks);
    free(g->cached);
    free(g->next);
    free(g->tok);
    free(g->pos);
    free(g->slot);
    free(g->q_start);
    free(g->kv_len);
    free(g->table);
    free(g->rows);
    free(g->host_logits);
}

static int gen_init(struct zl_simple *e, struct gen *g, int n, const int32_t *lens, int32_t max_new)
{
    int32_t longest = 0;
    for (int s = 0; s < n; s++)
        longest = lens[s] > longest ? lens[s] : longest;
    g->n = n;
    g->max_blocks = (longest + max_new + e->p.block_size - 1) / e->p.block_size;
    size_t nb = (size_t)n * (size_t)g->max_blocks;
    g->blocks = malloc(nb * sizeof *g->blocks);
    g->cached = calloc((size_t)n, sizeof *g->cached);
    g->next = calloc((size_t)n, sizeof *g->next);
    g->tok = malloc(MAX_BATCH_TOKENS * sizeof *g->tok);
    g->pos = malloc(MAX_BATCH_TOKENS * sizeof *g->pos);
    g->slot = malloc(MAX_BATCH_TOKENS * sizeof *g->slot);
    g->q_start = malloc((MAX_SEQS + 1) * sizeof *g->q_start);
    g->kv_len = malloc(MAX_SEQS * sizeof *g->kv_len);
    g->table = malloc((size_t)MAX_SEQS * (size_t)g->max_blocks * sizeof *g->table);
    g->rows = malloc(MAX_SEQS * sizeof *g->rows);
    g->host_logits = malloc((size_t)MAX_SEQS * (size_t)e->vocab * sizeof(float));
    if (!g->blocks || !g->cached || !g->next || !g->tok || !g->pos || !g->slot || !g->q_start ||
        !g->kv_len || !g->table || !g->rows || !g->host_logits)
        return zl_error(ZL_ENOMEM, "generate: out of memory");
    for (size_t i = 0; i < nb; i++)
        g->blocks[i] = -1;
    for (int s = 0; s < n; s++) {
        int32_t need = (lens[s] + max_new + e->p.block_size - 1) / e->p.block_size;
        for (int32_t b = 0; b < need; b++) {
            uint32_t id;
            int rc = zl_mem_kv_alloc(e->mem, &id);
            if (rc < 0)
                return zl_error_wrap(rc, "generate: KV cache too small for %d prompts", n);
            g->blocks[s * g->max_blocks + b] = (int32_t)id;
        }
    }
    return ZL_OK;
}

/* Adds `cnt` tokens of sequence s (ids `ids`, first at position cached[s])
 * to the step as step-sequence k. */
static void step_add(struct zl_simple *e, struct gen *g, int k, int s, const int32_t *ids, int32_t cnt,
                     int32_t *n_tok)
{
    int32_t bs = e->p.block_size;
    g->q_start[k] = *n_tok;
    for (int32_t i = 0; i < cnt; i++) {
        int32_t p = g->cached[s] + i, t = *n_tok + i;
        g->tok[t] = ids[i];
        g->pos[t] = p;
        g->slot[t] = g->blocks[s * g->max_blocks + p / bs] * bs + p % bs;
    }
    *n_tok += cnt;
    g->cached[s] += cnt;
    g->kv_len[k] = g->cached[s];
    memcpy(g->table + (size_t)k * (size_t)g->max_blocks, g->blocks + (size_t)s * (size_t)g->max_blocks,
           (size_t)g->max_blocks * sizeof *g->table);
}

/* Runs the step made of n_seqs step-sequences; logits of those listed in
 * rows (n_logits) land in g->host_logits. */
static int step_run(struct zl_simple *e, struct gen *g, int32_t n_seqs, int32_t n_tok, int32_t n_logits)
{
    g->q_start[n_seqs] = n_tok;
    int rc = zl_mem_ws_reset(e->mem);
    void *ws = NULL, *logits = NULL;
    if (rc == ZL_OK)
        rc = zl_mem_ws_alloc(e->mem, e->ws_bytes, &ws);
    if (rc == ZL_OK)
        rc = zl_mem_ws_alloc(e->mem, (size_t)(n_logits ? n_logits : 1) * (size_t)e->vocab * 4, &logits);
    if (rc < 0)
        return rc;
    struct zl_forward_batch b = {
        .n_tokens = n_tok, .tokens = g->tok, .positions = g->pos,
        .attn = {n_seqs, g->max_blocks, g->q_start, g->kv_len, g->table, g->slot},
        .cache = &e->cache, .n_logits = n_logits, .logits_rows = g->rows,
        .workspace = ws, .workspace_bytes = e->ws_bytes,
    };
    struct zl_tensor lt;
    int64_t shape[2] = {n_logits ? n_logits : 1, e->vocab};
    zl_tensor_init(&lt, ZL_DTYPE_F32, 2, shape, logits, 0);
    if ((rc = e->mo->forward(e->model, &b, &lt)) < 0 || (rc = e->be->synchronize(0)) < 0)
        return rc;
    return e->be->copy_to_host(0, g->host_logits, logits, (size_t)n_logits * (size_t)e->vocab * 4);
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static int check_prompts(const struct zl_simple *e, int n, const int32_t *const *prompts,
                         const int32_t *lens, int32_t max_new)
{
    const struct zl_hf_config *c = zl_wloader_config(e->wl);
    if (n < 1 || n > MAX_SEQS)
        return zl_error(ZL_EINVAL, "generate: %d prompts (1..%d)", n, MAX_SEQS);
    if (max_new < 0)
        return zl_error(ZL_EINVAL, "generate: max tokens %d is negative", (int)max_new);
    int64_t total = 0;
    for (int s = 0; s < n; s++) {
        if (lens[s] < 1)
            return zl_error(ZL_EINVAL, "prompt %d is empty", s + 1);
        if (lens[s] > c->max_position_embeddings)
            return zl_error(ZL_ERANGE, "prompt %d has %d tokens, more than max_position_embeddings %lld",
                            s + 1, (int)lens[s], (long long)c->max_position_embeddings);
        for (int32_t i = 0; i < lens[s]; i++)
            if (prompts[s][i] < 0 || prompts[s][i] >= e->vocab)
                return zl_error(ZL_ERANGE, "prompt %d: token id %d is outside the vocabulary (0..%d)",
                                s + 1, (int)prompts[s][i], (int)e->vocab - 1);
        if (lens[s] + max_new > c->max_position_embeddings)
            ZL_WARN("generate", "prompt %d: %d + %d tokens pass max_position_embeddings %lld", s + 1,
                    (int)lens[s], (int)max_new, (long long)c->max_position_embeddings);
        total += lens[s] + max_new;
    }
    if (total > MAX_KV_TOKENS)
        return zl_error(ZL_ERANGE, "generate: %lld tokens in all exceed the KV cache of %d",
                        (long long)total, MAX_KV_TOKENS);
    return ZL_OK;
}

/* Chunked prefill: fills steps with up to MAX_BATCH_TOKENS prompt tokens;
 * a sequence whose prompt completes in a step gets its first output token. */
static int prefill(struct zl_simple *e, struct gen *g, const int32_t *const *prompts,
                   const int32_t *lens, int32_t max_new, int32_t **out, float **first_logits)
{
    int s = 0;
    int32_t lseq[MAX_SEQS]; /* sequence of each logits row */
    while (s < g->n) {
        int32_t n_tok = 0, n_logits = 0, k = 0;
        while (s < g->n && n_tok < MAX_BATCH_TOKENS && k < MAX_SEQS) {
            int32_t cnt = lens[s] - g->cached[s];
            if (cnt > MAX_BATCH_TOKENS - n_tok)
                cnt = MAX_BATCH_TOKENS - n_tok;
            step_add(e, g, k, s, prompts[s] + g->cached[s], cnt, &n_tok);
            if (g->cached[s] == lens[s]) {
                lseq[n_logits] = s;
                g->rows[n_logits++] = n_tok - 1;
                s++;
            }
            k++;
        }
        int rc = step_run(e, g, k, n_tok, n_logits);
        if (rc < 0)
            return rc;
        for (int32_t j = 0; j < n_logits; j++) {
            int q = lseq[j];
            const float *lg = g->host_logits + (size_t)j * (size_t)e->vocab;
            if (first_logits && first_logits[q])
                memcpy(first_logits[q], lg, (size_t)e->vocab * sizeof(float));
            g->next[q] = argmax(lg, e->vocab);
            if (max_new > 0)
                out[q][0] = g->next[q];
        }
    }
    return ZL_OK;
}

int zl_simple_generate_logits(struct zl_simple *e, int n, const int32_t *const *prompts,
                              const int32_t *lens, int32_t max_new, int32_t **out,
                              float **first_logits, struct zl_simple_stats *st)
{
    struct zl_simple_stats dummy;
    st = st ? st : &dummy;
    memset(st, 0, sizeof *st);
    int rc = check_prompts(e, n, prompts, lens, max_new);
    if (rc < 0)
        return rc;
    struct gen g = {0};
    if ((rc = gen_init(e, &g, n, lens, max_new)) < 0) {
        gen_free(e, &g);
        return rc;
    }
    double t0 = now_s();
    rc = prefill(e, &g, prompts, lens, max_new, out, first_logits);
    double t1 = now_s();
    for (int s = 0; s < n; s++)
        st->prefill_tokens += lens[s];
    st->prefill_s = t1 - t0;
    for (int32_t step = 1; rc == ZL_OK && step < max_new; step++) {
        int32_t n_tok = 0;
        for (int s = 0; s < n; s++) {
            step_add(e, &g, s, s, &g.next[s], 1, &n_tok);
            g.rows[s] = s;
        }
        if ((rc = step_run(e, &g, n, n_tok, n)) < 0)
            break;
        for (int s = 0; s < n; s++)
            out[s][step] = g.next[s] = argmax(g.host_logits + (size_t)s * (size_t)e->vocab, e->vocab);
        st->decode_tokens += n;
    }
    st->decode_s = now_s() - t1;
    gen_free(e, &g);
    return rc;
}

int zl_simple_generate(struct zl_simple *e, int n, const int32_t *const *prompts,
                       const int32_t *lens, int32_t max_new, int32_t **out, struct zl_simple_stats *st)
{
    return zl_simple_generate_logits(e, n, prompts, lens, max_new, out, NULL, st);
}
