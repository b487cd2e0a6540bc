/* Late scheduling (engine.late_scheduling, with async scheduling): step
 * N+1 is scheduled shortly before step N is expected to end instead of
 * as N starts, so a request that arrives while N runs joins N+1 rather
 * than N+2 (async scheduling's one step of TTFT).  The device must still
 * find N+1 queued when N ends, so the engine only paces steps it can
 * time:
 *   - N began when the step before's tokens came back (take_pending's
 *     wait returned), and its length is guessed as that step's length,
 *     measured the same way; both must be steady decode steps of the same
 *     number of rows (a prefill chunk or a batch change: no pacing);
 *   - the wait must have blocked: one that returned at once means the
 *     host, not the device, was late, so the measured length is too long
 *     and would push the next guess later still (no pacing next step);
 *   - the host's turn (scheduling and queueing a step, decayed maximum)
 *     is left twice over, plus PACE_MARGIN, before the guessed end.
 * Nothing changes which tokens are produced; only when steps are queued. */
#include <errno.h>
#include <time.h>
#include "engine-impl.h"

#define PACE_MARGIN 200e-6      /* s: step-to-step jitter of a steady decode step */
#define PACE_MAX 50e-3          /* s: no sleep longer (a wrong guess costs at most this) */
#define PACE_BLOCKED 30e-6      /* s: a wait shorter than this did not block */

double zl_engine_pace_delay(const struct eng_pace *p, double now)
{
    if (!p->on || p->began <= 0 || p->last <= 0 || p->rows_out < 1 || p->rows_out != p->rows_last)
        return 0;
    double d = p->began + p->last - (2 * p->turn + PACE_MARGIN) - now;
    return d <= 0 ? 0 : d > PACE_MAX ? PACE_MAX : d;
}

void zl_engine_pace_wait(struct zl_engine *e)
{
    struct eng_pace *p = &e->pace;
    double d = zl_engine_pace_delay(p, zl_engine_now());
    if (d <= 0)
        return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    p->paced++;
    p->slept += d;
}

void zl_engine_pace_queued(struct zl_engine *e, const struct zl_sched_batch *b, double top,
                           double queued)
{
    struct eng_pace *p = &e->pace;
    double turn = queued - top;
    p->turn = turn > p->turn * 0.95 ? turn : p->turn * 0.95;
    p->rows_new = b->n_tokens == b->n_seqs ? b->n_seqs : -1; /* decode rows only */
}

void zl_engine_pace_done(struct zl_engine *e, bool queued_now, double waited, double now)
{
    struct eng_pace *p = &e->pace;
    /* the step that just ended began at p->began; the one queued in this
     * iteration (queued_now) begins now */
    p->last = waited >= PACE_BLOCKED && p->began > 0 ? now - p->began : 0;
    p->rows_last = p->rows_out;
    p->rows_out = queued_now ? p->rows_new : -1;
    p->began = queued_now ? now : 0;
}
