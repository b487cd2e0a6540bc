// Linear for 9-64 tokens on Hopper (cuda-kernels.h zl_cuda_gemm_tma):
// out[n, o] = x[n, i] @ w[o, i]^T, x and w bf16 or f16, f32 accumulation,
// optionally out = res + product or out = silu(gate) * up.
//
// Why not cuBLASLt: at 32 tokens the step is a weight stream, and
// cuBLASLt's kernels read the small Llama matrices at ~2.2 TB/s, lose a
// grid's ramp at every one of a layer's kernel boundaries and cannot start
// early (given programmatic edges they read their inputs before waiting;
// docs/cuda-perf-log.md, "cuBLASLt as a programmatic dependent").  This kernel
// issues its first weight tiles before griddepcontrol.wait, so its stream
// starts while the kernel before it drains.
//
// Shape of the work: a tile is 128 weight rows (two wgmma m64 halves; for
// SwiGLU 64 gate rows and the 64 matching up rows) by N = 16/32/64 token
// columns; a unit is one tile's 64 columns of k (one 128-byte swizzle row
// of each).  The tiles x k-units are dealt out evenly to one CTA per SM
// (stream-K), so every SM streams the same number of bytes whatever the
// matrix.  A tile cut between CTAs has its f32 partials added by the CTA
// that finishes it last, in CTA order: the sum, and so the result, does
// not depend on timing.
//
// In a CTA, warp 4 (one lane) is the producer: TMA copies of the weight
// tile and the x tile of each unit into a ring of STAGES, 128-byte
// swizzled, completion counted on an mbarrier.  Warps 0-3 (a warpgroup)
// consume: two wgmma m64nNk16 per 16 columns of k straight from shared
// memory, accumulators in registers, then free the stage.
//
// Measured (H100 80GB HBM3, driver 580.159.04, Llama-3.1-8B bf16 dummy
// weights, batch 32 at context 1024, tests/cuda/bench-llama8b.sh, steady
// ms/step; cuBLASLt = ZL_TMA_GEMM=0 of the same tuning build, same call):
//   call 1: cuBLASLt 8.476 / 8.329, this kernel 8.178 / 8.113
//   call 2: cuBLASLt 8.178 / 8.105, this kernel 8.061 / 8.041
//   call 3: cuBLASLt 8.439 / 8.436, with the SwiGLU epilogue 8.136 / 8.142
//   call 4: cuBLASLt 8.225, this kernel 7.986; release build 7.979 / 7.995
// Alone it is not faster: ncu (serialised, --clock-control none) puts one
// layer's calls at gate/up + SwiGLU 89.8 us (238 MB, 80% of DRAM peak),
// down 48.8 us (74%), QKV 25.9 us (60%), o 20.5 us (49%), where cuBLASLt
// takes 86.3 / 47.4 / 23.5 / 16.2 us (test_cuda_gemv's figures); the
// step gains from the weights streamed under the kernel before.  The
// small matrices still lose most: each CTA streams 250-400 KB, and the
// first ring fill and the last tiles' merge are a large part of that.
// Tried (same calls, steady ms/step at batch 32): 8 stages 8.121 / 8.143
// against 8.061 / 8.041 for 6; 4 stages with 2 CTAs an SM 8.622 / 8.650;
// units asked into L2 past the ring before the PDL wait (8 or 16 units)
// 8.321 and 8.697; two 64-column sub-tiles a stage (ZL_TMA_KU=2)
// 7.972 against 7.986 (release builds 8.011 / 7.985 against 7.979 /
// 7.995), kept as a tuning knob, one by default.
#include "config.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-mbar.cuh"
#include "cuda-mma.cuh"
#include "cuda-pdl.cuh"
#include "cuda-wgmma.cuh"

using namespace zlcuda;

typedef struct zl_cuda_rows rows_t;

namespace {

constexpr int BM = 128;           // weight rows a tile
constexpr int BK = 64;            // k a unit: 128 bytes of 16-bit elements
constexpr int STAGES = 6;         // 96 KB of weights in flight an SM (one CTA an SM)
constexpr int THREADS = 160;      // a consumer warpgroup and a producer warp
constexpr int W_BYTES = BM * BK * 2;

enum mode { PLAIN, RESID, SWIGLU };

struct args_t {
    rows_t out;                   // [n, rows] (SWIGLU: [n, rows / 2])
    rows_t res;                   // RESID: [n, rows], may be out
    int n, rows, k_units;         // rows: w's
    uint32_t units;               // tiles (BM rows; SWIGLU: BM / 2 of each half) * k_units
    float *part;                  // [gridDim.x][2][BM * N] f32 partials
    int32_t *count;               // [tiles] arrivals, left at zero
};

// ---- TMA (sm_90; the barriers are cuda-mbar.cuh's) ----

// box (c0 = k, c1 = row) of `map` into dst, counted on bar.
__device__ __forceinline__ void tma_load(void *dst, const CUtensorMap *map, uint64_t *bar, int c0,
                                         int c1)
{
#if ZL_WGMMA_OK
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4}], [%2];" ::"r"(smem_addr(dst)),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_addr(bar)), "r"(c0), "r"(c1)
                 : "memory");
