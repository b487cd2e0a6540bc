/* Reading the xz-compressed fixtures and shared tokenizers in tests. */
#ifndef TEST_XZ_H
#define TEST_XZ_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <zlight/status.h>
#include <zlight/tokenizer.h>

/* Output of `xz -dc path` (NUL-terminated, free() it), or NULL when path
 * is missing. */
static inline char *xz_read(const char *path, size_t *len)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return NULL;
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "xz -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    cr_assert(f, "cannot run xz");
    size_t cap = 1 << 20, n = 0, r;
    char *p = malloc(cap);
    cr_assert(p);
    while ((r = fread(p + n, 1, cap - n - 1, f)) > 0)
        if ((n += r) == cap - 1) {
            p = realloc(p, cap *= 2);
            cr_assert(p);
        }
    cr_assert(pclose(f) == 0, "xz -dc %s failed", path);
    p[n] = 0;
    *len = n;
    return p;
}

/* The shared reference tokenizer `name` (../shared/tokenizers/NAME), the
 * test skipped, naming the path, when it is not there. */
static inline struct zl_tokenizer *shared_tokenizer(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/../shared/tokenizers/%s/tokenizer.json.xz", ZL_TOP_SRCDIR,
             name);
    size_t len;
    char *json = xz_read(path, &len);
    if (!json)
        cr_skip_test("%s not found (the shared reference tokenizers live beside the repo)", path);
    struct zl_tokenizer *tok;
    int rc = zl_tokenizer_load_json(json, len, &tok);
    free(json);
    cr_assert_eq(rc, 0, "%s: %s", name, zl_last_error());
    return tok;
}

#endif
