/* Decode steps through the backend's device graphs (backend.h graph_begin /
 * graph_end), padded to a few batch sizes (DESIGN §8).
 *
 * A graph replays one batch shape, so a decode step of n sequences runs as
 * a step of zl_engine_graph_size(n) rows: the real rows first, then pad
 * rows that each decode one token at position 0 of a KV block the engine
 * holds for them alone (kv_len 1, so they attend only to what they wrote).
 * Every op a model runs is row-wise or per sequence, so pad rows change no
 * real row's arithmetic; their logits are computed and never sampled.  A
 * draining batch (32, 31, ... sequences) then keeps replaying the graph of
 * its size class instead of paying a recording pass for a new size every
 * step. */
#include <stdlib.h>
#include <string.h>
#include <zlight/log.h>
#include "engine-impl.h"

int32_t zl_engine_graph_size(int32_t n, int32_t max)
{
    if (n < 1 || n >= max)
        return n;
    /* 1, 2, 4, 8, then multiples of 8: a pad row costs its share of the
     * step's weight reads (nothing while weights dominate) and its few
     * attention reads; fewer classes mean more steps replay */
    int32_t s = n <= 8 ? 1 : (n + 7) / 8 * 8;
    while (s < n)
        s *= 2;
    return s < max ? s : max;
}

int zl_engine_graph_init(struct zl_engine *e)
{
    if (!e->graphs)
        return ZL_OK;
    zl_kv_seq_init(&e->pad.seq, 0);
    if (zl_kv_seq_grow(e->kv, &e->pad.seq, 1) < 0) {
        ZL_WARN("engine", "no KV block left for the pad rows of device graphs: graphs are off");
        e->graphs = false;
        return ZL_OK;
    }
    e->pad.held = 1;
    return ZL_OK;
}

void zl_engine_graph_free(struct zl_engine *e)
{
    if (e->pad.held)
        zl_kv_seq_release(e->kv, &e->pad.seq);
    e->pad.held = 0;
    free(e->pad.buf);
    e->pad.buf = NULL;
    e->pad.cap = 0;
}

/* Whether a decode step of size class s is worth a bracket: the class
 * repeats the last decode step's (a steady batch) or has replayed before.
 * A batch whose class changes every step would pay the recording pass for
 * nothing. */
static bool worth(struct zl_engine *e, int32_t s)
{
    bool known = s < 64 * 64 && (e->graph_ok[s / 64] >> (s % 64) & 1);
    bool steady = s == e->graph_last_n;
    e->graph_last_n = s;
    return known || steady;
}

int32_t zl_engine_graph_rows(struct zl_engine *e, const struct zl_sched_batch *b)
{
    /* a decode step: every row is one sequence's next token, and scored */
    if (!e->graphs || b->n_tokens < 1 || b->n_tokens != b->attn.n_seqs ||
        b->n_logits != b->n_tokens)
        return 0;
    int32_t max = e->p.sched.max_num_seqs;
    if (e->p.sched.max_num_batched_tokens < max)
        max = e->p.sched.max_num_batched_tokens;
    int32_t s = zl_engine_graph_size(b->n_tokens, max);
    return worth(e, s) ? s : 0;
}

