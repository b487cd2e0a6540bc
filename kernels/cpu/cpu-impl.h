/* Internals of the CPU backend shared by its files (not installed).
 *
 *   struct cpu_pool *pool;  cpu_pool_create(4, &pool);
 *   cpu_pool_run(pool, 0, my_task, &args);    // my_task(&args, ith, nth) on 4 threads
 *   const struct cpu_kernels *k = cpu_kernels_avx2() ? cpu_kernels_avx2() : cpu_kernels_scalar();
 *   k->tile_1x4(x, 0, w, w_row_bytes, ZL_DTYPE_BF16, 4096, out);  // 4 dots
 *   cpu_pool_free(pool);
 */
#ifndef ZL_CPU_IMPL_H
#define ZL_CPU_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <zlight/backend.h>
#include <zlight/plugin.h>

#include "cpu-convert.h"

/* The host table given to init(); every file reports errors through it. */
extern const struct zl_host *cpu_host;

/* ---- worker pool (cpu-threads.c) ---- */

struct cpu_pool;

/* A task body: thread `ith` of `nth` does its share of the work in `arg`. */
typedef void (*cpu_task_fn)(void *arg, int ith, int nth);

/* Starts n - 1 persistent workers (the caller is thread 0).  ZL_ENOMEM or
 * ZL_EBACKEND (pthread failure) with a message; *out untouched then. */
int cpu_pool_create(int n, struct cpu_pool **out);
void cpu_pool_free(struct cpu_pool *pool);           /* NULL-safe; joins workers */
int cpu_pool_size(const struct cpu_pool *pool);

/* Runs fn(arg, ith, nth) on nth = min(want, pool size) threads (want <= 0:
 * all) and returns when all are done.  One caller at a time. */
void cpu_pool_run(struct cpu_pool *pool, int want, cpu_task_fn fn, void *arg);

/* Threads worth waking for `work` units when each should get at least
 * `per_thread` of them (1 for small ops, 0 = all for big ones). */
int cpu_pool_want(const struct cpu_pool *pool, int64_t work, int64_t per_thread);

/* [*lo, *hi) = share `ith` of nth of n items, in whole multiples of `grain`. */
void cpu_split(int64_t n, int64_t grain, int ith, int nth, int64_t *lo, int64_t *hi);

/* ---- SIMD kernels (cpu-kernels.c, cpu-kernels-avx2.c) ---- */

/* Dot-product tiles of f32 activation rows against weight rows of dtype
 * wdt (f32, f16 or bf16), accumulated in f32.  x rows are `xs` bytes apart,
 * w rows `ws` bytes apart, k elements each, all contiguous along k.
 * out[r * nw + c] = sum_k x[r][k] * w[c][k]. */
typedef void (*cpu_tile_fn)(const float *x, size_t xs, const void *w, size_t ws,
                            enum zl_dtype wdt, int64_t k, float *out);

struct cpu_kernels {
    const char *name;           /* "scalar" or "avx2" */
    cpu_tile_fn tile_4x2;       /* 4 x rows by 2 w rows: attention scores */
    cpu_tile_fn tile_4x3;       /* 4 x rows by 3 w rows: prefill */
    cpu_tile_fn tile_1x4;       /* 1 x row by 4 w rows: decode */
    cpu_tile_fn tile_1x1;       /* edges */
    /* y[0..n) += sum_r a[r] * x[r * xs + 0..n) over r = 0..t-1, in r order */
    void (*axpy_rows)(float *y, const float *a, const float *x, int64_t xs, int64_t t, int64_t n);
    /* s[i] = exp(s[i] - m) for i < n; returns their sum (softmax weights) */
    float (*exp_sum)(float *s, float m, int64_t n);
    /* dst[0..n) = src of dtype dt (f32, f16, bf16) as f32 */
    void (*to_f32)(float *dst, enum zl_dtype dt, const void *src, int64_t n);
};

/* Defines tile_4x2, tile_4x3, tile_1x4 and tile_1x1 (cpu_tile_fn) from an always
 * inline TILE(x, xs, w, ws, dt, k, out, NX, NW), one copy per weight dtype
 * and shape with constants the compiler folds. */
#define CPU_TILE_FN_(TILE, NX, NW)                                                          \
    static void tile_##NX##x##NW(const float *x, size_t xs, const void *w, size_t ws,       \
                                 enum zl_dtype dt, int64_t k, float *out)                   \
    {                                                                                       \
        switch (dt) {                                                                       \
        case ZL_DTYPE_F16: TILE(x, xs, w, ws, ZL_DTYPE_F16, k, out, NX, NW); break;         \
        case ZL_DTYPE_BF16: TILE(x, xs, w, ws, ZL_DTYPE_BF16, k, out, NX, NW); break;       \
        default: TILE(x, xs, w, ws, ZL_DTYPE_F32, k, out, NX, NW); break;                   \
        }                                                                                   \
    }
#define CPU_DEFINE_TILES(TILE)                                                              \
    CPU_TILE_FN_(TILE, 4, 2) CPU_TILE_FN_(TILE, 4, 3) CPU_TILE_FN_(TILE, 1, 4) CPU_TILE_FN_(TILE, 1, 1)

