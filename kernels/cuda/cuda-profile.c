/* ZLIGHT_PROFILE=ops: the ops table wrapped so every op is bracketed by two
 * CUDA events on the instance's stream; when the stream is waited for (or
 * the event pool is full) the elapsed times are added up per op kind, and
 * every PROF_EVERY forwards (counted by embedding calls: one per forward)
 * and at close log lines give the device time per forward of each op
 * kind, for decode forwards (every sequence one token, as the attention
 * batch shows) and the others apart.  Events cost a little, so this is a
 * separate table, registered only when asked for. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

enum { P_EMB, P_NORM, P_LINEAR, P_ROPE, P_SILU, P_KVW, P_ATTN, P_ADD, P_COPY, P_SAMPLE, P_ROPEKV,
       P_LINFUSED, P_LINROPE, P_ROPEATTN, P_DECLAYERS, P_N };
static const char *const names[P_N] = {"embedding", "rms_norm", "linear", "rope", "silu_mul",
                                       "kv_write", "attention", "add", "copy", "sample",
                                       "rope_kv_write", "linear_fused", "linear_rope_kv",
                                       "rope_attention", "decoder_layers"};

#define PROF_EVENTS 4096
#define PROF_EVERY 200

enum { C_DECODE, C_OTHER, C_N }; /* forward classes */
static const char *const classes[C_N] = {"decode", "prefill/mixed"};

static struct {
    const struct zl_backend_ops *base;
    struct zl_backend_ops ops;
    cudaEvent_t ev[PROF_EVENTS][2];
    int kind[PROF_EVENTS], cls[PROF_EVENTS];
    int n, made;
    int cur;                    /* class of the forward being queued */
    int first;                  /* event slot of its first op: reclassified at its attention */
    double ms[C_N][P_N];
    long long calls[C_N][P_N];
} P;

static void collect(void);

static int begin(struct zl_bctx *c, int kind)
{
    if (!P.made) {
        for (int i = 0; i < PROF_EVENTS; i++)
            for (int j = 0; j < 2; j++)
                if (cudaEventCreate(&P.ev[i][j]) != cudaSuccess)
                    return -1;
        P.made = 1;
    }
    if (P.n == PROF_EVENTS) {
        if (cudaEventSynchronize(P.ev[P.n - 1][1]) != cudaSuccess)
            return -1;
        collect();
    }
    int s = P.n++;
    if (kind == P_EMB) { /* a new forward: other until an attention batch says decode */
        P.cur = C_OTHER;
        P.first = s;
    }
    P.kind[s] = kind;
    P.cls[s] = P.cur;
    cudaEventRecord(P.ev[s][0], c->stream);
    return s;
}

static void end(struct zl_bctx *c, int s)
{
    if (s >= 0)
        cudaEventRecord(P.ev[s][1], c->stream);
}

/* The ops of the forward being queued, from its first one on, are a
 * decode forward's: every sequence of its attention batch brings one token. */
static void classify(const struct zl_attn_batch *b)
{
    if (P.cur == C_DECODE || !b || !b->q_start || b->q_start[b->n_seqs] != b->n_seqs)
        return;
    P.cur = C_DECODE;
    for (int s = P.first; s < P.n; s++)
        P.cls[s] = C_DECODE;
}

static void report(void)
{
    for (int c = 0; c < C_N; c++) {
        double tot = 0;
        for (int k = 0; k < P_N; k++)
            tot += P.ms[c][k];
        long long steps = P.calls[c][P_EMB];
        if (!steps || tot <= 0)
            continue;
        char line[1024];
        int o = snprintf(line, sizeof line, "profile over %lld %s forwards, device ms per forward: "
                         "total %.3f;", steps, classes[c], tot / (double)steps);
        for (int k = 0; k < P_N && o < (int)sizeof line; k++)
            if (P.calls[c][k])
                o += snprintf(line + o, sizeof line - (size_t)o, " %s %.3f (%.0f calls)", names[k],
                              P.ms[c][k] / (double)steps, (double)P.calls[c][k] / (double)steps);
        zl_cuda_host->log(ZL_LOG_INFO, "cuda", "%s", line);
    }
    memset(P.ms, 0, sizeof P.ms);
    memset(P.calls, 0, sizeof P.calls);
}

static void collect(void)
{
    for (int s = 0; s < P.n; s++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, P.ev[s][0], P.ev[s][1]) == cudaSuccess) {
            P.ms[P.cls[s]][P.kind[s]] += ms;
            P.calls[P.cls[s]][P.kind[s]]++;
        }
    }
    P.n = 0;
    P.first = 0;
    if (P.calls[C_DECODE][P_EMB] + P.calls[C_OTHER][P_EMB] >= PROF_EVERY)
        report();
}

#define WRAP(kind, name, params, args)                                                             \
    static int p_##name params                                                                     \
    {                                                                                              \
        int s = begin(ctx, kind);                                                                  \
        int rc = P.base->name args;                                                                \
        end(ctx, s);                                                                               \
        return rc;                                                                                 \
    }

WRAP(P_EMB, embedding, (struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *t,
                        const struct zl_tensor *tok), (ctx, o, t, tok))
WRAP(P_NORM, rms_norm, (struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *x,
                        struct zl_tensor *r, const struct zl_tensor *w, float eps), (ctx, o, x, r, w, eps))
WRAP(P_LINEAR, linear, (struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *x,
                        const struct zl_tensor *w, const struct zl_tensor *b), (ctx, o, x, w, b))
