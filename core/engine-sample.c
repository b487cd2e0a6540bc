/* Device sampling: the step's rows turned into the backend's sample batch
 * (backend.h) so the logits never leave the device; only the results come
 * back.  The rows carry what the CPU sampler reads from the sequence: the
 * min_tokens mask and the logit bias as additive entries, and the distinct
 * prompt/output tokens with their output counts for the penalties. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine-impl.h"

/* Grows *p to hold n elements of `size` bytes (doubling). */
static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return ZL_OK;
    size_t want = *cap ? *cap : 256;
    while (want < n)
        want *= 2;
    void *q = realloc(*p, want * size);
    if (!q)
        return zl_error(ZL_ENOMEM, "engine: out of memory for the sample batch");
    *p = q;
    *cap = want;
    return ZL_OK;
}

int zl_engine_dsample_bias(struct eng_dsample *d, int32_t id, float v)
{
    int rc = grow((void **)&d->bias_ids, &d->bias_cap, d->n_bias + 1, sizeof(int32_t));
    if (rc == ZL_OK)
        rc = grow((void **)&d->bias, &d->biasv_cap, d->n_bias + 1, sizeof(float));
    if (rc < 0)
        return rc;
    d->bias_ids[d->n_bias] = id;
    d->bias[d->n_bias++] = v;
    return ZL_OK;
}

/* The distinct tokens of prompt and output with their output counts;
 * d->mark and d->count are all zeros between calls. */
static int add_penalty_tokens(struct zl_engine *e, const struct zl_sched_seq *s)
{
    struct eng_dsample *d = &e->ds;
    int32_t start = d->n_tok;
    size_t need = (size_t)d->n_tok + (size_t)s->n_tokens;
    int rc = grow((void **)&d->tok_ids, &d->tok_cap, need, sizeof(int32_t));
    if (rc == ZL_OK)
        rc = grow((void **)&d->tok_counts, &d->cnt_cap, need, sizeof(int32_t));
    if (rc < 0)
        return rc;
    for (int32_t i = 0; i < s->n_tokens; i++) {
        int32_t t = s->tokens[i];
        if (t < 0 || t >= e->vocab)
            continue;
        if (!d->mark[t]) {
            d->mark[t] = 1;
            d->tok_ids[d->n_tok++] = t;
        }
        if (i >= s->n_prompt)
            d->count[t]++;
    }
    for (int32_t i = start; i < d->n_tok; i++) {
        int32_t t = d->tok_ids[i];
        d->tok_counts[i] = d->count[t];
        d->count[t] = 0;
        d->mark[t] = 0;
    }
    return ZL_OK;
}

/* A guided row: the tokens its guide rules out get -inf entries.  Most of
 * the vocabulary at a brace or a colon, so this is the slow part of a
 * guided row; a bitmask in the sample batch would be the next step. */
static int guide_bias(struct zl_engine *e, struct eng_seq *q)
{
    int rc = zl_engine_guide_mask(e, q);
    for (int32_t t = 0; rc == ZL_OK && t < e->vocab; t++)
        if (!(e->gmask[t / 32] >> (t % 32) & 1))
            rc = zl_engine_dsample_bias(&e->ds, t, -INFINITY);
    return rc;
}

/* Row i of the batch from sequence q; a retired sequence's row (q NULL,
 * async scheduling) is sampled greedily and dropped. */
