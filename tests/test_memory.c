/* Tests of the unified memory manager (core/memory.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/log.h>
#include <zlight/memory.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

#define ALIGNED(p, a) ((((uintptr_t)(p)) & ((a) - 1)) == 0)
#define cr_assert_err(expr, status, needle)                                             \
    do {                                                                                \
        int rc_ = (expr);                                                               \
        cr_assert_eq(rc_, (status), "%s = %d, want %d (%s)", #expr, rc_, (status),      \
                     zl_last_error());                                                  \
        cr_assert(strstr(zl_last_error(), (needle)), "message '%s' lacks '%s'",         \
                  zl_last_error(), (needle));                                           \
    } while (0)
#define cr_assert_ok(expr) \
    do { int rc_ = (expr); cr_assert_eq(rc_, ZL_OK, "%s: %s", #expr, zl_last_error()); } while (0)

/* --- allocators the tests plug in ------------------------------------------ */

/* Counts calls and forwards to the host allocator. */
struct counting {
    int allocs, frees;
    int fail;               /* 1: refuse the reservation */
    void *last;
};

static int counting_alloc(void *ctx, int device, size_t bytes, void **out)
{
    struct counting *c = ctx;
    c->allocs++;
    if (c->fail)
        return zl_error(ZL_ENOMEM, "counting allocator refuses %zu bytes", bytes);
    struct zl_mem_allocator h = zl_mem_host_allocator();
    int rc = h.alloc(h.ctx, device, bytes, out);
    c->last = *out;
    return rc;
}

static void counting_free(void *ctx, int device, void *ptr)
{
    struct counting *c = ctx;
    struct zl_mem_allocator h = zl_mem_host_allocator();
    c->frees++;
    h.free(h.ctx, device, ptr);
}

/* A "device" whose memory the CPU must never touch: it hands out an address
 * that is not mapped, so any guard write would crash the test. */
static int fake_device_alloc(void *ctx, int device, size_t bytes, void **out)
{
    (void)ctx;
    (void)device;
    (void)bytes;
    *out = (void *)(uintptr_t)0x7f0000000000ull;    /* 2 MiB aligned, never dereferenced */
    return ZL_OK;
}

static void fake_device_free(void *ctx, int device, void *ptr)
{
    int *frees = ctx;
    (void)device;
    (void)ptr;
    if (frees)
        (*frees)++;
}

static struct zl_mem_params params_of(size_t reserve)
{
    struct zl_mem_params p = zl_mem_default_params();
    p.reserve_bytes = reserve;
    p.name = "cpu:0";
    return p;
}

static struct zl_mem *make(size_t reserve)
{
    struct zl_mem_params p = params_of(reserve);
    struct zl_mem *mem;
    cr_assert_ok(zl_mem_create(&p, &mem));
    return mem;
}

/* 1 MiB host reservation, 1000 B of weights, 10000 B of workspace, 4000 B blocks. */
static struct zl_mem *make_planned(void)
{
    struct zl_mem *mem = make(MiB);
    void *w;
    cr_assert_ok(zl_mem_weights_alloc(mem, 1000, &w));
    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_ok(zl_mem_plan(mem, 10000, 4000));
    return mem;
}

/* --- params and lifecycle ------------------------------------------------------- */

Test(memory, defaults)
{
    struct zl_mem_params p = zl_mem_default_params();
    cr_assert_eq(p.align, 256);
    cr_assert_eq(p.reserve_bytes, 0);
    cr_assert_eq(p.guards, 1);
    cr_assert_eq(p.ws_guards, 0);
    cr_assert_eq(p.device, 0);
    cr_assert(p.allocator.alloc && p.allocator.free);
    cr_assert_eq(p.allocator.flags, ZL_MEM_HOST_VISIBLE);
}

Test(memory, create_rejects_bad_params)
{
    struct zl_mem_params p = params_of(MiB);
    struct zl_mem *mem = (struct zl_mem *)&p;
    cr_assert_err(zl_mem_create(&p, NULL), ZL_EINVAL, "NULL");
    cr_assert_err(zl_mem_create(NULL, &mem), ZL_EINVAL, "NULL");
    cr_assert_null(mem);
    p.reserve_bytes = 0;
    cr_assert_err(zl_mem_create(&p, &mem), ZL_EINVAL, "reserve_bytes");
    p = params_of(MiB);
    p.align = 24;
    cr_assert_err(zl_mem_create(&p, &mem), ZL_EINVAL, "align 24");
    p.align = 8;
    cr_assert_err(zl_mem_create(&p, &mem), ZL_EINVAL, "align 8");
    p = params_of(4 * 256);     /* 4 guards and no slot */
    cr_assert_err(zl_mem_create(&p, &mem), ZL_EINVAL, "too small");
    cr_assert_null(mem);
}

