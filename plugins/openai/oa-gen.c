/* Per-request generation state: the engine callback accumulates text and
 * tokens per sequence; the HTTP side turns them into SSE chunks or one
 * response.  Formatting happens on the HTTP threads so the engine thread
 * only copies. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oa-impl.h"

double oa_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct oa_gen *oa_gen_create(struct oa_server *srv, struct oa_req *req, const char *model)
{
    struct oa_gen *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (!(g->subs = calloc(req->n_prompts, sizeof *g->subs))) {
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    g->refs = 1;
    g->srv = srv;
    g->req = *req;
    memset(req, 0, sizeof *req);
    g->model = (char *)model;
    g->created = (int64_t)time(NULL);
    g->t_start = oa_now();
    static _Atomic uint64_t counter;
    uint64_t r = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uintptr_t)g ^ ++counter;
    snprintf(g->id, sizeof g->id, "%s-%016llx%04x", g->req.kind == OA_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)r, (unsigned)(counter & 0xffff));
    for (size_t i = 0; i < g->req.n_prompts; i++)
        g->subs[i].gen = g;
    return g;
}

static void seq_free(struct oa_seq *s)
{
    oa_buf_free(&s->text);
    free(s->tok);
}

void oa_gen_unref(struct oa_gen *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    int left = --g->refs;
    pthread_mutex_unlock(&g->mu);
    if (left > 0)
        return;
    for (size_t i = 0; i < g->req.n_prompts; i++) {
        for (int j = 0; j < OA_MAX_N; j++)
            seq_free(&g->subs[i].seq[j]);
        free(g->subs[i].plp);
        free(g->subs[i].plp_ids);
        free(g->subs[i].plp_top);
    }
    free(g->subs);
    free(g->error);
    oa_buf_free(&g->out);
    oa_req_free(&g->req);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

int oa_gen_all_done(const struct oa_gen *g)
{
    return g->n_done == g->req.n_prompts;
}

static int add_tokens(struct oa_seq *s, const struct zl_fe_token *t, int32_t n)
{
    if (s->n_tok + (size_t)n > s->cap_tok) {
        size_t cap = s->cap_tok ? s->cap_tok * 2 : 16;
        while (cap < s->n_tok + (size_t)n)
            cap *= 2;
        void *p = realloc(s->tok, cap * sizeof *s->tok);
        if (!p)
            return -1;
        s->tok = p;
        s->cap_tok = cap;
    }
    memcpy(s->tok + s->n_tok, t, (size_t)n * sizeof *t);
    s->n_tok += (size_t)n;
    return 0;
}

/* The prompt logprobs of an output that carries them (a host that knows
 * them, the first one of the sub), copied. */
static int keep_prompt_logprobs(struct oa_sub *sub, const struct zl_fe_output *o)
{
    if (sub->plp || o->size < offsetof(struct zl_fe_output, prompt_top_logprobs) +
                                  sizeof o->prompt_top_logprobs || o->n_prompt_logprobs < 1)
        return 0;
    size_t n = (size_t)o->n_prompt_logprobs, nk = n * (size_t)o->prompt_top_k;
    sub->plp = malloc(sizeof(float) * n);
    sub->plp_ids = malloc(sizeof(int32_t) * (nk ? nk : 1));
    sub->plp_top = malloc(sizeof(float) * (nk ? nk : 1));
    if (!sub->plp || !sub->plp_ids || !sub->plp_top)
        return -1;
    memcpy(sub->plp, o->prompt_logprobs, sizeof(float) * n);
    if (nk) {
        memcpy(sub->plp_ids, o->prompt_top_ids, sizeof(int32_t) * nk);
        memcpy(sub->plp_top, o->prompt_top_logprobs, sizeof(float) * nk);
    }
    sub->n_plp = o->n_prompt_logprobs;
    sub->plp_k = o->prompt_top_k;
    return 0;
}

