/* Frontend plugins (the OpenAI HTTP server) and the engine service table
 * zlightd hands them.
 *
 *   const struct zl_frontend_ops *fe = zl_registry_find(reg, ZL_PLUGIN_FRONTEND, "openai");
 *   struct zl_frontend_params fp = zl_frontend_default_params();  fp.engine = &api;  fp.port = 8000;
 *   void *srv;  if (fe->start(&fp, &srv) < 0) die(zl_last_error());
 *   wait_for_sigterm();  fe->stop(srv, 30000);  fe->destroy(srv);
 *   // api: zl_frontend_host_api(host) over the engine (zlightd, see below)
 */
#ifndef ZLIGHT_FRONTEND_H
#define ZLIGHT_FRONTEND_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/sampler.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Why a sequence ended.  Append only. */
enum zl_fe_finish {
    ZL_FE_RUNNING = 0,      /* not finished */
    ZL_FE_FINISH_STOP = 1,  /* EOS, a stop token id or a stop string */
    ZL_FE_FINISH_LENGTH = 2,/* max_tokens or max_model_len */
    ZL_FE_FINISH_ABORT = 3, /* cancelled */
    ZL_FE_FINISH_ERROR = 4, /* the engine failed the request (message in `error`) */
};

/* One generated token with its logprobs (when the request asked for them). */
struct zl_fe_token {
    int32_t id;
    float logprob;                          /* NaN when logprobs were not asked */
    int32_t n_top;                          /* entries below, best first */
    int32_t top_ids[ZL_SAMPLE_MAX_LOGPROBS];
    float top_logprobs[ZL_SAMPLE_MAX_LOGPROBS];
};

/* What the engine reports about a request, from its own thread.  Borrowed:
 * valid only during the callback. */
struct zl_fe_output {
    uint32_t size;                          /* sizeof(struct zl_fe_output) */
    int32_t index;                          /* sequence within the request, 0..n-1 */
    const char *text;                       /* new text of that sequence (UTF-8, stop
                                               strings removed), "" when none */
    size_t text_len;
    const struct zl_fe_token *tokens;       /* [n_tokens] tokens behind this text */
    int32_t n_tokens;
    int32_t finish;                         /* enum zl_fe_finish of sequence `index` */
    int32_t done;                           /* 1 on the request's last call: every
                                               sequence finished (or it was cancelled) */
    int32_t n_prompt_tokens;                /* prompt length */
    int32_t n_cached_tokens;                /* prompt tokens found in the prefix cache */
    int32_t n_output_tokens;                /* tokens generated so far, all sequences */
    const char *error;                      /* with ZL_FE_FINISH_ERROR, else NULL */
    /* Prompt logprobs (zl_fe_request.prompt_logprobs), on each sequence's
     * first token: [i] is prompt token i's logprob given those before it
     * ([0] is NaN), the top k of position i - 1 at [i * k ..].  Read them
     * only when `size` covers them (a host before them passes less). */
    int32_t n_prompt_logprobs;              /* n_prompt_tokens, or 0 */
    int32_t prompt_top_k;
    const float *prompt_logprobs;
    const int32_t *prompt_top_ids;
    const float *prompt_top_logprobs;
};

/* Called by the engine thread, in order, for each request; exactly one call
 * has done = 1 and none follow it.  Must not block or call back into the
 * engine api. */
typedef void (*zl_fe_output_fn)(void *user, const struct zl_fe_output *out);

/* One generation request.  Pointers are borrowed; the engine copies what it
 * keeps before submit returns. */
struct zl_fe_request {
    uint32_t size;                          /* sizeof(struct zl_fe_request) */
    const int32_t *prompt;                  /* [n_prompt] token ids */
    int32_t n_prompt;
    struct zl_sampling_params sampling;     /* max_tokens already resolved (>= 1) */
    int32_t skip_special_tokens;            /* 1: drop special tokens from the text */
    int32_t include_stop_str_in_output;     /* 1: keep the matched stop string */
    const char *request_id;                 /* for logs, may be NULL */
    int32_t prompt_logprobs;                /* 1: each prompt token's logprob (zl_fe_output) */
    int32_t prompt_top_logprobs;            /* with it: and the top k (0..20) of each position */
    /* API minor 10 (the host reads it when size covers it) */
    const char *json_schema;                /* NULL, or JSON Schema text the output must match
                                             * (zl_request_opts.json_schema) */
    const char *guide_after;                /* with it: guided only after this text
                                             * (zl_request_opts.guide_after), or NULL */
};
/* What a host takes from a frontend built before prompt_logprobs. */
#define ZL_FE_REQUEST_MIN_SIZE offsetof(struct zl_fe_request, prompt_logprobs)

