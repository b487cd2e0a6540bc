/* The one table of config keys and the conversion of a scalar into a typed
 * field.  Loading, defaults, validation, dump and the get_* accessors all
 * walk zl_config_keys[]; conf/zlightd.yaml documents the same keys. */
#define _GNU_SOURCE
#include "config-impl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OFF(f) offsetof(struct zl_config, f)
#define STR(k, f, d, minlen, fl, dc) \
    { .key = k, .type = ZL_CONFIG_STR, .flags = fl, .off = OFF(f), .def = d, .min = minlen, .doc = dc }
#define ENUM(k, f, d, allow, dc) \
    { .key = k, .type = ZL_CONFIG_ENUM, .off = OFF(f), .def = d, .allowed = allow, .doc = dc }
#define INT(k, f, d, lo, hi, fl, dc) \
    { .key = k, .type = ZL_CONFIG_INT, .flags = fl, .off = OFF(f), .def = d, .min = lo, .max = hi, .doc = dc }
#define FLOAT(k, f, d, lo, hi, fl, dc) \
    { .key = k, .type = ZL_CONFIG_FLOAT, .flags = fl, .off = OFF(f), .def = d, .fmin = lo, .fmax = hi, .doc = dc }
#define BOOL(k, f, d, dc) { .key = k, .type = ZL_CONFIG_BOOL, .off = OFF(f), .def = d, .doc = dc }

