/* Argument checks shared by the ops: every bad shape, dtype, device or
 * batch description becomes ZL_EINVAL with "cpu OP: ..." instead of a wild
 * access, before any thread starts. */
#include "config.h"

#include <stdio.h>

#include "cpu-impl.h"

static const char *dt_name(enum zl_dtype dt)
{
    static const char *names[] = {"f32", "f16", "bf16", "f8_e4m3", "f8_e5m2",
                                  "i8", "u8", "i32", "i64", "q4"};
    return (unsigned)dt < sizeof names / sizeof *names ? names[dt] : "invalid";
}

/* "f32/f16/bf16" for a dtype mask, for the messages. */
static const char *mask_names(uint32_t mask, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int dt = 0; dt < ZL_DTYPE_COUNT; dt++)
        if (mask & (1u << dt) && len < n)
            len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? "/" : "", dt_name(dt));
    return buf;
}

int cpu_check_tensor(const char *op, const char *name, const struct zl_tensor *t, uint32_t dtypes)
{
    char want[64];
    if (!t)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s is NULL", op, name);
    if (t->n_dims < 1 || t->n_dims > ZL_TENSOR_MAX_DIMS)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s has %d dims", op, name, (int)t->n_dims);
    if (t->device != ZL_TENSOR_HOST && t->device != 0)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s is on device %d, not the CPU", op, name,
                               (int)t->device);
    if ((unsigned)t->dtype >= 32 || !(dtypes & (1u << t->dtype)))
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s is %s, want %s", op, name,
                               dt_name(t->dtype), mask_names(dtypes, want, sizeof want));
    for (int i = 0; i < t->n_dims; i++)
        if (t->ne[i] < 0 || t->nb[i] < 0)
            return cpu_host->error(ZL_EINVAL, "cpu %s: %s has a negative size or stride", op,
                                   name);
    if (!t->data)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s has no data", op, name);
    int last = t->n_dims - 1;
    if (t->ne[last] > 1 && (size_t)t->nb[last] != cpu_dtype_size(t->dtype))
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s is strided along its innermost dim", op,
                               name);
    return ZL_OK;
}

int cpu_check_rows(const char *op, const char *name, const struct zl_tensor *t, uint32_t dtypes,
                   struct cpu_rows *out)
{
    int rc = cpu_check_tensor(op, name, t, dtypes);
    if (rc < 0)
        return rc;
    int last = t->n_dims - 1;
    int64_t n = 1;
    size_t stride = 0;
    /* Outer dims collapse when each one's stride is the next one's times its size. */
    for (int i = last - 1; i >= 0; i--) {
        if (t->ne[i] == 1)
            continue;
        if (stride && (size_t)t->nb[i] != stride * (size_t)t->ne[i + 1])
            return cpu_host->error(ZL_EINVAL, "cpu %s: %s's outer dims do not form rows of one "
                                   "stride", op, name);
        if (!stride)
            stride = (size_t)t->nb[i];
        n *= t->ne[i];
    }
    out->data = t->data;
    out->n = n;
    out->d = t->ne[last];
    out->stride = stride ? stride : (size_t)t->ne[last] * cpu_dtype_size(t->dtype);
    out->dtype = t->dtype;
    return ZL_OK;
}

int cpu_check_3d(const char *op, const char *name, const struct zl_tensor *t, uint32_t dtypes)
{
    int rc = cpu_check_tensor(op, name, t, dtypes);
    if (rc < 0)
        return rc;
    if (t->n_dims != 3)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s has %d dims, want 3 [n, heads, head_dim]",
                               op, name, (int)t->n_dims);
    return ZL_OK;
}

int cpu_check_same_rows(const char *op, const char *na, const struct cpu_rows *a, const char *nb,
                        const struct cpu_rows *b)
{
    if (a->n != b->n || a->d != b->d)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s [%lld, %lld] vs %s [%lld, %lld]", op, na,
                               (long long)a->n, (long long)a->d, nb, (long long)b->n,
                               (long long)b->d);
    return ZL_OK;
}

int cpu_check_kv(const char *op, const struct zl_kv_cache *c, int32_t layer,
                 const struct zl_attn_batch *b, int64_t n_tok)
{
    if (!c || !b)
        return cpu_host->error(ZL_EINVAL, "cpu %s: %s is NULL", op, c ? "batch" : "cache");
    if (!c->base || c->block_size < 1 || c->n_layers < 1 || c->n_kv_heads < 1 ||
        c->head_dim < 1)
        return cpu_host->error(ZL_EINVAL, "cpu %s: cache has no base or a size < 1", op);
    if (c->dtype != ZL_DTYPE_F32 && c->dtype != ZL_DTYPE_F16 && c->dtype != ZL_DTYPE_BF16)
        return cpu_host->error(ZL_EINVAL, "cpu %s: cache dtype %s, want f32/f16/bf16", op,
                               dt_name(c->dtype));
    size_t need = (size_t)c->n_layers * 2 * (size_t)c->block_size * (size_t)c->n_kv_heads *
                  (size_t)c->head_dim * cpu_dtype_size(c->dtype);
    if (c->block_stride < need)
        return cpu_host->error(ZL_EINVAL, "cpu %s: cache block_stride %zu < %zu bytes a block "
                               "holds", op, c->block_stride, need);
    if (layer < 0 || layer >= c->n_layers)
        return cpu_host->error(ZL_EINVAL, "cpu %s: layer %d outside 0..%d", op, (int)layer,
                               (int)c->n_layers - 1);
    if (b->n_seqs < 0 || b->max_blocks < 0 || !b->q_start || (b->n_seqs && !b->kv_len) ||
        (b->n_seqs && b->max_blocks && !b->block_table) || (n_tok && !b->slot))
        return cpu_host->error(ZL_EINVAL, "cpu %s: batch has a negative count or a NULL array",
                               op);
    if (b->q_start[0] != 0 || b->q_start[b->n_seqs] != n_tok)
        return cpu_host->error(ZL_EINVAL, "cpu %s: batch q_start spans %d..%d, want 0..%lld "
                               "(the tokens)", op, (int)b->q_start[0], (int)b->q_start[b->n_seqs],
                               (long long)n_tok);
    int64_t cap = (int64_t)b->max_blocks * c->block_size;
    for (int32_t s = 0; s < b->n_seqs; s++) {
        int32_t n_new = b->q_start[s + 1] - b->q_start[s];
        if (n_new < 0 || b->kv_len[s] < n_new || b->kv_len[s] > cap)
            return cpu_host->error(ZL_EINVAL, "cpu %s: sequence %d has %d new tokens and kv_len "
                                   "%d (max %lld for max_blocks %d)", op, (int)s, (int)n_new,
                                   (int)b->kv_len[s], (long long)cap, (int)b->max_blocks);
        int32_t used = (b->kv_len[s] + c->block_size - 1) / c->block_size;
        for (int32_t j = 0; j < used; j++)
            if (b->block_table[(int64_t)s * b->max_blocks + j] < 0)
                return cpu_host->error(ZL_EINVAL, "cpu %s: sequence %d block %d has id %d", op,
                                       (int)s, (int)j,
                                       (int)b->block_table[(int64_t)s * b->max_blocks + j]);
    }
    for (int64_t i = 0; i < n_tok; i++)
        if (b->slot[i] < 0)
            return cpu_host->error(ZL_EINVAL, "cpu %s: token %lld has slot %d", op,
                                   (long long)i, (int)b->slot[i]);
    return ZL_OK;
}
