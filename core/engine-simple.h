/* A simple offline driver (the tests' reference path; zlight-generate now
 * runs on the scheduler's zl_engine):
 * loads plugins, weights and the model, plans memory, and runs batched
 * greedy generation over a fixed set of prompts with paged KV blocks.
 *
 *   struct zl_simple_params p = zl_simple_default_params();  p.model_path = "m.gguf";
 *   struct zl_simple *e;  zl_simple_create(&p, &e);
 *   zl_simple_generate(e, n, prompts, lens, 32, out_ids, &stats);
 *   zl_simple_free(e);
 */
#ifndef ZLIGHT_ENGINE_SIMPLE_H
#define ZLIGHT_ENGINE_SIMPLE_H

#include <stddef.h>
#include <stdint.h>

#include <zlight/dtype.h>
#include <zlight/hf_config.h>

struct zl_simple;

struct zl_simple_params {
    const char *model_path;     /* HF directory, .safetensors or .gguf; required */
    const char *backend;        /* registered backend name or "auto"; "cpu" */
    int dummy;                  /* seeded random weights from config.json; 0 */
    uint64_t seed;              /* for dummy weights; 0 */
    enum zl_dtype dtype;        /* weights dtype; ZL_DTYPE_COUNT = the checkpoint's */
    int threads;                /* backend threads; 0 = one per core */
    int block_size;             /* KV block tokens; 16 */
};

struct zl_simple_stats {
    int64_t prefill_tokens, decode_tokens;
    double prefill_s, decode_s, load_s;
};

struct zl_simple_params zl_simple_default_params(void);

/* Loads everything.  Errors (ZL_*) name the file, plugin or tensor; *out is
 * NULL then. */
int zl_simple_create(const struct zl_simple_params *p, struct zl_simple **out);
void zl_simple_free(struct zl_simple *e);   /* NULL-safe */

const struct zl_hf_config *zl_simple_config(const struct zl_simple *e);

/* Greedy generation, EOS ignored: prompt i (lens[i] >= 1 ids, each checked
 * against the vocabulary) gets max_new ids in out[i][0..max_new).  All
 * prompts prefill in one step and decode together, one token each per
 * step.  ZL_EINVAL / ZL_ERANGE for bad prompts (naming prompt and id). */
int zl_simple_generate(struct zl_simple *e, int n, const int32_t *const *prompts,
                       const int32_t *lens, int32_t max_new, int32_t **out,
                       struct zl_simple_stats *stats);

/* Same, also copying each prompt's logits (f32 [vocab]) after its last
 * prompt token into first_logits[i] when not NULL. */
int zl_simple_generate_logits(struct zl_simple *e, int n, const int32_t *const *prompts,
                              const int32_t *lens, int32_t max_new, int32_t **out,
                              float **first_logits, struct zl_simple_stats *stats);

#endif
