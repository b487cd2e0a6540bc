/* The backend's sample op against the CPU sampler (zl_sampler_sample, the
 * semantic reference) on fresh random logits: greedy tokens, raw
 * logprobs against a float64 log-sum-exp, seeded draws token for token,
 * batch invariance, min_tokens masks, errors, a chi-square check of the
 * distribution on a small vocabulary, the split-row path of plain greedy
 * batches, sample_queue/sample_wait against sample and upload_tokens
 * reading the queued batch's tokens on the device (API minor 9), and
 * (informational) the time of decode-sized batches.
 *
 * Tolerances and bounds:
 *   greedy, top-N ids     exact (same float operations; ties to the lower id).
 *   logprobs              1e-5 abs + 2^-23 |ref|: f32 logits, f64 reference;
 *                         the op subtracts a double log-sum-exp and rounds once.
 *   seeded draws          >= 99.9% equal to the CPU token.  Both compute
 *                         e = (float)exp((double)x) on the same float x; a
 *                         mismatch needs a libm/CUDA exp difference to cross a
 *                         float rounding boundary or a sum (different order)
 *                         to land within 1e-16 of a draw boundary.
 *   chi-square            0.999 quantile for the kept ids' degrees of freedom.
 * ZL_TEST_QUICK=1 runs fewer draws and no timing (compute-sanitizer
 * memcheck); ZL_TEST_QUICK=2 also small vocabularies only (racecheck). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/sampler.h>
#include <zlight/status.h>

#include "cuda-test.h"

static int quick;

/* ---- a row as the CPU sampler and as the device op see it ---- */

struct spec {
    struct zl_sampling_params p;
    int32_t prompt[64], output[64], eos[4];
    int32_t n_prompt, n_output, n_eos;
    int32_t bias_ids[8];
    float bias[8];
    uint64_t seed, stream;
};

/* The batch arrays built from specs (backend.h). */
struct batch {
    struct zl_sample_batch b;
    struct zl_sample_row *rows;
    int32_t *tok_ids, *tok_counts, *bias_ids;
    float *bias;
};

