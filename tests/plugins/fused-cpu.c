/* Test backend "fusedcpu": the CPU backend plus a linear_fused that runs the
 * unfused ops and fused_max_rows = FUSED_MAX_ROWS, and a rope_attention of
 * the ops it stands for, so CI can check a model against the backend
 * contracts of API minors 5 and 6 without a GPU: linear_fused is only
 * called for steps of at most fused_max_rows rows (it fails loudly past
 * that), rope_attention is called, and the results equal the CPU backend's.  The CPU plugin's
 * ops are taken by running its init with a host whose register_ops keeps
 * them instead of registering. */
#include <dlfcn.h>
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
ZL_PLUGIN_EXPORT long fusedcpu_calls, fusedcpu_rope_attn_calls;
long fusedcpu_calls, fusedcpu_rope_attn_calls;

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
    if (x->ne[0] > FUSED_MAX_ROWS)
        return host->error(ZL_EINVAL, "fusedcpu linear_fused: a step of %lld rows, past "
                           "fused_max_rows %d", (long long)x->ne[0], FUSED_MAX_ROWS);
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
    return h->register_ops(ZL_PLUGIN_BACKEND, "fusedcpu", &ops);
}

static void fused_fini(void)
{
    if (cpu_so)
        dlclose(cpu_so);
    cpu_so = NULL;
}

ZL_PLUGIN_DEFINE("fusedcpu", "1.0", "test: the CPU backend with linear_fused", fused_init, fused_fini)