void oa_gen_on_output(void *user, const struct zl_fe_output *o)
{
    struct oa_sub *sub = user;
    struct oa_gen *g = sub->gen;
    int finished_all = 0;
    pthread_mutex_lock(&g->mu);
    if (o->index >= 0 && o->index < g->req.sp.n) {
        struct oa_seq *s = &sub->seq[o->index];
        int keep = !g->req.echo_only; /* its one token is not returned */
        int ok = !keep || o->text_len == 0 || oa_buf_add(&s->text, o->text, o->text_len) == 0;
        if (ok && keep && g->req.logprobs >= 0 && o->n_tokens > 0)
            ok = add_tokens(s, o->tokens, o->n_tokens) == 0;
        if (ok && g->req.prompt_logprobs >= 0)
            ok = keep_prompt_logprobs(sub, o) == 0;
        if (!ok && !g->error)
            g->error = strdup("out of memory in the frontend");
        s->n_gen += keep ? o->n_tokens : 0;
        if (o->finish != ZL_FE_RUNNING && !s->finish)
            s->finish = o->finish;
        if ((o->n_tokens || o->text_len) && g->t_first == 0)
            g->t_first = oa_now();
    }
    sub->n_prompt = o->n_prompt_tokens;
    sub->n_cached = o->n_cached_tokens;
    if (o->error && !g->error)
        g->error = strdup(o->error);
    if (o->done && !sub->done) {
        sub->done = 1;
        for (int j = 0; j < g->req.sp.n; j++)
            if (!sub->seq[j].finish)
                sub->seq[j].finish = o->error ? ZL_FE_FINISH_ERROR : ZL_FE_FINISH_ABORT;
        finished_all = ++g->n_done == g->req.n_prompts;
        g->t_last = oa_now();
    }
    oa_server_wake(g->srv, g);
    pthread_mutex_unlock(&g->mu);
    if (finished_all)
        oa_server_gen_finished(g->srv, g);
    if (o->done)
        oa_gen_unref(g);    /* the engine's reference */
}

/* Echo: the prompt text, decoded when the prompt came as ids. */
static const char *prompt_text(struct oa_gen *g, const struct zl_engine_api *api, size_t i)
{
    struct oa_prompt *p = &g->req.prompts[i];
    if (!p->text) {
        char *t = NULL;
        size_t n = 0;
        if (api->detokenize(api->ctx, p->ids, p->n, 0, &t, &n) == 0 && (p->text = malloc(n + 1))) {
            memcpy(p->text, t, n);
            p->text[n] = 0;
        }
        api->free_mem(t);
    }
    return p->text ? p->text : "";
}

static json_t *chunk(struct oa_gen *g, json_t *choice)
{
    json_t *c = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", g->id, "object",
                          g->req.kind == OA_CHAT ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)g->created, "model", g->model, "choices", choice);
    if (c && g->req.include_usage)
        json_object_set_new(c, "usage", json_null());
    return c;
}

static json_t *finish_json(int finish)
{
    const char *f = oa_finish_name(finish);
    return f ? json_string(f) : json_null();
}

/* A finished reply's finish_reason: "tool_calls" where calls were read or
 * "required" forced one, and the reply ended by itself; a named function
 * ends with "stop", as OpenAI's and vLLM's do, and a reply max_tokens cut
 * with "length" (its last call's arguments may be cut too). */
static json_t *reply_finish(const struct oa_gen *g, int finish, int calls)
{
    if (finish == ZL_FE_FINISH_STOP && (g->req.tool_name ? g->req.tool_required : calls))
        return json_string("tool_calls");
    return finish_json(finish);
}

/* A tool_calls entry that opens call `index` (id, type, name, arguments "")
 * and one that adds n bytes to its arguments; a stream sends the first
 * once, then the second as the arguments grow. */
static json_t *call_open(size_t index, const char *name)
{
    json_t *c = json_pack("{s:I}", "index", (json_int_t)index);
    json_t *call = oa_tool_call(name, json_string(""));
    json_object_update(c, call);
    json_decref(call);
    return c;
}

static json_t *call_args(size_t index, const char *s, size_t n)
{
    return json_pack("{s:I,s:{s:o}}", "index", (json_int_t)index, "function", "arguments",
                     oa_json_str(s, n));
}