WRAP(P_ROPE, rope, (struct zl_bctx *ctx, struct zl_tensor *q, struct zl_tensor *k,
                    const struct zl_tensor *pos, const struct zl_rope *r), (ctx, q, k, pos, r))
WRAP(P_SILU, silu_mul, (struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *g,
                        const struct zl_tensor *u), (ctx, o, g, u))
WRAP(P_KVW, kv_write, (struct zl_bctx *ctx, const struct zl_kv_cache *c, int32_t l,
                       const struct zl_tensor *k, const struct zl_tensor *v,
                       const struct zl_attn_batch *b), (ctx, c, l, k, v, b))
static int p_attention(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *q,
                       const struct zl_kv_cache *c, int32_t l, const struct zl_attn_batch *b,
                       float sc)
{
    classify(b);
    int s = begin(ctx, P_ATTN);
    int rc = P.base->attention(ctx, o, q, c, l, b, sc);
    end(ctx, s);
    return rc;
}
static int p_rope_attention(struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_rope_kv *r,
                            float sc)
{
    if (r)
        classify(r->batch);
    int s = begin(ctx, P_ROPEATTN);
    int rc = P.base->rope_attention(ctx, o, r, sc);
    end(ctx, s);
    return rc;
}
static int p_decoder_layers(struct zl_bctx *ctx, const struct zl_decoder_stack *st)
{
    if (st && st->r)
        classify(st->r->batch);
    int s = begin(ctx, P_DECLAYERS);
    int rc = P.base->decoder_layers(ctx, st);
    end(ctx, s);
    return rc;
}
WRAP(P_ADD, add, (struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *a,
                  const struct zl_tensor *b), (ctx, o, a, b))
WRAP(P_COPY, copy, (struct zl_bctx *ctx, struct zl_tensor *d, const struct zl_tensor *s_),
     (ctx, d, s_))

WRAP(P_ROPEKV, rope_kv_write, (struct zl_bctx *ctx, struct zl_tensor *q, const struct zl_tensor *k,
                               const struct zl_tensor *v, const struct zl_tensor *pos,
                               const struct zl_rope *r, const struct zl_kv_cache *c, int32_t l,
                               const struct zl_attn_batch *b), (ctx, q, k, v, pos, r, c, l, b))
WRAP(P_LINFUSED, linear_fused, (struct zl_bctx *ctx, struct zl_tensor *o, const struct zl_tensor *x,
                                const struct zl_tensor *w, const struct zl_tensor *b,
                                const struct zl_linear_fuse *f), (ctx, o, x, w, b, f))
WRAP(P_LINROPE, linear_rope_kv, (struct zl_bctx *ctx, struct zl_tensor *o,
                                  const struct zl_tensor *x, const struct zl_tensor *w,
                                  const struct zl_tensor *b, const struct zl_linear_fuse *f,
                                  const struct zl_rope_kv *r), (ctx, o, x, w, b, f, r))

/* sample() and sync() wait for the stream: collect after them. */
static int p_sample(struct zl_bctx *ctx, struct zl_tensor *l, const struct zl_sample_batch *b,
                    struct zl_sample_result *out)
{
    int s = begin(ctx, P_SAMPLE);
    int rc = P.base->sample(ctx, l, b, out);
    end(ctx, s);
    if (cudaStreamSynchronize(ctx->stream) == cudaSuccess)
        collect();
    return rc;
}

static int p_sync(struct zl_bctx *ctx)
{
    int rc = P.base->sync(ctx);
    if (rc == ZL_OK)
        collect();
    return rc;
}

static void p_close(struct zl_bctx *ctx)
{
    if (ctx && cudaStreamSynchronize(ctx->stream) == cudaSuccess)
        collect();
    report();
    P.base->close(ctx);
}

const struct zl_backend_ops *cuda_profile_ops(const struct zl_backend_ops *base)
{
    P.base = base;
    P.ops = *base;
    P.ops.description = "CUDA (ZLIGHT_PROFILE: ops timed with events)";
    P.ops.embedding = p_embedding;
    P.ops.rms_norm = p_rms_norm;
    P.ops.linear = p_linear;
    P.ops.rope = p_rope;
    P.ops.silu_mul = p_silu_mul;
    P.ops.kv_write = p_kv_write;
    P.ops.attention = p_attention;
    P.ops.add = p_add;
    P.ops.copy = p_copy;
    P.ops.sync = p_sync;
    P.ops.close = p_close;
    if (ZL_BACKEND_HAS(base, sample) && base->sample)
        P.ops.sample = p_sample;
    if (ZL_BACKEND_HAS(base, rope_kv_write) && base->rope_kv_write)
        P.ops.rope_kv_write = p_rope_kv_write;
    if (ZL_BACKEND_HAS(base, linear_fused) && base->linear_fused)
        P.ops.linear_fused = p_linear_fused;
    if (ZL_BACKEND_HAS(base, linear_rope_kv) && base->linear_rope_kv)
        P.ops.linear_rope_kv = p_linear_rope_kv;
    if (ZL_BACKEND_HAS(base, rope_attention) && base->rope_attention)
        P.ops.rope_attention = p_rope_attention;
    if (ZL_BACKEND_HAS(base, decoder_layers) && base->decoder_layers)
        P.ops.decoder_layers = p_decoder_layers;
    P.ops.graph_begin = NULL; /* events around each op: nothing to replay */
    P.ops.graph_end = NULL;
    /* the sample op's wait is where the times are collected: steps wait
     * for their tokens (async scheduling off) */
    P.ops.sample_queue = NULL;
    P.ops.sample_wait = NULL;
    P.ops.upload_tokens = NULL;
    return &P.ops;
}
