/* The unified memory manager (DESIGN §3): one reservation per device, carved
 * into a bump-allocated weights region, a stack workspace and a pool of
 * fixed-size KV blocks.  Every refusal names the region, the request and
 * what is left; nothing is ever written outside the reservation. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/log.h>
#include <zlight/memory.h>

#define GUARD_WORD 0x5a17c0dedeadf00dULL
/* Per-allocation workspace guards are recorded in a fixed table so that
 * checking them never allocates; allocations past it go unguarded. */
#define WS_GUARD_MAX 4096u

struct mem_region {
    uint8_t *base;
    size_t cap;             /* bytes usable from base */
    size_t top;             /* bytes in use */
    size_t hw;              /* high-water of top */
    uint64_t n_allocs, n_failed;
};

struct zl_mem {
    struct zl_mem_allocator al;
    int device;
    size_t align;
    size_t reserved;
    size_t g;               /* guard slot bytes: align, or 0 without guards */
    bool ws_guards;
    char name[48];
    void *raw;              /* what the allocator returned */
    uint8_t *begin, *end;   /* the aligned span inside raw */
    enum zl_mem_phase phase;
    uint64_t allocator_calls;

    struct mem_region w, ws;
    uint64_t ws_epoch;
    size_t *ws_guard_at;    /* [WS_GUARD_MAX] offsets of live allocation guards */
    size_t ws_guard_n;

    uint8_t *kv_base;
    size_t kv_stride;
    uint32_t kv_n, kv_nfree;
    uint32_t kv_hw;         /* most blocks in use at once */
    uint64_t kv_allocs, kv_failed;
    uint32_t *kv_stack;     /* [kv_n] free ids, kv_stack[kv_nfree - 1] is next */
    uint8_t *kv_used;       /* [kv_n] 1 while allocated */
};

/* Sets the thread's error as "memory <name>: <message>" and returns status. */
#define mem_err(mem, status, ...) \
    zl_error_wrap(zl_error((status), __VA_ARGS__), "memory %s", (mem)->name)

/* "12.00 GiB", "16.0 MiB", "3.5 KiB", "100 B" */
static const char *fmt_bytes(char buf[32], size_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, 32, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, 32, "%.1f MiB", (double)b / (1ull << 20));
    else if (b >= (1ull << 10))
        snprintf(buf, 32, "%.1f KiB", (double)b / (1ull << 10));
    else
        snprintf(buf, 32, "%zu B", b);
    return buf;
}

static int check_phase(const struct zl_mem *mem, enum zl_mem_phase want, const char *what)
{
    static const char *const names[] = {"loading weights", "frozen, not planned", "planned"};
    if (mem->phase == want)
        return ZL_OK;
    return mem_err(mem, ZL_ESTATE, "%s needs the manager %s, but it is %s", what,
                   names[want], names[mem->phase]);
}

/* Rounds `bytes` up to the alignment; false when that overflows. */
static bool round_up(const struct zl_mem *mem, size_t bytes, size_t *out)
{
    if (bytes > SIZE_MAX - (mem->align - 1))
        return false;
    *out = (bytes + mem->align - 1) & ~(mem->align - 1);
    return true;
}

/* --- guards ---------------------------------------------------------------- */

static void guard_write(const struct zl_mem *mem, uint8_t *p)
{
    const uint64_t w = GUARD_WORD;
    for (size_t i = 0; i < mem->g; i += sizeof w)
        memcpy(p + i, &w, sizeof w);
}

static bool guard_ok(const struct zl_mem *mem, const uint8_t *p)
{
    const uint64_t w = GUARD_WORD;
    for (size_t i = 0; i < mem->g; i += sizeof w)
        if (memcmp(p + i, &w, sizeof w) != 0)
            return false;
    return true;
}

/* --- allocators ------------------------------------------------------------- */

static int host_alloc(void *ctx, int device, size_t bytes, void **out)
{
    (void)ctx;
    if (posix_memalign(out, 4096, bytes) != 0) {
        *out = NULL;
        return zl_error(ZL_ENOMEM, "host allocation of %zu bytes (device %d) failed", bytes, device);
    }
    return ZL_OK;
}

static void host_free(void *ctx, int device, void *ptr)
{
    (void)ctx;
    (void)device;
    free(ptr);
}

