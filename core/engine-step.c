/* One engine iteration: take in new and cancelled requests, schedule,
 * run the model over the varlen batch, sample each finished row, stream
 * the token (and its text) and finish sequences on stop / length.
 * Runs on the engine thread only; it takes the engine mutex just to read
 * the request list and to publish counters. */
#include <stdlib.h>
#include <string.h>
#include <zlight/log.h>
#include "engine-impl.h"

static int text_append(struct zl_engine *e, const char *t, size_t n)
{
    if (n == 0)
        return ZL_OK;
    if (e->text_len + n + 1 > e->text_cap) {
        size_t cap = e->text_cap ? e->text_cap : 256;
        while (cap < e->text_len + n + 1)
            cap *= 2;
        char *x = realloc(e->text, cap);
        if (!x)
            return zl_error(ZL_ENOMEM, "engine: out of memory for output text");
        e->text = x;
        e->text_cap = cap;
    }
    memcpy(e->text + e->text_len, t, n);
    e->text_len += n;
    return ZL_OK;
}

/* Text through the stop-string matcher (when there is one).  Returns 1
 * when a stop string completed. */
static int text_out(struct zl_engine *e, struct eng_seq *q, const char *t, size_t n, int final)
{
    if (!q->stops) {
        text_append(e, t, n);   /* on ENOMEM the text is lost, the tokens are not */
        return 0;
    }
    const char *emit;
    size_t len;
    int hit = zl_stopstr_push(q->stops, t, n, &emit, &len);
    if (hit >= 0 && len)
        text_append(e, emit, len);
    if (hit == 1 && q->req->include_stop) {
        const char *s = q->req->stop[zl_stopstr_matched(q->stops)];
        text_append(e, s, strlen(s));
    }
    if (hit == 0 && final && zl_stopstr_finish(q->stops, &emit, &len) >= 0 && len)
        text_append(e, emit, len);
    return hit == 1;
}

static void base_output(const struct eng_seq *q, struct zl_output *o)
{
    memset(o, 0, sizeof(*o));
    o->request_id = q->req->id;
    o->user = q->req->user;
    o->index = q->index;
    o->stop_token = -1;
    o->stop_string = -1;
    o->n_prompt_tokens = q->req->n_prompt;
    o->n_cached_tokens = q->s.n_cached;
    o->n_output_tokens = q->s.n_tokens - q->s.n_prompt;
}

static void add_siblings(struct zl_engine *e, struct eng_req *r);

