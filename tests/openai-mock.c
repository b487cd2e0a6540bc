/* The mock engine api of tests/openai-mock.h. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "openai-mock.h"

#define MOCK_EOS 256
#define MOCK_BOS 257
#define MOCK_VOCAB 300

struct mock_req {
    struct mock_req *next;
    uint64_t id;
    zl_fe_output_fn cb;
    void *user;
    int32_t n, max_tokens, n_prompt, logprobs, ignore_eos;
    int32_t prompt_logprobs;        /* -1, or the top k asked for */
    int32_t step;
    int cancelled;
};

static _Thread_local char mock_err[256];

static int mock_tokenize(void *ctx, const char *text, size_t len, int add_special, int32_t **ids,
                         size_t *n)
{
    (void)ctx;
    *ids = malloc((len + 1) * sizeof **ids);
    if (!*ids)
        return ZL_ENOMEM;
    size_t k = 0;
    if (add_special)
        (*ids)[k++] = MOCK_BOS;
    for (size_t i = 0; i < len; i++)
        (*ids)[k++] = (unsigned char)text[i];
    *n = k;
    return 0;
}

static int mock_detokenize(void *ctx, const int32_t *ids, size_t n, int skip_special, char **text,
                           size_t *len)
{
    (void)ctx;
    char *s = malloc(n * 4 + 1);
    size_t k = 0;
    if (!s)
        return ZL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= MOCK_VOCAB) {
            free(s);
            snprintf(mock_err, sizeof mock_err, "token id %d out of range", ids[i]);
            return ZL_EINVAL;
        }
        if (ids[i] < 256) {
            s[k++] = (char)ids[i];
        } else if (!skip_special) {
            const char *sp = ids[i] == MOCK_EOS ? "</s>" : ids[i] == MOCK_BOS ? "<s>" : "";
            memcpy(s + k, sp, strlen(sp));
            k += strlen(sp);
        }
    }
    s[k] = 0;
    *text = s;
    *len = k;
    return 0;
}

static int mock_render(void *ctx, const char *messages, const char *tools, const char *kwargs,
                       int agp, char **out)
{
    struct mock_engine *m = ctx;
    snprintf(m->last_tools, sizeof m->last_tools, "%s", tools ? tools : "");
    snprintf(m->last_messages, sizeof m->last_messages, "%s", messages);
    snprintf(m->last_kwargs, sizeof m->last_kwargs, "%s", kwargs ? kwargs : "");
    json_t *a = json_loads(messages, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        snprintf(mock_err, sizeof mock_err, "messages is not an array");
        return ZL_EINVAL;
    }
    size_t cap = strlen(messages) + 64, k = 0, i;
    char *s = malloc(cap);
    json_t *msg;
    json_array_foreach(a, i, msg) {
        const char *role = json_string_value(json_object_get(msg, "role"));
        const char *content = json_string_value(json_object_get(msg, "content"));
        if (!strcmp(role, "raise")) {
            free(s);
            json_decref(a);
            snprintf(mock_err, sizeof mock_err, "line 1, column 1: the template raised");
            return ZL_EINVAL;
        }
        k += (size_t)snprintf(s + k, cap - k, "<|%s|>%s\n", role, content ? content : "");
    }
    if (agp)
        k += (size_t)snprintf(s + k, cap - k, "<|assistant|>");
    json_decref(a);
    *out = s;
    return 0;
}

static int mock_tokenizer_info(void *ctx, char **json)
{
    (void)ctx;
    *json = strdup("{\"eos_token\":\"</s>\",\"bos_token\":\"<s>\",\"pad_token\":null,"
                   "\"chat_template\":null,\"model_max_length\":64,\"add_bos_token\":true}");
    return *json ? 0 : ZL_ENOMEM;
}

static const char *mock_last_error(void *ctx)
{
    (void)ctx;
    return mock_err;
}

