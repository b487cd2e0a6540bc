/* The sample op (backend.h, API minor 1) in its two halves (API minor 9).
 * sample_queue checks the batch on the host, uploads its arrays in one
 * copy (ctx->samp), queues one block per row (sample.cu), the copy of the
 * results into pinned host memory (ctx->samp_host) and an event
 * (ctx->samp_done); sample_wait waits for that event.  sample is the one
 * then the other.  A batch of plain greedy rows (no logprobs, bias or
 * penalty tokens) uploads nothing and splits each row's argmax over
 * several blocks.
 *
 * Device scratch (ctx->samp_scratch, grown by doubling): the raw logits of
 * the ids each row modifies, then the results and the per-row status.
 * upload_tokens reads the results of the batch queued last there, in
 * stream order, until the next sample_queue (whose growth of the scratch
 * waits for the stream before freeing it). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "cuda-impl.h"
#include "cuda-sample.h"

#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

static int check_row(const struct zl_sample_batch *b, int32_t r, int32_t vocab, int32_t *n_tok,
                     int32_t *n_bias)
{
    const struct zl_sample_row *w = &b->rows[r];
    const char *bad = NULL;
    if (!(w->temperature >= 0.0f) || isinf(w->temperature))
        bad = "temperature must be a finite value >= 0";
    else if (!(w->top_p > 0.0f && w->top_p <= 1.0f))
        bad = "top_p must be in (0, 1]";
    else if (!(w->min_p >= 0.0f && w->min_p <= 1.0f))
        bad = "min_p must be in [0, 1]";
    else if (!(w->repetition_penalty > 0.0f) || isinf(w->repetition_penalty))
        bad = "repetition_penalty must be a finite value > 0";
    else if (!isfinite(w->presence_penalty) || !isfinite(w->frequency_penalty))
        bad = "presence/frequency penalties must be finite";
    else if (w->logprobs < -1 || w->logprobs > ZL_SAMPLE_MAX_LOGPROBS)
        bad = "logprobs must be in -1..20";
    else if (w->tok_start < 0 || w->n_tok < 0 || w->bias_start < 0 || w->n_bias < 0)
        bad = "tok_start, n_tok, bias_start and n_bias must be >= 0";
    else if (w->n_tok > 0 && (!b->tok_ids || !b->tok_counts))
        bad = "n_tok > 0 but the batch has no tok_ids/tok_counts";
    else if (w->n_bias > 0 && (!b->bias_ids || !b->bias))
        bad = "n_bias > 0 but the batch has no bias_ids/bias";
    if (bad)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample: row %d: %s", (int)r, bad);
    for (int32_t j = w->tok_start; j < w->tok_start + w->n_tok; j++)
        if (b->tok_ids[j] < 0 || b->tok_ids[j] >= vocab)
            return zl_cuda_host->error(ZL_EINVAL, "cuda sample: row %d: tok_ids[%d] = %d outside "
                                       "the vocabulary (%d)", (int)r, (int)j, (int)b->tok_ids[j],
                                       (int)vocab);
    for (int32_t j = w->bias_start; j < w->bias_start + w->n_bias; j++) {
        if (b->bias_ids[j] < 0 || b->bias_ids[j] >= vocab)
            return zl_cuda_host->error(ZL_EINVAL, "cuda sample: row %d: bias_ids[%d] = %d outside "
                                       "the vocabulary (%d)", (int)r, (int)j, (int)b->bias_ids[j],
                                       (int)vocab);
        if (isnan(b->bias[j]) || b->bias[j] == INFINITY)
            return zl_cuda_host->error(ZL_EINVAL, "cuda sample: row %d: bias[%d] is %g (finite or "
                                       "-inf to mask)", (int)r, (int)j, (double)b->bias[j]);
    }
    int32_t t = w->tok_start + w->n_tok, bb = w->bias_start + w->n_bias;
    *n_tok = t > *n_tok ? t : *n_tok;
    *n_bias = bb > *n_bias ? bb : *n_bias;
    return ZL_OK;
}

/* The kernels, then the results and status (adjacent on both sides, the
 * status at the aligned end of the results: one copy, and where
 * upload_tokens' gather looks for it) out, not waited for. */
static int launch(struct zl_bctx *ctx, const struct zl_cuda_sample_args *a)
{
    size_t res_bytes = zl_cuda_sample_status_at(a->n_rows);
    ZL_CUDA_TRY(zl_cuda_sample(a, ctx->stream));
    ZL_CUDA_TRY(cudaMemcpyAsync(ctx->samp_host, a->out, res_bytes + (size_t)a->n_rows * 4,
                                cudaMemcpyDeviceToHost, ctx->stream));
    cuda_idle_tokens_out(ctx);
    ZL_CUDA_TRY(cudaEventRecord(ctx->samp_done, ctx->stream));
    ctx->samp_res = a->out;
    ctx->samp_rows = a->n_rows;
    ctx->samp_vocab = a->vocab;
    ctx->samp_queued = 1;
    return ZL_OK;
}

/* Every row greedy with nothing to apply and no logprobs: the rows'
 * arrays need not go to the device, and the greedy kernel splits a row
 * over blocks (sample.cu). */
