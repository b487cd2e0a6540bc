/* The core side of the frontend ABI (core/frontend-host.c): struct
 * zl_engine_api over the real engine (fake model, 64-character tokenizer):
 * one done per request after every sequence, text equal to the decoded
 * tokens, cancel frees the KV blocks, text services, generation_config
 * defaults. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlight/frontend.h>
#include <zlight/tokenizer.h>
#include "test_engine_fakemodel.h"

static struct zl_model model;
static struct zl_mem *mem;
static struct zl_tokenizer *tok;
static struct zl_frontend_host *host;
static struct zl_engine *engine;
static const struct zl_engine_api *api;

/* One character per id, as test_engine.c's tokenizer. */
static struct zl_tokenizer *char_tokenizer(void)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!";
    char json[4096];
    int n = snprintf(json, sizeof json, "{\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{");
    for (int i = 0; i < FAKE_VOCAB; i++)
        n += snprintf(json + n, sizeof json - (size_t)n, "%s\"%c\":%d", i ? "," : "", chars[i], i);
    n += snprintf(json + n, sizeof json - (size_t)n, "}},\"decoder\":{\"type\":\"Fuse\"}}");
    struct zl_tokenizer *t;
    cr_assert_eq(zl_tokenizer_load_json(json, (size_t)n, &t), ZL_OK, "%s", zl_last_error());
    return t;
}

static void setup(void)
{
    tok = char_tokenizer();
    struct zl_frontend_host_params hp = {.tokenizer = tok, .model_name = "fake", .max_model_len = 512};
    cr_assert_eq(zl_frontend_host_create(&hp, &host), ZL_OK, "%s", zl_last_error());
    api = zl_frontend_host_api(host);
    cr_assert_lt(api->health(api->ctx), 0, "no engine attached yet");

    struct zl_engine_params ep = zl_engine_default_params();
    ep.sched.max_num_batched_tokens = 256;
    ep.sched.max_num_seqs = 32;
    ep.sched.max_model_len = 512;
    int32_t bs = 4;
    memset(&model, 0, sizeof model);
    mem = fake_mem(512, bs);
    cr_assert_not_null(mem, "%s", zl_last_error());
    size_t ws = fm_ws(&model, 256, 32) + sizeof(float) * FAKE_VOCAB * 32 + 4096;
    cr_assert_eq(zl_mem_plan(mem, ws, (size_t)bs * 16), ZL_OK, "%s", zl_last_error());
    void *base;
    size_t stride;
    uint32_t nb;
    cr_assert_eq(zl_mem_kv_pool(mem, &base, &stride, &nb), ZL_OK);
    fake_init(&model.f, (int32_t)nb, bs);
    ep.model_ops = &fake_model_ops;
    ep.model = &model;
    ep.backend = &fake_backend_ops;
    ep.mem = mem;
    ep.block_size = bs;
    ep.tokenizer = tok;
    ep.on_output = zl_frontend_host_on_output;
    ep.on_output_user = host;
    cr_assert_eq(zl_engine_create(&ep, &engine), ZL_OK, "%s", zl_last_error());
    zl_frontend_host_set_engine(host, engine);
}

static void teardown(void)
{
    zl_engine_free(engine);
    zl_frontend_host_free(host);
    fake_fini(&model.f);
    zl_mem_free(mem);
    zl_tokenizer_free(tok);
}

TestSuite(frontend_host, .init = setup, .fini = teardown, .timeout = 30);

/* What the frontend would see of one request. */
struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[4][512];
    int32_t tokens[4][512];
    int n_tok[4], finish[4], n_done, n_calls, n_prompt;
    int slow;       /* sleep 1 ms per event: throttles the engine thread */
};

static void on_out(void *user, const struct zl_fe_output *o)
{
    struct seen *s = user;
    pthread_mutex_lock(&s->mu);
    cr_assert(o->index >= 0 && o->index < 4);
    cr_assert_eq(s->n_done, 0, "a call after done");
    strncat(s->text[o->index], o->text, o->text_len);
    for (int32_t i = 0; i < o->n_tokens; i++)
        s->tokens[o->index][s->n_tok[o->index]++] = o->tokens[i].id;
    if (o->finish)
        s->finish[o->index] = o->finish;
    s->n_prompt = o->n_prompt_tokens;
    s->n_calls++;
    s->n_done += o->done;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->slow)
        usleep(1000);
}

