// Paged flash-attention prefill on Hopper's wgmma (sm_90a builds, compute
// capability 9.0, head_dim 128, q/out/cache of one 16-bit dtype): what
// zl_cuda_attention_prefill tries first when asked (ZL_PREFILL_WG, read
// by cuda-backend.c); it declines the rest with cudaErrorNotSupported and
// the mma.sync kernel of attention-prefill.cu runs.  Same contract and
// same numerics as that kernel: f32 scores and output accumulators, P
// rounded to the input dtype for the P V product, causal over a cached
// prefix, GQA by kv head = q head / (n_q / n_kv).
//
// Why: the mma.sync kernel peaks near 250 TFLOP/s on an H100 (a 2048-token
// prompt) and runs the prompts of a serving step's chunk at ~145 (an
// estimate from the ops profile); mma.sync cannot feed the H100's tensor
// cores at their wgmma rate.
//
// Status: correct on an H100 (test_cuda_attn, test_wgmma_blocks) and
// 4-20% faster than the mma.sync kernel with variants 2 and 3, which
// serving does not show (docs/cuda-perf-log.md, "A wgmma prefill
// attention kernel"); off unless ZL_PREFILL_WG asks for it.
// What can be checked without one is: tests/cuda/test_prefill_wg_layout.cu
// reads every wgmma operand element through the descriptors below on the
// CPU, against the PTX ISA's canonical layouts.
//
// A CTA takes BM = 128 query rows of one (sequence, q head) in two consumer
// warpgroups of 64 rows, plus a producer warpgroup (registers come by
// warpgroup for wgmma kernels: a 288-thread CTA of 224 registers a thread
// could not launch; see PRODUCER_REGS):
//   - the producers gather K/V tiles of BN keys from the paged cache with
//     cp.async (zero-filled past kv_len) into a ring of ST stages, each
//     arriving on the stage's "full" mbarrier when its copies land
//     (cp.async.mbarrier.arrive.noinc), and waits on the stage's "empty"
//     mbarrier before reusing it;
//   - a consumer warpgroup computes S = Q K^T with wgmma (Q and K from
//     shared memory, K-major), the online softmax on the accumulators in
//     registers (the mma.sync kernel's code: a thread holds rows g and
//     g + 8 of its warp's 16), then O += P V with P from registers and V
//     read MN-major.  PV of tile t runs while the group waits for tile
//     t + 1 and issues its S; the two groups are not in lockstep, so one's
//     softmax overlaps the other's products.
// Shared tiles are rows of 128 bytes (64 head dims; two halves a row) in
// the 128-byte swizzle wgmma reads (16-byte chunk c of row r at c ^ (r & 7)).
#include "config.h"

#include <stdint.h>

#include "attention-tile.cuh"
#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-mbar.cuh"
#include "cuda-mma.cuh"
#include "cuda-pdl.cuh"
#include "cuda-wgmma.cuh"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_heads heads_t;
typedef struct zl_cuda_kv kv_t;
typedef struct zl_cuda_batch batch_t;

constexpr int HD = 128;            // head dim
constexpr int BM = 128;            // query rows a CTA: 64 a consumer warpgroup
constexpr int RB = 128;            // bytes of a shared row: 64 head dims
constexpr int CONSUMERS = 256;     // two warpgroups
constexpr int PRODUCERS = 128;     // one warpgroup
constexpr int THREADS = CONSUMERS + PRODUCERS;
// Registers a thread: wgmma kernels get them by warpgroup, so a CTA of
// three pays for 384 threads (at launch 65536 / 384 = 168 each); the
// producers hand theirs back (setmaxnreg) for the consumers' accumulators.
constexpr int PRODUCER_REGS = 40, CONSUMER_REGS = 232;
static_assert(PRODUCER_REGS * PRODUCERS + CONSUMER_REGS * CONSUMERS <= 65536,
              "the register file of an SM");

// Byte offset of 16-byte chunk ch (0..15) of row r in a two-half tile of R
// rows: where the Q loads and the producer's copies put it.
template <int R> __host__ __device__ __forceinline__ int swz_off(int r, int ch)
{
    return (ch >> 3) * R * RB + r * RB + (((ch & 7) ^ (r & 7)) << 4);
}

