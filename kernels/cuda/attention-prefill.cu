// Tensor-core paged flash attention (FlashAttention-2 style) for varlen
// batches: prefill prompts, prefill chunks over a cached prefix, mixed steps.
//
// One CTA of NW warps per (tile of BM = 16 NW query rows of one sequence,
// query head); warp w owns rows 16w..16w+15 of the tile and keeps them in
// mma.sync m16n8k16 fragments: Q (bf16/f16) in registers for the whole
// kernel, the S = Q K^T accumulators and O in f32 registers.  K/V tiles of
// BN = 64 keys are gathered from the paged cache through the block table
// with cp.async (16-byte chunks, zero-filled past kv_len) into a double
// buffer of XOR-swizzled shared memory (ldmatrix is conflict-free: the
// 16-byte chunk c of row r sits at c ^ (r & 7)).  The online softmax runs
// on the accumulator layout (a thread holds rows g and g + 8 of its warp's
// 16, a quad of threads shares a row): exp2 with scale * log2(e) folded in,
// P rounded to the input dtype for the PV product, the row sums l kept in
// f32 per thread and reduced over the quad once at the end.
//
// Causality: query row i of a sequence sits at position kv_len - n_new + i
// and sees keys 0..that; a tile stops at the last key its last row sees
// (tiles above the diagonal are never loaded) and only tiles crossing the
// diagonal are masked.  GQA: q head h reads kv head h / (n_q / n_kv).
// Tiles are launched longest first (reversed blockIdx.x) so the causal
// triangle's long tiles do not trail.
//
// Takes q/out/cache in f16 or bf16 (one dtype), head_dim 64 or 128, a
// power-of-two block size and a 16-byte aligned pool; declines the rest
// with cudaErrorNotSupported (the generic kernel of attention.cu runs).
// Needs sm_80 (mma.sync bf16, cp.async, ldmatrix); built for an older
// target the kernel body is empty and the launcher declines.
#include <stdint.h>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"

