/* BPE model: one pre-token word -> ids.  Lowest-rank merge first, leftmost
 * on ties (HF's BinaryHeap order), with a word cache in front. */
#include "tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_WORDS 100000
#define CACHE_MAX_IDS (4u << 20)
#define CACHE_MAX_WORD_LEN 256

int zl_tok_cache_init(struct zl_tok_cache *c)
{
    memset(c, 0, sizeof(*c));
    if (pthread_mutex_init(&c->mu, NULL) != 0)
        return zl_error(ZL_ENOMEM, "tokenizer: mutex init failed");
    c->ready = 1;
    return zl_tok_map_init(&c->map, 4096);
}

void zl_tok_cache_free(struct zl_tok_cache *c)
{
    if (!c->ready)
        return;
    pthread_mutex_destroy(&c->mu);
    zl_tok_map_free(&c->map);
    zl_tok_arena_free(&c->keys);
    free(c->ids.v);
    c->ready = 0;
}

static void cache_clear(struct zl_tok_cache *c)
{
    zl_tok_map_free(&c->map);
    zl_tok_arena_free(&c->keys);
    c->ids.n = 0;
    zl_tok_map_init(&c->map, 4096); /* on failure the map stays empty: lookups miss */
}

static void cache_put(struct zl_tok_cache *c, const char *w, size_t n, const int32_t *ids, size_t k)
{
    if (!c->map.slot || c->map.n >= CACHE_MAX_WORDS || c->ids.n + k + 1 > CACHE_MAX_IDS)
        cache_clear(c);
    if (!c->map.slot)
        return;
    char *key = zl_tok_arena_strdup(&c->keys, w, n);
    size_t off = c->ids.n;
    if (!key || zl_tok_ids_push(&c->ids, (int32_t)k) < 0)
        return;
    for (size_t i = 0; i < k; i++)
        if (zl_tok_ids_push(&c->ids, ids[i]) < 0) {
            c->ids.n = off;
            return;
        }
    if (zl_tok_map_put(&c->map, key, n, (int32_t)off) < 0)
        c->ids.n = off;
}

struct sym { int32_t id, prev, next, len; };

/* Binary min-heap of (rank << 32 | left symbol index). */
static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && h[c + 1] < h[c])
            c++;
        if (v <= h[c])
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = v;
    return top;
}

static void try_pair(const struct zl_tokenizer *t, const struct sym *s, int32_t i, uint64_t *h,
                     size_t *hn)
{
    int32_t merged, j = s[i].next;
    if (j < 0)
        return;
    int32_t r = zl_tok_pair_get(&t->merges, s[i].id, s[j].id, &merged);
    if (r >= 0)
        heap_push(h, hn, ((uint64_t)(uint32_t)r << 32) | (uint32_t)i);
}

/* Initial symbols: bytes (byte-level) or characters, with byte fallback and
 * fused unknowns as HF's BPE::merge_word. */
static int32_t init_syms(const struct zl_tokenizer *t, const char *w, size_t n, struct sym *s)
{
    int32_t k = 0;
    for (size_t i = 0, adv; i < n; i += adv) {
        int32_t id;
        if (t->byte_level) {
            adv = 1;
            id = t->byte_id[(uint8_t)w[i]];
        } else {
            zl_utf8_decode(w + i, n - i, &adv);
            id = zl_tok_map_get(&t->model, w + i, adv);
            if (id < 0 && t->byte_fallback) {
                int ok = 1;
                for (size_t b = 0; b < adv; b++)
                    ok &= t->byte_id[(uint8_t)w[i + b]] >= 0;
                if (ok) {
                    for (size_t b = 0; b < adv; b++)
                        s[k] = (struct sym){t->byte_id[(uint8_t)w[i + b]], k - 1, k + 1, 1}, k++;
                    continue;
                }
            }
        }
        if (id < 0) {
            if (t->unk_id < 0)
                continue; /* HF drops characters it cannot represent */
            if (t->fuse_unk && k && s[k - 1].id == t->unk_id) {
                s[k - 1].len += (int32_t)adv;
                continue;
            }
            id = t->unk_id;
        }
        s[k] = (struct sym){id, k - 1, k + 1, (int32_t)adv};
        k++;
    }
    if (k)
        s[k - 1].next = -1;
    return k;
}

int zl_tok_bpe_word(const struct zl_tokenizer *t, struct zl_tok_cache *cache, const char *w,
                    size_t n, struct zl_tok_ids *out)
{
    if (n == 0)
        return 0;
    if (t->ignore_merges) {
        int32_t id = zl_tok_map_get(&t->model, w, n);
        if (id >= 0)
            return zl_tok_ids_push(out, id);
    }
    int use_cache = cache && n <= CACHE_MAX_WORD_LEN;
    if (use_cache) {
        int32_t off = zl_tok_map_get(&cache->map, w, n);
        if (off >= 0) {
            const int32_t *v = cache->ids.v + off;
            for (int32_t i = 1; i <= v[0]; i++)
                if (zl_tok_ids_push(out, v[i]) < 0)
                    return ZL_ENOMEM;
            return 0;
        }
    }
    struct sym sbuf[64];
    uint64_t hbuf[3 * 64 + 8];
    struct sym *s = sbuf;
    uint64_t *h = hbuf;
    if (n > 64) {
        s = malloc(n * sizeof(*s));
        h = malloc((3 * n + 8) * sizeof(*h));
        if (!s || !h) {
            if (s != sbuf)
                free(s);
            if (h != hbuf)
                free(h);
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        }
    }
    int32_t k = init_syms(t, w, n, s);
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < k; i++)
        try_pair(t, s, i, h, &hn);
    /* At most n - 1 initial pairs plus two per merge: 3n bounds the heap. */
    while (hn) {
        uint64_t top = heap_pop(h, &hn);
        int32_t i = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32), merged;
        if (s[i].len == 0 || s[i].next < 0)
            continue;
        int32_t j = s[i].next;
        if (zl_tok_pair_get(&t->merges, s[i].id, s[j].id, &merged) != rank)
            continue;
        s[i].id = merged;
        s[i].len += s[j].len;
        s[j].len = 0;
        s[i].next = s[j].next;
        if (s[j].next >= 0)
            s[s[j].next].prev = i;
        if (s[i].prev >= 0)
            try_pair(t, s, s[i].prev, h, &hn);
        try_pair(t, s, i, h, &hn);
    }
    int rc = 0;
    size_t start = out->n;
    for (int32_t i = k ? 0 : -1; i >= 0 && rc == 0; i = s[i].next)
        rc = zl_tok_ids_push(out, s[i].id);
    if (rc == 0 && use_cache)
        cache_put(cache, w, n, out->n > start ? out->v + start : NULL, out->n - start);
    if (s != sbuf)
        free(s);
    if (h != hbuf)
        free(h);
    return rc;
}