// The shared tiles, as offsets from the 1024-aligned base: Q, then ST
// stages of a K tile and a V tile, then the barriers.
template <int BN, int ST> struct smem_plan {
    static constexpr uint32_t TILE = 2 * BN * RB; // K or V of one tile
    static constexpr uint32_t STAGE = 2 * TILE;
    static constexpr uint32_t KV = 2 * BM * RB;
    static constexpr uint32_t BARS = KV + ST * STAGE;
    static __host__ __device__ uint32_t k(int st) { return KV + st * STAGE; }
    static __host__ __device__ uint32_t v(int st) { return KV + st * STAGE + TILE; }
    // with 1024 of slack to align the base, and 2 ST barriers
    static constexpr size_t bytes = 1024 + BARS + 2 * ST * sizeof(uint64_t);
};

// The descriptors of k16 step kk (shared addresses in): S = Q K^T reads the
// 64 Q rows of warpgroup wg and the K tile, both K-major (16 head dims a
// step: 32 bytes on in a half, the next half after 4 steps); O += P V
// reads 16 keys of V a step, MN-major (128 head dims: two halves BN rows
// apart).  tests/cuda/test_prefill_wg_layout.cu reads through them.
__host__ __device__ __forceinline__ uint64_t q_desc(uint32_t sq, int wg, int kk)
{
    return sw128_desc_at(sq + wg * 64 * RB, 16) + (kk >> 2) * ((BM * RB) >> 4) + 2 * (kk & 3);
}
template <int BN> __host__ __device__ __forceinline__ uint64_t k_desc(uint32_t kb, int kk)
{
    return sw128_desc_at(kb, 16) + (kk >> 2) * ((BN * RB) >> 4) + 2 * (kk & 3);
}
template <int BN> __host__ __device__ __forceinline__ uint64_t v_desc(uint32_t vb, int kk)
{
    return sw128_desc_at(vb + kk * 16 * RB, BN * RB);
}

#if ZL_WGMMA_OK
// Arrives on bar once this thread's cp.async copies so far have landed.
__device__ __forceinline__ void cp_async_mbar_arrive(uint64_t *bar)
{
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_addr(bar))
                 : "memory");
}
template <int N> __device__ __forceinline__ void regs_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N));
}
template <int N> __device__ __forceinline__ void regs_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N));
}
#endif

