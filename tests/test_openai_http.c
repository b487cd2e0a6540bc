/* OpenAI frontend over real HTTP on 127.0.0.1 (ephemeral port) against the
 * mock engine api: endpoints, SSE framing, error statuses, auth, body
 * limit, client disconnects and graceful stop. */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../plugins/openai/oa-impl.h"
#include "openai-mock.h"

const struct zl_plugin_desc *zl_plugin_entry(void);

static const struct zl_frontend_ops *ops;
static struct mock_engine *m;
static void *srv;
static int port;

static void host_log(enum zl_log_level l, const char *who, const char *fmt, ...)
{
    (void)l, (void)who, (void)fmt;
}
static int host_error(int status, const char *fmt, ...)
{
    (void)fmt;
    return status;
}
static int host_register(enum zl_plugin_kind kind, const char *name, const void *o)
{
    cr_assert_eq(kind, ZL_PLUGIN_FRONTEND);
    cr_assert_str_eq(name, "openai");
    ops = o;
    return 0;
}

static const char *g_tool_parser; /* server.tool_call_parser of the next start */
static const char *g_reason_parser; /* server.reasoning_parser of the next start */

static void start_with(const char *api_key, int64_t max_body)
{
    static struct zl_host host = {.size = sizeof host, .log = host_log, .error = host_error,
                                  .register_ops = host_register};
    cr_assert_eq(zl_plugin_entry()->init(&host), 0);
    cr_assert_eq(ops->size, sizeof *ops);
    m = mock_create();
    struct zl_frontend_params p = zl_frontend_default_params();
    p.engine = &m->api;
    p.port = 0;
    p.api_key = api_key;
    p.max_body_bytes = max_body;
    p.threads = 2;
    p.tool_call_parser = g_tool_parser;
    p.reasoning_parser = g_reason_parser;
    cr_assert_eq(ops->start(&p, &srv), 0);
    port = ops->bound_port(srv);
    cr_assert_gt(port, 0);
}

static void setup(void) { start_with(NULL, 4096); }
static void teardown(void)
{
    ops->stop(srv, 1000);
    ops->destroy(srv);
    mock_free(m);
}

TestSuite(openai_http, .init = setup, .fini = teardown, .timeout = 20);

struct resp {
    int status;
    char head[4096];
    char *body;     /* de-chunked, NUL-terminated */
    size_t len;
};

static int connect_srv(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_req(int fd, const char *method, const char *path, const char *body,
                     const char *extra)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, extra ? extra : "",
                     body ? "Content-Type: application/json\r\n" : "", body ? strlen(body) : 0);
    cr_assert_eq(write(fd, head, (size_t)n), n);
    if (body && *body)
        cr_assert_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
}

static void dechunk(struct resp *r)
{
    char *in = r->body, *out = r->body, *end = r->body + r->len;
    while (in < end) {
        char *e;
        unsigned long n = strtoul(in, &e, 16);
        if (e == in || !(e = strstr(e, "\r\n")))
            break;
        in = e + 2;
        if (n == 0)
            break;
        memmove(out, in, n);
        out += n;
        in += n + 2;
    }
    r->len = (size_t)(out - r->body);
    r->body[r->len] = 0;
}

static struct resp read_resp(int fd)
{
    struct resp r = {0};
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while ((k = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)k;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[len] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    cr_assert_not_null(sep, "no response head: '%s'", buf);
    size_t hl = (size_t)(sep - buf);
    memcpy(r.head, buf, hl < sizeof r.head - 1 ? hl : sizeof r.head - 1);
    sscanf(buf, "HTTP/1.%*d %d", &r.status);
    r.len = len - hl - 4;
    r.body = malloc(r.len + 1);
    memcpy(r.body, sep + 4, r.len);
    r.body[r.len] = 0;
    free(buf);
    if (strcasestr(r.head, "Transfer-Encoding: chunked"))
        dechunk(&r);
    return r;
}

static struct resp http(const char *method, const char *path, const char *body, const char *extra)
{
    int fd = connect_srv();
    send_req(fd, method, path, body, extra);
    return read_resp(fd);
}

static json_t *json_of(const struct resp *r)
{
    json_t *o = json_loads(r->body, 0, NULL);
    cr_assert_not_null(o, "not JSON: '%s'", r->body);
    return o;
}

/* The error body has OpenAI's shape; returns its message. */
static void expect_error(const struct resp *r, int status)
{
    cr_assert_eq(r->status, status, "status %d (expected %d): %s", r->status, status, r->body);
    json_t *o = json_of(r), *e = json_object_get(o, "error");
    cr_assert(json_is_string(json_object_get(e, "message")), "%s", r->body);
    cr_assert(json_is_string(json_object_get(e, "type")), "%s", r->body);
    cr_assert(json_object_get(e, "param") && json_object_get(e, "code"), "%s", r->body);
    json_decref(o);
}

#define FREE(r) free((r).body)

Test(openai_http, info_endpoints)
{
    struct resp r = http("GET", "/v1/models", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_t *o = json_of(&r);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(o, "data"), 0), "id")),
                     "mock-model");
    json_decref(o);
    FREE(r);
    r = http("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 200);
    FREE(r);
    r = http("GET", "/version", NULL, NULL);
    cr_assert(r.status == 200 && strstr(r.body, "0.0.test"), "%s", r.body);
    FREE(r);
    r = http("GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head, "text/plain"));
    cr_assert(strstr(r.body, "zlight:kv_cache_usage_perc{model_name=\"mock-model\"} 0.25"), "%s", r.body);
    cr_assert(strstr(r.body, "# TYPE zlight:time_to_first_token_seconds histogram"));
    cr_assert(strstr(r.body, "zlight:generation_tokens_total{model_name=\"mock-model\"} 42"));
    cr_assert(strstr(r.body, "zlight:engine_async_steps_total{model_name=\"mock-model\"} 7"));
    FREE(r);
    r = http("POST", "/tokenize", "{\"prompt\":\"hi\"}", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"count\":3,\"tokens\":[257,104,105],\"max_model_len\":64}");
    FREE(r);
}

Test(openai_http, completion_non_streamed)
{
    struct resp r = http("POST", "/v1/completions",
                         "{\"model\":\"mock-model\",\"prompt\":\"hi\",\"max_tokens\":5}", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r), *c = json_array_get(json_object_get(o, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(o, "object")), "text_completion");
    cr_assert_str_eq(json_string_value(json_object_get(c, "text")), "abcde");
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "length");
    json_t *u = json_object_get(o, "usage");
    cr_assert_eq(json_integer_value(json_object_get(u, "prompt_tokens")), 3);
    cr_assert_eq(json_integer_value(json_object_get(u, "completion_tokens")), 5);
    cr_assert_eq(json_integer_value(json_object_get(u, "total_tokens")), 8);
    cr_assert_eq(m->last.sampling.max_tokens, 5);
    json_decref(o);
    FREE(r);
}

