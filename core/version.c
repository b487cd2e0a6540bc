/* Library version. */
#include "config.h"

#include <zlight/zlight.h>

const char *zl_version(void)
{
    return PACKAGE_VERSION;
}
