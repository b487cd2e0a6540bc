/* Prefix cache: chained keys, sharing, salts, LRU eviction, hit rate. */
#include <criterion/criterion.h>
#include <zlight/kvcache.h>

enum { BS = 4 };

static struct zl_kv *make_kv(int32_t n_blocks)
{
    struct zl_kv_params p = zl_kv_default_params();
    p.n_blocks = n_blocks;
    p.block_size = BS;
    struct zl_kv *kv;
    cr_assert_eq(zl_kv_create(&p, &kv), ZL_OK, "%s", zl_last_error());
    return kv;
}

/* A sequence that computed all of tokens[0..n). */
static void fill(struct zl_kv *kv, struct zl_kv_seq *s, const int32_t *t, int32_t n, uint64_t salt)
{
    zl_kv_seq_init(s, salt);
    zl_kv_prefix_match(kv, s, t, n - 1);
    cr_assert_eq(zl_kv_seq_grow(kv, s, n), ZL_OK);
    zl_kv_prefix_commit(kv, s, t, n);
}

Test(prefix, keys_chain)
{
    int32_t a[8] = {1, 2, 3, 4, 9, 9, 9, 9}, b[8] = {5, 6, 7, 8, 9, 9, 9, 9};
    uint64_t ka0 = zl_kv_block_key(0, 0, a, BS), kb0 = zl_kv_block_key(0, 0, b, BS);
    cr_expect_neq(zl_kv_block_key(ka0, 0, a + 4, BS), zl_kv_block_key(kb0, 0, b + 4, BS),
                  "equal second blocks behind different first blocks differ");
    cr_expect_neq(zl_kv_block_key(0, 1, a, BS), ka0, "the salt is in the key");
    cr_expect_eq(zl_kv_block_key(0, 0, a, BS), ka0);
}

Test(prefix, different_first_block_shares_nothing)
{
    struct zl_kv *kv = make_kv(16);
    int32_t a[9] = {1, 2, 3, 4, 9, 9, 9, 9, 0}, b[9] = {5, 6, 7, 8, 9, 9, 9, 9, 0};
    struct zl_kv_seq sa, sb;
    fill(kv, &sa, a, 9, 0);
    zl_kv_seq_init(&sb, 0);
    cr_expect_eq(zl_kv_prefix_match(kv, &sb, b, 8), 0);
    cr_expect_eq(sb.n_blocks, 0);
    zl_kv_seq_release(kv, &sb);
    fill(kv, &sb, b, 9, 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            cr_expect_neq(sa.blocks[i], sb.blocks[j]);
    zl_kv_seq_release(kv, &sa);
    zl_kv_seq_release(kv, &sb);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_free(kv);
}

Test(prefix, hits_share_blocks)
{
    struct zl_kv *kv = make_kv(16);
    int32_t a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 11};
    int32_t b[10] = {1, 2, 3, 4, 5, 6, 7, 8, 20, 21};
    struct zl_kv_seq sa, sb, sc;
    fill(kv, &sa, a, 10, 0);
    zl_kv_seq_init(&sb, 0);
    cr_expect_eq(zl_kv_prefix_match(kv, &sb, b, 9), 8);
    cr_expect_eq(sb.blocks[0], sa.blocks[0]);
    cr_expect_eq(sb.blocks[1], sa.blocks[1]);
    cr_expect_eq(zl_kv_block_refs(kv, sa.blocks[0]), 2);
    cr_assert_eq(zl_kv_seq_grow(kv, &sb, 10), ZL_OK);
    cr_expect_neq(sb.blocks[2], sa.blocks[2], "the partial block is private");
    /* the last prompt token is never matched: 8 tokens match only one block */
    zl_kv_seq_init(&sc, 0);
    cr_expect_eq(zl_kv_prefix_match(kv, &sc, a, 7), 4);
    zl_kv_seq_release(kv, &sc);
    /* another salt (adapter) shares nothing */
    zl_kv_seq_init(&sc, 3);
    cr_expect_eq(zl_kv_prefix_match(kv, &sc, a, 9), 0);
    zl_kv_seq_release(kv, &sc);
    zl_kv_seq_release(kv, &sa);
    zl_kv_seq_release(kv, &sb);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    /* freed blocks stay cached and are found again */
    zl_kv_seq_init(&sc, 0);
    cr_expect_eq(zl_kv_prefix_match(kv, &sc, b, 9), 8);
    zl_kv_seq_release(kv, &sc);
    zl_kv_free(kv);
}