Test(openai_http, completion_echo_n_and_prompt_list)
{
    m->eos_after = 2;
    struct resp r = http("POST", "/v1/completions",
                         "{\"prompt\":[\"hi\",\"yo\"],\"n\":2,\"echo\":true,\"logprobs\":1,"
                         "\"max_tokens\":5}", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r), *ch = json_object_get(o, "choices");
    cr_assert_eq(json_array_size(ch), 4);
    static const char *const want[4] = {"hiab", "hibc", "yoab", "yobc"};
    for (size_t i = 0; i < 4; i++) {
        json_t *c = json_array_get(ch, i);
        cr_assert_eq(json_integer_value(json_object_get(c, "index")), (json_int_t)i);
        cr_assert_str_eq(json_string_value(json_object_get(c, "text")), want[i]);
        cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "stop");
        /* echo with logprobs: the prompt's tokens first (the mock's -i/8) */
        json_t *lp = json_object_get(c, "logprobs"), *lps = json_object_get(lp, "token_logprobs");
        json_t *offs = json_object_get(lp, "text_offset"), *tops = json_object_get(lp, "top_logprobs");
        cr_assert_eq(json_array_size(json_object_get(lp, "tokens")), 6,
                     "the prompt's BOS and two bytes, two letters and EOS: %s", r.body);
        cr_assert_str_eq(json_string_value(json_array_get(json_object_get(lp, "tokens"), 2)),
                         i < 2 ? "i" : "o");
        cr_assert(json_is_null(json_array_get(lps, 0)) && json_is_null(json_array_get(tops, 0)));
        cr_assert_float_eq(json_real_value(json_array_get(lps, 1)), -0.125, 1e-6);
        cr_assert_float_eq(json_real_value(json_array_get(lps, 3)), -0.25, 1e-6, "generated");
        static const json_int_t off[6] = {0, 3, 4, 5, 6, 7}; /* "<s>" "h" "i" "a" "b" "</s>" */
        for (int k = 0; k < 6; k++)
            cr_assert_eq(json_integer_value(json_array_get(offs, (size_t)k)), off[k], "%d", k);
        cr_assert_eq(json_object_size(json_array_get(tops, 1)), 1);
        cr_assert_eq(json_object_size(json_array_get(tops, 3)), 1);
    }
    json_decref(o);
    FREE(r);
}

/* vLLM's GET /tokenizer_info, what lm-evaluation-harness's remote
 * tokenizer reads (it needs eos_token), passed through from the engine. */
Test(openai_http, tokenizer_info)
{
    struct resp r = http("GET", "/tokenizer_info", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r);
    cr_assert_str_eq(json_string_value(json_object_get(o, "eos_token")), "</s>");
    cr_assert_eq(json_integer_value(json_object_get(o, "model_max_length")), 64);
    json_decref(o);
    FREE(r);
    m->api.tokenizer_info = NULL; /* an engine without it */
    r = http("GET", "/tokenizer_info", NULL, NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    FREE(r);
}

/* echo with max_tokens 0: the prompt alone, scored; no token returned. */
Test(openai_http, completion_echo_without_generation)
{
    struct resp r = http("POST", "/v1/completions",
                         "{\"prompt\":\"hey\",\"echo\":true,\"logprobs\":1,\"max_tokens\":0}", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r), *c = json_array_get(json_object_get(o, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "text")), "hey");
    cr_assert_eq(json_array_size(json_object_get(json_object_get(c, "logprobs"), "tokens")), 4,
                 "BOS and 'hey', nothing generated: %s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "usage"), "completion_tokens")),
                 0);
    cr_assert_eq(m->last.sampling.max_tokens, 1, "one token generated, then dropped");
    json_decref(o);
    FREE(r);
}

static size_t sse_events(char *body, char **ev, size_t max);

/* Streamed, the echo chunk carries the prompt's logprobs and the rest
 * follows: the tokens add up to the non-streamed response's. */
Test(openai_http, completion_echo_logprobs_streamed)
{
#define ECHO_BODY(extra) "{\"prompt\":\"hey\",\"echo\":true,\"logprobs\":2,\"max_tokens\":3" extra "}"
    const char *b1 = ECHO_BODY(""), *b2 = ECHO_BODY(",\"stream\":true");
    struct resp r = http("POST", "/v1/completions", b1, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r);
    json_t *want = json_object_get(json_object_get(json_array_get(json_object_get(o, "choices"), 0),
                                                   "logprobs"), "tokens");
    cr_assert_eq(json_array_size(want), 7, "BOS, 'hey', three letters");
    struct resp s = http("POST", "/v1/completions", b2, NULL);
    cr_assert_eq(s.status, 200, "%s", s.body);
    char *ev[64];
    size_t n = sse_events(s.body, ev, 64);
    json_t *got = json_array();
    for (size_t i = 0; i + 1 < n; i++) {
        json_t *c = json_loads(ev[i], 0, NULL);
        json_t *lp = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "logprobs");
        if (i == 0)
            cr_assert_eq(json_array_size(json_object_get(lp, "tokens")), 4, "the echo: BOS, 'hey'");
        json_array_extend(got, json_object_get(lp, "tokens"));
        json_decref(c);
    }
    cr_assert(json_equal(got, want), "%s", s.body);
    json_decref(got);
    json_decref(o);
    FREE(r);
    FREE(s);
}

