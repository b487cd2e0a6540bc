/* GET /metrics: Prometheus text format, vLLM's metric names under the
 * `zlight:` prefix.  Latency histograms are kept here; engine counters come
 * from the engine api's stats(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oa-impl.h"

#define N_BUCKETS 14
static const double buckets[N_BUCKETS] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                          0.1,   0.25,  0.5,  1.0,  2.5,  5.0,  10.0};

struct hist {
    uint64_t count[N_BUCKETS + 1];  /* last: +Inf */
    double sum;
    uint64_t n;
};

struct oa_metrics {
    pthread_mutex_t mu;
    struct hist ttft, e2e, tpot;
    uint64_t finished[5];           /* by enum zl_fe_finish */
    uint64_t http[6];               /* by status / 100 */
};

struct oa_metrics *oa_metrics_create(void)
{
    struct oa_metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void oa_metrics_free(struct oa_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void observe(struct hist *h, double v)
{
    int i = 0;
    while (i < N_BUCKETS && v > buckets[i])
        i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}

void oa_metrics_http(struct oa_metrics *m, unsigned status)
{
    pthread_mutex_lock(&m->mu);
    m->http[status / 100 < 6 ? status / 100 : 5]++;
    pthread_mutex_unlock(&m->mu);
}

void oa_metrics_request(struct oa_metrics *m, const struct oa_gen *g)
{
    int finish = g->error ? ZL_FE_FINISH_ERROR : ZL_FE_FINISH_STOP;
    int64_t n_gen = 0;
    for (size_t i = 0; i < g->req.n_prompts; i++)
        for (int j = 0; j < g->req.sp.n; j++) {
            n_gen += g->subs[i].seq[j].n_gen;
            if (g->subs[i].seq[j].finish > finish)
                finish = g->subs[i].seq[j].finish;
            else if (g->subs[i].seq[j].finish == ZL_FE_FINISH_LENGTH)
                finish = ZL_FE_FINISH_LENGTH;
        }
    pthread_mutex_lock(&m->mu);
    m->finished[finish >= 1 && finish <= 4 ? finish : 4]++;
    if (g->t_first > 0) {
        observe(&m->ttft, g->t_first - g->t_start);
        if (n_gen > 1)
            observe(&m->tpot, (g->t_last - g->t_first) / (double)(n_gen - 1));
    }
    observe(&m->e2e, g->t_last - g->t_start);
    pthread_mutex_unlock(&m->mu);
}

static void put_hist(struct oa_buf *b, const char *name, const char *help, const struct hist *h,
                     const char *lbl)
{
    oa_buf_printf(b, "# HELP zlight:%s %s\n# TYPE zlight:%s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i <= N_BUCKETS; i++) {
        cum += h->count[i];
        if (i < N_BUCKETS)
            oa_buf_printf(b, "zlight:%s_bucket{%s,le=\"%g\"} %llu\n", name, lbl, buckets[i],
                          (unsigned long long)cum);
        else
            oa_buf_printf(b, "zlight:%s_bucket{%s,le=\"+Inf\"} %llu\n", name, lbl,
                          (unsigned long long)cum);
    }
    oa_buf_printf(b, "zlight:%s_sum{%s} %.9g\nzlight:%s_count{%s} %llu\n", name, lbl, h->sum, name,
                  lbl, (unsigned long long)h->n);
}

static void put_one(struct oa_buf *b, const char *name, const char *type, const char *help,
                    const char *lbl, double v)
{
    oa_buf_printf(b, "# HELP zlight:%s %s\n# TYPE zlight:%s %s\nzlight:%s{%s} %.17g\n", name, help,
                  name, type, name, lbl, v);
}

char *oa_metrics_text(struct oa_metrics *m, const struct zl_engine_api *api, int running_http)
{
    struct zl_fe_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (api->stats)
        api->stats(api->ctx, &st);
    char lbl[300];
    /* Label values escape backslash, quote and newline; model names rarely
     * have them, so dropping such bytes is enough. */
    size_t k = 0;
    k += (size_t)snprintf(lbl, sizeof lbl, "model_name=\"");
    for (const char *p = api->model_name; *p && k < sizeof lbl - 3; p++)
        if (*p != '"' && *p != '\\' && *p != '\n')
            lbl[k++] = *p;
    lbl[k++] = '"';
    lbl[k] = 0;

    struct oa_buf b = {0};
    put_one(&b, "num_requests_running", "gauge", "Sequences in the running batch.", lbl, st.n_running);
    put_one(&b, "num_requests_waiting", "gauge", "Sequences waiting to be scheduled.", lbl, st.n_waiting);
    put_one(&b, "num_http_requests_in_flight", "gauge", "Generation HTTP requests open.", lbl,
            running_http);
    put_one(&b, "kv_cache_usage_perc", "gauge", "KV cache usage (1 means 100 percent).", lbl,
            st.kv_usage);
    put_one(&b, "kv_cache_blocks", "gauge", "KV cache blocks in the pool.", lbl,
            (double)st.kv_blocks_total);
    put_one(&b, "num_preemptions_total", "counter", "Preemptions since start.", lbl,
            (double)st.n_preemptions);
    put_one(&b, "prompt_tokens_total", "counter", "Prompt tokens computed.", lbl,
            (double)st.prompt_tokens);
    put_one(&b, "generation_tokens_total", "counter", "Tokens generated.", lbl,
            (double)st.generation_tokens);
    put_one(&b, "prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
            lbl, (double)st.prefix_cache_queries);
    put_one(&b, "prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.", lbl,
            (double)st.prefix_cache_hits);
    put_one(&b, "engine_steps_total", "counter", "Engine steps run.", lbl, (double)st.n_steps);
    put_one(&b, "engine_async_steps_total", "counter",
            "Engine steps queued before the step before had its tokens back.", lbl,
            (double)st.async_steps);

    pthread_mutex_lock(&m->mu);
    static const char *const reasons[5] = {"", "stop", "length", "abort", "error"};
    oa_buf_printf(&b, "# HELP zlight:request_success_total Finished requests by reason.\n"
                      "# TYPE zlight:request_success_total counter\n");
    for (int i = 1; i < 5; i++)
        oa_buf_printf(&b, "zlight:request_success_total{%s,finished_reason=\"%s\"} %llu\n", lbl,
                      reasons[i], (unsigned long long)m->finished[i]);
    oa_buf_printf(&b, "# HELP zlight:http_responses_total HTTP responses by status class.\n"
                      "# TYPE zlight:http_responses_total counter\n");
    for (int i = 1; i < 6; i++)
        oa_buf_printf(&b, "zlight:http_responses_total{%s,status=\"%dxx\"} %llu\n", lbl, i,
                      (unsigned long long)m->http[i]);
    put_hist(&b, "time_to_first_token_seconds", "Time to first token.", &m->ttft, lbl);
    put_hist(&b, "time_per_output_token_seconds", "Time per output token after the first.",
             &m->tpot, lbl);
    put_hist(&b, "e2e_request_latency_seconds", "End-to-end request latency.", &m->e2e, lbl);
    pthread_mutex_unlock(&m->mu);
    return b.data;
}
