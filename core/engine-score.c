/* Prompt logprobs (zl_request_opts.prompt_logprobs): the scheduler adds
 * score rows to a step (zl_sched_batch.n_score), the forward computes
 * their logits after the sampled rows', and here they become each prompt
 * token's logprob under the model (a log-softmax of the raw logits, as
 * vLLM's prompt_logprobs) and the top k of its position.
 *
 * With a device sampler the rows join the step's sample batch: each is
 * sampled greedily with its prompt token forced by a logit bias, and the
 * sampler's logprobs are those of the raw logits, so its result is the
 * token's logprob and the position's top k; only those come back, with
 * the step's tokens (async scheduling keeps its overlap).  A host
 * sampler's engine copies the rows back when the forward is queued and
 * scores them here (the step waits for its forward there). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "engine-impl.h"

/* The top k of row x (best first) into ids/lps, as logprobs (less lse). */
static void top_k(const float *x, int32_t vocab, int32_t k, float lse, int32_t *ids, float *lps)
{
    int32_t n = 0;
    for (int32_t v = 0; v < vocab && k > 0; v++) {
        if (n == k && x[v] <= lps[n - 1])
            continue;
        int32_t at = n < k ? n++ : k - 1;
        while (at > 0 && lps[at - 1] < x[v]) { /* ties keep the lower id first */
            lps[at] = lps[at - 1];
            ids[at] = ids[at - 1];
            at--;
        }
        lps[at] = x[v];
        ids[at] = v;
    }
    for (int32_t i = 0; i < n; i++)
        lps[i] -= lse;
}

int zl_engine_score_rows(struct zl_engine *e, const struct zl_sched_batch *b,
                         const struct zl_tensor *lt)
{
    if (!b->n_score)
        return ZL_OK;
    size_t vocab = (size_t)e->vocab, n = (size_t)b->n_score * vocab;
    if (n > e->score_cap) {
        float *x = realloc(e->score, sizeof(float) * n);
        if (!x)
            return zl_error(ZL_ENOMEM, "engine: out of memory for %d prompt logprob rows",
                            b->n_score);
        e->score = x;
        e->score_cap = n;
    }
    const char *src = (const char *)lt->data + sizeof(float) * (size_t)b->n_logits * vocab;
    int rc = e->p.backend->copy_to_host(e->p.device, e->score, src, sizeof(float) * n);
    if (rc < 0)
        return zl_error_wrap(rc, "engine: prompt logprob rows");
    for (int32_t i = 0; i < b->n_score; i++) {
        const struct zl_sched_seq *s = b->logits_seqs[b->n_logits + i];
        struct eng_req *r = ((struct eng_seq *)s->user)->req;
        int32_t pos = b->positions[b->logits_rows[b->n_logits + i]], next = pos + 1;
        const float *x = e->score + (size_t)i * vocab;
        float mx = -INFINITY;
        for (size_t v = 0; v < vocab; v++)
            mx = x[v] > mx ? x[v] : mx;
        double sum = 0.0;
        for (size_t v = 0; v < vocab; v++)
            sum += exp((double)(x[v] - mx));
        float lse = mx + (float)log(sum);
        r->plp[next] = x[s->tokens[next]] - lse;
        top_k(x, e->vocab, r->plp_k, lse, r->plp_ids + (size_t)next * (size_t)r->plp_k,
              r->plp_top + (size_t)next * (size_t)r->plp_k);
    }
    return ZL_OK;
}

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

void zl_engine_score_take(const struct eng_score *sc, const struct zl_sample_result *res)
{
    if (!sc->q)
        return;
    struct eng_req *r = sc->q->req;
    int32_t next = sc->pos + 1, k = r->plp_k;
    /* another token won only if the forced one's logit is -inf */
    r->plp[next] = res->token == sc->q->s.tokens[next] ? res->logprob : -INFINITY;
    /* a token that is its position's best gets the very same number as the
     * top entry: clients test greediness with == (lm-evaluation-harness) */
    if (res->n_top > 0 && res->top_ids[0] == sc->q->s.tokens[next])
        r->plp[next] = res->top_logprobs[0];
    int32_t n = res->n_top < k ? res->n_top : k;
    for (int32_t i = 0; i < k; i++) {
        r->plp_ids[(size_t)next * (size_t)k + (size_t)i] = i < n ? res->top_ids[i] : -1;
        r->plp_top[(size_t)next * (size_t)k + (size_t)i] = i < n ? res->top_logprobs[i] : -INFINITY;
    }
}
