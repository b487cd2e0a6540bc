/* Request parsing and validation for /v1/completions, /v1/chat/completions,
 * /tokenize and /detokenize.  Every check fails with OpenAI's error shape;
 * nothing here trusts the body. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oa-impl.h"

int oa_fail(struct oa_err *e, int status, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = param;
    e->code = NULL;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    return -status;
}

json_t *oa_load_object(const char *body, size_t len, struct oa_err *e)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, 0, &je);
    if (!root) {
        oa_fail(e, 400, NULL, "Invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        oa_fail(e, 400, NULL, "The request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Field access: a missing key and JSON null both mean "not given" (0). */
static int get_num(json_t *o, const char *key, double lo, double hi, double *out,
                   struct oa_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return oa_fail(e, 400, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return oa_fail(e, 400, key, "'%s' must be between %g and %g, got %g", key, lo, hi, d);
    *out = d;
    return 1;
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                   struct oa_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return oa_fail(e, 400, key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return oa_fail(e, 400, key, "'%s' must be between %lld and %lld, got %lld", key, lo, hi, x);
    *out = x;
    return 1;
}

static int get_bool(json_t *o, const char *key, int *out, struct oa_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return oa_fail(e, 400, key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 1;
}

static int token_in_vocab(const struct zl_engine_api *api, json_t *v, const char *key,
                          int32_t *out, struct oa_err *e)
{
    if (!json_is_integer(v))
        return oa_fail(e, 400, key, "'%s' must hold integer token ids", key);
    long long x = json_integer_value(v);
    if (x < 0 || x >= api->vocab_size)
        return oa_fail(e, 400, key, "token id %lld in '%s' is out of vocabulary (0..%d)", x, key,
                       api->vocab_size - 1);
    *out = (int32_t)x;
    return 0;
}

static const char *const common_keys[] = {
    "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
    "presence_penalty", "frequency_penalty", "logit_bias", "seed", "n", "logprobs", "stop",
    "stop_token_ids", "ignore_eos", "min_tokens", "stream", "stream_options", "user",
    "skip_special_tokens", "include_stop_str_in_output", "spaces_between_special_tokens",
    "best_of", "use_beam_search", "add_special_tokens", "response_format", "priority",
    "prompt_logprobs", "truncate_prompt_tokens", "guided_json", NULL};
static const char *const completion_keys[] = {"prompt", "echo", "suffix", NULL};
static const char *const chat_keys[] = {
    "messages", "tools", "tool_choice", "parallel_tool_calls", "top_logprobs",
    "max_completion_tokens", "chat_template_kwargs", "add_generation_prompt",
    "continue_final_message", "echo", "documents", "function_call", "functions", NULL};

/* response_format (OpenAI) or guided_json (vLLM) -> the JSON Schema the
 * reply must match, as text for the engine (which compiles it and names
 * what it refuses). */
static int parse_response_format(json_t *root, struct oa_req *r, struct oa_err *e)
{
    json_t *rf = json_object_get(root, "response_format"), *gj = json_object_get(root, "guided_json");
    json_t *schema = NULL, *own = NULL;
    if (rf && !json_is_null(rf)) {
        const char *t = json_string_value(json_object_get(rf, "type"));
        if (!json_is_object(rf) || !t)
            return oa_fail(e, 400, "response_format", "response_format must be an object with a "
                           "string 'type'");
        if (!strcmp(t, "json_object")) {
            schema = own = json_pack("{s:s}", "type", "object");
        } else if (!strcmp(t, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema");
            schema = json_object_get(js, "schema");
            if (!json_is_object(schema) && !json_is_true(schema))
                return oa_fail(e, 400, "response_format", "response_format json_schema needs "
                               "'json_schema': {'name': ..., 'schema': {...}}");
        } else if (strcmp(t, "text")) {
            return oa_fail(e, 400, "response_format", "response_format type '%s' is not one of "
                           "text, json_object, json_schema", t);
        }
    }
    if (gj && !json_is_null(gj)) {
        if (schema) {
            json_decref(own);
            return oa_fail(e, 400, "guided_json", "give response_format or guided_json, not both");
        }
        if (json_is_string(gj)) {
            json_error_t err;
            if (!(schema = own = json_loads(json_string_value(gj), 0, &err)))
                return oa_fail(e, 400, "guided_json", "guided_json is not JSON: %s", err.text);
        } else if (json_is_object(gj)) {
            schema = gj;
        } else {
            return oa_fail(e, 400, "guided_json", "guided_json must be a schema (an object or "
                           "its JSON text)");
        }
    }
    if (schema && !(r->json_schema = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY))) {
        json_decref(own);
        return oa_fail(e, 500, NULL, "out of memory");
    }
    json_decref(own);
    return 0;
}

static int in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k))
            return 1;
    return 0;
}