static double gauss(void)
{
    double u = rng_uniform(1e-12, 1), v = rng_uniform(0, 1);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Logits like a model's: a bell of noise, a few ids far above it, and
 * sometimes coarse steps so that many ids tie. */
static void fill_logits(float *l, int V)
{
    double sigma = rng_uniform(0.5, 4.0);
    int coarse = rng_int(0, 3) == 0;
    for (int i = 0; i < V; i++) {
        l[i] = (float)(sigma * gauss());
        if (coarse)
            l[i] = roundf(l[i] * 4.0f) / 4.0f;
    }
    int spikes = rng_int(0, 6);
    for (int j = 0; j < spikes; j++)
        l[rng_int(0, V - 1)] += (float)rng_uniform(2, 12);
}

/* Random sampling parameters; greedy: temperature 0. */
static void rand_spec(struct spec *s, int V, int greedy)
{
    memset(s, 0, sizeof *s);
    s->p = zl_sampling_default_params();
    static const int ks[] = {0, 0, 1, 2, 5, 20, 50, 1000};
    static const float ps[] = {1.0f, 1.0f, 0.9f, 0.5f, 0.99f, 0.1f};
    static const float mps[] = {0.0f, 0.0f, 0.0f, 0.05f, 0.2f};
    s->p.temperature = greedy ? 0.0f : (float)rng_uniform(0.2, 1.6);
    s->p.top_k = ks[rng_int(0, 7)];
    s->p.top_p = ps[rng_int(0, 5)];
    s->p.min_p = mps[rng_int(0, 4)];
    if (rng_int(0, 2) == 0) {
        s->p.repetition_penalty = (float)rng_uniform(0.8, 1.5);
        s->p.presence_penalty = (float)rng_uniform(-1, 1);
        s->p.frequency_penalty = (float)rng_uniform(-0.5, 0.5);
    }
    s->p.logprobs = rng_int(0, 3) == 0 ? rng_int(0, ZL_SAMPLE_MAX_LOGPROBS) : -1;
    s->n_prompt = rng_int(0, 64);
    for (int i = 0; i < s->n_prompt; i++)
        s->prompt[i] = rng_int(0, V - 1);
    s->n_output = rng_int(0, 64);
    for (int i = 0; i < s->n_output; i++)   /* repeats, and ids of the prompt */
        s->output[i] = rng_int(0, 3) == 0 && s->n_prompt ? s->prompt[rng_int(0, s->n_prompt - 1)]
                                                          : rng_int(0, V - 1);
    if (rng_int(0, 2) == 0) {
        int n = rng_int(1, 8);
        for (int i = 0; i < n; i++) {   /* an id may repeat */
            s->bias_ids[i] = i > 0 && rng_int(0, 4) == 0 ? s->bias_ids[0] : rng_int(0, V - 1);
            s->bias[i] = (float)rng_uniform(-10, 10);
        }
        s->p.logit_bias_ids = s->bias_ids;
        s->p.logit_bias = s->bias;
        s->p.n_logit_bias = n;
    }
    if (rng_int(0, 4) == 0) {           /* min_tokens suppresses the "EOS" ids */
        s->n_eos = rng_int(1, 4);
        for (int i = 0; i < s->n_eos; i++)
            s->eos[i] = rng_int(0, V - 1);
        s->p.min_tokens = s->n_output + 1;
    }
    s->seed = rng_u64();
    s->stream = (uint64_t)rng_int(0, 3);
}

/* Pointers inside a spec move with it: call after copying. */
static void fix_spec(struct spec *s)
{
    if (s->p.n_logit_bias) {
        s->p.logit_bias_ids = s->bias_ids;
        s->p.logit_bias = s->bias;
    }
}

static void build(struct batch *bt, const struct spec *sp, int n, int V)
{
    int max_tok = 128, max_bias = 12;
    bt->rows = xmalloc(sizeof(*bt->rows) * n);
    bt->tok_ids = xmalloc(sizeof(int32_t) * n * max_tok);
    bt->tok_counts = xmalloc(sizeof(int32_t) * n * max_tok);
    bt->bias_ids = xmalloc(sizeof(int32_t) * n * max_bias);
    bt->bias = xmalloc(sizeof(float) * n * max_bias);
    int32_t *mark = calloc(V, sizeof(int32_t));     /* entry index + 1 */
    int nt = 0, nb = 0;
    for (int r = 0; r < n; r++) {
        const struct spec *s = &sp[r];
        struct zl_sample_row *w = &bt->rows[r];
        memset(w, 0, sizeof *w);
        w->temperature = s->p.temperature;
        w->top_p = s->p.top_p;
        w->min_p = s->p.min_p;
        w->top_k = s->p.top_k;
        w->repetition_penalty = s->p.repetition_penalty;
        w->presence_penalty = s->p.presence_penalty;
        w->frequency_penalty = s->p.frequency_penalty;
        w->logprobs = s->p.logprobs;
        w->seed = s->seed;
        w->stream = s->stream;
        w->step = (uint64_t)s->n_output;
        w->tok_start = nt;
        for (int pass = 0; pass < 2; pass++) {
            const int32_t *ids = pass ? s->output : s->prompt;
            int m = pass ? s->n_output : s->n_prompt;
            for (int i = 0; i < m; i++) {
                int id = ids[i];
                if (!mark[id]) {
                    bt->tok_ids[nt] = id;
                    bt->tok_counts[nt] = 0;
                    mark[id] = ++nt;
                }
                if (pass)
                    bt->tok_counts[mark[id] - 1]++;
            }
        }
        w->n_tok = nt - w->tok_start;
        for (int j = w->tok_start; j < nt; j++)
            mark[bt->tok_ids[j]] = 0;
        w->bias_start = nb;
        if (s->n_output < s->p.min_tokens)
            for (int i = 0; i < s->n_eos; i++) {
                bt->bias_ids[nb] = s->eos[i];
                bt->bias[nb++] = -INFINITY;
            }
        for (int i = 0; i < s->p.n_logit_bias; i++) {
            bt->bias_ids[nb] = s->bias_ids[i];
            bt->bias[nb++] = s->bias[i];
        }
        w->n_bias = nb - w->bias_start;
    }
    free(mark);
    bt->b = (struct zl_sample_batch){.n_rows = n, .rows = bt->rows, .tok_ids = bt->tok_ids,
                                     .tok_counts = bt->tok_counts, .bias_ids = bt->bias_ids,
                                     .bias = bt->bias};
}

static void unbuild(struct batch *bt)
{
    free(bt->rows);
    free(bt->tok_ids);
    free(bt->tok_counts);
    free(bt->bias_ids);
    free(bt->bias);
}

static int cpu_sample(struct zl_sampler *smp, const struct spec *s, const float *row, int V,
                      float *tmp, struct zl_sample_result *out)
{
    memcpy(tmp, row, sizeof(float) * V);
    struct zl_sampler_seq q = {.prompt = s->prompt, .n_prompt = s->n_prompt,
                               .output = s->output, .n_output = s->n_output, .eos_ids = s->eos,
                               .n_eos = s->n_eos, .seed = s->seed, .stream = s->stream};
    return zl_sampler_sample(smp, &s->p, &q, tmp, out);
}

/* Uploads host logits [n, V] into dl: the tensor over them. */
static struct zl_tensor put_logits(void *dl, const float *host, int n, int V)
{
    struct zl_tensor t;
    dput(dl, host, sizeof(float) * (size_t)n * V);
    tensor(&t, ZL_DTYPE_F32, 2, (int64_t[]){n, V}, dl);
    return t;
}

/* Uploads host logits [n, V] into dl and samples them. */
static int gpu_sample(void *dl, const float *host, int n, int V, const struct zl_sample_batch *b,
                      struct zl_sample_result *out)
{
    struct zl_tensor t = put_logits(dl, host, n, V);
    memset(out, 0xa5, sizeof(*out) * n);
    return be->sample(bctx, &t, b, out);
}

/* The same through sample_queue and sample_wait (API minor 9). */
static int gpu_queue(void *dl, const float *host, int n, int V, const struct zl_sample_batch *b)
{
    struct zl_tensor t = put_logits(dl, host, n, V);
    return be->sample_queue(bctx, &t, b);
}

static int gpu_wait(int n, struct zl_sample_result *out)
{
    memset(out, 0xa5, sizeof(*out) * n);
    return be->sample_wait(bctx, out);
}

static int results_equal(const struct zl_sample_result *a, const struct zl_sample_result *b)
{
    if (a->token != b->token || a->n_top != b->n_top)
        return 0;
    if (memcmp(&a->logprob, &b->logprob, sizeof(float)))
        return 0;
    for (int j = 0; j < a->n_top; j++)
        if (a->top_ids[j] != b->top_ids[j] || memcmp(&a->top_logprobs[j], &b->top_logprobs[j], 4))
            return 0;
    return 1;
}

/* ---- cases ---- */

/* The CPU sampler for vocabulary V, or NULL (a failed case). */
static struct zl_sampler *new_sampler(int V)
{
    struct zl_sampler *smp;
    if (zl_sampler_create(V, &smp) == ZL_OK)
        return smp;
    ct_result(0, "zl_sampler_create(%d): %s", V, zl_last_error());
    return NULL;
}

struct tally {
    long draws, mismatch, lp_rows, lp_bad, ids_bad;
    double lp_worst;
};

/* Logprobs of row (raw logits) against float64. */
static void check_logprobs(const float *raw, int V, const struct spec *s,
                           const struct zl_sample_result *g, const struct zl_sample_result *c,
                           struct tally *t)
{
    if (s->p.logprobs < 0)
        return;
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++)
        mx = raw[i] > mx ? raw[i] : mx;
    for (int i = 0; i < V; i++)
        sum += exp((double)raw[i] - mx);
    double lse = mx + log(sum);
    t->lp_rows++;
    int n = s->p.logprobs < V ? s->p.logprobs : V;
    int bad_ids = g->n_top != n || c->n_top != n;
    for (int j = 0; j < n && !bad_ids; j++)
        bad_ids = g->top_ids[j] != c->top_ids[j];
    t->ids_bad += bad_ids;
    int bad = 0;
    for (int j = -1; j < n && !bad_ids; j++) {
        int id = j < 0 ? g->token : g->top_ids[j];
        double ref = (double)raw[id] - lse, got = j < 0 ? g->logprob : g->top_logprobs[j];
        double err = fabs(got - ref), tol = 1e-5 + 0x1p-23 * fabs(ref);
        if (err / tol > t->lp_worst)
            t->lp_worst = err / tol;
        bad |= !(err <= tol);
    }
    t->lp_bad += bad;
}

