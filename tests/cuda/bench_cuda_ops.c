/* Micro-benchmark of the backend ops at Llama-3.1-8B shapes (hidden 4096,
 * 32 query heads and 8 kv heads of 128, MLP 14336), bf16 weights and cache:
 *   - one decoder layer's linears (q, k, v, o, gate, up, down: 7 calls as
 *     the llama model makes them) at batch 1 and 32, with bf16 activations
 *     and with f32 activations (the model's current dtype; x is rounded to
 *     bf16 per call);
 *   - decode attention (bench_decode_attention): batch 1 ctx 512, batch 32
 *     ctx 512/1024/4096, batch 128 ctx 1024, as GB/s of K/V read;
 *   - prefill attention (bench_prefill): one 2048-token prompt, 8 prompts
 *     of 1024, 4 chunks of 512 over 512 cached tokens; BENCH_OPS=prefill
 *     runs only these (bf16).
 * Timing: warm-up, then the median over 7 runs of `iters` calls each,
 * host clock around be->sync() (device work is asynchronous; the sync is
 * inside the timed region).  Weights of 8 layers and caches of 8 layers
 * are rotated so nothing is served from the 50 MB L2.  Not a test: prints
 * a table; reference numbers in the report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlight/dtype.h>
#include <zlight/status.h>

#include "cuda-test.h"

#define ROT 8                   /* layers rotated through */
#define RUNS 7

enum { D = 4096, HQ = 32, HKV = 8, HD = 128, FF = 14336, BS = 16 };

typedef int (*bench_fn)(void *arg, int iter);

/* Median seconds per call of fn over RUNS runs of iters calls. */
static double time_it(bench_fn fn, void *arg, int iters)
{
    double t[RUNS];
    for (int i = 0; i < 3; i++)
        if (fn(arg, i) != ZL_OK)
            return -1;
    if (be->sync(bctx) != ZL_OK)
        return -1;
    for (int r = 0; r < RUNS; r++) {
        double t0 = ct_now();
        for (int i = 0; i < iters; i++)
            if (fn(arg, i) != ZL_OK)
                return -1;
        if (be->sync(bctx) != ZL_OK)
            return -1;
        t[r] = (ct_now() - t0) / iters;
    }
    qsort(t, RUNS, sizeof *t, ct_cmp_double);
    return t[RUNS / 2];
}

/* Random device bytes of n elements of dt (never zeros: they run faster). */
static void *drand(enum zl_dtype dt, size_t n, double lo, double hi)
{
    void *h = rand_raw(dt, n, lo, hi, NULL);
    void *d = dnew(h, n * esize(dt));
    free(h);
    return d;
}

/* ---- one layer's linears ---- */

struct layer_bench {
    struct zl_tensor w[ROT][7];
    struct zl_tensor x[7], out[7];
};

static int layer_run(void *arg, int iter)
{
    struct layer_bench *b = arg;
    int rc = ZL_OK;
    for (int i = 0; i < 7 && rc == ZL_OK; i++)
        rc = be->linear(bctx, &b->out[i], &b->x[i], &b->w[iter % ROT][i], NULL);
    return rc;
}

static void bench_layer(enum zl_dtype act, int n, void *const wbuf[ROT][7])
{
    static const int64_t shape[7][2] = {{HQ * HD, D}, {HKV * HD, D}, {HKV * HD, D}, {D, HQ * HD},
                                        {FF, D}, {FF, D}, {D, FF}};
    struct layer_bench b;
    void *xin = drand(act, (size_t)n * FF, -1, 1), *xout = dmalloc((size_t)n * FF * esize(act));
    double flops = 0, wbytes = 0;
    for (int i = 0; i < 7; i++) {
        for (int l = 0; l < ROT; l++)
            tensor(&b.w[l][i], ZL_DTYPE_BF16, 2, shape[i], wbuf[l][i]);
        tensor(&b.x[i], act, 2, (int64_t[]){n, shape[i][1]}, xin);
        tensor(&b.out[i], act, 2, (int64_t[]){n, shape[i][0]}, xout);
        flops += 2.0 * n * (double)shape[i][0] * (double)shape[i][1];
        wbytes += 2.0 * (double)shape[i][0] * (double)shape[i][1];
    }
    double t = time_it(layer_run, &b, 20);
    if (t < 0)
        printf("linears %-4s batch %2d: failed: %s\n", zl_dtype_name(act), n, zl_last_error());
    else
        printf("BENCH layer linears (7 calls)  act %-4s batch %2d: %8.1f us  %6.0f GB/s weights  "
               "%6.1f TFLOP/s\n", zl_dtype_name(act), n, t * 1e6, wbytes / t * 1e-9,
               flops / t * 1e-12);
    dfree(xin);
    dfree(xout);
}

/* ---- decode attention ---- */

