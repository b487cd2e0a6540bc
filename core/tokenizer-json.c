/* HF tokenizer.json and tokenizer_config.json -> struct zl_tokenizer. */
#include "tokenizer-impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BAD(...) zl_error(ZL_EINVAL, __VA_ARGS__)

static const char *jstr(json_t *o, const char *k, size_t *len)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v))
        return NULL;
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

static int jbool(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* {"String": s} or {"Regex": r} -> compiled pattern. */
static pcre2_code *pattern(json_t *p, const char *name)
{
    size_t n;
    const char *s = jstr(p, "String", &n);
    if (s)
        return zl_tok_regex(s, n, 1);
    s = jstr(p, "Regex", &n);
    if (s)
        return zl_tok_regex(s, n, 0);
    BAD("%s: pattern is neither String nor Regex", name);
    return NULL;
}

static int utf8_cp(const char *s, size_t n, uint32_t *cp)
{
    size_t adv;
    if (!s || !n)
        return -1;
    *cp = zl_utf8_decode(s, n, &adv);
    return 0;
}

/* Calls fn on o, or on each step of a "Sequence" (nested), as the four
 * pipeline sections of tokenizer.json spell them. */
typedef int (*step_fn)(struct zl_tokenizer *t, json_t *o, const char *type, const char *name);

static int each_step(struct zl_tokenizer *t, json_t *o, const char *list_key, const char *what,
                     const char *name, int depth, step_fn fn)
{
    if (!o || json_is_null(o))
        return 0;
    const char *type = jstr(o, "type", NULL);
    if (!type || depth > 16)
        return BAD("%s: %s without type", name, what);
    if (strcmp(type, "Sequence"))
        return fn(t, o, type, name);
    json_t *arr = json_object_get(o, list_key), *v;
    size_t i;
    json_array_foreach(arr, i, v) {
        int rc = each_step(t, v, list_key, what, name, depth + 1, fn);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_norm(struct zl_tokenizer *t, json_t *o, const char *type, const char *name)
{
    struct zl_tok_norm *s = zl_tok_push_step((void **)&t->norm, &t->n_norm, sizeof(*s));
    if (!s)
        return ZL_ENOMEM;
    const char *str;
    size_t n;
    if (!strcmp(type, "NFC"))
        s->kind = ZL_NORM_NFC;
    else if (!strcmp(type, "NFD"))
        s->kind = ZL_NORM_NFD;
    else if (!strcmp(type, "NFKC"))
        s->kind = ZL_NORM_NFKC;
    else if (!strcmp(type, "NFKD"))
        s->kind = ZL_NORM_NFKD;
    else if (!strcmp(type, "Lowercase"))
        s->kind = ZL_NORM_LOWER;
    else if (!strcmp(type, "Strip")) {
        s->kind = ZL_NORM_STRIP;
        s->left = jbool(o, "strip_left", 1);
        s->right = jbool(o, "strip_right", 1);
    } else if (!strcmp(type, "Prepend") && (str = jstr(o, "prepend", &n))) {
        s->kind = ZL_NORM_PREPEND;
        s->str = zl_tok_arena_strdup(&t->arena, str, n);
        s->str_len = n;
    } else if (!strcmp(type, "Replace") && (str = jstr(o, "content", &n))) {
        s->kind = ZL_NORM_REPLACE;
        s->str = zl_tok_arena_strdup(&t->arena, str, n);
        s->str_len = n;
        if (!(s->re = pattern(json_object_get(o, "pattern"), name)))
            return ZL_EINVAL;
    } else {
        t->n_norm--;
        return zl_error(ZL_EUNSUPPORTED, "%s: normalizer %s is not supported", name, type);
    }
    return 0;
}

static int parse_pretok(struct zl_tokenizer *t, json_t *o, const char *type, const char *name)
{
    if (t->byte_level)
        return zl_error(ZL_EUNSUPPORTED, "%s: pre-tokenizer after ByteLevel", name);
    struct zl_tok_pretok *p = zl_tok_push_step((void **)&t->pretok, &t->n_pretok, sizeof(*p));
    if (!p)
        return ZL_ENOMEM;
    if (!strcmp(type, "Split")) {
        static const char *beh[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                    "Contiguous"};
        const char *b = jstr(o, "behavior", NULL);
        p->kind = ZL_PT_SPLIT;
        p->behavior = ZL_SPLIT_ISOLATED;
        for (int i = 0; b && i < 5; i++)
            if (!strcmp(b, beh[i]))
                p->behavior = (enum zl_split_behavior)i;
        p->invert = jbool(o, "invert", 0);
        if (!(p->re = pattern(json_object_get(o, "pattern"), name)))
            return ZL_EINVAL;
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = ZL_PT_BYTELEVEL;
        p->add_prefix_space = jbool(o, "add_prefix_space", 1);
        if (jbool(o, "use_regex", 1) &&
            !(p->re = zl_tok_regex(zl_tok_gpt2_regex, strlen(zl_tok_gpt2_regex), 0)))
            return ZL_EINVAL;
        t->byte_level = 1;
    } else if (!strcmp(type, "Digits")) {
        p->kind = ZL_PT_DIGITS;
        p->individual_digits = jbool(o, "individual_digits", 0);
    } else if (!strcmp(type, "Metaspace")) {
        size_t n;
        const char *r = jstr(o, "replacement", &n);
        const char *scheme = jstr(o, "prepend_scheme", NULL);
        if (!r || n == 0 || n >= sizeof(p->repl))
            return BAD("%s: Metaspace without a replacement character", name);
        p->kind = ZL_PT_METASPACE;
        memcpy(p->repl, r, n);
        p->repl_len = n;
        p->prepend_scheme = jbool(o, "add_prefix_space", 1) ? 0 : 2;
        if (scheme)
            p->prepend_scheme = !strcmp(scheme, "first") ? 1 : !strcmp(scheme, "never") ? 2 : 0;
        p->split = jbool(o, "split", 1);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = ZL_PT_SPLIT;
        p->behavior = ZL_SPLIT_REMOVED;
        if (!(p->re = zl_tok_regex("\\s+", 3, 0)))
            return ZL_EINVAL;
    } else if (!strcmp(type, "Whitespace")) {
        p->kind = ZL_PT_SPLIT;
        p->behavior = ZL_SPLIT_REMOVED;
        p->invert = 1;
        if (!(p->re = zl_tok_regex("\\w+|[^\\w\\s]+", 13, 0)))
            return ZL_EINVAL;
    } else {
        t->n_pretok--;
        return zl_error(ZL_EUNSUPPORTED, "%s: pre-tokenizer %s is not supported", name, type);
    }
    return 0;
}

static int parse_dec(struct zl_tokenizer *t, json_t *o, const char *type, const char *name)
{
    struct zl_tok_dec *d = zl_tok_push_step((void **)&t->dec, &t->n_dec, sizeof(*d));
    if (!d)
        return ZL_ENOMEM;
    size_t n;
    const char *s;
    if (!strcmp(type, "ByteLevel")) {
        d->kind = ZL_DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        d->kind = ZL_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->kind = ZL_DEC_FUSE;
    } else if (!strcmp(type, "Replace")) {
        json_t *p = json_object_get(o, "pattern");
        const char *c = jstr(o, "content", &d->content_len);
        d->kind = ZL_DEC_REPLACE;
        if (!(s = jstr(p, "String", &n)) || !c || !n)
            return zl_error(ZL_EUNSUPPORTED, "%s: Replace decoder needs a String pattern", name);
        d->pat = zl_tok_arena_strdup(&t->arena, s, n);
        d->pat_len = n;
        d->content = zl_tok_arena_strdup(&t->arena, c, d->content_len);
    } else if (!strcmp(type, "Strip")) {
        json_t *st = json_object_get(o, "start"), *sp = json_object_get(o, "stop");
        d->kind = ZL_DEC_STRIP;
        s = jstr(o, "content", &n);
        if (utf8_cp(s, n, &d->cp) < 0)
            return BAD("%s: Strip decoder without content", name);
        d->start = json_is_integer(st) ? (int)json_integer_value(st) : 0;
        d->stop = json_is_integer(sp) ? (int)json_integer_value(sp) : 0;
        if (d->start < 0 || d->stop < 0)
            return BAD("%s: Strip decoder with negative counts", name);
    } else if (!strcmp(type, "Metaspace")) {
        const char *scheme = jstr(o, "prepend_scheme", NULL);
        d->kind = ZL_DEC_METASPACE;
        s = jstr(o, "replacement", &n);
        if (utf8_cp(s, n, &d->cp) < 0)
            return BAD("%s: Metaspace decoder without replacement", name);
        d->prepend = jbool(o, "add_prefix_space", 1);
        if (scheme)
            d->prepend = strcmp(scheme, "never") != 0;
    } else {
        t->n_dec--;
        return zl_error(ZL_EUNSUPPORTED, "%s: decoder %s is not supported", name, type);
    }
    return 0;
}

static int set_ids(struct zl_tokenizer *t, int32_t **dst, size_t *n, json_t *ids)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        int32_t *p = realloc(*dst, (*n + 1) * sizeof(*p));
        if (!p)
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        *dst = p;
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= t->n_vocab)
            return BAD("post_processor: special token id out of range");
        p[(*n)++] = (int32_t)json_integer_value(v);
    }
    return 0;
}