template <typename T, int BN, int ST>
__global__ void __launch_bounds__(THREADS, 1)
    prefill_wg_kernel(heads_t o, heads_t q, kv_t c, batch_t b, float sl2, int bs_shift)
{
#if ZL_WGMMA_OK
    typedef smem_plan<BN, ST> plan;
    constexpr int NS = BN / 8; // n8 blocks of S
    extern __shared__ uint8_t smem_raw[];
    uint8_t *sq = reinterpret_cast<uint8_t *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint64_t *full = reinterpret_cast<uint64_t *>(sq + plan::BARS);
    uint64_t *empty = full + ST;

    const int s = blockIdx.y, h = blockIdx.x;
    q_tile qt;
    if (!q_tile_of<BM, BN>(b, qt))
        return;
    const int r0 = qt.r0, q0 = qt.q0, n_new = qt.n_new, kv_len = qt.kv_len, base = qt.base;
    const int rows = qt.rows, n_tiles = qt.n_tiles;
    const int tid = threadIdx.x, lane = tid & 31;
    if (tid == 0) {
        for (int i = 0; i < ST; i++) {
            mbar_init(&full[i], PRODUCERS);      // the producers' threads
            mbar_init(&empty[i], CONSUMERS / 32); // the consumer warps
        }
    }
    __syncthreads();

    if (tid >= CONSUMERS) { // the producers: 8 rows of 16 chunks an instruction
        regs_dec<PRODUCER_REGS>();
        const int pt = tid - CONSUMERS, ch = pt & 15;
        const int kvh = h / (int)(q.heads / c.n_kv_heads);
        const int32_t *table = b.block_table + (int64_t)s * b.max_blocks;
        const int64_t row_bytes = (int64_t)c.n_kv_heads * HD * (int64_t)sizeof(T);
        const int64_t v_off = (int64_t)c.block_size * row_bytes; // V after K in a block
        const char *kv_base = c.base + ((int64_t)c.layer * 2 * c.block_size) * row_bytes +
                              (int64_t)kvh * HD * (int64_t)sizeof(T) + ch * 16;
        for (int t = 0; t < n_tiles; t++) {
            const int st = t % ST;
            if (t >= ST)
                mbar_wait(&empty[st], (t / ST - 1) & 1);
            uint8_t *dk = sq + plan::k(st), *dv = sq + plan::v(st);
#pragma unroll 4
            for (int r = pt >> 4; r < BN; r += PRODUCERS / 16) {
                const int p = t * BN + r;
                const char *src = c.base;
                int bytes = 0;
                if (p < kv_len) {
                    const int id = __ldg(&table[p >> bs_shift]);
                    src = kv_base + (int64_t)id * (int64_t)c.block_stride +
                          (p & (c.block_size - 1)) * row_bytes;
                    bytes = 16;
                }
                const int off = swz_off<BN>(r, ch);
                cp_async16(dk + off, src, bytes);
                cp_async16(dv + off, bytes ? src + v_off : src, bytes);
            }
            cp_async_mbar_arrive(&full[st]);
        }
        cp_async_wait<0>();
        return;
    }
    regs_inc<CONSUMER_REGS>();

    // Q tile -> shared (rows past the sequence are zeros); strided rows that
    // are not 16-byte aligned (views into odd-width fused rows) go by 2 bytes.
    {
        const bool vec = ((uintptr_t)q.data | (uintptr_t)q.nb0 | (uintptr_t)q.nb1) % 16 == 0;
        for (int idx = tid; idx < BM * 16; idx += CONSUMERS) {
            const int r = idx >> 4, ch = idx & 15;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (r < rows)
                v = load16(static_cast<const char *>(q.data) + (int64_t)(q0 + r0 + r) * q.nb0 +
                               (int64_t)h * q.nb1 + ch * 16,
                           vec);
            *reinterpret_cast<uint4 *>(sq + swz_off<BM>(r, ch)) = v;
        }
    }
    fence_proxy_async();
    asm volatile("bar.sync 1, %0;" ::"n"(CONSUMERS) : "memory"); // the consumers only

    const int wg = tid >> 7, warp = (tid >> 5) & 3, g = lane >> 2, t4 = lane & 3;
    const int rw = wg * 64 + warp * 16 + g; // this thread's rows: rw, rw + 8
    // Tiles holding a key one of this group's rows sees; the rest it skips.
    const int n_mine = wg * 64 < rows ? (base + r0 + min(wg * 64 + 63, rows - 1)) / BN + 1 : 0;
    int lim[2];
    float m[2], l[2], oacc[HD / 8][4];
#pragma unroll
    for (int x = 0; x < 2; x++) {
        lim[x] = min(base + r0 + rw + 8 * x, kv_len - 1);
        m[x] = -INFINITY;
        l[x] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < HD / 8; j++)
        oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.0f;
    // the accumulators as wgmma takes them
    float(&oflat)[HD / 2] = reinterpret_cast<float(&)[HD / 2]>(oacc);
    const uint32_t sq_at = smem_addr(sq);
    // A warp hands a stage back once its group's products have read it.
    auto release = [&](int t) {
        __syncwarp();
        if (lane == 0)
            mbar_arrive(&empty[t % ST]);
    };
    int held = -1; // the tile whose P V may still be running

    for (int t = 0; t < n_tiles; t++) {
        const int st = t % ST;
        mbar_wait(&full[st], (t / ST) & 1);
        if (t >= n_mine) {
            if (held >= 0) {
                wg_wait0();
                reg_fence(oflat);
                release(held);
                held = -1;
            }
            release(t);
            continue;
        }
        fence_proxy_async(); // the producer's cp.async writes, to wgmma's reads

        float sacc[NS][4];
        float(&sflat)[BN / 2] = reinterpret_cast<float(&)[BN / 2]>(sacc);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++)
            wgmma<T, BN>::run(sflat, q_desc(sq_at, wg, kk), k_desc<BN>(sq_at + plan::k(st), kk),
                              kk > 0);
        wg_commit();
        wg_wait0(); // S, and the P V of the tile before
        reg_fence(sflat);
        reg_fence(oflat);
        if (held >= 0)
            release(held);

        // only tiles crossing this group's diagonal are masked
        const int k0 = t * BN;
        softmax_tile<NS, HD / 8>(sacc, oacc, m, l, lim, k0, k0 + BN - 1 > base + r0 + wg * 64, t4,
                                 sl2);
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
            p_fragment<T, NS>(pa[kk], sacc, kk);

        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
            wgmma_rs<T, HD>::run(oflat, pa[kk], v_desc<BN>(sq_at + plan::v(st), kk));
        wg_commit();
        held = t;
    }
    wg_wait0();
    reg_fence(oflat);

    if (wg * 64 >= rows)
        return;
    store_rows<T, HD / 8>(o, h, q0, r0 + rw, n_new, oacc, l, t4);
