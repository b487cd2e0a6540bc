/* The GPU op test harness: see cuda-test.h. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/dtype.h>
#include <zlight/registry.h>
#include <zlight/status.h>

#include "cuda-test.h"

const struct zl_backend_ops *be;
struct zl_bctx *bctx;

static struct zl_registry *reg;
static const char *suite_name;
static const char *backend_name = "cuda";
static uint64_t rng_state;
static int n_pass, n_fail;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FATAL %s: ", suite_name ? suite_name : "test");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

int ct_setup(const char *suite)
{
    suite_name = suite;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *b = getenv("ZL_TEST_BACKEND");
    if (b && *b)
        backend_name = b;
    char path[4096];
    const char *plugin = getenv("ZL_TEST_PLUGIN");
    if (!plugin || !*plugin) {
        snprintf(path, sizeof path, "%s/kernels/%s/.libs/%s.so", ZL_TOP_BUILDDIR, backend_name,
                 backend_name);
        plugin = path;
    }
    const char *env = getenv("ZL_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
    printf("%s: backend %s (%s), seed %llu (ZL_TEST_SEED=%llu repeats it)\n", suite,
           backend_name, plugin, (unsigned long long)seed, (unsigned long long)seed);
    if (zl_registry_create(NULL, &reg) != ZL_OK || zl_registry_load_file(reg, plugin) != ZL_OK) {
        fprintf(stderr, "%s: cannot load %s: %s\n", suite, plugin, zl_last_error());
        return 1;
    }
    be = zl_registry_find(reg, ZL_PLUGIN_BACKEND, backend_name);
    if (!be || be->size < sizeof(struct zl_backend_ops)) {
        fprintf(stderr, "%s: no %s backend with the full op table in %s\n", suite, backend_name,
                plugin);
        return 1;
    }
    if (be->score() == 0) {
        printf("SKIP %s: backend %s sees no device here\n", suite, backend_name);
        zl_registry_free(reg);
        return 77;
    }
    struct zl_backend_open_params p = {.size = sizeof p, .device = 0, .threads = 0};
    if (be->open(&p, &bctx) != ZL_OK) {
        fprintf(stderr, "%s: open: %s\n", suite, zl_last_error());
        return 1;
    }
    return 0;
}

int ct_finish(void)
{
    be->close(bctx);
    bctx = NULL;
    zl_registry_free(reg);
    printf("SUMMARY %s: %d passed, %d failed\n", suite_name, n_pass, n_fail);
    return n_fail ? 1 : 0;
}

int ct_skip(const char *why)
{
    printf("SKIP %s: %s\n", suite_name, why);
    ct_finish();
    return 77;
}

int ct_is_cpu(void)
{
    return !strcmp(backend_name, "cpu");
}

int ct_n_act(void)
{
    return ct_is_cpu() ? 1 : 3;
}

enum zl_dtype ct_act(int i)
{
    static const enum zl_dtype dts[] = {ZL_DTYPE_F32, ZL_DTYPE_BF16, ZL_DTYPE_F16};
    return dts[i];
}

uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_uniform(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(rng_u64() >> 11) * 0x1p-53);
}

int rng_int(int lo, int hi)
{
    return lo + (int)(rng_u64() % (uint64_t)(hi - lo + 1));
}

int32_t *rng_perm(int n)
{
    int32_t *p = xmalloc((size_t)n * sizeof *p);
    for (int i = 0; i < n; i++)
        p[i] = i;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = rng_int(0, i);
        int32_t t = p[i];
        p[i] = p[j], p[j] = t;
    }
    return p;
}

int32_t *ct_paged_table(int n_seqs, const int *kv_len, const int32_t *q_start, int bs,
                        int *max_blocks, int *pool, int32_t **slot)
{
    int used = 0, cols = 1;
    for (int s = 0; s < n_seqs; s++) {
        int nb = (kv_len[s] + bs - 1) / bs;
        used += nb;
        cols = nb + 1 > cols ? nb + 1 : cols;
    }
    int32_t *perm = rng_perm(used + 3);
    int32_t *table = xmalloc((size_t)n_seqs * (size_t)cols * sizeof *table);
    int n_tok = q_start[n_seqs];
    *slot = xmalloc((size_t)(n_tok > 0 ? n_tok : 1) * sizeof **slot);
    int next = 0;
    for (int s = 0; s < n_seqs; s++) {
        int32_t *row = table + (size_t)s * (size_t)cols;
        int nb = (kv_len[s] + bs - 1) / bs;
        for (int j = 0; j < cols; j++)
            row[j] = j < nb ? perm[next++] : -1;
        int rows = q_start[s + 1] - q_start[s];
        for (int t = 0; t < rows; t++) {
            int p = kv_len[s] - rows + t;
            (*slot)[q_start[s] + t] = row[p / bs] * bs + p % bs;
        }
    }
    free(perm);
    *max_blocks = cols;
    *pool = used + 3;
    return table;
}

void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        die("out of host memory (%zu bytes)", bytes);
    return p;
}

void *dmalloc(size_t bytes)
{
    void *p = NULL;
    if (be->mem_alloc(0, bytes ? bytes : 16, &p) != ZL_OK)
        die("mem_alloc(%zu): %s", bytes, zl_last_error());
    return p;
}

void dfree(void *p)
{
    be->mem_free(0, p);
}

void dput(void *dev, const void *host, size_t bytes)
{
    if (bytes && be->copy_to_device(0, dev, host, bytes) != ZL_OK)
        die("copy_to_device: %s", zl_last_error());
}

void *dnew(const void *host, size_t bytes)
{
    void *d = dmalloc(bytes);
    dput(d, host, bytes);
    return d;
}

void dget(void *host, const void *dev, size_t bytes)
{
    /* the instance's queue first: the hooks do not know about it */
    if (be->sync(bctx) != ZL_OK)
        die("sync before copy_to_host: %s", zl_last_error());
    if (bytes && be->copy_to_host(0, host, dev, bytes) != ZL_OK)
        die("copy_to_host: %s", zl_last_error());
}

