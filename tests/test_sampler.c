/* Sampler: distributions within a chi-square bound, exact penalties and
 * bias, min_tokens, logprobs, and seeds independent of the batch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlight/sampler.h>

enum { V = 6, DRAWS = 20000 };
static const float base_logits[V] = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -1.0f};

static struct zl_sampler *make(int32_t vocab)
{
    struct zl_sampler *s;
    cr_assert_eq(zl_sampler_create(vocab, &s), ZL_OK, "%s", zl_last_error());
    return s;
}

/* Draws DRAWS tokens (a fresh stream each) and returns the chi-square
 * statistic against `expect` (probabilities; 0 = must never appear). */
static double chi_square(const struct zl_sampling_params *p, const double *expect)
{
    struct zl_sampler *s = make(V);
    int counts[V] = {0};
    for (int i = 0; i < DRAWS; i++) {
        float l[V];
        memcpy(l, base_logits, sizeof(l));
        struct zl_sampler_seq q = {.seed = 1234, .stream = (uint64_t)i};
        struct zl_sample_result r;
        cr_assert_eq(zl_sampler_sample(s, p, &q, l, &r), ZL_OK);
        counts[r.token]++;
    }
    zl_sampler_free(s);
    double chi = 0;
    for (int k = 0; k < V; k++) {
        if (expect[k] == 0) {
            cr_expect_eq(counts[k], 0, "token %d is filtered out but drawn %d times", k, counts[k]);
            continue;
        }
        double e = expect[k] * DRAWS;
        chi += (counts[k] - e) * (counts[k] - e) / e;
    }
    return chi;
}

/* softmax(base / t) restricted to `keep`, renormalized */
static void expected(double t, const int *keep, double *out)
{
    double sum = 0;
    for (int k = 0; k < V; k++) {
        out[k] = keep[k] ? exp(base_logits[k] / t) : 0;
        sum += out[k];
    }
    for (int k = 0; k < V; k++)
        out[k] /= sum;
}

/* chi-square 0.999 quantiles for 1..5 degrees of freedom */
static const double chi999[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52};

/* Draws under p match softmax(base / t) over the first `kept` tokens. */
static void expect_top(const struct zl_sampling_params *p, double t, int kept)
{
    int keep[V] = {0};
    for (int k = 0; k < kept; k++)
        keep[k] = 1;
    double e[V];
    expected(t, keep, e);
    double chi = chi_square(p, e);
    cr_expect_lt(chi, chi999[kept - 1], "T=%g, top %d kept: chi-square %g", t, kept, chi);
}

Test(sampler, temperature_distribution)
{
    struct zl_sampling_params p = zl_sampling_default_params();
    float temps[] = {1.0f, 0.5f, 2.0f};
    for (int i = 0; i < 3; i++) {
        p.temperature = temps[i];
        expect_top(&p, temps[i], V);
    }
}

Test(sampler, top_k_distribution)
{
    struct zl_sampling_params p = zl_sampling_default_params();
    p.top_k = 3;
    expect_top(&p, 1.0, 3);
}

Test(sampler, top_p_distribution)
{
    /* probabilities at T=1: .391 .237 .144 .087 .053 .019 -> cumulative .391 .628 .772:
     * top_p 0.7 keeps the first three */
    struct zl_sampling_params p = zl_sampling_default_params();
    p.top_p = 0.7f;
    expect_top(&p, 1.0, 3);
}

Test(sampler, min_p_distribution)
{
    /* p_k / p_max = exp(l_k - 2): 1, .61, .37, .22, .14, .05; min_p 0.3 keeps three */
    struct zl_sampling_params p = zl_sampling_default_params();
    p.min_p = 0.3f;
    expect_top(&p, 1.0, 3);
}

Test(sampler, combined_filters)
{
    /* T=0.5: .60 .22 .08 .03 ...; top 4 renormalized .64 .24 .09 .03; top_p 0.9 keeps three */
    struct zl_sampling_params p = zl_sampling_default_params();
    p.temperature = 0.5f;
    p.top_k = 4;
    p.top_p = 0.9f;
    expect_top(&p, 0.5, 3);
}

