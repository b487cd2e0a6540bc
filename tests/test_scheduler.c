/* Scheduler with a fake model: budget, decode-first order, chunked
 * prefill, admissions, max_num_seqs, preemption (and its fairness), drops
 * instead of deadlocks, and accounting after 10,000 random operations. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/scheduler.h>
#include "test_engine_fake.h"

struct rig {
    struct zl_kv *kv;
    struct zl_sched *s;
    struct fake_kv f;
    int32_t n_blocks, bs;
};

static void rig_init(struct rig *r, int32_t n_blocks, int32_t bs, struct zl_sched_params p)
{
    struct zl_kv_params kp = zl_kv_default_params();
    kp.n_blocks = n_blocks;
    kp.block_size = bs;
    cr_assert_eq(zl_kv_create(&kp, &r->kv), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_sched_create(&p, r->kv, &r->s), ZL_OK, "%s", zl_last_error());
    fake_init(&r->f, n_blocks, bs);
    r->n_blocks = n_blocks;
    r->bs = bs;
}

static void rig_fini(struct rig *r)
{
    zl_sched_free(r->s);
    cr_expect_eq(zl_kv_check(r->kv), ZL_OK, "%s", zl_last_error());
    struct zl_kv_stats st;
    zl_kv_get_stats(r->kv, &st);
    cr_expect_eq(st.n_used, 0, "every block free again");
    zl_kv_free(r->kv);
    cr_expect_eq(r->f.errors, 0, "the fake model read a wrong slot");
    fake_fini(&r->f);
}

struct req {
    struct zl_sched_seq q;
    int32_t want;           /* output tokens to generate */
    int done, dropped;
};

static void req_init(struct req *r, const int32_t *prompt, int32_t n, int32_t want)
{
    memset(r, 0, sizeof(*r));
    r->q.tokens = malloc(sizeof(int32_t) * (size_t)n);
    memcpy(r->q.tokens, prompt, sizeof(int32_t) * (size_t)n);
    r->q.n_tokens = r->q.n_prompt = r->q.cap = n;
    r->q.user = r;
    r->want = want;
}

/* step -> fake forward -> commit -> append; finished ones leave. Returns
 * the batch's token count. */
static int32_t run_batch(struct rig *r, const struct zl_sched_batch *b);

static int32_t run_step(struct rig *r, const struct zl_sched_batch **out)
{
    const struct zl_sched_batch *b;
    cr_assert_eq(zl_sched_step(r->s, &b), ZL_OK, "%s", zl_last_error());
    if (out)
        *out = b;
    return run_batch(r, b);
}

/* A scheduled step through the fake forward, commit and append. */
static int32_t run_batch(struct rig *r, const struct zl_sched_batch *b)
{
    for (int32_t i = 0; i < b->n_dropped; i++)
        ((struct req *)b->dropped[i]->user)->dropped = 1;
    int32_t next[512];
    cr_assert_leq(b->n_logits, 512);
    fake_forward(&r->f, b->n_tokens, b->tokens, b->positions, &b->attn, b->n_logits, b->logits_rows,
                 next);
    int32_t n = b->n_tokens;
    struct zl_sched_seq *ls[512];
    int32_t nl = b->n_logits;
    memcpy(ls, b->logits_seqs, sizeof(ls[0]) * (size_t)nl);
    zl_sched_commit(r->s);
    for (int32_t i = 0; i < nl; i++) {
        struct req *q = ls[i]->user;
        cr_assert_eq(zl_sched_append(r->s, &q->q, next[i]), ZL_OK);
        if (q->q.n_tokens - q->q.n_prompt >= q->want) {
            zl_sched_remove(r->s, &q->q);
            q->done = 1;
        }
    }
    return n;
}

static void random_prompt(int32_t *p, int32_t n, int alphabet)
{
    for (int32_t i = 0; i < n; i++)
        p[i] = rand() % alphabet;
}

static void check_output(const struct req *q)
{
    int32_t ref[256];
    fake_reference(q->q.tokens, q->q.n_prompt, q->want, ref);
    cr_expect_arr_eq(q->q.tokens + q->q.n_prompt, ref, sizeof(int32_t) * (size_t)q->want);
}