/* One batch of n rows of vocabulary V with random parameters (greedy:
 * temperature 0 everywhere) against the CPU sampler, row by row. */
static void batch_case(struct zl_sampler *smp, int V, int n, int greedy, struct tally *t,
                       void *dl, float *host, float *tmp)
{
    struct spec *sp = xmalloc(sizeof(*sp) * n);
    for (int r = 0; r < n; r++) {
        fill_logits(host + (size_t)r * V, V);
        rand_spec(&sp[r], V, greedy);
    }
    struct batch bt;
    build(&bt, sp, n, V);
    struct zl_sample_result *g = xmalloc(sizeof(*g) * n);
    int rc = gpu_sample(dl, host, n, V, &bt.b, g);
    if (rc != ZL_OK) {
        ct_result(0, "sample %d rows of %d: rc %d (%s)", n, V, rc, zl_last_error());
        t->mismatch += n;
        t->draws += n;
    } else {
        for (int r = 0; r < n; r++) {
            struct zl_sample_result c;
            const float *row = host + (size_t)r * V;
            if (cpu_sample(smp, &sp[r], row, V, tmp, &c) != ZL_OK) {
                ct_result(0, "CPU sampler failed on row %d: %s", r, zl_last_error());
                continue;
            }
            t->draws++;
            if (g[r].token != c.token) {
                if (t->mismatch < 5)
                    printf("  mismatch V %d row %d: gpu %d cpu %d (T %g k %d p %g min_p %g "
                           "rep %g n_tok %d n_bias %d)\n", V, r, g[r].token, c.token,
                           (double)sp[r].p.temperature, sp[r].p.top_k, (double)sp[r].p.top_p,
                           (double)sp[r].p.min_p, (double)sp[r].p.repetition_penalty,
                           bt.rows[r].n_tok, bt.rows[r].n_bias);
                t->mismatch++;
            }
            check_logprobs(row, V, &sp[r], &g[r], &c, t);
        }
    }
    unbuild(&bt);
    free(g);
    free(sp);
}

static void vs_cpu(int V, int batches, int n, void *dl, float *host, float *tmp)
{
    struct zl_sampler *smp = new_sampler(V);
    if (!smp)
        return;
    struct tally g = {0}, d = {0};
    for (int i = 0; i < 2; i++)
        batch_case(smp, V, n, 1, &g, dl, host, tmp);
    for (int i = 0; i < batches; i++)
        batch_case(smp, V, n, 0, &d, dl, host, tmp);
    zl_sampler_free(smp);
    ct_result(g.mismatch == 0, "V %d greedy: %ld rows, %ld differ from the CPU argmax", V, g.draws,
              g.mismatch);
    ct_result(d.mismatch * 1000 <= d.draws && d.draws > 0,
              "V %d seeded draws: %ld of %ld differ from the CPU sampler's token (bound 0.1%%)", V,
              d.mismatch, d.draws);
    long lr = g.lp_rows + d.lp_rows, lb = g.lp_bad + d.lp_bad, ib = g.ids_bad + d.ids_bad;
    double worst = g.lp_worst > d.lp_worst ? g.lp_worst : d.lp_worst;
    ct_result(lb == 0 && ib == 0 && lr > 0,
              "V %d logprobs: %ld rows, top-N ids differ in %ld, values off in %ld (worst "
              "err/tol %.3f, tol 1e-5 + 2^-23 |ref| vs float64)", V, lr, ib, lb, worst);
}

/* The same rows alone and inside a batch give bit-identical results. */
static void batch_invariance(int V, void *dl, float *host)
{
    enum { N = 12 };
    struct spec sp[N];
    for (int r = 0; r < N; r++) {
        fill_logits(host + (size_t)r * V, V);
        rand_spec(&sp[r], V, r % 4 == 0);
        sp[r].p.logprobs = r % 3 == 0 ? 5 : sp[r].p.logprobs;
    }
    struct batch bt;
    build(&bt, sp, N, V);
    struct zl_sample_result all[N], one;
    int rc = gpu_sample(dl, host, N, V, &bt.b, all), same = 0;
    for (int r = 0; r < N && rc == ZL_OK; r++) {
        struct zl_sample_batch b1 = bt.b;
        b1.n_rows = 1;
        b1.rows = &bt.rows[r];
        if ((rc = gpu_sample(dl, host + (size_t)r * V, 1, V, &b1, &one)) == ZL_OK)
            same += results_equal(&all[r], &one);
    }
    /* and again as the batch: reproducible */
    struct zl_sample_result again[N];
    if (rc == ZL_OK && (rc = gpu_sample(dl, host, N, V, &bt.b, again)) == ZL_OK)
        for (int r = 0; r < N; r++)
            same += results_equal(&all[r], &again[r]);
    ct_result(rc == ZL_OK && same == 2 * N, "V %d batch invariance: %d of %d rows equal alone and "
              "repeated (rc %d %s)", V, same, 2 * N, rc, rc ? zl_last_error() : "");
    unbuild(&bt);
}

