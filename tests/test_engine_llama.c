/* Batch invariance on the real path: the llama plugin on the CPU backend
 * with the tiny fixture.  Each of 16 prompts of random lengths must give
 * the same greedy ids alone, all together, with chunked prefill of 1, 7
 * and 64 tokens per step, with prefix-cache hits on a shared system
 * prompt, and after forced preemption (tiny KV pool); and the ids must be
 * the Hugging Face reference for the fixture's own prompts.  Seeded sampling
 * (temperature 0.9, top-p 0.9) must be just as invariant.
 *
 * ZL_ENGINE_TEST_BACKEND=cuda runs the same on the CUDA backend (its
 * device sampler and decode steps replayed as CUDA graphs included; one
 * test wants the tokens of graph replays equal to those of direct
 * launches), ZL_ENGINE_TEST_DTYPE=bf16|f16 in that dtype (f32 default; the
 * HF reference checks need f32).  Prompt logprobs are checked against
 * transformers' logits too. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlight/engine.h>

#define FIXTURE ZL_TOP_SRCDIR "/tests/fixtures/llama/llama2"
#define LLAMA_SO ZL_TOP_BUILDDIR "/models/llama/.libs/llama.so"

enum { NP = 16, NEW = 12, MAXP = 96 };

static struct zl_engine_model *g_model;

static struct zl_sched_params big_sched(void)
{
    struct zl_sched_params s = zl_sched_default_params();
    s.max_num_batched_tokens = 1024;
    s.max_num_seqs = 32;
    s.max_model_len = 512;
    return s;
}

static enum zl_dtype g_dtype = ZL_DTYPE_F32;

static void open_model(void)
{
    const char *be = getenv("ZL_ENGINE_TEST_BACKEND"), *dt = getenv("ZL_ENGINE_TEST_DTYPE");
    be = be && *be ? be : "cpu";
    char be_so[512];
    snprintf(be_so, sizeof be_so, "%s/kernels/%s/.libs/%s.so", ZL_TOP_BUILDDIR, be, be);
    if (access(FIXTURE "/model.safetensors", R_OK) != 0 || access(be_so, R_OK) != 0 ||
        access(LLAMA_SO, R_OK) != 0)
        cr_skip_test("needs " FIXTURE ", %s and the llama plugin built under " ZL_TOP_BUILDDIR, be_so);
    g_dtype = !dt || !*dt ? ZL_DTYPE_F32 : !strcmp(dt, "bf16") ? ZL_DTYPE_BF16
            : !strcmp(dt, "f16") ? ZL_DTYPE_F16 : ZL_DTYPE_F32;
    cr_assert(!dt || !*dt || g_dtype != ZL_DTYPE_F32 || !strcmp(dt, "f32"),
              "ZL_ENGINE_TEST_DTYPE=%s: f32, bf16 or f16", dt);
    struct zl_engine_model_params mp = zl_engine_model_default_params();
    const char *paths[] = {be_so, LLAMA_SO};
    mp.model_path = FIXTURE;
    mp.backend = be;
    mp.plugin_paths = paths;
    mp.n_plugin_paths = 2;
    mp.dtype = g_dtype;
    mp.threads = 1;
    mp.kv_tokens = 8192;
    struct zl_sched_params s = big_sched();
    cr_assert_eq(zl_engine_model_open(&mp, &s, &g_model), ZL_OK, "%s", zl_last_error());
}

static void close_model(void)
{
    zl_engine_model_free(g_model);
    g_model = NULL;
}

TestSuite(engine_llama, .init = open_model, .fini = close_model, .timeout = 120);

/* Greedy ids of each prompt; `n_alone` 1 runs them one at a time. */
static float g_temperature;     /* > 0: seeded sampling (seed = prompt index) instead of greedy */
static int g_no_graphs;         /* 1: decode steps launched op by op */
static int g_no_async;          /* 1: each step waits for the last one's tokens */
static int g_drain;             /* 1: prompt i asks for new_tokens - i tokens (a draining batch) */

static int32_t want_tokens(int i, int32_t new_tokens)
{
    return g_drain ? new_tokens - i : new_tokens;
}

