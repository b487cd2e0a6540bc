/* Test backend "fusedcpu": the CPU backend plus a linear_fused that runs the
 * unfused ops and fused_max_rows = FUSED_MAX_ROWS, a rope_attention of
 * the ops it stands for, and a decoder_layers of those two per layer that
 * declines every step at an odd position, so CI can check a model against
 * the backend contracts of API minors 5, 6 and 7 without a GPU:
 * linear_fused is only called for steps of at most fused_max_rows rows,
 * except for a SwiGLU alone (it fails loudly past that), rope_attention and decoder_layers are called, a
 * declined step runs the layers op by op, and the results equal the CPU
 * backend's.  The CPU plugin's ops are taken by running its init with a
 * host whose register_ops keeps them instead of registering. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/backend.h>
#include <zlight/plugin.h>

#define FUSED_MAX_ROWS 4

static const struct zl_host *host;
static const struct zl_backend_ops *cpu;
static struct zl_backend_ops ops;
static void *cpu_so;

/* Calls of linear_fused and rope_attention so far (the test reads them
 * through dlsym). */
ZL_PLUGIN_EXPORT long fusedcpu_calls, fusedcpu_rope_attn_calls, fusedcpu_layers_calls,
    fusedcpu_layers_declined;
long fusedcpu_calls, fusedcpu_rope_attn_calls, fusedcpu_layers_calls, fusedcpu_layers_declined;

static int score_one(void)
{
    return 1;
}

static int keep_cpu(enum zl_plugin_kind kind, const char *name, const void *o)
{
    if (kind == ZL_PLUGIN_BACKEND && !strcmp(name, "cpu"))
        cpu = o;
    return ZL_OK;
}

static int fused(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                 const struct zl_tensor *w, const struct zl_tensor *bias,
                 const struct zl_linear_fuse *f)
{
    /* past the bound only a SwiGLU alone is asked for (backend.h) */
    if (x->ne[0] > FUSED_MAX_ROWS && (f->norm || f->residual || !f->swiglu))
        return host->error(ZL_EINVAL, "fusedcpu linear_fused: a step of %lld rows with a norm "
                           "or residual or without a SwiGLU, past fused_max_rows %d",
                           (long long)x->ne[0], FUSED_MAX_ROWS);
    fusedcpu_calls++;
    int rc;
    const struct zl_tensor *xin = x;
    if (f->norm) {
        if ((rc = cpu->rms_norm(ctx, f->tmp_x, x, NULL, f->norm, f->eps)) < 0)
            return rc;
        xin = f->tmp_x;
    }
    if (!f->swiglu && !f->residual)
        return cpu->linear(ctx, out, xin, w, bias);
    if ((rc = cpu->linear(ctx, f->tmp_out, xin, w, bias)) < 0)
        return rc;
    if (f->residual)
        return cpu->add(ctx, out, f->residual, f->tmp_out);
    struct zl_tensor g = *f->tmp_out, u = *f->tmp_out;
    g.ne[1] = u.ne[1] = f->tmp_out->ne[1] / 2;
    u.data = (char *)u.data + g.ne[1] * u.nb[1];
    return cpu->silu_mul(ctx, out, &g, &u);
}

/* rope_attention as its contract defines it: rope (k rotated in place,
 * which the CPU backend's kv_write then stores), kv_write, attention. */
static int rope_attention(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_rope_kv *r,
                          float scale)
{
    if (!r)
        return host->error(ZL_EINVAL, "fusedcpu rope_attention: no arguments");
    fusedcpu_rope_attn_calls++;
    struct zl_tensor k = *r->k;
    int rc = cpu->rope(ctx, r->q, &k, r->positions, r->rope);
    if (rc >= 0)
        rc = cpu->kv_write(ctx, r->cache, r->layer, &k, r->v, r->batch);
    return rc < 0 ? rc : cpu->attention(ctx, out, r->q, r->cache, r->layer, r->batch, scale);
}

/* A contiguous [1, n] host tensor like x over data. */
static struct zl_tensor row_like(const struct zl_tensor *x, int64_t n, void *data)
{
    struct zl_tensor t = *x;
    t.ne[0] = 1;
    t.ne[1] = n;
    t.nb[0] = n * x->nb[1];
    t.data = data;
    return t;
}

