/* The CUDA backend plugin: device memory and copies for the memory manager,
 * the instance (stream, cuBLASLt handle, scratch: see cuda-impl.h) and the
 * op table.  The ops live in cuda-ops.c, cuda-linear.c and
 * cuda-attention.c, their kernels in the .cu files. */
#include "config.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include <zlight/backend.h>
#include <zlight/plugin.h>

#include "cuda-impl.h"

const struct zl_host *zl_cuda_host;

static int cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        return 0; /* no driver or no GPU: not an error for a backend probe */
    return n;
}

static int cuda_score(void)
{
    return cuda_device_count() > 0 ? 100 : 0;
}

static int cuda_mem_info(int device, size_t *free_bytes, size_t *total_bytes)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    ZL_CUDA_TRY(cudaMemGetInfo(free_bytes, total_bytes));
    return ZL_OK;
}

static int cuda_mem_alloc(int device, size_t bytes, void **out)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    cudaError_t err = cudaMalloc(out, bytes);
    if (err != cudaSuccess)
        return zl_cuda_host->error(ZL_ENOMEM, "cudaMalloc(%zu bytes) on device %d failed: %s",
                                   bytes, device, cudaGetErrorString(err));
    return ZL_OK;
}

static unsigned long g_frees;

unsigned long cuda_frees(void)
{
    return __atomic_load_n(&g_frees, __ATOMIC_ACQUIRE);
}

static void cuda_mem_free(int device, void *ptr)
{
    if (ptr && cudaSetDevice(device) == cudaSuccess) {
        __atomic_add_fetch(&g_frees, 1, __ATOMIC_ACQ_REL); /* before: no hint outlives it */
        ZL_CUDA_WARN(cudaFree(ptr));
    }
}

/* Inside a graph bracket a forward may only queue (backend.h graph_begin). */
static int outside_bracket(struct zl_bctx *ctx, const char *what)
{
    if (!ctx || !cuda_graph_pass(ctx))
        return ZL_OK;
    return zl_cuda_host->error(ZL_EINVAL, "cuda %s: not allowed inside a graph bracket (the "
                               "forward would wait for work it has not queued)", what);
}

static int cuda_copy_to_host(int device, void *dst, const void *src, size_t bytes)
{
    int rc = outside_bracket(cuda_graph_active(device), "copy_to_host");
    if (rc < 0)
        return rc;
    ZL_CUDA_TRY(cudaSetDevice(device));
    ZL_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return ZL_OK;
}

static int cuda_synchronize(int device)
{
    int rc = outside_bracket(cuda_graph_active(device), "synchronize");
    if (rc < 0)
        return rc;
    ZL_CUDA_TRY(cudaSetDevice(device));
    ZL_CUDA_TRY(cudaDeviceSynchronize());
    return ZL_OK;
}

static int cuda_convert(int device, enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                        const void *src, size_t n)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    cudaError_t err = zl_cuda_convert(dst_dt, dst, src_dt, src, n, 0);
    if (err == cudaErrorInvalidValue)
        return zl_cuda_host->error(ZL_EUNSUPPORTED, "cuda convert: dtype %d -> %d is not supported "
                                   "(only f32, f16 and bf16)", (int)src_dt, (int)dst_dt);
    ZL_CUDA_TRY(err);
    return ZL_OK;
}

/* ---- instances ---- */

/* A capture cannot wait for the stream; the recording pass before it
 * grew everything the capture needs, so this is only reached by a bug. */
static int no_capture(const struct zl_bctx *ctx, const char *op)
{
    if (ctx->gr.mode != CUDA_GRAPH_CAPTURE)
        return ZL_OK;
    return zl_cuda_host->error(ZL_EINVAL, "cuda %s: a buffer would grow during graph capture",
                               op);
}

int cuda_reserve(struct zl_bctx *ctx, void **buf, size_t *cap, size_t bytes, const char *op)
{
    if (bytes <= *cap)
        return ZL_OK;
    int rc = no_capture(ctx, op);
    if (rc < 0)
        return rc;
    size_t want = *cap * 2 > bytes ? *cap * 2 : bytes;
    /* queued kernels may still read the old buffer */
    ZL_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    void *old = *buf;
    *buf = NULL;
    *cap = 0;
    ZL_CUDA_TRY(cudaFree(old));
    if (old)
        cuda_graph_forget(ctx);
    cudaError_t err = cudaMalloc(buf, want);
    if (err != cudaSuccess) {
        *buf = NULL;
        return zl_cuda_host->error(ZL_ENOMEM, "cuda %s: cudaMalloc(%zu bytes) of scratch failed: "
                                   "%s", op, want, cudaGetErrorString(err));
    }
    *cap = want;
    zl_cuda_host->log(ZL_LOG_DEBUG, "cuda", "%s: scratch grown to %zu bytes", op, want);
    return ZL_OK;
}