/* Engine counters for /metrics; totals count since start. */
struct zl_fe_stats {
    uint32_t size;                          /* sizeof(struct zl_fe_stats) */
    int32_t n_running, n_waiting;           /* sequences */
    double kv_usage;                        /* fraction of KV blocks in use, [0, 1] */
    int64_t kv_blocks_total, kv_blocks_free;
    int64_t n_preemptions;
    int64_t prompt_tokens;                  /* prompt tokens computed (cache hits excluded) */
    int64_t generation_tokens;
    int64_t prefix_cache_queries;           /* tokens looked up */
    int64_t prefix_cache_hits;              /* tokens found */
    int64_t n_steps;
    /* API minor 9: read only when size covers it */
    int64_t async_steps;                    /* steps queued ahead of the last one's tokens */
};

/* The engine and text services for a frontend (plugins do not link
 * libzlight).  Every function takes `ctx` first.  Strings and arrays a call
 * returns are released with free_mem.  JSON crosses as text, never as
 * jansson values.  All functions are safe from several threads at once. */
struct zl_engine_api {
    uint32_t size;                          /* sizeof(struct zl_engine_api) */
    void *ctx;
    const char *model_name;                 /* the served name (/v1/models, `model`) */
    const char *model_root;                 /* model path, for /v1/models "root" */
    int64_t max_model_len;                  /* prompt + output tokens */
    int32_t vocab_size;
    int64_t created;                        /* unix time the model was loaded */
    const char *version;                    /* zlight version */
    /* Defaults for parameters a request leaves out (generation_config.json
     * over OpenAI's); max_tokens -1 = up to max_model_len. */
    struct zl_sampling_params defaults;

    /* UTF-8 text -> token ids (*ids malloc'd, may be NULL with n 0).
     * add_special: apply the tokenizer's BOS/EOS template. */
    int (*tokenize)(void *ctx, const char *text, size_t len, int add_special, int32_t **ids,
                    size_t *n_ids);
    /* ids -> NUL-terminated UTF-8 (*text malloc'd).  ZL_EINVAL for an id
     * outside the vocabulary. */
    int (*detokenize)(void *ctx, const int32_t *ids, size_t n_ids, int skip_special,
                      char **text, size_t *len);
    /* Renders the chat template.  messages_json: a JSON array; tools_json and
     * kwargs_json (extra template variables, an object) may be NULL.
     * ZL_EINVAL with the template's message on a render error. */
    int (*render_chat)(void *ctx, const char *messages_json, const char *tools_json,
                       const char *kwargs_json, int add_generation_prompt, char **text);
    void (*free_mem)(void *ptr);
    /* The calling thread's message for the last failed call ("" if none). */
    const char *(*last_error)(void *ctx);

    /* Queues a request; on success *id names it and `cb` will be called
     * (possibly before submit returns: set up `user` first).  ZL_EINVAL (bad parameters; message
     * says which), ZL_ESTATE (engine stopped or dead), ZL_ENOMEM. */
    int (*submit)(void *ctx, const struct zl_fe_request *req, zl_fe_output_fn cb, void *user,
                  uint64_t *id);
    /* Asks the engine to drop a request (its KV blocks are freed at the next
     * step); the final cb (done = 1, finish ABORT) still comes.  Unknown or
     * finished ids are ignored. */
    void (*cancel)(void *ctx, uint64_t id);
    /* ZL_OK while the engine runs; a negative status with the reason once
     * it has died. */
    int (*health)(void *ctx);
    /* Fills the counters (out->size set by the caller). */
    int (*stats)(void *ctx, struct zl_fe_stats *out);
    /* The tokenizer as a JSON object (*json malloc'd, free with free_mem):
     * eos_token, bos_token, pad_token, chat_template, model_max_length,
     * add_bos_token (vLLM's /tokenizer_info).  Read only when `size` covers
     * it (a host before it passes less). */
    int (*tokenizer_info)(void *ctx, char **json);
};
/* What a frontend takes from a host built before tokenizer_info. */
#define ZL_ENGINE_API_MIN_SIZE offsetof(struct zl_engine_api, tokenizer_info)

