/* Toy tokenizers (features the real files do not use: Digits, literal
 * Split, MergedWithPrevious, lstrip/rstrip/single_word, normalized added
 * tokens, Metaspace "first", list merges; expected ids from HF tokenizers
 * 0.22.1, see fixtures/tokenizer/make_toy.py), invalid UTF-8, stop strings,
 * and the fuzz regression inputs. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/detok.h>
#include <zlight/tokenizer.h>

#define FIX ZL_TEST_SRCDIR "/fixtures/tokenizer"

static struct zl_tokenizer *load(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", FIX, name);
    struct zl_tokenizer *t;
    cr_assert_eq(zl_tokenizer_load(path, &t), 0, "%s: %s", path, zl_last_error());
    return t;
}

static void expect_ids(const struct zl_tokenizer *t, const char *text, uint32_t flags,
                       const int32_t *want, size_t n_want)
{
    int32_t *ids;
    size_t n;
    cr_assert_eq(zl_tokenizer_encode(t, text, strlen(text), flags, &ids, &n), 0);
    cr_expect_eq(n, n_want, "\"%s\": %zu ids, want %zu", text, n, n_want);
    for (size_t i = 0; i < n && i < n_want; i++)
        cr_expect_eq(ids[i], want[i], "\"%s\": id %zu is %d, want %d", text, i, ids[i], want[i]);
    free(ids);
}

static void expect_decode(const struct zl_tokenizer *t, const int32_t *ids, size_t n, uint32_t flags,
                          const char *want)
{
    char *s;
    size_t len;
    cr_assert_eq(zl_tokenizer_decode(t, ids, n, flags, &s, &len), 0);
    cr_expect_str_eq(s, want);
    free(s);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(tok_toy, bytelevel_added_flags)
{
    struct zl_tokenizer *t = load("toy1.json");
    static const int32_t a[] = {266, 32, 32, 259, 124, 264, 32, 32, 265, 51, 32, 32, 52, 53, 54, 55,
                                266, 268, 262, 100, 115, 32, 268, 32, 44, 267};
    expect_ids(t, "  hello|world 123 4567 <|x|>word words word,", ZL_TOK_ADD_SPECIAL, a, N(a));
    static const int32_t b[] = {32, 88, 32, 259, 32, 267, 32, 101, 110, 100};
    expect_ids(t, "xxx \xef\xbd\x88\xef\xbd\x85\xef\xbd\x8c\xef\xbd\x8c\xef\xbd\x8f [R]   end", 0, b, N(b));
    static const int32_t c[] = {266, 32, 97, 266, 32, 98, 267};
    expect_ids(t, "a<|x|>b", ZL_TOK_ADD_SPECIAL, c, N(c));
    /* single_word: a combining mark is part of the word (HF), so no match. */
    static const int32_t m[] = {32, 204, 129, 119, 261, 100};
    expect_ids(t, "\xcc\x81word", 0, m, N(m));
    static const int32_t e[] = {266, 267};
    expect_ids(t, "", ZL_TOK_ADD_SPECIAL, e, N(e));
    expect_decode(t, a, N(a), ZL_DETOK_SKIP_SPECIAL, "  hello| world  123  4567word words word ,[R]");
    expect_decode(t, a, N(a), 0, "<|x|>  hello| world  123  4567<|x|>word words word ,[R]");
    expect_decode(t, c, N(c), ZL_DETOK_SKIP_SPECIAL, " a b[R]");
    zl_tokenizer_free(t);
}