/* Waits until at least `calls` events came (0: until done). */
static void wait_for(struct seen *s, int calls)
{
    pthread_mutex_lock(&s->mu);
    while (calls ? s->n_calls < calls : !s->n_done)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* A greedy request of n sequences over one 7-token prompt. */
static struct zl_fe_request request(int32_t n, int32_t max_tokens)
{
    static const int32_t prompt[7] = {7, 4, 11, 11, 14, 62, 22};
    struct zl_fe_request r = {.size = sizeof r, .prompt = prompt, .n_prompt = 7,
                              .sampling = api->defaults, .skip_special_tokens = 1};
    r.sampling.temperature = 0;
    r.sampling.n = n;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = 1;
    return r;
}

static uint64_t submit_request(struct seen *s, const struct zl_fe_request *r, int slow)
{
    memset(s, 0, sizeof *s);
    s->slow = slow;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    uint64_t id;
    cr_assert_eq(api->submit(api->ctx, r, on_out, s, &id), ZL_OK, "%s", api->last_error(api->ctx));
    return id;
}

static uint64_t submit(struct seen *s, int32_t n, int32_t max_tokens, int slow)
{
    struct zl_fe_request r = request(n, max_tokens);
    return submit_request(s, &r, slow);
}

Test(frontend_host, one_done_after_every_sequence_and_text_matches_tokens)
{
    struct seen s;
    submit(&s, 3, 12, 0);
    wait_for(&s, 0);
    cr_assert_eq(s.n_prompt, 7);
    for (int j = 0; j < 3; j++) {
        cr_assert_eq(s.n_tok[j], 12, "sequence %d", j);
        cr_assert_eq(s.finish[j], ZL_FE_FINISH_LENGTH);
        char *want;
        size_t len;
        cr_assert_eq(api->detokenize(api->ctx, s.tokens[j], 12, 1, &want, &len), ZL_OK);
        cr_assert_str_eq(s.text[j], want, "sequence %d: the text deltas spell the tokens", j);
        api->free_mem(want);
    }
    usleep(20000);
    cr_assert_eq(s.n_done, 1, "exactly one done");
}

/* include_stop_str_in_output reaches the engine: the text ends with the
 * stop string, and before it without the flag. */
Test(frontend_host, include_stop_str_in_output)
{
    struct seen s;
    submit(&s, 1, 12, 0);
    wait_for(&s, 0);
    char full[512], stop[3] = {s.text[0][4], s.text[0][5], 0};
    snprintf(full, sizeof full, "%s", s.text[0]);
    size_t at = (size_t)(strstr(full, stop) - full);
    const char *stops[] = {stop};
    for (int incl = 0; incl < 2; incl++) {
        struct zl_fe_request r = request(1, 12);
        r.sampling.stop = stops;
        r.sampling.n_stop = 1;
        r.include_stop_str_in_output = incl;
        submit_request(&s, &r, 0);
        wait_for(&s, 0);
        cr_expect_eq(s.finish[0], ZL_FE_FINISH_STOP);
        cr_expect_eq(strlen(s.text[0]), at + (incl ? 2 : 0), "include %d: '%s' of '%s'", incl,
                     s.text[0], full);
        cr_expect_eq(strncmp(s.text[0], full, strlen(s.text[0])), 0);
    }
}

Test(frontend_host, cancel_ends_with_abort_and_frees_blocks)
{
    struct seen s;
    uint64_t id = submit(&s, 2, 400, 1);
    wait_for(&s, 2);    /* running: both sequences made a token */
    api->cancel(api->ctx, id);
    wait_for(&s, 0);
    cr_assert_eq(s.finish[0], ZL_FE_FINISH_ABORT, "finish %d after %d tokens", s.finish[0], s.n_tok[0]);
    cr_assert_eq(s.finish[1], ZL_FE_FINISH_ABORT);
    api->cancel(api->ctx, id);  /* finished: ignored */
    struct zl_fe_stats st = {.size = sizeof st};
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(api->stats(api->ctx, &st), ZL_OK);
        if (st.kv_blocks_free == st.kv_blocks_total)
            break;
        usleep(5000);
    }
    cr_assert_gt(st.kv_blocks_total, 0);
    cr_assert_eq(st.kv_blocks_free, st.kv_blocks_total, "the cancelled request's blocks came back");
    cr_assert_eq(st.async_steps, 0, "the CPU backend has no device sampler: no async steps");
    /* a frontend built before async_steps passes the shorter struct */
    struct zl_fe_stats old = {.size = offsetof(struct zl_fe_stats, async_steps), .async_steps = -5};
    cr_assert_eq(api->stats(api->ctx, &old), ZL_OK);
    cr_assert_eq(old.n_steps, st.n_steps);
    cr_assert_eq(old.async_steps, -5, "written past the caller's size");
    cr_assert_eq(api->health(api->ctx), ZL_OK);
}

