/* The serving engine: requests in, streamed tokens out.  One engine thread
 * runs scheduler -> model forward -> sampler -> per-request outputs.
 *
 *   struct zl_engine_params ep = zl_engine_default_params();  ep.model = m;  ...
 *   struct zl_engine *e;  zl_engine_create(&ep, &e);
 *   struct zl_sampling_params sp = zl_sampling_default_params();  uint64_t id;
 *   zl_engine_submit(e, prompt, n_prompt, &sp, NULL, &id);
 *   struct zl_output o;  while (zl_engine_wait(e, &o, -1) > 0 && !o.finish) zl_output_release(&o);
 */
#ifndef ZLIGHT_ENGINE_H
#define ZLIGHT_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/backend.h>
#include <zlight/model.h>
#include <zlight/sampler.h>
#include <zlight/scheduler.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_mem;
struct zl_tokenizer;

enum zl_finish_reason {
    ZL_FINISH_NONE = 0,     /* more to come */
    ZL_FINISH_STOP = 1,     /* EOS, a stop token id or a stop string */
    ZL_FINISH_LENGTH = 2,   /* max_tokens, max_model_len or the KV pool */
    ZL_FINISH_ABORT = 3,    /* cancelled, or the engine failed / shut down */
};

/* One event of one sequence: a new token (usually), its text, and at the
 * end the finish reason.  Pointers stay valid until zl_output_release (or
 * the end of the callback). */
struct zl_output {
    uint64_t request_id;
    void *user;                     /* as given to zl_engine_submit */
    int32_t index;                  /* sequence within the request, 0 .. n-1 */
    int32_t n_tokens;               /* 0 or 1: `token` is new */
    int32_t token;
    const char *text;               /* new text (a tokenizer is attached), else NULL */
    size_t text_len;
    float logprob;                  /* when the request asked for logprobs */
    int32_t n_top;
    const int32_t *top_ids;         /* [n_top] best first */
    const float *top_logprobs;      /* [n_top] */
    enum zl_finish_reason finish;
    int32_t stop_token;             /* STOP by a token id: that id, else -1 */
    int32_t stop_string;            /* STOP by a stop string: its index, else -1 */
    int32_t n_prompt_tokens;
    int32_t n_cached_tokens;        /* prompt tokens found in the prefix cache */
    int32_t n_output_tokens;        /* generated so far, this one included */
    /* prompt logprobs (zl_request_opts.prompt_logprobs), on each sequence's
     * first token: [i] is prompt token i's logprob given the tokens before
     * it ([0], with nothing before it, is NaN); the top k of position i - 1
     * at [i * k ..] */
    int32_t n_prompt_logprobs;      /* n_prompt_tokens, or 0 */
    const float *prompt_logprobs;
    int32_t prompt_top_k;
    const int32_t *prompt_top_ids;
    const float *prompt_top_logprobs;
    void *priv;                     /* owned by the engine */
};

typedef void (*zl_output_fn)(const struct zl_output *out, void *user);

struct zl_engine_params {
    /* the model, created with weights placed through `mem` (frozen) */
    const struct zl_model_ops *model_ops;
    struct zl_model *model;
    const struct zl_backend_ops *backend;
    struct zl_bctx *bctx;
    int32_t device;
    /* The model's memory manager: FROZEN (the engine plans the workspace
     * for a full step and gives the rest to the KV pool) or PLANNED by the
     * caller (workspace big enough, KV blocks of block_size tokens). */
    struct zl_mem *mem;
    int32_t block_size;             /* tokens per KV block; 16 */
    int32_t max_kv_blocks;          /* use at most this many pool blocks, 0 = all (tests); 0 */
    struct zl_sched_params sched;   /* zl_sched_default_params() (budget, max_num_seqs, max_model_len, ...) */
    const struct zl_tokenizer *tokenizer;   /* optional: text deltas and stop strings */
    const int32_t *eos_ids;         /* [n_eos] EOS ids (generation_config.json; several) */
    int32_t n_eos;
    uint64_t seed;                  /* seeds requests that bring none (a counter on it); 0 */
    int32_t threaded;               /* 1: own engine thread; 0: the caller runs zl_engine_step; 1 */
    zl_output_fn on_output;         /* called on the engine thread per event; NULL = queue for
                                     * zl_engine_wait */
    void *on_output_user;
    int32_t device_sampling;        /* 1: sample on the backend when it has a sample op (the
                                     * logits stay on the device); 0: the CPU sampler; 1 */
    int32_t device_graphs;          /* 1: decode steps through the backend's graphs when it has
                                     * them (CUDA graphs), padded to zl_engine_graph_size rows
                                     * (one KV block is then held for the pad rows); 0: every
                                     * op queued each step; 1 */
    int32_t async_scheduling;       /* 1: queue each step before the last one's sampled tokens
                                     * are back, when the backend and model can (device
                                     * sampling); the device then never
                                     * waits for the host's turn between steps; 1 */
    int32_t late_scheduling;        /* 1: with async scheduling, schedule the next step shortly
                                     * before a steady decode step is expected to end, so
                                     * requests arriving meanwhile join it (engine-pace.c); 1 */
    int32_t warmup_tokens;          /* > 0: zl_engine_create runs one request of this many
                                     * tokens (capped to fit) and one decode step before it
                                     * returns, its events dropped and the counters started
                                     * after it, so one-time costs (lazy kernel loads, GEMM
                                     * plans) do not land on the first request; 0 */
};

