/* The CUDA backend plugin: device memory and copies for the memory manager,
 * and the device op table (ops land with the CUDA backend work). */
#include "config.h"

#include <cuda_runtime_api.h>

#include <zlight/backend.h>
#include <zlight/plugin.h>

#include "cuda-check.h"
#include "cuda-kernels.h"

const struct zl_host *zl_cuda_host;

static int cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        return 0; /* no driver or no GPU: not an error for a backend probe */
    return n;
}

static int cuda_score(void)
{
    return cuda_device_count() > 0 ? 100 : 0;
}

static int cuda_mem_info(int device, size_t *free_bytes, size_t *total_bytes)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    ZL_CUDA_TRY(cudaMemGetInfo(free_bytes, total_bytes));
    return ZL_OK;
}

static int cuda_mem_alloc(int device, size_t bytes, void **out)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    cudaError_t err = cudaMalloc(out, bytes);
    if (err != cudaSuccess)
        return zl_cuda_host->error(ZL_ENOMEM, "cudaMalloc(%zu bytes) on device %d failed: %s",
                                   bytes, device, cudaGetErrorString(err));
    return ZL_OK;
}

static void cuda_mem_free(int device, void *ptr)
{
    if (ptr && cudaSetDevice(device) == cudaSuccess)
        cudaFree(ptr);
}

static int cuda_copy_to_device(int device, void *dst, const void *src, size_t bytes)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    ZL_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return ZL_OK;
}

static int cuda_copy_to_host(int device, void *dst, const void *src, size_t bytes)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    ZL_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return ZL_OK;
}

static int cuda_synchronize(int device)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    ZL_CUDA_TRY(cudaDeviceSynchronize());
    return ZL_OK;
}

static int cuda_convert(int device, enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                        const void *src, size_t n)
{
    ZL_CUDA_TRY(cudaSetDevice(device));
    cudaError_t err = zl_cuda_convert(dst_dt, dst, src_dt, src, n, 0);
    if (err == cudaErrorInvalidValue)
        return zl_cuda_host->error(ZL_EUNSUPPORTED, "cuda convert: dtype %d -> %d is not supported "
                                   "(only f32, f16 and bf16)", (int)src_dt, (int)dst_dt);
    ZL_CUDA_TRY(err);
    return ZL_OK;
}

static const struct zl_backend_ops cuda_ops = {
    .size = sizeof(struct zl_backend_ops),
    .description = "NVIDIA CUDA",
    .score = cuda_score,
    .device_count = cuda_device_count,
    .mem_info = cuda_mem_info,
    .mem_alloc = cuda_mem_alloc,
    .mem_free = cuda_mem_free,
    .copy_to_device = cuda_copy_to_device,
    .copy_to_host = cuda_copy_to_host,
    .synchronize = cuda_synchronize,
    .convert = cuda_convert,
};

static int cuda_init(const struct zl_host *h)
{
    zl_cuda_host = h;
    return h->register_ops(ZL_PLUGIN_BACKEND, "cuda", &cuda_ops);
}

ZL_PLUGIN_DEFINE("cuda", PACKAGE_VERSION, "CUDA compute backend", cuda_init, NULL)
