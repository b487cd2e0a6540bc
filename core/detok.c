/* Decoding as a stream.  HF decoders work on the list of token strings;
 * each one here is a stage that receives pieces one at a time and passes
 * pieces on, holding back only what the rest of the sequence can still
 * change (a byte-fallback run, an incomplete UTF-8 tail, trailing strip
 * characters).  Batch decode is the stream plus finish, so streamed text
 * and decode agree by construction. */
#include "tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>
#include <zlight/detok.h>

struct stage {
    struct zl_tok_buf pend;         /* held bytes (see the stage kinds) */
    struct zl_tok_buf scratch;      /* rewritten piece handed downstream */
    size_t n_in;                    /* pieces received */
    int left;                       /* Strip on a fused stream: starts still to strip */
    int joined;                     /* an upstream stage fused the pieces into one */
};

struct zl_detok {
    const struct zl_tokenizer *t;
    uint32_t flags;
    struct stage *st;               /* [t->n_dec] */
    struct zl_tok_buf out;
};

static const char k_fffd[] = "\xEF\xBF\xBD";

static int feed(struct zl_detok *d, size_t i, const char *s, size_t n);

static int is_byte_token(const char *s, size_t n, uint8_t *b)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return 0;
    unsigned v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        v = v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0'
                                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 99);
    }
    if (v > 255)
        return 0;
    *b = (uint8_t)v;
    return 1;
}

/* ByteFallback: a finished run is one piece when valid UTF-8, else one
 * U+FFFD piece per byte (HF). */
static int flush_bytes(struct zl_detok *d, size_t i)
{
    struct stage *st = &d->st[i];
    if (!st->pend.len)
        return 0;
    const char *p = st->pend.p;
    size_t n = st->pend.len, k = 0;
    int ok = 1;
    while (k < n && ok) {
        int q = zl_utf8_seq((const unsigned char *)p + k, n - k);
        ok = q > 0;
        k += q > 0 ? (size_t)q : 0;
    }
    int rc = 0;
    st->pend.len = 0;
    if (ok)
        return feed(d, i + 1, p, n);
    for (k = 0; k < n && rc == 0; k++)
        rc = feed(d, i + 1, k_fffd, 3);
    return rc;
}

/* The stages' rewrites of one piece, appended to out (shared by the
 * stream and zl_tok_token_bytes). */

/* ByteLevel: token chars -> bytes, or the raw string when a char is
 * outside the alphabet. */
static int bytelevel_bytes(const char *s, size_t n, struct zl_tok_buf *out)
{
    size_t base = out->len, adv;
    if (zl_tok_buf_reserve(out, n) < 0)
        return ZL_ENOMEM;
    for (size_t k = 0; k < n; k += adv) {
        int b = zl_bytelevel_byte(zl_utf8_decode(s + k, n - k, &adv));
        if (b < 0) {
            out->len = base;
            return zl_tok_buf_put(out, s, n);
        }
        out->p[out->len++] = (char)b;
    }
    return 0;
}

/* Replace: each occurrence of the pattern by the content. */
static int replace_into(const struct zl_tok_dec *dc, const char *s, size_t n,
                        struct zl_tok_buf *out)
{
    size_t run = 0;
    for (size_t k = 0; dc->pat_len && k + dc->pat_len <= n;) {
        if (memcmp(s + k, dc->pat, dc->pat_len)) {
            k++;
            continue;
        }
        if (zl_tok_buf_put(out, s + run, k - run) < 0 ||
            zl_tok_buf_put(out, dc->content, dc->content_len) < 0)
            return ZL_ENOMEM;
        k += dc->pat_len;
        run = k;
    }
    return zl_tok_buf_put(out, s + run, n - run);
}

