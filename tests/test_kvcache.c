/* KV block manager: allocation, reference counts, release order, the
 * memory-manager pool, and random accounting. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <zlight/kvcache.h>
#include <zlight/memory.h>

static struct zl_kv *make_kv(int32_t n_blocks, int32_t bs)
{
    struct zl_kv_params p = zl_kv_default_params();
    p.n_blocks = n_blocks;
    p.block_size = bs;
    struct zl_kv *kv;
    cr_assert_eq(zl_kv_create(&p, &kv), ZL_OK, "%s", zl_last_error());
    return kv;
}

Test(kvcache, params)
{
    struct zl_kv_params p = zl_kv_default_params();
    struct zl_kv *kv = (struct zl_kv *)1;
    cr_expect_eq(p.block_size, 16);
    cr_expect_eq(zl_kv_create(&p, &kv), ZL_EINVAL, "no pool");
    cr_expect_null(kv);
    p.n_blocks = 4;
    p.block_size = 0;
    cr_expect_eq(zl_kv_create(&p, &kv), ZL_EINVAL);
    zl_kv_free(NULL);
}

Test(kvcache, grow_all_or_nothing)
{
    struct zl_kv *kv = make_kv(4, 16);
    struct zl_kv_seq a, b;
    zl_kv_seq_init(&a, 0);
    zl_kv_seq_init(&b, 0);
    cr_expect_eq(zl_kv_seq_blocks_needed(kv, &a, 17), 2);
    cr_assert_eq(zl_kv_seq_grow(kv, &a, 17), ZL_OK);
    cr_expect_eq(a.n_blocks, 2);
    cr_expect_eq(a.blocks[0], 0, "lowest ids first");
    cr_expect_eq(a.blocks[1], 1);
    cr_expect_eq(zl_kv_seq_grow(kv, &a, 32), ZL_OK, "room left in block 1");
    cr_expect_eq(a.n_blocks, 2);
    cr_expect_eq(zl_kv_seq_grow(kv, &b, 48), ZL_ENOMEM);
    cr_expect_eq(b.n_blocks, 0, "nothing taken on failure");
    cr_expect_eq(zl_kv_n_available(kv), 2);
    cr_expect_eq(zl_kv_seq_grow(kv, &b, 32), ZL_OK);
    cr_expect_eq(zl_kv_n_available(kv), 0);
    cr_expect_eq(zl_kv_block_refs(kv, a.blocks[0]), 1);
    zl_kv_seq_release(kv, &a);
    zl_kv_seq_release(kv, &b);
    cr_expect_eq(a.n_blocks, 0);
    cr_expect_eq(zl_kv_n_available(kv), 4);
    cr_expect_eq(zl_kv_block_refs(kv, 0), -1);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_free(kv);
}

Test(kvcache, memory_manager_pool)
{
    struct zl_mem_params mp = zl_mem_default_params();
    mp.reserve_bytes = 1 << 20;
    struct zl_mem *mem;
    cr_assert_eq(zl_mem_create(&mp, &mem), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_mem_weights_freeze(mem), ZL_OK);
    cr_assert_eq(zl_mem_plan(mem, 4096, 64 << 10), ZL_OK, "%s", zl_last_error());
    struct zl_kv_params p = zl_kv_default_params();
    p.mem = mem;
    struct zl_kv *kv;
    cr_assert_eq(zl_kv_create(&p, &kv), ZL_OK, "%s", zl_last_error());
    struct zl_mem_stats st;
    zl_mem_get_stats(mem, &st);
    cr_expect_eq(zl_kv_n_blocks(kv), (int32_t)st.kv_blocks_total);
    struct zl_kv_seq s;
    zl_kv_seq_init(&s, 0);
    cr_assert_eq(zl_kv_seq_grow(kv, &s, 16 * zl_kv_n_blocks(kv)), ZL_OK);
    zl_mem_get_stats(mem, &st);
    cr_expect_eq(st.kv_blocks_free, 0);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_seq_release(kv, &s);
    zl_mem_get_stats(mem, &st);
    cr_expect_eq(st.kv_blocks_free, st.kv_blocks_total);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_free(kv);
    /* a cap below the pool's size (tiny pools for tests) */
    p.n_blocks = 3;
    cr_assert_eq(zl_kv_create(&p, &kv), ZL_OK, "%s", zl_last_error());
    cr_expect_eq(zl_kv_n_blocks(kv), 3);
    zl_kv_seq_init(&s, 0);
    cr_expect_eq(zl_kv_seq_grow(kv, &s, 64), ZL_ENOMEM);
    cr_assert_eq(zl_kv_seq_grow(kv, &s, 48), ZL_OK);
    zl_mem_get_stats(mem, &st);
    cr_expect_eq(st.kv_blocks_free, st.kv_blocks_total - 3);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_seq_release(kv, &s);
    zl_kv_free(kv);
    zl_mem_free(mem);
}

/* Random grow / share-by-prefix / release on many sequences: the counts
 * always partition the pool and everything comes back. */
Test(kvcache, random_accounting)
{
    enum { NS = 24, BS = 4 };
    struct zl_kv *kv = make_kv(64, BS);
    struct zl_kv_seq seqs[NS];
    int32_t toks[NS][256];
    int32_t n_tok[NS] = {0};
    srand(7);
    for (int i = 0; i < NS; i++)
        zl_kv_seq_init(&seqs[i], (uint64_t)(i % 2));
    for (int it = 0; it < 10000; it++) {
        int i = rand() % NS;
        struct zl_kv_seq *s = &seqs[i];
        int op = rand() % 4;
        if (op == 0) {
            zl_kv_seq_release(kv, s);
            n_tok[i] = 0;
        } else if (s->n_blocks == 0) {
            int32_t n = 1 + rand() % 40;
            for (int32_t t = 0; t < n; t++)
                toks[i][t] = rand() % 3;   /* small alphabet: many prefix hits */
            int32_t hit = zl_kv_prefix_match(kv, s, toks[i], n - 1);
            cr_assert(hit >= 0 && hit % BS == 0 && hit < n);
            if (zl_kv_seq_grow(kv, s, n) == ZL_OK) {
                n_tok[i] = n;
                zl_kv_prefix_commit(kv, s, toks[i], n);
            } else {
                zl_kv_seq_release(kv, s);
            }
        } else if (n_tok[i] < 250) {
            int32_t n = n_tok[i] + 1 + rand() % 6;
            for (int32_t t = n_tok[i]; t < n; t++)
                toks[i][t] = rand() % 3;
            if (zl_kv_seq_grow(kv, s, n) == ZL_OK) {
                n_tok[i] = n;
                zl_kv_prefix_commit(kv, s, toks[i], n);
            }
        }
        if (it % 97 == 0)
            cr_assert_eq(zl_kv_check(kv), ZL_OK, "step %d: %s", it, zl_last_error());
    }
    for (int i = 0; i < NS; i++)
        zl_kv_seq_release(kv, &seqs[i]);
    cr_assert_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    struct zl_kv_stats st;
    zl_kv_get_stats(kv, &st);
    cr_expect_eq(st.n_used, 0);
    cr_expect_eq(st.n_free + st.n_cached_free, 64);
    cr_expect_eq(zl_kv_n_available(kv), 64);
    cr_expect_gt(st.n_evictions, 0, "the test should exercise eviction");
    zl_kv_prefix_clear(kv);
    zl_kv_get_stats(kv, &st);
    cr_expect_eq(st.n_free, 64);
    cr_expect_eq(st.n_cached, 0);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_free(kv);
}
