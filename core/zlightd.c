/* zlightd: the zlight daemon.  Loads the YAML config and the plugins, then
 * hands the engine to the frontend plugin. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include <zlight/zlight.h>

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

/* Prints which plugins the config would use; non-zero when one is missing. */
static int print_choice(const struct zl_config *cfg, const struct zl_registry *reg)
{
    int bad = 0;
    printf("# plugins this config would use\n");
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
    if (!zl_registry_pick_backend(reg, cfg->backend.name))
        fprintf(stderr, "zlightd: %s\n", zl_last_error());
    else if (!zl_registry_find(reg, ZL_PLUGIN_FRONTEND, "openai"))
        fprintf(stderr, "zlightd: no frontend plugin 'openai' is loaded: this build cannot serve yet "
                        "(use --check-config or --list-plugins)\n");
    zl_registry_free(reg);
    zl_config_free(cfg);
    return rc;
}
