/* Internals of the CUDA backend shared by its C files (not installed).
 *
 *   struct cuda_rows x;                               // a tensor as rows
 *   if ((rc = cuda_check_rows(ctx, "add", "x", t, CUDA_DT_FLOAT, &x)) < 0) return rc;
 *   ZL_CUDA_TRY(zl_cuda_add(&out, &x, &y, ctx->stream));   // queued on the instance
 *   cuda_upload(ctx, &ctx->meta, "attention", parts, 4, dev);  // host arrays -> device
 *   cuda_linear_cache_free(ctx);
 *
 * Memory of an instance (all allocated at open or grown rarely, never per
 * step in steady state):
 *   - cuBLASLt workspace: CUDA_LT_WORKSPACE bytes, one allocation at open.
 *   - meta: device copy of the attention batch's host arrays (q_start,
 *     kv_len, block_table, slot), CUDA_META_INITIAL bytes at open, doubled
 *     when a batch needs more.  Uploaded only when the packed bytes differ
 *     from the last upload, so the kv_write and attention calls of all
 *     layers of one step share a single host-to-device copy.
 *   - freq: device copy of the rope inv_freq table, same rule.
 *   - stage: pinned host slots the uploads are copied from (so the copy is
 *     truly asynchronous); a slot is reused only after its copy's event.
 *   - conv: linear inputs converted to the weight's dtype (f32 activations
 *     against bf16/f16 weights), grown by doubling on first use.
 *   - attn_scratch: split-KV partial results of decode attention, grown by
 *     doubling to the longest context seen; attn_count: the split counters
 *     the last block of each (sequence, kv head) merges on, zeroed when grown
 *     (the kernel leaves them zero).
 *   - err: four device ints the embedding kernel flags bad token ids in;
 *     sync() reads them and reports ZL_ERANGE (the ids are on the device, so
 *     the op itself cannot see them without a round trip).
 *   - chain, chain_host, chain_scratch: decoder_layers' table of layer
 *     weight pointers (host and device, re-sent only when it changes) and
 *     its split partials and phase counters, grown to the longest context.
 * A growth synchronizes the stream before freeing the old buffer. */
#ifndef ZL_CUDA_IMPL_H
#define ZL_CUDA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <zlight/backend.h>
#include <zlight/plugin.h>

#include "cuda-check.h"
#include "cuda-kernels.h"

#define CUDA_LT_WORKSPACE ((size_t)32 << 20) /* what cuBLAS asks for on Hopper */
#define CUDA_META_INITIAL ((size_t)64 << 10)
#define CUDA_STAGE_SLOTS 16

/* A device buffer holding the last upload of one kind of host metadata. */
struct cuda_upload {
    void *dev;
    size_t cap;                 /* bytes of dev */
    void *last;                 /* host copy of what dev holds (malloc), NULL = nothing */
    size_t last_len;
    int64_t checked[4];         /* what `last` passed a check for (its user's key), 0 = none */
};

/* One host array to upload: `bytes` at `src`; or, with rows > 0, `rows`
 * rows of row_bytes each (contiguous at src) placed pitch bytes apart with
 * zeros after each (bytes is then ignored): a block table widened. */
struct cuda_part {
    const void *src;
    size_t bytes;
    size_t rows, row_bytes, pitch;
};

struct cuda_linear_cache;

/* Device graphs (cuda-graph.c).  OFF: ops queue as usual.  DRY: the
 * recording pass of a bracket: ops check, stage their uploads and note
 * their arguments, and queue nothing.  EAGER: the rerun of a sequence seen
 * for the first time (ops queue as usual).  CAPTURE: the rerun under
 * stream capture, uploads from the fixed staging buffer. */
enum cuda_graph_mode { CUDA_GRAPH_OFF, CUDA_GRAPH_DRY, CUDA_GRAPH_EAGER, CUDA_GRAPH_CAPTURE };

struct cuda_graph_entry;

