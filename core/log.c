/* Leveled logging: one formatted line per call, written atomically. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <zlight/log.h>

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

static pthread_once_t level_once = PTHREAD_ONCE_INIT;
static volatile int cur_level = ZL_LOG_INFO;
static zl_log_sink_fn sink_fn;
static void *sink_user;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;

static void level_from_env(void)
{
    enum zl_log_level lv;
    const char *env = getenv("ZLIGHT_LOG_LEVEL");
    if (env && zl_log_level_parse(env, &lv) == ZL_OK)
        cur_level = (int)lv;
}

void zl_log_set_level(enum zl_log_level level)
{
    pthread_once(&level_once, level_from_env);
    cur_level = (int)level;
}

enum zl_log_level zl_log_get_level(void)
{
    pthread_once(&level_once, level_from_env);
    return (enum zl_log_level)cur_level;
}

int zl_log_level_parse(const char *name, enum zl_log_level *out)
{
    for (size_t i = 0; name && i < sizeof level_names / sizeof *level_names; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum zl_log_level)i;
            return ZL_OK;
        }
    }
    if (name && strcasecmp(name, "warning") == 0) {
        *out = ZL_LOG_WARN;
        return ZL_OK;
    }
    return zl_error(ZL_EINVAL, "unknown log level '%s' (expected error, warn, info, debug or trace)",
                    name ? name : "(null)");
}

const char *zl_log_level_name(enum zl_log_level level)
{
    if ((unsigned)level < sizeof level_names / sizeof *level_names)
        return level_names[level];
    return "unknown";
}

void zl_log_set_sink(zl_log_sink_fn fn, void *user)
{
    pthread_mutex_lock(&sink_lock);
    sink_fn = fn;
    sink_user = user;
    pthread_mutex_unlock(&sink_lock);
}

void zl_logv(enum zl_log_level level, const char *who, const char *fmt, va_list ap)
{
    if ((int)level > (int)zl_log_get_level())
        return;

    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, zl_log_level_name(level),
                     who ? who : "zlight");
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);

    pthread_mutex_lock(&sink_lock);
    if (sink_fn)
        sink_fn(level, line, sink_user);
    else
        fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&sink_lock);
}

void zl_log(enum zl_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    zl_logv(level, who, fmt, ap);
    va_end(ap);
}
