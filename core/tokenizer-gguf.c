/* GGUF tokenizer.ggml.* metadata -> struct zl_tokenizer, built as the HF
 * converters (transformers' GGUF integration) build the equivalent
 * tokenizer.json: "gpt2" is byte-level BPE with the pre-tokenizer named by
 * tokenizer.ggml.pre, "llama" is SentencePiece-style BPE with byte
 * fallback whose merges come from the scores when the file has none. */
#include "tokenizer-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/gguf.h>
#include <zlight/log.h>

enum { GGUF_TT_NORMAL = 1, GGUF_TT_UNKNOWN = 2, GGUF_TT_CONTROL = 3, GGUF_TT_USER = 4 };

static const char *const llama3_re =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const qwen2_re =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const dsv3_re[] = {
    "\\p{N}{1,3}", "[\\x{4e00}-\\x{9fa5}\\x{3040}-\\x{309f}\\x{30a0}-\\x{30ff}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};

static int add_split(struct zl_tokenizer *t, const char *re)
{
    struct zl_tok_pretok *p = zl_tok_push_step((void **)&t->pretok, &t->n_pretok, sizeof(*p));
    if (!p)
        return ZL_ENOMEM;
    p->kind = ZL_PT_SPLIT;
    p->behavior = ZL_SPLIT_ISOLATED;
    return (p->re = zl_tok_regex(re, strlen(re), 0)) ? 0 : ZL_EINVAL;
}

static int add_dec(struct zl_tokenizer *t, enum zl_dec_kind k, const char *pat, const char *content)
{
    struct zl_tok_dec *d = zl_tok_push_step((void **)&t->dec, &t->n_dec, sizeof(*d));
    if (!d)
        return ZL_ENOMEM;
    d->kind = k;
    if (pat) {
        d->pat = zl_tok_arena_strdup(&t->arena, pat, strlen(pat));
        d->pat_len = strlen(pat);
        d->content = zl_tok_arena_strdup(&t->arena, content, strlen(content));
        d->content_len = strlen(content);
    }
    if (k == ZL_DEC_STRIP)
        d->cp = ' ', d->start = 1;
    return 0;
}

/* Byte-level BPE with the pre-tokenizer llama.cpp names in tokenizer.ggml.pre. */
static int setup_gpt2(struct zl_tokenizer *t, const char *pre)
{
    int rc = 0;
    struct zl_tok_pretok *bl;
    if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-bpe") || !strcmp(pre, "llama-v3") ||
        !strcmp(pre, "dbrx") || !strcmp(pre, "smaug-bpe")) {
        rc = add_split(t, llama3_re);
    } else if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen")) {
        struct zl_tok_norm *n = zl_tok_push_step((void **)&t->norm, &t->n_norm, sizeof(*n));
        if (!n)
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        n->kind = ZL_NORM_NFC;
        rc = add_split(t, qwen2_re);
    } else if (!strcmp(pre, "deepseek-v3")) {
        for (int i = 0; i < 3 && rc == 0; i++)
            rc = add_split(t, dsv3_re[i]);
    } else if (strcmp(pre, "gpt-2") && strcmp(pre, "gpt2") && strcmp(pre, "smollm") &&
               strcmp(pre, "default") && strcmp(pre, "starcoder") && strcmp(pre, "refact")) {
        ZL_WARN("tokenizer", "GGUF pre-tokenizer \"%s\" is not known; using GPT-2's", pre);
    }
    if (rc < 0)
        return rc;
    bl = zl_tok_push_step((void **)&t->pretok, &t->n_pretok, sizeof(*bl));
    if (!bl)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    bl->kind = ZL_PT_BYTELEVEL;
    if (t->n_pretok == 1 &&
        !(bl->re = zl_tok_regex(zl_tok_gpt2_regex, strlen(zl_tok_gpt2_regex), 0)))
        return ZL_EINVAL;
    t->byte_level = 1;
    return add_dec(t, ZL_DEC_BYTELEVEL, NULL, NULL);
}

