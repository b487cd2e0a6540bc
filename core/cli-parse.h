/* Option values of the command-line tools (zlight-generate, zlight-bench). */
#ifndef ZLIGHT_CLI_PARSE_H
#define ZLIGHT_CLI_PARSE_H

#include <errno.h>
#include <stdlib.h>
#include <zlight/status.h>

/* *out = the number `s` when it is all of `s` and within lo..hi, else
 * ZL_EINVAL naming the option. */
static inline int cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi))
        return zl_error(ZL_EINVAL, "%s: '%s' is not a number in %g..%g", opt, s, lo, hi);
    *out = v;
    return ZL_OK;
}

#endif
