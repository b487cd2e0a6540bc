/* An out-of-tree zlight plugin: a backend that serves plain host memory.
 * Build it with `make` (uses `pkg-config zlight-plugin`), install it with
 * `make install`, then `zlightd --list-plugins` shows "example-host". */
#include <stdlib.h>
#include <string.h>

#include <zlight/backend.h>
#include <zlight/plugin.h>

static const struct zl_host *host;

/* Never chosen by `backend: auto` (score 1 would tie with the CPU backend);
 * set ZLIGHT_EXAMPLE_SCORE to make it compete. */
static int example_score(void)
{
    const char *s = getenv("ZLIGHT_EXAMPLE_SCORE");
    return s ? atoi(s) : 0;
}

static int example_device_count(void)
{
    return 1;
}

static int example_mem_alloc(int device, size_t bytes, void **out)
{
    (void)device; /* host memory: one "device" */
    void *p = host->alloc_aligned(bytes, 64);
    if (!p)
        return host->error(ZL_ENOMEM, "example-host: cannot allocate %zu bytes", bytes);
    *out = p;
    return ZL_OK;
}

static void example_mem_free(int device, void *ptr)
{
    (void)device;
    host->free_aligned(ptr);
}

static int example_copy(int device, void *dst, const void *src, size_t bytes)
{
    (void)device;
    memcpy(dst, src, bytes);
    return ZL_OK;
}

static const struct zl_backend_ops example_ops = {
    .size = sizeof(struct zl_backend_ops),
    .description = "example out-of-tree backend (host memory)",
    .score = example_score,
    .device_count = example_device_count,
    .mem_alloc = example_mem_alloc,
    .mem_free = example_mem_free,
    .copy_to_device = example_copy,
    .copy_to_host = example_copy,
};

static int example_init(const struct zl_host *h)
{
    host = h;
    h->log(ZL_LOG_DEBUG, "example", "registering example-host");
    return h->register_ops(ZL_PLUGIN_BACKEND, "example-host", &example_ops);
}

ZL_PLUGIN_DEFINE("example", "1.0.0", "example out-of-tree plugin", example_init, NULL)
