/* Internals of the OpenAI frontend plugin: request parsing (oa-request.c),
 * JSON/SSE rendering (oa-response.c), per-request generation state
 * (oa-gen.c), metrics (oa-metrics.c) and the HTTP server (openai.c). */
#ifndef ZLIGHT_OA_IMPL_H
#define ZLIGHT_OA_IMPL_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <zlight/frontend.h>
#include <zlight/plugin.h>

/* The host table from init(); NULL in unit tests (logs then go nowhere). */
extern const struct zl_host *oa_host;
#define OA_LOG(level, ...) \
    do { if (oa_host) oa_host->log((level), "openai", __VA_ARGS__); } while (0)

#define OA_MAX_N 16             /* choices per prompt */
#define OA_MAX_PROMPTS 64       /* prompts of one completions request */
#define OA_MAX_STOP 16          /* stop strings */

/* An error in OpenAI's shape, with its HTTP status. */
struct oa_err {
    int status;                 /* 400, 401, 404, 413, 500, 503 ... */
    const char *type;           /* "invalid_request_error", "server_error", ... */
    const char *param;          /* offending field or NULL */
    const char *code;           /* OpenAI error code or NULL */
    char message[512];
};

int oa_fail(struct oa_err *e, int status, const char *param, const char *fmt, ...) ZL_PRINTF(4, 5);

/* A growable byte buffer (always NUL-terminated when data != NULL). */
struct oa_buf {
    char *data;
    size_t len, cap;
};
int oa_buf_add(struct oa_buf *b, const char *s, size_t n);
int oa_buf_printf(struct oa_buf *b, const char *fmt, ...) ZL_PRINTF(2, 3);
void oa_buf_free(struct oa_buf *b);

enum oa_kind { OA_COMPLETION = 0, OA_CHAT = 1 };

/* Helpers of the reply readers (oa-tools.c): the index of `name` in
 * names (NULL or "": names[0]), -1 if absent; the first `what` in s[0, n)
 * or NULL; the longest tail of s[0, n) that is a proper prefix of `what`
 * (text that may still become it); the first non-space from i. */
int oa_pick(const char *const *names, size_t n, const char *name);
const char *oa_find(const char *s, size_t n, const char *what);
size_t oa_partial_tail(const char *s, size_t n, const char *what);
size_t oa_skip_ws(const char *s, size_t n, size_t i);

/* Reasoning parsers (oa-reason.c; server.reasoning_parser). */
enum oa_reason { OA_REASON_NONE = 0, OA_REASON_DEEPSEEK_R1 = 1, OA_REASON_QWEN3 = 2 };
/* "none", "deepseek_r1", "qwen3" (NULL or "": none); -1 for others. */
int oa_reason_parser(const char *name, enum oa_reason *out);
/* A reply split into reasoning text[r_off, r_end) and content from c_off
 * (len while it may still be reasoning).  While streaming (final 0), a
 * tail that may still become a tag is left out of both. */
struct oa_split {
    size_t r_off, r_end, c_off;
};
void oa_reason_split(enum oa_reason p, const char *text, size_t len, int final,
                     struct oa_split *out);

/* Tool-call parsers (oa-tools.c; server.tool_call_parser). */
enum oa_tools {
    OA_TOOLS_NONE = 0,
    OA_TOOLS_HERMES = 1,
    OA_TOOLS_LLAMA3_JSON = 2,
    OA_TOOLS_MISTRAL = 3,
    OA_TOOLS_DEEPSEEK_V3 = 4,
};
/* "none", "hermes", "llama3_json", "mistral", "deepseek_v3" (NULL or "":
 * none); -1 for others. */
int oa_tools_parser(const char *name, enum oa_tools *out);
/* A tool call read from a reply: its name, and its arguments as far as
 * the reply has them (the model's JSON text, a string argument's value, or
 * "{}"): into the text read, or own. */
struct oa_call {
    char *name;
    const char *args;
    size_t args_len;
    char *own;
};
/* What a reply so far says: text[0, content_len) may go out as content,
 * and the calls it has committed to (n = 0: none, yet or at all).  Read
 * again with more text (or final: the reply has ended), it gives the same
 * calls with the last one's arguments grown, maybe more calls; the whole
 * reply's are the non-streamed reply's.  Arguments point into the text. */
