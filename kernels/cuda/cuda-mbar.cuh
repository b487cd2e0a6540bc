// mbarrier transactions in shared memory (sm_90+; older targets compile
// them empty, and their callers never launch there): a producer arms a
// barrier with the bytes its bulk or TMA copies will deliver, consumers
// wait for the phase to complete, then arrive on an "empty" barrier to
// hand the slot back.
//
//   mbar_init(&full[s], 1);                  // once, before __syncthreads
//   mbar_expect_tx(&full[s], bytes);         // producer, then the copies
//   mbar_wait(&full[s], phase & 1);          // consumers
#ifndef ZL_CUDA_MBAR_CUH
#define ZL_CUDA_MBAR_CUH

#include <stdint.h>

#include "cuda-mma.cuh" // smem_addr

namespace zlcuda {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define ZL_MBAR_OK 1
#else
#define ZL_MBAR_OK 0
#endif

__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count)
{
#if ZL_MBAR_OK
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(b)), "r"(count));
#endif
}

// One arrival that also expects `bytes` of copies on b's current phase.
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, unsigned bytes)
{
#if ZL_MBAR_OK
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(b)),
                 "r"(bytes)
                 : "memory");
#endif
}

__device__ __forceinline__ void mbar_arrive(uint64_t *b)
{
#if ZL_MBAR_OK
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(b)) : "memory");
#endif
}

// Returns once the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity)
{
#if ZL_MBAR_OK
    uint32_t done = 0;
    while (!done)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;"
                     " selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(smem_addr(b)), "r"(parity)
                     : "memory");
#endif
}

} // namespace zlcuda

#endif
