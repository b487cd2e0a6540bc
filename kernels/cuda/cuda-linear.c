/* linear: out[n, o] = x[n, i] @ w[o, i]^T (+ bias).  Up to 8 tokens of
 * 16-bit x and w without bias go to gemv.cu, 9-64 such tokens on an
 * H100/H200 (sm_90a builds) to gemm-tma.cu; the rest, and what those
 * decline, through cuBLASLt, as follows.
 *
 * Row-major x, w, out are column-major x^T [i, n], w^T [i, o], out^T [o, n]
 * to cuBLAS, so this is the "TN" product out^T = (w^T)^T x^T: A = w with
 * TRANSA, B = x, D = out, leading dimensions = the row strides (views into
 * wider buffers work as they are).  f32 accumulation and scaling always
 * (CUBLAS_COMPUTE_32F: no TF32 for f32 inputs).
 *
 * One plan per shape (sizes, strides, dtypes, bias, pointer alignments):
 * the descriptors and the heuristic's algorithm (plan_algo: its first pick,
 * or from 64 tokens an unsplit one in place of a split-K pick that needs a
 * reduction kernel), made on first use and kept
 * in a small open-addressed table; it is flushed whole if it ever fills
 * (many distinct token counts), which costs only new heuristic queries. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

#define LIN_SLOTS 256           /* power of two */
#define LIN_MAX_FILL (LIN_SLOTS * 3 / 4)
#define LIN_MAX_ALIGN 256
#define LIN_UNSPLIT_MIN_TOKENS 64 /* plan_algo */

struct lin_key {
    int64_t m, n, k;            /* out features (w rows), tokens, inner size */
    int64_t lda, ldb, ldc;      /* row strides in elements */
    int32_t ab_dt, c_dt, bias_dt; /* bias_dt -1: no bias epilogue asked */
    int32_t align_a, align_b, align_c;
};

struct lin_plan {
    struct lin_key key;
    int used;
    int bias_in_epilogue;       /* 0: cuBLASLt had no algorithm with it; bias kernel after */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
};

struct cuda_linear_cache {
    struct lin_plan slot[LIN_SLOTS];
    int count;
};

static cudaDataType_t cuda_type(int32_t dt)
{
    return dt == ZL_DTYPE_F16 ? CUDA_R_16F : dt == ZL_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static void plan_release(struct lin_plan *p)
{
    if (p->desc)
        ZL_CUBLAS_WARN(cublasLtMatmulDescDestroy(p->desc));
    cublasLtMatrixLayout_t *lay[3] = {&p->a, &p->b, &p->c};
    for (int i = 0; i < 3; i++)
        if (*lay[i])
            ZL_CUBLAS_WARN(cublasLtMatrixLayoutDestroy(*lay[i]));
    memset(p, 0, sizeof *p);
}

void cuda_linear_cache_free(struct zl_bctx *ctx)
{
    if (!ctx->lin)
        return;
    for (int i = 0; i < LIN_SLOTS; i++)
        if (ctx->lin->slot[i].used)
            plan_release(&ctx->lin->slot[i]);
    free(ctx->lin);
    ctx->lin = NULL;
}

static uint64_t key_hash(const struct lin_key *k)
{
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof *k; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Largest power of two (<= LIN_MAX_ALIGN) dividing the address and the stride. */
static int32_t align_of(const void *p, int64_t stride_bytes)
{
    uintptr_t v = (uintptr_t)p | (uintptr_t)stride_bytes | LIN_MAX_ALIGN;
    return (int32_t)(v & (~v + 1));
}

/* The heuristic's best algorithm for p's descriptors among those whose
 * split-K reduction is in red_mask (cublasLtReductionScheme_t bits); 0
 * results is not an error here. */
static int heuristic(struct zl_bctx *ctx, struct lin_plan *p, uint32_t red_mask,
                     cublasLtMatmulHeuristicResult_t *res, int *found)
{
    cublasLtMatmulPreference_t pref = NULL;
    int count = 0;
    size_t ws = CUDA_LT_WORKSPACE;
    uint32_t al[4] = {(uint32_t)p->key.align_a, (uint32_t)p->key.align_b,
                      (uint32_t)p->key.align_c, (uint32_t)p->key.align_c};
    cublasStatus_t st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &ws, sizeof ws);
    static const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4 && st == CUBLAS_STATUS_SUCCESS; i++)
        st = cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &al[i], sizeof al[i]);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                  &red_mask, sizeof red_mask);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1,
                                            res, &count);
    if (pref)
        ZL_CUBLAS_WARN(cublasLtMatmulPreferenceDestroy(pref));
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) /* "no algorithm" in some versions */
        st = CUBLAS_STATUS_SUCCESS, count = 0;
    ZL_CUBLAS_TRY(st);
    *found = count > 0;
    return ZL_OK;
}

