// Decode-sized linear (cuda-kernels.h zl_cuda_gemv): out[n, o] = x[n, i] @
// w[o, i]^T for n <= 8 tokens, x and w bf16 or f16, f32 accumulation.
// Memory bound: the weights are read once, in 16-byte streaming loads
// (no L1 allocation, L2 evict-first so they do not push the activations
// out), and everything else is small.
//
// The products run on the tensor cores (mma.sync m16n8k16, f32
// accumulators): the 8 tokens are the n8 dimension, 16 weight rows the m16
// one, so n = 1..8 costs the same and no f32 FMA pipe or shared memory
// bandwidth limits n = 8.  The trick that lets the fragments come straight
// from 16-byte loads: a dot product does not care in which order its k
// terms are summed, so the k slots of an mma are assigned to columns in
// whatever order suits the loads, as long as A (w) and B (x) use the same
// one.  Lane (g = lane / 4, t = lane % 4) loads columns [8t, 8t + 8) of a
// 32-column chunk from w rows g and g + 8 and from x row (token) g; the
// first half of those 8 columns feeds k slots {2t, 2t+1, 2t+8, 2t+9} of
// one mma, the second half the same slots of a second mma.  A and B then
// pair the same columns (both fragments put k slots 2t.. in lane t of a
// quad), which is all a dot product needs.
//
// Work split: a block owns MT * 16 rows of w; its KW warps split the
// columns (chunks of 32, U chunks per step, all loads of a step issued
// before its mmas: U * MT * 2 16-byte weight loads in flight per lane),
// then sum their partial tiles through shared memory in a fixed order (the
// result does not depend on timing).  x comes through L1 (__ldg): it is at
// most 8 x i x 2 bytes, read once per block (n / (16 MT) of the weight
// bytes, from L1/L2).  Launched as a programmatic dependent on sm_90: the
// grid may start while the kernel before it drains, asks its first lines
// into L2 and waits (griddepcontrol.wait) before reading x or writing out.
//
// Measured (H100 80GB HBM3, CUDA 13.0, driver 580.159.04, test_cuda_gemv
// seed 777, bf16 w/x/out, median of 50 batches of 32 back-to-back calls
// over 8 rotated weight copies; GB/s of weight bytes; cuBLASLt through
// the same op with a zero bias):
//   [o, i]            n=1                 n=8                 cuBLASLt n=1
//   [6144, 4096]      19.9 us 2527 GB/s   20.5 us 2457 GB/s   22.6 us 2224
//   [4096, 4096]      14.1 us 2377        15.0 us 2233        24.3 us 1380
//   [28672, 4096]     83.1 us 2825        85.1 us 2760        85.0 us 2765
//   [4096, 14336]     45.8 us 2562        47.0 us 2496        46.4 us 2533
//   [128256, 4096]   345.8 us 3038       352.1 us 2984       381.4 us 2755
// Run-to-run spread is a few percent ([4096, 14336] n=1: 43.8 us in an
// earlier run).  The small matrices lose 3-4 us to the ramp and drain of a
// grid (32 MB is 11 us at 3 TB/s).  Block shapes swept (MT, KW, U):
// (1,8,4) (1,4,4) (2,4,4) (2,8,2) (2,8,4) (2,16,2) (4,8,2) (1,8,8), all
// within ~10% of each other; 16-warp blocks and U=8 were the slowest.  PDL
// on vs off: 1.3 us less per call on the 4096-row shapes.
// Not done: o <= 2048 (k/v projections of 1024 rows) gives 32 blocks for
// 132 SMs; those want more warps per row tile or a split over blocks.
//
// Fused modes (zl_cuda_gemv_ex, the backend's linear_fused): NORM reads x
// through an RMSNorm (warp k sums token k's squares after the PDL wait,
// then each x chunk is scaled and rounded as rms_norm rounds it);
// NORM_SWIGLU also takes w = [gate; up] and gives a block 8 MT gate rows in
// its first MT / 2 tiles and the matching up rows in the others, so the
// epilogue rounds both and stores silu(gate) * up; RESID adds a residual
// (out may be it) to the rounded sum.  Each saves the launch and the
// stream restart of one small kernel.  Measured in the model (Llama-3.1-8B
// bf16, batch 1): 7.31 -> 7.13 ms per token.  ncu (serialised, caches
// flushed) times the fused gate/up at 95.3 us, QKV 25.5 us, o/down 30.5 us
// on average, lm_head 345 us: the serialised ramp and drain of each grid
// is what the model loses against the back-to-back figures above.
//
// NORM_ROPE (zl_cuda_gemv_ex with rope, the backend's linear_rope_kv): the
// QKV projection with the norm in its prologue and RoPE plus the KV-cache
// write in its epilogue.  Its blocks take pairs of rows, element j and j +
// head_dim / 2 of one head, as NORM_SWIGLU takes gate and up rows; the
// shape pick and the column split are NORM's, so every row's sum is the
// one NORM computes, and the rotation is rope_kv_write's (cuda-rope.cuh):
// q rotated in out, k rotated and v into the cache, bit for bit what
// linear_fused then rope_kv_write leave.  Llama-3.1-8B bf16, batch 1, one
// H100, one device call: 6.806/6.815/6.804 -> 6.659/6.663/6.662 ms per
// token (the rope_kv_write launch and its gap gone from every layer).
// Tried in the same call and dropped (one run each): the QKV GEMV
// releasing attention only at its end, 6.685; each first-wave block of
// every GEMV asking 128 KB of its rows into L2 before its PDL wait
// (cp.async.bulk.prefetch.L2) instead of its first step's lines, 6.642,
// and 256 KB, 6.886 (34 MB of first-wave prefetch crowds L2).
//
// Shapes swept in the model (tuning build, ZL_GEMV_SHAPE forcing one
// (MT, KW, U) on every GEMV; Llama-3.1-8B bf16, 127 decode steps at batch
// 1; ncu's serialised sum of the GEMVs per forward in brackets): the
// default pick below 7.11 ms/token (6330 us), (2,8,2) everywhere 7.61
// (6307), (4,8,2) 7.28 (6489), (2,4,4) 8.02 (6520), (2,16,2) 7.73 (7044),
// (1,8,4) 8.09 (6928), (2,8,4) 8.08, (2,4,2) 8.51, (4,4,2) 8.57, (6,8,2)
// 8.81.  (2,8,2) for the SwiGLU GEMV alone is faster under ncu (90.6 vs
// 95.5 us) but slower in the model (7.45 vs 7.01 ms/token, two runs each):
// serialised timings do not rank shapes for a PDL chain.  One projection
// at a time (ZL_GEMV_ROWS, same build and machine, with the weight
// prefetch): default 6.78-6.81 ms/token; the QKV GEMV (6144 rows, 192
// blocks: 1.45 waves) as (3,8,2) (128 blocks, one wave) 6.80, (3,16,2)
// 6.93, (1,8,4) 6.98, (1,16,4) 6.98, (2,16,2) 6.92, (2,8,4) 6.95; the
// 4096-row o and down GEMVs as (1,8,4) 6.97, (1,16,4) 7.15, (3,8,2) 6.99,
// (2,16,2) 7.02, (2,8,2) 6.89.  The picks below stay.
//
// Tried and dropped: up to 32 tokens with two or four n8 token tiles per
// weight fragment (each lane loading tokens g, g + 8, ...).  Against
// cuBLASLt through the same op (test_cuda_gemv, us): [6144, 4096] n=16
// 24.7 vs 23.2, n=32 30.2 vs 23.6; [28672, 4096] n=16 106.2 vs 88.5, n=32
// 122.9 vs 86.4; [128256, 4096] n=32 484.4 vs 386.9 (only [4096, 14336]
// n=16 won, 43.4 vs 46.6); with the fused ops at batch 32 the model took
// 11.7-11.9 ms per step against 11.1-11.2.  The x fragments of 16-32
// tokens come through L1/L2 for every weight chunk and the mma count per
// weight byte grows with them: past 8 tokens cuBLASLt's tiles win.
// Tried and dropped too (2026-12-06): a separate kernel for 9-32 tokens
// with x staged once per block in shared memory (8 warps of 16 rows each,
// 128 rows a block, so x cost n / 128 of the weight bytes from L2; the
// columns split over blocks where the rows alone would not fill the GPU,
// f32 partials added in split order by each row tile's last block).  It
// was right (float64 checks, memcheck clean) and slow: H100, us per call
// against cuBLASLt, n = 16 / 32: [6144, 4096] 30.9 / 39.1 vs 23.1 / 23.5,
// [4096, 4096] 23.5 / 30.8 vs 17.8 / 16.2, [28672, 4096] 94.5 / 110.4 vs
// 84.7 / 86.3, [4096, 14336] 59.3 / 76.5 vs 46.6 / 47.4, [128256, 4096]
// 437.6 / 520.0 vs 380.2 / 383.3; Llama-3.1-8B batch 32 11.63 / 11.56
// ms a step against 8.51 / 8.46 (10.59 with it on the QKV and o
// projections only); those are with x staged by cp.async.  The first
// version, staging it with loads one after the other, on an H200: 9.63 /
// 9.60 against 6.53 / 6.55.  Neither cp.async, twice the blocks, nor 2
// chunks per register buffer closed the gap; the suspect left, not
// measured: each lane streams 64 bytes of 2 rows per chunk across 128
// rows (the GEMV's blocks read 1 KB windows of 32 rows).
// A third, with cp.async rings of 256-byte row runs and x shared by a
// CTA, reached 226 us for a layer's linears at 32 tokens against
// cuBLASLt's 181 (branch skinny-gemm; docs/cuda-perf-log.md, "A cp.async GEMM for
// 9-64 tokens"): the 128-byte runs of the first rings cost 347 us.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-pdl.cuh"
#include "cuda-rope.cuh"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_rows rows_t;

