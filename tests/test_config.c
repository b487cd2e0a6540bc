/* zlightd configuration: defaults, every failure mode (status, position and
 * key in the message), dump round trips, accessors, relative paths and the
 * reference conf/zlightd.yaml.  Inline YAML is named "t.yaml" in messages;
 * file inputs live in tests/fixtures/config/. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlight/config.h>

#define FIXTURES ZL_TEST_SRCDIR "/fixtures/config"

static const char *const str_keys[] = {
    "model.path", "model.weights", "model.tokenizer", "model.served_name", "model.dtype",
    "model.quantization", "model.chat_template", "backend.name", "server.host", "server.api_key",
    "server.tool_call_parser", "server.reasoning_parser", "log_level", NULL,
};
static const char *const int_keys[] = {
    "model.max_model_len", "model.seed", "backend.threads", "parallel.tensor_parallel_size",
    "parallel.pipeline_parallel_size", "engine.max_num_seqs", "engine.max_num_batched_tokens",
    "engine.kv_block_size", "engine.max_total_tokens", "engine.warmup_tokens", "server.port",
    "server.max_body_bytes", NULL,
};
static const char *const bool_keys[] = {
    "backend.cuda_graphs", "backend.device_sampling", "parallel.dual_streams", "engine.enable_prefix_caching",
    "engine.enable_chunked_prefill", "engine.async_scheduling", "engine.late_scheduling", NULL,
};

static struct zl_config *load_ok(const char *yaml)
{
    struct zl_config *cfg = NULL;
    int rc = zl_config_load_string(yaml, "t.yaml", &cfg);
    cr_assert_eq(rc, ZL_OK, "load failed (%d): %s\n--- input:\n%s", rc, zl_last_error(), yaml);
    cr_assert_not_null(cfg);
    return cfg;
}

/* The message must hold every needle (NULL-terminated); *out stays untouched. */
static void expect_msg(int rc, int status, struct zl_config *cfg, const char *what, va_list ap)
{
    const char *msg = zl_last_error();
    cr_assert_eq(rc, status, "%s: status %d, want %d (message: %s)", what, rc, status, msg);
    cr_assert_eq(cfg, (struct zl_config *)0x1, "%s: *out was changed on failure", what);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        cr_expect(strstr(msg, needle), "%s: message \"%s\" lacks \"%s\"", what, msg, needle);
}

static void expect_error(const char *yaml, int status, ...)
{
    struct zl_config *cfg = (struct zl_config *)0x1;
    int rc = zl_config_load_string(yaml, "t.yaml", &cfg);
    va_list ap;
    va_start(ap, status);
    expect_msg(rc, status, cfg, yaml, ap);
    va_end(ap);
}

static void expect_file_error(const char *path, int status, ...)
{
    struct zl_config *cfg = (struct zl_config *)0x1;
    int rc = zl_config_load(path, &cfg);
    va_list ap;
    va_start(ap, status);
    expect_msg(rc, status, cfg, path, ap);
    va_end(ap);
}

/* The dump without its first line (a comment naming the source file). */
static char *dump_body(const struct zl_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(zl_config_dump(cfg, f), ZL_OK, "%s", zl_last_error());
    fclose(f);
    char *nl = strchr(buf, '\n');
    cr_assert_not_null(nl);
    memmove(buf, nl + 1, strlen(nl + 1) + 1);
    return buf;
}

