/* struct zl_engine_api over the engine, the tokenizer and the chat
 * template: what zlightd hands to the frontend plugin.  JSON crosses the
 * ABI as text and is parsed here with jansson. */
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/chat.h>
#include <zlight/engine.h>
#include <zlight/frontend.h>
#include <zlight/hf_config.h>
#include <zlight/log.h>
#include <zlight/tokenizer.h>
#include <zlight/zlight.h>

struct zl_frontend_host {
    struct zl_engine_api api;
    struct zl_engine *engine;
    const struct zl_tokenizer *tok;
    struct zl_chat_template *chat;      /* NULL: the model has none */
    char *model_name, *model_root;
    atomic_int dead;
};

/* One submitted request: the frontend's callback and the sequences left. */
struct fh_req {
    zl_fe_output_fn cb;
    void *user;
    int32_t n, n_finished;
};

static int fh_tokenize(void *ctx, const char *text, size_t len, int add_special, int32_t **ids,
                       size_t *n)
{
    struct zl_frontend_host *h = ctx;
    return zl_tokenizer_encode(h->tok, text, len, add_special ? ZL_TOK_ADD_SPECIAL : 0, ids, n);
}

static int fh_detokenize(void *ctx, const int32_t *ids, size_t n, int skip_special, char **text,
                         size_t *len)
{
    struct zl_frontend_host *h = ctx;
    int32_t vocab = zl_tokenizer_n_vocab(h->tok);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return zl_error(ZL_EINVAL, "token id %d is outside the vocabulary (0..%d)", ids[i],
                            vocab - 1);
    return zl_tokenizer_decode(h->tok, ids, n, skip_special ? ZL_DETOK_SKIP_SPECIAL : 0, text, len);
}

static json_t *load_json(const char *s, const char *what)
{
    if (!s)
        return NULL;
    json_error_t je;
    json_t *v = json_loads(s, 0, &je);
    if (!v)
        zl_error(ZL_EINVAL, "%s: %s", what, je.text);
    return v;
}

static int fh_render_chat(void *ctx, const char *messages, const char *tools, const char *kwargs,
                          int add_generation_prompt, char **out)
{
    struct zl_frontend_host *h = ctx;
    *out = NULL;
    if (!h->chat)
        return zl_error(ZL_EINVAL, "this model has no chat template (set model.chat_template)");
    json_t *m = load_json(messages, "messages"), *t = load_json(tools, "tools"),
           *k = load_json(kwargs, "chat_template_kwargs");
    int rc = ZL_EINVAL;
    if (m && (!tools || t) && (!kwargs || k)) {
        struct zl_chat_params p;
        zl_chat_default_params(&p);
        p.messages = m;
        p.tools = t;
        p.vars = k;
        p.add_generation_prompt = add_generation_prompt != 0;
        rc = zl_chat_template_render(h->chat, &p, out);
    }
    json_decref(m);
    json_decref(t);
    json_decref(k);
    return rc;
}

static void fh_free_mem(void *p)
{
    free(p);
}

static const char *fh_last_error(void *ctx)
{
    (void)ctx;
    return zl_last_error();
}

static int fh_submit(void *ctx, const struct zl_fe_request *r, zl_fe_output_fn cb, void *user,
                     uint64_t *id)
{
    struct zl_frontend_host *h = ctx;
    if (!h->engine)
        return zl_error(ZL_ESTATE, "the engine is not running");
    if (!r || r->size < ZL_FE_REQUEST_MIN_SIZE || !cb)
        return zl_error(ZL_EINVAL, "bad request struct");
    struct fh_req *q = calloc(1, sizeof *q);
    if (!q)
        return zl_error(ZL_ENOMEM, "out of memory");
    q->cb = cb;
    q->user = user;
    q->n = r->sampling.n > 0 ? r->sampling.n : 1;
    struct zl_request_opts ro = zl_request_default_opts();
    ro.skip_special_tokens = r->skip_special_tokens;
    ro.include_stop_str_in_output = r->include_stop_str_in_output;
    if (r->size >= offsetof(struct zl_fe_request, prompt_top_logprobs) + sizeof(int32_t) &&
        r->prompt_logprobs)
        ro.prompt_logprobs = r->prompt_top_logprobs;
    if (r->size >= offsetof(struct zl_fe_request, json_schema) + sizeof(r->json_schema))
        ro.json_schema = r->json_schema;
    if (r->size >= offsetof(struct zl_fe_request, guide_after) + sizeof(r->guide_after))
        ro.guide_after = r->guide_after;
    int rc = zl_engine_submit_opts(h->engine, r->prompt, r->n_prompt, &r->sampling, &ro, q, id);
    if (rc < 0) {
        if (rc == ZL_ESTATE)
            atomic_store(&h->dead, 1);
        free(q);
    }
    return rc;
}