static void generate(struct zl_sched_params s, int32_t max_kv_blocks, int warm, int n, int alone,
                     int32_t (*prompts)[MAXP], const int32_t *lens, int32_t new_tokens,
                     int32_t (*out)[32], struct zl_engine_stats *st)
{
    struct zl_engine_params ep = zl_engine_default_params();
    ep.sched = s;
    ep.threaded = 0;
    ep.max_kv_blocks = max_kv_blocks;
    ep.device_graphs = !g_no_graphs;
    ep.async_scheduling = !g_no_async;
    zl_engine_model_fill(g_model, &ep);
    struct zl_engine *e;
    cr_assert_eq(zl_engine_create(&ep, &e), ZL_OK, "%s", zl_last_error());
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = g_temperature;
    sp.top_p = 0.9f;
    sp.has_seed = 1;
    sp.max_tokens = new_tokens;
    sp.ignore_eos = 1;
    uint64_t first = 0;
    int32_t got[NP] = {0};
    for (int w = 0; w < warm; w++) {     /* a request that leaves the system prompt cached */
        cr_assert_eq(zl_engine_submit(e, prompts[0], lens[0], &sp, NULL, NULL), ZL_OK);
        struct zl_output o;
        while (zl_engine_wait(e, &o, -1) == 1) {
            enum zl_finish_reason f = o.finish;
            zl_output_release(&o);
            if (f)
                break;
        }
    }
    for (int i = 0; i < n; i++) {
        uint64_t id;
        sp.seed = (uint64_t)i;
        sp.max_tokens = want_tokens(i, new_tokens);
        cr_assert_eq(zl_engine_submit(e, prompts[i], lens[i], &sp, NULL, &id), ZL_OK, "%s", zl_last_error());
        if (i == 0)
            first = id;
        if (!alone && i < n - 1)
            continue;
        int left = alone ? 1 : n;
        struct zl_output o;
        while (left > 0 && zl_engine_wait(e, &o, -1) == 1) {
            int k = (int)(o.request_id - first);
            cr_assert(k >= 0 && k < n);
            if (o.n_tokens)
                out[k][got[k]++] = o.token;
            cr_expect(o.finish == ZL_FINISH_NONE || o.finish == ZL_FINISH_LENGTH);
            left -= o.finish != ZL_FINISH_NONE;
            zl_output_release(&o);
        }
        cr_assert_eq(left, 0);
    }
    for (int i = 0; i < n; i++)
        cr_expect_eq(got[i], want_tokens(i, new_tokens), "prompt %d", i);
    zl_engine_get_stats(e, st);
    zl_engine_free(e);
}

/* The fixture's transformers reference (prompts, greedy, last_logits, margins). */
static json_t *load_reference(void)
{
    FILE *f = fopen(FIXTURE "/reference.json", "r");
    cr_assert_not_null(f, FIXTURE "/reference.json");
    json_error_t err;
    json_t *ref = json_loadf(f, 0, &err);
    fclose(f);
    cr_assert_not_null(ref, "reference.json: %s", err.text);
    return ref;
}

Test(engine_llama, greedy_matches_reference)
{
    if (g_dtype != ZL_DTYPE_F32)
        cr_skip_test("the reference ids are transformers' in f32");
    json_t *ref = load_reference();
    json_t *prompts = json_object_get(ref, "prompts"), *greedy = json_object_get(ref, "greedy");
    int n = (int)json_array_size(prompts);
    cr_assert(n > 0 && n <= NP && (int)json_array_size(greedy) == n);
    static int32_t p[NP][MAXP], out[NP][32];
    int32_t lens[NP] = {0};
    int32_t want = (int32_t)json_array_size(json_array_get(greedy, 0));
    cr_assert(want > 0 && want <= 32);
    for (int i = 0; i < n; i++) {
        json_t *a = json_array_get(prompts, i);
        lens[i] = (int32_t)json_array_size(a);
        cr_assert(lens[i] > 0 && lens[i] <= MAXP);
        for (int32_t j = 0; j < lens[i]; j++)
            p[i][j] = (int32_t)json_integer_value(json_array_get(a, j));
    }
    struct zl_engine_stats st;
    generate(big_sched(), 0, 0, n, 0, p, lens, want, out, &st);
    for (int i = 0; i < n; i++)
        for (int32_t j = 0; j < want; j++)
            cr_expect_eq(out[i][j], json_integer_value(json_array_get(json_array_get(greedy, i), j)),
                         "prompt %d token %d", i, j);
    json_decref(ref);
}

