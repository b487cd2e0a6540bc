/* CPU sampler (DESIGN §4).  Order as vLLM: raw logprobs, min_tokens
 * suppression, logit bias, repetition / presence / frequency penalties,
 * then greedy, or temperature -> min-p -> top-k -> top-p and one draw by
 * inverse CDF.  The filters are value thresholds (no sort), so the CUDA
 * sampler (kernels/cuda/sample.cu) can compute the same kept set.  The
 * draw's uniform is a hash of (seed, stream, step), so a sequence gets the
 * same tokens whatever else is in the batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/sampler.h>

struct zl_sampler {
    int32_t vocab;
    int32_t *count;     /* [vocab] output occurrences (penalties), zero between calls */
    uint8_t *seen;      /* [vocab] in prompt or output, zero between calls */
    int32_t *idx;       /* [vocab] candidate ids, ascending */
    int32_t *tmp;       /* [vocab] candidates of one radix bin */
    float *prob;        /* [vocab] unnormalized probabilities by id */
    float *raw;         /* [vocab] the logits as the model gave them (logprobs) */
};

struct zl_sampling_params zl_sampling_default_params(void)
{
    struct zl_sampling_params p;
    memset(&p, 0, sizeof(p));
    p.n = 1;
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.repetition_penalty = 1.0f;
    p.logprobs = -1;
    p.max_tokens = -1;
    return p;
}

int zl_sampling_validate(const struct zl_sampling_params *p, int32_t vocab)
{
    if (p->n < 1 || p->n > 128)
        return zl_error(ZL_EINVAL, "sampling: n must be in 1..128, got %d", p->n);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return zl_error(ZL_EINVAL, "sampling: temperature must be >= 0, got %g", p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return zl_error(ZL_EINVAL, "sampling: top_p must be in (0, 1], got %g", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return zl_error(ZL_EINVAL, "sampling: min_p must be in [0, 1], got %g", p->min_p);
    if (!(p->repetition_penalty > 0.0f) || !isfinite(p->repetition_penalty))
        return zl_error(ZL_EINVAL, "sampling: repetition_penalty must be > 0, got %g",
                        p->repetition_penalty);
    if (!(fabsf(p->presence_penalty) <= 2.0f) || !(fabsf(p->frequency_penalty) <= 2.0f))
        return zl_error(ZL_EINVAL, "sampling: presence/frequency penalties must be in [-2, 2]");
    if (p->logprobs < -1 || p->logprobs > ZL_SAMPLE_MAX_LOGPROBS)
        return zl_error(ZL_EINVAL, "sampling: logprobs must be in 0..%d, got %d",
                        ZL_SAMPLE_MAX_LOGPROBS, p->logprobs);
    if (p->max_tokens < -1 || p->max_tokens == 0)
        return zl_error(ZL_EINVAL, "sampling: max_tokens must be >= 1, got %d", p->max_tokens);
    if (p->min_tokens < 0 || (p->max_tokens > 0 && p->min_tokens > p->max_tokens))
        return zl_error(ZL_EINVAL, "sampling: min_tokens must be in 0..max_tokens, got %d",
                        p->min_tokens);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && (!p->logit_bias_ids || !p->logit_bias)))
        return zl_error(ZL_EINVAL, "sampling: logit_bias arrays missing");
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias_ids[i] < 0 || (vocab > 0 && p->logit_bias_ids[i] >= vocab))
            return zl_error(ZL_EINVAL, "sampling: logit_bias token %d outside the vocabulary (%d)",
                            p->logit_bias_ids[i], vocab);
        if (!isfinite(p->logit_bias[i]) || fabsf(p->logit_bias[i]) > 100.0f)
            return zl_error(ZL_EINVAL, "sampling: logit_bias value %g for token %d outside"
                            " [-100, 100]", p->logit_bias[i], p->logit_bias_ids[i]);
    }
    if (p->n_stop_token_ids < 0 || (p->n_stop_token_ids > 0 && !p->stop_token_ids))
        return zl_error(ZL_EINVAL, "sampling: stop_token_ids missing");
    for (int32_t i = 0; i < p->n_stop_token_ids; i++)
        if (p->stop_token_ids[i] < 0 || (vocab > 0 && p->stop_token_ids[i] >= vocab))
            return zl_error(ZL_EINVAL, "sampling: stop token %d outside the vocabulary (%d)",
                            p->stop_token_ids[i], vocab);
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop))
        return zl_error(ZL_EINVAL, "sampling: stop strings missing");
    for (int32_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i])
            return zl_error(ZL_EINVAL, "sampling: stop string %d is NULL", i);
    return ZL_OK;
}