Test(sampler, greedy_and_ties)
{
    struct zl_sampler *s = make(4);
    struct zl_sampling_params p = zl_sampling_default_params();
    p.temperature = 0;
    float l[4] = {0.5f, 3.0f, 3.0f, -1.0f};
    struct zl_sampler_seq q = {0};
    struct zl_sample_result r;
    cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
    cr_expect_eq(r.token, 1, "ties go to the lowest id");
    zl_sampler_free(s);
}

Test(sampler, penalties_exact)
{
    struct zl_sampler *s = make(6);
    struct zl_sampling_params p = zl_sampling_default_params();
    p.temperature = 0;
    p.repetition_penalty = 2.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    float l[6] = {1.0f, -1.0f, 2.0f, -2.0f, 4.0f, 3.0f};
    int32_t prompt[] = {0, 1, 1};
    int32_t out[] = {2, 3, 2, 2};
    struct zl_sampler_seq q = {.prompt = prompt, .n_prompt = 3, .output = out, .n_output = 4};
    struct zl_sample_result r;
    cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
    cr_expect_float_eq(l[0], 0.5f, 1e-6, "prompt token, positive: / 2");
    cr_expect_float_eq(l[1], -2.0f, 1e-6, "prompt token, negative: * 2");
    cr_expect_float_eq(l[2], 1.0f - 0.5f - 0.75f, 1e-6, "output x3: rep, presence, 3 x frequency");
    cr_expect_float_eq(l[3], -4.0f - 0.5f - 0.25f, 1e-6);
    cr_expect_float_eq(l[4], 4.0f, 1e-6, "unseen tokens untouched");
    cr_expect_eq(r.token, 4);
    /* the scratch is clean for the next call: the same call gives the same values */
    float l2[6] = {1.0f, -1.0f, 2.0f, -2.0f, 4.0f, 3.0f};
    cr_assert_eq(zl_sampler_sample(s, &p, &q, l2, &r), ZL_OK);
    cr_expect_arr_eq(l, l2, sizeof(l));
    zl_sampler_free(s);
}

Test(sampler, logit_bias_and_min_tokens)
{
    struct zl_sampler *s = make(5);
    struct zl_sampling_params p = zl_sampling_default_params();
    p.temperature = 0;
    int32_t ids[] = {1, 3};
    float bias[] = {-100.0f, 2.5f};
    p.logit_bias_ids = ids;
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    float l[5] = {1, 5, 1, 1, 0};
    struct zl_sampler_seq q = {0};
    struct zl_sample_result r;
    cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
    cr_expect_float_eq(l[1], -95.0f, 1e-5);
    cr_expect_float_eq(l[3], 3.5f, 1e-6);
    cr_expect_eq(r.token, 3);
    /* min_tokens: EOS (4) and stop ids (0) cannot come before 2 outputs */
    struct zl_sampling_params m = zl_sampling_default_params();
    m.temperature = 0;
    m.min_tokens = 2;
    int32_t stop[] = {0};
    m.stop_token_ids = stop;
    m.n_stop_token_ids = 1;
    int32_t eos[] = {4};
    int32_t out[] = {2};
    struct zl_sampler_seq q2 = {.output = out, .n_output = 1, .eos_ids = eos, .n_eos = 1};
    float l2[5] = {9, 0, 0, 0, 10};
    cr_assert_eq(zl_sampler_sample(s, &m, &q2, l2, &r), ZL_OK);
    cr_expect_eq(r.token, 1);
    q2.n_output = 2;   /* out[] is long enough for the penalties: none active */
    int32_t out2[] = {2, 2};
    q2.output = out2;
    float l3[5] = {9, 0, 0, 0, 10};
    cr_assert_eq(zl_sampler_sample(s, &m, &q2, l3, &r), ZL_OK);
    cr_expect_eq(r.token, 4);
    zl_sampler_free(s);
}