static void expect_same(const struct zl_config *a, const struct zl_config *b)
{
    for (const char *const *k = str_keys; *k; k++) {
        const char *va, *vb;
        cr_assert_eq(zl_config_get_str(a, *k, &va), ZL_OK, "%s", zl_last_error());
        cr_assert_eq(zl_config_get_str(b, *k, &vb), ZL_OK, "%s", zl_last_error());
        cr_expect_str_eq(va, vb, "%s differs", *k);
    }
    for (const char *const *k = int_keys; *k; k++) {
        int64_t va, vb;
        cr_assert_eq(zl_config_get_i64(a, *k, &va), ZL_OK, "%s", zl_last_error());
        cr_assert_eq(zl_config_get_i64(b, *k, &vb), ZL_OK, "%s", zl_last_error());
        cr_expect_eq(va, vb, "%s differs: %lld vs %lld", *k, (long long)va, (long long)vb);
    }
    for (const char *const *k = bool_keys; *k; k++) {
        int va, vb;
        cr_assert_eq(zl_config_get_bool(a, *k, &va), ZL_OK, "%s", zl_last_error());
        cr_assert_eq(zl_config_get_bool(b, *k, &vb), ZL_OK, "%s", zl_last_error());
        cr_expect_eq(va, vb, "%s differs", *k);
    }
    cr_expect_eq(a->backend.gpu_memory_utilization, b->backend.gpu_memory_utilization);
    cr_expect_eq(a->log_level, b->log_level);
    cr_assert_eq(a->backend.n_devices, b->backend.n_devices);
    for (int i = 0; i < a->backend.n_devices; i++)
        cr_expect_eq(a->backend.devices[i], b->backend.devices[i]);
    cr_assert_eq(a->plugins.n_paths, b->plugins.n_paths);
    for (int i = 0; i < a->plugins.n_paths; i++)
        cr_expect_str_eq(a->plugins.paths[i], b->plugins.paths[i]);
    char *da = dump_body(a), *db = dump_body(b);
    cr_expect_str_eq(da, db);
    free(da);
    free(db);
}

/* load(dump(cfg)) == cfg */
static void expect_round_trip(const struct zl_config *cfg)
{
    char *text = dump_body(cfg);
    struct zl_config *back = load_ok(text);
    expect_same(cfg, back);
    zl_config_free(back);
    free(text);
}

Test(config, defaults)
{
    struct zl_config *cfg = NULL;
    cr_assert_eq(zl_config_defaults(&cfg), ZL_OK, "%s", zl_last_error());
    cr_expect_str_eq(cfg->file, "");
    cr_expect_str_eq(cfg->model.path, "");
    cr_expect_str_eq(cfg->model.weights, "auto");
    cr_expect_str_eq(cfg->model.tokenizer, "");
    cr_expect_str_eq(cfg->model.served_name, "");
    cr_expect_str_eq(cfg->model.dtype, "auto");
    cr_expect_str_eq(cfg->model.quantization, "auto");
    cr_expect_eq(cfg->model.max_model_len, 0);
    cr_expect_str_eq(cfg->model.chat_template, "");
    cr_expect_eq(cfg->model.seed, 0);
    cr_expect_str_eq(cfg->backend.name, "auto");
    cr_expect_eq(cfg->backend.n_devices, 1);
    cr_expect_eq(cfg->backend.devices[0], 0);
    cr_expect_float_eq(cfg->backend.gpu_memory_utilization, 0.90, 1e-12);
    cr_expect_eq(cfg->backend.cuda_graphs, 1);
    cr_expect_eq(cfg->backend.threads, 0);
    cr_expect_eq(cfg->parallel.tensor_parallel_size, 1);
    cr_expect_eq(cfg->parallel.pipeline_parallel_size, 1);
    cr_expect_eq(cfg->parallel.dual_streams, 0);
    cr_expect_eq(cfg->engine.max_num_seqs, 256);
    cr_expect_eq(cfg->engine.max_num_batched_tokens, 8192);
    cr_expect_eq(cfg->engine.kv_block_size, 16);
    cr_expect_eq(cfg->engine.enable_prefix_caching, 1);
    cr_expect_eq(cfg->engine.enable_chunked_prefill, 1);
    cr_expect_eq(cfg->engine.async_scheduling, 1);
    cr_expect_eq(cfg->engine.late_scheduling, 1);
    cr_expect_eq(cfg->engine.warmup_tokens, -1);
    cr_expect_str_eq(cfg->server.host, "127.0.0.1");
    cr_expect_eq(cfg->server.port, 8000);
    cr_expect_str_eq(cfg->server.api_key, "");
    cr_expect_eq(cfg->server.max_body_bytes, 8 << 20);
    cr_expect_eq(cfg->plugins.n_paths, 0);
    cr_expect_eq(cfg->log_level, ZL_LOG_INFO);
    expect_round_trip(cfg);
    zl_config_free(cfg);
    zl_config_free(NULL);
}