static void log_unknown(json_t *root, const char *const *extra)
{
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!in_list(common_keys, k) && !in_list(extra, k))
            OA_LOG(ZL_LOG_INFO, "ignoring unknown request field '%s'", k);
    }
}

/* Checks `model` (optional, as in vLLM: the served model when absent). */
static int check_model(json_t *root, const struct zl_engine_api *api, struct oa_err *e)
{
    json_t *m = json_object_get(root, "model");
    if (!m || json_is_null(m))
        return 0;
    if (!json_is_string(m))
        return oa_fail(e, 400, "model", "'model' must be a string");
    if (strcmp(json_string_value(m), api->model_name)) {
        oa_fail(e, 404, "model", "The model `%s` does not exist.", json_string_value(m));
        e->code = "model_not_found";
        e->type = "NotFoundError";
        return -404;
    }
    return 0;
}

static int parse_stop(json_t *root, struct oa_req *r, struct oa_err *e)
{
    json_t *v = json_object_get(root, "stop");
    if (!v || json_is_null(v))
        return 0;
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : (size_t)-1;
    if (n == (size_t)-1)
        return oa_fail(e, 400, "stop", "'stop' must be a string or a list of strings");
    if (n > OA_MAX_STOP)
        return oa_fail(e, 400, "stop", "at most %d stop strings are allowed", OA_MAX_STOP);
    if (n == 0)
        return 0;
    r->stop = calloc(n, sizeof *r->stop);
    if (!r->stop)
        return oa_fail(e, 500, NULL, "out of memory");
    r->sp.stop = (const char *const *)r->stop;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s))
            return oa_fail(e, 400, "stop", "'stop' must be a string or a list of strings");
        if (!(r->stop[i] = strdup(json_string_value(s))))
            return oa_fail(e, 500, NULL, "out of memory");
        r->sp.n_stop = (int32_t)i + 1;
    }
    return 0;
}

static int parse_token_lists(json_t *root, const struct zl_engine_api *api, struct oa_req *r,
                             struct oa_err *e)
{
    json_t *v = json_object_get(root, "stop_token_ids");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v))
            return oa_fail(e, 400, "stop_token_ids", "'stop_token_ids' must be a list of integers");
        size_t n = json_array_size(v);
        if (n && !(r->stop_token_ids = calloc(n, sizeof(int32_t))))
            return oa_fail(e, 500, NULL, "out of memory");
        for (size_t i = 0; i < n; i++)
            if (token_in_vocab(api, json_array_get(v, i), "stop_token_ids", &r->stop_token_ids[i], e))
                return -400;
        r->sp.stop_token_ids = r->stop_token_ids;
        r->sp.n_stop_token_ids = (int32_t)n;
    }
    v = json_object_get(root, "logit_bias");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v))
            return oa_fail(e, 400, "logit_bias", "'logit_bias' must be an object of token id: bias");
        size_t n = json_object_size(v), i = 0;
        if (n > 1024)
            return oa_fail(e, 400, "logit_bias", "at most 1024 logit_bias entries are allowed");
        if (n && (!(r->logit_bias_ids = calloc(n, sizeof(int32_t))) ||
                  !(r->logit_bias = calloc(n, sizeof(float)))))
            return oa_fail(e, 500, NULL, "out of memory");
        const char *k;
        json_t *b;
        json_object_foreach(v, k, b) {
            char *end;
            long long id = strtoll(k, &end, 10);
            if (!*k || *end || id < 0 || id >= api->vocab_size)
                return oa_fail(e, 400, "logit_bias", "logit_bias key '%s' is not a token id in 0..%d",
                               k, api->vocab_size - 1);
            if (!json_is_number(b) || fabs(json_number_value(b)) > 100)
                return oa_fail(e, 400, "logit_bias", "logit_bias values must be numbers in [-100, 100]");
            r->logit_bias_ids[i] = (int32_t)id;
            r->logit_bias[i++] = (float)json_number_value(b);
        }
        r->sp.logit_bias_ids = r->logit_bias_ids;
        r->sp.logit_bias = r->logit_bias;
        r->sp.n_logit_bias = (int32_t)n;
    }
    return 0;
}