/* Finished requests: their outputs are the fake model's, then freed. */
static void check_and_free(struct req *const *qs, int n)
{
    for (int i = 0; i < n; i++) {
        cr_expect(qs[i]->done, "request %d finished", i);
        check_output(qs[i]);
        free(qs[i]->q.tokens);
    }
}

Test(scheduler, budget_decodes_first_and_chunks)
{
    struct zl_sched_params p = zl_sched_default_params();
    p.max_num_batched_tokens = 16;
    p.max_prefill_chunk = 7;
    struct rig r;
    rig_init(&r, 64, 4, p);
    int32_t prompt[40];
    random_prompt(prompt, 40, 50);
    struct req a, b, c;
    req_init(&a, prompt, 3, 4);
    req_init(&b, prompt + 3, 3, 4);
    req_init(&c, prompt, 20, 2);
    cr_assert_eq(zl_sched_add(r.s, &a.q), ZL_OK);
    cr_assert_eq(zl_sched_add(r.s, &b.q), ZL_OK);
    const struct zl_sched_batch *bt;
    cr_expect_eq(run_step(&r, &bt), 6, "both short prompts in one step");
    cr_expect_eq(bt->n_logits, 2);
    cr_assert_eq(zl_sched_add(r.s, &c.q), ZL_OK);
    cr_expect_eq(run_step(&r, &bt), 2 + 7, "two decodes, then a 7-token chunk");
    cr_expect_eq(bt->seqs[0], &a.q);
    cr_expect_eq(bt->seqs[2], &c.q);
    cr_expect_eq(bt->n_logits, 2, "no logits for a partial prefill");
    cr_expect_eq(run_step(&r, &bt), 9);
    cr_expect_eq(run_step(&r, &bt), 2 + 6, "last chunk");
    cr_expect_eq(bt->n_logits, 3);
    for (int i = 0; i < 10 && !(a.done && b.done && c.done); i++)
        run_step(&r, NULL);
    check_and_free((struct req *[]){&a, &b, &c}, 3);
    rig_fini(&r);
}

/* score_prompt (prompt logprobs): every prompt position but the last gets
 * one score row, each step's sampled and score rows stay within
 * max_num_seqs (3 here, beside two decoding sequences), and the prompt
 * never comes from the prefix cache although its blocks are there. */
Test(scheduler, score_prompt_rows)
{
    struct zl_sched_params p = zl_sched_default_params();
    p.max_num_seqs = 3;
    struct rig r;
    rig_init(&r, 64, 4, p);
    int32_t prompt[30];
    random_prompt(prompt, 30, 50);
    struct req warm, a, b, c;
    req_init(&warm, prompt, 30, 1);
    cr_assert_eq(zl_sched_add(r.s, &warm.q), ZL_OK);
    for (int i = 0; i < 5 && !warm.done; i++)
        run_step(&r, NULL);
    cr_assert(warm.done);
    req_init(&a, prompt + 1, 4, 12);
    req_init(&b, prompt + 2, 4, 12);
    req_init(&c, prompt, 30, 2);
    c.q.score_prompt = 1;
    cr_assert_eq(zl_sched_add(r.s, &a.q), ZL_OK);
    cr_assert_eq(zl_sched_add(r.s, &b.q), ZL_OK);
    run_step(&r, NULL);
    cr_assert_eq(zl_sched_add(r.s, &c.q), ZL_OK);
    int scored[30] = {0}, steps = 0;
    while (!(a.done && b.done && c.done) && steps++ < 100) {
        const struct zl_sched_batch *bt;
        cr_assert_eq(zl_sched_step(r.s, &bt), ZL_OK, "%s", zl_last_error());
        cr_assert_leq(bt->n_logits + bt->n_score, p.max_num_seqs, "step %d", steps);
        for (int32_t i = 0; i < bt->n_score; i++) {
            cr_assert_eq(bt->logits_seqs[bt->n_logits + i], &c.q);
            scored[bt->positions[bt->logits_rows[bt->n_logits + i]]]++;
        }
        run_batch(&r, bt);
    }
    cr_expect_eq(c.q.n_cached, 0, "no prefix-cache hit");
    for (int i = 0; i < 30; i++)
        cr_expect_eq(scored[i], i < 29, "position %d scored %d times", i, scored[i]);
    check_and_free((struct req *[]){&warm, &a, &b, &c}, 4);
    rig_fini(&r);
}