/* TemplateProcessing "single": special tokens around $A (or $0).  Roberta
 * and Bert processors are the same shape with cls/sep. */
static int parse_post(struct zl_tokenizer *t, json_t *o, const char *type, const char *name)
{
    if (!strcmp(type, "ByteLevel"))
        return 0; /* offsets only */
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
        json_t *c1 = json_array_get(cls, 1), *s1 = json_array_get(sep, 1);
        if (!json_is_integer(c1) || !json_is_integer(s1))
            return BAD("%s: %s without cls/sep", name, type);
        json_t *ca = json_pack("[O]", c1), *sa = json_pack("[O]", s1);
        int rc = set_ids(t, &t->post_pre, &t->n_post_pre, ca);
        if (rc == 0)
            rc = set_ids(t, &t->post_post, &t->n_post_post, sa);
        json_decref(ca), json_decref(sa);
        return rc;
    }
    if (strcmp(type, "TemplateProcessing"))
        return zl_error(ZL_EUNSUPPORTED, "%s: post_processor %s is not supported", name, type);
    json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
    json_t *piece;
    size_t i;
    int seen_seq = 0;
    free(t->post_pre), free(t->post_post);
    t->post_pre = t->post_post = NULL;
    t->n_post_pre = t->n_post_post = 0;
    json_array_foreach(single, i, piece) {
        json_t *sp = json_object_get(piece, "SpecialToken");
        if (json_object_get(piece, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const char *id = jstr(sp, "id", NULL);
        json_t *ids = json_object_get(json_object_get(specials, id ? id : ""), "ids");
        if (!id || !json_is_array(ids))
            return BAD("%s: TemplateProcessing names unknown special token", name);
        int rc = seen_seq ? set_ids(t, &t->post_post, &t->n_post_post, ids)
                          : set_ids(t, &t->post_pre, &t->n_post_pre, ids);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_added(struct zl_tokenizer *t, json_t *arr, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) {
        json_t *id = json_object_get(o, "id");
        struct zl_tok_added a = {0};
        const char *c = jstr(o, "content", &a.len);
        if (!c || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= ZL_TOK_MAX_IDS)
            return BAD("%s: added_tokens[%zu] needs content and an id in 0..%d", name, i,
                       ZL_TOK_MAX_IDS - 1);
        a.id = (int32_t)json_integer_value(id);
        a.content = (char *)c;
        a.special = (uint8_t)jbool(o, "special", 0);
        a.normalized = (uint8_t)jbool(o, "normalized", !a.special);
        a.lstrip = (uint8_t)jbool(o, "lstrip", 0);
        a.rstrip = (uint8_t)jbool(o, "rstrip", 0);
        a.single_word = (uint8_t)jbool(o, "single_word", 0);
        if (zl_tok_add_added(t, &a) < 0)
            return ZL_ENOMEM;
    }
    return 0;
}

static int add_merge_str(struct zl_tokenizer *t, const char *a, size_t na, const char *b, size_t nb,
                         int32_t rank, struct zl_tok_buf *tmp, const char *name)
{
    int32_t ia = zl_tok_map_get(&t->by_text, a, na), ib = zl_tok_map_get(&t->by_text, b, nb);
    tmp->len = 0;
    if (zl_tok_buf_put(tmp, a, na) < 0 || zl_tok_buf_put(tmp, b, nb) < 0)
        return ZL_ENOMEM;
    int32_t im = zl_tok_map_get(&t->by_text, tmp->p, tmp->len);
    if (ia < 0 || ib < 0 || im < 0)
        return BAD("%s: merge %d (\"%.*s\" \"%.*s\") uses a token not in the vocabulary", name,
                   (int)rank, (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), b);
    return zl_tok_add_merge(t, ia, ib, rank, im);
}

static int parse_model(struct zl_tokenizer *t, json_t *m, const char *name)
{
    const char *type = jstr(m, "type", NULL);
    json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (type && strcmp(type, "BPE"))
        return zl_error(ZL_EUNSUPPORTED, "%s: model %s is not supported (BPE only)", name, type);
    if (!json_is_object(vocab))
        return BAD("%s: model.vocab is not an object", name);
    const char *p1 = jstr(m, "continuing_subword_prefix", NULL), *p2 = jstr(m, "end_of_word_suffix", NULL);
    if ((p1 && *p1) || (p2 && *p2))
        return zl_error(ZL_EUNSUPPORTED, "%s: BPE subword prefix/suffix is not supported", name);
    const char *key;
    json_t *v;
    if (zl_tok_reserve(t, json_object_size(vocab), json_array_size(merges)) < 0)
        return ZL_ENOMEM;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= ZL_TOK_MAX_IDS)
            return BAD("%s: vocab entry \"%.40s\" needs an id in 0..%d", name, key,
                       ZL_TOK_MAX_IDS - 1);
        /* jansson keys may hold NUL (\u0000): take the length from the key. */
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
        if (zl_tok_set_token(t, (int32_t)id, key, klen) < 0)
            return ZL_ENOMEM;
        t->attr[id] |= ZL_TOKA_MODEL;
    }
    t->ignore_merges = jbool(m, "ignore_merges", 0);
    t->byte_fallback = jbool(m, "byte_fallback", 0);
    t->fuse_unk = jbool(m, "fuse_unk", 0);
    size_t n;
    const char *unk = jstr(m, "unk_token", &n);
    if (unk)
        t->unk_id = zl_tok_map_get(&t->by_text, unk, n);
    if (!merges || json_is_null(merges))
        return 0;
    if (!json_is_array(merges))
        return BAD("%s: model.merges is not an array", name);
    struct zl_tok_buf tmp = {0};
    int rc = 0;
    size_t i;
    json_array_foreach(merges, i, v) {
        if (i >= INT32_MAX) {
            rc = BAD("%s: too many merges", name);
            break;
        }
        if (json_is_string(v)) {
            const char *s = json_string_value(v), *sp = memchr(s, ' ', json_string_length(v));
            size_t len = json_string_length(v);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s))) {
                rc = BAD("%s: merge %zu is not \"a b\"", name, i);
                break;
            }
            rc = add_merge_str(t, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp + 1 - s),
                               (int32_t)i, &tmp, name);
        } else if (json_is_array(v) && json_array_size(v) == 2 &&
                   json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
            json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
            rc = add_merge_str(t, json_string_value(a), json_string_length(a), json_string_value(b),
                               json_string_length(b), (int32_t)i, &tmp, name);
        } else {
            rc = BAD("%s: merge %zu is neither \"a b\" nor [a, b]", name, i);
        }
        if (rc < 0)
            break;
    }
    free(tmp.p);
    return rc;
}

