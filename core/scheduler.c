/* Iteration-level scheduler (DESIGN §4).  A step gives its token budget to
 * running decodes first, then to chunks of running (partial) prefills,
 * then admits waiting sequences in order while budget, max_num_seqs and KV
 * blocks last.  When a running sequence needs a block and none is left,
 * the newest running sequence is preempted by recompute: its blocks go
 * back (the full ones stay in the prefix cache, so the recompute is
 * usually a cache hit) and it waits at the head of the queue, to come back
 * first.  A sequence that cannot fit even alone is dropped (the caller
 * finishes it with "length"), so exhaustion never stalls the engine. */
#include <stdlib.h>
#include <string.h>
#include <zlight/scheduler.h>

struct queue {
    struct zl_sched_seq *head, *tail;
    int32_t n;
};

struct zl_sched {
    struct zl_sched_params p;
    struct zl_kv *kv;
    int32_t bs;
    int32_t cap_tokens;             /* most tokens one sequence can ever hold */
    struct queue waiting, running;  /* running in admission order: the tail is preempted first */
    uint64_t order;

    /* the current step */
    struct zl_sched_seq **step;     /* [max_num_seqs] scheduled, in order */
    int32_t n_step;
    int32_t budget;
    struct zl_sched_seq **dropped;  /* [max_num_seqs] */
    struct zl_sched_seq **snap;     /* [max_num_seqs] running at the start of a pass */
    struct zl_sched_batch batch;
    int32_t *tokens, *positions, *slot;     /* [max_num_batched_tokens] */
    int32_t *q_start;               /* [max_num_seqs + 1] */
    int32_t *kv_len, *logits_rows;  /* [max_num_seqs] */
    struct zl_sched_seq **logits_seqs;
    int32_t *score_rows;            /* [max_num_seqs] this step's score rows, gathered */
    struct zl_sched_seq **score_seqs;
    int32_t *table;                 /* [max_num_seqs, table_cols] */
    int32_t table_cols;

    struct zl_sched_stats st;
};

struct zl_sched_params zl_sched_default_params(void)
{
    struct zl_sched_params p = {
        .max_num_batched_tokens = 2048, .max_num_seqs = 256, .max_model_len = 4096,
        .max_prefill_chunk = 0, .enable_prefix_caching = 1,
    };
    return p;
}

void zl_sched_free(struct zl_sched *s)
{
    if (!s)
        return;
    struct queue *qs[2] = {&s->waiting, &s->running};
    for (int i = 0; i < 2; i++)
        while (qs[i]->head)
            zl_sched_remove(s, qs[i]->head);
    free(s->step);
    free(s->dropped);
    free(s->snap);
    free(s->tokens);
    free(s->positions);
    free(s->slot);
    free(s->q_start);
    free(s->kv_len);
    free(s->logits_rows);
    free(s->logits_seqs);
    free(s->score_rows);
    free(s->score_seqs);
    free(s->table);
    free(s);
}

int zl_sched_create(const struct zl_sched_params *p, struct zl_kv *kv, struct zl_sched **out)
{
    *out = NULL;
    if (!p || !kv || p->max_num_batched_tokens < 1 || p->max_num_seqs < 1 || p->max_model_len < 2 ||
        p->max_prefill_chunk < 0)
        return zl_error(ZL_EINVAL, "scheduler: max_num_batched_tokens, max_num_seqs must be >= 1,"
                        " max_model_len >= 2, max_prefill_chunk >= 0");
    struct zl_sched *s = calloc(1, sizeof(*s));
    if (!s)
        return zl_error(ZL_ENOMEM, "scheduler: out of memory");
    s->p = *p;
    s->kv = kv;
    s->bs = zl_kv_block_size(kv);
    int64_t cap = (int64_t)zl_kv_n_blocks(kv) * s->bs;
    s->cap_tokens = cap < p->max_model_len ? (int32_t)cap : p->max_model_len;
    size_t ns = (size_t)p->max_num_seqs, nt = (size_t)p->max_num_batched_tokens;
    s->step = malloc(sizeof(*s->step) * ns);
    s->dropped = malloc(sizeof(*s->dropped) * ns);
    s->snap = malloc(sizeof(*s->snap) * ns);
    s->tokens = malloc(sizeof(int32_t) * nt);
    s->positions = malloc(sizeof(int32_t) * nt);
    s->slot = malloc(sizeof(int32_t) * nt);
    s->q_start = malloc(sizeof(int32_t) * (ns + 1));
    s->kv_len = malloc(sizeof(int32_t) * ns);
    s->logits_rows = malloc(sizeof(int32_t) * ns);
    s->logits_seqs = malloc(sizeof(*s->logits_seqs) * ns);
    s->score_rows = malloc(sizeof(int32_t) * ns);
    s->score_seqs = malloc(sizeof(*s->score_seqs) * ns);
    if (!s->step || !s->dropped || !s->snap || !s->tokens || !s->positions || !s->slot ||
        !s->q_start || !s->kv_len || !s->logits_rows || !s->logits_seqs || !s->score_rows ||
        !s->score_seqs) {
        zl_sched_free(s);
        return zl_error(ZL_ENOMEM, "scheduler: out of memory");
    }
    *out = s;
    return ZL_OK;
}