static uint32_t algo_attr(const cublasLtMatmulAlgo_t *algo, cublasLtMatmulAlgoConfigAttributes_t a)
{
    uint32_t v = 0; /* the id and the reduction scheme are 32-bit */
    size_t got = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(algo, a, &v, sizeof v, &got) != CUBLAS_STATUS_SUCCESS)
        return UINT32_MAX;
    return v;
}

/* The heuristic's first pick for p, except that from 64 tokens a pick
 * which splits K and adds the splits in a kernel of its own gives way to
 * the best unsplit algorithm of the same family (algorithm id) when that
 * still fills half the GPU (heuristic wave count).  In a layer's chain the
 * reduction kernel costs a launch and a grid drain besides its own time:
 * Llama-3.1-8B bf16 batch 128 on an H100 (the down projection [4096,
 * 14336] at 128 tokens: split-K 3 in 53.0 us vs unsplit 46.1 us alone)
 * ran 13.82/13.73/13.32 -> 13.18/13.14/13.05 ms a step.  At 32 tokens the
 * unsplit picks are slow (71.5 us in the same family at 0.24 waves, 305
 * us in another) and the split stays; taking unsplit picks from 9 tokens
 * (the o and down projections of 9-31-token steps) made batch 32 slower
 * (8.21-8.38 -> 8.56-9.10 ms a step), hence the 64.  Both queries depend
 * only on the shapes, so the pick, and the bits, do not depend on a
 * measurement.  Tuning builds: ZL_LT_UNSPLIT=N moves the 64 (0: never). */
static int plan_algo(struct zl_bctx *ctx, struct lin_plan *p, int *found)
{
    cublasLtMatmulHeuristicResult_t res, alt;
    int rc = heuristic(ctx, p, CUBLASLT_REDUCTION_SCHEME_MASK, &res, found);
    if (rc < 0 || !*found)
        return rc;
    p->algo = res.algo;
    const uint32_t red = algo_attr(&res.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
    int64_t min_tokens = LIN_UNSPLIT_MIN_TOKENS;
#ifdef ZL_GEMV_TUNING
    const char *v = getenv("ZL_LT_UNSPLIT");
    if (v && *v)
        min_tokens = strtol(v, NULL, 10);
#endif
    if ((red != CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE &&
         red != CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE) || min_tokens <= 0 || p->key.n < min_tokens)
        return ZL_OK;
    int alt_found = 0;
    if ((rc = heuristic(ctx, p, CUBLASLT_REDUCTION_SCHEME_NONE, &alt, &alt_found)) < 0)
        return rc;
    const uint32_t id = algo_attr(&res.algo, CUBLASLT_ALGO_CONFIG_ID);
    const uint32_t alt_id = alt_found ? algo_attr(&alt.algo, CUBLASLT_ALGO_CONFIG_ID) : UINT32_MAX;
    const int take = alt_found && alt.wavesCount >= 0.5f && id != UINT32_MAX && alt_id == id;
    if (take)
        p->algo = alt.algo;
    zl_cuda_host->log(ZL_LOG_DEBUG, "cuda", "linear [%lld x %lld] x [%lld x %lld]^T: split-K "
                      "pick (algorithm %u, %u splits, %.2f waves) %s the unsplit one (algorithm "
                      "%d, %.2f waves)", (long long)p->key.n, (long long)p->key.k,
                      (long long)p->key.m, (long long)p->key.k, id,
                      algo_attr(&res.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM), res.wavesCount,
                      take ? "gives way to" : "kept over", alt_found ? (int)alt_id : -1,
                      alt_found ? alt.wavesCount : 0.0);
    return ZL_OK;
}

static int set_epilogue(struct lin_plan *p, int with_bias)
{
    cublasLtEpilogue_t epi = with_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    ZL_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                 sizeof epi));
    if (with_bias) {
        cudaDataType_t bt = cuda_type(p->key.bias_dt);
        ZL_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                     &bt, sizeof bt));
    }
    return ZL_OK;
}