namespace {

typedef struct zl_cuda_heads heads_t;
typedef struct zl_cuda_kv kv_t;
typedef struct zl_cuda_batch batch_t;

constexpr int BN = 64;          // keys per K/V tile

// The 16-byte chunk slot of (row, chunk) in a swizzled tile of CH chunks a row.
template <int CH> __device__ __forceinline__ int swz(int row, int ch)
{
    return row * CH + (ch ^ (row & 7));
}

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800

// 16 bytes global -> shared, asynchronously; bytes = 0 zero-fills.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// d += a (16x16, row) * b (16x8, col), f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float d[4], const uint32_t a[4], uint32_t b0,
                                                   uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma<__half>(float d[4], const uint32_t a[4], uint32_t b0,
                                            uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one register of two 16-bit values (lo = the lower column).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi)
{
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

#endif

template <typename T, int HD, int NW>
__global__ void __launch_bounds__(NW * 32, NW >= 8 ? 1 : 2)
    prefill_kernel(heads_t o, heads_t q, kv_t c, batch_t b, float sl2, int bs_shift)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    constexpr int BM = 16 * NW, CH = HD / 8, NT = NW * 32;
    constexpr int KT = HD / 16;  // k-steps of S = Q K^T
    constexpr int NS = BN / 8;   // n-tiles of S
    constexpr int NO = HD / 8;   // n-tiles of O
    static_assert(NT % CH == 0 && (BN * CH) % NT == 0, "tile loads");
    extern __shared__ uint4 smem[];
    uint4 *sq = smem;                 // [BM][CH]
    uint4 *sk = sq + BM * CH;         // [2][BN][CH]
    uint4 *sv = sk + 2 * BN * CH;     // [2][BN][CH]

    const int s = blockIdx.y, h = blockIdx.z;
    const int r0 = (gridDim.x - 1 - blockIdx.x) * BM;
    const int q0 = b.q_start[s], n_new = b.q_start[s + 1] - q0;
    if (r0 >= n_new)
        return;
    const int kv_len = b.kv_len[s], base = kv_len - n_new;
    const int rows = min(BM, n_new - r0);
    const int n_tiles = (base + r0 + rows + BN - 1) / BN; // keys 0..base + r0 + rows - 1
    const int kvh = h / (int)(q.heads / c.n_kv_heads);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int32_t *table = b.block_table + (int64_t)s * b.max_blocks;
    const int64_t row_bytes = (int64_t)c.n_kv_heads * HD * (int64_t)sizeof(T);
    const int64_t v_off = (int64_t)c.block_size * row_bytes; // V after K in a block
    const char *kv_base = c.base + ((int64_t)c.layer * 2 * c.block_size) * row_bytes +
                          (int64_t)kvh * HD * (int64_t)sizeof(T);

    // K/V tile t into buffer buf: thread covers chunk `ch` of rows r, r + NT/CH, ...
    auto load_kv = [&](int t, int buf) {
        const int ch = tid % CH;
#pragma unroll
        for (int i = 0; i < BN * CH / NT; i++) {
            const int r = tid / CH + i * (NT / CH), p = t * BN + r;
            const char *src = c.base;
            int bytes = 0;
            if (p < kv_len) {
                const int blk = table[p >> bs_shift], off = p & (c.block_size - 1);
                src = kv_base + (int64_t)blk * (int64_t)c.block_stride + off * row_bytes + ch * 16;
                bytes = 16;
            }
            cp_async16(&sk[buf * BN * CH + swz<CH>(r, ch)], src, bytes);
            cp_async16(&sv[buf * BN * CH + swz<CH>(r, ch)], bytes ? src + v_off : src, bytes);
        }
        cp_async_commit();
    };
    load_kv(0, 0);

    // Q tile -> shared (rows past the sequence are zeros); strided rows that
    // are not 16-byte aligned (views into odd-width fused rows) go by 2 bytes.
    {
        const bool vec = ((uintptr_t)q.data | (uintptr_t)q.nb0 | (uintptr_t)q.nb1) % 16 == 0;
        for (int idx = tid; idx < BM * CH; idx += NT) {
            const int r = idx / CH, ch = idx % CH;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (r < rows) {
                const char *src = static_cast<const char *>(q.data) + (int64_t)(q0 + r0 + r) * q.nb0 +
                                  (int64_t)h * q.nb1 + ch * 16;
                if (vec) {
                    v = __ldg(reinterpret_cast<const uint4 *>(src));
                } else {
                    const unsigned short *e = reinterpret_cast<const unsigned short *>(src);
                    v.x = e[0] | (uint32_t)e[1] << 16;
                    v.y = e[2] | (uint32_t)e[3] << 16;
                    v.z = e[4] | (uint32_t)e[5] << 16;
                    v.w = e[6] | (uint32_t)e[7] << 16;
                }
            }
            sq[swz<CH>(r, ch)] = v;
        }
    }
    __syncthreads();
    uint32_t qf[KT][4];
#pragma unroll
    for (int kk = 0; kk < KT; kk++)
        ldsm_x4(qf[kk], &sq[swz<CH>(warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                    2 * kk + (lane >> 4))]);

    // This thread's two rows (g, g + 8 of the warp's 16) and their last key.
    const int g = lane >> 2, t4 = lane & 3;
    const int ra = r0 + warp * 16 + g;
    const int lim_a = min(base + ra, kv_len - 1), lim_b = min(base + ra + 8, kv_len - 1);
    float oacc[NO][4];
#pragma unroll
    for (int j = 0; j < NO; j++)
        oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;

    for (int t = 0; t < n_tiles; t++) {
        if (t + 1 < n_tiles) {
            load_kv(t + 1, (t + 1) & 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const uint4 *kb = sk + (t & 1) * BN * CH, *vb = sv + (t & 1) * BN * CH;

        float sacc[NS][4];
#pragma unroll
        for (int j = 0; j < NS; j++)
            sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++)
#pragma unroll
            for (int jp = 0; jp < NS / 2; jp++) {
                uint32_t bf[4];
                ldsm_x4(bf, &kb[swz<CH>(16 * jp + (lane & 7) + (lane >> 4) * 8,
                                        2 * kk + ((lane >> 3) & 1))]);
                mma<T>(sacc[2 * jp], qf[kk], bf[0], bf[1]);
                mma<T>(sacc[2 * jp + 1], qf[kk], bf[2], bf[3]);
            }

        // Scale into log2 units; mask keys past each row's last (diagonal tiles only).
        const int k0 = t * BN;
        const bool diag = k0 + BN - 1 > base + r0;
        float mx_a = m_a, mx_b = m_b;
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = sacc[j][e] * sl2;
                if (diag) {
                    const int key = k0 + 8 * j + 2 * t4 + (e & 1);
                    if (key > (e < 2 ? lim_a : lim_b))
                        x = -INFINITY;
                }
                sacc[j][e] = x;
                if (e < 2)
                    mx_a = fmaxf(mx_a, x);
                else
                    mx_b = fmaxf(mx_b, x);
            }
#pragma unroll
        for (int x = 1; x <= 2; x <<= 1) {
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, x));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, x));
        }
        // A row with no key yet keeps max -inf: subtract 0 then (all weights 0).
        const float ua = mx_a == -INFINITY ? 0.0f : mx_a, ub = mx_b == -INFINITY ? 0.0f : mx_b;
        const float ca = ex2(m_a - ua), cb = ex2(m_b - ub);
        m_a = mx_a;
        m_b = mx_b;
        float sa = 0.0f, sb = 0.0f;
