/* Helpers of the CPU op tests: see test_cpu_ops.h. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/dtype.h>
#include <zlight/registry.h>
#include <zlight/status.h>

#include "test_cpu_ops.h"

const struct zl_backend_ops *be;
static struct zl_registry *reg;
static uint64_t seed, state;

void cpuops_setup(void)
{
    const char *env = getenv("ZL_TEST_SEED");
    /* whole seconds: the tests of one run (one process each) share it */
    seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    /* stderr, not cr_log: it must show in the test log even on a crash */
    fprintf(stderr, "cpu ops: seed %llu (ZL_TEST_SEED=%llu repeats this run)\n",
            (unsigned long long)seed, (unsigned long long)seed);
    cr_assert_eq(zl_registry_create(NULL, &reg), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_registry_load_file(reg, ZL_TOP_BUILDDIR "/kernels/cpu/.libs/cpu.so"), ZL_OK,
                 "%s", zl_last_error());
    be = zl_registry_find(reg, ZL_PLUGIN_BACKEND, "cpu");
    cr_assert_not_null(be, "no cpu backend registered");
    cr_assert_geq(be->size, sizeof(struct zl_backend_ops), "op table too old");
    rng_seed(0);
}

void cpuops_teardown(void)
{
    zl_registry_free(reg);
    reg = NULL;
    be = NULL;
}

int cpuops_n_modes(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   __builtin_cpu_supports("f16c")
               ? 2
               : 1;
}

const char *cpuops_mode(int m)
{
    return m == 0 ? "scalar" : "avx2";
}

struct zl_bctx *cpuops_open(int m, int threads)
{
    struct zl_backend_open_params p = {.size = sizeof p, .device = 0, .threads = threads};
    struct zl_bctx *ctx = NULL;
    setenv("ZLIGHT_CPU_SIMD", cpuops_mode(m), 1);
    cr_assert_eq(be->open(&p, &ctx), ZL_OK, "open %s: %s", cpuops_mode(m), zl_last_error());
    unsetenv("ZLIGHT_CPU_SIMD");
    return ctx;
}

void rng_seed(uint64_t stream)
{
    state = seed ^ (stream * 0x9e3779b97f4a7c15ull);
}

uint64_t rng_u64(void)
{
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);  /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float rng_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rng_u64() >> 11) * 0x1p-53);
}

int rng_int(int lo, int hi)
{
    return lo + (int)(rng_u64() % (uint64_t)(hi - lo + 1));
}

void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    cr_assert_not_null(p, "out of memory (%zu bytes)", bytes);
    return p;
}

void *rand_elems(enum zl_dtype dt, size_t n, float lo, float hi, double **ref)
{
    float *f = xmalloc(n * sizeof(float));
    void *out = xmalloc(zl_dtype_row_bytes(dt, n));
    for (size_t i = 0; i < n; i++)
        f[i] = rng_uniform(lo, hi);
    cr_assert_eq(zl_dtype_convert(dt, out, ZL_DTYPE_F32, f, n), ZL_OK);
    if (ref) {
        /* the exact values the backend sees: rounded to dt, back to f32 */
        cr_assert_eq(zl_dtype_convert(ZL_DTYPE_F32, f, dt, out, n), ZL_OK);
        *ref = xmalloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++)
            (*ref)[i] = f[i];
    }
    free(f);
    return out;
}

void make_tensor(struct zl_tensor *t, enum zl_dtype dt, int n_dims, const int64_t *shape,
                 void *data)
{
    cr_assert_eq(zl_tensor_init(t, dt, n_dims, shape, data, 0), ZL_OK, "%s", zl_last_error());
}

void make_view2(struct zl_tensor *t, enum zl_dtype dt, int64_t rows, int64_t cols, int64_t width,
                int64_t col0, void *buf)
{
    struct zl_tensor full;
    make_tensor(&full, dt, 2, (int64_t[]){rows, width}, buf);
    cr_assert_eq(zl_tensor_view(t, &full, 1, col0, cols), ZL_OK, "%s", zl_last_error());
}

void expect_close(const float *got, const double *ref, const double *tol, size_t n,
                  const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= tol[i])) {
            cr_expect(0, "%s: element %zu: got %.9g, want %.9g (err %.3g > tol %.3g)", what, i,
                      (double)got[i], ref[i], err, tol[i]);
            return;
        }
    }
}

void expect_error(int rc, int want, const char *needle, const char *what)
{
    cr_expect_eq(rc, want, "%s: rc %d (%s), want %d", what, rc, zl_last_error(), want);
    cr_expect(strstr(zl_last_error(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
              zl_last_error(), needle);
}
