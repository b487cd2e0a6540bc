/* libFuzzer target: the encoder and the streaming decoder on arbitrary bytes
 * (invalid UTF-8 included) with a real tokenizer: $ZL_FUZZ_TOKENIZER (a
 * tokenizer.json, a directory or a .gguf), else the toy byte-level one of
 * the tests.  The input is encoded, the ids decoded in one go and as a
 * stream (the two must agree), and the text fed through a stop matcher. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlight/detok.h>
#include <zlight/tokenizer.h>

#ifndef ZL_FUZZ_DEFAULT_TOKENIZER
#define ZL_FUZZ_DEFAULT_TOKENIZER "tests/fixtures/tokenizer/toy1.json"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct zl_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *p = getenv("ZL_FUZZ_TOKENIZER");
    if (zl_tokenizer_load(p ? p : ZL_FUZZ_DEFAULT_TOKENIZER, &tok) < 0) {
        fprintf(stderr, "fuzz_tokenizer_encode: %s\n", zl_last_error());
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int32_t *ids;
    size_t n;
    uint32_t flags = size && (data[0] & 1) ? ZL_TOK_ADD_SPECIAL : 0;
    if (zl_tokenizer_encode(tok, (const char *)data, size, flags, &ids, &n) < 0)
        __builtin_trap();
    char *whole;
    size_t wl;
    if (zl_tokenizer_decode(tok, ids, n, 0, &whole, &wl) < 0)
        __builtin_trap();
    struct zl_detok *d;
    struct zl_stopstr *st;
    const char *stops[] = {"</s>", "\n\n", "\xe4\xb8\xad"};
    if (zl_detok_create(tok, 0, &d) < 0 || zl_stopstr_create(stops, NULL, 3, &st) < 0)
        __builtin_trap();
    size_t at = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *s, *e;
        size_t sl, el;
        if ((i < n ? zl_detok_push(d, ids[i], &s, &sl) : zl_detok_finish(d, &s, &sl)) < 0)
            __builtin_trap();
        if (at + sl > wl || memcmp(whole + at, s, sl))
            __builtin_trap(); /* the stream must spell the whole decode */
        at += sl;
        if (zl_stopstr_push(st, s, sl, &e, &el) < 0)
            __builtin_trap();
    }
    if (at != wl)
        __builtin_trap();
    zl_stopstr_free(st);
    zl_detok_free(d);
    free(whole);
    free(ids);
    return 0;
}
