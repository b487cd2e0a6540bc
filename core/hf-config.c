/* config.json / generation_config.json / GGUF metadata -> struct zl_hf_config.
 * Table-driven: each key names its field and kind, so a wrong type gets the
 * same message ("FILE: key 'K' must be an integer, got string") everywhere. */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <zlight/gguf.h>
#include <zlight/hf_config.h>
#include <errno.h>
#include <stdlib.h>

enum kind { K_INT, K_DBL, K_BOOL, K_STR };

struct field {
    const char *key;
    enum kind kind;
    size_t off;
    size_t cap;     /* K_STR: size of the char array */
};

#define FI(k, f) {k, K_INT, offsetof(struct zl_hf_config, f), 0}
#define FD(k, f) {k, K_DBL, offsetof(struct zl_hf_config, f), 0}
#define FB(k, f) {k, K_BOOL, offsetof(struct zl_hf_config, f), 0}
#define FS(k, f) {k, K_STR, offsetof(struct zl_hf_config, f), sizeof(((struct zl_hf_config *)0)->f)}

static const struct field config_fields[] = {
    FS("model_type", model_type), FI("hidden_size", hidden_size),
    FI("intermediate_size", intermediate_size), FI("num_hidden_layers", num_hidden_layers),
    FI("num_attention_heads", num_attention_heads), FI("num_key_value_heads", num_key_value_heads),
    FI("head_dim", head_dim), FI("vocab_size", vocab_size),
    FI("max_position_embeddings", max_position_embeddings), FD("rms_norm_eps", rms_norm_eps),
    FD("rope_theta", rope_theta), FB("tie_word_embeddings", tie_word_embeddings),
    FB("attention_bias", attention_bias), FB("mlp_bias", mlp_bias), FS("hidden_act", hidden_act),
    FS("torch_dtype", torch_dtype), FI("sliding_window", sliding_window),
    FI("num_local_experts", num_local_experts), FI("num_experts_per_tok", num_experts_per_tok),
    FI("n_routed_experts", n_routed_experts), FI("n_shared_experts", n_shared_experts),
    FI("moe_intermediate_size", moe_intermediate_size),
    FI("first_k_dense_replace", first_k_dense_replace), FI("moe_layer_freq", moe_layer_freq),
    FI("n_group", n_group), FI("topk_group", topk_group),
    FD("routed_scaling_factor", routed_scaling_factor), FB("norm_topk_prob", norm_topk_prob),
    FS("topk_method", topk_method), FS("scoring_func", scoring_func),
    FI("kv_lora_rank", kv_lora_rank), FI("q_lora_rank", q_lora_rank),
    FI("qk_nope_head_dim", qk_nope_head_dim), FI("qk_rope_head_dim", qk_rope_head_dim),
    FI("v_head_dim", v_head_dim),
};

#define RI(k, f) {k, K_INT, offsetof(struct zl_rope_scaling, f), 0}
#define RD(k, f) {k, K_DBL, offsetof(struct zl_rope_scaling, f), 0}
static const struct field rope_fields[] = {
    RD("factor", factor), RD("low_freq_factor", low_freq_factor),
    RD("high_freq_factor", high_freq_factor),
    RI("original_max_position_embeddings", original_max_position_embeddings),
    RD("beta_fast", beta_fast), RD("beta_slow", beta_slow), RD("mscale", mscale),
    RD("mscale_all_dim", mscale_all_dim), RD("attention_factor", attention_factor),
};

#define GI(k, f) {k, K_INT, offsetof(struct zl_hf_generation_config, f), 0}
#define GD(k, f) {k, K_DBL, offsetof(struct zl_hf_generation_config, f), 0}
static const struct field gen_fields[] = {
    GI("bos_token_id", bos_token_id), GI("pad_token_id", pad_token_id),
    GD("temperature", temperature), GD("top_p", top_p), GI("top_k", top_k),
    GD("repetition_penalty", repetition_penalty), GI("max_new_tokens", max_new_tokens),
    {"do_sample", K_BOOL, offsetof(struct zl_hf_generation_config, do_sample), 0},
};

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static int wrong(const char *file, const char *key, const char *want, const json_t *v)
{
    return zl_error(ZL_EINVAL, "%s: key '%s' must be %s, got %s", file, key, want, json_kind(v));
}

