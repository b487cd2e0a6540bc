/* What a graph pass notes of each op (cuda-graph.c has the bracket): the
 * op table wrapped so that, in a recording or capture pass, every op
 * appends what decides its launches to ctx->gr.rec before it runs.  Two
 * passes with the same notes queue the same kernels with the same
 * arguments; what changes between them (token ids, positions, lengths,
 * block tables, slots, inv_freq) goes through the staged uploads.
 *
 * Noted: the op, each tensor's address, dtype, shape and strides, the
 * scalars, the KV cache's geometry and layer, and of an attention batch
 * its sequence count, block-table width (padded in a pass), decode
 * prefix, the decode part's split plan and weight prefetch, and the
 * rest's extents.  A field
 * left out here that changes a launch would replay a wrong graph, so a
 * new op or argument must be noted here too. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

void cuda_graph_note(struct zl_bctx *ctx, const void *p, size_t n)
{
    struct cuda_graphs *g = &ctx->gr;
    if (g->rec_oom)
        return;
    if (g->rec_len + n > g->rec_cap) {
        size_t cap = g->rec_cap ? g->rec_cap * 2 : 64 << 10;
        while (cap < g->rec_len + n)
            cap *= 2;
        unsigned char *r = realloc(g->rec, cap);
        if (!r) { /* the pass cannot be matched: it runs directly */
            g->rec_oom = 1;
            return;
        }
        g->rec = r;
        g->rec_cap = cap;
    }
    memcpy(g->rec + g->rec_len, p, n);
    g->rec_len += n;
}

static void note_i64(struct zl_bctx *ctx, int64_t v)
{
    cuda_graph_note(ctx, &v, sizeof v);
}

static void note_f32(struct zl_bctx *ctx, float f)
{
    int32_t b;
    memcpy(&b, &f, sizeof b);
    note_i64(ctx, b);
}

/* Field by field: a tensor's padding and name are not part of it. */
static void note_tensor(struct zl_bctx *ctx, const struct zl_tensor *t)
{
    if (!t) {
        note_i64(ctx, -1);
        return;
    }
    int nd = t->n_dims >= 0 && t->n_dims <= ZL_TENSOR_MAX_DIMS ? t->n_dims : 0;
    int64_t w[3 + 2 * ZL_TENSOR_MAX_DIMS] = {(int64_t)(uintptr_t)t->data, t->dtype,
                                             (int64_t)t->n_dims << 32 | (uint32_t)t->device};
    for (int i = 0; i < nd; i++) {
        w[3 + 2 * i] = t->ne[i];
        w[4 + 2 * i] = t->nb[i];
    }
    cuda_graph_note(ctx, w, sizeof(int64_t) * (size_t)(3 + 2 * nd));
}

static void note_cache(struct zl_bctx *ctx, const struct zl_kv_cache *c, int32_t layer)
{
    if (!c) {
        note_i64(ctx, -1);
        return;
    }
    int64_t w[6] = {(int64_t)(uintptr_t)c->base, (int64_t)c->block_stride, c->block_size,
                    (int64_t)c->n_layers << 32 | (uint32_t)layer,
                    (int64_t)c->n_kv_heads << 32 | (uint32_t)c->head_dim, c->dtype};
    cuda_graph_note(ctx, w, sizeof w);
}

/* The batch's shape as a pass sees it: sequences, table width, the decode
 * prefix; for attention (`c` given) also the decode part's split plan and
 * prefetch hint (a graph replays only while its hint is valid) and the
 * rest's raw extents.  Lengths that leave the plan alone are data. */
