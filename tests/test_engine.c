/* Engine over the fake model: streaming, stop / length / abort, sampling
 * options, n > 1, the thread, counters, and batch invariance of the
 * plumbing (alone, together, chunked, prefix hits, preemption).
 *
 * Built twice: test_engine samples on the CPU, waiting for every step;
 * test_engine_async (-DENGINE_ASYNC) runs the same tests with async
 * scheduling over a backend that samples (test_engine_hostdev.h), so each
 * step is queued before the last one's tokens are known. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlight/tokenizer.h>
#include "test_engine_hostdev.h"

struct rig {
    struct zl_model m;
    struct zl_mem *mem;
    struct zl_engine *e;
};

/* zl_engine_create's status; the model's forward number fail_at fails */
static int rig_make(struct rig *r, struct zl_engine_params ep, int32_t bs, int64_t fail_at)
{
    memset(&r->m, 0, sizeof(r->m));
    r->m.fail_at = fail_at;
    r->mem = fake_mem(512, bs);
    cr_assert_not_null(r->mem, "%s", zl_last_error());
    size_t ws = fm_ws(&r->m, ep.sched.max_num_batched_tokens, ep.sched.max_num_seqs) +
                sizeof(float) * FAKE_VOCAB * (size_t)ep.sched.max_num_seqs + 4096;
    cr_assert_eq(zl_mem_plan(r->mem, ws, (size_t)bs * 16), ZL_OK, "%s", zl_last_error());
    void *base;
    size_t stride;
    uint32_t nb;
    cr_assert_eq(zl_mem_kv_pool(r->mem, &base, &stride, &nb), ZL_OK);
    fake_init(&r->m.f, (int32_t)nb, bs);
    ep.model_ops = &fake_model_ops;
    ep.model = &r->m;
#ifdef ENGINE_ASYNC
    static int dummy_ctx;
    ep.backend = &async_backend_ops;
    ep.bctx = (struct zl_bctx *)&dummy_ctx;
    r->m.be = ep.backend;
    r->m.bctx = ep.bctx;
    /* late scheduling (on by default) keeps its books every step; its
     * waits never block here (the host device is done at once), so it
     * never sleeps (test_engine_pace has its timing) */
    cr_assert(ep.late_scheduling, "the engine's default turned late scheduling off");
    host_q.queued = host_q.valid = 0;
    host_q.misuse = 0;
#else
    ep.backend = &fake_backend_ops;
#endif
    ep.mem = r->mem;
    ep.block_size = bs;
    return zl_engine_create(&ep, &r->e);
}

static void rig_up(struct rig *r, struct zl_engine_params ep, int32_t bs)
{
    cr_assert_eq(rig_make(r, ep, bs, 0), ZL_OK, "%s", zl_last_error());
}

static void rig_down(struct rig *r)
{
    /* counters are published after a step's events: give a threaded
     * engine a moment to finish the step that sent the last one */
    struct zl_engine_stats st;
    for (int i = 0; i < 200; i++) {
        zl_engine_get_stats(r->e, &st);
        if (st.kv_blocks_used == 0)
            break;
        usleep(5000);
    }
    cr_expect_eq(st.kv_blocks_used, 0, "blocks left in use");
    zl_engine_free(r->e);
#ifdef ENGINE_ASYNC
    if (r->m.forwards >= 3)     /* a prefill and two steps: the second reads a queued token */
        cr_expect_gt(r->m.from_rows, 0, "no step was queued ahead of its tokens");
    cr_expect_eq(host_q.queued, 0, "the engine left a sample batch queued");
    cr_expect_eq(host_q.misuse, 0, "sample_queue / sample_wait / upload_tokens out of order");
#endif
    cr_expect_eq(r->m.f.errors, 0, "the fake model read a wrong slot");
    struct zl_mem_stats ms;
    zl_mem_get_stats(r->mem, &ms);
    cr_expect_eq(zl_mem_check(r->mem), ZL_OK, "%s", zl_last_error());
    fake_fini(&r->m.f);
    zl_mem_free(r->mem);
}

static struct zl_engine_params params(int threaded)
{
    struct zl_engine_params ep = zl_engine_default_params();
    ep.threaded = threaded;
    ep.sched.max_num_batched_tokens = 256;
    ep.sched.max_num_seqs = 32;
    ep.sched.max_model_len = 512;
    return ep;
}

struct result {
    int32_t toks[8][256];
    int32_t n[8];
    enum zl_finish_reason fin[8];
    int32_t stop_token[8];
    int32_t cached;
    int events;
    int greedy_top;     /* events whose best logprob is the token's own */
};

/* Waits until every request in ids[] has all its sequences finished. */
static void collect(struct zl_engine *e, const uint64_t *ids, int n_req, const int *n_seq, struct result *res)
{
    int left = 0;
    for (int i = 0; i < n_req; i++)
        left += n_seq[i];
    while (left > 0) {
        struct zl_output o;
        int got = zl_engine_wait(e, &o, 10000);
        cr_assert_eq(got, 1, "no event in 10 s (%d sequences left)", left);
        int k = 0;
        while (k < n_req && ids[k] != o.request_id)
            k++;
        cr_assert_lt(k, n_req);
        struct result *r = &res[k];
        r->events++;
        for (int32_t j = 0; j < o.n_top; j++) {
            cr_expect_leq(o.top_logprobs[j], 0.0f);
            if (j)
                cr_expect_leq(o.top_logprobs[j], o.top_logprobs[j - 1], "top logprobs best first");
        }
        if (o.n_top && o.top_ids[0] == o.token && o.logprob == o.top_logprobs[0])
            r->greedy_top++;
        if (o.n_tokens) {
            cr_assert_lt(r->n[o.index], 256);
            r->toks[o.index][r->n[o.index]++] = o.token;
            cr_expect_eq(o.n_output_tokens, r->n[o.index]);
        }
        if (o.finish) {
            r->fin[o.index] = o.finish;
            r->stop_token[o.index] = o.stop_token;
            r->cached = o.n_cached_tokens;
            left--;
        }
        zl_output_release(&o);
    }
}

