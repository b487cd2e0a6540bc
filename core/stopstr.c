/* Stop strings over streamed text: text is released as soon as no stop
 * string can start inside it; the held tail is always shorter than the
 * longest stop string. */
#include "tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>
#include <zlight/detok.h>

struct zl_stopstr {
    char **s;
    size_t *len;
    size_t n, max_len;
    struct zl_tok_buf held;         /* text not yet released */
    struct zl_tok_buf out;          /* what the last call released */
    int matched;                    /* index, -1 while running */
};

int zl_stopstr_create(const char *const *stops, const size_t *lens, size_t n, struct zl_stopstr **out)
{
    *out = NULL;
    struct zl_stopstr *s = calloc(1, sizeof(*s));
    if (!s || (n && (!(s->s = calloc(n, sizeof(*s->s))) || !(s->len = calloc(n, sizeof(*s->len)))))) {
        zl_stopstr_free(s);
        return zl_error(ZL_ENOMEM, "stopstr: out of memory");
    }
    s->matched = -1;
    for (size_t i = 0; i < n; i++) {
        if (!stops[i]) {
            zl_stopstr_free(s);
            return zl_error(ZL_EINVAL, "stopstr: stop string %zu is NULL", i);
        }
        size_t l = lens ? lens[i] : strlen(stops[i]);
        if (!(s->s[s->n] = malloc(l + 1))) {
            zl_stopstr_free(s);
            return zl_error(ZL_ENOMEM, "stopstr: out of memory");
        }
        memcpy(s->s[s->n], stops[i], l);
        s->s[s->n][l] = 0;
        s->len[s->n] = l;
        if (l == 0) { /* ignored, but keep indices equal to the caller's */
            s->s[s->n][0] = 0;
        }
        if (l > s->max_len)
            s->max_len = l;
        s->n++;
    }
    *out = s;
    return 0;
}

void zl_stopstr_free(struct zl_stopstr *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->s && i < s->n; i++)
        free(s->s[i]);
    free(s->s);
    free(s->len);
    free(s->held.p);
    free(s->out.p);
    free(s);
}

void zl_stopstr_reset(struct zl_stopstr *s)
{
    s->held.len = s->out.len = 0;
    s->matched = -1;
}

int zl_stopstr_matched(const struct zl_stopstr *s) { return s->matched; }

static int release(struct zl_stopstr *s, size_t n, const char **emit, size_t *emit_len)
{
    s->out.len = 0;
    if (zl_tok_buf_put(&s->out, s->held.p ? s->held.p : "", n) < 0)
        return ZL_ENOMEM;
    memmove(s->held.p, s->held.p + n, s->held.len - n);
    s->held.len -= n;
    *emit = s->out.p;
    *emit_len = n;
    return 0;
}

int zl_stopstr_push(struct zl_stopstr *s, const char *text, size_t len, const char **emit,
                    size_t *emit_len)
{
    *emit = "";
    *emit_len = 0;
    if (s->matched >= 0)
        return 1;
    if (zl_tok_buf_put(&s->held, text ? text : "", text ? len : 0) < 0)
        return ZL_ENOMEM;
    const char *h = s->held.p;
    size_t n = s->held.len;
    /* Earliest complete stop string (the longest one on a tie). */
    size_t best = SIZE_MAX;
    int which = -1;
    for (size_t i = 0; i < s->n; i++) {
        size_t l = s->len[i];
        if (!l || l > n)
            continue;
        for (size_t p = 0; p + l <= n && p <= best; p++) {
            if (h[p] == s->s[i][0] && !memcmp(h + p, s->s[i], l)) {
                if (p < best || (p == best && l > s->len[which]))
                    best = p, which = (int)i;
                break;
            }
        }
    }
    if (which >= 0) {
        s->matched = which;
        int rc = release(s, best, emit, emit_len);
        s->held.len = 0;
        return rc < 0 ? rc : 1;
    }
    /* Hold the longest tail that is a proper prefix of some stop string. */
    size_t hold = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t l = s->len[i];
        if (!l)
            continue;
        for (size_t k = (l - 1 < n ? l - 1 : n); k > hold; k--)
            if (!memcmp(h + n - k, s->s[i], k)) {
                hold = k;
                break;
            }
    }
    return release(s, n - hold, emit, emit_len);
}

int zl_stopstr_finish(struct zl_stopstr *s, const char **emit, size_t *emit_len)
{
    *emit = "";
    *emit_len = 0;
    if (s->matched >= 0)
        return 0;
    return release(s, s->held.len, emit, emit_len);
}
