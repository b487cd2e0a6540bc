/* Scalar kernels: the fallback on CPUs without AVX2/FMA/F16C and the
 * reference the AVX2 kernels are compared with (same results within float
 * rounding: only the order of the f32 additions differs). */
#include "config.h"

#include "cpu-convert.h"
#include "cpu-impl.h"

/* NX x NW dot products; always inlined with constant NX, NW and dt so each
 * instance is a straight loop without a dtype switch inside. */
static inline __attribute__((always_inline)) void
tile(const float *x, size_t xs, const void *w, size_t ws, enum zl_dtype dt, int64_t k,
     float *out, const int NX, const int NW)
{
    float acc[4][4] = {{0}};
    for (int64_t i = 0; i < k; i++) {
        float wv[4];
        for (int c = 0; c < NW; c++)
            wv[c] = cpu_load_f32((const char *)w + (size_t)c * ws, dt, i);
        for (int r = 0; r < NX; r++) {
            float xv = ((const float *)((const char *)x + (size_t)r * xs))[i];
            for (int c = 0; c < NW; c++)
                acc[r][c] += xv * wv[c];
        }
    }
    for (int r = 0; r < NX; r++)
        for (int c = 0; c < NW; c++)
            out[r * NW + c] = acc[r][c];
}

#define TILE_FN(NX, NW)                                                                     \
    static void tile_##NX##x##NW(const float *x, size_t xs, const void *w, size_t ws,       \
                                 enum zl_dtype dt, int64_t k, float *out)                   \
    {                                                                                       \
        switch (dt) {                                                                       \
        case ZL_DTYPE_F16: tile(x, xs, w, ws, ZL_DTYPE_F16, k, out, NX, NW); break;         \
        case ZL_DTYPE_BF16: tile(x, xs, w, ws, ZL_DTYPE_BF16, k, out, NX, NW); break;       \
        default: tile(x, xs, w, ws, ZL_DTYPE_F32, k, out, NX, NW); break;                   \
        }                                                                                   \
    }
TILE_FN(4, 2)
TILE_FN(1, 4)
TILE_FN(1, 1)

static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static const struct cpu_kernels scalar = {
    .name = "scalar",
    .tile_4x2 = tile_4x2,
    .tile_1x4 = tile_1x4,
    .tile_1x1 = tile_1x1,
    .axpy = axpy,
    .to_f32 = cpu_row_to_f32,
};

const struct cpu_kernels *cpu_kernels_scalar(void)
{
    return &scalar;
}
