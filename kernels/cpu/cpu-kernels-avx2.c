/* AVX2 + FMA + F16C kernels, compiled for that target by a pragma and
 * chosen at run time (cpu_kernels_avx2() returns NULL on CPUs without it),
 * so one plugin binary runs everywhere. */
#include "config.h"

#include "cpu-impl.h"

#if defined(__x86_64__) || defined(__i386__)

#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <math.h>

#include "cpu-convert.h"

/* 8 weights at w[i..i+8) of dtype dt as f32 (exact for f16/bf16). */
static inline __attribute__((always_inline)) __m256 load8(const void *w, enum zl_dtype dt,
                                                          int64_t i)
{
    switch (dt) {
    case ZL_DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    case ZL_DTYPE_BF16: {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    default:
        return _mm256_loadu_ps((const float *)w + i);
    }
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* How far ahead of a one-row tile the weights are prefetched, in bytes,
 * and the longest weight row that gets it.  A decode matvec walks NW rows
 * side by side; with short rows those streams last a few lines each and
 * the hardware prefetcher keeps too few lines in flight.  On the dev box
 * (AMD EPYC, one core, f16) 576-element rows streamed 6.8 GB/s without and
 * 15.3 with it, 1536-element rows 12.5 and 14.3; from 2048 elements
 * (4 KiB) the hardware does better alone (15.3 and 13.8).  BENCHMARKS.md. */
#define PREFETCH_AHEAD 8192
#define PREFETCH_MAX_ROW 4096

/* NX x NW dot products, 8 lanes per accumulator (NX * NW <= 12 registers;
 * the loops over rows and columns are unrolled so they stay in registers).
 * Every tile shape sums one dot product in the same order (lane-wise FMA
 * over k, fixed horizontal sum, scalar tail), so a row's result does not
 * depend on the batch it came in: linear is batch invariant bit for bit. */
static inline __attribute__((always_inline)) void
tile(const float *x, size_t xs, const void *w, size_t ws, enum zl_dtype dt, int64_t k,
     float *out, const int NX, const int NW)
{
    const size_t esz = dt == ZL_DTYPE_F32 ? 4 : 2;
    /* One-row tiles over short back-to-back weight rows (a decode step's
     * linear) read a contiguous block: prefetch it linearly, a line per 64
     * bytes the loop consumes.  Strided rows (a KV cache) are left alone. */
    const char *pf = NX == 1 && NW > 1 && ws == (size_t)k * esz && ws < PREFETCH_MAX_ROW
                         ? (const char *)w + PREFETCH_AHEAD
                         : NULL;
    __m256 acc[4][4];
    const float *xr[4];
    const char *wr[4];
#pragma GCC unroll 4
    for (int r = 0; r < NX; r++) {
        xr[r] = (const float *)((const char *)x + (size_t)r * xs);
#pragma GCC unroll 4
        for (int c = 0; c < NW; c++)
            acc[r][c] = _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (int c = 0; c < NW; c++)
        wr[c] = (const char *)w + (size_t)c * ws;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 wv[4];
        if (pf)
            for (size_t b = 0; b < 8 * esz * (size_t)NW; b += 64)
                _mm_prefetch(pf + (size_t)i * esz * (size_t)NW + b, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int c = 0; c < NW; c++)
            wv[c] = load8(wr[c], dt, i);
#pragma GCC unroll 4
        for (int r = 0; r < NX; r++) {
            __m256 xv = _mm256_loadu_ps(xr[r] + i);
#pragma GCC unroll 4
            for (int c = 0; c < NW; c++)
                acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NX; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NW; c++) {
            float s = hsum(acc[r][c]);
            for (int64_t j = i; j < k; j++)
                s += xr[r][j] * cpu_load_f32(wr[c], dt, j);
            out[r * NW + c] = s;
        }
}

CPU_DEFINE_TILES(tile)

/* Each y[i] adds a[r] * x[r][i] in r order (one FMA chain per element, so
 * the result does not depend on n or the blocking).  64 outputs at a time
 * keep 8 independent chains in flight where one chain at a time waited on
 * the FMA latency (3-8% of a long-context SmolLM2 decode step). */
static void axpy_rows(float *y, const float *a, const float *x, int64_t xs, int64_t t, int64_t n)
{
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            acc[c] = _mm256_loadu_ps(y + i + 8 * c);
        for (int64_t r = 0; r < t; r++) {
            __m256 ar = _mm256_set1_ps(a[r]);
            const float *xr = x + r * xs + i;
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                acc[c] = _mm256_fmadd_ps(ar, _mm256_loadu_ps(xr + 8 * c), acc[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            _mm256_storeu_ps(y + i + 8 * c, acc[c]);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 acc = _mm256_loadu_ps(y + i);
        for (int64_t r = 0; r < t; r++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(a[r]), _mm256_loadu_ps(x + r * xs + i), acc);
        _mm256_storeu_ps(y + i, acc);
    }
    for (; i < n; i++)
        for (int64_t r = 0; r < t; r++)
            y[i] += a[r] * x[r * xs + i];
}

/* e^x for softmax arguments (x <= 0): x = k ln2 + f with |f| <= ln2/2,
 * e^f by the Cephes expf polynomial (about 1 ulp), 2^k through the exponent
 * bits.  Below -87 the result is clamped at ~1.6e-38 instead of flushing to
 * 0 (irrelevant next to the max's weight 1); NaN propagates, so a poisoned
 * cache row still shows. */
static inline __m256 exp8(__m256 x)
{
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);   /* this order keeps NaN */
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    f = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), f);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(f, f), f), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static float exp_sum(float *s, float m, int64_t n)
{
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, v);
        acc = _mm256_add_ps(acc, v);
    }
    float sum = hsum(acc);
    for (; i < n; i++)
        sum += (s[i] = expf(s[i] - m));
    return sum;
}

static void to_f32(float *dst, enum zl_dtype dt, const void *src, int64_t n)
{
    int64_t i = 0;
    if (dt == ZL_DTYPE_F16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(src, ZL_DTYPE_F16, i));
    else if (dt == ZL_DTYPE_BF16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(src, ZL_DTYPE_BF16, i));
    cpu_row_to_f32(dst + i, dt, (const char *)src + (size_t)i * cpu_dtype_size(dt), n - i);
}

static const struct cpu_kernels avx2 = {
    .name = "avx2",
    .tile_4x2 = tile_4x2,
    .tile_4x3 = tile_4x3,
    .tile_1x4 = tile_1x4,
    .tile_1x1 = tile_1x1,
    .axpy_rows = axpy_rows,
    .exp_sum = exp_sum,
    .to_f32 = to_f32,
};

const struct cpu_kernels *cpu_kernels_avx2(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        return &avx2;
    return NULL;
}

#else

const struct cpu_kernels *cpu_kernels_avx2(void)
{
    return NULL;
}

#endif
