/* Chat template API (zlight/chat.h): loading templates from HF files and
 * rendering them with the variables transformers passes. */
#include "jinja-eval-impl.h"

#include <zlight/chat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct zl_chat_template {
    struct jj_template tpl;
    char *bos, *eos;          /* special tokens from tokenizer_config.json */
    char *src;                /* the source it was compiled from */
};

void zl_chat_default_params(struct zl_chat_params *p)
{
    memset(p, 0, sizeof(*p));
}

void zl_chat_template_free(struct zl_chat_template *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->tpl.nlits; i++)
        json_decref(t->tpl.lits[i]);
    free(t->tpl.lits);
    jj_arena_free(t->tpl.arena);
    free(t->bos);
    free(t->eos);
    free(t->src);
    free(t);
}

const char *zl_chat_template_source(const struct zl_chat_template *t)
{
    return t ? t->src : NULL;
}

int zl_chat_template_compile(const char *src, size_t len, struct zl_chat_template **out)
{
    *out = NULL;
    if (!src)
        return zl_error(ZL_EINVAL, "chat template: no source");
    if (len == (size_t)-1)
        len = strlen(src);
    struct zl_chat_template *t = calloc(1, sizeof(*t));
    if (!t || !(t->tpl.arena = jj_arena_new()) || !(t->src = strndup(src, len))) {
        zl_chat_template_free(t);
        return zl_error(ZL_ENOMEM, "chat template: out of memory");
    }
    struct jj_token *toks = NULL;
    size_t ntoks = 0;
    int rc = jj_lex(t->tpl.arena, src, len, &toks, &ntoks);
    if (rc == 0)
        rc = jj_parse(&t->tpl, toks, ntoks);
    free(toks);
    if (rc < 0) {
        zl_chat_template_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static int read_file(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return zl_error(errno == ENOENT ? ZL_ENOTFOUND : ZL_EIO, "%s: %s", path, strerror(errno));
    struct jj_buf b = {0};
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof(tmp), f)) > 0)
        if (!jj_buf_put(&b, tmp, k))
            break;
    bool err = ferror(f) || b.overflow;
    fclose(f);
    if (err) {
        jj_buf_free(&b);
        return zl_error(ZL_EIO, "%s: read failed", path);
    }
    if (!b.p && !(b.p = calloc(1, 1)))
        return zl_error(ZL_ENOMEM, "%s: out of memory", path);
    *buf = b.p;
    *len = b.n;
    return 0;
}

int zl_chat_template_load_file(const char *path, struct zl_chat_template **out)
{
    char *src;
    size_t len;
    *out = NULL;
    int rc = read_file(path, &src, &len);
    if (rc < 0)
        return rc;
    rc = zl_chat_template_compile(src, len, out);
    free(src);
    return rc < 0 ? zl_error_wrap(rc, "%s", path) : 0;
}

/* bos_token / eos_token may be "text" or an AddedToken {content: "text"}. */
static const char *token_text(const json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int pick_template(const json_t *cfg, const char *name, const char *path, const char **src)
{
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) {
        if (name && strcmp(name, "default") != 0)
            return zl_error(ZL_ENOTFOUND, "%s: no chat template named '%s'", path, name);
        *src = json_string_value(ct);
        return 0;
    }
    if (!json_is_array(ct))
        return zl_error(ZL_ENOTFOUND, "%s: no chat_template", path);
    size_t i;
    json_t *item;
    const char *want = name ? name : "default";
    json_array_foreach (ct, i, item) {
        json_t *nm = json_object_get(item, "name"), *tp = json_object_get(item, "template");
        if (json_is_string(nm) && json_is_string(tp) && !strcmp(json_string_value(nm), want)) {
            *src = json_string_value(tp);
            return 0;
        }
    }
    if (!name && json_array_size(ct) == 1 && json_is_string(json_object_get(json_array_get(ct, 0), "template"))) {
        *src = json_string_value(json_object_get(json_array_get(ct, 0), "template"));
        return 0;
    }
    return zl_error(ZL_ENOTFOUND, "%s: no chat template named '%s'", path, want);
}

