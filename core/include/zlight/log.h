/* Leveled, timestamped logging to stderr (or a callback).
 *
 *   zl_log_set_level(ZL_LOG_DEBUG);
 *   zl_log(ZL_LOG_INFO, "registry", "loaded %s", path);
 *   // 2026-11-24T20:31:07.123Z INFO  registry: loaded /usr/lib/zlight/cpu.so
 *   ZL_DEBUG("kv", "block %u freed", id);
 */
#ifndef ZLIGHT_LOG_H
#define ZLIGHT_LOG_H

#include <stdarg.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

enum zl_log_level {
    ZL_LOG_ERROR = 0,
    ZL_LOG_WARN = 1,
    ZL_LOG_INFO = 2,
    ZL_LOG_DEBUG = 3,
    ZL_LOG_TRACE = 4,
};

typedef void (*zl_log_sink_fn)(enum zl_log_level level, const char *line, void *user);

/* Messages above `level` are dropped.  Default ZL_LOG_INFO, or the value of
 * $ZLIGHT_LOG_LEVEL when set. */
ZL_API void zl_log_set_level(enum zl_log_level level);
ZL_API enum zl_log_level zl_log_get_level(void);

/* Parses "error|warn|info|debug|trace"; returns ZL_EINVAL on anything else. */
ZL_API int zl_log_level_parse(const char *name, enum zl_log_level *out);
ZL_API const char *zl_log_level_name(enum zl_log_level level);

/* Replaces the stderr sink (NULL restores it).  `line` has no newline. */
ZL_API void zl_log_set_sink(zl_log_sink_fn fn, void *user);

/* Thread-safe; one line per call, prefixed by UTC time, level and `who`. */
ZL_API void zl_log(enum zl_log_level level, const char *who, const char *fmt, ...) ZL_PRINTF(3, 4);
ZL_API void zl_logv(enum zl_log_level level, const char *who, const char *fmt, va_list ap);

#define ZL_ERROR(who, ...) zl_log(ZL_LOG_ERROR, who, __VA_ARGS__)
#define ZL_WARN(who, ...) zl_log(ZL_LOG_WARN, who, __VA_ARGS__)
#define ZL_INFO(who, ...) zl_log(ZL_LOG_INFO, who, __VA_ARGS__)
#define ZL_DEBUG(who, ...) \
    do { if (zl_log_get_level() >= ZL_LOG_DEBUG) zl_log(ZL_LOG_DEBUG, who, __VA_ARGS__); } while (0)

#ifdef __cplusplus
}
#endif
#endif