/* Stores v (not null) into field f of base. */
static int set_json(const char *file, const struct field *f, const json_t *v, void *base)
{
    char *dst = (char *)base + f->off;
    switch (f->kind) {
    case K_INT: {
        double r = json_is_real(v) ? json_real_value(v) : 0.5;
        if (json_is_integer(v))
            *(int64_t *)dst = json_integer_value(v);
        else if (r == floor(r) && fabs(r) < 9e15)   /* 4096.0 is fine, 0.5 is not */
            *(int64_t *)dst = (int64_t)r;
        else
            return wrong(file, f->key, "an integer", v);
        return ZL_OK;
    }
    case K_DBL:
        if (!json_is_number(v))
            return wrong(file, f->key, "a number", v);
        *(double *)dst = json_number_value(v);
        return ZL_OK;
    case K_BOOL:
        if (!json_is_boolean(v))
            return wrong(file, f->key, "a boolean", v);
        *(int32_t *)dst = json_is_true(v);
        return ZL_OK;
    case K_STR:
        if (!json_is_string(v))
            return wrong(file, f->key, "a string", v);
        if (json_string_length(v) >= f->cap)
            return zl_error(ZL_EINVAL, "%s: key '%s': value longer than %zu bytes", file, f->key,
                            f->cap - 1);
        memcpy(dst, json_string_value(v), json_string_length(v) + 1);
        return ZL_OK;
    }
    return ZL_OK;
}

static int set_fields(const char *file, const struct field *fs, size_t n, const json_t *obj,
                      void *base)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, fs[i].key);
        int rc = v && !json_is_null(v) ? set_json(file, &fs[i], v, base) : ZL_OK;
        if (rc < 0)
            return rc;
    }
    return ZL_OK;
}

/* An id or a list of ids (eos_token_id: 2 or [128001, 128008, 128009]). */
static int set_ids(const char *file, const char *key, const json_t *obj, int64_t *ids, int32_t *n)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return ZL_OK;
    if (json_is_integer(v)) {
        ids[0] = json_integer_value(v);
        *n = 1;
        return ZL_OK;
    }
    if (!json_is_array(v))
        return wrong(file, key, "an integer or a list of integers", v);
    if (json_array_size(v) > ZL_HF_MAX_TOKEN_IDS)
        return zl_error(ZL_EINVAL, "%s: key '%s': more than %d ids", file, key, ZL_HF_MAX_TOKEN_IDS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        if (!json_is_integer(json_array_get(v, i)))
            return wrong(file, key, "an integer or a list of integers", json_array_get(v, i));
        ids[i] = json_integer_value(json_array_get(v, i));
    }
    *n = (int32_t)json_array_size(v);
    return ZL_OK;
}

static enum zl_rope_scaling_type rope_type_of(const char *s)
{
    static const char *const names[] = {"default", "linear", "dynamic", "llama3", "yarn", "longrope"};
    for (int i = 0; i < 6; i++)
        if (strcmp(s, names[i]) == 0)
            return (enum zl_rope_scaling_type)i;
    return strcmp(s, "su") == 0 ? ZL_ROPE_SCALING_LONGROPE : ZL_ROPE_SCALING_OTHER;
}

ZL_API const char *zl_rope_scaling_name(enum zl_rope_scaling_type t)
{
    static const char *const names[] = {"none", "linear", "dynamic", "llama3", "yarn", "longrope", "other"};
    return (unsigned)t <= ZL_ROPE_SCALING_OTHER ? names[t] : "invalid";
}

/* transformers < 5 writes "rope_theta" and "rope_scaling"; 5.x writes one
 * "rope_parameters" object holding rope_type, rope_theta and the scaling
 * fields (per layer type for models with several: full_attention then). */