/* Role chunks (chat) or echoed prompts (completions), once at the start. */
static int stream_head(struct oa_gen *g, const struct zl_engine_api *api)
{
    int n = g->req.sp.n;
    for (size_t i = 0; i < g->req.n_prompts; i++) {
        for (int j = 0; j < n; j++) {
            json_int_t idx = (json_int_t)(i * (size_t)n + (size_t)j);
            json_t *c = NULL;
            if (g->req.kind == OA_CHAT)
                c = json_pack("{s:I,s:{s:s,s:s},s:n,s:n}", "index", idx, "delta", "role",
                              "assistant", "content", "", "logprobs", "finish_reason");
            else if (g->req.echo)
                c = json_pack("{s:I,s:o,s:o,s:n}", "index", idx, "text",
                              oa_json_str(prompt_text(g, api, i), strlen(prompt_text(g, api, i))),
                              "logprobs",
                              g->req.prompt_logprobs >= 0 ? oa_prompt_logprobs_json(g, api, i)
                                                          : json_null(),
                              "finish_reason");
            if (c && g->req.tool_name) { /* the forced call opens; its arguments follow */
                json_object_set_new(json_object_get(c, "delta"), "tool_calls",
                                    json_pack("[o]", call_open(0, g->req.tool_name)));
                g->subs[i].seq[j].calls_sent = 1;
            }
            if (c && oa_sse_json(&g->out, chunk(g, c)) < 0)
                return -1;
        }
    }
    return 0;
}

/* A chat reply as far as it can be told: its reasoning (g->reason), then
 * its content, of which `avail` bytes (from content) may go out now, and
 * the tool calls it has committed to (g->tools; final: the reply's), which
 * a later read only extends.  A named forced call's arguments are all the
 * text; "required" over several tools is read as llama3_json. */
struct reply {
    struct oa_split sp;
    size_t content, avail;      /* offsets into the text */
    struct oa_calls calls;
};

static void read_reply(const struct oa_gen *g, const struct oa_seq *s, int final, struct reply *r)
{
    const char *t = s->text.data ? s->text.data : "";
    oa_reason_split(g->req.kind == OA_CHAT ? g->reason : OA_REASON_NONE, t, s->text.len, final,
                    &r->sp);
    const char *c = t + r->sp.c_off;
    size_t n = s->text.len - r->sp.c_off;
    oa_tools_read(g->req.kind == OA_CHAT ? g->tools : OA_TOOLS_NONE, c, n, final, &r->calls);
    if (oa_tool_forced(&g->req)) /* a reply the guide makes a call is never content */
        r->calls.content_len = 0;
    if (g->req.tool_name) { /* g->tools is none: the text is the named call's arguments */
        char *name = strdup(g->req.tool_name);
        struct oa_call *one = malloc(sizeof *one);
        if (name && one) {
            *one = (struct oa_call){name, c, n, NULL};
            r->calls = (struct oa_calls){0, one, 1};
        } else {
            free(name);
            free(one);
        }
    }
    r->content = r->sp.c_off;
    r->avail = r->sp.c_off + r->calls.content_len;
}

/* The tool_calls entries that bring a stream's calls up to `c`: the rest of
 * the arguments of the call it has open, then each new call opened and its
 * arguments so far.  Only the last call can still grow (oa_calls). */
static json_t *call_deltas(struct oa_seq *s, const struct oa_calls *c)
{
    json_t *e = json_array();
    for (size_t k = s->calls_sent ? s->calls_sent - 1 : 0; e && k < c->n; k++) {
        if (k >= s->calls_sent) {
            json_array_append_new(e, call_open(k, c->call[k].name));
            s->calls_sent = k + 1;
            s->args_sent = 0;
        }
        if (c->call[k].args_len > s->args_sent)
            json_array_append_new(e, call_args(k, c->call[k].args + s->args_sent,
                                               c->call[k].args_len - s->args_sent));
        s->args_sent = c->call[k].args_len;
    }
    return e;
}