struct zl_frontend_params {
    uint32_t size;                          /* sizeof(struct zl_frontend_params) */
    const struct zl_engine_api *engine;     /* must outlive the instance */
    const char *host;                       /* address to bind; "127.0.0.1" */
    int32_t port;                           /* 0 = any free port (see bound_port) */
    const char *api_key;                    /* NULL or "": no authentication */
    int64_t max_body_bytes;                 /* larger bodies get 413; 8 MiB */
    int32_t threads;                        /* HTTP worker threads; 0 = 4 */
    const char *tool_call_parser;           /* chat replies' tool calls: "none" (or NULL),
                                               "hermes", "llama3_json", "mistral",
                                               "deepseek_v3" */
    const char *reasoning_parser;           /* chat replies' reasoning: "none" (or NULL),
                                               "deepseek_r1", "qwen3" */
};
/* What a frontend takes from a host built before tool_call_parser. */
#define ZL_FRONTEND_PARAMS_MIN_SIZE offsetof(struct zl_frontend_params, tool_call_parser)

static inline struct zl_frontend_params zl_frontend_default_params(void)
{
    struct zl_frontend_params p = {sizeof p, NULL, "127.0.0.1", 8000, NULL, 8 << 20, 0, NULL, NULL};
    return p;
}

/* What a ZL_PLUGIN_FRONTEND registration provides. */
struct zl_frontend_ops {
    uint32_t size;                          /* sizeof(struct zl_frontend_ops) */
    const char *description;
    /* Binds and starts serving in background threads.  ZL_EIO when the
     * address cannot be bound, ZL_EINVAL for bad params. */
    int (*start)(const struct zl_frontend_params *p, void **instance);
    /* Port actually bound (useful with port 0). */
    int32_t (*bound_port)(void *instance);
    /* Stops accepting, lets in-flight requests finish for up to grace_ms,
     * cancels the rest and closes every connection.  Returns when no engine
     * callback can reach the instance any more. */
    void (*stop)(void *instance, int32_t grace_ms);
    /* Frees a stopped (or never started) instance; NULL-safe. */
    void (*destroy)(void *instance);
};

/* ---- the core side: struct zl_engine_api over engine.h, tokenizer.h and
 * chat.h (libzlight; zlightd builds it, plugins never call these) ---- */

struct zl_engine;
struct zl_tokenizer;
struct zl_chat_template;
struct zl_output;
struct zl_frontend_host;

struct zl_frontend_host_params {
    const struct zl_tokenizer *tokenizer;   /* required; outlives the host */
    const char *chat_template_path;         /* a .jinja file overriding the tokenizer's
                                               template; NULL/"" = the tokenizer's */
    const char *model_name;                 /* served name; required */
    const char *model_root;                 /* model path (informative), may be NULL */
    int64_t max_model_len;                  /* as the engine's scheduler has it */
    const char *generation_config;          /* generation_config.json or its directory,
                                               NULL = none: OpenAI's defaults */
};

/* Creates the host (no engine yet).  ZL_EINVAL (missing tokenizer/name, a
 * chat template that does not compile), ZL_ENOMEM.  A model without a chat
 * template still serves completions; chat requests then fail with 400. */
ZL_API int zl_frontend_host_create(const struct zl_frontend_host_params *p,
                                   struct zl_frontend_host **out);
/* The engine's output callback: set zl_engine_params.on_output to this and
 * on_output_user to the host before zl_engine_create. */
ZL_API void zl_frontend_host_on_output(const struct zl_output *out, void *host);
/* Attaches the engine (before the api is used). */
ZL_API void zl_frontend_host_set_engine(struct zl_frontend_host *h, struct zl_engine *e);
/* The table to hand to the frontend; valid while h lives. */
ZL_API const struct zl_engine_api *zl_frontend_host_api(struct zl_frontend_host *h);
/* NULL-safe; after the frontend stopped and the engine was freed. */
ZL_API void zl_frontend_host_free(struct zl_frontend_host *h);

struct zl_config;
struct zl_registry;

/* zlightd's serve mode: opens cfg's model (backend and model plugins from
 * `reg`, the registry zlightd already loaded; NULL = load them here), weights,
 * tokenizer and engine, starts `fe` on server.host:port and blocks until
 * SIGINT or SIGTERM; then stops admitting, lets requests finish for
 * `grace_ms`, cancels the rest and frees everything.  Must be called before
 * the process starts other threads (it blocks those signals for all of
 * them).  ZL_OK after a clean stop, else a negative status with the reason
 * (model, tokenizer, bind, ...) in zl_last_error(). */
ZL_API int zl_frontend_serve(const struct zl_config *cfg, const struct zl_registry *reg,
                             const struct zl_frontend_ops *fe, int32_t grace_ms);

#ifdef __cplusplus
}
#endif
#endif
