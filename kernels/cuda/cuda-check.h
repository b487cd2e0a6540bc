/* CUDA and cuBLASLt error checking that names the failing call (plugin-internal). */
#ifndef ZL_CUDA_CHECK_H
#define ZL_CUDA_CHECK_H

/* cublasLt.h declares one function as f() (not a C prototype) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <cublasLt.h>
#pragma GCC diagnostic pop
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

/* The same for a cublasStatus_t expression. */
#define ZL_CUBLAS_TRY(call)                                                      \
    do {                                                                         \
        cublasStatus_t st_ = (call);                                             \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                        \
            return zl_cuda_host->error(ZL_EBACKEND, "%s failed: %s (%s:%d)", #call, \
                                       cublasLtGetStatusString(st_), __FILE__, __LINE__); \
    } while (0)

/* Teardown paths that cannot return an error: a failing call is logged as
 * a warning, naming it, and the teardown goes on. */
#define ZL_CUDA_WARN(call)                                                       \
    do {                                                                         \
        cudaError_t err_ = (call);                                               \
        if (err_ != cudaSuccess)                                                 \
            zl_cuda_host->log(ZL_LOG_WARN, "cuda", "%s failed: %s (%s:%d)", #call, \
                              cudaGetErrorString(err_), __FILE__, __LINE__);     \
    } while (0)
#define ZL_CUBLAS_WARN(call)                                                     \
    do {                                                                         \
        cublasStatus_t st_ = (call);                                             \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                        \
            zl_cuda_host->log(ZL_LOG_WARN, "cuda", "%s failed: %s (%s:%d)", #call, \
                              cublasLtGetStatusString(st_), __FILE__, __LINE__); \
    } while (0)

#endif