struct zl_kv *zl_sched_kv(const struct zl_sched *s) { return s->kv; }

void zl_sched_get_stats(const struct zl_sched *s, struct zl_sched_stats *out)
{
    *out = s->st;
    out->n_running = s->running.n;
    out->n_waiting = s->waiting.n;
}

/* ---- queues ---- */

static void q_unlink(struct queue *q, struct zl_sched_seq *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        q->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        q->tail = x->prev;
    x->prev = x->next = NULL;
    q->n--;
}

static void q_push_tail(struct queue *q, struct zl_sched_seq *x)
{
    x->next = NULL;
    x->prev = q->tail;
    if (q->tail)
        q->tail->next = x;
    else
        q->head = x;
    q->tail = x;
    q->n++;
}

static void q_push_head(struct queue *q, struct zl_sched_seq *x)
{
    x->prev = NULL;
    x->next = q->head;
    if (q->head)
        q->head->prev = x;
    else
        q->tail = x;
    q->head = x;
    q->n++;
}

int zl_sched_add(struct zl_sched *s, struct zl_sched_seq *q)
{
    if (q->n_tokens < 1 || !q->tokens)
        return zl_error(ZL_EINVAL, "scheduler: empty prompt");
    if (q->n_tokens >= s->cap_tokens)
        return zl_error(ZL_EINVAL, "scheduler: prompt of %d tokens does not fit (max_model_len %d,"
                        " KV pool %d tokens)", q->n_tokens, s->p.max_model_len,
                        zl_kv_n_blocks(s->kv) * s->bs);
    if (q->cap < q->n_tokens)
        q->cap = q->n_tokens;
    q->n_computed = 0;
    q->n_cached = 0;
    q->n_preemptions = 0;
    q->step_new = 0;
    q->step_slot = -1;
    zl_kv_seq_init(&q->kv, q->salt);
    q->state = ZL_SEQ_WAITING;
    q_push_tail(&s->waiting, q);
    return ZL_OK;
}

static void unschedule(struct zl_sched *s, struct zl_sched_seq *q)
{
    if (q->step_slot < 0)
        return;
    s->budget += q->step_new;
    s->step[q->step_slot] = NULL;   /* compacted when the batch is built */
    q->step_slot = -1;
    q->step_new = 0;
}

void zl_sched_remove(struct zl_sched *s, struct zl_sched_seq *q)
{
    if (q->state == ZL_SEQ_WAITING)
        q_unlink(&s->waiting, q);
    else if (q->state == ZL_SEQ_RUNNING)
        q_unlink(&s->running, q);
    unschedule(s, q);
    zl_kv_seq_release(s->kv, &q->kv);
    q->state = ZL_SEQ_NEW;
}

int zl_sched_append(struct zl_sched *s, struct zl_sched_seq *q, int32_t token)
{
    (void)s;
    if (q->n_tokens == q->cap) {
        int32_t cap = q->cap < 16 ? 32 : q->cap * 2;
        int32_t *t = realloc(q->tokens, sizeof(int32_t) * cap);
        if (!t)
            return zl_error(ZL_ENOMEM, "scheduler: out of memory for %d tokens", cap);
        q->tokens = t;
        q->cap = cap;
    }
    q->tokens[q->n_tokens++] = token;
    return ZL_OK;
}

/* Recompute later: blocks back, head of the waiting queue. */
static void preempt(struct zl_sched *s, struct zl_sched_seq *q)
{
    q_unlink(&s->running, q);
    unschedule(s, q);
    zl_kv_seq_release(s->kv, &q->kv);
    q->n_computed = 0;
    q->n_preemptions++;
    q->state = ZL_SEQ_WAITING;
    q_push_head(&s->waiting, q);
    s->batch.n_preempted++;
    s->st.n_preemptions++;
}

static void drop(struct zl_sched *s, struct zl_sched_seq *q)
{
    zl_sched_remove(s, q);
    s->dropped[s->batch.n_dropped++] = q;
}

static void schedule(struct zl_sched *s, struct zl_sched_seq *q, int32_t n_new)
{
    q->step_new = n_new;
    q->step_slot = s->n_step;
    s->step[s->n_step++] = q;
    s->budget -= n_new;
}

