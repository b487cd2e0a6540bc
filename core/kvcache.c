/* KV block manager (DESIGN §4): reference-counted fixed-size blocks, per
 * sequence block tables, and the LRU of free cached blocks that the prefix
 * cache (prefix-cache.c) revives on a hit and this file evicts when the
 * pool runs dry.  Ids come from the memory manager's KV pool or, for tests
 * and tools without a device, from a plain stack. */
#include <stdlib.h>
#include <string.h>
#include <zlight/kvcache.h>
#include <zlight/memory.h>
#include "kvcache-impl.h"

struct zl_kv_params zl_kv_default_params(void)
{
    struct zl_kv_params p = {.block_size = 16, .n_blocks = 0, .mem = NULL};
    return p;
}

void zl_kv_free(struct zl_kv *kv)
{
    if (!kv)
        return;
    /* cached (and any still held) blocks go back to the memory manager, so
     * a later manager over the same pool starts from a full pool */
    for (int32_t i = 0; kv->mem && kv->ref && i < kv->n_ids; i++)
        if (kv->ref[i] >= 0)
            zl_mem_kv_free(kv->mem, (uint32_t)i);
    free(kv->stack);
    free(kv->ref);
    free(kv->keyed);
    free(kv->key);
    free(kv->parent);
    free(kv->toks);
    free(kv->hnext);
    free(kv->bucket);
    free(kv->lru_prev);
    free(kv->lru_next);
    free(kv);
}

int zl_kv_create(const struct zl_kv_params *p, struct zl_kv **out)
{
    *out = NULL;
    if (!p || p->block_size < 1)
        return zl_error(ZL_EINVAL, "kvcache: block_size must be >= 1");
    int32_t n = p->n_blocks, n_ids = p->n_blocks, free0 = 0;
    if (p->mem) {
        void *base;
        size_t stride;
        uint32_t nb;
        if (zl_mem_kv_pool(p->mem, &base, &stride, &nb) < 0)
            return zl_error_wrap(ZL_EINVAL, "kvcache");
        if (nb > INT32_MAX / 2)
            return zl_error(ZL_EINVAL, "kvcache: %u blocks is too many", nb);
        struct zl_mem_stats st;
        zl_mem_get_stats(p->mem, &st);
        n_ids = (int32_t)nb;
        free0 = (int32_t)st.kv_blocks_free;
        n = p->n_blocks > 0 && p->n_blocks < free0 ? p->n_blocks : free0;
    }
    if (n < 1)
        return zl_error(ZL_EINVAL, "kvcache: the pool has no blocks");
    if ((int64_t)n * p->block_size > INT32_MAX)
        return zl_error(ZL_EINVAL, "kvcache: %d blocks of %d tokens overflow", n, p->block_size);

    struct zl_kv *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return zl_error(ZL_ENOMEM, "kvcache: out of memory");
    kv->bs = p->block_size;
    kv->n = n;
    kv->n_ids = n_ids;
    kv->mem_free0 = free0;
    kv->n_bucket = 16;
    while (kv->n_bucket < (uint32_t)n)
        kv->n_bucket <<= 1;
    kv->ref = malloc(sizeof(int32_t) * n_ids);
    kv->keyed = calloc(n_ids, sizeof(bool));
    kv->key = calloc(n_ids, sizeof(uint64_t));
    kv->parent = calloc(n_ids, sizeof(uint64_t));
    kv->toks = calloc((size_t)n_ids * kv->bs, sizeof(int32_t));
    kv->hnext = malloc(sizeof(int32_t) * n_ids);
    kv->bucket = malloc(sizeof(int32_t) * kv->n_bucket);
    kv->lru_prev = malloc(sizeof(int32_t) * n_ids);
    kv->lru_next = malloc(sizeof(int32_t) * n_ids);
    if (!p->mem)
        kv->stack = malloc(sizeof(int32_t) * n);
    if (!kv->ref || !kv->keyed || !kv->key || !kv->parent || !kv->toks || !kv->hnext ||
        !kv->bucket || !kv->lru_prev || !kv->lru_next || (!p->mem && !kv->stack)) {
        zl_kv_free(kv);
        return zl_error(ZL_ENOMEM, "kvcache: out of memory for %d blocks", n);
    }
    for (int32_t i = 0; i < n_ids; i++) {
        kv->ref[i] = -1;
        kv->hnext[i] = kv->lru_prev[i] = kv->lru_next[i] = KV_NONE;
        if (kv->stack)
            kv->stack[i] = n - 1 - i;     /* lowest ids first */
    }
    for (uint32_t i = 0; i < kv->n_bucket; i++)
        kv->bucket[i] = KV_NONE;
    kv->lru_head = kv->lru_tail = KV_NONE;
    kv->n_unused = n;
    kv->mem = p->mem;   /* only now: zl_kv_free returns ids to mem when ref[] is valid */
    *out = kv;
    return ZL_OK;
}

