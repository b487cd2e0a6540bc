/* Guided decoding's host cost: a document is tokenized, then decoded
 * token by token through a guide as the engine does it (mask, check that
 * the document's token is allowed, accept), and the mask times are
 * reported per step.  Not a test; run by hand:
 *   tests/bench_guide TOKENIZER.json [ROUNDS]
 * Prints one line per schema (JSON mode, then a schema of the document). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlight/guide.h>
#include <zlight/tokenizer.h>

static const char k_doc[] =
    "{\"name\": \"Ada Lovelace\", \"born\": 1815, \"languages\": [\"English\", \"French\"],\n"
    " \"notes\": \"First published algorithm; wrote on the Analytical Engine \\u2014 1843.\",\n"
    " \"address\": {\"city\": \"London\", \"zip\": null, \"verified\": true},\n"
    " \"scores\": [98.5, -1.25e2, 0, 77], \"nick\": \"Ada\"}";

static const char k_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\"},\"born\":{\"type\":\"integer\"},"
    "\"languages\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"notes\":{\"type\":\"string\"},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"zip\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]},"
    "\"verified\":{\"type\":\"boolean\"}},\"required\":[\"city\",\"zip\",\"verified\"]},"
    "\"scores\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"maxItems\":8},"
    "\"nick\":{\"type\":\"string\",\"maxLength\":12}},"
    "\"required\":[\"name\",\"born\",\"languages\",\"notes\",\"address\",\"scores\",\"nick\"]}";

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One decode of the document; returns 0 when every token was allowed. */
static int decode(const struct zl_json_schema *s, const struct zl_guide_vocab *v,
                  const int32_t *ids, size_t n, uint32_t *mask, double *ms)
{
    struct zl_guide *g;
    if (zl_guide_create(s, v, &g) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        double t0 = now();
        int32_t count = zl_guide_mask(g, mask);
        ms[i] = (now() - t0) * 1e3;
        if (count < 0 || !(mask[ids[i] / 32] >> (ids[i] % 32) & 1)) {
            fprintf(stderr, "token %zu (id %d) of the document is not allowed\n", i, ids[i]);
            rc = -1;
        } else if (zl_guide_accept(g, ids[i]) < 0) {
            fprintf(stderr, "token %zu: %s\n", i, zl_last_error());
            rc = -1;
        }
    }
    if (rc == 0 && !zl_guide_can_end(g)) {
        fprintf(stderr, "the document did not end the guide\n");
        rc = -1;
    }
    zl_guide_free(g);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TOKENIZER.json [ROUNDS]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    struct zl_tokenizer *t;
    if (zl_tokenizer_load(argv[1], &t) < 0) {
        fprintf(stderr, "%s\n", zl_last_error());
        return 1;
    }
    int32_t *ids;
    size_t n;
    if (zl_tokenizer_encode(t, k_doc, sizeof k_doc - 1, 0, &ids, &n) < 0) {
        fprintf(stderr, "%s\n", zl_last_error());
        return 1;
    }
    int32_t nv = zl_tokenizer_n_vocab(t);
    double t0 = now();
    struct zl_guide_vocab *v;
    if (zl_guide_vocab_create(t, nv, &v) < 0) {
        fprintf(stderr, "%s\n", zl_last_error());
        return 1;
    }
    printf("%s: vocabulary %d tokens, trie built in %.1f ms; document %zu bytes, %zu tokens\n",
           argv[1], nv, (now() - t0) * 1e3, sizeof k_doc - 1, n);
    uint32_t *mask = malloc(sizeof(uint32_t) * (((size_t)nv + 31) / 32));
    double *ms = malloc(sizeof(double) * n * (size_t)rounds);
    const char *names[2] = {"json_object", "schema"};
    const char *texts[2] = {"{\"type\":\"object\"}", k_schema};
    int bad = 0;
    printf("%-12s %10s %10s %10s %10s %12s\n", "schema", "mean ms", "median", "p99", "max",
           "ms/document");
    for (int k = 0; k < 2; k++) {
        struct zl_json_schema *s;
        if (zl_json_schema_compile(texts[k], strlen(texts[k]), &s) < 0) {
            fprintf(stderr, "%s\n", zl_last_error());
            return 1;
        }
        double sum = 0;
        for (int r = 0; r < rounds && !bad; r++)
            bad |= decode(s, v, ids, n, mask, ms + (size_t)r * n) != 0;
        size_t all = n * (size_t)rounds;
        for (size_t i = 0; i < all; i++)
            sum += ms[i];
        qsort(ms, all, sizeof *ms, cmp);
        printf("%-12s %10.4f %10.4f %10.4f %10.4f %12.3f\n", names[k], sum / (double)all,
               ms[all / 2], ms[all * 99 / 100], ms[all - 1], sum / rounds);
        zl_json_schema_free(s);
    }
    free(ms);
    free(mask);
    free(ids);
    zl_guide_vocab_free(v);
    zl_tokenizer_free(t);
    return bad;
}