static void run_one(struct zl_engine *e, const int32_t *prompt, int32_t n,
                    const struct zl_sampling_params *sp, struct result *res)
{
    uint64_t id;
    memset(res, 0, sizeof(*res));
    cr_assert_eq(zl_engine_submit(e, prompt, n, sp, NULL, &id), ZL_OK, "%s", zl_last_error());
    int ns = sp ? sp->n : 1;
    collect(e, &id, 1, &ns, res);
}

Test(engine, greedy_stream_and_length)
{
    struct rig r;
    rig_up(&r, params(0), 4);
    int32_t prompt[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 12;
    sp.logprobs = 3;
    struct result res;
    run_one(r.e, prompt, 10, &sp, &res);
    cr_expect_eq(res.greedy_top, 12, "greedy tokens carry their logprob and the top 3");
    int32_t ref[12];
    fake_reference(prompt, 10, 12, ref);
    cr_expect_eq(res.n[0], 12);
    cr_expect_arr_eq(res.toks[0], ref, sizeof(ref));
    cr_expect_eq(res.fin[0], ZL_FINISH_LENGTH);
    struct zl_engine_stats st;
    zl_engine_get_stats(r.e, &st);
    cr_expect_eq(st.generation_tokens, 12);
    cr_expect_eq(st.prompt_tokens, 10);
    cr_expect_eq(st.requests_finished, 1);
    cr_expect_eq(st.ttft.count, 1);
    cr_expect_eq(st.itl.count, 11);
    cr_expect_eq(st.tpot.count, 1);
    cr_expect_eq(st.e2e.count, 1);
    rig_down(&r);
}

Test(engine, eos_stop_ids_min_tokens_ignore_eos)
{
    int32_t prompt[6] = {3, 1, 4, 1, 5, 9};
    int32_t ref[40];
    fake_reference(prompt, 6, 40, ref);
    struct zl_engine_params ep = params(0);
    int32_t eos[2] = {ref[2], 63};
    ep.eos_ids = eos;
    ep.n_eos = 2;
    struct rig r;
    rig_up(&r, ep, 4);
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 40;
    struct result res;
    run_one(r.e, prompt, 6, &sp, &res);
    int first_eos = 0;
    while (ref[first_eos] != eos[0] && ref[first_eos] != eos[1])
        first_eos++;
    cr_expect_eq(res.fin[0], ZL_FINISH_STOP);
    cr_expect_eq(res.n[0], first_eos + 1, "the EOS token is the last output");
    cr_expect_eq(res.stop_token[0], ref[first_eos]);

    sp.ignore_eos = 1;
    sp.max_tokens = 20;
    run_one(r.e, prompt, 6, &sp, &res);
    cr_expect_eq(res.fin[0], ZL_FINISH_LENGTH);
    cr_expect_eq(res.n[0], 20);

    /* a stop token id stops even with ignore_eos */
    sp.stop_token_ids = &ref[5];
    sp.n_stop_token_ids = 1;
    run_one(r.e, prompt, 6, &sp, &res);
    cr_expect_eq(res.fin[0], ZL_FINISH_STOP);
    cr_expect_eq(res.stop_token[0], ref[5]);
    cr_expect_leq(res.n[0], 6);
    rig_down(&r);
}

Test(engine, cancel_frees_blocks)
{
    struct rig r;
    rig_up(&r, params(0), 4);     /* stepped by zl_engine_wait: no race with the end */
    int32_t prompt[30];
    for (int i = 0; i < 30; i++)
        prompt[i] = i % 50;
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.ignore_eos = 1;
    uint64_t id;
    cr_assert_eq(zl_engine_submit(r.e, prompt, 30, &sp, NULL, &id), ZL_OK);
    struct zl_output o;
    cr_assert_eq(zl_engine_wait(r.e, &o, 10000), 1);
    zl_output_release(&o);
    cr_assert_eq(zl_engine_cancel(r.e, id), ZL_OK);
    for (;;) {
        cr_assert_eq(zl_engine_wait(r.e, &o, 10000), 1);
        enum zl_finish_reason f = o.finish;
        zl_output_release(&o);
        if (f) {
            cr_expect_eq(f, ZL_FINISH_ABORT);
            break;
        }
    }
    cr_expect_eq(zl_engine_cancel(r.e, id), ZL_ENOTFOUND);
    cr_expect_eq(zl_engine_cancel(r.e, 12345), ZL_ENOTFOUND);
    rig_down(&r);
}

Test(engine, submit_errors)
{
    struct rig r;
    rig_up(&r, params(0), 4);
    int32_t bad[2] = {1, FAKE_VOCAB};
    cr_expect_eq(zl_engine_submit(r.e, bad, 2, NULL, NULL, NULL), ZL_EINVAL);
    cr_expect_eq(zl_engine_submit(r.e, bad, 0, NULL, NULL, NULL), ZL_EINVAL);
    static int32_t longp[600];
    cr_expect_eq(zl_engine_submit(r.e, longp, 600, NULL, NULL, NULL), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "max_model_len") != NULL);
    struct zl_sampling_params sp = zl_sampling_default_params();
    const char *stop[] = {"x"};
    sp.stop = stop;
    sp.n_stop = 1;
    cr_expect_eq(zl_engine_submit(r.e, bad, 1, &sp, NULL, NULL), ZL_EINVAL, "stop strings need a tokenizer");
    sp = zl_sampling_default_params();
    sp.top_p = 2;
    cr_expect_eq(zl_engine_submit(r.e, bad, 1, &sp, NULL, NULL), ZL_EINVAL);
    rig_down(&r);
}

/* n > 1: siblings share the prompt's blocks, differ from each other, and a
 * seeded request gives the same tokens alone and inside a busy batch. */