/* decoder_layers as its contract defines it: per layer the model's
 * linear_fused / rope_attention sequence (so the results are the per-layer
 * path's bit for bit); steps at odd positions are declined untouched. */
static int decoder_layers(struct zl_bctx *ctx, const struct zl_decoder_stack *s)
{
    if (!s || !s->r || !s->x)
        return host->error(ZL_EINVAL, "fusedcpu decoder_layers: no arguments");
    if (((const int32_t *)s->r->positions->data)[0] % 2) {
        fusedcpu_layers_declined++;
        return ZL_DECLINED;
    }
    fusedcpu_layers_calls++;
    const int64_t d = s->x->ne[1], f = s->a->ne[1], w = s->qkv->ne[1];
    const int64_t wide = w > 2 * f ? w : 2 * f;
    char *buf = malloc((size_t)(d + wide) * (size_t)s->x->nb[1]);
    if (!buf)
        return host->error(ZL_ENOMEM, "fusedcpu decoder_layers: scratch");
    struct zl_tensor h = row_like(s->x, d, buf), o = row_like(s->x, wide, buf + d * s->x->nb[1]);
    struct zl_tensor o_d = row_like(s->x, d, o.data), o_gu = row_like(s->x, 2 * f, o.data);
    int rc = ZL_OK;
    for (int32_t il = 0; il < s->n_layers && rc >= 0; il++) {
        const struct zl_decoder_layer *l = &s->layers[il];
        struct zl_rope_kv r = *s->r;
        r.layer = il;
        struct zl_tensor att3 = *r.q;
        att3.data = s->att->data;
        att3.nb[0] = s->att->nb[0];
        att3.nb[1] = r.q->nb[2] * r.q->ne[2];
        struct zl_linear_fuse fq = {.norm = l->attn_norm, .eps = s->eps, .tmp_x = &h};
        struct zl_linear_fuse fo = {.residual = s->x, .tmp_out = &o_d};
        struct zl_linear_fuse fg = {.norm = l->ffn_norm, .eps = s->eps, .swiglu = 1, .tmp_x = &h,
                                    .tmp_out = &o_gu};
        if ((rc = fused(ctx, s->qkv, s->x, l->wqkv, NULL, &fq)) < 0 ||
            (rc = rope_attention(ctx, &att3, &r, s->attn_scale)) < 0 ||
            (rc = fused(ctx, s->x, s->att, l->wo, NULL, &fo)) < 0 ||
            (rc = fused(ctx, s->a, s->x, l->w_gu, NULL, &fg)) < 0)
            break;
        rc = fused(ctx, s->x, s->a, l->w_down, NULL, &fo);
    }
    free(buf);
    return rc < 0 ? rc : ZL_OK;
}

static int fused_init(const struct zl_host *h)
{
    host = h;
    cpu_so = dlopen(CPU_PLUGIN_SO, RTLD_NOW | RTLD_LOCAL);
    zl_plugin_entry_fn entry = cpu_so ? (zl_plugin_entry_fn)dlsym(cpu_so, ZL_PLUGIN_ENTRY_SYMBOL) : NULL;
    if (!entry)
        return h->error(ZL_ENOTFOUND, "fusedcpu: cannot load %s: %s", CPU_PLUGIN_SO, dlerror());
    static struct zl_host keep;         /* the CPU plugin keeps the pointer */
    keep = *h;
    keep.register_ops = keep_cpu;
    int rc = entry()->init(&keep);
    if (rc < 0 || !cpu)
        return rc < 0 ? rc : h->error(ZL_ENOTFOUND, "fusedcpu: the CPU plugin registered no backend");
    ops = *cpu;
    ops.size = sizeof ops;
    ops.description = "CPU with a linear_fused of unfused ops (test)";
    ops.score = score_one;
    ops.linear_fused = fused;
    ops.fused_max_rows = FUSED_MAX_ROWS;
    ops.rope_attention = rope_attention;
    ops.decoder_layers = decoder_layers;
    return h->register_ops(ZL_PLUGIN_BACKEND, "fusedcpu", &ops);
}

static void fused_fini(void)
{
    if (cpu_so)
        dlclose(cpu_so);
    cpu_so = NULL;
}

ZL_PLUGIN_DEFINE("fusedcpu", "1.0", "test: the CPU backend with linear_fused", fused_init, fused_fini)