Test(memory, failed_reservation_reports_and_leaks_nothing)
{
    struct counting c = {.fail = 1};
    struct zl_mem_params p = params_of(3 * GiB);
    p.allocator = (struct zl_mem_allocator){&c, counting_alloc, counting_free, ZL_MEM_HOST_VISIBLE};
    struct zl_mem *mem;
    cr_assert_err(zl_mem_create(&p, &mem), ZL_ENOMEM, "memory cpu:0: reserving 3.00 GiB: counting");
    cr_assert_null(mem);
    cr_assert_eq(c.allocs, 1);
    cr_assert_eq(c.frees, 0);

    c.fail = 0;     /* too small after the allocation: freed again */
    p.reserve_bytes = 512;
    cr_assert_err(zl_mem_create(&p, &mem), ZL_EINVAL, "too small");
    cr_assert_eq(c.allocs, 2);
    cr_assert_eq(c.frees, 1);
}

Test(memory, free_is_safe_in_every_phase)
{
    zl_mem_free(NULL);
    struct counting c = {0};
    struct zl_mem_params p = params_of(MiB);
    p.allocator = (struct zl_mem_allocator){&c, counting_alloc, counting_free, ZL_MEM_HOST_VISIBLE};
    p.ws_guards = 1;
    for (int phase = 0; phase < 4; phase++) {
        struct zl_mem *mem;
        void *x;
        uint32_t id;
        cr_assert_ok(zl_mem_create(&p, &mem));
        cr_assert_ok(zl_mem_weights_alloc(mem, 100, &x));
        if (phase >= 1)
            cr_assert_ok(zl_mem_weights_freeze(mem));
        if (phase >= 2)
            cr_assert_ok(zl_mem_plan(mem, 4096, 4096));
        if (phase >= 3) {   /* live allocations everywhere */
            cr_assert_ok(zl_mem_ws_alloc(mem, 100, &x));
            cr_assert_ok(zl_mem_kv_alloc(mem, &id));
        }
        zl_mem_free(mem);
    }
    cr_assert_eq(c.allocs, 4);
    cr_assert_eq(c.frees, 4);
}

Test(memory, name_defaults_to_device)
{
    struct zl_mem_params p = params_of(MiB);
    p.name = NULL;
    p.device = 3;
    struct zl_mem *mem;
    cr_assert_ok(zl_mem_create(&p, &mem));
    cr_assert_str_eq(zl_mem_name(mem), "dev3");
    zl_mem_free(mem);
}

/* --- phases --------------------------------------------------------------------- */

Test(memory, calls_in_the_wrong_phase)
{
    struct zl_mem *mem = make(MiB);
    void *x = &x;
    uint32_t id = 7;
    void *base;
    size_t stride;
    struct zl_mem_mark m = {0, 0};

    cr_assert_eq(zl_mem_get_phase(mem), ZL_MEM_LOADING);
    cr_assert_err(zl_mem_plan(mem, 0, 4096), ZL_ESTATE, "plan needs the manager frozen");
    cr_assert_err(zl_mem_ws_alloc(mem, 8, &x), ZL_ESTATE, "ws_alloc needs the manager planned, but it is loading");
    cr_assert_null(x);
    cr_assert_err(zl_mem_ws_reset(mem), ZL_ESTATE, "ws_reset");
    cr_assert_err(zl_mem_ws_release(mem, m), ZL_ESTATE, "ws_release");
    cr_assert_err(zl_mem_kv_alloc(mem, &id), ZL_ESTATE, "kv_alloc");
    cr_assert_err(zl_mem_kv_free(mem, 0), ZL_ESTATE, "kv_free");
    cr_assert_err(zl_mem_kv_pool(mem, &base, &stride, &id), ZL_ESTATE, "kv_pool");
    cr_assert_null(zl_mem_kv_ptr(mem, 0));
    m = zl_mem_ws_mark(mem);
    cr_assert_eq(m.top, 0);

    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_eq(zl_mem_get_phase(mem), ZL_MEM_FROZEN);
    cr_assert_err(zl_mem_weights_freeze(mem), ZL_ESTATE, "weights_freeze");
    x = &x;
    cr_assert_err(zl_mem_weights_alloc(mem, 8, &x), ZL_ESTATE, "weights_alloc needs the manager loading weights, but it is frozen");
    cr_assert_null(x);
    cr_assert_err(zl_mem_kv_alloc(mem, &id), ZL_ESTATE, "kv_alloc");

    cr_assert_ok(zl_mem_plan(mem, 4096, 4096));
    cr_assert_eq(zl_mem_get_phase(mem), ZL_MEM_PLANNED);
    cr_assert_err(zl_mem_weights_alloc(mem, 8, &x), ZL_ESTATE, "it is planned");
    cr_assert_err(zl_mem_weights_freeze(mem), ZL_ESTATE, "weights_freeze");
    zl_mem_free(mem);
}

