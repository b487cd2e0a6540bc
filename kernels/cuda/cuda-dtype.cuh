// Storage types of the kernels (f32, f16, bf16) and their f32 math: loads,
// stores (round to nearest even) and the dtype -> C++ type dispatch the
// launchers share.
//
//   return with_float_type(rows->dtype, [&](auto tag) {
//       using T = decltype(tag);
//       my_kernel<T><<<grid, block, 0, stream>>>((T *)rows->data, ...);
//       return cudaGetLastError();
//   });
#ifndef ZL_CUDA_DTYPE_CUH
#define ZL_CUDA_DTYPE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <zlight/dtype.h>

#include "cuda-kernels.h"

namespace zlcuda {

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

// Element i of a row that starts at byte address `row`.
template <typename T> __device__ __forceinline__ float load(const void *row, int64_t i)
{
    return to_f32<T>(static_cast<const T *>(row)[i]);
}
template <typename T> __device__ __forceinline__ void store(void *row, int64_t i, float v)
{
    static_cast<T *>(row)[i] = from_f32<T>(v);
}

// Start of row r of a strided row view.
__device__ __forceinline__ char *row_at(void *base, int64_t r, int64_t stride)
{
    return static_cast<char *>(base) + r * stride;
}
__device__ __forceinline__ const char *row_at(const void *base, int64_t r, int64_t stride)
{
    return static_cast<const char *>(base) + r * stride;
}

// Calls f(T{}) with T the storage type of dt; cudaErrorInvalidValue for a
// dtype the kernels do not store.
template <typename F> cudaError_t with_float_type(enum zl_dtype dt, F &&f)
{
    switch (dt) {
    case ZL_DTYPE_F32: return f(float{});
    case ZL_DTYPE_F16: return f(__half{});
    case ZL_DTYPE_BF16: return f(__nv_bfloat16{});
    default: return cudaErrorInvalidValue;
    }
}

// [n_kv_heads][head_dim] row of cache slot `slot` (K: kv = 0, V: kv = 1) of
// the paged cache layout of backend.h.
template <typename C>
__device__ __forceinline__ C *kv_row(const struct zl_cuda_kv &c, int kv, int64_t slot)
{
    int64_t blk = slot / c.block_size, off = slot % c.block_size;
    int64_t row = (int64_t)c.n_kv_heads * c.head_dim;
    char *b = c.base + (size_t)blk * c.block_stride;
    return reinterpret_cast<C *>(b) + (((int64_t)c.layer * 2 + kv) * c.block_size + off) * row;
}

// Two storage types at once: f(A{}, B{}).
template <typename F> cudaError_t with_float_types(enum zl_dtype a, enum zl_dtype b, F &&f)
{
    return with_float_type(a, [&](auto ta) {
        return with_float_type(b, [&](auto tb) { return f(ta, tb); });
    });
}

// Blocks of `threads` covering n items, capped for grid-stride loops.
static inline unsigned grid_for(int64_t n, unsigned threads, unsigned cap = 65535u * 8u)
{
    int64_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    return b > (int64_t)cap ? cap : (unsigned)b;
}

// Row kernels: one block per row (grid-stride beyond 2^20 rows), whole warps
// of threads over the columns, at most `max`.
static inline unsigned row_blocks(int64_t n)
{
    return grid_for(n, 1, 1u << 20);
}
static inline unsigned row_threads(int64_t d, int64_t max = 256)
{
    int64_t t = (d + 31) / 32 * 32;
    return t < 32 ? 32 : t > max ? (unsigned)max : (unsigned)t;
}

// Sum / max of v over the warp (a fixed butterfly: every lane gets the
// same bits, independent of timing).
__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Rows walkable in 16-byte chunks of 8 elements: 16-bit elements, every
// base and row stride 16-byte aligned, d a multiple of 8.  The row kernels
// then load and store uint4s: a scalar 2-byte walk with one block per row
// left a decode step's silu_mul (32 rows of 14336) at 28 us, latency bound.
static inline bool rows_vec8(const struct zl_cuda_rows *const *rs, int n)
{
    for (int i = 0; i < n; i++)
        if (rs[i]->dtype == ZL_DTYPE_F32 || rs[i]->d % 8 ||
            (((uintptr_t)rs[i]->data | (uintptr_t)rs[i]->stride) & 15))
            return false;
    return true;
}

// Sum of v over the block (blockDim.x a multiple of 32), returned to every
// thread; sh holds 32 floats.  Safe to call repeatedly with the same sh.
__device__ __forceinline__ float block_sum(float v, float *sh)
{
    v = warp_sum(v);
    unsigned lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads(); // the previous call's readers are done with sh
    if (lane == 0)
        sh[threadIdx.x / 32] = v;
    __syncthreads();
    return warp_sum(lane < nw ? sh[lane] : 0.0f);
}

} // namespace zlcuda

#endif
