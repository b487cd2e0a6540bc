// Tensor-core split-KV decode attention: not written yet; every batch takes
// the generic kernel of attention.cu.
#include "cuda-kernels.h"

extern "C" size_t zl_cuda_attention_decode_scratch(int32_t, int32_t, int32_t, int32_t)
{
    return 0;
}

extern "C" cudaError_t zl_cuda_attention_decode(const struct zl_cuda_heads *, const struct zl_cuda_heads *,
                                                const struct zl_cuda_kv *, const struct zl_cuda_batch *,
                                                const struct zl_cuda_attn_shape *, float, void *, size_t,
                                                cudaStream_t)
{
    return cudaErrorNotSupported;
}
