/* One varlen forward step of the llama decoder, written against the backend
 * op table only:
 *
 *   x = embed(tokens)
 *   per layer:  h = rmsnorm(x)          (x += previous MLP output first)
 *               [q k v] = h Wqkv (+ bias); rope(q, k); cache <- k, v
 *               o = attention(q, cache) Wo
 *               h = rmsnorm(x += o);  [g u] = h Wgu;  o = (silu(g) * u) Wd
 *   logits[rows] = rmsnorm(x += o)[rows] lm_head^T
 *
 * Activations are rows of m->adtype (the weights' bf16/f16 where the
 * backend takes it, else f32) carved from the caller's workspace; q, k, v
 * and g, u are column views of one GEMM output each; logits are f32. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llama-impl.h"

#define WS_ALIGN 256

/* A contiguous row-major tensor over `data` (the plugin cannot call
 * zl_tensor_init: it does not link libzlight). */
static void tmake(struct zl_tensor *t, enum zl_dtype dt, int n_dims, const int64_t *shape, void *data,
                  int device)
{
    size_t esz = dt == ZL_DTYPE_F32 || dt == ZL_DTYPE_I32 ? 4 : 2;
    memset(t, 0, sizeof *t);
    t->data = data;
    t->dtype = dt;
    t->n_dims = n_dims;
    t->device = device;
    for (int i = 0; i < ZL_TENSOR_MAX_DIMS; i++)
        t->ne[i] = 1;
    int64_t stride = (int64_t)esz;
    for (int i = n_dims - 1; i >= 0; i--) {
        t->ne[i] = shape[i];
        t->nb[i] = stride;
        stride *= shape[i];
    }
}

static void tmat(struct zl_tensor *t, enum zl_dtype dt, int64_t rows, int64_t cols, void *data,
                 int device)
{
    int64_t s[2] = {rows, cols};
    tmake(t, dt, 2, s, data, device);
}

/* A view of columns [c0, c0 + cols) of each row of `m` (rows stay m's). */
static void tcols(struct zl_tensor *t, const struct zl_tensor *m, int64_t c0, int64_t cols)
{
    *t = *m;
    t->ne[1] = cols;
    t->data = (char *)m->data + c0 * m->nb[1];
}

/* The same columns as [n, cols / hd, hd] heads. */
static void theads(struct zl_tensor *t, const struct zl_tensor *m, int64_t c0, int64_t heads, int64_t hd)
{
    int64_t s[3] = {m->ne[0], heads, hd};
    tmake(t, m->dtype, 3, s, (char *)m->data + c0 * m->nb[1], m->device);
    t->nb[0] = m->nb[0];
}

static size_t al(size_t b)
{
    return (b + WS_ALIGN - 1) & ~(size_t)(WS_ALIGN - 1);
}

/* The workspace layout: one place computes offsets for both the size query
 * and the step, so they cannot disagree. */
struct ws_layout {
    size_t tok, pos, x, h, qkv, att, o, gu, a, hl, total;
};

static void ws_plan(const struct zl_model *m, int64_t n, int64_t n_logits, struct ws_layout *w)
{
    const struct llama_hparams *hp = &m->hp;
    size_t off = 0, f = m->adtype == ZL_DTYPE_F32 ? 4 : 2;
    int64_t qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_kv_head * hp->head_dim;
#define TAKE(field, bytes) (w->field = off, off += al((size_t)(bytes)))
    TAKE(tok, n * 4);
    TAKE(pos, n * 4);
    TAKE(x, n * hp->n_embd * f);
    TAKE(h, n * hp->n_embd * f);
    TAKE(qkv, n * (qd + 2 * kvd) * f);
    TAKE(att, n * qd * f);
    TAKE(o, n * hp->n_embd * f);
    TAKE(gu, n * 2 * hp->n_ff * f);
    TAKE(a, n * hp->n_ff * f);
    TAKE(hl, n_logits * hp->n_embd * f);
#undef TAKE
    w->total = off + WS_ALIGN; /* slack to align the caller's base */
}

size_t llama_workspace_bytes(const struct zl_model *m, int32_t max_tokens, int32_t max_logits)
{
    struct ws_layout w;
    ws_plan(m, max_tokens, max_logits, &w);
    return w.total;
}

