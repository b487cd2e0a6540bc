/* zlight status codes and the thread-local last-error message.
 *
 *   if (zl_config_load(path, &cfg) < 0) {
 *       fprintf(stderr, "zlightd: %s\n", zl_last_error());
 *       return 1;
 *   }
 *   // a callee reports: return zl_error(ZL_EINVAL, "%s:%d: bad key", f, l);
 */
#ifndef ZLIGHT_STATUS_H
#define ZLIGHT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ZL_API __attribute__((visibility("default")))
#define ZL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ZL_API
#define ZL_PRINTF(f, a)
#endif

/* Every fallible function returns ZL_OK (0) or one of these negative values
 * and leaves a human-readable reason in zl_last_error().  Append only. */
enum zl_status {
    ZL_OK = 0,
    ZL_EINVAL = -1,      /* bad argument or bad input (config, file, request) */
    ZL_ENOMEM = -2,      /* host or device allocation failed, or a region is full */
    ZL_EIO = -3,         /* file or device I/O failed */
    ZL_ENOTFOUND = -4,   /* file, key, plugin or tensor does not exist */
    ZL_EEXIST = -5,      /* duplicate name */
    ZL_EABI = -6,        /* plugin ABI / API mismatch */
    ZL_EUNSUPPORTED = -7,/* valid but not supported by this build or device */
    ZL_ERANGE = -8,      /* value out of range / overflow */
    ZL_EBACKEND = -9,    /* a compute backend call failed (CUDA, cuBLAS, ...) */
    ZL_EPLUGIN = -10,    /* a plugin failed to load or initialise */
    ZL_ESTATE = -11,     /* call not valid in the object's current state */
};

/* Short constant name of a status ("EINVAL"), "unknown" for others. */
ZL_API const char *zl_status_str(int status);

/* Records a printf-formatted reason for the calling thread and returns
 * `status` unchanged, so a caller can `return zl_error(ZL_EINVAL, ...)`. */
ZL_API int zl_error(int status, const char *fmt, ...) ZL_PRINTF(2, 3);

/* Prepends "prefix: " to the calling thread's current message (adding
 * context on the way up) and returns `status`. */
ZL_API int zl_error_wrap(int status, const char *fmt, ...) ZL_PRINTF(2, 3);

/* The calling thread's last message; "" when none.  Valid until the next
 * zl_error* call on this thread. */
ZL_API const char *zl_last_error(void);

/* Clears the calling thread's message. */
ZL_API void zl_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
