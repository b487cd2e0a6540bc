/* Compute backends: the table a backend plugin registers (ZL_PLUGIN_BACKEND).
 *
 *   const struct zl_backend_ops *be = zl_registry_pick_backend(reg, "auto");
 *   void *buf;
 *   if (be->mem_alloc(0, 1 << 20, &buf) == ZL_OK)
 *       be->mem_free(0, buf);
 *   // models call the op members (appended by the inference issues)
 */
#ifndef ZLIGHT_BACKEND_H
#define ZLIGHT_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/dtype.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every member after `size` may be read only when `size` covers it.  The
 * memory members are what the memory manager needs to place its one
 * reservation per device (DESIGN §3). */
struct zl_backend_ops {
    uint32_t size;              /* sizeof(struct zl_backend_ops) at build time */
    uint32_t reserved;
    const char *description;    /* one line, e.g. "CPU (AVX2, 16 threads)" */

    /* 0 = unusable on this machine; `backend: auto` picks the highest.
     * Must be cheap and must not fail loudly (no GPU is a normal answer). */
    int (*score)(void);

    /* Number of devices this backend drives (>= 1 when score() > 0). */
    int (*device_count)(void);

    /* Bytes free and total on `device`.  For the CPU: available and total RAM. */
    int (*mem_info)(int device, size_t *free_bytes, size_t *total_bytes);

    /* Device allocation used once per region by the memory manager, never per
     * step.  Returns ZL_ENOMEM with a message naming the size on failure. */
    int (*mem_alloc)(int device, size_t bytes, void **out);
    void (*mem_free)(int device, void *ptr);   /* NULL-safe */

    /* Synchronous copies between host memory and `device` memory. */
    int (*copy_to_device)(int device, void *dst, const void *src, size_t bytes);
    int (*copy_to_host)(int device, void *dst, const void *src, size_t bytes);

    /* Waits for all work queued on `device`. */
    int (*synchronize)(int device);

    /* Converts n elements already in `device` memory between f32, f16 and
     * bf16 (round to nearest even), e.g. weights loaded in another dtype
     * than the model runs in.  ZL_EUNSUPPORTED for other pairs. */
    int (*convert)(int device, enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                   const void *src, size_t n);

    /* Op members are appended here by later API minors. */
};

#ifdef __cplusplus
}
#endif
#endif