// 16 bytes of weights: read once, not kept in L1, first out of L2.
__device__ __forceinline__ uint4 ld_stream(const void *p, uint64_t policy)
{
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.L2::cache_hint.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p), "l"(policy));
    return v;
}

// c += A(16x16, w rows) * B(16x8, x^T), f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

// What a launch fuses around the product (zl_cuda_gemv_ex): nothing; an
// RMSNorm of x in the prologue; that plus the SwiGLU of the gate and up
// rows in the epilogue; a residual added in the epilogue; the norm plus
// RoPE and the KV-cache write in the epilogue (the QKV projection).
enum mode { PLAIN, NORM, NORM_SWIGLU, RESID, NORM_ROPE };

struct ex_t {
    const float *norm_w;        // [d] (NORM, NORM_SWIGLU)
    float eps;
    rows_t res;                 // [n, rows] of T (RESID)
    struct zl_cuda_gemv_rope rope; // NORM_ROPE
};

// The 8 values of a 16-byte x chunk at columns [col, col + 8) times inv and
// the norm weights, rounded back: the rms_norm kernel's formula.
template <typename T>
__device__ __forceinline__ uint4 norm8(uint4 v, const float *nw, int col, float inv)
{
    T *e = reinterpret_cast<T *>(&v);
    const float4 a = __ldg(reinterpret_cast<const float4 *>(nw + col));
    const float4 b = __ldg(reinterpret_cast<const float4 *>(nw + col + 4));
    const float f[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 8; i++)
        e[i] = from_f32<T>(to_f32<T>(e[i]) * inv * f[i]);
    return v;
}

