// The pieces of a flash-attention tile both prefill kernels share (the
// mma.sync one of attention-prefill.cu and the wgmma one of
// attention-prefill-wg.cu): their score and output accumulators have one
// layout, mma.sync's m16n8 fragments, a thread holding rows g and g + 8
// of its warp's 16 and columns 8 j + 2 t4, + 1 of each n8 block j:
//   s[j][0..1]: row g, s[j][2..3]: row g + 8.
// Needs sm_80 (the callers' launchers decline below).
#ifndef ZL_ATTENTION_TILE_CUH
#define ZL_ATTENTION_TILE_CUH

#include <stdint.h>

#include "cuda-kernels.h"
#include "cuda-mma.cuh"

namespace zlcuda {

// The query rows a CTA takes: BM rows from r0 of sequence blockIdx.y
// (query tiles reversed in blockIdx.z: the longest start first), and the
// key tiles of BN they see.  False when the sequence has no such rows.
struct q_tile {
    int r0, q0, n_new, kv_len, base, rows, n_tiles;
};
template <int BM, int BN>
__device__ __forceinline__ bool q_tile_of(const struct zl_cuda_batch &b, q_tile &t)
{
    const int s = blockIdx.y;
    t.r0 = (gridDim.z - 1 - blockIdx.z) * BM;
    t.q0 = b.q_start[s];
    t.n_new = b.q_start[s + 1] - t.q0;
    if (t.r0 >= t.n_new)
        return false;
    t.kv_len = b.kv_len[s];
    t.base = t.kv_len - t.n_new; // query row i sits at position base + i
    t.rows = min(BM, t.n_new - t.r0);
    t.n_tiles = (t.base + t.r0 + t.rows + BN - 1) / BN; // keys 0..base + r0 + rows - 1
    return true;
}

__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// 16 bytes of a q row at src; rows that are not 16-byte aligned (views
// into odd-width fused rows) go by 2 bytes.
__device__ __forceinline__ uint4 load16(const char *src, bool vec)
{
    if (vec)
        return __ldg(reinterpret_cast<const uint4 *>(src));
    const unsigned short *e = reinterpret_cast<const unsigned short *>(src);
    return make_uint4(e[0] | (uint32_t)e[1] << 16, e[2] | (uint32_t)e[3] << 16,
                      e[4] | (uint32_t)e[5] << 16, e[6] | (uint32_t)e[7] << 16);
}

// One key tile of online softmax for a thread's two rows: masks keys past
// each row's last (lim; only on tiles crossing the diagonal), moves the
// row max m (raw scores: sl2 = scale log2(e) > 0, so exp2(s sl2 - max sl2)
// is one FFMA), rescales O and the sum l when a max of the warp moved
// (else the factor would be exactly 1), leaves the weights P in s and
// adds them to l (per thread; the quad's sum is taken at the end).
template <int NS, int NO>
__device__ __forceinline__ void softmax_tile(float (&s)[NS][4], float (&o)[NO][4], float (&m)[2],
                                             float (&l)[2], const int (&lim)[2], int k0,
                                             bool diag, int t4, float sl2)
{
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int j = 0; j < NS; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (diag && k0 + 8 * j + 2 * t4 + (e & 1) > lim[e >> 1])
                s[j][e] = -INFINITY;
            mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
        }
#pragma unroll
    for (int x = 0; x < 2; x++) {
        mx[x] = fmaxf(mx[x], __shfl_xor_sync(0xffffffffu, mx[x], 1));
        mx[x] = fmaxf(mx[x], __shfl_xor_sync(0xffffffffu, mx[x], 2));
    }
    // A row with no key yet keeps max -inf: subtract 0 (all weights 0).
    const float ms[2] = {mx[0] == -INFINITY ? 0.0f : mx[0] * sl2,
                         mx[1] == -INFINITY ? 0.0f : mx[1] * sl2};
    if (__any_sync(0xffffffffu, mx[0] != m[0] || mx[1] != m[1])) {
#pragma unroll
        for (int x = 0; x < 2; x++) {
            const float corr = ex2(m[x] * sl2 - ms[x]);
            l[x] *= corr;
#pragma unroll
            for (int j = 0; j < NO; j++) {
                o[j][2 * x] *= corr;
                o[j][2 * x + 1] *= corr;
            }
        }
        m[0] = mx[0];
        m[1] = mx[1];
    }
    float sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NS; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            s[j][e] = ex2(fmaf(s[j][e], sl2, -ms[e >> 1]));
            sum[e >> 1] += s[j][e];
        }
    l[0] += sum[0];
    l[1] += sum[1];
}

// P's A fragment for keys 16 kk.. (the weights of n8 blocks 2 kk, 2 kk + 1)
// in the input dtype.
template <typename T, int NS>
__host__ __device__ __forceinline__ void p_fragment(uint32_t (&a)[4], const float (&s)[NS][4],
                                                    int kk)
{
    a[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
    a[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
    a[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// Writes the thread's two rows of O / l: row r (query row r of the
// sequence, q0 its first) and r + 8, those below n_new.
template <typename T, int NO>
__device__ __forceinline__ void store_rows(const struct zl_cuda_heads &out, int h, int q0, int r,
                                           int n_new, const float (&o)[NO][4], const float (&l)[2],
                                           int t4)
{
    const bool vec = ((uintptr_t)out.data | (uintptr_t)out.nb0 | (uintptr_t)out.nb1) % 4 == 0;
#pragma unroll
    for (int x = 0; x < 2; x++) {
        float lx = l[x];
        lx += __shfl_xor_sync(0xffffffffu, lx, 1);
        lx += __shfl_xor_sync(0xffffffffu, lx, 2);
        const float inv = 1.0f / lx;
        if (r + 8 * x >= n_new)
            continue;
        char *orow = static_cast<char *>(out.data) + (int64_t)(q0 + r + 8 * x) * out.nb0 +
                     (int64_t)h * out.nb1;
#pragma unroll
        for (int j = 0; j < NO; j++) {
            const uint32_t v = pack2<T>(o[j][2 * x] * inv, o[j][2 * x + 1] * inv);
            char *dst = orow + (8 * j + 2 * t4) * (int)sizeof(T);
            if (vec) {
                *reinterpret_cast<uint32_t *>(dst) = v;
            } else {
                reinterpret_cast<unsigned short *>(dst)[0] = (unsigned short)v;
                reinterpret_cast<unsigned short *>(dst)[1] = (unsigned short)(v >> 16);
            }
        }
    }
}

} // namespace zlcuda

#endif
