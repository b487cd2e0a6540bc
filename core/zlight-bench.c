/* zlight-bench --offline: feeds N requests straight into the engine (no
 * HTTP) and reports request and token throughput and the latencies
 * `vllm bench serve` reports (TTFT, TPOT, ITL, E2E: mean, median, p95, p99),
 * measured from the output events.
 *
 *   zlight-bench --offline --model PATH [--dummy] [--num-prompts 64]
 *                [--input-len 128] [--output-len 64] [--range-ratio 0]
 *
 * Prompts are random token ids (seeded); EOS is ignored so every request
 * generates exactly its output length. */
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

#include "bench-http.h"
#include "cli-parse.h"

struct opts {
    int offline, quiet;
    long n_prompts, in_len, out_len, seed, max_seqs, max_tokens, chunk, block_size, threads;
    double range, temperature, mem_util;
    long kv_tokens;
    int no_prefix;
    struct zl_engine_model_params mp;
};

struct req_times {
    double t_submit, t_first, t_last;
    int32_t in_len, out_len, got;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: zlight-bench --offline --model PATH [options]\n"
               "       zlight-bench [--base-url URL ...]  (HTTP load generator; see --help without --offline)\n"
               "  --model PATH             HF directory or .gguf (with --dummy: a directory with config.json)\n"
               "  --dummy                  random weights from config.json\n"
               "  --backend NAME           compute backend (default cpu)\n"
               "  --dtype T                weights dtype f32|f16|bf16 (default: the checkpoint's)\n"
               "  --threads N              backend threads (default: one per core)\n"
               "  --num-prompts N          requests (default 64)\n"
               "  --input-len N            prompt tokens (default 128)\n"
               "  --output-len N           generated tokens per request (default 64)\n"
               "  --range-ratio R          lengths uniform in [L(1-R), L(1+R)] (default 0: fixed)\n"
               "  --seed S                 prompt RNG seed (default 0)\n"
               "  --max-num-seqs N         (default 256)\n"
               "  --max-num-batched-tokens N (default 2048)\n"
               "  --max-prefill-chunk N    (default 0 = the budget)\n"
               "  --block-size N           KV block tokens (default 16)\n"
               "  --no-prefix-caching\n"
               "  --temperature T          (default 0 = greedy)\n"
               "  --kv-tokens N            KV budget in tokens (default 65536)\n"
               "  --gpu-memory-utilization U  reserve this share of the device instead (0..1]\n"
               "  --quiet                  only the report\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"offline", no_argument, NULL, 'O'}, {"model", required_argument, NULL, 'm'},
        {"dummy", no_argument, NULL, 'D'}, {"backend", required_argument, NULL, 'b'},
        {"dtype", required_argument, NULL, 't'}, {"threads", required_argument, NULL, 'T'},
        {"num-prompts", required_argument, NULL, 'n'}, {"input-len", required_argument, NULL, 'i'},
        {"output-len", required_argument, NULL, 'o'}, {"range-ratio", required_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 's'}, {"max-num-seqs", required_argument, NULL, 'S'},
        {"max-num-batched-tokens", required_argument, NULL, 'B'},
        {"max-prefill-chunk", required_argument, NULL, 'C'}, {"block-size", required_argument, NULL, 'k'},
        {"no-prefix-caching", no_argument, NULL, 'P'}, {"temperature", required_argument, NULL, 'E'},
        {"kv-tokens", required_argument, NULL, 'V'}, {"gpu-memory-utilization", required_argument, NULL, 'U'},
        {"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    struct { int c; long *dst; double lo, hi; const char *name; } ints[] = {
        {'T', &o->threads, 0, 1024, "--threads"}, {'n', &o->n_prompts, 1, 1 << 20, "--num-prompts"},
        {'i', &o->in_len, 1, 1 << 20, "--input-len"}, {'o', &o->out_len, 1, 1 << 20, "--output-len"},
        {'s', &o->seed, 0, 1e9, "--seed"}, {'S', &o->max_seqs, 1, 1 << 16, "--max-num-seqs"},
        {'B', &o->max_tokens, 1, 1 << 24, "--max-num-batched-tokens"},
        {'C', &o->chunk, 0, 1 << 24, "--max-prefill-chunk"}, {'k', &o->block_size, 1, 1024, "--block-size"},
        {'V', &o->kv_tokens, 1, 1e12, "--kv-tokens"},
    };
    int c, rc = ZL_OK;
    double d;
    while (rc == ZL_OK && (c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        size_t k = 0;
        while (k < sizeof(ints) / sizeof(ints[0]) && ints[k].c != c)
            k++;
        if (k < sizeof(ints) / sizeof(ints[0])) {
            if ((rc = cli_parse_double(ints[k].name, optarg, ints[k].lo, ints[k].hi, &d)) == ZL_OK)
                *ints[k].dst = (long)d;
            continue;
        }
        switch (c) {
        case 'O': o->offline = 1; break;
        case 'm': o->mp.model_path = optarg; break;
        case 'D': o->mp.dummy = 1; break;
        case 'b': o->mp.backend = optarg; break;
        case 't': rc = zl_dtype_parse(optarg, &o->mp.dtype); break;
        case 'r': rc = cli_parse_double("--range-ratio", optarg, 0, 0.99, &o->range); break;
        case 'P': o->no_prefix = 1; break;
        case 'E': rc = cli_parse_double("--temperature", optarg, 0, 100, &o->temperature); break;
        case 'U': rc = cli_parse_double("--gpu-memory-utilization", optarg, 0.01, 1, &o->mem_util); break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        default: return zl_error(ZL_EINVAL, "unknown option (see --help)");
        }
    }
    if (rc == ZL_OK && optind < argc)
        rc = zl_error(ZL_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (rc == ZL_OK && !o->mp.model_path)
        rc = zl_error(ZL_EINVAL, "--model is required");
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* mean, median, p95, p99 of v[n] (sorted in place), in milliseconds */
static void report(const char *name, double *v, size_t n)
{
    if (n == 0) {
        printf("%-5s (ms)  n/a\n", name);
        return;
    }
    qsort(v, n, sizeof(double), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    printf("%-5s (ms)  mean %9.2f  median %9.2f  p95 %9.2f  p99 %9.2f\n", name, 1e3 * sum / (double)n,
           1e3 * v[n / 2], 1e3 * v[(size_t)(0.95 * (double)(n - 1))], 1e3 * v[(size_t)(0.99 * (double)(n - 1))]);
}

static int32_t rand_len(unsigned *rng, long len, double range)
{
    if (range <= 0)
        return (int32_t)len;
    long lo = (long)((double)len * (1 - range)), hi = (long)((double)len * (1 + range));
    lo = lo < 1 ? 1 : lo;
    return (int32_t)(lo + rand_r(rng) % (hi - lo + 1));
}

static int run(struct opts *o)
{
    struct zl_engine_params ep = zl_engine_default_params();
    ep.block_size = (int32_t)o->block_size;
    ep.sched.max_num_seqs = (int32_t)o->max_seqs;
    ep.sched.max_num_batched_tokens = (int32_t)o->max_tokens;
    ep.sched.max_prefill_chunk = (int32_t)o->chunk;
    ep.sched.enable_prefix_caching = !o->no_prefix;
    o->mp.threads = (int32_t)o->threads;
    o->mp.kv_tokens = o->kv_tokens;
    o->mp.memory_utilization = o->mem_util;
    struct zl_engine_model *m;
    int rc = zl_engine_model_open(&o->mp, &ep.sched, &m);
    if (rc < 0)
        return rc;
    zl_engine_model_fill(m, &ep);
    int32_t vocab = (int32_t)zl_engine_model_config(m)->vocab_size;
    long n = o->n_prompts;
    struct req_times *rt = calloc((size_t)n, sizeof(*rt));
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(o->in_len * 2 + 2));
    double *itl = malloc(sizeof(double) * (size_t)(n * (o->out_len * 2 + 2)));
    double *tmp = malloc(sizeof(double) * (size_t)n);
    struct zl_engine *e = NULL;
    if (!rt || !prompt || !itl || !tmp)
        rc = zl_error(ZL_ENOMEM, "out of memory");
    if (rc == ZL_OK)
        rc = zl_engine_create(&ep, &e);
    unsigned rng = (unsigned)o->seed;
    uint64_t first = 0;
    int64_t in_total = 0, out_total = 0;
    double t0 = now_s();
    for (long i = 0; rc == ZL_OK && i < n; i++) {
        rt[i].in_len = rand_len(&rng, o->in_len, o->range);
        rt[i].out_len = rand_len(&rng, o->out_len, o->range);
        if (rt[i].in_len >= ep.sched.max_model_len)
            rt[i].in_len = ep.sched.max_model_len - 1;
        for (int32_t j = 0; j < rt[i].in_len; j++)
            prompt[j] = (int32_t)(rand_r(&rng) % (unsigned)vocab);
        struct zl_sampling_params sp = zl_sampling_default_params();
        sp.temperature = (float)o->temperature;
        sp.max_tokens = rt[i].out_len;
        sp.ignore_eos = 1;
        uint64_t id;
        rt[i].t_submit = now_s();
        rc = zl_engine_submit(e, prompt, rt[i].in_len, &sp, NULL, &id);
        if (i == 0)
            first = id;
        in_total += rt[i].in_len;
    }
    size_t n_itl = 0;
    for (long left = n; rc == ZL_OK && left > 0;) {
        struct zl_output ev;
        if (zl_engine_wait(e, &ev, -1) != 1) {
            rc = zl_error(ZL_ESTATE, "the engine stopped with %ld requests unfinished", left);
            break;
        }
        struct req_times *r = &rt[ev.request_id - first];
        double t = now_s();
        if (ev.n_tokens) {
            if (r->got++ == 0)
                r->t_first = t;
            else
                itl[n_itl++] = t - r->t_last;
            r->t_last = t;
            out_total++;
        }
        if (ev.finish == ZL_FINISH_ABORT)
            rc = zl_error(ZL_EBACKEND, "request %llu aborted", (unsigned long long)ev.request_id);
        left -= ev.finish != ZL_FINISH_NONE;
        zl_output_release(&ev);
    }
    double wall = now_s() - t0;
    if (rc == ZL_OK) {
        struct zl_engine_stats st;
        zl_engine_get_stats(e, &st);
        printf("requests %ld, input %lld tokens, output %lld tokens, %.3f s\n", n, (long long)in_total,
               (long long)out_total, wall);
        printf("throughput: %.2f req/s, %.1f output tok/s, %.1f total tok/s\n", (double)n / wall,
               (double)out_total / wall, (double)(in_total + out_total) / wall);
        printf("steps %lld, preemptions %lld, prefix cache hit rate %.1f%%, KV blocks %d\n",
               (long long)st.n_steps, (long long)st.n_preemptions, 100 * st.prefix_hit_rate,
               st.kv_blocks_total);
        for (long i = 0; i < n; i++)
            tmp[i] = rt[i].t_first - rt[i].t_submit;
        report("TTFT", tmp, (size_t)n);
        size_t k = 0;
        for (long i = 0; i < n; i++)
            if (rt[i].got > 1)
                tmp[k++] = (rt[i].t_last - rt[i].t_first) / (rt[i].got - 1);
        report("TPOT", tmp, k);
        report("ITL", itl, n_itl);
        for (long i = 0; i < n; i++)
            tmp[i] = rt[i].t_last - rt[i].t_submit;
        report("E2E", tmp, (size_t)n);
    }
    zl_engine_free(e);
    zl_engine_model_free(m);
    free(rt);
    free(prompt);
    free(itl);
    free(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    /* Without --offline it is the HTTP load generator (bench-http.c). */
    int offline = 0;
    for (int i = 1; i < argc; i++)
        offline |= strcmp(argv[i], "--offline") == 0;
    if (!offline)
        return zl_bench_http_main(argc, argv);

    struct opts o = {
        .n_prompts = 64, .in_len = 128, .out_len = 64, .max_seqs = 256, .max_tokens = 2048,
        .block_size = 16, .kv_tokens = 65536,
    };
    o.mp = zl_engine_model_default_params();
    int rc = parse_opts(argc, argv, &o);
    if (rc < 0) {
        fprintf(stderr, "zlight-bench: %s\n", zl_last_error());
        return 2;
    }
    if (o.quiet)
        zl_log_set_level(ZL_LOG_WARN);
    if (run(&o) < 0) {
        fprintf(stderr, "zlight-bench: %s\n", zl_last_error());
        return 1;
    }
    return 0;
}