Test(config, empty_inputs_are_all_defaults)
{
    static const char *const inputs[] = { "", "# only a comment\n", "---\n", "---\n...\n", "~\n",
                                          "model:\nserver: ~\n", "server:\n  port:\n  host: null\n" };
    struct zl_config *def = NULL;
    cr_assert_eq(zl_config_defaults(&def), ZL_OK);
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        struct zl_config *cfg = load_ok(inputs[i]);
        cr_expect_str_eq(cfg->file, "t.yaml");
        expect_same(def, cfg);
        zl_config_free(cfg);
    }
    zl_config_free(def);
}

Test(config, unknown_key_on_line_3)
{
    expect_file_error(FIXTURES "/unknown-key.yaml", ZL_EINVAL, "unknown-key.yaml:3:1:", "unknown key 'modle'",
                      "(did you mean 'model'?)", NULL);
}

Test(config, unknown_key_suggestions)
{
    expect_error("server:\n  prot: 80\n", ZL_EINVAL, "t.yaml:2:3:", "unknown key 'server.prot'",
                 "did you mean 'server.port'?", NULL);
    expect_error("port: 80\n", ZL_EINVAL, "t.yaml:1:1:", "'port'", "did you mean 'server.port'?", NULL);
    expect_error("model:\n  dtpye: auto\n", ZL_EINVAL, "t.yaml:2:3:", "did you mean 'model.dtype'?", NULL);
    expect_error("\n\nfrobnicate: 1\n", ZL_EINVAL, "t.yaml:3:1: unknown key 'frobnicate'", NULL);
    const char *msg = zl_last_error();
    cr_expect_null(strstr(msg, "did you mean"), "no suggestion expected: %s", msg);
}

Test(config, wrong_type)
{
    expect_error("server:\n  port: abc\n", ZL_EINVAL, "t.yaml:2:9:",
                 "'server.port' must be an integer, got 'abc'", NULL);
    expect_error("engine:\n  enable_prefix_caching: maybe\n", ZL_EINVAL, "t.yaml:2:26:",
                 "'engine.enable_prefix_caching' must be a boolean", "'maybe'", NULL);
    expect_error("backend:\n  cuda_graphs: 1\n", ZL_EINVAL, "'backend.cuda_graphs' must be a boolean", NULL);
    expect_error("server:\n  port: \"8000\"\n", ZL_EINVAL, "t.yaml:2:9:", "'server.port'", "string", NULL);
    expect_error("backend:\n  gpu_memory_utilization: lots\n", ZL_EINVAL,
                 "'backend.gpu_memory_utilization' must be a finite number, got 'lots'", NULL);
    expect_error("backend:\n  devices: [0, x]\n", ZL_EINVAL, "t.yaml:2:16:", "'backend.devices' item 2",
                 "integer", NULL);
}

Test(config, integers_reject_fractions_garbage_and_overflow)
{
    expect_error("server:\n  port: 80.5\n", ZL_EINVAL, "t.yaml:2:9:", "'server.port' must be an integer, got '80.5'", NULL);
    expect_error("server:\n  port: 80abc\n", ZL_EINVAL, "'server.port' must be an integer, got '80abc'", NULL);
    expect_error("server:\n  port: 8e3\n", ZL_EINVAL, "'server.port' must be an integer", NULL);
    expect_error("server:\n  port: +\n", ZL_EINVAL, "'server.port' must be an integer", NULL);
    expect_error("model:\n  seed: 99999999999999999999\n", ZL_EINVAL, "t.yaml:2:9:", "'model.seed'",
                 "overflow", NULL);
    struct zl_config *cfg = load_ok("model:\n  seed: 9223372036854775807\nserver:\n  port: +80\n");
    cr_expect_eq(cfg->model.seed, INT64_MAX);
    cr_expect_eq(cfg->server.port, 80);
    zl_config_free(cfg);
}