struct cuda_graphs {
    enum cuda_graph_mode mode;
    unsigned char *rec;                 /* this pass's op notes */
    size_t rec_len, rec_cap;
    unsigned char *want;                /* the recording pass's notes, during CAPTURE */
    size_t want_len, want_cap;
    int rec_oom;
    char *stage;                        /* pinned; this bracket's uploads: stages[cur] */
    size_t stage_cap, stage_used;
    /* Brackets take the two buffers in turns, so a step's recording may
     * stage while the graph before it, queued ahead (async scheduling),
     * has yet to copy its inputs; a graph's copies are repointed to the
     * bracket's buffer at launch.  done[i] follows the last graph launched
     * from stages[i]. */
    char *stages[2];
    size_t caps[2];
    cudaEvent_t done[2];
    int cur;
    struct cuda_graph_entry *e;         /* captured graphs, e[0..n) */
    int n, cap;
    uint64_t seen[64];                  /* hashes of sequences run once (captured if seen again) */
    unsigned seen_next;
    uint64_t clock;                     /* launches, for least-recently-used eviction */
    long long replays, captures, eager, direct_steps;
    int off;                            /* a capture failed: no more brackets */
    int direct;                         /* this recording pass met an op that runs only
                                         * directly (cuda_graph_run_direct) */
};

/* Weight prefetch during short decode attention (cuda-attention.c): the
 * weights of the linear that followed each layer's attention last time,
 * and the count of device frees then (a free since voids the hint). */
#define CUDA_PF_LAYERS 256
struct cuda_prefetch {
    int on;                                 /* ZL_CUDA_PREFETCH=0 turns it off */
    int32_t after;                          /* the layer whose attention ran last, or -1 */
    struct {
        struct zl_cuda_prefetch w;
        unsigned long frees;
    } next[CUDA_PF_LAYERS];
};
/* mem_free's count, over all instances (cuda-backend.c). */
unsigned long cuda_frees(void);

/* The device's idle time between forwards (cuda-idle.c): events at the
 * sampled tokens' copy (end) and the next first kernel (start), two of
 * each so that a pair awaiting its evaluation is never recorded over. */
struct cuda_idle {
    int on;
    int end;                    /* ends[end] recorded since the last start, or -1 */
    int pend_end, pend_start;   /* the pair not yet evaluated, or -1 */
    cudaEvent_t ends[2], starts[2];
    double ms;
    long long n;
};

struct zl_bctx {
    int device;
    int sms;                                /* the device's SM count, read at open */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;                            /* CUDA_LT_WORKSPACE bytes */
    struct cuda_linear_cache *lin;          /* per-shape matmul plans (cuda-linear.c) */
    struct cuda_upload meta, freq;
    void *stage;                            /* pinned, CUDA_STAGE_SLOTS * stage_slot bytes */
    size_t stage_slot;
    cudaEvent_t stage_ev[CUDA_STAGE_SLOTS];
    unsigned stage_next;
    void *pack;                             /* host buffer uploads are packed in */
    size_t pack_cap;
    void *conv;                             /* converted linear inputs */
    size_t conv_cap;
    void *attn_scratch;                     /* decode attention's split-KV partials */
    size_t attn_scratch_cap;
    void *attn_count;                       /* int32 split counters of decode attention */
    size_t attn_count_cap;
    void *lin_scratch;                      /* gemm-tma.cu's f32 split partials */
    size_t lin_scratch_cap;
    void *lin_count;                        /* its int32 tile counters, kept zero */
    size_t lin_count_cap;
    int32_t *err;                           /* device [4]: embedding's bad-id flag */
    int32_t *err_host;                      /* pinned [4] */
    struct cuda_upload samp;                /* the sample batch's host arrays */
    void *samp_scratch;                     /* sample: saved raw logits, results, status */
    size_t samp_scratch_cap;
    void *samp_host;                        /* pinned copy of the sample results */
    size_t samp_host_cap;
    void *samp_count;                       /* int32 per-row counters of the greedy path, kept zero */
    size_t samp_count_cap;
    cudaEvent_t samp_done;                  /* recorded after the results' copy-out */
    int samp_queued;                        /* a batch queued, its sample_wait to come */
    int32_t samp_rows, samp_vocab;          /* the batch queued last */
    const struct zl_sample_result *samp_res;    /* device [samp_rows]: its results, NULL: none */
    struct cuda_upload samp_tok;            /* upload_tokens' tokens and from */
    struct cuda_graphs gr;                  /* decode steps as graphs (cuda-graph.c) */
    struct cuda_prefetch pf;
    int prefill_wg;                         /* ZL_PREFILL_WG: the wgmma prefill's variant, 0 off */
    struct cuda_upload chain;               /* decoder_layers' per-layer weight table */
    struct zl_cuda_chain_layer *chain_host; /* its host side, chain_host_n layers */
    int32_t chain_host_n;
    void *chain_scratch;                    /* decoder_layers' split partials and counters */
    size_t chain_scratch_cap;
    struct cuda_idle idle;                  /* ZLIGHT_PROFILE: the device's idle time between forwards */
};