/* --- weights ------------------------------------------------------------------- */

Test(memory, weights_bump_aligned_and_exact_overflow)
{
    struct zl_mem *mem = make(MiB);
    struct zl_mem_stats st;
    uint8_t *a, *b, *c;
    zl_mem_get_stats(mem, &st);
    /* head guard + the weights' moving guard, both 256 B */
    size_t cap = MiB - 512;
    cr_assert_eq(st.weights.capacity, cap);
    cr_assert_eq(st.overhead, 512);

    cr_assert_ok(zl_mem_weights_alloc(mem, 1, (void **)&a));
    cr_assert_ok(zl_mem_weights_alloc(mem, 300, (void **)&b));
    cr_assert(ALIGNED(a, 256) && ALIGNED(b, 256));
    cr_assert_eq(b - a, 256);
    memset(b, 0xab, 300);   /* inside the allocation: no complaint */
    cr_assert_ok(zl_mem_check(mem));
    cr_assert_err(zl_mem_weights_alloc(mem, 0, (void **)&c), ZL_EINVAL, "zero-byte");

    cr_assert_err(zl_mem_weights_alloc(mem, cap - 768 + 1, (void **)&c), ZL_ENOMEM,
                  "memory cpu:0: weights region full: request");
    cr_assert(strstr(zl_last_error(), "1022.8 KiB (1047297 B), 1022.8 KiB (1047296 B) left of 1023.5 KiB"),
              "%s", zl_last_error());
    cr_assert_null(c);
    cr_assert_err(zl_mem_weights_alloc(mem, SIZE_MAX, (void **)&c), ZL_ENOMEM, "weights region full");
    cr_assert_err(zl_mem_weights_alloc(mem, SIZE_MAX - 300, (void **)&c), ZL_ENOMEM, "weights region full");
    cr_assert_ok(zl_mem_weights_alloc(mem, cap - 768, (void **)&c));   /* exactly fits */
    cr_assert_eq(c - b, 512);
    cr_assert_err(zl_mem_weights_alloc(mem, 1, (void **)&c), ZL_ENOMEM, "0 B (0 B) left");

    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.weights.used, cap);
    cr_assert_eq(st.weights.high_water, cap);
    cr_assert_eq(st.weights.n_allocs, 3);
    cr_assert_eq(st.weights.n_failed, 4);
    cr_assert_ok(zl_mem_check(mem));
    cr_assert_ok(zl_mem_weights_freeze(mem));
    /* nothing left for a workspace guard plus a block */
    cr_assert_err(zl_mem_plan(mem, 0, 256), ZL_ENOMEM, "nothing left after the weights");
    zl_mem_free(mem);
}

/* --- plan and stats ------------------------------------------------------------- */

Test(memory, plan_stats_exact)
{
    struct zl_mem *mem = make_planned();
    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    /* head 256 | weights 1024 | 256 | ws 10240 | 256 | n blocks of 4096 | 256 */
    size_t rest = MiB - 256 - 1024 - 256 - 10240 - 256 - 256;
    uint32_t n = (uint32_t)(rest / 4096);
    cr_assert_eq(st.reserved, MiB);
    cr_assert_eq(st.phase, ZL_MEM_PLANNED);
    cr_assert_eq(st.weights.capacity, 1024);
    cr_assert_eq(st.weights.used, 1024);
    cr_assert_eq(st.workspace.capacity, 10240);
    cr_assert_eq(st.workspace.used, 0);
    cr_assert_eq(st.kv_block_bytes, 4096);
    cr_assert_eq(st.kv_blocks_total, n);
    cr_assert_eq(n, 253);
    cr_assert_eq(st.kv_blocks_free, n);
    cr_assert_eq(st.kv.capacity, (size_t)n * 4096);
    cr_assert_eq(st.kv.used, 0);
    cr_assert_eq(st.overhead, MiB - 1024 - 10240 - (size_t)n * 4096);
    cr_assert_eq(st.allocator_calls, 1);

    void *base;
    size_t stride;
    uint32_t nb;
    cr_assert_ok(zl_mem_kv_pool(mem, &base, &stride, &nb));
    cr_assert_eq(stride, 4096);
    cr_assert_eq(nb, n);
    cr_assert(ALIGNED(base, 256));
    cr_assert_eq(zl_mem_kv_ptr(mem, 0), base);
    zl_mem_free(mem);
}