/* Splits an SSE body into its data payloads. */
static size_t sse_events(char *body, char **ev, size_t max)
{
    size_t n = 0;
    for (char *p = strtok(body, "\n"); p && n < max; p = strtok(NULL, "\n")) {
        cr_assert(!strncmp(p, "data: ", 6), "bad SSE line '%s'", p);
        ev[n++] = p + 6;
    }
    return n;
}

Test(openai_http, chat_streamed_equals_non_streamed)
{
    const char *base = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4";
    char body[512];
    snprintf(body, sizeof body, "%s}", base);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r);
    json_t *msg = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "message");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "role")), "assistant");
    const char *full = json_string_value(json_object_get(msg, "content"));
    cr_assert_str_eq(full, "abcd");

    m->tick_us = 2000;
    snprintf(body, sizeof body, "%s,\"stream\":true,\"stream_options\":{\"include_usage\":true}}", base);
    struct resp s = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(s.status, 200);
    cr_assert(strcasestr(s.head, "Content-Type: text/event-stream"), "%s", s.head);
    char *ev[64];
    size_t n = sse_events(s.body, ev, 64);
    cr_assert_geq(n, 4);
    cr_assert_str_eq(ev[n - 1], "[DONE]");
    char text[64] = "";
    int saw_finish = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        json_t *c = json_loads(ev[i], 0, NULL);
        cr_assert_not_null(c, "%s", ev[i]);
        cr_assert_str_eq(json_string_value(json_object_get(c, "object")), "chat.completion.chunk");
        json_t *choices = json_object_get(c, "choices");
        if (i == n - 2) {   /* the usage chunk: no choices */
            cr_assert_eq(json_array_size(choices), 0, "%s", ev[i]);
            cr_assert_eq(json_integer_value(json_object_get(json_object_get(c, "usage"), "completion_tokens")), 4);
        } else {
            cr_assert(json_is_null(json_object_get(c, "usage")), "%s", ev[i]);
            json_t *ch = json_array_get(choices, 0), *d = json_object_get(ch, "delta");
            if (i == 0)
                cr_assert_str_eq(json_string_value(json_object_get(d, "role")), "assistant");
            else
                cr_assert_null(json_object_get(d, "role"));
            cr_assert(!saw_finish, "a chunk after the finish_reason: %s", ev[i]);
            if (json_is_string(json_object_get(ch, "finish_reason"))) {
                saw_finish = 1;
                cr_assert_str_eq(json_string_value(json_object_get(ch, "finish_reason")), "length");
                cr_assert_eq(i, n - 3, "finish_reason rides on the last content chunk");
            }
            strcat(text, json_string_value(json_object_get(d, "content")));
        }
        json_decref(c);
    }
    cr_assert(saw_finish);
    cr_assert_str_eq(text, full);
    json_decref(o);
    FREE(r);
    FREE(s);
}

Test(openai_http, completion_stream_without_usage)
{
    struct resp s = http("POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":3,\"stream\":true}", NULL);
    cr_assert_eq(s.status, 200);
    char *ev[16];
    size_t n = sse_events(s.body, ev, 16);
    cr_assert_str_eq(ev[n - 1], "[DONE]");
    json_t *last = json_loads(ev[n - 2], 0, NULL);
    cr_assert_null(json_object_get(last, "usage"));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(last, "choices"), 0),
                                                       "finish_reason")), "length");
    json_decref(last);
    FREE(s);
}

Test(openai_http, errors_keep_the_server_serving)
{
    struct resp r = http("POST", "/v1/completions", "{\"prompt\":", NULL);
    expect_error(&r, 400);
    FREE(r);
    r = http("POST", "/v1/completions", "{\"prompt\":\"a\",\"temperature\":-1}", NULL);
    expect_error(&r, 400);
    cr_assert(strstr(r.body, "\"param\":\"temperature\""), "%s", r.body);
    FREE(r);
    r = http("POST", "/v1/chat/completions", "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", NULL);
    expect_error(&r, 404);
    FREE(r);
    r = http("POST", "/v1/completions", "{\"prompt\":\"a\",\"suffix\":\"b\"}", NULL);
    expect_error(&r, 400);
    FREE(r);
    r = http("GET", "/v1/nothing", NULL, NULL);
    expect_error(&r, 404);
    FREE(r);
    r = http("GET", "/v1/completions", NULL, NULL);
    expect_error(&r, 405);
    FREE(r);
    char big[6000];
    memset(big, 'a', sizeof big);
    memcpy(big, "{\"prompt\":\"", 11);
    strcpy(big + sizeof big - 3, "\"}");
    r = http("POST", "/v1/completions", big, NULL);
    expect_error(&r, 413);
    FREE(r);
    r = http("POST", "/v1/completions", "{\"prompt\":\"ok\",\"max_tokens\":2}", NULL);
    cr_assert_eq(r.status, 200, "still serving: %s", r.body);
    FREE(r);
}

Test(openai_http, a_refused_second_prompt_fails_the_request_and_cancels_the_first)
{
    m->tick_us = 2000;
    m->fail_submit_at = 2;
    struct resp r = http("POST", "/v1/completions", "{\"prompt\":[\"a\",\"b\"],\"max_tokens\":40}", NULL);
    expect_error(&r, 400);
    cr_assert(strstr(r.body, "bad request for the mock"), "%s", r.body);
    cr_assert_eq(m->n_cancels, 1, "the first prompt's request was cancelled");
    cr_assert(mock_wait_idle(m, 3000));
    FREE(r);
    /* streamed: the error arrives as an SSE event, then [DONE] */
    m->fail_submit_at = m->n_submits + 2;
    r = http("POST", "/v1/completions", "{\"prompt\":[\"a\",\"b\"],\"max_tokens\":40,\"stream\":true}", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "data: {\"error\":{\"message\":\"bad request for the mock\""), "%s", r.body);
    cr_assert(strstr(r.body, "data: [DONE]\n\n"), "%s", r.body);
    FREE(r);
}

Test(openai_http, dead_engine_gives_503)
{
    m->dead = 1;
    struct resp r = http("GET", "/health", NULL, NULL);
    expect_error(&r, 503);
    FREE(r);
    r = http("POST", "/v1/completions", "{\"prompt\":\"a\"}", NULL);
    expect_error(&r, 503);
    FREE(r);
}

