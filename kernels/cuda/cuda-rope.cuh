// The rotary embedding's arithmetic, shared by every kernel that rotates
// (norm-rope.cu's rope and rope_kv_write, gemv.cu's QKV epilogue), so that
// they round identically: the fused and unfused paths must agree bit for
// bit (backend.h, linear_rope_kv).
#ifndef ZL_CUDA_ROPE_CUH
#define ZL_CUDA_ROPE_CUH

namespace zlcuda {

// cos and sin of position p for inverse frequency f, times attn_factor.
// sincosf, not __sincosf: angles reach 1e5 rad.
__device__ __forceinline__ void rope_cos_sin(float p, float f, float af, float *c, float *s)
{
    float sn, co;
    sincosf(p * f, &sn, &co);
    *c = co * af;
    *s = sn * af;
}

// The rotation of one (j, j + half) pair, without contraction into FMAs so
// that every caller rounds identically whatever the compiler fuses.
__device__ __forceinline__ float rot_lo(float x1, float x2, float c, float s)
{
    return __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
}
__device__ __forceinline__ float rot_hi(float x1, float x2, float c, float s)
{
    return __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

} // namespace zlcuda

#endif
