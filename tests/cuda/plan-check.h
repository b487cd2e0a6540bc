/* The check counter of the CPU tests that walk a CUDA kernel's plan on the
 * host (test_chain_schedule, test_gemm_tma_plan: built by nvcc without a
 * GPU or Criterion).  check_at() names what the checks that follow are
 * about; the first 20 failures are printed with it. */
#ifndef ZL_TESTS_PLAN_CHECK_H
#define ZL_TESTS_PLAN_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int checks, failures;
static char check_ctx[128];

static void check_at(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(check_ctx, sizeof check_ctx, fmt, ap);
    va_end(ap);
}

static void check(bool ok, const char *what, long a = 0, long b = 0)
{
    checks++;
    if (ok)
        return;
    if (++failures <= 20)
        printf("FAIL %s: %s (%ld, %ld)\n", check_ctx, what, a, b);
}

#endif