/* Plain greedy rows (no logprobs, bias or penalty tokens) take the op's
 * split-row path: exact against the CPU argmax and against the same rows
 * through the one-block-a-row kernel (neutral penalties over listed
 * tokens send them there), with ties planted in far-apart slices (the
 * lower id wins), a flat row (id 0), a row of -inf (masked: token -1) and
 * a repeat of the batch (the per-row counters must be back at zero). */
static void greedy_plain(int V, int n, void *dl, float *host, float *tmp)
{
    struct zl_sampler *smp = new_sampler(V);
    if (!smp)
        return;
    struct spec *sp = xmalloc(sizeof(*sp) * n);
    for (int r = 0; r < n; r++) {
        float *l = host + (size_t)r * V;
        fill_logits(l, V);
        memset(&sp[r], 0, sizeof sp[r]);
        sp[r].p = zl_sampling_default_params();
        sp[r].p.temperature = 0.0f;
        if (r % 4 == 1 && V > 8) {       /* a tie: the lower id, far from the higher */
            int a = rng_int(0, V / 2 - 1), b = rng_int(V / 2, V - 1);
            l[a] = l[b] = 50.0f;
        } else if (r % 4 == 2) {
            for (int i = 0; i < V; i++)
                l[i] = 1.5f;
        }
    }
    const int masked = n > 2 ? n - 1 : -1;
    for (int i = 0; masked >= 0 && i < V; i++)
        host[(size_t)masked * V + i] = -INFINITY;
    struct batch bt;
    build(&bt, sp, n, V);
    struct zl_sample_result *g = xmalloc(sizeof(*g) * n), *again = xmalloc(sizeof(*g) * n),
                            *rowk = xmalloc(sizeof(*g) * n);
    int rc = gpu_sample(dl, host, n, V, &bt.b, g), bad = 0, diff = 0;
    if (rc == ZL_OK)
        rc = gpu_sample(dl, host, n, V, &bt.b, again);
    for (int r = 0; r < n && rc == ZL_OK; r++) {
        struct zl_sample_result c;
        int want = -1;
        if (r != masked) {
            if (cpu_sample(smp, &sp[r], host + (size_t)r * V, V, tmp, &c) != ZL_OK) {
                ct_result(0, "CPU sampler failed on row %d: %s", r, zl_last_error());
                continue;
            }
            want = c.token;
        }
        bad += g[r].token != want || g[r].n_top != 0;
        diff += !results_equal(&g[r], &again[r]);
    }
    /* the same rows with a listed token each and neutral penalties: the row kernel */
    int32_t one = 0, zero = 0;
    for (int r = 0; r < n; r++)
        bt.rows[r].tok_start = 0, bt.rows[r].n_tok = 1;
    bt.b.tok_ids = &one;
    bt.b.tok_counts = &zero;
    int rc2 = rc == ZL_OK ? gpu_sample(dl, host, n, V, &bt.b, rowk) : rc, other = 0;
    for (int r = 0; r < n && rc2 == ZL_OK; r++)
        other += rowk[r].token != g[r].token;
    ct_result(rc == ZL_OK && rc2 == ZL_OK && bad == 0 && diff == 0 && other == 0,
              "V %d, %d plain greedy rows: %d differ from the CPU argmax (ties, a flat and a "
              "masked row among them), %d from a repeat, %d from the one-block kernel (rc %d %d)",
              V, n, bad, diff, other, rc, rc2);
    bt.b.tok_ids = bt.tok_ids;
    bt.b.tok_counts = bt.tok_counts;
    unbuild(&bt);
    free(g);
    free(again);
    free(rowk);
    free(sp);
    zl_sampler_free(smp);
}

/* min_tokens: the masked ids (the best logits here) never come out. */
static void min_tokens_mask(int V, void *dl, float *host)
{
    enum { N = 64 };
    struct spec *sp = xmalloc(sizeof(*sp) * N);
    for (int r = 0; r < N; r++) {
        float *l = host + (size_t)r * V;
        fill_logits(l, V);
        rand_spec(&sp[r], V, r < 8);
        sp[r].n_eos = 2;
        sp[r].eos[0] = rng_int(0, V - 1);
        sp[r].eos[1] = rng_int(0, V - 1);
        l[sp[r].eos[0]] = 40.0f;        /* would win every draw */
        l[sp[r].eos[1]] = 39.0f;
        sp[r].p.min_tokens = sp[r].n_output + 1;
        sp[r].p.n_logit_bias = 0;
        fix_spec(&sp[r]);
    }
    struct batch bt;
    build(&bt, sp, N, V);
    struct zl_sample_result *g = xmalloc(sizeof(*g) * N);
    int rc = gpu_sample(dl, host, N, V, &bt.b, g), hit = 0;
    for (int r = 0; r < N && rc == ZL_OK; r++)
        hit += g[r].token == sp[r].eos[0] || g[r].token == sp[r].eos[1] || g[r].token < 0 ||
               g[r].token >= V;
    ct_result(rc == ZL_OK && hit == 0, "V %d min_tokens: %d of %d rows drew a masked id (rc %d)",
              V, hit, N, rc);
    unbuild(&bt);
    free(g);
    free(sp);
}

