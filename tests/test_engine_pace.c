/* Late scheduling's timing (core/engine-pace.c) on a virtual clock: when
 * the engine sleeps before scheduling the next step, and when it must
 * not.  A simulated device runs queued steps back to back; the engine's
 * loop (pace, schedule and queue, wait for the step before) runs against
 * it.  What must hold:
 *   - steady decode steps are paced: the next step is queued later than
 *     at once, yet before the running step ends (the device never idles),
 *     by at least the host's turn;
 *   - a step shorter than guessed leaves the device idle once, and the
 *     wait that then returns at once stops pacing for the next step (no
 *     run-away guesses);
 *   - prefill chunks or a changed batch size are not paced.
 * engine-pace.c is compiled into this test (its functions are internal
 * to libzlight); zl_engine_now is this test's virtual clock. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include "../core/engine-impl.h"

static double vclock;

double zl_engine_now(void)
{
    return vclock;
}

Test(engine_pace, the_delay_rule)
{
    struct eng_pace p = {.on = true, .began = 10.0, .last = 0.008, .rows_out = 32,
                         .rows_last = 32, .turn = 0.0003};
    /* the guessed end 10.008, less twice the turn and the 0.2 ms margin */
    cr_expect_float_eq(zl_engine_pace_delay(&p, 10.001), 0.0062, 1e-9);
    cr_expect_eq(zl_engine_pace_delay(&p, 10.0072), 0.0, "past the latest start");
    struct eng_pace q = p;
    q.on = false;
    cr_expect_eq(zl_engine_pace_delay(&q, 10.001), 0.0, "off");
    q = p, q.rows_last = 31;
    cr_expect_eq(zl_engine_pace_delay(&q, 10.001), 0.0, "a batch of another size before");
    q = p, q.rows_out = -1;
    cr_expect_eq(zl_engine_pace_delay(&q, 10.001), 0.0, "a prefill step outstanding");
    q = p, q.last = 0;
    cr_expect_eq(zl_engine_pace_delay(&q, 10.001), 0.0, "the step before not timed");
    q = p, q.began = 0;
    cr_expect_eq(zl_engine_pace_delay(&q, 10.001), 0.0, "the outstanding step's start unknown");
    q = p, q.last = 2.0;
    cr_expect_float_eq(zl_engine_pace_delay(&q, 10.001), 0.05, 1e-12, "capped at 50 ms");
}

/* The simulated device and the engine's loop around it. */
struct sim {
    struct zl_engine e;
    double dev_free;        /* the device finishes its queued work then */
    double step_end[64];    /* when each step ended on the device */
    double idle;            /* device time idle between queued steps */
    int paced;
};

/* One iteration: pace, a host turn of `turn` s, queue step k (rows, its
 * device time len), then wait for step k - 1. */
static void iterate(struct sim *s, int k, int32_t rows, int32_t tokens, double len, double turn)
{
    struct zl_engine *e = &s->e;
    if (k > 0) {
        double d = zl_engine_pace_delay(&e->pace, vclock);
        s->paced += d > 0;
        vclock += d;
    }
    double top = vclock;
    vclock += turn;
    struct zl_sched_batch b = {.n_seqs = rows, .n_tokens = tokens};
    zl_engine_pace_queued(e, &b, top, vclock);
    if (k > 0 && vclock > s->dev_free)
        s->idle += vclock - s->dev_free;
    double start = vclock > s->dev_free ? vclock : s->dev_free;
    s->dev_free = start + len;
    s->step_end[k] = s->dev_free;
    if (k == 0) { /* nothing outstanding before the first step */
        e->pace.rows_out = e->pace.rows_new;
        e->pace.began = vclock;
        return;
    }
    double t = vclock;
    if (vclock < s->step_end[k - 1])
        vclock = s->step_end[k - 1];
    zl_engine_pace_done(e, true, vclock - t, vclock);
}

static void sim_init(struct sim *s)
{
    memset(s, 0, sizeof *s);
    s->e.pace = (struct eng_pace){.on = true, .rows_new = -1, .rows_out = -1, .rows_last = -1};
    vclock = 100.0;
    s->dev_free = vclock;
}

Test(engine_pace, steady_decode_steps_are_paced_and_the_device_never_idles)
{
    struct sim s;
    sim_init(&s);
    for (int k = 0; k < 40; k++)
        iterate(&s, k, 32, 32, 0.0078, 0.0003);
    cr_expect_gt(s.paced, 35, "steady steps were not paced (%d of 40)", s.paced);
    cr_expect_lt(s.idle, 1e-9, "the device idled %.6f s", s.idle);
    /* paced: the engine wakes late in the running step, not as it starts */
    double d = zl_engine_pace_delay(&s.e.pace, s.e.pace.began);
    cr_expect_gt(d, 0.006, "a step of 7.8 ms is entered only %.4f s after it starts", d);
}

Test(engine_pace, a_short_step_idles_the_device_once_and_pacing_backs_off)
{
    struct sim s;
    sim_init(&s);
    for (int k = 0; k < 10; k++)
        iterate(&s, k, 32, 32, 0.008, 0.0003);
    cr_assert_lt(s.idle, 1e-9);
    /* step 10 runs 3 ms short of the guess: the device idles until step
     * 11 is queued, the wait for step 10 does not block, and step 12 is
     * queued without pacing */
    iterate(&s, 10, 32, 32, 0.005, 0.0003);
    iterate(&s, 11, 32, 32, 0.008, 0.0003);
    double idle = s.idle;
    cr_expect_gt(idle, 0.001, "a short step must idle the device (%.6f s)", idle);
    cr_expect_eq(s.e.pace.last, 0.0, "a wait that did not block still timed a step");
    cr_expect_eq(zl_engine_pace_delay(&s.e.pace, vclock), 0.0, "paced after a late wait");
    for (int k = 12; k < 30; k++)
        iterate(&s, k, 32, 32, 0.008, 0.0003);
    cr_expect_lt(s.idle - idle, 1e-9, "the device idled again: %.6f s", s.idle - idle);
    cr_expect_gt(zl_engine_pace_delay(&s.e.pace, s.e.pace.began), 0.0, "pacing never resumed");
}

Test(engine_pace, prefill_chunks_and_batch_changes_are_not_paced)
{
    struct sim s;
    sim_init(&s);
    for (int k = 0; k < 6; k++)
        iterate(&s, k, 8, 8, 0.007, 0.0003);
    cr_assert_gt(zl_engine_pace_delay(&s.e.pace, s.e.pace.began), 0.0);
    /* a step with a prefill chunk (more tokens than sequences) */
    iterate(&s, 6, 9, 520, 0.02, 0.0005);
    cr_expect_eq(zl_engine_pace_delay(&s.e.pace, vclock), 0.0, "a prefill step outstanding");
    /* decode steps of 9: the first is timed by the prefill step before */
    iterate(&s, 7, 9, 9, 0.0071, 0.0003);
    cr_expect_eq(zl_engine_pace_delay(&s.e.pace, vclock), 0.0, "timed by a prefill step");
    iterate(&s, 8, 9, 9, 0.0071, 0.0003);
    cr_expect_gt(zl_engine_pace_delay(&s.e.pace, s.e.pace.began), 0.0, "two decode steps of 9");
    cr_expect_lt(s.idle, 1e-9, "the device idled %.6f s", s.idle);
}
