/* extern "C" launchers of the CUDA kernels (called from the C plugin).
 *
 *   struct zl_cuda_rows out = {ptr, n, d, row_bytes, ZL_DTYPE_BF16}, x = ...;
 *   cudaError_t e = zl_cuda_add(&out, &x, &y, stream);   // queued, not waited
 *   if (e == cudaSuccess) e = zl_cuda_rms_norm(&out, &x, NULL, &w, 1e-5f, stream);
 *
 * Every launcher checks nothing the C side already checked (shapes, dtypes,
 * devices): it maps the dtypes to kernel instances (cudaErrorInvalidValue
 * for a pair it lacks), launches on `stream` and returns cudaGetLastError().
 * Element math is f32 whatever the storage dtype (f32, f16 or bf16). */
#ifndef ZL_CUDA_KERNELS_H
#define ZL_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>
#include <zlight/dtype.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A tensor seen as n rows of d contiguous elements, rows `stride` bytes apart. */
struct zl_cuda_rows {
    void *data;
    int64_t n, d;
    int64_t stride;
    enum zl_dtype dtype;
};

/* [n, heads, head_dim] with a contiguous innermost dim; nb0/nb1 byte strides
 * of tokens and heads (views into a fused QKV row are fine). */
struct zl_cuda_heads {
    void *data;
    int64_t n, heads, head_dim;
    int64_t nb0, nb1;
    enum zl_dtype dtype;
};

/* The paged cache of backend.h, one layer of it, as the kernels see it. */
struct zl_cuda_kv {
    char *base;
    size_t block_stride;        /* bytes between pool blocks */
    int32_t block_size, n_kv_heads, head_dim, layer;
    enum zl_dtype dtype;
};

/* The attention batch after upload: device copies of the host arrays. */
struct zl_cuda_batch {
    int32_t n_seqs, max_blocks;
    const int32_t *q_start;     /* [n_seqs + 1] */
    const int32_t *kv_len;      /* [n_seqs] */
    const int32_t *block_table; /* [n_seqs, max_blocks] */
    const int32_t *slot;        /* [n_tokens] */
};

/* Longest head the attention kernel holds in registers (8 per lane). */
#define ZL_CUDA_ATTN_MAX_HEAD_DIM 256

/* Element-wise f32/f16/bf16 conversion on `stream`, round to nearest even.
 * Returns cudaErrorInvalidValue for other dtype pairs. */
cudaError_t zl_cuda_convert(enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                            const void *src, size_t n, cudaStream_t stream);

/* out row r = table row tokens[r] (converted).  An id outside 0..table->n-1
 * writes a zero row and records {1, id, r, table->n} in err[0..3] (the
 * first one only; err[0] must be 0 before). */
cudaError_t zl_cuda_embedding(const struct zl_cuda_rows *out, const struct zl_cuda_rows *table,
                              const int32_t *tokens, int32_t *err, cudaStream_t stream);

/* With res->data: res += x (rounded to res's dtype), out = rmsnorm(res) * w;
 * else out = rmsnorm(x) * w.  One block per row, f32 sum of squares.
 * x, out and res share one dtype; w (one row) may have another. */
cudaError_t zl_cuda_rms_norm(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                             const struct zl_cuda_rows *res, const struct zl_cuda_rows *w,
                             float eps, cudaStream_t stream);

/* NeoX rotation of the first rot_dim dims of every head of q and k (k->data
 * may be NULL) at pos[i * pos_step]; inv_freq [rot_dim / 2] in device
 * memory; angle = (float)pos * inv_freq as HF computes it. */
cudaError_t zl_cuda_rope(const struct zl_cuda_heads *q, const struct zl_cuda_heads *k,
                         const int32_t *pos, int64_t pos_step, const float *inv_freq,
                         int32_t rot_dim, float attn_factor, cudaStream_t stream);

/* zl_cuda_rope of q in place, then k (rotated, k itself left as it was)
 * and v written to the cache rows slot[i], as zl_cuda_rope followed by
 * zl_cuda_kv_write would leave them, in one launch. */
cudaError_t zl_cuda_rope_kv_write(const struct zl_cuda_heads *q, const struct zl_cuda_heads *k,
                                  const struct zl_cuda_heads *v, const int32_t *pos,
                                  int64_t pos_step, const float *inv_freq, int32_t rot_dim,
                                  float attn_factor, const struct zl_cuda_kv *cache,
                                  const int32_t *slot, cudaStream_t stream);

/* out = silu(a) * b, out = a + b (same dtype), out = a converted (copy). */
cudaError_t zl_cuda_silu_mul(const struct zl_cuda_rows *out, const struct zl_cuda_rows *a,
                             const struct zl_cuda_rows *b, cudaStream_t stream);