Test(sampler, logprobs)
{
    struct zl_sampler *s = make(V);
    struct zl_sampling_params p = zl_sampling_default_params();
    p.logprobs = 3;
    p.temperature = 0;
    p.logit_bias_ids = (const int32_t[]){5};
    p.logit_bias = (const float[]){50.0f};
    p.n_logit_bias = 1;
    float l[V];
    memcpy(l, base_logits, sizeof(l));
    struct zl_sampler_seq q = {0};
    struct zl_sample_result r;
    cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
    double sum = 0;
    for (int k = 0; k < V; k++)
        sum += exp(base_logits[k]);
    cr_expect_eq(r.token, 5);
    cr_expect_float_eq(r.logprob, base_logits[5] - log(sum), 1e-5, "raw logprob of the biased token");
    cr_assert_eq(r.n_top, 3);
    for (int k = 0; k < 3; k++) {
        cr_expect_eq(r.top_ids[k], k);
        cr_expect_float_eq(r.top_logprobs[k], base_logits[k] - log(sum), 1e-5);
    }
    zl_sampler_free(s);
}

/* The same seed gives the same tokens whatever the batch: interleave three
 * sequences through one sampler and compare with each alone. */
Test(sampler, seeds_independent_of_batch)
{
    enum { STEPS = 50 };
    struct zl_sampling_params p = zl_sampling_default_params();
    p.temperature = 1.3f;
    p.top_p = 0.95f;
    p.repetition_penalty = 1.1f;
    int32_t alone[3][STEPS], mixed[3][STEPS];
    uint64_t seeds[3] = {7, 7, 99};
    uint64_t streams[3] = {0, 1, 0};
    for (int k = 0; k < 3; k++) {
        struct zl_sampler *s = make(V);
        for (int t = 0; t < STEPS; t++) {
            float l[V];
            memcpy(l, base_logits, sizeof(l));
            struct zl_sampler_seq q = {.output = alone[k], .n_output = t, .seed = seeds[k],
                                       .stream = streams[k]};
            struct zl_sample_result r;
            cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
            alone[k][t] = r.token;
        }
        zl_sampler_free(s);
    }
    struct zl_sampler *s = make(V);
    for (int t = 0; t < STEPS; t++)
        for (int k = 2; k >= 0; k--) {
            if ((t + k) % 3 == 0) {
                /* an unrelated request in between, now and then */
                float l[V];
                memcpy(l, base_logits, sizeof(l));
                struct zl_sampler_seq o = {.output = mixed[k], .n_output = t, .seed = 5};
                struct zl_sample_result r;
                zl_sampler_sample(s, &p, &o, l, &r);
            }
            float l[V];
            memcpy(l, base_logits, sizeof(l));
            struct zl_sampler_seq q = {.output = mixed[k], .n_output = t, .seed = seeds[k],
                                       .stream = streams[k]};
            struct zl_sample_result r;
            cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
            mixed[k][t] = r.token;
        }
    zl_sampler_free(s);
    for (int k = 0; k < 3; k++)
        cr_expect_arr_eq(alone[k], mixed[k], sizeof(alone[k]), "sequence %d", k);
    cr_expect(memcmp(alone[0], alone[1], sizeof(alone[0])) != 0, "streams of one seed differ");
}

Test(sampler, validate)
{
    struct zl_sampling_params p = zl_sampling_default_params();
    cr_expect_eq(zl_sampling_validate(&p, 10), ZL_OK);
    p.top_p = 0;
    cr_expect_eq(zl_sampling_validate(&p, 10), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "top_p") != NULL);
    p = zl_sampling_default_params();
    p.temperature = -1;
    cr_expect_eq(zl_sampling_validate(&p, 10), ZL_EINVAL);
    p = zl_sampling_default_params();
    p.stop_token_ids = (const int32_t[]){10};
    p.n_stop_token_ids = 1;
    cr_expect_eq(zl_sampling_validate(&p, 10), ZL_EINVAL);
    p = zl_sampling_default_params();
    p.logprobs = 21;
    cr_expect_eq(zl_sampling_validate(&p, 10), ZL_EINVAL);
    p = zl_sampling_default_params();
    p.max_tokens = 4;
    p.min_tokens = 5;
    cr_expect_eq(zl_sampling_validate(&p, 10), ZL_EINVAL);
}

/* ---- the kept set is the value-threshold one of sampler.h ---- */

static int by_float_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

