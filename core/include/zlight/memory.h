/* The unified memory manager: one reservation per device, carved into regions.
 *
 *   struct zl_mem_params p = zl_mem_default_params();  p.reserve_bytes = 8ull << 30;
 *   struct zl_mem *mem;  void *w;  uint32_t blk;
 *   if (zl_mem_create(&p, &mem) < 0) return -1;          // the only allocator call
 *   zl_mem_weights_alloc(mem, nbytes, &w);  zl_mem_weights_freeze(mem);
 *   zl_mem_plan(mem, ws_bytes, kv_block_bytes);  zl_mem_kv_alloc(mem, &blk);
 */
#ifndef ZLIGHT_MEMORY_H
#define ZLIGHT_MEMORY_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/status.h>
#include <zlight/backend.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layout of one reservation (DESIGN §3); `|` marks a guard slot of `align`
 * bytes filled with a known pattern when the memory is host visible:
 *
 *   | weights (bump, frozen) | workspace (stack, reset per step) | kv blocks |
 *
 * Before zl_mem_plan() the weights region may grow to the whole reservation;
 * zl_mem_plan() gives the workspace its size and ALL the rest to the KV pool.
 * A manager belongs to one thread at a time (the engine's); it takes no locks. */

/* Set in zl_mem_allocator.flags when the CPU may read and write the memory;
 * only then does the manager write and check guard words. */
#define ZL_MEM_HOST_VISIBLE 1u

/* ws_bytes for zl_mem_plan(): everything left goes to the workspace and the
 * KV pool is empty — for the profiling forward that measures the workspace. */
#define ZL_MEM_REST ((size_t)-1)

/* Where the one reservation comes from.  Called once per manager, never
 * per step.  alloc returns ZL_OK or a negative status after zl_error(). */
struct zl_mem_allocator {
    void *ctx;          /* passed back to alloc and free */
    int (*alloc)(void *ctx, int device, size_t bytes, void **out);
    void (*free)(void *ctx, int device, void *ptr);     /* NULL-safe */
    uint32_t flags;     /* ZL_MEM_HOST_VISIBLE or 0 */
};

/* Built-in host allocator: page-aligned, pages committed lazily by the
 * kernel on first touch, HOST_VISIBLE. */
ZL_API struct zl_mem_allocator zl_mem_host_allocator(void);

/* Adapts a backend's mem_alloc/mem_free into *out (flags 0: set
 * ZL_MEM_HOST_VISIBLE yourself for a backend whose memory is host memory).
 * ZL_EINVAL when `be` is NULL, too old (size) or lacks the members. */
ZL_API int zl_mem_allocator_from_backend(const struct zl_backend_ops *be,
                                         struct zl_mem_allocator *out);

/* The budget `utilization` (0 < u <= 1) of `device`'s total memory, as
 * gpu_memory_utilization does: *out = u * total rounded down to 2 MiB.
 * ZL_EINVAL for a bad utilization or backend, ZL_ENOMEM when that budget
 * exceeds the memory free now (naming both), or mem_info's status. */
ZL_API int zl_mem_budget(const struct zl_backend_ops *be, int device,
                         double utilization, size_t *out);

struct zl_mem_params {
    int device;                 /* passed to the allocator; 0 */
    size_t reserve_bytes;       /* size of the one reservation; required (0) */
    size_t align;               /* every pointer's alignment, power of two >= 16; 256 */
    struct zl_mem_allocator allocator;  /* zl_mem_host_allocator() */
    const char *name;           /* in messages and logs, e.g. "cuda:0"; NULL = "dev<device>" */
    int guards;                 /* 1: guard slots around regions (host visible only); 1 */
    int ws_guards;              /* 1: also a guard after each workspace allocation,
                                 * checked on release (debugging); 0 */
};

ZL_API struct zl_mem_params zl_mem_default_params(void);

/* Opaque; see memory.c. */
struct zl_mem;

enum zl_mem_phase {
    ZL_MEM_LOADING = 0,     /* weights allocations allowed */
    ZL_MEM_FROZEN = 1,      /* weights frozen, waiting for zl_mem_plan() */
    ZL_MEM_PLANNED = 2,     /* workspace and KV pool usable */
};

/* Makes the one reservation through params->allocator.  ZL_EINVAL for bad
 * params (size 0, align not a power of two, reservation too small for the
 * guards), or the allocator's status (ZL_ENOMEM) with the size named.
 * *out is NULL on failure. */
ZL_API int zl_mem_create(const struct zl_mem_params *params, struct zl_mem **out);

/* Returns the reservation to the allocator.  NULL-safe, valid in any phase. */
ZL_API void zl_mem_free(struct zl_mem *mem);

ZL_API enum zl_mem_phase zl_mem_get_phase(const struct zl_mem *mem);
ZL_API const char *zl_mem_name(const struct zl_mem *mem);

/* --- weights: bump allocation, LOADING phase only ------------------------ */

/* *out = `bytes` (> 0) aligned bytes for the lifetime of the manager.
 * ZL_ENOMEM naming the request and what is left when it does not fit;
 * ZL_ESTATE after zl_mem_weights_freeze(). */
ZL_API int zl_mem_weights_alloc(struct zl_mem *mem, size_t bytes, void **out);

/* Ends loading: the weights region shrinks to what was used.  ZL_ESTATE
 * unless LOADING. */
ZL_API int zl_mem_weights_freeze(struct zl_mem *mem);

/* --- planning ------------------------------------------------------------ */

/* Carves the workspace (ws_bytes rounded up to align; ZL_MEM_REST = all of
 * it) and gives the rest to the KV pool in blocks of kv_block_bytes (each
 * block starts aligned).  Valid when FROZEN, and again when PLANNED while
 * the workspace is empty and no KV block is allocated (re-plan after the
 * profiling forward).  ZL_ENOMEM when ws_bytes does not fit or not one KV
 * block is left; ZL_EINVAL for kv_block_bytes 0 (unless ZL_MEM_REST);
 * ZL_ESTATE otherwise.  With a ZL_MEM_HOST_VISIBLE allocator the KV pool is
 * zeroed here, committing its pages once (flat resident memory). */
ZL_API int zl_mem_plan(struct zl_mem *mem, size_t ws_bytes, size_t kv_block_bytes);

/* --- workspace: stack arena, PLANNED phase ------------------------------- */

/* A position in the workspace stack, from zl_mem_ws_mark(). */
struct zl_mem_mark {
    size_t top;         /* offset in the workspace */
    uint64_t epoch;     /* reset/plan count when taken; stale marks are refused */
};

/* *out = `bytes` (> 0) aligned bytes until released.  ZL_ENOMEM naming the
 * request and what is left; ZL_ESTATE unless PLANNED. */
ZL_API int zl_mem_ws_alloc(struct zl_mem *mem, size_t bytes, void **out);

/* The current top, to release back to.  {0, 0} unless PLANNED. */
ZL_API struct zl_mem_mark zl_mem_ws_mark(const struct zl_mem *mem);

/* Frees everything allocated since `mark` (LIFO).  ZL_ESTATE for a mark
 * above the top (already released) or from before the last reset/plan;
 * ZL_ERANGE when a per-allocation guard was clobbered (ws_guards), after
 * releasing anyway. */
ZL_API int zl_mem_ws_release(struct zl_mem *mem, struct zl_mem_mark mark);

/* Empties the workspace, once per step.  ZL_ERANGE as for release;
 * ZL_ESTATE unless PLANNED. */
ZL_API int zl_mem_ws_reset(struct zl_mem *mem);

/* --- KV pool: fixed-size blocks, O(1), PLANNED phase ---------------------- */

/* *id = a free block (lowest ids first on a fresh pool).  ZL_ENOMEM when
 * none is free; ZL_ESTATE unless PLANNED. */
ZL_API int zl_mem_kv_alloc(struct zl_mem *mem, uint32_t *id);

/* Returns block `id`.  ZL_ERANGE for an id outside the pool, ZL_ESTATE for
 * a block that is not allocated (double free); the pool is unchanged then. */
ZL_API int zl_mem_kv_free(struct zl_mem *mem, uint32_t id);

/* Address of block `id` (allocated or not); NULL with ZL_ERANGE set for an
 * id outside the pool. */
ZL_API void *zl_mem_kv_ptr(const struct zl_mem *mem, uint32_t id);

/* The pool as kernels see it: block i is at base + i * stride.  ZL_ESTATE
 * unless PLANNED. */
ZL_API int zl_mem_kv_pool(const struct zl_mem *mem, void **base, size_t *stride,
                          uint32_t *n_blocks);

/* --- statistics and checks ----------------------------------------------- */

struct zl_mem_region_stats {
    size_t capacity;        /* bytes the region may hold */
    size_t used;            /* bytes in use now (aligned sizes, guards included) */
    size_t high_water;      /* most bytes in use since the last plan */
    uint64_t n_allocs;      /* successful allocations */
    uint64_t n_failed;      /* refused allocations (overflow) */
};

struct zl_mem_stats {
    size_t reserved;        /* bytes asked of the allocator */
    size_t overhead;        /* reserved - the three capacities: alignment, guards, KV slack */
    struct zl_mem_region_stats weights, workspace, kv;
    uint32_t kv_blocks_total;
    uint32_t kv_blocks_free;
    size_t kv_block_bytes;  /* stride between blocks (requested size rounded to align) */
    uint64_t allocator_calls; /* alloc + free calls made into the allocator hook */
    enum zl_mem_phase phase;
};

ZL_API void zl_mem_get_stats(const struct zl_mem *mem, struct zl_mem_stats *out);

/* Verifies every guard slot (host-visible memory) and the KV free list.
 * ZL_OK, or ZL_ERANGE naming the first clobbered region and the number of
 * bad guards, or ZL_ESTATE for an inconsistent free list. */
ZL_API int zl_mem_check(const struct zl_mem *mem);

/* One line describing the plan, e.g. "memory plan (cpu:0): reserved 12.00 GiB
 * = weights 2.31 GiB + workspace 512.0 MiB + kv 9.19 GiB (588 blocks of
 * 16.0 MiB, 9408 tokens) + overhead 7.6 MiB".  tokens_per_block 0 omits the
 * token count.  Returns what snprintf would (the full length). */
ZL_API int zl_mem_plan_str(const struct zl_mem *mem, uint32_t tokens_per_block,
                           char *buf, size_t size);

/* Logs zl_mem_plan_str() at INFO under "memory". */
ZL_API void zl_mem_log_plan(const struct zl_mem *mem, uint32_t tokens_per_block);

#ifdef __cplusplus
}
#endif
#endif