static void errors(void *dl, float *host)
{
    enum { V = 16 };
    for (int i = 0; i < 2 * V; i++)
        host[i] = (float)i;
    struct spec sp[2];
    rand_spec(&sp[0], V, 0);
    rand_spec(&sp[1], V, 1);
    sp[1].p.n_logit_bias = 0;
    struct batch bt;
    build(&bt, sp, 2, V);
    struct zl_sample_result out[2];
    /* every id of row 1 masked */
    int32_t ids[V];
    float neg[V];
    struct zl_sample_row rows[2] = {bt.rows[0], bt.rows[1]};
    for (int i = 0; i < V; i++)
        ids[i] = i, neg[i] = -INFINITY;
    rows[1].bias_start = 0;
    rows[1].n_bias = V;
    rows[0].n_bias = 0;
    struct zl_sample_batch mb = bt.b;
    mb.rows = rows;
    mb.bias_ids = ids;
    mb.bias = neg;
    int rc = gpu_sample(dl, host, 2, V, &mb, out);
    ct_result(rc == ZL_OK && out[1].token == -1 && out[0].token >= 0 && out[0].token < V,
              "every token of row 1 masked: token -1 there, row 0 sampled (rc %d, tokens %d %d)",
              rc, (int)out[0].token, (int)out[1].token);

    struct zl_tensor t;
    tensor(&t, ZL_DTYPE_F32, 2, (int64_t[]){2, V}, dl);
    struct {
        const char *what, *word;
        int field;
    } cases[] = {
        {"top_p 0", "top_p", 0},          {"temperature -1", "temperature", 1},
        {"logprobs 21", "logprobs", 2},   {"tok id past the vocabulary", "tok_ids", 3},
        {"bias id -1", "bias_ids", 4},    {"rows 3 for 2 logits rows", "rows", 5},
        {"bf16 logits", "", 6},           {"NULL batch", "NULL", 7},
        {"min_p 2", "min_p", 8},          {"bias NaN", "bias", 9},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct zl_sample_row r2[2] = {bt.rows[0], bt.rows[1]};
        struct zl_sample_batch b = bt.b;
        b.rows = r2;
        int32_t tid[1] = {V}, bid[1] = {-1};
        float bv[1] = {NAN};
        struct zl_tensor tt = t;
        switch (cases[c].field) {
        case 0: r2[0].top_p = 0; break;
        case 1: r2[1].temperature = -1; break;
        case 2: r2[0].logprobs = 21; break;
        case 3: b.tok_ids = tid; r2[0].tok_start = 0; r2[0].n_tok = 1; r2[1].n_tok = 0; break;
        case 4: b.bias_ids = bid; r2[1].bias_start = 0; r2[1].n_bias = 1; r2[0].n_bias = 0; break;
        case 5: b.n_rows = 3; break;
        case 6: tt.dtype = ZL_DTYPE_BF16; tt.nb[0] = V * 2; tt.nb[1] = 2; break;
        case 8: r2[1].min_p = 2; break;
        case 9: b.bias = bv; b.bias_ids = (int32_t[]){1}; r2[0].bias_start = 0;
                r2[0].n_bias = 1; r2[1].n_bias = 0; break;
        }
        zl_clear_error();
        rc = be->sample(bctx, &tt, cases[c].field == 7 ? NULL : &b, out);
        const char *msg = zl_last_error();
        ct_result(rc == ZL_EINVAL && strlen(msg) > 10 && strstr(msg, cases[c].word),
                  "bad argument (%s): ZL_EINVAL naming it (rc %d: %s)", cases[c].what, rc, msg);
    }
    unbuild(&bt);
}

/* 16 ids, one row params, N draws at different steps against the exact
 * probabilities of the kept set. */
static void chi_square(void *dl, float *host)
{
    enum { V = 16, ROWS = 1000 };
    int batches = quick ? 2 : 20;
    static const float base[V] = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -1.0f, 1.2f, 0.7f,
                                  1.9f, -0.5f, 0.3f, 1.5f, -3.0f, 0.9f, 0.1f, 1.1f};
    struct {
        float t, top_p, min_p;
        int top_k;
    } ps[] = {{1.0f, 1.0f, 0.0f, 0}, {0.7f, 0.9f, 0.0f, 10}, {1.3f, 1.0f, 0.2f, 0}};
    for (size_t c = 0; c < sizeof ps / sizeof ps[0]; c++) {
        struct spec s;
        memset(&s, 0, sizeof s);
        s.p = zl_sampling_default_params();
        s.p.temperature = ps[c].t;
        s.p.top_p = ps[c].top_p;
        s.p.top_k = ps[c].top_k;
        s.p.min_p = ps[c].min_p;
        s.seed = rng_u64();
        /* the kept set and its exact probabilities (sampler.h's definition) */
        double e[V], sorted[V], tot = 0;
        int m = 0;
        for (int i = 0; i < V; i++) {
            e[i] = exp(((double)base[i] - 2.0) / ps[c].t);
            if (e[i] >= ps[c].min_p)
                sorted[m++] = e[i];
        }
        for (int i = 1; i < m; i++)
            for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
                double x = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = x;
            }
        double thr = sorted[m - 1];
        if (ps[c].top_k > 0 && ps[c].top_k < m)
            thr = sorted[ps[c].top_k - 1], m = ps[c].top_k;
        for (int i = 0; i < m; i++)
            tot += sorted[i];
        if (ps[c].top_p < 1.0f) {
            double cum = 0;
            for (int i = 0; i < m; i++)
                if ((cum += sorted[i]) >= ps[c].top_p * tot) {
                    thr = sorted[i];
                    break;
                }
        }
        double z = 0;
        int kept = 0;
        for (int i = 0; i < V; i++)
            if (e[i] >= thr && e[i] >= ps[c].min_p)
                z += e[i], kept++;
        long counts[V] = {0}, n = 0;
        int rc = ZL_OK;
        struct spec *sp = xmalloc(sizeof(*sp) * ROWS);
        struct zl_sample_result *g = xmalloc(sizeof(*g) * ROWS);
        for (int bch = 0; bch < batches && rc == ZL_OK; bch++) {
            for (int r = 0; r < ROWS; r++) {
                sp[r] = s;
                sp[r].n_output = 0;
                memcpy(host + (size_t)r * V, base, sizeof base);
            }
            struct batch bt;
            build(&bt, sp, ROWS, V);
            for (int r = 0; r < ROWS; r++)      /* steps 0 .. batches * ROWS - 1 */
                bt.rows[r].step = (uint64_t)bch * ROWS + r;
            rc = gpu_sample(dl, host, ROWS, V, &bt.b, g);
            for (int r = 0; r < ROWS && rc == ZL_OK; r++, n++)
                counts[g[r].token >= 0 && g[r].token < V ? g[r].token : 0]++;
            unbuild(&bt);
        }
        double chi = 0;
        long outside = 0;
        for (int i = 0; i < V; i++) {
            int in = e[i] >= thr && e[i] >= ps[c].min_p;
            if (!in) {
                outside += counts[i];
                continue;
            }
            double ex = n * e[i] / z;
            chi += (counts[i] - ex) * (counts[i] - ex) / ex;
        }
        /* 0.999 quantiles of chi-square, 1..15 degrees of freedom */
        static const double q999[] = {0,     10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32,
                                      26.12, 27.88, 29.59, 31.26, 32.91, 34.53, 36.12, 37.70};
        ct_result(rc == ZL_OK && outside == 0 && kept >= 2 && chi < q999[kept - 1],
                  "chi-square, 16 ids, T %g top_k %d top_p %g min_p %g: %ld draws, %d kept, "
                  "chi2 %.2f < %.2f (0.999, %d dof), %ld outside the kept set", (double)ps[c].t,
                  ps[c].top_k, (double)ps[c].top_p, (double)ps[c].min_p, n, kept, chi,
                  q999[kept - 1], kept - 1, outside);
        free(sp);
        free(g);
    }
}

