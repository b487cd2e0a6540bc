/* Prefix cache keys and their table (DESIGN §4).  A full block is keyed by
 * xxHash3 over its parent's key, a salt (adapter id ...) and its token ids,
 * so equal blocks behind different prefixes never share KV (ZhiLight keyed
 * a block by its own tokens only).  The table chains through per-block
 * links: no allocation after zl_kv_create.  A hit also compares the parent
 * key and the tokens, so a 64-bit collision is a miss, not wrong output. */
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
