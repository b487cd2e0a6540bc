/* Host "devices" with a sampler for the engine tests: host_sample
 * rebuilds, from each row alone, the sampling parameters and the sequence
 * the CPU sampler would see, and samples with it (so the device path must
 * hand every row what the CPU sampler reads); async_backend_ops splits it
 * into sample_queue / sample_wait and reads queued tokens back through
 * upload_tokens, as a device does for async scheduling. */
#ifndef TEST_ENGINE_HOSTDEV_H
#define TEST_ENGINE_HOSTDEV_H

#include <criterion/criterion.h>
#include "test_engine_fakemodel.h"

static int n_sample_calls;


/* The row as a CPU sampler call: listed tokens become a prompt (seen) and
 * an output holding each id `count` times, padded to `step` tokens. */
static int host_sample(struct zl_bctx *ctx, struct zl_tensor *logits, const struct zl_sample_batch *b,
                       struct zl_sample_result *out)
{
    (void)ctx;
    struct zl_sampler *s;
    int rc = zl_sampler_create((int32_t)logits->ne[1], &s);
    if (rc < 0)
        return rc;
    n_sample_calls++;
    for (int32_t i = 0; rc == ZL_OK && i < b->n_rows; i++) {
        const struct zl_sample_row *r = &b->rows[i];
        struct zl_sampling_params p = zl_sampling_default_params();
        p.temperature = r->temperature;
        p.top_p = r->top_p;
        p.top_k = r->top_k;
        p.min_p = r->min_p;
        p.repetition_penalty = r->repetition_penalty;
        p.presence_penalty = r->presence_penalty;
        p.frequency_penalty = r->frequency_penalty;
        p.logprobs = r->logprobs;
        p.logit_bias_ids = b->bias_ids + r->bias_start;
        p.logit_bias = b->bias + r->bias_start;
        p.n_logit_bias = r->n_bias;
        int32_t *out_ids = calloc((size_t)r->step + 1, sizeof(int32_t)), n_out = 0;
        cr_assert_not_null(out_ids);
        for (int32_t t = 0; t < r->n_tok; t++)
            for (int32_t c = 0; c < b->tok_counts[r->tok_start + t]; c++)
                out_ids[n_out < (int32_t)r->step ? n_out++ : n_out] = b->tok_ids[r->tok_start + t];
        if (r->n_tok)
            cr_expect_eq(n_out, (int32_t)r->step, "output counts add up to the step");
        struct zl_sampler_seq q = {
            .prompt = b->tok_ids + r->tok_start, .n_prompt = r->n_tok, .output = out_ids,
            .n_output = (int32_t)r->step, .seed = r->seed, .stream = r->stream,
        };
        rc = zl_sampler_sample(s, &p, &q, (float *)logits->data + (size_t)i * logits->ne[1], &out[i]);
        if (rc == ZL_EINVAL) {      /* every token masked: that row only (backend.h) */
            out[i].token = -1;
            rc = ZL_OK;
        }
        free(out_ids);
    }
    zl_sampler_free(s);
    return rc;
}

static const struct zl_backend_ops sampling_backend_ops = {
    .size = sizeof(struct zl_backend_ops), .description = "fake host with a sampler",
    .copy_to_device = fb_copy, .copy_to_host = fb_copy, .sample = host_sample,
};


/* The batch queued last: its results stay readable ("on the device")
 * after sample_wait until the next sample_queue, as backend.h says. */
static struct {
    struct zl_sample_result res[1024];
    int32_t n;
    int queued, valid;
    int64_t queues, misuse;
} host_q;

static int host_sample_queue(struct zl_bctx *ctx, struct zl_tensor *logits,
                             const struct zl_sample_batch *b)
{
    if (host_q.queued) {
        host_q.misuse++;
        return zl_error(ZL_EINVAL, "host sample_queue: a batch is already queued");
    }
    if (b->n_rows > 1024)
        return zl_error(ZL_EINVAL, "host sample_queue: %d rows", b->n_rows);
    host_q.valid = 0;
    int rc = host_sample(ctx, logits, b, host_q.res);
    if (rc < 0)
        return rc;
    host_q.n = b->n_rows;
    host_q.queued = host_q.valid = 1;
    host_q.queues++;
    return ZL_OK;
}

static int host_sample_wait(struct zl_bctx *ctx, struct zl_sample_result *out)
{
    (void)ctx;
    if (!host_q.queued) {
        host_q.misuse++;
        return zl_error(ZL_EINVAL, "host sample_wait: nothing queued");
    }
    host_q.queued = 0;
    memcpy(out, host_q.res, sizeof(*out) * (size_t)host_q.n);
    return ZL_OK;
}

static int host_upload_tokens(struct zl_bctx *ctx, int32_t *dst, const int32_t *tokens,
                              const int32_t *from, int32_t n)
{
    (void)ctx;
    for (int32_t i = 0; i < n; i++) {
        if (!from || from[i] < 0) {
            dst[i] = tokens[i];
            continue;
        }
        if (!host_q.valid || from[i] >= host_q.n) {
            host_q.misuse++;
            return zl_error(ZL_EINVAL, "host upload_tokens: row %d reads sample row %d of %d", i,
                            from[i], host_q.valid ? host_q.n : 0);
        }
        int32_t t = host_q.res[from[i]].token;
        dst[i] = t < 0 ? 0 : t;     /* a masked row reads as 0 */
    }
    return ZL_OK;
}

static const struct zl_backend_ops async_backend_ops = {
    .size = sizeof(struct zl_backend_ops), .description = "fake host, async sampler",
    .copy_to_device = fb_copy, .copy_to_host = fb_copy, .sample = host_sample,
    .sample_queue = host_sample_queue, .sample_wait = host_sample_wait,
    .upload_tokens = host_upload_tokens,
};

#endif