struct cand { int32_t l, r, merged; float score, sl, sr; size_t order; };

static int cmp_local(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->sl != y->sl)
        return x->sl < y->sl ? 1 : -1;
    if (x->sr != y->sr)
        return x->sr < y->sr ? 1 : -1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_global(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->order < y->order ? -1 : x->order > y->order; /* Python's sort is stable */
}

/* transformers' GGUFTokenizerSkeleton: every split of a token into two
 * tokens is a merge, ranked by the merged token's score. */
static int merges_from_scores(struct zl_tokenizer *t, const float *scores, size_t n_tok)
{
    struct cand *c = NULL;
    size_t n = 0, cap = 0;
    for (size_t id = 0; id < n_tok; id++) {
        const char *s = t->text[id];
        size_t len = t->text_len[id], start = n;
        for (size_t k = 1; s && k < len; k++) {
            if (((unsigned char)s[k] & 0xC0) == 0x80)
                continue; /* Python slices by character */
            int32_t l = zl_tok_map_get(&t->by_text, s, k), r = zl_tok_map_get(&t->by_text, s + k, len - k);
            if (l < 0 || r < 0)
                continue;
            if (n == cap) {
                struct cand *q = realloc(c, (cap = cap ? cap * 2 : 4096) * sizeof(*q));
                if (!q) {
                    free(c);
                    return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
                }
                c = q;
            }
            c[n] = (struct cand){l, r, (int32_t)id, scores[id], scores[l], scores[r], n};
            n++;
        }
        if (n - start > 1)
            qsort(c + start, n - start, sizeof(*c), cmp_local);
        for (size_t k = start; k < n; k++)
            c[k].order = k;
    }
    if (n)
        qsort(c, n, sizeof(*c), cmp_global);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = zl_tok_add_merge(t, c[i].l, c[i].r, (int32_t)i, c[i].merged);
    free(c);
    return rc;
}

static int setup_llama(struct zl_tokenizer *t, const struct zl_gguf *g, size_t n_tok, int add_space)
{
    int64_t ks = zl_gguf_find_key(g, "tokenizer.ggml.scores");
    const float *scores = ks >= 0 && zl_gguf_get_arr_type(g, ks) == ZL_GGUF_TYPE_FLOAT32 &&
                                  zl_gguf_get_arr_n(g, ks) == n_tok
                              ? zl_gguf_get_arr_data(g, ks)
                              : NULL;
    if (zl_gguf_find_key(g, "tokenizer.ggml.merges") < 0) {
        if (!scores)
            return zl_error(ZL_EINVAL, "%s: llama tokenizer without merges or scores", zl_gguf_path(g));
        int rc = merges_from_scores(t, scores, n_tok);
        if (rc < 0)
            return rc;
    }
    if (add_space) {
        struct zl_tok_norm *n = zl_tok_push_step((void **)&t->norm, &t->n_norm, sizeof(*n));
        if (!n)
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        n->kind = ZL_NORM_PREPEND;
        n->str = zl_tok_arena_strdup(&t->arena, "\xE2\x96\x81", 3);
        n->str_len = 3;
    }
    struct zl_tok_norm *r = zl_tok_push_step((void **)&t->norm, &t->n_norm, sizeof(*r));
    if (!r)
        return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    r->kind = ZL_NORM_REPLACE;
    r->str = zl_tok_arena_strdup(&t->arena, "\xE2\x96\x81", 3);
    r->str_len = 3;
    if (!(r->re = zl_tok_regex(" ", 1, 1)))
        return ZL_EINVAL;
    t->byte_fallback = 1;
    t->fuse_unk = 1;
    int rc = add_dec(t, ZL_DEC_REPLACE, "\xE2\x96\x81", " ");
    if (rc == 0)
        rc = add_dec(t, ZL_DEC_BYTEFALLBACK, NULL, NULL);
    if (rc == 0)
        rc = add_dec(t, ZL_DEC_FUSE, NULL, NULL);
    if (rc == 0)
        rc = add_dec(t, ZL_DEC_STRIP, NULL, NULL);
    return rc;
}

