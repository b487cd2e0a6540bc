/* The OpenAI-compatible HTTP frontend: libmicrohttpd with a small thread
 * pool; generation requests suspend their connection while the engine
 * works and are resumed from the engine callback, so a stream costs no
 * thread.  A reaper thread notices clients that vanish while suspended
 * (MHD cannot) and cancels their requests. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "oa-impl.h"

const struct zl_host *oa_host;

struct oa_server {
    const struct zl_engine_api *api;
    struct MHD_Daemon *d;
    char *api_key;
    int64_t max_body;
    enum oa_tools tools;            /* server.tool_call_parser */
    enum oa_reason reason;          /* server.reasoning_parser */
    int32_t port;
    struct oa_metrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct oa_gen **active;         /* gens with engine work outstanding */
    size_t n_active, cap_active;
    int n_gen_conns;                /* connections holding a gen */
    int draining, reaper_stop, reaper_started;
    pthread_t reaper;
};

enum route { R_NONE, R_HEALTH, R_VERSION, R_MODELS, R_METRICS, R_TOKENIZE, R_DETOKENIZE,
             R_COMPLETIONS, R_CHAT, R_TOKENIZER_INFO };

/* Per-connection-request state (MHD's con_cls). */
struct oa_conn {
    enum route route;
    struct oa_buf body;
    int too_big;
    int fd;
    struct oa_gen *gen;
};

static const struct {
    const char *method, *path;
    enum route r;
} routes[] = {
    {"GET", "/health", R_HEALTH},         {"GET", "/version", R_VERSION},
    {"GET", "/v1/models", R_MODELS},      {"GET", "/metrics", R_METRICS},
    {"POST", "/tokenize", R_TOKENIZE},    {"POST", "/detokenize", R_DETOKENIZE},
    {"POST", "/v1/completions", R_COMPLETIONS}, {"POST", "/v1/chat/completions", R_CHAT},
    {"GET", "/tokenizer_info", R_TOKENIZER_INFO},
};

static enum MHD_Result send_body(struct oa_server *srv, struct MHD_Connection *conn,
                                 unsigned status, const char *type, char *body)
{
    if (!body) {
        status = 500;
        type = "application/json";
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":500}}");
        if (!body)
            return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    oa_metrics_http(srv->metrics, status);
    return rc;
}

static enum MHD_Result send_json(struct oa_server *srv, struct MHD_Connection *conn, char *body)
{
    return send_body(srv, conn, 200, "application/json", body);
}

static enum MHD_Result send_err(struct oa_server *srv, struct MHD_Connection *conn,
                                const struct oa_err *e)
{
    OA_LOG(ZL_LOG_DEBUG, "%d: %s", e->status, e->message);
    return send_body(srv, conn, (unsigned)e->status, "application/json", oa_error_json(e));
}

static enum MHD_Result fail(struct oa_server *srv, struct MHD_Connection *conn, int status,
                            const char *code, const char *msg)
{
    struct oa_err e;
    oa_fail(&e, status, NULL, "%s", msg);
    e.code = code;
    return send_err(srv, conn, &e);
}

/* ---- the engine side ---- */

void oa_server_wake(struct oa_server *srv, struct oa_gen *g)
{
    (void)srv;
    if (g->suspended && !g->closed) {
        g->suspended = 0;
        MHD_resume_connection(g->conn);
    }
}

void oa_server_gen_finished(struct oa_server *srv, struct oa_gen *g)
{
    oa_metrics_request(srv->metrics, g);
    pthread_mutex_lock(&srv->mu);
    for (size_t i = 0; i < srv->n_active; i++)
        if (srv->active[i] == g) {
            srv->active[i] = srv->active[--srv->n_active];
            break;
        }
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

/* Cancels every engine request of g that is still running. */
static void gen_cancel(struct oa_server *srv, struct oa_gen *g)
{
    uint64_t ids[OA_MAX_PROMPTS];
    size_t n = 0;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->req.n_prompts; i++)
        if (g->subs[i].submitted && !g->subs[i].done)
            ids[n++] = g->subs[i].id;
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < n; i++)
        srv->api->cancel(srv->api->ctx, ids[i]);
}

