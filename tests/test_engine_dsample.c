/* The engine's device-sampling path (engine-sample.c) over a host "device"
 * whose sample op rebuilds, from each row alone, the sampling parameters
 * and the sequence the CPU sampler would see, and samples with it.  The
 * same requests through the CPU path must give the same tokens and
 * logprobs: so every row carries what the CPU sampler reads (penalty
 * tokens and output counts, min_tokens masks, logit bias, seed, stream,
 * step). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "test_engine_hostdev.h"

#define N_REQ 6

struct run {
    int32_t toks[N_REQ][2][48];
    float lp[N_REQ][2][48];
    int32_t top[N_REQ][2][48];
    int32_t n[N_REQ][2];
};

/* An engine over the fake model with `be` (fake_engine_open). */
static struct zl_engine *open_engine(const struct zl_backend_ops *be, struct zl_model *m,
                                     uint32_t pool_blocks, int32_t max_seqs, int32_t max_len,
                                     const int32_t *eos, struct zl_mem **mem_out)
{
    struct zl_engine_params ep = zl_engine_default_params();
    ep.backend = be;
    ep.eos_ids = eos;
    ep.n_eos = eos ? 1 : 0;
    struct zl_engine *e = fake_engine_open(ep, m, pool_blocks, max_seqs, max_len, mem_out);
    cr_assert_not_null(e, "%s", zl_last_error());
    return e;
}

static void run_all(const struct zl_backend_ops *be, struct run *res, int64_t *from_rows)
{
    struct zl_model m;
    struct zl_mem *mem;
    memset(res, 0, sizeof *res);
    static const int32_t eos = 3;
    struct zl_engine *e = open_engine(be, &m, 512, 16, 256, &eos, &mem);

    int32_t bias_ids[3] = {5, 9, 5};
    float bias[3] = {2.5f, -1.0f, 0.75f};
    int32_t stop_ids[1] = {7};
    uint64_t ids[N_REQ];
    for (int k = 0; k < N_REQ; k++) {
        struct zl_sampling_params sp = zl_sampling_default_params();
        sp.seed = 100 + (uint64_t)k;
        sp.has_seed = 1;
        sp.max_tokens = 40;
        sp.ignore_eos = 1;
        sp.temperature = k == 0 ? 0.0f : 0.6f + 0.3f * (float)k;
        sp.logprobs = k % 3 == 0 ? 3 : k % 3 == 1 ? 0 : -1;
        sp.repetition_penalty = k & 1 ? 1.3f : 1.0f;
        sp.presence_penalty = k == 2 || k == 5 ? 0.5f : 0.0f;
        sp.frequency_penalty = k >= 4 ? 0.4f : 0.0f;
        sp.top_k = k == 3 ? 5 : 0;
        sp.top_p = k == 4 ? 0.8f : 1.0f;
        sp.min_p = k == 5 ? 0.05f : 0.0f;
        sp.min_tokens = k == 1 || k == 3 ? 12 : 0;
        sp.n = k == 2 ? 2 : 1;
        if (k >= 3) {
            sp.logit_bias_ids = bias_ids;
            sp.logit_bias = bias;
            sp.n_logit_bias = 3;
        }
        if (k == 3) {
            sp.stop_token_ids = stop_ids;
            sp.n_stop_token_ids = 1;
        }
        int32_t prompt[20];
        for (int i = 0; i < 20; i++)
            prompt[i] = (i * 11 + k * 5) % 50;
        cr_assert_eq(zl_engine_submit(e, prompt, 12 + k, &sp, NULL, &ids[k]), ZL_OK, "%s",
                     zl_last_error());
    }
    int left = N_REQ + 1;
    for (int guard = 0; left > 0 && guard < 10000; guard++) {
        cr_assert_geq(zl_engine_step(e), 0, "%s", zl_last_error());
        struct zl_output o;
        while (zl_engine_wait(e, &o, 0) == 1) {
            int k = fake_req_index(ids, N_REQ, o.request_id);
            cr_assert_lt(k, N_REQ);
            if (o.n_tokens) {
                int32_t j = res->n[k][o.index]++;
                cr_assert_lt(j, 48);
                res->toks[k][o.index][j] = o.token;
                res->lp[k][o.index][j] = o.logprob;
                res->top[k][o.index][j] = o.n_top ? o.top_ids[o.n_top - 1] : -1;
            }
            if (o.finish)
                left--;
            zl_output_release(&o);
        }
    }
    cr_assert_eq(left, 0, "requests did not finish");
    zl_engine_free(e);
    if (from_rows)
        *from_rows = m.from_rows;
    fake_fini(&m.f);
    zl_mem_free(mem);
}