/* Sends a request on a fresh connection and waits until the engine has it. */
static int submit_and_wait(const char *body)
{
    int fd = connect_srv();
    send_req(fd, "POST", "/v1/completions", body, NULL);
    for (int i = 0; i < 2000 && m->n_submits == 0; i++)
        usleep(1000);
    cr_assert_eq(m->n_submits, 1, "the request did not reach the engine");
    return fd;
}

Test(openai_http, disconnect_mid_stream_cancels)
{
    m->tick_us = 2000;
    int fd = submit_and_wait("{\"prompt\":\"a\",\"max_tokens\":50,\"stream\":true}");
    char buf[256];
    cr_assert_gt(read(fd, buf, sizeof buf), 0);
    close(fd);
    cr_assert(mock_wait_idle(m, 3000), "the request was not cancelled");
    cr_assert_eq(m->n_cancels, 1);
}

Test(openai_http, disconnect_while_queued_cancels)
{
    m->hold = 1;
    close(submit_and_wait("{\"prompt\":\"a\",\"max_tokens\":5}"));
    for (int i = 0; i < 3000 && m->n_cancels == 0; i++)
        usleep(1000);
    cr_assert_eq(m->n_cancels, 1, "the reaper did not notice the client leaving");
    m->hold = 0;
    cr_assert(mock_wait_idle(m, 3000));
}

Test(openai_http, graceful_stop_finishes_in_flight)
{
    m->tick_us = 2000;
    int fd = submit_and_wait("{\"prompt\":\"a\",\"max_tokens\":20}");
    ops->stop(srv, 5000);
    struct resp r = read_resp(fd);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "abcdefghijklmnopqrst"), "%s", r.body);
    cr_assert_eq(m->n_cancels, 0);
    FREE(r);
}

Test(openai_http, stop_after_grace_cancels)
{
    m->tick_us = 20000;
    int fd = submit_and_wait("{\"prompt\":\"a\",\"max_tokens\":50,\"stream\":true}");
    ops->stop(srv, 50);
    struct resp r = read_resp(fd);
    cr_assert_eq(m->n_cancels, 1);
    cr_assert(strstr(r.body, "\"finish_reason\":\"abort\""), "%s", r.body);
    cr_assert(strstr(r.body, "data: [DONE]"), "%s", r.body);
    FREE(r);
}

static void setup_key(void) { start_with("sekret", 4096); }
TestSuite(openai_auth, .init = setup_key, .fini = teardown, .timeout = 20);

Test(openai_auth, bearer_key_required_on_v1)
{
    struct resp r = http("GET", "/v1/models", NULL, NULL);
    expect_error(&r, 401);
    FREE(r);
    r = http("GET", "/v1/models", NULL, "Authorization: Bearer wrong\r\n");
    expect_error(&r, 401);
    FREE(r);
    r = http("GET", "/v1/models", NULL, "Authorization: Bearer sekret\r\n");
    cr_assert_eq(r.status, 200);
    FREE(r);
    r = http("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 200, "health needs no key");
    FREE(r);
}

/* server.tool_call_parser hermes over a mock that writes a Qwen-style
 * call: the reply's tool_calls, unstreamed and streamed alike. */
static void setup_tools(void)
{
    g_tool_parser = "hermes";
    start_with(NULL, 4096);
    g_tool_parser = NULL;
    m->api.max_model_len = 512;
    m->script = "On it.<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}"
                "</tool_call>";
}

TestSuite(openai_tools_http, .init = setup_tools, .fini = teardown, .timeout = 20);

#define TOOL_CHAT_MAX(max_tokens, extra)                                                         \
    "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"max_tokens\":" max_tokens ","    \
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"parameters\":{}}}]"      \
    extra "}"
#define TOOL_CHAT(extra) TOOL_CHAT_MAX("200", extra)

static void expect_call(json_t *call)
{
    json_t *f = json_object_get(call, "function");
    cr_assert_str_eq(json_string_value(json_object_get(f, "name")), "weather");
    cr_assert_str_eq(json_string_value(json_object_get(f, "arguments")), "{\"city\": \"Oslo\"}",
                     "the arguments as the model wrote them");
    cr_assert_str_eq(json_string_value(json_object_get(call, "type")), "function");
    cr_assert(!strncmp(json_string_value(json_object_get(call, "id")), "chatcmpl-tool-", 14));
}

Test(openai_tools_http, tool_calls_unstreamed)
{
    struct resp r = http("POST", "/v1/chat/completions", TOOL_CHAT(""), NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r), *c = json_array_get(json_object_get(o, "choices"), 0);
    json_t *msg = json_object_get(c, "message");
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "tool_calls");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "content")), "On it.");
    cr_assert_eq(json_array_size(json_object_get(msg, "tool_calls")), 1);
    expect_call(json_array_get(json_object_get(msg, "tool_calls"), 0));
    json_decref(o);
    FREE(r);
    /* tool_choice none: the reply stays text */
    r = http("POST", "/v1/chat/completions", TOOL_CHAT(",\"tool_choice\":\"none\""), NULL);
    o = json_of(&r);
    c = json_array_get(json_object_get(o, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "message"), "content")),
                     m->script);
    cr_assert_null(json_object_get(json_object_get(c, "message"), "tool_calls"));
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "stop");
    json_decref(o);
    FREE(r);
}

/* A streamed chat reply per choice: what its deltas said, checked as they
 * come: content only before the first call, each call opened once (index
 * in order, id, type, name, arguments "") before its argument fragments,
 * fragments only for the call opened last, nothing after the finish. */
#define MAX_CALLS 4
struct streamed {
    struct oa_buf content, reasoning;
    size_t n_calls;
    char id[MAX_CALLS][64], name[MAX_CALLS][32];
    struct oa_buf args[MAX_CALLS];
    int frags[MAX_CALLS];
    char finish[16];
};