// NORM_ROPE's store of one pair (j, j + hh) of head `head` of a token,
// x1 and x2 the product rounded as linear stores it: rope_kv_write's
// arithmetic (cuda-rope.cuh) on q (in out) and k (into the cache); out
// keeps k and v as they are, the cache gets v as it is.
template <typename T>
__device__ __forceinline__ void rope_store(const struct zl_cuda_gemv_rope &rp, char *orow, int tok,
                                           int64_t head, int j, int hh, T x1, T x2)
{
    const int64_t nq = rp.n_q_heads, nkv = rp.cache.n_kv_heads, c = head * 2 * hh + j;
    T *o = reinterpret_cast<T *>(orow);
    if (head >= nq + nkv) { // v
        T *vd = kv_row<T>(rp.cache, 1, rp.slot[tok]) + (head - nq - nkv) * 2 * hh;
        o[c] = vd[j] = x1;
        o[c + hh] = vd[j + hh] = x2;
        return;
    }
    float co, sn;
    rope_cos_sin((float)rp.pos[tok * rp.pos_step], rp.inv_freq[j], rp.attn_factor, &co, &sn);
    const float f1 = to_f32<T>(x1), f2 = to_f32<T>(x2);
    const T r1 = from_f32<T>(rot_lo(f1, f2, co, sn)), r2 = from_f32<T>(rot_hi(f1, f2, co, sn));
    if (head < nq) {
        o[c] = r1;
        o[c + hh] = r2;
        return;
    }
    T *kd = kv_row<T>(rp.cache, 0, rp.slot[tok]) + (head - nq) * 2 * hh;
    kd[j] = r1;
    kd[j + hh] = r2;
    o[c] = x1;
    o[c + hh] = x2;
}