static int all_plain_greedy(const struct zl_sample_batch *b)
{
    if (b->n_rows > 65535) /* the rows are the grid's y */
        return 0;
    for (int32_t r = 0; r < b->n_rows; r++) {
        const struct zl_sample_row *w = &b->rows[r];
        if (w->temperature != 0.0f || w->logprobs >= 0 || w->n_tok > 0 || w->n_bias > 0)
            return 0;
    }
    return 1;
}

static int greedy(struct zl_bctx *ctx, const struct zl_cuda_rows *lg,
                  const struct zl_sample_batch *b)
{
    static const char op[] = "sample";
    int32_t n = b->n_rows, per;
    int32_t split = zl_cuda_sample_greedy_split(n, (int32_t)lg->d, ctx->sms, &per);
    size_t res_bytes = zl_cuda_sample_status_at(n);
    size_t st_bytes = ALIGN16((size_t)n * sizeof(int32_t));
    size_t counted = ctx->samp_count_cap;
    int rc;
    if ((rc = cuda_reserve(ctx, &ctx->samp_scratch, &ctx->samp_scratch_cap,
                           res_bytes + st_bytes + (size_t)n * (size_t)split * 8, op)) < 0 ||
        (rc = cuda_reserve(ctx, &ctx->samp_count, &ctx->samp_count_cap, (size_t)n * 4, op)) < 0 ||
        (rc = cuda_pinned_reserve(ctx, &ctx->samp_host, &ctx->samp_host_cap, res_bytes + st_bytes,
                                  1)) < 0)
        return rc;
    if (ctx->samp_count_cap != counted) /* the kernel leaves them zero from here on */
        ZL_CUDA_TRY(cudaMemsetAsync(ctx->samp_count, 0, ctx->samp_count_cap, ctx->stream));
    char *scratch = ctx->samp_scratch;
    struct zl_cuda_sample_args a = {
        .logits = lg->data,
        .stride = lg->stride / (int64_t)sizeof(float),
        .n_rows = n,
        .vocab = (int32_t)lg->d,
        .out = (struct zl_sample_result *)scratch,
        .status = (int32_t *)(scratch + res_bytes),
        .split = split,
        .per = per,
        .part = (unsigned long long *)(scratch + res_bytes + st_bytes),
        .count = ctx->samp_count,
    };
    return launch(ctx, &a);
}

int cuda_sample_queue(struct zl_bctx *ctx, struct zl_tensor *logits,
                      const struct zl_sample_batch *b)
{
    static const char op[] = "sample";
    struct zl_cuda_rows lg;
    int rc;
    if (ctx->samp_queued)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample_queue: the batch queued before has "
                                   "not been waited for (one batch at a time: sample_wait "
                                   "first)");
    ctx->samp_res = NULL; /* until this one is queued: the scratch may move */
    ctx->samp_rows = 0;
    if (!b)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample: NULL batch");
    if ((rc = cuda_check_rows(ctx, op, "logits", logits, 1u << ZL_DTYPE_F32, &lg)) < 0)
        return rc;
    if (logits->n_dims != 2)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample: logits has %d dims, want 2 [n_rows, "
                                   "vocab]", (int)logits->n_dims);
    if (b->n_rows < 0 || (b->n_rows > 0 && !b->rows) || lg.n != b->n_rows)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample: logits has %lld rows but the batch "
                                   "%d (rows %s)", (long long)lg.n, (int)b->n_rows,
                                   b->rows ? "given" : "NULL");
    if (lg.d < 1 || lg.d > INT32_MAX || lg.stride % (int64_t)sizeof(float))
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample: logits rows of %lld ids, stride %lld "
                                   "bytes", (long long)lg.d, (long long)lg.stride);
    if (b->n_rows == 0) {
        ctx->samp_queued = 1;
        return ZL_OK;
    }
    int32_t vocab = (int32_t)lg.d, n_tok = 0, n_bias = 0;
    size_t n_saved = 0;
    for (int32_t r = 0; r < b->n_rows; r++) {
        if ((rc = check_row(b, r, vocab, &n_tok, &n_bias)) < 0)
            return rc;
        n_saved += (size_t)b->rows[r].n_tok + (size_t)b->rows[r].n_bias;
    }
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    if (all_plain_greedy(b))
        return greedy(ctx, &lg, b);

    struct cuda_part parts[5] = {
        {.src = b->rows, .bytes = (size_t)b->n_rows * sizeof(struct zl_sample_row)},
        {.src = b->tok_ids, .bytes = (size_t)n_tok * sizeof(int32_t)},
        {.src = b->tok_counts, .bytes = (size_t)n_tok * sizeof(int32_t)},
        {.src = b->bias_ids, .bytes = (size_t)n_bias * sizeof(int32_t)},
        {.src = b->bias, .bytes = (size_t)n_bias * sizeof(float)},
    };
    void *dev[5];
    if ((rc = cuda_upload(ctx, &ctx->samp, op, parts, 5, dev)) < 0)
        return rc;

    size_t res_bytes = zl_cuda_sample_status_at(b->n_rows);
    size_t st_bytes = (size_t)b->n_rows * sizeof(int32_t);
    size_t saved_bytes = ALIGN16(n_saved * sizeof(float));
    if ((rc = cuda_reserve(ctx, &ctx->samp_scratch, &ctx->samp_scratch_cap,
                           saved_bytes + res_bytes + st_bytes, op)) < 0 ||
        (rc = cuda_pinned_reserve(ctx, &ctx->samp_host, &ctx->samp_host_cap,
                                         res_bytes + st_bytes, 1)) < 0)
        return rc;
    char *scratch = ctx->samp_scratch;
    struct zl_cuda_sample_args a = {
        .logits = lg.data,
        .stride = lg.stride / (int64_t)sizeof(float),
        .n_rows = b->n_rows,
        .vocab = vocab,
        .rows = dev[0],
        .tok_ids = dev[1],
        .tok_counts = dev[2],
        .bias_ids = dev[3],
        .bias = dev[4],
        .saved = (float *)scratch,
        .out = (struct zl_sample_result *)(scratch + saved_bytes),
        .status = (int32_t *)(scratch + saved_bytes + res_bytes),
    };
    return launch(ctx, &a);
}

