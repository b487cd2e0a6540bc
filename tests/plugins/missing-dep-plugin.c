/* A valid plugin whose dependency cannot be found when it is loaded. */
#include <zlight/plugin.h>

int zl_test_missing_dep(void);

static int init(const struct zl_host *h)
{
    return zl_test_missing_dep() == 42 ? ZL_OK : h->error(ZL_EINVAL, "unreachable");
}

ZL_PLUGIN_DEFINE("missingdep", "0.0.1", "plugin with a missing shared library", init, NULL)