int cuda_reserve_counts(struct zl_bctx *ctx, void **buf, size_t *cap, size_t bytes, const char *op)
{
    size_t had = *cap;
    int rc = cuda_reserve(ctx, buf, cap, bytes, op);
    if (rc == ZL_OK && *cap != had) /* the kernels keep them zero from here on */
        ZL_CUDA_TRY(cudaMemsetAsync(*buf, 0, *cap, ctx->stream));
    return rc;
}

int cuda_pinned_reserve(struct zl_bctx *ctx, void **buf, size_t *cap, size_t bytes, size_t copies)
{
    if (bytes <= *cap)
        return ZL_OK;
    int rc = no_capture(ctx, "upload");
    if (rc < 0)
        return rc;
    size_t want = *cap * 2 > bytes ? *cap * 2 : bytes;
    ZL_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    void *old = *buf;
    *buf = NULL;
    *cap = 0;
    ZL_CUDA_TRY(cudaFreeHost(old));
    ZL_CUDA_TRY(cudaHostAlloc(buf, want * copies, cudaHostAllocDefault));
    *cap = want;
    return ZL_OK;
}

/* Grows the pinned staging slots to `bytes` each. */
static int stage_reserve(struct zl_bctx *ctx, size_t bytes)
{
    return cuda_pinned_reserve(ctx, &ctx->stage, &ctx->stage_slot, bytes,
                               CUDA_STAGE_SLOTS);
}

static int host_reserve(void **buf, size_t *cap, size_t bytes, const char *op)
{
    if (bytes <= *cap)
        return ZL_OK;
    size_t want = *cap * 2 > bytes ? *cap * 2 : bytes;
    void *p = realloc(*buf, want);
    if (!p)
        return zl_cuda_host->error(ZL_ENOMEM, "cuda %s: out of host memory (%zu bytes)", op, want);
    *buf = p;
    *cap = want;
    return ZL_OK;
}

#define UPLOAD_ALIGN 16

static size_t part_size(const struct cuda_part *p)
{
    return p->rows ? p->rows * p->pitch : p->bytes;
}

/* Whether `at` (zeros in every gap, as pack() leaves it) holds the part. */
static int part_same(const char *at, const struct cuda_part *p)
{
    if (!p->rows)
        return !p->bytes || !memcmp(at, p->src, p->bytes);
    for (size_t r = 0; r < p->rows; r++)
        if (memcmp(at + r * p->pitch, (const char *)p->src + r * p->row_bytes, p->row_bytes))
            return 0;
    return 1;
}

static void part_pack(char *at, const struct cuda_part *p)
{
    if (!p->rows) {
        if (p->bytes)
            memcpy(at, p->src, p->bytes);
        return;
    }
    for (size_t r = 0; r < p->rows; r++)
        memcpy(at + r * p->pitch, (const char *)p->src + r * p->row_bytes, p->row_bytes);
}

/* bytes from src to dst through the next pinned staging slot, queued on
 * the stream: src may be reused at once. */
static int stage_copy(struct zl_bctx *ctx, void *dst, const void *src, size_t bytes)
{
    int rc = stage_reserve(ctx, bytes);
    if (rc < 0)
        return rc;
    unsigned s = ctx->stage_next++ % CUDA_STAGE_SLOTS;
    char *slot = (char *)ctx->stage + (size_t)s * ctx->stage_slot;
    /* the slot's previous copy must have left it; it was queued
     * CUDA_STAGE_SLOTS uploads ago, so this rarely waits */
    ZL_CUDA_TRY(cudaEventSynchronize(ctx->stage_ev[s]));
    memcpy(slot, src, bytes);
    ZL_CUDA_TRY(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, ctx->stream));
    ZL_CUDA_TRY(cudaEventRecord(ctx->stage_ev[s], ctx->stream));
    return ZL_OK;
}

/* backend.h upload (API minor 8): a step's input, queued, not waited for. */
int cuda_upload_input(struct zl_bctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (!dst || (!src && bytes))
        return zl_cuda_host->error(ZL_EINVAL, "cuda upload: NULL %s", dst ? "src" : "dst");
    if (!bytes)
        return ZL_OK;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    if (cuda_graph_pass(ctx)) /* a step's input inside a graph bracket */
        return cuda_graph_upload(ctx, dst, src, bytes);
    return stage_copy(ctx, dst, src, bytes);
}

