/* cuBLASLt's heuristic pick against the best algorithm it offers, at the
 * Llama-3.1-8B projection shapes (bf16, f32 accumulation, the TN product
 * cuda-linear.c asks for) and decode-to-prefill token counts.  For each
 * shape and M: up to 8 heuristic results are each timed (best of 5 runs of
 * back-to-back calls, CUDA events, weights rotated over 8 copies so L2 does
 * not serve them) and the first (what zlight runs) is compared with the
 * fastest.  A benchmark, not a test: prints a table; figures and the
 * decision it informed are in docs/cuda-perf-log.md.  BENCH_LT_ALGOS=1 also prints
 * every result's time and configuration (tile, stages, split-K, ...) and
 * the heuristic's wave count; BENCH_LT_M="32 128" limits the token counts
 * (9 to 8192; lm_head only to 512, the rows a step scores); first_TF/s is
 * the first pick's bf16 rate, what the prefill steps' linears run at;
 * BENCH_LT_RANDOM=1 fills weights and x with random bf16 instead of one
 * repeated value (bit toggling in the tensor cores draws power: the model's
 * weights are random); BENCH_LT_REDMASK=N asks the heuristic only for
 * algorithms whose split-K reduction scheme is in mask N (0: no split-K,
 * 1: in-place split-K too; default 7, every scheme). */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>
/* cublasLt.h declares one function as f() (not a C prototype) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <cublasLt.h>
#pragma GCC diagnostic pop

#define ROT 8
#define N_ALGO 16

static cublasLtHandle_t lt;
static void *ws;
static size_t ws_bytes = (size_t)32 << 20; /* CUDA_LT_WORKSPACE */

static void check(int failed, const char *what)
{
    if (failed) {
        fprintf(stderr, "bench_cuda_lt: %s failed\n", what);
        exit(1);
    }
}

struct gemm {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
};

