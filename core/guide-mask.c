/* Which tokens may come next: the vocabulary's bytes as a trie, walked
 * depth first through copies of the automaton's state, so a prefix that
 * fails rules out every token under it.  Inside a string most of the
 * vocabulary is plain characters, all allowed (up to a length bound), so
 * there only the other tokens are walked, in a trie of their own.  A guide
 * keeps the masks of its last few states: between keys the state repeats. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "guide-impl.h"
#include "tokenizer-impl.h"

#define GD_CACHE 16

struct gv_node {
    int32_t child, sibling;     /* -1: none */
    int32_t tok;                /* first token whose bytes end here, -1: none */
    uint8_t byte;
};

struct gv_trie {
    struct gv_node *nodes;      /* nodes[0] is the root */
    size_t n_nodes, cap;
    int32_t *same;              /* [n_vocab] next token with the same bytes, -1 */
};

struct zl_guide_vocab {
    int32_t n_vocab;
    struct gv_trie all;         /* every token with bytes */
    struct gv_trie rest;        /* those that are not plain string characters */
    uint32_t *off;              /* [n_vocab + 1] token t's bytes: bytes[off[t] .. off[t + 1]) */
    char *bytes;
    int32_t max_len;            /* longest token, bytes */
    uint32_t *plain;            /* [words] bit t: t is plain string characters */
    int32_t *plain_ids;         /* [n_plain] those tokens, and their code points */
    int32_t *plain_cps;
    int32_t n_plain;
};

struct gd_cached {
    bool valid;
    uint64_t hash, stamp;
    int32_t count;
    struct gd_state st;
    uint32_t *mask;
};

struct zl_guide {
    const struct zl_json_schema *sc;
    const struct zl_guide_vocab *v;
    struct gd_state s;
    struct gd_state *stk;       /* [max_len + 1] the walk's states, by depth */
    int32_t *cur;               /* [max_len + 1] the child each depth goes to next */
    struct gd_cached cache[GD_CACHE];
    uint64_t clock;
    size_t words;
};

static int add_node(struct gv_trie *tr, uint8_t byte, int32_t *out)
{
    if (tr->n_nodes == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 4096;
        struct gv_node *n = realloc(tr->nodes, sizeof(*n) * cap);
        if (!n)
            return ZL_ENOMEM;
        tr->nodes = n;
        tr->cap = cap;
    }
    tr->nodes[tr->n_nodes] = (struct gv_node){.child = -1, .sibling = -1, .tok = -1, .byte = byte};
    *out = (int32_t)tr->n_nodes++;
    return ZL_OK;
}

static int trie_init(struct gv_trie *tr, int32_t n_vocab)
{
    int32_t root;
    if (!(tr->same = malloc(sizeof(*tr->same) * (size_t)n_vocab)))
        return ZL_ENOMEM;
    return add_node(tr, 0, &root);
}

static int insert(struct gv_trie *tr, const struct zl_guide_vocab *v, int32_t t)
{
    int32_t at = 0;
    for (uint32_t k = v->off[t]; k < v->off[t + 1]; k++) {
        uint8_t b = (uint8_t)v->bytes[k];
        int32_t c = tr->nodes[at].child;
        while (c >= 0 && tr->nodes[c].byte != b)
            c = tr->nodes[c].sibling;
        if (c < 0) {
            int rc = add_node(tr, b, &c);
            if (rc < 0)
                return rc;
            tr->nodes[c].sibling = tr->nodes[at].child;
            tr->nodes[at].child = c;
        }
        at = c;
    }
    tr->same[t] = tr->nodes[at].tok;
    tr->nodes[at].tok = t;
    return ZL_OK;
}

/* Code points of s when it is whole UTF-8 with no quote, backslash or
 * control byte (what a JSON string takes as it is), else -1. */
static int32_t plain_cps(const uint8_t *s, size_t n)
{
    int32_t cps = 0;
    for (size_t i = 0; i < n; cps++) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == '"' || c == '\\')
                return -1;
            i++;
            continue;
        }
        size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        uint8_t lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        uint8_t hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (!len || i + len > n)
            return -1;
        for (size_t k = 1; k < len; k++, lo = 0x80, hi = 0xBF)
            if (s[i + k] < lo || s[i + k] > hi)
                return -1;
        i += len;
    }
    return cps;
}

