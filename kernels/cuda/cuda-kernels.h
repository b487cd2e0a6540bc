/* extern "C" launchers of the CUDA kernels (called from the C plugin). */
#ifndef ZL_CUDA_KERNELS_H
#define ZL_CUDA_KERNELS_H

#include <stddef.h>
#include <cuda_runtime_api.h>
#include <zlight/dtype.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element-wise f32/f16/bf16 conversion on `stream`, round to nearest even.
 * Returns cudaErrorInvalidValue for other dtype pairs. */
cudaError_t zl_cuda_convert(enum zl_dtype dst_dt, void *dst, enum zl_dtype src_dt,
                            const void *src, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
