/* Layout of the engine, shared by engine.c (lifecycle, requests, queue,
 * thread) and engine-step.c (one iteration: schedule, forward, sample). */
#ifndef ZLIGHT_ENGINE_IMPL_H
#define ZLIGHT_ENGINE_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <zlight/detok.h>
#include <zlight/engine.h>
#include <zlight/guide.h>
#include <zlight/kvcache.h>
#include <zlight/memory.h>

struct eng_req;

struct eng_seq {
    struct zl_sched_seq s;          /* s.user = this */
    struct eng_req *req;
    int32_t index;
    bool added, finished;
    double t_first, t_last;         /* first and latest token, seconds */
    struct zl_detok *detok;         /* with a tokenizer */
    struct zl_stopstr *stops;       /* with stop strings */
    struct zl_guide *guide;         /* with a json_schema (guided decoding) */
    bool guide_wait;                /* the guide waits for req->guide_after in the output */
    uint8_t tail_len;               /* the output's last bytes while it waits */
    char tail[64];
    int32_t held;                   /* s.tokens[held] awaits a queued sample (-1: none) */
    int32_t row[2];                 /* its row in e->as.seqs[k] (-1: none) */
};

struct eng_req {
    uint64_t id;
    void *user;
    struct zl_sampling_params sp;   /* arrays below are the engine's copies */
    int32_t *bias_ids, *stop_ids;
    float *bias;
    char **stop;
    struct zl_json_schema *schema;  /* zl_request_opts.json_schema compiled, or NULL */
    char *guide_after;              /* zl_request_opts.guide_after, or NULL */
    int32_t *after_ids;             /* tokens holding guide_after's last byte (made on first
                                     * use): only they can complete it */
    int32_t n_after_ids;
    uint64_t seed;
    int32_t n_prompt;
    int32_t n_done;                 /* finished sequences */
    struct eng_seq *seqs;           /* [sp.n] */
    double t_arrival;
    bool started, cancel, cancel_seen;
    bool skip_special, include_stop; /* zl_request_opts */
    int32_t plp_k;                  /* prompt logprobs: -1 none, else their top k */
    float *plp;                     /* [n_prompt] (zl_output.prompt_logprobs) */
    int32_t *plp_ids;               /* [n_prompt * plp_k] */
    float *plp_top;                 /* [n_prompt * plp_k] */
    struct eng_req *prev, *next;    /* the engine's list of live requests */
};

/* A queued event: the public struct plus the storage its pointers use. */
struct eng_event {
    struct zl_output o;
    struct eng_event *next;
    int32_t top_ids[ZL_SAMPLE_MAX_LOGPROBS];
    float top_logprobs[ZL_SAMPLE_MAX_LOGPROBS];
    char text[];
};

/* Scratch of device sampling (engine-sample.c). */
struct eng_dsample {
    bool on;                        /* the backend samples; logits stay on the device */
    bool queued;                    /* a batch is queued on the backend, not waited for: between
                                     * steps, the outstanding step of async scheduling */
    uint8_t *mark;                  /* [vocab] zeros between calls */
    int32_t *count;                 /* [vocab] zeros between calls */
    struct zl_sample_row *rows;
    struct zl_sample_result *res;   /* [n_logits] this step's tokens */
    int32_t *tok_ids, *tok_counts, *bias_ids;
    float *bias;
    int32_t n_tok, n_bias;
    size_t rows_cap, res_cap, tok_cap, cnt_cap, bias_cap, biasv_cap;
};

/* Async scheduling (engine-async.c): a step's sample is queued and the
 * next step is scheduled and queued before its tokens come back.  The
 * step whose sample is outstanding (ds.queued between steps) has its rows'
 * sequences in seqs[cur]; the step being queued fills seqs[cur ^ 1].  A
 * sequence retired while a step holds its row leaves NULL there (its
 * row's token is dropped). */
/* A step's score row (prompt logprobs) whose result the device sampler
 * brings back: the logits at `pos` score prompt token pos + 1. */
struct eng_score {
    struct eng_seq *q;              /* NULL once retired */
    int32_t pos;
};

struct eng_async {
    bool on;                        /* the backend, the model and the config allow it */
    int cur;
    struct eng_seq **seqs[2];       /* [max_num_seqs] */
    int32_t n[2];
    struct eng_score *score[2];     /* [max_num_seqs] the step's score rows, after seqs' */
    int32_t n_score[2];
    int32_t *from;                  /* [max_num_batched_tokens] the queued step's token_from */
    int64_t steps;                  /* forwards queued while a sample was outstanding */
};

/* Late scheduling (engine-pace.c): when the outstanding step began on the
 * device and how long the one before it took, host times in seconds. */