static void read_stream(struct resp *r, struct streamed *st, size_t n)
{
    char *ev[2048];
    size_t k = sse_events(r->body, ev, 2048);
    memset(st, 0, n * sizeof *st);
    cr_assert_str_eq(ev[k - 1], "[DONE]");
    for (size_t i = 0; i + 1 < k; i++) {
        json_t *o = json_loads(ev[i], 0, NULL);
        json_t *c = json_array_get(json_object_get(o, "choices"), 0);
        cr_assert_not_null(o, "%s", ev[i]);
        if (!c) { /* the usage chunk */
            json_decref(o);
            continue;
        }
        json_int_t x = json_integer_value(json_object_get(c, "index"));
        cr_assert(x >= 0 && (size_t)x < n, "%s", ev[i]);
        struct streamed *s = &st[x];
        cr_assert(!s->finish[0], "a chunk after the finish_reason: %s", ev[i]);
        json_t *d = json_object_get(c, "delta"), *tc = json_object_get(d, "tool_calls");
        const char *txt = json_string_value(json_object_get(d, "content"));
        const char *rs = json_string_value(json_object_get(d, "reasoning_content"));
        if (txt && *txt) {
            cr_assert_eq(s->n_calls, 0, "content after a call: %s", ev[i]);
            oa_buf_add(&s->content, txt, strlen(txt));
        }
        if (rs)
            oa_buf_add(&s->reasoning, rs, strlen(rs));
        cr_assert(json_array_size(tc) <= 1, "one call entry a chunk: %s", ev[i]);
        json_t *call = json_array_get(tc, 0), *f = json_object_get(call, "function");
        const char *id = json_string_value(json_object_get(call, "id"));
        const char *args = json_string_value(json_object_get(f, "arguments"));
        if (call) {
            json_int_t ci = json_integer_value(json_object_get(call, "index"));
            cr_assert(args, "%s", ev[i]);
            if (id) { /* opens the next call */
                cr_assert_eq(ci, (json_int_t)s->n_calls, "%s", ev[i]);
                cr_assert_lt(s->n_calls, MAX_CALLS);
                cr_assert(!strncmp(id, "chatcmpl-tool-", 14), "%s", ev[i]);
                cr_assert_str_eq(json_string_value(json_object_get(call, "type")), "function");
                cr_assert_str_eq(args, "", "the opening has no arguments: %s", ev[i]);
                snprintf(s->id[ci], sizeof s->id[ci], "%s", id);
                snprintf(s->name[ci], sizeof s->name[ci], "%s",
                         json_string_value(json_object_get(f, "name")));
                s->n_calls++;
            } else { /* the open call's arguments grow */
                cr_assert_eq(ci + 1, (json_int_t)s->n_calls, "%s", ev[i]);
                cr_assert_null(json_object_get(f, "name"), "%s", ev[i]);
                cr_assert_null(json_object_get(call, "type"), "%s", ev[i]);
                cr_assert(*args, "an empty fragment: %s", ev[i]);
                oa_buf_add(&s->args[ci], args, strlen(args));
                s->frags[ci]++;
            }
        }
        if (json_is_string(json_object_get(c, "finish_reason")))
            snprintf(s->finish, sizeof s->finish, "%s",
                     json_string_value(json_object_get(c, "finish_reason")));
        json_decref(o);
    }
}

static void streamed_free(struct streamed *st, size_t n)
{
    for (size_t x = 0; x < n; x++) {
        oa_buf_free(&st[x].content);
        oa_buf_free(&st[x].reasoning);
        for (int k = 0; k < MAX_CALLS; k++)
            oa_buf_free(&st[x].args[k]);
    }
}

Test(openai_tools_http, tool_calls_streamed)
{
    m->tick_us = 500;
    struct resp r = http("POST", "/v1/chat/completions", TOOL_CHAT(",\"stream\":true"), NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    struct streamed st;
    read_stream(&r, &st, 1);
    cr_assert_str_eq(st.content.data, "On it.");
    cr_assert_eq(st.n_calls, 1);
    cr_assert_str_eq(st.name[0], "weather");
    cr_assert_str_eq(st.args[0].data, "{\"city\": \"Oslo\"}");
    cr_assert_gt(st.frags[0], 1, "the arguments go out as they come");
    cr_assert_str_eq(st.finish, "tool_calls");
    streamed_free(&st, 1);
    FREE(r);
}

/* Each parser, streamed (n = 2) and whole: the same content and calls;
 * the calls go out as they are generated, a long arguments object in many
 * fragments; the finish_reason "tool_calls" (or "length" when cut). */
static void restart_tools(const char *parser, const char *script)
{
    teardown();
    g_tool_parser = parser;
    start_with(NULL, 4096);
    g_tool_parser = NULL;
    m->api.max_model_len = 1024;
    m->script = script;
    m->tick_us = 300;
}

static void expect_streamed_calls(const char *parser, const char *script, const char *max_tokens,
                                  const char *finish)
{
    restart_tools(parser, script);
    char body[1024];
    snprintf(body, sizeof body, TOOL_CHAT_MAX("%s", ""), max_tokens);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r), *c = json_array_get(json_object_get(o, "choices"), 0);
    json_t *msg = json_object_get(c, "message"), *calls = json_object_get(msg, "tool_calls");
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), finish, "%s", r.body);
    cr_assert_geq(json_array_size(calls), 1, "%s: %s", parser, r.body);

    snprintf(body, sizeof body,
             TOOL_CHAT_MAX("%s", ",\"stream\":true,\"n\":2,\"stream_options\":{\"include_usage\":true}"),
             max_tokens);
    struct resp sr = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(sr.status, 200, "%s", sr.body);
    struct streamed st[2];
    read_stream(&sr, st, 2);
    const char *content = json_string_value(json_object_get(msg, "content"));
    for (int x = 0; x < 2; x++) {
        cr_assert_str_eq(st[x].content.data ? st[x].content.data : "", content ? content : "",
                         "%s: the content streamed is the content", parser);
        cr_assert_eq(st[x].n_calls, json_array_size(calls), "%s: %s", parser, sr.body);
        for (size_t k = 0; k < st[x].n_calls; k++) {
            json_t *f = json_object_get(json_array_get(calls, k), "function");
            cr_assert_str_eq(st[x].name[k], json_string_value(json_object_get(f, "name")));
            cr_assert_str_eq(st[x].args[k].data ? st[x].args[k].data : "",
                             json_string_value(json_object_get(f, "arguments")),
                             "%s: the fragments join into the arguments", parser);
            for (size_t q = 0; q < k; q++)
                cr_assert_str_neq(st[x].id[q], st[x].id[k], "each call its own id");
        }
        cr_assert_gt(st[x].frags[0], 10, "%s: %d fragments", parser, st[x].frags[0]);
        cr_assert_str_eq(st[x].finish, finish, "%s", parser);
    }
    cr_assert_str_neq(st[0].id[0], st[1].id[0], "each choice its own calls");
    streamed_free(st, 2);
    json_decref(o);
    FREE(r);
    FREE(sr);
}

