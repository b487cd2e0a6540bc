/* Tokenizer: HF tokenizer.json (BPE, byte-level or SentencePiece-style with
 * byte fallback) or GGUF `tokenizer.ggml.*` metadata; encode / decode.
 *
 *   struct zl_tokenizer *tok;
 *   if (zl_tokenizer_load("models/llama3", &tok) < 0) die(zl_last_error());
 *   int32_t *ids; size_t n;
 *   zl_tokenizer_encode(tok, "Hello", 5, ZL_TOK_ADD_SPECIAL, &ids, &n);
 *   free(ids); zl_tokenizer_free(tok);
 */
#ifndef ZLIGHT_TOKENIZER_H
#define ZLIGHT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_tokenizer;

/* Flags of zl_tokenizer_encode. */
enum zl_tok_flags {
    ZL_TOK_ADD_SPECIAL = 1u << 0, /* apply the post-processor (BOS/EOS template) */
};

/* Flags of zl_tokenizer_decode and zl_detok_create. */
enum zl_detok_flags {
    ZL_DETOK_SKIP_SPECIAL = 1u << 0, /* drop special added tokens */
};

/* Loads a tokenizer from `path`: a directory holding tokenizer.json (and
 * optionally tokenizer_config.json for BOS/EOS names and the chat
 * template), a tokenizer.json file, or a .gguf file (tokenizer.ggml.*
 * metadata).  ZL_TOK_ADD_SPECIAL then does what transformers'
 * AutoTokenizer does: the tokenizer.json post-processor, except that a
 * directory whose tokenizer_class is Llama/CodeLlama/Gemma gets BOS/EOS from
 * add_bos_token/add_eos_token (as transformers rebuilds it); a GGUF adds
 * BOS/EOS per tokenizer.ggml.add_bos_token/add_eos_token (as llama.cpp).  Status: ZL_ENOTFOUND, ZL_EIO, ZL_EINVAL (malformed file),
 * ZL_EUNSUPPORTED (a model/normalizer/pre-tokenizer kind we do not
 * implement, named in the message), ZL_ENOMEM.  *out is NULL on failure. */
ZL_API int zl_tokenizer_load(const char *path, struct zl_tokenizer **out);

/* Same from a tokenizer.json image in memory (`len` bytes, no NUL needed). */
ZL_API int zl_tokenizer_load_json(const char *json, size_t len, struct zl_tokenizer **out);

/* Frees everything; NULL and half-built objects are fine. */
ZL_API void zl_tokenizer_free(struct zl_tokenizer *t);

/* Encodes `len` bytes of UTF-8 text into *ids (malloc'd, free() it; n may be
 * 0 and *ids then NULL).  Invalid UTF-8 is replaced by U+FFFD first, as
 * Python's bytes.decode("utf-8", "replace") does before HF sees it.
 * Thread-safe on one tokenizer (the word cache is locked).
 * Status: ZL_ENOMEM, ZL_EINVAL (text NULL with len > 0). */
ZL_API int zl_tokenizer_encode(const struct zl_tokenizer *t, const char *text, size_t len,
                               uint32_t flags, int32_t **ids, size_t *n_ids);

/* Decodes ids into *text (malloc'd, NUL-terminated, free() it), exactly as
 * HF `tokenizers` decode does (ids out of range are skipped as HF does).
 * Status: ZL_ENOMEM. */
ZL_API int zl_tokenizer_decode(const struct zl_tokenizer *t, const int32_t *ids, size_t n_ids,
                               uint32_t flags, char **text, size_t *len);

/* Vocabulary size: 1 + the largest id (model vocab and added tokens). */
ZL_API int32_t zl_tokenizer_n_vocab(const struct zl_tokenizer *t);
/* Id of the token whose vocabulary string is s[0..len), or -1. */
ZL_API int32_t zl_tokenizer_token_id(const struct zl_tokenizer *t, const char *s, size_t len);
/* Vocabulary string of `id` (NUL-terminated, owned by t), NULL if none. */
ZL_API const char *zl_tokenizer_token_text(const struct zl_tokenizer *t, int32_t id, size_t *len);
/* 1 when `id` is a special added token (skipped by ZL_DETOK_SKIP_SPECIAL). */
ZL_API int zl_tokenizer_is_special(const struct zl_tokenizer *t, int32_t id);

/* BOS / EOS ids from tokenizer_config.json or GGUF metadata; -1 when
 * unknown.  add_bos/add_eos: what the model's config asks (informative;
 * ZL_TOK_ADD_SPECIAL applies the tokenizer's own post-processor). */
ZL_API int32_t zl_tokenizer_bos_id(const struct zl_tokenizer *t);
ZL_API int32_t zl_tokenizer_eos_id(const struct zl_tokenizer *t);
ZL_API int zl_tokenizer_add_bos(const struct zl_tokenizer *t);
/* Chat template text from tokenizer_config.json ("chat_template" string, or
 * the entry named "default" of a list), chat_template.jinja, or GGUF
 * tokenizer.chat_template; NULL when there is none.  Owned by t. */
ZL_API const char *zl_tokenizer_chat_template(const struct zl_tokenizer *t);
/* BOS / EOS token strings (NULL when unknown), for chat templates. */
ZL_API const char *zl_tokenizer_bos_token(const struct zl_tokenizer *t);
ZL_API const char *zl_tokenizer_eos_token(const struct zl_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif
