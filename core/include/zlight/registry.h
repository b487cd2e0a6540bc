/* The plugin registry: finds, loads and checks plugins, and keeps what they
 * register.
 *
 *   struct zl_registry *reg;
 *   zl_registry_create(&reg);
 *   zl_registry_load_search_path(reg, cfg->plugins.paths, cfg->plugins.n_paths);
 *   const struct zl_backend_ops *be = zl_registry_best_backend(reg);
 *   zl_registry_free(reg);
 */
#ifndef ZLIGHT_REGISTRY_H
#define ZLIGHT_REGISTRY_H

#include <stddef.h>
#include <zlight/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_registry;
struct zl_config;
struct zl_backend_ops;

/* One registration made by a loaded plugin. */
struct zl_registry_entry {
    enum zl_plugin_kind kind;
    const char *name;        /* registered name */
    const void *ops;         /* the plugin's ops struct for `kind` */
    const char *plugin;      /* the plugin's descriptor name */
    const char *version;     /* the plugin's version */
    const char *file;        /* the .so it came from */
};

/* A file that was tried and refused, with the reason. */
struct zl_registry_reject {
    const char *file;
    const char *reason;      /* one line naming what was wrong */
};

/* Creates an empty registry.  `cfg` may be NULL; when given, plugins read it
 * through zl_host.config_get_* (it must outlive the registry). */
ZL_API int zl_registry_create(const struct zl_config *cfg, struct zl_registry **out);

/* Loads one plugin file.  On failure returns a negative status, records a
 * reject naming the file and the reason (also in zl_last_error()), and leaves
 * the registry as it was.  Loading the same file twice is a no-op. */
ZL_API int zl_registry_load_file(struct zl_registry *reg, const char *path);

/* Loads every *.so in `dir` (sorted by name).  Individual failures are
 * recorded as rejects and logged; returns the number loaded, or ZL_ENOTFOUND
 * when `dir` cannot be read. */
ZL_API int zl_registry_load_dir(struct zl_registry *reg, const char *dir);

/* The documented search order: each of `paths` (a directory or a .so file),
 * then each directory in $ZLIGHT_PLUGIN_PATH (colon separated), then the
 * installed plugindir ($ZLIGHT_PLUGIN_DIR overrides it, for tests).
 * Returns the number of plugins loaded (possibly 0); never fails because a
 * single plugin failed. */
ZL_API int zl_registry_load_search_path(struct zl_registry *reg, const char *const *paths,
                                        size_t n_paths);

ZL_API size_t zl_registry_count(const struct zl_registry *reg);
ZL_API const struct zl_registry_entry *zl_registry_get(const struct zl_registry *reg, size_t i);
ZL_API size_t zl_registry_reject_count(const struct zl_registry *reg);
ZL_API const struct zl_registry_reject *zl_registry_reject_get(const struct zl_registry *reg,
                                                                size_t i);

/* The ops registered under (kind, name), or NULL. */
ZL_API const void *zl_registry_find(const struct zl_registry *reg, enum zl_plugin_kind kind,
                                    const char *name);

/* Backend choice for `backend: NAME|auto`: the named backend when usable
 * (score() > 0), or for "auto" the highest score.  NULL and an error naming
 * the candidates and their scores when none fits. */
ZL_API const struct zl_backend_ops *zl_registry_pick_backend(const struct zl_registry *reg,
                                                             const char *name);

/* The installed plugin directory compiled into libzlight. */
ZL_API const char *zl_registry_default_dir(void);

/* Calls every loaded plugin's fini, then frees.  NULL-safe. */
ZL_API void zl_registry_free(struct zl_registry *reg);

#ifdef __cplusplus
}
#endif
#endif
