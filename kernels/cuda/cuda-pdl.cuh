// Programmatic dependent launch (PDL, sm_90+): a kernel launched with
// launch_pdl() may start while the kernel before it in the stream still
// runs, as soon as every block of that one has called pdl_release() (or
// ended).  It must call pdl_wait() before it reads what earlier kernels
// wrote or writes anything they read: the wait returns once the grid
// before it has finished and its writes are visible.  Work that touches
// neither (addresses, L2 prefetch of weights or old KV rows, host-uploaded
// metadata: its copy ended before the kernel before this one started) goes
// ahead of the wait, and a grid's launch latency hides under the one
// before it.
//
// Every block of a PDL kernel waits unconditionally, early exits included:
// the kernel after it waits only for this grid, so a block that returned
// without waiting would let that one run ahead of the grid before this.
// On older GPUs the attribute is left off and both calls are no-ops.
//
// Where a kernel releases is measured, not assumed: an early release lets
// the next grid's blocks take SM slots and sit waiting.  The GEMVs release
// at their start (the next GEMV's blocks prefetch weights meanwhile);
// rope_kv_write and decode attention do not release (their end releases):
// batch 1, Llama-3.1-8B bf16, one H100, ms per token: 7.97 with both
// releasing early (attention after its keys), 8.51 with only attention
// early, 6.90 with neither, 6.94 with the GEMVs not releasing instead;
// 7.00 for the build before PDL reached these kernels (one machine, two
// runs each, within 0.02).  Past 8 sequences decode attention releases
// after its keys: gemm-tma follows there, and its CTAs stream weights on
// the SMs the first attention CTAs leave (attention-decode.cu: batch 32
// 8.16 -> 8.09 ms a step).
#ifndef ZL_CUDA_PDL_CUH
#define ZL_CUDA_PDL_CUH

#include <cuda_runtime.h>

namespace zlcuda {

__device__ __forceinline__ void pdl_release()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// An attribute of the current device, asked once per device (the launch
// paths run for every layer); 0 when it cannot be asked.
template <cudaDeviceAttr A> inline int device_attr()
{
    static int cached[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0)
        return 0;
    if (dev < 64 && cached[dev])
        return cached[dev];
    int v = 0;
    if (cudaDeviceGetAttribute(&v, A, dev) != cudaSuccess)
        return 0;
    if (dev < 64)
        cached[dev] = v;
    return v;
}
inline int device_major() { return device_attr<cudaDevAttrComputeCapabilityMajor>(); }
inline int device_sm_count() { return device_attr<cudaDevAttrMultiProcessorCount>(); }

#ifdef ZL_GEMV_TUNING
// Tuning build: ZL_PDL_OFF="gemv,rope,attn,elt" launches those plainly.
#include <stdlib.h>
#include <string.h>
inline bool pdl_off(const char *what)
{
    static const char *e = getenv("ZL_PDL_OFF");
    return e && strstr(e, what);
}
#else
inline bool pdl_off(const char *) { return false; }
#endif

// The > 48 KB shared memory opt-in of `kernel`, once per device (done:
// a static bool[64] of the caller's, one per kernel).
template <typename K> cudaError_t smem_opt_in(K kernel, size_t bytes, bool *done)
{
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64)
        return cudaErrorNotSupported;
    if (done[dev])
        return cudaSuccess;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)bytes);
    done[dev] = e == cudaSuccess;
    return e;
}

// `what` names the kernel's class for a tuning build (see above).
template <typename... P, typename... A>
cudaError_t launch_pdl(const char *what, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                       cudaStream_t stream, A &&...args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    if (device_major() >= 9 && !pdl_off(what))
        cfg.attrs = attr, cfg.numAttrs = 1;
    cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, static_cast<A &&>(args)...);
    return err != cudaSuccess ? err : cudaGetLastError();
}

} // namespace zlcuda

#endif