/* Metaspace: its character becomes a space (dropped instead: drop). */
static int metaspace_into(const struct zl_tok_dec *dc, const char *s, size_t n, int drop,
                          struct zl_tok_buf *out)
{
    for (size_t k = 0, adv; k < n; k += adv) {
        uint32_t cp = zl_utf8_decode(s + k, n - k, &adv);
        if (cp != dc->cp ? zl_tok_buf_put(out, s + k, adv) < 0
                         : !drop && zl_tok_buf_put(out, " ", 1) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

static size_t cp_prefix(const char *s, size_t n, uint32_t cp, int max, int *count);

/* Strip of a piece on its own: the part [*a, *b) kept. */
static void strip_span(const struct zl_tok_dec *dc, const char *s, size_t n, size_t *a,
                       size_t *b)
{
    int cnt;
    size_t adv;
    *a = cp_prefix(s, n, dc->cp, dc->start, &cnt);
    *b = n;
    for (int k = 0; k < dc->stop && *b > *a; k++) {
        size_t p = *b - 1;
        while (p > *a && ((unsigned char)s[p] & 0xC0) == 0x80)
            p--;
        if (zl_utf8_decode(s + p, *b - p, &adv) != dc->cp)
            break;
        *b = p;
    }
}

/* ByteLevel: token chars -> bytes, then lossy UTF-8 of the concatenation,
 * emitted as far as it is complete. */
static int bytelevel(struct zl_detok *d, size_t i, const char *s, size_t n)
{
    struct stage *st = &d->st[i];
    if (bytelevel_bytes(s, n, &st->pend) < 0)
        return ZL_ENOMEM;
    /* Keep an incomplete (still possibly valid) tail. */
    const unsigned char *u = (const unsigned char *)st->pend.p;
    size_t len = st->pend.len, keep = len;
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        size_t k = len - back;
        if (u[k] >= 0xC0 || u[k] < 0x80) {
            if (u[k] >= 0xC0 && zl_utf8_seq(u + k, back) == 0)
                keep = k;
            break;
        }
    }
    st->scratch.len = 0;
    if (zl_utf8_lossy(st->pend.p, keep, &st->scratch) < 0)
        return ZL_ENOMEM;
    memmove(st->pend.p, st->pend.p + keep, len - keep);
    st->pend.len = len - keep;
    return st->scratch.len ? feed(d, i + 1, st->scratch.p, st->scratch.len) : 0;
}

static int replace(struct zl_detok *d, size_t i, const char *s, size_t n)
{
    struct stage *st = &d->st[i];
    st->scratch.len = 0;
    if (replace_into(&d->t->dec[i], s, n, &st->scratch) < 0)
        return ZL_ENOMEM;
    return feed(d, i + 1, st->scratch.p, st->scratch.len);
}

static int metaspace(struct zl_detok *d, size_t i, const char *s, size_t n)
{
    const struct zl_tok_dec *dc = &d->t->dec[i];
    struct stage *st = &d->st[i];
    int first = st->joined || st->n_in == 0;
    st->scratch.len = 0;
    if (metaspace_into(dc, s, n, first && dc->prepend, &st->scratch) < 0)
        return ZL_ENOMEM;
    st->n_in++;
    return feed(d, i + 1, st->scratch.p ? st->scratch.p : "", st->scratch.len);
}

static size_t cp_prefix(const char *s, size_t n, uint32_t cp, int max, int *count)
{
    size_t k = 0, adv;
    *count = 0;
    while (k < n && *count < max && zl_utf8_decode(s + k, n - k, &adv) == cp)
        k += adv, ++*count;
    return k;
}

/* Strip: per token, or on the fused stream when an upstream stage fused. */
static int strip(struct zl_detok *d, size_t i, const char *s, size_t n)
{
    const struct zl_tok_dec *dc = &d->t->dec[i];
    struct stage *st = &d->st[i];
    int cnt;
    if (!st->joined) {
        size_t a, b;
        strip_span(dc, s, n, &a, &b);
        return feed(d, i + 1, s + a, b - a);
    }
    if (st->left > 0) {
        size_t a = cp_prefix(s, n, dc->cp, st->left, &cnt);
        st->left = a < n ? 0 : st->left - cnt;
        s += a, n -= a;
    }
    if (!dc->stop)
        return n ? feed(d, i + 1, s, n) : 0;
    /* Hold the trailing run of strip characters until something follows. */
    size_t end = n, adv;
    while (end > 0) {
        size_t p = end - 1;
        while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80)
            p--;
        if (zl_utf8_decode(s + p, end - p, &adv) != dc->cp)
            break;
        end = p;
    }
    if (end > 0 && st->pend.len) {
        int rc = feed(d, i + 1, st->pend.p, st->pend.len);
        st->pend.len = 0;
        if (rc < 0)
            return rc;
    }
    if (end > 0) {
        int rc = feed(d, i + 1, s, end);
        if (rc < 0)
            return rc;
    }
    return zl_tok_buf_put(&st->pend, s + end, n - end);
}

static int feed(struct zl_detok *d, size_t i, const char *s, size_t n)
{
    if (i == d->t->n_dec)
        return zl_tok_buf_put(&d->out, s, n);
    const struct zl_tok_dec *dc = &d->t->dec[i];
    struct stage *st = &d->st[i];
    uint8_t b;
    switch (dc->kind) {
    case ZL_DEC_JOIN_SPACE:
        if (st->n_in++ && feed(d, i + 1, " ", 1) < 0)
            return ZL_ENOMEM;
        return feed(d, i + 1, s, n);
    case ZL_DEC_FUSE:
        return feed(d, i + 1, s, n);
    case ZL_DEC_REPLACE:
        return replace(d, i, s, n);
    case ZL_DEC_METASPACE:
        return metaspace(d, i, s, n);
    case ZL_DEC_STRIP:
        return strip(d, i, s, n);
    case ZL_DEC_BYTELEVEL:
        return bytelevel(d, i, s, n);
    case ZL_DEC_BYTEFALLBACK:
        if (!st->joined && is_byte_token(s, n, &b))
            return zl_tok_buf_put(&st->pend, &b, 1);
        if (flush_bytes(d, i) < 0)
            return ZL_ENOMEM;
        return feed(d, i + 1, s, n);
    }
    return 0;
}

void zl_detok_reset(struct zl_detok *d)
{
    for (size_t i = 0; i < d->t->n_dec; i++) {
        d->st[i].pend.len = 0;
        d->st[i].n_in = 0;
        d->st[i].left = d->t->dec[i].start;
    }
    d->out.len = 0;
}

int zl_detok_create(const struct zl_tokenizer *t, uint32_t flags, struct zl_detok **out)
{
    *out = NULL;
    struct zl_detok *d = calloc(1, sizeof(*d));
    if (!d || !(d->st = calloc(t->n_dec + 1, sizeof(*d->st)))) {
        free(d);
        return zl_error(ZL_ENOMEM, "detok: out of memory");
    }
    d->t = t;
    d->flags = flags;
    int joined = 0;
    for (size_t i = 0; i < t->n_dec; i++) {
        d->st[i].joined = joined;
        joined |= t->dec[i].kind == ZL_DEC_FUSE || t->dec[i].kind == ZL_DEC_BYTELEVEL;
    }
    zl_detok_reset(d);
    *out = d;
    return 0;
}

void zl_detok_free(struct zl_detok *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->st && i < d->t->n_dec; i++) {
        free(d->st[i].pend.p);
        free(d->st[i].scratch.p);
    }
    free(d->st);
    free(d->out.p);
    free(d);
}