Test(memory, plan_rejects_what_does_not_fit)
{
    struct zl_mem *mem = make(MiB);
    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_err(zl_mem_plan(mem, 4096, 0), ZL_EINVAL, "KV block size is 0");
    cr_assert_err(zl_mem_plan(mem, 2 * MiB, 4096), ZL_ENOMEM, "workspace of 2.0 MiB does not fit");
    cr_assert_err(zl_mem_plan(mem, SIZE_MAX - 1, 4096), ZL_ENOMEM, "does not fit");
    cr_assert_err(zl_mem_plan(mem, 4096, MiB), ZL_ENOMEM, "no room for one KV block of 1.0 MiB");
    cr_assert_err(zl_mem_plan(mem, 4096, SIZE_MAX), ZL_ENOMEM, "no room for one KV block");
    cr_assert_eq(zl_mem_get_phase(mem), ZL_MEM_FROZEN);
    /* the largest workspace that still leaves one block */
    size_t ws = MiB - 256 - 256 - 256 - 256 - 4096;
    cr_assert_ok(zl_mem_plan(mem, ws, 4096));
    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.kv_blocks_total, 1);
    cr_assert_eq(st.overhead, 1024);
    zl_mem_free(mem);
}

Test(memory, replan_after_profiling)
{
    struct zl_mem *mem = make(MiB);
    struct zl_mem_stats st;
    void *x;
    uint32_t id;
    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_ok(zl_mem_plan(mem, ZL_MEM_REST, 0));    /* profiling: all to workspace */
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.kv_blocks_total, 0);
    cr_assert_eq(st.workspace.capacity, MiB - 3 * 256);   /* no KV, no KV guard */
    cr_assert_err(zl_mem_kv_alloc(mem, &id), ZL_ENOMEM, "all 0 blocks");

    cr_assert_ok(zl_mem_ws_alloc(mem, 5000, &x));
    cr_assert_ok(zl_mem_ws_alloc(mem, 20000, &x));
    cr_assert_err(zl_mem_plan(mem, 4096, 4096), ZL_ESTATE, "empty workspace");
    cr_assert_ok(zl_mem_ws_reset(mem));
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.workspace.high_water, 5120 + 20224);

    cr_assert_ok(zl_mem_plan(mem, st.workspace.high_water, 8192));
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.workspace.capacity, 25344);
    cr_assert_eq(st.workspace.high_water, 0);
    cr_assert_eq(st.kv_blocks_total, (MiB - 4 * 256 - 25344) / 8192);
    cr_assert_ok(zl_mem_kv_alloc(mem, &id));
    cr_assert_err(zl_mem_plan(mem, 4096, 4096), ZL_ESTATE, "1 blocks in use");
    cr_assert_ok(zl_mem_kv_free(mem, id));
    cr_assert_ok(zl_mem_plan(mem, 4096, 4096));
    cr_assert_eq(st.allocator_calls, 1);
    zl_mem_free(mem);
}

/* --- workspace ----------------------------------------------------------------- */