/* Marks q finished; the last sequence of a request retires it. */
static void retire(struct zl_engine *e, struct eng_seq *q)
{
    struct eng_req *r = q->req;
    if (q->added)
        zl_sched_remove(e->sched, &q->s);
    zl_engine_async_forget(e, q);
    q->finished = true;
    if (q->index == 0)
        add_siblings(e, r);     /* they were waiting for the prompt's blocks */
    int32_t n_out = q->s.n_tokens - q->s.n_prompt;
    double now = zl_engine_now();
    pthread_mutex_lock(&e->mu);
    if (n_out > 1)
        zl_engine_hist_add(&e->st.tpot, (q->t_last - q->t_first) / (n_out - 1));
    if (++r->n_done == r->sp.n) {
        zl_engine_hist_add(&e->st.e2e, now - r->t_arrival);
        if (r->prev)
            r->prev->next = r->next;
        else
            e->reqs = r->next;
        if (r->next)
            r->next->prev = r->prev;
        e->n_live--;
        e->st.requests_finished++;
    } else {
        r = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    zl_engine_req_free(r);
}

/* An event with no token (abort, dropped) that ends q. */
static void end_seq(struct zl_engine *e, struct eng_seq *q, enum zl_finish_reason why)
{
    if (q->finished)
        return;
    struct zl_output o;
    base_output(q, &o);
    o.finish = why;
    e->text_len = 0;
    if (q->detok && why != ZL_FINISH_ABORT) {
        const char *t;
        size_t n;
        if (zl_detok_finish(q->detok, &t, &n) >= 0)
            text_out(e, q, t, n, 1);
    }
    if (e->p.tokenizer) {
        o.text = e->text ? e->text : "";
        o.text_len = e->text_len;
    }
    zl_engine_emit(e, &o);
    retire(e, q);
}

static void add_siblings(struct zl_engine *e, struct eng_req *r)
{
    pthread_mutex_lock(&e->mu);
    bool cancel = r->cancel;
    pthread_mutex_unlock(&e->mu);
    for (int32_t i = 1; i < r->sp.n; i++) {
        struct eng_seq *q = &r->seqs[i];
        if (q->added || q->finished)
            continue;
        if (cancel || zl_sched_add(e->sched, &q->s) < 0) {
            end_seq(e, q, ZL_FINISH_ABORT);
            continue;
        }
        q->added = true;
    }
}

/* Aborts every unfinished sequence of r, siblings before sequence 0 (whose
 * end would add them); the last one frees r. */
static void end_all(struct zl_engine *e, struct eng_req *r)
{
    int32_t left = r->sp.n - r->n_done;
    for (int32_t k = r->sp.n - 1; k >= 0 && left > 0; k--)
        if (!r->seqs[k].finished) {
            left--;
            end_seq(e, &r->seqs[k], ZL_FINISH_ABORT);
        }
}

static int todo_reserve(struct zl_engine *e, size_t n)
{
    if (n <= e->todo_cap)
        return ZL_OK;
    size_t cap = e->todo_cap ? e->todo_cap * 2 : 64;
    while (cap < n)
        cap *= 2;
    struct eng_req **t = realloc(e->todo, sizeof(*t) * cap);
    if (!t)
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    e->todo = t;
    e->todo_cap = cap;
    return ZL_OK;
}

/* New requests join the scheduler (oldest first); cancelled ones end. */
static int intake(struct zl_engine *e)
{
    pthread_mutex_lock(&e->mu);
    int rc = todo_reserve(e, (size_t)e->n_live);
    size_t n = 0;
    for (struct eng_req *r = e->reqs; r && rc == 0; r = r->next)
        if ((r->cancel && !r->cancel_seen) || !r->started)
            e->todo[n++] = r;
    for (size_t i = 0; i < n; i++) {
        e->todo[i]->cancel_seen = e->todo[i]->cancel;
        if (!e->todo[i]->started && !e->todo[i]->cancel)
            e->st.prompt_tokens += e->todo[i]->n_prompt;
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = n; i-- > 0;) {     /* the list is newest first */
        struct eng_req *r = e->todo[i];
        if (r->cancel_seen) {           /* r->cancel itself belongs to the lock */
            end_all(e, r);
            continue;
        }
        r->started = true;
        if (zl_sched_add(e->sched, &r->seqs[0].s) < 0) {
            ZL_WARN("engine", "request %llu: %s", (unsigned long long)r->id, zl_last_error());
            end_all(e, r);
            continue;
        }
        r->seqs[0].added = true;
    }
    return rc;
}

static void publish_stats(struct zl_engine *e);

void zl_engine_abort_all(struct zl_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->failed = true;
    for (struct eng_req *r = e->reqs; r; r = r->next)
        r->cancel = true;
    pthread_mutex_unlock(&e->mu);
    intake(e);
    publish_stats(e);
}

/* A queued forward's logits (workspace memory, held until they are
 * sampled or copied back). */
struct eng_fwd {
    struct zl_tensor lt;
    struct zl_mem_mark mark;
};

/* Queues b's forward; a bracketed decode step runs (and scores) `rows`
 * rows, pad rows included; only b's own rows are sampled or copied back. */
static int forward(struct zl_engine *e, const struct zl_sched_batch *b, struct eng_fwd *f)
{
    const struct zl_engine_params *p = &e->p;
    int32_t rows = zl_engine_graph_rows(e, b);
    /* score rows (prompt logprobs) follow the sampled ones; never in a graph */
    int32_t n_fwd_log = b->n_logits + b->n_score;
    int32_t n_tok = rows ? rows : b->n_tokens, n_log = rows ? rows : n_fwd_log;
    f->mark = zl_mem_ws_mark(p->mem);
    size_t wsb = p->model_ops->workspace_bytes(p->model, n_tok, n_log);
    void *ws = NULL, *dl = NULL;
    int rc = ZL_OK;
    if (wsb)
        rc = zl_mem_ws_alloc(p->mem, wsb, &ws);
    if (rc == 0 && n_log)
        rc = zl_mem_ws_alloc(p->mem, sizeof(float) * (size_t)n_log * (size_t)e->vocab, &dl);
    int64_t shape[2] = {n_log, e->vocab};
    if (rc == 0)
        rc = zl_tensor_init(&f->lt, ZL_DTYPE_F32, 2, shape, dl, p->device);
    if (rc == 0) {
        struct zl_forward_batch fb = {
            .n_tokens = b->n_tokens, .tokens = b->tokens, .positions = b->positions,
            .attn = b->attn, .cache = &e->cache, .n_logits = n_fwd_log,
            .logits_rows = b->logits_rows, .workspace = ws, .workspace_bytes = wsb,
            .token_from = zl_engine_async_from(e, b),
        };
        if (!rows)
            rc = p->model_ops->forward(p->model, &fb, &f->lt);
        else if ((rc = zl_engine_graph_pad(e, b, rows, &fb)) == 0)
            rc = zl_engine_graph_forward(e, &fb, &f->lt);
        f->lt.ne[0] = b->n_logits + b->n_score; /* the real rows lead, pad rows dropped */
    }
    if (rc < 0) {
        zl_mem_ws_release(p->mem, f->mark);
        return zl_error_wrap(rc, "engine: forward of %d tokens", b->n_tokens);
    }
    return ZL_OK;
}

/* The logits of the step whose rows are as.seqs[as.cur]: sampled on the
 * device (queued and left outstanding under async scheduling, else
 * waited for) or copied back for the CPU sampler. */
static int sample_or_fetch(struct zl_engine *e, struct eng_fwd *f)
{
    struct eng_async *a = &e->as;
    int32_t n = a->n[a->cur], all = n + a->n_score[a->cur]; /* sampled rows, then score rows */
    size_t nl = (size_t)all * (size_t)e->vocab;
    int rc = ZL_OK;
    e->ds_failed = false;
    if (all && e->ds.on) {
        /* a failed call ends this step's sequences, not the engine (a row
         * with every token masked is per row: token -1) */
        rc = zl_engine_dsample_queue(e, a->seqs[a->cur], n, a->score[a->cur], a->n_score[a->cur],
                                     &f->lt);
        if (rc == ZL_OK && !a->on)
            rc = zl_engine_dsample_wait(e);
        if (rc < 0) {
            ZL_WARN("engine", "device sampling of %d rows: %s", n, zl_last_error());
            e->ds_failed = true;
            rc = ZL_OK;
        }
    } else if (all) {
        if (nl > e->logits_cap) {
            float *l = realloc(e->logits, sizeof(float) * nl);
            if (!l)
                rc = zl_error(ZL_ENOMEM, "engine: out of memory for %d logits rows", all);
            else {
                e->logits = l;
                e->logits_cap = nl;
            }
        }
        if (rc == ZL_OK)
            rc = e->p.backend->copy_to_host(e->p.device, e->logits, f->lt.data,
                                            sizeof(float) * nl);
    }
    zl_mem_ws_release(e->p.mem, f->mark);
    return rc < 0 ? zl_error_wrap(rc, "engine: logits of %d rows", n) : ZL_OK;
}

/* Samples row `row` for q (or takes the device's result `dres`), streams
 * the token and ends q when it stops. */
static void sample_row(struct zl_engine *e, struct eng_seq *q, const struct zl_sample_result *dres,
                       float *row, double now)
{
    struct eng_req *r = q->req;
    const struct zl_sampling_params *sp = &r->sp;
    int held = q->held >= 0;    /* the token fills a placeholder (engine-async.c) */
    int32_t n_out = q->s.n_tokens - q->s.n_prompt - held;
    struct zl_sampler_seq ss = {
        .prompt = q->s.tokens, .n_prompt = q->s.n_prompt, .output = q->s.tokens + q->s.n_prompt,
        .n_output = n_out, .eos_ids = e->p.eos_ids, .n_eos = e->p.n_eos,
        .seed = r->seed, .stream = (uint64_t)q->index,
    };
    struct zl_sample_result res = {.token = -1};
    int ok;
    if (dres) {
        res = *dres;
        ok = res.token >= 0;
        if (!ok)
            zl_error(ZL_EINVAL, "sampler: every token is masked");
    } else {
        /* a guided row samples among what its guide allows */
        ok = !q->guide || zl_engine_guide_mask(e, q) == ZL_OK;
        ok = ok && zl_sampler_sample_allowed(e->sampler, sp, &ss, q->guide ? e->gmask : NULL,
                                             row, &res) == ZL_OK;
    }
    if (!ok || (q->guide && zl_engine_guide_take(e, q, res.token) < 0) ||
        (!held && zl_sched_append(e->sched, &q->s, res.token) < 0)) {
        ZL_WARN("engine", "request %llu: %s", (unsigned long long)r->id, zl_last_error());
        end_seq(e, q, ZL_FINISH_ABORT);
        return;
    }
    if (held) {
        q->s.tokens[q->held] = res.token;
        q->held = -1;
    }
    n_out++;
    pthread_mutex_lock(&e->mu);
    if (n_out == 1 && q->index == 0)
        zl_engine_hist_add(&e->st.ttft, now - r->t_arrival);
    else if (n_out > 1)
        zl_engine_hist_add(&e->st.itl, now - q->t_last);
    e->st.generation_tokens++;
    pthread_mutex_unlock(&e->mu);
    if (n_out == 1)
        q->t_first = now;
    q->t_last = now;

    struct zl_output o;
    base_output(q, &o);
    o.n_tokens = 1;
    o.token = res.token;
    if (n_out == 1 && r->plp_k >= 0) {
        o.n_prompt_logprobs = r->n_prompt;
        o.prompt_logprobs = r->plp;
        o.prompt_top_k = r->plp_k;
        o.prompt_top_ids = r->plp_ids;
        o.prompt_top_logprobs = r->plp_top;
    }
    if (sp->logprobs >= 0) {
        o.logprob = res.logprob;
        o.n_top = res.n_top;
        o.top_ids = res.top_ids;
        o.top_logprobs = res.top_logprobs;
    }
    int can_stop = n_out >= sp->min_tokens;
    if (can_stop && !sp->ignore_eos && zl_engine_has_id(e->p.eos_ids, e->p.n_eos, res.token)) {
        o.finish = ZL_FINISH_STOP;
        o.stop_token = res.token;
    } else if (can_stop && zl_engine_has_id(sp->stop_token_ids, sp->n_stop_token_ids, res.token)) {
        o.finish = ZL_FINISH_STOP;
        o.stop_token = res.token;
    }
    if (!o.finish && ((sp->max_tokens > 0 && n_out >= sp->max_tokens) ||
                      q->s.n_tokens >= e->p.sched.max_model_len))
        o.finish = ZL_FINISH_LENGTH;

    e->text_len = 0;
    if (q->detok) {
        const char *t;
        size_t n;
        int stopped = 0;
        /* a stop token's text only when asked for (vLLM's rule) */
        if ((o.stop_token < 0 || r->include_stop) &&
            zl_detok_push(q->detok, res.token, &t, &n) >= 0)
            stopped = text_out(e, q, t, n, 0);
        if (stopped) {
            o.finish = ZL_FINISH_STOP;
            o.stop_string = zl_stopstr_matched(q->stops);
        } else if (o.finish && zl_detok_finish(q->detok, &t, &n) >= 0) {
            text_out(e, q, t, n, 1);
        }
        o.text = e->text ? e->text : "";
        o.text_len = e->text_len;
    }
    zl_engine_emit(e, &o);  /* before anything else reuses the text scratch */
    if (o.finish)
        retire(e, q);       /* adds the siblings too */
    else if (q->index == 0 && n_out == 1)
        add_siblings(e, r);
}

static void publish_stats(struct zl_engine *e)
{
    struct zl_sched_stats ss;
    struct zl_kv_stats ks;
    zl_sched_get_stats(e->sched, &ss);
    zl_kv_get_stats(e->kv, &ks);
    pthread_mutex_lock(&e->mu);
    e->st.n_running = ss.n_running;
    e->st.n_waiting = ss.n_waiting;
    e->st.n_preemptions = ss.n_preemptions;
    e->st.n_steps = ss.n_steps;
    e->st.graph_steps = e->graph_steps;
    e->st.async_steps = e->as.steps;
    e->st.kv_blocks_used = ks.n_used - e->pad.held;     /* the pad rows' block is no request's */
    e->st.kv_usage = e->st.kv_blocks_total ? (double)e->st.kv_blocks_used / e->st.kv_blocks_total
                                           : 0.0;
    e->st.prefix_queried_tokens = ks.queried_tokens;
    e->st.prefix_hit_tokens = ks.hit_tokens;
    e->st.prefix_hit_rate = zl_kv_prefix_hit_rate(e->kv);
    pthread_mutex_unlock(&e->mu);
}

void zl_engine_prof_report(struct zl_engine *e)
{
    struct eng_prof *p = &e->prof;
    if (!p->on || !p->steps)
        return;
    double k = 1e3 / (double)p->steps;
    ZL_INFO("engine", "profile over %lld steps, ms per step: schedule %.3f, forward (host queues "
            "the ops) %.3f, sample/copy (waits for the device) %.3f, outputs %.3f; total %.3f; "
            "%.1f tokens per step", (long long)p->steps, p->sched * k, p->forward * k, p->fetch * k,
            p->emit * k, (p->sched + p->forward + p->fetch + p->emit) * k,
            (double)p->tokens / (double)p->steps);
    if (p->overlapped)
        ZL_INFO("engine", "profile: %lld of those steps were queued before the step before had "
                "its tokens back (async scheduling): its wait and outputs overlap this one's "
                "device time", (long long)p->overlapped);
    if (p->replays)
        ZL_INFO("engine", "profile: %lld of those steps replayed device graphs; per replayed "
                "step the recording pass took %.3f ms and graph_end (lookup, launch) %.3f ms",
                (long long)p->replays, p->record * 1e3 / (double)p->replays,
                p->launch * 1e3 / (double)p->replays);
    if (e->pace.paced)
        ZL_INFO("engine", "profile: since the start, %lld steps scheduled late (late "
                "scheduling), %.3f ms of waiting each", (long long)e->pace.paced,
                e->pace.slept * 1e3 / (double)e->pace.paced);
    if (e->graph_pad_steps)
        ZL_INFO("engine", "profile: since the start, %lld decode steps padded to their graph size "
                "(%.1f pad rows each)", (long long)e->graph_pad_steps,
                (double)e->graph_pad_rows / (double)e->graph_pad_steps);
    *p = (struct eng_prof){.on = true};
}

/* Streams the tokens of the step whose rows are as.seqs[as.cur] (or ends
 * its sequences when their sampling failed); rows of retired sequences
 * are NULL and dropped. */
static void take_rows(struct zl_engine *e, double now)
{
    struct eng_async *a = &e->as;
    int k = a->cur;
    /* the prompt logprobs first: a sequence's first token carries them */
    for (int32_t i = 0; i < a->n_score[k] && !e->ds_failed; i++)
        zl_engine_score_take(e, &a->score[k][i], e->ds.on ? &e->ds.res[a->n[k] + i] : NULL,
                             e->ds.on ? NULL : e->logits + (size_t)(a->n[k] + i) * (size_t)e->vocab);
    a->n_score[k] = 0;
    for (int32_t i = 0; i < a->n[k]; i++) {
        struct eng_seq *q = a->seqs[k][i];
        if (!q)
            continue;
        q->row[k] = -1;
        if (e->ds_failed)
            end_seq(e, q, ZL_FINISH_ABORT);
        else if (e->ds.on)
            sample_row(e, q, &e->ds.res[i], NULL, now);
        else
            sample_row(e, q, NULL, e->logits + (size_t)i * e->vocab, now);
    }
    a->n[k] = 0;
}

/* The outstanding step's tokens (async scheduling), waited for and taken;
 * run: a step was queued in this iteration. */
static void take_pending(struct zl_engine *e, bool run)
{
    double t = e->prof.on || e->pace.on ? zl_engine_now() : 0.0;
    e->ds_failed = zl_engine_dsample_wait(e) < 0;
    if (e->ds_failed)
        ZL_WARN("engine", "device sampling of %d rows: %s", e->as.n[e->as.cur], zl_last_error());
    double now = zl_engine_now();
    if (e->pace.on)
        zl_engine_pace_done(e, run, now - t, now);
    if (e->prof.on)
        e->prof.fetch += now - t;
    take_rows(e, now);
    if (e->prof.on)
        e->prof.emit += zl_engine_now() - now;
}

/* A failed step: the backend is not left holding a sample. */
static int fail(struct zl_engine *e, int rc)
{
    zl_engine_dsample_wait(e);
    return rc;
}

int zl_engine_iterate(struct zl_engine *e)
{
    struct eng_async *a = &e->as;
    if (e->pace.on && e->ds.queued)
        zl_engine_pace_wait(e);
    double t0 = e->prof.on || e->pace.on ? zl_engine_now() : 0.0;
    const struct zl_sched_batch *b = NULL;
    int rc = intake(e);
    if (rc == 0 && e->ds.queued)
        rc = zl_engine_async_hold(e);
    if (rc == 0)
        rc = zl_sched_step(e->sched, &b);
    if (rc < 0)
        return fail(e, rc);
    for (int32_t i = 0; i < b->n_dropped; i++)
        end_seq(e, b->dropped[i]->user, ZL_FINISH_LENGTH);
    struct eng_fwd f;
    int run = b->n_seqs > 0;
    if (run) {
        double t1 = e->prof.on ? zl_engine_now() : 0.0;
        if ((rc = forward(e, b, &f)) < 0)
            return fail(e, rc);
        if (e->pace.on)
            zl_engine_pace_queued(e, b, t0, zl_engine_now());
        zl_engine_async_keep(e, b);
        a->steps += e->ds.queued;
        if (e->prof.on) {
            e->prof.sched += t1 - t0;
            e->prof.forward += zl_engine_now() - t1;
            e->prof.steps++;
            e->prof.tokens += b->n_tokens;
            e->prof.overlapped += e->ds.queued;
        }
    }
    if (e->ds.queued)
        take_pending(e, run); /* the step before, while this one runs on the device */
    if (run) {
        zl_sched_commit(e->sched);
        a->cur ^= 1;
        double t2 = e->prof.on ? zl_engine_now() : 0.0;
        if ((rc = sample_or_fetch(e, &f)) < 0)
            return rc;
        double now = zl_engine_now();
        if (e->prof.on)
            e->prof.fetch += now - t2;
        if (!e->ds.queued) {
            take_rows(e, now);
            if (e->prof.on)
                e->prof.emit += zl_engine_now() - now;
        }
        if (e->prof.on && e->prof.steps == ENG_PROF_EVERY)
            zl_engine_prof_report(e);
    }
    publish_stats(e);
    return ZL_OK;
}