template <typename T, typename O, int MT, int KW, int U, int MODE>
__global__ void __launch_bounds__(KW * 32) gemv_kernel(rows_t out, rows_t x, rows_t w, ex_t ex)
{
    __shared__ float red[KW][MT][16][8]; // [warp][tile][row][token] partial sums
    __shared__ float inv_s[8];           // NORM: 1 / rms of each token

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int n = (int)x.n, d = (int)w.d;
    const int64_t rows = w.n;

    // Rows past the end read the last row (always valid) and are not stored.
    // Paired modes: a block takes 8 MT pairs of rows, the first row of each
    // in its first MT / 2 tiles and the second in the rest, so both halves
    // of an output meet in this block's shared memory.  SwiGLU: w is [gate;
    // up] of `half` rows each, pair p is rows p and p + half.  RoPE: pair p
    // is element j = p % hh of head p / hh and element j + hh of it, hh =
    // head_dim / 2 (the rotate_half pairing).
    constexpr bool SWI = MODE == NORM_SWIGLU, ROPE = MODE == NORM_ROPE, PAIRED = SWI || ROPE;
    const int64_t half = rows / 2;
    const int hh = ROPE ? ex.rope.cache.head_dim / 2 : 1;
    const int64_t row0 = (int64_t)blockIdx.x * (PAIRED ? 8 * MT : 16 * MT);
    const char *wp[MT][2];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int64_t r;
            if constexpr (PAIRED) { // constexpr: MT / 2 is 0 in the 1-tile shapes
                const bool up = m >= MT / 2;
                r = row0 + (m % (MT / 2)) * 16 + h * 8 + g;
                r = r < half ? r : half - 1;
                if (SWI)
                    r += up ? half : 0;
                else
                    r = r / hh * (2 * hh) + r % hh + (up ? hh : 0);
            } else {
                r = row0 + m * 16 + h * 8 + g;
                r = r < rows ? r : rows - 1;
            }
            wp[m][h] = row_at(w.data, r, w.stride) + t * 16;
        }
    const bool has_x = g < n;
    const char *xp = row_at(x.data, has_x ? g : 0, x.stride) + t * 16;

    uint64_t policy;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));

    // Launched as a programmatic dependent (PDL, sm_90): this grid may start
    // while the kernel before it drains.  The weights do not depend on it:
    // the first step's lines are asked into L2 before waiting for x.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#pragma unroll
    for (int u = 0; u < U; u++)
        if ((warp * U + u) * 32 + t * 8 < d)
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    asm volatile("prefetch.global.L2 [%0];"
                                 ::"l"(wp[m][h] + (int64_t)(warp * U + u) * 64));
