/* One source, many deliberately good or broken plugins: the VARIANT_* macro
 * given by tests/registry.am picks what this build of it gets wrong. */
#include <stddef.h>
#include <zlight/backend.h>
#include <zlight/plugin.h>

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "good"
#endif

static const struct zl_host *host;

static int score_five(void) { return 5; }
static int score_zero(void) { return 0; }

__attribute__((unused)) static const struct zl_backend_ops good_backend = {
    .size = sizeof(struct zl_backend_ops),
    .description = "test backend",
    .score = score_five,
};

__attribute__((unused)) static const struct zl_backend_ops zero_backend = {
    .size = sizeof(struct zl_backend_ops),
    .description = "test backend that is never usable",
    .score = score_zero,
};

/* A model plugin registers opaque ops; only `size` matters to the registry. */
__attribute__((unused)) static const struct { uint32_t size; } model_ops = {sizeof model_ops};

static int test_init(const struct zl_host *h)
{
    host = h;
#if defined(VARIANT_INIT_FAIL)
    /* Registers first, then fails: the registry must drop the registration. */
    h->register_ops(ZL_PLUGIN_BACKEND, "initfail-backend", &good_backend);
    return h->error(ZL_EINVAL, "test plugin refuses to start: missing widget");
#elif defined(VARIANT_DUP_REG)
    return h->register_ops(ZL_PLUGIN_BACKEND, "testbe", &good_backend);
#elif defined(VARIANT_ZERO)
    return h->register_ops(ZL_PLUGIN_BACKEND, "zerobe", &zero_backend);
#else
    /* The model name comes from the config when one is loaded, so tests
     * can see that config access through the host works. */
    const char *model = "testmodel";
    if (h->config_get_str("model.served_name", &model) < 0 || !*model)
        model = "testmodel";
    int rc = h->register_ops(ZL_PLUGIN_BACKEND, "testbe", &good_backend);
    if (rc == 0)
        rc = h->register_ops(ZL_PLUGIN_MODEL, model, &model_ops);
    return rc;
#endif
}

#if defined(VARIANT_NO_ENTRY)
/* A shared library that is not a plugin at all. */
ZL_PLUGIN_EXPORT int not_a_plugin(void);
int not_a_plugin(void) { return test_init(NULL); }
#elif defined(VARIANT_NULL_ENTRY)
ZL_PLUGIN_EXPORT const struct zl_plugin_desc *zl_plugin_entry(void);
const struct zl_plugin_desc *zl_plugin_entry(void) { (void)test_init; return NULL; }
#else
#if defined(VARIANT_ABI)
#define ABI_VERSION (ZL_PLUGIN_ABI_VERSION + 41)
#else
#define ABI_VERSION ZL_PLUGIN_ABI_VERSION
#endif
#if defined(VARIANT_MINOR)
#define API_MINOR (ZL_PLUGIN_API_MINOR + 1)
#else
#define API_MINOR ZL_PLUGIN_API_MINOR
#endif
#if defined(VARIANT_TAG)
#define ABI_TAG "p16-pdp"
#else
#define ABI_TAG ZL_PLUGIN_ABI_TAG
#endif
static const struct zl_plugin_desc desc = {
    sizeof desc, ABI_VERSION, API_MINOR, 0, ABI_TAG, PLUGIN_NAME, "1.2.3",
    "registry test plugin", test_init, NULL,
};
ZL_PLUGIN_EXPORT const struct zl_plugin_desc *zl_plugin_entry(void);
const struct zl_plugin_desc *zl_plugin_entry(void) { return &desc; }
#endif