struct oa_calls {
    size_t content_len;
    struct oa_call *call;       /* [n] */
    size_t n;
};
void oa_tools_read(enum oa_tools p, const char *text, size_t len, int final, struct oa_calls *out);
void oa_calls_free(struct oa_calls *c);
/* The length of the valid UTF-8 character at p (n bytes left), 0 if invalid. */
size_t oa_utf8_len(const unsigned char *p, size_t n);
/* One tool call as the API writes it: {"id": "chatcmpl-tool-<random>", "type": "function",
 * "function": {"name", "arguments"}}; takes arguments (a JSON string) over. */
json_t *oa_tool_call(const char *name, json_t *arguments);

struct oa_prompt {
    int32_t *ids;               /* [n] after tokenization */
    size_t n;
    char *text;                 /* the prompt text (for echo), NULL when given as ids */
};

/* A parsed, validated /v1/completions or /v1/chat/completions request. */
struct oa_req {
    enum oa_kind kind;
    struct oa_prompt *prompts;  /* [n_prompts]; chat: one, the rendered template */
    size_t n_prompts;
    struct zl_sampling_params sp;  /* arrays below are owned here */
    int stream, include_usage, echo;
    int logprobs;               /* -1: none; else top-k (0..20) */
    int prompt_logprobs;        /* echo with logprobs: the prompt's too, top-k as logprobs */
    int echo_only;              /* echo with max_tokens 0: the prompt alone (one token is
                                   generated and dropped) */
    int skip_special, include_stop_str;
    int want_tools;             /* chat with tools and tool_choice auto (or absent) */
    char *json_schema;          /* response_format / guided_json / a forced tool's parameters:
                                   the reply's schema, or NULL */
    char *tool_name;            /* tool_choice forcing a function: its name (the whole reply
                                   is its arguments), else NULL */
    int tool_required;          /* forced by "required" (finish_reason "tool_calls"); without
                                   tool_name, one of several tools: the reply is one
                                   {"name", "parameters"} object, read as llama3_json */
    int32_t *logit_bias_ids;
    float *logit_bias;
    int32_t *stop_token_ids;
    char **stop;
};

/* Whether tool_choice forces a call: the reply is JSON from its first
 * token, and no content. */
static inline int oa_tool_forced(const struct oa_req *r)
{
    return r->tool_name || r->tool_required;
}

/* Parses `body` (len bytes) and validates every field against the engine
 * (model name, vocabulary, context length); strings prompts are tokenized
 * and chat messages rendered through `api`.  On failure fills *e and
 * returns its status as a negative number; *r is then freed. */
int oa_parse_request(enum oa_kind kind, const char *body, size_t len,
                     const struct zl_engine_api *api, struct oa_req *r, struct oa_err *e);
void oa_req_free(struct oa_req *r);
/* /tokenize and /detokenize bodies -> response JSON (malloc'd) or *e. */
char *oa_tokenize(const char *body, size_t len, const struct zl_engine_api *api, struct oa_err *e);
char *oa_detokenize(const char *body, size_t len, const struct zl_engine_api *api,
                    struct oa_err *e);
/* Loads a JSON object body or fails with 400. */
json_t *oa_load_object(const char *body, size_t len, struct oa_err *e);

/* One sequence's output so far. */
struct oa_seq {
    struct oa_buf text;
    size_t text_sent;           /* content bytes of text sent (offsets into text) */
    size_t reason_sent;         /* reasoning bytes of text sent */
    struct zl_fe_token *tok;    /* [n_tok] when logprobs were asked */
    size_t n_tok, cap_tok, tok_sent;
    int32_t n_gen;              /* generated tokens */
    int finish;                 /* enum zl_fe_finish */
    int finish_sent, started;
    size_t calls_sent;          /* tool calls opened in the stream */
    size_t args_sent;           /* arguments bytes of the last one sent */
};