#define LONG_ARGS \
    "{\"city\": \"Oslo\", \"days\": [1, 2, 3], \"unit\": \"celsius\", \"note\": \"é\"}"

Test(openai_tools_http, each_parser_streams_calls_as_they_come)
{
    expect_streamed_calls("hermes",
                          "On it.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": " LONG_ARGS
                          "}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n"
                          "</tool_call>", "400", "tool_calls");
    expect_streamed_calls("llama3_json",
                          "{\"name\": \"weather\", \"parameters\": " LONG_ARGS "}; {\"name\": "
                          "\"time\", \"parameters\": {}}", "400", "tool_calls");
    expect_streamed_calls("mistral",
                          "[{\"name\": \"weather\", \"arguments\": " LONG_ARGS "}, {\"name\": "
                          "\"time\", \"arguments\": {}}]", "400", "tool_calls");
    expect_streamed_calls("deepseek_v3",
                          "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
                          "weather\n```json\n" LONG_ARGS "\n```<｜tool▁call▁end｜>"
                          "<｜tool▁call▁begin｜>function<｜tool▁sep｜>time\n```json\n{}\n```"
                          "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "400", "tool_calls");
    /* cut by max_tokens inside the arguments: the call stands, "length" */
    expect_streamed_calls("hermes",
                          "On it.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": " LONG_ARGS
                          "}\n</tool_call>", "80", "length");
}

Test(openai_tools_http, unknown_parser_is_refused)
{
    struct zl_frontend_params p = zl_frontend_default_params();
    p.engine = &m->api;
    p.port = 0;
    p.tool_call_parser = "pythonic";
    void *other = NULL;
    cr_assert_eq(ops->start(&p, &other), ZL_EINVAL);
    cr_assert_null(other);
}

/* server.reasoning_parser qwen3 with the hermes tool reader: a reply that
 * thinks, says a word and calls a tool comes back as reasoning_content,
 * content and tool_calls, unstreamed and streamed alike. */
static void setup_reason(void)
{
    g_tool_parser = "hermes";
    g_reason_parser = "qwen3";
    start_with(NULL, 4096);
    g_tool_parser = g_reason_parser = NULL;
    m->api.max_model_len = 512;
    m->script = "<think>\nweigh it\n</think>\n\nOn it.<tool_call>{\"name\": \"weather\", "
                "\"arguments\": {\"city\": \"Oslo\"}}</tool_call>";
}

TestSuite(openai_reason_http, .init = setup_reason, .fini = teardown, .timeout = 20);

Test(openai_reason_http, reasoning_content_and_calls)
{
    struct resp r = http("POST", "/v1/chat/completions", TOOL_CHAT(""), NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r), *c = json_array_get(json_object_get(o, "choices"), 0);
    json_t *msg = json_object_get(c, "message");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "reasoning_content")), "\nweigh it\n");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "content")), "\n\nOn it.");
    cr_assert_eq(json_array_size(json_object_get(msg, "tool_calls")), 1);
    expect_call(json_array_get(json_object_get(msg, "tool_calls"), 0));
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "tool_calls");
    json_decref(o);
    FREE(r);

    r = http("POST", "/v1/chat/completions", TOOL_CHAT(",\"stream\":true"), NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *ev[256];
    size_t n = sse_events(r.body, ev, 256), calls = 0;
    struct oa_buf reasoning = {0}, content = {0};
    for (size_t i = 0; i + 1 < n; i++) {
        o = json_loads(ev[i], 0, NULL);
        json_t *d = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "delta");
        const char *rs = json_string_value(json_object_get(d, "reasoning_content"));
        const char *txt = json_string_value(json_object_get(d, "content"));
        cr_assert(!txt || (!strstr(txt, "<t") && !strstr(txt, "</")), "tags are not content: '%s'",
                  txt);
        cr_assert(!rs || !strstr(rs, "<"), "tags are not reasoning: '%s'", rs);
        if (rs)
            oa_buf_add(&reasoning, rs, strlen(rs));
        if (txt)
            oa_buf_add(&content, txt, strlen(txt));
        calls += json_object_get(d, "tool_calls") != NULL;
        json_decref(o);
    }
    cr_assert_str_eq(reasoning.data, "\nweigh it\n");
    cr_assert_str_eq(content.data, "\n\nOn it.");
    cr_assert_gt(calls, 1, "the call opens, then its arguments come");
    oa_buf_free(&reasoning);
    oa_buf_free(&content);
    FREE(r);
}

/* With a reasoning parser a guided reply's schema starts after its
 * reasoning (guide_after "</think>"), unless the prompt already closed
 * it (Qwen3 with enable_thinking off); completions and unguided replies
 * carry no marker. */
Test(openai_reason_http, structured_output_after_the_reasoning)
{
    static const struct { const char *body, *after; } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":9,"
         "\"response_format\":{\"type\":\"json_object\"}}", "</think>"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\","
         "\"content\":\"<think>\\n\\n</think>\\n\\n\"}],\"continue_final_message\":true,"
         "\"max_tokens\":9,\"response_format\":{\"type\":\"json_object\"}}", ""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":9}", ""},
        {"{\"prompt\":\"x\",\"max_tokens\":9,\"guided_json\":{\"type\":\"object\"}}", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int chat = strstr(cases[i].body, "messages") != NULL;
        struct resp r = http("POST", chat ? "/v1/chat/completions" : "/v1/completions",
                             cases[i].body, NULL);
        cr_assert_eq(r.status, 200, "%s", r.body);
        cr_expect_str_eq(m->last_guide_after, cases[i].after, "case %zu", i);
        FREE(r);
    }
}