static int parse_rope_scaling(const char *file, const json_t *root, struct zl_hf_config *c)
{
    struct zl_rope_scaling *rs = &c->rope_scaling;
    const char *key = "rope_scaling";
    const json_t *o = json_object_get(root, key);
    if (!o || json_is_null(o)) {
        key = "rope_parameters";
        o = json_object_get(root, key);
        if (json_is_object(o) && json_is_object(json_object_get(o, "full_attention")))
            o = json_object_get(o, "full_attention");
        const json_t *th = json_is_object(o) ? json_object_get(o, "rope_theta") : NULL;
        if (th && !json_object_get(root, "rope_theta")) {
            if (!json_is_number(th) || !(json_number_value(th) > 0))
                return zl_error(ZL_EINVAL, "%s: key 'rope_parameters.rope_theta' must be a positive "
                                "number", file);
            c->rope_theta = json_number_value(th);
        }
    }
    if (!o || json_is_null(o))
        return ZL_OK;
    if (!json_is_object(o))
        return wrong(file, key, "an object", o);
    const char *tk = json_object_get(o, "rope_type") ? "rope_type" : "type";
    const json_t *t = json_object_get(o, tk);
    if (!t && !strcmp(key, "rope_parameters"))
        return ZL_OK;   /* only rope_theta */
    if (!json_is_string(t))
        return zl_error(ZL_EINVAL, "%s: key '%s.%s' must be a string", file, key, tk);
    snprintf(rs->name, sizeof rs->name, "%s", json_string_value(t));
    rs->type = rope_type_of(rs->name);
    int rc = set_fields(file, rope_fields, sizeof rope_fields / sizeof rope_fields[0], o, rs);
    if (rc == ZL_OK && rs->type != ZL_ROPE_SCALING_NONE && rs->type != ZL_ROPE_SCALING_LONGROPE &&
        !(rs->factor > 0))
        rc = zl_error(ZL_EINVAL, "%s: key '%s.factor' must be a positive number for %s scaling",
                      file, key, rs->name);
    return rc;
}

static void config_defaults(struct zl_hf_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_position_embeddings = 2048;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    c->moe_layer_freq = 1;
    c->routed_scaling_factor = 1.0;
    strcpy(c->hidden_act, "silu");
}

/* Defaults that depend on other fields, and sanity checks. */
static int config_finish(const char *file, struct zl_hf_config *c, int need_vocab)
{
    static const char *const req[] = {"hidden_size", "num_hidden_layers", "num_attention_heads",
                                      "vocab_size"};
    int64_t vals[] = {c->hidden_size, c->num_hidden_layers, c->num_attention_heads, c->vocab_size};
    for (int i = 0; i < 4 - !need_vocab; i++)
        if (vals[i] <= 0)
            return zl_error(ZL_EINVAL, "%s: key '%s' is missing or not positive", file, req[i]);
    if (c->num_key_value_heads == 0)
        c->num_key_value_heads = c->num_attention_heads;
    if (c->num_key_value_heads < 0 || c->num_attention_heads % c->num_key_value_heads)
        return zl_error(ZL_EINVAL, "%s: key 'num_key_value_heads' = %lld does not divide num_attention_heads = %lld",
                        file, (long long)c->num_key_value_heads, (long long)c->num_attention_heads);
    if (c->head_dim == 0) {
        if (c->hidden_size % c->num_attention_heads)
            return zl_error(ZL_EINVAL, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld and head_dim is absent",
                            file, (long long)c->hidden_size, (long long)c->num_attention_heads);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if (c->rope_dim == 0)
        c->rope_dim = c->head_dim;
    static const char *const nonneg[] = {"intermediate_size", "head_dim", "max_position_embeddings",
                                         "sliding_window"};
    int64_t nv[] = {c->intermediate_size, c->head_dim, c->max_position_embeddings, c->sliding_window};
    for (int i = 0; i < 4; i++)
        if (nv[i] < 0)
            return zl_error(ZL_EINVAL, "%s: key '%s' is negative", file, nonneg[i]);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return zl_error(ZL_EINVAL, "%s: rms_norm_eps and rope_theta must be positive", file);
    return ZL_OK;
}

/* Parses a JSON object; *rc < 0 (and the result may be NULL) otherwise. */
static json_t *load_object(const char *json, size_t len, const char *file, int *rc)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    *rc = ZL_OK;
    if (!root)
        *rc = zl_error(ZL_EINVAL, "%s: invalid JSON: %s (line %d)", file, err.text, err.line);
    else if (!json_is_object(root))
        *rc = zl_error(ZL_EINVAL, "%s: not a JSON object", file);
    return root;
}