static void note_batch(struct zl_bctx *ctx, const struct zl_attn_batch *b,
                       const struct zl_kv_cache *c, int32_t layer)
{
    if (!b || b->n_seqs < 0 || !b->q_start || !b->kv_len) {
        note_i64(ctx, -1);
        return;
    }
    int32_t nd = cuda_attn_decode_prefix(b), splits = 0, chunk = 0;
    int64_t w[7] = {b->n_seqs, cuda_graph_table_cols(b->max_blocks), nd, 0, 0, 0, 0};
    if (c) {
        struct zl_cuda_attn_shape d = cuda_attn_shape(b, 0, nd);
        struct zl_cuda_attn_shape r = cuda_attn_shape(b, nd, b->n_seqs);
        int32_t bucket = cuda_graph_kv_bucket(d.max_kv_len);
        if (nd)
            zl_cuda_attention_decode_plan(nd, c->n_kv_heads, c->head_dim, bucket, &splits,
                                          &chunk);
        w[3] = (int64_t)splits << 32 | (uint32_t)chunk;
        w[4] = nd < b->n_seqs ? (int64_t)r.max_q_len << 32 | (uint32_t)r.max_kv_len : 0;
        const struct zl_cuda_prefetch *pf = cuda_prefetch_hint(ctx, layer, c->n_kv_heads,
                                                               c->head_dim, c->dtype, nd, bucket);
        w[5] = pf ? (int64_t)(uintptr_t)pf->data : 0;
        w[6] = pf ? (int64_t)pf->bytes : 0;
    }
    cuda_graph_note(ctx, w, sizeof w);
}

enum { OP_EMB = 1, OP_NORM, OP_LINEAR, OP_ROPE, OP_SILU, OP_KVW, OP_ATTN, OP_ADD, OP_COPY,
       OP_ROPEKV, OP_LINFUSED, OP_LINROPE, OP_ROPEATTN };

/* In a pass: notes the op and its n tensor arguments (const struct
 * zl_tensor *, NULL allowed) and returns 1; else 0, noting nothing. */
static int in_pass(struct zl_bctx *ctx, int op, int n, ...)
{
    if (!cuda_graph_pass(ctx))
        return 0;
    note_i64(ctx, op);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        note_tensor(ctx, va_arg(ap, const struct zl_tensor *));
    va_end(ap);
    return 1;
}

static int g_embedding(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *t,
                       const struct zl_tensor *tok)
{
    in_pass(ctx, OP_EMB, 3, o, t, tok);
    return cuda_embedding(ctx, o, t, tok);
}

static int g_rms_norm(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *x,
                      struct zl_tensor *r, const struct zl_tensor *w, float eps)
{
    if (in_pass(ctx, OP_NORM, 4, o, x, r, w))
        note_f32(ctx, eps);
    return cuda_rms_norm(ctx, o, x, r, w, eps);
}

static int g_linear(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *x,
                    const struct zl_tensor *w, const struct zl_tensor *b)
{
    in_pass(ctx, OP_LINEAR, 4, o, x, w, b);
    return cuda_linear(ctx, o, x, w, b);
}

/* inv_freq is data (uploaded in the pass), rot_dim and the factor are not */
static void note_rope(struct zl_bctx *ctx, const struct zl_rope *r)
{
    note_i64(ctx, r ? r->rot_dim : -1);
    note_f32(ctx, r ? r->attn_factor : 0.0f);
}

static int g_rope(struct zl_bctx *ctx, struct zl_tensor *q, struct zl_tensor *k,
                  const struct zl_tensor *pos, const struct zl_rope *r)
{
    if (in_pass(ctx, OP_ROPE, 3, q, k, pos))
        note_rope(ctx, r);
    return cuda_rope(ctx, q, k, pos, r);
}

static int g_silu_mul(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *g,
                      const struct zl_tensor *u)
{
    in_pass(ctx, OP_SILU, 3, o, g, u);
    return cuda_silu_mul(ctx, o, g, u);
}

static int g_kv_write(struct zl_bctx *ctx, const struct zl_kv_cache *c, int32_t l,
                      const struct zl_tensor *k, const struct zl_tensor *v,
                      const struct zl_attn_batch *b)
{
    if (in_pass(ctx, OP_KVW, 2, k, v)) {
        note_cache(ctx, c, l);
        note_batch(ctx, b, NULL, -1);
    }
    return cuda_kv_write(ctx, c, l, k, v, b);
}

