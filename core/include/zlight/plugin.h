/* The plugin ABI: what a zlight plugin .so exports and what the host gives it.
 *
 *   static int my_init(const struct zl_host *host) {
 *       return host->register_ops(ZL_PLUGIN_BACKEND, "mybackend", &my_backend_ops);
 *   }
 *   ZL_PLUGIN_DEFINE("mybackend", "1.0.0", "an example backend", my_init, NULL);
 */
#ifndef ZLIGHT_PLUGIN_H
#define ZLIGHT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/dtype.h>
#include <zlight/log.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to these structs; the host loads only
 * plugins built with exactly the same value. */
#define ZL_PLUGIN_ABI_VERSION 1u

/* Bumped when the host appends members to struct zl_host or an ops struct.
 * A plugin built against minor M loads into a host with minor >= M. */
#define ZL_PLUGIN_API_MINOR 10u

/* Build facts that change struct layouts; must match the host's exactly. */
#if defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 8
#define ZL_ABI_PTR_ "p64"
#else
#define ZL_ABI_PTR_ "p32"
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ZL_ABI_ENDIAN_ "be"
#else
#define ZL_ABI_ENDIAN_ "le"
#endif
#define ZL_PLUGIN_ABI_TAG ZL_ABI_PTR_ "-" ZL_ABI_ENDIAN_

/* What a registration provides.  Append only. */
enum zl_plugin_kind {
    ZL_PLUGIN_MODEL = 1,    /* struct zl_model_ops (models/) */
    ZL_PLUGIN_QUANT = 2,    /* struct zl_quant_ops (quant/) */
    ZL_PLUGIN_BACKEND = 3,  /* struct zl_backend_ops (zlight/backend.h) */
    ZL_PLUGIN_COMM = 4,     /* struct zl_comm_ops (plugins/comm-*) */
    ZL_PLUGIN_FRONTEND = 5, /* struct zl_frontend_ops (plugins/openai) */
};

/* "model", "quant", ... ; "unknown" for other values. */
ZL_API const char *zl_plugin_kind_name(enum zl_plugin_kind kind);

/* Services the host hands to a plugin's init().  Plugins do not link
 * against libzlight; everything they need from the core is here.  Members
 * are only ever appended: check `size` before using one newer than the
 * plugin's ZL_PLUGIN_API_MINOR. */
struct zl_host {
    uint32_t size;          /* sizeof(struct zl_host) in the host */
    uint32_t api_minor;     /* the host's ZL_PLUGIN_API_MINOR */

    /* Logging; `who` is a short component name. */
    void (*log)(enum zl_log_level level, const char *who, const char *fmt, ...) ZL_PRINTF(3, 4);
    /* Sets the thread's error message; returns `status` (see status.h). */
    int (*error)(int status, const char *fmt, ...) ZL_PRINTF(2, 3);

    /* Host memory with the given alignment (a power of two, >= sizeof(void*));
     * NULL on failure.  Released with free_aligned. */
    void *(*alloc_aligned)(size_t bytes, size_t alignment);
    void (*free_aligned)(void *ptr);

    /* Typed read access to the resolved YAML config by dotted key
     * ("server.port", "engine.max_num_seqs").  ZL_ENOTFOUND for an unknown
     * key, ZL_EINVAL when the key has another type.  Strings stay valid for
     * the process lifetime. */
    int (*config_get_str)(const char *key, const char **out);
    int (*config_get_i64)(const char *key, int64_t *out);
    int (*config_get_f64)(const char *key, double *out);
    int (*config_get_bool)(const char *key, int *out);

    /* Registers `ops` (a static const struct starting with uint32_t size)
     * under `name` for `kind`.  Only valid during init().  ZL_EEXIST when the
     * name is taken for that kind; ZL_EINVAL for a NULL/empty name or ops
     * whose size is 0. */
    int (*register_ops)(enum zl_plugin_kind kind, const char *name, const void *ops);

    /* zl_dtype_convert (dtype.h) for plugins, which do not link libzlight. */
    int (*dtype_convert)(enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt, const void *src,
                         size_t n);
};

/* The one descriptor a plugin exports through zl_plugin_entry().  The first
 * four members never move, so any host can read and reject any plugin. */
struct zl_plugin_desc {
    uint32_t size;          /* sizeof(struct zl_plugin_desc) */
    uint32_t abi_version;   /* ZL_PLUGIN_ABI_VERSION at build time */
    uint32_t api_minor;     /* ZL_PLUGIN_API_MINOR at build time */
    uint32_t reserved;      /* 0 */
    const char *abi_tag;    /* ZL_PLUGIN_ABI_TAG at build time */
    const char *name;       /* plugin name, e.g. "cpu", "llama" */
    const char *version;    /* the plugin's own version string */
    const char *description;/* one line, may be NULL */
    /* Registers what the plugin provides.  Returns ZL_OK or a negative
     * status after host->error(); a failing init leaves nothing registered. */
    int (*init)(const struct zl_host *host);
    /* Optional (NULL = nothing to do); called at host shutdown. */
    void (*fini)(void);
};

#define ZL_PLUGIN_ENTRY_SYMBOL "zl_plugin_entry"
typedef const struct zl_plugin_desc *(*zl_plugin_entry_fn)(void);

#if defined(__GNUC__)
#define ZL_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ZL_PLUGIN_EXPORT
#endif

/* Defines the descriptor and the exported entry point.  Use once per .so. */
#define ZL_PLUGIN_DEFINE(name_, version_, description_, init_, fini_)      \
    static const struct zl_plugin_desc zl_plugin_desc_ = {                 \
        sizeof(struct zl_plugin_desc), ZL_PLUGIN_ABI_VERSION,              \
        ZL_PLUGIN_API_MINOR, 0, ZL_PLUGIN_ABI_TAG, (name_), (version_),    \
        (description_), (init_), (fini_)};                                 \
    ZL_PLUGIN_EXPORT const struct zl_plugin_desc *zl_plugin_entry(void);   \
    ZL_PLUGIN_EXPORT const struct zl_plugin_desc *zl_plugin_entry(void) {  \
        return &zl_plugin_desc_;                                           \
    }

#ifdef __cplusplus
}
#endif
#endif
