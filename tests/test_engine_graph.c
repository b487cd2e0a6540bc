/* The engine's side of device graphs (backend.h graph_begin/graph_end),
 * over the fake model and a host "backend" that plays the protocol:
 *   - only decode steps (one scored token per sequence) are bracketed, and
 *     only those whose size class (zl_engine_graph_size) repeats the last
 *     decode step's or has replayed before;
 *   - a bracketed step runs as its size class: pad rows after the real
 *     ones, each one token at position 0 of one KV block no sequence holds
 *     (so a draining batch keeps its graph); the real rows' tokens are
 *     those of a run without graphs and the fake model never reads a slot
 *     it did not write;
 *   - ZL_GRAPH_AGAIN runs the forward once more, and the step's tokens are
 *     those of a run without graphs (the fake model computes in forward, so
 *     a pass the backend "replays" is a pass whose result is kept);
 *   - a failed forward inside the bracket ends it with ok = 0 and fails
 *     the step; a graph_begin error turns graphs off for good; a backend
 *     that never stops asking gets three forwards, then an error.
 * The CUDA side (capture, replay, equality with direct launches) is
 * checked on the GPU machine (tests/cuda/run-gpu-model.sh). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include "test_engine_hostdev.h"

/* What the fake graph backend saw and how it answers. */
static struct {
    int in_bracket;
    int begins, ends, ends_failed;
    int forwards_in_bracket, non_decode_in_bracket;
    int again_answers;          /* graph_end calls that asked for another forward */
    int begin_fails;            /* graph_begin fails from this call on (1-based), 0 = never */
    int always_again;           /* answer AGAIN to every successful forward */
    int sequence;               /* forwards of the current bracket */
    int fail_in_bracket;        /* this bracketed forward (1-based) fails, 0 = never */
    int last_n, cur_n;          /* the engine's rule, mirrored: last decode step's size */
    unsigned char replayed[64]; /* sizes whose bracket this backend answered with a replay */
    int wrong_bracket;          /* decode steps bracketed against the rule, or not */
    int skipped_decode;         /* decode steps the rule left out */
    int padded, pad_rows;       /* bracketed forwards with pad rows, and those rows */
    int bad_pad;                /* pad rows not as the engine promises */
} G;

#define MAX_SEQS 8

/* Pad rows trail the real ones; each decodes one token at position 0 of
 * the same slot, in a block no real row's table holds.  (The test's
 * prompts are 3+ tokens, so a real row never sits at position 0 alone.) */
static void check_pad_rows(const struct zl_forward_batch *b, int32_t block_size)
{
    const struct zl_attn_batch *a = &b->attn;
    int32_t n_real = 0;
    while (n_real < b->n_tokens && !(b->positions[n_real] == 0 && a->kv_len[n_real] == 1))
        n_real++;
    if (n_real == b->n_tokens)
        return;
    G.padded++;
    G.pad_rows += b->n_tokens - n_real;
    int32_t slot = a->slot[n_real], blk = slot / block_size;
    G.bad_pad += n_real == 0 || slot % block_size != 0 || b->n_logits != b->n_tokens;
    for (int32_t i = n_real; i < b->n_tokens; i++)
        G.bad_pad += b->positions[i] != 0 || a->kv_len[i] != 1 || a->slot[i] != slot ||
                     a->block_table[(size_t)i * (size_t)a->max_blocks] != blk ||
                     a->q_start[i + 1] != i + 1 || b->logits_rows[i] != i;
    for (int32_t i = 0; i < n_real; i++)
        for (int32_t j = 0; j * block_size < a->kv_len[i]; j++)
            G.bad_pad += a->block_table[(size_t)i * (size_t)a->max_blocks + (size_t)j] == blk;
}

static const struct zl_model_ops *inner_model;