void zl_sampler_free(struct zl_sampler *s)
{
    if (!s)
        return;
    free(s->count);
    free(s->seen);
    free(s->idx);
    free(s->tmp);
    free(s->prob);
    free(s->raw);
    free(s);
}

int zl_sampler_create(int32_t vocab, struct zl_sampler **out)
{
    *out = NULL;
    if (vocab < 1)
        return zl_error(ZL_EINVAL, "sampler: vocabulary size %d", vocab);
    struct zl_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return zl_error(ZL_ENOMEM, "sampler: out of memory");
    s->vocab = vocab;
    s->count = calloc(vocab, sizeof(int32_t));
    s->seen = calloc(vocab, 1);
    s->idx = malloc(sizeof(int32_t) * vocab);
    s->tmp = malloc(sizeof(int32_t) * vocab);
    s->prob = malloc(sizeof(float) * vocab);
    s->raw = malloc(sizeof(float) * vocab);
    if (!s->count || !s->seen || !s->idx || !s->tmp || !s->prob || !s->raw) {
        zl_sampler_free(s);
        return zl_error(ZL_ENOMEM, "sampler: out of memory for a vocabulary of %d", vocab);
    }
    *out = s;
    return ZL_OK;
}

double zl_sampler_uniform(uint64_t seed, uint64_t stream, uint64_t step)
{
    return zl_uniform_of(seed, stream, step);
}

/* logprob of every id = l - logsumexp(l); returns logsumexp. */
static double log_sum_exp(const float *l, int32_t n)
{
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (l[i] > mx)
            mx = l[i];
    if (mx == -INFINITY)
        return -INFINITY;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)l[i] - mx);
    return mx + log(sum);
}

/* The k best raw logprobs, best first, ties to the lower id; returns the
 * log-sum-exp that turns a raw logit into its logprob. */
static double raw_logprobs(const struct zl_sampling_params *p, const float *l, int32_t vocab,
                         struct zl_sample_result *out)
{
    out->n_top = 0;
    if (p->logprobs < 0)
        return 0.0;
    double lse = log_sum_exp(l, vocab);
    int32_t k = p->logprobs < vocab ? p->logprobs : vocab;
    for (int32_t i = 0; i < vocab && k > 0; i++) {
        int32_t n = out->n_top;
        if (n == k && !(l[i] > out->top_logprobs[n - 1]))
            continue;
        int32_t j = n < k ? n++ : n - 1;
        while (j > 0 && l[i] > out->top_logprobs[j - 1]) {
            out->top_logprobs[j] = out->top_logprobs[j - 1];
            out->top_ids[j] = out->top_ids[j - 1];
            j--;
        }
        out->top_logprobs[j] = l[i];
        out->top_ids[j] = i;
        out->n_top = n;
    }
    for (int32_t j = 0; j < out->n_top; j++)
        out->top_logprobs[j] = (float)(out->top_logprobs[j] - lse);
    return lse;
}

static void mask_ids(float *l, int32_t vocab, const int32_t *ids, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < vocab)
            l[ids[i]] = -INFINITY;
}

