/* Sampling parameters of a request and the CPU sampler: penalties, logit
 * bias, greedy / temperature / min-p / top-k / top-p, seeds, logprobs.
 *
 *   struct zl_sampling_params sp = zl_sampling_default_params();  sp.temperature = 0.7f;
 *   struct zl_sampler *s;  zl_sampler_create(vocab, &s);
 *   struct zl_sampler_seq q = {.output = out_ids, .n_output = n_out, .seed = 42, .step = n_out};
 *   struct zl_sample_result r;  zl_sampler_sample(s, &sp, &q, logits_row, &r);
 *   zl_sampler_free(s);
 */
#ifndef ZLIGHT_SAMPLER_H
#define ZLIGHT_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZL_SAMPLE_MAX_LOGPROBS 20   /* top-N logprobs per token (OpenAI's limit) */

/* What a request asks of sampling and of stopping (vLLM's SamplingParams;
 * the defaults are OpenAI's).  Pointers are borrowed; the engine copies
 * them at submit. */
struct zl_sampling_params {
    int32_t n;                      /* sequences per request, sharing the prompt's blocks; 1 */
    float temperature;              /* 0 = greedy; 1 */
    float top_p;                    /* (0, 1], 1 = off */
    int32_t top_k;                  /* <= 0 = off */
    float min_p;                    /* [0, 1]: drop tokens below min_p * the top probability; 0 */
    float repetition_penalty;       /* > 0, tokens of prompt and output (HF/vLLM rule); 1 = off */
    float presence_penalty;         /* output tokens, logit -= p once; 0 */
    float frequency_penalty;        /* output tokens, logit -= f * count; 0 */
    const int32_t *logit_bias_ids;  /* [n_logit_bias] added to the logits before the penalties */
    const float *logit_bias;        /* [n_logit_bias] */
    int32_t n_logit_bias;
    uint64_t seed;                  /* with has_seed: the tokens depend on nothing else */
    int32_t has_seed;               /* 0: the engine draws a seed per request */
    int32_t logprobs;               /* -1 none; 0 the sampled token's; k <= 20: and the top k */
    int32_t max_tokens;             /* generated tokens at most; -1 = up to max_model_len */
    int32_t min_tokens;             /* EOS and stop ids suppressed before this many; 0 */
    int32_t ignore_eos;             /* 1: EOS ids do not stop (stop_token_ids still do) */
    const int32_t *stop_token_ids;  /* [n_stop_token_ids] stop after one of these (it is output) */
    int32_t n_stop_token_ids;
    const char *const *stop;        /* [n_stop] stop strings (needs a tokenizer); not output */
    int32_t n_stop;
};

ZL_API struct zl_sampling_params zl_sampling_default_params(void);

/* ZL_EINVAL naming the field for out-of-range values (vocab bounds the
 * token ids of logit_bias and stop_token_ids; vocab <= 0 skips that). */
ZL_API int zl_sampling_validate(const struct zl_sampling_params *p, int32_t vocab);

/* The sequence being sampled, as the penalties and the RNG see it. */
struct zl_sampler_seq {
    const int32_t *prompt;          /* [n_prompt] */
    int32_t n_prompt;
    const int32_t *output;          /* [n_output] generated so far */
    int32_t n_output;
    const int32_t *eos_ids;         /* [n_eos] suppressed while n_output < min_tokens */
    int32_t n_eos;
    uint64_t seed;                  /* request seed */
    uint64_t stream;                /* sequence index within the request (n > 1) */
};

struct zl_sample_result {
    int32_t token;
    float logprob;                  /* of `token` under the model's distribution (raw logits) */
    int32_t n_top;                  /* entries in top_ids / top_logprobs, best first */
    int32_t top_ids[ZL_SAMPLE_MAX_LOGPROBS];
    float top_logprobs[ZL_SAMPLE_MAX_LOGPROBS];
};

struct zl_sampler;                  /* scratch for one vocabulary; one thread at a time */

ZL_API int zl_sampler_create(int32_t vocab, struct zl_sampler **out);
ZL_API void zl_sampler_free(struct zl_sampler *s);   /* NULL-safe */

/* Samples the next token of `q` from logits[vocab] (f32, host, modified in
 * place).  The draw for output position q->n_output depends only on
 * (seed, stream, n_output) and the logits, never on the batch.  Ties in
 * greedy go to the lowest id.  ZL_EINVAL when every token is masked.
 * With temperature T > 0 the kept set is defined by value thresholds, so
 * a device sampler can compute it exactly (backend.h sample):
 *   e_i = (float)exp((double)((l_i - max) * (1.0f / T))), 1 for the max;
 *   C = {i : e_i > 0 and e_i >= min_p};
 *   top_k: t = the k-th largest e over C counting multiplicity,
 *          C = {e >= t} (ties at the k-th value are all kept);
 *   top_p: tot = sum of e over C (double), t = the largest e among C's
 *          values with sum of e >= t over C at least top_p * tot, C = {e >= t};
 *   draw:  u = zl_sampler_uniform(seed, stream, n_output), x = u * sum of
 *          e over C; walk C in ascending id order with a double cumulative
 *          sum, the first id with x < cum (else the last id of C). */
ZL_API int zl_sampler_sample(struct zl_sampler *s, const struct zl_sampling_params *p,
                             const struct zl_sampler_seq *q, float *logits,
                             struct zl_sample_result *out);

/* zl_sampler_sample among the tokens whose bit is set in allowed
 * ([(vocab + 31) / 32], bit i % 32 of word i / 32; NULL: all), as if the
 * others had a logit bias of -inf (guided decoding); logprobs stay those
 * of the raw logits. */
ZL_API int zl_sampler_sample_allowed(struct zl_sampler *s, const struct zl_sampling_params *p,
                                     const struct zl_sampler_seq *q, const uint32_t *allowed,
                                     float *logits, struct zl_sample_result *out);

/* The counter-based uniform in [0, 1) behind a draw. */
ZL_API double zl_sampler_uniform(uint64_t seed, uint64_t stream, uint64_t step);

/* Its definition, inline, so that a device sampler (compiled by nvcc:
 * host and device code) draws the same uniform bit for bit from the one
 * source.  zl_mix64 is splitmix64's finaliser. */
#ifdef __CUDACC__
#define ZL_SAMPLER_INLINE static inline __host__ __device__
#else
#define ZL_SAMPLER_INLINE static inline
#endif
ZL_SAMPLER_INLINE uint64_t zl_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}
ZL_SAMPLER_INLINE double zl_uniform_of(uint64_t seed, uint64_t stream, uint64_t step)
{
    uint64_t x = zl_mix64(seed + 0x9e3779b97f4a7c15ull);
    x = zl_mix64(x ^ (stream * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull));
    x = zl_mix64(x ^ (step * 0x8cb92ba72f3d8dd7ull + 0x2545f4914f6cdd1dull));
    return (double)(x >> 11) * (1.0 / 9007199254740992.0); /* 2^-53 (no hex floats in C++ < 17) */
}

#ifdef __cplusplus
}
#endif
#endif
