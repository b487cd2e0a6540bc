/* libFuzzer target: the tokenizer.json loader (tests/fuzz/run-tokenizer.sh).
 * Whatever loads is then used: encode with and without special tokens,
 * decode of the ids and of arbitrary ids, streamed decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/detok.h>
#include <zlight/tokenizer.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zl_tokenizer *t;
    if (zl_tokenizer_load_json((const char *)data, size, &t) < 0) {
        if (!zl_last_error()[0] || t)
            __builtin_trap();
        return 0;
    }
    static const char *texts[] = {"Hello world 123 <s> </s> <|x|>", " \t\n\r\n  a'S 12345 \xc3\xa9\xe4\xb8\xad",
                                  "\xff\xfe bad \xe4\xb8", ""};
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
        int32_t *ids;
        size_t n;
        if (zl_tokenizer_encode(t, texts[k], strlen(texts[k]), k & 1 ? ZL_TOK_ADD_SPECIAL : 0, &ids, &n) < 0)
            __builtin_trap();
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= zl_tokenizer_n_vocab(t))
                __builtin_trap();
        char *s;
        size_t len;
        if (zl_tokenizer_decode(t, ids, n, (uint32_t)k & 1, &s, &len) < 0 || s[len] != 0)
            __builtin_trap();
        free(s);
        free(ids);
    }
    int32_t any[] = {-1, 0, 1, 2, 3, 1000, 1 << 30, 5};
    char *s;
    size_t len;
    if (zl_tokenizer_decode(t, any, sizeof(any) / sizeof(any[0]), 0, &s, &len) < 0)
        __builtin_trap();
    free(s);
    zl_tokenizer_free(t);
    return 0;
}