/* ---- tensors as the kernels see them (cuda-check.c); each returns ZL_OK
 * or ZL_EINVAL with "cuda OP: NAME ..." ---- */

#define CUDA_DT_FLOAT ((1u << ZL_DTYPE_F32) | (1u << ZL_DTYPE_F16) | (1u << ZL_DTYPE_BF16))
#define CUDA_DT_I32 (1u << ZL_DTYPE_I32)

/* t non-NULL, placed on the instance's device, of a dtype in `dtypes` (bit
 * mask of 1u << ZL_DTYPE_*), innermost dim contiguous; then t as rows (its
 * outer dims must collapse into one row stride). */
int cuda_check_rows(const struct zl_bctx *ctx, const char *op, const char *name,
                    const struct zl_tensor *t, uint32_t dtypes, struct zl_cuda_rows *out);
/* The same for exactly 3 dims [n, heads, head_dim]. */
int cuda_check_heads(const struct zl_bctx *ctx, const char *op, const char *name,
                     const struct zl_tensor *t, uint32_t dtypes, struct zl_cuda_heads *out);
/* a and b have the same [n, d] (and dtype when same_dtype). */
int cuda_check_same(const char *op, const char *na, const struct zl_cuda_rows *a, const char *nb,
                    const struct zl_cuda_rows *b, int same_dtype);
/* h is [n, heads, head_dim] exactly. */
int cuda_check_heads_shape(const char *op, const char *name, const struct zl_cuda_heads *h,
                           int64_t n, int64_t heads, int64_t head_dim);
/* The cache, layer and batch's counts fit each other and n_tok query rows;
 * fills kv.  The per-sequence lengths, block ids and slots are
 * cuda_check_batch_ids' (upload_batch runs it once per distinct batch). */
int cuda_check_kv(const char *op, const struct zl_kv_cache *cache, int32_t layer,
                  const struct zl_attn_batch *b, int64_t n_tok, struct zl_cuda_kv *kv);
int cuda_check_batch_ids(const char *op, const struct zl_kv_cache *cache,
                         const struct zl_attn_batch *b, int64_t n_tok);
/* Whether the bytes of a's rows and b's rows overlap. */
int cuda_rows_overlap(const struct zl_cuda_rows *a, const struct zl_cuda_rows *b);
const char *cuda_dtype_name(enum zl_dtype dt);
size_t cuda_dtype_size(enum zl_dtype dt);

/* ---- instance helpers (cuda-backend.c) ---- */

/* Makes `up` hold the concatenation of parts (each 16-byte aligned) and sets
 * dev[i] to part i's device address; copies only when the bytes differ
 * from the last upload.  Queued on the stream; the host arrays may change
 * as soon as it returns. */
int cuda_upload(struct zl_bctx *ctx, struct cuda_upload *up, const char *op,
                const struct cuda_part *parts, int n, void **dev);
/* backend.h upload (API minor 8): dst <- bytes at src, queued (staged in
 * a graph pass); src may be reused on return. */
int cuda_upload_input(struct zl_bctx *ctx, void *dst, const void *src, size_t bytes);
/* Grows pinned host memory *buf to `copies` slots of at least `bytes`
 * (*cap: bytes a slot), doubling; waits for the stream first, so no copy
 * still reads the old buffer. */
int cuda_pinned_reserve(struct zl_bctx *ctx, void **buf, size_t *cap, size_t bytes, size_t copies);
/* Grows *buf (device, *cap bytes) to at least `bytes`, doubling. */
int cuda_reserve(struct zl_bctx *ctx, void **buf, size_t *cap, size_t bytes, const char *op);
/* cuda_reserve for counters that kernels leave at zero: zeroed when grown. */
int cuda_reserve_counts(struct zl_bctx *ctx, void **buf, size_t *cap, size_t bytes, const char *op);

/* cuda-staging.c: the copy_to_device hook (large copies through two
 * alternating pinned chunks) and its release at plugin shutdown. */
int cuda_copy_to_device(int device, void *dst, const void *src, size_t bytes);
void cuda_staging_free(void);

/* ---- device graphs (cuda-graph.c) ---- */

/* A recording pass: the op returns after its checks, uploads and scratch
 * growth, before queueing anything. */
static inline int cuda_graph_dry(const struct zl_bctx *ctx)
{
    return ctx->gr.mode == CUDA_GRAPH_DRY;
}
/* Inside a bracket's recording or capture pass (uploads go through the
 * graphs' fixed staging buffer, attention plans for a length bucket). */
