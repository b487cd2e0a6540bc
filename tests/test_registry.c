/* Plugin registry: one test per way a plugin can be good or broken. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlight/zlight.h>

#define PLUGIN(name) ZL_TEST_BUILDDIR "/plugins/.libs/" name ".so"

static struct zl_registry *reg;

static void setup(void)
{
    unsetenv("ZLIGHT_PLUGIN_PATH");
    setenv("ZLIGHT_PLUGIN_DIR", "/nonexistent-zlight-plugindir", 1);
    cr_assert_eq(zl_registry_create(NULL, &reg), ZL_OK);
}

static void teardown(void)
{
    zl_registry_free(reg);
    reg = NULL;
}

TestSuite(registry, .init = setup, .fini = teardown);

/* Asserts that loading `file` fails with `status`, that the message names
 * the file and contains `why`, and that a reject was recorded. */
static void expect_reject(const char *file, int status, const char *why)
{
    size_t n_entries = zl_registry_count(reg), n_rejects = zl_registry_reject_count(reg);
    int rc = zl_registry_load_file(reg, file);
    cr_assert_eq(rc, status, "loading %s: got %s, want %s (%s)", file, zl_status_str(rc),
                 zl_status_str(status), zl_last_error());
    cr_assert(strstr(zl_last_error(), file), "message does not name the file: %s", zl_last_error());
    cr_assert(strstr(zl_last_error(), why), "message lacks '%s': %s", why, zl_last_error());
    cr_assert_eq(zl_registry_count(reg), n_entries, "a refused plugin left registrations");
    cr_assert_eq(zl_registry_reject_count(reg), n_rejects + 1);
    const struct zl_registry_reject *r = zl_registry_reject_get(reg, n_rejects);
    cr_assert_str_eq(r->file, file);
    cr_assert(strstr(r->reason, why), "reject reason lacks '%s': %s", why, r->reason);
}

Test(registry, good_plugin_registers_each_kind)
{
    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("good")), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_registry_count(reg), 2);
    const struct zl_registry_entry *e = zl_registry_get(reg, 0);
    cr_assert_eq(e->kind, ZL_PLUGIN_BACKEND);
    cr_assert_str_eq(e->name, "testbe");
    cr_assert_str_eq(e->plugin, "good");
    cr_assert_str_eq(e->version, "1.2.3");
    cr_assert_str_eq(e->file, PLUGIN("good"));
    cr_assert_eq(zl_registry_get(reg, 1)->kind, ZL_PLUGIN_MODEL);
    cr_assert_not_null(zl_registry_find(reg, ZL_PLUGIN_MODEL, "testmodel"));
    cr_assert_null(zl_registry_find(reg, ZL_PLUGIN_BACKEND, "testmodel"));
    cr_assert_null(zl_registry_get(reg, 2));
}

Test(registry, same_file_twice_is_a_noop)
{
    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("good")), ZL_OK);
    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("good")), ZL_OK);
    cr_assert_eq(zl_registry_count(reg), 2);
    cr_assert_eq(zl_registry_reject_count(reg), 0);
}

Test(registry, missing_file)
{
    expect_reject("/nonexistent/zz.so", ZL_ENOTFOUND, "cannot open");
}

Test(registry, not_an_elf_file)
{
    char dir[] = "/tmp/zl-reg-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/junk.so", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("this is not a shared object\n", f);
    fclose(f);
    expect_reject(path, ZL_EPLUGIN, "dlopen failed");
    unlink(path);
    rmdir(dir);
}

Test(registry, missing_dependency)
{
    expect_reject(PLUGIN("missingdep"), ZL_EPLUGIN, "libzlmissing.so");
}

Test(registry, no_entry_symbol)
{
    expect_reject(PLUGIN("noentry"), ZL_EPLUGIN, "no 'zl_plugin_entry' symbol");
}

Test(registry, entry_returns_null)
{
    expect_reject(PLUGIN("nullentry"), ZL_EPLUGIN, "returned NULL");
}

Test(registry, abi_version_mismatch)
{
    expect_reject(PLUGIN("abi"), ZL_EABI, "ABI version mismatch");
}

Test(registry, abi_tag_mismatch)
{
    expect_reject(PLUGIN("tag"), ZL_EABI, "ABI tag mismatch");
}

Test(registry, newer_api_minor)
{
    expect_reject(PLUGIN("minor"), ZL_EABI, "API minor");
}

Test(registry, init_failure_leaves_nothing)
{
    expect_reject(PLUGIN("initfail"), ZL_EINVAL, "missing widget");
    cr_assert(strstr(zl_last_error(), "init of 'initfail' failed"), "%s", zl_last_error());
    cr_assert_null(zl_registry_find(reg, ZL_PLUGIN_BACKEND, "initfail-backend"));
}

Test(registry, duplicate_plugin_name)
{
    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("good")), ZL_OK);
    expect_reject(PLUGIN("good2"), ZL_EEXIST, "duplicate plugin name 'good'");
}

Test(registry, duplicate_registration_name)
{
    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("good")), ZL_OK);
    expect_reject(PLUGIN("dupreg"), ZL_EEXIST, "duplicate backend name 'testbe'");
}

Test(registry, goes_on_after_failures)
{
    cr_assert_lt(zl_registry_load_file(reg, PLUGIN("abi")), 0);
    cr_assert_lt(zl_registry_load_file(reg, PLUGIN("noentry")), 0);
    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("good")), ZL_OK);
    cr_assert_eq(zl_registry_count(reg), 2);
    cr_assert_eq(zl_registry_reject_count(reg), 2);
}