static const struct zl_tensor *opt(const struct zl_tensor *t)
{
    return t->data ? t : NULL;
}

/* Step-local tensors over the workspace. */
struct step {
    struct zl_model *m;
    const struct zl_forward_batch *b;
    struct zl_tensor tok, pos, x, h, qkv, att, o, gu, g, u, a;
    struct zl_tensor q3, k3, v3, att3;
    struct zl_rope rope;
};

#define TRY(call)                                                                                  \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
    } while (0)

static float attn_scale(const struct zl_model *m)
{
    return 1.0f / sqrtf((float)m->hp.head_dim);
}

/* Attention of the step's rotated q over the cache: s->att. */
static int attention(struct step *s, int il)
{
    return s->m->be->attention(s->m->bctx, &s->att3, &s->q3, s->b->cache, il, &s->b->attn,
                               attn_scale(s->m));
}

/* rope, the KV-cache write and attention of the step's q, k, v: s->att
 * (q is left rotated or not). */
static int attend(struct step *s, int il)
{
    struct zl_model *m = s->m;
    const struct zl_backend_ops *be = m->be;
    struct zl_bctx *cx = m->bctx;
    if (ZL_BACKEND_HAS(be, rope_attention) && be->rope_attention) {
        const struct zl_rope_kv r = {&s->q3, &s->k3, &s->v3, &s->pos, &s->rope,
                                     s->b->cache, il, &s->b->attn};
        return be->rope_attention(cx, &s->att3, &r, attn_scale(m));
    }
    if (ZL_BACKEND_HAS(be, rope_kv_write) && be->rope_kv_write) {
        TRY(be->rope_kv_write(cx, &s->q3, &s->k3, &s->v3, &s->pos, &s->rope, s->b->cache, il,
                              &s->b->attn));
    } else {
        TRY(be->rope(cx, &s->q3, &s->k3, &s->pos, &s->rope));
        TRY(be->kv_write(cx, s->b->cache, il, &s->k3, &s->v3, &s->b->attn));
    }
    return attention(s, il);
}

/* One layer with separate ops: x += the previous block's output s->o
 * inside each rms_norm (its fused residual add), s->o = this block's. */
static int layer_ops(struct step *s, const struct llama_layer *l, int il)
{
    struct zl_model *m = s->m;
    const struct zl_backend_ops *be = m->be;
    struct zl_bctx *cx = m->bctx;
    if (il == 0)
        TRY(be->rms_norm(cx, &s->h, &s->x, NULL, &l->attn_norm, m->hp.eps));
    else
        TRY(be->rms_norm(cx, &s->h, &s->o, &s->x, &l->attn_norm, m->hp.eps));
    TRY(be->linear(cx, &s->qkv, &s->h, &l->wqkv, opt(&l->bqkv)));
    TRY(attend(s, il));
    TRY(be->linear(cx, &s->o, &s->att, &l->wo, opt(&l->bo)));
    TRY(be->rms_norm(cx, &s->h, &s->o, &s->x, &l->ffn_norm, m->hp.eps));
    if (ZL_BACKEND_HAS(be, linear_fused) && be->linear_fused) {
        /* the SwiGLU in gate/up's epilogue where the backend fuses it there
         * (CUDA on an H100/H200 up to 64 tokens), else the same two ops; a
         * SwiGLU alone may be asked past fused_max_rows (backend.h) */
        const struct zl_linear_fuse f = {.swiglu = 1, .tmp_out = &s->gu};
        TRY(be->linear_fused(cx, &s->a, &s->h, &l->w_gu, opt(&l->b_gu), &f));
    } else {
        TRY(be->linear(cx, &s->gu, &s->h, &l->w_gu, opt(&l->b_gu)));
        TRY(be->silu_mul(cx, &s->a, &s->g, &s->u));
    }
    return be->linear(cx, &s->o, &s->a, &l->w_down, opt(&l->b_down));
}

/* The same layer through linear_fused: the norms ride on the QKV and
 * gate/up projections, the SwiGLU on gate/up, the residual adds on the o
 * and down projections, so x is up to date after the layer; with
 * linear_rope_kv rope and the KV write ride on the QKV projection too (a
 * decode step on CUDA is then four GEMVs and attention per layer). */