Test(memory, workspace_stack)
{
    struct zl_mem *mem = make_planned();
    struct zl_mem_stats st;
    uint8_t *a, *b, *c, *d;
    cr_assert_ok(zl_mem_ws_alloc(mem, 100, (void **)&a));
    struct zl_mem_mark m1 = zl_mem_ws_mark(mem);
    cr_assert_eq(m1.top, 256);
    cr_assert_ok(zl_mem_ws_alloc(mem, 1000, (void **)&b));
    struct zl_mem_mark m2 = zl_mem_ws_mark(mem);
    cr_assert_ok(zl_mem_ws_alloc(mem, 257, (void **)&c));
    cr_assert(ALIGNED(a, 256) && ALIGNED(b, 256) && ALIGNED(c, 256));
    cr_assert_eq(b - a, 256);
    cr_assert_eq(c - b, 1024);

    cr_assert_ok(zl_mem_ws_release(mem, m2));
    cr_assert_ok(zl_mem_ws_alloc(mem, 8, (void **)&d));
    cr_assert_eq(d, c);     /* LIFO reuse */
    cr_assert_ok(zl_mem_ws_release(mem, m1));   /* releases through m2 too */
    /* LIFO misuse: m2 lies above the top now */
    cr_assert_err(zl_mem_ws_release(mem, m2), ZL_ESTATE, "above the top");
    cr_assert_ok(zl_mem_ws_release(mem, m1));  /* the same mark twice is harmless */
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.workspace.used, 256);
    cr_assert_eq(st.workspace.high_water, 256 + 1024 + 512);
    cr_assert_eq(st.workspace.n_allocs, 4);

    /* marks do not survive a reset */
    cr_assert_ok(zl_mem_ws_reset(mem));
    cr_assert_err(zl_mem_ws_release(mem, m1), ZL_ESTATE, "before the last reset");
    struct zl_mem_mark zero = zl_mem_ws_mark(mem);
    cr_assert_eq(zero.top, 0);
    cr_assert_ok(zl_mem_ws_release(mem, zero));

    /* overflow: exactly full, then one byte more */
    cr_assert_err(zl_mem_ws_alloc(mem, 0, (void **)&a), ZL_EINVAL, "zero-byte");
    cr_assert_err(zl_mem_ws_alloc(mem, 10241, (void **)&a), ZL_ENOMEM,
                  "workspace region full: request 10.0 KiB (10241 B), 10.0 KiB (10240 B) left of 10.0 KiB");
    cr_assert_null(a);
    cr_assert_ok(zl_mem_ws_alloc(mem, 10000, (void **)&a));
    cr_assert_err(zl_mem_ws_alloc(mem, 1, (void **)&b), ZL_ENOMEM, "workspace region full");
    cr_assert_ok(zl_mem_check(mem));
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.workspace.n_failed, 2);
    cr_assert_eq(st.workspace.high_water, 10240);
    zl_mem_free(mem);
}

/* --- KV pool ------------------------------------------------------------------- */

Test(memory, kv_alloc_all_free_all)
{
    struct zl_mem *mem = make_planned();
    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    uint32_t n = st.kv_blocks_total, id;
    uint8_t *base = zl_mem_kv_ptr(mem, 0);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_ok(zl_mem_kv_alloc(mem, &id));
        cr_assert_eq(id, i);        /* a fresh pool hands out ids in order */
        uint8_t *p = zl_mem_kv_ptr(mem, id);
        cr_assert(ALIGNED(p, 256));
        cr_assert_eq(p, base + (size_t)i * 4096);
        memset(p, 0x11, 4000);      /* a block's own bytes are the caller's */
    }
    cr_assert_err(zl_mem_kv_alloc(mem, &id), ZL_ENOMEM, "kv pool exhausted: all 253 blocks in use");
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.kv_blocks_free, 0);
    cr_assert_eq(st.kv.used, st.kv.capacity);
    cr_assert_eq(st.kv.n_failed, 1);
    cr_assert_ok(zl_mem_check(mem));

    for (uint32_t i = 0; i < n; i += 2)
        cr_assert_ok(zl_mem_kv_free(mem, i));
    uint32_t last = 0;
    for (uint32_t i = 1; i < n; i += 2)
        cr_assert_ok(zl_mem_kv_free(mem, last = i));
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.kv_blocks_free, n);
    cr_assert_eq(st.kv.used, 0);
    cr_assert_eq(st.kv.high_water, (size_t)n * 4096);
    cr_assert_eq(st.kv.n_allocs, n);
    /* last freed is reused first */
    cr_assert_ok(zl_mem_kv_alloc(mem, &id));
    cr_assert_eq(id, last);
    cr_assert_ok(zl_mem_check(mem));
    zl_mem_free(mem);
}

Test(memory, kv_double_free_and_bad_ids)
{
    struct zl_mem *mem = make_planned();
    struct zl_mem_stats st;
    uint32_t a, b;
    cr_assert_ok(zl_mem_kv_alloc(mem, &a));
    cr_assert_ok(zl_mem_kv_alloc(mem, &b));
    cr_assert_ok(zl_mem_kv_free(mem, a));
    cr_assert_err(zl_mem_kv_free(mem, a), ZL_ESTATE, "block 0 is not allocated (double free)");
    cr_assert_err(zl_mem_kv_free(mem, 100), ZL_ESTATE, "double free");     /* never allocated */
    cr_assert_err(zl_mem_kv_free(mem, 253), ZL_ERANGE, "block 253 out of range (pool has 253)");
    cr_assert_err(zl_mem_kv_free(mem, UINT32_MAX), ZL_ERANGE, "out of range");
    cr_assert_null(zl_mem_kv_ptr(mem, 253));
    cr_assert(strstr(zl_last_error(), "kv_ptr: block 253 out of range"));
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.kv_blocks_free, 252);   /* the refusals changed nothing */
    cr_assert_ok(zl_mem_check(mem));
    /* the free list holds a once, so two allocations give a then a fresh id */
    uint32_t x, y;
    cr_assert_ok(zl_mem_kv_alloc(mem, &x));
    cr_assert_ok(zl_mem_kv_alloc(mem, &y));
    cr_assert_eq(x, a);
    cr_assert_neq(y, a);
    cr_assert_neq(y, b);
    zl_mem_free(mem);
}

