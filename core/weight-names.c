/* GGUF <-> Hugging Face tensor names for the llama family, and the row
 * order of llama's Q/K projections in GGUF files.
 *
 * llama.cpp's converter reorders the rows of attn_q / attn_k (weights and
 * biases) of every head from HF's rotate_half pairing (j, j + D/2) to an
 * interleaved pairing (2i, 2i + 1):  gguf[h][2i + s] = hf[h][s * D/2 + i].
 * transformers' GGUF loader (reverse_permute_weights) undoes it the same way. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weight-loader-impl.h"

static const struct {
    const char *hf, *gguf;
} global_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

static const struct {
    const char *hf, *gguf; /* without the .weight / .bias suffix */
} layer_names[] = {
    {"input_layernorm", "attn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};

int zl_wnames_to_gguf(const char *hf, char *out, size_t cap, int *qk)
{
    *qk = 0;
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(hf, global_names[i].hf))
            return snprintf(out, cap, "%s", global_names[i].gguf) < (int)cap;
    int layer, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0) {
        const char *rest = hf + used;
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++) {
            size_t n = strlen(layer_names[i].hf);
            const char *suffix = rest + n;
            if (strncmp(rest, layer_names[i].hf, n) != 0 ||
                (strcmp(suffix, ".weight") != 0 && strcmp(suffix, ".bias") != 0))
                continue;
            if (i == 1 || i == 2)
                *qk = (int)i; /* 1: q, 2: k */
            return snprintf(out, cap, "blk.%d.%s%s", layer, layer_names[i].gguf, suffix) < (int)cap;
        }
    }
    /* Names without an HF counterpart (rope_freqs.weight) pass through. */
    return snprintf(out, cap, "%s", hf) < (int)cap;
}

int64_t zl_wnames_unpermute_row(int64_t r, int64_t n_rows, int64_t n_head)
{
    int64_t d = n_rows / n_head, half = d / 2;
    int64_t h = r / d, j = r % d, s = j / half, i = j % half;
    return h * d + 2 * i + s;
}
