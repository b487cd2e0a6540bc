/* The engine (DESIGN §4): request lifecycle, the output queue and the
 * engine thread.  One iteration (engine-step.c) runs scheduler -> forward
 * -> sampler -> outputs; this file owns what other threads touch, all
 * under one mutex: the list of live requests (submit adds, cancel flags),
 * the event queue and the counters. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlight/log.h>
#include "engine-impl.h"

struct zl_engine_params zl_engine_default_params(void)
{
    struct zl_engine_params p;
    memset(&p, 0, sizeof(p));
    p.block_size = 16;
    p.sched = zl_sched_default_params();
    p.threaded = 1;
    p.device_sampling = 1;
    p.device_graphs = 1;
    p.async_scheduling = 1;
    p.late_scheduling = 1;
    return p;
}

/* ---- histograms ---- */

static const double hist_bounds[ZL_HIST_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0, 1e300,
};

const double *zl_engine_hist_bounds(void) { return hist_bounds; }

void zl_engine_hist_add(struct zl_histogram *h, double v)
{
    int i = 0;
    while (i < ZL_HIST_BUCKETS - 1 && v > hist_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

double zl_histogram_quantile(const struct zl_histogram *h, double q)
{
    if (h->count == 0)
        return 0.0;
    double rank = q * (double)h->count;
    uint64_t seen = 0;
    for (int i = 0; i < ZL_HIST_BUCKETS; i++) {
        if (h->buckets[i] && (double)(seen + h->buckets[i]) >= rank) {
            double lo = i ? hist_bounds[i - 1] : 0.0;
            double hi = i < ZL_HIST_BUCKETS - 1 ? hist_bounds[i] : lo;
            return lo + (hi - lo) * ((rank - (double)seen) / (double)h->buckets[i]);
        }
        seen += h->buckets[i];
    }
    return hist_bounds[ZL_HIST_BUCKETS - 2];
}

double zl_engine_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- create / free ---- */

static int plan_memory(struct zl_engine *e)
{
    const struct zl_engine_params *p = &e->p;
    size_t blk = e->layout.bytes_per_token * (size_t)p->block_size;
    if (zl_mem_get_phase(p->mem) == ZL_MEM_FROZEN) {
        size_t ws = p->model_ops->workspace_bytes(p->model, p->sched.max_num_batched_tokens,
                                                  p->sched.max_num_seqs);
        ws += sizeof(float) * (size_t)p->sched.max_num_seqs * (size_t)e->vocab + (64u << 10);
        if (zl_mem_plan(p->mem, ws, blk) < 0)
            return zl_error_wrap(ZL_ENOMEM, "engine: memory plan");
        zl_mem_log_plan(p->mem, (uint32_t)p->block_size);
    }
    void *base;
    size_t stride;
    uint32_t nb;
    if (zl_mem_kv_pool(p->mem, &base, &stride, &nb) < 0)
        return zl_error_wrap(ZL_EINVAL, "engine");
    if (stride < blk)
        return zl_error(ZL_EINVAL, "engine: KV blocks of %zu bytes, the model needs %zu (%d tokens)",
                        stride, blk, p->block_size);
    e->cache = (struct zl_kv_cache){
        .base = base, .block_stride = stride, .block_size = p->block_size,
        .n_layers = e->layout.n_layers, .n_kv_heads = e->layout.n_kv_heads,
        .head_dim = e->layout.head_dim, .dtype = e->layout.dtype,
    };
    return ZL_OK;
}

static void *engine_main(void *arg);

static int check_params(const struct zl_engine_params *p)
{
    if (!p->model_ops || !p->model || !p->backend || !p->mem)
        return zl_error(ZL_EINVAL, "engine: model_ops, model, backend and mem are required");
    if (!p->model_ops->forward || !p->model_ops->kv_layout || !p->model_ops->workspace_bytes ||
        !p->model_ops->vocab_size)
        return zl_error(ZL_EINVAL, "engine: the model plugin lacks forward/kv_layout/workspace_bytes");
    if (!p->backend->copy_to_host)
        return zl_error(ZL_EINVAL, "engine: the backend lacks copy_to_host");
    if (p->block_size < 1 || p->max_kv_blocks < 0 || p->n_eos < 0 || (p->n_eos && !p->eos_ids))
        return zl_error(ZL_EINVAL, "engine: block_size >= 1, max_kv_blocks >= 0, eos_ids[n_eos]");
    return ZL_OK;
}

int zl_engine_create(const struct zl_engine_params *p, struct zl_engine **out)
{
    *out = NULL;
    int rc = check_params(p);
    if (rc < 0)
        return rc;
    struct zl_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    e->p = *p;
    e->next_id = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work_cv, NULL);
    pthread_cond_init(&e->out_cv, NULL);
    e->sync_init = true;
    e->vocab = p->model_ops->vocab_size(p->model);
    const char *prof = getenv("ZLIGHT_PROFILE");
    e->prof.on = prof && *prof && strcmp(prof, "0") != 0;
    const struct zl_backend_ops *be = p->backend;
    e->graphs = p->device_graphs && p->bctx && ZL_BACKEND_HAS(be, graph_end) && be->graph_begin &&
                be->graph_end;
    if (p->n_eos) {
        e->eos = malloc(sizeof(int32_t) * (size_t)p->n_eos);
        if (!e->eos) {
            rc = zl_error(ZL_ENOMEM, "engine: out of memory");
            goto fail;
        }
        memcpy(e->eos, p->eos_ids, sizeof(int32_t) * (size_t)p->n_eos);
        e->p.eos_ids = e->eos;
    }
    if (e->vocab < 1) {
        rc = zl_error(ZL_EINVAL, "engine: the model reports a vocabulary of %d", e->vocab);
        goto fail;
    }
    if ((rc = p->model_ops->kv_layout(p->model, &e->layout)) < 0 || (rc = plan_memory(e)) < 0)
        goto fail;
    struct zl_kv_params kp = zl_kv_default_params();
    kp.block_size = p->block_size;
    kp.mem = p->mem;
    kp.n_blocks = p->max_kv_blocks;
    if ((rc = zl_kv_create(&kp, &e->kv)) < 0 || (rc = zl_sched_create(&p->sched, e->kv, &e->sched)) < 0 ||
        (rc = zl_sampler_create(e->vocab, &e->sampler)) < 0 || (rc = zl_engine_dsample_init(e)) < 0 ||
        (rc = zl_engine_graph_init(e)) < 0 || (rc = zl_engine_async_init(e)) < 0)
        goto fail;
    e->st.max_model_len = p->sched.max_model_len;
    e->st.kv_blocks_total = zl_kv_n_blocks(e->kv) - e->pad.held; /* what requests can get */
    if (p->warmup_tokens > 0 && (rc = zl_engine_warm_up(e, p->warmup_tokens)) < 0)
        goto fail;
    if (p->threaded) {
        int err = pthread_create(&e->thread, NULL, engine_main, e);
        if (err) {
            rc = zl_error(ZL_ENOMEM, "engine: cannot start the engine thread: %s", strerror(err));
            goto fail;
        }
        e->has_thread = true;
    }
    *out = e;
    return ZL_OK;
fail:
    zl_engine_free(e);
    return rc;
}

void zl_engine_req_free(struct eng_req *r)
{
    if (!r)
        return;
    for (int32_t i = 0; r->seqs && i < r->sp.n; i++) {
        free(r->seqs[i].s.tokens);
        zl_detok_free(r->seqs[i].detok);
        zl_stopstr_free(r->seqs[i].stops);
        zl_guide_free(r->seqs[i].guide);
    }
    zl_json_schema_free(r->schema);
    free(r->guide_after);
    free(r->after_ids);
    free(r->seqs);
    free(r->bias_ids);
    free(r->bias);
    free(r->stop_ids);
    for (int32_t i = 0; r->stop && i < r->sp.n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    free(r->plp);
    free(r->plp_ids);
    free(r->plp_top);
    free(r);
}

void zl_engine_free(struct zl_engine *e)
{
    if (!e)
        return;
    if (e->has_thread) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_broadcast(&e->work_cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    zl_engine_async_free(e);    /* waits for a queued sample first */
    while (e->reqs) {
        struct eng_req *r = e->reqs;
        e->reqs = r->next;
        for (int32_t i = 0; i < r->sp.n; i++)
            if (r->seqs[i].added && !r->seqs[i].finished)
                zl_sched_remove(e->sched, &r->seqs[i].s);
        zl_engine_req_free(r);
    }
    while (e->q_head) {
        struct eng_event *ev = e->q_head;
        e->q_head = ev->next;
        free(ev);
    }
    zl_sched_free(e->sched);
    zl_engine_graph_free(e);
    zl_kv_free(e->kv);
    zl_engine_prof_report(e);
    zl_sampler_free(e->sampler);
    zl_engine_dsample_free(e);
    zl_guide_vocab_free(e->gvocab);
    free(e->gmask);
    free(e->logits);
    free(e->text);
    free(e->todo);
    free(e->eos);
    if (e->sync_init) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->work_cv);
        pthread_cond_destroy(&e->out_cv);
    }
    free(e);
}

/* ---- requests ---- */

static int dup_arrays(struct eng_req *r, const struct zl_sampling_params *sp)
{
    size_t nb = (size_t)sp->n_logit_bias, ns = (size_t)sp->n_stop_token_ids;
    if (nb) {
        r->bias_ids = malloc(sizeof(int32_t) * nb);
        r->bias = malloc(sizeof(float) * nb);
        if (!r->bias_ids || !r->bias)
            return ZL_ENOMEM;
        memcpy(r->bias_ids, sp->logit_bias_ids, sizeof(int32_t) * nb);
        memcpy(r->bias, sp->logit_bias, sizeof(float) * nb);
    }
    if (ns) {
        if (!(r->stop_ids = malloc(sizeof(int32_t) * ns)))
            return ZL_ENOMEM;
        memcpy(r->stop_ids, sp->stop_token_ids, sizeof(int32_t) * ns);
    }
    r->sp.logit_bias_ids = r->bias_ids;
    r->sp.logit_bias = r->bias;
    r->sp.stop_token_ids = r->stop_ids;
    r->sp.n_stop = 0;       /* counts the copies made so far: free stays exact */
    if (sp->n_stop) {
        if (!(r->stop = calloc((size_t)sp->n_stop, sizeof(char *))))
            return ZL_ENOMEM;
        for (int32_t i = 0; i < sp->n_stop; i++, r->sp.n_stop++)
            if (!(r->stop[i] = strdup(sp->stop[i])))
                return ZL_ENOMEM;
    }
    r->sp.stop = (const char *const *)r->stop;
    return ZL_OK;
}

static int make_seqs(struct zl_engine *e, struct eng_req *r, const int32_t *prompt, int32_t n)
{
    if (!(r->seqs = calloc((size_t)r->sp.n, sizeof(*r->seqs))))
        return ZL_ENOMEM;
    for (int32_t i = 0; i < r->sp.n; i++) {
        struct eng_seq *q = &r->seqs[i];
        q->req = r;
        q->index = i;
        q->s.user = q;
        q->held = q->row[0] = q->row[1] = -1;
        q->s.force_prefix = i > 0;
        q->s.score_prompt = i == 0 && r->plp_k >= 0; /* siblings share its prompt */
        q->s.cap = n + 16;
        if (!(q->s.tokens = malloc(sizeof(int32_t) * (size_t)q->s.cap)))
            return ZL_ENOMEM;
        memcpy(q->s.tokens, prompt, sizeof(int32_t) * (size_t)n);
        q->s.n_tokens = q->s.n_prompt = n;
        if (e->p.tokenizer) {
            if (zl_detok_create(e->p.tokenizer, r->skip_special ? ZL_DETOK_SKIP_SPECIAL : 0,
                                &q->detok) < 0)
                return ZL_ENOMEM;
            /* a little prompt context, so the first word keeps its leading space */
            const char *t;
            size_t tl;
            for (int32_t k = n > 4 ? n - 4 : 0; k < n; k++)
                zl_detok_push(q->detok, prompt[k], &t, &tl);
        }
        if (r->sp.n_stop &&
            zl_stopstr_create((const char *const *)r->stop, NULL, (size_t)r->sp.n_stop, &q->stops) < 0)
            return ZL_ENOMEM;
        if (r->schema && zl_guide_create(r->schema, e->gvocab, &q->guide) < 0)
            return ZL_ENOMEM;
        q->guide_wait = r->guide_after != NULL;
    }
    return ZL_OK;
}

struct zl_request_opts zl_request_default_opts(void)
{
    return (struct zl_request_opts){.size = sizeof(struct zl_request_opts),
                                    .skip_special_tokens = 1, .prompt_logprobs = -1};
}

int zl_engine_submit(struct zl_engine *e, const int32_t *prompt, int32_t n_prompt,
                     const struct zl_sampling_params *sp, void *user, uint64_t *id)
{
    return zl_engine_submit_opts(e, prompt, n_prompt, sp, NULL, user, id);
}

int zl_engine_submit_opts(struct zl_engine *e, const int32_t *prompt, int32_t n_prompt,
                          const struct zl_sampling_params *sp, const struct zl_request_opts *opts,
                          void *user, uint64_t *id)
{
    struct zl_request_opts ro = zl_request_default_opts();
    if (opts) {
        if (opts->size < ZL_REQUEST_OPTS_MIN_SIZE)
            return zl_error(ZL_EINVAL, "engine: request options of %u bytes, want at least %zu",
                            opts->size, ZL_REQUEST_OPTS_MIN_SIZE);
        memcpy(&ro, opts, opts->size < sizeof ro ? opts->size : sizeof ro);
    }
    if (ro.prompt_logprobs < -1 || ro.prompt_logprobs > ZL_SAMPLE_MAX_LOGPROBS)
        return zl_error(ZL_EINVAL, "engine: prompt_logprobs %d is not -1 (none) or 0..%d",
                        ro.prompt_logprobs, ZL_SAMPLE_MAX_LOGPROBS);
    struct zl_sampling_params dflt = zl_sampling_default_params();
    if (!sp)
        sp = &dflt;
    int rc = zl_sampling_validate(sp, e->vocab);
    if (rc < 0)
        return rc;
    if (n_prompt < 1 || !prompt)
        return zl_error(ZL_EINVAL, "engine: empty prompt");
    int64_t cap = (int64_t)zl_kv_n_blocks(e->kv) * e->p.block_size;
    if (n_prompt >= e->p.sched.max_model_len || n_prompt >= cap)
        return zl_error(ZL_EINVAL, "engine: prompt of %d tokens does not fit: max_model_len %d, KV pool"
                        " %lld tokens", n_prompt, e->p.sched.max_model_len, (long long)cap);
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= e->vocab)
            return zl_error(ZL_EINVAL, "engine: prompt token %d at %d outside the vocabulary (%d)",
                            prompt[i], i, e->vocab);
    if (sp->n_stop && !e->p.tokenizer)
        return zl_error(ZL_EINVAL, "engine: stop strings need a tokenizer attached to the engine");
    struct zl_json_schema *schema = NULL;
    if (ro.json_schema && ro.guide_after && (!ro.guide_after[0] || strlen(ro.guide_after) > 63))
        return zl_error(ZL_EINVAL, "engine: guide_after must be 1 to 63 bytes");
    if (ro.json_schema && (rc = zl_engine_guide_schema(e, ro.json_schema, &schema)) < 0)
        return rc;

    struct eng_req *r = calloc(1, sizeof(*r));
    if (!r) {
        zl_json_schema_free(schema);
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    }
    r->schema = schema;
    if (schema && ro.guide_after && !(r->guide_after = strdup(ro.guide_after))) {
        zl_engine_req_free(r);
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    }
    r->sp = *sp;
    r->user = user;
    r->skip_special = ro.skip_special_tokens != 0;
    r->include_stop = ro.include_stop_str_in_output != 0;
    r->plp_k = ro.prompt_logprobs;
    if (r->plp_k >= 0) {
        size_t np = (size_t)n_prompt, nk = np * (size_t)(r->plp_k ? r->plp_k : 1);
        r->plp = malloc(sizeof(float) * np);
        r->plp_ids = calloc(nk, sizeof(int32_t));
        r->plp_top = calloc(nk, sizeof(float));
        if (!r->plp || !r->plp_ids || !r->plp_top) {
            zl_engine_req_free(r);
            return zl_error(ZL_ENOMEM, "engine: out of memory for the prompt logprobs of %d "
                            "tokens", n_prompt);
        }
        for (size_t i = 0; i < np; i++)
            r->plp[i] = NAN;
    }
    r->n_prompt = n_prompt;
    if (dup_arrays(r, sp) < 0 || make_seqs(e, r, prompt, n_prompt) < 0) {
        zl_engine_req_free(r);
        return zl_error(ZL_ENOMEM, "engine: out of memory for a request of %d tokens", n_prompt);
    }
    r->t_arrival = zl_engine_now();
    pthread_mutex_lock(&e->mu);
    if (e->failed) {
        pthread_mutex_unlock(&e->mu);
        zl_engine_req_free(r);
        return zl_error(ZL_ESTATE, "engine: stopped after a failed step");
    }
    r->id = e->next_id++;
    r->seed = sp->has_seed ? sp->seed : e->p.seed ^ (0x9e3779b97f4a7c15ull * ++e->seed_counter);
    r->next = e->reqs;
    if (e->reqs)
        e->reqs->prev = r;
    e->reqs = r;
    e->n_live++;
    e->st.requests_submitted++;
    if (id)
        *id = r->id;
    pthread_cond_broadcast(&e->work_cv);
    pthread_mutex_unlock(&e->mu);
    return ZL_OK;
}

