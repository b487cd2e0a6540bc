/* zlight: the whole public API in one include.
 *
 *   #include <zlight/zlight.h>
 *   struct zl_config *cfg;
 *   if (zl_config_load(argv[1], &cfg) < 0) return 1;
 *   zl_log(ZL_LOG_INFO, "app", "serving %s", cfg->model.path);
 */
#ifndef ZLIGHT_ZLIGHT_H
#define ZLIGHT_ZLIGHT_H

#include <zlight/status.h>
#include <zlight/log.h>
#include <zlight/dtype.h>
#include <zlight/tensor.h>
#include <zlight/memory.h>
#include <zlight/config.h>
#include <zlight/plugin.h>
#include <zlight/backend.h>
#include <zlight/registry.h>
#include <zlight/model.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "0.1.0" — the library's version. */
ZL_API const char *zl_version(void);

#ifdef __cplusplus
}
#endif
#endif