/* A JSON string, or null for NULL (or text that is not UTF-8). */
static json_t *str_or_null(const char *s)
{
    json_t *v = s ? json_string(s) : NULL;
    return v ? v : json_null();
}

static int fh_tokenizer_info(void *ctx, char **json)
{
    struct zl_frontend_host *h = ctx;
    json_t *o = json_pack("{s:o,s:o,s:n,s:o,s:I,s:b}", "eos_token",
                          str_or_null(zl_tokenizer_eos_token(h->tok)), "bos_token",
                          str_or_null(zl_tokenizer_bos_token(h->tok)), "pad_token", "chat_template",
                          str_or_null(zl_chat_template_source(h->chat)), "model_max_length",
                          (json_int_t)h->api.max_model_len, "add_bos_token",
                          zl_tokenizer_add_bos(h->tok));
    *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return *json ? ZL_OK : zl_error(ZL_ENOMEM, "out of memory");
}

static void fh_cancel(void *ctx, uint64_t id)
{
    struct zl_frontend_host *h = ctx;
    if (h->engine && zl_engine_cancel(h->engine, id) < 0)
        zl_clear_error();   /* finished meanwhile: nothing to do */
}

static int fh_health(void *ctx)
{
    struct zl_frontend_host *h = ctx;
    if (!h->engine)
        return zl_error(ZL_ESTATE, "the engine is not running");
    if (atomic_load(&h->dead))
        return zl_error(ZL_ESTATE, "the engine failed");
    return ZL_OK;
}

static int fh_stats(void *ctx, struct zl_fe_stats *out)
{
    struct zl_frontend_host *h = ctx;
    /* a frontend built before async_steps passes the shorter struct */
    if (!h->engine || !out || out->size < offsetof(struct zl_fe_stats, async_steps))
        return ZL_EINVAL;
    struct zl_engine_stats s;
    zl_engine_get_stats(h->engine, &s);
    out->n_running = s.n_running;
    out->n_waiting = s.n_waiting;
    out->kv_usage = s.kv_usage;
    out->kv_blocks_total = s.kv_blocks_total;
    out->kv_blocks_free = s.kv_blocks_total - s.kv_blocks_used;
    out->n_preemptions = s.n_preemptions;
    out->prompt_tokens = s.prompt_tokens;
    out->generation_tokens = s.generation_tokens;
    out->prefix_cache_queries = s.prefix_queried_tokens;
    out->prefix_cache_hits = s.prefix_hit_tokens;
    out->n_steps = s.n_steps;
    if (out->size >= sizeof *out)
        out->async_steps = s.async_steps;
    return ZL_OK;
}

void zl_frontend_host_on_output(const struct zl_output *o, void *host)
{
    (void)host;
    struct fh_req *q = o->user;
    if (!q)
        return;
    struct zl_fe_token t;
    memset(&t, 0, sizeof t);
    t.id = o->token;
    t.logprob = o->logprob;
    t.n_top = o->n_top < ZL_SAMPLE_MAX_LOGPROBS ? o->n_top : ZL_SAMPLE_MAX_LOGPROBS;
    for (int32_t i = 0; i < t.n_top; i++) {
        t.top_ids[i] = o->top_ids[i];
        t.top_logprobs[i] = o->top_logprobs[i];
    }
    int finished = o->finish != ZL_FINISH_NONE;
    if (finished)
        q->n_finished++;
    struct zl_fe_output fo = {
        .size = sizeof fo,
        .index = o->index,
        .text = o->text ? o->text : "",
        .text_len = o->text ? o->text_len : 0,
        .tokens = &t,
        .n_tokens = o->n_tokens > 0 ? 1 : 0,
        .finish = o->finish == ZL_FINISH_STOP     ? ZL_FE_FINISH_STOP
                  : o->finish == ZL_FINISH_LENGTH ? ZL_FE_FINISH_LENGTH
                  : o->finish == ZL_FINISH_ABORT  ? ZL_FE_FINISH_ABORT
                                                  : ZL_FE_RUNNING,
        .done = finished && q->n_finished >= q->n,
        .n_prompt_tokens = o->n_prompt_tokens,
        .n_cached_tokens = o->n_cached_tokens,
        .n_output_tokens = o->n_output_tokens,
        .n_prompt_logprobs = o->n_prompt_logprobs,
        .prompt_top_k = o->prompt_top_k,
        .prompt_logprobs = o->prompt_logprobs,
        .prompt_top_ids = o->prompt_top_ids,
        .prompt_top_logprobs = o->prompt_top_logprobs,
    };
    q->cb(q->user, &fo);
    if (fo.done)
        free(q);
}