Test(config, floats_reject_nan_and_inf)
{
    static const char *const bad[] = { "nan", "NaN", "inf", "-inf", ".inf", ".nan", "1e999", "0.5x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "backend:\n  gpu_memory_utilization: %s\n", bad[i]);
        expect_error(yaml, ZL_EINVAL, "t.yaml:2:27:", "'backend.gpu_memory_utilization' must be a finite number",
                     bad[i], NULL);
    }
    struct zl_config *cfg = load_ok("backend:\n  gpu_memory_utilization: 1\n");
    cr_expect_eq(cfg->backend.gpu_memory_utilization, 1.0);
    zl_config_free(cfg);
}

Test(config, booleans)
{
    static const struct { const char *text; int value; } words[] = {
        { "true", 1 }, { "TRUE", 1 }, { "yes", 1 }, { "Yes", 1 }, { "on", 1 }, { "ON", 1 },
        { "false", 0 }, { "False", 0 }, { "no", 0 }, { "NO", 0 }, { "off", 0 }, { "Off", 0 },
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "parallel:\n  dual_streams: %s\nbackend:\n  cuda_graphs: %s\n",
                 words[i].text, words[i].text);
        struct zl_config *cfg = load_ok(yaml);
        cr_expect_eq(cfg->parallel.dual_streams, words[i].value, "%s", words[i].text);
        cr_expect_eq(cfg->backend.cuda_graphs, words[i].value, "%s", words[i].text);
        zl_config_free(cfg);
    }
}

Test(config, out_of_range)
{
    expect_error("server:\n  port: 70000\n", ZL_EINVAL, "t.yaml:2:9:", "'server.port'", "1..65535", "70000", NULL);
    expect_error("server:\n  port: 0\n", ZL_EINVAL, "'server.port' must be in 1..65535, got 0", NULL);
    expect_error("model:\n  seed: -1\n", ZL_EINVAL, "'model.seed' must be >= 0, got -1", NULL);
    expect_error("backend:\n  gpu_memory_utilization: 1.5\n", ZL_EINVAL, "t.yaml:2:27:",
                 "'backend.gpu_memory_utilization' must be in (0, 1], got 1.5", NULL);
    expect_error("backend:\n  gpu_memory_utilization: 0\n", ZL_EINVAL, "(0, 1]", NULL);
    expect_error("model:\n  dtype: fp16\n", ZL_EINVAL, "t.yaml:2:10:", "'model.dtype' must be one of",
                 "auto|bfloat16|float16|float32", "'fp16'", NULL);
    expect_error("model:\n  quantization: q4\n", ZL_EINVAL, "'model.quantization'", "gptq", NULL);
    expect_error("log_level: loud\n", ZL_EINVAL, "t.yaml:1:12:", "'log_level' must be one of",
                 "error|warn|info|debug|trace", NULL);
    expect_error("engine:\n  max_num_batched_tokens: 0\n", ZL_EINVAL, "t.yaml:2:27:",
                 "'engine.max_num_batched_tokens' must be in 1..", NULL);
    expect_error("engine:\n  kv_block_size: 24\n", ZL_EINVAL, "t.yaml:2:18:",
                 "'engine.kv_block_size' must be a power of two in 1..256, got 24", NULL);
    expect_error("engine:\n  kv_block_size: 512\n", ZL_EINVAL, "power of two in 1..256", NULL);
    expect_error("server:\n  host: \"\"\n", ZL_EINVAL, "'server.host' must not be empty", NULL);
    expect_error("backend:\n  devices: []\n", ZL_EINVAL, "t.yaml:2:12:", "'backend.devices' needs at least 1", NULL);
    expect_error("backend:\n  devices: [0, 1, 0]\n", ZL_EINVAL, "t.yaml:2:19:", "'backend.devices' item 3 repeats 0",
                 NULL);
    expect_error("backend:\n  devices: [-1]\n", ZL_EINVAL, "'backend.devices' item 1 must be in 0..65535", NULL);
}