int32_t zl_kv_block_size(const struct zl_kv *kv) { return kv->bs; }
int32_t zl_kv_n_blocks(const struct zl_kv *kv) { return kv->n; }
int32_t zl_kv_n_available(const struct zl_kv *kv) { return kv->n_unused + kv->n_lru; }

int32_t zl_kv_block_refs(const struct zl_kv *kv, int32_t id)
{
    return id >= 0 && id < kv->n_ids ? kv->ref[id] : -1;
}

/* ---- the LRU of free cached blocks ---- */

static void lru_push_tail(struct zl_kv *kv, int32_t id)
{
    kv->lru_prev[id] = kv->lru_tail;
    kv->lru_next[id] = KV_NONE;
    if (kv->lru_tail != KV_NONE)
        kv->lru_next[kv->lru_tail] = id;
    else
        kv->lru_head = id;
    kv->lru_tail = id;
    kv->n_lru++;
}

void zl_kv_lru_remove(struct zl_kv *kv, int32_t id)
{
    int32_t p = kv->lru_prev[id], nx = kv->lru_next[id];
    if (p != KV_NONE)
        kv->lru_next[p] = nx;
    else
        kv->lru_head = nx;
    if (nx != KV_NONE)
        kv->lru_prev[nx] = p;
    else
        kv->lru_tail = p;
    kv->lru_prev[id] = kv->lru_next[id] = KV_NONE;
    kv->n_lru--;
}

/* ---- ids ---- */

static int32_t take_block(struct zl_kv *kv)
{
    int32_t id = KV_NONE;
    if (kv->n_unused > 0) {
        if (kv->mem) {
            uint32_t u;
            if (zl_mem_kv_alloc(kv->mem, &u) < 0)
                return KV_NONE;   /* out of sync with the pool: a bug upstream */
            id = (int32_t)u;
        } else {
            id = kv->stack[kv->n_unused - 1];
        }
        kv->n_unused--;
    } else if (kv->lru_head != KV_NONE) {
        id = kv->lru_head;      /* evict the least recently freed cached block */
        zl_kv_lru_remove(kv, id);
        zl_kv_hash_remove(kv, id);
        kv->evictions++;
    }
    if (id != KV_NONE)
        kv->ref[id] = 1;
    return id;
}

void zl_kv_put_block(struct zl_kv *kv, int32_t id)
{
    if (--kv->ref[id] > 0)
        return;
    if (kv->keyed[id]) {
        lru_push_tail(kv, id);
        return;
    }
    kv->ref[id] = -1;
    if (kv->mem)
        zl_mem_kv_free(kv->mem, (uint32_t)id);
    else
        kv->stack[kv->n_unused] = id;
    kv->n_unused++;
}

/* ---- sequences ---- */

void zl_kv_seq_init(struct zl_kv_seq *s, uint64_t salt)
{
    memset(s, 0, sizeof(*s));
    s->salt = salt;
}

int32_t zl_kv_seq_blocks_needed(const struct zl_kv *kv, const struct zl_kv_seq *s, int32_t n_tokens)
{
    int32_t want = (int32_t)(((int64_t)n_tokens + kv->bs - 1) / kv->bs);
    return want > s->n_blocks ? want - s->n_blocks : 0;
}

/* Room for `want` ids in s->blocks. */
static int seq_reserve(struct zl_kv_seq *s, int32_t want)
{
    if (want <= s->cap)
        return ZL_OK;
    int32_t cap = s->cap ? s->cap : 8;
    while (cap < want)
        cap *= 2;
    int32_t *b = realloc(s->blocks, sizeof(int32_t) * cap);
    if (!b)
        return zl_error(ZL_ENOMEM, "kvcache: out of memory for a block table of %d", cap);
    s->blocks = b;
    s->cap = cap;
    return ZL_OK;
}