/* One engine request (a prompt of the HTTP request). */
struct oa_sub {
    struct oa_gen *gen;
    uint64_t id;
    int submitted, done;
    int32_t n_prompt, n_cached;
    struct oa_seq seq[OA_MAX_N];
    /* prompt logprobs, from the first output that carries them */
    int32_t n_plp, plp_k;
    float *plp;                 /* [n_plp] */
    int32_t *plp_ids;           /* [n_plp * plp_k] */
    float *plp_top;             /* [n_plp * plp_k] */
    size_t plp_text_len;        /* the prompt tokens' strings, summed: the generated
                                   tokens' text_offset starts there */
};

struct oa_server;

/* One generation HTTP request; shared by its connection and the engine
 * until both let go (refs). */
struct oa_gen {
    pthread_mutex_t mu;
    int refs;
    struct oa_server *srv;
    void *conn;                 /* struct MHD_Connection * */
    int suspended;              /* we suspended conn and nobody resumed it yet */
    int closed;                 /* the connection is gone */
    int reaped;                 /* the reaper cancelled it */
    int fd;                     /* the connection's socket, for the reaper */
    struct oa_req req;
    char id[48];
    char *model;                /* borrowed from the engine api */
    int64_t created;
    struct oa_sub *subs;        /* [req.n_prompts] */
    size_t n_done;              /* subs done */
    char *error;                /* engine failure message */
    int error_status;           /* its HTTP status; 0 = 500 */
    struct oa_buf out;          /* SSE bytes not yet handed to MHD */
    size_t out_off;
    int head_sent, tail_sent;
    double t_start, t_first, t_last;
    enum oa_tools tools;        /* the parser applied to the replies (chat with tools) */
    enum oa_reason reason;      /* the reasoning parser (chat) */
};

/* Creates a generation for a parsed request (takes *req over). */
struct oa_gen *oa_gen_create(struct oa_server *srv, struct oa_req *req, const char *model);
void oa_gen_unref(struct oa_gen *g);
/* The engine callback (user = struct oa_sub *). */
void oa_gen_on_output(void *user, const struct zl_fe_output *o);
/* Takes the lock; fills `out` with new SSE bytes from the current state.
 * Returns 1 when the stream is complete (all sent), 0 otherwise.  Caller
 * holds g->mu. */
int oa_gen_stream_pump(struct oa_gen *g, const struct zl_engine_api *api);
/* Full non-streamed response body (caller holds g->mu; all subs done). */
char *oa_gen_response(struct oa_gen *g, const struct zl_engine_api *api);
int oa_gen_all_done(const struct oa_gen *g);

/* JSON rendering helpers (oa-response.c). */
char *oa_error_json(const struct oa_err *e);
json_t *oa_usage_json(const struct oa_gen *g);
const char *oa_finish_name(int finish);
/* A JSON string of n bytes; invalid UTF-8 bytes become U+FFFD. */
json_t *oa_json_str(const char *s, size_t n);
json_t *oa_logprobs_json(struct oa_gen *g, const struct zl_engine_api *api, struct oa_seq *s,
                         size_t from, size_t to, size_t text_base);
/* Completions: prompt i's tokens as logprobs arrays (text offsets from 0,
 * the first token's logprob and top null; sets the sub's plp_text_len);
 * appending more's arrays to into's (more is freed). */
json_t *oa_prompt_logprobs_json(struct oa_gen *g, const struct zl_engine_api *api, size_t i);
void oa_logprobs_append(json_t *into, json_t *more);
int oa_sse_json(struct oa_buf *b, json_t *obj);   /* appends "data: {...}\n\n", steals obj */
char *oa_models_json(const struct zl_engine_api *api);
char *oa_version_json(const struct zl_engine_api *api);

/* Metrics (oa-metrics.c). */
struct oa_metrics;
struct oa_metrics *oa_metrics_create(void);
void oa_metrics_free(struct oa_metrics *m);
void oa_metrics_http(struct oa_metrics *m, unsigned status);
void oa_metrics_request(struct oa_metrics *m, const struct oa_gen *g);
char *oa_metrics_text(struct oa_metrics *m, const struct zl_engine_api *api, int running_http);

/* Server internals needed by oa-gen.c. */
void oa_server_wake(struct oa_server *srv, struct oa_gen *g);
void oa_server_gen_finished(struct oa_server *srv, struct oa_gen *g);
double oa_now(void);

#endif