void dpoison(void *dev, size_t bytes)
{
    void *h = xmalloc(bytes);
    memset(h, 0xff, bytes);
    dput(dev, h, bytes);
    free(h);
}

size_t esize(enum zl_dtype dt)
{
    return zl_dtype_row_bytes(dt, 1);
}

double ulp_half(enum zl_dtype dt)
{
    return dt == ZL_DTYPE_BF16 ? 0x1p-8 : dt == ZL_DTYPE_F16 ? 0x1p-11 : 0x1p-24;
}

double *to_double(enum zl_dtype dt, const void *raw, size_t n)
{
    float *f = xmalloc(n * sizeof(float));
    double *d = xmalloc(n * sizeof(double));
    if (zl_dtype_convert(ZL_DTYPE_F32, f, dt, raw, n) != ZL_OK)
        die("convert: %s", zl_last_error());
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

void from_double(enum zl_dtype dt, void *raw, const double *v, size_t n)
{
    float *f = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    if (zl_dtype_convert(dt, raw, ZL_DTYPE_F32, f, n) != ZL_OK)
        die("convert: %s", zl_last_error());
    free(f);
}

double round_dt(enum zl_dtype dt, double v)
{
    float f = (float)v;
    uint16_t h;
    if (dt == ZL_DTYPE_BF16) {
        zl_dtype_convert(ZL_DTYPE_BF16, &h, ZL_DTYPE_F32, &f, 1);
        zl_dtype_convert(ZL_DTYPE_F32, &f, ZL_DTYPE_BF16, &h, 1);
    } else if (dt == ZL_DTYPE_F16) {
        zl_dtype_convert(ZL_DTYPE_F16, &h, ZL_DTYPE_F32, &f, 1);
        zl_dtype_convert(ZL_DTYPE_F32, &f, ZL_DTYPE_F16, &h, 1);
    }
    return f;
}

void *rand_raw(enum zl_dtype dt, size_t n, double lo, double hi, double **vals)
{
    double *v = xmalloc(n * sizeof(double));
    void *raw = xmalloc(n * esize(dt));
    for (size_t i = 0; i < n; i++)
        v[i] = rng_uniform(lo, hi);
    from_double(dt, raw, v, n);
    free(v);
    if (vals)
        *vals = to_double(dt, raw, n);
    return raw;
}

void tensor(struct zl_tensor *t, enum zl_dtype dt, int n_dims, const int64_t *shape, void *data)
{
    if (zl_tensor_init(t, dt, n_dims, shape, data, 0) != ZL_OK)
        die("tensor: %s", zl_last_error());
}

void view2(struct zl_tensor *t, enum zl_dtype dt, int64_t rows, int64_t cols, int64_t width,
           int64_t col0, void *buf)
{
    struct zl_tensor full;
    tensor(&full, dt, 2, (int64_t[]){rows, width}, buf);
    if (zl_tensor_view(t, &full, 1, col0, cols) != ZL_OK)
        die("view: %s", zl_last_error());
}

void heads_view(struct zl_tensor *t, enum zl_dtype dt, int64_t n, int64_t heads, int64_t hd,
                int64_t width, int64_t col0, void *buf)
{
    tensor(t, dt, 3, (int64_t[]){n, heads, hd}, (char *)buf + (size_t)col0 * esize(dt));
    t->nb[0] = width * (int64_t)esize(dt);
}

void ct_result(int pass, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %s: ", pass ? "PASS" : "FAIL", suite_name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (pass)
        n_pass++;
    else
        n_fail++;
}

int ct_ok(int rc, const char *what)
{
    if (rc == ZL_OK)
        return 1;
    ct_result(0, "%s: rc %d (%s)", what, rc, zl_last_error());
    return 0;
}

int ct_sync(const char *what)
{
    return ct_ok(be->sync(bctx), what);
}

int ct_check(const char *what, const void *got, enum zl_dtype dt, const double *ref,
             const double *tol, size_t n)
{
    double *g = to_double(dt, got, n), worst = 0;
    size_t bad = n, worst_i = 0;
    /* With a tolerance: the output's own rounding has an absolute floor in
     * the subnormal range (f16 spacing there is 2^-24), and rounding the
     * computed value scales the callers' arithmetic bounds by (1 + u_T):
     * the 1/128 margin covers that for every dtype. */
    double floor = dt == ZL_DTYPE_F16 ? 0x1p-25 : dt == ZL_DTYPE_BF16 ? 0x1p-134 : 0x1p-150;
    for (size_t i = 0; i < n && bad == n; i++) {
        double err = fabs(g[i] - ref[i]), t = tol ? tol[i] * (1 + 0x1p-7) + floor : 0;
        if (!(err <= t))    /* NaN (an unwritten, poisoned element) fails here */
            bad = i;
        else if (t > 0 && err / t > worst)
            worst = err / t, worst_i = i;
    }
    if (bad < n)
        ct_result(0, "%s: element %zu of %zu: got %.9g, want %.9g (err %.3g > tol %.3g)", what,
                  bad, n, g[bad], ref[bad], fabs(g[bad] - ref[bad]),
                  tol ? tol[bad] * (1 + 0x1p-7) + floor : 0.0);
    else
        ct_result(1, "%s (%zu elements, worst err/tol %.3f at %zu)", what, n, worst, worst_i);
    free(g);
    return bad == n;
}

int ct_check_dev(const char *what, const void *dev, enum zl_dtype dt, const double *ref,
                 const double *tol, size_t n)
{
    void *got = xmalloc(n * esize(dt));
    dget(got, dev, n * esize(dt));
    int ok = ct_check(what, got, dt, ref, tol, n);
    free(got);
    return ok;
}

double ct_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ct_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