int zl_kv_seq_grow(struct zl_kv *kv, struct zl_kv_seq *s, int32_t n_tokens)
{
    int32_t need = zl_kv_seq_blocks_needed(kv, s, n_tokens);
    if (need == 0)
        return ZL_OK;
    if (need > zl_kv_n_available(kv))
        return ZL_ENOMEM;
    int rc = seq_reserve(s, s->n_blocks + need);
    if (rc < 0)
        return rc;
    for (int32_t i = 0; i < need; i++) {
        int32_t id = take_block(kv);
        if (id == KV_NONE)
            return zl_error(ZL_ESTATE, "kvcache: pool out of sync with its free count");
        s->blocks[s->n_blocks++] = id;
    }
    return ZL_OK;
}

int zl_kv_seq_share(struct zl_kv *kv, struct zl_kv_seq *s, int32_t id)
{
    int rc = seq_reserve(s, s->n_blocks + 1);
    if (rc < 0)
        return rc;
    if (kv->ref[id] == 0)
        zl_kv_lru_remove(kv, id);
    kv->ref[id]++;
    s->blocks[s->n_blocks++] = id;
    return ZL_OK;
}

void zl_kv_seq_release(struct zl_kv *kv, struct zl_kv_seq *s)
{
    for (int32_t i = s->n_blocks - 1; i >= 0; i--)
        zl_kv_put_block(kv, s->blocks[i]);
    free(s->blocks);
    uint64_t salt = s->salt;
    zl_kv_seq_init(s, salt);
}

void zl_kv_get_stats(const struct zl_kv *kv, struct zl_kv_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->n_blocks = kv->n;
    out->n_free = kv->n_unused;
    out->n_cached_free = kv->n_lru;
    out->n_used = kv->n - kv->n_unused - kv->n_lru;
    out->n_cached = kv->n_keyed;
    out->queried_tokens = kv->queried;
    out->hit_tokens = kv->hits;
    out->n_evictions = kv->evictions;
}

int zl_kv_check(const struct zl_kv *kv)
{
    int32_t n_unalloc = 0, n_zero = 0, n_keyed = 0, n_lru = 0;
    for (int32_t i = 0; i < kv->n_ids; i++) {
        if (kv->ref[i] < -1)
            return zl_error(ZL_ESTATE, "kvcache: block %d has refcount %d", i, kv->ref[i]);
        if (kv->ref[i] == -1) {
            n_unalloc++;
            if (kv->keyed[i])
                return zl_error(ZL_ESTATE, "kvcache: unallocated block %d is cached", i);
        }
        if (kv->ref[i] == 0) {
            n_zero++;
            if (!kv->keyed[i])
                return zl_error(ZL_ESTATE, "kvcache: free block %d is neither cached nor pooled", i);
        }
        if (kv->keyed[i]) {
            n_keyed++;
            if (zl_kv_hash_find(kv, kv->key[i], kv->parent[i], kv->toks + (size_t)i * kv->bs) != i)
                return zl_error(ZL_ESTATE, "kvcache: cached block %d not found under its key", i);
        }
    }
    for (int32_t id = kv->lru_head, prev = KV_NONE; id != KV_NONE; prev = id, id = kv->lru_next[id]) {
        if (++n_lru > kv->n || kv->lru_prev[id] != prev || kv->ref[id] != 0)
            return zl_error(ZL_ESTATE, "kvcache: LRU list broken at block %d", id);
    }
    if (kv->n_ids - n_unalloc != kv->n - kv->n_unused || n_zero != kv->n_lru || n_lru != kv->n_lru ||
        n_keyed != kv->n_keyed)
        return zl_error(ZL_ESTATE, "kvcache: counts disagree (allocated ids %d, held %d,"
                        " cached free %d/%d/%d, cached %d/%d)", kv->n_ids - n_unalloc,
                        kv->n - kv->n_unused, n_zero, n_lru, kv->n_lru, n_keyed, kv->n_keyed);
    if (kv->mem) {
        struct zl_mem_stats st;
        zl_mem_get_stats(kv->mem, &st);
        int32_t want = kv->mem_free0 - (kv->n - kv->n_unused);
        if ((int32_t)st.kv_blocks_free != want)
            return zl_error(ZL_ESTATE, "kvcache: memory pool has %u free blocks, expected %d",
                            st.kv_blocks_free, want);
    }
    return ZL_OK;
}
