/* JSON bodies the frontend sends: errors, usage, logprobs, SSE framing,
 * /v1/models and /version. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oa-impl.h"

int oa_buf_add(struct oa_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int oa_buf_printf(struct oa_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof tmp)
        return oa_buf_add(b, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = oa_buf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

void oa_buf_free(struct oa_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

json_t *oa_json_str(const char *s, size_t n)
{
    json_t *j = json_stringn(s ? s : "", s ? n : 0);
    if (j)
        return j;
    /* Invalid UTF-8 (a token that is part of a character): U+FFFD per bad
     * byte, as Python's decode(errors="replace") would show it. */
    struct oa_buf b = {0};
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = oa_utf8_len(p + i, n - i);
        if (k == 0 || (k == 1 && p[i] == 0)) {
            oa_buf_add(&b, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            oa_buf_add(&b, s + i, k);
            i += k;
        }
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    oa_buf_free(&b);
    return j;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

char *oa_error_json(const struct oa_err *e)
{
    /* json_string rejects invalid UTF-8: messages may quote client bytes. */
    json_t *msg = json_string(e->message);
    if (!msg)
        msg = json_string("invalid request (the message could not be encoded)");
    json_t *o = json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", msg, "type",
                          e->type ? e->type : "invalid_request_error", "param",
                          str_or_null(e->param), "code",
                          e->code ? json_string(e->code) : json_integer(e->status));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

const char *oa_finish_name(int finish)
{
    switch (finish) {
    case ZL_FE_FINISH_STOP: return "stop";
    case ZL_FE_FINISH_LENGTH: return "length";
    case ZL_FE_FINISH_ABORT: return "abort";
    case ZL_FE_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

json_t *oa_usage_json(const struct oa_gen *g)
{
    long long prompt = 0, gen = 0, cached = 0;
    for (size_t i = 0; i < g->req.n_prompts; i++) {
        const struct oa_sub *s = &g->subs[i];
        prompt += s->n_prompt ? s->n_prompt : (long long)g->req.prompts[i].n;
        cached += s->n_cached;
        for (int j = 0; j < g->req.sp.n; j++)
            gen += s->seq[j].n_gen;
    }
    json_t *u = json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)prompt,
                          "completion_tokens", (json_int_t)gen, "total_tokens",
                          (json_int_t)(prompt + gen));
    if (u && cached)
        json_object_set_new(u, "prompt_tokens_details",
                            json_pack("{s:I}", "cached_tokens", (json_int_t)cached));
    return u;
}

/* One token's text as the tokenizer spells it alone (special tokens kept). */
static json_t *token_text(const struct zl_engine_api *api, int32_t id, size_t *len)
{
    char *t = NULL;
    size_t n = 0;
    json_t *s = NULL;
    if (api->detokenize(api->ctx, &id, 1, 0, &t, &n) == 0)
        s = oa_json_str(t, n);
    api->free_mem(t);
    if (!s) {
        char buf[32];
        snprintf(buf, sizeof buf, "token_id:%d", id);
        s = json_string(buf);
        n = 0;
    }
    *len = n;
    return s;
}

static json_t *lp_value(float lp)
{
    /* -inf cannot be written in JSON; OpenAI clamps it as vLLM does. */
    return json_real(isfinite(lp) ? lp : -9999.0);
}

static json_t *bytes_of(json_t *s)
{
    json_t *a = json_array();
    const unsigned char *p = (const unsigned char *)json_string_value(s);
    for (size_t i = 0; i < json_string_length(s); i++)
        json_array_append_new(a, json_integer(p[i]));
    return a;
}

static json_t *chat_entry(const struct zl_engine_api *api, int32_t id, float lp)
{
    size_t n;
    json_t *t = token_text(api, id, &n);
    return json_pack("{s:o,s:o,s:o}", "token", t, "logprob", lp_value(lp), "bytes", bytes_of(t));
}

/* The completions API's logprobs arrays, built a token at a time. */
struct comp_lp {
    json_t *toks, *lps, *tops, *offs;
    size_t off;
};

static struct comp_lp comp_lp_new(size_t text_base)
{
    return (struct comp_lp){json_array(), json_array(), json_array(), json_array(), text_base};
}

/* Token id with its logprob and top k; lp NULL: nulls (a prompt's first). */
static void comp_lp_add(struct comp_lp *c, const struct zl_engine_api *api, int32_t id,
                        const float *lp, const int32_t *top_ids, const float *top_lps, int k)
{
    size_t n;
    json_array_append_new(c->toks, token_text(api, id, &n));
    json_array_append_new(c->lps, lp ? lp_value(*lp) : json_null());
    json_array_append_new(c->offs, json_integer((json_int_t)c->off));
    c->off += n;
    json_t *top = lp ? json_object() : json_null();
    for (int j = 0; j < k; j++) {
        size_t m;
        json_t *key = token_text(api, top_ids[j], &m);
        if (!json_object_get(top, json_string_value(key)))
            json_object_set_new(top, json_string_value(key), lp_value(top_lps[j]));
        json_decref(key);
    }
    json_array_append_new(c->tops, top);
}

static json_t *comp_lp_json(struct comp_lp *c)
{
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", c->toks, "token_logprobs", c->lps,
                     "top_logprobs", c->tops, "text_offset", c->offs);
}