/* Sampling fields shared by both endpoints. */
static int parse_sampling(json_t *root, const struct zl_engine_api *api, struct oa_req *r,
                          struct oa_err *e)
{
    struct zl_sampling_params *sp = &r->sp;
    double d;
    long long x;
    int rc, b;
#define NUM(key, lo, hi, field)                                          \
    if ((rc = get_num(root, key, lo, hi, &d, e)) < 0) return rc;       \
    if (rc) sp->field = (float)d;
    NUM("temperature", 0, 100, temperature)
    NUM("top_p", 0, 1, top_p)
    NUM("min_p", 0, 1, min_p)
    NUM("repetition_penalty", 1e-6, 100, repetition_penalty)
    NUM("presence_penalty", -2, 2, presence_penalty)
    NUM("frequency_penalty", -2, 2, frequency_penalty)
#undef NUM
    if (sp->top_p <= 0)
        return oa_fail(e, 400, "top_p", "'top_p' must be in (0, 1], got 0");
    if ((rc = get_int(root, "top_k", -1, 1 << 30, &x, e)) < 0)
        return rc;
    if (rc)
        sp->top_k = (int32_t)x;
    if ((rc = get_int(root, "seed", INT64_MIN, INT64_MAX, &x, e)) < 0)
        return rc;
    if (rc) {
        sp->seed = (uint64_t)x;
        sp->has_seed = 1;
    }
    if ((rc = get_int(root, "n", 1, OA_MAX_N, &x, e)) < 0)
        return rc;
    if (rc)
        sp->n = (int32_t)x;
    if ((rc = get_int(root, "best_of", 1, OA_MAX_N, &x, e)) < 0)
        return rc;
    if (rc && x != sp->n)
        return oa_fail(e, 400, "best_of", "best_of different from n is not supported");
    if ((rc = get_int(root, "min_tokens", 0, 1 << 30, &x, e)) < 0)
        return rc;
    if (rc)
        sp->min_tokens = (int32_t)x;
    if ((rc = get_bool(root, "ignore_eos", &b, e)) < 0)
        return rc;
    if (rc)
        sp->ignore_eos = b;
    if ((rc = get_bool(root, "use_beam_search", &b, e)) < 0)
        return rc;
    if (rc && b)
        return oa_fail(e, 400, "use_beam_search", "beam search is not supported");
    if (get_bool(root, "skip_special_tokens", &r->skip_special, e) < 0 ||
        get_bool(root, "include_stop_str_in_output", &r->include_stop_str, e) < 0 ||
        get_bool(root, "stream", &r->stream, e) < 0)
        return -400;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return oa_fail(e, 400, "stream_options", "'stream_options' must be an object");
        if (!r->stream)
            return oa_fail(e, 400, "stream_options",
                           "Stream options can only be defined when `stream=True`.");
        if (get_bool(so, "include_usage", &r->include_usage, e) < 0)
            return -400;
    }
    /* max_completion_tokens (chat) wins over the deprecated max_tokens. */
    long long mt = -1;
    /* 0 only with echo (checked there): score the prompt, return no tokens */
    if ((rc = get_int(root, "max_tokens", r->kind == OA_COMPLETION ? 0 : 1, 1 << 30, &mt, e)) < 0)
        return rc;
    if (r->kind == OA_CHAT &&
        (rc = get_int(root, "max_completion_tokens", 1, 1 << 30, &mt, e)) < 0)
        return rc;
    sp->max_tokens = (int32_t)mt;
    if (parse_stop(root, r, e) < 0 || parse_token_lists(root, api, r, e) < 0)
        return -e->status;
    return 0;
}

