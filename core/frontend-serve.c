/* zlightd's serve mode: config -> model, tokenizer, engine, the engine api
 * and the frontend plugin; then wait for SIGINT/SIGTERM and stop in order
 * (frontend, engine, host, tokenizer, model). */
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlight/backend.h>
#include <zlight/config.h>
#include <zlight/engine.h>
#include <zlight/frontend.h>
#include <zlight/hf_config.h>
#include <zlight/log.h>
#include <zlight/tokenizer.h>

struct serve {
    struct zl_engine_model *model;
    struct zl_tokenizer *tok;
    struct zl_frontend_host *host;
    struct zl_engine *engine;
    char *name;
};

static void serve_free(struct serve *s)
{
    zl_engine_free(s->engine);
    zl_frontend_host_free(s->host);
    zl_tokenizer_free(s->tok);
    zl_engine_model_free(s->model);
    free(s->name);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* engine.warmup_tokens, -1 resolved: a 1024-token prompt on a device
 * backend; none on a host-memory one (the CPU loads nothing lazily, and a
 * prompt there costs seconds of startup). */
static int32_t warmup_tokens(const struct zl_config *cfg, const struct zl_backend_ops *be)
{
    if (cfg->engine.warmup_tokens >= 0)
        return (int32_t)cfg->engine.warmup_tokens;
    return ZL_BACKEND_ON_HOST(be) ? 0 : 1024;
}

/* Model, tokenizer, host and engine from the config. */
static int serve_open(const struct zl_config *cfg, const struct zl_registry *reg, struct serve *s)
{
    const char *path = cfg->model.path;
    if (!*path)
        return zl_error(ZL_EINVAL, "%s: model.path is required to serve", cfg->file);
    struct zl_engine_model_params mp = zl_engine_model_default_params();
    mp.model_path = path;
    mp.backend = cfg->backend.name;
    mp.plugin_paths = (const char *const *)cfg->plugins.paths;
    mp.n_plugin_paths = cfg->plugins.n_paths;
    mp.registry = reg;
    mp.dummy = strcmp(cfg->model.weights, "dummy") == 0;
    mp.seed = (uint64_t)cfg->model.seed;
    mp.threads = (int32_t)cfg->backend.threads;
    mp.memory_utilization = cfg->backend.gpu_memory_utilization;   /* device backends only */
    int64_t max_tokens = cfg->engine.max_total_tokens;
    if (max_tokens > 0)
        mp.kv_tokens = max_tokens;     /* a host backend reserves no more than this */
    if (strcmp(cfg->model.dtype, "auto") && zl_dtype_parse(cfg->model.dtype, &mp.dtype) < 0)
        return zl_error_wrap(ZL_EINVAL, "model.dtype");
    struct zl_sched_params sp = zl_sched_default_params();
    sp.max_num_batched_tokens = (int32_t)cfg->engine.max_num_batched_tokens;
    sp.max_num_seqs = (int32_t)cfg->engine.max_num_seqs;
    sp.enable_prefix_caching = cfg->engine.enable_prefix_caching;
    if (!cfg->engine.enable_chunked_prefill)
        sp.max_prefill_chunk = 0;
    int rc = zl_engine_model_open(&mp, &sp, &s->model);
    if (rc < 0)
        return rc;
    const struct zl_hf_config *hc = zl_engine_model_config(s->model);
    sp.max_model_len = cfg->model.max_model_len > 0 ? (int32_t)cfg->model.max_model_len
                       : hc->max_position_embeddings > 0 ? (int32_t)hc->max_position_embeddings
                                                         : sp.max_model_len;
    if ((rc = zl_tokenizer_load(*cfg->model.tokenizer ? cfg->model.tokenizer : path, &s->tok)) < 0)
        return zl_error_wrap(rc, "tokenizer");

    char *copy = strdup(path);
    if (!copy)
        return zl_error(ZL_ENOMEM, "out of memory");
    s->name = strdup(*cfg->model.served_name ? cfg->model.served_name : basename(copy));
    free(copy);
    if (!s->name)
        return zl_error(ZL_ENOMEM, "out of memory");

    struct zl_engine_params ep = zl_engine_default_params();
    ep.sched = sp;
    zl_engine_model_fill(s->model, &ep);   /* caps max_model_len at the model's */
    ep.block_size = (int32_t)cfg->engine.kv_block_size;
    if (max_tokens > 0) {
        if (max_tokens < ep.sched.max_model_len)
            return zl_error(ZL_EINVAL, "%s: engine.max_total_tokens %lld holds less than one sequence "
                            "of max_model_len %d; raise it or lower model.max_model_len", cfg->file,
                            (long long)max_tokens, (int)ep.sched.max_model_len);
        ep.max_kv_blocks = (int32_t)((max_tokens + ep.block_size - 1) / ep.block_size);
    }
    ep.tokenizer = s->tok;
    ep.seed = (uint64_t)cfg->model.seed;
    ep.device_sampling = cfg->backend.device_sampling;
    ep.device_graphs = cfg->backend.cuda_graphs;
    ep.async_scheduling = cfg->engine.async_scheduling;
    ep.late_scheduling = cfg->engine.late_scheduling;
    ep.warmup_tokens = warmup_tokens(cfg, ep.backend);

    struct zl_frontend_host_params hp = {
        .tokenizer = s->tok,
        .chat_template_path = cfg->model.chat_template,
        .model_name = s->name,
        .model_root = path,
        .max_model_len = ep.sched.max_model_len,
        .generation_config = is_dir(path) ? path : NULL,
    };
    if ((rc = zl_frontend_host_create(&hp, &s->host)) < 0)
        return rc;
    ep.on_output = zl_frontend_host_on_output;
    ep.on_output_user = s->host;
    if ((rc = zl_engine_create(&ep, &s->engine)) < 0)
        return zl_error_wrap(rc, "engine");
    zl_frontend_host_set_engine(s->host, s->engine);
    return ZL_OK;
}

int zl_frontend_serve(const struct zl_config *cfg, const struct zl_registry *reg,
                      const struct zl_frontend_ops *fe, int32_t grace_ms)
{
    if (!cfg || !fe || fe->size < sizeof *fe || !fe->start || !fe->stop || !fe->destroy)
        return zl_error(ZL_EINVAL, "serve: a config and a complete frontend are required");
    /* Every thread started from here on inherits the mask; sigwait below
     * is then the only receiver. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct serve s;
    memset(&s, 0, sizeof s);
    int rc = serve_open(cfg, reg, &s);
    void *inst = NULL;
    if (rc == 0) {
        struct zl_frontend_params fp = zl_frontend_default_params();
        fp.engine = zl_frontend_host_api(s.host);
        fp.host = cfg->server.host;
        fp.port = (int32_t)cfg->server.port;
        fp.api_key = cfg->server.api_key;
        fp.max_body_bytes = cfg->server.max_body_bytes;
        fp.tool_call_parser = cfg->server.tool_call_parser;
        fp.reasoning_parser = cfg->server.reasoning_parser;
        rc = fe->start(&fp, &inst);
    }
    if (rc == 0) {
        ZL_INFO("zlightd", "serving %s (max_model_len %lld) on %s:%d; SIGTERM or SIGINT stops",
                s.name, (long long)zl_frontend_host_api(s.host)->max_model_len, cfg->server.host,
                (int)fe->bound_port(inst));
        int sig = 0;
        sigwait(&set, &sig);
        ZL_INFO("zlightd", "%s: stopping (grace %d ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
                (int)grace_ms);
        fe->stop(inst, grace_ms);
        fe->destroy(inst);
    }
    serve_free(&s);
    return rc;
}