static int plan_make(struct zl_bctx *ctx, struct lin_plan *p, const struct lin_key *k)
{
    memset(p, 0, sizeof *p);
    p->key = *k;
    p->used = 1; /* from here plan_release cleans up whatever exists */
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    ZL_CUBLAS_TRY(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    ZL_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    ZL_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    ZL_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p->a, cuda_type(k->ab_dt), (uint64_t)k->k,
                                             (uint64_t)k->m, k->lda));
    ZL_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p->b, cuda_type(k->ab_dt), (uint64_t)k->k,
                                             (uint64_t)k->n, k->ldb));
    ZL_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p->c, cuda_type(k->c_dt), (uint64_t)k->m,
                                             (uint64_t)k->n, k->ldc));
    int found = 0, rc;
    if (k->bias_dt >= 0) {
        if ((rc = set_epilogue(p, 1)) < 0 || (rc = plan_algo(ctx, p, &found)) < 0)
            return rc;
        p->bias_in_epilogue = found;
    }
    if (!found && ((rc = set_epilogue(p, 0)) < 0 || (rc = plan_algo(ctx, p, &found)) < 0))
        return rc;
    if (!found)
        return zl_cuda_host->error(ZL_EUNSUPPORTED, "cuda linear: cuBLASLt has no algorithm for "
                                   "%s [%lld, %lld] x %s [%lld, %lld]^T -> %s",
                                   cuda_dtype_name(k->ab_dt), (long long)k->n, (long long)k->k,
                                   cuda_dtype_name(k->ab_dt), (long long)k->m, (long long)k->k,
                                   cuda_dtype_name(k->c_dt));
    return ZL_OK;
}

/* The plan for k, made on a miss. */
static int plan_get(struct zl_bctx *ctx, const struct lin_key *k, struct lin_plan **out)
{
    if (!ctx->lin && !(ctx->lin = calloc(1, sizeof *ctx->lin)))
        return zl_cuda_host->error(ZL_ENOMEM, "cuda linear: out of host memory for plans");
    struct cuda_linear_cache *lc = ctx->lin;
    size_t i = (size_t)key_hash(k) & (LIN_SLOTS - 1);
    for (; lc->slot[i].used; i = (i + 1) & (LIN_SLOTS - 1))
        if (!memcmp(&lc->slot[i].key, k, sizeof *k)) {
            *out = &lc->slot[i];
            return ZL_OK;
        }
    if (lc->count >= LIN_MAX_FILL) {
        zl_cuda_host->log(ZL_LOG_DEBUG, "cuda", "linear: %d plans cached, starting over",
                          lc->count);
        for (int j = 0; j < LIN_SLOTS; j++)
            if (lc->slot[j].used)
                plan_release(&lc->slot[j]);
        lc->count = 0;
        i = (size_t)key_hash(k) & (LIN_SLOTS - 1);
    }
    int rc = plan_make(ctx, &lc->slot[i], k);
    if (rc < 0) {
        plan_release(&lc->slot[i]);
        return rc;
    }
    lc->count++;
    *out = &lc->slot[i];
    return ZL_OK;
}

static int check_args(struct zl_bctx *ctx, struct zl_cuda_rows *o, struct zl_cuda_rows *x,
                      struct zl_cuda_rows *w, struct zl_cuda_rows *b, struct zl_tensor *out,
                      const struct zl_tensor *xt, const struct zl_tensor *wt,
                      const struct zl_tensor *bias)
{
    static const char op[] = "linear";
    int rc;
    if ((rc = cuda_check_rows(ctx, op, "x", xt, CUDA_DT_FLOAT, x)) < 0 ||
        (rc = cuda_check_rows(ctx, op, "w", wt, CUDA_DT_FLOAT, w)) < 0 ||
        (rc = cuda_check_rows(ctx, op, "out", out, CUDA_DT_FLOAT, o)) < 0 ||
        (bias && (rc = cuda_check_rows(ctx, op, "bias", bias, CUDA_DT_FLOAT, b)) < 0))
        return rc;
    if (x->d != w->d)
        return zl_cuda_host->error(ZL_EINVAL, "cuda linear: x [%lld, %lld] vs w [%lld, %lld]: "
                                   "inner sizes differ", (long long)x->n, (long long)x->d,
                                   (long long)w->n, (long long)w->d);
    if (o->n != x->n || o->d != w->n)
        return zl_cuda_host->error(ZL_EINVAL, "cuda linear: out [%lld, %lld], want [%lld, %lld]",
                                   (long long)o->n, (long long)o->d, (long long)x->n,
                                   (long long)w->n);
    if (bias && (b->n != 1 || b->d != w->n))
        return zl_cuda_host->error(ZL_EINVAL, "cuda linear: bias [%lld, %lld], want [%lld]",
                                   (long long)b->n, (long long)b->d, (long long)w->n);
    if (o->dtype != ZL_DTYPE_F32 && o->dtype != w->dtype)
        return zl_cuda_host->error(ZL_EUNSUPPORTED, "cuda linear: out is %s, want f32 or w's %s",
                                   cuda_dtype_name(o->dtype), cuda_dtype_name(w->dtype));
    if (cuda_rows_overlap(o, x) || cuda_rows_overlap(o, w))
        return zl_cuda_host->error(ZL_EINVAL, "cuda linear: out overlaps x or w");
    const struct zl_cuda_rows *all[3] = {x, w, o};
    for (int i = 0; i < 3; i++)
        if (all[i]->stride % (int64_t)cuda_dtype_size(all[i]->dtype))
            return zl_cuda_host->error(ZL_EINVAL, "cuda linear: a row stride of %lld bytes is not "
                                       "a whole number of elements", (long long)all[i]->stride);
    return ZL_OK;
}