Test(registry, load_dir_loads_good_and_records_bad)
{
    int n = zl_registry_load_dir(reg, ZL_TEST_BUILDDIR "/plugins/.libs");
    /* In name order: dupreg (registers "testbe") and zero load; good and good2
     * then clash with dupreg's "testbe"; the other seven are broken. */
    cr_assert_eq(n, 2, "loaded %d: %s", n, zl_last_error());
    cr_assert_not_null(zl_registry_find(reg, ZL_PLUGIN_BACKEND, "testbe"));
    cr_assert_not_null(zl_registry_find(reg, ZL_PLUGIN_BACKEND, "zerobe"));
    cr_assert_eq(zl_registry_reject_count(reg), 9);
    cr_assert_eq(zl_registry_load_dir(reg, "/nonexistent-dir"), ZL_ENOTFOUND);
}

/* Copies a built plugin into dir/name.so. */
static void copy_plugin(const char *src, const char *dir, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/%s.so'", src, dir, name);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(registry, search_order_config_then_env_then_plugindir)
{
    char a[] = "/tmp/zl-reg-a-XXXXXX", b[] = "/tmp/zl-reg-b-XXXXXX", c[] = "/tmp/zl-reg-c-XXXXXX";
    cr_assert(mkdtemp(a) && mkdtemp(b) && mkdtemp(c));
    copy_plugin(PLUGIN("good"), a, "first");   /* plugin "good" from the config path */
    copy_plugin(PLUGIN("good2"), b, "second"); /* plugin "good" again, from the env */
    copy_plugin(PLUGIN("zero"), c, "third");   /* plugindir */
    setenv("ZLIGHT_PLUGIN_PATH", b, 1);
    setenv("ZLIGHT_PLUGIN_DIR", c, 1);
    const char *paths[] = {a};

    int n = zl_registry_load_search_path(reg, paths, 1);
    cr_assert_eq(n, 2, "loaded %d", n);
    cr_assert_str_eq(zl_registry_get(reg, 0)->plugin, "good");
    cr_assert(strstr(zl_registry_get(reg, 0)->file, a), "first match must win");
    cr_assert_eq(zl_registry_reject_count(reg), 1);
    cr_assert(strstr(zl_registry_reject_get(reg, 0)->file, b));
    cr_assert(strstr(zl_registry_reject_get(reg, 0)->reason, "duplicate plugin name 'good'"));
    cr_assert_not_null(zl_registry_find(reg, ZL_PLUGIN_BACKEND, "zerobe"));

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", a, b, c);
    system(cmd);
}

Test(registry, missing_configured_path_is_reported)
{
    const char *paths[] = {"/nonexistent/plugins"};
    cr_assert_eq(zl_registry_load_search_path(reg, paths, 1), 0);
    cr_assert_eq(zl_registry_reject_count(reg), 1);
    cr_assert(strstr(zl_registry_reject_get(reg, 0)->reason, "does not exist"));
}

Test(registry, pick_backend)
{
    cr_assert_null(zl_registry_pick_backend(reg, "auto"));
    cr_assert(strstr(zl_last_error(), "none"), "%s", zl_last_error());

    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("zero")), ZL_OK);
    cr_assert_null(zl_registry_pick_backend(reg, "auto"));
    cr_assert(strstr(zl_last_error(), "zerobe (score 0)"), "%s", zl_last_error());
    cr_assert_null(zl_registry_pick_backend(reg, "zerobe"));
    cr_assert(strstr(zl_last_error(), "not usable"), "%s", zl_last_error());

    cr_assert_eq(zl_registry_load_file(reg, PLUGIN("good")), ZL_OK);
    const struct zl_backend_ops *be = zl_registry_pick_backend(reg, "auto");
    cr_assert_not_null(be);
    cr_assert_eq(be->score(), 5);
    cr_assert_eq(zl_registry_pick_backend(reg, "testbe"), be);
    cr_assert_null(zl_registry_pick_backend(reg, "cuda-that-is-not-here"));
    cr_assert(strstr(zl_last_error(), "testbe (score 5)"), "%s", zl_last_error());
}

Test(registry, plugins_read_the_config_through_the_host)
{
    struct zl_config *cfg;
    struct zl_registry *r2;
    cr_assert_eq(zl_config_load_string("model:\n  served_name: fromcfg\n", "inline.yaml", &cfg), ZL_OK,
                 "%s", zl_last_error());
    cr_assert_eq(zl_registry_create(cfg, &r2), ZL_OK);
    cr_assert_eq(zl_registry_load_file(r2, PLUGIN("good")), ZL_OK, "%s", zl_last_error());
    cr_assert_not_null(zl_registry_find(r2, ZL_PLUGIN_MODEL, "fromcfg"));
    zl_registry_free(r2);
    zl_config_free(cfg);
}

Test(registry, kind_names)
{
    cr_assert_str_eq(zl_plugin_kind_name(ZL_PLUGIN_BACKEND), "backend");
    cr_assert_str_eq(zl_plugin_kind_name(ZL_PLUGIN_FRONTEND), "frontend");
    cr_assert_str_eq(zl_plugin_kind_name((enum zl_plugin_kind)99), "unknown");
}
