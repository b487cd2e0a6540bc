// Tensor-core paged flash attention (FlashAttention-2 style) for varlen
// batches: prefill prompts, prefill chunks over a cached prefix, mixed steps.
//
// One CTA of NW warps per (tile of BM = 16 MT NW query rows of one sequence,
// query head); warp w owns MT m16 tiles of rows and keeps them in mma.sync
// m16n8k16 fragments: Q (bf16/f16) in registers (or re-read per tile), the
// S = Q K^T accumulators and O in f32 registers.  K/V tiles of BN = 64
// keys are gathered from the paged cache through the block table (block
// ids read one tile ahead) with cp.async (16-byte chunks, zero-filled past
// kv_len) into double-buffered, XOR-swizzled shared memory (ldmatrix is
// conflict-free: the 16-byte chunk c of row r sits at c ^ (r & 7)).  The
// online softmax runs on the accumulator layout (a thread holds rows g and
// g + 8 of each m16 tile, a quad of threads shares a row): exp2 of one FFMA
// (scale * log2(e) folded in), O rescaled only when a row max of the warp
// moved, P rounded to the input dtype for the PV product, the row sums l
// kept in f32 per thread and reduced over the quad once at the end.
//
// Causality: query row i of a sequence sits at position kv_len - n_new + i
// and sees keys 0..that; a tile stops at the last key its last row sees
// (tiles above the diagonal are never loaded) and only tiles crossing the
// diagonal are masked.  GQA: q head h reads kv head h / (n_q / n_kv).
// Grid (n_q_heads, n_seqs, query tiles), the tile index reversed: every
// head's longest (last) tiles start first and the heads of one kv head run
// side by side.  With tiles in x and heads in z the last heads' long
// tiles started last and trailed: that order, with the block ids read
// inline and O always rescaled, took 200 us for the 2048 prompt below
// (same tile shape; 166.6 us now).
//
// H100, one 2048-token causal prompt of a Llama-3.1-8B layer (32/8 heads of
// 128, bf16, 34.4 GFLOP): 139.0 us through the backend (247 TFLOP/s;
// bench_cuda_ops) with the long-prompt shape below, 4 warps of 2 m-tiles
// with Q re-read from shared memory (cfg<4, 2, false, 2>); 8 warps of one
// tile with Q in registers took 163.5 us.  The generic kernel: 17.8 ms.
// Chunk of 512 rows on an 8192-token prefix: 264 us (268 TFLOP/s).  All
// shapes tried give bit-identical outputs.  3 K/V stages with one barrier
// a tile (ZL_PREFILL_STAGES=3) were no faster.
//
// Takes q/out/cache in f16 or bf16 (one dtype), head_dim 64 or 128, a
// power-of-two block size, a 16-byte aligned pool and scale > 0; declines
// the rest with cudaErrorNotSupported (the generic kernel of attention.cu
// runs).  Needs sm_80 (mma.sync bf16, cp.async, ldmatrix); built for an
// older target the kernel body is empty and the launcher declines.
#include <stdint.h>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "attention-tile.cuh"
#include "cuda-mma.cuh"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_heads heads_t;
typedef struct zl_cuda_kv kv_t;
typedef struct zl_cuda_batch batch_t;

// The 16-byte chunk slot of (row, chunk) in a swizzled tile of CH chunks a row.
template <int CH> __device__ __forceinline__ int swz(int row, int ch)
{
    return row * CH + (ch ^ (row & 7));
}

// Kernel shape: NW warps, each owning MT m16 tiles (16 MT query rows), so
// a CTA takes BM = 16 MT NW rows; QREG keeps the Q fragments in registers
// for the whole kernel (else they are re-read from shared memory per tile:
// fewer registers, more ldmatrix); MINB CTAs per SM for the register cap.
template <int NW_, int MT_, bool QREG_, int MINB_, int BN_ = 64, int ST_ = 2> struct cfg {
    static constexpr int NW = NW_, MT = MT_, MINB = MINB_, BM = 16 * MT_ * NW_, BN = BN_;
    static constexpr int ST = ST_; // K/V buffers: 2 (two barriers a tile) or 3 (one)
    static constexpr bool QREG = QREG_;
};