struct zl_mem_allocator zl_mem_host_allocator(void)
{
    struct zl_mem_allocator a = {NULL, host_alloc, host_free, ZL_MEM_HOST_VISIBLE};
    return a;
}

#define BE_HAS(be, member) \
    ((be)->size >= offsetof(struct zl_backend_ops, member) + sizeof((be)->member) && (be)->member)

static int backend_alloc(void *ctx, int device, size_t bytes, void **out)
{
    const struct zl_backend_ops *be = ctx;
    return be->mem_alloc(device, bytes, out);
}

static void backend_free(void *ctx, int device, void *ptr)
{
    const struct zl_backend_ops *be = ctx;
    if (ptr)
        be->mem_free(device, ptr);
}

int zl_mem_allocator_from_backend(const struct zl_backend_ops *be, struct zl_mem_allocator *out)
{
    if (!be || !out)
        return zl_error(ZL_EINVAL, "memory: NULL backend or output");
    if (!BE_HAS(be, mem_alloc) || !BE_HAS(be, mem_free))
        return zl_error(ZL_EINVAL, "memory: backend '%s' has no mem_alloc/mem_free",
                        be->size > offsetof(struct zl_backend_ops, description) && be->description
                            ? be->description : "?");
    out->ctx = (void *)(uintptr_t)be;   /* the hook's ctx is not const; it is only read */
    out->alloc = backend_alloc;
    out->free = backend_free;
    out->flags = 0;
    return ZL_OK;
}

int zl_mem_budget(const struct zl_backend_ops *be, int device, double utilization, size_t *out)
{
    size_t free_b = 0, total = 0;
    char a[32], b[32], c[32];
    if (!be || !out || !BE_HAS(be, mem_info))
        return zl_error(ZL_EINVAL, "memory: budget needs a backend with mem_info");
    if (!(utilization > 0.0 && utilization <= 1.0))
        return zl_error(ZL_EINVAL, "memory: utilization %g is not in (0, 1]", utilization);
    int rc = be->mem_info(device, &free_b, &total);
    if (rc < 0)
        return zl_error_wrap(rc, "memory: device %d info", device);
    /* +0.5: 0.9 * 80 GiB must not land a hair under 72 GiB */
    size_t budget = (size_t)((double)total * utilization + 0.5) & ~(((size_t)2 << 20) - 1);
    if (budget > free_b)
        return zl_error(ZL_ENOMEM, "memory: device %d: budget %s (%.3g of %s) exceeds the %s free now;"
                        " lower gpu_memory_utilization", device, fmt_bytes(a, budget), utilization,
                        fmt_bytes(b, total), fmt_bytes(c, free_b));
    *out = budget;
    return ZL_OK;
}

/* --- lifecycle ----------------------------------------------------------------- */

struct zl_mem_params zl_mem_default_params(void)
{
    struct zl_mem_params p = {0};
    p.align = 256;
    p.allocator = zl_mem_host_allocator();
    p.guards = 1;
    return p;
}