/* The spec of zl_sampler_sample written out with a full sort: keep[i] = 1
 * for the ids a draw may return. */
static void reference_kept(const float *l, int n, const struct zl_sampling_params *p,
                           uint8_t *keep)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = l[i] > mx ? l[i] : mx;
    float *e = malloc(sizeof(float) * n), *sorted = malloc(sizeof(float) * n);
    float inv_t = 1.0f / p->temperature;
    int m = 0;
    for (int i = 0; i < n; i++) {
        e[i] = l[i] == mx ? 1.0f : (float)exp((double)((l[i] - mx) * inv_t));
        if (e[i] > 0 && e[i] >= p->min_p)
            sorted[m++] = e[i];
    }
    qsort(sorted, m, sizeof(float), by_float_desc);
    float thr = m ? sorted[m - 1] : 1.0f;
    if (p->top_k > 0 && p->top_k < m) {
        thr = sorted[p->top_k - 1];
        while (m > p->top_k && sorted[m - 1] < thr)
            m--;
    }
    if (p->top_p < 1.0f) {
        double tot = 0, cum = 0;
        for (int i = 0; i < m; i++)
            tot += sorted[i];
        for (int i = 0; i < m; i++) {
            cum += sorted[i];
            if (cum >= (double)p->top_p * tot) {
                thr = sorted[i];
                break;
            }
        }
    }
    for (int i = 0; i < n; i++)
        keep[i] = e[i] > 0 && e[i] >= p->min_p && e[i] >= thr;
    free(e);
    free(sorted);
}

/* Draws from `base` (n ids) under p: every draw inside the reference set,
 * and every member of it drawn (sets small enough for `draws`).  Returns
 * the set's size. */
static int expect_kept_set(const float *base, int n, const struct zl_sampling_params *p,
                           int draws)
{
    uint8_t *keep = calloc(n, 1), *seen = calloc(n, 1);
    float *l = malloc(sizeof(float) * n);
    reference_kept(base, n, p, keep);
    struct zl_sampler *s = make(n);
    int outside = 0, kept = 0, missed = 0;
    for (int d = 0; d < draws; d++) {
        struct zl_sampler_seq q = {.seed = 11, .stream = (uint64_t)d, .n_output = d % 7};
        struct zl_sample_result r;
        memcpy(l, base, sizeof(float) * n);
        cr_assert_eq(zl_sampler_sample(s, p, &q, l, &r), ZL_OK);
        outside += !keep[r.token];
        seen[r.token] = 1;
    }
    for (int i = 0; i < n; i++) {
        kept += keep[i];
        missed += keep[i] && !seen[i];
    }
    cr_expect_eq(outside, 0, "%d of %d draws outside the kept set of %d (T %g, k %d, p %g, "
                 "min_p %g)", outside, draws, kept, p->temperature, p->top_k, p->top_p, p->min_p);
    cr_expect_eq(missed, 0, "%d of the %d kept ids never drawn in %d draws", missed, kept, draws);
    zl_sampler_free(s);
    free(keep);
    free(seen);
    free(l);
    return kept;
}

/* A large vocabulary with many equal logits: top-k, top-p, min-p and their
 * combinations keep exactly the threshold sets, ties included. */
Test(sampler, kept_set_is_the_threshold_set)
{
    enum { BV = 4096 };
    static float base[BV];
    srand(3);
    for (int i = 0; i < BV; i++)
        base[i] = (float)(rand() % 1000) / 200.0f;      /* ~4 ids per value */
    struct zl_sampling_params p = zl_sampling_default_params();
    p.top_k = 50;
    int k = expect_kept_set(base, BV, &p, 4000);
    cr_expect_geq(k, 50, "top_k 50 keeps at least 50 (%d)", k);
    p = zl_sampling_default_params();
    p.top_p = 0.02f;
    int np = expect_kept_set(base, BV, &p, 6000);
    cr_expect(np >= 10 && np < 200, "nucleus of %d", np);
    p = zl_sampling_default_params();
    p.temperature = 0.7f;
    p.top_k = 200;
    p.top_p = 0.3f;
    expect_kept_set(base, BV, &p, 4000);
    p = zl_sampling_default_params();
    p.temperature = 0.05f;
    p.min_p = 0.3f;
    expect_kept_set(base, BV, &p, 2000);
}