Test(engine, n_seeds_and_logprobs)
{
    struct rig r;
    rig_up(&r, params(0), 4);
    int32_t prompt[23];
    for (int i = 0; i < 23; i++)
        prompt[i] = (i * 7) % 60;
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.n = 3;
    sp.seed = 2024;
    sp.has_seed = 1;
    sp.temperature = 1.5f;
    sp.max_tokens = 16;
    sp.logprobs = 2;
    struct result alone, busy[4];
    run_one(r.e, prompt, 23, &sp, &alone);
    for (int k = 0; k < 3; k++)
        cr_expect_eq(alone.n[k], 16);
    cr_expect(memcmp(alone.toks[0], alone.toks[1], sizeof(int32_t) * 16) != 0);
    cr_expect_eq(alone.cached, 20, "siblings hit the first one's full prompt blocks");

    /* the same request among three unseeded others */
    uint64_t ids[4];
    int ns[4] = {1, 3, 1, 1};
    memset(busy, 0, sizeof(busy));
    struct zl_sampling_params other = sp;
    other.has_seed = 0;
    other.n = 1;
    int32_t p2[9] = {5, 5, 5, 5, 5, 5, 5, 5, 5};
    cr_assert_eq(zl_engine_submit(r.e, p2, 9, &other, NULL, &ids[0]), ZL_OK);
    cr_assert_eq(zl_engine_submit(r.e, prompt, 23, &sp, NULL, &ids[1]), ZL_OK);
    cr_assert_eq(zl_engine_submit(r.e, p2, 5, &other, NULL, &ids[2]), ZL_OK);
    cr_assert_eq(zl_engine_submit(r.e, prompt, 17, &other, NULL, &ids[3]), ZL_OK);
    collect(r.e, ids, 4, ns, busy);
    for (int k = 0; k < 3; k++)
        cr_expect_arr_eq(busy[1].toks[k], alone.toks[k], sizeof(int32_t) * 16, "sequence %d", k);
    rig_down(&r);
}

/* Greedy ids of 16 prompts: alone, together, chunked 1 / 7 / 64, with a
 * shared system prompt in the prefix cache, and with a tiny KV pool. */
Test(engine, batch_invariance_plumbing)
{
    enum { NP = 16 };
    int32_t prompts[NP][80], lens[NP];
    srand(5);
    for (int i = 0; i < NP; i++) {
        lens[i] = 20 + rand() % 60;
        for (int j = 0; j < lens[i]; j++)
            prompts[i][j] = j < 18 ? (j * 13) % 64 : rand() % 64;   /* shared system prompt */
    }
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 24;
    sp.ignore_eos = 1;
    static struct result ref[NP], got[NP];
    for (int i = 0; i < NP; i++) {
        int32_t want[24];
        fake_reference(prompts[i], lens[i], 24, want);
        memset(&ref[i], 0, sizeof(ref[i]));
        memcpy(ref[i].toks[0], want, sizeof(want));
    }
    struct { int chunk, blocks, prefix; } cfg[] = {
        {0, 0, 0}, {1, 0, 1}, {7, 0, 1}, {64, 0, 1}, {0, 0, 1}, {7, 40, 1}, {0, 30, 0},
    };
    for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
        struct zl_engine_params ep = params(c % 2);
        ep.sched.max_prefill_chunk = cfg[c].chunk;
        ep.sched.enable_prefix_caching = cfg[c].prefix;
        ep.max_kv_blocks = cfg[c].blocks;
        struct rig r;
        rig_up(&r, ep, 4);
        uint64_t ids[NP];
        int ns[NP];
        if (cfg[c].prefix) {    /* the system prompt's blocks in the cache first */
            run_one(r.e, prompts[0], lens[0], &sp, &got[0]);
            cr_expect_arr_eq(got[0].toks[0], ref[0].toks[0], sizeof(int32_t) * 24);
        }
        memset(got, 0, sizeof(got));
        for (int i = 0; i < NP; i++) {
            ns[i] = 1;
            cr_assert_eq(zl_engine_submit(r.e, prompts[i], lens[i], &sp, NULL, &ids[i]), ZL_OK);
        }
        collect(r.e, ids, NP, ns, got);
        for (int i = 0; i < NP; i++) {
            cr_expect_eq(got[i].n[0], 24, "config %zu prompt %d", c, i);
            cr_expect_arr_eq(got[i].toks[0], ref[i].toks[0], sizeof(int32_t) * 24, "config %zu prompt %d", c, i);
        }
        struct zl_engine_stats st;
        zl_engine_get_stats(r.e, &st);
        if (cfg[c].blocks)
            cr_expect_gt(st.n_preemptions, 0, "config %zu: the tiny pool preempts", c);
        if (cfg[c].prefix)
            cr_expect_gt(st.prefix_hit_rate, 0.0, "config %zu: the system prompt hits", c);
        if (cfg[c].chunk)
            cr_expect_leq(r.m.max_tokens_seen, NP * 1 + cfg[c].chunk * NP, "config %zu", c);
        rig_down(&r);
    }
}

/* A 64-token tokenizer (one character per id, fused on decode) for text
 * deltas and stop strings over the fake model; id `special` (>= 0) is
 * instead the special added token "<S>". */
static struct zl_tokenizer *char_tokenizer_special(int special)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!";
    char json[4096];
    int n = snprintf(json, sizeof(json), "{\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{");
    for (int i = 0; i < FAKE_VOCAB; i++)
        n += snprintf(json + n, sizeof(json) - (size_t)n, "%s\"%c\":%d", i ? "," : "", chars[i], i);
    n += snprintf(json + n, sizeof(json) - (size_t)n, "}},\"decoder\":{\"type\":\"Fuse\"}");
    if (special >= 0)
        n += snprintf(json + n, sizeof(json) - (size_t)n,
                      ",\"added_tokens\":[{\"id\":%d,\"content\":\"<S>\",\"special\":true}]",
                      special);
    n += snprintf(json + n, sizeof(json) - (size_t)n, "}");
    struct zl_tokenizer *t;
    cr_assert_eq(zl_tokenizer_load_json(json, (size_t)n, &t), ZL_OK, "%s", zl_last_error());
    return t;
}