#endif
}

// ---- the split plan: CTA c of g owns units [c U / g, (c + 1) U / g) ----
// (tests/cuda/test_gemm_tma_plan.cu walks it on the CPU)

__host__ __device__ __forceinline__ uint32_t unit_start(uint32_t c, uint32_t units, uint32_t g)
{
    return (uint32_t)((uint64_t)c * units / g);
}
// The CTA whose range holds unit u.
__host__ __device__ __forceinline__ uint32_t unit_owner(uint32_t u, uint32_t units, uint32_t g)
{
    return (uint32_t)(((uint64_t)(u + 1) * g + units - 1) / units - 1);
}
// The CTAs [*lo, *hi] that hold a part of tile t (k_units units a tile).
__host__ __device__ __forceinline__ void tile_owners(uint32_t t, uint32_t k_units, uint32_t units,
                                                     uint32_t g, uint32_t *lo, uint32_t *hi)
{
    *lo = unit_owner(t * k_units, units, g);
    *hi = unit_owner(t * k_units + k_units - 1, units, g);
}
// The partials slot of CTA c's segment of the tile that starts at unit u0:
// 0 for the segment its range starts with, 1 for the one it ends with (a
// CTA's other segments are whole tiles, stored without partials).
__host__ __device__ __forceinline__ uint32_t part_slot(uint32_t c, uint32_t u0, uint32_t units,
                                                       uint32_t g)
{
    return c * 2 + (unit_start(c, units, g) >= u0 ? 0 : 1);
}

// Accumulator element e of thread `tid` (wgmma's D layout, two m64 halves:
// e < R is half 0): its tile row and token column.
template <int N> __device__ __forceinline__ void acc_pos(int tid, int half, int e, int &r, int &c)
{
    const int warp = tid / 32, lane = tid % 32;
    r = half * 64 + warp * 16 + lane / 4 + ((e & 2) ? 8 : 0);
    c = (e / 4) * 8 + (lane % 4) * 2 + (e & 1);
}

template <typename T, int N, int MODE>
__device__ __forceinline__ void store_tile(const args_t &a, int tile, int tid,
                                           const float (&d0)[N / 2], const float (&d1)[N / 2])
{
    constexpr int R = N / 2;
    if constexpr (MODE == SWIGLU) {
        // half 0 holds the gate rows, half 1 the matching up rows; both
        // rounded to T first, then silu_mul's formula: what the unfused
        // ops store
#pragma unroll
        for (int e = 0; e < R; e++) {
            int r, c;
            acc_pos<N>(tid, 0, e, r, c);
            const int64_t row = (int64_t)tile * (BM / 2) + r;
            if (c >= a.n || row >= a.rows / 2)
                continue;
            const float g = to_f32<T>(from_f32<T>(d0[e])), u = to_f32<T>(from_f32<T>(d1[e]));
            store<T>(row_at(a.out.data, c, a.out.stride), row, g / (1.0f + expf(-g)) * u);
        }
    } else {
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int e = 0; e < R; e++) {
                int r, c;
                acc_pos<N>(tid, h, e, r, c);
                const int64_t row = (int64_t)tile * BM + r;
                if (c >= a.n || row >= a.rows)
                    continue;
                float s = h ? d1[e] : d0[e];
                if constexpr (MODE == RESID) // the product rounded to T, then add()'s sum
                    s = to_f32<T>(from_f32<T>(s)) + load<T>(row_at(a.res.data, c, a.res.stride), row);
                store<T>(row_at(a.out.data, c, a.out.stride), row, s);
            }
    }
}