/* The fake model's forward, checked against the bracket. */
static int graph_model_forward(struct zl_model *m, const struct zl_forward_batch *b,
                               struct zl_tensor *logits)
{
    int decode = b->n_tokens == b->attn.n_seqs && b->n_logits == b->n_tokens;
    /* the class of a bracketed step is its row count (pad rows included) */
    int s = zl_engine_graph_size(b->n_tokens, MAX_SEQS);
    if (decode && (!G.in_bracket || G.sequence == 0)) { /* a step's first forward */
        int want = s == G.last_n || (s < 64 && G.replayed[s]);
        G.wrong_bracket += want != G.in_bracket;
        G.skipped_decode += !want;
        G.last_n = G.cur_n = s;
    }
    if (G.in_bracket) {
        G.forwards_in_bracket++;
        G.sequence++;
        if (!decode || s != b->n_tokens)
            G.non_decode_in_bracket++;
        check_pad_rows(b, b->cache->block_size);
        if (G.forwards_in_bracket == G.fail_in_bracket)
            return zl_error(ZL_EBACKEND, "graph test forward: failing on purpose");
    }
    return inner_model->forward(m, b, logits);
}

static int fg_begin(struct zl_bctx *ctx)
{
    (void)ctx;
    cr_expect_eq(G.in_bracket, 0, "graph_begin inside a bracket");
    G.begins++;
    if (G.begin_fails && G.begins >= G.begin_fails)
        return zl_error(ZL_EUNSUPPORTED, "fake graph_begin: no graphs today");
    G.in_bracket = 1;
    G.sequence = 0;
    return ZL_OK;
}

/* A sequence is: recorded, then run again (as the CUDA backend does the
 * first time it sees a shape), then replayed: so every other bracket asks
 * for a second forward. */
static int fg_end(struct zl_bctx *ctx, int ok)
{
    (void)ctx;
    cr_expect_eq(G.in_bracket, 1, "graph_end without graph_begin");
    G.ends++;
    if (!ok) {
        G.ends_failed++;
        G.in_bracket = 0;
        return ZL_OK;
    }
    if (G.always_again || (G.begins % 2 == 1 && G.sequence == 1)) {
        G.again_answers++;
        return ZL_GRAPH_AGAIN;
    }
    if (G.sequence == 1 && G.cur_n < 64) /* launched on the recording: a replay */
        G.replayed[G.cur_n] = 1;
    G.in_bracket = 0;
    return ZL_OK;
}

static struct zl_model_ops graph_model_ops;
static struct zl_backend_ops graph_backend_ops, async_graph_ops;

static void setup_ops(void)
{
    memset(&G, 0, sizeof G);
    G.last_n = -1;
    inner_model = &fake_model_ops;
    graph_model_ops = fake_model_ops;
    graph_model_ops.forward = graph_model_forward;
    graph_backend_ops = fake_backend_ops;
    graph_backend_ops.graph_begin = fg_begin;
    graph_backend_ops.graph_end = fg_end;
    async_graph_ops = async_backend_ops;    /* a sampler in halves, and graphs */
    async_graph_ops.graph_begin = fg_begin;
    async_graph_ops.graph_end = fg_end;
    host_q.queued = host_q.valid = 0;
    host_q.misuse = 0;
}

#define N_REQ 5
#define MAX_OUT 24

struct run {
    int32_t toks[N_REQ][MAX_OUT];
    int32_t n[N_REQ];
    int failed_step;
    struct zl_engine_stats st;
    int64_t from_rows;      /* rows whose token the model read from the queued sample */
};

/* Five greedy requests of different prompt lengths, submitted two steps
 * apart, so decode steps and mixed prefill + decode steps alternate. */