int zl_tok_load_json_into(struct zl_tokenizer *t, const char *json, size_t len, const char *name)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &err);
    if (!root)
        return BAD("%s:%d:%d: %s", name, err.line, err.column, err.text);
    int rc;
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "model")))
        rc = BAD("%s: not a tokenizer.json (no model object)", name);
    else if ((rc = parse_model(t, json_object_get(root, "model"), name)) < 0)
        ;
    else if ((rc = each_step(t, json_object_get(root, "normalizer"), "normalizers", "normalizer",
                             name, 0, parse_norm)) < 0)
        ;
    else if ((rc = each_step(t, json_object_get(root, "pre_tokenizer"), "pretokenizers",
                             "pre_tokenizer", name, 0, parse_pretok)) < 0)
        ;
    else if ((rc = parse_added(t, json_object_get(root, "added_tokens"), name)) < 0)
        ;
    else if ((rc = each_step(t, json_object_get(root, "post_processor"), "processors",
                             "post_processor", name, 0, parse_post)) < 0)
        ;
    else if ((rc = each_step(t, json_object_get(root, "decoder"), "decoders", "decoder", name, 0,
                             parse_dec)) < 0)
        ;
    else if (!t->dec && !t->n_dec) {
        /* No decoder: HF joins tokens with spaces. */
        struct zl_tok_dec *d = zl_tok_push_step((void **)&t->dec, &t->n_dec, sizeof(*d));
        rc = d ? (d->kind = ZL_DEC_JOIN_SPACE, 0) : ZL_ENOMEM;
    }
    json_decref(root);
    if (rc < 0)
        return rc;
    if (t->unk_id >= t->n_vocab)
        t->unk_id = -1;
    return zl_tok_finalize(t);
}