// A finished segment of `tile`: stored when this CTA did all of it, else
// its partials go to the CTA's slot and the tile's last arrival adds every
// CTA's slot in CTA order and stores.
template <typename T, int N, int MODE>
__device__ void finish_segment(const args_t &a, int tile, float (&d0)[N / 2], float (&d1)[N / 2],
                               int tid, int *flag)
{
    constexpr int R = N / 2;
    const uint32_t g = gridDim.x, u0 = (uint32_t)tile * a.k_units;
    uint32_t c_lo, c_hi;
    tile_owners((uint32_t)tile, (uint32_t)a.k_units, a.units, g, &c_lo, &c_hi);
    if (c_lo == c_hi) {
        store_tile<T, N, MODE>(a, tile, tid, d0, d1);
        return;
    }
    auto slot = [&](uint32_t c) { return a.part + (size_t)part_slot(c, u0, a.units, g) * (BM * N); };
    float4 *mine = reinterpret_cast<float4 *>(slot(blockIdx.x));
#pragma unroll
    for (int e = 0; e < R; e += 4) {
        mine[(e / 4) * 128 + tid] = make_float4(d0[e], d0[e + 1], d0[e + 2], d0[e + 3]);
        mine[(R / 4 + e / 4) * 128 + tid] = make_float4(d1[e], d1[e + 1], d1[e + 2], d1[e + 3]);
    }
    __threadfence();
    asm volatile("bar.sync 1, 128;" ::: "memory");
    if (tid == 0) {
        const int before = atomicAdd(&a.count[tile], 1);
        const int last = before == (int)(c_hi - c_lo);
        if (last)
            a.count[tile] = 0; // every arrival is in: ready for the next call
        *flag = last;
    }
    asm volatile("bar.sync 1, 128;" ::: "memory");
    if (!*flag)
        return;
    __threadfence();
#pragma unroll
    for (int e = 0; e < R; e++)
        d0[e] = d1[e] = 0.0f;
    for (uint32_t c = c_lo; c <= c_hi; c++) {
        const float4 *p = reinterpret_cast<const float4 *>(slot(c));
#pragma unroll
        for (int e = 0; e < R; e += 4) {
            const float4 v0 = __ldcg(&p[(e / 4) * 128 + tid]);
            const float4 v1 = __ldcg(&p[(R / 4 + e / 4) * 128 + tid]);
            d0[e] += v0.x, d0[e + 1] += v0.y, d0[e + 2] += v0.z, d0[e + 3] += v0.w;
            d1[e] += v1.x, d1[e + 1] += v1.y, d1[e + 2] += v1.z, d1[e + 3] += v1.w;
        }
    }
    store_tile<T, N, MODE>(a, tile, tid, d0, d1);
}

template <int N> constexpr int x_bytes() { return N * BK * 2; }
// A stage holds KU sub-tiles of BK columns (weights, then x); fewer stages
// of two sub-tiles fit the shared memory.
template <int KU> constexpr int stages() { return KU == 1 ? STAGES : STAGES * 2 / 3; }
template <int N, int KU> constexpr size_t smem_bytes()
{
    return 1024 + (size_t)stages<KU>() * KU * (W_BYTES + x_bytes<N>()) +
           2 * stages<KU>() * sizeof(uint64_t) + 16;
}

template <typename T, int N, int MODE, int KU>
__global__ void __launch_bounds__(THREADS, 1)
    gemm_tma_kernel(const __grid_constant__ CUtensorMap wmap,
                    const __grid_constant__ CUtensorMap xmap, const args_t a)
{
    constexpr int S = stages<KU>(), WS = KU * W_BYTES, XS = KU * x_bytes<N>();
    extern __shared__ uint8_t smem_raw[];
    // the swizzled tiles want 1024-byte alignment
    uint8_t *base = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    uint8_t *sw = base, *sx = base + S * WS;
    uint64_t *full = reinterpret_cast<uint64_t *>(sx + S * XS);
    uint64_t *empty = full + S;
    int *flag = reinterpret_cast<int *>(empty + S);
    const int tid = threadIdx.x;
    const uint32_t g = gridDim.x;
    const uint32_t u_begin = unit_start(blockIdx.x, a.units, g);
    const uint32_t u_end = unit_start(blockIdx.x + 1, a.units, g);

    pdl_release();
    if (tid == 0) {
        for (int s = 0; s < S; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 128);
        }
#if ZL_WGMMA_OK
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
    }
    __syncthreads();

    if (tid >= 128) {
        // producer: weights do not depend on the kernels before, x does
        if (tid != 128) {
            pdl_wait();
            return;
        }
        auto load_w = [&](uint32_t i, uint32_t u) {
            const int s = (int)(i % S);
            const int tile = (int)(u / a.k_units), kc = (int)(u % a.k_units) * BK * KU;
            mbar_expect_tx(&full[s], WS + XS);
#pragma unroll
            for (int h = 0; h < KU; h++) {
                uint8_t *dst = sw + s * WS + h * W_BYTES;
                if constexpr (MODE == SWIGLU) {
                    tma_load(dst, &wmap, &full[s], kc + h * BK, tile * (BM / 2));
                    tma_load(dst + W_BYTES / 2, &wmap, &full[s], kc + h * BK,
                             a.rows / 2 + tile * (BM / 2));
                } else {
                    tma_load(dst, &wmap, &full[s], kc + h * BK, tile * BM);
                }
            }
        };
        auto load_x = [&](uint32_t i, uint32_t u) {
            const int s = (int)(i % S), kc = (int)(u % a.k_units) * BK * KU;
#pragma unroll
            for (int h = 0; h < KU; h++)
                tma_load(sx + s * XS + h * x_bytes<N>(), &xmap, &full[s], kc + h * BK, 0);
        };
        const uint32_t total = u_end - u_begin;
        const uint32_t early = total < S ? total : S;
        for (uint32_t i = 0; i < early; i++)
            load_w(i, u_begin + i);
        pdl_wait();
        for (uint32_t i = 0; i < early; i++)
            load_x(i, u_begin + i);
        for (uint32_t i = early; i < total; i++) {
            mbar_wait(&empty[i % S], ((i / S) - 1) & 1);
            load_w(i, u_begin + i);
            load_x(i, u_begin + i);
        }
        return;
    }

    // consumers
    pdl_wait();
    constexpr int R = N / 2;
    float d0[R], d1[R];
