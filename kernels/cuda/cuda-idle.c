/* ZLIGHT_PROFILE (any value but "ops"): how long the device idles between
 * forwards.  An end event is recorded on the stream as a forward's sampled
 * tokens are queued for copy-out (sample_queue) and a start event as the
 * next forward's embedding is queued (after its token and position
 * uploads); the time between the two is the host's turn: waking from the
 * wait, emitting the tokens, scheduling, and the model's uploads before
 * its first kernel.  With async scheduling the next forward is queued
 * before sample_wait, so the gap is what the device still waited for.
 *
 * A pair (end, start) is evaluated once its start has completed: at
 * sample_wait if cudaEventQuery says so, else when the next pair is made
 * (a cudaEventSynchronize on the old start, which the stream has long
 * passed).  Two events of each kind, so the pending pair is never
 * recorded over.  Steps that replay a graph, and forwards without a
 * device sample before them, are not counted.  Every IDLE_EVERY counted
 * forwards, and at close, a log line gives the mean. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

#define IDLE_EVERY 200

void cuda_idle_open(struct zl_bctx *ctx)
{
    const char *p = getenv("ZLIGHT_PROFILE");
    struct cuda_idle *d = &ctx->idle;
    if (!p || !*p || !strcmp(p, "0") || !strcmp(p, "ops"))
        return;
    for (int i = 0; i < 4; i++)
        if (cudaEventCreate(i < 2 ? &d->ends[i] : &d->starts[i - 2]) != cudaSuccess) {
            zl_cuda_host->log(ZL_LOG_WARN, "cuda", "profile: no events for the idle time (%s)",
                              cudaGetErrorString(cudaGetLastError()));
            cuda_idle_close(ctx);
            return;
        }
    d->end = d->pend_end = d->pend_start = -1;
    d->on = 1;
}

static void report(struct cuda_idle *d)
{
    if (d->n)
        zl_cuda_host->log(ZL_LOG_INFO, "cuda", "profile: the device idled %.3f ms before each of "
                          "%lld forwards (from the last forward's sampled tokens to this one's "
                          "first kernel; direct launches only)", d->ms / (double)d->n, d->n);
    d->ms = 0;
    d->n = 0;
}

void cuda_idle_close(struct zl_bctx *ctx)
{
    struct cuda_idle *d = &ctx->idle;
    if (d->on)
        report(d);
    for (int i = 0; i < 2; i++) {
        if (d->ends[i])
            ZL_CUDA_WARN(cudaEventDestroy(d->ends[i]));
        if (d->starts[i])
            ZL_CUDA_WARN(cudaEventDestroy(d->starts[i]));
    }
    memset(d, 0, sizeof *d);
}

/* The pending pair's gap into the mean once its start has completed (e:
 * how waiting for or asking after it went); NotReady leaves it pending. */
static void evaluate(struct cuda_idle *d, cudaError_t e)
{
    float ms;
    if (e == cudaSuccess &&
        (e = cudaEventElapsedTime(&ms, d->ends[d->pend_end], d->starts[d->pend_start])) ==
            cudaSuccess) {
        d->ms += ms;
        if (++d->n == IDLE_EVERY)
            report(d);
    }
    if (e != cudaSuccess)
        (void)cudaGetLastError(); /* not the next launch's error */
    if (e != cudaErrorNotReady)
        d->pend_end = d->pend_start = -1;
}

void cuda_idle_first_op(struct zl_bctx *ctx)
{
    struct cuda_idle *d = &ctx->idle;
    if (!d->on)
        return;
    int end = d->end;
    d->end = -1; /* this forward's gap, counted or not: the next needs a new end */
    if (end < 0 || ctx->gr.mode != CUDA_GRAPH_OFF)
        return;
    int s = d->pend_start < 0 ? 0 : d->pend_start ^ 1;
    if (cudaEventRecord(d->starts[s], ctx->stream) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    /* recorded first: the host's wait below cannot delay this start */
    if (d->pend_start >= 0)
        evaluate(d, cudaEventSynchronize(d->starts[d->pend_start]));
    d->pend_end = end;
    d->pend_start = s;
}

void cuda_idle_tokens_out(struct zl_bctx *ctx)
{
    struct cuda_idle *d = &ctx->idle;
    if (!d->on)
        return;
    /* never the pending pair's end; a second tokens_out before a start re-records its own */
    int e = d->pend_end >= 0 ? d->pend_end ^ 1 : d->end >= 0 ? d->end : 0;
    d->end = e;
    if (cudaEventRecord(d->ends[e], ctx->stream) != cudaSuccess) {
        (void)cudaGetLastError();
        d->end = -1;
    }
}

/* After sample_wait's wait: the pair pending, if its start has completed
 * (before the wait when the next forward was queued first, it may not). */
void cuda_idle_waited(struct zl_bctx *ctx)
{
    struct cuda_idle *d = &ctx->idle;
    if (d->on && d->pend_start >= 0) /* not ready: the next first_op waits for it */
        evaluate(d, cudaEventQuery(d->starts[d->pend_start]));
}
