/* zlight-bench HTTP mode: a load generator like `vllm bench serve`.  One
 * thread per request in flight (bounded by --max-concurrency) over plain
 * HTTP/1.0 sockets, so the SSE stream arrives unchunked and ends at close;
 * arrivals follow a gamma process (Poisson at burstiness 1). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench-http.h"
#include "cli-parse.h"

struct bopts {
    char host[256], port[16];
    const char *endpoint, *model, *dataset, *result_file, *api_key;
    long n, in_len, out_len, seed, max_conc;
    double range, rate, burst, temperature;
    double slo_ttft, slo_tpot, slo_e2el;    /* ms, 0 = none */
    int ignore_eos, chat;
};

struct breq {
    char *body;
    int in_len, out_len;                    /* asked */
    double t_start, t_first, t_end;
    double *itl;                            /* [n_itl] */
    int n_itl, cap_itl;
    int out_tokens, prompt_tokens, ok;
    char err[160];
};

struct bench {
    struct bopts o;
    struct breq *reqs;
    sem_t slots;
    pthread_mutex_t mu;
    long done, failed;
    int tty;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform in [0, 1) from a splitmix64 state. */
static double urand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

/* Gamma(shape k, scale theta) by Marsaglia-Tsang (k < 1 boosted). */
static double gamma_draw(uint64_t *s, double k, double theta)
{
    if (k < 1)
        return gamma_draw(s, k + 1, theta) * pow(urand(s) + 1e-300, 1 / k);
    double d = k - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double u1 = urand(s) + 1e-300, u2 = urand(s);
        double x = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2), v = 1 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = urand(s) + 1e-300;
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v * theta;
    }
}

static int rand_len(uint64_t *s, long len, double range)
{
    long lo = (long)((double)len * (1 - range)), hi = (long)((double)len * (1 + range));
    lo = lo < 1 ? 1 : lo;
    return (int)(lo + (long)(urand(s) * (double)(hi - lo + 1)));
}

static const char *const words[] = {"time", "river", "light", "stone", "garden", "music", "paper",
                                    "window", "silver", "forest", "engine", "story", "cloud",
                                    "market", "winter", "bridge"};

/* The request body: random token ids (completions) or words (chat). */
static char *make_body(const struct bopts *o, uint64_t *s, const char *text, int in_len, int out_len)
{
    json_t *b = json_pack("{s:s,s:i,s:b,s:{s:b},s:f,s:b}", "model", o->model, "max_tokens", out_len,
                          "stream", 1, "stream_options", "include_usage", 1, "temperature",
                          o->temperature, "ignore_eos", o->ignore_eos);
    json_t *p;
    if (text) {
        p = json_string(text);
    } else if (!o->chat) {
        p = json_array();
        for (int i = 0; i < in_len; i++)
            json_array_append_new(p, json_integer(1000 + (json_int_t)(urand(s) * 19000)));
    } else {
        size_t cap = (size_t)in_len * 8 + 1, k = 0;
        char *t = malloc(cap);
        for (int i = 0; t && i < in_len; i++)
            k += (size_t)snprintf(t + k, cap - k, "%s%s", i ? " " : "", words[(int)(urand(s) * 16)]);
        p = json_string(t ? t : "");
        free(t);
    }
    if (o->chat)
        json_object_set_new(b, "messages", json_pack("[{s:s,s:o}]", "role", "user", "content", p));
    else
        json_object_set_new(b, "prompt", p);
    char *out = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    return out;
}

/* ShareGPT format: [{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}].
 * Output lengths come from the reply (about 4 characters a token). */