static int load_config(const char *path, const char *name, bool need_template, struct zl_chat_template **out,
                       json_t **cfg_out)
{
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length can be 1e30 */
    if (!cfg)
        return zl_error(ZL_EINVAL, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    const char *src = NULL;
    int rc = need_template ? pick_template(cfg, name, path, &src) : 0;
    if (rc == 0 && src) {
        rc = zl_chat_template_compile(src, (size_t)-1, out);
        if (rc < 0)
            zl_error_wrap(rc, "%s", path);
    }
    if (rc == 0 && *out)
        rc = zl_chat_template_set_special(*out, token_text(cfg, "bos_token"), token_text(cfg, "eos_token"));
    if (cfg_out && rc == 0)
        *cfg_out = cfg;
    else
        json_decref(cfg);
    return rc;
}

int zl_chat_template_load_config(const char *config_path, const char *name, struct zl_chat_template **out)
{
    *out = NULL;
    int rc = load_config(config_path, name, true, out, NULL);
    if (rc < 0) {
        zl_chat_template_free(*out);
        *out = NULL;
    }
    return rc;
}

int zl_chat_template_load_dir(const char *dir, const char *name, struct zl_chat_template **out)
{
    char path[4096];
    *out = NULL;
    snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "rb");
    if (f && !name) {
        fclose(f);
        int rc = zl_chat_template_load_file(path, out);
        if (rc < 0)
            return rc;
        snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
        json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL);
        if (cfg)
            rc = zl_chat_template_set_special(*out, token_text(cfg, "bos_token"), token_text(cfg, "eos_token"));
        json_decref(cfg);
        if (rc < 0) {
            zl_chat_template_free(*out);
            *out = NULL;
        }
        return rc;
    }
    if (f)
        fclose(f);
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    return zl_chat_template_load_config(path, name, out);
}

static int replace_str(char **dst, const char *src)
{
    if (!src)
        return 0;
    char *s = strdup(src);
    if (!s)
        return zl_error(ZL_ENOMEM, "chat template: out of memory");
    free(*dst);
    *dst = s;
    return 0;
}

int zl_chat_template_set_special(struct zl_chat_template *t, const char *bos, const char *eos)
{
    int rc = replace_str(&t->bos, bos);
    return rc < 0 ? rc : replace_str(&t->eos, eos);
}

const char *zl_chat_template_bos(const struct zl_chat_template *t) { return t->bos; }
const char *zl_chat_template_eos(const struct zl_chat_template *t) { return t->eos; }

int zl_chat_template_render(const struct zl_chat_template *t, const struct zl_chat_params *p, char **out)
{
    *out = NULL;
    if (!t || !p || !p->messages)
        return zl_error(ZL_EINVAL, "chat template: render needs a template and messages");
    if (!json_is_array(p->messages))
        return zl_error(ZL_EINVAL, "chat template: messages must be an array");
    if (p->vars && !json_is_object(p->vars))
        return zl_error(ZL_EINVAL, "chat template: extra variables must be an object");
    /* A fresh globals object per render: top-level {% set %} writes into it. */
    json_t *vars = json_object();
    if (!vars)
        return zl_error(ZL_ENOMEM, "chat template: out of memory");
    json_object_set(vars, "messages", (json_t *)p->messages);
    json_object_set_new(vars, "tools", p->tools ? json_incref((json_t *)p->tools) : json_null());
    json_object_set_new(vars, "documents", p->documents ? json_incref((json_t *)p->documents) : json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(p->add_generation_prompt));
    if (t->bos)
        json_object_set_new(vars, "bos_token", json_string(t->bos));
    if (t->eos)
        json_object_set_new(vars, "eos_token", json_string(t->eos));
    if (p->vars)
        json_object_update(vars, (json_t *)p->vars);
    int rc = jj_render(&t->tpl, vars, p->max_output_bytes, p->max_steps, out, NULL);
    json_decref(vars);
    return rc;
}