static int layer_fused(struct step *s, const struct llama_layer *l, int il)
{
    struct zl_model *m = s->m;
    const struct zl_backend_ops *be = m->be;
    struct zl_bctx *cx = m->bctx;
    struct zl_linear_fuse f = {.norm = &l->attn_norm, .eps = m->hp.eps, .tmp_x = &s->h};
    if (ZL_BACKEND_HAS(be, linear_rope_kv) && be->linear_rope_kv) {
        /* the rotation and the cache write ride on the QKV projection too */
        const struct zl_rope_kv r = {&s->q3, &s->k3, &s->v3, &s->pos, &s->rope,
                                     s->b->cache, il, &s->b->attn};
        TRY(be->linear_rope_kv(cx, &s->qkv, &s->x, &l->wqkv, opt(&l->bqkv), &f, &r));
        TRY(attention(s, il));
    } else {
        TRY(be->linear_fused(cx, &s->qkv, &s->x, &l->wqkv, opt(&l->bqkv), &f));
        TRY(attend(s, il));
    }
    f = (struct zl_linear_fuse){.residual = &s->x, .tmp_out = &s->o};
    TRY(be->linear_fused(cx, &s->x, &s->att, &l->wo, opt(&l->bo), &f));
    f = (struct zl_linear_fuse){.norm = &l->ffn_norm, .eps = m->hp.eps, .swiglu = 1,
                                .tmp_x = &s->h, .tmp_out = &s->gu};
    TRY(be->linear_fused(cx, &s->a, &s->x, &l->w_gu, opt(&l->b_gu), &f));
    f = (struct zl_linear_fuse){.residual = &s->x, .tmp_out = &s->o};
    return be->linear_fused(cx, &s->x, &s->a, &l->w_down, opt(&l->b_down), &f);
}

/* Every layer at once through the backend's decoder_layers (a one-token
 * step of one sequence): ZL_OK when it ran them, ZL_DECLINED when the
 * model runs them op by op, or an error. */
static int layers_at_once(struct step *s)
{
    struct zl_model *m = s->m;
    const struct zl_backend_ops *be = m->be;
    if (!ZL_BACKEND_HAS(be, decoder_layers) || !be->decoder_layers || m->dec_none ||
        s->b->n_tokens != 1)
        return ZL_DECLINED;
    if (!m->dec) {
        for (int i = 0; i < m->hp.n_layer; i++) {
            const struct llama_layer *l = &m->layers[i];
            if (l->bqkv.data || l->bo.data || l->b_gu.data || l->b_down.data) {
                m->dec_none = 1;
                return ZL_DECLINED;
            }
        }
        m->dec = calloc((size_t)(uint32_t)m->hp.n_layer, sizeof *m->dec);
        if (!m->dec)
            return llama_host->error(ZL_ENOMEM, "llama forward: the decoder layer table");
        for (int i = 0; i < m->hp.n_layer; i++) {
            const struct llama_layer *l = &m->layers[i];
            m->dec[i] = (struct zl_decoder_layer){&l->attn_norm, &l->wqkv, &l->wo,
                                                  &l->ffn_norm, &l->w_gu, &l->w_down};
        }
    }
    const struct zl_rope_kv r = {&s->q3, &s->k3, &s->v3, &s->pos, &s->rope, s->b->cache, 0,
                                 &s->b->attn};
    const struct zl_decoder_stack st = {m->hp.n_layer, m->dec, m->hp.eps, attn_scale(m),
                                        &s->x, &s->qkv, &s->att, &s->a, &r};
    return be->decoder_layers(m->bctx, &st);
}