static int stream_seq(struct oa_gen *g, const struct zl_engine_api *api, size_t i, int j)
{
    struct oa_seq *s = &g->subs[i].seq[j];
    if (s->finish_sent) /* it said all; its reply is not read again */
        return 0;
    int fin = s->finish && s->finish != ZL_FE_FINISH_ERROR;
    struct reply rp;
    read_reply(g, s, s->finish != 0, &rp);
    size_t from = s->text_sent > rp.content ? s->text_sent : rp.content;
    size_t avail = rp.avail > from ? rp.avail : from;
    size_t r_from = s->reason_sent > rp.sp.r_off ? s->reason_sent : rp.sp.r_off;
    size_t r_n = rp.sp.r_end > r_from ? rp.sp.r_end - r_from : 0;
    json_t *calls = g->req.kind == OA_CHAT ? call_deltas(s, &rp.calls) : NULL;
    size_t n_calls = json_array_size(calls);
    oa_calls_free(&rp.calls);
    if (avail == from && !r_n && s->tok_sent == s->n_tok && !fin && !n_calls) {
        json_decref(calls);
        return 0;
    }
    json_int_t idx = (json_int_t)(i * (size_t)g->req.sp.n + (size_t)j);
    const char *txt = s->text.data ? s->text.data + from : "";
    size_t n = avail - from;
    json_t *lp = json_null();
    if (g->req.logprobs >= 0) {
        size_t base = from + (g->req.prompt_logprobs >= 0 ? g->subs[i].plp_text_len
                                      : g->req.echo              ? strlen(prompt_text(g, api, i))
                                                                 : 0);
        lp = oa_logprobs_json(g, api, s, s->tok_sent, s->n_tok, base);
    }
    /* the finish_reason rides on the last chunk: the last call entry's */
    int f = fin ? s->finish : 0;
    json_t *finish = g->req.kind == OA_CHAT ? reply_finish(g, f, s->calls_sent > 0) : finish_json(f);
    json_t *c = g->req.kind == OA_CHAT
                    ? json_pack("{s:I,s:{s:o},s:o,s:o}", "index", idx, "delta", "content",
                                oa_json_str(txt, n), "logprobs", lp, "finish_reason",
                                n_calls > 1 ? json_null() : json_incref(finish))
                    : json_pack("{s:I,s:o,s:o,s:O}", "index", idx, "text", oa_json_str(txt, n),
                                "logprobs", lp, "finish_reason", finish);
    json_t *delta = json_object_get(c, "delta");
    if (r_n && delta) /* reasoning: its own field */
        json_object_set_new(delta, "reasoning_content", oa_json_str(s->text.data + r_from, r_n));
    if (delta && !n && (r_n || s->calls_sent)) /* content only when there is some */
        json_object_del(delta, "content");
    if (delta && n_calls) /* a call entry a chunk, as OpenAI and vLLM send them */
        json_object_set_new(delta, "tool_calls", json_pack("[O]", json_array_get(calls, 0)));
    s->text_sent = fin ? s->text.len : avail;
    s->reason_sent = r_from + r_n;
    s->tok_sent = s->n_tok;
    s->finish_sent |= fin;
    int rc = oa_sse_json(&g->out, chunk(g, c));
    for (size_t k = 1; rc == 0 && k < n_calls; k++) {
        json_t *last = k + 1 < n_calls ? json_null() : finish;
        rc = oa_sse_json(&g->out, chunk(g, json_pack("{s:I,s:{s:[O]},s:n,s:O}", "index", idx,
                                                     "delta", "tool_calls", json_array_get(calls, k),
                                                     "logprobs", "finish_reason", last)));
    }
    json_decref(calls);
    json_decref(finish);
    return rc;
}

/* Whether the echoed prompts can go out: their logprobs are in, where
 * asked for (or the sub ended without them). */
static int head_ready(const struct oa_gen *g)
{
    for (size_t i = 0; g->req.prompt_logprobs >= 0 && i < g->req.n_prompts; i++)
        if (!g->subs[i].plp && !g->subs[i].done)
            return 0;
    return 1;
}