static struct zl_tokenizer *char_tokenizer(void)
{
    return char_tokenizer_special(-1);
}

/* Runs one request and returns its concatenated text deltas (static buffer). */
static const char *run_text_opts(struct zl_engine *e, const int32_t *prompt, int32_t n,
                                 const struct zl_sampling_params *sp,
                                 const struct zl_request_opts *opts, int32_t *n_tokens,
                                 struct zl_output *last)
{
    static char text[1024];
    size_t len = 0;
    *n_tokens = 0;
    cr_assert_eq(zl_engine_submit_opts(e, prompt, n, sp, opts, NULL, NULL), ZL_OK, "%s",
                 zl_last_error());
    for (;;) {
        struct zl_output o;
        cr_assert_eq(zl_engine_wait(e, &o, 10000), 1);
        cr_assert_not_null(o.text);
        cr_assert_lt(len + o.text_len, sizeof(text));
        memcpy(text + len, o.text, o.text_len);
        len += o.text_len;
        *n_tokens += o.n_tokens;
        *last = o;
        zl_output_release(&o);
        if (last->finish)
            break;
    }
    text[len] = 0;
    return text;
}

static const char *run_text(struct zl_engine *e, const int32_t *prompt, int32_t n,
                            const struct zl_sampling_params *sp, int32_t *n_tokens,
                            struct zl_output *last)
{
    return run_text_opts(e, prompt, n, sp, NULL, n_tokens, last);
}

Test(engine, text_deltas_and_stop_strings)
{
    struct zl_tokenizer *tok = char_tokenizer();
    struct zl_engine_params ep = params(0);
    ep.tokenizer = tok;
    struct rig r;
    rig_up(&r, ep, 4);
    int32_t prompt[7] = {7, 4, 11, 11, 14, 62, 22};
    int32_t ref[30];
    fake_reference(prompt, 7, 30, ref);
    char *want;
    size_t want_len;
    cr_assert_eq(zl_tokenizer_decode(tok, ref, 30, 0, &want, &want_len), ZL_OK);
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 30;
    sp.ignore_eos = 1;
    int32_t n;
    struct zl_output last;
    const char *got = run_text(r.e, prompt, 7, &sp, &n, &last);
    cr_expect_str_eq(got, want, "the deltas add up to the decoded ids");
    cr_expect_eq(n, 30);

    /* a stop string taken from the middle of that text */
    char stop[3] = {want[12], want[13], 0};
    const char *stops[] = {"no such", stop};
    sp.stop = stops;
    sp.n_stop = 2;
    size_t at = (size_t)(strstr(want, stop) - want);
    got = run_text(r.e, prompt, 7, &sp, &n, &last);
    cr_expect_eq(last.finish, ZL_FINISH_STOP);
    cr_expect_eq(last.stop_string, 1);
    cr_expect_eq(last.stop_token, -1);
    cr_expect_eq(strlen(got), at, "text up to the stop string: got '%s', want '%.*s'", got, (int)at, want);
    cr_expect_eq(strncmp(got, want, at), 0);
    cr_expect_eq(n, (int32_t)(at + 2), "tokens up to the one completing the stop string");
    free(want);
    rig_down(&r);
    zl_tokenizer_free(tok);
}

/* The text of ids[0, n) decoded with flags (a static buffer). */
static const char *decoded(const struct zl_tokenizer *t, const int32_t *ids, int32_t n,
                           uint32_t flags)
{
    static char text[256];
    char *s;
    size_t len;
    cr_assert_eq(zl_tokenizer_decode(t, ids, (size_t)n, flags, &s, &len), ZL_OK);
    cr_assert_lt(len, sizeof(text));
    memcpy(text, s, len);
    text[len] = 0;
    free(s);
    return text;
}

/* zl_request_opts, as vLLM's SamplingParams: skip_special_tokens (on by
 * default) and include_stop_str_in_output for stop strings and stop ids. */
Test(engine, skip_special_and_include_stop)
{
    int32_t prompt[7] = {7, 4, 11, 11, 14, 62, 22};
    int32_t ref[30];
    fake_reference(prompt, 7, 30, ref);
    struct zl_tokenizer *tok = char_tokenizer_special(ref[4]); /* a special token in the output */
    struct zl_engine_params ep = params(0);
    ep.tokenizer = tok;
    struct rig r;
    rig_up(&r, ep, 4);
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 30;
    sp.ignore_eos = 1;
    struct zl_request_opts keep = zl_request_default_opts(), incl = zl_request_default_opts();
    keep.skip_special_tokens = 0;
    incl.include_stop_str_in_output = 1;
    int32_t n;
    struct zl_output last;

    char skipped[256];
    snprintf(skipped, sizeof skipped, "%s", decoded(tok, ref, 30, ZL_DETOK_SKIP_SPECIAL));
    cr_assert_null(strstr(skipped, "<S>"));
    cr_expect_str_eq(run_text(r.e, prompt, 7, &sp, &n, &last), skipped, "skipped by default");
    const char *kept = decoded(tok, ref, 30, 0);
    cr_assert_not_null(strstr(kept, "<S>"));
    cr_expect_str_eq(run_text_opts(r.e, prompt, 7, &sp, &keep, &n, &last), kept,
                     "skip_special_tokens 0 keeps it");

    /* a stop string: the text before it, or through it */
    char stop[3] = {skipped[12], skipped[13], 0};
    const char *stops[] = {stop};
    sp.stop = stops;
    sp.n_stop = 1;
    size_t at = (size_t)(strstr(skipped, stop) - skipped);
    const char *got = run_text(r.e, prompt, 7, &sp, &n, &last);
    cr_expect_eq(strlen(got), at, "'%s' ends before '%s'", got, stop);
    got = run_text_opts(r.e, prompt, 7, &sp, &incl, &n, &last);
    cr_expect_eq(last.stop_string, 0);
    cr_expect_eq(strlen(got), at + 2, "'%s' ends with '%s'", got, stop);
    cr_expect_eq(strncmp(got, skipped, at + 2), 0);
    sp.n_stop = 0;
    sp.stop = NULL;

    /* a stop token id: its text only with include_stop_str_in_output */
    int32_t k = 0;
    while (ref[k] != ref[9])
        k++;
    sp.stop_token_ids = &ref[9];
    sp.n_stop_token_ids = 1;
    char before[256];
    snprintf(before, sizeof before, "%s", decoded(tok, ref, k, ZL_DETOK_SKIP_SPECIAL));
    cr_expect_str_eq(run_text(r.e, prompt, 7, &sp, &n, &last), before);
    cr_expect_eq(last.stop_token, ref[9]);
    cr_expect_str_eq(run_text_opts(r.e, prompt, 7, &sp, &incl, &n, &last),
                     decoded(tok, ref, k + 1, ZL_DETOK_SKIP_SPECIAL));
    cr_expect_eq(n, k + 1);

    struct zl_request_opts small = {.size = 4};
    cr_expect_eq(zl_engine_submit_opts(r.e, prompt, 7, &sp, &small, NULL, NULL), ZL_EINVAL);
    rig_down(&r);
    zl_tokenizer_free(tok);
}