static int check_batch(const struct zl_model *m, const struct zl_forward_batch *b,
                       const struct zl_tensor *logits, const struct ws_layout *w)
{
    const char *why = NULL;
    if (b->n_tokens < 1 || !b->tokens || !b->positions || !b->cache)
        why = "needs tokens, positions and a cache";
    else if (b->n_logits < 0 || (b->n_logits && !b->logits_rows))
        why = "bad logits rows";
    else if (!b->workspace || b->workspace_bytes < w->total)
        why = "workspace too small (see workspace_bytes)";
    else if (b->cache->n_layers != m->hp.n_layer || b->cache->n_kv_heads != m->hp.n_kv_head ||
             b->cache->head_dim != m->hp.head_dim)
        why = "cache layout differs from kv_layout";
    else if (b->n_logits && (!logits || logits->dtype != ZL_DTYPE_F32 || logits->ne[0] < b->n_logits ||
                             logits->ne[logits->n_dims - 1] != m->hp.n_vocab))
        why = "logits must be f32 [n_logits, vocab]";
    if (why)
        return llama_host->error(ZL_EINVAL, "llama forward: %s", why);
    for (int32_t i = 0; i < b->n_logits; i++)
        if (b->logits_rows[i] < 0 || b->logits_rows[i] >= b->n_tokens)
            return llama_host->error(ZL_ERANGE, "llama forward: logits row %d outside the %d tokens",
                                     (int)b->logits_rows[i], (int)b->n_tokens);
    if (b->token_from && !(ZL_BACKEND_HAS(m->be, upload_tokens) && m->be->upload_tokens))
        return llama_host->error(ZL_EINVAL, "llama forward: token_from needs the backend's "
                                 "upload_tokens");
    for (int32_t i = 0; i < b->n_tokens; i++) {
        int sampled = b->token_from && b->token_from[i] >= 0;   /* read on the device */
        if (!sampled && (b->tokens[i] < 0 || b->tokens[i] >= m->hp.n_vocab))
            return llama_host->error(ZL_ERANGE, "llama forward: token id %d outside vocab of %d",
                                     (int)b->tokens[i], (int)m->hp.n_vocab);
        if (b->positions[i] < 0)
            return llama_host->error(ZL_ERANGE, "llama forward: negative position %d",
                                     (int)b->positions[i]);
    }
    return ZL_OK;
}

/* Rope frequencies of this step: fixed, except dynamic NTK past max_pos. */
static void step_rope(struct step *s, float *inv)
{
    const struct zl_model *m = s->m;
    s->rope.rot_dim = m->hp.rot_dim;
    s->rope.inv_freq = m->inv_freq;
    s->rope.attn_factor = m->attn_factor;
    if (m->hp.rs.type != ZL_ROPE_SCALING_DYNAMIC)
        return;
    int32_t maxp = 0;
    for (int32_t i = 0; i < s->b->n_tokens; i++)
        maxp = s->b->positions[i] > maxp ? s->b->positions[i] : maxp;
    if (maxp < m->hp.max_pos)
        return;
    float af;
    llama_rope_inv_freq(&m->hp, maxp, inv, &af); /* cannot fail: checked at create */
    for (int i = 0; m->freq_factors && i < m->hp.rot_dim / 2; i++)
        inv[i] /= m->freq_factors[i];
    s->rope.inv_freq = inv;
}

/* Tuning build only: ZL_LLAMA_FUSED_ALL=1 runs every step through
 * linear_fused, past the backend's fused_max_rows too (as before API
 * minor 5), for an A/B in one build. */
static int fused_all(void)
{
#ifdef ZL_GEMV_TUNING
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("ZL_LLAMA_FUSED_ALL");
        on = v && *v == '1';
    }
    return on;
#else
    return 0;
#endif
}

/* Whether a step of n tokens goes through linear_fused: where the backend
 * fuses it.  Past fused_max_rows the fused ops would run unfused, with an
 * add kernel per residual that rms_norm takes for free in layer_ops. */
static int use_fused(const struct zl_backend_ops *be, int64_t n)
{
    if (!ZL_BACKEND_HAS(be, linear_fused) || !be->linear_fused)
        return 0;
    if (!ZL_BACKEND_HAS(be, fused_max_rows) || be->fused_max_rows <= 0 || fused_all())
        return 1;
    return n <= be->fused_max_rows;
}

/* A step's host input to the device: queued on the instance's stream where
 * the backend has upload (no wait between steps), else copy_to_device. */
static int step_input(struct zl_model *m, void *dst, const void *src, size_t bytes)
{
    const struct zl_backend_ops *be = m->be;
    if (ZL_BACKEND_HAS(be, upload) && be->upload)
        return be->upload(m->bctx, dst, src, bytes);
    return be->copy_to_device(m->device, dst, src, bytes);
}