#endif
    // The kernel after this one may launch as soon as every block here runs
    // (it waits for this grid's end before touching what this one writes).
    pdl_release();
    pdl_wait();

    // RMSNorm prologue: warp k sums the squares of token k's row.
    float inv = 0.0f;
    if constexpr (MODE == NORM || MODE == NORM_SWIGLU || MODE == NORM_ROPE) {
        if (warp < n) {
            const char *xr = row_at(x.data, warp, x.stride);
            float ss = 0.0f;
            for (int c = lane * 8; c < d; c += 256) {
                uint4 v = __ldg(reinterpret_cast<const uint4 *>(xr + (int64_t)c * 2));
                const T *e = reinterpret_cast<const T *>(&v);
#pragma unroll
                for (int i = 0; i < 8; i++)
                    ss += to_f32<T>(e[i]) * to_f32<T>(e[i]);
            }
            ss = warp_sum(ss);
            if (lane == 0)
                inv_s[warp] = rsqrtf(ss / (float)d + ex.eps);
        }
        __syncthreads();
        inv = inv_s[has_x ? g : 0];
    }

    float acc[MT][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
        acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = 0.0f;

    const int chunks = (d + 31) / 32;
    for (int c0 = warp * U; c0 < chunks; c0 += KW * U) {
        uint4 wv[U][MT][2], xv[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int col = (c0 + u) * 32 + t * 8; // this lane's 8 columns
            const bool ok = col < d;
            const int64_t off = (int64_t)(c0 + u) * 64;
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    wv[u][m][h] = ok ? ld_stream(wp[m][h] + off, policy) : make_uint4(0, 0, 0, 0);
            xv[u] = ok && has_x ? __ldg(reinterpret_cast<const uint4 *>(xp + off))
                                : make_uint4(0, 0, 0, 0);
            if constexpr (MODE == NORM || MODE == NORM_SWIGLU || MODE == NORM_ROPE)
                if (ok && has_x)
                    xv[u] = norm8<T>(xv[u], ex.norm_w, col, inv);
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const uint4 lo = wv[u][m][0], hi = wv[u][m][1];
                mma16816<T>(acc[m], lo.x, hi.x, lo.y, hi.y, xv[u].x, xv[u].y);
                mma16816<T>(acc[m], lo.z, hi.z, lo.w, hi.w, xv[u].z, xv[u].w);
            }
    }

    // c0, c1: row g, tokens 2t, 2t+1; c2, c3: row g + 8, same tokens.
#pragma unroll
    for (int m = 0; m < MT; m++) {
        red[warp][m][g][2 * t] = acc[m][0];
        red[warp][m][g][2 * t + 1] = acc[m][1];
        red[warp][m][g + 8][2 * t] = acc[m][2];
        red[warp][m][g + 8][2 * t + 1] = acc[m][3];
    }
    __syncthreads();
    // Consecutive threads take consecutive rows of one token: coalesced stores.
    if constexpr (SWI) {
        // gate and up rounded to T first, then silu_mul's formula: what the
        // unfused ops store
        for (int e = threadIdx.x; e < MT * 8 * n; e += KW * 32) {
            const int tok = e / (MT * 8), r = e % (MT * 8);
            const int64_t row = row0 + r;
            if (row >= half)
                continue;
            float gs = 0.0f, us = 0.0f;
#pragma unroll
            for (int k = 0; k < KW; k++) {
                gs += red[k][r / 16][r % 16][tok];
                us += red[k][MT / 2 + r / 16][r % 16][tok];
            }
            const float gv = to_f32<T>(from_f32<T>(gs)), uv = to_f32<T>(from_f32<T>(us));
            store<O>(row_at(out.data, tok, out.stride), row, gv / (1.0f + expf(-gv)) * uv);
        }
    } else if constexpr (ROPE) {
        // the SwiGLU loop's pair sums, then rope_kv_write's stores
        for (int e = threadIdx.x; e < MT * 8 * n; e += KW * 32) {
            const int tok = e / (MT * 8), r = e % (MT * 8);
            const int64_t p = row0 + r;
            if (p >= half)
                continue;
            float lo = 0.0f, hi = 0.0f;
#pragma unroll
            for (int k = 0; k < KW; k++) {
                lo += red[k][r / 16][r % 16][tok];
                hi += red[k][MT / 2 + r / 16][r % 16][tok];
            }
            rope_store<T>(ex.rope, row_at(out.data, tok, out.stride), tok, p / hh, (int)(p % hh),
                          hh, from_f32<T>(lo), from_f32<T>(hi));
        }
    } else {
        for (int e = threadIdx.x; e < MT * 16 * n; e += KW * 32) {
            const int tok = e / (MT * 16), r = e % (MT * 16);
            const int64_t row = row0 + r;
            if (row >= rows)
                continue;
            float s = 0.0f;
#pragma unroll
            for (int k = 0; k < KW; k++)
                s += red[k][r / 16][r % 16][tok];
            if constexpr (MODE == RESID) // out = res + the product rounded to T, as add() would
                s = to_f32<T>(from_f32<T>(s)) + load<T>(row_at(ex.res.data, tok, ex.res.stride), row);
            store<O>(row_at(out.data, tok, out.stride), row, s);
        }
    }
}