int cuda_upload(struct zl_bctx *ctx, struct cuda_upload *up, const char *op,
                const struct cuda_part *parts, int n, void **dev)
{
    size_t off[8], total = 0;
    assert(n <= 8);
    for (int i = 0; i < n; i++) {
        off[i] = total;
        total += (part_size(&parts[i]) + UPLOAD_ALIGN - 1) & ~(size_t)(UPLOAD_ALIGN - 1);
    }
    if (total == 0) { /* nothing to copy; the kernels read no element */
        for (int i = 0; i < n; i++)
            dev[i] = up->dev;
        return ZL_OK;
    }
    /* the common case (every layer of a step uploads the same batch) is
     * decided by comparing in place, before anything is packed */
    int same = up->last_len == total;
    for (int i = 0; same && i < n; i++)
        same = part_same((const char *)up->last + off[i], &parts[i]);
    int rc = ZL_OK;
    if (!same) {
        if ((rc = host_reserve(&ctx->pack, &ctx->pack_cap, total, op)) < 0)
            return rc;
        memset(ctx->pack, 0, total); /* the gaps take part in later comparisons */
        for (int i = 0; i < n; i++)
            part_pack((char *)ctx->pack + off[i], &parts[i]);
    }
    if (total > up->cap) {
        free(up->last);
        up->last = NULL;
        up->last_len = 0;
        memset(up->checked, 0, sizeof up->checked);
        if ((rc = cuda_reserve(ctx, &up->dev, &up->cap, total, op)) < 0)
            return rc;
        if (!(up->last = malloc(up->cap)))
            return zl_cuda_host->error(ZL_ENOMEM, "cuda %s: out of host memory", op);
    }
    const char *pack = ctx->pack;
    if (cuda_graph_pass(ctx)) { /* staged where the graph's copy node reads it */
        int64_t skip[2] = {(int64_t)(uintptr_t)up->dev, -(int64_t)total};
        if (same)
            cuda_graph_note(ctx, skip, sizeof skip);
        else if ((rc = cuda_graph_upload(ctx, up->dev, pack, total)) < 0)
            return rc;
    } else if (!same && (rc = stage_copy(ctx, up->dev, pack, total)) < 0) {
        return rc;
    }
    if (!same) {
        memcpy(up->last, pack, total);
        up->last_len = total;
        memset(up->checked, 0, sizeof up->checked);
    }
    for (int i = 0; i < n; i++)
        dev[i] = (char *)up->dev + off[i];
    return ZL_OK;
}

static void upload_free(struct cuda_upload *up)
{
    ZL_CUDA_WARN(cudaFree(up->dev));
    free(up->last);
    memset(up, 0, sizeof *up);
}

static void cuda_close(struct zl_bctx *ctx)
{
    if (!ctx)
        return;
    ZL_CUDA_WARN(cudaSetDevice(ctx->device));
    cuda_graph_abandon(ctx); /* closed mid-bracket: a capture cannot be waited for */
    if (ctx->stream) /* nothing queued may outlive its buffers */
        ZL_CUDA_WARN(cudaStreamSynchronize(ctx->stream));
    cuda_graph_free(ctx);
    cuda_idle_close(ctx);
    cuda_linear_cache_free(ctx);
    if (ctx->lt)
        ZL_CUBLAS_WARN(cublasLtDestroy(ctx->lt));
    ZL_CUDA_WARN(cudaFree(ctx->lt_ws));
    upload_free(&ctx->meta);
    upload_free(&ctx->freq);
    upload_free(&ctx->samp);
    upload_free(&ctx->samp_tok);
    upload_free(&ctx->chain);
    free(ctx->chain_host);
    ZL_CUDA_WARN(cudaFree(ctx->chain_scratch));
    ZL_CUDA_WARN(cudaFree(ctx->samp_scratch));
    ZL_CUDA_WARN(cudaFree(ctx->samp_count));
    ZL_CUDA_WARN(cudaFreeHost(ctx->samp_host));
    if (ctx->samp_done)
        ZL_CUDA_WARN(cudaEventDestroy(ctx->samp_done));
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++)
        if (ctx->stage_ev[i])
            ZL_CUDA_WARN(cudaEventDestroy(ctx->stage_ev[i]));
    ZL_CUDA_WARN(cudaFreeHost(ctx->stage));
    free(ctx->pack);
    ZL_CUDA_WARN(cudaFree(ctx->conv));
    ZL_CUDA_WARN(cudaFree(ctx->attn_scratch));
    ZL_CUDA_WARN(cudaFree(ctx->attn_count));
    ZL_CUDA_WARN(cudaFree(ctx->lin_scratch));
    ZL_CUDA_WARN(cudaFree(ctx->lin_count));
    ZL_CUDA_WARN(cudaFree(ctx->err));
    ZL_CUDA_WARN(cudaFreeHost(ctx->err_host));
    if (ctx->stream)
        ZL_CUDA_WARN(cudaStreamDestroy(ctx->stream));
    free(ctx);
}