/* Prompt logprobs (echo with logprobs) against transformers: each
 * reference prompt followed by its 32 greedy ids, scored as one prompt.
 * The logprob of the first greedy id is log_softmax(last_logits) at it
 * (logits within test_llama's 5e-5, so logprobs within 1e-4), and every
 * later greedy id is its position's top 1 (where the reference's top-1
 * margin is over 1e-3, as test_llama's greedy rule) with its own logprob.
 * On CUDA the device sampler scores the rows.  Seen on the CPU: within
 * 6.9e-7 of the reference, 93 top-1 ids checked. */
Test(engine_llama, prompt_logprobs_match_reference)
{
    if (g_dtype != ZL_DTYPE_F32)
        cr_skip_test("the reference logits are transformers' in f32");
    json_t *ref = load_reference();
    struct zl_engine_params ep = zl_engine_default_params();
    ep.sched = big_sched();
    zl_engine_model_fill(g_model, &ep);
    struct zl_engine *e;
    cr_assert_eq(zl_engine_create(&ep, &e), ZL_OK, "%s", zl_last_error());
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 1;
    struct zl_request_opts opts = zl_request_default_opts();
    opts.prompt_logprobs = 1;
    for (size_t i = 0; i < json_array_size(json_object_get(ref, "prompts")); i++) {
        json_t *p = json_array_get(json_object_get(ref, "prompts"), i);
        json_t *g = json_array_get(json_object_get(ref, "greedy"), i);
        json_t *margins = json_array_get(json_object_get(ref, "margins"), i);
        json_t *last = json_array_get(json_object_get(ref, "last_logits"), i);
        int32_t np = (int32_t)json_array_size(p), ng = (int32_t)json_array_size(g), q[MAXP];
        cr_assert(np + ng <= MAXP);
        for (int32_t j = 0; j < np + ng; j++)
            q[j] = (int32_t)json_integer_value(j < np ? json_array_get(p, j) : json_array_get(g, j - np));
        cr_assert_eq(zl_engine_submit_opts(e, q, np + ng, &sp, &opts, NULL, NULL), ZL_OK, "%s",
                     zl_last_error());
        struct zl_output o;
        cr_assert_eq(zl_engine_wait(e, &o, -1), 1);
        cr_assert_eq(o.n_prompt_logprobs, np + ng);
        cr_assert_eq(o.prompt_top_k, 1);
        double mx = -INFINITY, sum = 0.0;
        for (size_t v = 0; v < json_array_size(last); v++)
            mx = fmax(mx, json_real_value(json_array_get(last, v)));
        for (size_t v = 0; v < json_array_size(last); v++)
            sum += exp(json_real_value(json_array_get(last, v)) - mx);
        double want = json_real_value(json_array_get(last, (size_t)q[np])) - mx - log(sum);
        cr_expect(fabs(o.prompt_logprobs[np] - want) < 1e-4, "prompt %zu: %g against %g", i,
                  (double)o.prompt_logprobs[np], want);
        for (int32_t j = np + 1; j < np + ng; j++) {
            if (json_real_value(json_array_get(margins, (size_t)(j - np))) <= 1e-3)
                break; /* a near tie: the continuations may differ from here */
            cr_expect_eq(o.prompt_top_ids[j], q[j], "prompt %zu, greedy id %d", i, j - np);
            /* the same number: clients test greediness with == */
            cr_expect_eq(o.prompt_top_logprobs[j], o.prompt_logprobs[j], "prompt %zu, id %d", i, j - np);
        }
        while (!o.finish) {
            zl_output_release(&o);
            cr_assert_eq(zl_engine_wait(e, &o, -1), 1);
        }
        zl_output_release(&o);
    }
    zl_engine_free(e);
    json_decref(ref);
}

static int on_cuda(void)
{
    const char *be = getenv("ZL_ENGINE_TEST_BACKEND");
    return be && !strcmp(be, "cuda");
}

/* NP prompts of random lengths from `seed`; with `shared` the first 40
 * tokens are a system prompt they have in common. */
