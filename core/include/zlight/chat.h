/* Chat templates: Hugging Face Jinja chat templates rendered in C.
 *
 *   struct zl_chat_template *t;
 *   if (zl_chat_template_load_config("tok/tokenizer_config.json", NULL, &t) < 0) return fail(zl_last_error());
 *   struct zl_chat_params p; zl_chat_default_params(&p);
 *   p.messages = msgs; p.add_generation_prompt = true;        // json_t array
 *   char *text; if (zl_chat_template_render(t, &p, &text) == 0) { use(text); free(text); }
 *   zl_chat_template_free(t);
 *
 * Semantics are transformers' apply_chat_template: jinja2's sandboxed
 * environment with trim_blocks and lstrip_blocks, `raise_exception`,
 * `strftime_now` and a `tojson` that keeps non-ASCII and key order.  A
 * template is compiled once and may then be rendered from many threads at
 * once (rendering never modifies the template or the caller's values).
 * Errors (syntax or render) carry "line L, column C" in zl_last_error().
 */
#ifndef ZLIGHT_CHAT_H
#define ZLIGHT_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <zlight/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_chat_template;

/* One render's inputs.  Every json_t is borrowed and never modified. */
struct zl_chat_params {
    const json_t *messages;       /* array of {role, content, ...}; required */
    const json_t *tools;          /* array of tool schemas, or NULL (renders as none) */
    const json_t *documents;      /* array, or NULL (renders as none) */
    bool add_generation_prompt;
    const json_t *vars;           /* object of extra variables (enable_thinking,
                                     date_string, ...) or NULL; they override
                                     bos_token / eos_token from the config */
    size_t max_output_bytes;      /* 0: 16 MiB */
    long max_steps;               /* evaluation budget (nodes + loop turns)
                                     against runaway loops; 0: 5,000,000 */
};

/* Fills p with: no messages, no tools, add_generation_prompt false. */
ZL_API void zl_chat_default_params(struct zl_chat_params *p);

/* Compiles template source (e.g. GGUF tokenizer.chat_template).  `len` may
 * be (size_t)-1 for a NUL-terminated string.  ZL_EINVAL with "line L,
 * column C: ..." on a syntax error. */
ZL_API int zl_chat_template_compile(const char *src, size_t len, struct zl_chat_template **out);

/* Compiles the file `path` (a chat_template.jinja).  ZL_EIO / ZL_EINVAL. */
ZL_API int zl_chat_template_load_file(const char *path, struct zl_chat_template **out);

/* Loads `chat_template` from a tokenizer_config.json: either a string or a
 * list of {name, template}; `name` picks one (NULL: "default", or the only
 * one).  Also takes bos_token / eos_token (strings or {content: ...}).
 * ZL_ENOTFOUND when the file has no template or no template of that name. */
ZL_API int zl_chat_template_load_config(const char *config_path, const char *name,
                                        struct zl_chat_template **out);

/* Loads from a model directory as transformers does: bos/eos from
 * tokenizer_config.json, the template from chat_template.jinja when present,
 * else from tokenizer_config.json (by `name`, NULL for the default). */
ZL_API int zl_chat_template_load_dir(const char *dir, const char *name, struct zl_chat_template **out);

/* Sets the bos_token / eos_token variables (NULL leaves one unchanged).
 * Not to be called while another thread renders t. */
ZL_API int zl_chat_template_set_special(struct zl_chat_template *t, const char *bos, const char *eos);

/* The source t was compiled from (NUL-terminated), NULL for t NULL. */
ZL_API const char *zl_chat_template_source(const struct zl_chat_template *t);

/* bos_token / eos_token known to t, or NULL. */
ZL_API const char *zl_chat_template_bos(const struct zl_chat_template *t);
ZL_API const char *zl_chat_template_eos(const struct zl_chat_template *t);

/* Renders into a malloc'd NUL-terminated UTF-8 string (*out, free() it).
 * Thread-safe for concurrent renders of one template.  Returns ZL_EINVAL with
 * the line and column on a render error (including raise_exception's
 * message), ZL_ERANGE past max_output_bytes. */
ZL_API int zl_chat_template_render(const struct zl_chat_template *t, const struct zl_chat_params *p, char **out);

/* Frees t; NULL is fine. */
ZL_API void zl_chat_template_free(struct zl_chat_template *t);

#ifdef __cplusplus
}
#endif
#endif