const struct cpu_kernels *cpu_kernels_scalar(void);
/* NULL when this build or this CPU lacks AVX2 + FMA + F16C. */
const struct cpu_kernels *cpu_kernels_avx2(void);

/* ---- the instance ---- */

struct zl_bctx {
    int device;
    struct cpu_pool *pool;
    const struct cpu_kernels *k;
    float *scratch;             /* per-thread scratch, scratch_per_thread floats each */
    size_t scratch_per_thread;
    float *shared;              /* one buffer all threads of an op write (distinct parts) */
    size_t shared_floats;
};

/* Grows ctx->scratch to `floats` per thread (called before dispatch, so a
 * steady state allocates nothing).  ZL_ENOMEM with a message naming `op`. */
int cpu_scratch_reserve(struct zl_bctx *ctx, const char *op, size_t floats);

/* Grows ctx->shared to `floats` (before dispatch, like the scratch). */
int cpu_shared_reserve(struct zl_bctx *ctx, const char *op, size_t floats);

static inline float *cpu_scratch(struct zl_bctx *ctx, int ith)
{
    return ctx->scratch + (size_t)ith * ctx->scratch_per_thread;
}

/* ---- argument checks (cpu-check.c); each returns ZL_OK or ZL_EINVAL with
 * a message "cpu OP: NAME ..." ---- */

/* A tensor seen as n rows of d elements, rows `stride` bytes apart, each
 * row contiguous (outer dims must collapse into one stride). */
struct cpu_rows {
    char *data;
    int64_t n, d;
    size_t stride;
    enum zl_dtype dtype;
};

/* t must be non-NULL, placed, on the host or device 0, of a dtype allowed
 * by `dtypes` (a bit mask of 1u << ZL_DTYPE_*). */
int cpu_check_tensor(const char *op, const char *name, const struct zl_tensor *t,
                     uint32_t dtypes);
/* cpu_check_tensor, then t as rows (any n_dims). */
int cpu_check_rows(const char *op, const char *name, const struct zl_tensor *t, uint32_t dtypes,
                   struct cpu_rows *out);
/* cpu_check_tensor, then exactly 3 dims [n, heads, head_dim] with a
 * contiguous innermost dim. */
int cpu_check_3d(const char *op, const char *name, const struct zl_tensor *t, uint32_t dtypes);
/* Shapes of two row views equal ("NAME_A [n, d] vs NAME_B [n, d]"). */
int cpu_check_same_rows(const char *op, const char *na, const struct cpu_rows *a,
                        const char *nb, const struct cpu_rows *b);
/* The cache, layer and batch fit each other and n_tok query rows. */
int cpu_check_kv(const char *op, const struct zl_kv_cache *cache, int32_t layer,
                 const struct zl_attn_batch *batch, int64_t n_tok);

#define CPU_DT_FLOAT ((1u << ZL_DTYPE_F32) | (1u << ZL_DTYPE_F16) | (1u << ZL_DTYPE_BF16))
#define CPU_DT_F32 (1u << ZL_DTYPE_F32)
#define CPU_DT_I32 (1u << ZL_DTYPE_I32)

/* Address of token `slot`'s K (kv = 0) or V (kv = 1) row block for `layer`:
 * [n_kv_heads][head_dim] elements. */
static inline char *cpu_kv_row(const struct zl_kv_cache *c, int32_t layer, int kv, int64_t slot)
{
    int64_t blk = slot / c->block_size, off = slot % c->block_size;
    size_t row = (size_t)c->n_kv_heads * (size_t)c->head_dim * cpu_dtype_size(c->dtype);
    return (char *)c->base + (size_t)blk * c->block_stride +
           (((size_t)layer * 2 + (size_t)kv) * (size_t)c->block_size + (size_t)off) * row;
}

/* ---- ops (one file per concept) ---- */

int cpu_embedding(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *table,
                  const struct zl_tensor *tokens);
int cpu_linear(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
               const struct zl_tensor *w, const struct zl_tensor *bias);
int cpu_rms_norm(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                 struct zl_tensor *residual, const struct zl_tensor *weight, float eps);
int cpu_rope(struct zl_bctx *ctx, struct zl_tensor *q, struct zl_tensor *k,
             const struct zl_tensor *positions, const struct zl_rope *rope);
int cpu_silu_mul(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *gate,
                 const struct zl_tensor *up);
int cpu_add(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *a,
            const struct zl_tensor *b);
int cpu_copy_rows(struct zl_bctx *ctx, struct zl_tensor *dst, const struct zl_tensor *src);
int cpu_kv_write(struct zl_bctx *ctx, const struct zl_kv_cache *cache, int32_t layer,
                 const struct zl_tensor *k, const struct zl_tensor *v,
                 const struct zl_attn_batch *batch);
int cpu_attention(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *q,
                  const struct zl_kv_cache *cache, int32_t layer,
                  const struct zl_attn_batch *batch, float scale);

#endif