/* --- steady state never calls the allocator ----------------------------------- */

Test(memory, one_reservation_for_a_whole_run)
{
    struct counting c = {0};
    struct zl_mem_params p = params_of(4 * MiB);
    p.allocator = (struct zl_mem_allocator){&c, counting_alloc, counting_free, ZL_MEM_HOST_VISIBLE};
    p.ws_guards = 1;
    struct zl_mem *mem;
    void *x;
    uint32_t ids[64];
    cr_assert_ok(zl_mem_create(&p, &mem));
    cr_assert_eq(c.allocs, 1);
    for (int i = 0; i < 100; i++)
        cr_assert_ok(zl_mem_weights_alloc(mem, 1000 + (size_t)i, &x));
    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_ok(zl_mem_plan(mem, ZL_MEM_REST, 0));
    cr_assert_ok(zl_mem_ws_alloc(mem, 100000, &x));
    cr_assert_ok(zl_mem_ws_reset(mem));
    cr_assert_ok(zl_mem_plan(mem, 100000, 16 * KiB));
    for (int step = 0; step < 1000; step++) {
        struct zl_mem_mark m = zl_mem_ws_mark(mem);
        for (int i = 0; i < 10; i++)
            cr_assert_ok(zl_mem_ws_alloc(mem, 1000 * (size_t)(i + 1), &x));
        cr_assert_ok(zl_mem_ws_release(mem, m));
        for (int i = 0; i < 64; i++)
            cr_assert_ok(zl_mem_kv_alloc(mem, &ids[i]));
        for (int i = 0; i < 64; i++)
            cr_assert_ok(zl_mem_kv_free(mem, ids[(i * 7) % 64]));
        cr_assert_ok(zl_mem_ws_reset(mem));
    }
    cr_assert_ok(zl_mem_check(mem));
    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.allocator_calls, 1);
    cr_assert_eq(c.allocs, 1);
    cr_assert_eq(c.frees, 0);
    zl_mem_free(mem);
    cr_assert_eq(c.frees, 1);
}

/* --- guards ---------------------------------------------------------------------- */

Test(memory, guard_after_weights_clobbered)
{
    struct zl_mem *mem = make(MiB);
    uint8_t *w;
    cr_assert_ok(zl_mem_weights_alloc(mem, 256, (void **)&w));
    w[256] = 0;     /* one byte past a full allocation */
    cr_assert_err(zl_mem_check(mem), ZL_ERANGE, "memory cpu:0: guard after region 'weights' clobbered (1 bad");
    zl_mem_free(mem);
}

Test(memory, guard_before_weights_clobbered)
{
    struct zl_mem *mem = make(MiB);
    uint8_t *w;
    cr_assert_ok(zl_mem_weights_alloc(mem, 64, (void **)&w));
    w[-1] ^= 1;
    cr_assert_err(zl_mem_check(mem), ZL_ERANGE, "'before weights (underrun)'");
    zl_mem_free(mem);
}

Test(memory, guard_after_workspace_and_kv_clobbered)
{
    struct zl_mem *mem = make_planned();
    uint8_t *ws;
    cr_assert_ok(zl_mem_ws_alloc(mem, 10240, (void **)&ws));
    ws[10240 + 17] = 0;
    cr_assert_err(zl_mem_check(mem), ZL_ERANGE, "'workspace' clobbered (1 bad");
    uint8_t *last = zl_mem_kv_ptr(mem, 252);
    last[4096 + 255] = 0;
    cr_assert_err(zl_mem_check(mem), ZL_ERANGE, "'workspace' clobbered (2 bad");
    zl_mem_free(mem);

    mem = make_planned();
    last = zl_mem_kv_ptr(mem, 252);
    last[4096] = 0;
    cr_assert_err(zl_mem_check(mem), ZL_ERANGE, "'kv' clobbered (1 bad");
    zl_mem_free(mem);
}

