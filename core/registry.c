/* Plugin registry: dlopen, ABI checks, init, and the table of what plugins
 * registered.  Every refusal names the file and the reason and leaves the
 * registry as it was, so the daemon goes on with the other plugins. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/backend.h>
#include "registry-impl.h"

#ifndef ZL_PLUGINDIR
#define ZL_PLUGINDIR "/usr/local/lib/zlight"
#endif

#define WHO "registry"

const char *zl_registry_default_dir(void)
{
    return ZL_PLUGINDIR;
}

int zl_registry_create(const struct zl_config *cfg, struct zl_registry **out)
{
    struct zl_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return zl_error(ZL_ENOMEM, "out of memory creating the plugin registry");
    reg->cfg = cfg;
    if (cfg)
        zl_host_set_config(cfg);
    *out = reg;
    return ZL_OK;
}

/* Records why `file` was refused; the message also stays in zl_last_error(). */
static int reject(struct zl_registry *reg, const char *file, int status, const char *fmt, ...)
    ZL_PRINTF(4, 5);

static int reject(struct zl_registry *reg, const char *file, int status, const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);

    ZL_WARN(WHO, "rejected %s: %s", file, why);
    if (zl_grow((void **)&reg->rejects, &reg->cap_rejects, reg->n_rejects, sizeof *reg->rejects) == 0) {
        char *f = strdup(file), *r = strdup(why);
        if (f && r) {
            reg->rejects[reg->n_rejects++] = (struct zl_registry_reject){.file = f, .reason = r};
        } else {
            free(f);
            free(r);
        }
    }
    zl_error(status, "plugin %s: %s", file, why);
    return status;
}

static const struct zl_loaded_plugin *find_loaded(const struct zl_registry *reg, const char *real)
{
    for (size_t i = 0; i < reg->n_plugins; i++)
        if (strcmp(reg->plugins[i].realpath, real) == 0)
            return &reg->plugins[i];
    return NULL;
}

/* ABI checks on a descriptor; returns 0 or the reject status. */
static int check_desc(struct zl_registry *reg, const char *path, const struct zl_plugin_desc *d)
{
    if (!d)
        return reject(reg, path, ZL_EPLUGIN, "zl_plugin_entry() returned NULL");
    if (d->abi_version != ZL_PLUGIN_ABI_VERSION)
        return reject(reg, path, ZL_EABI,
                      "ABI version mismatch: plugin has %u, this zlight needs %u (rebuild the plugin against this zlight's headers)",
                      d->abi_version, ZL_PLUGIN_ABI_VERSION);
    if (!d->abi_tag || strcmp(d->abi_tag, ZL_PLUGIN_ABI_TAG) != 0)
        return reject(reg, path, ZL_EABI, "ABI tag mismatch: plugin built for '%s', host is '%s'",
                      d->abi_tag ? d->abi_tag : "(null)", ZL_PLUGIN_ABI_TAG);
    if (d->size < sizeof(struct zl_plugin_desc))
        return reject(reg, path, ZL_EABI, "descriptor size %u is smaller than %zu", d->size,
                      sizeof(struct zl_plugin_desc));
    if (d->api_minor > ZL_PLUGIN_API_MINOR)
        return reject(reg, path, ZL_EABI,
                      "plugin needs API minor %u but this zlight provides %u (upgrade zlight)",
                      d->api_minor, ZL_PLUGIN_API_MINOR);
    if (!d->name || !*d->name)
        return reject(reg, path, ZL_EPLUGIN, "descriptor has no name");
    if (!d->init)
        return reject(reg, path, ZL_EPLUGIN, "plugin '%s' has no init function", d->name);
    for (size_t i = 0; i < reg->n_plugins; i++)
        if (strcmp(reg->plugins[i].desc->name, d->name) == 0)
            return reject(reg, path, ZL_EEXIST, "duplicate plugin name '%s' (already loaded from %s)",
                          d->name, reg->plugins[i].file);
    return ZL_OK;
}

/* Runs init inside a registration window; commits its registrations only on
 * success.  Takes ownership of lp's strings either way. */