template <typename T, typename O, int MT, int KW, int U, int MODE>
cudaError_t launch(const rows_t *out, const rows_t *x, const rows_t *w, const ex_t &ex,
                   cudaStream_t stream)
{
    constexpr bool PAIRED = MODE == NORM_SWIGLU || MODE == NORM_ROPE;
    const int64_t per_block = PAIRED ? 8 * MT : 16 * MT;
    const int64_t outs = PAIRED ? w->n / 2 : w->n;
    const dim3 grid((unsigned)((outs + per_block - 1) / per_block));
    return launch_pdl("gemv", gemv_kernel<T, O, MT, KW, U, MODE>, grid, dim3(KW * 32), 0, stream,
                      *out, *x, *w, ex);
}

// Block shapes picked from a sweep on an H100 (MT, KW, U of 1-4, 4-16,
// 2-8; see the header): long rows keep 4 chunks per step, big matrices
// take 64-row blocks, the rest 32-row blocks with 2 chunks per step.
#ifdef ZL_GEMV_TUNING
// A tuning build (CPPFLAGS=-DZL_GEMV_TUNING) takes ZL_GEMV_SHAPE="MT,KW,U"
// for every call (ZL_GEMV_SWIGLU_SHAPE for the SwiGLU ones), from the
// shapes instantiated here (the SwiGLU mode needs an even MT): a sweep in
// the model without a rebuild per shape.  ZL_GEMV_ROWS=N limits the
// forced shapes to matrices of N rows (one projection at a time).
template <typename T, typename O, int MODE>
cudaError_t tuned(const rows_t *out, const rows_t *x, const rows_t *w, const ex_t &ex,
                  cudaStream_t stream, bool *done)
{
    static int shapes[2] = {-1, -1}; // every call, SwiGLU calls
    static long rows = -1;
    static const char *const names[] = {"2,8,2", "2,8,4", "4,8,2", "2,4,2", "2,4,4",
                                        "4,4,2", "2,16,2", "1,8,4", "6,8,2", "3,8,2",
                                        "3,16,2", "1,16,4"};
    if (rows < 0) {
        const char *r = getenv("ZL_GEMV_ROWS");
        rows = r ? atol(r) : 0;
    }
    *done = false;
    if (rows > 0 && w->n != rows)
        return cudaSuccess;
    static const char *const vars[2] = {"ZL_GEMV_SHAPE", "ZL_GEMV_SWIGLU_SHAPE"};
    for (int v = 0; v < 2; v++)
        if (shapes[v] < 0) {
            const char *e = getenv(vars[v]);
            shapes[v] = 99;
            for (int i = 0; e && i < (int)(sizeof names / sizeof *names); i++)
                if (!strcmp(e, names[i]))
                    shapes[v] = i;
        }
    const int shape = MODE == NORM_SWIGLU && shapes[1] != 99 ? shapes[1] : shapes[0];
    const bool odd = shape == 7 || shape == 9 || shape == 10 || shape == 11; // MT odd or 1
    constexpr bool PAIRED = MODE == NORM_SWIGLU || MODE == NORM_ROPE;
    *done = true;
    switch (PAIRED && odd ? 1 : shape) {
    case 0: return launch<T, O, 2, 8, 2, MODE>(out, x, w, ex, stream);
    case 1: return launch<T, O, 2, 8, 4, MODE>(out, x, w, ex, stream);
    case 2: return launch<T, O, 4, 8, 2, MODE>(out, x, w, ex, stream);
    case 3: return launch<T, O, 2, 4, 2, MODE>(out, x, w, ex, stream);
    case 4: return launch<T, O, 2, 4, 4, MODE>(out, x, w, ex, stream);
    case 5: return launch<T, O, 4, 4, 2, MODE>(out, x, w, ex, stream);
    case 6: return launch<T, O, 2, 16, 2, MODE>(out, x, w, ex, stream);
    case 7: return launch<T, O, 1, 8, 4, PAIRED ? NORM : MODE>(out, x, w, ex, stream);
    case 8: return launch<T, O, 6, 8, 2, MODE>(out, x, w, ex, stream);
    case 9: return launch<T, O, 3, 8, 2, PAIRED ? NORM : MODE>(out, x, w, ex, stream);
    case 10: return launch<T, O, 3, 16, 2, PAIRED ? NORM : MODE>(out, x, w, ex, stream);
    case 11: return launch<T, O, 1, 16, 4, PAIRED ? NORM : MODE>(out, x, w, ex, stream);
    }
    *done = false;
    return cudaSuccess;
}
#endif

