/* The fake model of test_engine_fake.h behind the real model and backend
 * interfaces, for engine tests without weights.  Greedy decoding gives
 * fake_reference(); the other tokens get lower, spread logits so sampling
 * has a distribution to draw from. */
#ifndef TEST_ENGINE_FAKEMODEL_H
#define TEST_ENGINE_FAKEMODEL_H

#include <string.h>
#include <zlight/engine.h>
#include <zlight/memory.h>
#include "test_engine_fake.h"

struct zl_model {
    struct fake_kv f;
    int64_t forwards;
    int32_t max_tokens_seen;
    int64_t fail_at;        /* this forward (1-based) fails, 0 = never */
    const struct zl_backend_ops *be;    /* for token_from (set by fake_engine_open) */
    struct zl_bctx *bctx;
    int64_t from_rows;      /* rows whose token came from the sampler */
};

static int fm_kv_layout(const struct zl_model *m, struct zl_kv_layout *out)
{
    (void)m;
    *out = (struct zl_kv_layout){.n_layers = 1, .n_kv_heads = 1, .head_dim = 2,
                                 .dtype = ZL_DTYPE_F32, .bytes_per_token = 16};
    return ZL_OK;
}

static size_t fm_ws(const struct zl_model *m, int32_t max_tokens, int32_t max_logits)
{
    (void)m;
    return 64 + (size_t)max_tokens * 8 + (size_t)max_logits * 4;
}

static int fm_forward(struct zl_model *m, const struct zl_forward_batch *b, struct zl_tensor *logits)
{
    if (b->workspace_bytes < fm_ws(m, b->n_tokens, b->n_logits) || b->cache->block_size != m->f.bs)
        return zl_error(ZL_EINVAL, "fake forward: bad workspace or cache");
    if (m->fail_at && m->forwards + 1 == m->fail_at)
        return zl_error(ZL_EBACKEND, "fake forward: failing on purpose");
    int32_t next[1024], toks[1024];
    if (b->n_logits > 1024 || b->n_tokens > 1024)
        return zl_error(ZL_EINVAL, "fake forward: too many tokens or logits");
    const int32_t *tokens = b->tokens;
    if (b->token_from) {    /* as a device model does: the backend fills them in */
        if (!m->be || !ZL_BACKEND_HAS(m->be, upload_tokens) || !m->be->upload_tokens)
            return zl_error(ZL_EINVAL, "fake forward: token_from without upload_tokens");
        int rc = m->be->upload_tokens(m->bctx, toks, b->tokens, b->token_from, b->n_tokens);
        if (rc < 0)
            return rc;
        for (int32_t i = 0; i < b->n_tokens; i++)
            m->from_rows += b->token_from[i] >= 0;
        tokens = toks;
    }
    for (int32_t i = 0; i < b->n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= FAKE_VOCAB)
            return zl_error(ZL_ERANGE, "fake forward: token %d", tokens[i]);
    fake_forward(&m->f, b->n_tokens, tokens, b->positions, &b->attn, b->n_logits, b->logits_rows,
                 next);
    float *l = logits->data;
    for (int32_t r = 0; r < b->n_logits; r++)
        for (int32_t v = 0; v < FAKE_VOCAB; v++)
            l[(size_t)r * FAKE_VOCAB + v] = v == next[r] ? 6.0f : (float)((next[r] * 31 + v * 17) % 13) / 4.0f;
    m->forwards++;
    if (b->n_tokens > m->max_tokens_seen)
        m->max_tokens_seen = b->n_tokens;
    return ZL_OK;
}

static int32_t fm_vocab(const struct zl_model *m)
{
    (void)m;
    return FAKE_VOCAB;
}

static const struct zl_model_ops fake_model_ops = {
    .size = sizeof(struct zl_model_ops), .description = "fake",
    .kv_layout = fm_kv_layout, .workspace_bytes = fm_ws, .forward = fm_forward, .vocab_size = fm_vocab,
    .flags = ZL_MODEL_TOKENS_FROM,
};

static int fb_copy(int device, void *dst, const void *src, size_t bytes)
{
    (void)device;
    memcpy(dst, src, bytes);
    return ZL_OK;
}

static const struct zl_backend_ops fake_backend_ops = {
    .size = sizeof(struct zl_backend_ops), .description = "fake host",
    .copy_to_device = fb_copy, .copy_to_host = fb_copy,
};

/* A host memory manager with room for `n_blocks` of the fake's KV blocks. */
static inline struct zl_mem *fake_mem(int32_t n_blocks, int32_t bs)
{
    struct zl_mem_params mp = zl_mem_default_params();
    mp.reserve_bytes = (size_t)n_blocks * (size_t)(bs * 16 + 256) + (4u << 20);
    struct zl_mem *mem = NULL;
    if (zl_mem_create(&mp, &mem) < 0 || zl_mem_weights_freeze(mem) < 0) {
        zl_mem_free(mem);
        return NULL;
    }
    return mem;
}

/* An engine (not threaded) over the fake model `m` with 64 tokens a step
 * and 4-token KV blocks.  `ep` brings the backend and whatever else the
 * test sets (model_ops NULL: the fake's); this fills the rest.  NULL on
 * failure (zl_last_error); else *mem_out to free after the engine, and
 * fake_fini(&m->f). */
static inline struct zl_engine *fake_engine_open(struct zl_engine_params ep, struct zl_model *m,
                                                 uint32_t pool_blocks, int32_t max_seqs,
                                                 int32_t max_len, struct zl_mem **mem_out)
{
    static int dummy_ctx;
    memset(m, 0, sizeof *m);
    struct zl_mem *mem = fake_mem((int32_t)pool_blocks, 4);
    void *base;
    size_t stride;
    uint32_t nb;
    size_t ws = fm_ws(m, 64, max_seqs) + sizeof(float) * FAKE_VOCAB * (size_t)max_seqs + 4096;
    if (!mem || zl_mem_plan(mem, ws, 64) < 0 || zl_mem_kv_pool(mem, &base, &stride, &nb) < 0) {
        zl_mem_free(mem);
        return NULL;
    }
    fake_init(&m->f, (int32_t)nb, 4);
    ep.threaded = 0;
    ep.sched.max_num_batched_tokens = 64;
    ep.sched.max_num_seqs = max_seqs;
    ep.sched.max_model_len = max_len;
    if (!ep.model_ops)
        ep.model_ops = &fake_model_ops;
    ep.model = m;
    ep.bctx = (struct zl_bctx *)&dummy_ctx;
    m->be = ep.backend;
    m->bctx = ep.bctx;
    ep.mem = mem;
    ep.block_size = 4;
    struct zl_engine *e = NULL;
    if (zl_engine_create(&ep, &e) < 0) {
        fake_fini(&m->f);
        zl_mem_free(mem);
        return NULL;
    }
    *mem_out = mem;
    return e;
}

/* Index of request `id` among ids[0..n), n if absent. */
static inline int fake_req_index(const uint64_t *ids, int n, uint64_t id)
{
    int k = 0;
    while (k < n && ids[k] != id)
        k++;
    return k;
}

#endif