#pragma unroll
    for (int e = 0; e < R; e++)
        d0[e] = d1[e] = 0.0f;
    int tile = (int)(u_begin / a.k_units), kb = (int)(u_begin % a.k_units);
    for (uint32_t i = 0, u = u_begin; u < u_end; i++, u++) {
        const int s = (int)(i % S);
        mbar_wait(&full[s], (i / S) & 1);
        wg_fence();
#pragma unroll
        for (int h = 0; h < KU; h++) {
            const uint64_t da = sw128_desc(sw + s * WS + h * W_BYTES);
            const uint64_t db = sw128_desc(sx + s * XS + h * x_bytes<N>());
#pragma unroll
            for (int k = 0; k < BK / 16; k++) { // 16 columns = 32 bytes = 2 in the descriptor
                wgmma<T, N>::run(d0, da + 2 * k, db + 2 * k);
                wgmma<T, N>::run(d1, da + (W_BYTES / 2 >> 4) + 2 * k, db + 2 * k);
            }
        }
        wg_commit();
        wg_wait0();
        reg_fence(d0);
        reg_fence(d1);
        mbar_arrive(&empty[s]);
        if (++kb == a.k_units || u + 1 == u_end) {
            finish_segment<T, N, MODE>(a, tile, d0, d1, tid, flag);
#pragma unroll
            for (int e = 0; e < R; e++)
                d0[e] = d1[e] = 0.0f;
            tile++, kb = 0;
        }
    }
}

// ---- host side ----

PFN_cuTensorMapEncodeTiled_v12000 encoder()
{
    static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void *p = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                             &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            p = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }();
    return fn;
}

