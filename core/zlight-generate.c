/* zlight-generate: offline generation from token ids through the engine.
 *
 *   zlight-generate --model PATH [--backend cpu] [--max-tokens N]
 *                   [--ids "1 2 3" | --prompts FILE]
 *                   [--temperature T] [--top-p P] [--top-k K] [--seed S] [--cpu-sampling]
 *                   [--warmup] [--no-graphs] [--no-async] [--no-late] [--max-batched-tokens N]
 *
 * PATH is an HF directory or a .gguf file.  All prompts are submitted to
 * the engine at once and run concurrently (continuous batching); decoding
 * is greedy unless --temperature > 0 and ignores EOS, so each prompt gets
 * exactly N ids.  stdout: the generated ids of each prompt on one line, in
 * input order; stderr: logs and timing. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/engine.h>
#include <zlight/hf_config.h>
#include <zlight/log.h>
#include <zlight/status.h>

#include "cli-parse.h"

struct prompts {
    int n, cap;
    int32_t **ids;
    int32_t *lens;
};

static int g_cpu_sampling;   /* --cpu-sampling */
static int g_graphs = 1;    /* --no-graphs: 0 (zlightd's backend.cuda_graphs) */
static int g_no_async;      /* --no-async */
static int g_late = 1;      /* --no-late: 0 (zlightd's engine.late_scheduling) */
static int g_warmup;         /* --warmup */
static long g_batched = 2048; /* --max-batched-tokens */

/* When the outputs came: the last first token ends prefill; from there to
 * the first finish every prompt decodes in every step (the steady state),
 * timed between two tokens of the prompt that started last. */
struct timing {
    double t0, prefill;         /* submit; the last first token */
    int last;                   /* the prompt whose first token came last */
    int started;                /* prompts with a first token */
    double steady_end;          /* its newest token before the first finish */
    int steady_steps;           /* its tokens between the two, -1 before a finish */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: zlight-generate --model PATH [--backend NAME] [--max-tokens N]\n"
               "                       [--ids \"1 2 3\" | --prompts FILE]\n"
               "  --model PATH      Hugging Face directory (config.json + safetensors) or .gguf file\n"
               "  --backend NAME    compute backend (default cpu; auto = the best)\n"
               "  --max-tokens N    tokens to generate per prompt (default 32)\n"
               "  --ids \"I I ...\"   one prompt as space-separated token ids\n"
               "  --prompts FILE    one prompt per line (space-separated ids), batched together\n"
               "  --dummy           random weights from config.json (benchmarks)\n"
               "  --dtype T         weights dtype f32|f16|bf16 (default: the checkpoint's)\n"
               "  --threads N       backend threads (default: one per core)\n"
               "  --temperature T   sampling temperature (default 0 = greedy)\n"
               "  --top-p P         nucleus sampling (default 1 = off)\n"
               "  --top-k K         top-k sampling (default 0 = off)\n"
               "  --seed S          sampling seed; prompt i uses S + i (default 0)\n"
               "  --cpu-sampling    sample on the CPU even when the backend samples on its device\n"
               "  --no-graphs       no device graphs (CUDA graphs replay decode steps by default)\n"
               "  --graphs          device graphs on (the default; kept for old scripts)\n"
               "  --no-async        wait for each step's tokens before queueing the next\n"
               "  --no-late         queue each step as the one before starts (late scheduling,\n"
               "                    engine.late_scheduling, is on by default)\n"
               "  --late            late scheduling on (the default; kept for old scripts)\n"
               "  --warmup          run one untimed greedy request as long as the first prompt first\n"
               "  --max-batched-tokens N  tokens per engine step, prompt chunks included (default 2048)\n"
               "  --quiet           no timing or info logs on stderr\n");
}

static void prompts_free(struct prompts *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->ids[i]);
    free(p->ids);
    free(p->lens);
}

/* Parses one line of ids into a new prompt; ZL_EINVAL naming `where`. */
static int prompts_add(struct prompts *p, const char *line, const char *where)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        int32_t **ids = realloc(p->ids, (size_t)cap * sizeof *ids);
        int32_t *lens = ids ? realloc(p->lens, (size_t)cap * sizeof *lens) : NULL;
        if (ids)
            p->ids = ids;
        if (!lens)
            return zl_error(ZL_ENOMEM, "out of memory");
        p->lens = lens;
        p->cap = cap;
    }
    size_t cap = strlen(line) / 2 + 1;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return zl_error(ZL_ENOMEM, "out of memory");
    int32_t n = 0;
    const char *s = line;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')) {
            int len = 0;
            while (s[len] && s[len] != ' ' && s[len] != '\t' && s[len] != '\n' && len < 40)
                len++;
            free(ids);
            return zl_error(ZL_EINVAL, "%s: '%.*s' is not a token id (a non-negative integer)", where,
                            len, s);
        }
        ids[n++] = (int32_t)v;
        s = end;
    }
    if (n == 0) {
        free(ids);
        return zl_error(ZL_EINVAL, "%s: empty prompt", where);
    }
    p->ids[p->n] = ids;
    p->lens[p->n++] = n;
    return ZL_OK;
}

