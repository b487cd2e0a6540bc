/* Async scheduling: step N+1 is scheduled and queued before step N's
 * sampled tokens are back, so the device goes from N's sample straight
 * into N+1's first kernel instead of idling through the host's turn
 * (waking, streaming N's tokens, scheduling, queueing: 0.02-0.1 ms a step
 * on an H100, BENCHMARKS.md).  A step (engine-step.c zl_engine_iterate):
 *   1. each live sequence of the outstanding step N that goes on gets a
 *      placeholder token, -1 (zl_engine_async_hold), so the scheduler
 *      plans it one token longer;
 *   2. N+1 is scheduled and queued; a row holding a placeholder reads N's
 *      token on the device (zl_forward_batch.token_from, the backend's
 *      upload_tokens);
 *   3. N's tokens are waited for: each overwrites its placeholder, is
 *      streamed, and finished sequences are retired;
 *   4. N+1 is committed (so the prefix cache hashes known tokens only) and
 *      its sample queued: it is the outstanding step now.
 * A sequence that stops at N on a token (EOS, a stop id or string) has a
 * row in N+1 whose token is dropped.  Its KV blocks go back at once: every
 * later use of them is queued after N+1's write.  One that ends at N by
 * length gets no placeholder, so no row.  Penalties and min_tokens read
 * the sequence when N+1's sample is built, after step 3: no fallback. */
#include <stdlib.h>
#include <zlight/log.h>
#include "engine-impl.h"

int zl_engine_async_init(struct zl_engine *e)
{
    struct eng_async *a = &e->as;
    const struct zl_backend_ops *be = e->p.backend;
    const struct zl_model_ops *mo = e->p.model_ops;
    for (int k = 0; k < 2; k++)
        if (!(a->seqs[k] = calloc((size_t)e->p.sched.max_num_seqs, sizeof(*a->seqs[k]))) ||
            !(a->score[k] = calloc((size_t)e->p.sched.max_num_seqs, sizeof(*a->score[k]))))
            return zl_error(ZL_ENOMEM, "engine: out of memory");
    if (!e->p.async_scheduling || !e->ds.on)
        return ZL_OK;
    const char *why = NULL;
    if (!ZL_BACKEND_HAS(be, upload_tokens) || !be->sample_queue || !be->sample_wait ||
        !be->upload_tokens)
        why = "the backend has no sample_queue/sample_wait/upload_tokens";
    else if (!ZL_MODEL_HAS(mo, flags) || !(mo->flags & ZL_MODEL_TOKENS_FROM))
        why = "the model does not read token ids from the sampler";
    if (why) {
        ZL_INFO("engine", "async scheduling off: %s", why);
        return ZL_OK;
    }
    if (!(a->from = malloc(sizeof(int32_t) * (size_t)e->p.sched.max_num_batched_tokens)))
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    a->on = true;
    e->pace = (struct eng_pace){.on = e->p.late_scheduling != 0, .rows_new = -1, .rows_out = -1,
                                .rows_last = -1};
    return ZL_OK;
}

void zl_engine_async_free(struct zl_engine *e)
{
    struct eng_async *a = &e->as;
    zl_engine_dsample_wait(e);      /* the backend must not hold a batch for a freed engine */
    for (int k = 0; k < 2; k++) {
        free(a->seqs[k]);
        free(a->score[k]);
    }
    free(a->from);
    *a = (struct eng_async){0};
}

/* Whether q's next token ends it by length (sample_row's rule). */
static int ends_by_length(const struct zl_engine *e, const struct eng_seq *q)
{
    int32_t n_out = q->s.n_tokens - q->s.n_prompt + 1;
    int32_t max = q->req->sp.max_tokens;
    return (max > 0 && n_out >= max) || q->s.n_tokens + 1 >= e->p.sched.max_model_len;
}

int zl_engine_async_hold(struct zl_engine *e)
{
    struct eng_async *a = &e->as;
    for (int32_t i = 0; i < a->n[a->cur]; i++) {
        struct eng_seq *q = a->seqs[a->cur][i];
        if (!q || ends_by_length(e, q))
            continue;
        int rc = zl_sched_append(e->sched, &q->s, -1);
        if (rc < 0)
            return rc;
        q->held = q->s.n_tokens - 1;
    }
    return ZL_OK;
}

const int32_t *zl_engine_async_from(struct zl_engine *e, const struct zl_sched_batch *b)
{
    struct eng_async *a = &e->as;
    if (!e->ds.queued)
        return NULL;
    int any = 0;
    for (int32_t s = 0; s < b->n_seqs; s++) {
        const struct eng_seq *q = b->seqs[s]->user;
        for (int32_t r = b->attn.q_start[s]; r < b->attn.q_start[s + 1]; r++) {
            int held = q->held >= 0 && b->positions[r] == q->held;
            a->from[r] = held ? q->row[a->cur] : -1;
            any |= held;
        }
    }
    return any ? a->from : NULL;
}

void zl_engine_async_keep(struct zl_engine *e, const struct zl_sched_batch *b)
{
    struct eng_async *a = &e->as;
    int k = a->cur ^ 1;
    for (int32_t i = 0; i < b->n_logits; i++) {
        struct eng_seq *q = b->logits_seqs[i]->user;
        a->seqs[k][i] = q;
        q->row[k] = i;
    }
    a->n[k] = b->n_logits;
    for (int32_t i = 0; i < b->n_score; i++) {
        int32_t row = b->logits_rows[b->n_logits + i];
        a->score[k][i] = (struct eng_score){.q = b->logits_seqs[b->n_logits + i]->user,
                                            .pos = b->positions[row]};
    }
    a->n_score[k] = b->n_score;
}

void zl_engine_async_forget(struct zl_engine *e, struct eng_seq *q)
{
    for (int k = 0; k < 2; k++) {
        if (q->row[k] >= 0) {
            e->as.seqs[k][q->row[k]] = NULL;
            q->row[k] = -1;
        }
        for (int32_t i = 0; i < e->as.n_score[k]; i++)
            if (e->as.score[k][i].q == q)
                e->as.score[k][i].q = NULL;
    }
}