static int g_attention(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *q,
                       const struct zl_kv_cache *c, int32_t l, const struct zl_attn_batch *b,
                       float sc)
{
    if (in_pass(ctx, OP_ATTN, 2, o, q)) {
        note_cache(ctx, c, l);
        note_batch(ctx, b, c, l);
        note_f32(ctx, sc);
    }
    return cuda_attention(ctx, o, q, c, l, b, sc);
}

static int g_add(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *a,
                 const struct zl_tensor *b)
{
    in_pass(ctx, OP_ADD, 3, o, a, b);
    return cuda_add(ctx, o, a, b);
}

static int g_copy(struct zl_bctx *ctx, struct zl_tensor *d, const struct zl_tensor *s)
{
    in_pass(ctx, OP_COPY, 2, d, s);
    return cuda_copy_rows(ctx, d, s);
}

static int g_rope_kv_write(struct zl_bctx *ctx, struct zl_tensor *q, const struct zl_tensor *k,
                           const struct zl_tensor *v, const struct zl_tensor *pos,
                           const struct zl_rope *r, const struct zl_kv_cache *c, int32_t l,
                           const struct zl_attn_batch *b)
{
    if (in_pass(ctx, OP_ROPEKV, 4, q, k, v, pos)) {
        note_rope(ctx, r);
        note_cache(ctx, c, l);
        note_batch(ctx, b, NULL, -1);
    }
    return cuda_rope_kv_write(ctx, q, k, v, pos, r, c, l, b);
}

static void note_fuse(struct zl_bctx *ctx, const struct zl_linear_fuse *f)
{
    if (!f) {
        note_i64(ctx, -1);
        return;
    }
    in_pass(ctx, OP_LINFUSED, 4, f->norm, f->residual, f->tmp_x, f->tmp_out);
    note_f32(ctx, f->eps);
    note_i64(ctx, f->swiglu);
}

static int g_linear_fused(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *x,
                          const struct zl_tensor *w, const struct zl_tensor *b,
                          const struct zl_linear_fuse *f)
{
    if (in_pass(ctx, OP_LINFUSED, 4, o, x, w, b))
        note_fuse(ctx, f);
    return cuda_linear_fused(ctx, o, x, w, b, f);
}

static int g_linear_rope_kv(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *x,
                            const struct zl_tensor *w, const struct zl_tensor *b,
                            const struct zl_linear_fuse *f, const struct zl_rope_kv *r)
{
    if (in_pass(ctx, OP_LINROPE, 4, o, x, w, b)) {
        note_fuse(ctx, f);
        if (r) {
            in_pass(ctx, OP_LINROPE, 4, r->q, r->k, r->v, r->positions);
            note_rope(ctx, r->rope);
            note_cache(ctx, r->cache, r->layer);
            note_batch(ctx, r->batch, NULL, -1);
        } else {
            note_i64(ctx, -1);
        }
    }
    return cuda_linear_rope_kv(ctx, o, x, w, b, f, r);
}

static int g_rope_attention(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_rope_kv *r,
                            float sc)
{
    if (in_pass(ctx, OP_ROPEATTN, 1, o)) {
        if (r) {
            in_pass(ctx, OP_ROPEATTN, 4, r->q, r->k, r->v, r->positions);
            note_rope(ctx, r->rope);
            note_cache(ctx, r->cache, r->layer);
            note_batch(ctx, r->batch, r->cache, r->layer);
        } else {
            note_i64(ctx, -1);
        }
        note_f32(ctx, sc);
    }
    return cuda_rope_attention(ctx, o, r, sc);
}

void cuda_graph_wrap_ops(struct zl_backend_ops *ops)
{
    ops->embedding = g_embedding;
    ops->rms_norm = g_rms_norm;
    ops->linear = g_linear;
    ops->rope = g_rope;
    ops->silu_mul = g_silu_mul;
    ops->kv_write = g_kv_write;
    ops->attention = g_attention;
    ops->add = g_add;
    ops->copy = g_copy;
    ops->rope_kv_write = g_rope_kv_write;
    ops->linear_fused = g_linear_fused;
    ops->linear_rope_kv = g_linear_rope_kv;
    ops->rope_attention = g_rope_attention;
    ops->graph_begin = cuda_graph_begin;
    ops->graph_end = cuda_graph_end;
}

