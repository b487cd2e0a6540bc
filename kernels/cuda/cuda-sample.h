/* The CUDA sampler's launcher (sample.cu), called by cuda-sample.c.
 *
 *   struct zl_cuda_sample_args a = {.logits = dev_logits, .stride = vocab, .n_rows = n,
 *                                   .vocab = vocab, .rows = dev_rows, ...};
 *   cudaError_t e = zl_cuda_sample(&a, stream);      // queued, not waited
 *   // then copy a.out and a.status back and wait for the stream
 *
 * One thread block per logits row, or, where every row is plain greedy,
 * several blocks a row.  Semantics of zl_sampler_sample
 * (sampler.h): the kept set is the value-threshold one, and the per-token
 * values are computed with the same float and double operations as the
 * CPU sampler, so a seeded row gives the CPU sampler's token.  Every
 * reduction has a fixed order: a row's result does not depend on the other
 * rows of the batch nor on the run. */
#ifndef ZL_CUDA_SAMPLE_H
#define ZL_CUDA_SAMPLE_H

#include <stdint.h>
#include <cuda_runtime_api.h>
#include <zlight/backend.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes from a batch's results to its rows' status: the status follows
 * the results at the next 16-byte boundary, on the device and in the
 * pinned copy (one copy back; upload_tokens' gather finds it there). */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline size_t zl_cuda_sample_status_at(int32_t n_rows)
{
    return ((size_t)n_rows * sizeof(struct zl_sample_result) + 15) & ~(size_t)15;
}

/* What the kernel reads and writes; every pointer is device memory. */
struct zl_cuda_sample_args {
    float *logits;                      /* [n_rows, stride] f32; bias and penalties applied in place */
    int64_t stride;                     /* elements between rows (>= vocab) */
    int32_t n_rows, vocab;
    const struct zl_sample_row *rows;   /* [n_rows] */
    const int32_t *tok_ids;             /* the batch's arrays (backend.h) */
    const int32_t *tok_counts;
    const int32_t *bias_ids;
    const float *bias;
    float *saved;                       /* [sum of n_bias + n_tok over rows] raw logits of
                                         * the ids a row modifies (its token's logprob) */
    struct zl_sample_result *out;       /* [n_rows] */
    int32_t *status;                    /* [n_rows] 0, or ZL_CUDA_SAMPLE_MASKED */
    /* split > 0: every row greedy, no logprobs, bias or penalty tokens:
     * `split` blocks a row, slices of `per` ids (zl_cuda_sample_greedy_split) */
    int32_t split, per;
    unsigned long long *part;           /* [n_rows][split] the slices' keys */
    int32_t *count;                     /* [n_rows] zeros before a launch, left so after */
};

#define ZL_CUDA_SAMPLE_MASKED 1         /* every token of the row is masked */
#define ZL_CUDA_SAMPLE_THREADS 1024     /* threads per row */

cudaError_t zl_cuda_sample(const struct zl_cuda_sample_args *a, cudaStream_t stream);

/* upload_tokens' gather, one thread a row: dst[i] = tok[i] where from[i]
 * < 0, else res[from[i]].token, or 0 where that row was masked or its
 * token is outside [0, vocab).  The batch's row count is read on the
 * device (*rows, uploaded with tok and from) and its status follows its
 * results at the next 16 bytes, so a graph that captured the gather
 * replays for any batch of the same results' address.  Queued on stream. */
cudaError_t zl_cuda_sampled_tokens(int32_t *dst, const int32_t *tok, const int32_t *from,
                                   const int32_t *rows, const struct zl_sample_result *res,
                                   int32_t vocab, int32_t n, cudaStream_t stream);

/* Blocks a row (returned) and ids a block (*per) of the greedy path for a
 * batch of n_rows on a device of `sms` SMs. */
int32_t zl_cuda_sample_greedy_split(int32_t n_rows, int32_t vocab, int32_t sms, int32_t *per);

#ifdef __cplusplus
}
#endif
#endif