#endif
}

// The most threads a block of this instance takes at the registers ptxas
// gave it (the launch bounds cap them at 168): if a toolkit ever gives
// more, zl_cuda_prefill_wg_declines says so rather than a launch failing.
template <typename T, int BN, int ST> int max_threads()
{
    static const int n = [] {
        cudaFuncAttributes fa;
        return cudaFuncGetAttributes(&fa, prefill_wg_kernel<T, BN, ST>) == cudaSuccess
                   ? fa.maxThreadsPerBlock : 0;
    }();
    return n;
}

template <typename T, int BN, int ST>
cudaError_t launch(const heads_t *out, const heads_t *q, const kv_t *cache, const batch_t *b,
                   const struct zl_cuda_attn_shape *sh, float scale, int bs_shift,
                   cudaStream_t stream)
{
    static bool opted[64];
    constexpr size_t smem = smem_plan<BN, ST>::bytes;
    cudaError_t e = smem_opt_in(prefill_wg_kernel<T, BN, ST>, smem, opted);
    if (e != cudaSuccess)
        return e;
    // Heads fastest, query tiles slowest (reversed in the kernel), as the
    // mma.sync kernel: the heads sharing a kv head read its K/V from L2.
    dim3 grid((unsigned)q->heads, (unsigned)b->n_seqs, (unsigned)((sh->max_q_len + BM - 1) / BM));
    prefill_wg_kernel<T, BN, ST><<<grid, THREADS, smem, stream>>>(
        *out, *q, *cache, *b, scale * 1.4426950408889634f, bs_shift);
    return cudaGetLastError();
}

// Variant 1: 128-key tiles, 2 stages; 2: 64-key tiles, 4 stages; 3:
// 128-key tiles, 3 stages (cuda-kernels.h).  F is launch or max_threads.
#define ZL_WG_VARIANT(variant, F, ...)                                                            \
    switch (variant) {                                                                             \
    case 2:                                                                                        \
        return F<T, 64, 4>(__VA_ARGS__);                                                           \
    case 3:                                                                                        \
        return F<T, 128, 3>(__VA_ARGS__);                                                          \
    default:                                                                                       \
        return F<T, 128, 2>(__VA_ARGS__);                                                          \
    }
template <typename T>
cudaError_t launch_variant(int variant, const heads_t *out, const heads_t *q, const kv_t *cache,
                           const batch_t *b, const struct zl_cuda_attn_shape *sh, float scale,
                           int bs_shift, cudaStream_t stream)
{
    ZL_WG_VARIANT(variant, launch, out, q, cache, b, sh, scale, bs_shift, stream)
}
template <typename T> int variant_threads(int variant) { ZL_WG_VARIANT(variant, max_threads, ) }

} // namespace

extern "C" cudaError_t zl_cuda_attention_prefill_wg(const heads_t *out, const heads_t *q,
                                                    const kv_t *cache, const batch_t *b,
                                                    const struct zl_cuda_attn_shape *sh,
                                                    float scale, int bs_shift, int variant,
                                                    cudaStream_t stream)
{
    if (cache->head_dim != HD || zl_cuda_prefill_wg_declines(variant))
        return cudaErrorNotSupported;
    if (q->dtype == ZL_DTYPE_BF16)
        return launch_variant<__nv_bfloat16>(variant, out, q, cache, b, sh, scale, bs_shift,
                                             stream);
    return launch_variant<__half>(variant, out, q, cache, b, sh, scale, bs_shift, stream);
}

extern "C" const char *zl_cuda_prefill_wg_declines(int variant)
{
    if (variant < 1 || variant > ZL_CUDA_PREFILL_WG_VARIANTS)
        return "there is no such variant";
    if (!sm90a_built())
        return "this build has no sm_90a code (configure --with-cuda-arch=sm_90a)";
    if (device_major() != 9)
        return "the device is not compute capability 9.x (an H100 or H200)";
    if (variant_threads<__nv_bfloat16>(variant) < THREADS ||
        variant_threads<__half>(variant) < THREADS)
        return "its kernel was given too many registers for a block of 384 threads";
    return NULL;
}
