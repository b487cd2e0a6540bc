/* decoder_layers (backend.h, API minor 7): a one-token step of one
 * sequence through every layer in one kernel (decode-chain.cu), or
 * ZL_DECLINED for what that kernel does not take, so the model runs its
 * layers op by op:
 *   - more than one sequence or token; biases; partial rotary;
 *   - weights other than contiguous bf16/f16 of the activations' dtype,
 *     norm weights other than f32;
 *   - a graph capture pass (never reached: see below);
 *   - a device or shape without a plan (sm_90+, head_dim 64 or 128, up to
 *     8 query heads a kv head);
 *   - ZL_CUDA_DECODE_CHAIN=0 in the environment (an A/B in one build).
 * Its launch depends on the step's data (the context length plans the
 * attention split; the slot is an argument), so a graph of it would
 * replay once: in a graph bracket's recording pass the step is marked to
 * run directly (cuda_graph_run_direct) and the chain runs in that rerun.
 * One kernel a step leaves nothing for a graph to save. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

static int chain_off(void)
{
    static int off = -1;
    if (off < 0) {
        const char *e = getenv("ZL_CUDA_DECODE_CHAIN");
        off = e && *e == '0';
    }
    return off;
}

/* t is a contiguous [rows, cols] (or [cols] when rows is 0) of dt on the
 * instance's device, 16-byte aligned. */
static int dense(const struct zl_bctx *ctx, const struct zl_tensor *t, enum zl_dtype dt,
                 int64_t rows, int64_t cols)
{
    size_t es = cuda_dtype_size(dt);
    if (!t || !t->data || t->dtype != dt || t->device != ctx->device || ((uintptr_t)t->data & 15))
        return 0;
    if (rows == 0)
        return t->n_dims == 1 && t->ne[0] == cols && t->nb[0] == (int64_t)es;
    return t->n_dims == 2 && t->ne[0] == rows && t->ne[1] == cols && t->nb[1] == (int64_t)es &&
           t->nb[0] == cols * (int64_t)es;
}

/* The shape of the step when the kernel could take it, else 0. */
static int chain_shape(const struct zl_bctx *ctx, const struct zl_decoder_stack *s,
                       struct zl_cuda_chain_shape *sh)
{
    const struct zl_rope_kv *r = s->r;
    const struct zl_attn_batch *b = r->batch;
    const struct zl_kv_cache *c = r->cache;
    const struct zl_tensor *x = s->x;
    /* anything missing or odd: declined, and the per-layer ops name it */
    if (!b || !c || !r->q || !r->k || !r->v || !r->positions || !r->rope || !s->qkv || !s->att ||
        !s->a || !b->q_start || !b->kv_len || !b->slot || b->n_seqs != 1 || b->q_start[0] != 0 || b->q_start[1] != 1 || r->q->n_dims != 3 ||
        r->k->n_dims != 3 || x->n_dims != 2 || x->ne[0] != 1 ||
        (x->dtype != ZL_DTYPE_BF16 && x->dtype != ZL_DTYPE_F16) || c->dtype != x->dtype ||
        c->n_layers != s->n_layers || (c->block_size & (c->block_size - 1)))
        return 0;
    *sh = (struct zl_cuda_chain_shape){
        .n_layers = s->n_layers, .d = (int32_t)x->ne[1], .f = (int32_t)s->a->ne[s->a->n_dims - 1],
        .n_heads = (int32_t)r->q->ne[1], .n_kv_heads = (int32_t)r->k->ne[1],
        .head_dim = (int32_t)r->q->ne[2], .kv_len = b->kv_len[0]};
    const int64_t hd = sh->head_dim, qd = sh->n_heads * hd, kvd = sh->n_kv_heads * hd;
    if (r->rope->rot_dim != hd || c->head_dim != hd || c->n_kv_heads != sh->n_kv_heads ||
        !dense(ctx, x, x->dtype, 1, sh->d) || !dense(ctx, s->qkv, x->dtype, 1, qd + 2 * kvd) ||
        !dense(ctx, s->att, x->dtype, 1, qd) || !dense(ctx, s->a, x->dtype, 1, sh->f))
        return 0;
    for (int32_t i = 0; i < s->n_layers; i++) {
        const struct zl_decoder_layer *l = &s->layers[i];
        if (!dense(ctx, l->attn_norm, ZL_DTYPE_F32, 0, sh->d) ||
            !dense(ctx, l->ffn_norm, ZL_DTYPE_F32, 0, sh->d) ||
            !dense(ctx, l->wqkv, x->dtype, qd + 2 * kvd, sh->d) ||
            !dense(ctx, l->wo, x->dtype, sh->d, qd) ||
            !dense(ctx, l->w_gu, x->dtype, 2 * (int64_t)sh->f, sh->d) ||
            !dense(ctx, l->w_down, x->dtype, sh->d, sh->f))
            return 0;
    }
    return 1;
}