template <typename T, int HD, typename C>
__global__ void __launch_bounds__(C::NW * 32, C::MINB)
    prefill_kernel(heads_t o, heads_t q, kv_t c, batch_t b, float sl2, int bs_shift)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    constexpr int NW = C::NW, MT = C::MT, BM = C::BM, BN = C::BN, CH = HD / 8, NT = NW * 32;
    constexpr int KT = HD / 16;  // k-steps of S = Q K^T
    constexpr int NS = BN / 8;   // n-tiles of S
    constexpr int NO = HD / 8;   // n-tiles of O
    static_assert(NT % CH == 0 && (BN * CH) % NT == 0, "tile loads");
    extern __shared__ uint4 smem[];
    uint4 *sq = smem;                 // [BM][CH]
    constexpr int ST = C::ST;
    static_assert(ST == 2 || ST == 3, "stages");
    uint4 *sk = sq + BM * CH;         // [ST][BN][CH]
    uint4 *sv = sk + ST * BN * CH;    // [ST][BN][CH]

    const int s = blockIdx.y, h = blockIdx.x;
    q_tile qt;
    if (!q_tile_of<BM, BN>(b, qt))
        return;
    const int r0 = qt.r0, q0 = qt.q0, n_new = qt.n_new, kv_len = qt.kv_len, base = qt.base;
    const int rows = qt.rows, n_tiles = qt.n_tiles;
    const int kvh = h / (int)(q.heads / c.n_kv_heads);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int32_t *table = b.block_table + (int64_t)s * b.max_blocks;
    const int64_t row_bytes = (int64_t)c.n_kv_heads * HD * (int64_t)sizeof(T);
    const int64_t v_off = (int64_t)c.block_size * row_bytes; // V after K in a block
    const char *kv_base = c.base + ((int64_t)c.layer * 2 * c.block_size) * row_bytes +
                          (int64_t)kvh * HD * (int64_t)sizeof(T);

    // K/V tile t into buffer buf: thread covers chunk `ch` of rows r, r + NT/CH, ...
    // Their pool block ids are read one tile ahead (fetch_ids), so the
    // table's latency is hidden behind a tile of compute.
    constexpr int RPT = BN * CH / NT; // rows per thread per tile
    int ids[RPT];
    auto fetch_ids = [&](int t) {
#pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int p = t * BN + tid / CH + i * (NT / CH);
            ids[i] = p < kv_len ? __ldg(&table[p >> bs_shift]) : 0;
        }
    };
    auto load_kv = [&](int t, int buf) {
        const int ch = tid % CH;
#pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int r = tid / CH + i * (NT / CH), p = t * BN + r;
            const char *src = c.base;
            int bytes = 0;
            if (p < kv_len) {
                const int off = p & (c.block_size - 1);
                src = kv_base + (int64_t)ids[i] * (int64_t)c.block_stride + off * row_bytes + ch * 16;
                bytes = 16;
            }
            cp_async16(&sk[buf * BN * CH + swz<CH>(r, ch)], src, bytes);
            cp_async16(&sv[buf * BN * CH + swz<CH>(r, ch)], bytes ? src + v_off : src, bytes);
        }
        cp_async_commit();
    };
    fetch_ids(0);
    load_kv(0, 0);
    if (n_tiles > 1)
        fetch_ids(1);
    if constexpr (ST == 3) { // two tiles ahead, one (maybe empty) group per tile
        if (n_tiles > 1) {
            load_kv(1, 1);
            if (n_tiles > 2)
                fetch_ids(2);
        } else {
            cp_async_commit();
        }
    }

    // Q tile -> shared (rows past the sequence are zeros); strided rows that
    // are not 16-byte aligned (views into odd-width fused rows) go by 2 bytes.
    {
        const bool vec = ((uintptr_t)q.data | (uintptr_t)q.nb0 | (uintptr_t)q.nb1) % 16 == 0;
        for (int idx = tid; idx < BM * CH; idx += NT) {
            const int r = idx / CH, ch = idx % CH;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (r < rows)
                v = load16(static_cast<const char *>(q.data) + (int64_t)(q0 + r0 + r) * q.nb0 +
                               (int64_t)h * q.nb1 + ch * 16,
                           vec);
            sq[swz<CH>(r, ch)] = v;
        }
    }
    __syncthreads();
    // A fragment of Q for m-tile mt, k-step kk (rows wrow + 16 mt ..).
    const int wrow = warp * 16 * MT;
    auto ld_q = [&](uint32_t f[4], int mt, int kk) {
        ldsm_x4(f, &sq[swz<CH>(wrow + 16 * mt + (lane & 7) + ((lane >> 3) & 1) * 8,
                               2 * kk + (lane >> 4))]);
    };
    uint32_t qf[C::QREG ? MT : 1][C::QREG ? KT : 1][4];
    if constexpr (C::QREG) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int kk = 0; kk < KT; kk++)
                ld_q(qf[mt][kk], mt, kk);
    }

    // This thread's rows: g and g + 8 of each of its m-tiles, and their last key.
    const int g = lane >> 2, t4 = lane & 3;
    int lim[MT][2];
    float m[MT][2], l[MT][2];
    float oacc[MT][NO][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int x = 0; x < 2; x++) {
            lim[mt][x] = min(base + r0 + wrow + 16 * mt + g + 8 * x, kv_len - 1);
            m[mt][x] = -INFINITY;
            l[mt][x] = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < NO; j++)
            oacc[mt][j][0] = oacc[mt][j][1] = oacc[mt][j][2] = oacc[mt][j][3] = 0.0f;
    }

    for (int t = 0; t < n_tiles; t++) {
        const int buf = ST == 2 ? (t & 1) : t % 3;
        if constexpr (ST == 2) {
            if (t + 1 < n_tiles) {
                load_kv(t + 1, (t + 1) & 1);
                if (t + 2 < n_tiles)
                    fetch_ids(t + 2);
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
        } else {
            // Tile t landed (t + 1 may be in flight); after the barrier every
            // warp is done with tile t - 1, whose buffer takes tile t + 2.
            cp_async_wait<1>();
            __syncthreads();
            if (t + 2 < n_tiles) {
                load_kv(t + 2, (t + 2) % 3);
                if (t + 3 < n_tiles)
                    fetch_ids(t + 3);
            } else {
                cp_async_commit();
            }
        }
        const uint4 *kb = sk + buf * BN * CH, *vb = sv + buf * BN * CH;

        float sacc[MT][NS][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < NS; j++)
                sacc[mt][j][0] = sacc[mt][j][1] = sacc[mt][j][2] = sacc[mt][j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            uint32_t qs[C::QREG ? 1 : MT][4];
            if constexpr (!C::QREG) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ld_q(qs[mt], mt, kk);
            }
#pragma unroll
            for (int jp = 0; jp < NS / 2; jp++) {
                uint32_t bf[4];
                ldsm_x4(bf, &kb[swz<CH>(16 * jp + (lane & 7) + (lane >> 4) * 8,
                                        2 * kk + ((lane >> 3) & 1))]);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const uint32_t *a = C::QREG ? qf[C::QREG ? mt : 0][C::QREG ? kk : 0]
                                                : qs[C::QREG ? 0 : mt];
                    mma<T>(sacc[mt][2 * jp], a, bf[0], bf[1]);
                    mma<T>(sacc[mt][2 * jp + 1], a, bf[2], bf[3]);
                }
            }
        }

        const int k0 = t * BN;
        const bool diag = k0 + BN - 1 > base + r0;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            softmax_tile<NS, NO>(sacc[mt], oacc[mt], m[mt], l[mt], lim[mt], k0, diag, t4, sl2);

        // O += P V: the S accumulators of key tiles 2kk, 2kk + 1 are the A fragment.
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
                p_fragment<T, NS>(pa[mt], sacc[mt], kk);