int cuda_sample_wait(struct zl_bctx *ctx, struct zl_sample_result *out)
{
    if (!ctx->samp_queued)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample_wait: no sample batch queued (none "
                                   "since the last sample_wait, or its sample_queue failed)");
    ctx->samp_queued = 0; /* waited for or not, an error leaves nothing queued */
    if (!out)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample_wait: NULL out");
    int32_t n = ctx->samp_rows;
    if (n == 0)
        return ZL_OK;
    ZL_CUDA_TRY(cudaEventSynchronize(ctx->samp_done));
    cuda_idle_waited(ctx);
    const int32_t *status =
        (const int32_t *)((char *)ctx->samp_host + zl_cuda_sample_status_at(n));
    memcpy(out, ctx->samp_host, (size_t)n * sizeof(struct zl_sample_result));
    for (int32_t r = 0; r < n; r++)
        if (status[r] == ZL_CUDA_SAMPLE_MASKED)
            out[r].token = -1;  /* that row only: the others are valid */
    return ZL_OK;
}

int cuda_sample(struct zl_bctx *ctx, struct zl_tensor *logits, const struct zl_sample_batch *b,
                struct zl_sample_result *out)
{
    if (!b || !out)
        return zl_cuda_host->error(ZL_EINVAL, "cuda sample: NULL batch or out");
    int rc = cuda_sample_queue(ctx, logits, b);
    return rc < 0 ? rc : cuda_sample_wait(ctx, out);
}

int cuda_upload_tokens(struct zl_bctx *ctx, int32_t *dst, const int32_t *tokens,
                       const int32_t *from, int32_t n)
{
    if (!dst || (!tokens && n) || n < 0)
        return zl_cuda_host->error(ZL_EINVAL, "cuda upload_tokens: NULL dst or tokens, or n %d",
                                   (int)n);
    int any = 0;
    for (int32_t i = 0; from && i < n; i++) {
        if (from[i] < 0)
            continue;
        if (!ctx->samp_res)
            return zl_cuda_host->error(ZL_EINVAL, "cuda upload_tokens: row %d takes sample row "
                                       "%d, but the last sample_queue had no rows or failed "
                                       "(or none came since open)", (int)i, (int)from[i]);
        if (from[i] >= ctx->samp_rows)
            return zl_cuda_host->error(ZL_EINVAL, "cuda upload_tokens: row %d takes sample row "
                                       "%d, but the batch queued last has %d rows", (int)i,
                                       (int)from[i], (int)ctx->samp_rows);
        any = 1;
    }
    if (!any) /* a plain upload */
        return cuda_upload_input(ctx, dst, tokens, (size_t)n * sizeof(int32_t));
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    /* the batch's row count travels as data: a graph's gather then fits
     * every batch whose results sit at the same address */
    const int32_t rows = ctx->samp_rows;
    struct cuda_part parts[3] = {{.src = tokens, .bytes = (size_t)n * sizeof(int32_t)},
                                 {.src = from, .bytes = (size_t)n * sizeof(int32_t)},
                                 {.src = &rows, .bytes = sizeof rows}};
    void *dev[3];
    int rc = cuda_upload(ctx, &ctx->samp_tok, "upload_tokens", parts, 3, dev);
    if (rc < 0)
        return rc;
    if (cuda_graph_pass(ctx)) { /* a graph replays the gather only over the same results */
        int64_t w[6] = {0x746f6b73 /* "toks" */, (int64_t)(uintptr_t)dst, n,
                        (int64_t)(uintptr_t)dev[0], (int64_t)(uintptr_t)ctx->samp_res,
                        ctx->samp_vocab};
        cuda_graph_note(ctx, w, sizeof w);
    }
    if (cuda_graph_dry(ctx))
        return ZL_OK;
    ZL_CUDA_TRY(zl_cuda_sampled_tokens(dst, dev[0], dev[1], dev[2], ctx->samp_res,
                                       ctx->samp_vocab, n, ctx->stream));
    return ZL_OK;
}