static void run_all(const struct zl_backend_ops *be, int graphs, struct run *res)
{
    memset(res, 0, sizeof *res);
    struct zl_model m;
    struct zl_mem *mem = NULL;
    struct zl_engine_params ep = zl_engine_default_params();
    ep.model_ops = &graph_model_ops;
    ep.backend = be;
    ep.device_graphs = graphs;
    struct zl_engine *e = fake_engine_open(ep, &m, 256, MAX_SEQS, 128, &mem);
    cr_assert_not_null(e, "%s", zl_last_error());

    uint64_t ids[N_REQ];
    int submitted = 0, left = N_REQ;
    for (int step = 0; left > 0 && step < 400; step++) {
        if (submitted < N_REQ && step % 2 == 0) {
            struct zl_sampling_params sp = zl_sampling_default_params();
            sp.temperature = 0.0f;
            sp.max_tokens = 12 + submitted;
            sp.ignore_eos = 1;
            int32_t prompt[16];
            for (int i = 0; i < 16; i++)
                prompt[i] = (i * 7 + submitted * 3) % 50;
            cr_assert_eq(zl_engine_submit(e, prompt, 3 + 3 * submitted, &sp, NULL, &ids[submitted]),
                         ZL_OK, "%s", zl_last_error());
            submitted++;
        }
        if (zl_engine_step(e) < 0) {
            res->failed_step = 1;
            break;
        }
        struct zl_output o;
        while (zl_engine_wait(e, &o, 0) == 1) {
            int k = fake_req_index(ids, N_REQ, o.request_id);
            cr_assert_lt(k, N_REQ);
            if (o.n_tokens) {
                cr_assert_lt(res->n[k], MAX_OUT);
                res->toks[k][res->n[k]++] = o.token;
            }
            if (o.finish)
                left--;
            zl_output_release(&o);
        }
    }
    zl_engine_get_stats(e, &res->st);
    zl_engine_free(e);
    res->from_rows = m.from_rows;
    cr_expect_eq(m.f.errors, 0, "the fake model read a slot it did not write");
    fake_fini(&m.f);
    zl_mem_free(mem);
}

Test(engine_graph, decode_steps_are_bracketed_and_give_the_same_tokens)
{
    setup_ops();
    struct run plain, graphed;
    run_all(&fake_backend_ops, 1, &plain);
    cr_assert_eq(plain.failed_step, 0, "%s", zl_last_error());
    cr_expect_eq(plain.st.graph_steps, 0, "a backend without graphs replays nothing");
    setup_ops(); /* count the graphed run alone */
    run_all(&graph_backend_ops, 1, &graphed);
    cr_assert_eq(graphed.failed_step, 0, "%s", zl_last_error());
    cr_expect_gt(G.begins, 5, "decode steps were bracketed");
    cr_expect_eq(G.wrong_bracket, 0, "bracketed against the rule (repeated or replayed size)");
    cr_expect_gt(G.skipped_decode, 0, "the draining steps were not bracketed");
    cr_expect_eq(G.begins, G.ends - G.again_answers, "every bracket ended");
    cr_expect_eq(G.non_decode_in_bracket, 0, "a prefill or mixed step, or one not of its size "
                 "class, was bracketed");
    cr_expect_gt(G.padded, 0, "no bracketed step was padded (5 and 3 sequences pad to 8 and 4)");
    cr_expect_eq(G.bad_pad, 0, "pad rows not at position 0 of their own block, or not last");
    cr_expect_eq(G.forwards_in_bracket, G.begins + G.again_answers,
                 "one forward per pass the backend asked for");
    cr_expect_gt(G.again_answers, 0);
    cr_expect_eq(graphed.st.graph_steps, G.begins - G.again_answers,
                 "steps whose first graph_end launched a graph");
    cr_expect_eq(graphed.st.kv_blocks_total, plain.st.kv_blocks_total - 1,
                 "the pad rows' block is not counted as the requests' pool");
    cr_expect_eq(graphed.st.kv_blocks_used, 0, "blocks left in use (the pad block counted?)");
    for (int k = 0; k < N_REQ; k++) {
        cr_expect_eq(graphed.n[k], 12 + k, "request %d length", k);
        cr_expect_arr_eq(graphed.toks[k], plain.toks[k], sizeof(int32_t) * MAX_OUT,
                         "request %d tokens", k);
    }
}