Test(prefix, lru_eviction_order)
{
    struct zl_kv *kv = make_kv(4);
    int32_t a[9] = {1, 1, 1, 1, 2, 2, 2, 2, 0}, b[5] = {3, 3, 3, 3, 0};
    struct zl_kv_seq sa, sb, sc;
    fill(kv, &sa, a, 8, 0);         /* two full cached blocks */
    fill(kv, &sb, b, 4, 0);         /* one */
    zl_kv_seq_release(kv, &sa);     /* LRU: a[1], a[0] (tail first) */
    zl_kv_seq_release(kv, &sb);     /* then b[0] */
    struct zl_kv_stats st;
    zl_kv_get_stats(kv, &st);
    cr_expect_eq(st.n_cached_free, 3);
    cr_expect_eq(st.n_free, 1);
    zl_kv_seq_init(&sc, 0);
    cr_assert_eq(zl_kv_seq_grow(kv, &sc, 8), ZL_OK);    /* unused block, then evicts a[1] */
    zl_kv_get_stats(kv, &st);
    cr_expect_eq(st.n_evictions, 1);
    struct zl_kv_seq sd;
    zl_kv_seq_init(&sd, 0);
    cr_expect_eq(zl_kv_prefix_match(kv, &sd, a, 8), 4, "a's head survives, its tail went first");
    zl_kv_seq_release(kv, &sd);
    zl_kv_seq_init(&sd, 0);
    cr_expect_eq(zl_kv_prefix_match(kv, &sd, b, 4), 4);
    zl_kv_seq_release(kv, &sd);
    zl_kv_seq_release(kv, &sc);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_free(kv);
}

Test(prefix, duplicate_blocks_stay_private)
{
    struct zl_kv *kv = make_kv(8);
    int32_t a[5] = {1, 2, 3, 4, 5};
    struct zl_kv_seq s1, s2;
    zl_kv_seq_init(&s1, 0);
    zl_kv_seq_init(&s2, 0);
    /* both computed the same block before either was cached */
    cr_assert_eq(zl_kv_seq_grow(kv, &s1, 5), ZL_OK);
    cr_assert_eq(zl_kv_seq_grow(kv, &s2, 5), ZL_OK);
    zl_kv_prefix_commit(kv, &s1, a, 5);
    zl_kv_prefix_commit(kv, &s2, a, 5);
    struct zl_kv_stats st;
    zl_kv_get_stats(kv, &st);
    cr_expect_eq(st.n_cached, 1);
    zl_kv_seq_release(kv, &s1);
    zl_kv_seq_release(kv, &s2);
    zl_kv_get_stats(kv, &st);
    cr_expect_eq(st.n_cached_free, 1);
    cr_expect_eq(st.n_free, 7);
    cr_expect_eq(zl_kv_check(kv), ZL_OK, "%s", zl_last_error());
    zl_kv_free(kv);
}

Test(prefix, hit_rate)
{
    struct zl_kv *kv = make_kv(8);
    cr_expect_eq(zl_kv_prefix_hit_rate(kv), 0.0);
    zl_kv_prefix_count(kv, 10, 0);
    zl_kv_prefix_count(kv, 10, 5);
    cr_expect_float_eq(zl_kv_prefix_hit_rate(kv), 0.25, 1e-12);
    zl_kv_free(kv);
}