int zl_engine_graph_pad(struct zl_engine *e, const struct zl_sched_batch *b, int32_t rows,
                        struct zl_forward_batch *fb)
{
    int32_t n = b->n_tokens, w = b->attn.max_blocks;
    if (rows == n)
        return ZL_OK;
    if (w < 1)
        return zl_error(ZL_EINVAL, "engine: a decode step with no block table");
    /* tokens, positions, kv_len, slot, logits_rows, token_from [rows];
     * q_start [rows + 1]; block_table [rows * w] */
    size_t need = (size_t)rows * (7 + (size_t)w) + 1;
    if (need > e->pad.cap) {
        int32_t *x = realloc(e->pad.buf, sizeof(int32_t) * need);
        if (!x)
            return zl_error(ZL_ENOMEM, "engine: out of memory padding a step to %d rows", rows);
        e->pad.buf = x;
        e->pad.cap = need;
    }
    int32_t *tok = e->pad.buf, *pos = tok + rows, *kvl = pos + rows, *slot = kvl + rows,
            *lrow = slot + rows, *from = lrow + rows, *qs = from + rows, *bt = qs + rows + 1;
    const struct zl_attn_batch *a = &b->attn;
    int32_t blk = e->pad.seq.blocks[0];
    memcpy(tok, b->tokens, sizeof(int32_t) * (size_t)n);
    memcpy(pos, b->positions, sizeof(int32_t) * (size_t)n);
    memcpy(kvl, a->kv_len, sizeof(int32_t) * (size_t)n);
    memcpy(slot, a->slot, sizeof(int32_t) * (size_t)n);
    memcpy(lrow, b->logits_rows, sizeof(int32_t) * (size_t)n);
    memcpy(qs, a->q_start, sizeof(int32_t) * (size_t)(n + 1));
    memcpy(bt, a->block_table, sizeof(int32_t) * (size_t)n * (size_t)w);
    if (fb->token_from)
        memcpy(from, fb->token_from, sizeof(int32_t) * (size_t)n);
    for (int32_t i = n; i < rows; i++) {
        tok[i] = b->tokens[n - 1] >= 0 ? b->tokens[n - 1] : 0; /* any valid id (not a placeholder) */
        from[i] = -1;
        pos[i] = 0;
        kvl[i] = 1;
        /* every pad row writes the same slot: the same token at the same
         * position, so the same bytes, whatever order they land in */
        slot[i] = blk * e->cache.block_size;
        lrow[i] = i;
        qs[i + 1] = i + 1;
        for (int32_t j = 0; j < w; j++)
            bt[(size_t)i * (size_t)w + (size_t)j] = blk;
    }
    fb->n_tokens = rows;
    fb->tokens = tok;
    fb->positions = pos;
    fb->attn = (struct zl_attn_batch){.n_seqs = rows, .max_blocks = w, .q_start = qs,
                                      .kv_len = kvl, .block_table = bt, .slot = slot};
    fb->n_logits = rows;
    fb->logits_rows = lrow;
    if (fb->token_from)
        fb->token_from = from;
    e->graph_pad_steps++;
    e->graph_pad_rows += rows - n;
    return ZL_OK;
}

int zl_engine_graph_forward(struct zl_engine *e, const struct zl_forward_batch *fb,
                            struct zl_tensor *lt)
{
    const struct zl_engine_params *p = &e->p;
    const struct zl_backend_ops *be = p->backend;
    if (be->graph_begin(p->bctx) < 0) {
        ZL_WARN("engine", "decode steps run without device graphs from now on: %s",
                zl_last_error());
        e->graphs = false;
        return p->model_ops->forward(p->model, fb, lt);
    }
    double t0 = e->prof.on ? zl_engine_now() : 0.0;
    int rc = p->model_ops->forward(p->model, fb, lt);
    double t1 = e->prof.on ? zl_engine_now() : 0.0;
    int g = be->graph_end(p->bctx, rc == ZL_OK);
    if (rc == ZL_OK && g == ZL_OK) { /* the recording matched a captured graph */
        int32_t s = fb->n_tokens;
        e->graph_steps++;
        if (s < 64 * 64)
            e->graph_ok[s / 64] |= 1ull << (s % 64);
        if (e->prof.on) {
            e->prof.replays++;
            e->prof.record += t1 - t0;
            e->prof.launch += zl_engine_now() - t1;
        }
    }
    for (int pass = 0; g == ZL_GRAPH_AGAIN; pass++) {
        if (pass == 2) { /* a recording, a capture that failed, a direct run: never more */
            be->graph_end(p->bctx, 0);
            return zl_error(ZL_EINVAL, "engine: the backend asked for a fourth forward of one "
                            "step");
        }
        rc = p->model_ops->forward(p->model, fb, lt);
        g = be->graph_end(p->bctx, rc == ZL_OK);
    }
    return rc < 0 ? rc : g;
}
