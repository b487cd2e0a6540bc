/* Guided decoding through the engine (engine-guide.c) over the fake model
 * and a 64-token JSON alphabet: every finished reply is JSON that matches
 * its schema, every reply cut by max_tokens is a prefix of one, and the
 * host sampler, the device sampler (the mask as -inf bias entries) and
 * async scheduling (the mask made after the last step's token came back)
 * pick the same tokens with the same logprobs. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/guide.h>
#include <zlight/tokenizer.h>
#include "test_engine_hostdev.h"

#define N_REQ 8
#define MAX_OUT 160
#define EOS_ID 63

/* Single characters, a few multi-byte pieces (never produced by encode,
 * only sampled) and a special EOS, which has no bytes for the guide. */
static const char *const k_pieces[FAKE_VOCAB - 1] = {
    "{", "}", "[", "]", "\"", ":", ",", " ", "\n", "-", ".", "0", "1", "2", "3", "4", "5", "6",
    "7", "8", "9", "a", "b", "e", "f", "l", "n", "o", "k", "r", "s", "t", "u", "x", "y", "g",
    "\\", "{\"", "\":", "\",", "\"}", "true", "false", "null", "ok", "tag", "list", "\"ok\"",
    "\"tag\":", "\"list\": [", "],", "]}", "yy", "i", "12", "e5", "\\n", "é", "ü", "\xf0\x9f\x99\x82",
    "  ", "    ", "\n  ",
};

static struct zl_tokenizer *json_tokenizer(void)
{
    json_t *vocab = json_object();
    for (int i = 0; i < FAKE_VOCAB - 1; i++)
        json_object_set_new(vocab, k_pieces[i], json_integer(i));
    json_t *doc = json_pack("{s:{s:s,s:[],s:o},s:{s:s},s:[{s:i,s:s,s:b}]}", "model", "type",
                            "BPE", "merges", "vocab", vocab, "decoder", "type", "Fuse",
                            "added_tokens", "id", EOS_ID, "content", "<E>", "special", 1);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    struct zl_tokenizer *t;
    cr_assert_eq(zl_tokenizer_load_json(text, strlen(text), &t), ZL_OK, "%s", zl_last_error());
    free(text);
    return t;
}

static const char *const k_schemas[N_REQ] = {
    "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},\"tag\":{\"enum\":"
    "[\"x\",\"yy\",12,null]},\"list\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
    "\"maxItems\":3}},\"required\":[\"ok\",\"tag\",\"list\"]}",
    "{\"type\":\"array\",\"items\":{\"enum\":[true,false,null]},\"minItems\":1,\"maxItems\":4}",
    "{\"type\":\"object\"}",
    NULL,   /* an unguided request in the same steps */
    "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"maxLength\":4}},"
    "\"required\":[\"s\"]}",
    /* guided only after a marker (a reasoning model's end of thinking) */
    "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":2}",
    "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":2}",
    "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":2}",
};
/* the marker each request's guide waits for, NULL: none */
static const char *const k_after[N_REQ] = {NULL, NULL, NULL, NULL, NULL, "ok", "\"", "e5"};

struct out {
    int32_t toks[N_REQ][2][MAX_OUT];
    float lp[N_REQ][2][MAX_OUT];
    int32_t n[N_REQ][2];
    enum zl_finish_reason fin[N_REQ][2];
    char text[N_REQ][2][4 * MAX_OUT + 1];
    size_t len[N_REQ][2];
};