static int result(struct zl_detok *d, int rc, const char **text, size_t *len)
{
    if (rc == 0 && !d->out.p)
        rc = zl_tok_buf_put(&d->out, "", 0);
    *text = rc == 0 ? d->out.p : "";
    *len = rc == 0 ? d->out.len : 0;
    return rc;
}

int zl_detok_push(struct zl_detok *d, int32_t id, const char **text, size_t *len)
{
    const struct zl_tokenizer *t = d->t;
    d->out.len = 0;
    int rc = 0;
    if (id >= 0 && id < t->n_vocab && t->text[id] &&
        !((d->flags & ZL_DETOK_SKIP_SPECIAL) && (t->attr[id] & ZL_TOKA_SPECIAL)))
        rc = feed(d, 0, t->text[id], t->text_len[id]);
    return result(d, rc, text, len);
}

int zl_detok_finish(struct zl_detok *d, const char **text, size_t *len)
{
    const struct zl_tokenizer *t = d->t;
    d->out.len = 0;
    int rc = 0;
    for (size_t i = 0; i < t->n_dec && rc == 0; i++) {
        struct stage *st = &d->st[i];
        const struct zl_tok_dec *dc = &t->dec[i];
        if (!st->pend.len)
            continue;
        if (dc->kind == ZL_DEC_BYTEFALLBACK) {
            rc = flush_bytes(d, i);
        } else if (dc->kind == ZL_DEC_BYTELEVEL) {
            st->pend.len = 0; /* an incomplete tail is one U+FFFD */
            rc = feed(d, i + 1, k_fffd, 3);
        } else if (dc->kind == ZL_DEC_STRIP) {
            size_t n = st->pend.len;
            for (int k = 0; k < dc->stop && n > 0; k++) {
                n--;
                while (n > 0 && ((unsigned char)st->pend.p[n] & 0xC0) == 0x80)
                    n--;
            }
            st->pend.len = 0;
            rc = n ? feed(d, i + 1, st->pend.p, n) : 0;
        }
    }
    size_t n_out = d->out.len;
    /* Reset the stages but keep this call's output. */
    for (size_t i = 0; i < t->n_dec; i++) {
        d->st[i].pend.len = 0;
        d->st[i].n_in = 0;
        d->st[i].left = t->dec[i].start;
    }
    d->out.len = n_out;
    return result(d, rc, text, len);
}