const struct zl_config_key zl_config_keys[] = {
    STR("model.path", model.path, "", 0, ZL_CONFIG_F_PATH,
        "HF model directory or .gguf file; may be empty here, zlightd checks it when it needs a model"),
    ENUM("model.weights", model.weights, "auto", "auto|dummy",
         "auto: load the weights from path; dummy: random weights from config.json alone (benchmarks)"),
    STR("model.tokenizer", model.tokenizer, "", 0, ZL_CONFIG_F_PATH,
        "tokenizer.json, a directory holding one, or a .gguf file; \"\" = from model.path"),
    STR("model.served_name", model.served_name, "", 0, 0,
        "model name in the OpenAI API; \"\" = the basename of model.path"),
    ENUM("model.dtype", model.dtype, "auto", "auto|bfloat16|float16|float32",
         "activation and unquantized weight type; auto = the model's torch_dtype"),
    ENUM("model.quantization", model.quantization, "auto", "auto|none|int8|smoothquant|fp8|gptq|awq",
         "weight quantization; auto = the model's quantization_config, none = ignore it"),
    INT("model.max_model_len", model.max_model_len, "0", 0, 1 << 24, 0,
        "context length (prompt + generated tokens); 0 = the model's own"),
    STR("model.chat_template", model.chat_template, "", 0, ZL_CONFIG_F_PATH,
        "Jinja chat template file; \"\" = the model's own"),
    INT("model.seed", model.seed, "0", 0, INT64_MAX, 0, "seed of the dummy weights"),

    STR("backend.name", backend.name, "auto", 1, 0,
        "compute backend: auto = the highest-scoring usable one, else a registered name (cpu, cuda)"),
    { .key = "backend.devices", .type = ZL_CONFIG_INT_LIST, .flags = ZL_CONFIG_F_UNIQUE,
      .off = OFF(backend.devices), .count_off = OFF(backend.n_devices), .def = "0",
      .min = 0, .max = 65535, .min_items = 1, .max_items = ZL_CONFIG_MAX_DEVICES,
      .doc = "device ordinals to use, one worker thread each" },
    FLOAT("backend.gpu_memory_utilization", backend.gpu_memory_utilization, "0.9", 0.0, 1.0,
          ZL_CONFIG_F_MIN_OPEN,
          "fraction of each GPU's memory reserved (weights, workspace, KV cache); GPU backends only"),
    BOOL("backend.cuda_graphs", backend.cuda_graphs, "true",
         "replay decode steps as CUDA graphs (captured per batch shape on its second sighting): "
         "with async scheduling 0.6-2% faster per batched step on an H100 (BENCHMARKS.md)"),
    BOOL("backend.device_sampling", backend.device_sampling, "true",
         "sample on the device when the backend can (CUDA), so logits stay there; false = CPU sampler"),
    INT("backend.threads", backend.threads, "0", 0, 4096, 0, "CPU backend threads; 0 = all cores"),

    INT("parallel.tensor_parallel_size", parallel.tensor_parallel_size, "1", 1, ZL_CONFIG_MAX_DEVICES, 0,
        "split every layer across this many devices"),
    INT("parallel.pipeline_parallel_size", parallel.pipeline_parallel_size, "1", 1, ZL_CONFIG_MAX_DEVICES,
        0, "split the layers into this many stages"),
    BOOL("parallel.dual_streams", parallel.dual_streams, "false",
         "overlap one micro-batch's all-reduce with the next one's compute"),

    INT("engine.max_num_seqs", engine.max_num_seqs, "256", 1, 65536, 0,
        "most sequences in one step (running batch size)"),
    INT("engine.max_num_batched_tokens", engine.max_num_batched_tokens, "8192", 1, 1 << 24, 0,
        "token budget of one step (decodes + prefill chunks)"),
    INT("engine.kv_block_size", engine.kv_block_size, "16", 1, 256, ZL_CONFIG_F_POW2,
        "tokens per KV cache block"),
    INT("engine.max_total_tokens", engine.max_total_tokens, "0", 0, INT32_MAX, 0,
        "KV cache tokens at most (SGLang's max_total_tokens); 0 = what the memory reservation "
        "allows, 65536 on the CPU backend"),
    BOOL("engine.enable_prefix_caching", engine.enable_prefix_caching, "true",
         "share the KV blocks of common prompt prefixes"),
    BOOL("engine.enable_chunked_prefill", engine.enable_chunked_prefill, "true",
         "split long prompts across steps"),
    BOOL("engine.async_scheduling", engine.async_scheduling, "true",
         "queue each step before the last one's tokens are back, so the GPU does not wait for "
         "the host between steps (needs device sampling; BENCHMARKS.md)"),
    BOOL("engine.late_scheduling", engine.late_scheduling, "true",
         "with async scheduling, queue a steady decode step's successor just before it is "
         "expected to end, so requests arriving meanwhile join it (TTFT)"),
    INT("engine.warmup_tokens", engine.warmup_tokens, "-1", -1, 1 << 24, 0,
        "prompt tokens of one request run at startup, before serving, so one-time costs miss "
        "the first client; -1 = 1024 on a GPU backend, none on the CPU; 0 = none"),

    STR("server.host", server.host, "127.0.0.1", 1, 0, "address the HTTP server listens on"),
    INT("server.port", server.port, "8000", 1, 65535, 0, "TCP port of the HTTP server"),
    STR("server.api_key", server.api_key, "", 0, 0,
        "required bearer token; \"\" = no authentication"),
    INT("server.max_body_bytes", server.max_body_bytes, "8388608", 1024, INT64_C(1) << 32, 0,
        "largest accepted request body"),
    ENUM("server.tool_call_parser", server.tool_call_parser, "none", "none|hermes|llama3_json|mistral|deepseek_v3",
         "read tool calls out of chat replies to requests with tools: hermes (Qwen2.5, Qwen3), "
         "llama3_json (Llama 3.1, 3.2), mistral (Mistral 7B v0.3, Mixtral 8x22B), deepseek_v3 "
         "(DeepSeek-V2.5, V3); none = "
         "replies stay text"),
    ENUM("server.reasoning_parser", server.reasoning_parser, "none", "none|deepseek_r1|qwen3",
         "split chat replies' reasoning (<think> ... </think>) into reasoning_content: "
         "deepseek_r1 (DeepSeek-R1 and its distills), qwen3; none = replies stay whole"),

    { .key = "plugins.paths", .type = ZL_CONFIG_STR_LIST, .flags = ZL_CONFIG_F_PATH,
      .off = OFF(plugins.paths), .count_off = OFF(plugins.n_paths), .def = "", .min = 1,
      .max_items = 256, .doc = "extra plugin directories or .so files, searched first" },

    { .key = "log_level", .type = ZL_CONFIG_LOG_LEVEL, .off = OFF(log_level), .def = "info",
      .allowed = "error|warn|info|debug|trace", .doc = "messages above this level are dropped" },
};

const size_t zl_config_n_keys = sizeof zl_config_keys / sizeof zl_config_keys[0];

int zl_config_key_find(const char *name)
{
    for (size_t i = 0; i < zl_config_n_keys; i++)
        if (!strcmp(zl_config_keys[i].key, name))
            return (int)i;
    return -1;
}