static void run_all(const struct zl_backend_ops *be, struct zl_tokenizer *tok, struct out *o)
{
    struct zl_model m;
    struct zl_mem *mem;
    static const int32_t eos = EOS_ID;
    memset(o, 0, sizeof *o);
    struct zl_engine_params ep = zl_engine_default_params();
    ep.backend = be;
    ep.eos_ids = &eos;
    ep.n_eos = 1;
    ep.tokenizer = tok;
    struct zl_engine *e = fake_engine_open(ep, &m, 512, 16, 256, &mem);
    cr_assert_not_null(e, "%s", zl_last_error());
    uint64_t ids[N_REQ];
    for (int k = 0; k < N_REQ; k++) {
        struct zl_sampling_params sp = zl_sampling_default_params();
        sp.seed = 7 + (uint64_t)k;
        sp.has_seed = 1;
        sp.max_tokens = MAX_OUT;
        sp.temperature = k == 4 ? 0.0f : 1.0f;
        sp.logprobs = 2;
        sp.n = k == 0 ? 2 : 1;
        sp.ignore_eos = k_after[k] != NULL;     /* the free part goes on to its marker */
        struct zl_request_opts ro = zl_request_default_opts();
        ro.json_schema = k_schemas[k];
        ro.guide_after = k_after[k];
        int32_t prompt[6] = {1 + k, 2, 3, 4, 5, 6};
        cr_assert_eq(zl_engine_submit_opts(e, prompt, 6, &sp, &ro, NULL, &ids[k]), ZL_OK, "%s",
                     zl_last_error());
    }
    int left = N_REQ + 1;
    for (int guard = 0; left > 0 && guard < 5000; guard++) {
        cr_assert_geq(zl_engine_step(e), 0, "%s", zl_last_error());
        struct zl_output x;
        while (zl_engine_wait(e, &x, 0) == 1) {
            int k = fake_req_index(ids, N_REQ, x.request_id), s = x.index;
            cr_assert_lt(k, N_REQ);
            if (x.n_tokens) {
                int32_t j = o->n[k][s]++;
                cr_assert_lt(j, MAX_OUT);
                o->toks[k][s][j] = x.token;
                o->lp[k][s][j] = x.logprob;
            }
            cr_assert_leq(o->len[k][s] + x.text_len, sizeof o->text[k][s] - 1);
            memcpy(o->text[k][s] + o->len[k][s], x.text, x.text_len);
            o->len[k][s] += x.text_len;
            if (x.finish) {
                o->fin[k][s] = x.finish;
                left--;
            }
            zl_output_release(&x);
        }
    }
    cr_assert_eq(left, 0, "requests did not finish");
    zl_engine_free(e);
    fake_fini(&m.f);
    zl_mem_free(mem);
}

/* A finished reply is whole JSON of its schema; a cut one a prefix. */
static void check_reply(int k, int s, const struct out *o, const struct zl_guide_vocab *v)
{
    const char *t = o->text[k][s];
    size_t len = o->len[k][s];
    if (k_after[k]) {       /* free text up to the marker, guided after it */
        const char *m = strstr(t, k_after[k]);
        if (!m)
            return;
        t = m + strlen(k_after[k]);
        len -= (size_t)(t - o->text[k][s]);
    }
    struct zl_json_schema *sc;
    cr_assert_eq(zl_json_schema_compile(k_schemas[k], strlen(k_schemas[k]), &sc), ZL_OK);
    struct zl_guide *g;
    cr_assert_eq(zl_guide_create(sc, v, &g), ZL_OK);
    cr_expect_eq(zl_guide_feed(g, t, len), ZL_OK, "request %d.%d: '%s'", k, s, t);
    if (o->fin[k][s] == ZL_FINISH_STOP) {
        cr_expect_eq(o->toks[k][s][o->n[k][s] - 1], EOS_ID, "request %d.%d ends with EOS", k, s);
        cr_expect(zl_guide_can_end(g), "request %d.%d: '%s' is whole", k, s, t);
        json_error_t err;
        json_t *j = json_loads(t, JSON_DECODE_ANY, &err);
        cr_expect_not_null(j, "request %d.%d: '%s': %s", k, s, t, err.text);
        if (k == 0 && j) {
            cr_expect(json_is_boolean(json_object_get(j, "ok")), "'%s'", t);
            cr_expect(json_is_array(json_object_get(j, "list")), "'%s'", t);
            cr_expect_leq(json_array_size(json_object_get(j, "list")), 3, "'%s'", t);
            cr_expect_eq(json_object_size(j), 3, "only the listed keys: '%s'", t);
        } else if (k == 1 && j) {
            cr_expect(json_is_array(j) && json_array_size(j) >= 1 && json_array_size(j) <= 4,
                      "'%s'", t);
        } else if (j) {
            cr_expect(json_is_object(j), "'%s'", t);
        }
        json_decref(j);
    } else {
        cr_expect_eq(o->fin[k][s], ZL_FINISH_LENGTH, "request %d.%d", k, s);
        cr_expect_eq(o->n[k][s], MAX_OUT);
    }
    zl_guide_free(g);
    zl_json_schema_free(sc);
}