static int init_and_commit(struct zl_registry *reg, struct zl_loaded_plugin *lp)
{
    struct zl_host_session s;
    int rc = zl_grow((void **)&reg->plugins, &reg->cap_plugins, reg->n_plugins, sizeof *reg->plugins);
    if (rc == 0) {
        zl_clear_error();
        zl_host_session_begin(&s, reg, lp);
        rc = lp->desc->init(zl_host_table());
        zl_host_session_end(&s);
        if (rc == 0)
            rc = zl_grow((void **)&reg->entries, &reg->cap_entries,
                         reg->n_entries + s.n_pending, sizeof *reg->entries);
        if (rc < 0) {
            const char *msg = zl_last_error();
            char why[1024];
            snprintf(why, sizeof why, "%s", *msg ? msg : "no message");
            if (lp->desc->fini)
                lp->desc->fini();
            free(s.pending);
            reject(reg, lp->file, rc < 0 ? rc : ZL_EPLUGIN, "init of '%s' failed (%s): %s",
                   lp->desc->name, zl_status_str(rc), why);
            free(lp->file);
            free(lp->realpath);
            return rc;
        }
    } else {
        free(lp->file);
        free(lp->realpath);
        return rc;
    }
    memcpy(reg->entries + reg->n_entries, s.pending, s.n_pending * sizeof *s.pending);
    reg->n_entries += s.n_pending;
    free(s.pending);
    reg->plugins[reg->n_plugins++] = *lp;
    ZL_INFO(WHO, "loaded plugin '%s' %s from %s", lp->desc->name,
            lp->desc->version ? lp->desc->version : "", lp->file);
    return ZL_OK;
}

/* Returns 1 when newly loaded, 0 when it was loaded already, or a status. */
static int load_file(struct zl_registry *reg, const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return reject(reg, path, ZL_ENOTFOUND, "cannot open: %s", strerror(errno));
    if (find_loaded(reg, real))
        return 0;

    dlerror();
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        return reject(reg, path, ZL_EPLUGIN, "dlopen failed: %s", e ? e : "unknown error");
    }
    zl_plugin_entry_fn entry;
    *(void **)&entry = dlsym(h, ZL_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        dlclose(h);
        return reject(reg, path, ZL_EPLUGIN, "not a zlight plugin: no '%s' symbol",
                      ZL_PLUGIN_ENTRY_SYMBOL);
    }
    const struct zl_plugin_desc *d = entry();
    int rc = check_desc(reg, path, d);
    if (rc < 0) {
        dlclose(h);
        return rc;
    }
    struct zl_loaded_plugin lp = {.handle = h, .desc = d, .file = strdup(path), .realpath = strdup(real)};
    if (!lp.file || !lp.realpath) {
        free(lp.file);
        free(lp.realpath);
        dlclose(h);
        return zl_error(ZL_ENOMEM, "out of memory loading %s", path);
    }
    /* After init has run, the handle stays open even on failure: the plugin
     * may have left callbacks (atexit, threads) pointing into its code. */
    int rc2 = init_and_commit(reg, &lp);
    return rc2 < 0 ? rc2 : 1;
}

