/* Guided decoding in the engine: a request's JSON Schema is compiled at
 * submit, each sequence walks its own guide (zlight/guide.h), and each
 * step a guided row samples only among the tokens its guide allows.  The
 * mask of step N + 1 is made after step N's token is taken, which async
 * scheduling already orders (the sample is queued after the tokens of
 * the step before come back), so guided rows keep the overlap. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
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

/* The tokens that hold guide_after's last byte: a token that completes
 * it is one of them. */
static int after_ids(struct zl_engine *e, struct eng_req *r)
{
    size_t na = strlen(r->guide_after), n;
    if (r->after_ids)
        return ZL_OK;
    if (!(r->after_ids = malloc(sizeof(int32_t) * (size_t)e->vocab)))
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    for (int32_t t = 0; t < e->vocab; t++) {
        const char *b = zl_guide_vocab_token(e->gvocab, t, &n);
        if (n && memchr(b, r->guide_after[na - 1], n))
            r->after_ids[r->n_after_ids++] = t;
    }
    return ZL_OK;
}

/* tail + token t's bytes in buf (small, or malloc'd when longer); the
 * text after guide_after in them, or NULL when they do not complete it. */
static const char *after_text(struct zl_engine *e, const struct eng_seq *q, int32_t t,
                              char *small, size_t cap, char **buf, size_t *len)
{
    const char *after = q->req->guide_after;
    size_t n, na = strlen(after);
    const char *b = zl_guide_vocab_token(e->gvocab, t, &n);
    *len = q->tail_len + n;
    *buf = *len <= cap ? small : malloc(*len);
    if (!*buf)
        return NULL;
    memcpy(*buf, q->tail, q->tail_len);
    memcpy(*buf + q->tail_len, b, n);
    const char *hit = memmem(*buf, *len, after, na);
    return hit ? hit + na : NULL;
}

/* A waiting guide's mask: every token but those that would complete
 * guide_after with text after it that the schema refuses (the token is
 * taken whole, so it is refused before it is drawn). */
static int wait_mask(struct zl_engine *e, struct eng_seq *q)
{
    int rc = after_ids(e, q->req);
    if (rc < 0)
        return rc;
    memset(e->gmask, 0xff, sizeof(uint32_t) * (((size_t)e->vocab + 31) / 32));
    for (int32_t i = 0; i < q->req->n_after_ids; i++) {
        int32_t t = q->req->after_ids[i];
        char small[320], *buf;
        size_t len;
        const char *rest = after_text(e, q, t, small, sizeof small, &buf, &len);
        if (rest && !zl_guide_takes(q->guide, rest, (size_t)(buf + len - rest)))
            e->gmask[t / 32] &= ~(1u << (t % 32));
        if (buf != small)
            free(buf);
    }
    return ZL_OK;
}

int zl_engine_guide_mask(struct zl_engine *e, struct eng_seq *q)
{
    if (!e->gmask && !(e->gmask = malloc(sizeof(uint32_t) * (((size_t)e->vocab + 31) / 32))))
        return zl_error(ZL_ENOMEM, "engine: out of memory for a guided row's mask");
    if (q->guide_wait)
        return wait_mask(e, q);
    int32_t n = zl_guide_mask(q->guide, e->gmask);
    if (n < 0)
        return zl_error_wrap(n, "engine: guided decoding");
    if (zl_guide_can_end(q->guide)) {
        allow(e->gmask, e->p.eos_ids, e->p.n_eos, e->vocab);
        allow(e->gmask, q->req->sp.stop_token_ids, q->req->sp.n_stop_token_ids, e->vocab);
    }
    return ZL_OK;
}

/* The output before the guide starts: its last bytes are kept to find
 * req->guide_after across tokens; what follows it in the token that
 * completes it is the guided text's start. */
static int guide_wait(struct zl_engine *e, struct eng_seq *q, int32_t token)
{
    size_t na = strlen(q->req->guide_after), len;
    char small[320], *buf;
    const char *rest = after_text(e, q, token, small, sizeof small, &buf, &len);
    if (!buf)
        return zl_error(ZL_ENOMEM, "engine: out of memory");
    int rc = ZL_OK;
    if (rest) {
        q->guide_wait = false;
        if ((rc = zl_guide_feed(q->guide, rest, (size_t)(buf + len - rest))) < 0)
            rc = zl_error_wrap(rc, "engine: the text after '%s'", q->req->guide_after);
    } else {
        size_t keep = len < na - 1 ? len : na - 1;  /* a start of guide_after may end here */
        memcpy(q->tail, buf + len - keep, keep);
        q->tail_len = (uint8_t)keep;
    }
    if (buf != small)
        free(buf);
    return rc;
}

int zl_engine_guide_take(struct zl_engine *e, struct eng_seq *q, int32_t token)
{
    const struct zl_sampling_params *sp = &q->req->sp;
    /* the end (or, with ignore_eos, the end again) is no text of the document */
    if (zl_engine_has_id(e->p.eos_ids, e->p.n_eos, token) ||
        zl_engine_has_id(sp->stop_token_ids, sp->n_stop_token_ids, token))
        return ZL_OK;
    if (!q->guide_wait)
        return zl_guide_accept(q->guide, token);
    return guide_wait(e, q, token);
}