/* out (+)= x w^T (+ b): one cuBLASLt call, beta 0 or 1; x and w of one dtype. */
static int gemm(struct zl_bctx *ctx, const struct zl_cuda_rows *o, const struct zl_cuda_rows *x,
                const struct zl_cuda_rows *w, const struct zl_cuda_rows *b, float beta)
{
    int64_t es_ab = (int64_t)cuda_dtype_size(w->dtype), es_c = (int64_t)cuda_dtype_size(o->dtype);
    struct lin_key key;
    memset(&key, 0, sizeof key); /* the hash reads the padding too */
    key.m = w->n;
    key.n = x->n;
    key.k = x->d;
    key.lda = w->stride / es_ab;
    key.ldb = x->stride / es_ab;
    key.ldc = o->stride / es_c;
    key.ab_dt = w->dtype;
    key.c_dt = o->dtype;
    key.bias_dt = b && b->dtype == o->dtype ? (int32_t)b->dtype : -1;
    key.align_a = align_of(w->data, w->stride);
    key.align_b = align_of(x->data, x->stride);
    key.align_c = align_of(o->data, o->stride);
    struct lin_plan *p = NULL;
    int rc = plan_get(ctx, &key, &p);
    if (rc < 0)
        return rc;
    if (p->bias_in_epilogue)
        ZL_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &b->data, sizeof b->data));
    const float alpha = 1.0f;
    ZL_CUBLAS_TRY(cublasLtMatmul(ctx->lt, p->desc, &alpha, w->data, p->a, x->data, p->b, &beta,
                                 o->data, p->c, o->data, p->c, &p->algo, ctx->lt_ws,
                                 CUDA_LT_WORKSPACE, ctx->stream));
    if (b && !p->bias_in_epilogue)
        ZL_CUDA_TRY(zl_cuda_bias_rows(o, b->data, b->dtype, 0, ctx->stream));
    return ZL_OK;
}

/* 9-64-token steps on an H100/H200 through gemm-tma.cu (which streams
 * weights before its predecessor ends; cuBLASLt's kernels cannot).  1 when
 * it declines (the caller goes on), else a status.  Tuning builds:
 * ZL_TMA_GEMM=0 leaves every step to cuBLASLt. */
int cuda_linear_tma(struct zl_bctx *ctx, const struct zl_cuda_rows *o,
                    const struct zl_cuda_rows *x, const struct zl_cuda_rows *w,
                    const struct zl_cuda_gemm_tma_fuse *f)
{
#ifdef ZL_GEMV_TUNING
    static int off = -1;
    if (off < 0) {
        const char *v = getenv("ZL_TMA_GEMM");
        off = v && *v == '0';
    }
    if (off)
        return 1;
#endif
    if (x->n < 9 || x->n > ZL_CUDA_GEMM_TMA_MAX_ROWS)
        return 1;
    size_t need = zl_cuda_gemm_tma_scratch(x->n);
    if (!need)
        return 1;
    int rc = cuda_reserve(ctx, &ctx->lin_scratch, &ctx->lin_scratch_cap, need, "linear");
    if (rc == ZL_OK)
        rc = cuda_reserve_counts(ctx, &ctx->lin_count, &ctx->lin_count_cap,
                                 ZL_CUDA_GEMM_TMA_COUNTS * sizeof(int32_t), "linear");
    if (rc < 0)
        return rc;
    if (cuda_graph_dry(ctx)) /* recording: the shape's launch is known to be taken below */
        return ZL_OK;
    cudaError_t e = zl_cuda_gemm_tma(o, x, w, f, ctx->lin_scratch, ctx->lin_scratch_cap,
                                     (int32_t *)ctx->lin_count, ctx->stream);
    if (e == cudaErrorNotSupported)
        return 1;
    ZL_CUDA_TRY(e);
    return ZL_OK;
}