static int mock_submit(void *ctx, const struct zl_fe_request *r, zl_fe_output_fn cb, void *user,
                       uint64_t *id)
{
    struct mock_engine *m = ctx;
    if (m->dead) {
        snprintf(mock_err, sizeof mock_err, "the engine is dead");
        return ZL_ESTATE;
    }
    if (r->sampling.max_tokens < 1 || r->n_prompt < 1 || m->n_submits + 1 == m->fail_submit_at) {
        m->n_submits += m->n_submits + 1 == m->fail_submit_at;
        snprintf(mock_err, sizeof mock_err, "bad request for the mock");
        return ZL_EINVAL;
    }
    struct mock_req *q = calloc(1, sizeof *q);
    if (!q)
        return ZL_ENOMEM;
    q->cb = cb;
    q->user = user;
    q->n = r->sampling.n;
    q->max_tokens = r->sampling.max_tokens;
    q->n_prompt = r->n_prompt;
    q->logprobs = r->sampling.logprobs;
    q->ignore_eos = r->sampling.ignore_eos;
    q->prompt_logprobs = r->prompt_logprobs ? r->prompt_top_logprobs : -1;
    pthread_mutex_lock(&m->mu);
    q->id = ++m->next_id;
    *id = q->id;
    m->n_submits++;
    m->last = *r;
    memcpy(m->last_prompt, r->prompt, (size_t)(r->n_prompt < 512 ? r->n_prompt : 512) * 4);
    m->last_n_stop = r->sampling.n_stop;
    snprintf(m->last_stop0, sizeof m->last_stop0, "%s",
             r->sampling.n_stop ? r->sampling.stop[0] : "");
    snprintf(m->last_schema, sizeof m->last_schema, "%s", r->json_schema ? r->json_schema : "");
    snprintf(m->last_guide_after, sizeof m->last_guide_after, "%s",
             r->guide_after ? r->guide_after : "");
    q->next = m->reqs;
    m->reqs = q;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static void mock_cancel(void *ctx, uint64_t id)
{
    struct mock_engine *m = ctx;
    pthread_mutex_lock(&m->mu);
    for (struct mock_req *q = m->reqs; q; q = q->next)
        if (q->id == id && !q->cancelled) {
            q->cancelled = 1;
            m->n_cancels++;
        }
    pthread_mutex_unlock(&m->mu);
}

static int mock_health(void *ctx)
{
    struct mock_engine *m = ctx;
    return m->dead ? ZL_ESTATE : 0;
}

static int mock_stats(void *ctx, struct zl_fe_stats *st)
{
    struct mock_engine *m = ctx;
    pthread_mutex_lock(&m->mu);
    st->n_running = 0;
    for (struct mock_req *q = m->reqs; q; q = q->next)
        st->n_running += q->n;
    pthread_mutex_unlock(&m->mu);
    st->kv_usage = 0.25;
    st->kv_blocks_total = 100;
    st->generation_tokens = 42;
    if (st->size >= sizeof *st)
        st->async_steps = 7;
    return 0;
}

/* One step of q: a token for every sequence; returns 1 when q finished. */
static int mock_step(struct mock_engine *m, struct mock_req *q)
{
    int eos = m->eos_after > 0 && q->step == m->eos_after && !q->ignore_eos;
    size_t sl = m->script ? strlen(m->script) : 0;
    eos |= m->script && (size_t)q->step >= sl; /* the script said it all */
    int last = q->cancelled || eos || q->step + 1 >= q->max_tokens;
    for (int j = 0; j < q->n; j++) {
        struct zl_fe_token t = {.id = m->script && !eos ? (unsigned char)m->script[q->step]
                                                        : 'a' + (q->step + j) % 26,
                                .logprob = NAN};
        char c = (char)t.id;
        if (q->logprobs >= 0) {
            t.logprob = -0.25f;
            t.n_top = q->logprobs;
            for (int k = 0; k < t.n_top; k++) {
                t.top_ids[k] = 'a' + (q->step + j + k) % 26;
                t.top_logprobs[k] = -0.25f - (float)k;
            }
        }
        if (eos)
            t.id = MOCK_EOS;
        struct zl_fe_output o = {
            .size = sizeof o,
            .index = j,
            .text = q->cancelled || eos ? "" : &c,
            .text_len = q->cancelled || eos ? 0 : 1,
            .tokens = &t,
            .n_tokens = q->cancelled ? 0 : 1,
            .finish = !last ? ZL_FE_RUNNING
                      : q->cancelled ? ZL_FE_FINISH_ABORT
                      : eos ? ZL_FE_FINISH_STOP
                            : ZL_FE_FINISH_LENGTH,
            .done = last && j == q->n - 1,
            .n_prompt_tokens = q->n_prompt,
            .n_output_tokens = (q->step + 1) * q->n,
        };
        /* prompt logprobs on the first token: -i/8 for token i, top k
         * 'a', 'b', ... at -0.5 - k */
        float plp[512], ptop[512 * 20];
        int32_t pids[512 * 20];
        if (q->step == 0 && q->prompt_logprobs >= 0 && q->n_prompt <= 512) {
            int32_t k = q->prompt_logprobs;
            for (int32_t i = 0; i < q->n_prompt; i++) {
                plp[i] = i ? -(float)i / 8 : NAN;
                for (int32_t x = 0; x < k; x++) {
                    pids[i * k + x] = 'a' + x;
                    ptop[i * k + x] = -0.5f - (float)x;
                }
            }
            o.n_prompt_logprobs = q->n_prompt;
            o.prompt_top_k = k;
            o.prompt_logprobs = plp;
            o.prompt_top_ids = pids;
            o.prompt_top_logprobs = ptop;
        }
        q->cb(q->user, &o);
    }
    q->step++;
    return last;
}

static void *mock_main(void *arg)
{
    struct mock_engine *m = arg;
    pthread_mutex_lock(&m->mu);
    while (m->running) {
        struct mock_req *work = m->hold ? NULL : m->reqs, *done = NULL;
        pthread_mutex_unlock(&m->mu);
        /* Requests are only unlinked by this thread, so walking without
         * the lock is safe; new ones are pushed at the head. */
        for (struct mock_req *q = work; q; q = q->next)
            if (mock_step(m, q)) {
                pthread_mutex_lock(&m->mu);
                for (struct mock_req **pp = &m->reqs; *pp; pp = &(*pp)->next)
                    if (*pp == q) {
                        *pp = q->next;
                        break;
                    }
                m->n_finished++;
                pthread_mutex_unlock(&m->mu);
                q->next = done;
                done = q;
                break;  /* the list changed under us: restart */
            }
        while (done) {
            struct mock_req *n = done->next;
            free(done);
            done = n;
        }
        usleep(m->tick_us > 0 ? (useconds_t)m->tick_us : 200);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static void mock_free_mem(void *p)
{
    free(p);
}

struct mock_engine *mock_create(void)
{
    struct mock_engine *m = calloc(1, sizeof *m);
    struct zl_engine_api *a = &m->api;
    a->size = sizeof *a;
    a->ctx = m;
    a->model_name = "mock-model";
    a->model_root = "/models/mock";
    a->max_model_len = 64;
    a->vocab_size = MOCK_VOCAB;
    a->created = 1700000000;
    a->version = "0.0.test";
    a->defaults = (struct zl_sampling_params){.n = 1, .temperature = 1, .top_p = 1, .top_k = 0,
                                              .repetition_penalty = 1, .logprobs = -1,
                                              .max_tokens = -1};
    a->tokenize = mock_tokenize;
    a->detokenize = mock_detokenize;
    a->render_chat = mock_render;
    a->tokenizer_info = mock_tokenizer_info;
    a->free_mem = mock_free_mem;
    a->last_error = mock_last_error;
    a->submit = mock_submit;
    a->cancel = mock_cancel;
    a->health = mock_health;
    a->stats = mock_stats;
    pthread_mutex_init(&m->mu, NULL);
    m->running = 1;
    pthread_create(&m->thread, NULL, mock_main, m);
    return m;
}

int mock_active(struct mock_engine *m)
{
    int n = 0;
    pthread_mutex_lock(&m->mu);
    for (struct mock_req *q = m->reqs; q; q = q->next)
        n++;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int mock_wait_idle(struct mock_engine *m, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (mock_active(m) == 0)
            return 1;
        usleep(1000);
    }
    return mock_active(m) == 0;
}

void mock_free(struct mock_engine *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->running = 0;
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    while (m->reqs) {
        struct mock_req *n = m->reqs->next;
        free(m->reqs);
        m->reqs = n;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}