#ifdef ZL_GEMV_TUNING
/* Tuning builds: ZL_CHAIN_TRACE=N traces the N-th call (globaltimer stamps
 * per CTA, layer and phase: entry, input ready, done, and the time spent
 * waiting for tiles) and prints where the
 * time went; ZL_CHAIN_DRY=1 skips the math (the weight stream and the
 * phase waits alone; wrong tokens); ZL_CHAIN_SLOTS=N (decode-chain.cu). */
static long env_num(const char *k)
{
    const char *e = getenv(k);
    return e ? strtol(e, NULL, 10) : 0;
}

/* The bytes a layer's phase reads from HBM: its weights (attention: its
 * K and V), elements of 2 bytes (the chain takes bf16 and f16). */
static double phase_bytes(const struct zl_cuda_chain_shape *sh, int ph)
{
    const double d = sh->d, f = sh->f, q = (double)sh->n_heads * sh->head_dim,
                 kv = (double)sh->n_kv_heads * sh->head_dim;
    const double el[5] = {(q + 2 * kv) * d, 2 * kv * sh->kv_len, d * q, 2 * f * d, d * f};
    return 2 * el[ph];
}

static void trace_report(const unsigned long long *t, const struct zl_cuda_chain_plan *p,
                         const struct zl_cuda_chain_shape *sh)
{
    static const char *const names[5] = {"qkv", "attention", "o", "gate/up", "down"};
    const int g = p->grid, L = sh->n_layers;
    unsigned long long t0 = ~0ull, t1 = 0;
    for (int ph = 0; ph < 5; ph++) {
        double wait = 0, work = 0, span = 0, starved = 0;
        long n = 0;
        for (int l = 0; l < L; l++) {
            unsigned long long lo = ~0ull, hi = 0;
            for (int c = 0; c < g; c++) {
                const unsigned long long *e = t + (((size_t)c * (size_t)L + (size_t)l) * 5 + (size_t)ph) * ZL_CHAIN_STAMPS;
                if (!e[0])
                    continue;
                wait += (double)(e[1] - e[0]), work += (double)(e[2] - e[1]), starved += (double)e[3], n++;
                lo = e[1] < lo ? e[1] : lo, hi = e[2] > hi ? e[2] : hi;
                t0 = e[0] < t0 ? e[0] : t0, t1 = e[2] > t1 ? e[2] : t1;
            }
            span += hi > lo ? (double)(hi - lo) : 0;
        }
        /* bytes over span: the phase's rate from its first input to its
         * last tile (tiles already in the rings at its start count too) */
        const double mb = phase_bytes(sh, ph) / 1e6;
        fprintf(stderr, "chain trace: %-9s CTAs/layer %5.1f  wait %7.2f us  work %7.2f us (%6.2f waiting for tiles)"
                "  span %7.2f us (means)  %7.1f MB  %5.2f TB/s over the span\n", names[ph], (double)n / L,
                n ? wait / n / 1e3 : 0, n ? work / n / 1e3 : 0, n ? starved / n / 1e3 : 0, span / L / 1e3, mb,
                span > 0 ? mb * L / (span / 1e3) : 0);
    }
    double stall = 0;
    for (int c = 0; c < g; c++)
        stall += (double)t[(size_t)g * (size_t)L * 5 * ZL_CHAIN_STAMPS + (size_t)c * 2];
    fprintf(stderr, "chain trace: kernel %.1f us over %d layers (%.2f us a layer), %d CTAs, %d slots of %d KB; "
            "producer waited %.1f us a CTA for a free slot\n", (double)(t1 - t0) / 1e3, L,
            (double)(t1 - t0) / 1e3 / L, g, p->slots, p->slot_bytes >> 10, stall / g / 1e3);
}
#endif