/* "bos_token": "<s>" or {"content": "<s>", ...}. */
static const char *token_name(struct zl_tokenizer *t, json_t *root, const char *key, int32_t *id)
{
    json_t *v = json_object_get(root, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return NULL;
    *id = zl_tok_map_get(&t->by_text, json_string_value(v), json_string_length(v));
    return zl_tok_arena_strdup(&t->arena, json_string_value(v), json_string_length(v));
}

int zl_tok_load_config_into(struct zl_tokenizer *t, const char *json, size_t len, const char *name)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_DECODE_INT_AS_REAL, &err); /* model_max_length: 1e30 */
    if (!root)
        return BAD("%s:%d:%d: %s", name, err.line, err.column, err.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return BAD("%s: not a JSON object", name);
    }
    t->bos_token = token_name(t, root, "bos_token", &t->bos_id);
    t->eos_token = token_name(t, root, "eos_token", &t->eos_id);
    t->add_bos = jbool(root, "add_bos_token", t->n_post_pre > 0);
    /* transformers' Llama/CodeLlama/Gemma fast tokenizers replace the
     * post-processor with BOS/EOS per add_bos_token (default true) and
     * add_eos_token (default false): DeepSeek V3 gets its BOS that way. */
    const char *cls = jstr(root, "tokenizer_class", NULL);
    static const char *const rebuilt[] = {"LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer"};
    int rebuild = 0;
    for (size_t i = 0; cls && i < sizeof(rebuilt) / sizeof(rebuilt[0]); i++) {
        size_t n = strlen(rebuilt[i]);
        rebuild |= !strncmp(cls, rebuilt[i], n) && (!cls[n] || !strcmp(cls + n, "Fast"));
    }
    if (rebuild) {
        int bos = jbool(root, "add_bos_token", 1), eos = jbool(root, "add_eos_token", 0);
        t->add_bos = bos;
        t->n_post_pre = t->n_post_post = 0;
        if ((bos && t->bos_id < 0) || (eos && t->eos_id < 0)) {
            json_decref(root);
            return BAD("%s: add_bos_token/add_eos_token without a known token", name);
        }
        int32_t *pre = realloc(t->post_pre, sizeof(int32_t)), *post = realloc(t->post_post, sizeof(int32_t));
        if (pre)
            t->post_pre = pre;
        if (post)
            t->post_post = post;
        if (!pre || !post) {
            json_decref(root);
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        }
        if (bos)
            t->post_pre[t->n_post_pre++] = t->bos_id;
        if (eos)
            t->post_post[t->n_post_post++] = t->eos_id;
    }
    json_t *ct = json_object_get(root, "chat_template");
    if (json_is_array(ct)) { /* [{"name": ..., "template": ...}]: take "default" */
        size_t i;
        json_t *e, *pick = json_object_get(json_array_get(ct, 0), "template");
        json_array_foreach(ct, i, e) {
            const char *nm = jstr(e, "name", NULL);
            if (nm && !strcmp(nm, "default"))
                pick = json_object_get(e, "template");
        }
        ct = pick;
    }
    if (json_is_string(ct))
        t->chat_template =
            zl_tok_arena_strdup(&t->arena, json_string_value(ct), json_string_length(ct));
    json_decref(root);
    return 0;
}
