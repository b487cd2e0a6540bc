/* A small harness for the GPU op tests (tests/cuda): the backend loaded
 * through the registry as a model would, device buffers through its own
 * memory hooks, a seeded RNG, float64 references and per-case PASS/FAIL
 * lines with a summary.  No Criterion: these programs run on the GPU
 * machine, under compute-sanitizer too, and exit 77 (automake's SKIP) when
 * the backend finds no device.
 *
 *   int main(int argc, char **argv) {
 *       int rc = ct_setup("ops");          // 77: no GPU, skip
 *       if (rc) return rc;
 *       ... ct_check("add f32 7x33", got, ZL_DTYPE_F32, ref, tol, n); ...
 *       return ct_finish();
 *   }
 *
 * ZL_TEST_BACKEND=cpu runs the same cases on the CPU backend (f32
 * activations only), which checks the references and tolerances on a
 * machine without a GPU.  ZL_TEST_PLUGIN names the plugin file;
 * ZL_TEST_SEED repeats a run. */
#ifndef ZL_CUDA_TEST_H
#define ZL_CUDA_TEST_H

#include <stddef.h>
#include <stdint.h>

#include <zlight/backend.h>
#include <zlight/tensor.h>

extern const struct zl_backend_ops *be;
extern struct zl_bctx *bctx;

/* Loads and opens the backend; 0, or 77 to skip, or 1 on a setup failure. */
int ct_setup(const char *suite);
/* Prints the summary, closes; the exit status (0 all passed, 1 otherwise). */
int ct_finish(void);
/* Prints "SKIP suite: why", closes; returns 77 (automake's SKIP) for main. */
int ct_skip(const char *why);
/* 1 when the backend is the CPU one (f32 activations only). */
int ct_is_cpu(void);

/* Activation dtypes to run each case with: f32, bf16, f16 (f32 on the CPU). */
int ct_n_act(void);
enum zl_dtype ct_act(int i);

/* RNG (splitmix64) seeded from ZL_TEST_SEED or the clock, printed once. */
uint64_t rng_u64(void);
double rng_uniform(double lo, double hi);
int rng_int(int lo, int hi);    /* lo..hi inclusive */
int32_t *rng_perm(int n);       /* 0..n-1 shuffled (new buffer, free it) */

/* A random paged KV layout: sequence s holds kv_len[s] keys, the last
 * q_start[s + 1] - q_start[s] of them the step's new rows.  Sets
 * *max_blocks (one spare column; -1 past a sequence's blocks) and *pool (3
 * blocks no sequence owns), returns the [n_seqs][max_blocks] table of
 * shuffled block ids and sets *slot to the new rows' cache slots
 * (q_start[n_seqs] of them); both are new buffers, free them. */
int32_t *ct_paged_table(int n_seqs, const int *kv_len, const int32_t *q_start, int bs,
                        int *max_blocks, int *pool, int32_t **slot);

void *xmalloc(size_t bytes);    /* exits on failure */

/* Device memory through the backend's hooks (exit on failure). */
void *dmalloc(size_t bytes);
void dfree(void *p);
void dput(void *dev, const void *host, size_t bytes);
/* dmalloc + dput. */
void *dnew(const void *host, size_t bytes);
void dget(void *host, const void *dev, size_t bytes);
/* Fills bytes with 0xff: NaN in f32, f16 and bf16, so unwritten outputs fail. */
void dpoison(void *dev, size_t bytes);

size_t esize(enum zl_dtype dt);
/* Unit roundoff of dt's rounding to nearest (2^-24, 2^-11, 2^-8). */
double ulp_half(enum zl_dtype dt);

/* n random values in [lo, hi) stored as dt in a new host buffer; vals (may be
 * NULL) gets what the backend will read, as doubles. */
void *rand_raw(enum zl_dtype dt, size_t n, double lo, double hi, double **vals);
/* raw elements of dt -> doubles (new buffer) / doubles -> dt, rounded once from f32. */
double *to_double(enum zl_dtype dt, const void *raw, size_t n);
void from_double(enum zl_dtype dt, void *raw, const double *v, size_t n);
/* v rounded to dt (through f32, as the kernels round f32 results). */
double round_dt(enum zl_dtype dt, double v);

/* Contiguous device tensor descriptor (device 0). */
void tensor(struct zl_tensor *t, enum zl_dtype dt, int n_dims, const int64_t *shape, void *data);
/* [rows, cols] view at column col0 of a [rows, width] buffer. */
void view2(struct zl_tensor *t, enum zl_dtype dt, int64_t rows, int64_t cols, int64_t width,
           int64_t col0, void *buf);

/* [n, heads, hd] view at element column col0 of rows `width` elements wide
 * (q, k or v inside fused QKV rows). */
void heads_view(struct zl_tensor *t, enum zl_dtype dt, int64_t n, int64_t heads, int64_t hd,
                int64_t width, int64_t col0, void *buf);

/* Op return code: ZL_OK expected, else FAIL with the message; returns rc == ZL_OK. */
int ct_ok(int rc, const char *what);
/* be->sync and ct_ok. */
int ct_sync(const char *what);

/* Compares n elements of dt at got (host) with ref within tol[i] (tol NULL:
 * exact).  Prints PASS with the worst err/tol, or FAIL with the first miss
 * (NaN fails).  Returns 1 on pass. */
int ct_check(const char *what, const void *got, enum zl_dtype dt, const double *ref,
             const double *tol, size_t n);
/* dget of n elements of dt at dev, then ct_check. */
int ct_check_dev(const char *what, const void *dev, enum zl_dtype dt, const double *ref,
                 const double *tol, size_t n);
/* Monotonic clock in seconds, and a qsort comparator for doubles (medians). */
double ct_now(void);
int ct_cmp_double(const void *a, const void *b);

/* Records a case result without values (e.g. an expected error). */
void ct_result(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