/* ---- sample_queue, sample_wait and upload_tokens (API minor 9) ---- */

static int has_halves(void)
{
    return ZL_BACKEND_HAS(be, upload_tokens) && be->sample_queue && be->sample_wait &&
           be->upload_tokens;
}

/* An error with a message holding `word`; a ct_result line. */
static void want_einval(int rc, const char *word, const char *what)
{
    const char *msg = zl_last_error();
    ct_result(rc == ZL_EINVAL && strstr(msg, word) != NULL, "%s: ZL_EINVAL naming \"%s\" (rc %d: "
              "%s)", what, word, rc, msg);
}

/* The first max of a row (the lower id on ties). */
static int argmax(const float *l, int V)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        best = l[i] > l[best] ? i : best;
    return best;
}

/* sample_queue then sample_wait gives sample's results bit for bit, for
 * plain greedy rows (the split kernel) and mixed ones (temperature,
 * penalties, bias, logprobs: the row kernel; seeded, so repeatable); the
 * greedy rows' tokens are the CPU sampler's. */
static void halves_same(int V, int n, int greedy, void *dl, float *host, float *tmp)
{
    struct zl_sampler *smp = new_sampler(V);
    if (!smp)
        return;
    struct spec *sp = xmalloc(sizeof(*sp) * n);
    for (int r = 0; r < n; r++) {
        fill_logits(host + (size_t)r * V, V);
        if (greedy) { /* nothing to apply, no logprobs */
            memset(&sp[r], 0, sizeof sp[r]);
            sp[r].p = zl_sampling_default_params();
            sp[r].p.temperature = 0.0f;
            continue;
        }
        rand_spec(&sp[r], V, r % 3 == 0);
        if (r % 2 == 0)
            sp[r].p.logprobs = rng_int(0, ZL_SAMPLE_MAX_LOGPROBS);
    }
    struct batch bt;
    build(&bt, sp, n, V);
    struct zl_sample_result *g = xmalloc(sizeof(*g) * n), *h = xmalloc(sizeof(*h) * n);
    int rc = gpu_sample(dl, host, n, V, &bt.b, g), rc2 = ZL_OK, same = 0, off = 0;
    if (rc == ZL_OK && (rc2 = gpu_queue(dl, host, n, V, &bt.b)) == ZL_OK)
        rc2 = gpu_wait(n, h);
    for (int r = 0; r < n && rc == ZL_OK && rc2 == ZL_OK; r++) {
        same += results_equal(&g[r], &h[r]);
        struct zl_sample_result c;
        if (sp[r].p.temperature == 0.0f &&
            (cpu_sample(smp, &sp[r], host + (size_t)r * V, V, tmp, &c) != ZL_OK ||
             c.token != h[r].token))
            off++;
    }
    ct_result(rc == ZL_OK && rc2 == ZL_OK && same == n && off == 0,
              "V %d, %d %s rows: sample_queue + sample_wait equal sample's results in %d, %d "
              "greedy rows off the CPU sampler (rc %d %d)", V, n, greedy ? "plain greedy" : "mixed",
              same, off, rc, rc2);
    unbuild(&bt);
    free(g);
    free(h);
    free(sp);
    zl_sampler_free(smp);
}

/* Before any sample_queue: upload_tokens of a sampled row fails, a plain
 * one (no from, or every from -1) uploads. */
static void tokens_before_queue(void)
{
    int32_t tok[3] = {7, 70000, 3}, from[3] = {-1, 0, -1}, got[3];
    int32_t *d = dmalloc(sizeof tok);
    zl_clear_error();
    want_einval(be->upload_tokens(bctx, d, tok, from, 3), "row 1",
                "upload_tokens of a sampled row before any sample_queue");
    from[1] = -1;
    int rc = be->upload_tokens(bctx, d, tok, from, 3), ok = 0;
    if (rc == ZL_OK) {
        dget(got, d, sizeof got);
        ok = !memcmp(got, tok, sizeof tok);
        dpoison(d, sizeof tok);
        if ((rc = be->upload_tokens(bctx, d, tok, NULL, 3)) == ZL_OK) {
            dget(got, d, sizeof got);
            ok += !memcmp(got, tok, sizeof tok);
        }
    }
    ct_result(rc == ZL_OK && ok == 2, "upload_tokens with every from -1 and with no from: the "
              "host ids, unchecked (rc %d %s)", rc, rc ? zl_last_error() : "");
    dfree(d);
}

