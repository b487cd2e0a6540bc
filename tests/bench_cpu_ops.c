/* Benchmark (not a test): decode-shaped matvec through the CPU backend's
 * linear op next to the machine's memory bandwidth (STREAM-style copy and
 * triad), since a decode step can go no faster than streaming the weights.
 *
 *   make -C tests bench_cpu_ops && tests/bench_cpu_ops [reps [path/to/cpu.so]]
 *
 * Prints GB/s for a 2048 x 8192 weight (bf16 = 32 MiB, also f16 and f32)
 * per kernel mode and thread count, and for the same bytes of f16 in rows
 * of 576 (a small model's decode), best of `reps` (default 20).  Each call
 * uses the next of several copies of the weight spanning 3x the L3 size,
 * so the weights come from DRAM as in a real decode step, not from an L3
 * that could hold one 32 MiB copy.  "read" is a read-only sum, the fair
 * roofline for a matvec (copy and triad also write). */
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
/* A decode matvec over short rows (SmolLM2-135M's hidden size): the
 * hardware prefetcher alone streams these slower (cpu-kernels-avx2.c). */
#define SHORT_COLS 576
#define SHORT_ROWS (ROWS * COLS / SHORT_COLS / 4 * 4)
/* Arrays and the weight copies span several times the last-level cache:
 * a STREAM array is the L3 size (64..512 MiB), the weight copies 3x it
 * (256 MiB..2 GiB). */
static size_t stream_n;         /* floats per STREAM array */
static size_t weight_span;      /* bytes of weight copies cycled through */
#define PREFILL 64              /* rows of the prefill-shaped (compute bound) case */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- memory bandwidth ---- */

enum stream_kind { STREAM_READ, STREAM_COPY, STREAM_TRIAD };

struct stream_arg {
    float *a, *b, *c;
    size_t lo, hi;
    enum stream_kind kind;
    float sum;
};

/* Vectorised at O3 whatever the build's -O (a scalar loop would measure
 * the core, not the memory); SPAN partial sums keep the read exact in
 * order.  Array ends beyond a multiple of SPAN are left out. */
#define SPAN 64
__attribute__((optimize("O3"))) static void *stream_part(void *p)
{
    struct stream_arg *s = p;
    float acc[SPAN] = {0};
    switch (s->kind) {
    case STREAM_READ:   /* SPAN partial sums: no reassociation needed */
        for (int arr = 0; arr < 3; arr++) {  /* all three arrays: 3x the L3, as triad */
            const float *v = arr == 0 ? s->a : arr == 1 ? s->b : s->c;
            for (size_t i = s->lo; i + SPAN <= s->hi; i += SPAN)
                for (int l = 0; l < SPAN; l++)
                    acc[l] += v[i + (size_t)l];
        }
        for (int l = 0; l < SPAN; l++)
            s->sum += acc[l];
        break;
    case STREAM_COPY: {
        float *restrict c = s->c;       /* restrict: no alias check to version on */
        const float *restrict a = s->a;
        for (size_t i = s->lo; i + SPAN <= s->hi; i += SPAN)
            for (int l = 0; l < SPAN; l++)
                c[i + (size_t)l] = a[i + (size_t)l];
        break;
    }
    case STREAM_TRIAD: {
        float *restrict a = s->a;
        const float *restrict b = s->b, *restrict c = s->c;
        for (size_t i = s->lo; i + SPAN <= s->hi; i += SPAN)
            for (int l = 0; l < SPAN; l++)
                a[i + (size_t)l] = b[i + (size_t)l] + 3.0f * c[i + (size_t)l];
        break;
    }
    }
    return NULL;
}

/* Best GB/s of `reps` passes on `nth` threads; read and triad count 3 arrays, copy 2. */
static double stream_gbs(float *a, float *b, float *c, int nth, enum stream_kind kind, int reps)
{
    pthread_t th[256];
    struct stream_arg args[256];
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < nth; i++) {
            args[i] = (struct stream_arg){a, b, c, stream_n * (size_t)i / (size_t)nth,
                                          stream_n * (size_t)(i + 1) / (size_t)nth, kind, 0};
            if (i)
                pthread_create(&th[i], NULL, stream_part, &args[i]);
        }
        stream_part(&args[0]);
        for (int i = 1; i < nth; i++)
            pthread_join(th[i], NULL);
        double gbs = (kind == STREAM_COPY ? 2.0 : 3.0) * (double)stream_n * sizeof(float) / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    return best;
}

