/* Compute backends: the table a backend plugin registers (ZL_PLUGIN_BACKEND).
 *
 *   const struct zl_backend_ops *be = zl_registry_pick_backend(reg, "auto");
 *   void *buf;
 *   if (be->mem_alloc(0, 1 << 20, &buf) == ZL_OK)
 *       be->mem_free(0, buf);
 *   // models call the op members (appended by the inference issues)
 */
#ifndef ZLIGHT_BACKEND_H
#define ZLIGHT_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/dtype.h>
#include <zlight/sampler.h>
#include <zlight/status.h>
#include <zlight/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What linear_fused does around out = x @ w^T (+ bias), in this order:
 *   norm:     x is replaced by rmsnorm(x) * norm (f32 [i], eps) first;
 *   swiglu:   w holds the gate rows, then as many up rows ([2f, i]):
 *             out[n, f] = silu(gate) * up, each rounded to out's dtype first;
 *   residual: out = residual + the product rounded to out's dtype
 *             (residual [n, o] of out's dtype; it may be out itself).
 * Unfused, they are exactly rms_norm(tmp_x, x), linear(tmp_out, tmp_x, w),
 * silu_mul(out, gate and up views of tmp_out) / add(out, residual,
 * tmp_out); tmp_x [n, i] and tmp_out [n, w rows] are the model's scratch
 * for that, of x's dtype (needed only for norm and for swiglu/residual). */
struct zl_linear_fuse {
    const struct zl_tensor *norm;
    float eps;
    int32_t swiglu;
    const struct zl_tensor *residual;
    struct zl_tensor *tmp_x, *tmp_out;
};

/* A backend instance on one device: threads or a stream, scratch, handles.
 * Opaque to the core; created by open(), passed to every op. */
struct zl_bctx;

struct zl_backend_open_params {
    uint32_t size;              /* sizeof(struct zl_backend_open_params) */
    int32_t device;             /* device ordinal */
    int32_t threads;            /* CPU worker threads, 0 = one per core */
};

/* The paged KV cache as the attention ops see it.  Block b holds block_size
 * tokens of every layer at base + b * block_stride, laid out as
 *   [n_layers][2 (K, V)][block_size][n_kv_heads][head_dim]  (dtype elements)
 * so one pool block (memory.h) is one cache block for the whole model. */
struct zl_kv_cache {
    void *base;                 /* address of block 0 */
    size_t block_stride;        /* bytes between consecutive blocks */
    int32_t block_size;         /* tokens per block */
    int32_t n_layers;
    int32_t n_kv_heads;
    int32_t head_dim;
    enum zl_dtype dtype;        /* element type of K and V */
};

/* Which cache rows the tokens of one step read and write (varlen batch).
 * Sequence s owns query rows q_start[s] .. q_start[s+1]-1; after this
 * step's write it has kv_len[s] tokens in the cache, so its new tokens are
 * at positions kv_len[s] - n_new .. kv_len[s]-1, and new token i attends
 * causally to cache positions 0 .. kv_len[s] - n_new + i.  All arrays are
 * host memory; a device backend uploads them. */
struct zl_attn_batch {
    int32_t n_seqs;
    int32_t max_blocks;         /* row length of block_table */
    const int32_t *q_start;     /* [n_seqs + 1] */
    const int32_t *kv_len;      /* [n_seqs] */
    const int32_t *block_table; /* [n_seqs, max_blocks] pool block ids */
    const int32_t *slot;        /* [n_tokens] cache slot of each new token:
                                 * block_id * block_size + offset in block */
};

/* Rotary embedding of one model: the model computes the inverse
 * frequencies once (every scaling type: linear, dynamic NTK, llama3, yarn),
 * the backend only rotates.  HF "rotate_half" (GPT-NeoX) pairing: element j
 * pairs with j + rot_dim/2. */
struct zl_rope {
    int32_t rot_dim;            /* rotated leading dims of each head (<= head_dim, even) */
    const float *inv_freq;      /* [rot_dim / 2] host memory */
    float attn_factor;          /* cos/sin multiplier (yarn mscale), 1 otherwise */
};

/* rope_kv_write's arguments, for linear_rope_kv (API minor 4). */
struct zl_rope_kv {
    struct zl_tensor *q;                /* [n, n_heads, head_dim], rotated in place */
    const struct zl_tensor *k, *v;      /* [n, n_kv_heads, head_dim] */
    const struct zl_tensor *positions;  /* i32 [n] */
    const struct zl_rope *rope;
    const struct zl_kv_cache *cache;
    int32_t layer;
    const struct zl_attn_batch *batch;
};

/* One pre-norm decoder layer (llama family, no biases) for decoder_layers:
 *   h = rmsnorm(x) * attn_norm;  [q k v] = h wqkv^T;  rope(q, k); cache <- k, v
 *   x += attention(q, cache) wo^T
 *   h = rmsnorm(x) * ffn_norm;   [g u] = h w_gu^T;   x += (silu(g) * u) w_down^T */
struct zl_decoder_layer {
    const struct zl_tensor *attn_norm, *wqkv, *wo;
    const struct zl_tensor *ffn_norm, *w_gu, *w_down;
};

/* decoder_layers' arguments.  x [1, d] is the residual stream, updated in
 * place; r's q, k, v are views of qkv [1, q + 2 kv] (scratch, contents
 * unspecified afterwards, as are att [1, q] and a [1, f]); r->layer is
 * ignored (every layer's cache rows are written). */
struct zl_decoder_stack {
    int32_t n_layers;
    const struct zl_decoder_layer *layers;
    float eps, attn_scale;
    struct zl_tensor *x, *qkv, *att, *a;
    const struct zl_rope_kv *r;
};

/* One logits row's sampling as the engine hands it to a device sampler
 * (API minor 1).  The same semantics as zl_sampler_sample (sampler.h):
 * bias entries are added first (-INFINITY masks the ids min_tokens
 * suppresses), then the penalties over the row's distinct tokens, then
 * greedy or temperature -> min-p -> top-k -> top-p and one draw with the
 * uniform zl_sampler_uniform(seed, stream, step). */
struct zl_sample_row {
    float temperature;          /* 0 = greedy */
    float top_p;                /* (0, 1], 1 = off */
    float min_p;                /* 0 = off */
    int32_t top_k;              /* <= 0 = off */
    float repetition_penalty;   /* 1 = off; applies to every listed token */
    float presence_penalty;     /* listed tokens with an output count > 0 */
    float frequency_penalty;
    int32_t logprobs;           /* -1 none; 0..ZL_SAMPLE_MAX_LOGPROBS top entries */
    uint64_t seed, stream, step;
    int32_t tok_start, n_tok;   /* the row's entries in tok_ids / tok_counts */
    int32_t bias_start, n_bias; /* the row's entries in bias_ids / bias */
};

/* A step's rows; all arrays in host memory, rows[i] samples logits row i. */
struct zl_sample_batch {
    int32_t n_rows;
    const struct zl_sample_row *rows;   /* [n_rows] */
    const int32_t *tok_ids;     /* distinct ids of prompt and output (penalties) */
    const int32_t *tok_counts;  /* their count in the output so far (0: prompt only) */
    const int32_t *bias_ids;    /* logit bias entries, an id may repeat */
    const float *bias;
};

/* True when the table `be` was built with member `m` (members are appended
 * by API minors; a table from an older plugin is shorter). */
#define ZL_BACKEND_HAS(be, m)                                                                      \
    ((be)->size >= offsetof(struct zl_backend_ops, m) + sizeof((be)->m))

/* Every member after `size` may be read only when `size` covers it.  The
 * memory members are what the memory manager needs to place its one
 * reservation per device (DESIGN §3). */
struct zl_backend_ops {
    uint32_t size;              /* sizeof(struct zl_backend_ops) at build time */
    uint32_t reserved;
    const char *description;    /* one line, e.g. "CPU (AVX2, 16 threads)" */

    /* 0 = unusable on this machine; `backend: auto` picks the highest.
     * Must be cheap and must not fail loudly (no GPU is a normal answer). */
    int (*score)(void);

    /* Number of devices this backend drives (>= 1 when score() > 0). */
    int (*device_count)(void);

    /* Bytes free and total on `device`.  For the CPU: available and total RAM. */
    int (*mem_info)(int device, size_t *free_bytes, size_t *total_bytes);

    /* Device allocation used once per region by the memory manager, never per
     * step.  Returns ZL_ENOMEM with a message naming the size on failure. */
    int (*mem_alloc)(int device, size_t bytes, void **out);
    void (*mem_free)(int device, void *ptr);   /* NULL-safe */

    /* Synchronous copies between host memory and `device` memory. */
    int (*copy_to_device)(int device, void *dst, const void *src, size_t bytes);
    int (*copy_to_host)(int device, void *dst, const void *src, size_t bytes);

    /* Waits for all work queued on `device`. */
    int (*synchronize)(int device);

    /* Converts n elements already in `device` memory between f32, f16 and
     * bf16 (round to nearest even), e.g. weights loaded in another dtype
     * than the model runs in.  ZL_EUNSUPPORTED for other pairs. */
    int (*convert)(int device, enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                   const void *src, size_t n);

    /* ---- instances ---- */
    int (*open)(const struct zl_backend_open_params *p, struct zl_bctx **out);
    void (*close)(struct zl_bctx *ctx);             /* NULL-safe */

    /* ---- ops ----
     * Tensors live on the instance's device; activations are contiguous
     * rows unless noted, f32 on the CPU backend (a device backend may use
     * bf16/f16 activations: it reads dtype from the tensors).  Weights may be
     * f32, f16 or bf16; accumulation is f32.  Ops are queued in order on the
     * instance (synchronous on the CPU) and return ZL_EINVAL with a message
     * naming the op and the mismatch on bad shapes or dtypes. */

    /* out[n_tok, d] = table[tokens[i], :]; tokens: i32 [n_tok]; ids out of
     * range are an error (ZL_ERANGE), never a wild read. */
    int (*embedding)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *table,
                     const struct zl_tensor *tokens);

    /* Fused residual add + RMSNorm.  With `residual` (in/out [n, d]):
     * residual += x, then out = rmsnorm(residual) * weight; without (NULL):
     * out = rmsnorm(x) * weight.  weight [d]; eps as in the model config.
     * out may alias x. */
    int (*rms_norm)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                    struct zl_tensor *residual, const struct zl_tensor *weight, float eps);

    /* out[n, o] = x[n, i] @ w[o, i]^T (+ bias[o] when not NULL).  `out` may
     * be a strided view into a wider buffer (row stride nb[0]). */
    int (*linear)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                  const struct zl_tensor *w, const struct zl_tensor *bias);

    /* In place: q [n, n_q_heads, head_dim] and k [n, n_kv_heads, head_dim]
     * (row strides may be wider, e.g. views into a fused QKV output) rotated
     * at positions[i] (i32 [n]). */
    int (*rope)(struct zl_bctx *ctx, struct zl_tensor *q, struct zl_tensor *k,
                const struct zl_tensor *positions, const struct zl_rope *rope);

    /* out[n, f] = silu(gate[n, f]) * up[n, f] (gate/up may be strided views). */
    int (*silu_mul)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *gate,
                    const struct zl_tensor *up);

    /* Writes k, v [n, n_kv_heads, head_dim] of `layer` into the cache at
     * batch->slot[i]. */
    int (*kv_write)(struct zl_bctx *ctx, const struct zl_kv_cache *cache, int32_t layer,
                    const struct zl_tensor *k, const struct zl_tensor *v,
                    const struct zl_attn_batch *batch);

    /* Paged causal attention over the cache (prefill chunks and decode alike,
     * varlen): out[n, n_q_heads, head_dim] from q [n, n_q_heads, head_dim];
     * GQA maps q head h to kv head h / (n_q_heads / n_kv_heads).  The new
     * tokens' K/V must already be written (kv_write).  scale = 1/sqrt(d)
     * usually. */
    int (*attention)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *q,
                     const struct zl_kv_cache *cache, int32_t layer,
                     const struct zl_attn_batch *batch, float scale);

    /* out[n, d] = a[n, d] + b[n, d]; out may alias a or b. */
    int (*add)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *a,
               const struct zl_tensor *b);

    /* Copies (and converts) rows of src [n, d] into dst [n, d] on the same
     * device; either may be strided by rows.  Used to gather logits rows. */
    int (*copy)(struct zl_bctx *ctx, struct zl_tensor *dst, const struct zl_tensor *src);

    /* Waits for the instance's queued work (no-op on the CPU). */
    int (*sync)(struct zl_bctx *ctx);

    /* ZL_BACKEND_HOST_MEMORY when mem_alloc hands out ordinary host memory
     * (the CPU backend): the memory manager may then write guard words and
     * commit the KV pool's pages up front.  0 for device memory. */
    uint32_t flags;

    /* ---- API minor 1 ---- */

    /* Activation dtypes the ops take besides f32, as bits 1u << ZL_DTYPE_x:
     * a model may run its activations in its weight dtype when that bit is
     * set (the CPU backend: 0). */
    uint32_t act_dtypes;

    /* Samples one token per row of logits (f32 [n_rows, vocab] on the
     * device, overwritten) and writes out[n_rows] in host memory; waits for
     * the result.  Same semantics as zl_sampler_sample, so a seeded row
     * gives the CPU sampler's token (up to float rounding at a draw's
     * boundary).  A row whose every token is masked gets token -1 (the
     * other rows are still sampled); errors are for bad arguments and
     * device failures.  NULL: the engine copies the logits back and
     * samples on the CPU. */
    int (*sample)(struct zl_bctx *ctx, struct zl_tensor *logits, const struct zl_sample_batch *b,
                  struct zl_sample_result *out);

    /* rope(q, k) then kv_write(k, v) in one pass: q rotated in place, k's
     * rotated values and v written to the cache exactly as the two ops
     * would, k itself left unrotated.  NULL: the model calls the two. */
    int (*rope_kv_write)(struct zl_bctx *ctx, struct zl_tensor *q, const struct zl_tensor *k,
                         const struct zl_tensor *v, const struct zl_tensor *positions,
                         const struct zl_rope *rope, const struct zl_kv_cache *cache,
                         int32_t layer, const struct zl_attn_batch *batch);

    /* ---- API minor 2 ---- */

    /* linear with the work around it fused (see struct zl_linear_fuse):
     * same arguments and result as linear, then the fused steps.  A
     * backend fuses where it pays (a decode-sized step) and runs the
     * unfused ops on f->tmp_x / f->tmp_out otherwise.  NULL: the model calls
     * rms_norm, linear, silu_mul and add itself. */
    int (*linear_fused)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                        const struct zl_tensor *w, const struct zl_tensor *bias,
                        const struct zl_linear_fuse *f);

    /* ---- API minor 3 ---- */

    /* Device graphs for steps that repeat (decode).  The engine brackets a
     * forward with them:
     *
     *   be->graph_begin(ctx);                  // a recording pass
     *   rc = forward();
     *   while ((g = be->graph_end(ctx, rc == ZL_OK)) == ZL_GRAPH_AGAIN)
     *       rc = forward();                    // the backend runs or captures it
     *
     * In the recording pass the ops check their arguments and stage their
     * host inputs but queue nothing.  graph_end then launches the graph
     * captured earlier for exactly this sequence of ops and arguments
     * (ZL_OK: the step is queued), or answers ZL_GRAPH_AGAIN: nothing was
     * queued, run the forward once more (run directly the first time a
     * sequence is seen, captured the second).  With ok = 0 it ends the
     * bracket, queues nothing and returns ZL_OK.  So a forward run inside
     * the bracket must only queue ops: no copy_to_host, sync or synchronize,
     * and copy_to_device only for the step's inputs (it is staged too).
     * NULL: the backend has no graphs. */
    int (*graph_begin)(struct zl_bctx *ctx);
    int (*graph_end)(struct zl_bctx *ctx, int ok);

    /* ---- API minor 4 ---- */

    /* An attention block's QKV projection and what follows it, in one call:
     * linear_fused(out, x, w, bias, f) (f: a norm at most, no swiglu or
     * residual), then rope_kv_write on r's q, k and v, which are views of
     * out.  Same results as those two calls, bit for bit; a backend fuses
     * them where it pays (a decode-sized step: the rotation and the cache
     * write in the projection's epilogue, one launch less per layer).
     * NULL: the model calls the two. */
    int (*linear_rope_kv)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *x,
                          const struct zl_tensor *w, const struct zl_tensor *bias,
                          const struct zl_linear_fuse *f, const struct zl_rope_kv *r);

    /* ---- API minor 5 ---- */

    /* linear_fused and linear_rope_kv fuse steps of at most this many
     * rows; a larger step runs their unfused ops, one kernel each, and a
     * model does better calling rms_norm (which takes the residual add:
     * one kernel less per add) and the rest itself.  A SwiGLU alone (no
     * norm, no residual) loses nothing through linear_fused at any size
     * (unfused it is linear then silu_mul, what the model would call), so
     * a model may ask for it past this bound and a backend may fuse it
     * there (CUDA: 9-64 rows on an H100/H200).  0: no limit. */
    int32_t fused_max_rows;

    /* ---- API minor 6 ---- */

    /* rope_kv_write(r->q, r->k, r->v, r->positions, r->rope, r->cache,
     * r->layer, r->batch) then attention(out, r->q, r->cache, r->layer,
     * r->batch, scale) in one call: out and the cache as those two leave
     * them, bit for bit; r->q's contents afterwards are unspecified (a
     * fused path rotates it on the way into the kernel, not in memory).
     * No sequence may attend to a slot another one writes in the step (a
     * KV block is shared only once full).  A backend fuses where it pays
     * (CUDA: a decode step, the rotation and the cache write inside the
     * decode attention kernel, one launch less per layer).  NULL: the model
     * calls the two. */
    int (*rope_attention)(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_rope_kv *r,
                          float scale);

    /* ---- API minor 7 ---- */

    /* All decoder layers of a one-token step of one sequence in one call
     * (struct zl_decoder_stack): what the model's per-layer ops (rms_norm,
     * linear_rope_kv, attention, linear_fused with residual and SwiGLU) do
     * to s->x and the cache, with the same roundings; only the f32
     * summation order inside the products and the softmax may differ.
     * Returns ZL_DECLINED, having done nothing, for a step it does not
     * take (the model then runs its layers op by op), ZL_OK, or an error.
     * NULL: the model always runs the layers op by op. */
    int (*decoder_layers)(struct zl_bctx *ctx, const struct zl_decoder_stack *s);

    /* ---- API minor 8 ---- */

    /* A step's host input (token ids, positions) to device memory, queued
     * in order with this instance's ops: src may be reused on return, the
     * ops queued after it read the bytes, and the host does not wait for
     * the device (copy_to_device may: on CUDA a synchronous copy the
     * device idles through between steps).  Inside a graph bracket it is
     * staged like copy_to_device.  NULL: the model calls copy_to_device. */
    int (*upload)(struct zl_bctx *ctx, void *dst, const void *src, size_t bytes);

    /* ---- API minor 9 ---- */

    /* sample in two halves, so that the engine can queue the next step
     * before this one's tokens are back (async scheduling).  sample_queue
     * checks the batch and queues the sampling and the copy-out of its
     * results (the batch's arrays may be reused on return); sample_wait
     * waits for the batch queued last and writes its out[n_rows] as sample
     * would.  sample is sample_queue then sample_wait.  One batch at a
     * time: a second sample_queue before its sample_wait is an error.
     * Errors of either half are sample's; a failed sample_queue leaves
     * nothing to wait for.  NULL (both): the engine waits in sample. */
    int (*sample_queue)(struct zl_bctx *ctx, struct zl_tensor *logits,
                        const struct zl_sample_batch *b);
    int (*sample_wait)(struct zl_bctx *ctx, struct zl_sample_result *out);

    /* upload of n token ids (int32, dst in device memory), except that a
     * row with from[i] >= 0 gets the token the sample batch queued last
     * picked for its row from[i], read on the device in queue order (so
     * before that batch's sample_wait is fine).  A row whose every token
     * was masked reads as token 0.  from[i] must be below that batch's
     * n_rows.  Inside a graph bracket it is staged and recorded like the
     * ops (a graph replays it over the same batch's results only).  NULL:
     * the engine waits for the tokens. */
    int (*upload_tokens)(struct zl_bctx *ctx, int32_t *dst, const int32_t *tokens,
                         const int32_t *from, int32_t n);

    /* Members are appended here by later API minors. */
};

/* decoder_layers: this step is not one the backend fuses (not an error). */
#define ZL_DECLINED 2

/* graph_end: run the forward again (a positive code, not an error). */
#define ZL_GRAPH_AGAIN 1

#define ZL_BACKEND_HOST_MEMORY 1u
/* True when be hands out ordinary host memory (a table without flags: no). */
#define ZL_BACKEND_ON_HOST(be) (ZL_BACKEND_HAS(be, flags) && ((be)->flags & ZL_BACKEND_HOST_MEMORY))

#ifdef __cplusplus
}
#endif
#endif