static int read_prompts(struct prompts *p, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return zl_error(errno == ENOENT ? ZL_ENOTFOUND : ZL_EIO, "%s: %s", file, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int rc = ZL_OK, lineno = 0;
    while (rc == ZL_OK && getline(&line, &cap, f) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue; /* blank lines separate nothing */
        char where[512];
        snprintf(where, sizeof where, "%s:%d", file, lineno);
        rc = prompts_add(p, line, where);
    }
    free(line);
    fclose(f);
    if (rc == ZL_OK && p->n == 0)
        rc = zl_error(ZL_EINVAL, "%s: no prompts", file);
    return rc;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return zl_error(ZL_EINVAL, "%s: '%s' is not an integer in %ld..%ld", opt, s, lo, hi);
    *out = v;
    return ZL_OK;
}

static int print_results(const struct prompts *p, int32_t **out, int32_t max_new)
{
    for (int i = 0; i < p->n; i++) {
        for (int32_t j = 0; j < max_new; j++)
            printf(j ? " %d" : "%d", (int)out[i][j]);
        putchar('\n');
    }
    return fflush(stdout) == 0 ? ZL_OK : zl_error(ZL_EIO, "stdout: %s", strerror(errno));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits for every prompt's ids; out[k] gets them in order. */
static int collect(struct zl_engine *e, uint64_t first, int n, int32_t **out, int32_t max_new,
                   struct timing *tm)
{
    int left = n;
    int32_t *got = calloc((size_t)n, sizeof *got);
    if (!got)
        return zl_error(ZL_ENOMEM, "out of memory");
    double last_tok = 0;
    tm->steady_steps = -1;
    tm->started = 0;
    while (left > 0) {
        struct zl_output o;
        if (zl_engine_wait(e, &o, -1) != 1) {
            free(got);
            return zl_error(ZL_ESTATE, "the engine stopped with %d prompts unfinished", left);
        }
        int k = (int)(o.request_id - first);
        if (o.n_tokens && got[k] < max_new) {
            out[k][got[k]++] = o.token;
            double t = now_s() - tm->t0;
            if (got[k] == 1)
                tm->prefill = t, tm->last = k, tm->started++;
            if (k == tm->last)
                last_tok = t;
        }
        if (o.finish == ZL_FINISH_ABORT) {
            zl_output_release(&o);
            free(got);
            return zl_error(ZL_EBACKEND, "prompt %d was aborted (see the log)", k + 1);
        }
        if (o.finish != ZL_FINISH_NONE && tm->steady_steps < 0) {
            /* a prompt that ends before the last one starts leaves no steady window */
            tm->steady_end = last_tok;
            tm->steady_steps = tm->started == n ? got[tm->last] - 1 : 0;
        }
        left -= o.finish != ZL_FINISH_NONE;
        zl_output_release(&o);
    }
    free(got);
    return ZL_OK;
}

/* The checks and messages of the CLI contract, before any request runs. */
static int check_prompts(const struct zl_hf_config *c, const struct prompts *p, int32_t max_new)
{
    for (int s = 0; s < p->n; s++) {
        if (p->lens[s] > c->max_position_embeddings)
            return zl_error(ZL_ERANGE, "prompt %d has %d tokens, more than max_position_embeddings %lld",
                            s + 1, (int)p->lens[s], (long long)c->max_position_embeddings);
        for (int32_t i = 0; i < p->lens[s]; i++)
            if (p->ids[s][i] >= c->vocab_size)
                return zl_error(ZL_ERANGE, "prompt %d: token id %d is outside the vocabulary (0..%lld)",
                                s + 1, (int)p->ids[s][i], (long long)c->vocab_size - 1);
        if (p->lens[s] + max_new > c->max_position_embeddings)
            ZL_WARN("generate", "prompt %d: %d + %d tokens pass max_position_embeddings %lld", s + 1,
                    (int)p->lens[s], (int)max_new, (long long)c->max_position_embeddings);
    }
    return ZL_OK;
}

static int generate(struct zl_engine_model_params *mp, const struct zl_sampling_params *sp,
                    const struct prompts *p, int32_t **out, int32_t max_new, int quiet)
{
    struct zl_engine_params ep = zl_engine_default_params();
    ep.sched.max_num_batched_tokens = (int32_t)g_batched;
    ep.device_sampling = !g_cpu_sampling;
    ep.device_graphs = g_graphs;
    ep.async_scheduling = !g_no_async;
    ep.late_scheduling = g_late;
    /* Steps run on this thread inside zl_engine_wait, so every prompt is
     * queued before the first step: an engine thread could start prompt 1
     * alone while the others are still being submitted. */
    ep.threaded = 0;
    int32_t longest = 0;
    int64_t prompt_tokens = 0;
    for (int i = 0; i < p->n; i++) {
        longest = p->lens[i] > longest ? p->lens[i] : longest;
        prompt_tokens += p->lens[i];
    }
    /* room for every prompt at once (no preemption in a benchmark run),
     * and no more: a host backend commits its KV pool at start, and 65536
     * tokens of it (the old floor) took ~3 s of a short run */
    int64_t all = prompt_tokens + (int64_t)p->n * (max_new + 32);
    mp->kv_tokens = 2 * ((int64_t)longest + max_new);
    mp->kv_tokens = all > mp->kv_tokens ? all : mp->kv_tokens;
    struct zl_engine_model *m;
    int rc = zl_engine_model_open(mp, &ep.sched, &m);
    if (rc < 0)
        return rc;
    zl_engine_model_fill(m, &ep);
    if ((rc = check_prompts(zl_engine_model_config(m), p, max_new)) < 0 || max_new == 0) {
        zl_engine_model_free(m);
        return rc;
    }
    ep.sched.max_model_len = longest + max_new + 1;   /* exactly max_new ids per prompt */
    /* --warmup: the engine's warm-up, a greedy request as long as prompt 0
     * (random ids, so the prefix cache cannot serve the timed one): kernels
     * load and GEMM plans are made before the clock starts, and the
     * counters below leave it out */
    ep.warmup_tokens = g_warmup ? p->lens[0] : 0;
    struct zl_engine *e = NULL;
    if ((rc = zl_engine_create(&ep, &e)) < 0) {
        zl_engine_model_free(m);
        return rc;
    }
    struct zl_engine_stats st;
    struct timing tm = {.t0 = now_s()};
    uint64_t first = 0, id;
    for (int i = 0; i < p->n && rc == ZL_OK; i++) {
        struct zl_sampling_params s = *sp;
        s.seed = sp->seed + (uint64_t)i;
        if ((rc = zl_engine_submit(e, p->ids[i], p->lens[i], &s, NULL, &id)) < 0)
            zl_error_wrap(rc, "prompt %d", i + 1);
        if (i == 0)
            first = id;
    }
    if (rc == ZL_OK)
        rc = collect(e, first, p->n, out, max_new, &tm);
    double t_all = now_s() - tm.t0, t_prefill = tm.prefill;
    zl_engine_get_stats(e, &st);
    zl_engine_free(e);
    zl_engine_model_free(m);
    if (rc == ZL_OK && !quiet) {
        double t_dec = t_all - t_prefill;
        long long dec = (long long)st.generation_tokens - p->n;
        fprintf(stderr,
                "prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s "
                "(%.2f tok/s, %d sequences); %lld preemptions, prefix cache hit rate %.1f%%, "
                "%lld of %lld steps replayed as device graphs, %lld queued ahead of their "
                "tokens (async scheduling)\n",
                (long long)prompt_tokens, t_prefill, t_prefill > 0 ? (double)prompt_tokens / t_prefill : 0.0,
                dec, t_dec, t_dec > 0 ? (double)dec / t_dec : 0.0, p->n, (long long)st.n_preemptions,
                100.0 * st.prefix_hit_rate, (long long)st.graph_steps, (long long)st.n_steps,
                (long long)st.async_steps);
        if (tm.steady_steps > 0)
            fprintf(stderr, "steady decode: %d steps with all %d sequences, %.3f ms/step\n",
                    tm.steady_steps, p->n, 1e3 * (tm.steady_end - tm.prefill) / tm.steady_steps);
    }
    return rc;
}

static int run(struct zl_engine_model_params *mp, const struct zl_sampling_params *sp,
               const struct prompts *p, int32_t max_new, int quiet)
{
    int rc = ZL_OK;
    int32_t **out = calloc((size_t)p->n, sizeof *out);
    for (int i = 0; out && i < p->n; i++)
        if (!(out[i] = calloc((size_t)max_new + 1, sizeof **out)))
            rc = zl_error(ZL_ENOMEM, "out of memory");
    if (!out)
        rc = zl_error(ZL_ENOMEM, "out of memory");
    if (rc == ZL_OK)
        rc = generate(mp, sp, p, out, max_new, quiet);
    if (rc == ZL_OK)
        rc = print_results(p, out, max_new);
    for (int i = 0; out && i < p->n; i++)
        free(out[i]);
    free(out);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},   {"backend", required_argument, NULL, 'b'},
        {"max-tokens", required_argument, NULL, 'n'}, {"ids", required_argument, NULL, 'i'},
        {"prompts", required_argument, NULL, 'p'}, {"dummy", no_argument, NULL, 'D'},
        {"dtype", required_argument, NULL, 't'},   {"threads", required_argument, NULL, 'T'},
        {"quiet", no_argument, NULL, 'q'},         {"help", no_argument, NULL, 'h'},
        {"temperature", required_argument, NULL, 'E'}, {"top-p", required_argument, NULL, 'P'},
        {"top-k", required_argument, NULL, 'K'},   {"seed", required_argument, NULL, 'S'},
        {"cpu-sampling", no_argument, NULL, 'C'}, {"warmup", no_argument, NULL, 'W'},
        {"graphs", no_argument, NULL, 'G'}, {"max-batched-tokens", required_argument, NULL, 'B'},
        {"no-async", no_argument, NULL, 'A'},      {"no-graphs", no_argument, NULL, 'g'},
        {"late", no_argument, NULL, 'L'},     {"no-late", no_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    struct zl_engine_model_params sp = zl_engine_model_default_params();
    struct zl_sampling_params samp = zl_sampling_default_params();
    samp.temperature = 0;
    samp.ignore_eos = 1;
    samp.has_seed = 1;
    const char *ids = NULL, *file = NULL;
    long max_new = 32, v;
    double d;
    int c, quiet = 0, rc = ZL_OK;
    while (rc == ZL_OK && (c = getopt_long(argc, argv, "m:b:n:i:p:Dt:T:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': sp.model_path = optarg; break;
        case 'b': sp.backend = optarg; break;
        case 'n': rc = parse_int("--max-tokens", optarg, 0, 1 << 20, &max_new); break;
        case 'i': ids = optarg; break;
        case 'p': file = optarg; break;
        case 'D': sp.dummy = 1; break;
        case 't': rc = zl_dtype_parse(optarg, &sp.dtype); break;
        case 'T': rc = parse_int("--threads", optarg, 0, 1024, &v); sp.threads = (int)v; break;
        case 'q': quiet = 1; break;
        case 'E': rc = cli_parse_double("--temperature", optarg, 0, 100, &d); samp.temperature = (float)d; break;
        case 'P': rc = cli_parse_double("--top-p", optarg, 1e-6, 1, &d); samp.top_p = (float)d; break;
        case 'K': rc = parse_int("--top-k", optarg, 0, 1 << 30, &v); samp.top_k = (int32_t)v; break;
        case 'S': rc = parse_int("--seed", optarg, 0, 0x7fffffffL, &v); samp.seed = (uint64_t)v; break;
        case 'C': g_cpu_sampling = 1; break;
        case 'G': g_graphs = 1; break;
        case 'g': g_graphs = 0; break;
        case 'L': g_late = 1; break;
        case 'l': g_late = 0; break;
        case 'A': g_no_async = 1; break;
        case 'W': g_warmup = 1; break;
        case 'B': rc = parse_int("--max-batched-tokens", optarg, 16, 1 << 20, &g_batched); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (rc < 0) {
        fprintf(stderr, "zlight-generate: %s\n", zl_last_error());
        return 2;
    }
    if (optind < argc || !sp.model_path || (!ids == !file)) {
        fprintf(stderr, "zlight-generate: %s\n",
                optind < argc ? "unexpected argument" : !sp.model_path ? "--model is required"
                                                                      : "give exactly one of --ids and --prompts");
        usage(stderr);
        return 2;
    }
    if (quiet)
        zl_log_set_level(ZL_LOG_WARN);
    struct prompts p = {0};
    rc = ids ? prompts_add(&p, ids, "--ids") : read_prompts(&p, file);
    if (rc == ZL_OK) {
        samp.max_tokens = (int32_t)max_new;
        rc = run(&sp, &samp, &p, (int32_t)max_new, quiet);
    }
    prompts_free(&p);
    if (rc < 0) {
        fprintf(stderr, "zlight-generate: %s\n", zl_last_error());
        return 1;
    }
    return 0;
}