static void apply_penalties(struct zl_sampler *s, const struct zl_sampling_params *p,
                            const struct zl_sampler_seq *q, float *l)
{
    int rep = p->repetition_penalty != 1.0f;
    if (!rep && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)
        return;
    int32_t v = s->vocab;
    for (int32_t i = 0; i < q->n_output; i++)
        if (q->output[i] >= 0 && q->output[i] < v)
            s->count[q->output[i]]++;
    if (rep) {
        for (int32_t i = 0; i < q->n_prompt; i++)
            if (q->prompt[i] >= 0 && q->prompt[i] < v)
                s->seen[q->prompt[i]] = 1;
        for (int32_t i = 0; i < q->n_output; i++)
            if (q->output[i] >= 0 && q->output[i] < v)
                s->seen[q->output[i]] = 1;
    }
    /* each touched id once: the first visit applies and clears its marks */
    for (int pass = 0; pass < 2; pass++) {
        const int32_t *ids = pass ? q->prompt : q->output;
        int32_t n = pass ? q->n_prompt : q->n_output;
        for (int32_t i = 0; i < n; i++) {
            int32_t t = ids[i];
            if (t < 0 || t >= v || (!s->seen[t] && !s->count[t]))
                continue;
            if (s->seen[t])
                l[t] = l[t] > 0 ? l[t] / p->repetition_penalty : l[t] * p->repetition_penalty;
            if (s->count[t])
                l[t] -= p->frequency_penalty * (float)s->count[t] + p->presence_penalty;
            s->seen[t] = 0;
            s->count[t] = 0;
        }
    }
}

static int32_t argmax(const float *l, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

/* One draw's unnormalized probability of a logit: exp of the tempered gap to
 * the top logit, rounded once from double to float.  Rounding a double
 * exp (not expf, whose last bit differs between libms) makes the CUDA
 * sampler compute bit-identical values, so its seeded draws match. */
static float tempered(float l, float mx, float inv_t)
{
    if (l == mx)
        return 1.0f;                            /* even when inv_t is inf */
    return (float)exp((double)((l - mx) * inv_t));
}

/* Radix digits over a non-negative float's bits (they order like the
 * values): 11, 11 and 10 bits from the top. */
static const int digit_shift[3] = {21, 10, 0};
static const int digit_bits[3] = {11, 11, 10};

static unsigned digit(float v, int d)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    return (b >> digit_shift[d]) & ((1u << digit_bits[d]) - 1);
}

/* The candidates of src whose digit d is `bin`, moved to tmp (src may be
 * tmp: the compaction only moves entries down); returns how many. */
static int32_t narrow(const float *prob, const int32_t *src, int32_t n, int d, unsigned bin,
                      int32_t *tmp)
{
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (digit(prob[src[i]], d) == bin)
            tmp[m++] = src[i];
    return m;
}

static float from_bits(uint32_t key)
{
    float v;
    memcpy(&v, &key, 4);
    return v;
}

/* The largest value v among prob[idx[..]] whose candidates >= v weigh at
 * least `target` in all, a candidate weighing 1 (by_count: v is then the
 * target-th largest counting multiplicity, 1 <= target <= n) or its own
 * value (the top-p cut): per digit, the bin where the weight from the top
 * reaches the target, then the same inside that bin, over only the
 * candidates that share the digits found so far (moved to tmp). */
static float radix_threshold(const float *prob, const int32_t *idx, int32_t n, double target,
                             int by_count, int32_t *tmp)
{
    double mass[2048];
    const int32_t *src = idx;
    uint32_t key = 0;
    for (int d = 0; d < 3; d++) {
        int nb = 1 << digit_bits[d];
        memset(mass, 0, sizeof(double) * nb);
        int lowest = nb - 1;
        for (int32_t i = 0; i < n; i++) {
            int bin = (int)digit(prob[src[i]], d);
            mass[bin] += by_count ? 1.0 : prob[src[i]];
            if (bin < lowest)
                lowest = bin;
        }
        int bin = nb - 1;
        double above = 0.0;
        for (; bin > lowest && !(above + mass[bin] >= target); bin--)
            above += mass[bin];
        target -= above;
        key |= (uint32_t)bin << digit_shift[d];
        n = narrow(prob, src, n, d, (unsigned)bin, tmp);
        src = tmp;
    }
    return from_bits(key);
}