template <typename T, typename O, int MODE>
cudaError_t pick(const rows_t *out, const rows_t *x, const rows_t *w, const ex_t &ex,
                 cudaStream_t stream)
{
#ifdef ZL_GEMV_TUNING
    bool done;
    cudaError_t e = tuned<T, O, MODE>(out, x, w, ex, stream, &done);
    if (done)
        return e;
#endif
    if (w->d >= 8192)
        return launch<T, O, 2, 8, 4, MODE>(out, x, w, ex, stream);
    if (w->n * w->d >= ((int64_t)1 << 26))
        return launch<T, O, 4, 8, 2, MODE>(out, x, w, ex, stream);
    return launch<T, O, 2, 8, 2, MODE>(out, x, w, ex, stream);
}

// What every mode needs: 16-bit x and w of one dtype, n <= 8, 16-byte rows.
bool takes(const rows_t *out, const rows_t *x, const rows_t *w)
{
    const enum zl_dtype dt = w->dtype;
    if ((dt != ZL_DTYPE_BF16 && dt != ZL_DTYPE_F16) || x->dtype != dt ||
        (out->dtype != ZL_DTYPE_F32 && out->dtype != dt))
        return false;
    if (x->n < 1 || x->n > ZL_CUDA_GEMV_MAX_ROWS || out->n != x->n || x->d != w->d || w->n < 1 ||
        w->d < 8 || w->d % 8 || w->d > INT32_MAX - 64)
        return false;
    // 16-byte loads of w and x rows
    if (((uintptr_t)w->data | (uintptr_t)w->stride | (uintptr_t)x->data | (uintptr_t)x->stride) & 15)
        return false;
    return w->n <= (int64_t)UINT32_MAX * 8 && device_major() >= 8;
}

} // namespace

