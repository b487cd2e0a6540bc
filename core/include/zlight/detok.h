/* Streaming detokenization and stop strings, one object each per request.
 *
 *   struct zl_detok *d; zl_detok_create(tok, ZL_DETOK_SKIP_SPECIAL, &d);
 *   const char *s; size_t n;
 *   zl_detok_push(d, id, &s, &n);  fwrite(s, 1, n, stdout);  // per token
 *   zl_detok_finish(d, &s, &n);    fwrite(s, 1, n, stdout);  // at the end
 *   zl_detok_free(d);
 */
#ifndef ZLIGHT_DETOK_H
#define ZLIGHT_DETOK_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/status.h>
#include <zlight/tokenizer.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_detok;
struct zl_stopstr;

/* A streaming decoder over `t` (which must outlive it); flags as
 * zl_tokenizer_decode.  The concatenation of everything push and finish
 * return equals zl_tokenizer_decode of the whole sequence, which equals HF's
 * decode.  Only complete UTF-8 is returned: incomplete byte sequences and
 * runs of byte-fallback tokens are held until they resolve.  ZL_ENOMEM. */
ZL_API int zl_detok_create(const struct zl_tokenizer *t, uint32_t flags, struct zl_detok **out);
ZL_API void zl_detok_free(struct zl_detok *d);
/* Feeds one token id; *text and *len receive the newly complete text (possibly
 * empty), valid until the next call on d.  ZL_ENOMEM. */
ZL_API int zl_detok_push(struct zl_detok *d, int32_t id, const char **text, size_t *len);
/* Ends the sequence: returns what was held back (an incomplete tail becomes
 * U+FFFD as in HF).  d is then reset for a new sequence. */
ZL_API int zl_detok_finish(struct zl_detok *d, const char **text, size_t *len);
/* Forgets the sequence so far. */
ZL_API void zl_detok_reset(struct zl_detok *d);

/* A stop-string matcher over streamed text.  `stops` are n strings of
 * lens[i] bytes (lens NULL: NUL-terminated; empty strings are ignored). */
ZL_API int zl_stopstr_create(const char *const *stops, const size_t *lens, size_t n,
                             struct zl_stopstr **out);
ZL_API void zl_stopstr_free(struct zl_stopstr *s);
/* Feeds text; *emit and *emit_len receive the text that is now safe to show
 * (valid until the next call).  Text that could still begin a stop string
 * is held.  Returns 1 when a stop string completed (emit then holds the
 * text before it, and nothing after it is ever emitted), 0 otherwise, or a
 * negative status.  After a stop every push returns 1 with nothing. */
ZL_API int zl_stopstr_push(struct zl_stopstr *s, const char *text, size_t len,
                           const char **emit, size_t *emit_len);
/* End of stream: releases the held text (none after a stop). */
ZL_API int zl_stopstr_finish(struct zl_stopstr *s, const char **emit, size_t *emit_len);
/* Index of the stop string that matched, -1 if none yet. */
ZL_API int zl_stopstr_matched(const struct zl_stopstr *s);
ZL_API void zl_stopstr_reset(struct zl_stopstr *s);

#ifdef __cplusplus
}
#endif
#endif
