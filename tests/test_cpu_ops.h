/* Shared helpers of the CPU op tests (test_cpu_ops*.c): the plugin loaded
 * through the registry as a model would, a seeded RNG, tensors and checks.
 *
 *   TestSuite(linear, .init = cpuops_setup, .fini = cpuops_teardown);
 *   for (int m = 0; m < cpuops_n_modes(); m++) {
 *       struct zl_bctx *ctx = cpuops_open(m, 3);
 *       ...  be->linear(ctx, &out, &x, &w, NULL) ...  cpuops_expect_close(...);
 *       be->close(ctx);
 *   }
 */
#ifndef ZL_TEST_CPU_OPS_H
#define ZL_TEST_CPU_OPS_H

#include <stdint.h>
#include <zlight/backend.h>
#include <zlight/tensor.h>

/* The op table of the "cpu" backend, valid between setup and teardown. */
extern const struct zl_backend_ops *be;

void cpuops_setup(void);
void cpuops_teardown(void);

/* Kernel modes to run every case in: "scalar", and "avx2" when the CPU has it. */
int cpuops_n_modes(void);
const char *cpuops_mode(int m);
/* Opens an instance with kernels of mode m and `threads` threads (asserts). */
struct zl_bctx *cpuops_open(int m, int threads);

/* Deterministic RNG seeded from ZL_TEST_SEED or the clock (printed once). */
void rng_seed(uint64_t stream);
uint64_t rng_u64(void);
float rng_uniform(float lo, float hi);
int rng_int(int lo, int hi);    /* lo..hi inclusive */

/* Allocations that abort the test on failure (exact sizes: ASan sees overruns). */
void *xmalloc(size_t bytes);

/* n random values in [lo, hi) rounded to dtype dt into a new buffer of that
 * dtype; *ref (may be NULL) gets the exact values as doubles. */
void *rand_elems(enum zl_dtype dt, size_t n, float lo, float hi, double **ref);

/* t = contiguous tensor of `shape` (n_dims) over data, on device 0. */
void make_tensor(struct zl_tensor *t, enum zl_dtype dt, int n_dims, const int64_t *shape,
                 void *data);
/* A 2-D [rows, cols] view starting at column `col0` of a wider [rows, width]
 * buffer (for strided operands). */
void make_view2(struct zl_tensor *t, enum zl_dtype dt, int64_t rows, int64_t cols, int64_t width,
                int64_t col0, void *buf);

/* Expects |got[i] - ref[i]| <= tol[i] for all i (reports the first miss). */
void expect_close(const float *got, const double *ref, const double *tol, size_t n,
                  const char *what);

/* Expects `rc` to be `want` and zl_last_error() to contain `needle`. */
void expect_error(int rc, int want, const char *needle, const char *what);

#endif