extern "C" cudaError_t zl_cuda_gemv(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                                    const struct zl_cuda_rows *w, cudaStream_t stream)
{
    if (!takes(out, x, w) || out->d != w->n)
        return cudaErrorNotSupported;
    const ex_t ex = {};
    return with_float_types(w->dtype, out->dtype, [&](auto tw, auto to) -> cudaError_t {
        using T = decltype(tw);
        using O = decltype(to);
        if constexpr (sizeof(T) != 2 || (sizeof(O) != 4 && !std::is_same<O, T>::value))
            return cudaErrorNotSupported;
        else
            return pick<T, O, PLAIN>(out, x, w, ex, stream);
    });
}

// The rope epilogue's geometry: [q | k | v] heads of one head_dim over
// out's columns, full rotary pairs, a cache of w's dtype.  The device
// pointers are not looked at: a caller asks before its uploads.
static bool rope_takes(const rows_t *out, const rows_t *w, const struct zl_cuda_gemv_rope *r)
{
    const struct zl_cuda_kv &c = r->cache;
    const int64_t hd = c.head_dim;
    return hd >= 2 && hd % 2 == 0 && r->n_q_heads >= 1 && c.n_kv_heads >= 1 &&
           c.dtype == w->dtype && c.block_size >= 1 &&
           out->d == (r->n_q_heads + 2 * (int64_t)c.n_kv_heads) * hd;
}

extern "C" int zl_cuda_gemv_ex_takes(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                                     const struct zl_cuda_rows *w,
                                     const struct zl_cuda_gemv_fuse *f)
{
    const bool norm = f->norm_w != nullptr, res = f->res != nullptr, rope = f->rope != nullptr;
    if (!takes(out, x, w) || out->dtype != w->dtype || (norm && res) || (f->swiglu && !norm) ||
        (!norm && !res) || (rope && (!norm || f->swiglu)))
        return 0;
    if (out->d != (f->swiglu ? w->n / 2 : w->n) || (f->swiglu && w->n % 2) ||
        (norm && ((uintptr_t)f->norm_w & 15)))
        return 0;
    if (res && (f->res->n != out->n || f->res->d != out->d || f->res->dtype != out->dtype))
        return 0;
    return !rope || rope_takes(out, w, f->rope);
}

extern "C" cudaError_t zl_cuda_gemv_ex(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                                       const struct zl_cuda_rows *w,
                                       const struct zl_cuda_gemv_fuse *f, cudaStream_t stream)
{
    if (!zl_cuda_gemv_ex_takes(out, x, w, f))
        return cudaErrorNotSupported;
    ex_t ex = {};
    ex.norm_w = f->norm_w;
    ex.eps = f->eps;
    if (f->res)
        ex.res = *f->res;
    if (f->rope)
        ex.rope = *f->rope;
    const int mode = f->res ? RESID : f->swiglu ? NORM_SWIGLU : f->rope ? NORM_ROPE : NORM;
    return with_float_type(w->dtype, [&](auto tw) -> cudaError_t {
        using T = decltype(tw);
        if constexpr (sizeof(T) != 2)
            return cudaErrorNotSupported;
        else if (mode == RESID)
            return pick<T, T, RESID>(out, x, w, ex, stream);
        else if (mode == NORM_SWIGLU)
            return pick<T, T, NORM_SWIGLU>(out, x, w, ex, stream);
        else if (mode == NORM_ROPE)
            return pick<T, T, NORM_ROPE>(out, x, w, ex, stream);
        else
            return pick<T, T, NORM>(out, x, w, ex, stream);
    });
}