int cuda_decoder_layers(struct zl_bctx *ctx, const struct zl_decoder_stack *s)
{
    static const char op[] = "decoder_layers";
    if (!s || !s->r || !s->layers || !s->x || s->n_layers < 1)
        return zl_cuda_host->error(ZL_EINVAL, "cuda %s: needs layers, x and rope/cache arguments",
                                   op);
    struct zl_cuda_chain_shape sh;
    struct zl_cuda_chain_plan plan;
    if (chain_off() || ctx->gr.mode == CUDA_GRAPH_CAPTURE || !chain_shape(ctx, s, &sh))
        return ZL_DECLINED;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    if (!zl_cuda_decode_chain_plan(&sh, &plan))
        return ZL_DECLINED;
    if (cuda_graph_dry(ctx)) {
        cuda_graph_run_direct(ctx);
        return ZL_OK;
    }

    /* rope_kv_write's own checks and uploads: positions, inv_freq, batch */
    struct zl_cuda_gemv_rope g;
    struct zl_cuda_batch db = {0};
    int rc = cuda_rope_kv_batch_args(ctx, op, s->r, &g, &db);
    if (rc < 0)
        return rc;

    /* the weight table, built in a host buffer kept across steps (cuda_upload
     * copies it only when it changed) */
    if (s->n_layers > ctx->chain_host_n) {
        struct zl_cuda_chain_layer *t = realloc(ctx->chain_host, (size_t)s->n_layers * sizeof *t);
        if (!t)
            return zl_cuda_host->error(ZL_ENOMEM, "cuda %s: a table of %d layers", op,
                                       (int)s->n_layers);
        ctx->chain_host = t;
        ctx->chain_host_n = s->n_layers;
    }
    for (int32_t i = 0; i < s->n_layers; i++) {
        const struct zl_decoder_layer *l = &s->layers[i];
        ctx->chain_host[i] = (struct zl_cuda_chain_layer){l->wqkv->data, l->wo->data,
                                                          l->w_gu->data, l->w_down->data,
                                                          l->attn_norm->data, l->ffn_norm->data};
    }
    struct cuda_part part = {.src = ctx->chain_host,
                             .bytes = (size_t)s->n_layers * sizeof *ctx->chain_host};
    void *dev_layers;
    if ((rc = cuda_upload(ctx, &ctx->chain, op, &part, 1, &dev_layers)) < 0)
        return rc;
    size_t part_bytes = (plan.part_bytes + 255) & ~(size_t)255;
    size_t need = part_bytes + plan.count_ints * sizeof(int32_t);
    if ((rc = cuda_reserve(ctx, &ctx->chain_scratch, &ctx->chain_scratch_cap, need, op)) < 0)
        return rc;

    struct zl_cuda_chain c = {
        .shape = sh, .dtype = s->x->dtype, .layers = dev_layers, .x = s->x->data,
        .qkv = s->qkv->data, .att = s->att->data, .a = s->a->data, .part = ctx->chain_scratch,
        .count = (int32_t *)((char *)ctx->chain_scratch + part_bytes), .eps = s->eps,
        .scale = s->attn_scale, .attn_factor = g.attn_factor, .pos = g.pos,
        .inv_freq = g.inv_freq, .cache = g.cache, .table = db.block_table,
        .slot = s->r->batch->slot[0]};
#ifdef ZL_GEMV_TUNING
    static long calls;
    static void *tbuf;
    /* ZL_CHAIN_DRY=1: every phase; ZL_CHAIN_DRY_MASK=bits: phases by number
     * (qkv 1, attention 2, o 4, gate/up 8, down 16; attention waits on the
     * qkv rows, so a dry qkv makes it dry too) */
    c.dry = env_num("ZL_CHAIN_DRY") == 1 ? 31 : (int)env_num("ZL_CHAIN_DRY_MASK") & 31;
    c.dry |= (c.dry & 1) << 1;
    const int traced = ++calls == env_num("ZL_CHAIN_TRACE");
    size_t tb = zl_cuda_decode_chain_trace_bytes(&plan, sh.n_layers);
    if (traced) {
        ZL_CUDA_TRY(cudaMalloc(&tbuf, tb));
        ZL_CUDA_TRY(cudaMemsetAsync(tbuf, 0, tb, ctx->stream));
        c.trace = tbuf;
    }
#endif
    ZL_CUDA_TRY(zl_cuda_decode_chain(&c, &plan, ctx->stream));
#ifdef ZL_GEMV_TUNING
    if (traced) {
        unsigned long long *h = malloc(tb);
        ZL_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
        if (h && cudaMemcpy(h, tbuf, tb, cudaMemcpyDeviceToHost) == cudaSuccess)
            trace_report(h, &plan, &sh);
        free(h);
        ZL_CUDA_WARN(cudaFree(tbuf));
    }
#endif
    return ZL_OK;
}