// A [rows, k] row-major 16-bit matrix as boxes of box_rows x 64.
bool tensor_map(CUtensorMap *m, const rows_t *t, int box_rows)
{
    PFN_cuTensorMapEncodeTiled_v12000 enc = encoder();
    if (!enc)
        return false;
    cuuint64_t dims[2] = {(cuuint64_t)t->d, (cuuint64_t)t->n};
    cuuint64_t strides[1] = {(cuuint64_t)t->stride};
    cuuint32_t box[2] = {BK, (cuuint32_t)box_rows}, estr[2] = {1, 1};
    CUtensorMapDataType dt = t->dtype == ZL_DTYPE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                       : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    return enc(m, dt, 2, t->data, dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// 64-column sub-tiles a stage: 1; tuning builds take ZL_TMA_KU=2 (measured
// no faster, see the header).
int k_sub()
{
#ifdef ZL_GEMV_TUNING
    static const int v = [] {
        const char *e = getenv("ZL_TMA_KU");
        return e && *e == '2' ? 2 : 1;
    }();
    return v;
#else
    return 1;
#endif
}

int tokens_tile(int64_t n) { return n <= 16 ? 16 : n <= 32 ? 32 : 64; }

template <typename T, int N, int MODE, int KU>
cudaError_t launch_ku(const CUtensorMap &wm, const CUtensorMap &xm, args_t a, cudaStream_t stream)
{
    static bool opted[64];
    constexpr size_t smem = smem_bytes<N, KU>();
    cudaError_t e = smem_opt_in(gemm_tma_kernel<T, N, MODE, KU>, smem, opted);
    if (e != cudaSuccess)
        return e;
    const uint32_t sms = (uint32_t)device_sm_count();
    const uint32_t grid = a.units < sms ? a.units : sms;
    return launch_pdl("gemm", gemm_tma_kernel<T, N, MODE, KU>, dim3(grid), dim3(THREADS), smem,
                      stream, wm, xm, a);
}

template <typename T, int N, int MODE>
cudaError_t launch(const CUtensorMap &wm, const CUtensorMap &xm, args_t a, cudaStream_t stream)
{
#ifdef ZL_GEMV_TUNING
    if (k_sub() == 2)
        return launch_ku<T, N, MODE, 2>(wm, xm, a, stream);
#endif
    return launch_ku<T, N, MODE, 1>(wm, xm, a, stream);
}

} // namespace

extern "C" size_t zl_cuda_gemm_tma_scratch(int64_t n)
{
    const int sms = device_sm_count();
    return sms > 0 ? (size_t)sms * 2 * BM * tokens_tile(n) * sizeof(float) : 0;
}

extern "C" cudaError_t zl_cuda_gemm_tma(const rows_t *out, const rows_t *x, const rows_t *w,
                                        const struct zl_cuda_gemm_tma_fuse *f, void *scratch,
                                        size_t scratch_bytes, int32_t *count, cudaStream_t stream)
{
    const int mode = f && f->res ? RESID : f && f->swiglu ? SWIGLU : PLAIN;
    const int64_t n = x->n, rows = w->n, k = x->d;
    const int64_t out_d = mode == SWIGLU ? rows / 2 : rows;
    if (!sm90a_built() || device_major() != 9 || n < 9 || n > ZL_CUDA_GEMM_TMA_MAX_ROWS ||
        x->dtype != w->dtype || out->dtype != w->dtype ||
        (w->dtype != ZL_DTYPE_BF16 && w->dtype != ZL_DTYPE_F16) || w->d != k || out->n != n ||
        out->d != out_d || k < 1 || rows < 1 || rows > INT32_MAX / 2 ||
        (mode == SWIGLU && rows % BM) || (mode == RESID && (f->res->n != n || f->res->d != rows ||
                                                          f->res->dtype != w->dtype)))
        return cudaErrorNotSupported;
    // TMA: 16-byte aligned bases and row strides
    if (((uintptr_t)x->data | (uintptr_t)w->data | (uintptr_t)x->stride | (uintptr_t)w->stride) &
        15)
        return cudaErrorNotSupported;
    const int tn = tokens_tile(n);
    args_t a = {};
    a.out = *out;
    if (mode == RESID)
        a.res = *f->res;
    a.n = (int)n;
    a.rows = (int)rows;
    a.k_units = (int)((k + BK * k_sub() - 1) / (BK * k_sub()));
    const int64_t tiles = (rows + BM - 1) / BM;  // SWIGLU (rows % BM == 0): BM / 2 of each half
    if ((uint64_t)tiles * a.k_units > UINT32_MAX / 2 || tiles > ZL_CUDA_GEMM_TMA_COUNTS)
        return cudaErrorNotSupported;
    a.units = (uint32_t)tiles * (uint32_t)a.k_units;
    a.part = static_cast<float *>(scratch);
    a.count = count;
    if (scratch_bytes < zl_cuda_gemm_tma_scratch(n))
        return cudaErrorNotSupported;
    CUtensorMap wm, xm;
    if (!tensor_map(&wm, w, mode == SWIGLU ? BM / 2 : BM) || !tensor_map(&xm, x, tn))
        return cudaErrorNotSupported;
    auto go = [&](auto t) -> cudaError_t {
        using T = decltype(t);
        if (tn == 16)
            return mode == RESID ? launch<T, 16, RESID>(wm, xm, a, stream)
                 : mode == SWIGLU ? launch<T, 16, SWIGLU>(wm, xm, a, stream)
                                  : launch<T, 16, PLAIN>(wm, xm, a, stream);
        if (tn == 32)
            return mode == RESID ? launch<T, 32, RESID>(wm, xm, a, stream)
                 : mode == SWIGLU ? launch<T, 32, SWIGLU>(wm, xm, a, stream)
                                  : launch<T, 32, PLAIN>(wm, xm, a, stream);
        return mode == RESID ? launch<T, 64, RESID>(wm, xm, a, stream)
             : mode == SWIGLU ? launch<T, 64, SWIGLU>(wm, xm, a, stream)
                              : launch<T, 64, PLAIN>(wm, xm, a, stream);
    };
    return w->dtype == ZL_DTYPE_BF16 ? go(__nv_bfloat16{}) : go(__half{});
}
