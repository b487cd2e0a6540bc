// Element-wise dtype conversion between f32, f16 and bf16 on the device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda-kernels.h"

namespace {

template <typename T> __device__ float to_f32(T v);
template <> __device__ float to_f32<float>(float v) { return v; }
template <> __device__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ T from_f32(float v);
template <> __device__ float from_f32<float>(float v) { return v; }
template <> __device__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename D, typename S>
__global__ void convert_kernel(D *__restrict__ dst, const S *__restrict__ src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<D>(to_f32<S>(src[i]));
}

template <typename D, typename S>
cudaError_t launch(void *dst, const void *src, size_t n, cudaStream_t stream)
{
    if (n == 0)
        return cudaSuccess;
    const unsigned threads = 256;
    size_t blocks = (n + threads - 1) / threads;
    if (blocks > 65535u * 8u)
        blocks = 65535u * 8u; // grid-stride loop covers the rest
    convert_kernel<D, S><<<(unsigned)blocks, threads, 0, stream>>>((D *)dst, (const S *)src, n);
    return cudaGetLastError();
}

template <typename D>
cudaError_t dispatch_src(enum zl_dtype src_dt, void *dst, const void *src, size_t n, cudaStream_t s)
{
    switch (src_dt) {
    case ZL_DTYPE_F32: return launch<D, float>(dst, src, n, s);
    case ZL_DTYPE_F16: return launch<D, __half>(dst, src, n, s);
    case ZL_DTYPE_BF16: return launch<D, __nv_bfloat16>(dst, src, n, s);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" cudaError_t zl_cuda_convert(enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                                       const void *src, size_t n, cudaStream_t stream)
{
    switch (dst_dt) {
    case ZL_DTYPE_F32: return dispatch_src<float>(src_dt, dst, src, n, stream);
    case ZL_DTYPE_F16: return dispatch_src<__half>(src_dt, dst, src, n, stream);
    case ZL_DTYPE_BF16: return dispatch_src<__nv_bfloat16>(src_dt, dst, src, n, stream);
    default: return cudaErrorInvalidValue;
    }
}