json_t *oa_logprobs_json(struct oa_gen *g, const struct zl_engine_api *api, struct oa_seq *s,
                         size_t from, size_t to, size_t text_base)
{
    if (g->req.kind == OA_CHAT) {
        json_t *content = json_array();
        for (size_t i = from; i < to; i++) {
            const struct zl_fe_token *t = &s->tok[i];
            json_t *e = chat_entry(api, t->id, t->logprob), *top = json_array();
            for (int k = 0; k < t->n_top && k < g->req.logprobs; k++)
                json_array_append_new(top, chat_entry(api, t->top_ids[k], t->top_logprobs[k]));
            json_object_set_new(e, "top_logprobs", top);
            json_array_append_new(content, e);
        }
        return json_pack("{s:o}", "content", content);
    }
    struct comp_lp c = comp_lp_new(text_base);
    for (size_t i = from; i < to; i++) {
        const struct zl_fe_token *t = &s->tok[i];
        comp_lp_add(&c, api, t->id, &t->logprob, t->top_ids, t->top_logprobs,
                    t->n_top < g->req.logprobs ? t->n_top : g->req.logprobs);
    }
    return comp_lp_json(&c);
}

json_t *oa_prompt_logprobs_json(struct oa_gen *g, const struct zl_engine_api *api, size_t i)
{
    const struct oa_prompt *p = &g->req.prompts[i];
    struct oa_sub *sub = &g->subs[i];
    struct comp_lp c = comp_lp_new(0);
    for (size_t j = 0; j < p->n; j++) {
        int has = j > 0 && j < (size_t)sub->n_plp; /* the first token has nothing before it */
        size_t at = j * (size_t)sub->plp_k;
        comp_lp_add(&c, api, p->ids[j], has ? &sub->plp[j] : NULL,
                    has ? sub->plp_ids + at : NULL, has ? sub->plp_top + at : NULL,
                    has ? (sub->plp_k < g->req.logprobs ? sub->plp_k : g->req.logprobs) : 0);
    }
    sub->plp_text_len = c.off;
    return comp_lp_json(&c);
}

void oa_logprobs_append(json_t *into, json_t *more)
{
    static const char *const keys[] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    for (int k = 0; k < 4; k++)
        json_array_extend(json_object_get(into, keys[k]), json_object_get(more, keys[k]));
    json_decref(more);
}

int oa_sse_json(struct oa_buf *b, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s)
        return -1;
    int rc = oa_buf_add(b, "data: ", 6) < 0 || oa_buf_add(b, s, strlen(s)) < 0 ||
             oa_buf_add(b, "\n\n", 2) < 0 ? -1 : 0;
    free(s);
    return rc;
}

static char *dump_free(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

char *oa_models_json(const struct zl_engine_api *api)
{
    return dump_free(json_pack(
        "{s:s,s:[{s:s,s:s,s:I,s:s,s:s,s:o,s:I}]}", "object", "list", "data", "id", api->model_name,
        "object", "model", "created", (json_int_t)api->created, "owned_by", "zlight", "root",
        api->model_root ? api->model_root : api->model_name, "parent", json_null(),
        "max_model_len", (json_int_t)api->max_model_len));
}

char *oa_version_json(const struct zl_engine_api *api)
{
    return dump_free(json_pack("{s:s}", "version", api->version ? api->version : "unknown"));
}
