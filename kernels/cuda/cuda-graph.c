/* Decode steps as CUDA graphs (backend.h graph_begin / graph_end).
 *
 * A step is replayed only when its ops and their arguments are exactly
 * those of a captured one; nothing else could make a graph safe to reuse.
 * So the engine's bracket first runs the model's forward as a recording
 * pass: every op notes what decides its launches (op, tensor addresses,
 * shapes, strides, dtypes, scalars, the attention batch's shape), stages
 * its host inputs in a pinned buffer (one of two, in turns by bracket,
 * so that a step queued ahead of the last one's tokens does not write
 * what the graph before has yet to copy) and queues nothing.  The notes,
 * plus the addresses of the instance's scratch buffers, are looked up
 * (xxHash, then compared byte for byte) among the captured graphs:
 *   - found: the graph is launched; its copy nodes read the inputs just
 *     staged, at the offsets the capture staged them at;
 *   - new: the forward runs again, directly the first time a sequence is
 *     seen and under stream capture the second (one-off shapes, common in
 *     serving, never pay for a capture).
 * The data that changes every step (token ids, positions, kv lengths,
 * block tables, slots) is input, not argument: uploaded by the graph.
 * What would change the launches with the data is fixed in a pass
 * instead: decode attention plans its split-KV for a bucket of context
 * lengths (cuda_graph_kv_bucket) and the block table is padded to a
 * power-of-two width; the engine pads the batch itself to a few size
 * classes (core/engine-graph.c).  Growing a scratch buffer changes its address and
 * so the notes; a graph is never replayed over a freed buffer.
 *
 * The notes themselves are taken by the op table's wrappers
 * (cuda-graph-notes.c).
 *
 * Measured (H100, Llama-3.1-8B bf16, BENCHMARKS.md): the host's time per
 * decode step falls from ~2.3-2.9 ms of launches to ~0.15 ms (recording
 * 0.11-0.13 ms, lookup and launch 0.04 ms) at batch 1, 0.2-0.33 + 0.03 ms
 * at batch 32.  Waiting for each step's tokens, the step itself hardly got
 * faster (the kernels already overlap their launches: PDL, kept in the
 * graph as programmatic edges; the recording pass sat between one step's
 * sample and the next launch).  With async scheduling the recording pass
 * runs while the step before is on the device, and the replays' shorter
 * gaps between kernels show: batch 32 1.4-2.1% faster, batch 128 0.6%,
 * batch 1 and 8 the same; so backend.cuda_graphs is on by default.
 *
 * An op whose launch follows the step's data (the decode chain: its
 * context length plans the attention split) marks a recording pass to run
 * directly (cuda_graph_run_direct): no lookup, no capture, the ops queued
 * in the rerun.
 *
 * cuBLASLt's kernels are captured with plain edges.  Making the edge into
 * them programmatic (branch lt-pdl) ran batch 32 2% faster and changed
 * the generated tokens: some of its kernels read before any
 * griddepcontrol.wait, so their predecessors must complete first.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "cuda-impl.h"

#define GRAPH_MAX 512               /* captured graphs kept per instance */
#define STAGE_ALIGN 16
#define MAX_DEVICES 64

/* A copy node of a graph that reads the staging buffer: repointed at
 * launch to the buffer this bracket staged into. */
struct cuda_graph_copy {
    cudaGraphNode_t node;
    struct cudaMemcpy3DParms p;     /* as captured; srcPtr moved per buffer */
    size_t off;                     /* of its source in the staging buffer */
};

struct cuda_graph_entry {
    uint64_t hash, used;
    unsigned char *rec;             /* the notes it was captured with */
    size_t len;
    cudaGraphExec_t exec;
    cudaGraph_t graph;              /* kept: its nodes name the copies to repoint */
    struct cuda_graph_copy *copies;
    int n_copies;
    int buf;                        /* the staging buffer its copies read now */
};

/* The instance inside a bracket on each device (copy_to_device's hook has
 * no instance argument).  Brackets run on the engine thread only. */
static struct zl_bctx *active[MAX_DEVICES];

struct zl_bctx *cuda_graph_active(int device)
{
    return device >= 0 && device < MAX_DEVICES ? active[device] : NULL;
}

int32_t cuda_graph_kv_bucket(int32_t n)
{
    if (n <= 256)
        return 256;
    int64_t q = 1; /* 4q < n <= 8q, then n rounded up to a multiple of q */
    while (q * 8 < n)
        q *= 2;
    int64_t b = (n + q - 1) / q * q;
    return b > INT32_MAX ? INT32_MAX : (int32_t)b;
}

