/* Iteration-level scheduler: each step packs running decodes, then chunks
 * of partial and waiting prefills into a token budget, allocating KV
 * blocks and preempting (by recompute) the newest runners when they run out.
 *
 *   struct zl_sched *s;  zl_sched_create(&params, kv, &s);
 *   zl_sched_add(s, &seq);                     // seq.tokens = prompt, n_tokens = n_prompt
 *   const struct zl_sched_batch *b;  zl_sched_step(s, &b);   // -> model forward -> sample
 *   zl_sched_commit(s);  zl_sched_append(s, &seq, token);  ...  zl_sched_remove(s, &seq);
 */
#ifndef ZLIGHT_SCHEDULER_H
#define ZLIGHT_SCHEDULER_H

#include <stdint.h>
#include <zlight/backend.h>
#include <zlight/kvcache.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_sched_params {
    int32_t max_num_batched_tokens;   /* token budget of one step; 2048 */
    int32_t max_num_seqs;             /* sequences running at once; 256 */
    int32_t max_model_len;            /* prompt + output tokens of one sequence; 4096 */
    int32_t max_prefill_chunk;        /* prefill tokens of one sequence per step, 0 = budget */
    int32_t enable_prefix_caching;    /* match waiting prompts against the cache; 1 */
};

ZL_API struct zl_sched_params zl_sched_default_params(void);

enum zl_sched_state {
    ZL_SEQ_NEW = 0,         /* not added */
    ZL_SEQ_WAITING = 1,
    ZL_SEQ_RUNNING = 2,
};

/* One sequence.  The caller owns it and its token array and sets the
 * fields above the line before zl_sched_add; the scheduler owns the rest. */
struct zl_sched_seq {
    int32_t *tokens;        /* [n_tokens] prompt then output; grown by zl_sched_append */
    int32_t n_tokens;
    int32_t cap;            /* allocated entries of tokens */
    int32_t n_prompt;
    uint64_t salt;          /* prefix-cache salt (adapter id), 0 */
    int32_t force_prefix;   /* match the cache even when prefix caching is off (n > 1 siblings) */
    int32_t score_prompt;   /* 1: logits for every prompt row (prompt logprobs); never matched
                             * in the prefix cache, and its chunks take only the rows that the
                             * step's logits leave (max_num_seqs rows a step in all) */
    void *user;
    /* ---- scheduler-owned ---- */
    int32_t n_computed;     /* leading tokens whose KV is in the cache */
    int32_t n_cached;       /* tokens found in the prefix cache at the last admission */
    int32_t n_preemptions;
    enum zl_sched_state state;
    struct zl_kv_seq kv;
    struct zl_sched_seq *prev, *next;   /* queue links */
    int32_t step_new;       /* tokens scheduled in the current step */
    int32_t step_slot;      /* index in the current step's list, -1 when not scheduled */
    uint64_t order;         /* admission order among running */
};

/* One step: the sequences, the forward arrays and which rows to sample.
 * All arrays are owned by the scheduler and valid until the next step. */
struct zl_sched_batch {
    int32_t n_seqs;
    struct zl_sched_seq **seqs;     /* [n_seqs] in batch order */
    int32_t n_tokens;
    const int32_t *tokens;          /* [n_tokens] */
    const int32_t *positions;       /* [n_tokens] */
    struct zl_attn_batch attn;      /* q_start, kv_len, block_table, slot */
    int32_t n_logits;
    const int32_t *logits_rows;     /* [n_logits] rows that end their sequence's known tokens */
    struct zl_sched_seq **logits_seqs;  /* [n_logits] the sequence of each */
    /* score_prompt rows: logits_rows[n_logits + i] and logits_seqs[n_logits + i] for i <
     * n_score, rows whose logits give the next prompt token's logprob (never sampled);
     * n_logits + n_score <= max_num_seqs */
    int32_t n_score;
    /* sequences that cannot grow even alone (KV pool or max_model_len
     * full): removed from the scheduler, the caller finishes them (length) */
    int32_t n_dropped;
    struct zl_sched_seq **dropped;
    int32_t n_preempted;            /* preemptions during this step */
};

struct zl_sched_stats {
    int32_t n_running, n_waiting;
    int64_t n_preemptions;          /* total */
    int64_t n_steps;
    int64_t n_scheduled_tokens;     /* total tokens given to the model */
};

struct zl_sched;

/* kv must outlive the scheduler.  ZL_EINVAL for bad params; ZL_ENOMEM. */
ZL_API int zl_sched_create(const struct zl_sched_params *p, struct zl_kv *kv, struct zl_sched **out);
/* NULL-safe; releases the blocks of sequences still queued. */
ZL_API void zl_sched_free(struct zl_sched *s);

/* Queues a NEW sequence at the waiting tail.  ZL_EINVAL for an empty
 * prompt or one that could never fit (max_model_len, the KV pool). */
ZL_API int zl_sched_add(struct zl_sched *s, struct zl_sched_seq *q);
/* Takes a waiting or running sequence out (finish or cancel) and frees
 * its blocks (full computed blocks stay in the prefix cache).  Between
 * zl_sched_step and zl_sched_commit it drops a scheduled one from the
 * step (the commit skips it); its blocks are free for the next step. */
ZL_API void zl_sched_remove(struct zl_sched *s, struct zl_sched_seq *q);
/* Appends a sampled token to a running sequence.  ZL_ENOMEM.  The token
 * may be a placeholder the caller overwrites before the step that
 * computes its position is committed (async scheduling); the prefix cache
 * reads tokens only at commit and for positions before the last one. */
ZL_API int zl_sched_append(struct zl_sched *s, struct zl_sched_seq *q, int32_t token);

/* Plans one step.  *out->n_seqs is 0 when there is nothing to run.  A
 * running sequence with no token to compute (its next one not sampled
 * yet) sits the step out.
 * Never fails for lack of KV blocks (preemption or drop instead);
 * ZL_ENOMEM only for host allocation. */
ZL_API int zl_sched_step(struct zl_sched *s, const struct zl_sched_batch **out);
/* After the forward: the step's tokens are computed; full blocks enter
 * the prefix cache. */
ZL_API void zl_sched_commit(struct zl_sched *s);

ZL_API void zl_sched_get_stats(const struct zl_sched *s, struct zl_sched_stats *out);
ZL_API struct zl_kv *zl_sched_kv(const struct zl_sched *s);

#ifdef __cplusplus
}
#endif
#endif
