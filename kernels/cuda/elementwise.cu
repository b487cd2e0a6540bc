// Row-wise ops without reductions: embedding gather, silu_mul, add, copy
// (with conversion) and the bias epilogue of linear.  One block walks a row
// at a time (grid-stride over rows), its threads the columns, so strided row
// views cost nothing extra and reads stay coalesced along a row.  silu_mul
// and add, which sit between a layer's kernels, launch as programmatic
// dependents (cuda-pdl.cuh): their launch hides under the kernel before;
// on 16-bit, 16-byte aligned rows they run over a grid of (column chunks of
// 8 elements, rows) instead.  Measured (ncu, serialised, 32 rows, H100):
// silu_mul over 14336 columns 28.3 -> 3.95 us, add over 4096 9.5 -> 3.2 us;
// one block of 2-byte loads per row was latency bound.
#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-pdl.cuh"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_rows rows_t;

template <typename F> __device__ __forceinline__ void for_rows(int64_t n, int64_t d, F f)
{
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x)
        for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
            f(r, c);
}

template <typename T> __global__ void silu_mul_kernel(rows_t o, rows_t a, rows_t b)
{
    pdl_release();
    pdl_wait();
    for_rows(o.n, o.d, [&](int64_t r, int64_t c) {
        float g = load<T>(row_at(a.data, r, a.stride), c);
        float u = load<T>(row_at(b.data, r, b.stride), c);
        store<T>(row_at(o.data, r, o.stride), c, g / (1.0f + expf(-g)) * u);
    });
}

// The same two ops in 16-byte chunks (rows_vec8): thread (x) takes chunk
// c of rows y, y + gridDim.y, ...; bit for bit what the scalar kernels store.
__device__ __forceinline__ uint4 ld16(const char *row, int64_t c)
{
    return *reinterpret_cast<const uint4 *>(row + c * 16);
}

template <typename T, bool SILU> __global__ void pair_vec8_kernel(rows_t o, rows_t a, rows_t b)
{
    pdl_release();
    pdl_wait();
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= o.d / 8)
        return;
    for (int64_t r = blockIdx.y; r < o.n; r += gridDim.y) {
        uint4 va = ld16(row_at(a.data, r, a.stride), c);
        uint4 vb = ld16(row_at(b.data, r, b.stride), c);
        uint4 vo;
        const T *ea = reinterpret_cast<const T *>(&va), *eb = reinterpret_cast<const T *>(&vb);
        T *eo = reinterpret_cast<T *>(&vo);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float x = to_f32<T>(ea[i]), y = to_f32<T>(eb[i]);
            eo[i] = from_f32<T>(SILU ? x / (1.0f + expf(-x)) * y : x + y);
        }
        *reinterpret_cast<uint4 *>(row_at(o.data, r, o.stride) + c * 16) = vo;
    }
}

template <typename T> __global__ void add_kernel(rows_t o, rows_t a, rows_t b)
{
    pdl_release();
    pdl_wait();
    for_rows(o.n, o.d, [&](int64_t r, int64_t c) {
        store<T>(row_at(o.data, r, o.stride), c,
                 load<T>(row_at(a.data, r, a.stride), c) + load<T>(row_at(b.data, r, b.stride), c));
    });
}

template <typename D, typename S> __global__ void copy_kernel(rows_t o, rows_t s)
{
    for_rows(o.n, o.d, [&](int64_t r, int64_t c) {
        store<D>(row_at(o.data, r, o.stride), c, load<S>(row_at(s.data, r, s.stride), c));
    });
}

template <typename D, typename S>
__global__ void embedding_kernel(rows_t o, rows_t table, const int32_t *tokens, int32_t *err)
{
    for (int64_t r = blockIdx.x; r < o.n; r += gridDim.x) {
        int32_t id = tokens[r];
        bool ok = id >= 0 && id < table.n;
        if (!ok && threadIdx.x == 0 && atomicCAS(err, 0, 1) == 0) {
            err[1] = id;     // the first bad token wins the flag and names itself
            err[2] = (int32_t)r;
            err[3] = (int32_t)table.n;
        }
        const char *src = ok ? row_at(table.data, id, table.stride) : nullptr;
        char *dst = row_at(o.data, r, o.stride);
        for (int64_t c = threadIdx.x; c < o.d; c += blockDim.x)
            store<D>(dst, c, ok ? load<S>(src, c) : 0.0f);
    }
}