int32_t cuda_graph_table_cols(int32_t max_blocks)
{
    int32_t c = 16;
    while (c < max_blocks && c < (1 << 30))
        c *= 2;
    return c;
}

/* ---- staging ---- */

static void entry_free(struct cuda_graph_entry *e)
{
    if (e->exec)
        ZL_CUDA_WARN(cudaGraphExecDestroy(e->exec));
    if (e->graph)
        ZL_CUDA_WARN(cudaGraphDestroy(e->graph));
    free(e->rec);
    free(e->copies);
    memset(e, 0, sizeof *e);
}

static void drop_all(struct cuda_graphs *g)
{
    for (int i = 0; i < g->n; i++)
        entry_free(&g->e[i]);
    g->n = 0;
}

/* After a scratch buffer was freed (the stream idle): a new one may come
 * back at the old address, where a graph's nodes would pass the notes'
 * address check and name memory that is gone (cudaGraphLaunch: invalid
 * argument, seen on an H100), so every graph goes. */
void cuda_graph_forget(struct zl_bctx *ctx)
{
    drop_all(&ctx->gr);
}

int cuda_graph_upload(struct zl_bctx *ctx, void *dst, const void *src, size_t bytes)
{
    struct cuda_graphs *g = &ctx->gr;
    size_t at = g->stage_used, need = at + ((bytes + STAGE_ALIGN - 1) & ~(size_t)(STAGE_ALIGN - 1));
    if (need > g->stage_cap) {
        if (g->mode == CUDA_GRAPH_CAPTURE) /* the recording pass sized it: a bug if reached */
            return zl_cuda_host->error(ZL_EINVAL, "cuda graph: capture staged more than its "
                                       "recording pass (%zu > %zu bytes)", need, g->stage_cap);
        size_t cap = g->stage_cap ? g->stage_cap * 2 : (size_t)256 << 10;
        while (cap < need)
            cap *= 2;
        /* graphs' copy nodes read the old buffer: they go with it */
        ZL_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
        drop_all(g);
        ZL_CUDA_TRY(cudaFreeHost(g->stage));
        g->stage = g->stages[g->cur] = NULL;
        g->stage_cap = g->caps[g->cur] = 0;
        ZL_CUDA_TRY(cudaHostAlloc((void **)&g->stage, cap, cudaHostAllocDefault));
        g->stages[g->cur] = g->stage;
        g->stage_cap = g->caps[g->cur] = cap;
    }
    memcpy(g->stage + at, src, bytes);
    if (g->mode == CUDA_GRAPH_CAPTURE)
        ZL_CUDA_TRY(cudaMemcpyAsync(dst, g->stage + at, bytes, cudaMemcpyHostToDevice,
                                    ctx->stream));
    int64_t w[2] = {(int64_t)(uintptr_t)dst, (int64_t)bytes}; /* the offsets follow */
    cuda_graph_note(ctx, w, sizeof w);
    g->stage_used = need;
    return ZL_OK;
}

/* ---- the bracket ---- */

/* Each pass starts with nothing uploaded: the first upload of each kind is
 * copied (by the graph or directly), later identical ones are skipped. */
static void pass_start(struct zl_bctx *ctx, enum cuda_graph_mode m)
{
    ctx->gr.mode = m;
    ctx->gr.rec_len = 0;
    ctx->gr.rec_oom = 0;
    ctx->gr.direct = 0;
    ctx->gr.stage_used = 0;
    ctx->meta.last_len = 0;
    ctx->freq.last_len = 0;
    ctx->samp_tok.last_len = 0;
}

static void bracket_end(struct zl_bctx *ctx)
{
    ctx->gr.mode = CUDA_GRAPH_OFF;
    ctx->meta.last_len = 0; /* a recording pass staged bytes the device may not hold */
    ctx->freq.last_len = 0;
    ctx->samp_tok.last_len = 0;
    if (ctx->device >= 0 && ctx->device < MAX_DEVICES && active[ctx->device] == ctx)
        active[ctx->device] = NULL;
}