/* One batch at a time, and upload_tokens' rows within the batch queued last. */
static void halves_errors(void *dl, float *host)
{
    enum { V = 16 };
    for (int i = 0; i < V; i++)
        host[i] = (float)i, host[V + i] = (float)-i;    /* argmax 15 and 0 */
    struct zl_sample_row rows[2];
    for (int r = 0; r < 2; r++)
        rows[r] = (struct zl_sample_row){.top_p = 1.0f, .repetition_penalty = 1.0f,
                                         .logprobs = -1};
    struct zl_sample_batch b = {.n_rows = 2, .rows = rows};
    struct zl_sample_result out[2];
    int32_t tok[2] = {1, 2}, from[2] = {0, 2};
    int32_t *d = dmalloc(sizeof tok);
    zl_clear_error();
    want_einval(be->sample_wait(bctx, out), "no sample batch", "sample_wait with nothing queued");
    int rc = gpu_queue(dl, host, 2, V, &b);
    ct_result(rc == ZL_OK, "sample_queue (rc %d %s)", rc, rc ? zl_last_error() : "");
    want_einval(gpu_queue(dl, host, 2, V, &b), "sample_wait", "a second sample_queue before "
                "sample_wait");
    want_einval(be->sample(bctx, &(struct zl_tensor){0}, &b, out), "sample_wait",
                "sample while a batch is queued");
    want_einval(be->upload_tokens(bctx, d, tok, from, 2), "row 1", "upload_tokens of sample row 2 "
                "of a batch of 2");
    want_einval(be->upload_tokens(bctx, NULL, tok, from, 2), "NULL", "upload_tokens to NULL");
    rc = gpu_wait(2, out);
    ct_result(rc == ZL_OK && out[0].token == V - 1 && out[1].token == 0,
              "sample_wait after the refused calls: the first batch's tokens %d %d, want %d 0 "
              "(rc %d %s)", (int)out[0].token, (int)out[1].token, V - 1, rc,
              rc ? zl_last_error() : "");
    want_einval(be->sample_wait(bctx, out), "no sample batch", "a second sample_wait");
    rows[1].top_p = 0.0f;   /* a failed sample_queue leaves nothing to wait for or read */
    want_einval(gpu_queue(dl, host, 2, V, &b), "top_p", "sample_queue of a bad row");
    want_einval(be->sample_wait(bctx, out), "no sample batch", "sample_wait after a failed "
                "sample_queue");
    from[1] = 0;
    want_einval(be->upload_tokens(bctx, d, tok, from, 2), "row 0", "upload_tokens of a sampled "
                "row after a failed sample_queue");
    dfree(d);
}

/* upload_tokens from the batch queued last, read back before its
 * sample_wait (the dget waits for the stream, not the op) and again after
 * it: rows with from >= 0 hold that row's token (greedy rows: the known
 * argmax; the masked last row: 0), the others the host ids, unchecked.
 * mixed: rows with temperature and logprobs (the row kernel), the last
 * masked by a -inf bias on every id; else plain greedy rows (the split
 * kernel), the last of -inf logits. */
static void tokens_from(int V, int n, int mixed, void *dl, float *host)
{
    struct zl_sample_row *rows = xmalloc(sizeof(*rows) * n);
    int32_t *ids = xmalloc(sizeof(int32_t) * V), *want_tok = xmalloc(sizeof(int32_t) * n);
    float *neg = xmalloc(sizeof(float) * V);
    for (int i = 0; i < V; i++)
        ids[i] = i, neg[i] = -INFINITY;
    for (int r = 0; r < n; r++) {
        float *l = host + (size_t)r * V;
        fill_logits(l, V);
        rows[r] = (struct zl_sample_row){.top_p = 1.0f, .repetition_penalty = 1.0f,
                                         .logprobs = -1, .seed = rng_u64()};
        if (mixed && r % 3 == 1)
            rows[r].temperature = 0.9f, rows[r].top_k = 40;
        if (mixed && r % 3 == 2)
            rows[r].logprobs = 3;
        want_tok[r] = rows[r].temperature == 0.0f ? argmax(l, V) : -2; /* -2: any id */
    }
    want_tok[n - 1] = -1;
    if (mixed)
        rows[n - 1].n_bias = V;
    else
        for (int i = 0; i < V; i++)
            host[(size_t)(n - 1) * V + i] = -INFINITY;
    struct zl_sample_batch b = {.n_rows = n, .rows = rows, .bias_ids = ids, .bias = neg};
    int m = 2 * n + 3;
    int32_t *tok = xmalloc(sizeof(int32_t) * m), *from = xmalloc(sizeof(int32_t) * m),
            *tok0 = xmalloc(sizeof(int32_t) * m), *from0 = xmalloc(sizeof(int32_t) * m),
            *got = xmalloc(sizeof(int32_t) * m), *d = dmalloc(sizeof(int32_t) * m);
    struct zl_sample_result *res = xmalloc(sizeof(*res) * n);
    dpoison(d, sizeof(int32_t) * m);    /* before: the gather queues right behind the sample */
    int rc = gpu_queue(dl, host, n, V, &b), bad = 0, pass;
    for (pass = 0; pass < 2 && rc == ZL_OK; pass++) {
        for (int i = 0; i < m; i++) {
            tok0[i] = i == 0 ? V + 5 : rng_int(0, V - 1);   /* not range-checked */
            from0[i] = i % 3 == 0 ? -1 : i == 1 ? n - 1 : rng_int(0, n - 1);
        }
        memcpy(tok, tok0, sizeof(int32_t) * m);
        memcpy(from, from0, sizeof(int32_t) * m);
        if (pass)
            dpoison(d, sizeof(int32_t) * m);
        if ((rc = be->upload_tokens(bctx, d, tok, from, m)) != ZL_OK)
            break;
        memset(tok, 0x5a, sizeof(int32_t) * m);     /* the host arrays are free on return */
        memset(from, 0, sizeof(int32_t) * m);
        dget(got, d, sizeof(int32_t) * m);
        if (pass == 0 && (rc = gpu_wait(n, res)) != ZL_OK)
            break;
        for (int r = 0; pass == 0 && r < n; r++)
            bad += want_tok[r] == -2 ? res[r].token < 0 || res[r].token >= V
                                     : res[r].token != want_tok[r];
        for (int i = 0; i < m; i++) {
            int f = from0[i];
            bad += got[i] != (f < 0 ? tok0[i] : res[f].token < 0 ? 0 : res[f].token);
        }
    }
    ct_result(rc == ZL_OK && pass == 2 && bad == 0,
              "V %d, %d %s rows: upload_tokens of %d ids before and after sample_wait: %d "
              "tokens or ids wrong (argmax rows, a masked row reading 0; rc %d %s)", V, n,
              mixed ? "mixed" : "plain greedy", m, bad, rc, rc ? zl_last_error() : "");
    if (rc != ZL_OK)
        (void)be->sample_wait(bctx, res);   /* whatever is left queued */
    dfree(d);
    free(rows);
    free(ids);
    free(want_tok);
    free(neg);
    free(tok);
    free(from);
    free(tok0);
    free(from0);
    free(got);
    free(res);
}