Test(frontend_host, text_services)
{
    int32_t *ids;
    size_t n;
    cr_assert_eq(api->tokenize(api->ctx, "hello", 5, 1, &ids, &n), ZL_OK);
    cr_assert_eq(n, 5);
    char *text;
    size_t len;
    cr_assert_eq(api->detokenize(api->ctx, ids, n, 1, &text, &len), ZL_OK);
    cr_assert_str_eq(text, "hello");
    api->free_mem(text);
    api->free_mem(ids);
    int32_t bad = FAKE_VOCAB;
    cr_assert_eq(api->detokenize(api->ctx, &bad, 1, 0, &text, &len), ZL_EINVAL);
    cr_assert(strstr(api->last_error(api->ctx), "outside the vocabulary"), "%s", api->last_error(api->ctx));
    cr_assert_eq(api->render_chat(api->ctx, "[{\"role\":\"user\",\"content\":\"x\"}]", NULL, NULL, 1, &text),
                 ZL_EINVAL, "the tokenizer has no chat template");
    cr_assert(strstr(api->last_error(api->ctx), "no chat template"), "%s", api->last_error(api->ctx));
    cr_assert_eq(api->vocab_size, FAKE_VOCAB);
    cr_assert_str_eq(api->model_name, "fake");
}

/* tokenizer_info: the tokenizer's special tokens and max_model_len as JSON
 * (the char tokenizer has no BOS/EOS and no chat template). */
Test(frontend_host, tokenizer_info)
{
    char *s = NULL;
    cr_assert_eq(api->tokenizer_info(api->ctx, &s), ZL_OK);
    json_t *o = json_loads(s, 0, NULL);
    cr_assert(json_is_object(o), "%s", s);
    cr_assert(json_is_null(json_object_get(o, "eos_token")), "%s", s);
    cr_assert(json_is_null(json_object_get(o, "chat_template")), "%s", s);
    cr_assert_eq(json_integer_value(json_object_get(o, "model_max_length")), 512);
    json_decref(o);
    api->free_mem(s);
}

Test(frontend_host, generation_config_sets_defaults_and_a_template_file_is_used)
{
    char dir[] = "/tmp/zl-fe-host-XXXXXX", path[64], jinja[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    snprintf(jinja, sizeof jinja, "%s/t.jinja", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"temperature\": 0.6, \"top_p\": 0.9, \"top_k\": 20, \"repetition_penalty\": 1.1}", f);
    fclose(f);
    f = fopen(jinja, "w");
    fputs("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
          "{% if add_generation_prompt %}assistant:{% endif %}", f);
    fclose(f);
    struct zl_frontend_host_params hp = {.tokenizer = tok, .model_name = "m", .max_model_len = 64,
                                         .generation_config = dir, .chat_template_path = jinja};
    struct zl_frontend_host *h;
    cr_assert_eq(zl_frontend_host_create(&hp, &h), ZL_OK, "%s", zl_last_error());
    const struct zl_engine_api *a = zl_frontend_host_api(h);
    cr_assert_float_eq(a->defaults.temperature, 0.6f, 1e-6);
    cr_assert_float_eq(a->defaults.top_p, 0.9f, 1e-6);
    cr_assert_eq(a->defaults.top_k, 20);
    cr_assert_float_eq(a->defaults.repetition_penalty, 1.1f, 1e-6);
    char *text;
    cr_assert_eq(a->render_chat(a->ctx, "[{\"role\":\"user\",\"content\":\"hi\"}]", "[]", "{}", 1, &text),
                 ZL_OK, "%s", a->last_error(a->ctx));
    cr_assert_str_eq(text, "user: hi\nassistant:");
    a->free_mem(text);
    cr_assert_eq(a->render_chat(a->ctx, "{not json", NULL, NULL, 1, &text), ZL_EINVAL);
    /* /tokenizer_info's chat_template is the file's source */
    cr_assert_eq(a->tokenizer_info(a->ctx, &text), ZL_OK);
    json_t *info = json_loads(text, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(info, "chat_template")),
                     "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                     "{% if add_generation_prompt %}assistant:{% endif %}");
    json_decref(info);
    a->free_mem(text);
    zl_frontend_host_free(h);
    unlink(path);
    unlink(jinja);
    rmdir(dir);
}