Test(engine_guide, replies_follow_their_schemas_on_every_sampling_path)
{
    struct zl_tokenizer *tok = json_tokenizer();
    struct zl_guide_vocab *v;
    cr_assert_eq(zl_guide_vocab_create(tok, FAKE_VOCAB, &v), ZL_OK, "%s", zl_last_error());
    static struct out host, dev, as;
    run_all(&fake_backend_ops, tok, &host);
    run_all(&sampling_backend_ops, tok, &dev);
    run_all(&async_backend_ops, tok, &as);
    cr_expect_eq(host_q.misuse, 0);
    int stopped = 0;
    for (int k = 0; k < N_REQ; k++)
        for (int s = 0; s < (k == 0 ? 2 : 1); s++) {
            if (k_schemas[k])
                check_reply(k, s, &host, v);
            stopped += host.fin[k][s] == ZL_FINISH_STOP;
            cr_expect_arr_eq(dev.toks[k][s], host.toks[k][s], sizeof host.toks[k][s],
                             "request %d.%d: device sampling changed a token", k, s);
            cr_expect_arr_eq(dev.lp[k][s], host.lp[k][s], sizeof host.lp[k][s],
                             "request %d.%d: device sampling changed a logprob", k, s);
        }
    for (int k = 0; getenv("GUIDE_DEBUG") && k < N_REQ; k++)
        fprintf(stderr, "%d: fin %d n %d '%s'\n", k, host.fin[k][0], host.n[k][0], host.text[k][0]);
    cr_expect_arr_eq(&as, &dev, sizeof as, "async scheduling changed a reply");
    cr_expect_geq(stopped, 5, "most guided replies came to their end");
    /* the waiting guides started, and not at once: free text came first */
    for (int k = 5; k < N_REQ; k++) {
        const char *m = strstr(host.text[k][0], k_after[k]);
        cr_expect(m, "request %d: '%s' never came: '%s'", k, k_after[k], host.text[k][0]);
        cr_expect(m && m > host.text[k][0], "request %d: free text before '%s'", k, k_after[k]);
    }
    zl_guide_vocab_free(v);
    zl_tokenizer_free(tok);
}

Test(engine_guide, bad_schemas_are_refused_at_submit)
{
    struct zl_tokenizer *tok = json_tokenizer();
    struct zl_model m;
    struct zl_mem *mem;
    struct zl_engine_params ep = zl_engine_default_params();
    ep.backend = &fake_backend_ops;
    ep.tokenizer = tok;
    struct zl_engine *e = fake_engine_open(ep, &m, 64, 4, 64, &mem);
    cr_assert_not_null(e, "%s", zl_last_error());
    struct zl_request_opts ro = zl_request_default_opts();
    int32_t prompt[2] = {1, 2};
    ro.json_schema = "{\"type\":\"string\",\"pattern\":\"a+\"}";
    cr_expect_eq(zl_engine_submit_opts(e, prompt, 2, NULL, &ro, NULL, NULL), ZL_EUNSUPPORTED);
    cr_expect(strstr(zl_last_error(), "pattern"), "%s", zl_last_error());
    ro.json_schema = "{\"type\":";
    cr_expect_eq(zl_engine_submit_opts(e, prompt, 2, NULL, &ro, NULL, NULL), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "not JSON"), "%s", zl_last_error());
    /* an older caller's options (no json_schema member) still work */
    ro.size = ZL_REQUEST_OPTS_MIN_SIZE;
    cr_expect_eq(zl_engine_submit_opts(e, prompt, 2, NULL, &ro, NULL, NULL), ZL_OK, "%s",
                 zl_last_error());
    zl_engine_free(e);
    fake_fini(&m.f);
    zl_mem_free(mem);

    ep.tokenizer = NULL;
    e = fake_engine_open(ep, &m, 64, 4, 64, &mem);
    cr_assert_not_null(e);
    ro = zl_request_default_opts();
    ro.json_schema = "{}";
    cr_expect_eq(zl_engine_submit_opts(e, prompt, 2, NULL, &ro, NULL, NULL), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "tokenizer"), "%s", zl_last_error());
    zl_engine_free(e);
    fake_fini(&m.f);
    zl_mem_free(mem);
    zl_tokenizer_free(tok);
}