int cuda_graph_begin(struct zl_bctx *ctx)
{
    if (ctx->gr.mode != CUDA_GRAPH_OFF)
        return zl_cuda_host->error(ZL_EINVAL, "cuda graph_begin: already inside a bracket");
    if (ctx->gr.off)
        return zl_cuda_host->error(ZL_EUNSUPPORTED, "cuda graph_begin: graphs are off on this "
                                   "instance after a failed capture");
    if (ctx->device < 0 || ctx->device >= MAX_DEVICES || active[ctx->device])
        return zl_cuda_host->error(ZL_EUNSUPPORTED, "cuda graph_begin: another instance on "
                                   "device %d is inside a bracket", ctx->device);
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    struct cuda_graphs *g = &ctx->gr;
    for (int i = 0; i < 2; i++)
        if (!g->done[i])
            ZL_CUDA_TRY(cudaEventCreateWithFlags(&g->done[i], cudaEventDisableTiming));
    g->cur ^= 1;
    g->stage = g->stages[g->cur];
    g->stage_cap = g->caps[g->cur];
    /* the graph launched from this buffer two brackets ago has copied its
     * inputs (waiting for the step before has normally waited for it) */
    ZL_CUDA_TRY(cudaEventSynchronize(g->done[g->cur]));
    pass_start(ctx, CUDA_GRAPH_DRY);
    active[ctx->device] = ctx;
    return ZL_OK;
}

/* What the ops used besides their arguments: scratch that may move. */
static void note_buffers(struct zl_bctx *ctx)
{
    /* not the staging buffers: copies are repointed, growth drops every graph */
    const void *p[7] = {ctx->meta.dev, ctx->freq.dev, ctx->attn_scratch, ctx->attn_count,
                        ctx->conv, ctx->lt_ws, ctx->err};
    cuda_graph_note(ctx, p, sizeof p);
    cuda_graph_note(ctx, &ctx->attn_scratch_cap, sizeof ctx->attn_scratch_cap);
}

static struct cuda_graph_entry *find(struct cuda_graphs *g, uint64_t h)
{
    for (int i = 0; i < g->n; i++)
        if (g->e[i].hash == h && g->e[i].len == g->rec_len &&
            !memcmp(g->e[i].rec, g->rec, g->rec_len))
            return &g->e[i];
    return NULL;
}

static int seen_before(struct cuda_graphs *g, uint64_t h)
{
    for (unsigned i = 0; i < sizeof g->seen / sizeof *g->seen; i++)
        if (g->seen[i] == h)
            return 1;
    g->seen[g->seen_next++ % (sizeof g->seen / sizeof *g->seen)] = h;
    return 0;
}

static int launch(struct zl_bctx *ctx, struct cuda_graph_entry *e)
{
    struct cuda_graphs *g = &ctx->gr;
    e->used = ++g->clock;
    for (int i = 0; e->buf != g->cur && i < e->n_copies; i++) {
        struct cudaMemcpy3DParms p = e->copies[i].p;
        p.srcPtr.ptr = g->stage + e->copies[i].off;
        ZL_CUDA_TRY(cudaGraphExecMemcpyNodeSetParams(e->exec, e->copies[i].node, &p));
    }
    e->buf = g->cur;
    ZL_CUDA_TRY(cudaGraphLaunch(e->exec, ctx->stream));
    ZL_CUDA_TRY(cudaEventRecord(ctx->gr.done[ctx->gr.cur], ctx->stream));
    return ZL_OK;
}

/* A free entry: a new slot, or the least recently launched graph's. */
static struct cuda_graph_entry *entry_new(struct cuda_graphs *g)
{
    if (g->n < g->cap)
        return &g->e[g->n++];
    if (g->cap < GRAPH_MAX) {
        int cap = g->cap ? g->cap * 2 : 16;
        struct cuda_graph_entry *e = realloc(g->e, sizeof *e * (size_t)cap);
        if (!e)
            return NULL;
        memset(e + g->cap, 0, sizeof *e * (size_t)(cap - g->cap));
        g->e = e;
        g->cap = cap;
        return &g->e[g->n++];
    }
    struct cuda_graph_entry *old = &g->e[0];
    for (int i = 1; i < g->n; i++)
        if (g->e[i].used < old->used)
            old = &g->e[i];
    entry_free(old);
    return old;
}

/* The recording pass's notes become what the capture must reproduce. */
static int keep_want(struct cuda_graphs *g)
{
    if (g->rec_len > g->want_cap) {
        unsigned char *w = realloc(g->want, g->rec_len);
        if (!w)
            return -1;
        g->want = w;
        g->want_cap = g->rec_len;
    }
    memcpy(g->want, g->rec, g->rec_len);
    g->want_len = g->rec_len;
    return 0;
}