int zl_registry_load_file(struct zl_registry *reg, const char *path)
{
    int rc = load_file(reg, path);
    return rc < 0 ? rc : ZL_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_plugin_name(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0 && name[0] != '.';
}

int zl_registry_load_dir(struct zl_registry *reg, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return zl_error(ZL_ENOTFOUND, "plugin directory %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = ZL_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_plugin_name(de->d_name))
            continue;
        if ((rc = zl_grow((void **)&names, &cap, n, sizeof *names)) < 0)
            break;
        if (!(names[n] = strdup(de->d_name))) {
            rc = zl_error(ZL_ENOMEM, "out of memory listing %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    int loaded = 0;
    if (rc == 0) {
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            if (load_file(reg, path) > 0)
                loaded++;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc < 0 ? rc : loaded;
}

/* A configured path is a directory to scan or a single .so file. */
static int load_path(struct zl_registry *reg, const char *path, int must_exist)
{
    DIR *d = opendir(path);
    if (d) {
        closedir(d);
        return zl_registry_load_dir(reg, path);
    }
    if (errno == ENOTDIR)
        return load_file(reg, path) > 0 ? 1 : 0;
    if (must_exist)
        reject(reg, path, ZL_ENOTFOUND, "plugin path does not exist: %s", strerror(errno));
    else
        ZL_DEBUG(WHO, "plugin directory %s not present", path);
    return 0;
}

int zl_registry_load_search_path(struct zl_registry *reg, const char *const *paths, size_t n_paths)
{
    int total = 0, n;
    for (size_t i = 0; i < n_paths; i++)
        if ((n = load_path(reg, paths[i], 1)) > 0)
            total += n;

    const char *env = getenv("ZLIGHT_PLUGIN_PATH");
    if (env && *env) {
        char *copy = strdup(env), *save = NULL;
        for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok; tok = strtok_r(NULL, ":", &save))
            if ((n = load_path(reg, tok, 1)) > 0)
                total += n;
        free(copy);
    }

    const char *dir = getenv("ZLIGHT_PLUGIN_DIR");
    if ((n = load_path(reg, dir && *dir ? dir : zl_registry_default_dir(), 0)) > 0)
        total += n;
    return total;
}

size_t zl_registry_count(const struct zl_registry *reg)
{
    return reg->n_entries;
}

const struct zl_registry_entry *zl_registry_get(const struct zl_registry *reg, size_t i)
{
    return i < reg->n_entries ? &reg->entries[i] : NULL;
}

size_t zl_registry_reject_count(const struct zl_registry *reg)
{
    return reg->n_rejects;
}

const struct zl_registry_reject *zl_registry_reject_get(const struct zl_registry *reg, size_t i)
{
    return i < reg->n_rejects ? &reg->rejects[i] : NULL;
}

const void *zl_registry_find(const struct zl_registry *reg, enum zl_plugin_kind kind, const char *name)
{
    for (size_t i = 0; i < reg->n_entries; i++)
        if (reg->entries[i].kind == kind && strcmp(reg->entries[i].name, name) == 0)
            return reg->entries[i].ops;
    return NULL;
}

static int backend_score(const struct zl_backend_ops *be)
{
    return be->score ? be->score() : 0;
}

const struct zl_backend_ops *zl_registry_pick_backend(const struct zl_registry *reg, const char *name)
{
    const struct zl_backend_ops *best = NULL;
    int best_score = 0;
    char seen[512] = "";
    size_t len = 0;

    for (size_t i = 0; i < reg->n_entries; i++) {
        const struct zl_registry_entry *e = &reg->entries[i];
        if (e->kind != ZL_PLUGIN_BACKEND)
            continue;
        const struct zl_backend_ops *be = e->ops;
        int score = backend_score(be);
        if (len < sizeof seen)
            len += (size_t)snprintf(seen + len, sizeof seen - len, "%s%s (score %d)",
                                    len ? ", " : "", e->name, score);
        if (strcmp(name, "auto") != 0) {
            if (strcmp(name, e->name) != 0)
                continue;
            if (score <= 0) {
                zl_error(ZL_EUNSUPPORTED, "backend '%s' is not usable on this machine (score 0)", name);
                return NULL;
            }
            return be;
        }
        if (score > best_score) {
            best = be;
            best_score = score;
        }
    }
    if (!best)
        zl_error(ZL_ENOTFOUND, "no usable backend for '%s'; loaded backends: %s", name,
                 len ? seen : "none (check plugins.paths, $ZLIGHT_PLUGIN_PATH and the plugin directory)");
    return best;
}

void zl_registry_free(struct zl_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = reg->n_plugins; i-- > 0;) {
        if (reg->plugins[i].desc->fini)
            reg->plugins[i].desc->fini();
        free(reg->plugins[i].file);
        free(reg->plugins[i].realpath);
    }
    for (size_t i = 0; i < reg->n_rejects; i++) {
        free((char *)reg->rejects[i].file);
        free((char *)reg->rejects[i].reason);
    }
    free(reg->plugins);
    free(reg->entries);
    free(reg->rejects);
    if (reg->cfg)
        zl_host_set_config(NULL);
    free(reg);
}