/* generation_config.json values become the defaults, as vLLM does.  Our
 * parser reports HF's defaults for absent keys, so only values that differ
 * from them count as set. */
static void apply_generation_config(const char *path, struct zl_sampling_params *sp)
{
    struct zl_hf_generation_config gc;
    if (!path || !*path || zl_hf_generation_config_load(path, &gc) < 0) {
        zl_clear_error();
        return;
    }
    if (gc.temperature != 1.0)
        sp->temperature = (float)gc.temperature;
    if (gc.top_p != 1.0)
        sp->top_p = (float)gc.top_p;
    if (gc.top_k != 50)
        sp->top_k = (int32_t)gc.top_k;
    if (gc.repetition_penalty != 1.0)
        sp->repetition_penalty = (float)gc.repetition_penalty;
    if (gc.max_new_tokens > 0)
        sp->max_tokens = (int32_t)gc.max_new_tokens;
    ZL_INFO("frontend", "defaults from %s: temperature %g, top_p %g, top_k %d, repetition_penalty %g",
            path, sp->temperature, sp->top_p, sp->top_k, sp->repetition_penalty);
}

static int load_chat(struct zl_frontend_host *h, const char *path)
{
    int rc;
    if (path && *path) {
        rc = zl_chat_template_load_file(path, &h->chat);
    } else {
        const char *src = zl_tokenizer_chat_template(h->tok);
        if (!src) {
            ZL_WARN("frontend", "the model has no chat template: /v1/chat/completions will fail");
            return ZL_OK;
        }
        rc = zl_chat_template_compile(src, (size_t)-1, &h->chat);
    }
    if (rc == 0)
        rc = zl_chat_template_set_special(h->chat, zl_tokenizer_bos_token(h->tok),
                                          zl_tokenizer_eos_token(h->tok));
    return rc < 0 ? zl_error_wrap(rc, "chat template") : rc;
}

int zl_frontend_host_create(const struct zl_frontend_host_params *p, struct zl_frontend_host **out)
{
    *out = NULL;
    if (!p || !p->tokenizer || !p->model_name)
        return zl_error(ZL_EINVAL, "frontend host: a tokenizer and a model name are required");
    struct zl_frontend_host *h = calloc(1, sizeof *h);
    if (!h)
        return zl_error(ZL_ENOMEM, "frontend host: out of memory");
    h->tok = p->tokenizer;
    h->model_name = strdup(p->model_name);
    h->model_root = strdup(p->model_root ? p->model_root : p->model_name);
    if (!h->model_name || !h->model_root) {
        zl_frontend_host_free(h);
        return zl_error(ZL_ENOMEM, "frontend host: out of memory");
    }
    int rc = load_chat(h, p->chat_template_path);
    if (rc < 0) {
        zl_frontend_host_free(h);
        return rc;
    }
    struct zl_engine_api *a = &h->api;
    a->size = sizeof *a;
    a->ctx = h;
    a->model_name = h->model_name;
    a->model_root = h->model_root;
    a->max_model_len = p->max_model_len;
    a->vocab_size = zl_tokenizer_n_vocab(p->tokenizer);
    a->created = (int64_t)time(NULL);
    a->version = zl_version();
    a->defaults = zl_sampling_default_params();
    apply_generation_config(p->generation_config, &a->defaults);
    a->tokenize = fh_tokenize;
    a->detokenize = fh_detokenize;
    a->render_chat = fh_render_chat;
    a->free_mem = fh_free_mem;
    a->last_error = fh_last_error;
    a->submit = fh_submit;
    a->cancel = fh_cancel;
    a->health = fh_health;
    a->stats = fh_stats;
    a->tokenizer_info = fh_tokenizer_info;
    *out = h;
    return ZL_OK;
}

void zl_frontend_host_set_engine(struct zl_frontend_host *h, struct zl_engine *e)
{
    h->engine = e;
}

const struct zl_engine_api *zl_frontend_host_api(struct zl_frontend_host *h)
{
    return &h->api;
}

void zl_frontend_host_free(struct zl_frontend_host *h)
{
    if (!h)
        return;
    zl_chat_template_free(h->chat);
    free(h->model_name);
    free(h->model_root);
    free(h);
}
