/* CUDA error checking that names the failing call (plugin-internal). */
#ifndef ZL_CUDA_CHECK_H
#define ZL_CUDA_CHECK_H

#include <cuda_runtime_api.h>
#include <zlight/plugin.h>

extern const struct zl_host *zl_cuda_host;

/* Evaluates a cudaError_t expression; on failure reports "cudaX(...) failed:
 * <reason>" through the host and returns ZL_EBACKEND from the caller. */
#define ZL_CUDA_TRY(call)                                                        \
    do {                                                                         \
        cudaError_t err_ = (call);                                               \
        if (err_ != cudaSuccess)                                                 \
            return zl_cuda_host->error(ZL_EBACKEND, "%s failed: %s (%s:%d)", #call, \
                                       cudaGetErrorString(err_), __FILE__, __LINE__); \
    } while (0)

#endif
