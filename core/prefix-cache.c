/* Prefix cache (DESIGN §4): block keys, their table, matching a new prompt
 * against it and registering blocks once computed.  A full block is keyed by
 * xxHash3 over its parent's key, a salt (adapter id ...) and its token ids,
 * so equal blocks behind different prefixes never share KV (ZhiLight keyed
 * a block by its own tokens only).  The table chains through per-block
 * links: no allocation after zl_kv_create.  A hit also compares the parent
 * key and the tokens, so a 64-bit collision is a miss, not wrong output.
 * Hit-rate counters count tokens of admitted prompts. */
#include <string.h>
#include <xxhash.h>
#include "kvcache-impl.h"

uint64_t zl_kv_block_key(uint64_t parent, uint64_t salt, const int32_t *tokens, int32_t block_size)
{
    /* (parent, salt) hashed into the seed of the tokens' hash: no streaming
     * state, whose layout libxxhash keeps private */
    uint64_t head[2] = {parent, salt};
    uint64_t seed = XXH3_64bits(head, sizeof(head));
    return XXH3_64bits_withSeed(tokens, sizeof(int32_t) * (size_t)block_size, seed);
}

static uint32_t bucket_of(const struct zl_kv *kv, uint64_t key)
{
    return (uint32_t)(key ^ (key >> 32)) & (kv->n_bucket - 1);
}

int32_t zl_kv_hash_find(const struct zl_kv *kv, uint64_t key, uint64_t parent, const int32_t *toks)
{
    for (int32_t id = kv->bucket[bucket_of(kv, key)]; id != KV_NONE; id = kv->hnext[id])
        if (kv->key[id] == key && kv->parent[id] == parent &&
            memcmp(kv->toks + (size_t)id * kv->bs, toks, sizeof(int32_t) * kv->bs) == 0)
            return id;
    return KV_NONE;
}

void zl_kv_hash_insert(struct zl_kv *kv, int32_t id, uint64_t key, uint64_t parent, const int32_t *toks)
{
    uint32_t b = bucket_of(kv, key);
    kv->key[id] = key;
    kv->parent[id] = parent;
    memcpy(kv->toks + (size_t)id * kv->bs, toks, sizeof(int32_t) * kv->bs);
    kv->keyed[id] = true;
    kv->hnext[id] = kv->bucket[b];
    kv->bucket[b] = id;
    kv->n_keyed++;
}

void zl_kv_hash_remove(struct zl_kv *kv, int32_t id)
{
    if (!kv->keyed[id])
        return;
    int32_t *link = &kv->bucket[bucket_of(kv, kv->key[id])];
    while (*link != KV_NONE && *link != id)
        link = &kv->hnext[*link];
    if (*link == id)
        *link = kv->hnext[id];
    kv->hnext[id] = KV_NONE;
    kv->keyed[id] = false;
    kv->n_keyed--;
}

/* ---- sharing and registering blocks ---- */

int32_t zl_kv_prefix_match(struct zl_kv *kv, struct zl_kv_seq *s, const int32_t *tokens,
                           int32_t n_tokens)
{
    if (s->n_blocks != 0)
        return zl_error(ZL_EINVAL, "kvcache: prefix match on a sequence that holds blocks");
    uint64_t parent = 0;
    for (int32_t b = 0; (int64_t)(b + 1) * kv->bs <= n_tokens; b++) {
        const int32_t *t = tokens + (size_t)b * kv->bs;
        uint64_t key = zl_kv_block_key(parent, s->salt, t, kv->bs);
        int32_t id = zl_kv_hash_find(kv, key, parent, t);
        if (id == KV_NONE || zl_kv_seq_share(kv, s, id) < 0)
            break;
        parent = key;
        s->n_keyed = s->n_blocks;
        s->last_key = key;
    }
    return s->n_blocks * kv->bs;
}

void zl_kv_prefix_commit(struct zl_kv *kv, struct zl_kv_seq *s, const int32_t *tokens,
                         int32_t n_computed)
{
    int32_t full = n_computed / kv->bs;
    if (full > s->n_blocks)
        full = s->n_blocks;
    for (int32_t b = s->n_keyed; b < full; b++) {
        const int32_t *t = tokens + (size_t)b * kv->bs;
        uint64_t parent = b ? s->last_key : 0;
        uint64_t key = zl_kv_block_key(parent, s->salt, t, kv->bs);
        int32_t id = s->blocks[b];
        if (!kv->keyed[id] && zl_kv_hash_find(kv, key, parent, t) == KV_NONE)
            zl_kv_hash_insert(kv, id, key, parent, t);
        s->last_key = key;
        s->n_keyed = b + 1;
    }
}

void zl_kv_prefix_count(struct zl_kv *kv, int64_t queried_tokens, int64_t hit_tokens)
{
    kv->queried += queried_tokens;
    kv->hits += hit_tokens;
}

void zl_kv_prefix_clear(struct zl_kv *kv)
{
    while (kv->lru_head != KV_NONE) {
        int32_t id = kv->lru_head;
        zl_kv_lru_remove(kv, id);
        zl_kv_hash_remove(kv, id);
        kv->ref[id] = 1;
        zl_kv_put_block(kv, id);      /* unkeyed now: back to the pool */
    }
    for (int32_t id = 0; id < kv->n_ids; id++)
        if (kv->keyed[id])
            zl_kv_hash_remove(kv, id);
}

double zl_kv_prefix_hit_rate(const struct zl_kv *kv)
{
    return kv->queried ? (double)kv->hits / (double)kv->queried : 0.0;
}