struct attn_bench {
    struct zl_kv_cache cache;
    struct zl_attn_batch batch;
    struct zl_tensor q, out;
    float scale;
};

static int attn_run(void *arg, int iter)
{
    struct attn_bench *b = arg;
    return be->attention(bctx, &b->out, &b->q, &b->cache, iter % ROT, &b->batch, b->scale);
}

/* A large device buffer of random bf16: one random 32 MB tile copied over it
 * (random values without the host generating gigabytes). */
static void *drand_big(size_t n)
{
    size_t tile = (size_t)16 << 20;             /* elements */
    tile = tile < n ? tile : n;
    void *h = rand_raw(ZL_DTYPE_BF16, tile, -1, 1, NULL);
    char *d = dmalloc(n * 2);
    for (size_t at = 0; at < n; at += tile)
        dput(d + at * 2, h, (n - at < tile ? n - at : tile) * 2);
    free(h);
    return d;
}

/* Decode attention, Llama-3.1-8B heads, bf16, every sequence at context ctx
 * (its new token included), each sequence's blocks in order; achieved
 * bandwidth = K/V bytes of the layer / median time. */
static void bench_decode_attention(int n_seqs, int ctx)
{
    int nb = (ctx + BS - 1) / BS;
    size_t block_stride = (size_t)ROT * 2 * BS * HKV * HD * 2;
    size_t pool = (size_t)n_seqs * (size_t)nb;
    struct attn_bench b = {.scale = 0.08838834764831845f};
    void *dpool = drand_big(pool * block_stride / 2);
    b.cache = (struct zl_kv_cache){.base = dpool, .block_stride = block_stride, .block_size = BS,
                                   .n_layers = ROT, .n_kv_heads = HKV, .head_dim = HD,
                                   .dtype = ZL_DTYPE_BF16};
    int32_t *q_start = xmalloc((size_t)(n_seqs + 1) * 4), *kv_len = xmalloc((size_t)n_seqs * 4);
    int32_t *table = xmalloc(pool * 4), *slot = xmalloc((size_t)n_seqs * 4);
    for (int s = 0; s <= n_seqs; s++)
        q_start[s] = s;
    for (int s = 0; s < n_seqs; s++) {
        kv_len[s] = ctx;
        for (int j = 0; j < nb; j++)
            table[s * nb + j] = s * nb + j;
        slot[s] = table[s * nb + (ctx - 1) / BS] * BS + (ctx - 1) % BS;
    }
    b.batch = (struct zl_attn_batch){.n_seqs = n_seqs, .max_blocks = nb, .q_start = q_start,
                                     .kv_len = kv_len, .block_table = table, .slot = slot};
    void *dq = drand(ZL_DTYPE_BF16, (size_t)n_seqs * HQ * HD, -1, 1);
    void *dout = dmalloc((size_t)n_seqs * HQ * HD * 2);
    tensor(&b.q, ZL_DTYPE_BF16, 3, (int64_t[]){n_seqs, HQ, HD}, dq);
    tensor(&b.out, ZL_DTYPE_BF16, 3, (int64_t[]){n_seqs, HQ, HD}, dout);
    double t = time_it(attn_run, &b, 50);
    double bytes = (double)n_seqs * ctx * HKV * HD * 2 * 2; /* K and V read once */
    if (t < 0)
        printf("decode attention batch %d ctx %d failed: %s\n", n_seqs, ctx, zl_last_error());
    else
        printf("BENCH decode attention bf16  batch %3d ctx %4d: %8.1f us  %6.0f GB/s of K/V "
               "(%.1f MB per layer%s)\n", n_seqs, ctx, t * 1e6, bytes / t * 1e-9, bytes * 1e-6,
               bytes * ROT < 50e6 ? ", 8 layers fit in L2" : "");
    dfree(dpool);
    dfree(dq);
    dfree(dout);
    free(q_start);
    free(kv_len);
    free(table);
    free(slot);
}

/* ---- prefill attention (tensor-core flash kernel) ---- */

/* n_seqs sequences of one Llama-3.1-8B layer (32 q heads, 8 kv heads of
 * 128), each q_len new tokens over a cached prefix of `prefix`, causal, bf16
 * cache, q of dtype act; blocks of a sequence in a shuffled pool order.
 * FLOPs are those of the products the mask keeps: 4 hd hq sum over rows of
 * the keys each row sees (one 2048-token prompt: 34.4 GFLOP).  f32 q over
 * the bf16 cache is declined by the flash kernels: the generic kernel's time
 * for the same work. */