Test(config, enums_and_log_level)
{
    struct zl_config *cfg = load_ok("model:\n  dtype: Float16\n  weights: DUMMY\nlog_level: debug\n");
    cr_expect_str_eq(cfg->model.dtype, "float16");
    cr_expect_str_eq(cfg->model.weights, "dummy");
    cr_expect_eq(cfg->log_level, ZL_LOG_DEBUG);
    zl_config_free(cfg);
    cfg = load_ok("log_level: WARN\n");
    cr_expect_eq(cfg->log_level, ZL_LOG_WARN);
    zl_config_free(cfg);
    cfg = load_ok("log_level: trace\n");
    cr_expect_eq(cfg->log_level, ZL_LOG_TRACE);
    zl_config_free(cfg);
}

Test(config, duplicate_keys)
{
    expect_error("server:\n  port: 1\n  port: 2\n", ZL_EINVAL, "t.yaml:3:3:", "duplicate key 'server.port'",
                 "line 2", NULL);
    expect_error("server:\n  port: 1\nmodel: ~\nserver:\n  host: x\n", ZL_EINVAL, "t.yaml:4:1:",
                 "duplicate key 'server'", NULL);
    expect_error("log_level: info\nlog_level: warn\n", ZL_EINVAL, "t.yaml:2:1:", "duplicate key 'log_level'", NULL);
    expect_error("server:\n  port: 1\nserver.port: 2\n", ZL_EINVAL, "t.yaml:3:1:", "duplicate key 'server.port'",
                 NULL);
}

Test(config, dotted_top_level_keys)
{
    struct zl_config *cfg = load_ok("server.port: 9000\nmodel:\n  seed: 5\nengine.kv_block_size: 32\n");
    cr_expect_eq(cfg->server.port, 9000);
    cr_expect_eq(cfg->model.seed, 5);
    cr_expect_eq(cfg->engine.kv_block_size, 32);
    zl_config_free(cfg);
}

Test(config, bad_indentation)
{
    expect_file_error(FIXTURES "/bad-indent.yaml", ZL_EINVAL, "bad-indent.yaml:3:2:", "indentation", NULL);
    expect_error("server:\n    port: 8000\n  host: x\n", ZL_EINVAL, "t.yaml:3:3:", "did not find expected key",
                 "indentation", NULL);
    expect_error("server:\n  port: 8000\n  - x\n", ZL_EINVAL, "t.yaml:3:3:", "indentation", NULL);
}

Test(config, tabs)
{
    expect_file_error(FIXTURES "/tabs.yaml", ZL_EINVAL, "tabs.yaml:2:1:", "tabs", NULL);
}

Test(config, syntax_errors)
{
    expect_error("log_level: \"info\n", ZL_EINVAL, "t.yaml:2:1:", "unexpected end of stream",
                 "quoted scalar at line 1, column 12", NULL);
    expect_error("backend:\n  devices: [0, 1\n", ZL_EINVAL, "t.yaml:3:1:", "flow sequence", NULL);
    expect_error("server: {port: 1\n", ZL_EINVAL, "t.yaml:", "flow mapping", NULL);
    expect_error("log_level: \xff\n", ZL_EINVAL, "t.yaml:1:12:", "UTF-8", NULL);
    expect_error("model:\n  path: \"a\\0b\"\n", ZL_EINVAL, "t.yaml:2:9:", "'model.path'", "NUL", NULL);
}

Test(config, unreadable_file)
{
    expect_file_error("/nonexistent/zlight-test/missing.yaml", ZL_EIO, "/nonexistent/zlight-test/missing.yaml",
                      "No such file", NULL);
    expect_file_error(FIXTURES, ZL_EIO, FIXTURES, NULL);   /* a directory */
}

