// Linear for 9..32 tokens (cuda-kernels.h zl_cuda_skinny): out[n, o] =
// x[n, i] @ w[o, i]^T, x and w bf16 or f16, f32 accumulation.  The decode
// steps of batches 9-32 and the serving steps of a few sequences: still
// memory bound (the linears turn compute bound near 260 tokens), but past
// the GEMV's 8 tokens, where cuBLASLt read the small Llama matrices at
// ~2.2 TB/s (BENCHMARKS.md, "cuBLASLt's first pick").
//
// The GEMV's layout with the tokens in shared memory.  A warp streams 16
// MT rows of w straight into registers (16-byte loads, L2 evict-first),
// lane (g, t) taking columns [8t, 8t + 8) of a 32-column chunk of rows g
// and g + 8, and multiplies them on the tensor cores (mma m16n8k16) with
// NT tiles of 8 tokens, whose fragments come from the block's copy of x:
// the same column-to-k-slot order as gemv.cu, so one 16-byte shared load
// per token tile and chunk gives a B fragment.  The GEMV read x through
// L1 for every block and lost past 8 tokens (gemv.cu, "Tried and
// dropped"); here a block of 8 warps shares one staged copy for 128 MT
// rows, so x costs n / (128 MT) of the weight bytes from L2.
//
// A block stages at most NC_MAX chunks of x (32 tokens: 99 KB), so the
// columns are split over blockIdx.y when the rows are long (down_proj) or
// when the row tiles alone would not give every SM a block (o_proj, QKV).
// Each split writes f32 partial sums; the last block of a row tile to
// finish (a counter per tile) adds them in split order and stores: the
// result does not depend on timing, and the counters are left zero.
//
// Weights do not depend on the kernel before, so each warp's first two
// steps of loads are issued before the programmatic-dependent wait
// (cuda-pdl.cuh) and land while the previous kernel drains; x is staged
// after it with cp.async.  Two register buffers of U chunks alternate, so
// U chunks are in flight while the other U are multiplied.
//
// Off by default (ZL_CUDA_SKINNY=1 turns it on): measured slower than
// cuBLASLt so far.  One H200 (driver 580.159.04), test_cuda_gemv's timing
// (bf16, weights rotated, us per call, skinny vs cuBLASLt), the first
// version, which staged x with loads into registers one after the other:
//   [o, i]            n=16           n=32
//   [6144, 4096]      27.9 vs 17.4   34.5 vs 17.7
//   [4096, 4096]      21.4 vs 14.1   27.6 vs 14.7
//   [28672, 4096]     74.4 vs 59.0   88.0 vs 63.9
//   [4096, 14336]     49.8 vs 34.4   66.0 vs 35.3
//   [128256, 4096]   314.9 vs 253.6 403.5 vs 268.3
// and Llama-3.1-8B bf16 batch 32 (bench-llama8b.sh b32, steady ms/step)
// 9.628/9.601 against 6.529/6.553 with cuBLASLt; 256-row blocks (MT 2)
// 12.317.  The staging grew with n (6.6 us from 16 to 32 tokens), which
// is what cp.async takes out; the rest is unmeasured.
#include <stdint.h>
#include <stdlib.h>

#include <type_traits>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-mma.cuh"
#include "cuda-pdl.cuh"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_rows rows_t;

constexpr int WARPS = 8;
constexpr int NC_MAX = 48;       // staged chunks of 32 columns per block
constexpr int MAX_SPLITS = 16;   // partial sums per output (the tests' bound)
constexpr int MIN_CHUNKS = 8;    // a split streams at least 256 columns

struct args_t {
    float *part;      // [splits][n][rows] partial sums (splits > 1)
    int32_t *count;   // [row tiles] blocks done, left zero
    int32_t splits, chunks, pitch; // pitch: bytes per staged x row
};

// The row pitch of staged x: an odd number of 64-byte chunks, so the
// 16-byte loads of rows g and g + 1 (one quarter-warp) fall in different
// halves of the banks.
inline int pitch_for(int nc_max) { return (nc_max | 1) * 64; }

template <int U, int MT>
__device__ __forceinline__ void load_w(uint4 (&wv)[U][MT][2], const char *const (&wp)[MT][2],
                                       int c0, int nc, int col0, int d, uint64_t policy)
{
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int c = c0 + u;
        const bool ok = c < nc && col0 + c * 32 < d;
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                wv[u][m][h] = ok ? ld_stream(wp[m][h] + (int64_t)c * 64, policy)
                                 : make_uint4(0, 0, 0, 0);
    }
}

