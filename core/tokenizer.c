/* Tokenizer object: containers, vocabulary tables, loading entry points and
 * accessors.  The pipeline lives in tokenizer-encode.c / -norm.c / -bpe.c,
 * file formats in tokenizer-json.c / -gguf.c, decoding in detok.c. */
#include "tokenizer-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zlight/log.h>

/* ---- arena ---- */

struct zl_tok_chunk {
    struct zl_tok_chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

void *zl_tok_arena_alloc(struct zl_tok_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct zl_tok_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *zl_tok_arena_strdup(struct zl_tok_arena *a, const char *s, size_t n)
{
    char *p = zl_tok_arena_alloc(a, n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void zl_tok_arena_free(struct zl_tok_arena *a)
{
    struct zl_tok_chunk *c = a->head;
    while (c) {
        struct zl_tok_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- buffers ---- */

int zl_tok_buf_reserve(struct zl_tok_buf *b, size_t extra)
{
    if (b->cap - b->len > extra)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= extra) {
        if (cap > SIZE_MAX / 2)
            return zl_error(ZL_ENOMEM, "tokenizer: buffer too large");
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    b->p = p;
    b->cap = cap;
    return 0;
}

int zl_tok_buf_put(struct zl_tok_buf *b, const void *s, size_t n)
{
    if (zl_tok_buf_reserve(b, n) < 0)
        return ZL_ENOMEM;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int zl_tok_grow(void **arr, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : first;
    void *p = c < SIZE_MAX / size ? realloc(*arr, c * size) : NULL;
    if (!p)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    *arr = p;
    *cap = c;
    return 0;
}

void *zl_tok_push_step(void **arr, size_t *n, size_t size)
{
    size_t cap = *n;
    if (zl_tok_grow(arr, &cap, *n, size, 1) < 0)
        return NULL;
    char *p = (char *)*arr + *n * size;
    memset(p, 0, size);
    ++*n;
    return p;
}

int zl_tok_ids_push(struct zl_tok_ids *v, int32_t id)
{
    if (zl_tok_grow((void **)&v->v, &v->cap, v->n, sizeof(*v->v), 64) < 0)
        return ZL_ENOMEM;
    v->v[v->n++] = id;
    return 0;
}

/* ---- string map ---- */

int zl_tok_map_init(struct zl_tok_map *m, size_t expected)
{
    size_t cap = 64;
    while (cap < expected * 2)
        cap *= 2;
    m->slot = calloc(cap, sizeof(*m->slot));
    m->ent = malloc((cap / 2 + 1) * sizeof(*m->ent));
    if (!m->slot || !m->ent)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    m->cap = cap / 2 + 1;
    m->mask = cap - 1;
    m->n = 0;
    return 0;
}

static int map_grow(struct zl_tok_map *m)
{
    size_t slots = (m->mask + 1) * 2;
    uint64_t *slot = calloc(slots, sizeof(*slot));
    struct zl_tok_map_ent *ent = realloc(m->ent, (slots / 2 + 1) * sizeof(*ent));
    if (!slot || !ent) {
        free(slot);
        if (ent)
            m->ent = ent;
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    }
    m->ent = ent;
    m->cap = slots / 2 + 1;
    free(m->slot);
    m->slot = slot;
    m->mask = slots - 1;
    for (size_t i = 0; i < m->n; i++) {
        uint64_t hv = XXH3_64bits(m->ent[i].key, m->ent[i].len);
        size_t h = hv & m->mask;
        while (slot[h])
            h = (h + 1) & m->mask;
        slot[h] = (hv & 0xFFFFFFFF00000000ull) | ((uint64_t)i + 1);
    }
    return 0;
}

int zl_tok_map_put(struct zl_tok_map *m, const char *key, size_t len, int32_t val)
{
    if (m->n + 1 >= m->cap && map_grow(m) < 0)
        return ZL_ENOMEM;
    uint64_t hv = XXH3_64bits(key, len), tag = hv & 0xFFFFFFFF00000000ull;
    size_t h = hv & m->mask;
    for (;; h = (h + 1) & m->mask) {
        uint64_t s = m->slot[h];
        if (!s)
            break;
        struct zl_tok_map_ent *e = &m->ent[(uint32_t)s - 1];
        if ((s & 0xFFFFFFFF00000000ull) == tag && e->len == len && memcmp(e->key, key, len) == 0) {
            e->val = val;
            return 0;
        }
    }
    m->ent[m->n] = (struct zl_tok_map_ent){key, (uint32_t)len, val};
    m->slot[h] = tag | (uint64_t)++m->n;
    return 0;
}

int32_t zl_tok_map_get(const struct zl_tok_map *m, const char *key, size_t len)
{
    if (!m->slot)
        return -1;
    uint64_t hv = XXH3_64bits(key, len), tag = hv & 0xFFFFFFFF00000000ull;
    size_t h = hv & m->mask;
    for (;; h = (h + 1) & m->mask) {
        uint64_t s = m->slot[h];
        if (!s)
            return -1;
        const struct zl_tok_map_ent *e = &m->ent[(uint32_t)s - 1];
        if ((s & 0xFFFFFFFF00000000ull) == tag && e->len == len && memcmp(e->key, key, len) == 0)
            return e->val;
    }
}

void zl_tok_map_free(struct zl_tok_map *m)
{
    free(m->slot);
    free(m->ent);
    memset(m, 0, sizeof(*m));
}

/* ---- merge pairs ---- */

int zl_tok_pairs_init(struct zl_tok_pairs *p, size_t expected)
{
    size_t cap = 64;
    while (cap < expected * 2)
        cap *= 2;
    p->key = calloc(cap, sizeof(*p->key));
    p->rank = malloc(cap * sizeof(*p->rank));
    p->merged = malloc(cap * sizeof(*p->merged));
    if (!p->key || !p->rank || !p->merged)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    p->mask = cap - 1;
    p->n = 0;
    return 0;
}

static inline uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
}

static inline size_t pair_hash(uint64_t k, size_t mask)
{
    k ^= k >> 29;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 32;
    return (size_t)k & mask;
}

/* Grows the tables ahead of a known number of entries (load speed). */
int zl_tok_reserve(struct zl_tokenizer *t, size_t n_vocab, size_t n_merges)
{
    if (n_vocab > t->by_text.cap && t->by_text.n == 0) {
        zl_tok_map_free(&t->by_text);
        if (zl_tok_map_init(&t->by_text, n_vocab + 1024) < 0)
            return ZL_ENOMEM;
    }
    if (n_merges * 2 > t->merges.mask + 1 && t->merges.n == 0) {
        free(t->merges.key), free(t->merges.rank), free(t->merges.merged);
        if (zl_tok_pairs_init(&t->merges, n_merges + 16) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

int zl_tok_add_merge(struct zl_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged)
{
    struct zl_tok_pairs *p = &t->merges;
    if ((p->n + 1) * 2 > p->mask + 1) {
        struct zl_tok_pairs q;
        if (zl_tok_pairs_init(&q, (p->mask + 1)) < 0) {
            free(q.key), free(q.rank), free(q.merged);
            return ZL_ENOMEM;
        }
        for (size_t i = 0; i <= p->mask; i++) {
            if (!p->key[i])
                continue;
            size_t h = pair_hash(p->key[i], q.mask);
            while (q.key[h])
                h = (h + 1) & q.mask;
            q.key[h] = p->key[i], q.rank[h] = p->rank[i], q.merged[h] = p->merged[i];
        }
        q.n = p->n;
        free(p->key), free(p->rank), free(p->merged);
        *p = q;
    }
    uint64_t k = pair_key(a, b);
    size_t h = pair_hash(k, p->mask);
    while (p->key[h] && p->key[h] != k)
        h = (h + 1) & p->mask;
    if (!p->key[h])
        p->n++;
    p->key[h] = k, p->rank[h] = rank, p->merged[h] = merged;
    return 0;
}

int zl_tok_pair_get(const struct zl_tok_pairs *p, int32_t a, int32_t b, int32_t *merged)
{
    uint64_t k = pair_key(a, b);
    size_t h = pair_hash(k, p->mask);
    for (;; h = (h + 1) & p->mask) {
        if (p->key[h] == k) {
            *merged = p->merged[h];
            return p->rank[h];
        }
        if (!p->key[h])
            return -1;
    }
}

/* ---- regex ---- */

const char zl_tok_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* PCRE2 (10.42) counts U+180E as \\s, HF's Oniguruma does not: \\s and \\S
 * are spelled out as Unicode White_Space.  Returns a malloc'd pattern. */
#define WS "\\t\\n\\x0B\\f\\r\\x20\\x85\\xA0\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static char *onig_spaces(const char *pat, size_t len, size_t *out_len)
{
    char *o = malloc(len * sizeof("[^" WS "]") + 1);
    size_t w = 0;
    int in_class = 0;
    if (!o)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char d = pat[++i];
            const char *rep = NULL;
            if (d == 's')
                rep = in_class ? WS : "[" WS "]";
            else if (d == 'S' && !in_class)
                rep = "[^" WS "]";
            if (rep) {
                memcpy(o + w, rep, strlen(rep));
                w += strlen(rep);
            } else {
                o[w++] = c;
                o[w++] = d;
            }
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            o[w++] = c;
            if (i + 1 < len && pat[i + 1] == '^')
                o[w++] = pat[++i];
            if (i + 1 < len && pat[i + 1] == ']') /* a leading ] is literal */
                o[w++] = pat[++i];
            continue;
        }
        if (c == ']' && in_class)
            in_class = 0;
        o[w++] = c;
    }
    o[w] = 0;
    *out_len = w;
    return o;
}

pcre2_code *zl_tok_regex(const char *pat, size_t len, int literal)
{
    int err;
    PCRE2_SIZE off;
    uint32_t opt = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    size_t wide_len = len;
    char *wide = literal ? NULL : onig_spaces(pat, len, &wide_len);
    if (!literal && !wide) {
        zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(wide ? wide : pat), wide_len, opt, &err, &off, NULL);
    free(wide);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof(msg));
        zl_error(ZL_EINVAL, "tokenizer: regex /%.*s/ at %zu: %s", (int)(len > 200 ? 200 : len), pat,
                 (size_t)off, (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    return re;
}

/* ---- vocabulary ---- */

int zl_tok_init(struct zl_tokenizer *t)
{
    memset(t, 0, sizeof(*t));
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = -1;
    if (zl_tok_map_init(&t->by_text, 1024) < 0 || zl_tok_pairs_init(&t->merges, 1024) < 0)
        return ZL_ENOMEM;
    return zl_tok_cache_init(&t->cache);
}

/* Ids may come in any order: the arrays grow geometrically (a realloc
 * per id is quadratic wherever realloc copies, e.g. under ASan). */
static int grow_vocab(struct zl_tokenizer *t, int32_t n)
{
    if (n <= t->n_vocab)
        return 0;
    if ((size_t)n > t->vocab_cap) {
        size_t cap = t->vocab_cap ? t->vocab_cap : 1024;
        while (cap < (size_t)n)
            cap *= 2;
        const char **text = realloc(t->text, cap * sizeof(*text));
        if (text)
            t->text = text;
        uint32_t *len = realloc(t->text_len, cap * sizeof(*len));
        if (len)
            t->text_len = len;
        uint8_t *attr = realloc(t->attr, cap);
        if (attr)
            t->attr = attr;
        if (!text || !len || !attr)
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        t->vocab_cap = cap;
    }
    for (int32_t i = t->n_vocab; i < n; i++)
        t->text[i] = NULL, t->text_len[i] = 0, t->attr[i] = 0;
    t->n_vocab = n;
    return 0;
}

int zl_tok_set_token(struct zl_tokenizer *t, int32_t id, const char *s, size_t len)
{
    if (id < 0 || id >= ZL_TOK_MAX_IDS)
        return zl_error(ZL_EINVAL, "tokenizer: token id %d out of range (0..%d)", (int)id,
                        ZL_TOK_MAX_IDS - 1);
    if (len > UINT32_MAX / 2)
        return zl_error(ZL_EINVAL, "tokenizer: token %d too long", (int)id);
    if (grow_vocab(t, id + 1) < 0)
        return ZL_ENOMEM;
    const char *p = zl_tok_arena_strdup(&t->arena, s, len);
    if (!p)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    t->text[id] = p;
    t->text_len[id] = (uint32_t)len;
    return zl_tok_map_put(&t->by_text, p, len, id);
}

int zl_tok_add_added(struct zl_tokenizer *t, const struct zl_tok_added *a)
{
    int32_t old = zl_tok_map_get(&t->by_text, a->content, a->len);
    if (old != a->id || !t->text[a->id]) {
        if (zl_tok_set_token(t, a->id, a->content, a->len) < 0)
            return ZL_ENOMEM;
    }
    if (a->len == 0)
        return 0; /* an empty pattern would match everywhere */
    if (zl_tok_grow((void **)&t->added, &t->added_cap, t->n_added, sizeof(*t->added), 64) < 0)
        return ZL_ENOMEM;
    struct zl_tok_added *v = t->added;
    v[t->n_added] = *a;
    v[t->n_added].content = zl_tok_arena_strdup(&t->arena, a->content, a->len);
    if (!v[t->n_added].content)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    t->n_added++;
    t->attr[a->id] |= ZL_TOKA_ADDED | (a->special ? ZL_TOKA_SPECIAL : 0);
    return 0;
}

static int trie_node(struct zl_tok_trie *tr, uint8_t byte)
{
    if (zl_tok_grow((void **)&tr->node, &tr->cap, tr->n, sizeof(*tr->node), 256) < 0)
        return ZL_ENOMEM;
    tr->node[tr->n] = (struct zl_trie_node){-1, -1, -1, byte};
    return (int)tr->n++;
}

static int trie_insert(struct zl_tok_trie *tr, const char *s, size_t n, int32_t idx)
{
    if (!tr->n && trie_node(tr, 0) < 0)
        return ZL_ENOMEM;
    int32_t cur = 0;
    tr->first[(uint8_t)s[0]] = 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->node[cur].child;
        while (c >= 0 && tr->node[c].byte != b)
            c = tr->node[c].sibling;
        if (c < 0) {
            int nn = trie_node(tr, b);
            if (nn < 0)
                return ZL_ENOMEM;
            c = nn;
            tr->node[c].sibling = tr->node[cur].child;
            tr->node[cur].child = c;
        }
        cur = c;
    }
    if (tr->node[cur].added < 0)
        tr->node[cur].added = idx;
    return 0;
}

int zl_tok_finalize(struct zl_tokenizer *t)
{
    /* Model-space map: the pre-tokenizer hands raw bytes to the model, so a
     * byte-level vocabulary is stored by the bytes its string stands for. */
    if (t->byte_level) {
        if (zl_tok_map_init(&t->model, (size_t)t->n_vocab + 16) < 0)
            return ZL_ENOMEM;
        char *tmp = malloc(1024);
        if (!tmp)
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        for (int32_t id = 0; id < t->n_vocab; id++) {
            const char *s = t->text[id];
            if (!s || !(t->attr[id] & ZL_TOKA_MODEL) || t->text_len[id] > 1024)
                continue;
            size_t n = t->text_len[id], k = 0, adv;
            int ok = 1;
            for (size_t i = 0; i < n && ok; i += adv) {
                int b = zl_bytelevel_byte(zl_utf8_decode(s + i, n - i, &adv));
                if (b < 0)
                    ok = 0;
                else
                    tmp[k++] = (char)b;
            }
            if (!ok)
                continue;
            char *raw = zl_tok_arena_strdup(&t->arena, tmp, k);
            if (!raw || zl_tok_map_put(&t->model, raw, k, id) < 0) {
                free(tmp);
                return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
            }
        }
        free(tmp);
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            t->byte_id[b] = zl_tok_map_get(&t->model, &c, 1);
        }
    } else {
        t->model = t->by_text; /* shared; freed once */
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof(name), "<0x%02X>", b);
            t->byte_id[b] = zl_tok_map_get(&t->by_text, name, 6);
        }
    }
    /* Added tokens: normalized ones are matched on the normalized text, by
     * their normalized form (HF AddedVocabulary). */
    for (size_t i = 0; i < t->n_added; i++) {
        struct zl_tok_added *a = &t->added[i];
        if (a->normalized && t->n_norm) {
            struct zl_tok_buf b = {0};
            if (zl_tok_normalize(t, a->content, a->len, &b) < 0) {
                free(b.p);
                return ZL_ENOMEM;
            }
            a->content = zl_tok_arena_strdup(&t->arena, b.p ? b.p : "", b.len);
            a->len = b.len;
            free(b.p);
            if (!a->content)
                return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        }
        if (!a->len)
            continue;
        if (trie_insert(a->normalized ? &t->trie_norm : &t->trie_raw, a->content, a->len,
                        (int32_t)i) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

/* ---- lifecycle ---- */

void zl_tokenizer_free(struct zl_tokenizer *t)
{
    if (!t)
        return;
    if (t->model.slot != t->by_text.slot)
        zl_tok_map_free(&t->model);
    zl_tok_map_free(&t->by_text);
    free(t->merges.key), free(t->merges.rank), free(t->merges.merged);
    for (size_t i = 0; i < t->n_norm; i++)
        pcre2_code_free(t->norm[i].re);
    for (size_t i = 0; i < t->n_pretok; i++)
        pcre2_code_free(t->pretok[i].re);
    free(t->norm), free(t->pretok), free(t->dec);
    free(t->added);
    free(t->trie_raw.node), free(t->trie_norm.node);
    free(t->post_pre), free(t->post_post);
    free(t->text), free(t->text_len), free(t->attr);
    zl_tok_cache_free(&t->cache);
    zl_tok_arena_free(&t->arena);
    free(t);
}

static int read_file(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return zl_error(ZL_ENOTFOUND, "%s: cannot open", path);
    struct zl_tok_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (zl_tok_buf_put(&b, tmp, n) < 0) {
            fclose(f);
            free(b.p);
            return ZL_ENOMEM;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b.p);
        return zl_error(ZL_EIO, "%s: read error", path);
    }
    if (!b.p && zl_tok_buf_put(&b, "", 0) < 0)
        return ZL_ENOMEM;
    *buf = b.p;
    *len = b.len;
    return 0;
}

static int load_dir(struct zl_tokenizer *t, const char *dir)
{
    char path[4096];
    char *buf;
    size_t len;
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    int rc = read_file(path, &buf, &len);
    if (rc < 0)
        return rc;
    rc = zl_tok_load_json_into(t, buf, len, path);
    free(buf);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    if (read_file(path, &buf, &len) == 0) {
        rc = zl_tok_load_config_into(t, buf, len, path);
        free(buf);
        if (rc < 0)
            return rc;
    }
    snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
    if (read_file(path, &buf, &len) == 0) {
        t->chat_template = zl_tok_arena_strdup(&t->arena, buf, len);
        free(buf);
        if (!t->chat_template)
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    }
    zl_clear_error();
    return 0;
}

int zl_tokenizer_load(const char *path, struct zl_tokenizer **out)
{
    *out = NULL;
    if (!path)
        return zl_error(ZL_EINVAL, "tokenizer: no path");
    struct stat st;
    if (stat(path, &st) != 0)
        return zl_error(ZL_ENOTFOUND, "%s: no such file or directory", path);
    struct zl_tokenizer *t = malloc(sizeof(*t));
    if (!t)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    int rc = zl_tok_init(t);
    size_t pl = strlen(path);
    if (rc == 0) {
        if (S_ISDIR(st.st_mode)) {
            rc = load_dir(t, path);
        } else if (pl >= 5 && strcmp(path + pl - 5, ".gguf") == 0) {
            rc = zl_tok_load_gguf_into(t, path);
        } else {
            char *buf;
            size_t len;
            rc = read_file(path, &buf, &len);
            if (rc == 0) {
                rc = zl_tok_load_json_into(t, buf, len, path);
                free(buf);
            }
        }
    }
    if (rc < 0) {
        zl_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int zl_tokenizer_load_json(const char *json, size_t len, struct zl_tokenizer **out)
{
    *out = NULL;
    if (!json)
        return zl_error(ZL_EINVAL, "tokenizer: no JSON");
    struct zl_tokenizer *t = malloc(sizeof(*t));
    if (!t)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    int rc = zl_tok_init(t);
    if (rc == 0)
        rc = zl_tok_load_json_into(t, json, len, "<memory>");
    if (rc < 0) {
        zl_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---- accessors ---- */

int32_t zl_tokenizer_n_vocab(const struct zl_tokenizer *t) { return t->n_vocab; }

int32_t zl_tokenizer_token_id(const struct zl_tokenizer *t, const char *s, size_t len)
{
    return s ? zl_tok_map_get(&t->by_text, s, len) : -1;
}

const char *zl_tokenizer_token_text(const struct zl_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab || !t->text[id])
        return NULL;
    if (len)
        *len = t->text_len[id];
    return t->text[id];
}

int zl_tokenizer_is_special(const struct zl_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->attr[id] & ZL_TOKA_SPECIAL);
}

int32_t zl_tokenizer_bos_id(const struct zl_tokenizer *t) { return t->bos_id; }
int32_t zl_tokenizer_eos_id(const struct zl_tokenizer *t) { return t->eos_id; }
int zl_tokenizer_add_bos(const struct zl_tokenizer *t) { return t->add_bos; }
const char *zl_tokenizer_chat_template(const struct zl_tokenizer *t) { return t->chat_template; }
const char *zl_tokenizer_bos_token(const struct zl_tokenizer *t) { return t->bos_token; }
const char *zl_tokenizer_eos_token(const struct zl_tokenizer *t) { return t->eos_token; }