Test(memory, per_allocation_workspace_guards)
{
    struct zl_mem_params p = params_of(MiB);
    p.ws_guards = 1;
    struct zl_mem *mem;
    uint8_t *a, *b, *c;
    cr_assert_ok(zl_mem_create(&p, &mem));
    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_ok(zl_mem_plan(mem, 8192, 4096));
    cr_assert_ok(zl_mem_ws_alloc(mem, 100, (void **)&a));
    struct zl_mem_mark m = zl_mem_ws_mark(mem);
    cr_assert_ok(zl_mem_ws_alloc(mem, 100, (void **)&b));
    cr_assert_ok(zl_mem_ws_alloc(mem, 100, (void **)&c));
    cr_assert_eq(b - a, 512);   /* each allocation carries a 256 B guard */
    memset(b, 0, 200);          /* within the rounded size: fine */
    cr_assert_ok(zl_mem_check(mem));
    b[256] = 0;                 /* into b's guard */
    cr_assert_err(zl_mem_check(mem), ZL_ERANGE, "'workspace allocation'");
    cr_assert_err(zl_mem_ws_release(mem, m), ZL_ERANGE, "1 workspace allocation(s) overran");
    cr_assert_ok(zl_mem_check(mem));    /* released: the guard is gone */
    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.workspace.used, 512);

    cr_assert_ok(zl_mem_ws_alloc(mem, 100, (void **)&b));
    b[300] = 0;
    cr_assert_err(zl_mem_ws_reset(mem), ZL_ERANGE, "overran");
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.workspace.used, 0);
    cr_assert_ok(zl_mem_ws_reset(mem));
    /* an allocation and its guard must both fit */
    cr_assert_err(zl_mem_ws_alloc(mem, 8192 - 255, (void **)&a), ZL_ENOMEM, "workspace region full");
    cr_assert_ok(zl_mem_ws_alloc(mem, 8192 - 256, (void **)&a));
    zl_mem_free(mem);
}

/* --- device memory through the hook ------------------------------------------- */

Test(memory, device_memory_is_never_touched)
{
    int frees = 0;
    struct zl_mem_params p = params_of(12 * GiB);
    p.name = "cuda:0";
    p.allocator = (struct zl_mem_allocator){&frees, fake_device_alloc, fake_device_free, 0};
    p.ws_guards = 1;    /* ignored: not host visible */
    struct zl_mem *mem;
    void *w;
    uint32_t id;
    cr_assert_ok(zl_mem_create(&p, &mem));
    cr_assert_ok(zl_mem_weights_alloc(mem, 2480 * MiB, &w));
    cr_assert_eq(w, (void *)(uintptr_t)0x7f0000000000ull);
    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_ok(zl_mem_plan(mem, 512 * MiB, 16 * MiB));
    cr_assert_ok(zl_mem_kv_alloc(mem, &id));
    cr_assert_ok(zl_mem_ws_alloc(mem, MiB, &w));
    cr_assert_ok(zl_mem_ws_reset(mem));
    cr_assert_ok(zl_mem_check(mem));

    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    cr_assert_eq(st.overhead, 0);   /* no guards, aligned base, blocks divide the rest */
    cr_assert_eq(st.kv_blocks_total, (12 * 1024 - 2480 - 512) / 16);
    char line[320];
    int n = zl_mem_plan_str(mem, 16, line, sizeof line);
    cr_assert_str_eq(line, "memory plan (cuda:0): reserved 12.00 GiB = weights 2.42 GiB + workspace"
                     " 512.0 MiB + kv 9.08 GiB (581 blocks of 16.0 MiB, 9296 tokens) + overhead 0 B");
    cr_assert_eq(n, (int)strlen(line));
    zl_mem_free(mem);
    cr_assert_eq(frees, 1);
}

Test(memory, plan_string_before_planning_and_truncated)
{
    struct zl_mem *mem = make(64 * MiB);
    void *w;
    char line[200];
    cr_assert_ok(zl_mem_weights_alloc(mem, 10 * MiB, &w));
    zl_mem_plan_str(mem, 16, line, sizeof line);
    cr_assert_str_eq(line, "memory plan (cpu:0): reserved 64.0 MiB, weights 10.0 MiB used (loading), not planned yet");
    cr_assert_ok(zl_mem_weights_freeze(mem));
    cr_assert_ok(zl_mem_plan(mem, 4 * MiB, MiB));
    int n = zl_mem_plan_str(mem, 0, line, sizeof line);
    cr_assert_str_eq(line, "memory plan (cpu:0): reserved 64.0 MiB = weights 10.0 MiB + workspace 4.0 MiB"
                     " + kv 49.0 MiB (49 blocks of 1.0 MiB) + overhead 1.0 MiB");
    char small[10];
    cr_assert_eq(zl_mem_plan_str(mem, 0, small, sizeof small), n);
    cr_assert_str_eq(small, "memory pl");
    zl_mem_log_plan(mem, 16);
    zl_mem_free(mem);
}

