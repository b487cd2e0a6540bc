/* zlightd: the zlight daemon.  Loads the YAML config and the plugins, then
 * hands the engine to the frontend plugin. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include <zlight/gguf.h>
#include <zlight/hf_config.h>
#include <zlight/zlight.h>
#include <zlight/frontend.h>

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: zlightd --config FILE          serve the model described by FILE\n"
            "       zlightd --check-config FILE    validate FILE, print the resolved config\n"
            "                                      and the plugins it would use\n"
            "       zlightd --list-plugins [--config FILE]\n"
            "                                      list loaded plugins and rejected files\n"
            "       zlightd --version | --help\n"
            "\n"
            "Plugins are searched in: plugins.paths from the config, then the\n"
            "directories in $ZLIGHT_PLUGIN_PATH (colon separated), then %s\n"
            "($ZLIGHT_PLUGIN_DIR overrides that last one).\n",
            zl_registry_default_dir());
}

static void print_plugins(const struct zl_registry *reg, FILE *f)
{
    size_t n = zl_registry_count(reg);
    fprintf(f, "%-9s %-16s %-10s %s\n", "KIND", "NAME", "VERSION", "FILE");
    for (size_t i = 0; i < n; i++) {
        const struct zl_registry_entry *e = zl_registry_get(reg, i);
        fprintf(f, "%-9s %-16s %-10s %s\n", zl_plugin_kind_name(e->kind), e->name,
                e->version ? e->version : "-", e->file);
    }
    if (n == 0)
        fprintf(f, "(no plugins loaded)\n");
    size_t nr = zl_registry_reject_count(reg);
    if (nr) {
        fprintf(f, "\nrejected:\n");
        for (size_t i = 0; i < nr; i++) {
            const struct zl_registry_reject *r = zl_registry_reject_get(reg, i);
            fprintf(f, "  %s: %s\n", r->file, r->reason);
        }
    }
}

/* Loads the config (defaults when path is NULL) and the plugins it names. */
static int load_all(const char *path, struct zl_config **cfg, struct zl_registry **reg)
{
    int rc = path ? zl_config_load(path, cfg) : zl_config_defaults(cfg);
    if (rc < 0) {
        fprintf(stderr, "zlightd: %s\n", zl_last_error());
        return rc;
    }
    zl_log_set_level((*cfg)->log_level);
    if ((rc = zl_registry_create(*cfg, reg)) < 0) {
        fprintf(stderr, "zlightd: %s\n", zl_last_error());
        zl_config_free(*cfg);
        return rc;
    }
    zl_registry_load_search_path(*reg, (const char *const *)(*cfg)->plugins.paths,
                                 (size_t)(*cfg)->plugins.n_paths);
    return ZL_OK;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Reads the architecture of model.path (config.json or GGUF metadata). */
static int read_model_config(const char *path, struct zl_hf_config *hf)
{
    if (!has_suffix(path, ".gguf"))
        return zl_hf_config_load(path, hf);
    struct zl_gguf *g;
    int rc = zl_gguf_open(path, &g);
    if (rc < 0)
        return rc;
    rc = zl_hf_config_from_gguf(g, hf);
    zl_gguf_close(g);
    return rc;
}

/* The model line of --check-config; non-zero when the model cannot be
 * served (unreadable, or no plugin for its architecture). */
static int print_model_choice(const struct zl_config *cfg, const struct zl_registry *reg)
{
    if (!*cfg->model.path) {
        printf("#   model:    none (model.path is empty; serving needs one)\n");
        return 0;
    }
    if (strcmp(cfg->model.weights, "dummy") == 0 && has_suffix(cfg->model.path, ".gguf")) {
        printf("#   model:    NONE: weights: dummy needs an HF config.json, not a .gguf\n");
        return 1;
    }
    struct zl_hf_config hf;
    if (read_model_config(cfg->model.path, &hf) < 0) {
        printf("#   model:    NONE: %s\n", zl_last_error());
        return 1;
    }
    for (size_t i = 0; i < zl_registry_count(reg); i++) {
        const struct zl_registry_entry *e = zl_registry_get(reg, i);
        if (e->kind == ZL_PLUGIN_MODEL && strcmp(e->name, hf.model_type) == 0) {
            printf("#   model:    %s (%s) from %s\n", e->name, cfg->model.path, e->file);
            return 0;
        }
    }
    printf("#   model:    NONE: no model plugin handles model_type '%s' of %s\n", hf.model_type,
           cfg->model.path);
    return 1;
}

/* Prints which plugins the config would use; non-zero when one is missing. */
static int print_choice(const struct zl_config *cfg, const struct zl_registry *reg)
{
    printf("# plugins this config would use\n");
    int bad = print_model_choice(cfg, reg);
    const struct zl_backend_ops *be = zl_registry_pick_backend(reg, cfg->backend.name);
    if (be) {
        for (size_t i = 0; i < zl_registry_count(reg); i++) {
            const struct zl_registry_entry *e = zl_registry_get(reg, i);
            if (e->kind == ZL_PLUGIN_BACKEND && e->ops == (const void *)be)
                printf("#   backend:  %s (%s) from %s\n", e->name,
                       be->description ? be->description : "", e->file);
        }
    } else {
        printf("#   backend:  NONE: %s\n", zl_last_error());
        bad = 1;
    }
    const void *fe = zl_registry_find(reg, ZL_PLUGIN_FRONTEND, "openai");
    printf("#   frontend: %s\n", fe ? "openai" : "none loaded (serving is not possible)");
    return bad;
}

int main(int argc, char **argv)
{
    enum { OPT_CHECK = 1000, OPT_LIST };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, OPT_CHECK},
        {"list-plugins", no_argument, NULL, OPT_LIST},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *check = NULL;
    int list = 0, c;

    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case OPT_CHECK: check = optarg; break;
        case OPT_LIST: list = 1; break;
        case 'V': printf("zlightd %s (plugin ABI %u, API minor %u, %s)\n", zl_version(),
                         ZL_PLUGIN_ABI_VERSION, ZL_PLUGIN_API_MINOR, ZL_PLUGIN_ABI_TAG);
                  return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "zlightd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct zl_config *cfg;
    struct zl_registry *reg;
    if (check) {
        if (load_all(check, &cfg, &reg) < 0)
            return 1;
        printf("# %s: OK\n", check);
        zl_config_dump(cfg, stdout);
        int bad = print_choice(cfg, reg);
        zl_registry_free(reg);
        zl_config_free(cfg);
        return bad;
    }
    if (list) {
        if (load_all(config, &cfg, &reg) < 0)
            return 1;
        print_plugins(reg, stdout);
        zl_registry_free(reg);
        zl_config_free(cfg);
        return 0;
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    if (load_all(config, &cfg, &reg) < 0)
        return 1;
    int rc = 1;
    const struct zl_frontend_ops *fe = zl_registry_find(reg, ZL_PLUGIN_FRONTEND, "openai");
    if (!zl_registry_pick_backend(reg, cfg->backend.name))
        fprintf(stderr, "zlightd: %s\n", zl_last_error());
    else if (!fe)
        fprintf(stderr, "zlightd: no frontend plugin 'openai' is loaded (see plugins.paths, $ZLIGHT_PLUGIN_PATH; "
                        "--list-plugins says why a file was rejected)\n");
    else if (zl_frontend_serve(cfg, reg, fe, 10000) < 0)
        fprintf(stderr, "zlightd: %s\n", zl_last_error());
    else
        rc = 0;
    zl_registry_free(reg);
    zl_config_free(cfg);
    return rc;
}