ZL_API int zl_hf_config_parse(const char *json, size_t len, const char *name,
                              struct zl_hf_config *c)
{
    const char *file = name ? name : "config.json";
    config_defaults(c);
    int rc;
    json_t *root = load_object(json, len, file, &rc);
    if (rc == ZL_OK)
        rc = set_fields(file, config_fields, sizeof config_fields / sizeof config_fields[0], root, c);
    const json_t *v = json_object_get(root, "architectures");
    if (rc == ZL_OK && v && !json_is_null(v)) {
        if (!json_is_array(v) || (json_array_size(v) && !json_is_string(json_array_get(v, 0))))
            rc = wrong(file, "architectures", "a list of strings", v);
        else if (json_array_size(v))
            snprintf(c->architecture, sizeof c->architecture, "%s", json_string_value(json_array_get(v, 0)));
    }
    v = json_object_get(root, "partial_rotary_factor");
    if (rc == ZL_OK && v && !json_is_null(v) && !json_is_number(v))
        rc = wrong(file, "partial_rotary_factor", "a number", v);
    if (rc == ZL_OK)
        rc = set_ids(file, "bos_token_id", root, c->bos_token_id, &c->n_bos);
    if (rc == ZL_OK)
        rc = set_ids(file, "eos_token_id", root, c->eos_token_id, &c->n_eos);
    if (rc == ZL_OK)
        rc = parse_rope_scaling(file, root, c);
    const json_t *q = json_object_get(root, "quantization_config");
    if (rc == ZL_OK && q && !json_is_null(q)) {
        static const struct field qm = FS("quant_method", quant_method);
        const json_t *m = json_object_get(q, "quant_method");
        if (!json_is_object(q))
            rc = wrong(file, "quantization_config", "an object", q);
        else if (m && !json_is_null(m) && (rc = set_json(file, &qm, m, c)) < 0)
            rc = zl_error_wrap(rc, "quantization_config");
    }
    if (rc == ZL_OK && !json_object_get(root, "attention_bias") && strcmp(c->model_type, "qwen2") == 0)
        c->attention_bias = 1;      /* Qwen2 always has q/k/v biases, its config has no flag */
    if (rc == ZL_OK)
        rc = config_finish(file, c, 1);
    if (rc == ZL_OK && v && json_is_number(v))
        c->rope_dim = (int64_t)(c->head_dim * json_number_value(v));
    json_decref(root);
    return rc;
}

/* Reads `path` (or `path`/`base` when path is a directory) into memory. */
static int slurp(const char *path, const char *base, char **text, size_t *len, char **file)
{
    struct stat sb;
    *text = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + strlen(base) + 2;
        if (!(*file = malloc(n)))
            return zl_error(ZL_ENOMEM, "out of memory");
        snprintf(*file, n, "%s/%s", path, base);
    } else if (!(*file = strdup(path))) {
        return zl_error(ZL_ENOMEM, "out of memory");
    }
    FILE *f = fopen(*file, "rb");
    if (!f)
        return zl_error(errno == ENOENT ? ZL_ENOTFOUND : ZL_EIO, "%s: %s", *file, strerror(errno));
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *p = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!p) {
                free(buf);
                buf = NULL;
            }
            buf = p;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return zl_error(ZL_ENOMEM, "%s: out of memory or over 64 MiB", *file);
    if (bad) {
        free(buf);
        return zl_error(ZL_EIO, "%s: read error", *file);
    }
    *text = buf;
    *len = n;
    return ZL_OK;
}

