// Tensor-core building blocks shared by the attention kernels (sm_80+:
// below that the bodies are empty and the launchers decline): cp.async
// copies into shared memory, ldmatrix fragment loads, the m16n8k16 MMA
// with f32 accumulators, and packing two floats into a 16-bit pair.
//
//   uint32_t a[4];  ldsm_x4(a, &q_tile[...]);      // A fragment
//   mma<__nv_bfloat16>(acc, a, b0, b1);           // acc += a * b
#ifndef ZL_CUDA_MMA_CUH
#define ZL_CUDA_MMA_CUH

#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace zlcuda {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define ZL_MMA_OK 1
#else
#define ZL_MMA_OK 0
#endif

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, asynchronously; bytes = 0 zero-fills.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes)
{
#if ZL_MMA_OK
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes)
                 : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit()
{
#if ZL_MMA_OK
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait()
{
#if ZL_MMA_OK
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
#if ZL_MMA_OK
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
#endif
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p)
{
#if ZL_MMA_OK
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
#endif
}

// d += a (16x16, row) * b (16x8, col), f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float d[4], const uint32_t a[4], uint32_t b0,
                                                   uint32_t b1)
{
#if ZL_MMA_OK
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
template <>
__device__ __forceinline__ void mma<__half>(float d[4], const uint32_t a[4], uint32_t b0,
                                            uint32_t b1)
{
#if ZL_MMA_OK
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two floats as one register of two 16-bit values (lo = the lower column).
template <typename T> __host__ __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __host__ __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
template <> __host__ __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi)
{
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

} // namespace zlcuda

#endif
