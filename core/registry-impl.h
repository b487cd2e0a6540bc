/* Registry internals shared by registry.c and host.c. */
#ifndef ZLIGHT_REGISTRY_IMPL_H
#define ZLIGHT_REGISTRY_IMPL_H

#include <zlight/config.h>
#include <zlight/registry.h>

struct zl_loaded_plugin {
    void *handle;                       /* dlopen handle, kept for the process lifetime */
    const struct zl_plugin_desc *desc;
    char *file;                         /* path as given */
    char *realpath;                     /* canonical path, for "loaded twice" checks */
};

struct zl_registry {
    const struct zl_config *cfg;
    struct zl_loaded_plugin *plugins;
    size_t n_plugins, cap_plugins;
    struct zl_registry_entry *entries;
    size_t n_entries, cap_entries;
    struct zl_registry_reject *rejects;
    size_t n_rejects, cap_rejects;
};

/* The registration window: while a plugin's init() runs, host->register_ops
 * appends to `pending` (committed by the registry only if init succeeds). */
struct zl_host_session {
    const struct zl_registry *reg;
    const struct zl_loaded_plugin *plugin;
    struct zl_registry_entry *pending;
    size_t n_pending, cap_pending;
};

/* The host table handed to every plugin. */
const struct zl_host *zl_host_table(void);

/* Opens / closes the registration window of the calling thread. */
void zl_host_session_begin(struct zl_host_session *s, const struct zl_registry *reg,
                           const struct zl_loaded_plugin *plugin);
void zl_host_session_end(struct zl_host_session *s);

/* The config plugins read through config_get_* (the last registry's). */
void zl_host_set_config(const struct zl_config *cfg);

/* Grows *arr (of *cap elements of `size` bytes) to hold n + 1; 0 or ZL_ENOMEM. */
int zl_grow(void **arr, size_t *cap, size_t n, size_t size);

#endif