static void bench_prefill(enum zl_dtype act, int n_seqs, int q_len, int prefix, int iters)
{
    const int ctx = prefix + q_len, nb = (ctx + BS - 1) / BS, n = n_seqs * q_len;
    const int pool_blocks = n_seqs * nb;
    size_t block_stride = (size_t)ROT * 2 * BS * HKV * HD * 2;
    struct attn_bench b = {.scale = 0.08838834764831845f};
    void *dpool = drand_big((size_t)pool_blocks * block_stride / 2);
    b.cache = (struct zl_kv_cache){.base = dpool, .block_stride = block_stride, .block_size = BS,
                                   .n_layers = ROT, .n_kv_heads = HKV, .head_dim = HD,
                                   .dtype = ZL_DTYPE_BF16};
    int32_t *q_start = xmalloc((size_t)(n_seqs + 1) * 4), *kv_len = xmalloc((size_t)n_seqs * 4);
    int32_t *table = xmalloc((size_t)pool_blocks * 4), *slot = xmalloc((size_t)n * 4);
    for (int j = 0; j < pool_blocks; j++)
        table[j] = (int32_t)(((int64_t)j * 37) % pool_blocks); /* a permutation if 37 is prime to it */
    for (int s = 0; s <= n_seqs; s++)
        q_start[s] = s * q_len;
    for (int s = 0; s < n_seqs; s++) {
        kv_len[s] = ctx;
        for (int i = 0; i < q_len; i++) {
            int p = prefix + i;
            slot[s * q_len + i] = table[s * nb + p / BS] * BS + p % BS;
        }
    }
    b.batch = (struct zl_attn_batch){.n_seqs = n_seqs, .max_blocks = nb, .q_start = q_start,
                                     .kv_len = kv_len, .block_table = table, .slot = slot};
    void *dq = drand(act, (size_t)n * HQ * HD, -1, 1);
    void *dout = dmalloc((size_t)n * HQ * HD * esize(act));
    tensor(&b.q, act, 3, (int64_t[]){n, HQ, HD}, dq);
    tensor(&b.out, act, 3, (int64_t[]){n, HQ, HD}, dout);
    double t = time_it(attn_run, &b, iters);
    double keys = 0;
    for (int i = 0; i < q_len; i++)
        keys += prefix + i + 1;
    double flops = 4.0 * HD * HQ * keys * n_seqs;
    if (t < 0)
        printf("prefill attention failed: %s\n", zl_last_error());
    else
        printf("BENCH prefill attention q %-4s bf16 cache, %d x %d tokens over %d cached, 32/8 "
               "heads of 128: %8.1f us  %6.1f TFLOP/s\n", zl_dtype_name(act), n_seqs, q_len, prefix,
               t * 1e6, flops / t * 1e-12);
    dfree(dpool);
    dfree(dq);
    dfree(dout);
    free(q_start);
    free(kv_len);
    free(table);
    free(slot);
}

int main(void)
{
    int rc = ct_setup("bench");
    if (rc)
        return rc;
    const char *only = getenv("BENCH_OPS");
    const int prefill_only = only && !strcmp(only, "prefill");
    static const int64_t wsize[7] = {(int64_t)HQ * HD * D, (int64_t)HKV * HD * D,
                                     (int64_t)HKV * HD * D, (int64_t)D * HQ * HD,
                                     (int64_t)FF * D, (int64_t)FF * D, (int64_t)D * FF};
    void *wbuf[ROT][7] = {{0}};
    for (int i = 0; i < 7 && !prefill_only; i++) { /* one random matrix per shape, per layer */
        void *h = rand_raw(ZL_DTYPE_BF16, (size_t)wsize[i], -0.05, 0.05, NULL);
        for (int l = 0; l < ROT; l++)
            wbuf[l][i] = dnew(h, (size_t)wsize[i] * 2);
        free(h);
    }
    if (!prefill_only) {
        if (!ct_is_cpu()) {
            bench_layer(ZL_DTYPE_BF16, 1, wbuf);
            bench_layer(ZL_DTYPE_BF16, 32, wbuf);
        }
        bench_layer(ZL_DTYPE_F32, 1, wbuf);
        bench_layer(ZL_DTYPE_F32, 32, wbuf);
    }
    if (!ct_is_cpu()) {
        static const int dec[][2] = {{1, 512}, {32, 512}, {32, 1024}, {128, 1024}, {32, 4096}};
        for (size_t i = 0; i < sizeof dec / sizeof *dec && !prefill_only; i++)
            bench_decode_attention(dec[i][0], dec[i][1]);
        bench_prefill(ZL_DTYPE_BF16, 1, 2048, 0, 20);
        /* a serving step's chunk: 1024-token prompts, and prompts' ends */
        bench_prefill(ZL_DTYPE_BF16, 8, 1024, 0, 20);
        bench_prefill(ZL_DTYPE_BF16, 4, 512, 512, 20);
        if (!prefill_only)
            bench_prefill(ZL_DTYPE_F32, 1, 2048, 0, 1);
    }
    for (int l = 0; l < ROT; l++)
        for (int i = 0; i < 7; i++)
            if (wbuf[l][i])
                dfree(wbuf[l][i]);
    return ct_finish();
}
