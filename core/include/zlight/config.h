/* zlightd configuration: YAML (libyaml) into typed structs, with defaults
 * and validation.  conf/zlightd.yaml documents every key.
 *
 *   struct zl_config *cfg;
 *   if (zl_config_load("model.yaml", &cfg) < 0)     // "model.yaml:3:1: unknown key 'modle'"
 *       fprintf(stderr, "%s\n", zl_last_error());
 *   printf("%d\n", cfg->server.port);
 *   zl_config_free(cfg);
 */
#ifndef ZLIGHT_CONFIG_H
#define ZLIGHT_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <zlight/log.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZL_CONFIG_MAX_DEVICES 64

/* The resolved configuration.  Strings are owned by the config and never
 * NULL after load ("" when unset); see conf/zlightd.yaml for each meaning. */
struct zl_config {
    char *file;                         /* path it was loaded from, "" for defaults */

    struct {
        char *path;                     /* HF directory or .gguf file (required unless weights=dummy with config) */
        char *weights;                  /* "auto" | "dummy" */
        char *tokenizer;                /* "" = from `path` */
        char *served_name;              /* "" = basename of `path` */
        char *dtype;                    /* "auto" | "bfloat16" | "float16" | "float32" */
        char *quantization;             /* "auto" | "none" | "int8" | "smoothquant" | "fp8" | "gptq" | "awq" */
        int64_t max_model_len;          /* 0 = from the model's config; else 1..1<<24 */
        char *chat_template;            /* "" = the model's own; else a file path */
        int64_t seed;                   /* seed for dummy weights, >= 0 */
    } model;

    struct {
        char *name;                     /* "auto" | a registered backend name */
        int32_t devices[ZL_CONFIG_MAX_DEVICES]; /* device ordinals, default [0] */
        int32_t n_devices;              /* 1..ZL_CONFIG_MAX_DEVICES */
        double gpu_memory_utilization;  /* (0, 1], default 0.90 */
        int cuda_graphs;                /* bool, default 0 */
        int device_sampling;            /* bool, default 1 */
        int64_t threads;                /* CPU threads, 0 = all cores */
    } backend;

    struct {
        int64_t tensor_parallel_size;   /* >= 1 */
        int64_t pipeline_parallel_size; /* >= 1 */
        int dual_streams;               /* bool: overlap all-reduce with compute */
    } parallel;

    struct {
        int64_t max_num_seqs;           /* 1..65536, default 256 */
        int64_t max_num_batched_tokens; /* 1..1<<24, default 8192 */
        int64_t kv_block_size;          /* power of two in 1..256, default 16 */
        int64_t max_total_tokens;       /* KV cache tokens at most; 0 = what memory allows */
        int enable_prefix_caching;      /* bool, default 1 */
        int enable_chunked_prefill;     /* bool, default 1 */
        int async_scheduling;           /* bool, default 1 */
        int late_scheduling;            /* bool, default 1 */
        int64_t warmup_tokens;          /* -1..1<<24, default -1 (1024 on a GPU backend) */
    } engine;

    struct {
        char *host;                     /* default "127.0.0.1" */
        int64_t port;                   /* 1..65535, default 8000 */
        char *api_key;                  /* "" = no authentication */
        int64_t max_body_bytes;         /* request body limit, default 8 MiB */
        char *tool_call_parser;         /* none|hermes|llama3_json|mistral|deepseek_v3 */
        char *reasoning_parser;         /* none|deepseek_r1|qwen3; none */
    } server;

    struct {
        char **paths;                   /* extra plugin dirs or files, searched first */
        int32_t n_paths;
    } plugins;

    enum zl_log_level log_level;        /* "error" | "warn" | "info" | "debug" | "trace" */
};

/* Allocates a config holding every default.  ZL_ENOMEM on failure. */
ZL_API int zl_config_defaults(struct zl_config **out);

/* Parses and validates `path`.  On any problem (unreadable file, YAML syntax
 * or indentation error, unknown key, duplicate key, wrong type, value out of
 * range) returns ZL_EINVAL/ZL_EIO with zl_last_error() =
 * "FILE:LINE:COLUMN: <what> '<key>'", and *out untouched.  Relative
 * model.path, model.tokenizer, model.chat_template and plugins.paths are
 * resolved against the (absolute) directory of `path`. */
ZL_API int zl_config_load(const char *path, struct zl_config **out);

/* Same, from a string; `name` stands for the file name in messages and
 * path resolution. */
ZL_API int zl_config_load_string(const char *yaml, const char *name, struct zl_config **out);

/* Writes the resolved config as YAML (every key, defaults included). */
ZL_API int zl_config_dump(const struct zl_config *cfg, FILE *out);

/* Typed lookup by dotted key, e.g. "server.port".  ZL_ENOTFOUND for an
 * unknown key, ZL_EINVAL when the key holds another type.  Lists
 * (backend.devices, plugins.paths) are not reachable here. */
ZL_API int zl_config_get_str(const struct zl_config *cfg, const char *key, const char **out);
ZL_API int zl_config_get_i64(const struct zl_config *cfg, const char *key, int64_t *out);
ZL_API int zl_config_get_f64(const struct zl_config *cfg, const char *key, double *out);
ZL_API int zl_config_get_bool(const struct zl_config *cfg, const char *key, int *out);

/* NULL-safe; safe on a half-built config. */
ZL_API void zl_config_free(struct zl_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