static int open_resources(struct zl_bctx *ctx)
{
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    /* A blocking stream (not cudaStreamNonBlocking): the synchronous
     * copy_to_device/copy_to_host hooks run on the legacy default stream,
     * which then waits for this stream's queued work and vice versa, so a
     * model may refill its inputs between steps without a sync(). */
    ZL_CUDA_TRY(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamDefault));
    ZL_CUDA_TRY(cudaDeviceGetAttribute(&ctx->sms, cudaDevAttrMultiProcessorCount, ctx->device));
    ZL_CUBLAS_TRY(cublasLtCreate(&ctx->lt));
    ZL_CUDA_TRY(cudaMalloc(&ctx->lt_ws, CUDA_LT_WORKSPACE));
    ZL_CUDA_TRY(cudaMalloc((void **)&ctx->err, 4 * sizeof(int32_t)));
    ZL_CUDA_TRY(cudaMemset(ctx->err, 0, 4 * sizeof(int32_t)));
    ZL_CUDA_TRY(cudaHostAlloc((void **)&ctx->err_host, 4 * sizeof(int32_t), cudaHostAllocDefault));
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++)
        ZL_CUDA_TRY(cudaEventCreateWithFlags(&ctx->stage_ev[i], cudaEventDisableTiming));
    ZL_CUDA_TRY(cudaEventCreateWithFlags(&ctx->samp_done, cudaEventDisableTiming));
    int rc = stage_reserve(ctx, CUDA_META_INITIAL);
    if (rc == ZL_OK)
        rc = cuda_reserve(ctx, &ctx->meta.dev, &ctx->meta.cap, CUDA_META_INITIAL, "open");
    if (rc == ZL_OK && !(ctx->meta.last = malloc(ctx->meta.cap)))
        rc = zl_cuda_host->error(ZL_ENOMEM, "cuda open: out of host memory");
    if (rc == ZL_OK)
        cuda_idle_open(ctx);
    return rc;
}

/* ZL_PREFILL_WG (an A/B and test knob): which variant of the wgmma
 * prefill attention (attention-prefill-wg.cu) to try first on an
 * H100/H200; 0, the default, none: 4-20% faster alone with 2 or 3, it
 * did not speed up a serving run (docs/cuda-perf-log.md).
 * Anything else is named in the log and leaves it off; so is a variant
 * this build or device cannot run (cuda_open asks), which would otherwise
 * fall back to the mma.sync kernel without a word. */
static int prefill_wg_variant(void)
{
    const char *v = getenv("ZL_PREFILL_WG");
    if (!v)
        return 0;
    if (v[0] >= '0' && v[0] <= '0' + ZL_CUDA_PREFILL_WG_VARIANTS && !v[1])
        return v[0] - '0';
    zl_cuda_host->log(ZL_LOG_WARN, "cuda", "ZL_PREFILL_WG='%s' is not 0-%d: the wgmma prefill "
                      "stays off", v, ZL_CUDA_PREFILL_WG_VARIANTS);
    return 0;
}

static void prefill_wg_check(struct zl_bctx *ctx)
{
    const char *why = ctx->prefill_wg ? zl_cuda_prefill_wg_declines(ctx->prefill_wg) : NULL;
    if (!why)
        return;
    zl_cuda_host->log(ZL_LOG_WARN, "cuda", "ZL_PREFILL_WG=%d: the wgmma prefill cannot run on "
                      "device %d: %s; the mma.sync kernel runs instead", ctx->prefill_wg,
                      ctx->device, why);
    ctx->prefill_wg = 0;
}