int zl_tokenizer_decode(const struct zl_tokenizer *t, const int32_t *ids, size_t n_ids,
                        uint32_t flags, char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    struct zl_detok *d;
    int rc = zl_detok_create(t, flags, &d);
    if (rc < 0)
        return rc;
    struct zl_tok_buf all = {0};
    const char *s;
    size_t n;
    for (size_t i = 0; i < n_ids && rc == 0; i++) {
        rc = zl_detok_push(d, ids[i], &s, &n);
        if (rc == 0)
            rc = zl_tok_buf_put(&all, s, n);
    }
    if (rc == 0)
        rc = zl_detok_finish(d, &s, &n);
    if (rc == 0)
        rc = zl_tok_buf_put(&all, s, n);
    zl_detok_free(d);
    if (rc < 0) {
        free(all.p);
        return rc;
    }
    *text = all.p;
    if (len)
        *len = all.len;
    return 0;
}

/* One token's bytes as the decoder chain gives them in mid-stream: the
 * stages that only act at the start of the text (a fused Strip, a first
 * Metaspace) and the holding back of incomplete UTF-8 do not apply, so
 * the bytes of consecutive tokens concatenate to the decoded text. */
int zl_tok_token_bytes(const struct zl_tokenizer *t, int32_t id, struct zl_tok_buf *out)
{
    out->len = 0;
    if (id < 0 || id >= t->n_vocab || !t->text[id])
        return 0;
    struct zl_tok_buf a = {0}, b = {0};
    int rc = zl_tok_buf_put(&a, t->text[id], t->text_len[id]);
    int joined = 0;
    uint8_t byte;
    for (size_t i = 0; i < t->n_dec && rc == 0; i++) {
        const struct zl_tok_dec *dc = &t->dec[i];
        const char *s = a.p ? a.p : "";
        size_t n = a.len;
        b.len = 0;
        switch (dc->kind) {
        case ZL_DEC_BYTELEVEL:
            rc = bytelevel_bytes(s, n, &b);
            joined = 1;
            break;
        case ZL_DEC_BYTEFALLBACK:
            rc = !joined && is_byte_token(s, n, &byte) ? zl_tok_buf_put(&b, &byte, 1)
                                                       : zl_tok_buf_put(&b, s, n);
            break;
        case ZL_DEC_REPLACE:
            rc = replace_into(dc, s, n, &b);
            break;
        case ZL_DEC_METASPACE:
            rc = metaspace_into(dc, s, n, 0, &b);
            break;
        case ZL_DEC_STRIP: {            /* a fused stream's Strip acts at its start only */
            size_t lo = 0, hi = n;
            if (!joined)
                strip_span(dc, s, n, &lo, &hi);
            rc = zl_tok_buf_put(&b, s + lo, hi - lo);
            break;
        }
        case ZL_DEC_JOIN_SPACE:
            rc = zl_tok_buf_put(&b, " ", 1);
            if (rc == 0)
                rc = zl_tok_buf_put(&b, s, n);
            break;
        case ZL_DEC_FUSE:
            joined = 1;
            rc = zl_tok_buf_put(&b, s, n);
            break;
        }
        struct zl_tok_buf x = a;
        a = b;
        b = x;
    }
    free(b.p);
    if (rc == 0) {
        free(out->p);
        *out = a;
        return 0;
    }
    free(a.p);
    return zl_error(ZL_ENOMEM, "tokenizer: out of memory for token bytes");
}