// acc += the U chunks in wv times the staged x; xs is this lane's first
// 16 bytes of x (token g, columns 8t..), token tile j 8 rows below.
template <typename T, int U, int MT, int NT>
__device__ __forceinline__ void mul(float (&acc)[MT][NT][4], const uint4 (&wv)[U][MT][2],
                                    const char *xs, int pitch, int c0, int nc)
{
#pragma unroll
    for (int u = 0; u < U; u++) {
        if (c0 + u >= nc) // the same for the whole block
            break;
        uint4 xv[NT];
#pragma unroll
        for (int j = 0; j < NT; j++)
            xv[j] = *reinterpret_cast<const uint4 *>(xs + j * 8 * pitch + (c0 + u) * 64);
#pragma unroll
        for (int m = 0; m < MT; m++) {
            const uint4 lo = wv[u][m][0], hi = wv[u][m][1];
            const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y}, a1[4] = {lo.z, hi.z, lo.w, hi.w};
#pragma unroll
            for (int j = 0; j < NT; j++) {
                mma<T>(acc[m][j], a0, xv[j].x, xv[j].y);
                mma<T>(acc[m][j], a1, xv[j].z, xv[j].w);
            }
        }
    }
}

template <typename T, typename O, int NT, int MT, int U>
__global__ void __launch_bounds__(WARPS * 32, 2) skinny_kernel(rows_t out, rows_t x, rows_t w,
                                                              args_t a)
{
    extern __shared__ __align__(16) char sm[];
    constexpr int R = WARPS * MT * 16, RP = R + 4; // rows per block; f32 tile pitch
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int n = (int)x.n, d = (int)w.d, pitch = a.pitch, S = a.splits, s = blockIdx.y;
    const int64_t rows = w.n, tile0 = (int64_t)blockIdx.x * R;
    const int c_lo = (int)((int64_t)s * a.chunks / S);
    const int nc = (int)((int64_t)(s + 1) * a.chunks / S) - c_lo, col0 = c_lo * 32 + t * 8;

    // Rows past the end read the last row (always valid) and are not stored.
    const char *wp[MT][2];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int64_t r = tile0 + warp * MT * 16 + m * 16 + h * 8 + g;
            r = r < rows ? r : rows - 1;
            wp[m][h] = row_at(w.data, r, w.stride) + (int64_t)col0 * 2;
        }
    uint64_t policy;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));

    // Both buffers' loads go out before the wait: weights are constant.
    uint4 wa[U][MT][2], wb[U][MT][2];
    load_w<U, MT>(wa, wp, 0, nc, col0, d, policy);
    load_w<U, MT>(wb, wp, U, nc, col0, d, policy);
    pdl_release();
    pdl_wait();

    // x columns [32 c_lo, 32 (c_lo + nc)) of every token into shared
    // memory, zeros past n tokens and past d columns; all copies in flight
    // at once (loads into registers, one after the other, took 6-12 us of
    // a 28-35 us call).
    for (int e = threadIdx.x; e < NT * 8 * nc * 4; e += WARPS * 32) {
        const int r = e / (nc * 4), p = e % (nc * 4), col = c_lo * 32 + p * 8;
        const bool ok = r < n && col < d;
        cp_async16(sm + r * pitch + p * 16,
                   ok ? row_at(x.data, r, x.stride) + (int64_t)col * 2 : x.data, ok ? 16 : 0);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    float acc[MT][NT][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int j = 0; j < NT; j++)
            acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.0f;
    const char *xs = sm + g * pitch + t * 16;
    for (int c0 = 0; c0 < nc; c0 += 2 * U) {
        mul<T, U, MT, NT>(acc, wa, xs, pitch, c0, nc);
        load_w<U, MT>(wa, wp, c0 + 2 * U, nc, col0, d, policy);
        mul<T, U, MT, NT>(acc, wb, xs, pitch, c0 + U, nc);
        load_w<U, MT>(wb, wp, c0 + 3 * U, nc, col0, d, policy);
    }

    // The block's sums as a [token][row] f32 tile (x is no longer read):
    // c0, c1 are row g, tokens 2t, 2t + 1 of a tile; c2, c3 row g + 8.
    __syncthreads();
    float *tile = reinterpret_cast<float *>(sm);
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int r = warp * MT * 16 + m * 16 + g, k = j * 8 + 2 * t;
            tile[k * RP + r] = acc[m][j][0];
            tile[(k + 1) * RP + r] = acc[m][j][1];
            tile[k * RP + r + 8] = acc[m][j][2];
            tile[(k + 1) * RP + r + 8] = acc[m][j][3];
        }
    __syncthreads();
    // Consecutive threads take consecutive rows of one token: coalesced.
    if (S == 1) {
        for (int e = threadIdx.x; e < n * R; e += WARPS * 32) {
            const int k = e / R, r = e % R;
            if (tile0 + r < rows)
                store<O>(row_at(out.data, k, out.stride), tile0 + r, tile[k * RP + r]);
        }
        return;
    }
    for (int e = threadIdx.x; e < n * R; e += WARPS * 32) {
        const int k = e / R, r = e % R;
        if (tile0 + r < rows)
            __stcg(a.part + ((int64_t)s * n + k) * rows + tile0 + r, tile[k * RP + r]);
    }
    // The last block of the tile adds the splits' sums in split order.
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
        last = atomicAdd(a.count + blockIdx.x, 1) == S - 1;
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    for (int e = threadIdx.x; e < n * R; e += WARPS * 32) {
        const int k = e / R, r = e % R;
        if (tile0 + r >= rows)
            continue;
        const float *p = a.part + (int64_t)k * rows + tile0 + r;
        float v = 0.0f;
        for (int q = 0; q < S; q++)
            v += __ldcg(p + (int64_t)q * n * rows);
        store<O>(row_at(out.data, k, out.stride), tile0 + r, v);
    }
    if (threadIdx.x == 0)
        a.count[blockIdx.x] = 0;
}