/* Completions are never split: the reasoning parser is for chat. */
Test(openai_reason_http, completions_stay_whole)
{
    struct resp r = http("POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":200}", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(o, "choices"), 0),
                                                       "text")), m->script);
    json_decref(o);
    FREE(r);
}

/* tool_choice forcing a function: the reply (JSON, guided by the tool's
 * parameters) is the call's arguments, with no tool_call_parser; the
 * reasoning parser (deepseek_r1, which would take all of it) is skipped. */
static void setup_forced(void)
{
    g_reason_parser = "deepseek_r1";
    start_with(NULL, 4096);
    g_reason_parser = NULL;
    m->api.max_model_len = 512;
    m->script = "{\"city\": \"Oslo\"}";
}

TestSuite(openai_forced_http, .init = setup_forced, .fini = teardown, .timeout = 20);

#define FORCED_PARAMS "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}"
#define FORCED_CHAT(choice, extra)                                                               \
    "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"max_tokens\":200,"           \
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"parameters\":"       \
    FORCED_PARAMS "}}],\"tool_choice\":" choice extra "}"
#define NAMED_WEATHER "{\"type\":\"function\",\"function\":{\"name\":\"weather\"}}"

/* A forced call's message: content "" (vLLM's), one call; its id. */
static const char *expect_forced_message(json_t *choice, const char *args, const char *finish)
{
    json_t *msg = json_object_get(choice, "message"), *calls = json_object_get(msg, "tool_calls");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "content")), "");
    cr_assert_null(json_object_get(msg, "reasoning_content"));
    cr_assert_eq(json_array_size(calls), 1);
    json_t *call = json_array_get(calls, 0), *f = json_object_get(call, "function");
    cr_assert_str_eq(json_string_value(json_object_get(call, "type")), "function");
    cr_assert_str_eq(json_string_value(json_object_get(f, "name")), "weather");
    cr_assert_str_eq(json_string_value(json_object_get(f, "arguments")), args);
    cr_assert_str_eq(json_string_value(json_object_get(choice, "finish_reason")), finish);
    const char *id = json_string_value(json_object_get(call, "id"));
    cr_assert(id && !strncmp(id, "chatcmpl-tool-", 14), "%s", id);
    return id;
}

/* One choice's forced reply to body. */
static void expect_forced_reply(const char *body, const char *args, const char *finish)
{
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_of(&r);
    expect_forced_message(json_array_get(json_object_get(o, "choices"), 0), args, finish);
    json_decref(o);
    FREE(r);
}

Test(openai_forced_http, named_function_unstreamed)
{
    struct resp r = http("POST", "/v1/chat/completions",
                         FORCED_CHAT(NAMED_WEATHER,
                                     ",\"n\":2,\"logprobs\":true,\"top_logprobs\":1"), NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(m->last_schema, FORCED_PARAMS, "the tool's parameters guide the reply");
    json_t *o = json_of(&r), *ch = json_object_get(o, "choices");
    cr_assert_eq(json_array_size(ch), 2);
    char id0[64];
    snprintf(id0, sizeof id0, "%s",
             expect_forced_message(json_array_get(ch, 0), m->script, "stop"));
    cr_assert_str_neq(expect_forced_message(json_array_get(ch, 1), m->script, "stop"), id0,
                      "each choice its own call id");
    /* logprobs as for content: a token per byte of the arguments, then EOS */
    json_t *lp = json_object_get(json_object_get(json_array_get(ch, 1), "logprobs"), "content");
    cr_assert_eq(json_array_size(lp), strlen(m->script) + 1, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(lp, 0), "token")), "{");
    cr_assert_eq(json_array_size(json_object_get(json_array_get(lp, 0), "top_logprobs")), 1);
    json_decref(o);
    FREE(r);
    /* cut by max_tokens: what there is, finish_reason "length" */
    expect_forced_reply(FORCED_CHAT(NAMED_WEATHER, ",\"max_tokens\":5"), "{\"cit", "length");
    /* "required" with one tool forces it too; the call ends the turn as OpenAI says */
    expect_forced_reply(FORCED_CHAT("\"required\"", ""), m->script, "tool_calls");
    cr_assert_str_eq(m->last_schema, FORCED_PARAMS);
    r = http("POST", "/v1/chat/completions",
             FORCED_CHAT(NAMED_WEATHER, ",\"response_format\":{\"type\":\"json_object\"}"), NULL);
    expect_error(&r, 400);
    cr_assert(strstr(r.body, "\"param\":\"tool_choice\""), "%s", r.body);
    FREE(r);
}

/* Streamed: per choice, the first delta opens the call (id, name, empty
 * arguments) with the role, the text follows as argument deltas, the last
 * chunk has the finish_reason; joined, the arguments are the reply. */