/* Ties at the k-th value are all kept (vLLM's value-threshold top-k). */
Test(sampler, top_k_keeps_ties)
{
    const float tl[8] = {1.0f, 3.0f, 2.0f, 2.0f, 0.5f, 2.0f, -1.0f, 3.0f};
    struct zl_sampling_params p = zl_sampling_default_params();
    p.top_k = 3;                /* values 3, 3, then 2 three times: five ids kept */
    int kept = expect_kept_set(tl, 8, &p, 3000);
    cr_expect_eq(kept, 5);
    /* the draw's distribution over the tie group is the renormalized softmax */
    struct zl_sampler *s = make(8);
    int counts[8] = {0};
    for (int d = 0; d < DRAWS; d++) {
        float l[8];
        memcpy(l, tl, sizeof l);
        struct zl_sampler_seq q = {.seed = 5, .stream = (uint64_t)d};
        struct zl_sample_result r;
        cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
        counts[r.token]++;
    }
    zl_sampler_free(s);
    double z = 2 * exp(3.0) + 3 * exp(2.0), chi = 0;
    const int ids[5] = {1, 7, 2, 3, 5};
    for (int j = 0; j < 5; j++) {
        double e = DRAWS * exp(tl[ids[j]]) / z;
        chi += (counts[ids[j]] - e) * (counts[ids[j]] - e) / e;
    }
    cr_expect_lt(chi, chi999[4], "chi-square %g over the five kept ids", chi);
    cr_expect_eq(counts[0] + counts[4] + counts[6], 0);
}

/* The same (seed, stream, step) and logits give the same token; another
 * step or stream moves the draw. */
Test(sampler, seeded_draws_repeat)
{
    enum { BV = 1000 };
    static float base[BV], l[BV];
    for (int i = 0; i < BV; i++)
        base[i] = (float)((i * 7919) % 1000) / 300.0f;
    struct zl_sampler *s = make(BV);
    struct zl_sampling_params p = zl_sampling_default_params();
    p.top_p = 0.9f;
    int differ = 0;
    for (int t = 0; t < 100; t++) {
        struct zl_sample_result r1, r2, r3;
        struct zl_sampler_seq q = {.seed = 77, .stream = 3, .n_output = t};
        memcpy(l, base, sizeof l);
        cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r1), ZL_OK);
        memcpy(l, base, sizeof l);
        cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r2), ZL_OK);
        cr_expect_eq(r1.token, r2.token, "step %d: %d then %d", t, r1.token, r2.token);
        q.stream = 4;
        memcpy(l, base, sizeof l);
        cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r3), ZL_OK);
        differ += r3.token != r1.token;
    }
    cr_expect_gt(differ, 50, "another stream gives other tokens (%d of 100 differ)", differ);
    zl_sampler_free(s);
}

/* A 128k vocabulary stays cheap: no sort per token (informational bound). */
Test(sampler, large_vocab_speed)
{
    enum { BV = 128256, N = 20 };
    float *base = malloc(sizeof(float) * BV), *l = malloc(sizeof(float) * BV);
    srand(9);
    for (int i = 0; i < BV; i++)
        base[i] = (float)rand() / RAND_MAX * 20.0f - 10.0f;
    struct zl_sampler *s = make(BV);
    struct zl_sampling_params p = zl_sampling_default_params();
    p.temperature = 0.8f;
    p.top_k = 50;
    p.top_p = 0.9f;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int d = 0; d < N; d++) {
        struct zl_sampler_seq q = {.seed = 1, .n_output = d};
        struct zl_sample_result r;
        memcpy(l, base, sizeof(float) * BV);
        cr_assert_eq(zl_sampler_sample(s, &p, &q, l, &r), ZL_OK);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6) / N;
    cr_log_info("128256 ids, T 0.8, top_k 50, top_p 0.9: %.2f ms per token", ms);
    cr_expect_lt(ms, 100.0, "%.2f ms per token", ms);
    zl_sampler_free(s);
    free(base);
    free(l);
}