int zl_engine_cancel(struct zl_engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    struct eng_req *r = e->reqs;
    while (r && r->id != id)
        r = r->next;
    if (r) {
        r->cancel = true;
        pthread_cond_broadcast(&e->work_cv);
    }
    pthread_mutex_unlock(&e->mu);
    return r ? ZL_OK : zl_error(ZL_ENOTFOUND, "engine: no live request %llu", (unsigned long long)id);
}

/* ---- events ---- */

void zl_engine_emit(struct zl_engine *e, const struct zl_output *o)
{
    if (e->warming) /* no caller asked for the warm-up's events */
        return;
    if (e->p.on_output) {
        e->p.on_output(o, e->p.on_output_user);
        return;
    }
    /* the prompt logprobs, if any, after the text (8-byte aligned) */
    size_t np = (size_t)o->n_prompt_logprobs, nk = np * (size_t)o->prompt_top_k;
    size_t at = (sizeof(struct eng_event) + o->text_len + 1 + 7) & ~(size_t)7;
    size_t bytes = np ? at + sizeof(float) * (np + nk) + sizeof(int32_t) * nk
                      : sizeof(struct eng_event) + o->text_len + 1;
    struct eng_event *ev = malloc(bytes);
    if (!ev) {
        ZL_ERROR("engine", "out of memory: an output of request %llu is lost",
                 (unsigned long long)o->request_id);
        return;
    }
    ev->o = *o;
    ev->next = NULL;
    if (o->n_top) {
        memcpy(ev->top_ids, o->top_ids, sizeof(int32_t) * (size_t)o->n_top);
        memcpy(ev->top_logprobs, o->top_logprobs, sizeof(float) * (size_t)o->n_top);
    }
    if (o->text_len)
        memcpy(ev->text, o->text, o->text_len);
    ev->text[o->text_len] = 0;
    ev->o.text = o->text ? ev->text : NULL;
    ev->o.top_ids = ev->top_ids;
    ev->o.top_logprobs = ev->top_logprobs;
    if (np) {
        float *lp = (float *)((char *)ev + at), *top = lp + np;
        int32_t *ids = (int32_t *)(top + nk);
        memcpy(lp, o->prompt_logprobs, sizeof(float) * np);
        if (nk) {
            memcpy(top, o->prompt_top_logprobs, sizeof(float) * nk);
            memcpy(ids, o->prompt_top_ids, sizeof(int32_t) * nk);
        }
        ev->o.prompt_logprobs = lp;
        ev->o.prompt_top_logprobs = top;
        ev->o.prompt_top_ids = ids;
    }
    ev->o.priv = ev;
    pthread_mutex_lock(&e->mu);
    if (e->q_tail)
        e->q_tail->next = ev;
    else
        e->q_head = ev;
    e->q_tail = ev;
    pthread_cond_broadcast(&e->out_cv);
    pthread_mutex_unlock(&e->mu);
}