Test(config, shape_mismatches)
{
    expect_error("server:\n  port:\n    a: 1\n", ZL_EINVAL, "t.yaml:3:5:", "'server.port' must be an integer, got a mapping",
                 NULL);
    expect_error("server:\n  port: [1]\n", ZL_EINVAL, "t.yaml:2:9:", "'server.port'", "got a sequence", NULL);
    expect_error("server: 8000\n", ZL_EINVAL, "t.yaml:1:9:", "'server' is a section", "got '8000'", NULL);
    expect_error("server: [a]\n", ZL_EINVAL, "'server' is a section", "got a sequence", NULL);
    expect_error("backend:\n  devices: 0\n", ZL_EINVAL, "t.yaml:2:12:",
                 "'backend.devices' must be a list of integers, got '0'", NULL);
    expect_error("plugins:\n  paths: {a: 1}\n", ZL_EINVAL, "'plugins.paths' must be a list of strings, got a mapping",
                 NULL);
    expect_error("backend:\n  devices: [[0]]\n", ZL_EINVAL, "'backend.devices' items must be scalars", NULL);
    expect_error("log_level: {a: 1}\n", ZL_EINVAL, "'log_level' must be one of", "got a mapping", NULL);
    expect_error("? [a, b]\n: 1\n", ZL_EINVAL, "t.yaml:1:3:", "keys must be scalars", NULL);
}

Test(config, non_mapping_document)
{
    expect_error("- a\n- b\n", ZL_EINVAL, "t.yaml:1:1:", "must be a mapping", "got a sequence", NULL);
    expect_error("hello\n", ZL_EINVAL, "t.yaml:1:1:", "must be a mapping", "'hello'", NULL);
}

Test(config, anchors_aliases_and_tags_refused)
{
    expect_error("server: &s\n  port: 1\n", ZL_EINVAL, "t.yaml:1:9:", "anchors and aliases are not supported", NULL);
    expect_error("model:\n  seed: 1\nserver:\n  port: *p\n", ZL_EINVAL, "t.yaml:4:9:", "'*p'", NULL);
    expect_error("server:\n  port: !!int 1\n", ZL_EINVAL, "t.yaml:2:9:", "tags are not supported", NULL);
}

Test(config, multiple_documents_refused)
{
    expect_error("server:\n  port: 1\n---\nserver:\n  port: 2\n", ZL_EINVAL, "t.yaml:3:1:", "one YAML document",
                 NULL);
}

Test(config, cross_key_rules)
{
    expect_error("backend:\n  devices: [0]\nparallel:\n  tensor_parallel_size: 2\n", ZL_EINVAL, "t.yaml:4:3:",
                 "'parallel.tensor_parallel_size'", "exceeds the 1 device(s) in 'backend.devices'", NULL);
    expect_error("parallel:\n  pipeline_parallel_size: 3\nbackend:\n  devices: [0, 1]\n", ZL_EINVAL, "t.yaml:2:3:",
                 "1 x 3 = 3 exceeds the 2 device(s)", NULL);
    struct zl_config *cfg =
        load_ok("backend:\n  devices: [4, 5, 6, 7]\nparallel:\n  tensor_parallel_size: 2\n  pipeline_parallel_size: 2\n");
    cr_expect_eq(cfg->backend.n_devices, 4);
    cr_expect_eq(cfg->backend.devices[3], 7);
    zl_config_free(cfg);
    expect_error("model:\n  max_model_len: 32768\nengine:\n  enable_chunked_prefill: false\n", ZL_EINVAL,
                 "t.yaml:2:3:", "'engine.max_num_batched_tokens' (8192) must be >= 'model.max_model_len' (32768)",
                 NULL);
}

