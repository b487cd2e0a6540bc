/* The service table (struct zl_host) that plugins receive in init(). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/dtype.h>
#include "registry-impl.h"

static _Thread_local struct zl_host_session *cur_session;
static const struct zl_config *host_cfg;

int zl_grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return ZL_OK;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return zl_error(ZL_ENOMEM, "out of memory growing a table to %zu entries", ncap);
    *arr = p;
    *cap = ncap;
    return ZL_OK;
}

void zl_host_set_config(const struct zl_config *cfg)
{
    host_cfg = cfg;
}

void zl_host_session_begin(struct zl_host_session *s, const struct zl_registry *reg,
                           const struct zl_loaded_plugin *plugin)
{
    memset(s, 0, sizeof *s);
    s->reg = reg;
    s->plugin = plugin;
    cur_session = s;
}

void zl_host_session_end(struct zl_host_session *s)
{
    if (cur_session == s)
        cur_session = NULL;
}

static void host_log(enum zl_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    zl_logv(level, who, fmt, ap);
    va_end(ap);
}

static int host_error(int status, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return zl_error(status, "%s", buf);
}

static void *host_alloc_aligned(size_t bytes, size_t alignment)
{
    void *p = NULL;
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)))
        return NULL;
    if (posix_memalign(&p, alignment, bytes ? bytes : 1) != 0)
        return NULL;
    return p;
}

static void host_free_aligned(void *p)
{
    free(p);
}

static int no_config(const char *key)
{
    return zl_error(ZL_ENOTFOUND, "config key '%s': no configuration was loaded", key);
}

static int host_config_get_str(const char *key, const char **out)
{
    return host_cfg ? zl_config_get_str(host_cfg, key, out) : no_config(key);
}

static int host_config_get_i64(const char *key, int64_t *out)
{
    return host_cfg ? zl_config_get_i64(host_cfg, key, out) : no_config(key);
}

static int host_config_get_f64(const char *key, double *out)
{
    return host_cfg ? zl_config_get_f64(host_cfg, key, out) : no_config(key);
}

static int host_config_get_bool(const char *key, int *out)
{
    return host_cfg ? zl_config_get_bool(host_cfg, key, out) : no_config(key);
}

static int same_registration(const struct zl_registry_entry *e, enum zl_plugin_kind kind,
                             const char *name)
{
    return e->kind == kind && strcmp(e->name, name) == 0;
}

static int host_register_ops(enum zl_plugin_kind kind, const char *name, const void *ops)
{
    struct zl_host_session *s = cur_session;
    if (!s)
        return zl_error(ZL_ESTATE, "register_ops('%s') called outside a plugin's init()",
                        name ? name : "(null)");
    if (!name || !*name)
        return zl_error(ZL_EINVAL, "register_ops: empty name");
    if (!ops || *(const uint32_t *)ops == 0)
        return zl_error(ZL_EINVAL, "register_ops('%s'): ops missing or its size member is 0", name);
    if (strcmp(zl_plugin_kind_name(kind), "unknown") == 0)
        return zl_error(ZL_EINVAL, "register_ops('%s'): unknown plugin kind %d", name, (int)kind);

    for (size_t i = 0; i < s->reg->n_entries; i++)
        if (same_registration(&s->reg->entries[i], kind, name))
            return zl_error(ZL_EEXIST, "duplicate %s name '%s' (already registered by %s)",
                            zl_plugin_kind_name(kind), name, s->reg->entries[i].file);
    for (size_t i = 0; i < s->n_pending; i++)
        if (same_registration(&s->pending[i], kind, name))
            return zl_error(ZL_EEXIST, "duplicate %s name '%s' registered twice by one plugin",
                            zl_plugin_kind_name(kind), name);

    if (zl_grow((void **)&s->pending, &s->cap_pending, s->n_pending, sizeof *s->pending) < 0)
        return ZL_ENOMEM;
    s->pending[s->n_pending++] = (struct zl_registry_entry){
        .kind = kind,
        .name = name,
        .ops = ops,
        .plugin = s->plugin->desc->name,
        .version = s->plugin->desc->version,
        .file = s->plugin->file,
    };
    return ZL_OK;
}

static const struct zl_host host_table = {
    .size = sizeof(struct zl_host),
    .api_minor = ZL_PLUGIN_API_MINOR,
    .log = host_log,
    .error = host_error,
    .alloc_aligned = host_alloc_aligned,
    .free_aligned = host_free_aligned,
    .config_get_str = host_config_get_str,
    .config_get_i64 = host_config_get_i64,
    .config_get_f64 = host_config_get_f64,
    .config_get_bool = host_config_get_bool,
    .register_ops = host_register_ops,
    .dtype_convert = zl_dtype_convert,
};

const struct zl_host *zl_host_table(void)
{
    return &host_table;
}

const char *zl_plugin_kind_name(enum zl_plugin_kind kind)
{
    switch (kind) {
    case ZL_PLUGIN_MODEL: return "model";
    case ZL_PLUGIN_QUANT: return "quant";
    case ZL_PLUGIN_BACKEND: return "backend";
    case ZL_PLUGIN_COMM: return "comm";
    case ZL_PLUGIN_FRONTEND: return "frontend";
    }
    return "unknown";
}