int zl_mem_create(const struct zl_mem_params *params, struct zl_mem **out)
{
    if (!out)
        return zl_error(ZL_EINVAL, "memory: NULL output");
    *out = NULL;
    if (!params || !params->allocator.alloc || !params->allocator.free)
        return zl_error(ZL_EINVAL, "memory: NULL params or allocator");
    size_t al = params->align;
    if (al < 16 || (al & (al - 1)) != 0)
        return zl_error(ZL_EINVAL, "memory: align %zu is not a power of two >= 16", al);
    if (params->reserve_bytes == 0)
        return zl_error(ZL_EINVAL, "memory: reserve_bytes is 0");

    struct zl_mem *mem = calloc(1, sizeof *mem);
    if (!mem)
        return zl_error(ZL_ENOMEM, "memory: out of host memory");
    mem->al = params->allocator;
    mem->device = params->device;
    mem->align = al;
    mem->reserved = params->reserve_bytes;
    mem->g = params->guards && (mem->al.flags & ZL_MEM_HOST_VISIBLE) ? al : 0;
    mem->ws_guards = params->ws_guards && mem->g;
    if (params->name)
        snprintf(mem->name, sizeof mem->name, "%s", params->name);
    else
        snprintf(mem->name, sizeof mem->name, "dev%d", params->device);

    char a[32];
    mem->allocator_calls++;
    int rc = mem->al.alloc(mem->al.ctx, mem->device, mem->reserved, &mem->raw);
    if (rc < 0 || !mem->raw) {
        if (rc >= 0)
            zl_error(ZL_ENOMEM, "allocator returned no memory");
        rc = zl_error_wrap(rc < 0 ? rc : ZL_ENOMEM, "memory %s: reserving %s", mem->name,
                           fmt_bytes(a, mem->reserved));
        mem->raw = NULL;
        zl_mem_free(mem);
        return rc;
    }
    uintptr_t lo = ((uintptr_t)mem->raw + al - 1) & ~(uintptr_t)(al - 1);
    uintptr_t hi = ((uintptr_t)mem->raw + mem->reserved) & ~(uintptr_t)(al - 1);
    /* room for the head, weights, workspace and KV guards and one slot */
    if (hi <= lo || hi - lo < 4 * mem->g + al) {
        rc = mem_err(mem, ZL_EINVAL, "reservation of %zu bytes is too small (align %zu%s)",
                     mem->reserved, al, mem->g ? ", guards" : "");
        zl_mem_free(mem);
        return rc;
    }
    mem->begin = (uint8_t *)lo;
    mem->end = (uint8_t *)hi;
    mem->w.base = mem->begin + mem->g;
    mem->w.cap = (size_t)(mem->end - mem->w.base) - mem->g;    /* keeps a slot for its guard */
    if (mem->g) {
        guard_write(mem, mem->begin);
        guard_write(mem, mem->w.base);
    }
    mem->phase = ZL_MEM_LOADING;
    *out = mem;
    return ZL_OK;
}

void zl_mem_free(struct zl_mem *mem)
{
    if (!mem)
        return;
    if (mem->raw) {
        mem->allocator_calls++;
        mem->al.free(mem->al.ctx, mem->device, mem->raw);
    }
    free(mem->ws_guard_at);
    free(mem->kv_stack);
    free(mem->kv_used);
    free(mem);
}

enum zl_mem_phase zl_mem_get_phase(const struct zl_mem *mem)
{
    return mem->phase;
}

const char *zl_mem_name(const struct zl_mem *mem)
{
    return mem->name;
}

/* --- weights and workspace: bump allocation ------------------------------- */

/* Takes `bytes` rounded up, plus `extra` guard bytes, from the top of `r`. */
static int region_bump(struct zl_mem *mem, struct mem_region *r, const char *rname,
                       size_t bytes, size_t extra, void **out)
{
    size_t sz;
    char a[32], b[32], c[32];
    *out = NULL;
    if (bytes == 0)
        return mem_err(mem, ZL_EINVAL, "%s: zero-byte allocation", rname);
    if (!round_up(mem, bytes, &sz) || sz > r->cap - r->top || extra > r->cap - r->top - sz) {
        r->n_failed++;
        return mem_err(mem, ZL_ENOMEM, "%s region full: request %s (%zu B), %s (%zu B) left of %s",
                       rname, fmt_bytes(a, bytes), bytes, fmt_bytes(b, r->cap - r->top),
                       r->cap - r->top, fmt_bytes(c, r->cap));
    }
    *out = r->base + r->top;
    r->top += sz;
    if (r->top + extra > r->hw)
        r->hw = r->top + extra;
    r->n_allocs++;
    return ZL_OK;
}

int zl_mem_weights_alloc(struct zl_mem *mem, size_t bytes, void **out)
{
    int rc = check_phase(mem, ZL_MEM_LOADING, "weights_alloc");
    if (rc == ZL_OK)
        rc = region_bump(mem, &mem->w, "weights", bytes, 0, out);
    else
        *out = NULL;
    if (rc == ZL_OK && mem->g)
        guard_write(mem, mem->w.base + mem->w.top);     /* the guard moves with the top */
    return rc;
}

int zl_mem_weights_freeze(struct zl_mem *mem)
{
    int rc = check_phase(mem, ZL_MEM_LOADING, "weights_freeze");
    if (rc < 0)
        return rc;
    mem->w.cap = mem->w.top;
    mem->phase = ZL_MEM_FROZEN;
    return ZL_OK;
}