static int32_t chunk(const struct zl_sched *s, const struct zl_sched_seq *q)
{
    int32_t n = q->n_tokens - q->n_computed;
    if (n > s->budget)
        n = s->budget;
    if (s->p.max_prefill_chunk > 0 && n > s->p.max_prefill_chunk && q->n_tokens - q->n_computed > 1)
        n = s->p.max_prefill_chunk;
    return n;
}

/* A running sequence gets its chunk's blocks, preempting from the tail. */
static int run_one(struct zl_sched *s, struct zl_sched_seq *q)
{
    if (q->n_tokens > s->cap_tokens) {
        drop(s, q);
        return ZL_OK;
    }
    int32_t n_new = chunk(s, q);
    while (zl_kv_seq_blocks_needed(s->kv, &q->kv, q->n_computed + n_new) > zl_kv_n_available(s->kv)) {
        struct zl_sched_seq *victim = s->running.tail;
        preempt(s, victim);
        if (victim == q)
            return ZL_OK;
        n_new = chunk(s, q);    /* the victim's budget came back */
    }
    if (n_new < 1)
        return ZL_OK;
    int rc = zl_kv_seq_grow(s->kv, &q->kv, q->n_computed + n_new);
    if (rc < 0)
        return rc;
    schedule(s, q, n_new);
    return ZL_OK;
}

/* The waiting head, if its first chunk fits without preempting anyone. */
static int admit_one(struct zl_sched *s, struct zl_sched_seq *q, int *admitted)
{
    *admitted = 0;
    if (q->n_tokens > s->cap_tokens) {     /* grew past the pool before a preemption */
        drop(s, q);
        *admitted = 1;      /* the queue moved on */
        return ZL_OK;
    }
    int first = q->kv.n_blocks == 0 && q->n_computed == 0;
    if (first && (s->p.enable_prefix_caching || q->force_prefix) && !q->score_prompt) {
        int32_t hit = zl_kv_prefix_match(s->kv, &q->kv, q->tokens, q->n_tokens - 1);
        q->n_computed = hit > 0 ? hit : 0;
    }
    int32_t n_new = chunk(s, q);
    if (n_new < 1 ||
        zl_kv_seq_blocks_needed(s->kv, &q->kv, q->n_computed + n_new) > zl_kv_n_available(s->kv)) {
        zl_kv_seq_release(s->kv, &q->kv);     /* matched blocks back to the LRU */
        q->n_computed = 0;
        return ZL_OK;
    }
    int rc = zl_kv_seq_grow(s->kv, &q->kv, q->n_computed + n_new);
    if (rc < 0)
        return rc;
    if (first && q->n_preemptions == 0) {
        q->n_cached = q->n_computed;
        zl_kv_prefix_count(s->kv, q->n_prompt, q->n_computed);
    }
    q_unlink(&s->waiting, q);
    q->state = ZL_SEQ_RUNNING;
    q->order = s->order++;
    q_push_tail(&s->running, q);
    schedule(s, q, n_new);
    *admitted = 1;
    return ZL_OK;
}

/* Rows of q's chunk whose logits score a prompt token (positions before
 * the prompt's last). */
static int32_t score_rows(const struct zl_sched_seq *q)
{
    if (!q->score_prompt)
        return 0;
    int32_t end = q->n_computed + q->step_new;
    if (end > q->n_prompt - 1)
        end = q->n_prompt - 1;
    return end > q->n_computed ? end - q->n_computed : 0;
}

/* Score rows share the step's max_num_seqs logits rows with the sampled
 * ones: a score_prompt chunk that would take more is cut to what is left
 * (at least one row: its own sampled row, when the cut drops it, or a
 * row no other sequence can take), or leaves the step. */
static void fit_score_rows(struct zl_sched *s)
{
    int32_t sampled = 0, any = 0;
    for (int32_t i = 0; i < s->n_step; i++) {
        const struct zl_sched_seq *q = s->step[i];
        if (q) {
            sampled += q->n_computed + q->step_new == q->n_tokens;
            any |= q->score_prompt;
        }
    }
    int32_t left = s->p.max_num_seqs - sampled;
    for (int32_t i = 0; any && i < s->n_step; i++) {
        struct zl_sched_seq *q = s->step[i];
        int32_t want = q ? score_rows(q) : 0;
        if (want <= left) {
            left -= want;
            continue;
        }
        int32_t own = q->n_computed + q->step_new == q->n_tokens; /* its sampled row, cut */
        int32_t keep = left + own;
        q->step_new = keep;
        left = 0;
        if (!keep) {
            q->step_slot = -1;
            s->step[i] = NULL;
        }
    }
}