Test(config, every_key_round_trips)
{
    struct zl_config *cfg = NULL;
    cr_assert_eq(zl_config_load(FIXTURES "/full.yaml", &cfg), ZL_OK, "%s", zl_last_error());
    /* The fixture sets every key away from its default... */
    struct zl_config *def = NULL;
    cr_assert_eq(zl_config_defaults(&def), ZL_OK);
    char *dc = dump_body(cfg), *dd = dump_body(def);
    char *sc = NULL, *sd = NULL;
    for (char *lc = strtok_r(dc, "\n", &sc), *ld = strtok_r(dd, "\n", &sd); lc && ld;
         lc = strtok_r(NULL, "\n", &sc), ld = strtok_r(NULL, "\n", &sd))
        if (lc[strlen(lc) - 1] != ':')     /* section headers are the same in both */
            cr_expect_str_neq(lc, ld, "still the default: %s", lc);
    free(dc);
    free(dd);
    zl_config_free(def);
    /* ...to these values, */
    cr_expect_str_eq(cfg->model.dtype, "bfloat16");
    cr_expect_eq(cfg->model.seed, INT64_MAX);
    cr_expect_str_eq(cfg->model.served_name, "123");
    cr_expect_str_eq(cfg->server.api_key, "sk-\"quoted\" \\ back\tslash #hash: yes \xc3\xa9");
    cr_expect_str_eq(cfg->server.host, "::1");
    cr_expect_str_eq(cfg->server.tool_call_parser, "hermes");
    cr_expect_str_eq(cfg->server.reasoning_parser, "qwen3");
    cr_expect_float_eq(cfg->backend.gpu_memory_utilization, 0.3, 1e-15);
    cr_expect_eq(cfg->backend.cuda_graphs, 0);
    cr_expect_eq(cfg->backend.device_sampling, 0);
    cr_expect_eq(cfg->parallel.dual_streams, 1);
    cr_expect_eq(cfg->engine.enable_prefix_caching, 0);
    cr_expect_eq(cfg->engine.async_scheduling, 0);
    cr_expect_eq(cfg->engine.late_scheduling, 0);
    cr_expect_eq(cfg->engine.warmup_tokens, 0);
    cr_expect_eq(cfg->engine.max_total_tokens, 123456);
    cr_expect_eq(cfg->log_level, ZL_LOG_DEBUG);
    cr_assert_eq(cfg->plugins.n_paths, 2);
    cr_expect_str_eq(cfg->plugins.paths[0], "/opt/zlight/plugins");
    /* ...and the dump loads back to the same config. */
    expect_round_trip(cfg);
    zl_config_free(cfg);
}

Test(config, floats_round_trip_exactly)
{
    static const char *const values[] = { "0.1", "0.3", "0.95", "1e-300", "0.123456789012345678" };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "backend:\n  gpu_memory_utilization: %s\n", values[i]);
        struct zl_config *cfg = load_ok(yaml);
        expect_round_trip(cfg);
        zl_config_free(cfg);
    }
}

Test(config, get_accessors)
{
    struct zl_config *cfg = load_ok("server:\n  port: 9001\n  host: 0.0.0.0\nlog_level: trace\n"
                                    "backend:\n  gpu_memory_utilization: 0.5\n  cuda_graphs: no\n");
    const char *s = NULL;
    int64_t i = 0;
    double f = 0;
    int b = -1;
    cr_expect_eq(zl_config_get_i64(cfg, "server.port", &i), ZL_OK);
    cr_expect_eq(i, 9001);
    cr_expect_eq(zl_config_get_str(cfg, "server.host", &s), ZL_OK);
    cr_expect_str_eq(s, "0.0.0.0");
    cr_expect_eq(zl_config_get_str(cfg, "log_level", &s), ZL_OK);
    cr_expect_str_eq(s, "trace");
    cr_expect_eq(zl_config_get_str(cfg, "model.dtype", &s), ZL_OK);
    cr_expect_str_eq(s, "auto");
    cr_expect_eq(zl_config_get_f64(cfg, "backend.gpu_memory_utilization", &f), ZL_OK);
    cr_expect_eq(f, 0.5);
    cr_expect_eq(zl_config_get_bool(cfg, "backend.cuda_graphs", &b), ZL_OK);
    cr_expect_eq(b, 0);

    cr_expect_eq(zl_config_get_i64(cfg, "server.prot", &i), ZL_ENOTFOUND);
    cr_expect(strstr(zl_last_error(), "server.prot"), "%s", zl_last_error());
    cr_expect_eq(zl_config_get_str(cfg, "server", &s), ZL_ENOTFOUND);
    cr_expect_eq(zl_config_get_bool(cfg, "", &b), ZL_ENOTFOUND);
    cr_expect_eq(zl_config_get_str(cfg, "server.port", &s), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "server.port"), "%s", zl_last_error());
    cr_expect_eq(zl_config_get_i64(cfg, "server.host", &i), ZL_EINVAL);
    cr_expect_eq(zl_config_get_f64(cfg, "server.port", &f), ZL_EINVAL);
    cr_expect_eq(zl_config_get_bool(cfg, "server.port", &b), ZL_EINVAL);
    cr_expect_eq(zl_config_get_i64(cfg, "backend.devices", &i), ZL_EINVAL);
    cr_expect_eq(zl_config_get_str(cfg, "plugins.paths", &s), ZL_EINVAL);
    cr_expect_eq(i, 9001, "a failed get must not write *out");
    zl_config_free(cfg);
}