static void expect_forced_stream(const char *body, int n, const char *finish)
{
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *ev[512];
    size_t k = sse_events(r.body, ev, 512);
    cr_assert_str_eq(ev[k - 1], "[DONE]");
    struct oa_buf args[2] = {{0}};
    char ids[2][64] = {"", ""};
    int finished[2] = {0, 0};
    for (size_t i = 0; i + 1 < k; i++) {
        json_t *o = json_loads(ev[i], 0, NULL);
        json_t *c = json_array_get(json_object_get(o, "choices"), 0);
        if (!c) { /* the usage chunk */
            json_decref(o);
            continue;
        }
        json_int_t x = json_integer_value(json_object_get(c, "index"));
        cr_assert(x >= 0 && x < n, "%s", ev[i]);
        cr_assert(!finished[x], "a chunk after the finish_reason: %s", ev[i]);
        json_t *d = json_object_get(c, "delta"), *tc = json_object_get(d, "tool_calls");
        json_t *call = json_array_get(tc, 0), *f = json_object_get(call, "function");
        cr_assert_null(json_object_get(d, "reasoning_content"), "%s", ev[i]);
        if (!ids[x][0]) {   /* the first chunk of the choice */
            cr_assert_str_eq(json_string_value(json_object_get(d, "role")), "assistant", "%s",
                             ev[i]);
            cr_assert_str_eq(json_string_value(json_object_get(call, "type")), "function");
            cr_assert_str_eq(json_string_value(json_object_get(f, "name")), "weather");
            cr_assert_str_eq(json_string_value(json_object_get(f, "arguments")), "");
            const char *id = json_string_value(json_object_get(call, "id"));
            cr_assert(id && !strncmp(id, "chatcmpl-tool-", 14), "%s", ev[i]);
            snprintf(ids[x], sizeof ids[x], "%s", id);
        } else {
            cr_assert_null(json_object_get(d, "role"), "%s", ev[i]);
            cr_assert_null(json_object_get(d, "content"), "the reply is no content: %s", ev[i]);
            if (call) {
                cr_assert_null(json_object_get(call, "id"), "%s", ev[i]);
                cr_assert_null(json_object_get(f, "name"), "%s", ev[i]);
                const char *a = json_string_value(json_object_get(f, "arguments"));
                cr_assert(a, "%s", ev[i]);
                oa_buf_add(&args[x], a, strlen(a));
            }
        }
        if (call)
            cr_assert_eq(json_integer_value(json_object_get(call, "index")), 0, "%s", ev[i]);
        if (json_is_string(json_object_get(c, "finish_reason"))) {
            cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), finish);
            finished[x] = 1;
        }
        json_decref(o);
    }
    for (int x = 0; x < n; x++) {
        cr_assert(finished[x], "choice %d never finished", x);
        cr_assert_str_eq(args[x].data ? args[x].data : "", m->script);
        oa_buf_free(&args[x]);
    }
    if (n > 1)
        cr_assert_str_neq(ids[0], ids[1]);
    FREE(r);
}

Test(openai_forced_http, named_function_streamed)
{
    m->tick_us = 1000;
    expect_forced_stream(FORCED_CHAT(NAMED_WEATHER, ",\"stream\":true,\"n\":2,\"logprobs\":true,"
                                     "\"stream_options\":{\"include_usage\":true}"), 2, "stop");
    expect_forced_stream(FORCED_CHAT("\"required\"", ",\"stream\":true"), 1, "tool_calls");
}

/* "required" over several tools: the schema is an anyOf of {"name",
 * "parameters"} objects (the guide writes the name first), and the reply,
 * one such object, is read as llama3_json whatever the tool_call_parser:
 * one call, the parameters value's bytes its arguments. */
#define ANY_SCRIPT "{\"name\": \"weather\", \"parameters\": {\"city\": \"Oslo\"}}"
#define ANY_ARGS "{\"city\": \"Oslo\"}"
#define ANY_CHAT(max_tokens, extra)                                                              \
    "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"max_tokens\":" max_tokens ","  \
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"time\"}},"                         \
    "{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"parameters\":" FORCED_PARAMS    \
    "}}],\"tool_choice\":\"required\"" extra "}"
#define ANY_BRANCH(name, params)                                                             \
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"" name "\"},"                   \
    "\"parameters\":" params "},\"required\":[\"name\",\"parameters\"],"                        \
    "\"additionalProperties\":false}"

Test(openai_forced_http, required_of_several_unstreamed)
{
    m->script = ANY_SCRIPT;
    struct resp r = http("POST", "/v1/chat/completions", ANY_CHAT("200", ",\"n\":2"), NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(m->last_schema, "{\"anyOf\":[" ANY_BRANCH("time", "{\"type\":\"object\"}")
                     "," ANY_BRANCH("weather", FORCED_PARAMS) "]}");
    json_t *o = json_of(&r), *ch = json_object_get(o, "choices");
    cr_assert_eq(json_array_size(ch), 2);
    char id0[64];
    snprintf(id0, sizeof id0, "%s",
             expect_forced_message(json_array_get(ch, 0), ANY_ARGS, "tool_calls"));
    cr_assert_str_neq(expect_forced_message(json_array_get(ch, 1), ANY_ARGS, "tool_calls"), id0);
    json_decref(o);
    FREE(r);
    /* cut inside the parameters: the arguments as far as they go */
    expect_forced_reply(ANY_CHAT("40", ""), "{\"city", "length");
    /* cut before they begin: no call yet, and still no content */
    r = http("POST", "/v1/chat/completions", ANY_CHAT("30", ""), NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    o = json_of(&r);
    json_t *c = json_array_get(json_object_get(o, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "message"), "content")),
                     "");
    cr_assert_null(json_object_get(json_object_get(c, "message"), "tool_calls"), "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "length");
    json_decref(o);
    FREE(r);
}

/* Streamed (with hermes configured, which does not apply): no content; the
 * call opens once its name is read and its parameters have begun, then the
 * parameters' bytes go out as fragments, joining into the unstreamed
 * arguments. */
static void expect_any_stream(const char *max_tokens, const char *args, const char *finish)
{
    char body[2048];
    snprintf(body, sizeof body, ANY_CHAT("%s", ",\"stream\":true,\"n\":2"), max_tokens);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    struct streamed st[2];
    read_stream(&r, st, 2);
    for (int x = 0; x < 2; x++) {
        cr_assert_null(st[x].content.data, "no content: %s", st[x].content.data);
        cr_assert_null(st[x].reasoning.data);
        cr_assert_eq(st[x].n_calls, 1, "%s", r.body);
        cr_assert_str_eq(st[x].name[0], "weather");
        cr_assert_str_eq(st[x].args[0].data ? st[x].args[0].data : "", args);
        cr_assert_str_eq(st[x].finish, finish);
    }
    cr_assert_gt(st[0].frags[0], 1, "the arguments go out as they come");
    cr_assert_str_neq(st[0].id[0], st[1].id[0]);
    streamed_free(st, 2);
    FREE(r);
}

Test(openai_forced_http, required_of_several_streamed)
{
    restart_tools("hermes", ANY_SCRIPT);
    expect_any_stream("200", ANY_ARGS, "tool_calls");
    expect_any_stream("40", "{\"city", "length");
}
#undef ANY_SCRIPT
#undef ANY_ARGS
#undef ANY_CHAT
#undef ANY_BRANCH