static int build_batch(struct zl_sched *s)
{
    struct zl_sched_batch *b = &s->batch;
    int32_t n = 0, max_blocks = 1, n_score = 0;
    fit_score_rows(s);
    for (int32_t i = 0; i < s->n_step; i++)
        if (s->step[i]) {
            s->step[n] = s->step[i];
            s->step[n]->step_slot = n;
            if (s->step[n]->kv.n_blocks > max_blocks)
                max_blocks = s->step[n]->kv.n_blocks;
            n++;
        }
    s->n_step = n;
    if (max_blocks > s->table_cols) {
        int32_t cols = s->table_cols ? s->table_cols : 16;
        while (cols < max_blocks)
            cols *= 2;
        int32_t *t = realloc(s->table, sizeof(int32_t) * (size_t)cols * s->p.max_num_seqs);
        if (!t)
            return zl_error(ZL_ENOMEM, "scheduler: out of memory for block tables");
        s->table = t;
        s->table_cols = cols;
    }
    int32_t row = 0;
    b->n_logits = 0;
    for (int32_t i = 0; i < n; i++) {
        struct zl_sched_seq *q = s->step[i];
        s->q_start[i] = row;
        for (int32_t j = 0; j < q->step_new; j++, row++) {
            int32_t pos = q->n_computed + j;
            s->tokens[row] = q->tokens[pos];
            s->positions[row] = pos;
            s->slot[row] = q->kv.blocks[pos / s->bs] * s->bs + pos % s->bs;
        }
        s->kv_len[i] = q->n_computed + q->step_new;
        int32_t *t = s->table + (size_t)i * max_blocks;
        memcpy(t, q->kv.blocks, sizeof(int32_t) * q->kv.n_blocks);
        for (int32_t j = q->kv.n_blocks; j < max_blocks; j++)
            t[j] = 0;
        for (int32_t j = 0, k = score_rows(q); j < k; j++) {
            s->score_rows[n_score] = s->q_start[i] + j;
            s->score_seqs[n_score++] = q;
        }
        if (s->kv_len[i] == q->n_tokens) {
            s->logits_rows[b->n_logits] = row - 1;
            s->logits_seqs[b->n_logits++] = q;
        }
    }
    memcpy(s->logits_rows + b->n_logits, s->score_rows, sizeof(int32_t) * (size_t)n_score);
    memcpy(s->logits_seqs + b->n_logits, s->score_seqs, sizeof(*s->score_seqs) * (size_t)n_score);
    b->n_score = n_score;
    s->q_start[n] = row;
    b->n_seqs = n;
    b->seqs = s->step;
    b->n_tokens = row;
    b->tokens = s->tokens;
    b->positions = s->positions;
    b->attn.n_seqs = n;
    b->attn.max_blocks = max_blocks;
    b->attn.q_start = s->q_start;
    b->attn.kv_len = s->kv_len;
    b->attn.block_table = s->table;
    b->attn.slot = s->slot;
    b->logits_rows = s->logits_rows;
    b->logits_seqs = s->logits_seqs;
    b->dropped = s->dropped;
    s->st.n_steps++;
    s->st.n_scheduled_tokens += row;
    return ZL_OK;
}

int zl_sched_step(struct zl_sched *s, const struct zl_sched_batch **out)
{
    struct zl_sched_batch *b = &s->batch;
    int rc = ZL_OK;
    b->n_dropped = 0;
    b->n_preempted = 0;
    s->n_step = 0;
    s->budget = s->p.max_num_batched_tokens;
    *out = b;

    /* pass 0: decodes, pass 1: partial prefills; over a snapshot, since
     * preemption edits the running list */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        int32_t n = 0;
        for (struct zl_sched_seq *q = s->running.head; q; q = q->next)
            s->snap[n++] = q;
        for (int32_t i = 0; i < n && s->budget > 0 && rc == 0; i++) {
            struct zl_sched_seq *q = s->snap[i];
            int decode = q->n_tokens - q->n_computed == 1;
            /* nothing to compute: its next token is still being sampled
             * (async scheduling: it ends by length there) */
            if (q->state != ZL_SEQ_RUNNING || q->step_slot >= 0 || decode != (pass == 0) ||
                q->n_tokens == q->n_computed)
                continue;
            rc = run_one(s, q);
        }
    }
    while (rc == 0 && s->waiting.head && s->budget > 0 && s->running.n < s->p.max_num_seqs) {
        int admitted;
        rc = admit_one(s, s->waiting.head, &admitted);
        if (!admitted)
            break;  /* strict order: the head waits for blocks, nobody jumps it */
    }
    if (rc < 0)
        return rc;
    return build_batch(s);
}

void zl_sched_commit(struct zl_sched *s)
{
    for (int32_t i = 0; i < s->n_step; i++) {
        struct zl_sched_seq *q = s->step[i];
        if (!q)
            continue;   /* removed since the step was built */
        q->n_computed += q->step_new;
        q->step_new = 0;
        q->step_slot = -1;
        zl_kv_prefix_commit(s->kv, &q->kv, q->tokens, q->n_computed);
    }
    s->n_step = 0;
}