Test(scheduler, max_num_seqs_and_budget)
{
    struct zl_sched_params p = zl_sched_default_params();
    p.max_num_batched_tokens = 32;
    p.max_num_seqs = 3;
    struct rig r;
    rig_init(&r, 128, 4, p);
    struct req q[8];
    int32_t prompt[10];
    for (int i = 0; i < 8; i++) {
        random_prompt(prompt, 10, 50);
        req_init(&q[i], prompt, 5 + i % 3, 6);
        cr_assert_eq(zl_sched_add(r.s, &q[i].q), ZL_OK);
    }
    int all = 0;
    for (int step = 0; step < 100 && !all; step++) {
        const struct zl_sched_batch *b;
        int32_t n = run_step(&r, &b);
        cr_expect_leq(n, 32);
        cr_expect_leq(b->n_seqs, 3);
        struct zl_sched_stats st;
        zl_sched_get_stats(r.s, &st);
        cr_expect_leq(st.n_running, 3);
        all = 1;
        for (int i = 0; i < 8; i++)
            all &= q[i].done;
    }
    cr_expect(all);
    check_and_free((struct req *[]){&q[0], &q[1], &q[2], &q[3], &q[4], &q[5], &q[6], &q[7]}, 8);
    rig_fini(&r);
}

Test(scheduler, preemption_recomputes_and_comes_back_first)
{
    struct zl_sched_params p = zl_sched_default_params();
    p.max_num_batched_tokens = 64;
    p.enable_prefix_caching = 0;
    struct rig r;
    rig_init(&r, 10, 4, p);     /* 40 tokens of KV for 4 sequences of 8 + 24 */
    struct req q[4];
    int32_t prompt[8];
    for (int i = 0; i < 4; i++) {
        random_prompt(prompt, 8, 50);
        req_init(&q[i], prompt, 8, 24);
        cr_assert_eq(zl_sched_add(r.s, &q[i].q), ZL_OK);
    }
    int64_t first_preempted = -1;
    for (int step = 0; step < 400; step++) {
        const struct zl_sched_batch *b;
        run_step(&r, &b);
        if (b->n_preempted && first_preempted < 0) {
            struct zl_sched_stats st;
            zl_sched_get_stats(r.s, &st);
            cr_expect_gt(st.n_waiting, 0);
            first_preempted = step;
        }
        int all = 1;
        for (int i = 0; i < 4; i++)
            all &= q[i].done;
        if (all)
            break;
    }
    struct zl_sched_stats st;
    zl_sched_get_stats(r.s, &st);
    cr_expect_gt(st.n_preemptions, 0, "the pool is too small for all four");
    cr_expect_geq(first_preempted, 0);
    check_and_free((struct req *[]){&q[0], &q[1], &q[2], &q[3]}, 4);
    rig_fini(&r);
}

Test(scheduler, preempted_request_is_readmitted_before_newer_ones)
{
    struct zl_sched_params p = zl_sched_default_params();
    p.max_num_batched_tokens = 64;
    struct rig r;
    rig_init(&r, 6, 4, p);
    int32_t prompt[8];
    random_prompt(prompt, 8, 50);
    struct req a, b, c;
    req_init(&a, prompt, 7, 14);
    random_prompt(prompt, 8, 50);
    req_init(&b, prompt, 7, 14);
    cr_assert_eq(zl_sched_add(r.s, &a.q), ZL_OK);
    cr_assert_eq(zl_sched_add(r.s, &b.q), ZL_OK);
    int preempted = 0;
    for (int i = 0; i < 40 && !preempted; i++) {
        const struct zl_sched_batch *bt;
        run_step(&r, &bt);
        preempted = bt->n_preempted > 0;
    }
    cr_assert(preempted);
    cr_expect_eq(b.q.state, ZL_SEQ_WAITING, "the newest runner was preempted");
    cr_expect_gt(b.q.n_preemptions, 0);
    random_prompt(prompt, 8, 50);
    req_init(&c, prompt, 3, 2);
    cr_assert_eq(zl_sched_add(r.s, &c.q), ZL_OK);
    /* b waits at the head: c is not admitted before it */
    while (!a.done) {
        run_step(&r, NULL);
        if (c.q.state == ZL_SEQ_RUNNING)
            cr_expect_eq(b.q.state, ZL_SEQ_RUNNING, "c ran before the preempted b");
    }
    for (int i = 0; i < 100 && !(b.done && c.done); i++)
        run_step(&r, NULL);
    check_and_free((struct req *[]){&a, &b, &c}, 3);
    rig_fini(&r);
}

