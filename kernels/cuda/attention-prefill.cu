// Tensor-core paged flash attention for varlen batches: not written yet;
// every batch takes the generic kernel of attention.cu.
#include "cuda-kernels.h"

extern "C" cudaError_t zl_cuda_attention_prefill(const struct zl_cuda_heads *, const struct zl_cuda_heads *,
                                                 const struct zl_cuda_kv *, const struct zl_cuda_batch *,
                                                 const struct zl_cuda_attn_shape *, float, cudaStream_t)
{
    return cudaErrorNotSupported;
}