static int parse_logprobs(json_t *root, struct oa_req *r, struct oa_err *e)
{
    long long x;
    int rc, b = 0;
    if (r->kind == OA_COMPLETION) {
        json_t *v = json_object_get(root, "logprobs");
        if (v && json_is_boolean(v))
            return oa_fail(e, 400, "logprobs", "'logprobs' must be an integer for completions");
        if ((rc = get_int(root, "logprobs", 0, ZL_SAMPLE_MAX_LOGPROBS, &x, e)) < 0)
            return rc;
        r->logprobs = rc ? (int)x : -1;
        return 0;
    }
    if ((rc = get_bool(root, "logprobs", &b, e)) < 0)
        return rc;
    if ((rc = get_int(root, "top_logprobs", 0, ZL_SAMPLE_MAX_LOGPROBS, &x, e)) < 0)
        return rc;
    if (rc && !b && x > 0)
        return oa_fail(e, 400, "top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
    r->logprobs = b ? (rc ? (int)x : 0) : -1;
    return 0;
}

static int add_prompt_ids(struct oa_req *r, json_t *arr, const struct zl_engine_api *api,
                          struct oa_err *e)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return oa_fail(e, 400, "prompt", "a token-id prompt must not be empty");
    struct oa_prompt *p = &r->prompts[r->n_prompts];
    if (!(p->ids = calloc(n, sizeof(int32_t))))
        return oa_fail(e, 500, NULL, "out of memory");
    r->n_prompts++;
    p->n = n;
    for (size_t i = 0; i < n; i++)
        if (token_in_vocab(api, json_array_get(arr, i), "prompt", &p->ids[i], e))
            return -400;
    return 0;
}

static int add_prompt_text(struct oa_req *r, const char *s, size_t len, int add_special,
                           const struct zl_engine_api *api, struct oa_err *e)
{
    struct oa_prompt *p = &r->prompts[r->n_prompts];
    if (!(p->text = malloc(len + 1)))
        return oa_fail(e, 500, NULL, "out of memory");
    memcpy(p->text, s, len);
    p->text[len] = 0;
    r->n_prompts++;
    if (api->tokenize(api->ctx, s, len, add_special, &p->ids, &p->n) < 0)
        return oa_fail(e, 400, "prompt", "the prompt could not be tokenized");
    if (p->n == 0)
        return oa_fail(e, 400, "prompt", "the prompt is empty after tokenization");
    return 0;
}

static int parse_prompt(json_t *root, const struct zl_engine_api *api, struct oa_req *r,
                        struct oa_err *e)
{
    json_t *v = json_object_get(root, "prompt");
    int add_special = 1;
    if (get_bool(root, "add_special_tokens", &add_special, e) < 0)
        return -400;
    if (!v || json_is_null(v))
        return oa_fail(e, 400, "prompt", "'prompt' is required");
    const char *bad = "'prompt' must be a string, a list of strings, a list of token ids "
                      "or a list of lists of token ids";
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_string(v) && !json_is_array(v))
        return oa_fail(e, 400, "prompt", "%s", bad);
    if (n == 0)
        return oa_fail(e, 400, "prompt", "'prompt' must not be empty");
    json_t *first = json_is_array(v) ? json_array_get(v, 0) : v;
    int flat_ids = json_is_array(v) && json_is_integer(first);
    if (flat_ids)
        n = 1;
    if (n > OA_MAX_PROMPTS)
        return oa_fail(e, 400, "prompt", "at most %d prompts per request", OA_MAX_PROMPTS);
    if (!(r->prompts = calloc(n, sizeof *r->prompts)))
        return oa_fail(e, 500, NULL, "out of memory");
    if (json_is_string(v))
        return add_prompt_text(r, json_string_value(v), json_string_length(v), add_special, api, e);
    if (flat_ids)
        return add_prompt_ids(r, v, api, e);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(v, i);
        int rc = json_is_string(p)  ? add_prompt_text(r, json_string_value(p), json_string_length(p),
                                                      add_special, api, e)
                 : json_is_array(p) ? add_prompt_ids(r, p, api, e)
                                    : oa_fail(e, 400, "prompt", "%s", bad);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Text-only content parts become one string, as templates expect. */