/* ---- matvec through the op table ---- */

/* Best seconds per linear call of n rows of x against W[rows, cols] (a
 * decode step when n = 1); each call reads the next weight copy.  -1 when
 * the mode cannot open. */
static double linear_secs(const struct zl_backend_ops *be, const char *mode, int threads,
                          enum zl_dtype dt, char *w, int64_t rows, int64_t cols, int64_t n, float *x,
                          float *y, int reps)
{
    size_t bytes = zl_dtype_row_bytes(dt, (size_t)(rows * cols)), copies = weight_span / bytes;
    struct zl_backend_open_params p = {.size = sizeof p, .device = 0, .threads = threads};
    struct zl_bctx *ctx;
    struct zl_tensor tw, tx, ty;
    setenv("ZLIGHT_CPU_SIMD", mode, 1);
    if (be->open(&p, &ctx) != ZL_OK)
        return -1;  /* e.g. avx2 on a CPU without it */
    zl_tensor_init(&tx, ZL_DTYPE_F32, 2, (int64_t[]){n, cols}, x, 0);
    zl_tensor_init(&ty, ZL_DTYPE_F32, 2, (int64_t[]){n, rows}, y, 0);
    double best = 1e9;
    for (int r = 0; r < reps + 1; r++) {    /* +1: the first call warms the pool */
        zl_tensor_init(&tw, dt, 2, (int64_t[]){rows, cols}, w + (size_t)r % copies * bytes, 0);
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
    return best;
}

/* Decode attention: one query token over CTX cached tokens (Llama-3-1B
 * shape: 32 q heads, 8 kv heads of 64, bf16 cache, 16-token blocks).
 * Returns the best seconds per call, -1 when the mode cannot open. */
#define CTX 4096
static double attention_secs(const struct zl_backend_ops *be, const char *mode, int threads, int reps)
{
    enum { HQ = 32, HK = 8, HD = 64, BS = 16 };
    struct zl_backend_open_params p = {.size = sizeof p, .device = 0, .threads = threads};
    struct zl_bctx *ctx;
    setenv("ZLIGHT_CPU_SIMD", mode, 1);
    if (be->open(&p, &ctx) != ZL_OK)
        return -1;
    size_t stride = (size_t)2 * BS * HK * HD * 2;
    int32_t n_blocks = CTX / BS, *table = malloc((size_t)n_blocks * 4), *slot = malloc(CTX * 4);
    void *pool = malloc((size_t)n_blocks * stride);
    float *kv = malloc((size_t)CTX * HK * HD * 4), *q = malloc(HQ * HD * 4), *o = malloc(HQ * HD * 4);
    for (int32_t b = 0; b < n_blocks; b++)
        table[b] = (b * 7) % n_blocks;   /* scattered blocks; n_blocks is a power of 2 */
    for (int32_t i = 0; i < CTX; i++)
        slot[i] = table[i / BS] * BS + i % BS;
    for (size_t i = 0; i < (size_t)CTX * HK * HD; i++)
        kv[i] = (float)(i % 13) * 0.05f;
    for (int i = 0; i < HQ * HD; i++)
        q[i] = (float)(i % 7) * 0.1f;
    struct zl_kv_cache cache = {.base = pool, .block_stride = stride, .block_size = BS,
                                .n_layers = 1, .n_kv_heads = HK, .head_dim = HD,
                                .dtype = ZL_DTYPE_BF16};
    int32_t q_start[2] = {0, CTX}, kv_len[1] = {CTX};
    struct zl_attn_batch batch = {1, n_blocks, q_start, kv_len, table, slot};
    struct zl_tensor tk, tq, to;
    zl_tensor_init(&tk, ZL_DTYPE_F32, 3, (int64_t[]){CTX, HK, HD}, kv, 0);
    zl_tensor_init(&tq, ZL_DTYPE_F32, 3, (int64_t[]){1, HQ, HD}, q, 0);
    zl_tensor_init(&to, ZL_DTYPE_F32, 3, (int64_t[]){1, HQ, HD}, o, 0);
    double best = 1e9;
    if (be->kv_write(ctx, &cache, 0, &tk, &tk, &batch) != ZL_OK)
        best = -1;
    q_start[1] = 1;                     /* now the decode step: token CTX-1 */
    batch.slot = slot + CTX - 1;
    for (int r = 0; best > 0 && r < reps + 1; r++) {
        double t0 = now();
        if (be->attention(ctx, &to, &tq, &cache, 0, &batch, 0.125f) != ZL_OK) {
            fprintf(stderr, "attention: %s\n", zl_last_error());
            exit(1);
        }
        double t = now() - t0;
        if (r && t < best)
            best = t;
    }
    be->close(ctx);
    free(table), free(slot), free(pool), free(kv), free(q), free(o);
    return best;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    const char *plugin = argc > 2 ? argv[2] : ZL_TOP_BUILDDIR "/kernels/cpu/.libs/cpu.so";
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (reps < 1 || cores < 1 || cores > 256) {
        fprintf(stderr, "usage: %s [reps >= 1 [cpu.so]]\n", argv[0]);
        return 2;
    }
    struct zl_registry *reg;
    if (zl_registry_create(NULL, &reg) != ZL_OK ||
        zl_registry_load_file(reg, plugin) != ZL_OK) {
        fprintf(stderr, "cannot load the cpu backend: %s\n", zl_last_error());
        return 1;
    }
    const struct zl_backend_ops *be = zl_registry_find(reg, ZL_PLUGIN_BACKEND, "cpu");

    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t llc = l3 > 0 ? (size_t)l3 : (size_t)32 << 20;
#define CLAMP(v, lo, hi) ((v) < (lo) ? (lo) : (v) > (hi) ? (hi) : (v))
    stream_n = CLAMP(llc, (size_t)64 << 20, (size_t)512 << 20) / sizeof(float);
    weight_span = CLAMP(3 * llc, (size_t)256 << 20, (size_t)2 << 30);
    float *a = malloc(stream_n * sizeof(float)), *b = malloc(stream_n * sizeof(float));
    float *c = malloc(stream_n * sizeof(float));
    float *wf = malloc((size_t)ROWS * COLS * sizeof(float));
    float *x = malloc(PREFILL * COLS * sizeof(float)), *y = malloc(PREFILL * ROWS * sizeof(float));
    char *w = malloc(weight_span);
    if (!a || !b || !c || !wf || !x || !y || !w) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < stream_n; i++)
        a[i] = 1, b[i] = 2, c[i] = 0;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++)
        wf[i] = (float)(i % 17) * 0.01f - 0.08f;
    for (int i = 0; i < PREFILL * COLS; i++)
        x[i] = (float)(i % 5) * 0.1f;

    int counts[3] = {1, cores / 2, cores};     /* 1, half and all cores */
    int n_counts = cores >= 4 ? 3 : cores > 1 ? 2 : 1;
    if (n_counts == 2)
        counts[1] = cores;
    static const char *kinds[] = {"read", "copy", "triad"};
    printf("memory bandwidth (STREAM-style, %zu MiB arrays, best of %d):\n",
           stream_n * sizeof(float) >> 20, reps < 5 ? reps : 5);
    printf("  %-8s %8s %10s\n", "kernel", "threads", "GB/s");
    for (int t = 0; t < n_counts; t++)
        for (int k = STREAM_READ; k <= STREAM_TRIAD; k++)
            printf("  %-8s %8d %10.2f\n", kinds[k], counts[t],
                   stream_gbs(a, b, c, counts[t], (enum stream_kind)k, reps < 5 ? reps : 5));

    static const enum zl_dtype dts[] = {ZL_DTYPE_BF16, ZL_DTYPE_F16, ZL_DTYPE_F32};
    static const char *modes[] = {"scalar", "avx2"};
    printf("matvec y[1, %d] = x[1, %d] @ W[%d, %d]^T via linear, W cycled over %zu MiB "
           "(best of %d):\n", ROWS, COLS, ROWS, COLS, weight_span >> 20, reps);
    printf("  %-6s %-8s %8s %10s %10s\n", "weight", "kernels", "threads", "GB/s", "ms/call");
    for (int d = 0; d < 3; d++) {
        size_t bytes = zl_dtype_row_bytes(dts[d], (size_t)ROWS * COLS);
        for (size_t off = 0; off + bytes <= weight_span; off += bytes)
            zl_dtype_convert(dts[d], w + off, ZL_DTYPE_F32, wf, (size_t)ROWS * COLS);
        double mb = (double)bytes / 1e9;
        for (int m = 0; m < 2; m++)
            for (int t_ = 0; t_ < n_counts; t_++) {
                double t = linear_secs(be, modes[m], counts[t_], dts[d], w, ROWS, COLS, 1, x, y, reps);
                if (t < 0)
                    printf("  %-6s %-8s %8d %10s\n", zl_dtype_name(dts[d]), modes[m], counts[t_],
                           "n/a");
                else
                    printf("  %-6s %-8s %8d %10.2f %10.3f\n", zl_dtype_name(dts[d]), modes[m],
                           counts[t_], mb / t, t * 1e3);
            }
    }
    /* the same bytes in short rows, f16 (a GGUF model's weights), avx2 */
    size_t sbytes = zl_dtype_row_bytes(ZL_DTYPE_F16, (size_t)SHORT_ROWS * SHORT_COLS);
    for (size_t off = 0; off + sbytes <= weight_span; off += sbytes)
        zl_dtype_convert(ZL_DTYPE_F16, w + off, ZL_DTYPE_F32, wf, (size_t)SHORT_ROWS * SHORT_COLS);
    printf("matvec y[1, %d] = x[1, %d] @ W[%d, %d]^T f16 avx2, short rows (best of %d):\n", SHORT_ROWS,
           SHORT_COLS, SHORT_ROWS, SHORT_COLS, reps);
    printf("  %-8s %10s %10s\n", "threads", "GB/s", "ms/call");
    for (int t_ = 0; t_ < n_counts; t_++) {
        double t = linear_secs(be, "avx2", counts[t_], ZL_DTYPE_F16, w, SHORT_ROWS, SHORT_COLS, 1, x,
                               y, reps);
        if (t > 0)
            printf("  %-8d %10.2f %10.3f\n", counts[t_], (double)sbytes / 1e9 / t, t * 1e3);
    }
    /* prefill: PREFILL rows at once, compute bound; bf16 only */
    zl_dtype_convert(ZL_DTYPE_BF16, w, ZL_DTYPE_F32, wf, (size_t)ROWS * COLS);
    printf("linear x[%d, %d] @ W[%d, %d]^T bf16 (prefill-shaped, best of %d):\n", PREFILL, COLS,
           ROWS, COLS, reps < 5 ? reps : 5);
    printf("  %-8s %8s %10s %10s\n", "kernels", "threads", "GFLOP/s", "ms/call");
    for (int m = 0; m < 2; m++)
        for (int t_ = 0; t_ < n_counts; t_++) {
            double t = linear_secs(be, modes[m], counts[t_], ZL_DTYPE_BF16, w, ROWS, COLS, PREFILL, x,
                                   y, reps < 5 ? reps : 5);
            if (t > 0)
                printf("  %-8s %8d %10.2f %10.3f\n", modes[m], counts[t_],
                       2.0 * PREFILL * ROWS * COLS / t / 1e9, t * 1e3);
        }
    printf("decode attention, 1 token over %d cached (32 q / 8 kv heads x 64, bf16 cache, "
           "best of %d):\n", CTX, reps);
    printf("  %-8s %8s %10s %10s\n", "kernels", "threads", "KV GB/s", "ms/call");
    for (int m = 0; m < 2; m++)
        for (int t_ = 0; t_ < n_counts; t_++) {
            double t = attention_secs(be, modes[m], counts[t_], reps);
            if (t > 0)
                printf("  %-8s %8d %10.2f %10.3f\n", modes[m], counts[t_],
                       (double)CTX * 2 * 8 * 64 * 2 / t / 1e9, t * 1e3);
        }
    free(a), free(b), free(c), free(wf), free(x), free(y), free(w);
    zl_registry_free(reg);
    return 0;
}