int zl_mem_ws_alloc(struct zl_mem *mem, size_t bytes, void **out)
{
    int rc = check_phase(mem, ZL_MEM_PLANNED, "ws_alloc");
    if (rc < 0) {
        *out = NULL;
        return rc;
    }
    bool guard = mem->ws_guards && mem->ws_guard_n < WS_GUARD_MAX;
    rc = region_bump(mem, &mem->ws, "workspace", bytes, guard ? mem->g : 0, out);
    if (rc == ZL_OK && guard) {
        guard_write(mem, mem->ws.base + mem->ws.top);
        mem->ws_guard_at[mem->ws_guard_n++] = mem->ws.top;
        mem->ws.top += mem->g;
    }
    return rc;
}

struct zl_mem_mark zl_mem_ws_mark(const struct zl_mem *mem)
{
    struct zl_mem_mark m = {0, 0};
    if (mem->phase == ZL_MEM_PLANNED) {
        m.top = mem->ws.top;
        m.epoch = mem->ws_epoch;
    }
    return m;
}

/* Drops the workspace to `top`, checking the per-allocation guards above it. */
static int ws_drop_to(struct zl_mem *mem, size_t top)
{
    unsigned bad = 0;
    while (mem->ws_guard_n > 0 && mem->ws_guard_at[mem->ws_guard_n - 1] >= top) {
        mem->ws_guard_n--;
        bad += !guard_ok(mem, mem->ws.base + mem->ws_guard_at[mem->ws_guard_n]);
    }
    mem->ws.top = top;
    if (bad)
        return mem_err(mem, ZL_ERANGE, "%u workspace allocation(s) overran their end", bad);
    return ZL_OK;
}

int zl_mem_ws_release(struct zl_mem *mem, struct zl_mem_mark mark)
{
    int rc = check_phase(mem, ZL_MEM_PLANNED, "ws_release");
    if (rc < 0)
        return rc;
    if (mark.epoch != mem->ws_epoch)
        return mem_err(mem, ZL_ESTATE, "workspace mark from before the last reset or plan");
    if (mark.top > mem->ws.top)
        return mem_err(mem, ZL_ESTATE, "workspace mark at %zu is above the top %zu:"
                       " released twice or out of LIFO order", mark.top, mem->ws.top);
    return ws_drop_to(mem, mark.top);
}

int zl_mem_ws_reset(struct zl_mem *mem)
{
    int rc = check_phase(mem, ZL_MEM_PLANNED, "ws_reset");
    if (rc < 0)
        return rc;
    mem->ws_epoch++;
    return ws_drop_to(mem, 0);
}

/* --- planning --------------------------------------------------------------- */

int zl_mem_plan(struct zl_mem *mem, size_t ws_bytes, size_t kv_block_bytes)
{
    char a[32], b[32];
    if (mem->phase == ZL_MEM_PLANNED) {
        if (mem->ws.top != 0 || mem->kv_nfree != mem->kv_n)
            return mem_err(mem, ZL_ESTATE, "re-plan needs an empty workspace and no KV block"
                           " in use (%zu B, %u blocks in use)", mem->ws.top, mem->kv_n - mem->kv_nfree);
    } else {
        int rc = check_phase(mem, ZL_MEM_FROZEN, "plan");
        if (rc < 0)
            return rc;
    }
    uint8_t *start = mem->w.base + mem->w.cap + mem->g;
    size_t avail = (size_t)(mem->end - start);
    size_t ws_cap, stride = 0, n = 0;
    if (avail < mem->g)
        return mem_err(mem, ZL_ENOMEM, "nothing left after the weights");
    if (ws_bytes == ZL_MEM_REST) {
        ws_cap = avail - mem->g;
    } else {
        if (kv_block_bytes == 0)
            return mem_err(mem, ZL_EINVAL, "KV block size is 0");
        if (!round_up(mem, ws_bytes, &ws_cap) || ws_cap > avail - mem->g)
            return mem_err(mem, ZL_ENOMEM, "workspace of %s does not fit: %s left after the weights",
                           fmt_bytes(a, ws_bytes), fmt_bytes(b, avail - mem->g));
        size_t rest = avail - mem->g - ws_cap;
        if (!round_up(mem, kv_block_bytes, &stride) || rest < mem->g || stride > rest - mem->g)
            return mem_err(mem, ZL_ENOMEM, "no room for one KV block of %s: %s left after the"
                           " weights and workspace", fmt_bytes(a, kv_block_bytes), fmt_bytes(b, rest));
        n = (rest - mem->g) / stride;
        if (n > UINT32_MAX - 1)
            n = UINT32_MAX - 1;
    }
    /* Metadata first, so a failure leaves the previous plan whole. */
    uint32_t *stack = malloc((n ? n : 1) * sizeof *stack);
    uint8_t *used = calloc(n ? n : 1, 1);
    size_t *gat = mem->ws_guards && !mem->ws_guard_at ? malloc(WS_GUARD_MAX * sizeof *gat) : NULL;
    if (!stack || !used || (mem->ws_guards && !mem->ws_guard_at && !gat)) {
        free(stack);
        free(used);
        free(gat);
        return mem_err(mem, ZL_ENOMEM, "out of host memory for %zu KV block records", n);
    }
    if (gat)
        mem->ws_guard_at = gat;
    free(mem->kv_stack);
    free(mem->kv_used);
    mem->kv_stack = stack;
    mem->kv_used = used;
    for (size_t i = 0; i < n; i++)
        stack[i] = (uint32_t)(n - 1 - i);
    mem->kv_n = mem->kv_nfree = (uint32_t)n;
    mem->kv_hw = 0;
    mem->kv_allocs = mem->kv_failed = 0;
    mem->kv_stride = stride;

    mem->ws = (struct mem_region){.base = start, .cap = ws_cap};
    mem->ws_guard_n = 0;
    mem->ws_epoch++;
    mem->kv_base = start + ws_cap + mem->g;
    if (mem->g) {
        guard_write(mem, mem->ws.base + ws_cap);
        if (n)
            guard_write(mem, mem->kv_base + n * stride);
    }
    /* Host memory is committed lazily by the kernel; touch the whole pool now
     * so that serving never page-faults and the resident size is the plan
     * from the start instead of creeping up as the prefix cache walks the
     * pool. */
    if ((mem->al.flags & ZL_MEM_HOST_VISIBLE) && n)
        memset(mem->kv_base, 0, n * stride);
    mem->phase = ZL_MEM_PLANNED;
    return ZL_OK;
}

