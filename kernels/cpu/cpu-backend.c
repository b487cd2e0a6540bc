/* The CPU backend plugin: host memory for the memory manager and, as the
 * reference backend, the op table the models call.  The ops live in one
 * file per concept (cpu-linear.c, cpu-attention.c, cpu-norm-rope.c,
 * cpu-elementwise.c); this file holds the instance (threads, kernels,
 * scratch) and the registration. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlight/backend.h>
#include <zlight/plugin.h>

#include "cpu-impl.h"

#define CPU_ALIGN 64 /* a cache line; also what AVX-512 loads like */
#define CPU_MAX_THREADS 1024

const struct zl_host *cpu_host;

static int cpu_score(void)
{
    return 1; /* always usable, and the last choice behind any accelerator */
}

static int cpu_device_count(void)
{
    return 1;
}

static int cpu_mem_info(int device, size_t *free_bytes, size_t *total_bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    long total = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    if (device != 0)
        return cpu_host->error(ZL_EINVAL, "cpu backend: no device %d (only 0)", device);
    if (page <= 0 || total <= 0 || avail < 0)
        return cpu_host->error(ZL_EIO, "cpu backend: cannot read the memory size (sysconf)");
    *total_bytes = (size_t)total * (size_t)page;
    *free_bytes = (size_t)avail * (size_t)page;
    return ZL_OK;
}

static int cpu_mem_alloc(int device, size_t bytes, void **out)
{
    if (device != 0)
        return cpu_host->error(ZL_EINVAL, "cpu backend: no device %d (only 0)", device);
    void *p = cpu_host->alloc_aligned(bytes, CPU_ALIGN);
    if (!p)
        return cpu_host->error(ZL_ENOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    *out = p;
    return ZL_OK;
}

static void cpu_mem_free(int device, void *ptr)
{
    (void)device;
    cpu_host->free_aligned(ptr);
}

static int cpu_copy(int device, void *dst, const void *src, size_t bytes)
{
    (void)device;
    memcpy(dst, src, bytes);
    return ZL_OK;
}

static int cpu_synchronize(int device)
{
    (void)device;
    return ZL_OK;
}

static int cpu_convert(int device, enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                       const void *src, size_t n)
{
    (void)device;
    return cpu_host->dtype_convert(dst_dt, dst, src_dt, src, n);
}

/* ---- instances ---- */

/* ZLIGHT_CPU_SIMD=scalar|avx2|auto (default auto): tests run both paths. */
static int pick_kernels(const struct cpu_kernels **out)
{
    const char *want = getenv("ZLIGHT_CPU_SIMD");
    const struct cpu_kernels *avx2 = cpu_kernels_avx2();
    if (want && !strcmp(want, "scalar")) {
        *out = cpu_kernels_scalar();
    } else if (want && !strcmp(want, "avx2")) {
        if (!avx2)
            return cpu_host->error(ZL_EUNSUPPORTED, "cpu backend: ZLIGHT_CPU_SIMD=avx2 but this CPU "
                               "or build lacks AVX2/FMA/F16C");
        *out = avx2;
    } else if (!want || !*want || !strcmp(want, "auto")) {
        *out = avx2 ? avx2 : cpu_kernels_scalar();
    } else {
        return cpu_host->error(ZL_EINVAL, "cpu backend: ZLIGHT_CPU_SIMD=%s, want scalar, avx2 or auto",
                           want);
    }
    return ZL_OK;
}

static void cpu_close(struct zl_bctx *ctx)
{
    if (!ctx)
        return;
    cpu_pool_free(ctx->pool);
    cpu_host->free_aligned(ctx->scratch);
    cpu_host->free_aligned(ctx->shared);
    free(ctx);
}

static int cpu_open(const struct zl_backend_open_params *p, struct zl_bctx **out)
{
    if (!p || !out || p->size < sizeof(struct zl_backend_open_params))
        return cpu_host->error(ZL_EINVAL, "cpu open: NULL or too old params (size %u)",
                           p ? (unsigned)p->size : 0u);
    if (p->device != 0)
        return cpu_host->error(ZL_EINVAL, "cpu open: no device %d (only 0)", (int)p->device);
    if (p->threads < 0 || p->threads > CPU_MAX_THREADS)
        return cpu_host->error(ZL_EINVAL, "cpu open: threads %d outside 0..%d", (int)p->threads,
                           CPU_MAX_THREADS);
    int n = p->threads;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (cores > CPU_MAX_THREADS ? CPU_MAX_THREADS : (int)cores) : 1;
    }
    struct zl_bctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return cpu_host->error(ZL_ENOMEM, "cpu open: out of memory");
    int rc = pick_kernels(&ctx->k);
    if (rc == ZL_OK)
        rc = cpu_pool_create(n, &ctx->pool);
    if (rc < 0) {
        cpu_close(ctx);
        return rc;
    }
    cpu_host->log(ZL_LOG_DEBUG, "cpu", "instance: %d threads, %s kernels", n, ctx->k->name);
    *out = ctx;
    return ZL_OK;
}