/* One log line per capture: how big the graph is and whether the
 * kernels' programmatic launches became programmatic edges (they keep the
 * overlap of each kernel's prologue with the one before). */
static void describe(cudaGraph_t graph, size_t rec_len)
{
    size_t nodes = 0, edges = 0, prog = 0;
    if (cudaGraphGetNodes(graph, NULL, &nodes) != cudaSuccess ||
        cudaGraphGetEdges(graph, NULL, NULL, NULL, &edges) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    cudaGraphNode_t *from = malloc(sizeof *from * (edges + 1));
    cudaGraphNode_t *to = malloc(sizeof *to * (edges + 1));
    cudaGraphEdgeData *data = malloc(sizeof *data * (edges + 1));
    if (from && to && data && cudaGraphGetEdges(graph, from, to, data, &edges) == cudaSuccess)
        for (size_t i = 0; i < edges; i++)
            prog += data[i].type == cudaGraphDependencyTypeProgrammatic;
    (void)cudaGetLastError();
    free(from);
    free(to);
    free(data);
    zl_cuda_host->log(ZL_LOG_INFO, "cuda", "graph captured: %zu nodes, %zu edges (%zu "
                      "programmatic), %zu bytes of notes", nodes, edges, prog, rec_len);
}

/* The copy nodes of a captured graph that read the staging buffer it was
 * captured with (the step's inputs); NULL on success, else why not. */
static const char *stage_copies(const struct cuda_graphs *g, cudaGraph_t graph,
                                struct cuda_graph_copy **out, int *n_out)
{
    size_t n = 0;
    if (cudaGraphGetNodes(graph, NULL, &n) != cudaSuccess)
        return "cudaGraphGetNodes failed";
    cudaGraphNode_t *nodes = malloc(sizeof *nodes * (n + 1));
    struct cuda_graph_copy *c = malloc(sizeof *c * (n + 1));
    const char *why = !nodes || !c ? "out of host memory" : NULL;
    int k = 0;
    if (!why && cudaGraphGetNodes(graph, nodes, &n) != cudaSuccess)
        why = "cudaGraphGetNodes failed";
    for (size_t i = 0; !why && i < n; i++) {
        enum cudaGraphNodeType t;
        if (cudaGraphNodeGetType(nodes[i], &t) != cudaSuccess) {
            why = "cudaGraphNodeGetType failed";
            break;
        }
        if (t != cudaGraphNodeTypeMemcpy)
            continue;
        struct cudaMemcpy3DParms p;
        if (cudaGraphMemcpyNodeGetParams(nodes[i], &p) != cudaSuccess) {
            why = "cudaGraphMemcpyNodeGetParams failed";
            break;
        }
        const char *src = p.srcPtr.ptr;
        if (src < g->stage || src >= g->stage + g->stage_cap)
            continue;
        c[k++] = (struct cuda_graph_copy){nodes[i], p, (size_t)(src - g->stage)};
    }
    free(nodes);
    if (why) {
        free(c);
        return why;
    }
    *out = c;
    *n_out = k;
    return NULL;
}

/* End of a capture pass: the graph instantiated, kept and launched; on any
 * failure the pass is run again directly (*again). */
static int end_capture(struct zl_bctx *ctx, int *again)
{
    struct cuda_graphs *g = &ctx->gr;
    cudaGraph_t graph = NULL;
    cudaError_t ce = cudaStreamEndCapture(ctx->stream, &graph);
    note_buffers(ctx);
    const char *why = NULL;
    if (ce != cudaSuccess)
        why = cudaGetErrorString(ce);
    else if (g->rec_oom || g->rec_len != g->want_len || memcmp(g->rec, g->want, g->rec_len))
        why = "the captured pass differs from its recording";
    cudaGraphExec_t exec = NULL;
    if (!why && g->captures == 0)
        describe(graph, g->rec_len);
    if (!why && (ce = cudaGraphInstantiate(&exec, graph, 0)) != cudaSuccess)
        why = cudaGetErrorString(ce);
    struct cuda_graph_copy *copies = NULL;
    int n_copies = 0;
    if (!why)
        why = stage_copies(g, graph, &copies, &n_copies);
    (void)cudaGetLastError(); /* a failed capture leaves its error sticky for the next call */
    struct cuda_graph_entry *e = why ? NULL : entry_new(g);
    unsigned char *rec = e ? malloc(g->rec_len) : NULL;
    if (!why && !rec)
        why = "out of host memory";
    if (why) {
        if (exec)
            ZL_CUDA_WARN(cudaGraphExecDestroy(exec));
        if (graph)
            ZL_CUDA_WARN(cudaGraphDestroy(graph));
        free(copies);
        if (e) /* an empty slot left: drop it */
            *e = g->e[--g->n];
        zl_cuda_host->log(ZL_LOG_WARN, "cuda", "graph capture failed (%s); this instance "
                          "runs without graphs from now on", why);
        g->off = 1;
        *again = 1;
        return ZL_OK;
    }
    memcpy(rec, g->rec, g->rec_len);
    *e = (struct cuda_graph_entry){XXH3_64bits(rec, g->rec_len), 0, rec, g->rec_len, exec, graph,
                                   copies, n_copies, g->cur};
    g->captures++;
    return launch(ctx, e);
}

/* Ends a bracket that will launch nothing: an open capture is dropped. */
void cuda_graph_abandon(struct zl_bctx *ctx)
{
    if (ctx->gr.mode == CUDA_GRAPH_CAPTURE) {
        cudaGraph_t graph = NULL;
        if (cudaStreamEndCapture(ctx->stream, &graph) == cudaSuccess && graph)
            ZL_CUDA_WARN(cudaGraphDestroy(graph));
        (void)cudaGetLastError();
    }
    if (ctx->gr.mode != CUDA_GRAPH_OFF)
        bracket_end(ctx);
}

int cuda_graph_end(struct zl_bctx *ctx, int ok)
{
    struct cuda_graphs *g = &ctx->gr;
    const enum cuda_graph_mode m = g->mode;
    if (m == CUDA_GRAPH_OFF)
        return zl_cuda_host->error(ZL_EINVAL, "cuda graph_end: no graph_begin before it");
    if (!ok) {
        cuda_graph_abandon(ctx);
        return ZL_OK;
    }
    int rc = ZL_OK, again = 0;
    if (m == CUDA_GRAPH_DRY && g->direct) { /* no lookup, no capture: rerun directly */
        g->direct_steps++;
        again = 1;
    } else if (m == CUDA_GRAPH_DRY) {
        note_buffers(ctx);
        const uint64_t h = XXH3_64bits(g->rec, g->rec_len);
        struct cuda_graph_entry *e = g->rec_oom ? NULL : find(g, h);
        if (e) {
            g->replays++;
            rc = launch(ctx, e);
        } else if (!g->rec_oom && seen_before(g, h) && keep_want(g) == 0) {
            pass_start(ctx, CUDA_GRAPH_CAPTURE);
            cudaError_t ce = cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal);
            if (ce == cudaSuccess)
                return ZL_GRAPH_AGAIN;
            (void)cudaGetLastError();
            zl_cuda_host->log(ZL_LOG_WARN, "cuda", "graph capture did not start (%s); this "
                              "instance runs without graphs from now on", cudaGetErrorString(ce));
            g->off = 1;
            again = 1;
        } else {
            again = 1;
        }
    } else if (m == CUDA_GRAPH_CAPTURE) {
        rc = end_capture(ctx, &again);
    } else { /* EAGER: the direct rerun is queued */
        g->eager++;
    }
    if (again && rc == ZL_OK) {
        pass_start(ctx, CUDA_GRAPH_EAGER);
        return ZL_GRAPH_AGAIN;
    }
    bracket_end(ctx);
    return rc;
}

void cuda_graph_free(struct zl_bctx *ctx)
{
    struct cuda_graphs *g = &ctx->gr;
    if (g->captures || g->replays || g->eager) {
        char chain[96] = "";
        if (g->direct_steps)
            snprintf(chain, sizeof chain, " (%lld of them by the decode chain, which runs only "
                     "directly)", g->direct_steps);
        zl_cuda_host->log(ZL_LOG_INFO, "cuda", "graphs: %lld captured, %lld steps replayed, %lld "
                          "run directly%s", g->captures, g->replays, g->eager, chain);
    }
    cuda_graph_abandon(ctx);
    drop_all(g);
    free(g->e);
    free(g->rec);
    free(g->want);
    for (int i = 0; i < 2; i++) {
        ZL_CUDA_WARN(cudaFreeHost(g->stages[i]));
        if (g->done[i])
            ZL_CUDA_WARN(cudaEventDestroy(g->done[i]));
    }
    memset(g, 0, sizeof *g);
}