static int flatten_content(json_t *msg, struct oa_err *e)
{
    json_t *c = json_object_get(msg, "content");
    if (!c || json_is_null(c) || json_is_string(c))
        return 0;
    if (!json_is_array(c))
        return oa_fail(e, 400, "messages", "message content must be a string or a list of parts");
    struct oa_buf b = {0};
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            oa_buf_free(&b);
            return oa_fail(e, 400, "messages", "only text content parts are supported");
        }
        if ((i && oa_buf_add(&b, "\n", 1) < 0) ||
            oa_buf_add(&b, json_string_value(text), json_string_length(text)) < 0) {
            oa_buf_free(&b);
            return oa_fail(e, 500, NULL, "out of memory");
        }
    }
    json_object_set_new(msg, "content", json_stringn(b.data ? b.data : "", b.len));
    oa_buf_free(&b);
    return 0;
}

/* An assistant turn's tool calls carry their arguments as a JSON string
 * (the API's shape); templates (Llama 3.1's `| tojson`, Qwen's) expect an
 * object, so a string that parses as one is given as the object, as vLLM
 * does before rendering. */
static void tool_call_arguments(json_t *msg)
{
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, call) {
        json_t *f = json_object_get(call, "function");
        json_t *a = json_object_get(f, "arguments");
        json_t *obj = json_is_string(a) ? json_loads(json_string_value(a), 0, NULL) : NULL;
        if (json_is_object(obj))
            json_object_set(f, "arguments", obj);
        json_decref(obj);
    }
}

static const char *tool_name(json_t *tool)
{
    return json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
}

/* A tool's parameters schema (new reference; {"type": "object"} when it
 * has none), or NULL with *e filled. */
static json_t *tool_params(json_t *fn, const char *name, struct oa_err *e)
{
    json_t *params = json_object_get(fn, "parameters");
    if (params && !json_is_null(params) && !json_is_object(params)) {
        oa_fail(e, 400, "tools", "the parameters of function '%s' must be a JSON Schema object",
                name);
        return NULL;
    }
    json_t *p = params && !json_is_null(params) ? json_incref(params)
                                                : json_pack("{s:s}", "type", "object");
    if (!p)
        oa_fail(e, 500, NULL, "out of memory");
    return p;
}

/* "required" over several tools: the reply is one call object {"name":
 * NAME, "parameters": ARGS}, guided by an anyOf of one object per tool
 * told apart by the name's const (the guide writes that key first and
 * follows the branch it names), and read back as llama3_json writes
 * calls.  Names must differ, or the name would not tell the branch. */
static int required_any(json_t *tools, struct oa_req *r, struct oa_err *e)
{
    json_t *any = json_array(), *t;
    size_t i;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function"), *params;
        const char *name = tool_name(t);
        for (size_t k = 0; name && k < i; k++) /* the ones before have string names */
            if (!strcmp(name, tool_name(json_array_get(tools, k)))) {
                json_decref(any);
                return oa_fail(e, 400, "tools", "function '%s' is in tools twice: tool_choice "
                               "\"required\" tells the tools apart by name", name);
            }
        if (!name || !(params = tool_params(fn, name, e))) {
            json_decref(any);
            return name ? -e->status
                        : oa_fail(e, 400, "tools", "tools[%zu].function.name must be a string", i);
        }
        json_array_append_new(any, json_pack("{s:s,s:{s:{s:s},s:o},s:[s,s],s:b}", "type",
                                             "object", "properties", "name", "const", name,
                                             "parameters", params, "required", "name",
                                             "parameters", "additionalProperties", 0));
    }
    json_t *schema = json_pack("{s:o}", "anyOf", any);
    r->json_schema = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    json_decref(schema);
    return r->json_schema ? 0 : oa_fail(e, 500, NULL, "out of memory");
}

/* tool_choice: "auto" (the default with tools), "none", or a forced call:
 * a named function, or "required" (with one tool: that one).  A named
 * call's reply is the function's arguments, guided by its parameters;
 * "required" over several is a call object (required_any). */
