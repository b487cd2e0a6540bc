/* Benchmark (not a test): decode-shaped matvec through the CPU backend's
 * linear op next to the machine's memory bandwidth (STREAM-style copy and
 * triad), since a decode step can go no faster than streaming the weights.
 *
 *   make -C tests bench_cpu_ops && tests/bench_cpu_ops [reps]
 *
 * Prints GB/s for a 2048 x 8192 weight (bf16 = 32 MiB, also f16 and f32)
 * per kernel mode and thread count, best of `reps` (default 20).  Each call
 * uses the next of several copies of the weight spanning WEIGHT_SPAN bytes,
 * so the weights come from DRAM as in a real decode step, not from an L3
 * that could hold one 32 MiB copy. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zlight/backend.h>
#include <zlight/dtype.h>
#include <zlight/registry.h>
#include <zlight/status.h>
#include <zlight/tensor.h>

#define ROWS 2048
#define COLS 8192
#define STREAM_N (16u << 20)   /* floats per array: 64 MiB, far beyond the caches */
#define WEIGHT_SPAN ((size_t)256 << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- memory bandwidth ---- */

struct stream_arg {
    float *a, *b, *c;
    size_t lo, hi;
    int triad;
};

static void *stream_part(void *p)
{
    struct stream_arg *s = p;
    if (s->triad)
        for (size_t i = s->lo; i < s->hi; i++)
            s->a[i] = s->b[i] + 3.0f * s->c[i];
    else
        for (size_t i = s->lo; i < s->hi; i++)
            s->c[i] = s->a[i];
    return NULL;
}

/* Best GB/s of `reps` passes on `nth` threads; copy counts 2 arrays, triad 3. */
static double stream_gbs(float *a, float *b, float *c, int nth, int triad, int reps)
{
    pthread_t th[256];
    struct stream_arg args[256];
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < nth; i++) {
            args[i] = (struct stream_arg){a, b, c, STREAM_N * (size_t)i / (size_t)nth,
                                          STREAM_N * (size_t)(i + 1) / (size_t)nth, triad};
            if (i)
                pthread_create(&th[i], NULL, stream_part, &args[i]);
        }
        stream_part(&args[0]);
        for (int i = 1; i < nth; i++)
            pthread_join(th[i], NULL);
        double gbs = (triad ? 3.0 : 2.0) * STREAM_N * sizeof(float) / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    return best;
}

/* ---- matvec through the op table ---- */

static double matvec_gbs(const struct zl_backend_ops *be, const char *mode, int threads,
                         enum zl_dtype dt, char *w, float *x, float *y, int reps)
{
    size_t bytes = zl_dtype_row_bytes(dt, (size_t)ROWS * COLS), copies = WEIGHT_SPAN / bytes;
    struct zl_backend_open_params p = {.size = sizeof p, .device = 0, .threads = threads};
    struct zl_bctx *ctx;
    struct zl_tensor tw, tx, ty;
    setenv("ZLIGHT_CPU_SIMD", mode, 1);
    if (be->open(&p, &ctx) != ZL_OK)
        return -1;  /* e.g. avx2 on a CPU without it */
    zl_tensor_init(&tx, ZL_DTYPE_F32, 2, (int64_t[]){1, COLS}, x, 0);
    zl_tensor_init(&ty, ZL_DTYPE_F32, 2, (int64_t[]){1, ROWS}, y, 0);
    double best = 1e9;
    for (int r = 0; r < reps + 1; r++) {    /* +1: the first call warms the pool */
        zl_tensor_init(&tw, dt, 2, (int64_t[]){ROWS, COLS}, w + (size_t)r % copies * bytes, 0);
        double t0 = now();
        if (be->linear(ctx, &ty, &tx, &tw, NULL) != ZL_OK) {
            fprintf(stderr, "linear: %s\n", zl_last_error());
            exit(1);
        }
        double t = now() - t0;
        if (r && t < best)
            best = t;
    }
    be->close(ctx);
    return (double)bytes / best / 1e9;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (reps < 1 || cores < 1 || cores > 256) {
        fprintf(stderr, "usage: %s [reps >= 1]\n", argv[0]);
        return 2;
    }
    struct zl_registry *reg;
    if (zl_registry_create(NULL, &reg) != ZL_OK ||
        zl_registry_load_file(reg, ZL_TOP_BUILDDIR "/kernels/cpu/.libs/cpu.so") != ZL_OK) {
        fprintf(stderr, "cannot load the cpu backend: %s\n", zl_last_error());
        return 1;
    }
    const struct zl_backend_ops *be = zl_registry_find(reg, ZL_PLUGIN_BACKEND, "cpu");