/* The first event of a request with prompt logprobs (its arrays copied
 * into *lp etc.), the rest drained. */
static void first_with_prompt_logprobs(struct zl_engine *e, const int32_t *prompt, int32_t n,
                                       const struct zl_sampling_params *sp, int32_t k,
                                       float *lp, int32_t *ids, float *top)
{
    struct zl_request_opts o = zl_request_default_opts();
    o.prompt_logprobs = k;
    uint64_t id;
    cr_assert_eq(zl_engine_submit_opts(e, prompt, n, sp, &o, NULL, &id), ZL_OK, "%s",
                 zl_last_error());
    int first = 1;
    for (;;) {
        struct zl_output ev;
        cr_assert_eq(zl_engine_wait(e, &ev, 10000), 1);
        if (ev.request_id != id) { /* another request's */
            zl_output_release(&ev);
            continue;
        }
        if (first) {
            cr_assert_eq(ev.n_prompt_logprobs, n);
            cr_assert_eq(ev.prompt_top_k, k);
            memcpy(lp, ev.prompt_logprobs, sizeof(float) * (size_t)n);
            memcpy(ids, ev.prompt_top_ids, sizeof(int32_t) * (size_t)(n * k));
            memcpy(top, ev.prompt_top_logprobs, sizeof(float) * (size_t)(n * k));
            first = 0;
        } else {
            cr_assert_eq(ev.n_prompt_logprobs, 0, "on the first token only");
        }
        int fin = ev.finish != ZL_FINISH_NONE;
        zl_output_release(&ev);
        if (fin)
            break;
    }
}

/* Prompt logprobs against the sampler's own logprobs: prompt token i's is
 * that of a request for P[0, i) whose next token a logit bias forces to
 * P[i] (the sampler reports logprobs of the raw logits, bias not
 * applied), and so are the top 3.  Score rows go through the same sampler,
 * so this checks which row, position and token each score takes (1e-5
 * for the rows' logits computed in other batches; against transformers:
 * test_engine_llama).  max_num_seqs 4 spreads the 40-token prompt's score
 * rows over steps, beside another request's rows; a second run finds its
 * blocks in the prefix cache and must not use them. */
Test(engine, prompt_logprobs)
{
    struct zl_engine_params ep = params(0);
    ep.sched.max_num_seqs = 4;
    struct rig r;
    rig_up(&r, ep, 4);
    enum { N = 40, K = 3 };
    int32_t prompt[N], other[9] = {3, 1, 4, 1, 5, 9, 2, 6, 5};
    srand(7);
    for (int i = 0; i < N; i++)
        prompt[i] = rand() % FAKE_VOCAB;
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 3;
    cr_assert_eq(zl_engine_submit(r.e, other, 9, &sp, NULL, NULL), ZL_OK);
    float lp[N], top[N * K], lp2[N], top2[N * K];
    int32_t ids[N * K], ids2[N * K];
    first_with_prompt_logprobs(r.e, prompt, N, &sp, K, lp, ids, top);
    cr_expect(isnan(lp[0]), "the first token has nothing before it");
    struct zl_engine_stats st;
    zl_engine_get_stats(r.e, &st);
    int64_t hits = st.prefix_hit_tokens;
    first_with_prompt_logprobs(r.e, prompt, N, &sp, K, lp2, ids2, top2);
    zl_engine_get_stats(r.e, &st);
    cr_expect_eq(st.prefix_hit_tokens, hits, "prompt logprobs never come from the prefix cache");
    cr_expect_eq(memcmp(lp2 + 1, lp + 1, sizeof(float) * (N - 1)), 0);
    cr_expect_eq(memcmp(ids2, ids, sizeof ids), 0);

    float bias = 100.0f;
    sp.max_tokens = 1;
    sp.logprobs = K;
    sp.n_logit_bias = 1;
    sp.logit_bias = &bias;
    for (int32_t i = 1; i < N; i++) {
        sp.logit_bias_ids = &prompt[i];
        uint64_t id;
        cr_assert_eq(zl_engine_submit(r.e, prompt, i, &sp, NULL, &id), ZL_OK);
        struct zl_output ev;
        do {
            cr_assert_eq(zl_engine_wait(r.e, &ev, 10000), 1);
            if (ev.request_id != id)
                zl_output_release(&ev);
        } while (ev.request_id != id);
        cr_assert_eq(ev.token, prompt[i]);
        cr_expect(fabsf(ev.logprob - lp[i]) < 1e-5f, "token %d: %g against the sampler's %g", i,
                  lp[i], ev.logprob);
        cr_assert_eq(ev.n_top, K);
        for (int j = 0; j < K; j++) {
            cr_expect_eq(ids[i * K + j], ev.top_ids[j], "token %d, top %d", i, j);
            cr_expect(fabsf(top[i * K + j] - ev.top_logprobs[j]) < 1e-5f);
        }
        zl_output_release(&ev);
    }
    struct zl_request_opts bad = zl_request_default_opts();
    bad.prompt_logprobs = 21;
    cr_expect_eq(zl_engine_submit_opts(r.e, prompt, N, &sp, &bad, NULL, NULL), ZL_EINVAL);
    rig_down(&r);
}