Test(engine_graph, size_classes)
{
    static const int32_t want[][3] = {  /* n, max, rows */
        {1, 256, 1}, {2, 256, 2}, {3, 256, 4}, {5, 256, 8}, {8, 256, 8}, {9, 256, 16},
        {16, 256, 16}, {17, 256, 24}, {129, 256, 136}, {255, 256, 256}, {256, 256, 256},
        {300, 256, 300}, {5, 6, 6}, {6, 6, 6}, {3, 3, 3}, {0, 8, 0},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_eq(zl_engine_graph_size(want[i][0], want[i][1]), want[i][2],
                     "zl_engine_graph_size(%d, %d)", want[i][0], want[i][1]);
}

Test(engine_graph, device_graphs_off_brackets_nothing)
{
    setup_ops();
    struct run r;
    run_all(&graph_backend_ops, 0, &r);
    cr_assert_eq(r.failed_step, 0, "%s", zl_last_error());
    cr_expect_eq(G.begins, 0);
    cr_expect_eq(r.st.graph_steps, 0);
}

Test(engine_graph, a_failed_forward_ends_the_bracket_and_the_step)
{
    setup_ops();
    struct run r;
    G.fail_in_bracket = 4;
    run_all(&graph_backend_ops, 1, &r);
    cr_expect_eq(r.failed_step, 1, "the step with the failed forward fails");
    cr_expect_eq(G.ends_failed, 1, "graph_end was told the forward failed");
    cr_expect_eq(G.in_bracket, 0, "the bracket was closed");
    cr_expect(strstr(zl_last_error(), "failing on purpose") != NULL, "%s", zl_last_error());
}

Test(engine_graph, a_graph_begin_error_turns_graphs_off)
{
    setup_ops();
    G.begin_fails = 3;
    struct run plain, r;
    run_all(&fake_backend_ops, 1, &plain);
    run_all(&graph_backend_ops, 1, &r);
    cr_assert_eq(r.failed_step, 0, "%s", zl_last_error());
    cr_expect_eq(G.begins, 3, "no graph_begin after the one that failed");
    for (int k = 0; k < N_REQ; k++)
        cr_expect_arr_eq(r.toks[k], plain.toks[k], sizeof(int32_t) * MAX_OUT, "request %d", k);
}

Test(engine_graph, a_backend_that_keeps_asking_gets_three_forwards)
{
    setup_ops();
    G.always_again = 1;
    struct run r;
    run_all(&graph_backend_ops, 1, &r);
    cr_expect_eq(r.failed_step, 1);
    cr_expect_eq(G.forwards_in_bracket, 3, "a recording, a capture, a direct run");
    cr_expect_eq(G.ends_failed, 1, "the engine closed the bracket");
    cr_expect(strstr(zl_last_error(), "fourth forward") != NULL, "%s", zl_last_error());
}

/* Async scheduling inside graph brackets: decode steps queued before the
 * last one's tokens are back, recorded, run again and replayed, with pad
 * rows after the rows whose tokens are still being sampled.  The tokens
 * are those of a run that waits for every step, without graphs. */
Test(engine_graph, async_scheduling_in_brackets_gives_the_same_tokens)
{
    setup_ops();
    struct run plain, r;
    run_all(&fake_backend_ops, 0, &plain);
    cr_assert_eq(plain.failed_step, 0, "%s", zl_last_error());
    setup_ops();
    run_all(&async_graph_ops, 1, &r);
    cr_assert_eq(r.failed_step, 0, "%s", zl_last_error());
    cr_expect_gt(r.st.async_steps, 10, "steps queued ahead of their tokens");
    cr_expect_gt(r.from_rows, 10, "rows read their token from the queued sample");
    cr_expect_gt(r.st.graph_steps, 0, "bracketed steps replayed");
    cr_expect_gt(G.padded, 0, "no bracketed step was padded");
    cr_expect_eq(G.bad_pad, 0, "pad rows not as promised");
    cr_expect_eq(G.wrong_bracket, 0);
    cr_expect_eq(host_q.misuse, 0, "sample_queue / sample_wait / upload_tokens out of order");
    for (int k = 0; k < N_REQ; k++) {
        cr_expect_eq(r.n[k], 12 + k, "request %d length", k);
        cr_expect_arr_eq(r.toks[k], plain.toks[k], sizeof(int32_t) * MAX_OUT, "request %d", k);
    }
}