/* Decode-sized batch, informational: the op waits for its result, so the
 * host clock around it is the latency an engine sees (upload, kernel,
 * copy back). */
static void timing(void *dl, float *host, int N)
{
    enum { V = 128256, IT = 30 };
    for (int r = 0; r < N; r++)
        fill_logits(host + (size_t)r * V, V);
    struct { const char *name; float t, top_p; int top_k; } modes[] = {
        {"greedy", 0.0f, 1.0f, 0}, {"T 0.8 top_k 50 top_p 0.9", 0.8f, 0.9f, 50},
        {"T 1.0 top_p 0.9", 1.0f, 0.9f, 0}, {"T 1.0 plain", 1.0f, 1.0f, 0}};
    struct spec *sp = xmalloc(sizeof(*sp) * N);
    struct zl_sample_result *g = xmalloc(sizeof(*g) * N);
    struct zl_tensor t;
    dput(dl, host, sizeof(float) * (size_t)N * V);
    tensor(&t, ZL_DTYPE_F32, 2, (int64_t[]){N, V}, dl);
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        for (int r = 0; r < N; r++) {
            memset(&sp[r], 0, sizeof sp[r]);
            sp[r].p = zl_sampling_default_params();
            sp[r].p.temperature = modes[m].t;
            sp[r].p.top_p = modes[m].top_p;
            sp[r].p.top_k = modes[m].top_k;
            sp[r].seed = (uint64_t)r;
        }
        struct batch bt;
        build(&bt, sp, N, V);           /* no bias, no penalties: the logits stay as they are */
        double us[IT];
        int rc = ZL_OK;
        for (int i = 0; i < 3 && rc == ZL_OK; i++)
            rc = be->sample(bctx, &t, &bt.b, g);
        for (int i = 0; i < IT && rc == ZL_OK; i++) {
            for (int r = 0; r < N; r++)
                bt.rows[r].step = (uint64_t)i;
            double t0 = 1e6 * ct_now();
            rc = be->sample(bctx, &t, &bt.b, g);
            us[i] = 1e6 * ct_now() - t0;
        }
        if (rc != ZL_OK) {
            ct_result(0, "timing %s: rc %d %s", modes[m].name, rc, zl_last_error());
        } else {
            qsort(us, IT, sizeof us[0], ct_cmp_double);
            printf("BENCH sample %d rows x %d, %s: median %.1f us per call (min %.1f); one read "
                   "of the logits at 3.0 TB/s is %.1f us\n", N, V, modes[m].name, us[IT / 2], us[0],
                   (double)N * V * 4 / 3.0e12 * 1e6);
        }
        unbuild(&bt);
    }
    free(sp);
    free(g);
}

int main(void)
{
    int rc = ct_setup("sample");
    if (rc)
        return rc;
    if (!ZL_BACKEND_HAS(be, sample) || !be->sample) {
        return ct_skip("the backend has no sample op");
    }
    const char *q = getenv("ZL_TEST_QUICK");
    quick = q && *q ? atoi(q) : 0;
    if (has_halves())   /* first: no sample_queue since open */
        tokens_before_queue();
    enum { MAXV = 128256, MAXN = 1000 };
    size_t cap = (size_t)MAXV * 128 > (size_t)16 * MAXN ? (size_t)MAXV * 128 : (size_t)16 * MAXN;
    float *host = xmalloc(sizeof(float) * cap), *tmp = xmalloc(sizeof(float) * MAXV);
    void *dl = dmalloc(sizeof(float) * cap);
    static const int big[] = {32000, 128256, 50257}, small[] = {3000, 1000, 257};
    const int *vocabs = quick >= 2 ? small : big;
    for (int i = 0; i < 3; i++)     /* 3 x 13 batches x 64 rows: 2496 draws */
        vs_cpu(vocabs[i], quick ? 1 : 13, quick ? 16 : 64, dl, host, tmp);
    vs_cpu(37, quick ? 2 : 20, 64, dl, host, tmp);      /* tiny: many ties, all filters bite */
    static const int greedy_rows[] = {1, 3, 32, 128};
    for (int i = 0; i < 3; i++)     /* 50257: rows off 16-byte alignment */
        for (int j = 0; j < 4; j++)
            greedy_plain(vocabs[i], greedy_rows[j], dl, host, tmp);
    greedy_plain(37, 5, dl, host, tmp);
    greedy_plain(5, 2, dl, host, tmp);
    for (int i = 0; i < 3; i++) {
        batch_invariance(vocabs[i], dl, host);
        min_tokens_mask(vocabs[i], dl, host);
    }
    errors(dl, host);
    for (int i = 0; has_halves() && i < 2; i++) {
        halves_same(vocabs[i], 32, 1, dl, host, tmp);
        halves_same(vocabs[i + 1], 32, 0, dl, host, tmp);
        tokens_from(vocabs[i + 1], 33, i, dl, host);
        tokens_from(vocabs[i], 7, !i, dl, host);
    }
    if (has_halves())
        halves_errors(dl, host);
    chi_square(dl, host);
    static const int timed_rows[] = {1, 4, 16, 64, 128};
    for (int i = 0; !quick && i < 5; i++)
        timing(dl, host, timed_rows[i]);
    dfree(dl);
    free(host);
    free(tmp);
    return ct_finish();
}
