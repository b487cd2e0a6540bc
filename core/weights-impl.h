/* Internal helpers shared by the weight readers (safetensors.c, gguf.c):
 * read-only file mapping and a name -> index hash table.  Small enough to
 * live here as static inline functions. */
#ifndef ZLIGHT_WEIGHTS_IMPL_H
#define ZLIGHT_WEIGHTS_IMPL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlight/status.h>

struct zl_wmap {
    void *base;     /* NULL for an empty file or a caller's buffer */
    size_t size;
};

/* Maps `path` read-only.  ZL_ENOTFOUND / ZL_EIO with the path in the message. */
static inline int zl_wmap_open(const char *path, struct zl_wmap *m)
{
    m->base = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return zl_error(errno == ENOENT ? ZL_ENOTFOUND : ZL_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        int e = errno;
        close(fd);
        return zl_error(ZL_EIO, "%s: %s", path, e ? strerror(e) : "not a regular file");
    }
    if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return zl_error(ZL_EIO, "%s: mmap: %s", path, strerror(e));
        }
        m->base = p;
        m->size = (size_t)sb.st_size;
    }
    close(fd);
    return ZL_OK;
}

static inline void zl_wmap_close(struct zl_wmap *m)
{
    if (m->base)
        munmap(m->base, m->size);
    m->base = NULL;
    m->size = 0;
}

/* Open-addressing table of (name, index); names are borrowed. */
struct zl_wnames {
    const char **name;
    int64_t *idx;
    size_t cap;     /* power of two, at least twice the entries */
};

static inline uint64_t zl_wnames_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static inline int zl_wnames_init(struct zl_wnames *t, size_t n)
{
    t->cap = 16;
    while (t->cap < 2 * n + 1)
        t->cap *= 2;
    t->name = calloc(t->cap, sizeof *t->name);
    t->idx = calloc(t->cap, sizeof *t->idx);
    if (!t->name || !t->idx) {
        free(t->name);
        free(t->idx);
        t->name = NULL;
        t->idx = NULL;
        return ZL_ENOMEM;
    }
    return ZL_OK;
}

static inline void zl_wnames_free(struct zl_wnames *t)
{
    free(t->name);
    free(t->idx);
    t->name = NULL;
    t->idx = NULL;
    t->cap = 0;
}

/* Index of `name`, -1 when absent (or the table is empty). */
static inline int64_t zl_wnames_find(const struct zl_wnames *t, const char *name)
{
    if (!t->cap || !name)
        return -1;
    for (size_t i = zl_wnames_hash(name) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->name[i])
            return -1;
        if (strcmp(t->name[i], name) == 0)
            return t->idx[i];
    }
}

/* Adds (name, idx) unless present; returns the existing index or -1 when
 * added.  The caller sized the table for every entry. */
static inline int64_t zl_wnames_add(struct zl_wnames *t, const char *name, int64_t idx)
{
    size_t i = zl_wnames_hash(name) & (t->cap - 1);
    for (; t->name[i]; i = (i + 1) & (t->cap - 1))
        if (strcmp(t->name[i], name) == 0)
            return t->idx[i];
    t->name[i] = name;
    t->idx[i] = idx;
    return -1;
}

/* a * b into *r; 0 on overflow. */
static inline int zl_wmul(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}

#endif