/* Keeps the candidates (ascending ids) with prob >= thr; returns how many. */
static int32_t keep_at_least(const float *prob, int32_t *idx, int32_t n, float thr)
{
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (prob[idx[i]] >= thr)
            idx[m++] = idx[i];
    return m;
}

/* Temperature -> min-p -> top-k -> top-p as value thresholds (sampler.h),
 * then one inverse-CDF draw over the kept ids in ascending order. */
static int32_t draw(struct zl_sampler *s, const struct zl_sampling_params *p,
                    const struct zl_sampler_seq *q, const float *l)
{
    int32_t v = s->vocab;
    float mx = l[argmax(l, v)];
    float inv_t = 1.0f / p->temperature;
    int32_t n = 0;
    for (int32_t i = 0; i < v; i++) {
        float e = tempered(l[i], mx, inv_t);    /* the top token: exactly 1 */
        s->prob[i] = e;
        if (e > 0.0f && e >= p->min_p)          /* min_p against p_max = 1 */
            s->idx[n++] = i;
    }
    if (p->top_k > 0 && p->top_k < n)
        n = keep_at_least(s->prob, s->idx, n,
                          radix_threshold(s->prob, s->idx, n, p->top_k, 1, s->tmp));
    if (p->top_p < 1.0f) {
        double tot = 0.0;
        for (int32_t i = 0; i < n; i++)
            tot += s->prob[s->idx[i]];
        n = keep_at_least(s->prob, s->idx, n,
                          radix_threshold(s->prob, s->idx, n, (double)p->top_p * tot, 0, s->tmp));
    }
    double tot = 0.0;
    for (int32_t i = 0; i < n; i++)
        tot += s->prob[s->idx[i]];
    double u = zl_sampler_uniform(q->seed, q->stream, (uint64_t)q->n_output) * tot, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->prob[s->idx[i]];
        if (u < cum)
            return s->idx[i];
    }
    return s->idx[n - 1];
}

int zl_sampler_sample(struct zl_sampler *s, const struct zl_sampling_params *p,
                      const struct zl_sampler_seq *q, float *logits, struct zl_sample_result *out)
{
    return zl_sampler_sample_allowed(s, p, q, NULL, logits, out);
}

int zl_sampler_sample_allowed(struct zl_sampler *s, const struct zl_sampling_params *p,
                              const struct zl_sampler_seq *q, const uint32_t *allowed,
                              float *logits, struct zl_sample_result *out)
{
    int32_t v = s->vocab;
    memset(out, 0, sizeof(*out));
    double lse = raw_logprobs(p, logits, v, out);
    if (p->logprobs >= 0)
        memcpy(s->raw, logits, sizeof(float) * v);

    for (int32_t i = 0; allowed && i < v; i++)
        if (!(allowed[i / 32] >> (i % 32) & 1))
            logits[i] = -INFINITY;
    if (q->n_output < p->min_tokens) {
        mask_ids(logits, v, q->eos_ids, q->n_eos);
        mask_ids(logits, v, p->stop_token_ids, p->n_stop_token_ids);
    }
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias_ids[i] >= 0 && p->logit_bias_ids[i] < v)
            logits[p->logit_bias_ids[i]] += p->logit_bias[i];
    apply_penalties(s, p, q, logits);

    int32_t best = argmax(logits, v);
    if (!(logits[best] > -INFINITY))
        return zl_error(ZL_EINVAL, "sampler: every token is masked");
    out->token = p->temperature == 0.0f ? best : draw(s, p, q, logits);
    out->logprob = p->logprobs >= 0 ? (float)(s->raw[out->token] - lse) : 0.0f;
    return ZL_OK;
}