Test(engine_dsample, rows_carry_what_the_cpu_sampler_reads)
{
    static struct run cpu, dev, as;
    int64_t from_rows = 0;
    n_sample_calls = 0;
    run_all(&fake_backend_ops, &cpu, NULL);
    cr_expect_eq(n_sample_calls, 0, "a backend without a sample op is never asked");
    run_all(&sampling_backend_ops, &dev, NULL);
    cr_expect_gt(n_sample_calls, 40, "the device sampler took the steps");
    /* async scheduling: every row's penalties, min_tokens mask and step
     * still see the tokens before it, though each step was queued before
     * the last one's tokens were back */
    run_all(&async_backend_ops, &as, &from_rows);
    cr_expect_gt(from_rows, 40, "steps read their tokens from the queued sample");
    cr_expect_eq(host_q.misuse, 0, "sample_queue / sample_wait / upload_tokens out of order");
    cr_expect_arr_eq(&as, &dev, sizeof as, "async scheduling changed a token or logprob");
    for (int k = 0; k < N_REQ; k++)
        for (int s = 0; s < (k == 2 ? 2 : 1); s++) {
            cr_expect_eq(dev.n[k][s], cpu.n[k][s], "request %d.%d length", k, s);
            cr_expect_arr_eq(dev.toks[k][s], cpu.toks[k][s], sizeof(int32_t) * 48,
                             "request %d.%d tokens", k, s);
            cr_expect_arr_eq(dev.lp[k][s], cpu.lp[k][s], sizeof(float) * 48,
                             "request %d.%d logprobs", k, s);
            cr_expect_arr_eq(dev.top[k][s], cpu.top[k][s], sizeof(int32_t) * 48,
                             "request %d.%d top ids", k, s);
        }
    /* the run exercised what it claims: request 3's min_tokens kept the
     * stop id 7 and EOS out of its first 12 tokens */
    for (int j = 0; j < 12 && j < cpu.n[3][0]; j++)
        cr_expect(cpu.toks[3][0][j] != 7 && cpu.toks[3][0][j] != 3, "token %d", j);
}

/* A row with every token masked ends its own request (ABORT), and the
 * row beside it in the same step is sampled as usual; with async
 * scheduling the ended row's next step, already queued, reads token 0. */
static void masked_row(const struct zl_backend_ops *be)
{
    struct zl_model m;
    struct zl_mem *mem;
    struct zl_engine *e = open_engine(be, &m, 128, 4, 64, NULL, &mem);
    static int32_t every[FAKE_VOCAB];
    for (int32_t i = 0; i < FAKE_VOCAB; i++)
        every[i] = i;
    struct zl_sampling_params masked = zl_sampling_default_params(), plain = masked;
    masked.stop_token_ids = every;      /* all suppressed while min_tokens is not reached */
    masked.n_stop_token_ids = FAKE_VOCAB;
    masked.min_tokens = 4;
    masked.max_tokens = 8;
    plain.max_tokens = 8;
    plain.temperature = 0.0f;
    int32_t prompt[5] = {1, 2, 3, 4, 5};
    uint64_t id_masked, id_plain;
    cr_assert_eq(zl_engine_submit(e, prompt, 5, &masked, NULL, &id_masked), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_engine_submit(e, prompt, 4, &plain, NULL, &id_plain), ZL_OK, "%s", zl_last_error());
    enum zl_finish_reason fin_masked = ZL_FINISH_NONE, fin_plain = ZL_FINISH_NONE;
    int plain_tokens = 0, masked_tokens = 0;
    for (int guard = 0; guard < 100 && (!fin_masked || !fin_plain); guard++) {
        cr_assert_geq(zl_engine_step(e), 0, "%s", zl_last_error());
        struct zl_output o;
        while (zl_engine_wait(e, &o, 0) == 1) {
            int is_plain = o.request_id == id_plain;
            *(is_plain ? &plain_tokens : &masked_tokens) += o.n_tokens;
            if (o.finish)
                *(is_plain ? &fin_plain : &fin_masked) = o.finish;
            zl_output_release(&o);
        }
    }
    cr_expect_eq(fin_masked, ZL_FINISH_ABORT);
    cr_expect_eq(masked_tokens, 0);
    cr_expect_eq(fin_plain, ZL_FINISH_LENGTH);
    cr_expect_eq(plain_tokens, 8);
    zl_engine_free(e);
    fake_fini(&m.f);
    zl_mem_free(mem);
}

Test(engine_dsample, a_fully_masked_row_ends_only_its_request)
{
    masked_row(&sampling_backend_ops);
    masked_row(&async_backend_ops);
    cr_expect_eq(host_q.misuse, 0);
}
