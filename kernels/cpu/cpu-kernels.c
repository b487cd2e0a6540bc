/* Scalar kernels: the fallback on CPUs without AVX2/FMA/F16C and the
 * reference the AVX2 kernels are compared with (same results within float
 * rounding: only the order of the f32 additions differs). */
#include "config.h"

#include <math.h>

#include "cpu-convert.h"
#include "cpu-impl.h"

#define LANES 8                 /* partial sums per dot product, as the AVX2 kernels */
#define WCHUNK 64               /* weights decoded to f32 per step, on the stack */

/* NX x NW dot products; always inlined with constant NX, NW and dt so each
 * instance is a straight loop.  Weights are decoded a chunk at a time, then
 * summed in LANES partial sums (plain C the compiler can keep in vector
 * registers without reassociating anything), then a scalar tail: the same
 * order for every tile shape, so results do not depend on the batch. */
static inline __attribute__((always_inline)) void
chunk(const float *x, size_t xs, const void *w, size_t ws, enum zl_dtype dt, int64_t i0,
      int64_t m, float acc[4][4][LANES], const int NX, const int NW)
{
    float wf[4][WCHUNK];
    for (int c = 0; c < NW; c++) {
        const char *wr = (const char *)w + (size_t)c * ws;
        if (dt == ZL_DTYPE_BF16)  /* a shift; NaN quietening is irrelevant to a sum */
            for (int64_t i = 0; i < m; i++)
                wf[c][i] = cpu_bits_f32((uint32_t)((const uint16_t *)wr)[i0 + i] << 16);
        else
            for (int64_t i = 0; i < m; i++)
                wf[c][i] = cpu_load_f32(wr, dt, i0 + i);
    }
    for (int r = 0; r < NX; r++) {
        const float *xr = (const float *)((const char *)x + (size_t)r * xs) + i0;
        for (int c = 0; c < NW; c++)
            for (int64_t i = 0; i < m; i += LANES)
                for (int l = 0; l < LANES; l++)
                    acc[r][c][l] += xr[i + l] * wf[c][i + l];
    }
}

static inline __attribute__((always_inline)) void
tile(const float *x, size_t xs, const void *w, size_t ws, enum zl_dtype dt, int64_t k,
     float *out, const int NX, const int NW)
{
    float acc[4][4][LANES] = {{{0}}};
    const int64_t kv = k / LANES * LANES;
    int64_t i0 = 0;
    /* full chunks with a constant trip count: -O2 vectorises only those */
    for (; i0 + WCHUNK <= kv; i0 += WCHUNK)
        chunk(x, xs, w, ws, dt, i0, WCHUNK, acc, NX, NW);
    if (i0 < kv)
        chunk(x, xs, w, ws, dt, i0, kv - i0, acc, NX, NW);
    for (int r = 0; r < NX; r++) {
        const float *xr = (const float *)((const char *)x + (size_t)r * xs);
        for (int c = 0; c < NW; c++) {
            const float *a = acc[r][c];
            /* the AVX2 horizontal sum's order: halves, then pairs, then the last two */
            float s = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
            for (int64_t i = kv; i < k; i++)
                s += xr[i] * cpu_load_f32((const char *)w + (size_t)c * ws, dt, i);
            out[r * NW + c] = s;
        }
    }
}

CPU_DEFINE_TILES(tile)

static void axpy_rows(float *y, const float *a, const float *x, int64_t xs, int64_t t, int64_t n)
{
    for (int64_t r = 0; r < t; r++)
        for (int64_t i = 0; i < n; i++)
            y[i] += a[r] * x[r * xs + i];
}

static float exp_sum(float *s, float m, int64_t n)
{
    float sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (s[i] = expf(s[i] - m));
    return sum;
}

static const struct cpu_kernels scalar = {
    .name = "scalar",
    .tile_4x2 = tile_4x2,
    .tile_4x3 = tile_4x3,
    .tile_1x4 = tile_1x4,
    .tile_1x1 = tile_1x1,
    .axpy_rows = axpy_rows,
    .exp_sum = exp_sum,
    .to_f32 = cpu_row_to_f32,
};

const struct cpu_kernels *cpu_kernels_scalar(void)
{
    return &scalar;
}