struct eng_pace {
    bool on;                        /* engine.late_scheduling, with async scheduling on */
    double began;                   /* the outstanding step began; 0: unknown */
    double last;                    /* the step before it took; 0: unknown */
    int32_t rows_new;               /* decode rows of the step queued this iteration, -1: not
                                     * a decode-only step */
    int32_t rows_out, rows_last;    /* the same of the outstanding step and the one before */
    double turn;                    /* the host's turn to queue a step, decayed maximum */
    int64_t paced;                  /* steps queued after a pacing sleep */
    double slept;                   /* their sleeps, summed */
};

/* ZLIGHT_PROFILE=1: wall time of each phase of a step, summed and logged
 * every ENG_PROF_EVERY steps.  The forward phase is what the host spends
 * queueing the model's ops; waiting for the device lands in fetch. */
#define ENG_PROF_EVERY 200
struct eng_prof {
    bool on;
    int64_t steps, tokens;
    int64_t overlapped;             /* queued while the step before was outstanding */
    double sched, forward, fetch, emit;
    int64_t replays;                /* steps replayed as device graphs */
    double record, launch;          /* their recording pass and graph_end (part of forward) */
};

/* Pad rows of decode steps run as device graphs (engine-graph.c). */
struct eng_pad {
    struct zl_kv_seq seq;           /* the one KV block every pad row writes and reads */
    int held;                       /* seq holds it (graphs on) */
    int32_t *buf;                   /* the padded step's host arrays */
    size_t cap;                     /* int32s in buf */
};

struct zl_engine {
    struct zl_engine_params p;
    int32_t *eos;                   /* copy of p.eos_ids */
    int32_t vocab;
    struct zl_kv_layout layout;
    struct zl_kv_cache cache;
    struct zl_kv *kv;
    struct zl_sched *sched;
    struct zl_sampler *sampler;
    struct eng_dsample ds;
    bool ds_failed;                 /* this step's device sampling failed */
    struct eng_async as;
    struct eng_pace pace;
    bool graphs;                    /* decode steps through the backend's graphs */
    int64_t graph_steps;            /* of them, replayed from a captured graph */
    int32_t graph_last_n;           /* size class of the last decode step */
    uint64_t graph_ok[64];          /* bit s: a decode step of size class s replayed a graph */
    int64_t graph_pad_steps, graph_pad_rows;    /* steps padded to their class, rows added */
    struct eng_pad pad;
    struct eng_prof prof;
    float *logits;                  /* host [logits_cap / vocab, vocab] */
    struct zl_guide_vocab *gvocab;  /* the tokenizer's bytes: made by the first guided request,
                                     * set once under mu, then only read */
    uint32_t *gmask;                /* [(vocab + 31) / 32] a guided row's allowed tokens */
    size_t logits_cap;              /* floats */
    char *text;                     /* scratch for one event's text */
    size_t text_len, text_cap;
    struct eng_req **todo;          /* scratch: requests to start or cancel this step */
    size_t todo_cap;

    pthread_mutex_t mu;             /* guards everything below */
    pthread_cond_t work_cv, out_cv;
    pthread_t thread;
    bool has_thread, stop, failed, sync_init;
    struct eng_req *reqs;           /* live requests, newest first */
    int32_t n_live;
    struct eng_event *q_head, *q_tail;
    uint64_t next_id, seed_counter;
    struct zl_engine_stats st;
    bool warming;                   /* the warm-up request runs: events are dropped */
    struct zl_engine_stats base;    /* the counters as the warm-up left them */
};

/* engine-sample.c: device sampling when the backend has a sample op and
 * p.device_sampling is set (init is a no-op otherwise, ds.on stays false) */
int zl_engine_dsample_init(struct zl_engine *e);
void zl_engine_dsample_free(struct zl_engine *e);
/* Queues the sampling of logits row i for seqs[i] (NULL: a retired
 * sequence, sampled greedily and dropped), then of row n_rows + i for
 * score[i] (engine-score.c); zl_engine_dsample_wait then leaves the
 * results in e->ds.res.  A backend without sample_queue samples (and
 * waits) in the first call. */
int zl_engine_dsample_queue(struct zl_engine *e, struct eng_seq *const *seqs, int32_t n_rows,
                            const struct eng_score *score, int32_t n_score,
                            struct zl_tensor *logits);
int zl_engine_dsample_wait(struct zl_engine *e);

/* engine-async.c: async scheduling (struct eng_async) */
int zl_engine_async_init(struct zl_engine *e);
void zl_engine_async_free(struct zl_engine *e);
/* Before scheduling: each live sequence of the outstanding step that will
 * go on gets a placeholder token (-1) for the one it is being sampled. */