Test(tok_toy, metaspace_byte_fallback)
{
    struct zl_tokenizer *t = load("toy2.json");
    static const int32_t a[] = {1, 1, 271, 272, 267, 2, 276, 277, 266, 263, 2};
    expect_ids(t, "<s>hello</s> world", ZL_TOK_ADD_SPECIAL, a, N(a));
    static const int32_t b[] = {275, 259, 276, 198, 185, 269, 266, 263, 259, 231, 187, 176};
    expect_ids(t, "hello  w\xc3\xb6rld \xe4\xb8\xad", 0, b, N(b));
    static const int32_t c[] = {259, 266, 264, 260, 263};
    expect_ids(t, " lead", 0, c, N(c));
    expect_decode(t, a, N(a), ZL_DETOK_SKIP_SPECIAL, "hello world");
    expect_decode(t, b, N(b), 0, "hello  w\xc3\xb6rld \xe4\xb8\xad");
    expect_decode(t, c, N(c), 0, "lead");
    /* A byte run that never completes: one U+FFFD per byte (HF ByteFallback). */
    static const int32_t d[] = {231, 187, 275};
    expect_decode(t, d, N(d), 0, "\xef\xbf\xbd\xef\xbf\xbd hello");
    zl_tokenizer_free(t);
}

Test(tok_toy, invalid_utf8_is_replaced)
{
    struct zl_tokenizer *t = load("toy1.json");
    static const char *bad[][2] = {
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xe4\xb8", "\xef\xbf\xbd"},                       /* truncated: one U+FFFD */
        {"\xf0\x9f\x98" "x", "\xef\xbf\xbdx"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate: one per byte */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < N(bad); i++) {
        int32_t *x, *y;
        size_t nx, ny;
        cr_assert_eq(zl_tokenizer_encode(t, bad[i][0], strlen(bad[i][0]), 0, &x, &nx), 0);
        cr_assert_eq(zl_tokenizer_encode(t, bad[i][1], strlen(bad[i][1]), 0, &y, &ny), 0);
        cr_expect(nx == ny && !memcmp(x, y, nx * sizeof(*x)), "case %zu", i);
        free(x), free(y);
    }
    zl_tokenizer_free(t);
}

Test(tok_toy, bad_files_fail_cleanly)
{
    struct zl_tokenizer *t;
    cr_expect_lt(zl_tokenizer_load_json("{", 1, &t), 0);
    cr_expect_null(t);
    const char *uni = "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}";
    cr_expect_eq(zl_tokenizer_load_json(uni, strlen(uni), &t), ZL_EUNSUPPORTED);
    cr_expect_eq(zl_tokenizer_load(FIX "/no-such-dir", &t), ZL_ENOTFOUND);
    /* ids size the vocabulary arrays: a huge one is refused, not allocated */
    const char *huge = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":194222222},\"merges\":[]}}";
    cr_expect_eq(zl_tokenizer_load_json(huge, strlen(huge), &t), ZL_EINVAL);
    cr_expect(strstr(zl_last_error(), "needs an id in 0..") != NULL, "%s", zl_last_error());
    const char *huge_added = "{\"added_tokens\":[{\"id\":300000000,\"content\":\"x\"}],"
                             "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    cr_expect_eq(zl_tokenizer_load_json(huge_added, strlen(huge_added), &t), ZL_EINVAL);
    /* Every kept fuzz input loads or fails with a message, never crashes. */
    DIR *d = opendir(FIX "/regress");
    cr_assert(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/regress/%s", FIX, e->d_name);
        if (zl_tokenizer_load(path, &t) == 0) {
            int32_t *ids;
            size_t k;
            cr_expect_eq(zl_tokenizer_encode(t, "ab a b\xff", 7, ZL_TOK_ADD_SPECIAL, &ids, &k), 0);
            free(ids);
            zl_tokenizer_free(t);
        } else {
            cr_expect_neq(zl_last_error()[0], 0, "%s failed without a message", path);
        }
        n++;
    }
    closedir(d);
    cr_expect_gt(n, 0);
}

/* Feeds `parts` through a matcher; returns what it emitted. */
static char *stop_run(const char *const *stops, size_t n_stops, const char *const *parts,
                      size_t n_parts, int *stopped)
{
    struct zl_stopstr *s;
    cr_assert_eq(zl_stopstr_create(stops, NULL, n_stops, &s), 0);
    static char out[1024];
    out[0] = 0;
    *stopped = 0;
    for (size_t i = 0; i < n_parts; i++) {
        const char *e;
        size_t n;
        int rc = zl_stopstr_push(s, parts[i], strlen(parts[i]), &e, &n);
        cr_assert_geq(rc, 0);
        strncat(out, e, n);
        if (rc == 1)
            *stopped = 1;
    }
    if (!*stopped) {
        const char *e;
        size_t n;
        zl_stopstr_finish(s, &e, &n);
        strncat(out, e, n);
    }
    zl_stopstr_free(s);
    return out;
}

Test(tok_stop, matcher)
{
    const char *stops[] = {"</end>", "STOP", "ab"};
    int st;
    const char *p1[] = {"hello </e", "nd> never"};
    cr_expect_str_eq(stop_run(stops, 3, p1, 2, &st), "hello ");
    cr_expect(st);
    const char *p2[] = {"a", "x", "S", "TO", "X"};
    cr_expect_str_eq(stop_run(stops, 3, p2, 5, &st), "axSTOX");
    cr_expect(!st);
    const char *p3[] = {"xxa", "b"};
    cr_expect_str_eq(stop_run(stops, 3, p3, 2, &st), "xx");
    cr_expect(st);

    /* Holds only what could still become a stop string. */
    struct zl_stopstr *s;
    cr_assert_eq(zl_stopstr_create(stops, NULL, 3, &s), 0);
    const char *e;
    size_t n;
    cr_expect_eq(zl_stopstr_push(s, "text </en", 9, &e, &n), 0);
    cr_expect(n == 5 && !memcmp(e, "text ", 5));
    cr_expect_eq(zl_stopstr_push(s, "x", 1, &e, &n), 0);
    cr_expect(n == 5 && !memcmp(e, "</enx", 5));
    cr_expect_eq(zl_stopstr_push(s, "STOPmore", 8, &e, &n), 1);
    cr_expect_eq(n, 0);
    cr_expect_eq(zl_stopstr_matched(s), 1);
    cr_expect_eq(zl_stopstr_push(s, "after", 5, &e, &n), 1);
    cr_expect_eq(n, 0);
    zl_stopstr_reset(s);
    cr_expect_eq(zl_stopstr_matched(s), -1);
    zl_stopstr_free(s);

    /* Earliest stop wins; empty stop strings are ignored. */
    const char *s2[] = {"", "bc", "abcd"};
    const char *p4[] = {"zabcd"};
    cr_expect_str_eq(stop_run(s2, 3, p4, 1, &st), "z");
    cr_expect(st);
}

/* The word cache is shared: concurrent encodes must not disturb each other. */
struct enc_job { const struct zl_tokenizer *t; int ok; };
static const char *const k_texts[] = {"hello world", "  hello|world 123 4567 <|x|>word words word,",
                                      "xxx \xef\xbd\x88 [R]   end", "a<|x|>b", "hello  w\xc3\xb6rld \xe4\xb8\xad"};

static void *enc_thread(void *arg)
{
    struct enc_job *j = arg;
    int32_t *ref[5];
    size_t nref[5];
    j->ok = 1;
    for (int k = 0; k < 5; k++)
        if (zl_tokenizer_encode(j->t, k_texts[k], strlen(k_texts[k]), 0, &ref[k], &nref[k]) < 0)
            j->ok = 0;
    for (int it = 0; it < 2000 && j->ok; it++) {
        int k = it % 5;
        int32_t *ids;
        size_t n;
        if (zl_tokenizer_encode(j->t, k_texts[k], strlen(k_texts[k]), 0, &ids, &n) < 0 || n != nref[k] ||
            memcmp(ids, ref[k], n * sizeof(*ids)))
            j->ok = 0;
        free(ids);
    }
    for (int k = 0; k < 5; k++)
        free(ref[k]);
    return NULL;
}

Test(tok_toy, concurrent_encode)
{
    struct zl_tokenizer *t = load("toy1.json");
    pthread_t th[4];
    struct enc_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct enc_job){t, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, enc_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect(jobs[i].ok, "thread %d saw different ids", i);
    }
    zl_tokenizer_free(t);
}
