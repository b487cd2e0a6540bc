// The decode chain's dot products (decode-chain.cu): one or two weight
// rows of a ring slot against the staged input xs, by one warp.  Two ways,
// the same sums in another f32 order: FMAs over the lanes' 16-byte chunks,
// or (k a multiple of 128, sm_80+) m16n8k16 tensor-core MMAs.
//
// Why the MMAs: a warp's FMA loop spends ~26 instructions on 256 weights
// (two shared loads, 16 conversions to f32, 8 FMAs); the MMA form spends
// ~2.5 (an A load, half a B load, one MMA), and the chain's consumers are
// on the critical path at every phase's end, when the last tiles land.
// Batch 1 of Llama-3.1-8B on an H100: -0.7% a token (BENCHMARKS.md).
#ifndef ZL_DECODE_CHAIN_DOTS_CUH
#define ZL_DECODE_CHAIN_DOTS_CUH

#include <stdint.h>

#include "cuda-dtype.cuh"
#include "cuda-mma.cuh"

namespace zlchain {

using namespace zlcuda;

template <typename T> __device__ __forceinline__ float dot8(uint4 w, const float (&x)[8], float acc)
{
    const T *e = reinterpret_cast<const T *>(&w);
#pragma unroll
    for (int i = 0; i < 8; i++)
        acc = fmaf(to_f32<T>(e[i]), x[i], acc);
    return acc;
}

// FMAs: four accumulators a row over the lanes' 16-byte chunks, then
// summed over the warp (the same order every time).
template <typename T>
__device__ __forceinline__ void row_dots_fma(const uint4 *w1, const uint4 *w2, int k, const T *xs,
                                             int lane, float *s1, float *s2)
{
    float a1[4] = {}, a2[4] = {};
    const int ck = k / 8;
    for (int c0 = lane; c0 < ck; c0 += 128) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int c = c0 + 32 * i;
            if (c >= ck)
                break;
            const uint4 xv = reinterpret_cast<const uint4 *>(xs)[c];
            const T *xe = reinterpret_cast<const T *>(&xv);
            float xf[8];
#pragma unroll
            for (int e = 0; e < 8; e++)
                xf[e] = to_f32<T>(xe[e]);
            a1[i] = dot8<T>(w1[c], xf, a1[i]);
            if (w2)
                a2[i] = dot8<T>(w2[c], xf, a2[i]);
        }
    }
    *s1 = warp_sum((a1[0] + a1[1]) + (a1[2] + a1[3]));
    if (w2)
        *s2 = warp_sum((a2[0] + a2[1]) + (a2[2] + a2[3]));
}

// MMAs.  A step takes 16 chunks (8 elements each) of a row: A's row m
// (m < 8) is w1's chunks m and 8 + m, row 8 + m is w2's, and B's column n
// is xs's chunks n and 8 + n.  So D[m][m] and D[8 + m][m] are w1's and
// w2's partial dots over the chunks congruent to m mod 8, and the rest of
// D is thrown away: an eighth of the MMA's work counts, its instructions
// are what the loop saves.  Without w2, A's lower half repeats w1.
// The ldmatrix rows of each 8x8 matrix are 8 consecutive chunks (128
// bytes): no bank conflicts.  Four accumulators for the MMAs' latency,
// added in a fixed order, then the diagonal's 8 lanes over the warp.
template <typename T>
__device__ __forceinline__ void mma_step(float d[4], const uint4 *pa, uint32_t b0, uint32_t b1)
{
    uint32_t a[4];
    ldsm_x4(a, pa);
    mma<T>(d, a, b0, b1);
}

template <typename T>
__device__ __forceinline__ void row_dots_mma(const uint4 *w1, const uint4 *w2, int k, const T *xs,
                                             int lane, float *s1, float *s2)
{
    const int steps = k / 128, r = lane & 7, q = lane >> 3;
    // this lane's row of A's four 8x8 matrices: w1 k 0-7, w2 k 0-7, w1 k 8-15, w2 k 8-15
    const uint4 *pa = ((q & 1) && w2 ? w2 : w1) + (q >> 1) * 8 + r;
    const uint4 *xv = reinterpret_cast<const uint4 *>(xs);
    float d[4][4] = {};
    int st = 0;
    for (; st + 4 <= steps; st += 4) {
        uint32_t b[2][4]; // B of steps st, st + 1 and st + 2, st + 3: 32 chunks of xs
        ldsm_x4(b[0], xv + st * 16 + lane);
        ldsm_x4(b[1], xv + st * 16 + 32 + lane);
#pragma unroll
        for (int i = 0; i < 4; i++)
            mma_step<T>(d[i], pa + (st + i) * 16, b[i / 2][(i & 1) * 2], b[i / 2][(i & 1) * 2 + 1]);
    }
    for (; st < steps; st++) { // the last 1-3 steps (lanes 16-31 repeat 0-15's B rows)
        uint32_t b[4];
        ldsm_x4(b, xv + st * 16 + (lane & 15));
        mma_step<T>(d[0], pa + st * 16, b[0], b[1]);
    }
    float e[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
        e[i] = (d[0][i] + d[1][i]) + (d[2][i] + d[3][i]);
    // D's lane layout: e0, e1 at row g, columns 2 tg, 2 tg + 1; e2, e3 at row 8 + g
    const int g = lane >> 2, tg = lane & 3;
    const bool lo = g == 2 * tg, hi = g == 2 * tg + 1;
    *s1 = warp_sum(lo ? e[0] : hi ? e[1] : 0.0f);
    if (w2)
        *s2 = warp_sum(lo ? e[2] : hi ? e[3] : 0.0f);
}

// The dot products of one or two weight rows in a slot (rows of k
// elements, w2 may be null) with xs, by one warp; lane 0's s1 (and s2)
// are the sums.
template <typename T>
__device__ __forceinline__ void row_dots(bool use_mma, const uint4 *w1, const uint4 *w2, int k,
                                         const T *xs, int lane, float *s1, float *s2)
{
    if (ZL_MMA_OK && use_mma && k % 128 == 0)
        row_dots_mma<T>(w1, w2, k, xs, lane, s1, s2);
    else
        row_dots_fma<T>(w1, w2, k, xs, lane, s1, s2);
}

} // namespace zlchain

#endif