static int64_t get_int(const struct zl_gguf *g, const char *key, int64_t dflt)
{
    int64_t k = zl_gguf_find_key(g, key);
    return k >= 0 ? zl_gguf_get_i64(g, k) : dflt;
}

static int load(struct zl_tokenizer *t, const struct zl_gguf *g)
{
    const char *path = zl_gguf_path(g);
    int64_t km = zl_gguf_find_key(g, "tokenizer.ggml.model");
    int64_t kt = zl_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (km < 0 || kt < 0 || zl_gguf_get_arr_type(g, kt) != ZL_GGUF_TYPE_STRING)
        return zl_error(ZL_EINVAL, "%s: no tokenizer.ggml.model / tokens", path);
    const char *model = zl_gguf_get_str(g, km, NULL);
    int gpt2 = model && !strcmp(model, "gpt2");
    if (!model || (!gpt2 && strcmp(model, "llama")))
        return zl_error(ZL_EUNSUPPORTED, "%s: tokenizer model \"%s\" is not supported", path,
                        model ? model : "?");
    size_t n_tok = zl_gguf_get_arr_n(g, kt);
    if (n_tok == 0 || n_tok >= (1u << 28))
        return zl_error(ZL_EINVAL, "%s: %zu tokens", path, n_tok);
    int64_t kmg = zl_gguf_find_key(g, "tokenizer.ggml.merges");
    if (zl_tok_reserve(t, n_tok, kmg >= 0 ? zl_gguf_get_arr_n(g, kmg) : n_tok * 4) < 0)
        return ZL_ENOMEM;
    for (size_t i = 0; i < n_tok; i++) {
        size_t len;
        const char *s = zl_gguf_get_arr_str(g, kt, i, &len);
        if (!s || zl_tok_set_token(t, (int32_t)i, s, len) < 0)
            return s ? ZL_ENOMEM : zl_error(ZL_EINVAL, "%s: token %zu unreadable", path, i);
        t->attr[i] |= ZL_TOKA_MODEL;
    }
    if (kmg >= 0) {
        struct zl_tok_buf tmp = {0};
        size_t nm = zl_gguf_get_arr_n(g, kmg);
        for (size_t i = 0; i < nm && i < INT32_MAX; i++) {
            size_t len;
            const char *s = zl_gguf_get_arr_str(g, kmg, i, &len), *sp = s ? memchr(s, ' ', len) : NULL;
            int32_t a = -1, b = -1, m = -1;
            if (sp) {
                a = zl_tok_map_get(&t->by_text, s, (size_t)(sp - s));
                b = zl_tok_map_get(&t->by_text, sp + 1, len - (size_t)(sp + 1 - s));
                tmp.len = 0;
                if (zl_tok_buf_put(&tmp, s, (size_t)(sp - s)) < 0 ||
                    zl_tok_buf_put(&tmp, sp + 1, len - (size_t)(sp + 1 - s)) < 0) {
                    free(tmp.p);
                    return ZL_ENOMEM;
                }
                m = zl_tok_map_get(&t->by_text, tmp.p, tmp.len);
            }
            if (a < 0 || b < 0 || m < 0) {
                free(tmp.p);
                return zl_error(ZL_EINVAL, "%s: merge %zu is not two known tokens", path, i);
            }
            if (zl_tok_add_merge(t, a, b, (int32_t)i, m) < 0) {
                free(tmp.p);
                return ZL_ENOMEM;
            }
        }
        free(tmp.p);
    }
    int64_t kp = zl_gguf_find_key(g, "tokenizer.ggml.pre");
    const char *pre = kp >= 0 ? zl_gguf_get_str(g, kp, NULL) : NULL;
    int64_t kas = zl_gguf_find_key(g, "tokenizer.ggml.add_space_prefix");
    int rc = gpt2 ? setup_gpt2(t, pre ? pre : "default")
                  : setup_llama(t, g, n_tok, kas >= 0 ? (int)zl_gguf_get_i64(g, kas) : 1);
    if (rc < 0)
        return rc;
    /* Token types: control and unknown tokens are special added tokens
     * (normalized false; transformers adds <unk> as a special token too),
     * user-defined ones plain added tokens. */
    int64_t ktt = zl_gguf_find_key(g, "tokenizer.ggml.token_type");
    const int32_t *tt = ktt >= 0 && zl_gguf_get_arr_type(g, ktt) == ZL_GGUF_TYPE_INT32 &&
                                zl_gguf_get_arr_n(g, ktt) == n_tok
                            ? zl_gguf_get_arr_data(g, ktt)
                            : NULL;
    for (size_t i = 0; tt && i < n_tok; i++) {
        if (tt[i] != GGUF_TT_CONTROL && tt[i] != GGUF_TT_USER && tt[i] != GGUF_TT_UNKNOWN)
            continue;
        struct zl_tok_added a = {.id = (int32_t)i, .content = (char *)t->text[i], .len = t->text_len[i],
                                 .special = tt[i] != GGUF_TT_USER};
        if (zl_tok_add_added(t, &a) < 0)
            return ZL_ENOMEM;
    }
    t->unk_id = (int32_t)get_int(g, "tokenizer.ggml.unknown_token_id", -1);
    t->bos_id = (int32_t)get_int(g, "tokenizer.ggml.bos_token_id", -1);
    t->eos_id = (int32_t)get_int(g, "tokenizer.ggml.eos_token_id", -1);
    for (int32_t *id = &t->unk_id; id; id = id == &t->unk_id ? &t->bos_id : id == &t->bos_id ? &t->eos_id : NULL)
        if (*id >= (int32_t)n_tok || *id < -1)
            *id = -1;
    if (!gpt2 && t->unk_id < 0)
        t->unk_id = zl_tok_map_get(&t->by_text, "<unk>", 5);
    t->add_bos = (int)get_int(g, "tokenizer.ggml.add_bos_token", !gpt2);
    int add_eos = (int)get_int(g, "tokenizer.ggml.add_eos_token", 0);
    if (t->add_bos && t->bos_id >= 0) {
        if (!(t->post_pre = malloc(sizeof(int32_t))))
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        t->post_pre[0] = t->bos_id;
        t->n_post_pre = 1;
    }
    if (add_eos && t->eos_id >= 0) {
        if (!(t->post_post = malloc(sizeof(int32_t))))
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
        t->post_post[0] = t->eos_id;
        t->n_post_post = 1;
    }
    if (t->bos_id >= 0)
        t->bos_token = t->text[t->bos_id];
    if (t->eos_id >= 0)
        t->eos_token = t->text[t->eos_id];
    int64_t kc = zl_gguf_find_key(g, "tokenizer.chat_template");
    if (kc >= 0 && zl_gguf_kv_type(g, kc) == ZL_GGUF_TYPE_STRING) {
        size_t len;
        const char *s = zl_gguf_get_str(g, kc, &len);
        if (s && !(t->chat_template = zl_tok_arena_strdup(&t->arena, s, len)))
            return zl_error(ZL_ENOMEM, "tokenizer: out of memory");
    }
    return zl_tok_finalize(t);
}

int zl_tok_load_gguf_into(struct zl_tokenizer *t, const char *path)
{
    struct zl_gguf *g;
    int rc = zl_gguf_open(path, &g);
    if (rc < 0)
        return rc;
    rc = load(t, g);
    zl_gguf_close(g);
    return rc;
}