static inline int cuda_graph_pass(const struct zl_bctx *ctx)
{
    return ctx->gr.mode == CUDA_GRAPH_DRY || ctx->gr.mode == CUDA_GRAPH_CAPTURE;
}
/* In a recording pass: this step runs directly (its ops queued again
 * after the pass, no lookup, no capture), for an op whose launch depends
 * on the step's data, such as the decode chain's. */
static inline void cuda_graph_run_direct(struct zl_bctx *ctx)
{
    ctx->gr.direct = 1;
}
/* Drops every captured graph (a scratch buffer was freed; the stream is
 * idle). */
void cuda_graph_forget(struct zl_bctx *ctx);
/* Appends n bytes to this pass's notes (what decides the launches). */
void cuda_graph_note(struct zl_bctx *ctx, const void *p, size_t n);
/* dst <- bytes at src in a recording or capture pass: staged in the fixed
 * buffer, copied by the graph (CAPTURE queues the copy, DRY only stages). */
int cuda_graph_upload(struct zl_bctx *ctx, void *dst, const void *src, size_t bytes);
/* The instance in a bracket on `device`, or NULL (copy_to_device's hook). */
struct zl_bctx *cuda_graph_active(int device);
/* The longest context a recording plans decode attention for: max_kv_len
 * rounded up to 4..7 x a power of two, so one graph serves a range. */
int32_t cuda_graph_kv_bucket(int32_t max_kv_len);
/* Block-table columns in a pass: max_blocks rounded up to a power of two. */
int32_t cuda_graph_table_cols(int32_t max_blocks);
int cuda_graph_begin(struct zl_bctx *ctx);
int cuda_graph_end(struct zl_bctx *ctx, int ok);
/* Ends an open bracket without launching (an open capture is dropped). */
void cuda_graph_abandon(struct zl_bctx *ctx);
/* After the stream is idle: the graphs, the staging buffer, the counts log. */
void cuda_graph_free(struct zl_bctx *ctx);
/* cuda-graph-notes.c: the op table with each op noting its arguments in
 * a pass, and graph_begin/graph_end set. */
void cuda_graph_wrap_ops(struct zl_backend_ops *ops);

/* cuda-profile.c: `base` with every op timed by CUDA events (ZLIGHT_PROFILE). */
const struct zl_backend_ops *cuda_profile_ops(const struct zl_backend_ops *base);

/* ZLIGHT_PROFILE: the device's idle time between forwards (cuda-idle.c):
 * open and close with the instance; first_op as a forward's embedding is
 * queued, tokens_out as sample's results are copied out, waited after
 * sample_wait's wait. */
void cuda_idle_open(struct zl_bctx *ctx);
void cuda_idle_close(struct zl_bctx *ctx);
void cuda_idle_first_op(struct zl_bctx *ctx);
void cuda_idle_tokens_out(struct zl_bctx *ctx);
void cuda_idle_waited(struct zl_bctx *ctx);

#ifdef ZL_GEMV_TUNING
/* cuda-knockout.c: `base` with the ops ZL_KNOCKOUT names left out of
 * 9-64-token steps (timing only); `base` itself when it is unset. */
const struct zl_backend_ops *cuda_knockout_ops(const struct zl_backend_ops *base);
#endif

/* ---- ops ---- */

int cuda_embedding(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *table,
                   const struct zl_tensor *tokens);
int cuda_rms_norm(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                  struct zl_tensor *residual, const struct zl_tensor *weight, float eps);
int cuda_rope(struct zl_bctx *ctx, struct zl_tensor *q, struct zl_tensor *k,
              const struct zl_tensor *positions, const struct zl_rope *rope);
/* rope's checked arguments and the device inv_freq (shared with rope_kv_write). */
struct cuda_rope_args {
    struct zl_cuda_heads q, k;
    const int32_t *pos;
    int64_t pos_step;
    void *freq;
};
int cuda_rope_prepare(struct zl_bctx *ctx, const char *op, const struct zl_tensor *q,
                      const struct zl_tensor *k, const struct zl_tensor *positions,
                      const struct zl_rope *rope, struct cuda_rope_args *a);
int cuda_rope_kv_write(struct zl_bctx *ctx, struct zl_tensor *q, const struct zl_tensor *k,
                       const struct zl_tensor *v, const struct zl_tensor *positions,
                       const struct zl_rope *rope, const struct zl_kv_cache *cache, int32_t layer,
                       const struct zl_attn_batch *batch);