ZL_API struct zl_engine_params zl_engine_default_params(void);

/* The rows a graphed decode step of n sequences runs as: 1, 2, 4, 8, then
 * the next multiple of 8, at most max (min of max_num_seqs and
 * max_num_batched_tokens); n itself when n >= max. */
ZL_API int32_t zl_engine_graph_size(int32_t n, int32_t max);

/* Histogram of latencies in seconds, cumulative since the engine started
 * (Prometheus style; bounds from zl_engine_hist_bounds). */
#define ZL_HIST_BUCKETS 24
struct zl_histogram {
    uint64_t count;
    double sum;
    uint64_t buckets[ZL_HIST_BUCKETS];  /* observations <= bounds[i] (last: +Inf) */
};

ZL_API const double *zl_engine_hist_bounds(void);
/* Approximate quantile q (0..1) by linear interpolation inside a bucket. */
ZL_API double zl_histogram_quantile(const struct zl_histogram *h, double q);

struct zl_engine_stats {
    int32_t n_running, n_waiting;
    int64_t n_preemptions;
    int32_t kv_blocks_total, kv_blocks_used;
    double kv_usage;                /* used / total */
    double prefix_hit_rate;
    int64_t prefix_queried_tokens, prefix_hit_tokens;
    int64_t prompt_tokens;          /* prompt tokens of admitted requests */
    int64_t generation_tokens;
    int64_t requests_submitted, requests_finished;
    int64_t n_steps;
    int32_t max_model_len;
    struct zl_histogram ttft, tpot, itl, e2e;
    int64_t graph_steps;            /* decode steps replayed as one device graph */
    int64_t async_steps;            /* steps queued before the step before had its tokens back */
};

struct zl_engine;

/* Plans memory if needed, builds the scheduler and, with `threaded`,
 * starts the engine thread.  ZL_EINVAL naming the missing or bad param;
 * ZL_ENOMEM.  *out is NULL on failure. */
ZL_API int zl_engine_create(const struct zl_engine_params *p, struct zl_engine **out);
/* Stops the thread; requests still running end without further events.
 * NULL-safe. */
ZL_API void zl_engine_free(struct zl_engine *e);

/* Queues a request (copies the prompt and the sampling params).  Any
 * thread.  ZL_EINVAL: bad params (zl_sampling_validate), an empty prompt,
 * ids outside the vocabulary, a prompt that cannot fit (max_model_len, KV
 * pool), stop strings without a tokenizer; ZL_ESTATE after a fatal engine
 * error; ZL_ENOMEM. */
ZL_API int zl_engine_submit(struct zl_engine *e, const int32_t *prompt, int32_t n_prompt,
                            const struct zl_sampling_params *sp, void *user, uint64_t *id);

/* How a request's text is made (a tokenizer is attached), as vLLM's
 * SamplingParams of the same names. */