/* The plain tokens' mask and list, and the rest's trie. */
static int split_plain(struct zl_guide_vocab *v)
{
    size_t words = ((size_t)v->n_vocab + 31) / 32;
    v->plain = calloc(words, sizeof(*v->plain));
    v->plain_ids = malloc(sizeof(*v->plain_ids) * (size_t)v->n_vocab);
    v->plain_cps = malloc(sizeof(*v->plain_cps) * (size_t)v->n_vocab);
    int rc = v->plain && v->plain_ids && v->plain_cps ? trie_init(&v->rest, v->n_vocab) : ZL_ENOMEM;
    for (int32_t t = 0; rc == ZL_OK && t < v->n_vocab; t++) {
        if (v->off[t + 1] == v->off[t])
            continue;
        int32_t cps = plain_cps((const uint8_t *)v->bytes + v->off[t], v->off[t + 1] - v->off[t]);
        if (cps < 0) {
            rc = insert(&v->rest, v, t);
            continue;
        }
        v->plain[t / 32] |= 1u << (t % 32);
        v->plain_ids[v->n_plain] = t;
        v->plain_cps[v->n_plain++] = cps;
    }
    return rc;
}

int zl_guide_vocab_create(const struct zl_tokenizer *t, int32_t n_vocab,
                          struct zl_guide_vocab **out)
{
    *out = NULL;
    if (!t || n_vocab <= 0)
        return zl_error(ZL_EINVAL, "guide: a vocabulary needs a tokenizer and a size");
    struct zl_guide_vocab *v = calloc(1, sizeof(*v));
    struct zl_tok_buf buf = {0}, all = {0};
    int rc = v ? ZL_OK : ZL_ENOMEM;
    if (rc == ZL_OK) {
        v->n_vocab = n_vocab;
        v->off = calloc((size_t)n_vocab + 1, sizeof(*v->off));
        rc = v->off ? ZL_OK : ZL_ENOMEM;
    }
    for (int32_t id = 0; rc == ZL_OK && id < n_vocab; id++) {
        buf.len = 0;
        if (!zl_tokenizer_is_special(t, id))
            rc = zl_tok_token_bytes(t, id, &buf);
        if (rc == ZL_OK && buf.len)
            rc = zl_tok_buf_put(&all, buf.p, buf.len);
        if (rc == ZL_OK && all.len > UINT32_MAX)
            rc = ZL_ENOMEM;
        v->off[id + 1] = (uint32_t)all.len;
        if (buf.len > (size_t)v->max_len)
            v->max_len = (int32_t)buf.len;
    }
    free(buf.p);
    if (rc == ZL_OK) {
        v->bytes = all.p;
        rc = trie_init(&v->all, n_vocab);
    }
    for (int32_t id = 0; rc == ZL_OK && id < n_vocab; id++)
        if (v->off[id + 1] > v->off[id])
            rc = insert(&v->all, v, id);
    if (rc == ZL_OK)
        rc = split_plain(v);
    if (rc < 0) {
        if (v && !v->bytes)
            free(all.p);
        zl_guide_vocab_free(v);
        return zl_error(ZL_ENOMEM, "guide: out of memory for the vocabulary");
    }
    *out = v;
    return ZL_OK;
}

void zl_guide_vocab_free(struct zl_guide_vocab *v)
{
    if (!v)
        return;
    free(v->all.nodes);
    free(v->all.same);
    free(v->rest.nodes);
    free(v->rest.same);
    free(v->plain);
    free(v->plain_ids);
    free(v->plain_cps);
    free(v->off);
    free(v->bytes);
    free(v);
}

int32_t zl_guide_vocab_size(const struct zl_guide_vocab *v)
{
    return v->n_vocab;
}

const char *zl_guide_vocab_token(const struct zl_guide_vocab *v, int32_t t, size_t *len)
{
    *len = t >= 0 && t < v->n_vocab ? v->off[t + 1] - v->off[t] : 0;
    return *len ? v->bytes + v->off[t] : "";
}

int zl_guide_create(const struct zl_json_schema *s, const struct zl_guide_vocab *v,
                    struct zl_guide **out)
{
    *out = NULL;
    struct zl_guide *g = calloc(1, sizeof(*g));
    if (g) {
        g->sc = s;
        g->v = v;
        g->words = ((size_t)v->n_vocab + 31) / 32;
        g->stk = malloc(sizeof(*g->stk) * ((size_t)v->max_len + 1));
        g->cur = malloc(sizeof(*g->cur) * ((size_t)v->max_len + 1));
        gd_start(s, &g->s);
    }
    if (!g || !g->stk || !g->cur) {
        zl_guide_free(g);
        return zl_error(ZL_ENOMEM, "guide: out of memory");
    }
    *out = g;
    return ZL_OK;
}

void zl_guide_free(struct zl_guide *g)
{
    if (!g)
        return;
    for (int i = 0; i < GD_CACHE; i++)
        free(g->cache[i].mask);
    free(g->stk);
    free(g->cur);
    free(g);
}

/* The walk of trie tr, adding to allowed: stk[d] is the state after the d
 * bytes of the path to the node whose children cur[d] goes through. */