cudaError_t zl_cuda_add(const struct zl_cuda_rows *out, const struct zl_cuda_rows *a,
                        const struct zl_cuda_rows *b, cudaStream_t stream);
cudaError_t zl_cuda_copy(const struct zl_cuda_rows *dst, const struct zl_cuda_rows *src,
                         cudaStream_t stream);

/* out row += bias (one row of out->d), or out row = bias when `assign`
 * (bias NULL then means zeros): the linear epilogue cuBLASLt lacks. */
cudaError_t zl_cuda_bias_rows(const struct zl_cuda_rows *out, const void *bias,
                              enum zl_dtype bias_dt, int assign, cudaStream_t stream);

/* f32 rows x [n, d] as three contiguous bf16 planes hi, mid, lo [3][n][d]
 * with hi + mid + lo == x exactly: f32 activations against bf16 weights
 * become three bf16 products summed in f32, as accurate as an f32 product. */
cudaError_t zl_cuda_split_bf16(const struct zl_cuda_rows *x, void *dst, cudaStream_t stream);

/* Cache rows of token i at slot[i] = its k, v heads (converted). */
cudaError_t zl_cuda_kv_write(const struct zl_cuda_kv *cache, const struct zl_cuda_heads *k,
                             const struct zl_cuda_heads *v, const int32_t *slot,
                             cudaStream_t stream);

/* Paged causal attention of every query row (backend.h), f32 online softmax. */
cudaError_t zl_cuda_attention(const struct zl_cuda_heads *out, const struct zl_cuda_heads *q,
                              const struct zl_cuda_kv *cache, const struct zl_cuda_batch *b,
                              float scale, cudaStream_t stream);

/* out[n, o] = x[n, i] @ w[o, i]^T for decode-sized n (gemv.cu): x and w
 * of one 16-bit dtype, out f32 or w's dtype, f32 accumulation; the
 * weights are streamed once whatever n.  cudaErrorNotSupported for other
 * cases (the caller then runs cuBLASLt). */
#define ZL_CUDA_GEMV_MAX_ROWS 8
cudaError_t zl_cuda_gemv(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                         const struct zl_cuda_rows *w, cudaStream_t stream);

/* out[n, o] = x[n, i] @ w[o, i]^T for 9 <= n <= ZL_CUDA_GEMM_TMA_MAX_ROWS
 * on sm_90 from a build with sm_90a (gemm-tma.cu: TMA, wgmma, started as
 * a programmatic dependent): x, w and out of one 16-bit dtype, 16-byte
 * aligned bases and row strides of x and w.  f (may be NULL): res
 * ([n, o] of the dtype, may be out): out = res + the product rounded;
 * swiglu: w is [gate; up] (rows a multiple of 128) and out[n, o / 2] =
 * silu(gate) * up, each rounded first.  scratch: zl_cuda_gemm_tma_scratch
 * bytes; count: ZL_CUDA_GEMM_TMA_COUNTS int32 zeros (left zero).
 * cudaErrorNotSupported for what it does not take. */
#define ZL_CUDA_GEMM_TMA_MAX_ROWS 64
#define ZL_CUDA_GEMM_TMA_COUNTS 4096
struct zl_cuda_gemm_tma_fuse {
    const struct zl_cuda_rows *res;
    int swiglu;
};
size_t zl_cuda_gemm_tma_scratch(int64_t n);
cudaError_t zl_cuda_gemm_tma(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                             const struct zl_cuda_rows *w, const struct zl_cuda_gemm_tma_fuse *f,
                             void *scratch, size_t scratch_bytes, int32_t *count,
                             cudaStream_t stream);

/* zl_cuda_gemv with work fused around the product (out of w's dtype):
 * norm_w (f32 [d], 16-byte aligned): x is RMS-normalised first, rounded
 * as zl_cuda_rms_norm rounds; swiglu (with norm_w): w is [gate; up] and
 * out[n, w->n / 2] = silu(gate) * up, each rounded to the dtype first as
 * zl_cuda_silu_mul sees them; res ([n, w->n], may be out itself): out =
 * res + the product rounded to the dtype.  Either norm_w or res.
 * cudaErrorNotSupported for what it does not take. */
struct zl_cuda_gemv_fuse {
    const float *norm_w;
    float eps;
    int swiglu;
    const struct zl_cuda_rows *res;
    const struct zl_cuda_gemv_rope *rope;
};
/* rope (with norm_w, the QKV projection of linear_rope_kv): out's columns
 * are n_q_heads q heads, then cache.n_kv_heads k and as many v heads, each
 * of cache.head_dim with element j paired with j + head_dim / 2 (full
 * rotary); the epilogue rotates q in out and writes k rotated and v to the
 * cache at slot[token], leaving out's k and v columns as the product: the
 * result of zl_cuda_rope_kv_write after the GEMV, bit for bit.  The cache
 * is of w's dtype. */