#pragma unroll
            for (int dp = 0; dp < NO / 2; dp++) {
                uint32_t bf[4];
                ldsm_x4_t(bf, &vb[swz<CH>(16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8,
                                          2 * dp + (lane >> 4))]);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma<T>(oacc[mt][2 * dp], pa[mt], bf[0], bf[1]);
                    mma<T>(oacc[mt][2 * dp + 1], pa[mt], bf[2], bf[3]);
                }
            }
        }
        if constexpr (ST == 2)
            __syncthreads(); // the next iteration's loads overwrite this buffer
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        store_rows<T, NO>(o, h, q0, r0 + wrow + 16 * mt + g, n_new, oacc[mt], l[mt], t4);
#endif
}

template <typename T, int HD, typename C>
cudaError_t launch(const heads_t *out, const heads_t *q, const kv_t *cache, const batch_t *b,
                   const struct zl_cuda_attn_shape *sh, float scale, int bs_shift,
                   cudaStream_t stream)
{
    constexpr size_t smem = (size_t)(C::BM + 2 * C::ST * C::BN) * HD * sizeof(T);
    auto kern = prefill_kernel<T, HD, C>;
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
    // Heads fastest, query tiles slowest (reversed in the kernel): the
    // longest tiles of every head start first, and the heads sharing a kv
    // head run side by side (their K/V reads hit L2).
    dim3 grid((unsigned)q->heads, (unsigned)b->n_seqs,
              (unsigned)((sh->max_q_len + C::BM - 1) / C::BM));
    kern<<<grid, C::NW * 32, smem, stream>>>(*out, *q, *cache, *b, scale * 1.4426950408889634f,
                                             bs_shift);
    return cudaGetLastError();
}