template <typename T, typename B>
__global__ void bias_kernel(rows_t o, const void *bias, int assign)
{
    for_rows(o.n, o.d, [&](int64_t r, int64_t c) {
        char *row = row_at(o.data, r, o.stride);
        float b = bias ? load<B>(bias, c) : 0.0f;
        store<T>(row, c, assign ? b : load<T>(row, c) + b);
    });
}

// v = hi + mid + lo exactly (8 + 8 + 8 significant bits cover f32's 24;
// bf16 has f32's exponent range): each residual is exact in f32.
__global__ void split_bf16_kernel(rows_t x, __nv_bfloat16 *dst)
{
    const int64_t plane = x.n * x.d;
    for_rows(x.n, x.d, [&](int64_t r, int64_t c) {
        float v = load<float>(row_at(x.data, r, x.stride), c);
        __nv_bfloat16 hi = __float2bfloat16_rn(v);
        float r1 = v - __bfloat162float(hi);
        __nv_bfloat16 mid = __float2bfloat16_rn(r1);
        float r2 = r1 - __bfloat162float(mid);
        int64_t at = r * x.d + c;
        dst[at] = hi;
        dst[plane + at] = mid;
        dst[2 * plane + at] = __float2bfloat16_rn(r2);
    });
}

} // namespace

extern "C" cudaError_t zl_cuda_split_bf16(const rows_t *x, void *dst, cudaStream_t stream)
{
    if (x->dtype != ZL_DTYPE_F32)
        return cudaErrorInvalidValue;
    split_bf16_kernel<<<row_blocks(x->n), row_threads(x->d), 0, stream>>>(
        *x, static_cast<__nv_bfloat16 *>(dst));
    return cudaGetLastError();
}

// out = silu(a) * b or a + b: 16-byte chunks over a 2-d grid when the rows
// allow (rows_vec8), else one block per row.
template <bool SILU>
static cudaError_t pair_op(const rows_t *out, const rows_t *a, const rows_t *b, cudaStream_t stream)
{
    const rows_t *all[3] = {out, a, b};
    return with_float_type(out->dtype, [&](auto t) {
        using T = decltype(t);
        if (rows_vec8(all, 3) && out->n > 0) {
            const unsigned threads = row_threads(out->d / 8, 128);
            const dim3 grid(grid_for(out->d / 8, threads),
                            (unsigned)(out->n < 65535 ? out->n : 65535));
            if constexpr (sizeof(T) == 2)
                return launch_pdl("elt", pair_vec8_kernel<T, SILU>, grid, dim3(threads), 0, stream,
                                  *out, *a, *b);
        }
        return launch_pdl("elt", SILU ? silu_mul_kernel<T> : add_kernel<T>, row_blocks(out->n),
                          row_threads(out->d), 0, stream, *out, *a, *b);
    });
}

extern "C" cudaError_t zl_cuda_silu_mul(const rows_t *out, const rows_t *a, const rows_t *b,
                                        cudaStream_t stream)
{
    return pair_op<true>(out, a, b, stream);
}

extern "C" cudaError_t zl_cuda_add(const rows_t *out, const rows_t *a, const rows_t *b,
                                   cudaStream_t stream)
{
    return pair_op<false>(out, a, b, stream);
}

extern "C" cudaError_t zl_cuda_copy(const rows_t *dst, const rows_t *src, cudaStream_t stream)
{
    return with_float_types(dst->dtype, src->dtype, [&](auto td, auto ts) {
        copy_kernel<decltype(td), decltype(ts)>
            <<<row_blocks(dst->n), row_threads(dst->d), 0, stream>>>(*dst, *src);
        return cudaGetLastError();
    });
}

extern "C" cudaError_t zl_cuda_embedding(const rows_t *out, const rows_t *table,
                                         const int32_t *tokens, int32_t *err, cudaStream_t stream)
{
    return with_float_types(out->dtype, table->dtype, [&](auto td, auto ts) {
        embedding_kernel<decltype(td), decltype(ts)>
            <<<row_blocks(out->n), row_threads(out->d), 0, stream>>>(*out, *table, tokens, err);
        return cudaGetLastError();
    });
}

extern "C" cudaError_t zl_cuda_bias_rows(const rows_t *out, const void *bias, enum zl_dtype bias_dt,
                                         int assign, cudaStream_t stream)
{
    return with_float_types(out->dtype, bias_dt, [&](auto t, auto tb) {
        bias_kernel<decltype(t), decltype(tb)>
            <<<row_blocks(out->n), row_threads(out->d), 0, stream>>>(*out, bias, assign);
        return cudaGetLastError();
    });
}