struct zl_cuda_gemv_rope {
    const int32_t *pos;         /* position of token i at pos[i * pos_step] */
    int64_t pos_step;
    const float *inv_freq;      /* [head_dim / 2] */
    float attn_factor;
    int32_t n_q_heads;
    struct zl_cuda_kv cache;
    const int32_t *slot;        /* [n] */
};
/* Whether zl_cuda_gemv_ex takes these arguments (it answers
 * cudaErrorNotSupported exactly when this is 0): a host-side check, so a
 * graph's recording pass picks the path the run will take. */
int zl_cuda_gemv_ex_takes(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                          const struct zl_cuda_rows *w, const struct zl_cuda_gemv_fuse *f);
cudaError_t zl_cuda_gemv_ex(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                            const struct zl_cuda_rows *w, const struct zl_cuda_gemv_fuse *f,
                            cudaStream_t stream);

/* What the host knows about an attention batch without a device read. */
struct zl_cuda_attn_shape {
    int32_t max_q_len;          /* most query rows of one sequence in this step */
    int32_t max_kv_len;         /* longest kv_len */
};

/* Tensor-core paged flash attention (attention-prefill.cu) for any varlen
 * batch: prefill chunks, mixed steps.  Same contract as zl_cuda_attention;
 * returns cudaErrorNotSupported for what it does not take (dtypes, head
 * sizes), and the caller then runs zl_cuda_attention.  wg: the variant of
 * the wgmma kernel below to try first (0: none). */
cudaError_t zl_cuda_attention_prefill(const struct zl_cuda_heads *out, const struct zl_cuda_heads *q,
                                      const struct zl_cuda_kv *cache, const struct zl_cuda_batch *b,
                                      const struct zl_cuda_attn_shape *s, float scale, int wg,
                                      cudaStream_t stream);

/* The same on Hopper's wgmma (attention-prefill-wg.cu; sm_90a builds on a
 * compute capability 9.0 device, head_dim 128), called by
 * zl_cuda_attention_prefill after its checks (bs_shift = log2 of the block
 * size).  variant 1: 128-key tiles in 2 stages, 2: 64-key tiles in 4, 3:
 * 128-key tiles in 3; cudaErrorNotSupported for any other variant and
 * where it does not run. */
#define ZL_CUDA_PREFILL_WG_VARIANTS 3
/* Why variant cannot run on this build and the current device (a sentence
 * for a log line), NULL when it can. */
const char *zl_cuda_prefill_wg_declines(int variant);
cudaError_t zl_cuda_attention_prefill_wg(const struct zl_cuda_heads *out,
                                         const struct zl_cuda_heads *q,
                                         const struct zl_cuda_kv *cache,
                                         const struct zl_cuda_batch *b,
                                         const struct zl_cuda_attn_shape *s, float scale,
                                         int bs_shift, int variant, cudaStream_t stream);

/* Decode steps only (every sequence has exactly one query row, q_start[s]
 * = s), attention-decode.cu: a GQA group's query heads share the MMA M
 * dimension, long contexts split over blocks, the last block of a (sequence,
 * kv head) merging the splits.  `scratch` holds
 * zl_cuda_attention_decode_scratch() bytes of device memory; `count` holds
 * n_seqs * n_kv_heads ints, zero before the first call (each call leaves
 * them zero).  Launched as a programmatic dependent (cuda-pdl.cuh).
 * Returns cudaErrorNotSupported for what it does not take (the caller
 * falls back). */
size_t zl_cuda_attention_decode_scratch(int32_t n_seqs, int32_t n_q_heads, int32_t head_dim,
                                        int32_t max_kv_len);
/* The split-KV plan the kernel takes for these extents (splits 0: no GPU). */
void zl_cuda_attention_decode_plan(int32_t n_seqs, int32_t n_kv_heads, int32_t head_dim,
                                   int32_t max_kv_len, int32_t *splits, int32_t *chunk);
/* `pf` (may be NULL): device bytes the kernel asks into L2 while it runs,
 * a hint for what the next kernel reads (the weights of the linear after
 * attention, when the step's K/V is small and HBM would idle). */
