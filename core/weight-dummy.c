/* `weights: dummy`: seeded random weights from config.json alone, for
 * benchmarks (as vLLM's --load-format dummy).  Values depend only on the
 * seed, the tensor name and the element index, so any slice of a tensor
 * (tensor-parallel shards) is the same as in the whole. */
#include "config.h"

#include <string.h>

#include "weight-loader-impl.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int zl_wdummy_has(const struct zl_hf_config *c, const char *name)
{
    int qwen2 = !strcmp(c->model_type, "qwen2");
    if (!strcmp(name, "lm_head.weight"))
        return !c->tie_word_embeddings;
    if (ends_with(name, "o_proj.bias"))
        return c->attention_bias && !qwen2;
    if (ends_with(name, "q_proj.bias") || ends_with(name, "k_proj.bias") ||
        ends_with(name, "v_proj.bias"))
        return c->attention_bias || qwen2;
    if (strstr(name, ".mlp.") && ends_with(name, ".bias"))
        return c->mlp_bias;
    if (!strcmp(name, "rope_freqs.weight"))
        return 0;
    return 1;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void zl_wdummy_fill(uint64_t seed, const char *name, int64_t first, int64_t n, float *dst)
{
    if (ends_with(name, "norm.weight")) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = 1.0f;
        return;
    }
    uint64_t h = 1469598103934665603ull ^ seed; /* FNV-1a of the name, seeded */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    /* uniform in [-0.05, 0.05): the scale of initialised weights */
    for (int64_t i = 0; i < n; i++)
        dst[i] = (float)((double)(splitmix64(h + (uint64_t)(first + i)) >> 11) * 0x1.0p-53 - 0.5) * 0.1f;
}

int64_t zl_wdummy_param_count(const struct zl_hf_config *c, int64_t *n_vectors)
{
    int64_t e = c->hidden_size, f = c->intermediate_size, l = c->num_hidden_layers;
    int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
    int64_t per_layer = e * qd * 2 + e * kvd * 2 + 3 * e * f;
    *n_vectors = 2 * l + 1 + 6 * l; /* norms, and at most six biases per layer */
    return c->vocab_size * e * (c->tie_word_embeddings ? 1 : 2) + l * per_layer;
}