const char *zl_config_type_desc(enum zl_config_type type)
{
    switch (type) {
    case ZL_CONFIG_STR: return "a string";
    case ZL_CONFIG_ENUM: return "one of its allowed words";
    case ZL_CONFIG_INT: return "an integer";
    case ZL_CONFIG_FLOAT: return "a finite number";
    case ZL_CONFIG_BOOL: return "a boolean (true/false, yes/no, on/off)";
    case ZL_CONFIG_LOG_LEVEL: return "a log level";
    case ZL_CONFIG_INT_LIST: return "a list of integers";
    case ZL_CONFIG_STR_LIST: return "a list of strings";
    }
    return "?";
}

/* Offending values are quoted back, cut so a huge scalar keeps the message short. */
#define SHOWN_MAX 64
#define SHOWN(s) (int)(strlen(s) > SHOWN_MAX ? SHOWN_MAX : strlen(s)), (s), (strlen(s) > SHOWN_MAX ? "..." : "")

static int bad_type(const char *label, const char *want, const char *s, int quoted)
{
    if (quoted)
        return zl_error(ZL_EINVAL, "%s must be %s, got the string \"%.*s%s\" (drop the quotes)",
                        label, want, SHOWN(s));
    return zl_error(ZL_EINVAL, "%s must be %s, got '%.*s%s'", label, want, SHOWN(s));
}

static int parse_int(const struct zl_config_key *k, const char *label, const char *s, int quoted,
                     int64_t *out)
{
    const char *p = s + (*s == '+' || *s == '-');
    if (quoted || !isdigit((unsigned char)*p))
        return bad_type(label, "an integer", s, quoted);
    while (isdigit((unsigned char)*p))
        p++;
    if (*p)     /* a fraction, an exponent or trailing garbage */
        return bad_type(label, "an integer", s, 0);
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return zl_error(ZL_EINVAL, "%s overflows a 64-bit integer: '%.*s%s'", label, SHOWN(s));
    int pow2 = (k->flags & ZL_CONFIG_F_POW2) != 0;
    if (v < k->min || v > k->max || (pow2 && (v & (v - 1)))) {
        if (k->max == INT64_MAX)
            return zl_error(ZL_EINVAL, "%s must be >= %" PRId64 ", got %lld", label, k->min, v);
        return zl_error(ZL_EINVAL, "%s must be %sin %" PRId64 "..%" PRId64 ", got %lld", label,
                        pow2 ? "a power of two " : "", k->min, k->max, v);
    }
    *out = v;
    return ZL_OK;
}

static int parse_float(const struct zl_config_key *k, const char *label, const char *s, int quoted,
                       double *out)
{
    char *end = NULL;
    errno = 0;
    double v = quoted ? 0 : strtod(s, &end);
    if (quoted || end == s || *end || !isfinite(v))   /* strtod takes "nan" and "inf": refuse them */
        return bad_type(label, "a finite number", s, quoted);
    int open = (k->flags & ZL_CONFIG_F_MIN_OPEN) != 0;
    if (v < k->fmin || (open && v == k->fmin) || v > k->fmax)
        return zl_error(ZL_EINVAL, "%s must be in %c%g, %g], got %.*s%s", label, open ? '(' : '[',
                        k->fmin, k->fmax, SHOWN(s));
    *out = v;
    return ZL_OK;
}

static int parse_bool(const char *label, const char *s, int quoted, int *out)
{
    static const char *const words[] = { "false", "true", "no", "yes", "off", "on" };
    for (size_t i = 0; !quoted && i < sizeof words / sizeof words[0]; i++)
        if (!strcasecmp(s, words[i])) {
            *out = (int)(i & 1);
            return ZL_OK;
        }
    return bad_type(label, "a boolean (true/false, yes/no, on/off)", s, quoted);
}

static int not_allowed(const struct zl_config_key *k, const char *label, const char *s)
{
    return zl_error(ZL_EINVAL, "%s must be one of %s, got '%.*s%s'", label, k->allowed, SHOWN(s));
}

/* Finds `s` (any case) among k->allowed ("a|b|c"); *out gets its offset there. */
static int parse_enum(const struct zl_config_key *k, const char *label, const char *s, size_t *out)
{
    size_t n = strlen(s);
    for (const char *w = k->allowed; *w;) {
        size_t wl = strcspn(w, "|");
        if (wl == n && !strncasecmp(w, s, n)) {
            *out = (size_t)(w - k->allowed);
            return ZL_OK;
        }
        w += wl + (w[wl] == '|');
    }
    return not_allowed(k, label, s);
}

