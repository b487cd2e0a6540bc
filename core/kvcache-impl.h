/* Layout of the KV block manager, shared by kvcache.c (pool, refcounts,
 * LRU) and prefix-cache.c (keys and the hash table). */
#ifndef ZLIGHT_KVCACHE_IMPL_H
#define ZLIGHT_KVCACHE_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <zlight/kvcache.h>

#define KV_NONE (-1)

struct zl_kv {
    int32_t bs;                 /* tokens per block */
    int32_t n;                  /* blocks this manager may hold at once */
    int32_t n_ids;              /* ids run 0 .. n_ids-1 (the pool's size; >= n) */
    struct zl_mem *mem;         /* id source, or NULL for the plain stack */
    int32_t mem_free0;          /* the pool's free blocks at create */
    int32_t *stack;             /* plain pool: [n] free ids, next on top */
    int32_t n_unused;           /* ids not handed out (by the stack or mem) */

    /* per id arrays, [n_ids] */
    int32_t *ref;               /* [n] sequences holding the block; -1 while unallocated */
    /* cached blocks: key, parent key and tokens (checked on a hit so a
     * 64-bit collision cannot hand out the wrong KV) */
    bool *keyed;                /* [n] */
    uint64_t *key;              /* [n] */
    uint64_t *parent;           /* [n] */
    int32_t *toks;              /* [n, bs] */
    int32_t *hnext;             /* [n] hash chain */
    int32_t *bucket;            /* [n_bucket] chain heads */
    uint32_t n_bucket;          /* power of two */
    int32_t n_keyed;

    /* free cached blocks (ref 0 and keyed), oldest first */
    int32_t *lru_prev, *lru_next;   /* [n] */
    int32_t lru_head, lru_tail, n_lru;

    int64_t queried, hits, evictions;
};

/* prefix-cache.c */
int32_t zl_kv_hash_find(const struct zl_kv *kv, uint64_t key, uint64_t parent, const int32_t *toks);
void zl_kv_hash_insert(struct zl_kv *kv, int32_t id, uint64_t key, uint64_t parent, const int32_t *toks);
void zl_kv_hash_remove(struct zl_kv *kv, int32_t id);

/* kvcache.c */
void zl_kv_lru_remove(struct zl_kv *kv, int32_t id);
/* Drops one reference: at 0 a cached block joins the LRU, another returns to the pool. */
void zl_kv_put_block(struct zl_kv *kv, int32_t id);
/* Appends cached block `id` to s, taking a reference (reviving it from the LRU). */
int zl_kv_seq_share(struct zl_kv *kv, struct zl_kv_seq *s, int32_t id);

#endif