struct zl_request_opts {
    uint32_t size;                          /* sizeof(struct zl_request_opts) */
    int32_t skip_special_tokens;            /* 1 (default): special tokens add no text */
    int32_t include_stop_str_in_output;     /* 1: the text keeps the stop string that ended it,
                                             * and the text of a stop token id or EOS; 0 */
    int32_t prompt_logprobs;                /* -1 (default): none; k in 0..20: each prompt
                                             * token's logprob and the top k (zl_output); the
                                             * prompt is computed whole, not from the prefix
                                             * cache, with its rows' logits taking turns with
                                             * the step's sampled rows */
    const char *json_schema;                /* NULL: none.  The output is JSON matching this
                                             * JSON Schema (text; zlight/guide.h lists the
                                             * keywords): each step samples only among the
                                             * tokens that keep it so, and EOS or a stop token
                                             * id comes once it is whole.  "{\"type\":
                                             * \"object\"}" is OpenAI's JSON mode.  Needs a
                                             * tokenizer; ZL_EINVAL / ZL_EUNSUPPORTED name a
                                             * bad schema */
    const char *guide_after;                /* NULL: json_schema guides from the first output
                                             * token.  Else the output is free until its text
                                             * holds this string (a reasoning model's
                                             * "</think>", at most 63 bytes), and the schema
                                             * guides what follows it */
};
/* What submit takes from a caller built before json_schema. */
#define ZL_REQUEST_OPTS_MIN_SIZE offsetof(struct zl_request_opts, json_schema)
ZL_API struct zl_request_opts zl_request_default_opts(void);
/* zl_engine_submit with opts (NULL: the defaults). */
ZL_API int zl_engine_submit_opts(struct zl_engine *e, const int32_t *prompt, int32_t n_prompt,
                                 const struct zl_sampling_params *sp,
                                 const struct zl_request_opts *opts, void *user, uint64_t *id);
/* Cancels a request: its sequences end with ABORT at the next step and
 * their blocks are freed.  ZL_ENOTFOUND for an unknown or finished id. */
ZL_API int zl_engine_cancel(struct zl_engine *e, uint64_t id);

/* Without the thread: one iteration.  Returns the number of requests
 * still unfinished (0: idle), or a negative status (the forward failed:
 * every request then ends with ABORT). */
ZL_API int zl_engine_step(struct zl_engine *e);

/* Next queued event (no on_output): 1 with *out filled (release it), 0 on
 * timeout (timeout_ms < 0 waits forever; 0 polls).  Without the thread,
 * a wait other than a poll runs steps itself while it has nothing to
 * return, and returns 0 once no request is left. */
ZL_API int zl_engine_wait(struct zl_engine *e, struct zl_output *out, int timeout_ms);
ZL_API void zl_output_release(struct zl_output *out);

/* Counters and histograms as of the last step.  Any thread. */
ZL_API void zl_engine_get_stats(struct zl_engine *e, struct zl_engine_stats *out);

/* ---- a model loaded for the engine (plugins, backend, weights, memory) ---- */

struct zl_engine_model_params {
    const char *model_path;             /* HF directory, .safetensors or .gguf; required */
    const char *backend;                /* backend name or "auto"; "cpu" */
    const char *const *plugin_paths;    /* searched before $ZLIGHT_PLUGIN_PATH; NULL */
    int32_t n_plugin_paths;
    int32_t dummy;                      /* seeded random weights from config.json; 0 */
    uint64_t seed;                      /* dummy weights' seed; 0 */
    enum zl_dtype dtype;                /* weights; ZL_DTYPE_COUNT = the checkpoint's */
    int32_t threads;                    /* backend threads, 0 = one per core */
    int64_t kv_tokens;                  /* KV tokens at least (f32 bound; slack joins the pool); 65536 */
    double memory_utilization;          /* (0, 1]: reserve this share of the device's memory
                                         * instead (vLLM's gpu_memory_utilization); 0 = off;
                                         * ignored by host-memory (CPU) backends */
    const struct zl_registry *registry; /* plugins already loaded (zlightd's): used instead of
                                         * loading them again, plugin_paths ignored; NULL */
};

struct zl_engine_model;
struct zl_hf_config;
struct zl_registry;

ZL_API struct zl_engine_model_params zl_engine_model_default_params(void);
/* Loads plugins, opens the backend, loads the weights and reserves one
 * memory region sized for `sched` steps plus the KV budget (frozen, not
 * planned: zl_engine_create plans it).  Errors name the file, plugin or
 * tensor; *out is NULL on failure. */
ZL_API int zl_engine_model_open(const struct zl_engine_model_params *p,
                                const struct zl_sched_params *sched, struct zl_engine_model **out);
ZL_API void zl_engine_model_free(struct zl_engine_model *m);    /* NULL-safe; after the engines */
/* Sets ep's model, backend and memory members, its EOS ids (generation_config.json,
 * else config.json) and caps ep->sched.max_model_len at max_position_embeddings. */
ZL_API void zl_engine_model_fill(struct zl_engine_model *m, struct zl_engine_params *ep);
ZL_API const struct zl_hf_config *zl_engine_model_config(const struct zl_engine_model *m);

#ifdef __cplusplus
}
#endif
#endif