int llama_forward(struct zl_model *m, const struct zl_forward_batch *b, struct zl_tensor *logits)
{
    const struct llama_hparams *hp = &m->hp;
    struct ws_layout w;
    ws_plan(m, b->n_tokens, b->n_logits, &w);
    TRY(check_batch(m, b, logits, &w));
    const struct zl_backend_ops *be = m->be;
    struct zl_bctx *cx = m->bctx;
    int dev = m->device;
    char *base = (char *)(((uintptr_t)b->workspace + WS_ALIGN - 1) & ~(uintptr_t)(WS_ALIGN - 1));
    int64_t n = b->n_tokens, qd = (int64_t)hp->n_head * hp->head_dim;
    int64_t kvd = (int64_t)hp->n_kv_head * hp->head_dim;
    struct step s = {.m = m, .b = b};
    int64_t n1[1] = {n};
    tmake(&s.tok, ZL_DTYPE_I32, 1, n1, base + w.tok, dev);
    tmake(&s.pos, ZL_DTYPE_I32, 1, n1, base + w.pos, dev);
    enum zl_dtype at = m->adtype;
    tmat(&s.x, at, n, hp->n_embd, base + w.x, dev);
    tmat(&s.h, at, n, hp->n_embd, base + w.h, dev);
    tmat(&s.qkv, at, n, qd + 2 * kvd, base + w.qkv, dev);
    tmat(&s.att, at, n, qd, base + w.att, dev);
    tmat(&s.o, at, n, hp->n_embd, base + w.o, dev);
    tmat(&s.gu, at, n, 2 * (int64_t)hp->n_ff, base + w.gu, dev);
    tmat(&s.a, at, n, hp->n_ff, base + w.a, dev);
    tcols(&s.g, &s.gu, 0, hp->n_ff);
    tcols(&s.u, &s.gu, hp->n_ff, hp->n_ff);
    theads(&s.q3, &s.qkv, 0, hp->n_head, hp->head_dim);
    theads(&s.k3, &s.qkv, qd, hp->n_kv_head, hp->head_dim);
    theads(&s.v3, &s.qkv, qd + kvd, hp->n_kv_head, hp->head_dim);
    theads(&s.att3, &s.att, 0, hp->n_head, hp->head_dim);
    float inv[LLAMA_MAX_ROT / 2];
    step_rope(&s, inv);

    if (b->token_from)
        TRY(be->upload_tokens(cx, s.tok.data, b->tokens, b->token_from, (int32_t)n));
    else
        TRY(step_input(m, s.tok.data, b->tokens, (size_t)n * 4));
    TRY(step_input(m, s.pos.data, b->positions, (size_t)n * 4));
    TRY(be->embedding(cx, &s.x, &m->tok_embd, &s.tok));
    const int fused = use_fused(be, n);
    int rc = fused ? layers_at_once(&s) : ZL_DECLINED;
    if (rc < 0)
        return rc;
    for (int il = 0; rc == ZL_DECLINED && il < hp->n_layer; il++)
        TRY(fused ? layer_fused(&s, &m->layers[il], il) : layer_ops(&s, &m->layers[il], il));
    TRY(be->rms_norm(cx, &s.h, fused ? &s.x : &s.o, fused ? NULL : &s.x, &m->out_norm, hp->eps));
    if (b->n_logits == 0)
        return ZL_OK;
    struct zl_tensor hl, src, dst, out;
    tmat(&hl, at, b->n_logits, hp->n_embd, base + w.hl, dev);
    /* decode steps score every row in order: no gather (one copy per row) */
    int32_t same = b->n_logits == b->n_tokens;
    for (int32_t i = 0; same && i < b->n_logits; i++)
        same = b->logits_rows[i] == i;
    if (same)
        hl = s.h;
    /* else one copy per run of consecutive rows: a mixed step's decode
     * rows are one run, so it pays a launch per prompt, not per sequence */
    for (int32_t i = 0, j; !same && i < b->n_logits; i = j) {
        for (j = i + 1; j < b->n_logits && b->logits_rows[j] == b->logits_rows[i] + (j - i); j++)
            ;
        tmat(&src, at, j - i, hp->n_embd, (char *)s.h.data + b->logits_rows[i] * s.h.nb[0], dev);
        tmat(&dst, at, j - i, hp->n_embd, (char *)hl.data + i * hl.nb[0], dev);
        TRY(be->copy(cx, &dst, &src));
    }
    tmat(&out, ZL_DTYPE_F32, b->n_logits, hp->n_vocab, logits->data, dev);
    return be->linear(cx, &out, &hl, &m->lm_head, NULL);
}