Test(config, relative_paths_resolve_against_the_file)
{
    char *dir = realpath(FIXTURES, NULL);
    cr_assert_not_null(dir, "fixtures directory %s not found", FIXTURES);
    struct zl_config *cfg = NULL;
    cr_assert_eq(zl_config_load(FIXTURES "/relpaths.yaml", &cfg), ZL_OK, "%s", zl_last_error());
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/models/tiny", dir);
    cr_expect_str_eq(cfg->model.path, want);
    snprintf(want, sizeof want, "%s/../tok/tokenizer.json", dir);
    cr_expect_str_eq(cfg->model.tokenizer, want);
    cr_expect_str_eq(cfg->model.chat_template, "/abs/chat.jinja");
    cr_expect_str_eq(cfg->model.served_name, "relative/not/a/path", "not a path key: kept as written");
    cr_assert_eq(cfg->plugins.n_paths, 2);
    snprintf(want, sizeof want, "%s/plugins", dir);
    cr_expect_str_eq(cfg->plugins.paths[0], want);
    cr_expect_str_eq(cfg->plugins.paths[1], "/opt/zlight");
    expect_round_trip(cfg);     /* resolved paths are absolute: they do not move again */
    zl_config_free(cfg);

    /* From a string, `name` stands for the file. */
    cfg = NULL;
    cr_assert_eq(zl_config_load_string("model:\n  path: m\n", FIXTURES "/virtual.yaml", &cfg), ZL_OK);
    snprintf(want, sizeof want, "%s/m", dir);
    cr_expect_str_eq(cfg->model.path, want);
    zl_config_free(cfg);
    free(dir);
}

Test(config, reference_config_loads)
{
    const char *path = ZL_TOP_SRCDIR "/conf/zlightd.yaml";
    struct zl_config *cfg = NULL, *def = NULL;
    cr_assert_eq(zl_config_load(path, &cfg), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_config_defaults(&def), ZL_OK);
    expect_same(def, cfg);  /* every value in the reference is the default */

    /* Every key of the dump is written out in the reference, indented alike. */
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char *text = NULL;
    size_t cap = 0;
    cr_assert_gt(getdelim(&text, &cap, '\0', f), 0);
    fclose(f);
    char *body = dump_body(def);
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
        char needle[128];
        snprintf(needle, sizeof needle, "\n%.*s:", (int)strcspn(line, ":"), line);
        cr_expect(strstr(text, needle), "conf/zlightd.yaml lacks key line '%s'", needle + 1);
    }
    free(body);
    free(text);
    zl_config_free(def);
    zl_config_free(cfg);
}

Test(config, dump_is_loadable_whatever_the_file_name)
{
    struct zl_config *cfg = NULL, *back = NULL;
    cr_assert_eq(zl_config_load_string("server:\n  port: 1234\n", "odd\nname: 1.yaml", &cfg), ZL_OK, "%s",
                 zl_last_error());
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(zl_config_dump(cfg, f), ZL_OK);
    fclose(f);
    cr_assert_eq(zl_config_load_string(buf, "dump.yaml", &back), ZL_OK, "%s\n%s", zl_last_error(), buf);
    cr_expect_eq(back->server.port, 1234);
    cr_expect_eq(zl_config_dump(NULL, stdout), ZL_EINVAL);
    zl_config_free(back);
    zl_config_free(cfg);
    free(buf);
}
