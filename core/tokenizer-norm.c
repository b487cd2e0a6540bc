/* Normalizers (NFC..., Prepend, Replace, Lowercase, Strip) and
 * pre-tokenizers (Split, ByteLevel, Digits, Metaspace) with HF semantics.
 * Pre-tokenizers turn one text piece into a list of pieces; no offsets are
 * kept because nothing downstream needs them. */
#include "tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- normalizers ---- */

static int replace_all(pcre2_code *re, const char *s, size_t n, const char *with, size_t wn,
                       struct zl_tok_buf *out)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    size_t off = 0, run = 0;
    int rc = 0;
    while (off <= n && rc == 0) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* empty match: step one character */
            size_t adv;
            if (ov[0] >= n)
                break;
            zl_utf8_decode(s + ov[0], n - ov[0], &adv);
            off = ov[0] + adv;
            continue;
        }
        rc = zl_tok_buf_put(out, s + run, ov[0] - run);
        if (rc == 0)
            rc = zl_tok_buf_put(out, with, wn);
        run = off = ov[1];
    }
    pcre2_match_data_free(md);
    return rc ? rc : zl_tok_buf_put(out, s + run, n - run);
}

static int utf8proc_step(const char *s, size_t n, int opts, struct zl_tok_buf *out)
{
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80)
        i++;
    if (i == n || n > (size_t)INT32_MAX) /* ASCII is invariant under every form */
        return zl_tok_buf_put(out, s, n);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | opts));
    if (r < 0) { /* cannot happen on valid UTF-8; keep the text as is */
        free(dst);
        return zl_tok_buf_put(out, s, n);
    }
    int rc = zl_tok_buf_put(out, dst, (size_t)r);
    free(dst);
    return rc;
}

