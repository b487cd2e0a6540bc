/* Internals of the weight loader (weight-loader.c, weight-names.c,
 * weight-dummy.c); not installed. */
#ifndef ZLIGHT_WEIGHT_LOADER_IMPL_H
#define ZLIGHT_WEIGHT_LOADER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <zlight/dtype.h>
#include <zlight/weight_loader.h>

/* HF name -> GGUF name into out[cap]; *qk = 1 for attn_q, 2 for attn_k
 * (rows permuted in llama GGUF files), else 0.  Returns 1, or 0 when the
 * name does not fit. */
int zl_wnames_to_gguf(const char *hf, char *out, size_t cap, int *qk);

/* GGUF row holding HF row r of a Q or K projection with n_rows rows in
 * n_head heads. */
int64_t zl_wnames_unpermute_row(int64_t r, int64_t n_rows, int64_t n_head);

/* Dummy weights: does the config's llama-family checkpoint have `name`? */
int zl_wdummy_has(const struct zl_hf_config *c, const char *name);

/* Fills dst[n] (f32) with the values of elements first .. first+n-1 of
 * tensor `name`: seeded, reproducible per tensor and element, 1.0 for norm
 * weights, small uniform values otherwise. */
void zl_wdummy_fill(uint64_t seed, const char *name, int64_t first, int64_t n, float *dst);

/* The same values converted to dt (f32, f16, bf16) in dst[n], on all
 * cores for large tensors.  ZL_ENOMEM. */
int zl_wdummy_fill_dtype(uint64_t seed, const char *name, int64_t first, int64_t n, enum zl_dtype dt,
                         void *dst);

/* Parameter count of a llama-family config (for sizing dummy loads). */
int64_t zl_wdummy_param_count(const struct zl_hf_config *c, int64_t *n_vectors);

#endif
