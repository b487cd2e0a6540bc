/* Guided decoding: output constrained to JSON that matches a JSON Schema.
 *
 *   struct zl_json_schema *s;  zl_json_schema_compile("{\"type\":\"object\"}", 19, &s);
 *   struct zl_guide_vocab *v;  zl_guide_vocab_create(tok, n_vocab, &v);
 *   struct zl_guide *g;  zl_guide_create(s, v, &g);
 *   zl_guide_mask(g, allowed);  ... sample t among the set bits ...  zl_guide_accept(g, t);
 *   zl_guide_free(g);  zl_guide_vocab_free(v);  zl_json_schema_free(s);
 *
 * The schema becomes a pushdown automaton over bytes; a token may come
 * next when all of its bytes (as decoded in mid-stream) keep the text a
 * prefix of a matching document.  Keywords (the rest get ZL_EUNSUPPORTED
 * naming them; annotations such as title and description are ignored):
 *   type (one name or a list), properties, required, additionalProperties
 *   (false unless given as true or a schema, as OpenAI's strict mode),
 *   items, minItems, maxItems, minLength, maxLength (code points), enum,
 *   const, anyOf / oneOf whose branches begin with different bytes
 *   (e.g. a type and null) or are all objects told apart by a property
 *   every branch requires with const/enum values of its own (that
 *   property then comes first and its value picks the branch), $ref to
 *   #/$defs/... or #/definitions/... (recursion allowed), format (ignored).
 * Beside $ref, allOf (one branch), anyOf, oneOf, enum and const only
 * annotations are taken (and type beside enum/const, which then keeps the
 * values of that type).  Keys come in any order: a listed property at
 * most once (keys are matched as written: no escapes in an object that
 * lists properties, and property names that need escapes are refused);
 * extra keys (additionalProperties) are not remembered and may repeat.
 * Whitespace between tokens of the document is allowed in runs of at most
 * ZL_GUIDE_MAX_WS bytes, none after the document's end; nesting is at most
 * ZL_GUIDE_MAX_DEPTH; \u escapes of surrogates come in pairs.  Enum reals
 * are written with the fewest digits that read back equal. */
#ifndef ZLIGHT_GUIDE_H
#define ZLIGHT_GUIDE_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/status.h>
#include <zlight/tokenizer.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZL_GUIDE_MAX_DEPTH 32
#define ZL_GUIDE_MAX_WS 48

struct zl_json_schema;      /* compiled, immutable: shared by any number of guides */
struct zl_guide_vocab;      /* every token's bytes as a trie, immutable */
struct zl_guide;            /* one sequence's position in the document; one thread at a time */

/* Compiles `len` bytes of JSON Schema text.  ZL_EINVAL (not JSON, not a
 * schema, a bad $ref), ZL_EUNSUPPORTED (a keyword above does not list,
 * anyOf branches that share a first byte), ZL_ENOMEM; each names the
 * schema path.  *out is NULL on failure. */
ZL_API int zl_json_schema_compile(const char *text, size_t len, struct zl_json_schema **out);
ZL_API void zl_json_schema_free(struct zl_json_schema *s);      /* NULL-safe */

/* The bytes of ids 0..n_vocab-1 of t (ids t lacks, and special tokens,
 * have none and are never allowed).  n_vocab: the model's logits width,
 * which may exceed the tokenizer's.  ZL_EINVAL, ZL_ENOMEM. */
ZL_API int zl_guide_vocab_create(const struct zl_tokenizer *t, int32_t n_vocab,
                                 struct zl_guide_vocab **out);
ZL_API void zl_guide_vocab_free(struct zl_guide_vocab *v);      /* NULL-safe */
ZL_API int32_t zl_guide_vocab_size(const struct zl_guide_vocab *v);
/* Token t's bytes as the guide reads them (*len 0 for none); owned by v. */
ZL_API const char *zl_guide_vocab_token(const struct zl_guide_vocab *v, int32_t t, size_t *len);

/* A guide at the start of a document.  s and v must outlive it. */
ZL_API int zl_guide_create(const struct zl_json_schema *s, const struct zl_guide_vocab *v,
                           struct zl_guide **out);
ZL_API void zl_guide_free(struct zl_guide *g);                  /* NULL-safe */

/* allowed[(n_vocab + 31) / 32]: bit t (word t / 32, bit t % 32) set when
 * token t may come next.  Returns how many are set (0: only the end may
 * come, see zl_guide_can_end), or ZL_ENOMEM. */
ZL_API int32_t zl_guide_mask(struct zl_guide *g, uint32_t *allowed);
/* Advances by token t.  ZL_EINVAL when t may not come next (the guide is
 * then unchanged). */
ZL_API int zl_guide_accept(struct zl_guide *g, int32_t t);
/* Advances by raw bytes (all or none).  ZL_EINVAL when they may not come. */
ZL_API int zl_guide_feed(struct zl_guide *g, const char *bytes, size_t n);
/* 1 when bytes may come next (g is not changed), else 0. */
ZL_API int zl_guide_takes(const struct zl_guide *g, const char *bytes, size_t n);
/* 1 when the text so far is a whole matching document (the sequence may
 * end here), else 0. */
ZL_API int zl_guide_can_end(const struct zl_guide *g);

#ifdef __cplusplus
}
#endif

#endif