static int active_add(struct oa_server *srv, struct oa_gen *g)
{
    int rc = 0;
    pthread_mutex_lock(&srv->mu);
    if (srv->n_active == srv->cap_active) {
        size_t cap = srv->cap_active ? srv->cap_active * 2 : 64;
        void *p = realloc(srv->active, cap * sizeof *srv->active);
        if (p) {
            srv->active = p;
            srv->cap_active = cap;
        } else {
            rc = -1;
        }
    }
    if (rc == 0)
        srv->active[srv->n_active++] = g;
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

/* Where a reasoning model's guided reply starts: after its reasoning, as
 * vLLM applies structured output with a reasoning parser (both parsers
 * close it with </think>), unless the prompt has already closed it (Qwen3
 * with enable_thinking off writes an empty block).  A forced tool call is
 * guided from its first token (its reply is the arguments alone). */
static const char *guide_after(const struct oa_server *srv, const struct oa_req *r,
                               const char *prompt)
{
    if (!r->json_schema || oa_tool_forced(r) || r->kind != OA_CHAT ||
        srv->reason == OA_REASON_NONE)
        return NULL;
    const char *open = NULL, *close = NULL;
    for (const char *p = prompt; p && (p = strstr(p, "<think>")); p++)
        open = p;
    for (const char *p = prompt; p && (p = strstr(p, "</think>")); p++)
        close = p;
    return close && (!open || close > open) ? NULL : "</think>";
}

/* Submits each prompt.  On a failure the submitted ones are cancelled and
 * the rest marked done, so the gen still completes through the callbacks.
 * Returns 0, or the HTTP error when nothing was submitted. */
static int gen_submit(struct oa_server *srv, struct oa_gen *g, struct oa_err *e)
{
    const struct zl_engine_api *api = srv->api;
    if (active_add(srv, g) < 0)
        return oa_fail(e, 500, NULL, "out of memory");
    size_t i;
    int rc = 0;
    for (i = 0; i < g->req.n_prompts; i++) {
        struct zl_fe_request fr = {
            .size = sizeof fr,
            .prompt = g->req.prompts[i].ids,
            .n_prompt = (int32_t)g->req.prompts[i].n,
            .sampling = g->req.sp,
            .skip_special_tokens = g->req.skip_special,
            .include_stop_str_in_output = g->req.include_stop_str,
            .request_id = g->id,
            .prompt_logprobs = g->req.prompt_logprobs >= 0,
            .prompt_top_logprobs = g->req.prompt_logprobs > 0 ? g->req.prompt_logprobs : 0,
            .json_schema = g->req.json_schema,
            .guide_after = guide_after(srv, &g->req, g->req.prompts[i].text),
        };
        struct oa_sub *sub = &g->subs[i];
        pthread_mutex_lock(&g->mu);
        g->refs++;                  /* the engine's, dropped on its done call */
        sub->submitted = 1;
        pthread_mutex_unlock(&g->mu);
        if ((rc = api->submit(api->ctx, &fr, oa_gen_on_output, sub, &sub->id)) < 0) {
            pthread_mutex_lock(&g->mu);
            g->refs--;
            sub->submitted = 0;
            pthread_mutex_unlock(&g->mu);
            break;
        }
    }
    if (rc == 0)
        return 0;
    /* a bad request, or a schema keyword guided decoding does not take */
    int status = rc == ZL_EINVAL || rc == ZL_EUNSUPPORTED ? 400 : 503;
    oa_fail(e, status, NULL, "%s", api->last_error(api->ctx));
    int finished;
    pthread_mutex_lock(&g->mu);
    if (!g->error) {
        g->error = strdup(e->message);
        g->error_status = status;
    }
    for (size_t k = i; k < g->req.n_prompts; k++) {
        g->subs[k].done = 1;
        g->n_done++;
    }
    finished = oa_gen_all_done(g);
    pthread_mutex_unlock(&g->mu);
    if (finished) {
        oa_server_gen_finished(srv, g);
        return i == 0 ? -status : 0;
    }
    gen_cancel(srv, g);
    return 0;
}

/* ---- streaming ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct oa_gen *g = cls;
    const struct zl_engine_api *api = g->srv->api;
    ssize_t n = 0;
    pthread_mutex_lock(&g->mu);
    int complete = oa_gen_stream_pump(g, api);
    if (complete < 0) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (g->out_off < g->out.len) {
        n = (ssize_t)(g->out.len - g->out_off < max ? g->out.len - g->out_off : max);
        memcpy(buf, g->out.data + g->out_off, (size_t)n);
        g->out_off += (size_t)n;
        if (g->out_off == g->out.len)
            g->out_off = g->out.len = 0;
    } else if (complete) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        g->suspended = 1;
        MHD_suspend_connection(g->conn);
    }
    pthread_mutex_unlock(&g->mu);
    return n;
}

static void stream_free(void *cls)
{
    oa_gen_unref(cls);
}

/* ---- the HTTP side ---- */

/* Non-streamed: answer once every sub is done, else (re)suspend. */
static enum MHD_Result finish_generation(struct oa_server *srv, struct MHD_Connection *conn,
                                         struct oa_gen *g)
{
    pthread_mutex_lock(&g->mu);
    if (!oa_gen_all_done(g)) {
        g->suspended = 1;
        MHD_suspend_connection(conn);
        pthread_mutex_unlock(&g->mu);
        return MHD_YES;
    }
    char *body = NULL;
    struct oa_err e;
    if (g->error)
        oa_fail(&e, g->error_status ? g->error_status : 500, NULL, "%s", g->error);
    else
        body = oa_gen_response(g, srv->api);
    pthread_mutex_unlock(&g->mu);
    return g->error ? send_err(srv, conn, &e) : send_json(srv, conn, body);
}

static enum MHD_Result start_generation(struct oa_server *srv, struct MHD_Connection *conn,
                                        struct oa_conn *c)
{
    const struct zl_engine_api *api = srv->api;
    struct oa_err e;
    if (srv->draining)
        return fail(srv, conn, 503, NULL, "The server is shutting down");
    if (api->health(api->ctx) < 0)
        return fail(srv, conn, 503, NULL, "The engine is not running");
    struct oa_req req;
    if (oa_parse_request(c->route == R_CHAT ? OA_CHAT : OA_COMPLETION, c->body.data, c->body.len,
                         api, &req, &e) < 0)
        return send_err(srv, conn, &e);
    struct oa_gen *g = oa_gen_create(srv, &req, api->model_name);
    if (!g) {
        oa_req_free(&req);
        return fail(srv, conn, 500, NULL, "out of memory");
    }
    /* "required" over several tools: the reply is a llama3_json call, whatever the model's
     * own format */
    g->tools = g->req.want_tools ? srv->tools
               : g->req.tool_required && !g->req.tool_name ? OA_TOOLS_LLAMA3_JSON : OA_TOOLS_NONE;
    /* a forced tool call is JSON from its first token: nothing to split */
    g->reason = oa_tool_forced(&g->req) ? OA_REASON_NONE : srv->reason;
    g->conn = conn;
    g->fd = c->fd;
    c->gen = g;
    pthread_mutex_lock(&srv->mu);
    srv->n_gen_conns++;
    pthread_mutex_unlock(&srv->mu);
    if (gen_submit(srv, g, &e) < 0)
        return send_err(srv, conn, &e);
    if (g->req.stream) {
        pthread_mutex_lock(&g->mu);
        g->refs++;                  /* the response's, dropped by stream_free */
        pthread_mutex_unlock(&g->mu);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, g, stream_free);
        if (!r) {
            oa_gen_unref(g);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        oa_metrics_http(srv->metrics, 200);
        return rc;
    }
    return finish_generation(srv, conn, g);
}

static int auth_ok(struct oa_server *srv, struct MHD_Connection *conn, const char *url)
{
    if (!srv->api_key || strncmp(url, "/v1/", 4))
        return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7))
        return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(srv->api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a; i++)     /* constant time in the key */
        diff |= (unsigned char)h[i] ^ (unsigned char)srv->api_key[i % (b ? b : 1)];
    return diff == 0;
}