Test(scheduler, too_long_is_dropped_not_deadlocked)
{
    struct zl_sched_params p = zl_sched_default_params();
    p.max_model_len = 1000;
    struct rig r;
    rig_init(&r, 4, 4, p);      /* 16 tokens of KV in all */
    int32_t prompt[20];
    random_prompt(prompt, 20, 50);
    struct req big, a;
    req_init(&big, prompt, 16, 4);
    cr_expect_eq(zl_sched_add(r.s, &big.q), ZL_EINVAL, "a prompt that can never fit is refused");
    req_init(&a, prompt, 10, 50);
    cr_assert_eq(zl_sched_add(r.s, &a.q), ZL_OK);
    for (int i = 0; i < 100 && !a.dropped && !a.done; i++)
        run_step(&r, NULL);
    cr_expect(a.dropped, "dropped when the pool is full");
    cr_expect_eq(a.q.n_tokens, 17, "it grew to the pool's 16 tokens plus the last sampled one");
    free(big.q.tokens);
    free(a.q.tokens);
    rig_fini(&r);
}

/* 10,000 random submit / cancel / finish operations with prefix sharing,
 * chunking and preemption; afterwards every block is free and the cache
 * consistent. */
Test(scheduler, random_accounting)
{
    enum { NR = 48 };
    struct zl_sched_params p = zl_sched_default_params();
    p.max_num_batched_tokens = 48;
    p.max_num_seqs = 12;
    p.max_prefill_chunk = 13;
    struct rig r;
    rig_init(&r, 40, 4, p);
    struct req q[NR];
    int active[NR] = {0};
    int32_t sys[16];
    random_prompt(sys, 16, 50);
    srand(11);
    int ops = 0, steps = 0;
    int64_t finished = 0, cancelled = 0;
    while (ops < 10000) {
        int i = rand() % NR;
        int op = rand() % 10;
        if (!active[i] && op < 5) {
            int32_t prompt[40];
            int32_t n = 1 + rand() % 40;
            random_prompt(prompt, n, 4);
            if (rand() % 2)
                memcpy(prompt, sys, sizeof(int32_t) * (size_t)(n < 16 ? n : 16));
            req_init(&q[i], prompt, n, 1 + rand() % 12);
            q[i].q.salt = (uint64_t)(rand() % 2);
            if (zl_sched_add(r.s, &q[i].q) == ZL_OK)
                active[i] = 1;
            else
                free(q[i].q.tokens);
            ops++;
        } else if (active[i] && op < 2) {
            zl_sched_remove(r.s, &q[i].q);      /* cancel */
            free(q[i].q.tokens);
            active[i] = 0;
            cancelled++;
            ops++;
        } else if (op >= 6) {
            run_step(&r, NULL);
            steps++;
            for (int k = 0; k < NR; k++)
                if (active[k] && (q[k].done || q[k].dropped)) {
                    if (q[k].done)
                        check_output(&q[k]);
                    free(q[k].q.tokens);
                    active[k] = 0;
                    finished++;
                    ops++;
                }
            if (steps % 50 == 0)
                cr_assert_eq(zl_kv_check(r.kv), ZL_OK, "%s", zl_last_error());
        }
    }
    for (int k = 0; k < NR; k++)
        if (active[k]) {
            zl_sched_remove(r.s, &q[k].q);
            free(q[k].q.tokens);
        }
    struct zl_sched_stats st;
    zl_sched_get_stats(r.s, &st);
    cr_expect_eq(st.n_running + st.n_waiting, 0);
    cr_expect_gt(finished, 1000, "finished %lld", (long long)finished);
    cr_expect_gt(cancelled, 500, "cancelled %lld", (long long)cancelled);
    cr_expect_gt(st.n_preemptions, 0);
    cr_expect_gt(zl_kv_prefix_hit_rate(r.kv), 0.0);
    rig_fini(&r);
}
