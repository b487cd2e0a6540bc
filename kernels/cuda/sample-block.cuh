/* What sample.cu's passes share: the block's shared memory, order-
 * preserving float keys and radix digits, the thread's chunk walk,
 * deterministic block reductions and scans, and the tempered values.
 * Included once, by sample.cu.  (The draw's uniform is zlight/sampler.h's.) */
#ifndef ZL_SAMPLE_BLOCK_CUH
#define ZL_SAMPLE_BLOCK_CUH

#include <math.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "cuda-sample.h"

#define NT ZL_CUDA_SAMPLE_THREADS
#define NW (NT / 32)
#define FULL 0xffffffffu
#define NBINS 2048
#define CAP 2048        /* candidates compacted into shared memory */

struct smem {
    struct zl_sample_row row;
    unsigned cnt[NBINS];
    double mass[NBINS];
    double wd[NW];
    unsigned wu[NW];
    unsigned long long wq[NW];
    double d0;
    unsigned long long q0;
    int xb, lowest, n_top, flag;
    unsigned xabove, xtotal;
    double xabove_d;
    float tok_raw;
    float top_v[ZL_SAMPLE_MAX_LOGPROBS];
    int top_i[ZL_SAMPLE_MAX_LOGPROBS];
    int n_list;
    int lid[CAP];               /* compacted candidates: ids ascending ... */
    float le[CAP];              /* ... and their tempered values */
};

/* radix digits over 32-bit keys: 11, 11, 10 bits from the top */
__constant__ int c_shift[3] = {21, 10, 0};
__constant__ int c_bits[3] = {11, 11, 10};

/* float -> uint32 with the same order (NaN aside); -0 and +0 compare
 * equal as floats, so they share a key (ties then go to the lower id) */
__device__ __forceinline__ uint32_t ord(float f)
{
    uint32_t b = __float_as_uint(f);
    b = b == 0x80000000u ? 0u : b;
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float unord(uint32_t k)
{
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* Calls f(i, l[i]) for the thread's ids in order, loading UNR values at
 * once: a thread walks ~V/1024 ids, and one load in flight per thread
 * would leave the pass bound by memory latency. */
#define UNR 8
template <class F>
__device__ __forceinline__ void for_chunk(const float *l, int beg, int end, F f)
{
    int i = beg;
    for (; i + UNR <= end; i += UNR) {
        float v[UNR];
#pragma unroll
        for (int j = 0; j < UNR; j++)
            v[j] = l[i + j];
#pragma unroll
        for (int j = 0; j < UNR; j++)
            f(i + j, v[j]);
    }
    for (; i < end; i++)
        f(i, l[i]);
}

/* ---- deterministic block reductions and scans (all threads call) ---- */

/* One block reduction for both: a butterfly in each warp, then warp 0
 * over the warps' results (op(v, other lane's v): the same order every
 * time); the result through *out to every thread. */
template <typename V, class Op>
__device__ __forceinline__ V block_reduce(V v, V *warps, V *out, Op op)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int o = 16; o; o >>= 1)
        v = op(v, __shfl_xor_sync(FULL, v, o));
    __syncthreads();
    if (lane == 0)
        warps[w] = v;
    __syncthreads();
    if (w == 0) {
        v = warps[lane];
        for (int o = 16; o; o >>= 1)
            v = op(v, __shfl_xor_sync(FULL, v, o));
        if (lane == 0)
            *out = v;
    }
    __syncthreads();
    return *out;
}

__device__ double block_sum(double v, smem &s)
{
    return block_reduce(v, s.wd, &s.d0, [](double a, double b) { return a + b; });
}

__device__ unsigned long long block_max(unsigned long long v, smem &s)
{
    return block_reduce(v, s.wq, &s.q0,
                        [](unsigned long long a, unsigned long long b) { return b > a ? b : a; });
}

/* Inclusive and exclusive scans over the threads in order; ws holds the
 * per-warp sums (s.wu or s.wd of the block's shared memory). */
template <typename V> __device__ void scan_in(V v, V *incl, V *excl, V *ws)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        V x = __shfl_up_sync(FULL, v, o);
        if (lane >= o)
            v += x;
    }
    __syncthreads();
    if (lane == 31)
        ws[w] = v;
    __syncthreads();
    if (w == 0) {
        V t = ws[lane];
        for (int o = 1; o < 32; o <<= 1) {
            V x = __shfl_up_sync(FULL, t, o);
            if (lane >= o)
                t += x;
        }
        ws[lane] = t;
    }
    __syncthreads();
    V off = w ? ws[w - 1] : V(0);
    V ex = __shfl_up_sync(FULL, v, 1);
    *incl = v + off;
    *excl = (lane ? ex : V(0)) + off;
}

__device__ void block_scan(unsigned v, unsigned *incl, unsigned *excl, smem &s)
{
    scan_in(v, incl, excl, s.wu);
}

__device__ void block_scan(double v, double *incl, double *excl, smem &s)
{
    scan_in(v, incl, excl, s.wd);
}

/* ---- the tempered values ---- */

/* The CPU's value: exp of the float gap times 1/T, rounded from double;
 * 0 (without the exp) when x < cut, where cut proves e < the threshold. */
__device__ __forceinline__ float e_of(float l, float mx, float inv_t, double cut)
{
    if (l == mx)
        return 1.0f;
    float x = __fmul_rn(__fsub_rn(l, mx), inv_t);
    if ((double)x < cut)
        return 0.0f;
    return (float)exp((double)x);
}

/* x below this gives e < lo: exp(x) < lo * e^-0.001, far more than float
 * rounding can recover; for subnormal lo only the underflow bound holds. */
__device__ __forceinline__ double cut_for(float lo)
{
    return lo >= 1.17549435e-38f ? log((double)lo) - 1e-3 : -105.0;
}

#endif