static int parse_tool_choice(json_t *root, json_t *tools, struct oa_req *r, struct oa_err *e)
{
    json_t *choice = json_object_get(root, "tool_choice"), *fn = NULL, *t;
    size_t n_tools = json_is_array(tools) ? json_array_size(tools) : 0, i;
    const char *ch = json_string_value(choice), *name = NULL;
    if (!choice || json_is_null(choice) || (ch && !strcmp(ch, "auto"))) {
        r->want_tools = n_tools > 0;
        return 0;
    }
    if (ch && !strcmp(ch, "none"))
        return 0;
    if (ch && !strcmp(ch, "required")) {
        if (n_tools == 0)
            return oa_fail(e, 400, "tool_choice", "tool_choice \"required\" needs tools");
        r->tool_required = 1;
    } else {
        json_t *type = json_object_get(choice, "type");
        name = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
        if (!name || (type && !json_is_null(type) &&
                      (!json_is_string(type) || strcmp(json_string_value(type), "function"))))
            return oa_fail(e, 400, "tool_choice", "tool_choice must be \"auto\", \"none\", "
                           "\"required\" or {\"type\": \"function\", \"function\": "
                           "{\"name\": ...}}");
    }
    if (r->json_schema)
        return oa_fail(e, 400, "tool_choice", "a forced tool call (tool_choice) is guided by the "
                       "function's parameters: it cannot be combined with response_format or "
                       "guided_json");
    if (n_tools > 1 && !name)
        return required_any(tools, r, e);
    json_array_foreach(tools, i, t) {
        const char *tn = tool_name(t);
        if (tn && (!name || !strcmp(tn, name))) {
            fn = json_object_get(t, "function");
            name = tn;
            break;
        }
    }
    if (!fn)
        return name ? oa_fail(e, 400, "tool_choice", "tool_choice names function '%s', which "
                              "is not in tools", name)
                    : oa_fail(e, 400, "tools", "tools[0].function.name must be a string");
    json_t *params = tool_params(fn, name, e);
    if (!params)
        return -e->status;
    r->json_schema = json_dumps(params, JSON_COMPACT);
    json_decref(params);
    r->tool_name = strdup(name);
    if (!r->json_schema || !r->tool_name)
        return oa_fail(e, 500, NULL, "out of memory");
    return 0;
}

static int parse_messages(json_t *root, const struct zl_engine_api *api, struct oa_req *r,
                          struct oa_err *e)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs || json_is_null(msgs))
        return oa_fail(e, 400, "messages", "'messages' is required");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return oa_fail(e, 400, "messages", "'messages' must be a non-empty list");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
            return oa_fail(e, 400, "messages", "messages[%zu] must be an object with a string 'role'", i);
        if (flatten_content(m, e) < 0)
            return -e->status;
        tool_call_arguments(m);
    }
    json_t *tools = json_object_get(root, "tools"), *kw = json_object_get(root, "chat_template_kwargs");
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return oa_fail(e, 400, "tools", "'tools' must be a list");
    if (parse_tool_choice(root, tools, r, e) < 0)
        return -e->status;
    if (kw && !json_is_null(kw) && !json_is_object(kw))
        return oa_fail(e, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
    int agp = 1, cont = 0;
    if (get_bool(root, "add_generation_prompt", &agp, e) < 0 ||
        get_bool(root, "continue_final_message", &cont, e) < 0)
        return -400;
    if (cont)
        agp = 0;
    char *mj = json_dumps(msgs, JSON_COMPACT), *tj = NULL, *kj = NULL, *text = NULL;
    if (tools && json_is_array(tools))
        tj = json_dumps(tools, JSON_COMPACT);
    if (kw && json_is_object(kw))
        kj = json_dumps(kw, JSON_COMPACT);
    int rc = mj ? api->render_chat(api->ctx, mj, tj, kj, agp, &text) : ZL_ENOMEM;
    free(mj);
    free(tj);
    free(kj);
    if (rc < 0)
        return oa_fail(e, 400, "messages", "the chat template failed: %s",
                       api->last_error(api->ctx));
    if (!(r->prompts = calloc(1, sizeof *r->prompts))) {
        api->free_mem(text);
        return oa_fail(e, 500, NULL, "out of memory");
    }
    rc = add_prompt_text(r, text, strlen(text), 0, api, e);
    api->free_mem(text);
    return rc;
}

/* vLLM's wording, so clients that parse it keep working. */
/* vLLM's truncate_prompt_tokens: each prompt keeps its last k tokens (-1:
 * as many as leave room in max_model_len for the completion, max_tokens or
 * one token); an echoed prompt is then the kept tokens, decoded. */