// How a call is cut: rows per block (MT), splits of the columns.
struct plan_t {
    int mt, splits, chunks, nc_max, tiles;
};

// Splits: enough that a block stages at most NC_MAX chunks, and that the
// blocks cover every SM once; no more (each costs a partial write and
// read), and never under MIN_CHUNKS per split.
plan_t make_plan(int64_t rows, int64_t d, int sms, int mt)
{
    plan_t p;
    p.mt = mt;
    p.chunks = (int)((d + 31) / 32);
    p.tiles = (int)((rows + WARPS * mt * 16 - 1) / (WARPS * mt * 16));
    int sp = (p.chunks + NC_MAX - 1) / NC_MAX;
    int fill = (int)((sms + p.tiles - 1) / p.tiles), most = p.chunks / MIN_CHUNKS;
    most = most < MAX_SPLITS ? most : MAX_SPLITS;
    fill = fill < most ? fill : most;
    sp = sp > fill ? sp : fill;
    p.splits = sp < 1 ? 1 : sp;
    p.nc_max = (p.chunks + p.splits - 1) / p.splits;
    return p;
}

size_t smem_for(const plan_t &p, int nt)
{
    const size_t xs = (size_t)nt * 8 * pitch_for(p.nc_max);
    const size_t tile = (size_t)nt * 8 * (WARPS * p.mt * 16 + 4) * sizeof(float);
    return xs > tile ? xs : tile;
}

// ZL_CUDA_SKINNY=1 turns the kernel on; off by default until it beats
// cuBLASLt in the model (BENCHMARKS.md, "Linear for 9-32 tokens").
inline bool skinny_on()
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("ZL_CUDA_SKINNY");
        on = e && *e == '1';
    }
    return on;
}

#ifdef ZL_GEMV_TUNING
// A tuning build takes ZL_SKINNY_ROWS_MAX=N (decline matrices of more
// rows), ZL_SKINNY_FILL=F (blocks for F times the SMs) and ZL_SKINNY_U=2
// (2 chunks per buffer).
inline long tuned(const char *name, long dflt)
{
    const char *e = getenv(name);
    return e && *e ? atol(e) : dflt;
}
inline bool tuned_off(int64_t rows)
{
    static long most = -1;
    if (most < 0)
        most = tuned("ZL_SKINNY_ROWS_MAX", 0);
    return most > 0 && rows > most;
}
inline int tuned_fill()
{
    static long f = -1;
    if (f < 0)
        f = tuned("ZL_SKINNY_FILL", 1);
    return f < 1 ? 1 : (int)f;
}
inline bool tuned_u2()
{
    static long u = -1;
    if (u < 0)
        u = tuned("ZL_SKINNY_U", 4);
    return u == 2;
}
#else
inline bool tuned_off(int64_t) { return false; }
inline int tuned_fill() { return 1; }
inline bool tuned_u2() { return false; }
#endif

