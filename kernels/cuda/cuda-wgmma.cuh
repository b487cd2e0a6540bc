// wgmma (sm_90a) building blocks shared by gemm-tma.cu and the Hopper
// prefill attention kernel: shared-memory matrix descriptors of 128-byte
// swizzled tiles, the fence / commit / wait steps, and the
// m64nNk16 products with f32 accumulators, both operands in shared memory
// (SS) or A in registers (RS).  Built for another target the bodies are
// empty and the callers' launchers decline.
//
//   wg_fence();                              // registers ready
//   wgmma<T, 64>::run(d, desc_a, desc_b);    // d[64 x 64] += A B
//   wg_commit(); wg_wait0(); reg_fence(d);   // d readable
#ifndef ZL_CUDA_WGMMA_CUH
#define ZL_CUDA_WGMMA_CUH

#include <stdint.h>

#include "cuda-mma.cuh" // smem_addr

namespace zlcuda {

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ZL_WGMMA_OK 1
#else
#define ZL_WGMMA_OK 0
#endif

// Whether the including file was built for sm_90a (config.h's
// ZL_CUDA_SM90A; include config.h first): where the bodies are not empty.
inline bool sm90a_built()
{
#ifdef ZL_CUDA_SM90A
    return true;
#else
    return false;
#endif
}

// Shared-memory matrix descriptor of a 128-byte-swizzled operand at
// shared address addr (its 18 low bits; 1024-aligned 8-row groups, 16-byte
// chunk c of row r at c ^ (r & 7)): the stride byte offset (sbo) between
// 8-row groups is 1024; the leading byte offset (lbo) is the distance of
// the next 64 MN-columns of an MN-major operand (unused K-major).  Also
// built on the host, where tests/cuda/test_prefill_wg_layout.cu checks
// what wgmma reads through it.
__host__ __device__ __forceinline__ uint64_t sw128_desc_at(uint32_t addr, uint32_t lbo)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((1024ull >> 4) << 32) | (1ull << 62);
}

// Descriptor of a K-major tile of 128-byte rows as TMA's 128-byte swizzle
// lays it out: 8-row groups 1024 bytes apart; +2 per 16 elements of k.
__device__ __forceinline__ uint64_t sw128_desc(const void *p)
{
    return sw128_desc_at(smem_addr(p), 16);
}

