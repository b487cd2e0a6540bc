/* Tuning builds (-DZL_GEMV_TUNING) only: ZL_KNOCKOUT leaves chosen ops of
 * 9-64-token steps out (they return at once, launching nothing), so the
 * step time with and without an op says what it costs in the pipelined
 * stream, where ncu's serialised durations cannot (each kernel there pays
 * its own ramp).  The results are wrong by design: timing only.
 *   ZL_KNOCKOUT=norm,attn,OxI,...  rms_norm; rope_attention; the linears
 *   (linear or linear_fused) whose weight is O rows of I, e.g. 4096x4096. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

#ifdef ZL_GEMV_TUNING

static struct {
    const struct zl_backend_ops *base;
    struct zl_backend_ops ops;
    const char *list;
} K;

static int rows_in_range(const struct zl_tensor *t)
{
    return t->ne[0] >= 9 && t->ne[0] <= 64;
}

static int listed(const char *name)
{
    size_t n = strlen(name);
    for (const char *p = K.list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == K.list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

static int weight_listed(const struct zl_tensor *w)
{
    char name[48];
    snprintf(name, sizeof name, "%" PRId64 "x%" PRId64, w->ne[0], w->ne[1]);
    return listed(name);
}

static int ko_rms_norm(struct zl_bctx *c, struct zl_tensor *out, const struct zl_tensor *x,
                       struct zl_tensor *res, const struct zl_tensor *w, float eps)
{
    if (rows_in_range(x) && listed("norm"))
        return ZL_OK;
    return K.base->rms_norm(c, out, x, res, w, eps);
}

static int ko_linear(struct zl_bctx *c, struct zl_tensor *out, const struct zl_tensor *x,
                     const struct zl_tensor *w, const struct zl_tensor *b)
{
    if (rows_in_range(x) && weight_listed(w))
        return ZL_OK;
    return K.base->linear(c, out, x, w, b);
}

static int ko_linear_fused(struct zl_bctx *c, struct zl_tensor *out, const struct zl_tensor *x,
                           const struct zl_tensor *w, const struct zl_tensor *b,
                           const struct zl_linear_fuse *f)
{
    if (rows_in_range(x) && weight_listed(w))
        return ZL_OK;
    return K.base->linear_fused(c, out, x, w, b, f);
}

static int ko_rope_attention(struct zl_bctx *c, struct zl_tensor *out, const struct zl_rope_kv *r,
                             float scale)
{
    if (rows_in_range(out) && listed("attn"))
        return ZL_OK;
    return K.base->rope_attention(c, out, r, scale);
}

const struct zl_backend_ops *cuda_knockout_ops(const struct zl_backend_ops *base)
{
    K.list = getenv("ZL_KNOCKOUT");
    if (!K.list || !*K.list)
        return base;
    /* an entry that names nothing would silently time the whole step */
    for (const char *p = K.list; *p;) {
        size_t n = strcspn(p, ",");
        long long o, i;
        char tail;
        char entry[48];
        snprintf(entry, sizeof entry, "%.*s", (int)(n < sizeof entry ? n : sizeof entry - 1), p);
        if (strcmp(entry, "norm") && strcmp(entry, "attn") &&
            sscanf(entry, "%lldx%lld%c", &o, &i, &tail) != 2)
            fprintf(stderr, "cuda: ZL_KNOCKOUT entry \"%s\" is not norm, attn or OxI: ignored\n",
                    entry);
        p += n + (p[n] == ',');
    }
    K.base = base;
    K.ops = *base;
    K.ops.rms_norm = ko_rms_norm;
    K.ops.linear = ko_linear;
    if (base->linear_fused)
        K.ops.linear_fused = ko_linear_fused;
    if (base->rope_attention)
        K.ops.rope_attention = ko_rope_attention;
    fprintf(stderr, "cuda: ZL_KNOCKOUT=%s (timing only, results are wrong)\n", K.list);
    return &K.ops;
}

#endif
