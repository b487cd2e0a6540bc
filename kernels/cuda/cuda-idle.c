/* ZLIGHT_PROFILE (any value but "ops"): how long the device idles between
 * forwards.  An event is recorded on the stream as a forward's sampled
 * tokens are copied out (before sample's wait) and another as the next
 * forward's embedding is queued (after its token and position uploads);
 * the time between the two is the host's turn: waking from the wait,
 * emitting the tokens, scheduling, and the model's uploads before its
 * first kernel.  Steps that replay a graph, and forwards without a device
 * sample, are not counted.  Every IDLE_EVERY counted forwards, and at
 * close, a log line gives the mean. */
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
    for (int i = 0; i < 3; i++)
        if (cudaEventCreate(i < 2 ? &d->end[i] : &d->start) != cudaSuccess) {
            zl_cuda_host->log(ZL_LOG_WARN, "cuda", "profile: no events for the idle time (%s)",
                              cudaGetErrorString(cudaGetLastError()));
            cuda_idle_close(ctx);
            return;
        }
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
    for (int i = 0; i < 2; i++)
        if (d->end[i])
            ZL_CUDA_WARN(cudaEventDestroy(d->end[i]));
    if (d->start)
        ZL_CUDA_WARN(cudaEventDestroy(d->start));
    memset(d, 0, sizeof *d);
}

void cuda_idle_first_op(struct zl_bctx *ctx)
{
    struct cuda_idle *d = &ctx->idle;
    if (!d->on)
        return;
    if (d->started) /* the forward before sampled nothing: no end event for this gap */
        d->have_prev = 0;
    d->started = ctx->gr.mode == CUDA_GRAPH_OFF &&
                 cudaEventRecord(d->start, ctx->stream) == cudaSuccess;
}

void cuda_idle_tokens_out(struct zl_bctx *ctx)
{
    struct cuda_idle *d = &ctx->idle;
    if (d->on)
        d->ended = cudaEventRecord(d->end[d->cur], ctx->stream) == cudaSuccess;
}

/* After sample's wait: both events of this gap have completed. */
void cuda_idle_waited(struct zl_bctx *ctx)
{
    struct cuda_idle *d = &ctx->idle;
    if (!d->on)
        return;
    float ms;
    if (d->started && d->have_prev &&
        cudaEventElapsedTime(&ms, d->end[d->cur ^ 1], d->start) == cudaSuccess) {
        d->ms += ms;
        if (++d->n == IDLE_EVERY)
            report(d);
    }
    d->have_prev = d->ended;
    d->started = d->ended = 0;
    d->cur ^= 1;
}