/* --- KV pool ------------------------------------------------------------------ */

int zl_mem_kv_alloc(struct zl_mem *mem, uint32_t *id)
{
    int rc = check_phase(mem, ZL_MEM_PLANNED, "kv_alloc");
    if (rc < 0)
        return rc;
    if (mem->kv_nfree == 0) {
        mem->kv_failed++;
        return mem_err(mem, ZL_ENOMEM, "kv pool exhausted: all %u blocks in use", mem->kv_n);
    }
    uint32_t i = mem->kv_stack[--mem->kv_nfree];
    mem->kv_used[i] = 1;
    if (mem->kv_n - mem->kv_nfree > mem->kv_hw)
        mem->kv_hw = mem->kv_n - mem->kv_nfree;
    mem->kv_allocs++;
    *id = i;
    return ZL_OK;
}

int zl_mem_kv_free(struct zl_mem *mem, uint32_t id)
{
    int rc = check_phase(mem, ZL_MEM_PLANNED, "kv_free");
    if (rc < 0)
        return rc;
    if (id >= mem->kv_n)
        return mem_err(mem, ZL_ERANGE, "kv_free: block %u out of range (pool has %u)", id, mem->kv_n);
    if (!mem->kv_used[id])
        return mem_err(mem, ZL_ESTATE, "kv_free: block %u is not allocated (double free)", id);
    mem->kv_used[id] = 0;
    mem->kv_stack[mem->kv_nfree++] = id;
    return ZL_OK;
}

void *zl_mem_kv_ptr(const struct zl_mem *mem, uint32_t id)
{
    if (id >= mem->kv_n) {
        mem_err(mem, ZL_ERANGE, "kv_ptr: block %u out of range (pool has %u)", id, mem->kv_n);
        return NULL;
    }
    return mem->kv_base + (size_t)id * mem->kv_stride;
}

int zl_mem_kv_pool(const struct zl_mem *mem, void **base, size_t *stride, uint32_t *n_blocks)
{
    int rc = check_phase(mem, ZL_MEM_PLANNED, "kv_pool");
    if (rc < 0)
        return rc;
    *base = mem->kv_base;
    *stride = mem->kv_stride;
    *n_blocks = mem->kv_n;
    return ZL_OK;
}

/* --- statistics and checks ------------------------------------------------ */

static void region_stats(const struct mem_region *r, struct zl_mem_region_stats *s)
{
    s->capacity = r->cap;
    s->used = r->top;
    s->high_water = r->hw;
    s->n_allocs = r->n_allocs;
    s->n_failed = r->n_failed;
}

