/* Encode pipeline, as HF Tokenizer::encode: added tokens split out first
 * (non-normalized ones on the raw text, normalized ones on the normalized
 * text), normalizer, pre-tokenizer, BPE per word, post-processor. */
#include "tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct enc {
    const struct zl_tokenizer *t;
    struct zl_tok_cache *cache;     /* locked by us, or NULL */
    pcre2_match_data **md;          /* [n_pretok] */
    struct zl_tok_ids *out;
};

/* Leftmost-longest match at or after `pos`: returns the added index or -1. */
static int32_t trie_find(const struct zl_tok_trie *tr, const char *s, size_t n, size_t pos,
                         size_t *ms, size_t *me)
{
    if (!tr->n)
        return -1;
    for (size_t i = pos; i < n; i++) {
        if (!tr->first[(uint8_t)s[i]])
            continue;
        int32_t cur = 0, best = -1;
        size_t best_end = 0;
        for (size_t k = i; k < n; k++) {
            int32_t c = tr->node[cur].child;
            while (c >= 0 && tr->node[c].byte != (uint8_t)s[k])
                c = tr->node[c].sibling;
            if (c < 0)
                break;
            cur = c;
            if (tr->node[c].added >= 0)
                best = tr->node[c].added, best_end = k + 1;
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            return best;
        }
    }
    return -1;
}

/* What HF's single_word counts as part of a word (measured on tokenizers
 * 0.22.1): letters, marks, numbers, connector punctuation, ZWNJ/ZWJ. */
static int is_word_cp(uint32_t cp)
{
    if (cp == 0x200C || cp == 0x200D)
        return 1;
    int c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_NO) || c == UTF8PROC_CATEGORY_PC;
}

static size_t prev_char(const char *s, size_t i)
{
    while (i > 0 && ((unsigned char)s[--i] & 0xC0) == 0x80)
        ;
    return i;
}

/* Text between added tokens: pre-tokenize and run the model on each word. */
static int encode_text(struct enc *e, const char *s, size_t n, int at_start)
{
    if (!n)
        return 0;
    struct zl_tok_pieces pcs;
    int rc = zl_tok_pretokenize(e->t, e->md, s, n, at_start, &pcs);
    for (size_t i = 0; i < pcs.n && rc == 0; i++)
        rc = zl_tok_bpe_word(e->t, e->cache, pcs.v[i].p, pcs.v[i].len, e->out);
    zl_tok_pieces_free(&pcs);
    return rc;
}

static int encode_norm(struct enc *e, const char *s, size_t n, int at_start);

/* HF AddedVocabulary::find_matches with single_word / lstrip / rstrip. */
static int split_added(struct enc *e, const struct zl_tok_trie *tr, const char *s, size_t n,
                       int at_start, int normalized)
{
    const struct zl_tokenizer *t = e->t;
    size_t start_offset = 0, pos = 0, ms, me;
    int32_t idx;
    while ((idx = trie_find(tr, s, n, pos, &ms, &me)) >= 0) {
        const struct zl_tok_added *a = &t->added[idx];
        size_t start = ms, stop = me, adv;
        pos = me;
        if (a->single_word) {
            int before = ms > 0 && is_word_cp(zl_utf8_decode(s + prev_char(s, ms), ms - prev_char(s, ms), &adv));
            int after = me < n && is_word_cp(zl_utf8_decode(s + me, n - me, &adv));
            if (before || after)
                continue;
        }
        if (a->lstrip) {
            while (start > start_offset) {
                size_t p = prev_char(s, start);
                if (!zl_utf8_is_space(zl_utf8_decode(s + p, start - p, &adv)))
                    break;
                start = p;
            }
        }
        if (a->rstrip)
            while (stop < n && zl_utf8_is_space(zl_utf8_decode(s + stop, n - stop, &adv)))
                stop += adv;
        int rc = normalized ? encode_text(e, s + start_offset, start - start_offset,
                                          at_start && start_offset == 0)
                            : encode_norm(e, s + start_offset, start - start_offset,
                                          at_start && start_offset == 0);
        if (rc < 0 || (rc = zl_tok_ids_push(e->out, a->id)) < 0)
            return rc;
        start_offset = pos = stop;
    }
    return normalized ? encode_text(e, s + start_offset, n - start_offset, at_start && start_offset == 0)
                      : encode_norm(e, s + start_offset, n - start_offset, at_start && start_offset == 0);
}

/* A piece free of non-normalized added tokens: normalize, then split out
 * the normalized added tokens. */
static int encode_norm(struct enc *e, const char *s, size_t n, int at_start)
{
    if (!n)
        return 0;
    if (!e->t->n_norm)
        return split_added(e, &e->t->trie_norm, s, n, at_start, 1);
    struct zl_tok_buf b = {0};
    int rc = zl_tok_normalize(e->t, s, n, &b);
    if (rc == 0)
        rc = split_added(e, &e->t->trie_norm, b.p ? b.p : "", b.len, at_start, 1);
    free(b.p);
    return rc;
}

static int is_valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = zl_utf8_seq(u + i, n - i);
        if (k <= 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

int zl_tokenizer_encode(const struct zl_tokenizer *t, const char *text, size_t len, uint32_t flags,
                        int32_t **ids, size_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (!text && len)
        return zl_error(ZL_EINVAL, "tokenizer: NULL text");
    if (!text)
        text = "";
    struct zl_tok_buf clean = {0};
    if (!is_valid_utf8(text, len)) {
        if (zl_utf8_lossy(text, len, &clean) < 0) {
            free(clean.p);
            return ZL_ENOMEM;
        }
        text = clean.p;
        len = clean.len;
    }
    struct zl_tok_ids out = {0};
    pcre2_match_data *mdbuf[16] = {0}, **md = mdbuf;
    int rc = 0;
    if (t->n_pretok > 16 && !(md = calloc(t->n_pretok, sizeof(*md))))
        rc = zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < t->n_pretok && rc == 0; i++) {
        md[i] = t->pretok[i].re ? pcre2_match_data_create_from_pattern(t->pretok[i].re, NULL) : NULL;
        if (t->pretok[i].re && !md[i])
            rc = zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    }
    /* The cache is shared: a thread that finds it busy works without it. */
    struct zl_tok_cache *cache = (struct zl_tok_cache *)&t->cache;
    int locked = rc == 0 && pthread_mutex_trylock(&cache->mu) == 0;
    struct enc e = {t, locked ? cache : NULL, md, &out};
    if (rc == 0 && (flags & ZL_TOK_ADD_SPECIAL))
        for (size_t i = 0; i < t->n_post_pre && rc == 0; i++)
            rc = zl_tok_ids_push(&out, t->post_pre[i]);
    if (rc == 0)
        rc = split_added(&e, &t->trie_raw, text, len, 1, 0);
    if (rc == 0 && (flags & ZL_TOK_ADD_SPECIAL))
        for (size_t i = 0; i < t->n_post_post && rc == 0; i++)
            rc = zl_tok_ids_push(&out, t->post_post[i]);
    if (locked)
        pthread_mutex_unlock(&cache->mu);
    for (size_t i = 0; i < t->n_pretok && md; i++)
        pcre2_match_data_free(md[i]);
    if (md != mdbuf)
        free(md);
    free(clean.p);
    if (rc < 0) {
        free(out.v);
        return rc;
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}