    float *a = malloc(STREAM_N * sizeof(float)), *b = malloc(STREAM_N * sizeof(float));
    float *c = malloc(STREAM_N * sizeof(float));
    float *wf = malloc((size_t)ROWS * COLS * sizeof(float)), *x = malloc(COLS * sizeof(float));
    float *y = malloc(ROWS * sizeof(float));
    char *w = malloc(WEIGHT_SPAN);
    if (!a || !b || !c || !wf || !x || !y || !w) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < STREAM_N; i++)
        a[i] = 1, b[i] = 2, c[i] = 0;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++)
        wf[i] = (float)(i % 17) * 0.01f - 0.08f;
    for (int i = 0; i < COLS; i++)
        x[i] = (float)(i % 5) * 0.1f;

    int counts[2] = {1, cores};
    int n_counts = cores > 1 ? 2 : 1;
    printf("memory bandwidth (STREAM-style, best of %d):\n", reps < 5 ? reps : 5);
    printf("  %-8s %8s %10s\n", "kernel", "threads", "GB/s");
    for (int t = 0; t < n_counts; t++) {
        printf("  %-8s %8d %10.2f\n", "copy", counts[t], stream_gbs(a, b, c, counts[t], 0, reps < 5 ? reps : 5));
        printf("  %-8s %8d %10.2f\n", "triad", counts[t], stream_gbs(a, b, c, counts[t], 1, reps < 5 ? reps : 5));
    }

    static const enum zl_dtype dts[] = {ZL_DTYPE_BF16, ZL_DTYPE_F16, ZL_DTYPE_F32};
    static const char *modes[] = {"scalar", "avx2"};
    printf("matvec y[1, %d] = x[1, %d] @ W[%d, %d]^T via linear, W from DRAM (best of %d):\n",
           ROWS, COLS, ROWS, COLS, reps);
    printf("  %-6s %-8s %8s %10s %10s\n", "weight", "kernels", "threads", "GB/s", "ms/call");
    for (int d = 0; d < 3; d++) {
        size_t bytes = zl_dtype_row_bytes(dts[d], (size_t)ROWS * COLS);
        for (size_t off = 0; off + bytes <= WEIGHT_SPAN; off += bytes)
            zl_dtype_convert(dts[d], w + off, ZL_DTYPE_F32, wf, (size_t)ROWS * COLS);
        double mb = (double)zl_dtype_row_bytes(dts[d], (size_t)ROWS * COLS) / 1e9;
        for (int m = 0; m < 2; m++)
            for (int t = 0; t < n_counts; t++) {
                double gbs = matvec_gbs(be, modes[m], counts[t], dts[d], w, x, y, reps);
                if (gbs < 0)
                    printf("  %-6s %-8s %8d %10s\n", zl_dtype_name(dts[d]), modes[m], counts[t],
                           "n/a");
                else
                    printf("  %-6s %-8s %8d %10.2f %10.3f\n", zl_dtype_name(dts[d]), modes[m],
                           counts[t], gbs, mb / gbs * 1e3);
            }
    }
    free(a), free(b), free(c), free(wf), free(x), free(y), free(w);
    zl_registry_free(reg);
    return 0;
}