/* A copy of `s`, prefixed by `dir` when it is a relative path of a path key. */
static char *resolve(const struct zl_config_key *k, const char *s, const char *dir)
{
    char *r = NULL;
    if ((k->flags & ZL_CONFIG_F_PATH) && dir && *s && *s != '/')
        return asprintf(&r, "%s/%s", dir, s) < 0 ? NULL : r;
    return strdup(s);
}

static int set_str(char **field, char *val)
{
    if (!val)
        return zl_error(ZL_ENOMEM, "config: out of memory");
    free(*field);
    *field = val;
    return ZL_OK;
}

static int check_len(const struct zl_config_key *k, const char *label, const char *s)
{
    if ((int64_t)strlen(s) < k->min)
        return zl_error(ZL_EINVAL, "%s must not be empty", label);
    return ZL_OK;
}

static int list_add(struct zl_config *cfg, const struct zl_config_key *k, const char *label,
                    const char *s, int quoted, const char *dir)
{
    char *base = (char *)cfg + k->off;
    int32_t *count = (int32_t *)((char *)cfg + k->count_off);
    if (*count >= k->max_items)
        return zl_error(ZL_EINVAL, "'%s' has more than %d items", k->key, (int)k->max_items);
    if (k->type == ZL_CONFIG_INT_LIST) {
        int32_t *items = (int32_t *)base;
        int64_t v;
        int rc = parse_int(k, label, s, quoted, &v);
        if (rc < 0)
            return rc;
        for (int32_t i = 0; (k->flags & ZL_CONFIG_F_UNIQUE) && i < *count; i++)
            if (items[i] == v)
                return zl_error(ZL_EINVAL, "%s repeats %" PRId64, label, v);
        items[(*count)++] = (int32_t)v;
        return ZL_OK;
    }
    int rc = check_len(k, label, s);
    if (rc < 0)
        return rc;
    char ***items = (char ***)base;
    char **grown = realloc(*items, (size_t)(*count + 1) * sizeof **items);
    if (!grown)
        return zl_error(ZL_ENOMEM, "config: out of memory");
    *items = grown;
    if (!(grown[*count] = resolve(k, s, dir)))
        return zl_error(ZL_ENOMEM, "config: out of memory");
    (*count)++;
    return ZL_OK;
}

int zl_config_set_text(struct zl_config *cfg, const struct zl_config_key *k,
                       const char *text, size_t len, int quoted, const char *dir)
{
    if (memchr(text, 0, len))
        return zl_error(ZL_EINVAL, "'%s' holds a NUL byte", k->key);
    char *s = strndup(text, len);
    if (!s)
        return zl_error(ZL_ENOMEM, "config: out of memory");
    char label[160];
    if (k->type == ZL_CONFIG_INT_LIST || k->type == ZL_CONFIG_STR_LIST)
        snprintf(label, sizeof label, "'%s' item %d", k->key,
                 (int)*(int32_t *)((char *)cfg + k->count_off) + 1);
    else
        snprintf(label, sizeof label, "'%s'", k->key);

    void *field = (char *)cfg + k->off;
    int rc = ZL_OK;
    size_t at = 0;
    switch (k->type) {
    case ZL_CONFIG_STR:
        if ((rc = check_len(k, label, s)) == ZL_OK)
            rc = set_str(field, resolve(k, s, dir));
        break;
    case ZL_CONFIG_ENUM:
        if ((rc = parse_enum(k, label, s, &at)) == ZL_OK)
            rc = set_str(field, strndup(k->allowed + at, strcspn(k->allowed + at, "|")));
        break;
    case ZL_CONFIG_INT:
        rc = parse_int(k, label, s, quoted, field);
        break;
    case ZL_CONFIG_FLOAT:
        rc = parse_float(k, label, s, quoted, field);
        break;
    case ZL_CONFIG_BOOL:
        rc = parse_bool(label, s, quoted, field);
        break;
    case ZL_CONFIG_LOG_LEVEL:
        if (zl_log_level_parse(s, field) < 0)
            rc = not_allowed(k, label, s);
        break;
    case ZL_CONFIG_INT_LIST:
    case ZL_CONFIG_STR_LIST:
        rc = list_add(cfg, k, label, s, quoted, dir);
        break;
    }
    free(s);
    return rc;
}

