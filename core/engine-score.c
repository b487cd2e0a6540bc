/* Prompt logprobs (zl_request_opts.prompt_logprobs): the scheduler adds
 * score rows to a step (zl_sched_batch.n_score) and the forward computes
 * their logits after the sampled rows'.  Each row is then "sampled" like
 * the others, by the device sampler in the step's batch or by the CPU
 * sampler on the copied rows: greedily, with its prompt token forced by a
 * logit bias.  A sampler reports logprobs of the raw logits, so the result
 * is the token's logprob under the model (vLLM's prompt_logprobs) and the
 * top k of its position; on a GPU only those come back, with the step's
 * tokens (async scheduling keeps its overlap). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "engine-impl.h"

/* Far above any logit a model gives, and far from overflowing: the
 * forced token wins unless its own logit is -inf. */
#define FORCE_BIAS 1e6f

int zl_engine_score_row(struct zl_engine *e, const struct eng_score *sc, struct zl_sample_row *row)
{
    struct eng_dsample *d = &e->ds;
    *row = (struct zl_sample_row){.top_p = 1.0f, .repetition_penalty = 1.0f, .logprobs = -1,
                                  .tok_start = d->n_tok, .bias_start = d->n_bias};
    if (!sc->q) /* retired: a plain greedy row, dropped */
        return ZL_OK;
    row->logprobs = sc->q->req->plp_k;
    row->n_bias = 1;
    return zl_engine_dsample_bias(d, sc->q->s.tokens[sc->pos + 1], FORCE_BIAS);
}

void zl_engine_score_take(struct zl_engine *e, const struct eng_score *sc,
                          const struct zl_sample_result *dres, float *row)
{
    if (!sc->q)
        return;
    struct eng_req *r = sc->q->req;
    int32_t next = sc->pos + 1, k = r->plp_k, target = sc->q->s.tokens[next];
    struct zl_sample_result hres;
    const struct zl_sample_result *res = dres;
    if (!res) { /* the CPU sampler, on the row copied back; the same row as score_row's */
        float bias = FORCE_BIAS;
        struct zl_sampling_params p = zl_sampling_default_params();
        p.temperature = 0;
        p.logprobs = k;
        p.logit_bias_ids = &target;
        p.logit_bias = &bias;
        p.n_logit_bias = 1;
        struct zl_sampler_seq none = {0};
        if (zl_sampler_sample(e->sampler, &p, &none, row, &hres) < 0)
            hres = (struct zl_sample_result){.token = -1};
        res = &hres;
    }
    /* another token won only if the forced one's logit is -inf */
    r->plp[next] = res->token == target ? res->logprob : -INFINITY;
    /* a token that is its position's best gets the very same number as the
     * top entry: clients test greediness with == (lm-evaluation-harness) */
    if (res->n_top > 0 && res->top_ids[0] == target)
        r->plp[next] = res->top_logprobs[0];
    int32_t n = res->n_top < k ? res->n_top : k;
    for (int32_t i = 0; i < k; i++) {
        r->plp_ids[(size_t)next * (size_t)k + (size_t)i] = i < n ? res->top_ids[i] : -1;
        r->plp_top[(size_t)next * (size_t)k + (size_t)i] = i < n ? res->top_logprobs[i] : -INFINITY;
    }
}