static int lower_step(const char *s, size_t n, struct zl_tok_buf *out)
{
    for (size_t i = 0, adv; i < n; i += adv) {
        char enc[4];
        uint32_t cp = zl_utf8_decode(s + i, n - i, &adv);
        size_t k = zl_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
        if (zl_tok_buf_put(out, enc, k) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

static int strip_step(const struct zl_tok_norm *st, const char *s, size_t n, struct zl_tok_buf *out)
{
    size_t a = 0, b = n, adv;
    while (st->left && a < b && zl_utf8_is_space(zl_utf8_decode(s + a, b - a, &adv)))
        a += adv;
    while (st->right && b > a) {
        size_t k = b - 1;
        while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
        if (!zl_utf8_is_space(zl_utf8_decode(s + k, b - k, &adv)))
            break;
        b = k;
    }
    return zl_tok_buf_put(out, s + a, b - a);
}

int zl_tok_normalize(const struct zl_tokenizer *t, const char *s, size_t n, struct zl_tok_buf *out)
{
    struct zl_tok_buf tmp[2] = {{0}, {0}};
    const char *cur = s;
    size_t cur_n = n;
    int rc = 0;
    for (size_t i = 0; i < t->n_norm && rc == 0; i++) {
        const struct zl_tok_norm *st = &t->norm[i];
        struct zl_tok_buf *o = &tmp[i & 1];
        o->len = 0;
        switch (st->kind) {
        case ZL_NORM_NFC: rc = utf8proc_step(cur, cur_n, UTF8PROC_COMPOSE, o); break;
        case ZL_NORM_NFD: rc = utf8proc_step(cur, cur_n, UTF8PROC_DECOMPOSE, o); break;
        case ZL_NORM_NFKC:
            rc = utf8proc_step(cur, cur_n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, o);
            break;
        case ZL_NORM_NFKD:
            rc = utf8proc_step(cur, cur_n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, o);
            break;
        case ZL_NORM_LOWER: rc = lower_step(cur, cur_n, o); break;
        case ZL_NORM_STRIP: rc = strip_step(st, cur, cur_n, o); break;
        case ZL_NORM_PREPEND:
            if (cur_n) /* HF prepends to non-empty text only */
                rc = zl_tok_buf_put(o, st->str, st->str_len);
            if (rc == 0)
                rc = zl_tok_buf_put(o, cur, cur_n);
            break;
        case ZL_NORM_REPLACE: rc = replace_all(st->re, cur, cur_n, st->str, st->str_len, o); break;
        }
        if (rc == 0 && !o->p)
            rc = zl_tok_buf_put(o, "", 0);
        cur = o->p;
        cur_n = o->len;
    }
    if (rc == 0)
        rc = zl_tok_buf_put(out, cur, cur_n);
    free(tmp[0].p);
    free(tmp[1].p);
    return rc;
}

/* ---- pieces ---- */

static int piece_push(struct zl_tok_pieces *v, const char *p, size_t len, int at_start)
{
    if (len == 0)
        return 0;
    if (zl_tok_grow((void **)&v->v, &v->cap, v->n, sizeof(*v->v), 64) < 0)
        return ZL_ENOMEM;
    v->v[v->n++] = (struct zl_tok_piece){p, (uint32_t)len, (uint8_t)at_start};
    return 0;
}

/* A buffer that lives as long as the piece list, reserved up front so the
 * pieces pointing into it never move. */
static char *pieces_storage(struct zl_tok_pieces *v, size_t size)
{
    struct zl_tok_buf *b = realloc(v->bufs, (v->n_bufs + 1) * sizeof(*b));
    if (!b)
        return NULL;
    v->bufs = b;
    b[v->n_bufs] = (struct zl_tok_buf){0};
    if (zl_tok_buf_reserve(&b[v->n_bufs], size) < 0)
        return NULL;
    return b[v->n_bufs++].p;
}

/* Room to rewrite every piece of `in` where each byte may grow `mult`
 * times and each piece gain `extra` bytes. */
static char *rewrite_storage(const struct zl_tok_pieces *in, size_t mult, size_t extra,
                             struct zl_tok_pieces *store)
{
    size_t total = 0;
    for (size_t i = 0; i < in->n; i++)
        total += in->v[i].len * mult + extra;
    char *buf = pieces_storage(store, total);
    if (!buf)
        zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    return buf;
}

void zl_tok_pieces_free(struct zl_tok_pieces *p)
{
    for (size_t i = 0; i < p->n_bufs; i++)
        free(p->bufs[i].p);
    free(p->bufs);
    free(p->v);
    memset(p, 0, sizeof(*p));
}

/* ---- splitting with HF's SplitDelimiterBehavior ---- */

struct seg { size_t a, b; int match; };
struct segs { struct seg *v; size_t n, cap; };

static int seg_push(struct segs *s, size_t a, size_t b, int match)
{
    if (zl_tok_grow((void **)&s->v, &s->cap, s->n, sizeof(*s->v), 32) < 0)
        return ZL_ENOMEM;
    s->v[s->n++] = (struct seg){a, b, match};
    return 0;
}

/* Applies `beh` to the segments of piece pc and appends the results. */
static int emit_split(const struct zl_tok_piece *pc, struct segs *sg, enum zl_split_behavior beh,
                      int invert, struct zl_tok_pieces *out)
{
    size_t n = sg->n, w = 0;
    struct seg *v = sg->v;
    for (size_t i = 0; i < n; i++)
        v[i].match ^= invert;
    switch (beh) {
    case ZL_SPLIT_ISOLATED:
    case ZL_SPLIT_REMOVED:
        w = n;
        break;
    case ZL_SPLIT_CONTIGUOUS:
    case ZL_SPLIT_MERGED_PREV: {
        /* Contiguous joins runs of equal kind; MergedWithPrevious joins a
         * match to the piece before it. */
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            int m = v[i].match;
            int join = beh == ZL_SPLIT_CONTIGUOUS ? m == prev : m && !prev;
            if (join && w)
                v[w - 1].b = v[i].b;
            else
                v[w++] = (struct seg){v[i].a, v[i].b, 0};
            prev = m;
        }
        break;
    }
    case ZL_SPLIT_MERGED_NEXT: {
        /* Folded from the right as HF does, then kept in order. */
        int prev = 0;
        size_t r = n; /* results grow downward from n */
        for (size_t i = n; i-- > 0;) {
            int m = v[i].match;
            if (m && !prev && r < n)
                v[r].a = v[i].a;
            else
                v[--r] = (struct seg){v[i].a, v[i].b, 0};
            prev = m;
        }
        memmove(v, v + r, (n - r) * sizeof(*v));
        w = n - r;
        break;
    }
    }
    for (size_t i = 0; i < w; i++) {
        if (beh == ZL_SPLIT_REMOVED && v[i].match)
            continue;
        if (piece_push(out, pc->p + v[i].a, v[i].b - v[i].a, pc->at_start && v[i].a == 0) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

static int regex_segs(pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, struct segs *sg)
{
    size_t off = 0, prev = 0;
    while (off < n) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m < 0) {
            if (m != PCRE2_ERROR_NOMATCH) /* match limit or JIT stack: keep the rest whole */
                break;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) {
            size_t adv;
            zl_utf8_decode(s + ov[0], n - ov[0], &adv);
            off = ov[0] + adv;
            continue;
        }
        if (ov[0] > prev && seg_push(sg, prev, ov[0], 0) < 0)
            return ZL_ENOMEM;
        if (seg_push(sg, ov[0], ov[1], 1) < 0)
            return ZL_ENOMEM;
        prev = off = ov[1];
    }
    if (prev < n && seg_push(sg, prev, n, 0) < 0)
        return ZL_ENOMEM;
    return 0;
}

/* Each numeric character is a match (HF char::is_numeric). */
static int digit_segs(const char *s, size_t n, struct segs *sg)
{
    size_t prev = 0;
    for (size_t i = 0, adv; i < n; i += adv) {
        uint32_t cp = zl_utf8_decode(s + i, n - i, &adv);
        int cat = utf8proc_category((utf8proc_int32_t)cp);
        if (cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
            cat == UTF8PROC_CATEGORY_NO) {
            if ((i > prev && seg_push(sg, prev, i, 0) < 0) || seg_push(sg, i, i + adv, 1) < 0)
                return ZL_ENOMEM;
            prev = i + adv;
        }
    }
    if (prev < n && seg_push(sg, prev, n, 0) < 0)
        return ZL_ENOMEM;
    return 0;
}

/* Metaspace: ' ' -> replacement, optional prepend, then split before each
 * replacement character (MergedWithNext). */
static int metaspace(const struct zl_tok_pretok *st, struct zl_tok_pieces *in,
                     struct zl_tok_pieces *out, struct segs *sg, struct zl_tok_pieces *store)
{
    char *buf = rewrite_storage(in, st->repl_len, st->repl_len, store);
    if (!buf)
        return ZL_ENOMEM;
    size_t w = 0;
    for (size_t i = 0; i < in->n; i++) {
        const struct zl_tok_piece *pc = &in->v[i];
        size_t start = w;
        int starts = pc->len >= st->repl_len && !memcmp(pc->p, st->repl, st->repl_len);
        int starts_sp = pc->len && pc->p[0] == ' ';
        if (!starts && !starts_sp &&
            (st->prepend_scheme == 0 || (st->prepend_scheme == 1 && pc->at_start))) {
            memcpy(buf + w, st->repl, st->repl_len);
            w += st->repl_len;
        }
        for (size_t k = 0; k < pc->len; k++) {
            if (pc->p[k] == ' ') {
                memcpy(buf + w, st->repl, st->repl_len);
                w += st->repl_len;
            } else {
                buf[w++] = pc->p[k];
            }
        }
        struct zl_tok_piece np = {buf + start, (uint32_t)(w - start), pc->at_start};
        if (!st->split) {
            if (piece_push(out, np.p, np.len, np.at_start) < 0)
                return ZL_ENOMEM;
            continue;
        }
        sg->n = 0;
        size_t prev = 0;
        for (size_t k = 0; k + st->repl_len <= np.len; k++) {
            if (memcmp(np.p + k, st->repl, st->repl_len))
                continue;
            if ((k > prev && seg_push(sg, prev, k, 0) < 0) || seg_push(sg, k, k + st->repl_len, 1) < 0)
                return ZL_ENOMEM;
            prev = k + st->repl_len;
            k = prev - 1;
        }
        if (prev < np.len && seg_push(sg, prev, np.len, 0) < 0)
            return ZL_ENOMEM;
        if (emit_split(&np, sg, ZL_SPLIT_MERGED_NEXT, 0, out) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

static int bytelevel_prefix(struct zl_tok_pieces *in, struct zl_tok_pieces *out,
                            struct zl_tok_pieces *store)
{
    char *buf = rewrite_storage(in, 1, 1, store);
    if (!buf)
        return ZL_ENOMEM;
    size_t w = 0;
    for (size_t i = 0; i < in->n; i++) {
        const struct zl_tok_piece *pc = &in->v[i];
        size_t start = w;
        if (pc->p[0] != ' ')
            buf[w++] = ' ';
        memcpy(buf + w, pc->p, pc->len);
        w += pc->len;
        if (piece_push(out, buf + start, w - start, pc->at_start) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

static void swap_pieces(struct zl_tok_pieces *a, struct zl_tok_pieces *b)
{
    struct zl_tok_pieces t = *a;
    *a = *b;
    *b = t;
}

int zl_tok_pretokenize(const struct zl_tokenizer *t, pcre2_match_data **md, const char *s, size_t n,
                       int at_start, struct zl_tok_pieces *out)
{
    struct zl_tok_pieces a = {0}, b = {0}, store = {0};
    struct segs sg = {0};
    int rc = piece_push(&a, s, n, at_start);
    for (size_t i = 0; i < t->n_pretok && rc == 0; i++) {
        const struct zl_tok_pretok *st = &t->pretok[i];
        b.n = 0;
        switch (st->kind) {
        case ZL_PT_METASPACE:
            rc = metaspace(st, &a, &b, &sg, &store);
            break;
        case ZL_PT_BYTELEVEL:
            if (st->add_prefix_space) {
                if ((rc = bytelevel_prefix(&a, &b, &store)) < 0)
                    break;
                swap_pieces(&a, &b);
                b.n = 0;
            }
            if (!st->re) {
                swap_pieces(&a, &b);
                break;
            }
            __attribute__((fallthrough)); /* the GPT-2 regex, isolated */
        case ZL_PT_SPLIT:
        case ZL_PT_DIGITS:
        case ZL_PT_WHITESPACE_SPLIT:
            for (size_t k = 0; k < a.n && rc == 0; k++) {
                sg.n = 0;
                rc = st->kind == ZL_PT_DIGITS ? digit_segs(a.v[k].p, a.v[k].len, &sg)
                                              : regex_segs(st->re, md[i], a.v[k].p, a.v[k].len, &sg);
                if (rc == 0) {
                    enum zl_split_behavior beh = st->kind == ZL_PT_BYTELEVEL ? ZL_SPLIT_ISOLATED
                                                 : st->kind == ZL_PT_DIGITS
                                                     ? (st->individual_digits ? ZL_SPLIT_ISOLATED
                                                                              : ZL_SPLIT_CONTIGUOUS)
                                                     : st->behavior;
                    rc = emit_split(&a.v[k], &sg, beh, st->kind == ZL_PT_SPLIT && st->invert, &b);
                }
            }
            break;
        }
        swap_pieces(&a, &b);
    }
    free(sg.v);
    free(b.v);
    a.bufs = store.bufs;
    a.n_bufs = store.n_bufs;
    if (rc < 0) {
        zl_tok_pieces_free(&a);
        return rc;
    }
    *out = a;
    return 0;
}