/* rope_kv_write's checks and uploads for linear_rope_kv's fused GEMV: its
 * epilogue's arguments (a recording pass stops after this, as the op does). */
int cuda_rope_kv_gemv_args(struct zl_bctx *ctx, const char *op, const struct zl_rope_kv *r,
                           struct zl_cuda_gemv_rope *g);
/* The same, with the uploaded batch too (db, when the step has rows). */
int cuda_rope_kv_batch_args(struct zl_bctx *ctx, const char *op, const struct zl_rope_kv *r,
                            struct zl_cuda_gemv_rope *g, struct zl_cuda_batch *db);
int cuda_silu_mul(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *gate,
                  const struct zl_tensor *up);
int cuda_add(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *a,
             const struct zl_tensor *b);
int cuda_copy_rows(struct zl_bctx *ctx, struct zl_tensor *dst, const struct zl_tensor *src);
int cuda_kv_write(struct zl_bctx *ctx, const struct zl_kv_cache *cache, int32_t layer,
                  const struct zl_tensor *k, const struct zl_tensor *v,
                  const struct zl_attn_batch *batch);
int cuda_attention(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *q,
                   const struct zl_kv_cache *cache, int32_t layer,
                   const struct zl_attn_batch *batch, float scale);
/* rope_kv_write then attention, fused for decode steps (backend.h). */
int cuda_rope_attention(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_rope_kv *r,
                        float scale);
/* The leading one-row sequences of a batch (attention's decode part) and
 * the longest query and kv_len of sequences [s0, s1). */
int32_t cuda_attn_decode_prefix(const struct zl_attn_batch *b);
struct zl_cuda_attn_shape cuda_attn_shape(const struct zl_attn_batch *b, int32_t s0, int32_t s1);
/* A linear's weights: remembered as the prefetch for the attention of the
 * layer that ran just before it. */
void cuda_prefetch_learn(struct zl_bctx *ctx, const struct zl_tensor *w);
/* What decode attention over nd sequences of up to max_kv_len keys (the
 * planned bucket) asks into L2 for layer `layer`, or NULL. */
const struct zl_cuda_prefetch *cuda_prefetch_hint(const struct zl_bctx *ctx, int32_t layer,
                                                  int32_t n_kv_heads, int32_t head_dim,
                                                  enum zl_dtype dt, int32_t nd,
                                                  int32_t max_kv_len);
/* cuda-decode-chain.c: decoder_layers (backend.h), ZL_DECLINED where the
 * one-kernel chain does not take the step. */
int cuda_decoder_layers(struct zl_bctx *ctx, const struct zl_decoder_stack *s);
/* cuda-sample.c: one token per logits row (backend.h sample), also in
 * two halves, and upload_tokens (API minor 9). */
int cuda_sample(struct zl_bctx *ctx, struct zl_tensor *logits, const struct zl_sample_batch *b,
                struct zl_sample_result *out);
int cuda_sample_queue(struct zl_bctx *ctx, struct zl_tensor *logits,
                      const struct zl_sample_batch *b);
int cuda_sample_wait(struct zl_bctx *ctx, struct zl_sample_result *out);
int cuda_upload_tokens(struct zl_bctx *ctx, int32_t *dst, const int32_t *tokens,
                       const int32_t *from, int32_t n);

/* cuda-linear.c: cuBLASLt with one plan (descriptors + algorithm) per shape. */
int cuda_linear(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                const struct zl_tensor *w, const struct zl_tensor *bias);
void cuda_linear_cache_free(struct zl_bctx *ctx);
/* cuda-linear-fused.c: linear_fused, one fused GEMV or the unfused ops. */
/* gemm-tma.cu for 9-64 tokens (cuda-linear.c): 1 when it declines the
 * arguments (already checked rows), else ZL_OK or an error. */
int cuda_linear_tma(struct zl_bctx *ctx, const struct zl_cuda_rows *o,
                    const struct zl_cuda_rows *x, const struct zl_cuda_rows *w,
                    const struct zl_cuda_gemm_tma_fuse *f);
int cuda_linear_fused(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                      const struct zl_tensor *w, const struct zl_tensor *bias,
                      const struct zl_linear_fuse *f);
/* linear_rope_kv: one GEMV with the norm, RoPE and cache write fused, or
 * linear_fused then rope_kv_write. */
int cuda_linear_rope_kv(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                        const struct zl_tensor *w, const struct zl_tensor *bias,
                        const struct zl_linear_fuse *f, const struct zl_rope_kv *r);

#endif