void zl_output_release(struct zl_output *out)
{
    if (out && out->priv) {
        free(out->priv);
        out->priv = NULL;
    }
}

static struct eng_event *pop_event(struct zl_engine *e)
{
    struct eng_event *ev = e->q_head;
    if (ev) {
        e->q_head = ev->next;
        if (!e->q_head)
            e->q_tail = NULL;
    }
    return ev;
}

int zl_engine_wait(struct zl_engine *e, struct zl_output *out, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&e->mu);
    struct eng_event *ev;
    while (!(ev = pop_event(e))) {
        if (!e->has_thread && timeout_ms != 0) {
            bool idle = e->n_live == 0;
            pthread_mutex_unlock(&e->mu);
            if (idle || zl_engine_step(e) < 0) {
                pthread_mutex_lock(&e->mu);
                if ((ev = pop_event(e)))
                    break;
                pthread_mutex_unlock(&e->mu);
                return 0;
            }
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (timeout_ms == 0 || (e->failed && e->n_live == 0))
            break;
        if (timeout_ms < 0)
            pthread_cond_wait(&e->out_cv, &e->mu);
        else if (pthread_cond_timedwait(&e->out_cv, &e->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&e->mu);
    if (!ev)
        return 0;
    *out = ev->o;
    return 1;
}

void zl_engine_get_stats(struct zl_engine *e, struct zl_engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    zl_engine_stats_since(&e->st, &e->base, out);
    pthread_mutex_unlock(&e->mu);
}

/* ---- the thread ---- */

int zl_engine_step(struct zl_engine *e)
{
    int rc = zl_engine_iterate(e);
    if (rc < 0) {
        ZL_ERROR("engine", "step failed, aborting every request: %s", zl_last_error());
        zl_engine_abort_all(e);
        return rc;
    }
    pthread_mutex_lock(&e->mu);
    int n = e->n_live;
    pthread_mutex_unlock(&e->mu);
    return n;
}

static void *engine_main(void *arg)
{
    struct zl_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        if (e->n_live == 0 || e->failed) {
            pthread_cond_wait(&e->work_cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        zl_engine_step(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}