#pragma unroll
        for (int j = 0; j < NS; j++) {
            sacc[j][0] = ex2(sacc[j][0] - ua);
            sacc[j][1] = ex2(sacc[j][1] - ua);
            sacc[j][2] = ex2(sacc[j][2] - ub);
            sacc[j][3] = ex2(sacc[j][3] - ub);
            sa += sacc[j][0] + sacc[j][1];
            sb += sacc[j][2] + sacc[j][3];
        }
        l_a = l_a * ca + sa;
        l_b = l_b * cb + sb;
#pragma unroll
        for (int j = 0; j < NO; j++) {
            oacc[j][0] *= ca;
            oacc[j][1] *= ca;
            oacc[j][2] *= cb;
            oacc[j][3] *= cb;
        }

        // O += P V: the S accumulators of key tiles 2kk, 2kk + 1 are the A fragment.
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t pa[4] = {pack2<T>(sacc[2 * kk][0], sacc[2 * kk][1]),
                              pack2<T>(sacc[2 * kk][2], sacc[2 * kk][3]),
                              pack2<T>(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]),
                              pack2<T>(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < NO / 2; dp++) {
                uint32_t bf[4];
                ldsm_x4_t(bf, &vb[swz<CH>(16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8,
                                          2 * dp + (lane >> 4))]);
                mma<T>(oacc[2 * dp], pa, bf[0], bf[1]);
                mma<T>(oacc[2 * dp + 1], pa, bf[2], bf[3]);
            }
        }
        __syncthreads(); // the next iteration's loads overwrite this buffer
    }

#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        l_a += __shfl_xor_sync(0xffffffffu, l_a, x);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, x);
    }
    const float ia = 1.0f / l_a, ib = 1.0f / l_b;
    const bool vec = ((uintptr_t)o.data | (uintptr_t)o.nb0 | (uintptr_t)o.nb1) % 4 == 0;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = ra + 8 * half;
        if (r >= n_new)
            continue;
        const float inv = half ? ib : ia;
        char *orow = static_cast<char *>(o.data) + (int64_t)(q0 + r) * o.nb0 + (int64_t)h * o.nb1;