static void make_prompts(unsigned seed, int shared, int32_t (*prompts)[MAXP], int32_t *lens)
{
    srand(seed);
    for (int i = 0; i < NP; i++) {
        lens[i] = 3 + rand() % (MAXP - 3);
        for (int32_t j = 0; j < lens[i]; j++)
            prompts[i][j] = shared && j < 40 ? (j * 37 + 11) % 256 : rand() % 256;
    }
}

static void batch_invariance(float temperature)
{
    static int32_t prompts[NP][MAXP], ref[NP][32], got[NP][32];
    int32_t lens[NP] = {0};
    g_temperature = temperature;
    make_prompts(17, 1, prompts, lens);
    struct zl_engine_stats st;
    generate(big_sched(), 0, 0, NP, 1, prompts, lens, NEW, ref, &st);     /* alone */
    struct {
        const char *name;
        int32_t budget, chunk, kv_blocks, prefix, warm;
    } cfg[] = {
        {"together", 1024, 0, 0, 0, 0},
        {"chunk 1", 1024, 1, 0, 0, 0},
        {"chunk 7", 1024, 7, 0, 0, 0},
        {"chunk 64", 1024, 64, 0, 0, 0},
        {"budget 40", 40, 0, 0, 0, 0},
        {"prefix hits", 1024, 0, 0, 1, 1},
        {"preemption", 1024, 0, 14, 1, 0},
    };
    for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
        struct zl_sched_params s = big_sched();
        s.max_num_batched_tokens = cfg[c].budget;
        s.max_prefill_chunk = cfg[c].chunk;
        s.enable_prefix_caching = cfg[c].prefix;
        memset(got, 0, sizeof(got));
        generate(s, cfg[c].kv_blocks, cfg[c].warm, NP, 0, prompts, lens, NEW, got, &st);
        for (int i = 0; i < NP; i++)
            cr_expect_arr_eq(got[i], ref[i], sizeof(int32_t) * NEW, "%s: prompt %d (%d tokens)",
                             cfg[c].name, i, lens[i]);
        if (cfg[c].warm)
            cr_expect_gt(st.prefix_hit_tokens, 0, "%s: no prefix-cache hit", cfg[c].name);
        if (cfg[c].kv_blocks)
            cr_expect_gt(st.n_preemptions, 0, "%s: nothing was preempted", cfg[c].name);
    }
}

Test(engine_llama, batch_invariance)
{
    batch_invariance(0.0f);
}

/* Seeded sampling: the same tokens whatever the batch, chunking or cache. */
Test(engine_llama, seeded_sampling_invariance)
{
    batch_invariance(0.9f);
}

/* Device graphs change no token: the same requests with every op launched
 * directly.  Greedy and seeded sampling, all 16 sequences decoding 20
 * tokens (one batch size) and then a draining batch (prompt i stops after
 * 20 - i tokens: 16, 15, ... 1 sequences, run padded to 16, 8, 4, 2, 1
 * rows).  On CUDA the runs must have replayed graphs: the drain only
 * through padding (unpadded, each of its sizes 15..1 comes once and none
 * would replay); on the CPU none. */
Test(engine_llama, graphs_change_no_token)
{
    static int32_t prompts[NP][MAXP], direct[NP][32], graphed[NP][32];
    int32_t lens[NP] = {0};
    make_prompts(29, 0, prompts, lens);
    int cuda = on_cuda();
    for (int t = 0; t < 4; t++) {
        struct zl_engine_stats st;
        g_temperature = t % 2 ? 0.9f : 0.0f;
        g_drain = t >= 2;
        g_no_graphs = 1;
        memset(direct, 0, sizeof direct);
        memset(graphed, 0, sizeof graphed);
        generate(big_sched(), 0, 0, NP, 0, prompts, lens, 20, direct, &st);
        cr_expect_eq(st.graph_steps, 0, "graphs off, yet steps were replayed");
        g_no_graphs = 0;
        generate(big_sched(), 0, 0, NP, 0, prompts, lens, 20, graphed, &st);
        if (cuda)
            cr_expect_gt(st.graph_steps, g_drain ? 6 : 10, "%s: CUDA replayed %lld of %lld steps",
                         g_drain ? "drain" : "one size", (long long)st.graph_steps,
                         (long long)st.n_steps);
        else
            cr_expect_eq(st.graph_steps, 0, "the CPU backend has no graphs");
        for (int i = 0; i < NP; i++)
            cr_expect_arr_eq(graphed[i], direct[i], sizeof(int32_t) * 20,
                             "temperature %.1f%s prompt %d: graphs changed the tokens",
                             (double)g_temperature, g_drain ? " drain" : "", i);
    }
    g_temperature = 0.0f;
    g_drain = 0;
}