typedef int (*parse_fn)(const char *json, size_t len, const char *name, void *out);

/* Reads `path` (or `path`/`base`) and hands the text to `parse`. */
static int load_json(const char *path, const char *base, parse_fn parse, void *out)
{
    char *text, *file = NULL;
    size_t len;
    int rc = slurp(path, base, &text, &len, &file);
    if (rc == ZL_OK)
        rc = parse(text, len, file, out);
    free(text);
    free(file);
    return rc;
}

static int parse_config(const char *json, size_t len, const char *name, void *out)
{
    return zl_hf_config_parse(json, len, name, out);
}

ZL_API int zl_hf_config_load(const char *path, struct zl_hf_config *out)
{
    config_defaults(out);
    return load_json(path, "config.json", parse_config, out);
}

static void gen_defaults(struct zl_hf_generation_config *g)
{
    memset(g, 0, sizeof *g);
    g->bos_token_id = g->pad_token_id = g->max_new_tokens = -1;
    g->temperature = g->top_p = g->repetition_penalty = 1.0;
    g->top_k = 50;
}

ZL_API int zl_hf_generation_config_parse(const char *json, size_t len, const char *name,
                                         struct zl_hf_generation_config *g)
{
    const char *file = name ? name : "generation_config.json";
    gen_defaults(g);
    int rc;
    json_t *root = load_object(json, len, file, &rc);
    if (rc == ZL_OK)
        rc = set_fields(file, gen_fields, sizeof gen_fields / sizeof gen_fields[0], root, g);
    if (rc == ZL_OK)
        rc = set_ids(file, "eos_token_id", root, g->eos_token_id, &g->n_eos);
    json_decref(root);
    return rc;
}

static int parse_generation(const char *json, size_t len, const char *name, void *out)
{
    return zl_hf_generation_config_parse(json, len, name, out);
}

ZL_API int zl_hf_generation_config_load(const char *path, struct zl_hf_generation_config *out)
{
    gen_defaults(out);
    return load_json(path, "generation_config.json", parse_generation, out);
}

/* ---- GGUF metadata ---- */

static const struct field gguf_fields[] = {
    FI("embedding_length", hidden_size), FI("block_count", num_hidden_layers),
    FI("feed_forward_length", intermediate_size), FI("attention.head_count", num_attention_heads),
    FI("attention.head_count_kv", num_key_value_heads), FI("attention.key_length", head_dim),
    FI("attention.value_length", v_head_dim),
    FD("attention.layer_norm_rms_epsilon", rms_norm_eps), FD("rope.freq_base", rope_theta),
    FI("context_length", max_position_embeddings), FI("rope.dimension_count", rope_dim),
    FI("vocab_size", vocab_size), FI("attention.sliding_window", sliding_window),
    FI("expert_count", num_local_experts), FI("expert_used_count", num_experts_per_tok),
    FI("expert_shared_count", n_shared_experts),
    FI("expert_feed_forward_length", moe_intermediate_size),
    FI("leading_dense_block_count", first_k_dense_replace),
    FD("expert_weights_scale", routed_scaling_factor),
    FI("attention.kv_lora_rank", kv_lora_rank), FI("attention.q_lora_rank", q_lora_rank),
    FD("rope.scaling.factor", rope_scaling.factor),
    FI("rope.scaling.original_context_length", rope_scaling.original_max_position_embeddings),
};

