/* zlight-generate: offline greedy generation from token ids.
 *
 *   zlight-generate --model PATH [--backend cpu] [--max-tokens N]
 *                   [--ids "1 2 3" | --prompts FILE]
 *
 * PATH is an HF directory or a .gguf file.  All prompts are submitted at
 * once (one forward over every sequence per step); greedy decoding ignores
 * EOS.  stdout: the generated ids of each prompt on one line, in input
 * order; stderr: logs and timing. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/log.h>
#include <zlight/status.h>

#include "engine-simple.h"

struct prompts {
    int n, cap;
    int32_t **ids;
    int32_t *lens;
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

static int run(struct zl_simple_params *sp, const struct prompts *p, int32_t max_new, int quiet)
{
    struct zl_simple *e;
    int rc = zl_simple_create(sp, &e);
    if (rc < 0)
        return rc;
    int32_t **out = calloc((size_t)p->n, sizeof *out);
    for (int i = 0; out && i < p->n; i++)
        if (!(out[i] = calloc((size_t)max_new + 1, sizeof **out)))
            rc = zl_error(ZL_ENOMEM, "out of memory");
    if (!out)
        rc = zl_error(ZL_ENOMEM, "out of memory");
    struct zl_simple_stats st;
    if (rc == ZL_OK)
        rc = zl_simple_generate(e, p->n, (const int32_t *const *)p->ids, p->lens, max_new, out, &st);
    if (rc == ZL_OK)
        rc = print_results(p, out, max_new);
    if (rc == ZL_OK && !quiet)
        fprintf(stderr,
                "prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s "
                "(%.2f tok/s, %d sequences)\n",
                (long long)st.prefill_tokens, st.prefill_s,
                st.prefill_s > 0 ? (double)st.prefill_tokens / st.prefill_s : 0.0,
                (long long)st.decode_tokens, st.decode_s,
                st.decode_s > 0 ? (double)st.decode_tokens / st.decode_s : 0.0, p->n);
    for (int i = 0; out && i < p->n; i++)
        free(out[i]);
    free(out);
    zl_simple_free(e);
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
        {NULL, 0, NULL, 0},
    };
    struct zl_simple_params sp = zl_simple_default_params();
    const char *ids = NULL, *file = NULL;
    long max_new = 32, v;
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
    if (rc == ZL_OK)
        rc = run(&sp, &p, (int32_t)max_new, quiet);
    prompts_free(&p);
    if (rc < 0) {
        fprintf(stderr, "zlight-generate: %s\n", zl_last_error());
        return 1;
    }
    return 0;
}
