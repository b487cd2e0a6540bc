/* Paged KV cache bookkeeping: a pool of fixed-size blocks with reference
 * counts, per-sequence block tables and a prefix cache of full blocks.
 *
 *   struct zl_kv_params p = zl_kv_default_params();  p.n_blocks = 1024;
 *   struct zl_kv *kv;  struct zl_kv_seq s;  zl_kv_create(&p, &kv);  zl_kv_seq_init(&s, 0);
 *   int32_t hit = zl_kv_prefix_match(kv, &s, prompt, n_prompt - 1);  // shares cached blocks
 *   zl_kv_seq_grow(kv, &s, n_prompt);  ...forward...  zl_kv_prefix_commit(kv, &s, prompt, n_prompt);
 *   zl_kv_seq_release(kv, &s);  zl_kv_free(kv);
 */
#ifndef ZLIGHT_KVCACHE_H
#define ZLIGHT_KVCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_mem;

/* Only bookkeeping lives here: the bytes of block b are wherever the pool
 * puts them (zl_mem_kv_ptr), the attention ops get the ids. */
struct zl_kv_params {
    int32_t block_size;     /* tokens per block; 16 */
    int32_t n_blocks;       /* size of a plain id pool (mem == NULL); with mem:
                             * at most this many of its blocks, 0 = all; 0 */
    struct zl_mem *mem;     /* PLANNED memory manager whose KV pool hands out
                             * the ids; NULL */
};

ZL_API struct zl_kv_params zl_kv_default_params(void);

struct zl_kv;

/* One sequence's block table.  Transparent so the scheduler can copy rows
 * into a batch; only the zl_kv_* functions change it. */
struct zl_kv_seq {
    int32_t *blocks;        /* [n_blocks] pool ids, position p lives in blocks[p / block_size] */
    int32_t n_blocks;
    int32_t cap;
    int32_t n_keyed;        /* leading blocks whose chained key is known (committed or matched) */
    uint64_t last_key;      /* key of block n_keyed - 1 (chain parent of the next) */
    uint64_t salt;          /* hashed into every key: adapter id, anything else that changes the KV */
};

/* ZL_EINVAL for block_size < 1, no pool, or a mem that is not PLANNED;
 * ZL_ENOMEM.  *out is NULL on failure. */
ZL_API int zl_kv_create(const struct zl_kv_params *p, struct zl_kv **out);
/* NULL-safe.  Every block it took (cached or still held) goes back to the
 * memory manager; sequences still holding blocks must not be used after. */
ZL_API void zl_kv_free(struct zl_kv *kv);

ZL_API int32_t zl_kv_block_size(const struct zl_kv *kv);
ZL_API int32_t zl_kv_n_blocks(const struct zl_kv *kv);
/* Blocks an allocation can get now: never used plus free cached ones. */
ZL_API int32_t zl_kv_n_available(const struct zl_kv *kv);

/* An empty table (no allocation). */
ZL_API void zl_kv_seq_init(struct zl_kv_seq *s, uint64_t salt);
/* New blocks `s` needs to hold n_tokens tokens (0 when it already can). */
ZL_API int32_t zl_kv_seq_blocks_needed(const struct zl_kv *kv, const struct zl_kv_seq *s,
                                       int32_t n_tokens);
/* Grows `s` to hold n_tokens tokens: all the blocks or none.  Takes never
 * used blocks first, then evicts the least recently freed cached block.
 * ZL_ENOMEM (quietly, no message: the scheduler preempts) when short. */
ZL_API int zl_kv_seq_grow(struct zl_kv *kv, struct zl_kv_seq *s, int32_t n_tokens);
/* Drops `s`'s references, last block first (so a sequence's tail is
 * evicted before its head), and empties it.  Cached blocks whose count
 * reaches 0 stay cached (LRU); the others return to the pool. */
ZL_API void zl_kv_seq_release(struct zl_kv *kv, struct zl_kv_seq *s);

/* Chained key of a full block: xxHash3 over (parent key, salt, its
 * block_size token ids).  The first block's parent is 0. */
ZL_API uint64_t zl_kv_block_key(uint64_t parent, uint64_t salt, const int32_t *tokens,
                                int32_t block_size);

/* For an empty `s`: shares the longest run of cached full blocks that
 * covers tokens[0 .. n_tokens) (only whole blocks inside it count: pass
 * n_prompt - 1 so the last prompt token is always computed).  Returns the
 * number of tokens covered (a multiple of block_size), or ZL_EINVAL when
 * `s` is not empty. */
ZL_API int32_t zl_kv_prefix_match(struct zl_kv *kv, struct zl_kv_seq *s, const int32_t *tokens,
                                  int32_t n_tokens);
/* After a step has computed tokens[0 .. n_computed) of `s`: every block
 * that became full gets its key and enters the cache (unless a block with
 * that key is cached already; then this one stays private). */
ZL_API void zl_kv_prefix_commit(struct zl_kv *kv, struct zl_kv_seq *s, const int32_t *tokens,
                                int32_t n_computed);
/* Hit-rate counters, counted by the caller once per admitted sequence. */
ZL_API void zl_kv_prefix_count(struct zl_kv *kv, int64_t queried_tokens, int64_t hit_tokens);
/* Forgets every cached block that no sequence holds (e.g. after a weight
 * swap).  Blocks in use keep working but are no longer found. */
ZL_API void zl_kv_prefix_clear(struct zl_kv *kv);

struct zl_kv_stats {
    int32_t n_blocks;           /* pool size */
    int32_t n_used;             /* held by at least one sequence */
    int32_t n_cached_free;      /* in no sequence, still cached (evictable) */
    int32_t n_free;             /* never used or returned to the pool */
    int32_t n_cached;           /* blocks with a key in the cache (used or not) */
    int64_t queried_tokens;     /* zl_kv_prefix_count totals */
    int64_t hit_tokens;
    int64_t n_evictions;
};

ZL_API void zl_kv_get_stats(const struct zl_kv *kv, struct zl_kv_stats *out);
/* hit_tokens / queried_tokens, 0 before any query. */
ZL_API double zl_kv_prefix_hit_rate(const struct zl_kv *kv);
/* Reference count of block id (-1 out of range), for tests and asserts. */
ZL_API int32_t zl_kv_block_refs(const struct zl_kv *kv, int32_t id);
/* Verifies the invariants: counts partition the pool, cached-free blocks
 * are exactly the LRU list, every key is found in the table once, the
 * pool's free count agrees.  ZL_ESTATE naming the first violation. */
ZL_API int zl_kv_check(const struct zl_kv *kv);

#ifdef __cplusplus
}
#endif
#endif