struct zl_cuda_prefetch {
    const void *data;
    size_t bytes;
};
/* `rope` (may be NULL; backend.h rope_attention): the step's RoPE and
 * cache write done by the kernel.  Sequence s's query row is rotated at
 * pos[s * pos_step] before use (q itself is left as it was), and its new
 * token's k (rotated) and v, rows s of `k` and `v`, go to cache slot
 * slot[s], written by the CTA whose keys end there, which takes them from
 * shared memory.  Full rotary (rot_dim == head_dim), k and v of q's dtype;
 * everything rounds as zl_cuda_rope_kv_write rounds, so out and the cache
 * equal that kernel followed by this one without `rope`, bit for bit. */
struct zl_cuda_decode_rope {
    struct zl_cuda_heads k, v;
    const int32_t *pos;
    int64_t pos_step;
    const float *inv_freq;      /* [head_dim / 2], device */
    float attn_factor;
    const int32_t *slot;        /* [n_seqs], device */
};
/* Whether zl_cuda_attention_decode takes these tensors (it declines
 * exactly when this is 0, or for a step that is not decode-only): a
 * host-side check, so a caller can choose its path before launching. */
int zl_cuda_attention_decode_takes(const struct zl_cuda_heads *out, const struct zl_cuda_heads *q,
                                   const struct zl_cuda_kv *cache, int32_t n_seqs,
                                   const struct zl_cuda_decode_rope *rope);
cudaError_t zl_cuda_attention_decode(const struct zl_cuda_heads *out, const struct zl_cuda_heads *q,
                                     const struct zl_cuda_kv *cache, const struct zl_cuda_batch *b,
                                     const struct zl_cuda_attn_shape *s, float scale,
                                     void *scratch, size_t scratch_bytes, int32_t *count,
                                     const struct zl_cuda_prefetch *pf,
                                     const struct zl_cuda_decode_rope *rope, cudaStream_t stream);

/* The decoder layers of one decode token in one persistent kernel
 * (decode-chain.cu): per layer rms_norm, QKV, RoPE + cache write,
 * attention, o + residual, rms_norm, gate/up + SwiGLU, down + residual,
 * for one sequence.  Weights are [rows, cols] contiguous of `dtype`, norm
 * weights f32; x is the residual stream [d], updated in place. */
struct zl_cuda_chain_layer {
    const void *wqkv, *wo, *wgu, *wdown;
    const float *attn_norm, *ffn_norm;
};
struct zl_cuda_chain_shape {
    int32_t n_layers, d, f, n_heads, n_kv_heads, head_dim;
    int32_t kv_len;             /* keys after this token's write */
};
struct zl_cuda_chain_plan {
    int32_t grid, slots, slot_bytes, xs_bytes, pq, pg, ro, rd, splits;
    size_t smem, part_bytes, count_ints;
};
struct zl_cuda_chain {
    struct zl_cuda_chain_shape shape;
    enum zl_dtype dtype;
    const struct zl_cuda_chain_layer *layers;   /* device [n_layers] */
    void *x, *qkv, *att, *a;    /* [d], [(n_heads + 2 n_kv_heads) head_dim], [n_heads head_dim], [f] */
    void *part;                 /* plan.part_bytes of scratch */
    int32_t *count;             /* plan.count_ints, zeroed by the launch */
    float eps, scale, attn_factor;
    const int32_t *pos;         /* device: the token's position */
    const float *inv_freq;      /* device [head_dim / 2] */
    struct zl_cuda_kv cache;    /* layer ignored: all of them */
    const int32_t *table;       /* device: the sequence's block ids */
    int32_t slot;               /* the token's cache slot */
    void *trace;                /* tuning builds: zl_cuda_decode_chain_trace_bytes, or NULL */
    int32_t dry;                /* tuning builds: bit p skips phase p's math (timing only) */
};
/* Bytes of a trace: ZL_CHAIN_STAMPS per (CTA, layer, phase of 5): start,
 * input ready, end, ns waiting for tiles; 2 per CTA. */
#define ZL_CHAIN_STAMPS 4
static inline size_t zl_cuda_decode_chain_trace_bytes(const struct zl_cuda_chain_plan *p,
                                                      int32_t n_layers)
{
    return ((size_t)p->grid * (size_t)n_layers * 5 * ZL_CHAIN_STAMPS + (size_t)p->grid * 2) * 8;
}
/* Whether the kernel takes this shape on this device (sm_90+, head_dim 64
 * or 128, up to 8 query heads a kv head, the shared memory for 2+ slots),
 * and its plan: 0 when it does not. */
int zl_cuda_decode_chain_plan(const struct zl_cuda_chain_shape *s, struct zl_cuda_chain_plan *p);
cudaError_t zl_cuda_decode_chain(const struct zl_cuda_chain *c, const struct zl_cuda_chain_plan *p,
                                 cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
