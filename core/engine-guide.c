/* Guided decoding in the engine: a request's JSON Schema is compiled at
 * submit, each sequence walks its own guide (zlight/guide.h), and each
 * step a guided row samples only among the tokens its guide allows.  The
 * mask of step N + 1 is made after step N's token is taken, which async
 * scheduling already orders (the sample is queued after the tokens of
 * the step before come back), so guided rows keep the overlap. */
#include <stdlib.h>
#include <string.h>

#include "engine-impl.h"

int zl_engine_guide_schema(struct zl_engine *e, const char *text, struct zl_json_schema **out)
{
    *out = NULL;
    if (!e->p.tokenizer)
        return zl_error(ZL_EINVAL, "engine: a json_schema needs a tokenizer attached to the "
                        "engine");
    int rc = zl_json_schema_compile(text, strlen(text), out);
    if (rc < 0)
        return rc;
    /* The first guided request builds the vocabulary (~0.1 s for 128k
     * tokens) outside the lock the engine thread takes every step; a
     * racing second build is dropped. */
    pthread_mutex_lock(&e->mu);
    bool have = e->gvocab != NULL;
    pthread_mutex_unlock(&e->mu);
    struct zl_guide_vocab *v = NULL;
    if (!have && (rc = zl_guide_vocab_create(e->p.tokenizer, e->vocab, &v)) == ZL_OK) {
        pthread_mutex_lock(&e->mu);
        if (!e->gvocab) {
            e->gvocab = v;
            v = NULL;
        }
        pthread_mutex_unlock(&e->mu);
        zl_guide_vocab_free(v);
    }
    if (rc < 0) {
        zl_json_schema_free(*out);
        *out = NULL;
    }
    return rc;
}

static void allow(uint32_t *m, const int32_t *ids, int32_t n, int32_t vocab)
{
    for (int32_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < vocab)
            m[ids[i] / 32] |= 1u << (ids[i] % 32);
}

int zl_engine_guide_mask(struct zl_engine *e, struct eng_seq *q)
{
    if (!e->gmask && !(e->gmask = malloc(sizeof(uint32_t) * (((size_t)e->vocab + 31) / 32))))
        return zl_error(ZL_ENOMEM, "engine: out of memory for a guided row's mask");
    int32_t n = zl_guide_mask(q->guide, e->gmask);
    if (n < 0)
        return zl_error_wrap(n, "engine: guided decoding");
    if (zl_guide_can_end(q->guide)) {
        allow(e->gmask, e->p.eos_ids, e->p.n_eos, e->vocab);
        allow(e->gmask, q->req->sp.stop_token_ids, q->req->sp.n_stop_token_ids, e->vocab);
    }
    return ZL_OK;
}

int zl_engine_guide_take(struct zl_engine *e, struct eng_seq *q, int32_t token)
{
    const struct zl_sampling_params *sp = &q->req->sp;
    for (int32_t i = 0; i < e->p.n_eos; i++)
        if (e->p.eos_ids[i] == token)
            return ZL_OK;   /* the end (or, with ignore_eos, the end again) */
    for (int32_t i = 0; i < sp->n_stop_token_ids; i++)
        if (sp->stop_token_ids[i] == token)
            return ZL_OK;
    return zl_guide_accept(q->guide, token);
}