void zl_mem_get_stats(const struct zl_mem *mem, struct zl_mem_stats *out)
{
    memset(out, 0, sizeof *out);
    out->reserved = mem->reserved;
    out->phase = mem->phase;
    out->allocator_calls = mem->allocator_calls;
    region_stats(&mem->w, &out->weights);
    region_stats(&mem->ws, &out->workspace);
    out->kv.capacity = (size_t)mem->kv_n * mem->kv_stride;
    out->kv.used = (size_t)(mem->kv_n - mem->kv_nfree) * mem->kv_stride;
    out->kv.high_water = (size_t)mem->kv_hw * mem->kv_stride;
    out->kv.n_allocs = mem->kv_allocs;
    out->kv.n_failed = mem->kv_failed;
    out->kv_blocks_total = mem->kv_n;
    out->kv_blocks_free = mem->kv_nfree;
    out->kv_block_bytes = mem->kv_stride;
    out->overhead = mem->reserved - out->weights.capacity - out->workspace.capacity - out->kv.capacity;
}

int zl_mem_check(const struct zl_mem *mem)
{
    const char *first = NULL;
    unsigned bad = 0;
    if (mem->g) {
        const uint8_t *at[4] = {mem->begin, mem->w.base + mem->w.top};
        static const char *const names[4] = {"before weights (underrun)", "weights", "workspace", "kv"};
        if (mem->phase == ZL_MEM_PLANNED) {
            at[2] = mem->ws.base + mem->ws.cap;
            at[3] = mem->kv_n ? mem->kv_base + (size_t)mem->kv_n * mem->kv_stride : NULL;
        }
        for (int i = 0; i < 4; i++)
            if (at[i] && !guard_ok(mem, at[i]) && (bad++, !first))
                first = names[i];
        for (size_t i = 0; i < mem->ws_guard_n; i++)
            if (!guard_ok(mem, mem->ws.base + mem->ws_guard_at[i]) && (bad++, !first))
                first = "workspace allocation";
    }
    if (bad)
        return mem_err(mem, ZL_ERANGE, "guard after region '%s' clobbered (%u bad guard(s))", first, bad);

    uint32_t nfree = 0;
    for (uint32_t i = 0; i < mem->kv_n; i++)
        nfree += !mem->kv_used[i];
    for (uint32_t i = 0; i < mem->kv_nfree && nfree == mem->kv_nfree; i++)
        if (mem->kv_stack[i] >= mem->kv_n || mem->kv_used[mem->kv_stack[i]])
            nfree = UINT32_MAX;
    if (nfree != mem->kv_nfree)
        return mem_err(mem, ZL_ESTATE, "kv free list inconsistent (%u free recorded)", mem->kv_nfree);
    return ZL_OK;
}

int zl_mem_plan_str(const struct zl_mem *mem, uint32_t tokens_per_block, char *buf, size_t size)
{
    char r[32], w[32], s[32], k[32], bl[32], o[32], tok[48] = "";
    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    fmt_bytes(r, st.reserved);
    fmt_bytes(w, st.weights.capacity);
    if (st.phase != ZL_MEM_PLANNED)
        return snprintf(buf, size, "memory plan (%s): reserved %s, weights %s used (%s), not planned yet",
                        mem->name, r, fmt_bytes(w, st.weights.used),
                        st.phase == ZL_MEM_LOADING ? "loading" : "frozen");
    if (tokens_per_block)
        snprintf(tok, sizeof tok, ", %llu tokens",
                 (unsigned long long)st.kv_blocks_total * tokens_per_block);
    return snprintf(buf, size, "memory plan (%s): reserved %s = weights %s + workspace %s + kv %s"
                    " (%u blocks of %s%s) + overhead %s", mem->name, r, w,
                    fmt_bytes(s, st.workspace.capacity), fmt_bytes(k, st.kv.capacity),
                    st.kv_blocks_total, fmt_bytes(bl, st.kv_block_bytes), tok,
                    fmt_bytes(o, st.overhead));
}

void zl_mem_log_plan(const struct zl_mem *mem, uint32_t tokens_per_block)
{
    char line[320];
    zl_mem_plan_str(mem, tokens_per_block, line, sizeof line);
    zl_log(ZL_LOG_INFO, "memory", "%s", line);
}