static int load_sharegpt(struct bench *b, uint64_t *s)
{
    json_error_t je;
    json_t *root = json_load_file(b->o.dataset, 0, &je);
    if (!json_is_array(root)) {
        fprintf(stderr, "zlight-bench: %s: %s\n", b->o.dataset, root ? "not a JSON array" : je.text);
        json_decref(root);
        return -1;
    }
    long k = 0;
    for (size_t i = 0; i < json_array_size(root) && k < b->o.n; i++) {
        json_t *conv = json_object_get(json_array_get(root, i), "conversations");
        const char *q = json_string_value(json_object_get(json_array_get(conv, 0), "value"));
        const char *a = json_string_value(json_object_get(json_array_get(conv, 1), "value"));
        if (!q || !a || !*q)
            continue;
        int out = b->o.out_len > 0 ? (int)b->o.out_len : (int)(strlen(a) / 4) + 1;
        b->reqs[k].in_len = (int)(strlen(q) / 4) + 1;
        b->reqs[k].out_len = out;
        b->reqs[k++].body = make_body(&b->o, s, q, 0, out);
    }
    json_decref(root);
    if (k < b->o.n)
        fprintf(stderr, "zlight-bench: %s holds %ld usable conversations\n", b->o.dataset, k);
    b->o.n = k;
    return k > 0 ? 0 : -1;
}

static int dial(const struct bopts *o)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(o->host, o->port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void add_itl(struct breq *r, double v)
{
    if (r->n_itl == r->cap_itl) {
        int cap = r->cap_itl ? r->cap_itl * 2 : 64;
        double *p = realloc(r->itl, (size_t)cap * sizeof *p);
        if (!p)
            return;
        r->itl = p;
        r->cap_itl = cap;
    }
    r->itl[r->n_itl++] = v;
}

/* One SSE payload; returns 1 at [DONE]. */
static int on_event(struct breq *r, const char *data, double t, double *t_last)
{
    if (!strcmp(data, "[DONE]"))
        return 1;
    json_t *j = json_loads(data, 0, NULL);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0), *u = json_object_get(j, "usage");
    const char *text = json_string_value(json_object_get(ch, "text"));
    if (!text)
        text = json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
    if (text && *text) {
        if (r->t_first == 0)
            r->t_first = t;
        else
            add_itl(r, t - *t_last);
        *t_last = t;
    }
    if (json_is_object(u)) {
        r->out_tokens = (int)json_integer_value(json_object_get(u, "completion_tokens"));
        r->prompt_tokens = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
    }
    if (json_object_get(j, "error"))
        snprintf(r->err, sizeof r->err, "%.150s", data);
    json_decref(j);
    return 0;
}

static void run_one(struct bench *b, struct breq *r)
{
    const struct bopts *o = &b->o;
    r->t_start = now_s();
    int fd = dial(o);
    if (fd < 0) {
        snprintf(r->err, sizeof r->err, "connect: %s", strerror(errno));
        return;
    }
    char head[1024];
    size_t blen = strlen(r->body);
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "%s%s%sContent-Length: %zu\r\n\r\n",
                      o->endpoint, o->host, o->api_key ? "Authorization: Bearer " : "",
                      o->api_key ? o->api_key : "", o->api_key ? "\r\n" : "", blen);
    if (write(fd, head, (size_t)hl) != hl || write(fd, r->body, blen) != (ssize_t)blen) {
        snprintf(r->err, sizeof r->err, "send: %s", strerror(errno));
        close(fd);
        return;
    }
    size_t cap = 1 << 16, len = 0, pos = 0;
    char *buf = malloc(cap);
    int status = 0, in_body = 0, finished = 0;
    double t_last = 0;
    ssize_t k;
    while (buf && !finished && (k = read(fd, buf + len, cap - len - 1)) > 0) {
        double t = now_s();
        len += (size_t)k;
        buf[len] = 0;
        if (!in_body) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e)
                goto grow;
            sscanf(buf, "HTTP/1.%*d %d", &status);
            pos = (size_t)(e + 4 - buf);
            in_body = 1;
        }
        for (char *nl; !finished && (nl = strstr(buf + pos, "\n\n"));) {
            *nl = 0;
            if (!strncmp(buf + pos, "data: ", 6))
                finished = on_event(r, buf + pos + 6, t, &t_last);
            pos = (size_t)(nl + 2 - buf);
        }
        memmove(buf, buf + pos, len - pos);   /* keep only the unfinished event */
        len -= pos;
        pos = 0;
    grow:
        if (len + 1 == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p)
                break;
            buf = p;
        }
    }
    r->t_end = now_s();
    if (status != 200 && !r->err[0])
        snprintf(r->err, sizeof r->err, "HTTP %d: %.120s", status, buf ? buf : "");
    else if (!finished && !r->err[0])
        snprintf(r->err, sizeof r->err, "the stream ended without [DONE]");
    r->ok = !r->err[0] && r->t_first > 0;
    if (!r->ok && !r->err[0])
        snprintf(r->err, sizeof r->err, "no tokens");
    free(buf);
    close(fd);
}