static int cuda_open(const struct zl_backend_open_params *p, struct zl_bctx **out)
{
    if (!p || !out || p->size < sizeof(struct zl_backend_open_params))
        return zl_cuda_host->error(ZL_EINVAL, "cuda open: NULL or too old params (size %u)",
                                   p ? (unsigned)p->size : 0u);
    int n = cuda_device_count();
    if (p->device < 0 || p->device >= n)
        return zl_cuda_host->error(ZL_EINVAL, "cuda open: no device %d (%d present)",
                                   (int)p->device, n);
    struct zl_bctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return zl_cuda_host->error(ZL_ENOMEM, "cuda open: out of memory");
    ctx->device = p->device;
    const char *pf = getenv("ZL_CUDA_PREFETCH");
    ctx->pf.on = !pf || strcmp(pf, "0");
    ctx->prefill_wg = prefill_wg_variant();
    ctx->pf.after = -1;
    int rc = open_resources(ctx);
    if (rc < 0) {
        cuda_close(ctx);
        return rc;
    }
    prefill_wg_check(ctx);
    zl_cuda_host->log(ZL_LOG_DEBUG, "cuda", "instance on device %d: cuBLASLt workspace %zu MiB",
                      ctx->device, CUDA_LT_WORKSPACE >> 20);
    *out = ctx;
    return ZL_OK;
}

/* Waits for the queued work, then reports what the kernels flagged. */
static int cuda_sync(struct zl_bctx *ctx)
{
    int rc = outside_bracket(ctx, "sync");
    if (rc < 0)
        return rc;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    ZL_CUDA_TRY(cudaMemcpyAsync(ctx->err_host, ctx->err, 4 * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, ctx->stream));
    ZL_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    if (ctx->err_host[0]) {
        int32_t e[4];
        memcpy(e, ctx->err_host, sizeof e);
        ZL_CUDA_TRY(cudaMemsetAsync(ctx->err, 0, 4 * sizeof(int32_t), ctx->stream));
        ZL_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
        return zl_cuda_host->error(ZL_ERANGE, "cuda embedding: token %d has id %d, outside 0..%d "
                                   "(found at sync)", (int)e[2], (int)e[1], (int)e[3] - 1);
    }
    return ZL_OK;
}

static const struct zl_backend_ops cuda_ops = {
    .size = sizeof(struct zl_backend_ops),
    .description = "NVIDIA CUDA",
    .score = cuda_score,
    .device_count = cuda_device_count,
    .mem_info = cuda_mem_info,
    .mem_alloc = cuda_mem_alloc,
    .mem_free = cuda_mem_free,
    .copy_to_device = cuda_copy_to_device,
    .copy_to_host = cuda_copy_to_host,
    .synchronize = cuda_synchronize,
    .convert = cuda_convert,
    .open = cuda_open,
    .close = cuda_close,
    .embedding = cuda_embedding,
    .rms_norm = cuda_rms_norm,
    .linear = cuda_linear,
    .rope = cuda_rope,
    .silu_mul = cuda_silu_mul,
    .kv_write = cuda_kv_write,
    .attention = cuda_attention,
    .add = cuda_add,
    .copy = cuda_copy_rows,
    .sync = cuda_sync,
    .act_dtypes = (1u << ZL_DTYPE_F16) | (1u << ZL_DTYPE_BF16),
    .sample = cuda_sample,
    .rope_kv_write = cuda_rope_kv_write,
    .linear_fused = cuda_linear_fused,
    .linear_rope_kv = cuda_linear_rope_kv,
    .fused_max_rows = ZL_CUDA_GEMV_MAX_ROWS,    /* the fused GEMV's limit */
    .rope_attention = cuda_rope_attention,
    .decoder_layers = cuda_decoder_layers,
    .upload = cuda_upload_input,
    .sample_queue = cuda_sample_queue,
    .sample_wait = cuda_sample_wait,
    .upload_tokens = cuda_upload_tokens,
};

static int cuda_init(const struct zl_host *h)
{
    zl_cuda_host = h;
    static struct zl_backend_ops graphed;
    graphed = cuda_ops;
    cuda_graph_wrap_ops(&graphed);
#ifdef ZL_GEMV_TUNING
    /* ZL_ROPE_ATTN=0: no rope_attention, the model calls rope_kv_write and
     * attention (the path before API minor 6), for an A/B in one build */
    const char *ra = getenv("ZL_ROPE_ATTN");
    if (ra && *ra == '0')
        graphed.rope_attention = NULL;
#endif
    const struct zl_backend_ops *ops = &graphed;
#ifdef ZL_GEMV_TUNING
    ops = cuda_knockout_ops(ops);
#endif
    const char *prof = getenv("ZLIGHT_PROFILE");
    if (prof && !strcmp(prof, "ops")) /* timing every op: no graphs */
        ops = cuda_profile_ops(ops);
    return h->register_ops(ZL_PLUGIN_BACKEND, "cuda", ops);
}

ZL_PLUGIN_DEFINE("cuda", PACKAGE_VERSION, "CUDA compute backend", cuda_init, cuda_staging_free)