static int set_gguf(const struct zl_gguf *g, const char *key, const struct field *f, void *base)
{
    int64_t k = zl_gguf_find_key(g, key);
    if (k < 0)
        return ZL_OK;
    enum zl_gguf_type t = zl_gguf_kv_type(g, k);
    int is_int = t <= ZL_GGUF_TYPE_INT32 && t != ZL_GGUF_TYPE_FLOAT32;
    is_int = is_int || t == ZL_GGUF_TYPE_UINT64 || t == ZL_GGUF_TYPE_INT64;
    int is_float = t == ZL_GGUF_TYPE_FLOAT32 || t == ZL_GGUF_TYPE_FLOAT64;
    char *dst = (char *)base + f->off;
    const char *want = NULL;
    if (f->kind == K_INT && is_int)
        *(int64_t *)dst = zl_gguf_get_i64(g, k);
    else if (f->kind == K_DBL && (is_int || is_float))
        *(double *)dst = zl_gguf_get_f64(g, k);
    else if (f->kind == K_STR && t == ZL_GGUF_TYPE_STRING)
        snprintf(dst, f->cap, "%s", zl_gguf_get_str(g, k, NULL));
    else
        want = f->kind == K_INT ? "an integer" : f->kind == K_DBL ? "a number" : "a string";
    if (want)
        return zl_error(ZL_EINVAL, "%s: key '%s' must be %s, got %s", zl_gguf_path(g), key, want,
                        zl_gguf_type_name(t));
    return ZL_OK;
}

ZL_API int zl_hf_config_from_gguf(const struct zl_gguf *g, struct zl_hf_config *c)
{
    config_defaults(c);
    c->rms_norm_eps = 1e-5;     /* llama.cpp's default when the key is absent */
    const char *file = zl_gguf_path(g);
    static const struct field arch_f = FS("general.architecture", model_type);
    int rc = set_gguf(g, arch_f.key, &arch_f, c);
    if (rc < 0)
        return rc;
    if (!c->model_type[0])
        return zl_error(ZL_EINVAL, "%s: key 'general.architecture' is missing", file);
    char key[192];
    for (size_t i = 0; i < sizeof gguf_fields / sizeof gguf_fields[0] && rc == ZL_OK; i++) {
        snprintf(key, sizeof key, "%s.%s", c->model_type, gguf_fields[i].key);
        rc = set_gguf(g, key, &gguf_fields[i], c);
    }
    struct zl_rope_scaling *rs = &c->rope_scaling;
    static const struct field rope_f = FS("rope.scaling.type", rope_scaling.name);
    snprintf(key, sizeof key, "%s.%s", c->model_type, rope_f.key);
    if (rc == ZL_OK && (rc = set_gguf(g, key, &rope_f, c)) == ZL_OK && rs->name[0])
        rs->type = strcmp(rs->name, "none") == 0 ? ZL_ROPE_SCALING_NONE : rope_type_of(rs->name);
    if (rc < 0)
        return rc;
    if (!strcmp(c->model_type, "deepseek2"))
        c->n_routed_experts = c->num_local_experts;
    int64_t k = zl_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (c->vocab_size == 0 && k >= 0) {
        if (zl_gguf_get_arr_type(g, k) != ZL_GGUF_TYPE_STRING)
            return zl_error(ZL_EINVAL, "%s: key 'tokenizer.ggml.tokens' must be an array of strings",
                            file);
        c->vocab_size = (int64_t)zl_gguf_get_arr_n(g, k);
    }
    static const struct field ids[] = {FI("tokenizer.ggml.bos_token_id", bos_token_id[0]),
                                       FI("tokenizer.ggml.eos_token_id", eos_token_id[0])};
    for (int i = 0; i < 2 && rc == ZL_OK; i++)
        rc = set_gguf(g, ids[i].key, &ids[i], c);
    c->n_bos = zl_gguf_find_key(g, ids[0].key) >= 0;
    c->n_eos = zl_gguf_find_key(g, ids[1].key) >= 0;
    c->tie_word_embeddings = zl_gguf_find_tensor(g, "output.weight") < 0;
    snprintf(c->architecture, sizeof c->architecture, "%s", c->model_type);
    return rc < 0 ? rc : config_finish(file, c, 1);
}