/* Prompt logprobs of NR prompts submitted together (their score rows
 * sharing steps, chunks cut, sequences preempted in a small pool) equal
 * those of each prompt alone: a preempted prompt scores its rows again,
 * to the same numbers. */
Test(engine, prompt_logprobs_together_and_preempted)
{
    enum { NR = 6, N = 36, K = 2 };
    int32_t prompts[NR][N];
    srand(11);
    for (int i = 0; i < NR; i++)
        for (int j = 0; j < N; j++)
            prompts[i][j] = rand() % FAKE_VOCAB;
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 12;
    sp.ignore_eos = 1;
    static float alone[NR][N], top_alone[NR][N * K], got[NR][N], top_got[NR][N * K];
    static int32_t ids_alone[NR][N * K], ids_got[NR][N * K];
    struct zl_engine_params ep = params(0);
    struct rig r;
    rig_up(&r, ep, 4);
    for (int i = 0; i < NR; i++)
        first_with_prompt_logprobs(r.e, prompts[i], N, &sp, K, alone[i], ids_alone[i], top_alone[i]);
    rig_down(&r);

    ep.sched.max_num_seqs = 4;  /* few logits rows a step: chunks are cut */
    ep.max_kv_blocks = 30;      /* 120 tokens for 6 x 48: preemption */
    rig_up(&r, ep, 4);
    struct zl_request_opts o = zl_request_default_opts();
    o.prompt_logprobs = K;
    uint64_t first = 0, id;
    for (int i = 0; i < NR; i++) {
        cr_assert_eq(zl_engine_submit_opts(r.e, prompts[i], N, &sp, &o, NULL, &id), ZL_OK);
        first = i ? first : id;
    }
    int left = NR, seen[NR] = {0};
    while (left > 0) {
        struct zl_output ev;
        cr_assert_eq(zl_engine_wait(r.e, &ev, 10000), 1);
        int k = (int)(ev.request_id - first);
        cr_assert(k >= 0 && k < NR);
        if (ev.n_prompt_logprobs) {
            cr_assert(!seen[k]++, "request %d: prompt logprobs once", k);
            memcpy(got[k], ev.prompt_logprobs, sizeof(float) * N);
            memcpy(ids_got[k], ev.prompt_top_ids, sizeof(int32_t) * N * K);
            memcpy(top_got[k], ev.prompt_top_logprobs, sizeof(float) * N * K);
        }
        left -= ev.finish != ZL_FINISH_NONE;
        zl_output_release(&ev);
    }
    struct zl_engine_stats st;
    zl_engine_get_stats(r.e, &st);
    cr_expect_gt(st.n_preemptions, 0, "the small pool preempts");
    for (int i = 0; i < NR; i++) {
        cr_expect(seen[i], "request %d had its prompt logprobs", i);
        cr_expect_eq(memcmp(got[i] + 1, alone[i] + 1, sizeof(float) * (N - 1)), 0, "request %d", i);
        cr_expect_eq(memcmp(ids_got[i] + K, ids_alone[i] + K, sizeof(int32_t) * (N - 1) * K), 0);
        cr_expect_eq(memcmp(top_got[i] + K, top_alone[i] + K, sizeof(float) * (N - 1) * K), 0);
    }
    rig_down(&r);
}

/* Submitters on four threads, some cancelling right away, the engine on
 * its own thread: every request ends exactly once, the uncancelled ones
 * with the fake model's greedy ids, and every block comes back. */
struct sreq {
    int32_t prompt[40], n_prompt, max_tokens;
    int32_t out[32], n_out;
    int finishes, cancelled;
    enum zl_finish_reason why;
};

struct submitter {
    struct zl_engine *e;
    struct sreq *reqs;
    int n;
};

static void *submit_all(void *arg)
{
    struct submitter *s = arg;
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.ignore_eos = 1;
    for (int i = 0; i < s->n; i++) {
        struct sreq *r = &s->reqs[i];
        sp.max_tokens = r->max_tokens;
        uint64_t id;
        if (zl_engine_submit(s->e, r->prompt, r->n_prompt, &sp, r, &id) != ZL_OK)
            return (void *)1;
        if (i % 3 == 0) {
            int rc = zl_engine_cancel(s->e, id);
            if (rc != ZL_OK && rc != ZL_ENOTFOUND)
                return (void *)1;
            r->cancelled = 1;
        }
    }
    return NULL;
}

