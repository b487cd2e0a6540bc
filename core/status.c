/* Status names and the thread-local last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <zlight/status.h>

#define ZL_ERRMSG_MAX 1024

static _Thread_local char errmsg[ZL_ERRMSG_MAX];

const char *zl_status_str(int status)
{
    switch (status) {
    case ZL_OK: return "OK";
    case ZL_EINVAL: return "EINVAL";
    case ZL_ENOMEM: return "ENOMEM";
    case ZL_EIO: return "EIO";
    case ZL_ENOTFOUND: return "ENOTFOUND";
    case ZL_EEXIST: return "EEXIST";
    case ZL_EABI: return "EABI";
    case ZL_EUNSUPPORTED: return "EUNSUPPORTED";
    case ZL_ERANGE: return "ERANGE";
    case ZL_EBACKEND: return "EBACKEND";
    case ZL_EPLUGIN: return "EPLUGIN";
    case ZL_ESTATE: return "ESTATE";
    }
    return "unknown";
}

int zl_error(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return status;
}

int zl_error_wrap(int status, const char *fmt, ...)
{
    char prefix[ZL_ERRMSG_MAX], old[ZL_ERRMSG_MAX], joined[2 * ZL_ERRMSG_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    /* The joined text may exceed the buffer; keep its head, cut the tail. */
    snprintf(joined, sizeof joined, old[0] ? "%s: %s" : "%s", prefix, old);
    memcpy(errmsg, joined, sizeof errmsg - 1);
    errmsg[sizeof errmsg - 1] = '\0';
    return status;
}

const char *zl_last_error(void)
{
    return errmsg;
}

void zl_clear_error(void)
{
    errmsg[0] = '\0';
}