/* Replaces *buf by one of `floats` floats (contents dropped) when it holds
 * fewer; the steady state allocates nothing. */
static int grow(const char *op, float **buf, size_t *have, size_t floats)
{
    if (floats <= *have)
        return ZL_OK;
    float *s = cpu_host->alloc_aligned(floats * sizeof(float), CPU_ALIGN);
    if (!s)
        return cpu_host->error(ZL_ENOMEM, "cpu %s: cannot allocate %zu bytes of scratch", op,
                               floats * sizeof(float));
    cpu_host->free_aligned(*buf);
    *buf = s;
    *have = floats;
    return ZL_OK;
}

int cpu_scratch_reserve(struct zl_bctx *ctx, const char *op, size_t floats)
{
    if (floats <= ctx->scratch_per_thread)
        return ZL_OK;
    floats = (floats + 15) & ~(size_t)15;   /* whole cache lines per thread */
    size_t n = (size_t)cpu_pool_size(ctx->pool), all = 0;
    if (floats > SIZE_MAX / sizeof(float) / n)
        return cpu_host->error(ZL_ENOMEM, "cpu %s: scratch of %zu floats per thread overflows", op,
                               floats);
    int rc = grow(op, &ctx->scratch, &all, floats * n);
    if (rc == ZL_OK)
        ctx->scratch_per_thread = floats;
    return rc;
}

int cpu_shared_reserve(struct zl_bctx *ctx, const char *op, size_t floats)
{
    if (floats > SIZE_MAX / sizeof(float))
        return cpu_host->error(ZL_ENOMEM, "cpu %s: a buffer of %zu floats overflows", op, floats);
    return grow(op, &ctx->shared, &ctx->shared_floats, floats);
}

static int cpu_sync(struct zl_bctx *ctx)
{
    (void)ctx;
    return ZL_OK;  /* ops are synchronous */
}

static const struct zl_backend_ops cpu_ops = {
    .size = sizeof(struct zl_backend_ops),
    .description = "CPU (reference backend; AVX2/FMA/F16C when the CPU has them, threaded)",
    .score = cpu_score,
    .device_count = cpu_device_count,
    .mem_info = cpu_mem_info,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .copy_to_device = cpu_copy,
    .copy_to_host = cpu_copy,
    .synchronize = cpu_synchronize,
    .convert = cpu_convert,
    .open = cpu_open,
    .close = cpu_close,
    .embedding = cpu_embedding,
    .rms_norm = cpu_rms_norm,
    .linear = cpu_linear,
    .rope = cpu_rope,
    .silu_mul = cpu_silu_mul,
    .kv_write = cpu_kv_write,
    .attention = cpu_attention,
    .add = cpu_add,
    .copy = cpu_copy_rows,
    .sync = cpu_sync,
    .flags = ZL_BACKEND_HOST_MEMORY,
};

static int cpu_init(const struct zl_host *h)
{
    cpu_host = h;
    return h->register_ops(ZL_PLUGIN_BACKEND, "cpu", &cpu_ops);
}

ZL_PLUGIN_DEFINE("cpu", PACKAGE_VERSION, "CPU compute backend", cpu_init, NULL)