static int add_row(struct zl_engine *e, struct eng_seq *q, struct zl_sample_row *row)
{
    struct eng_dsample *d = &e->ds;
    if (!q) {
        *row = (struct zl_sample_row){.top_p = 1.0f, .repetition_penalty = 1.0f, .logprobs = -1,
                                      .tok_start = d->n_tok, .bias_start = d->n_bias};
        return ZL_OK;
    }
    const struct zl_sampling_params *sp = &q->req->sp;
    int32_t n_out = q->s.n_tokens - q->s.n_prompt;
    int rc = ZL_OK;
    *row = (struct zl_sample_row){
        .temperature = sp->temperature, .top_p = sp->top_p, .min_p = sp->min_p,
        .top_k = sp->top_k, .repetition_penalty = sp->repetition_penalty,
        .presence_penalty = sp->presence_penalty, .frequency_penalty = sp->frequency_penalty,
        .logprobs = sp->logprobs, .seed = q->req->seed, .stream = (uint64_t)q->index,
        .step = (uint64_t)n_out, .tok_start = d->n_tok, .bias_start = d->n_bias,
    };
    if (n_out < sp->min_tokens) {
        for (int32_t i = 0; rc == ZL_OK && i < e->p.n_eos; i++)
            rc = zl_engine_dsample_bias(d, e->p.eos_ids[i], -INFINITY);
        for (int32_t i = 0; rc == ZL_OK && i < sp->n_stop_token_ids; i++)
            rc = zl_engine_dsample_bias(d, sp->stop_token_ids[i], -INFINITY);
    }
    for (int32_t i = 0; rc == ZL_OK && i < sp->n_logit_bias; i++)
        rc = zl_engine_dsample_bias(d, sp->logit_bias_ids[i], sp->logit_bias[i]);
    if (rc == ZL_OK && q->guide)
        rc = guide_bias(e, q);
    if (rc == ZL_OK && (sp->repetition_penalty != 1.0f || sp->presence_penalty != 0.0f ||
                        sp->frequency_penalty != 0.0f))
        rc = add_penalty_tokens(e, &q->s);
    row->n_tok = d->n_tok - row->tok_start;
    row->n_bias = d->n_bias - row->bias_start;
    return rc;
}

int zl_engine_dsample_init(struct zl_engine *e)
{
    struct eng_dsample *d = &e->ds;
    const struct zl_backend_ops *be = e->p.backend;
    if (!e->p.device_sampling || !ZL_BACKEND_HAS(be, sample) || !be->sample || !e->p.bctx)
        return ZL_OK;
    d->mark = calloc((size_t)e->vocab, 1);
    d->count = calloc((size_t)e->vocab, sizeof(int32_t));
    if (!d->mark || !d->count)
        return zl_error(ZL_ENOMEM, "engine: out of memory for the device sampler");
    d->on = true;
    return ZL_OK;
}

void zl_engine_dsample_free(struct zl_engine *e)
{
    struct eng_dsample *d = &e->ds;
    free(d->mark);
    free(d->count);
    free(d->rows);
    free(d->res);
    free(d->tok_ids);
    free(d->tok_counts);
    free(d->bias_ids);
    free(d->bias);
    memset(d, 0, sizeof *d);
}

int zl_engine_dsample_queue(struct zl_engine *e, struct eng_seq *const *seqs, int32_t n_rows,
                            const struct eng_score *score, int32_t n_score,
                            struct zl_tensor *logits)
{
    struct eng_dsample *d = &e->ds;
    const struct zl_backend_ops *be = e->p.backend;
    size_t n = (size_t)n_rows, all = n + (size_t)n_score;
    d->queued = false;
    int rc = grow((void **)&d->rows, &d->rows_cap, all, sizeof *d->rows);
    if (rc == ZL_OK)
        rc = grow((void **)&d->res, &d->res_cap, all, sizeof *d->res);
    d->n_tok = d->n_bias = 0;
    for (size_t i = 0; rc == ZL_OK && i < n; i++)
        rc = add_row(e, seqs[i], &d->rows[i]);
    for (size_t i = 0; rc == ZL_OK && i < (size_t)n_score; i++)
        rc = zl_engine_score_row(e, &score[i], &d->rows[n + i]);
    if (rc < 0)
        return rc;
    struct zl_sample_batch sb = {
        .n_rows = (int32_t)all, .rows = d->rows, .tok_ids = d->tok_ids, .tok_counts = d->tok_counts,
        .bias_ids = d->bias_ids, .bias = d->bias,
    };
    if (!ZL_BACKEND_HAS(be, sample_wait) || !be->sample_queue || !be->sample_wait)
        return be->sample(e->p.bctx, logits, &sb, d->res);     /* an older backend waits */
    if ((rc = be->sample_queue(e->p.bctx, logits, &sb)) == ZL_OK)
        d->queued = true;
    return rc;
}

int zl_engine_dsample_wait(struct zl_engine *e)
{
    struct eng_dsample *d = &e->ds;
    if (!d->queued)
        return ZL_OK;
    d->queued = false;
    return e->p.backend->sample_wait(e->p.bctx, d->res);
}