static int truncate_prompts(json_t *root, const struct zl_engine_api *api, struct oa_req *r,
                            struct oa_err *e)
{
    long long k = 0;
    int rc = get_int(root, "truncate_prompt_tokens", -1, INT32_MAX, &k, e);
    if (rc <= 0)
        return rc;
    if (k == 0)
        return oa_fail(e, 400, "truncate_prompt_tokens",
                       "'truncate_prompt_tokens' must be -1 (max_model_len) or at least 1");
    long long room = (long long)api->max_model_len - (r->sp.max_tokens > 0 ? r->sp.max_tokens : 1);
    if (k < 0 && room < 1)
        return oa_fail(e, 400, "truncate_prompt_tokens",
                       "max_tokens %d leaves no room for a prompt in max_model_len %d",
                       (int)r->sp.max_tokens, (int)api->max_model_len);
    size_t keep = (size_t)(k < 0 ? room : k);
    for (size_t i = 0; i < r->n_prompts; i++) {
        struct oa_prompt *p = &r->prompts[i];
        if (p->n <= keep)
            continue;
        memmove(p->ids, p->ids + (p->n - keep), keep * sizeof *p->ids);
        p->n = keep;
        free(p->text);
        p->text = NULL;
    }
    return 0;
}

static int check_context(const struct zl_engine_api *api, struct oa_req *r, struct oa_err *e)
{
    const char *what = r->kind == OA_CHAT ? "messages" : "prompt";
    for (size_t i = 0; i < r->n_prompts; i++) {
        long long np = (long long)r->prompts[i].n, mt = r->sp.max_tokens;
        if (mt < 0 && np >= api->max_model_len)
            oa_fail(e, 400, what,
                    "This model's maximum context length is %lld tokens. However, you requested "
                    "%lld tokens in the %s, Please reduce the length of the %s.",
                    (long long)api->max_model_len, np, what, what);
        else if (mt >= 0 && np + mt > api->max_model_len)
            oa_fail(e, 400, what,
                    "This model's maximum context length is %lld tokens. However, you requested "
                    "%lld tokens (%lld in the %s, %lld in the completion). Please reduce the "
                    "length of the %s or completion.",
                    (long long)api->max_model_len, np + mt, np, what, mt, what);
        else
            continue;
        e->code = "context_length_exceeded";
        return -400;
    }
    return 0;
}

int oa_parse_request(enum oa_kind kind, const char *body, size_t len,
                     const struct zl_engine_api *api, struct oa_req *r, struct oa_err *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->sp = api->defaults;
    r->sp.logit_bias_ids = NULL, r->sp.logit_bias = NULL, r->sp.n_logit_bias = 0;
    r->sp.stop = NULL, r->sp.n_stop = 0, r->sp.stop_token_ids = NULL, r->sp.n_stop_token_ids = 0;
    r->sp.has_seed = 0;
    r->skip_special = 1;
    r->logprobs = -1;
    r->prompt_logprobs = -1;
    json_t *root = oa_load_object(body, len, e);
    if (!root)
        return -e->status;
    int rc = check_model(root, api, e);
    if (rc == 0)
        rc = parse_sampling(root, api, r, e);
    if (rc == 0)
        rc = parse_logprobs(root, r, e);
    if (rc == 0 && kind == OA_COMPLETION) {
        json_t *sfx = json_object_get(root, "suffix");
        if (sfx && !json_is_null(sfx))
            rc = oa_fail(e, 400, "suffix", "suffix is not currently supported");
        else if ((rc = get_bool(root, "echo", &r->echo, e)) >= 0)
            rc = parse_prompt(root, api, r, e);
        if (rc == 0 && r->echo && r->logprobs >= 0) /* OpenAI: the prompt's logprobs too */
            r->prompt_logprobs = r->logprobs;
        if (rc == 0 && r->sp.max_tokens == 0) { /* one token is generated and not returned */
            if (!r->echo)
                rc = oa_fail(e, 400, "max_tokens", "'max_tokens' must be at least 1 (0 only with "
                             "echo, which returns the prompt alone)");
            r->echo_only = 1;
            r->sp.max_tokens = 1;
        }
    }
    if (rc == 0)
        rc = parse_response_format(root, r, e);
    json_t *plp = rc == 0 ? json_object_get(root, "prompt_logprobs") : NULL;
    if (plp && !json_is_null(plp))
        rc = oa_fail(e, 400, "prompt_logprobs",
                     "prompt_logprobs is not supported: use echo with logprobs on /v1/completions");
    if (rc == 0 && kind == OA_CHAT)
        rc = parse_messages(root, api, r, e);
    if (rc == 0 && r->sp.max_tokens >= 0 && r->sp.min_tokens > r->sp.max_tokens)
        rc = oa_fail(e, 400, "min_tokens", "'min_tokens' must not exceed 'max_tokens'");
    if (rc == 0)
        rc = truncate_prompts(root, api, r, e);
    if (rc == 0)
        rc = check_context(api, r, e);
    if (rc == 0)
        log_unknown(root, kind == OA_CHAT ? chat_keys : completion_keys);
    json_decref(root);
    if (rc < 0) {
        oa_req_free(r);
        return -e->status;
    }
    r->sp.logprobs = r->logprobs;
    return 0;
}