int cuda_linear(struct zl_bctx *ctx, struct zl_tensor *out, const struct zl_tensor *xt,
                const struct zl_tensor *wt, const struct zl_tensor *bias)
{
    struct zl_cuda_rows o, x, w, b = {0};
    cuda_prefetch_learn(ctx, wt);
    int rc = check_args(ctx, &o, &x, &w, &b, out, xt, wt, bias);
    if (rc < 0 || o.n == 0 || o.d == 0)
        return rc;
    ZL_CUDA_TRY(cudaSetDevice(ctx->device));
    if (x.d == 0) { /* an empty sum: out = bias or 0 */
        if (cuda_graph_dry(ctx))
            return ZL_OK;
        ZL_CUDA_TRY(zl_cuda_bias_rows(&o, bias ? b.data : NULL, b.dtype, 1, ctx->stream));
        return ZL_OK;
    }
    const struct zl_cuda_rows *bp = bias ? &b : NULL;
    if (x.dtype == w.dtype && !bias && (rc = cuda_linear_tma(ctx, &o, &x, &w, NULL)) != 1)
        return rc;
    if (x.dtype == w.dtype && cuda_graph_dry(ctx))
        return ZL_OK;
    if (x.dtype == w.dtype && x.n <= ZL_CUDA_GEMV_MAX_ROWS && !bias) {
        /* decode-sized steps: a weight-streaming kernel beats cuBLASLt's
         * small-M choices; it declines (NotSupported) what it does not take */
        cudaError_t e = zl_cuda_gemv(&o, &x, &w, ctx->stream);
        if (e != cudaErrorNotSupported) {
            ZL_CUDA_TRY(e);
            return ZL_OK;
        }
    }
    if (x.dtype == w.dtype)
        return gemm(ctx, &o, &x, &w, bp, 0.0f);
    size_t es = cuda_dtype_size(w.dtype), plane = (size_t)(x.n * x.d) * es;
    if (x.dtype == ZL_DTYPE_F32 && w.dtype == ZL_DTYPE_BF16 && o.dtype == ZL_DTYPE_F32) {
        /* f32 activations, bf16 weights (the CPU-style model): x split into
         * three bf16 planes whose products accumulate into the f32 out, so
         * the result is as accurate as an f32 product; 3x the FLOPs, a
         * compatibility path (bf16 activations take the direct one). */
        if ((rc = cuda_reserve(ctx, &ctx->conv, &ctx->conv_cap, 3 * plane, "linear")) < 0 ||
            cuda_graph_dry(ctx))
            return rc;
        ZL_CUDA_TRY(zl_cuda_split_bf16(&x, ctx->conv, ctx->stream));
        for (int i = 0; i < 3 && rc == ZL_OK; i++) {
            struct zl_cuda_rows xp = {(char *)ctx->conv + (size_t)i * plane, x.n, x.d,
                                      x.d * (int64_t)es, ZL_DTYPE_BF16};
            rc = gemm(ctx, &o, &xp, &w, i == 0 ? bp : NULL, i == 0 ? 0.0f : 1.0f);
        }
        return rc;
    }
    /* Other mixes: x converted to w's dtype (cuBLASLt multiplies like types
     * only); f32 x against f16 w is rounded to f16 and must fit its range. */
    if ((rc = cuda_reserve(ctx, &ctx->conv, &ctx->conv_cap, plane, "linear")) < 0 ||
        cuda_graph_dry(ctx))
        return rc;
    struct zl_cuda_rows cx = {ctx->conv, x.n, x.d, x.d * (int64_t)es, w.dtype};
    ZL_CUDA_TRY(zl_cuda_copy(&cx, &x, ctx->stream));
    return gemm(ctx, &o, &cx, &w, bp, 0.0f);
}