__device__ __forceinline__ void wg_fence()
{
#if ZL_WGMMA_OK
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit()
{
#if ZL_WGMMA_OK
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_wait0()
{
#if ZL_WGMMA_OK
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#endif
}
// Generic-proxy writes to shared memory (st.shared, cp.async) made visible
// to the async proxy wgmma reads through; then a barrier.
__device__ __forceinline__ void fence_proxy_async()
{
#if ZL_WGMMA_OK
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}
// Keeps the compiler from moving accumulator reads across the wait.
template <int R> __device__ __forceinline__ void reg_fence(float (&d)[R])
{
#pragma unroll
    for (int i = 0; i < R; i++)
        asm volatile("" : "+f"(d[i])::"memory");
}

#define ZL_WG_R4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
// scale-d is a predicate set from an operand (0: d = A B, 1: d += A B)
#define ZL_WG_SS(shape, ty, regs, dA, dB, sc)                                                    \
    "{ .reg .pred p;\n setp.ne.b32 p, " sc ", 0;\n wgmma.mma_async.sync.aligned." shape ".f32." \
    ty "." ty " {" regs "}, " dA ", " dB ", p, 1, 1, 0, 0;\n}"
// A from registers, B MN-major (transposed)
#define ZL_WG_RS_T(shape, ty, regs, rA, dB, sc)                                                  \
    "{ .reg .pred p;\n setp.ne.b32 p, " sc ", 0;\n wgmma.mma_async.sync.aligned." shape ".f32." \
    ty "." ty " {" regs "}, {" rA "}, " dB ", p, 1, 1, 1;\n}"

// d[64 x N] (+)= A (64 x 16 at descriptor a) * B (16 x N at b), both K-major.
template <typename T, int N> struct wgmma;
// d[64 x N] (+)= A (64 x 16, registers: mma.sync's A fragment per warp of
// 16 rows) * B (16 x N at b, MN-major).
template <typename T, int N> struct wgmma_rs;
#define ZL_WG_DEF(T, TY)                                                                           \
    template <> struct wgmma<T, 16> {                                                              \
        static __device__ __forceinline__ void run(float (&d)[8], uint64_t a, uint64_t b,          \
                                                   int sc = 1)                                     \
        {                                                                                          \
            asm volatile(ZL_WG_SS("m64n16k16", TY,                                                 \
                                  "%0,%1,%2,%3,%4,%5,%6,%7",                                       \
                                  "%8", "%9", "%10")                                               \
                         : ZL_WG_R4(0), ZL_WG_R4(4)                                                \
                         : "l"(a), "l"(b), "r"(sc));                                               \
        }                                                                                          \
    };                                                                                             \
    template <> struct wgmma<T, 32> {                                                              \
        static __device__ __forceinline__ void run(float (&d)[16], uint64_t a, uint64_t b,         \
                                                   int sc = 1)                                     \
        {                                                                                          \
            asm volatile(ZL_WG_SS("m64n32k16", TY,                                                 \
                                  "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15",         \
                                  "%16", "%17", "%18")                                             \
                         : ZL_WG_R4(0), ZL_WG_R4(4), ZL_WG_R4(8), ZL_WG_R4(12)                     \
                         : "l"(a), "l"(b), "r"(sc));                                               \
        }                                                                                          \
    };                                                                                             \
    template <> struct wgmma<T, 64> {                                                              \
        static __device__ __forceinline__ void run(float (&d)[32], uint64_t a, uint64_t b,         \
                                                   int sc = 1)                                     \
        {                                                                                          \
            asm volatile(ZL_WG_SS("m64n64k16", TY,                                                 \
                                  "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,"     \
                                  "%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31",   \
                                  "%32", "%33", "%34")                                             \
                         : ZL_WG_R4(0), ZL_WG_R4(4), ZL_WG_R4(8), ZL_WG_R4(12),                    \
                           ZL_WG_R4(16), ZL_WG_R4(20), ZL_WG_R4(24), ZL_WG_R4(28)                  \
                         : "l"(a), "l"(b), "r"(sc));                                               \
        }                                                                                          \
    };                                                                                             \
    template <> struct wgmma<T, 128> {                                                             \
        static __device__ __forceinline__ void run(float (&d)[64], uint64_t a, uint64_t b,         \
                                                   int sc = 1)                                     \
        {                                                                                          \
            asm volatile(ZL_WG_SS("m64n128k16", TY,                                                \
                                  "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,"     \
                                  "%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"   \
                                  "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,"   \
                                  "%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,"   \
                                  "%62,%63",                                                       \
                                  "%64", "%65", "%66")                                             \
                         : ZL_WG_R4(0), ZL_WG_R4(4), ZL_WG_R4(8), ZL_WG_R4(12),                    \
                           ZL_WG_R4(16), ZL_WG_R4(20), ZL_WG_R4(24), ZL_WG_R4(28),                 \
                           ZL_WG_R4(32), ZL_WG_R4(36), ZL_WG_R4(40), ZL_WG_R4(44),                 \
                           ZL_WG_R4(48), ZL_WG_R4(52), ZL_WG_R4(56), ZL_WG_R4(60)                  \
                         : "l"(a), "l"(b), "r"(sc));                                               \
        }                                                                                          \
    };                                                                                             \
    template <> struct wgmma_rs<T, 128> {                                                          \
        static __device__ __forceinline__ void run(float (&d)[64], const uint32_t (&a)[4],         \
                                                   uint64_t b, int sc = 1)                         \
        {                                                                                          \
            asm volatile(ZL_WG_RS_T("m64n128k16", TY,                                              \
                                    "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,"   \
                                    "%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31," \
                                    "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46," \
                                    "%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61," \
                                    "%62,%63",                                                     \
                                    "%64,%65,%66,%67", "%68", "%69")                               \
                         : ZL_WG_R4(0), ZL_WG_R4(4), ZL_WG_R4(8), ZL_WG_R4(12),                    \
                           ZL_WG_R4(16), ZL_WG_R4(20), ZL_WG_R4(24), ZL_WG_R4(28),                 \
                           ZL_WG_R4(32), ZL_WG_R4(36), ZL_WG_R4(40), ZL_WG_R4(44),                 \
                           ZL_WG_R4(48), ZL_WG_R4(52), ZL_WG_R4(56), ZL_WG_R4(60)                  \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(sc));           \
        }                                                                                          \
    };

#if ZL_WGMMA_OK
ZL_WG_DEF(__nv_bfloat16, "bf16")
ZL_WG_DEF(__half, "f16")
#else
template <typename T, int N> struct wgmma {
    template <typename D>
    static __device__ __forceinline__ void run(D &, uint64_t, uint64_t, int = 1)
    {
    }
};
template <typename T, int N> struct wgmma_rs {
    template <typename D, typename A>
    static __device__ __forceinline__ void run(D &, const A &, uint64_t, int = 1)
    {
    }
};
#endif

} // namespace zlcuda

#endif