struct job {
    struct bench *b;
    struct breq *r;
};

static void progress(struct bench *b)
{
    if (!b->tty)
        return;
    int w = 40, f = (int)(w * b->done / (b->o.n ? b->o.n : 1));
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld%s", f, "########################################", w - f, "",
            b->done, b->o.n, b->done == b->o.n ? "\n" : "");
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    run_one(j->b, j->r);
    pthread_mutex_lock(&j->b->mu);
    j->b->done++;
    j->b->failed += !j->r->ok;
    if (!j->r->ok && j->b->failed <= 3)
        fprintf(stderr, "zlight-bench: request failed: %s\n", j->r->err);
    progress(j->b);
    pthread_mutex_unlock(&j->b->mu);
    sem_post(&j->b->slots);
    free(j);
    return NULL;
}

/* numpy.percentile's linear interpolation over sorted v[n]. */
static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    double x = p / 100 * (double)(n - 1);
    size_t i = (size_t)x;
    return i + 1 < n ? v[i] + (x - (double)i) * (v[i + 1] - v[i]) : v[n - 1];
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints and records mean/median/p95/p99 (ms) of v[n] (sorted here). */
static void stat_block(json_t *res, const char *key, double *v, size_t n)
{
    static const char *const label[4] = {"Mean", "Median", "P95", "P99"};
    static const char *const jkey[4] = {"mean", "median", "p95", "p99"};
    qsort(v, n, sizeof *v, cmp_d);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    double st[4] = {n ? 1e3 * sum / (double)n : 0, 1e3 * pct(v, n, 50), 1e3 * pct(v, n, 95),
                    1e3 * pct(v, n, 99)};
    for (int i = 0; i < 4; i++) {
        char l[64], k[64];
        snprintf(l, sizeof l, "%s %s (ms):", label[i], key);
        printf("%-40s %-10.2f\n", l, st[i]);
        snprintf(k, sizeof k, "%s_%s_ms", jkey[i], key);
        for (char *c = k; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        json_object_set_new(res, k, json_real(st[i]));
    }
}

static void report(struct bench *b, double wall)
{
    long n = b->o.n, ok = 0, good = 0, in_tok = 0, out_tok = 0;
    size_t n_itl = 0;
    for (long i = 0; i < n; i++)
        n_itl += (size_t)b->reqs[i].n_itl;
    double *ttft = calloc((size_t)n + 1, sizeof(double)), *tpot = calloc((size_t)n + 1, sizeof(double)),
           *e2e = calloc((size_t)n + 1, sizeof(double)), *itl = calloc(n_itl + 1, sizeof(double));
    size_t n_tpot = 0, k = 0;
    for (long i = 0; i < n; i++) {
        struct breq *r = &b->reqs[i];
        if (!r->ok)
            continue;
        int out = r->out_tokens ? r->out_tokens : r->n_itl + 1;
        double tp = out > 1 ? (r->t_end - r->t_first) / (out - 1) : 0;
        ttft[ok] = r->t_first - r->t_start;
        e2e[ok] = r->t_end - r->t_start;
        if (out > 1)
            tpot[n_tpot++] = tp;
        memcpy(itl + k, r->itl, (size_t)r->n_itl * sizeof(double));
        k += (size_t)r->n_itl;
        in_tok += r->prompt_tokens ? r->prompt_tokens : r->in_len;
        out_tok += out;
        good += (!b->o.slo_ttft || 1e3 * ttft[ok] <= b->o.slo_ttft) &&
                (!b->o.slo_tpot || 1e3 * tp <= b->o.slo_tpot) &&
                (!b->o.slo_e2el || 1e3 * e2e[ok] <= b->o.slo_e2el);
        ok++;
    }
    json_t *res = json_pack("{s:I,s:I,s:f,s:I,s:I,s:f,s:f,s:f}", "completed", (json_int_t)ok,
                            "failed", (json_int_t)(n - ok), "duration", wall, "total_input_tokens",
                            (json_int_t)in_tok, "total_output_tokens", (json_int_t)out_tok,
                            "request_throughput", ok / wall, "output_throughput", out_tok / wall,
                            "total_token_throughput", (in_tok + out_tok) / wall);
    printf("============ Serving Benchmark Result ============\n");
    printf("%-40s %-10ld\n%-40s %-10ld\n", "Successful requests:", ok, "Failed requests:", n - ok);
    printf("%-40s %-10.2f\n", "Benchmark duration (s):", wall);
    printf("%-40s %-10ld\n%-40s %-10ld\n", "Total input tokens:", in_tok, "Total generated tokens:", out_tok);
    printf("%-40s %-10.2f\n", "Request throughput (req/s):", ok / wall);
    if (b->o.slo_ttft || b->o.slo_tpot || b->o.slo_e2el) {
        printf("%-40s %-10.2f\n", "Request goodput (req/s):", good / wall);
        json_object_set_new(res, "request_goodput", json_real(good / wall));
    }
    printf("%-40s %-10.2f\n", "Output token throughput (tok/s):", out_tok / wall);
    printf("%-40s %-10.2f\n", "Total Token throughput (tok/s):", (in_tok + out_tok) / wall);
    printf("---------------Time to First Token----------------\n");
    stat_block(res, "TTFT", ttft, (size_t)ok);
    printf("-----Time per Output Token (excl. 1st token)------\n");
    stat_block(res, "TPOT", tpot, n_tpot);
    printf("---------------Inter-token Latency----------------\n");
    stat_block(res, "ITL", itl, k);
    printf("----------------End-to-end Latency----------------\n");
    stat_block(res, "E2EL", e2e, (size_t)ok);
    printf("==================================================\n");
    if (b->o.result_file && json_dump_file(res, b->o.result_file, JSON_INDENT(2)) < 0)
        fprintf(stderr, "zlight-bench: cannot write %s\n", b->o.result_file);
    json_decref(res);
    free(ttft);
    free(tpot);
    free(e2e);
    free(itl);
}

/* --goodput ttft:MS tpot:MS e2el:MS (any of them) */
static int parse_slo(struct bopts *o, const char *s)
{
    double v;
    char key[16];
    if (sscanf(s, "%15[a-z]:%lf", key, &v) != 2 || v <= 0)
        return -1;
    double *dst = !strcmp(key, "ttft") ? &o->slo_ttft : !strcmp(key, "tpot") ? &o->slo_tpot
                  : !strcmp(key, "e2el") ? &o->slo_e2el : NULL;
    if (!dst)
        return -1;
    *dst = v;
    return 0;
}

static int parse_url(struct bopts *o, const char *url)
{
    const char *p = strncmp(url, "http://", 7) ? url : url + 7;
    size_t n = strcspn(p, ":/");
    if (n == 0 || n >= sizeof o->host)
        return -1;
    memcpy(o->host, p, n);
    o->host[n] = 0;
    if (p[n] == ':') {
        size_t m = strspn(p + n + 1, "0123456789");
        if (m == 0 || m >= sizeof o->port)
            return -1;
        memcpy(o->port, p + n + 1, m);
        o->port[m] = 0;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: zlight-bench [--base-url URL] [options]     (HTTP load generator)\n"
            "       zlight-bench --offline --model PATH ...       (engine only, see --offline --help)\n"
            "  --base-url URL           server (default http://127.0.0.1:8000)\n"
            "  --endpoint PATH          /v1/completions (default) or /v1/chat/completions\n"
            "  --model NAME             served model name (default: the server's first)\n"
            "  --num-prompts N          requests (default 100)\n"
            "  --random-input-len N     prompt tokens of the random dataset (default 128)\n"
            "  --random-output-len N    max_tokens (default 64; ShareGPT: from the reply)\n"
            "  --random-range-ratio R   lengths uniform in [L(1-R), L(1+R)] (default 0)\n"
            "  --dataset-path FILE      ShareGPT-format JSON instead of random prompts\n"
            "  --seed S                 (default 0)\n"
            "  --request-rate R         requests/s, inf = all at once (default inf)\n"
            "  --burstiness B           gamma shape of the arrivals, 1 = Poisson (default 1)\n"
            "  --max-concurrency N      requests in flight at most (default 256)\n"
            "  --ignore-eos             generate exactly max_tokens\n"
            "  --temperature T          (default 0)\n"
            "  --goodput KEY:MS ...     SLOs: ttft:MS tpot:MS e2el:MS\n"
            "  --api-key KEY            Authorization: Bearer KEY\n"
            "  --result-file FILE       write the results as JSON\n");
}

/* The first model the server lists. */
static char *server_model(const struct bopts *o)
{
    int fd = dial(o);
    if (fd < 0)
        return NULL;
    char req[512], buf[8192];
    int n = snprintf(req, sizeof req, "GET /v1/models HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n", o->host,
                     o->api_key ? "Authorization: Bearer " : "", o->api_key ? o->api_key : "",
                     o->api_key ? "\r\n" : "");
    size_t len = 0;
    ssize_t k = write(fd, req, (size_t)n) == n ? 0 : -1;
    while (k >= 0 && len < sizeof buf - 1 && (k = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)k;
    close(fd);
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n"), *name = NULL;
    json_t *j = body ? json_loads(body + 4, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
    if (id)
        name = strdup(id);
    json_decref(j);
    return name;
}

static int parse_args(int argc, char **argv, struct bopts *o)
{
    static const struct option lo[] = {
        {"base-url", required_argument, NULL, 'u'}, {"endpoint", required_argument, NULL, 'e'},
        {"model", required_argument, NULL, 'm'}, {"num-prompts", required_argument, NULL, 'n'},
        {"random-input-len", required_argument, NULL, 'i'}, {"input-len", required_argument, NULL, 'i'},
        {"random-output-len", required_argument, NULL, 'o'}, {"output-len", required_argument, NULL, 'o'},
        {"random-range-ratio", required_argument, NULL, 'r'}, {"range-ratio", required_argument, NULL, 'r'},
        {"dataset-path", required_argument, NULL, 'd'}, {"seed", required_argument, NULL, 's'},
        {"request-rate", required_argument, NULL, 'R'}, {"burstiness", required_argument, NULL, 'B'},
        {"max-concurrency", required_argument, NULL, 'c'}, {"ignore-eos", no_argument, NULL, 'I'},
        {"temperature", required_argument, NULL, 't'}, {"goodput", required_argument, NULL, 'g'},
        {"api-key", required_argument, NULL, 'k'}, {"result-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    double n = (double)o->n, in = (double)o->in_len, out = (double)o->out_len, seed = 0,
           conc = (double)o->max_conc;
    const struct { int c; double *dst, lo, hi; const char *name; } nums[] = {
        {'n', &n, 1, 1e7, "--num-prompts"}, {'i', &in, 1, 1 << 24, "--random-input-len"},
        {'o', &out, 1, 1 << 24, "--random-output-len"}, {'s', &seed, 0, 1e15, "--seed"},
        {'c', &conc, 1, 1 << 16, "--max-concurrency"}, {'r', &o->range, 0, 0.99, "--random-range-ratio"},
        {'B', &o->burst, 1e-3, 1e3, "--burstiness"}, {'t', &o->temperature, 0, 100, "--temperature"},
    };
    int c, rc = 0;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        size_t k = 0;
        while (k < sizeof nums / sizeof nums[0] && nums[k].c != c)
            k++;
        if (k < sizeof nums / sizeof nums[0]) {
            rc = cli_parse_double(nums[k].name, optarg, nums[k].lo, nums[k].hi, nums[k].dst);
            continue;
        }
        switch (c) {
        case 'u':
            if (parse_url(o, optarg) < 0)
                rc = zl_error(ZL_EINVAL, "--base-url: '%s' is not http://HOST[:PORT]", optarg);
            break;
        case 'e': o->endpoint = optarg; break;
        case 'm': o->model = optarg; break;
        case 'd': o->dataset = optarg; break;
        case 'I': o->ignore_eos = 1; break;
        case 'k': o->api_key = optarg; break;
        case 'f': o->result_file = optarg; break;
        case 'g':
            if (parse_slo(o, optarg) < 0)
                rc = zl_error(ZL_EINVAL, "--goodput: '%s' is not ttft|tpot|e2el:MS", optarg);
            while (optind < argc && argv[optind][0] != '-' && parse_slo(o, argv[optind]) == 0)
                optind++;
            break;
        case 'R':
            if (!strcmp(optarg, "inf"))
                o->rate = INFINITY;
            else
                rc = cli_parse_double("--request-rate", optarg, 1e-6, 1e9, &o->rate);
            break;
        case 'h': usage(stdout); exit(0);
        default: rc = zl_error(ZL_EINVAL, "unknown option (see --help)");
        }
    }
    if (rc == 0 && optind < argc)
        rc = zl_error(ZL_EINVAL, "unexpected argument '%s'", argv[optind]);
    o->n = (long)n, o->in_len = (long)in, o->out_len = (long)out, o->seed = (long)seed;
    o->max_conc = (long)conc;
    o->chat = strstr(o->endpoint, "chat") != NULL;
    return rc;
}

int zl_bench_http_main(int argc, char **argv)
{
    struct bench b;
    memset(&b, 0, sizeof b);
    struct bopts *o = &b.o;
    strcpy(o->host, "127.0.0.1");
    strcpy(o->port, "8000");
    o->endpoint = "/v1/completions";
    o->n = 100, o->in_len = 128, o->out_len = 64, o->max_conc = 256;
    o->rate = INFINITY, o->burst = 1;
    if (parse_args(argc, argv, o) < 0) {
        fprintf(stderr, "zlight-bench: %s\n", zl_last_error());
        return 2;
    }
    char *model = NULL;
    if (!o->model && !(o->model = model = server_model(o))) {
        fprintf(stderr, "zlight-bench: no model from http://%s:%s/v1/models (is the server up?)\n",
                o->host, o->port);
        return 1;
    }
    uint64_t rng = (uint64_t)o->seed * 0x9E3779B97F4A7C15ull + 1;
    b.reqs = calloc((size_t)o->n, sizeof *b.reqs);
    if (!b.reqs)
        return 1;
    if (o->dataset) {
        if (load_sharegpt(&b, &rng) < 0)
            return 1;
    } else {
        for (long i = 0; i < o->n; i++) {
            struct breq *r = &b.reqs[i];
            r->in_len = rand_len(&rng, o->in_len, o->range);
            r->out_len = rand_len(&rng, o->out_len, o->range);
            r->body = make_body(o, &rng, NULL, r->in_len, r->out_len);
        }
    }
    b.tty = isatty(2);
    sem_init(&b.slots, 0, (unsigned)o->max_conc);
    pthread_mutex_init(&b.mu, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    printf("Traffic request rate: %g, burstiness: %g, max concurrency: %ld, %ld requests to http://%s:%s%s\n",
           o->rate, o->burst, o->max_conc, o->n, o->host, o->port, o->endpoint);
    double t0 = now_s(), next = t0;
    for (long i = 0; i < o->n; i++) {
        if (isfinite(o->rate)) {
            next += gamma_draw(&rng, o->burst, 1 / (o->rate * o->burst));
            double wait = next - now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        sem_wait(&b.slots);
        struct job *j = malloc(sizeof *j);
        pthread_t th;
        j->b = &b;
        j->r = &b.reqs[i];
        if (pthread_create(&th, &attr, job_main, j) != 0)
            job_main(j);    /* no thread: run it here */
    }
    for (long i = 0; i < o->max_conc; i++)   /* all slots back: every request ended */
        sem_wait(&b.slots);
    double wall = now_s() - t0;
    report(&b, wall);
    int rc = b.failed ? 1 : 0;
    for (long i = 0; i < o->n; i++) {
        free(b.reqs[i].body);
        free(b.reqs[i].itl);
    }
    free(b.reqs);
    free(model);
    pthread_attr_destroy(&attr);
    return rc;
}