/* Microseconds per call of algorithm `al`, or -1 if it fails to run. */
static double time_algo(const struct gemm *g, const cublasLtMatmulAlgo_t *al, void *const w[ROT],
                        const void *x, void *y, cudaStream_t s, int iters)
{
    const float one = 1, zero = 0;
    cudaEvent_t e0, e1;
    check(cudaEventCreate(&e0) || cudaEventCreate(&e1), "cudaEventCreate");
    double best = -1;
    for (int i = 0; i < 3 && best == -1; i++)
        if (cublasLtMatmul(lt, g->desc, &one, w[i % ROT], g->a, x, g->b, &zero, y, g->c, y, g->c,
                           al, ws, ws_bytes, s) != CUBLAS_STATUS_SUCCESS)
            best = -2;
    for (int r = 0; r < 5 && best != -2; r++) {
        check(cudaEventRecord(e0, s), "cudaEventRecord");
        for (int i = 0; i < iters; i++)
            cublasLtMatmul(lt, g->desc, &one, w[i % ROT], g->a, x, g->b, &zero, y, g->c, y, g->c,
                           al, ws, ws_bytes, s);
        check(cudaEventRecord(e1, s) || cudaEventSynchronize(e1), "timing");
        float ms;
        check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
        double us = 1e3 * ms / iters;
        best = best < 0 || us < best ? us : best;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return best < 0 ? -1 : best;
}

/* One line of algorithm i's configuration and its time. */
static void print_algo(int i, const cublasLtMatmulHeuristicResult_t *r, double us)
{
    static const cublasLtMatmulAlgoConfigAttributes_t attr[] = {
        CUBLASLT_ALGO_CONFIG_ID, CUBLASLT_ALGO_CONFIG_TILE_ID, CUBLASLT_ALGO_CONFIG_STAGES_ID,
        CUBLASLT_ALGO_CONFIG_SPLITK_NUM, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
        CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION,
        CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID};
    static const char *name[] = {"id", "tile", "stages", "splitk", "red", "swz", "custom",
                                 "cluster"};
    printf("    #%-2d %8.1f us  waves %5.2f ", i, us, r->wavesCount);
    for (size_t a = 0; a < sizeof attr / sizeof *attr; a++) {
        uint32_t v = 0;
        uint16_t v16 = 0; /* the cluster shape id is 16-bit, the others 32 */
        size_t got = 0;
        const int narrow = attr[a] == CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID;
        if (cublasLtMatmulAlgoConfigGetAttribute(&r->algo, attr[a], narrow ? (void *)&v16 : &v,
                                                 narrow ? sizeof v16 : sizeof v,
                                                 &got) != CUBLAS_STATUS_SUCCESS)
            printf(" %s ?", name[a]);
        else
            printf(" %s %u", name[a], narrow ? (unsigned)v16 : v);
    }
    printf("\n");
}

/* bytes of dst filled with random bf16 of magnitude 2^-7 .. 2^-6, either
 * sign, from a host pattern of 16 MB repeated (seeded: the same every run). */
static void fill_random(void *dst, size_t bytes, unsigned seed)
{
    static uint16_t *pat;
    const size_t n = (size_t)8 << 20;
    if (!pat) {
        pat = malloc(n * sizeof *pat);
        check(!pat, "malloc");
    }
    srand(seed);
    for (size_t i = 0; i < n; i++)
        pat[i] = (uint16_t)(0x3c00u | ((unsigned)rand() & 0x3ffu) | (((unsigned)rand() & 1u) << 15));
    for (size_t off = 0; off < bytes; off += n * sizeof *pat) {
        size_t len = bytes - off < n * sizeof *pat ? bytes - off : n * sizeof *pat;
        check(cudaMemcpy((char *)dst + off, pat, len, cudaMemcpyHostToDevice) != cudaSuccess,
              "cudaMemcpy");
    }
}

int main(void)
{
    const int random = getenv("BENCH_LT_RANDOM") && *getenv("BENCH_LT_RANDOM") == '1';
    const uint32_t redmask = getenv("BENCH_LT_REDMASK")
                                 ? (uint32_t)strtoul(getenv("BENCH_LT_REDMASK"), NULL, 0)
                                 : CUBLASLT_REDUCTION_SCHEME_MASK;
    const char *lt_m = getenv("BENCH_LT_M");
    const int verbose = getenv("BENCH_LT_ALGOS") && *getenv("BENCH_LT_ALGOS") == '1';
    static const struct { const char *name; long n, k; } shape[] = {
        {"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096},
        {"down", 4096, 14336}, {"lm_head", 128256, 4096}};
    static const int tokens[] = {9, 16, 32, 64, 128, 256, 512, 2048, 8192};
    enum { MAX_M = 8192, MAX_M_LM = 512 }; /* lm_head scores a step's last rows only */
    int dev_count = 0;
    if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count < 1) {
        printf("SKIP bench_cuda_lt: no CUDA device\n");
        return 77;
    }
    cudaStream_t s;
    void *x, *y;
    check(cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS, "cublasLtCreate");
    check(cudaMalloc(&ws, ws_bytes) || cudaStreamCreate(&s), "setup");
    const size_t xb = (size_t)MAX_M * 14336 * 2;
    const size_t yb = (size_t)MAX_M * 28672 * 2 > (size_t)MAX_M_LM * 128256 * 2
                          ? (size_t)MAX_M * 28672 * 2 : (size_t)MAX_M_LM * 128256 * 2;
    check(cudaMalloc(&x, xb) || cudaMalloc(&y, yb), "cudaMalloc");
    check(cudaMemset(x, 0x3c, xb), "cudaMemset"); /* ~0.01: no zeros, no overflow */
    if (random)
        fill_random(x, xb, 1);
    printf("%-8s %4s %10s %10s %6s %6s %9s %9s %8s\n", "shape", "M", "first_us", "best_us", "which",
           "gain%", "first_TB/s", "best_TB/s", "first_TF/s");
    for (size_t si = 0; si < sizeof shape / sizeof *shape; si++) {
        size_t wb = (size_t)shape[si].n * (size_t)shape[si].k * 2;
        int copies = wb * ROT > ((size_t)6 << 30) ? 3 : ROT; /* lm_head: 3 copies still beat L2 */
        void *w[ROT];
        for (int r = 0; r < ROT; r++) {
            if (r < copies) {
                check(cudaMalloc(&w[r], wb) || cudaMemset(w[r], 0x3c + r, wb), "weights");
                if (random)
                    fill_random(w[r], wb, 2 + (unsigned)r);
            } else {
                w[r] = w[r % copies];
            }
        }
        for (size_t mi = 0; mi < sizeof tokens / sizeof *tokens; mi++) {
            long m = tokens[mi];
            if (m > (shape[si].n > 28672 ? MAX_M_LM : MAX_M))
                continue;
            char mstr[16];
            snprintf(mstr, sizeof mstr, " %ld ", m);
            if (lt_m) { /* " 32 128 " holds " 32 " */
                char padded[256];
                snprintf(padded, sizeof padded, " %s ", lt_m);
                if (!strstr(padded, mstr))
                    continue;
            }
            struct gemm g;
            cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
            cublasLtMatmulPreference_t pref;
            cublasLtMatmulHeuristicResult_t res[N_ALGO];
            int found = 0;
            check(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) ||
                  cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) ||
                  cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) ||
                  cublasLtMatrixLayoutCreate(&g.a, CUDA_R_16BF, shape[si].k, shape[si].n, shape[si].k) ||
                  cublasLtMatrixLayoutCreate(&g.b, CUDA_R_16BF, shape[si].k, m, shape[si].k) ||
                  cublasLtMatrixLayoutCreate(&g.c, CUDA_R_16BF, shape[si].n, m, shape[si].n) ||
                  cublasLtMatmulPreferenceCreate(&pref) ||
                  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &ws_bytes, sizeof ws_bytes) ||
                  cublasLtMatmulPreferenceSetAttribute(
                      pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &redmask, sizeof redmask) ||
                  cublasLtMatmulAlgoGetHeuristic(lt, g.desc, g.a, g.b, g.c, g.c, pref, N_ALGO, res,
                                                 &found),
                  "descriptors and heuristic");
            double first = -1, best = -1;
            int which = -1;
            int iters = wb > ((size_t)200 << 20) ? 20 : 100;
            for (int i = 0; i < found; i++) {
                double t = res[i].state == CUBLAS_STATUS_SUCCESS
                               ? time_algo(&g, &res[i].algo, w, x, y, s, iters) : -1;
                if (verbose)
                    print_algo(i, &res[i], t);
                if (i == 0)
                    first = t;
                if (t > 0 && (best < 0 || t < best))
                    best = t, which = i;
            }
            printf("%-8s %4ld %10.1f %10.1f %3d/%-2d %6.1f %9.2f %9.2f %8.0f\n", shape[si].name, m,
                   first, best, which, found, first > 0 ? 100.0 * (first - best) / first : 0.0,
                   first > 0 ? wb / first / 1e6 : 0.0, best > 0 ? wb / best / 1e6 : 0.0,
                   first > 0 ? (double)m * (double)wb / first / 1e6 : 0.0); /* 2mnk = m wb */
            cublasLtMatmulPreferenceDestroy(pref);
            cublasLtMatrixLayoutDestroy(g.a);
            cublasLtMatrixLayoutDestroy(g.b);
            cublasLtMatrixLayoutDestroy(g.c);
            cublasLtMatmulDescDestroy(g.desc);
        }
        for (int r = 0; r < copies; r++)
            cudaFree(w[r]);
    }
    cudaFree(x);
    cudaFree(y);
    cudaFree(ws);
    cudaStreamDestroy(s);
    cublasLtDestroy(lt);
    return 0;
}