Test(engine, threads_submit_and_cancel)
{
    enum { NT = 4, PER = 25 };
    struct rig r;
    struct zl_engine_params ep = params(1);
    ep.max_kv_blocks = 60;      /* some preemption too */
    rig_up(&r, ep, 4);
    static struct sreq reqs[NT * PER];
    memset(reqs, 0, sizeof(reqs));
    srand(23);
    for (int i = 0; i < NT * PER; i++) {
        reqs[i].n_prompt = 1 + rand() % 40;
        reqs[i].max_tokens = 1 + rand() % 32;
        for (int j = 0; j < reqs[i].n_prompt; j++)
            reqs[i].prompt[j] = rand() % FAKE_VOCAB;
    }
    pthread_t th[NT];
    struct submitter sub[NT];
    for (int t = 0; t < NT; t++) {
        sub[t] = (struct submitter){r.e, reqs + t * PER, PER};
        cr_assert_eq(pthread_create(&th[t], NULL, submit_all, &sub[t]), 0);
    }
    for (int left = NT * PER; left > 0;) {
        struct zl_output o;
        cr_assert_eq(zl_engine_wait(r.e, &o, 20000), 1, "%d requests never finished", left);
        struct sreq *q = o.user;
        if (o.n_tokens)
            q->out[q->n_out++] = o.token;
        if (o.finish) {
            q->finishes++;
            q->why = o.finish;
            left--;
        }
        zl_output_release(&o);
    }
    for (int t = 0; t < NT; t++) {
        void *ret;
        pthread_join(th[t], &ret);
        cr_expect_null(ret, "submitter %d failed", t);
    }
    int aborted = 0;
    for (int i = 0; i < NT * PER; i++) {
        struct sreq *q = &reqs[i];
        cr_expect_eq(q->finishes, 1, "request %d ended %d times", i, q->finishes);
        if (q->why == ZL_FINISH_ABORT) {
            cr_expect(q->cancelled, "request %d aborted without a cancel", i);
            aborted++;
            continue;
        }
        int32_t want[32];
        fake_reference(q->prompt, q->n_prompt, q->max_tokens, want);
        cr_expect_eq(q->n_out, q->max_tokens);
        cr_expect_arr_eq(q->out, want, sizeof(int32_t) * (size_t)q->max_tokens, "request %d", i);
    }
    struct zl_engine_stats st;
    for (int i = 0; i < 200; i++) {     /* counted just after the last event */
        zl_engine_get_stats(r.e, &st);
        if (st.requests_finished == NT * PER)
            break;
        usleep(5000);
    }
    cr_expect_eq(st.requests_finished, NT * PER);
    cr_expect_gt(aborted, 0);
    rig_down(&r);
}

/* 10,000 random submits (n 1..3, sampled or greedy), cancels and finishes
 * through the engine with a small pool: every request ends once and every
 * block is free afterwards (rig_down checks the pool and the fake cache). */
Test(engine, random_accounting)
{
    struct rig r;
    struct zl_engine_params ep = params(0);
    ep.max_kv_blocks = 48;
    ep.sched.max_num_batched_tokens = 64;
    ep.sched.max_num_seqs = 16;
    ep.sched.max_prefill_chunk = 9;
    rig_up(&r, ep, 4);
    enum { LIVE = 64 };
    uint64_t live[LIVE];
    int n_live = 0, ops = 0;
    int64_t submitted = 0, ended = 0;
    srand(99);
    int32_t sys[12];
    for (int i = 0; i < 12; i++)
        sys[i] = rand() % FAKE_VOCAB;
    while (ops < 10000) {
        int op = rand() % 10;
        if (op < 4 && n_live < LIVE) {
            int32_t prompt[40];
            int32_t n = 1 + rand() % 40;
            for (int i = 0; i < n; i++)
                prompt[i] = i < 12 && rand() % 2 ? sys[i] : rand() % FAKE_VOCAB;
            struct zl_sampling_params sp = zl_sampling_default_params();
            sp.n = 1 + rand() % 3;
            sp.temperature = rand() % 2 ? 0.0f : 0.9f;
            sp.max_tokens = 1 + rand() % 10;
            sp.ignore_eos = 1;
            cr_assert_eq(zl_engine_submit(r.e, prompt, n, &sp, NULL, &live[n_live]), ZL_OK, "%s",
                         zl_last_error());
            n_live++;
            submitted += sp.n;
            ops++;
        } else if (op < 5 && n_live > 0) {
            int k = rand() % n_live;
            if (zl_engine_cancel(r.e, live[k]) == ZL_OK)
                ops++;
            live[k] = live[--n_live];
        } else {
            cr_assert_geq(zl_engine_step(r.e), 0, "%s", zl_last_error());
        }
        struct zl_output o;
        while (zl_engine_wait(r.e, &o, 0) == 1) {      /* a poll: no step */
            ended += o.finish != ZL_FINISH_NONE;
            ops += o.finish != ZL_FINISH_NONE;
            zl_output_release(&o);
        }
    }
    struct zl_output o;
    while (zl_engine_wait(r.e, &o, -1) == 1) {     /* steps until every request ended */
        ended += o.finish != ZL_FINISH_NONE;
        zl_output_release(&o);
    }
    cr_expect_eq(ended, submitted, "every sequence ends exactly once");
    struct zl_engine_stats st;
    zl_engine_get_stats(r.e, &st);
    cr_expect_eq(st.n_running + st.n_waiting, 0);
    cr_expect_gt(st.n_preemptions, 0);
    cr_expect_gt(st.prefix_hit_rate, 0.0);
    rig_down(&r);
}

/* A failing forward aborts every request (no crash, no hang) and the
 * engine then refuses new work. */
Test(engine, forward_failure_aborts_everything)
{
    struct rig r;
    rig_up(&r, params(1), 4);
    r.m.fail_at = 3;
    int32_t prompt[6] = {1, 2, 3, 4, 5, 6};
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.max_tokens = 50;
    sp.n = 2;
    uint64_t ids[3];
    int ns[3] = {2, 2, 2};
    static struct result res[3];
    memset(res, 0, sizeof(res));
    /* The engine thread may reach the failing forward before the last
     * submits: those are then refused (ESTATE); every accepted one must
     * be aborted. */
    int n_ok = 0;
    for (int i = 0; i < 3; i++) {
        int rc = zl_engine_submit(r.e, prompt, 6 - i, &sp, NULL, &ids[i]);
        if (rc != ZL_OK) {
            cr_assert_eq(rc, ZL_ESTATE, "%s", zl_last_error());
            break;
        }
        n_ok++;
    }
    cr_assert_gt(n_ok, 0);
    collect(r.e, ids, n_ok, ns, res);
    for (int i = 0; i < n_ok; i++)
        for (int k = 0; k < 2; k++)
            cr_expect_eq(res[i].fin[k], ZL_FINISH_ABORT, "request %d sequence %d", i, k);
    cr_expect_eq(zl_engine_submit(r.e, prompt, 6, &sp, NULL, NULL), ZL_ESTATE);
    rig_down(&r);
}

