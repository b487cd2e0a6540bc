/* The CPU backend plugin: host memory for the memory manager and, as the
 * reference backend, the op table the models call (ops land with the CPU
 * inference work). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlight/backend.h>
#include <zlight/plugin.h>

#define CPU_ALIGN 64 /* a cache line; also what AVX-512 loads like */

static const struct zl_host *host;

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
        return host->error(ZL_EINVAL, "cpu backend: no device %d (only 0)", device);
    if (page <= 0 || total <= 0 || avail < 0)
        return host->error(ZL_EIO, "cpu backend: cannot read the memory size (sysconf)");
    *total_bytes = (size_t)total * (size_t)page;
    *free_bytes = (size_t)avail * (size_t)page;
    return ZL_OK;
}

static int cpu_mem_alloc(int device, size_t bytes, void **out)
{
    if (device != 0)
        return host->error(ZL_EINVAL, "cpu backend: no device %d (only 0)", device);
    void *p = host->alloc_aligned(bytes, CPU_ALIGN);
    if (!p)
        return host->error(ZL_ENOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    *out = p;
    return ZL_OK;
}

static void cpu_mem_free(int device, void *ptr)
{
    (void)device;
    host->free_aligned(ptr);
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
    return host->dtype_convert(dst_dt, dst, src_dt, src, n);
}

static const struct zl_backend_ops cpu_ops = {
    .size = sizeof(struct zl_backend_ops),
    .description = "CPU (reference backend)",
    .score = cpu_score,
    .device_count = cpu_device_count,
    .mem_info = cpu_mem_info,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .copy_to_device = cpu_copy,
    .copy_to_host = cpu_copy,
    .synchronize = cpu_synchronize,
    .convert = cpu_convert,
};

static int cpu_init(const struct zl_host *h)
{
    host = h;
    return h->register_ops(ZL_PLUGIN_BACKEND, "cpu", &cpu_ops);
}

ZL_PLUGIN_DEFINE("cpu", PACKAGE_VERSION, "CPU compute backend", cpu_init, NULL)