static enum MHD_Result first_call(struct oa_server *srv, struct MHD_Connection *conn,
                                  const char *url, const char *method, struct oa_conn *c)
{
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
            path_known = 1;
            if (!strcmp(method, routes[i].method))
                c->route = routes[i].r;
        }
    if (c->route == R_NONE && !strcmp(method, "HEAD") && !strcmp(url, "/health"))
        c->route = R_HEALTH;
    if (c->route == R_NONE)
        return path_known ? fail(srv, conn, 405, NULL, "Method Not Allowed")
                          : fail(srv, conn, 404, NULL, "Not Found");
    if (!auth_ok(srv, conn, url)) {
        struct oa_err e;
        oa_fail(&e, 401, NULL, "Incorrect API key provided.");
        e.code = "invalid_api_key";
        return send_err(srv, conn, &e);
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoll(cl, NULL, 10) > srv->max_body)
        return fail(srv, conn, 413, "request_too_large", "The request body is too large");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->fd = ci ? ci->connect_fd : -1;
    return MHD_YES;
}

static enum MHD_Result dispatch(struct oa_server *srv, struct MHD_Connection *conn,
                                struct oa_conn *c)
{
    const struct zl_engine_api *api = srv->api;
    struct oa_err e;
    char *s;
    if (c->too_big)
        return fail(srv, conn, 413, "request_too_large", "The request body is too large");
    switch (c->route) {
    case R_HEALTH:
        if (api->health(api->ctx) < 0)
            return fail(srv, conn, 503, NULL, "The engine is not running");
        return send_body(srv, conn, 200, "application/json", strdup(""));
    case R_VERSION: return send_json(srv, conn, oa_version_json(api));
    case R_TOKENIZER_INFO: {
        char *info = NULL;
        if (api->size < offsetof(struct zl_engine_api, tokenizer_info) + sizeof api->tokenizer_info ||
            !api->tokenizer_info)
            return fail(srv, conn, 404, NULL, "This server's engine has no tokenizer_info");
        if (api->tokenizer_info(api->ctx, &info) < 0)
            return fail(srv, conn, 500, NULL, "tokenizer_info failed");
        s = strdup(info);
        api->free_mem(info);
        return send_json(srv, conn, s);
    }
    case R_MODELS: return send_json(srv, conn, oa_models_json(api));
    case R_METRICS:
        pthread_mutex_lock(&srv->mu);
        int n = srv->n_gen_conns;
        pthread_mutex_unlock(&srv->mu);
        return send_body(srv, conn, 200, "text/plain; version=0.0.4; charset=utf-8",
                         oa_metrics_text(srv->metrics, api, n));
    case R_TOKENIZE:
    case R_DETOKENIZE:
        s = c->route == R_TOKENIZE ? oa_tokenize(c->body.data, c->body.len, api, &e)
                                   : oa_detokenize(c->body.data, c->body.len, api, &e);
        if (!s && e.status == 0)
            oa_fail(&e, 500, NULL, "out of memory");
        return s ? send_json(srv, conn, s) : send_err(srv, conn, &e);
    case R_COMPLETIONS:
    case R_CHAT: return start_generation(srv, conn, c);
    default: return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    struct oa_server *srv = cls;
    struct oa_conn *c = *con_cls;
    if (!c) {
        if (!(c = calloc(1, sizeof *c)))
            return MHD_NO;
        *con_cls = c;
        return first_call(srv, conn, url, method, c);
    }
    if (*data_size) {
        if (c->body.len + *data_size > (size_t)srv->max_body)
            c->too_big = 1;
        else if (oa_buf_add(&c->body, data, *data_size) < 0)
            c->too_big = 1;
        *data_size = 0;
        return MHD_YES;
    }
    if (c->gen)
        return finish_generation(srv, conn, c->gen);
    return dispatch(srv, conn, c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct oa_server *srv = cls;
    struct oa_conn *c = *con_cls;
    if (!c)
        return;
    *con_cls = NULL;
    struct oa_gen *g = c->gen;
    if (g) {
        pthread_mutex_lock(&g->mu);
        g->closed = 1;
        int unfinished = !oa_gen_all_done(g);
        pthread_mutex_unlock(&g->mu);
        if (unfinished) {
            OA_LOG(ZL_LOG_INFO, "%s: client gone (%d), cancelling", g->id, (int)toe);
            gen_cancel(srv, g);
        }
        oa_gen_unref(g);
        pthread_mutex_lock(&srv->mu);
        srv->n_gen_conns--;
        pthread_cond_broadcast(&srv->cv);
        pthread_mutex_unlock(&srv->mu);
    }
    oa_buf_free(&c->body);
    free(c);
}

/* Is the peer of a suspended connection gone?  MHD does not watch it. */
static int peer_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (fd < 0 || poll(&p, 1, 0) <= 0)
        return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return 1;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void *reaper_main(void *arg)
{
    struct oa_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    while (!srv->reaper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
        for (size_t i = 0; i < srv->n_active; i++) {
            struct oa_gen *g = srv->active[i];
            pthread_mutex_lock(&g->mu);
            int gone = g->suspended && !g->closed && !g->reaped && peer_gone(g->fd);
            if (gone) {
                g->reaped = 1;
                g->refs++;
            }
            pthread_mutex_unlock(&g->mu);
            if (gone) {
                pthread_mutex_unlock(&srv->mu);
                OA_LOG(ZL_LOG_INFO, "%s: client gone while waiting, cancelling", g->id);
                gen_cancel(srv, g);
                oa_gen_unref(g);
                pthread_mutex_lock(&srv->mu);
                break;      /* the list may have changed */
            }
        }
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* MHD's own messages (mostly clients that went away) at debug level. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    OA_LOG(ZL_LOG_DEBUG, "libmicrohttpd: %s", buf);
}

/* ---- frontend ops ---- */

static void server_destroy(void *inst)
{
    struct oa_server *srv = inst;
    if (!srv)
        return;
    if (srv->n_active) {
        /* The engine still holds requests that point here: leak rather
         * than let its callbacks touch freed memory. */
        OA_LOG(ZL_LOG_ERROR, "%zu requests never finished; leaking the server", srv->n_active);
        return;
    }
    oa_metrics_free(srv->metrics);
    free(srv->active);
    free(srv->api_key);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

/* Waits (srv->mu held) until pred holds or the deadline passes. */
static int wait_until(struct oa_server *srv, int (*pred)(struct oa_server *), double deadline)
{
    while (!pred(srv)) {
        double left = deadline - oa_now();
        if (left <= 0)
            return 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long add = (long)((left < 0.05 ? left : 0.05) * 1e9);
        ts.tv_nsec += add;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
    }
    return 1;
}

static int no_active(struct oa_server *srv) { return srv->n_active == 0; }
static int no_conns(struct oa_server *srv) { return srv->n_gen_conns == 0; }

static void server_stop(void *inst, int32_t grace_ms)
{
    struct oa_server *srv = inst;
    if (!srv || !srv->d)
        return;
    pthread_mutex_lock(&srv->mu);
    srv->draining = 1;
    if (!wait_until(srv, no_active, oa_now() + (grace_ms > 0 ? grace_ms : 0) / 1000.0)) {
        OA_LOG(ZL_LOG_WARN, "grace period over: cancelling %zu requests", srv->n_active);
        /* Take refs, then cancel without srv->mu: the engine may hold its
         * own lock while it calls back into gens (which take srv->mu). */
        size_t n = srv->n_active;
        struct oa_gen **gs = calloc(n, sizeof *gs);
        for (size_t i = 0; gs && i < n; i++) {
            gs[i] = srv->active[i];
            pthread_mutex_lock(&gs[i]->mu);
            gs[i]->refs++;
            pthread_mutex_unlock(&gs[i]->mu);
        }
        pthread_mutex_unlock(&srv->mu);
        for (size_t i = 0; gs && i < n; i++) {
            gen_cancel(srv, gs[i]);
            oa_gen_unref(gs[i]);
        }
        free(gs);
        pthread_mutex_lock(&srv->mu);
        if (!wait_until(srv, no_active, oa_now() + 10.0))
            OA_LOG(ZL_LOG_ERROR, "the engine did not finish %zu cancelled requests", srv->n_active);
    }
    /* Let finished streams flush their last bytes. */
    wait_until(srv, no_conns, oa_now() + 2.0);
    srv->reaper_stop = 1;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    if (srv->reaper_started)
        pthread_join(srv->reaper, NULL);
    srv->reaper_started = 0;
    MHD_stop_daemon(srv->d);
    srv->d = NULL;
}

static int32_t server_port(void *inst)
{
    return ((struct oa_server *)inst)->port;
}

static int server_start(const struct zl_frontend_params *p, void **out)
{
    *out = NULL;
    if (!p || p->size < ZL_FRONTEND_PARAMS_MIN_SIZE || !p->engine ||
        p->engine->size < ZL_ENGINE_API_MIN_SIZE)
        return oa_host ? oa_host->error(ZL_EINVAL, "openai: bad frontend params") : ZL_EINVAL;
#define COVERS(m) (p->size >= offsetof(struct zl_frontend_params, m) + sizeof p->m)
    const char *parser = COVERS(tool_call_parser) ? p->tool_call_parser : NULL;
    const char *rparser = COVERS(reasoning_parser) ? p->reasoning_parser : NULL;
#undef COVERS
    enum oa_tools tools;
    enum oa_reason reason;
    if (oa_tools_parser(parser, &tools) < 0)
        return oa_host ? oa_host->error(ZL_EINVAL, "openai: unknown tool_call_parser '%s' (none, "
                                        "hermes, llama3_json, mistral or deepseek_v3)", parser)
                       : ZL_EINVAL;
    if (oa_reason_parser(rparser, &reason) < 0)
        return oa_host ? oa_host->error(ZL_EINVAL, "openai: unknown reasoning_parser '%s' (none, "
                                        "deepseek_r1 or qwen3)", rparser)
                       : ZL_EINVAL;
    struct oa_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return ZL_ENOMEM;
    srv->tools = tools;
    srv->reason = reason;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    srv->api = p->engine;
    srv->max_body = p->max_body_bytes > 0 ? p->max_body_bytes : 8 << 20;
    srv->metrics = oa_metrics_create();
    if (p->api_key && *p->api_key)
        srv->api_key = strdup(p->api_key);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p->port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p->port);
        flags |= MHD_USE_IPv6;
    } else {
        server_destroy(srv);
        return oa_host ? oa_host->error(ZL_EINVAL, "openai: server.host '%s' is not an IP address", host)
                       : ZL_EINVAL;
    }
    if (!srv->metrics) {
        server_destroy(srv);
        return ZL_ENOMEM;
    }
    srv->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, srv,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_THREAD_POOL_SIZE,
                              (unsigned)(p->threads > 0 ? p->threads : 4),
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096, MHD_OPTION_END);
    if (!srv->d) {
        int err = errno;
        server_destroy(srv);
        return oa_host ? oa_host->error(ZL_EIO, "openai: cannot listen on %s:%d: %s", host,
                                        (int)p->port, strerror(err))
                       : ZL_EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : p->port;
    if (pthread_create(&srv->reaper, NULL, reaper_main, srv) == 0)
        srv->reaper_started = 1;
    OA_LOG(ZL_LOG_INFO, "serving %s on http://%s:%d", p->engine->model_name, host, (int)srv->port);
    *out = srv;
    return ZL_OK;
}

static const struct zl_frontend_ops openai_ops = {
    .size = sizeof(struct zl_frontend_ops),
    .description = "OpenAI-compatible HTTP server (libmicrohttpd)",
    .start = server_start,
    .bound_port = server_port,
    .stop = server_stop,
    .destroy = server_destroy,
};

static int openai_init(const struct zl_host *host)
{
    oa_host = host;
    return host->register_ops(ZL_PLUGIN_FRONTEND, "openai", &openai_ops);
}

ZL_PLUGIN_DEFINE("openai", "0.1.0", "OpenAI-compatible HTTP frontend", openai_init, NULL)