void oa_req_free(struct oa_req *r)
{
    for (size_t i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].ids);
        free(r->prompts[i].text);
    }
    free(r->prompts);
    for (int32_t i = 0; r->stop && i < r->sp.n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    free(r->stop_token_ids);
    free(r->logit_bias_ids);
    free(r->logit_bias);
    free(r->json_schema);
    free(r->tool_name);
    memset(r, 0, sizeof *r);
}

char *oa_tokenize(const char *body, size_t len, const struct zl_engine_api *api, struct oa_err *e)
{
    json_t *root = oa_load_object(body, len, e), *out = NULL;
    if (!root)
        return NULL;
    struct oa_req r;
    memset(&r, 0, sizeof r);
    int rc = check_model(root, api, e);
    int add_special = 1;
    if (rc == 0 && get_bool(root, "add_special_tokens", &add_special, e) < 0)
        rc = -400;
    if (rc == 0) {
        if (json_object_get(root, "messages")) {
            r.kind = OA_CHAT;
            rc = parse_messages(root, api, &r, e);
        } else if (json_is_string(json_object_get(root, "prompt"))) {
            json_t *p = json_object_get(root, "prompt");
            if ((r.prompts = calloc(1, sizeof *r.prompts)) == NULL)
                rc = oa_fail(e, 500, NULL, "out of memory");
            else
                rc = add_prompt_text(&r, json_string_value(p), json_string_length(p), add_special,
                                     api, e);
            if (rc < 0 && r.n_prompts && r.prompts[0].n == 0 && e->status == 400)
                rc = 0; /* an empty prompt tokenizes to nothing: fine here */
        } else {
            rc = oa_fail(e, 400, "prompt", "'prompt' (a string) or 'messages' is required");
        }
    }
    if (rc == 0) {
        json_t *ids = json_array();
        for (size_t i = 0; i < r.prompts[0].n; i++)
            json_array_append_new(ids, json_integer(r.prompts[0].ids[i]));
        out = json_pack("{s:I,s:o,s:I}", "count", (json_int_t)r.prompts[0].n, "tokens", ids,
                        "max_model_len", (json_int_t)api->max_model_len);
    }
    oa_req_free(&r);
    json_decref(root);
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    return s;
}

char *oa_detokenize(const char *body, size_t len, const struct zl_engine_api *api,
                    struct oa_err *e)
{
    json_t *root = oa_load_object(body, len, e);
    if (!root)
        return NULL;
    char *s = NULL, *text = NULL;
    size_t tlen = 0;
    int32_t *ids = NULL;
    json_t *t = json_object_get(root, "tokens");
    if (check_model(root, api, e) < 0) {
    } else if (!json_is_array(t)) {
        oa_fail(e, 400, "tokens", "'tokens' (a list of token ids) is required");
    } else if (json_array_size(t) && !(ids = calloc(json_array_size(t), sizeof *ids))) {
        oa_fail(e, 500, NULL, "out of memory");
    } else {
        size_t i;
        for (i = 0; i < json_array_size(t); i++)
            if (token_in_vocab(api, json_array_get(t, i), "tokens", &ids[i], e))
                break;
        if (i == json_array_size(t)) {
            if (api->detokenize(api->ctx, ids, i, 0, &text, &tlen) < 0) {
                oa_fail(e, 400, "tokens", "the tokens could not be decoded");
            } else {
                json_t *out = json_pack("{s:o}", "prompt", oa_json_str(text, tlen));
                s = out ? json_dumps(out, JSON_COMPACT) : NULL;
                json_decref(out);
                api->free_mem(text);
            }
        }
    }
    free(ids);
    json_decref(root);
    return s;
}