static int32_t walk(struct zl_guide *g, const struct gv_trie *tr, uint32_t *allowed)
{
    int32_t count = 0, d = 0;
    memcpy(&g->stk[0], &g->s, gd_state_size(&g->s));
    g->cur[0] = tr->nodes[0].child;
    while (d >= 0) {
        int32_t c = g->cur[d];
        if (c < 0) {
            d--;
            continue;
        }
        const struct gv_node *n = &tr->nodes[c];
        g->cur[d] = n->sibling;
        memcpy(&g->stk[d + 1], &g->stk[d], gd_state_size(&g->stk[d]));
        if (!gd_feed(g->sc, &g->stk[d + 1], n->byte))
            continue;
        for (int32_t t = n->tok; t >= 0; t = tr->same[t]) {
            allowed[t / 32] |= 1u << (t % 32);
            count++;
        }
        if (n->child >= 0)
            g->cur[++d] = n->child;
    }
    return count;
}

/* The mask of g's state, from scratch. */
static int32_t masks(struct zl_guide *g, uint32_t *allowed)
{
    const struct zl_guide_vocab *v = g->v;
    int64_t room = gd_string_room(g->sc, &g->s);
    memset(allowed, 0, sizeof(*allowed) * g->words);
    if (room == -2)
        return walk(g, &v->all, allowed);
    int32_t count = 0;
    if (room == -1) {
        memcpy(allowed, v->plain, sizeof(*allowed) * g->words);
        count = v->n_plain;
    } else {
        for (int32_t i = 0; i < v->n_plain; i++)
            if (v->plain_cps[i] <= room) {
                allowed[v->plain_ids[i] / 32] |= 1u << (v->plain_ids[i] % 32);
                count++;
            }
    }
    return count + walk(g, &v->rest, allowed);
}

int32_t zl_guide_mask(struct zl_guide *g, uint32_t *allowed)
{
    size_t size = gd_state_size(&g->s);
    uint64_t h = XXH3_64bits(&g->s, size);
    struct gd_cached *slot = &g->cache[0];
    g->clock++;
    for (int i = 0; i < GD_CACHE; i++) {
        struct gd_cached *e = &g->cache[i];
        if (e->valid && e->hash == h && !memcmp(&e->st, &g->s, size)) {
            e->stamp = g->clock;
            memcpy(allowed, e->mask, sizeof(*allowed) * g->words);
            return e->count;
        }
        if (!e->valid || e->stamp < slot->stamp)
            slot = e;       /* a free slot, else the least recently used */
    }
    int32_t count = masks(g, allowed);
    if (!slot->mask && !(slot->mask = malloc(sizeof(*slot->mask) * g->words)))
        return count;       /* no room to remember it: the mask itself is right */
    memcpy(slot->mask, allowed, sizeof(*allowed) * g->words);
    memcpy(&slot->st, &g->s, size);
    slot->hash = h;
    slot->count = count;
    slot->stamp = g->clock;
    slot->valid = true;
    return count;
}

/* g's state advanced by bytes into *s; how many bytes it took (n: all).
 * Only the used part of the state is copied. */
static size_t run(const struct zl_guide *g, const char *bytes, size_t n, struct gd_state *s)
{
    memcpy(s, &g->s, gd_state_size(&g->s));
    for (size_t i = 0; i < n; i++)
        if (!gd_feed(g->sc, s, (uint8_t)bytes[i]))
            return i;
    return n;
}

int zl_guide_feed(struct zl_guide *g, const char *bytes, size_t n)
{
    struct gd_state s;
    size_t i = run(g, bytes, n, &s);
    if (i < n)
        return zl_error(ZL_EINVAL, "guide: byte %zu (0x%02x) of the text cannot come next "
                        "in the schema's JSON", i, (uint8_t)bytes[i]);
    memcpy(&g->s, &s, gd_state_size(&s));
    return ZL_OK;
}

int zl_guide_takes(const struct zl_guide *g, const char *bytes, size_t n)
{
    struct gd_state s;
    return run(g, bytes, n, &s) == n;
}

int zl_guide_accept(struct zl_guide *g, int32_t t)
{
    const struct zl_guide_vocab *v = g->v;
    if (t < 0 || t >= v->n_vocab || v->off[t + 1] == v->off[t])
        return zl_error(ZL_EINVAL, "guide: token %d has no text the schema's JSON can take", t);
    int rc = zl_guide_feed(g, v->bytes + v->off[t], v->off[t + 1] - v->off[t]);
    return rc < 0 ? zl_error_wrap(rc, "guide: token %d", t) : ZL_OK;
}

int zl_guide_can_end(const struct zl_guide *g)
{
    return gd_can_end(g->sc, &g->s);
}