int zl_engine_async_hold(struct zl_engine *e);
/* b's token_from (zl_forward_batch), NULL when no row holds a placeholder. */
const int32_t *zl_engine_async_from(struct zl_engine *e, const struct zl_sched_batch *b);
/* b's logits rows become the outstanding step's (its sample is queued). */
void zl_engine_async_keep(struct zl_engine *e, const struct zl_sched_batch *b);
/* q is retired: no step's row refers to it any more. */
void zl_engine_async_forget(struct zl_engine *e, struct eng_seq *q);

/* engine-pace.c: late scheduling (struct eng_pace) */
/* Seconds to wait before scheduling the next step, 0: schedule now. */
double zl_engine_pace_delay(const struct eng_pace *p, double now);
/* Sleeps zl_engine_pace_delay's seconds (top of an iteration with a step
 * outstanding). */
void zl_engine_pace_wait(struct zl_engine *e);
/* Step b was queued: top is when the iteration began, queued when the
 * forward returned. */
void zl_engine_pace_queued(struct zl_engine *e, const struct zl_sched_batch *b, double top,
                           double queued);
/* The outstanding step's tokens came back at now after a wait of waited
 * seconds; queued_now: a step was queued in this iteration (it begins). */
void zl_engine_pace_done(struct zl_engine *e, bool queued_now, double waited, double now);

/* engine-score.c: prompt logprobs.  score_row: the device sampler's row
 * for a score row (greedy, the prompt token forced by a logit bias,
 * logprobs of the raw logits); score_take: the device's result for it, or
 * (dres NULL) the CPU sampler's on the host copy `row`, into the request. */
int zl_engine_score_row(struct zl_engine *e, const struct eng_score *sc, struct zl_sample_row *row);
void zl_engine_score_take(struct zl_engine *e, const struct eng_score *sc,
                          const struct zl_sample_result *dres, float *row);
/* engine-sample.c: a logit bias entry of the sample batch being built */
int zl_engine_dsample_bias(struct eng_dsample *d, int32_t id, float v);

/* 1 when t is one of ids[0, n) (EOS ids, stop token ids) */
static inline int zl_engine_has_id(const int32_t *ids, int32_t n, int32_t t)
{
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == t)
            return 1;
    return 0;
}

/* engine-guide.c: guided decoding.  guide_schema compiles a request's
 * schema (and makes e->gvocab on first use), from any thread; guide_mask
 * leaves in e->gmask the tokens q may sample next (EOS and the stop token
 * ids once its document is whole; while it waits for guide_after, all but
 * those that would complete it with text the schema refuses), engine
 * thread only; guide_take advances q's guide by the token it sampled. */
int zl_engine_guide_schema(struct zl_engine *e, const char *text, struct zl_json_schema **out);

int zl_engine_guide_mask(struct zl_engine *e, struct eng_seq *q);
int zl_engine_guide_take(struct zl_engine *e, struct eng_seq *q, int32_t token);

/* engine-graph.c: the graph bracket and the padding of decode steps */
int zl_engine_graph_init(struct zl_engine *e);
void zl_engine_graph_free(struct zl_engine *e);
/* Rows of the bracketed step b runs as (its size class), 0 when b is not
 * bracketed (graphs off, not a decode step, or not worth a recording). */
int32_t zl_engine_graph_rows(struct zl_engine *e, const struct zl_sched_batch *b);
/* Turns fb (b's forward batch) into one of `rows` rows; the arrays live in
 * e->pad until the next call. */
int zl_engine_graph_pad(struct zl_engine *e, const struct zl_sched_batch *b, int32_t rows,
                        struct zl_forward_batch *fb);
/* The model's forward inside the backend's bracket, which may ask for it
 * again: once to run it directly, once to capture it. */
int zl_engine_graph_forward(struct zl_engine *e, const struct zl_forward_batch *fb,
                            struct zl_tensor *lt);

/* engine-step.c */
int zl_engine_iterate(struct zl_engine *e);
/* engine-warmup.c: p.warmup_tokens' request, run by zl_engine_create
 * before the engine thread starts */
int zl_engine_warm_up(struct zl_engine *e, int32_t n_tokens);
/* st less the counters of the warm-up (e->base): what get_stats reports */
void zl_engine_stats_since(const struct zl_engine_stats *st, const struct zl_engine_stats *base,
                           struct zl_engine_stats *out);
void zl_engine_prof_report(struct zl_engine *e);
void zl_engine_abort_all(struct zl_engine *e);
/* engine.c */
double zl_engine_now(void);
void zl_engine_emit(struct zl_engine *e, const struct zl_output *o);
void zl_engine_req_free(struct eng_req *r);
void zl_engine_hist_add(struct zl_histogram *h, double v);

#endif
