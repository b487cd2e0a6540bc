// Decode-sized linear: not written yet; every call declines and cuBLASLt runs.
#include "cuda-kernels.h"

extern "C" cudaError_t zl_cuda_gemv(const struct zl_cuda_rows *, const struct zl_cuda_rows *,
                                    const struct zl_cuda_rows *, cudaStream_t)
{
    return cudaErrorNotSupported;
}