#pragma unroll
        for (int j = 0; j < NO; j++) {
            const uint32_t v = pack2<T>(oacc[j][2 * half] * inv, oacc[j][2 * half + 1] * inv);
            char *dst = orow + (8 * j + 2 * t4) * (int)sizeof(T);
            if (vec) {
                *reinterpret_cast<uint32_t *>(dst) = v;
            } else {
                reinterpret_cast<unsigned short *>(dst)[0] = (unsigned short)v;
                reinterpret_cast<unsigned short *>(dst)[1] = (unsigned short)(v >> 16);
            }
        }
    }
#endif
}

template <typename T, int HD, int NW>
cudaError_t launch(const heads_t *out, const heads_t *q, const kv_t *cache, const batch_t *b,
                   const struct zl_cuda_attn_shape *sh, float scale, int bs_shift,
                   cudaStream_t stream)
{
    constexpr int BM = 16 * NW;
    constexpr size_t smem = (size_t)(BM + 4 * BN) * HD * sizeof(T);
    auto kern = prefill_kernel<T, HD, NW>;
    // Once per device: raise the dynamic shared memory limit, and find out
    // whether the kernel was built for sm_80+ (else it is an empty body).
    static signed char ready[64]; // 0 unknown, 1 usable, -1 not for this device
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess)
        return e;
    if (dev < 0 || dev >= 64)
        return cudaErrorNotSupported;
    if (ready[dev] == 0) {
        cudaFuncAttributes fa;
        if ((e = cudaFuncGetAttributes(&fa, kern)) != cudaSuccess)
            return e;
        if (fa.binaryVersion < 80) {
            ready[dev] = -1;
        } else {
            e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
            if (e != cudaSuccess)
                return e;
            ready[dev] = 1;
        }
    }
    if (ready[dev] < 0)
        return cudaErrorNotSupported;
    dim3 grid((unsigned)((sh->max_q_len + BM - 1) / BM), (unsigned)b->n_seqs, (unsigned)q->heads);
    kern<<<grid, NW * 32, smem, stream>>>(*out, *q, *cache, *b, scale * 1.4426950408889634f,
                                          bs_shift);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_hd(const heads_t *out, const heads_t *q, const kv_t *cache, const batch_t *b,
                      const struct zl_cuda_attn_shape *sh, float scale, int bs_shift,
                      cudaStream_t stream)
{
    if (cache->head_dim == 128)
        return launch<T, 128, 8>(out, q, cache, b, sh, scale, bs_shift, stream);
    return launch<T, 64, 8>(out, q, cache, b, sh, scale, bs_shift, stream);
}

} // namespace

extern "C" cudaError_t zl_cuda_attention_prefill(const heads_t *out, const heads_t *q,
                                                 const kv_t *cache, const batch_t *b,
                                                 const struct zl_cuda_attn_shape *sh, float scale,
                                                 cudaStream_t stream)
{
    int bs = cache->block_size, bs_shift = 0;
    while (bs_shift < 30 && (1 << bs_shift) < bs)
        bs_shift++;
    if ((cache->head_dim != 64 && cache->head_dim != 128) || q->dtype != cache->dtype ||
        out->dtype != q->dtype || (q->dtype != ZL_DTYPE_BF16 && q->dtype != ZL_DTYPE_F16) ||
        (1 << bs_shift) != bs || (uintptr_t)cache->base % 16 || cache->block_stride % 16)
        return cudaErrorNotSupported;
    if (b->n_seqs == 0 || sh->max_q_len == 0)
        return cudaSuccess;
    if (b->n_seqs > 65535 || q->heads > 65535)
        return cudaErrorNotSupported;
    if (q->dtype == ZL_DTYPE_BF16)
        return launch_hd<__nv_bfloat16>(out, q, cache, b, sh, scale, bs_shift, stream);
    return launch_hd<__half>(out, q, cache, b, sh, scale, bs_shift, stream);
}
