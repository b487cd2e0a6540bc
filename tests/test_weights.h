/* Helpers shared by the weight-reader tests: fixture paths, whole-file
 * reads, a minimal in-memory GGUF writer for hand-made broken files, and
 * files written to a per-test temporary directory. */
#ifndef ZLIGHT_TEST_WEIGHTS_H
#define ZLIGHT_TEST_WEIGHTS_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlight/status.h>

#define FIX ZL_TEST_SRCDIR "/fixtures/weights"

/* Whole file into a malloc'd buffer; fails the test when unreadable. */
static inline unsigned char *tw_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open fixture %s (run tests/gen_weights_fixtures.py)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    cr_assert(p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static inline void tw_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A fresh directory under $TMPDIR; removed by tw_rmdir. */
static inline void tw_mkdtemp(char *buf, size_t cap)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, cap, "%s/zl-weights-XXXXXX", t && *t ? t : "/tmp");
    cr_assert(mkdtemp(buf), "mkdtemp failed");
}

static inline void tw_rmdir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Asserts rc == want and that the message holds every given substring. */
#define tw_assert_err(rc, want, ...)                                                   \
    do {                                                                               \
        int rc_ = (rc);                                                                \
        cr_assert_eq(rc_, (want), "status %d (%s), expected %d; message: %s", rc_,     \
                     zl_status_str(rc_), (want), zl_last_error());                      \
        const char *subs_[] = {__VA_ARGS__};                                           \
        for (size_t k_ = 0; k_ < sizeof subs_ / sizeof subs_[0]; k_++)                 \
            cr_assert(strstr(zl_last_error(), subs_[k_]), "message \"%s\" lacks \"%s\"", \
                      zl_last_error(), subs_[k_]);                                     \
    } while (0)

/* Parses every file of the regress/ fixture folder whose name starts with
 * `prefix` and expects a clean error naming it; at least one must exist. */
static inline void tw_regressions(const char *prefix, int (*parse)(const void *, size_t, const char *))
{
    DIR *d = opendir(FIX "/regress");
    cr_assert(d, "missing " FIX "/regress");
    struct dirent *e;
    int count = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char p[512];
        size_t n;
        snprintf(p, sizeof p, FIX "/regress/%s", e->d_name);
        unsigned char *b = tw_read(p, &n);
        cr_assert_lt(parse(b, n, e->d_name), 0, "%s parsed without error", e->d_name);
        cr_assert(strstr(zl_last_error(), e->d_name), "%s: %s", e->d_name, zl_last_error());
        free(b);
        count++;
    }
    closedir(d);
    cr_assert_gt(count, 0, "no %s* regression inputs", prefix);
}

/* Minimal GGUF writer (little-endian host). */
struct tw_buf {
    unsigned char *p;
    size_t n, cap;
};

static inline void tw_put(struct tw_buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static inline void tw_u32(struct tw_buf *b, uint32_t v) { tw_put(b, &v, 4); }
static inline void tw_u64(struct tw_buf *b, uint64_t v) { tw_put(b, &v, 8); }

static inline void tw_str(struct tw_buf *b, const char *s)
{
    tw_u64(b, strlen(s));
    tw_put(b, s, strlen(s));
}

/* Header: magic, version, tensor count, kv count. */
static inline void tw_gguf_header(struct tw_buf *b, uint32_t version, uint64_t n_tensors,
                                  uint64_t n_kv)
{
    tw_put(b, "GGUF", 4);
    tw_u32(b, version);
    tw_u64(b, n_tensors);
    tw_u64(b, n_kv);
}

/* Pads to `align` with zero bytes. */
static inline void tw_pad(struct tw_buf *b, size_t align)
{
    static const unsigned char z[64];
    tw_put(b, z, (align - b->n % align) % align);
}

#endif