/* Async scheduling changes no token: each step queued before the last
 * one's tokens are back, with device graphs off and on, against each step
 * waiting (graphs off).  Greedy and seeded; all together, chunked
 * prefill, prefix hits and preemption, where sequences wait, come back
 * and read a token still being sampled; and a draining batch (sequences
 * ending every step).  On CUDA the async runs must have overlapped steps
 * (and replayed graphs); the CPU backend has no device sampler, so none. */
Test(engine_llama, async_scheduling_changes_no_token)
{
    static int32_t prompts[NP][MAXP], waited[NP][32], queued[NP][32], graphed[NP][32];
    int32_t lens[NP] = {0};
    make_prompts(31, 1, prompts, lens);
    int cuda = on_cuda();
    struct {
        const char *name;
        int32_t chunk, kv_blocks, prefix, warm, drain;
    } cfg[] = {
        {"together", 0, 0, 0, 0, 0}, {"chunk 7", 7, 0, 0, 0, 0}, {"prefix hits", 0, 0, 1, 1, 0},
        {"preemption", 0, 14, 1, 0, 0}, {"drain", 0, 0, 0, 0, 1},
    };
    g_no_graphs = 1;
    for (int t = 0; t < 2; t++)
        for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
            struct zl_sched_params s = big_sched();
            s.max_prefill_chunk = cfg[c].chunk;
            s.enable_prefix_caching = cfg[c].prefix;
            struct zl_engine_stats st;
            g_temperature = t ? 0.9f : 0.0f;
            g_drain = cfg[c].drain;
            memset(waited, 0, sizeof waited);
            memset(queued, 0, sizeof queued);
            g_no_async = 1;
            generate(s, cfg[c].kv_blocks, cfg[c].warm, NP, 0, prompts, lens, 20, waited, &st);
            cr_expect_eq(st.async_steps, 0, "%s: async off, yet steps overlapped", cfg[c].name);
            g_no_async = 0;
            generate(s, cfg[c].kv_blocks, cfg[c].warm, NP, 0, prompts, lens, 20, queued, &st);
            if (cuda)
                cr_expect_gt(st.async_steps, 10, "%s: %lld of %lld steps overlapped", cfg[c].name,
                             (long long)st.async_steps, (long long)st.n_steps);
            else
                cr_expect_eq(st.async_steps, 0, "the CPU backend has no device sampler");
            if (cfg[c].kv_blocks)
                cr_expect_gt(st.n_preemptions, 0, "%s: nothing was preempted", cfg[c].name);
            g_no_graphs = 0;
            memset(graphed, 0, sizeof graphed);
            generate(s, cfg[c].kv_blocks, cfg[c].warm, NP, 0, prompts, lens, 20, graphed, &st);
            g_no_graphs = 1;
            if (cuda)
                cr_expect(st.async_steps > 10 && st.graph_steps > 0, "%s with graphs: %lld "
                          "steps overlapped, %lld replayed", cfg[c].name,
                          (long long)st.async_steps, (long long)st.graph_steps);
            for (int i = 0; i < NP; i++) {
                cr_expect_arr_eq(queued[i], waited[i], sizeof(int32_t) * 20,
                                 "temperature %.1f, %s, prompt %d: async scheduling changed the "
                                 "tokens", (double)g_temperature, cfg[c].name, i);
                cr_expect_arr_eq(graphed[i], waited[i], sizeof(int32_t) * 20,
                                 "temperature %.1f, %s, prompt %d: async scheduling with graphs "
                                 "changed the tokens", (double)g_temperature, cfg[c].name, i);
            }
        }
    g_no_graphs = 0;
    g_temperature = 0.0f;
    g_drain = 0;
}