/* engine.warmup_tokens: the warm-up request runs inside zl_engine_create;
 * a client then sees none of its events, counters that start after it, and
 * the same tokens as without it (its blocks stay in the prefix cache). */
Test(engine, warm_up_is_invisible)
{
    struct zl_engine_params ep = params(1);
    ep.warmup_tokens = 40;
    struct rig r;
    rig_up(&r, ep, 4);
    cr_expect_geq(r.m.forwards, 2, "the warm-up ran no prefill and decode step");
    cr_expect_eq(r.m.max_tokens_seen, 40, "the warm-up prompt was not 40 tokens");
    struct zl_output o;
    cr_expect_eq(zl_engine_wait(r.e, &o, 0), 0, "an event of the warm-up reached the caller");
    struct zl_engine_stats st;
    zl_engine_get_stats(r.e, &st);
    cr_expect_eq(st.requests_submitted + st.requests_finished + st.prompt_tokens +
                 st.generation_tokens + st.n_steps + st.prefix_queried_tokens, 0,
                 "the counters include the warm-up");
    cr_expect_eq(st.ttft.count + st.itl.count + st.tpot.count + st.e2e.count, 0);
    cr_expect_eq(st.kv_blocks_used, 0, "the warm-up holds blocks");
    int32_t prompt[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 0;
    sp.max_tokens = 12;
    struct result res;
    run_one(r.e, prompt, 10, &sp, &res);
    int32_t ref[12];
    fake_reference(prompt, 10, 12, ref);
    cr_expect_eq(res.n[0], 12);
    cr_expect_arr_eq(res.toks[0], ref, sizeof(ref));
    for (int i = 0; i < 200; i++) { /* published after the step that sent the last event */
        zl_engine_get_stats(r.e, &st);
        if (st.requests_finished == 1 && st.n_steps >= 12)
            break;
        usleep(5000);
    }
    cr_expect_eq(st.requests_submitted, 1);
    cr_expect_eq(st.requests_finished, 1);
    cr_expect_eq(st.prompt_tokens, 10);
    cr_expect_eq(st.generation_tokens, 12);
    cr_expect_eq(st.ttft.count, 1);
    cr_expect_eq(st.itl.count, 11);
    cr_expect_eq(st.prefix_queried_tokens, 10, "the prefix cache counted the warm-up's prompt");
    cr_expect_eq(st.prefix_hit_tokens, 0);
    cr_expect_lt(st.n_steps, r.m.forwards, "the warm-up's steps were counted");
    rig_down(&r);
}

/* Unseeded sampling draws the request's seed from the engine's counter:
 * the warm-up must not move it, or turning it on would change outputs. */
Test(engine, warm_up_leaves_unseeded_sampling_alone)
{
    int32_t prompt[7] = {5, 3, 8, 1, 9, 2, 6};
    struct zl_sampling_params sp = zl_sampling_default_params();
    sp.temperature = 1.0f;
    sp.max_tokens = 16;
    struct result res[2];
    for (int w = 0; w < 2; w++) {
        struct zl_engine_params ep = params(0);
        ep.seed = 1234;
        ep.warmup_tokens = w ? 12 : 0;
        struct rig r;
        rig_up(&r, ep, 4);
        run_one(r.e, prompt, 7, &sp, &res[w]);
        rig_down(&r);
    }
    cr_assert_eq(res[0].n[0], 16);
    cr_assert_eq(res[1].n[0], 16);
    cr_expect_arr_eq(res[1].toks[0], res[0].toks[0], sizeof(int32_t) * 16,
                     "the warm-up changed an unseeded request's tokens");
}

Test(engine, warm_up_capped_to_max_model_len)
{
    struct zl_engine_params ep = params(0);
    ep.warmup_tokens = 1 << 20;
    struct rig r;
    rig_up(&r, ep, 4);
    cr_expect_eq(r.m.max_tokens_seen, ep.sched.max_num_batched_tokens,
                 "a chunk of the capped prompt fills the step budget");
    cr_expect_geq(r.m.forwards, 3, "the 510-token prompt takes two chunks and a decode step");
    rig_down(&r);
}

Test(engine, warm_up_capped_to_the_kv_pool)
{
    struct zl_engine_params ep = params(0);
    ep.sched.max_model_len = 4096;      /* longer than the pool: the pool caps it */
    ep.max_kv_blocks = 32;              /* 128 tokens */
    ep.warmup_tokens = 1 << 20;
    struct rig r;
    rig_up(&r, ep, 4);
    cr_expect_geq(r.m.forwards, 2, "no warm-up ran");
    cr_expect_leq(r.m.max_tokens_seen, 124, "the warm-up prompt outgrew the pool");
    cr_expect_geq(r.m.max_tokens_seen, 100, "the warm-up prompt was cut too short");
    struct zl_engine_stats st;
    zl_engine_get_stats(r.e, &st);
    cr_expect_eq(st.requests_finished, 0);
    rig_down(&r);
}

Test(engine, warm_up_failure_fails_create)
{
    struct rig r;
    struct zl_engine_params ep = params(1);
    ep.warmup_tokens = 8;
    cr_assert_lt(rig_make(&r, ep, 4, 1), 0, "a failed warm-up still gave an engine");
    cr_expect_null(r.e);
    cr_expect(strstr(zl_last_error(), "warm-up request of 8 tokens failed") &&
              strstr(zl_last_error(), "failing on purpose"), "%s", zl_last_error());
    fake_fini(&r.m.f);
    zl_mem_free(r.mem);
}