void zl_config_list_clear(struct zl_config *cfg, const struct zl_config_key *k)
{
    int32_t *count = (int32_t *)((char *)cfg + k->count_off);
    if (k->type == ZL_CONFIG_STR_LIST) {
        char ***items = (char ***)((char *)cfg + k->off);
        for (int32_t i = 0; i < *count; i++)
            free((*items)[i]);
        free(*items);
        *items = NULL;
    }
    *count = 0;
}

/* A double-quoted YAML string: escapes keep any byte re-loadable. */
static void write_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* The shortest %g that reads back to the same double. */
static void write_float(double v, FILE *out)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}

int zl_config_write_value(const struct zl_config *cfg, const struct zl_config_key *k, FILE *out)
{
    const void *field = (const char *)cfg + k->off;
    int32_t count = k->count_off ? *(const int32_t *)((const char *)cfg + k->count_off) : 0;
    switch (k->type) {
    case ZL_CONFIG_STR:
        write_quoted(*(char *const *)field, out);
        break;
    case ZL_CONFIG_ENUM:
        fputs(*(char *const *)field, out);
        break;
    case ZL_CONFIG_INT:
        fprintf(out, "%" PRId64, *(const int64_t *)field);
        break;
    case ZL_CONFIG_FLOAT:
        write_float(*(const double *)field, out);
        break;
    case ZL_CONFIG_BOOL:
        fputs(*(const int *)field ? "true" : "false", out);
        break;
    case ZL_CONFIG_LOG_LEVEL:
        fputs(zl_log_level_name(*(const enum zl_log_level *)field), out);
        break;
    case ZL_CONFIG_INT_LIST:
    case ZL_CONFIG_STR_LIST:
        fputc('[', out);
        for (int32_t i = 0; i < count; i++) {
            if (i)
                fputs(", ", out);
            if (k->type == ZL_CONFIG_INT_LIST)
                fprintf(out, "%" PRId32, ((const int32_t *)field)[i]);
            else
                write_quoted((*(char **const *)field)[i], out);
        }
        fputc(']', out);
        break;
    }
    return ferror(out) ? zl_error(ZL_EIO, "config: write failed") : ZL_OK;
}

/* "FILE:LINE:COLUMN" of the first of `keys` set in the file, else "FILE". */
static void where(char *buf, size_t n, const struct zl_config *cfg,
                  const struct zl_config_mark *marks, const char *const *keys)
{
    snprintf(buf, n, "%s", cfg->file && *cfg->file ? cfg->file : "config");
    for (; marks && *keys; keys++) {
        int i = zl_config_key_find(*keys);
        if (i >= 0 && marks[i].line) {
            snprintf(buf, n, "%s:%zu:%zu", cfg->file, marks[i].line, marks[i].col);
            return;
        }
    }
}

int zl_config_check(const struct zl_config *cfg, const struct zl_config_mark *marks)
{
    char at[512];
    int64_t tp = cfg->parallel.tensor_parallel_size, pp = cfg->parallel.pipeline_parallel_size;
    if (tp * pp > cfg->backend.n_devices) {
        static const char *const keys[] = { "parallel.tensor_parallel_size",
                                            "parallel.pipeline_parallel_size", "backend.devices", NULL };
        where(at, sizeof at, cfg, marks, keys);
        return zl_error(ZL_EINVAL,
                        "%s: 'parallel.tensor_parallel_size' x 'parallel.pipeline_parallel_size' = "
                        "%" PRId64 " x %" PRId64 " = %" PRId64 " exceeds the %d device(s) in 'backend.devices'",
                        at, tp, pp, tp * pp, (int)cfg->backend.n_devices);
    }
    /* Without chunked prefill a whole prompt must fit in one step's budget. */
    if (!cfg->engine.enable_chunked_prefill && cfg->model.max_model_len > 0 &&
        cfg->engine.max_num_batched_tokens < cfg->model.max_model_len) {
        static const char *const keys[] = { "engine.max_num_batched_tokens", "model.max_model_len",
                                            "engine.enable_chunked_prefill", NULL };
        where(at, sizeof at, cfg, marks, keys);
        return zl_error(ZL_EINVAL,
                        "%s: 'engine.max_num_batched_tokens' (%" PRId64 ") must be >= 'model.max_model_len' "
                        "(%" PRId64 ") when 'engine.enable_chunked_prefill' is false",
                        at, cfg->engine.max_num_batched_tokens, cfg->model.max_model_len);
    }
    return ZL_OK;
}