template <typename T, typename O, int NT, int MT, int U>
cudaError_t launch(const rows_t *out, const rows_t *x, const rows_t *w, const plan_t &p,
                   void *part, int32_t *count, cudaStream_t stream)
{
    auto kern = skinny_kernel<T, O, NT, MT, U>;
    const size_t smem = smem_for(p, NT);
    static size_t opted[64]; // per device: the dynamic shared memory allowed so far
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64)
        return cudaErrorNotSupported;
    if (smem > 48 * 1024 && smem > opted[dev]) {
        cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem);
        if (e != cudaSuccess)
            return e;
        opted[dev] = smem;
    }
    args_t a;
    a.part = static_cast<float *>(part);
    a.count = count;
    a.splits = p.splits;
    a.chunks = p.chunks;
    a.pitch = pitch_for(p.nc_max);
    return launch_pdl("gemv", kern, dim3((unsigned)p.tiles, (unsigned)p.splits), dim3(WARPS * 32),
                      smem, stream, *out, *x, *w, a);
}

template <typename T, typename O>
cudaError_t pick(const rows_t *out, const rows_t *x, const rows_t *w, const plan_t &p,
                 void *part, int32_t *count, cudaStream_t stream)
{
    const int nt = (int)((x->n + 7) / 8);
#ifdef ZL_GEMV_TUNING
    if (tuned_u2()) {
        if (nt == 2)
            return launch<T, O, 2, 1, 2>(out, x, w, p, part, count, stream);
        if (nt == 3)
            return launch<T, O, 3, 1, 2>(out, x, w, p, part, count, stream);
        return launch<T, O, 4, 1, 2>(out, x, w, p, part, count, stream);
    }
#endif
    if (nt == 2)
        return launch<T, O, 2, 1, 4>(out, x, w, p, part, count, stream);
    if (nt == 3)
        return launch<T, O, 3, 1, 4>(out, x, w, p, part, count, stream);
    return launch<T, O, 4, 1, 4>(out, x, w, p, part, count, stream);
}

} // namespace

extern "C" int zl_cuda_skinny_plan(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                                   const struct zl_cuda_rows *w, size_t *part_bytes,
                                   size_t *count_bytes)
{
    *part_bytes = *count_bytes = 0;
    const enum zl_dtype dt = w->dtype;
    if ((dt != ZL_DTYPE_BF16 && dt != ZL_DTYPE_F16) || x->dtype != dt ||
        (out->dtype != ZL_DTYPE_F32 && out->dtype != dt) || !skinny_on() || tuned_off(w->n))
        return 0;
    if (x->n <= ZL_CUDA_GEMV_MAX_ROWS || x->n > ZL_CUDA_SKINNY_MAX_ROWS || out->n != x->n ||
        x->d != w->d || out->d != w->n || w->n < 1 || w->d < 8 || w->d % 8 ||
        w->d > (int64_t)MAX_SPLITS * NC_MAX * 32 || w->n > ((int64_t)1 << 31))
        return 0;
    // 16-byte loads of w and x rows
    if (((uintptr_t)w->data | (uintptr_t)w->stride | (uintptr_t)x->data | (uintptr_t)x->stride) & 15)
        return 0;
    const int sms = device_sm_count();
    if (device_major() < 8 || sms < 1)
        return 0;
    const plan_t p = make_plan(w->n, w->d, sms * tuned_fill(), 1);
    if (p.splits > 1) {
        *part_bytes = (size_t)p.splits * (size_t)x->n * (size_t)w->n * sizeof(float);
        *count_bytes = (size_t)p.tiles * sizeof(int32_t);
    }
    return 1;
}

extern "C" cudaError_t zl_cuda_skinny(const struct zl_cuda_rows *out, const struct zl_cuda_rows *x,
                                      const struct zl_cuda_rows *w, void *part, size_t part_cap,
                                      int32_t *count, size_t count_cap, cudaStream_t stream)
{
    size_t need_part, need_count;
    if (!zl_cuda_skinny_plan(out, x, w, &need_part, &need_count))
        return cudaErrorNotSupported;
    if (need_part > part_cap || need_count > count_cap)
        return cudaErrorInvalidValue;
    const plan_t p = make_plan(w->n, w->d, device_sm_count() * tuned_fill(), 1);
    return with_linear_types(w->dtype, out->dtype, [&](auto tw, auto to) {
        return pick<decltype(tw), decltype(to)>(out, x, w, p, part, count, stream);
    });
}