int oa_gen_stream_pump(struct oa_gen *g, const struct zl_engine_api *api)
{
    if (!g->head_sent) {
        if (!head_ready(g))
            return 0;
        g->head_sent = 1;
        if (stream_head(g, api) < 0)
            return -1;
    }
    for (size_t i = 0; i < g->req.n_prompts; i++)
        for (int j = 0; j < g->req.sp.n; j++)
            if (stream_seq(g, api, i, j) < 0)
                return -1;
    if (oa_gen_all_done(g) && !g->tail_sent) {
        g->tail_sent = 1;
        if (g->error) {
            struct oa_err e;
            oa_fail(&e, g->error_status ? g->error_status : 500, NULL, "%s", g->error);
            char *s = oa_error_json(&e);
            if (s) {
                oa_buf_printf(&g->out, "data: %s\n\n", s);
                free(s);
            }
        }
        if (g->req.include_usage) {
            json_t *c = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", g->id, "object",
                                  g->req.kind == OA_CHAT ? "chat.completion.chunk" : "text_completion",
                                  "created", (json_int_t)g->created, "model", g->model, "choices",
                                  "usage", oa_usage_json(g));
            if (oa_sse_json(&g->out, c) < 0)
                return -1;
        }
        if (oa_buf_add(&g->out, "data: [DONE]\n\n", 14) < 0)
            return -1;
    }
    return g->tail_sent && g->out_off == g->out.len;
}

/* Content before tool calls that is only whitespace is none (null). */
static int content_blank(const char *s, size_t n)
{
    return oa_skip_ws(s, n, 0) == n;
}

char *oa_gen_response(struct oa_gen *g, const struct zl_engine_api *api)
{
    json_t *choices = json_array();
    int n = g->req.sp.n;
    for (size_t i = 0; i < g->req.n_prompts; i++) {
        for (int j = 0; j < n; j++) {
            struct oa_seq *s = &g->subs[i].seq[j];
            json_int_t idx = (json_int_t)(i * (size_t)n + (size_t)j);
            const char *echo = g->req.echo ? prompt_text(g, api, i) : "";
            json_t *lp = json_null();
            if (g->req.prompt_logprobs >= 0) { /* the echoed prompt's first */
                lp = oa_prompt_logprobs_json(g, api, i);
                oa_logprobs_append(lp, oa_logprobs_json(g, api, s, 0, s->n_tok,
                                                        g->subs[i].plp_text_len));
            } else if (g->req.logprobs >= 0) {
                lp = oa_logprobs_json(g, api, s, 0, s->n_tok, strlen(echo));
            }
            json_t *c;
            if (g->req.kind == OA_CHAT) {
                struct reply rp;
                read_reply(g, s, 1, &rp);
                const char *t = s->text.data ? s->text.data : "";
                size_t cn = rp.avail - rp.content;
                int reasoned = rp.sp.r_end > rp.sp.r_off;
                c = json_pack("{s:I,s:{s:s,s:o},s:o,s:o}", "index", idx, "message", "role",
                              "assistant", "content",
                              oa_tool_forced(&g->req) ? json_string("") /* as vLLM's */
                              : (rp.calls.n || reasoned) && content_blank(t + rp.content, cn)
                                  ? json_null()
                                  : oa_json_str(t + rp.content, cn),
                              "logprobs", lp, "finish_reason",
                              reply_finish(g, s->finish, rp.calls.n > 0));
                json_t *msg = json_object_get(c, "message");
                if (msg && reasoned)
                    json_object_set_new(msg, "reasoning_content",
                                        oa_json_str(t + rp.sp.r_off, rp.sp.r_end - rp.sp.r_off));
                json_t *calls = rp.calls.n && msg ? json_array() : NULL;
                for (size_t k = 0; calls && k < rp.calls.n; k++) { /* the streamed calls, whole */
                    const struct oa_call *a = &rp.calls.call[k];
                    json_array_append_new(calls,
                                          oa_tool_call(a->name, oa_json_str(a->args, a->args_len)));
                }
                if (calls)
                    json_object_set_new(msg, "tool_calls", calls);
                oa_calls_free(&rp.calls);
            } else {
                struct oa_buf t = {0};
                oa_buf_add(&t, echo, strlen(echo));
                oa_buf_add(&t, s->text.data ? s->text.data : "", s->text.len);
                c = json_pack("{s:I,s:o,s:o,s:o}", "index", idx, "text", oa_json_str(t.data, t.len),
                              "logprobs", lp, "finish_reason", finish_json(s->finish));
                oa_buf_free(&t);
            }
            json_array_append_new(choices, c);
        }
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", g->id, "object",
                          g->req.kind == OA_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)g->created, "model", g->model, "choices", choices, "usage",
                          oa_usage_json(g));
    char *str = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return str;
}