/* --- backend adapters ---------------------------------------------------------- */

static int be_allocs, be_frees;
static uint8_t be_buf[8192] __attribute__((aligned(4096)));

static int be_mem_alloc(int device, size_t bytes, void **out)
{
    be_allocs++;
    if (device != 1 || bytes > sizeof be_buf)
        return zl_error(ZL_ENOMEM, "fake backend: no %zu bytes on device %d", bytes, device);
    *out = be_buf;
    return ZL_OK;
}

static void be_mem_free(int device, void *ptr)
{
    cr_assert_eq(device, 1);
    cr_assert_eq(ptr, be_buf);
    be_frees++;
}

static int be_mem_info(int device, size_t *free_b, size_t *total)
{
    if (device != 0)
        return zl_error(ZL_EINVAL, "fake backend: no device %d", device);
    *total = 80 * GiB;
    *free_b = 79 * GiB;
    return ZL_OK;
}

static const struct zl_backend_ops fake_be = {
    .size = sizeof(struct zl_backend_ops),
    .description = "fake",
    .mem_info = be_mem_info,
    .mem_alloc = be_mem_alloc,
    .mem_free = be_mem_free,
};

Test(memory, allocator_from_backend)
{
    struct zl_mem_allocator al;
    cr_assert_ok(zl_mem_allocator_from_backend(&fake_be, &al));
    cr_assert_eq(al.flags, 0);
    al.flags = ZL_MEM_HOST_VISIBLE;     /* this fake backend's memory is host memory */
    struct zl_mem_params p = params_of(sizeof be_buf);
    p.device = 1;
    p.allocator = al;
    struct zl_mem *mem;
    void *w;
    cr_assert_ok(zl_mem_create(&p, &mem));
    cr_assert_ok(zl_mem_weights_alloc(mem, 100, &w));
    cr_assert_eq(w, be_buf + 256);
    zl_mem_free(mem);
    cr_assert_eq(be_allocs, 1);
    cr_assert_eq(be_frees, 1);

    p.reserve_bytes = 2 * sizeof be_buf;
    cr_assert_err(zl_mem_create(&p, &mem), ZL_ENOMEM, "reserving 16.0 KiB: fake backend: no 16384 bytes");
    cr_assert_eq(be_frees, 1);

    struct zl_backend_ops old = fake_be;
    old.size = offsetof(struct zl_backend_ops, mem_alloc);
    cr_assert_err(zl_mem_allocator_from_backend(&old, &al), ZL_EINVAL, "backend 'fake' has no mem_alloc");
    old = fake_be;
    old.mem_free = NULL;
    cr_assert_err(zl_mem_allocator_from_backend(&old, &al), ZL_EINVAL, "no mem_alloc/mem_free");
    cr_assert_err(zl_mem_allocator_from_backend(NULL, &al), ZL_EINVAL, "NULL");
}

Test(memory, budget_from_utilization)
{
    size_t b = 0;
    cr_assert_ok(zl_mem_budget(&fake_be, 0, 0.9, &b));
    cr_assert_eq(b, 72 * GiB);
    cr_assert_ok(zl_mem_budget(&fake_be, 0, 0.3333, &b));
    cr_assert_eq(b % (2 * MiB), 0);
    cr_assert(b <= (size_t)(80.0 * GiB * 0.3333) && b > (size_t)(80.0 * GiB * 0.3333) - 2 * MiB);
    cr_assert_err(zl_mem_budget(&fake_be, 0, 0.99, &b), ZL_ENOMEM,
                  "budget 79.20 GiB (0.99 of 80.00 GiB) exceeds the 79.00 GiB free now");
    cr_assert_err(zl_mem_budget(&fake_be, 0, 0.0, &b), ZL_EINVAL, "not in (0, 1]");
    cr_assert_err(zl_mem_budget(&fake_be, 0, 1.5, &b), ZL_EINVAL, "not in (0, 1]");
    cr_assert_err(zl_mem_budget(&fake_be, 0, NAN, &b), ZL_EINVAL, "not in (0, 1]");
    cr_assert_err(zl_mem_budget(&fake_be, 2, 0.5, &b), ZL_EINVAL, "device 2 info: fake backend: no device 2");
    struct zl_backend_ops none = fake_be;
    none.mem_info = NULL;
    cr_assert_err(zl_mem_budget(&none, 0, 0.5, &b), ZL_EINVAL, "mem_info");
}
