// Element-wise dtype conversion between f32, f16 and bf16 on the device.
#include "cuda-dtype.cuh"
#include "cuda-kernels.h"

using namespace zlcuda;

namespace {

template <typename D, typename S>
__global__ void convert_kernel(D *__restrict__ dst, const S *__restrict__ src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<D>(to_f32<S>(src[i]));
}

} // namespace

extern "C" cudaError_t zl_cuda_convert(enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                                       const void *src, size_t n, cudaStream_t stream)
{
    return with_float_types(dst_dt, src_dt, [&](auto td, auto ts) {
        using D = decltype(td);
        using S = decltype(ts);
        if (n == 0)
            return cudaSuccess;
        const unsigned threads = 256; // grid-stride loop covers what the capped grid does not
        convert_kernel<D, S><<<grid_for((int64_t)n, threads), threads, 0, stream>>>(
            (D *)dst, (const S *)src, n);
        return cudaGetLastError();
    });
}