// Measured on an H100 (see the header): 4 warps of two m16 tiles each
// (128-row tiles, Q re-read from shared memory, two CTAs per SM) for long
// hd-128 prompts; 4 warps of one tile (64-row tiles, two CTAs per SM) for
// hd 64 and for short or mixed batches, where 128-row tiles leave rows idle.
// ZL_PREFILL_STAGES (2 or 3 K/V buffers) may be set by a tuning build.
#ifndef ZL_PREFILL_STAGES
#define ZL_PREFILL_STAGES 2
#endif
typedef cfg<4, 2, false, 2, 64, ZL_PREFILL_STAGES> cfg_long;
typedef cfg<4, 1, true, 2, 64, ZL_PREFILL_STAGES> cfg_short;

template <typename T>
cudaError_t launch_hd(const heads_t *out, const heads_t *q, const kv_t *cache, const batch_t *b,
                      const struct zl_cuda_attn_shape *sh, float scale, int bs_shift,
                      cudaStream_t stream)
{
    if (cache->head_dim == 128 && sh->max_q_len >= 1024)
        return launch<T, 128, cfg_long>(out, q, cache, b, sh, scale, bs_shift, stream);
    if (cache->head_dim == 128)
        return launch<T, 128, cfg_short>(out, q, cache, b, sh, scale, bs_shift, stream);
    return launch<T, 64, cfg_short>(out, q, cache, b, sh, scale, bs_shift, stream);
}

} // namespace

extern "C" cudaError_t zl_cuda_attention_prefill(const heads_t *out, const heads_t *q,
                                                 const kv_t *cache, const batch_t *b,
                                                 const struct zl_cuda_attn_shape *sh, float scale,
                                                 int wg, cudaStream_t stream)
{
    int bs = cache->block_size, bs_shift = 0;
    while (bs_shift < 30 && (1 << bs_shift) < bs)
        bs_shift++;
    if ((cache->head_dim != 64 && cache->head_dim != 128) || q->dtype != cache->dtype ||
        out->dtype != q->dtype || (q->dtype != ZL_DTYPE_BF16 && q->dtype != ZL_DTYPE_F16) ||
        (1 << bs_shift) != bs || (uintptr_t)cache->base % 16 || cache->block_stride % 16 ||
        !(scale > 0.0f))
        return cudaErrorNotSupported;
    if (b->n_seqs == 0 || sh->max_q_len == 0)
        return cudaSuccess;
    if (b->n_seqs > 65535 || (sh->max_q_len + 63) / 64 > 65535)
        return cudaErrorNotSupported;
    cudaError_t e = zl_cuda_attention_prefill_wg(out, q, cache, b, sh, scale, bs_shift, wg, stream);
    if (e != cudaErrorNotSupported)
        return e;
    if (q->dtype == ZL_DTYPE_BF16)
        return launch_hd<__nv_bfloat16>(out, q, cache, b, sh, scale, bs_shift, stream);
    return launch_hd<__half>(out, q, cache, b, sh, scale, bs_shift, stream);
}
