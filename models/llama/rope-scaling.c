/* RoPE inverse frequencies for every rope_scaling type, computed once by the
 * model (the backend only rotates).  Each function follows transformers'
 * modeling_rope_utils (4.57) step by step, in float32 where it computes in
 * float32, so positions rotate by the same angles as the reference. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "llama-impl.h"

/* 1 / base^(2i/dim), i < dim/2: torch.arange(0, dim, 2).float() / dim in f32. */
static void rope_default(double base, int dim, float *inv)
{
    for (int i = 0; i < dim / 2; i++)
        inv[i] = 1.0f / powf((float)base, (float)(2 * i) / (float)dim);
}

/* Llama 3.1: low frequencies divided by factor, high kept, a smooth ramp between. */
static void rope_llama3(const struct zl_rope_scaling *rs, int n, float *inv)
{
    float factor = (float)rs->factor, lo = (float)rs->low_freq_factor;
    float hi = (float)rs->high_freq_factor;
    float old_ctx = (float)rs->original_max_position_embeddings;
    float low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
    for (int i = 0; i < n; i++) {
        float wavelen = 2.0f * (float)M_PI / inv[i];
        float f = wavelen > low_wavelen ? inv[i] / factor : inv[i];
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            float smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f = (1.0f - smooth) * f / factor + smooth * f;
        }
        inv[i] = f;
    }
}

static double yarn_mscale(double scale, double mscale)
{
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double rotations, int dim, double base, double max_pos)
{
    return (dim * log(max_pos / (rotations * 2 * M_PI))) / (2 * log(base));
}

/* YaRN: blend of interpolated (1/factor) and extrapolated frequencies over
 * a linear ramp between the correction dims; attention_factor scales cos/sin. */
static void rope_yarn(const struct llama_hparams *hp, int dim, float *inv, float *attn_factor)
{
    const struct zl_rope_scaling *rs = &hp->rs;
    double base = hp->rope_theta, factor = rs->factor;
    double orig = rs->original_max_position_embeddings ? (double)rs->original_max_position_embeddings
                                                        : (double)hp->max_pos;
    double af = rs->attention_factor;
    if (af == 0)
        af = rs->mscale != 0 && rs->mscale_all_dim != 0
                 ? yarn_mscale(factor, rs->mscale) / yarn_mscale(factor, rs->mscale_all_dim)
                 : yarn_mscale(factor, 1);
    *attn_factor = (float)af;
    double beta_fast = rs->beta_fast != 0 ? rs->beta_fast : 32;
    double beta_slow = rs->beta_slow != 0 ? rs->beta_slow : 1;
    double low = floor(yarn_correction_dim(beta_fast, dim, base, orig));
    double high = ceil(yarn_correction_dim(beta_slow, dim, base, orig));
    if (low < 0)
        low = 0;
    if (high > dim - 1)
        high = dim - 1;
    float fl = (float)low, fh = (float)high;
    if (fl == fh)
        fh += 0.001f;
    for (int i = 0; i < dim / 2; i++) {
        float pos_freq = powf((float)base, (float)(2 * i) / (float)dim);
        float extra = 1.0f / pos_freq, inter = 1.0f / ((float)factor * pos_freq);
        float ramp = ((float)i - fl) / (fh - fl);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float extra_factor = 1.0f - ramp;
        inv[i] = inter * (1.0f - extra_factor) + extra * extra_factor;
    }
}

int llama_rope_inv_freq(const struct llama_hparams *hp, int64_t max_pos_in_batch, float *inv,
                        float *attn_factor)
{
    const struct zl_rope_scaling *rs = &hp->rs;
    int dim = hp->rot_dim;
    *attn_factor = 1.0f;
    switch (rs->type) {
    case ZL_ROPE_SCALING_NONE:
        rope_default(hp->rope_theta, dim, inv);
        return ZL_OK;
    case ZL_ROPE_SCALING_LINEAR:
        rope_default(hp->rope_theta, dim, inv);
        for (int i = 0; i < dim / 2; i++)
            inv[i] /= (float)rs->factor;
        return ZL_OK;
    case ZL_ROPE_SCALING_DYNAMIC: {
        /* NTK-aware base growth once the sequence passes max_position_embeddings.
         * transformers keeps the largest length seen in a module cache; we
         * use this step's length (the same for one sequence growing). */
        double seq = (double)(max_pos_in_batch + 1), maxp = (double)hp->max_pos;
        if (seq < maxp)
            seq = maxp;
        double base = hp->rope_theta *
                      pow(rs->factor * seq / maxp - (rs->factor - 1), (double)dim / (dim - 2));
        rope_default(base, dim, inv);
        return ZL_OK;
    }
    case ZL_ROPE_SCALING_LLAMA3:
        rope_default(hp->rope_theta, dim, inv);
        rope_llama3(rs, dim / 2, inv);
        return ZL_OK;
    case ZL_ROPE_SCALING_YARN:
        rope_yarn(hp, dim, inv, attn_factor);
        return ZL_OK;
    default:
        return llama_host->error(ZL_EUNSUPPORTED, "llama: rope_scaling type '%s' is not supported",
                                 rs->name[0] ? rs->name : "?");
    }
}
