// rms_norm (with the fused residual add), rope, and rope fused with the
// KV-cache write: row-local ops.
#include <algorithm>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-pdl.cuh"
#include "cuda-rope.cuh"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_rows rows_t;
typedef struct zl_cuda_heads heads_t;
typedef struct zl_cuda_kv kv_t;

// One block per row.  With a residual, the sum is rounded to the residual's
// dtype and the norm is taken of that rounded value, as HF does in bf16
// (residual stream stored, then normed).  The second pass re-reads what the
// same thread wrote or read in the first, so out may alias x.  Launched as
// a programmatic dependent (cuda-pdl.cuh).
template <typename T, typename W>
__global__ void rms_norm_kernel(rows_t o, rows_t x, rows_t res, const void *w, float eps)
{
    __shared__ float sh[32];
    pdl_release();
    pdl_wait();
    for (int64_t r = blockIdx.x; r < x.n; r += gridDim.x) {
        const char *xr = row_at(x.data, r, x.stride);
        char *rr = res.data ? row_at(res.data, r, res.stride) : nullptr;
        float ss = 0.0f;
        for (int64_t c = threadIdx.x; c < x.d; c += blockDim.x) {
            float v = load<T>(xr, c);
            if (rr) {
                T sum = from_f32<T>(v + load<T>(rr, c));
                static_cast<T *>(static_cast<void *>(rr))[c] = sum;
                v = to_f32<T>(sum);
            }
            ss += v * v;
        }
        ss = block_sum(ss, sh);
        float scale = rsqrtf(ss / (float)(x.d ? x.d : 1) + eps);
        const char *src = rr ? rr : xr;
        char *orow = row_at(o.data, r, o.stride);
        for (int64_t c = threadIdx.x; c < x.d; c += blockDim.x)
            store<T>(orow, c, load<T>(src, c) * scale * load<W>(w, c));
    }
}

// The same in 16-byte chunks (rows_vec8 rows, d <= 8 * 1024): thread t
// holds elements [8t, 8t + 8) of the row in registers, so the row is read
// once; the sum and the scaling are the scalar kernel's formulas (the sum
// of squares in another order: the last bit of 1/rms may differ).  The
// thread's norm weights are asked for before the wait for the kernel
// before (which never writes them): their trip to HBM then overlaps its
// drain instead of following the block's sum: batch 32 (two of these a
// layer) 0.498 / 0.497 -> 0.495 / 0.495 s for its 63 decode steps (H100,
// one call, 2026-12-07).
template <typename T, typename W>
__global__ void rms_norm_vec8_kernel(rows_t o, rows_t x, rows_t res, const void *w, float eps)
{
    __shared__ float sh[32];
    pdl_release();
    const int64_t t = threadIdx.x;
    const bool mine = t < x.d / 8;
    float wv[8];
#pragma unroll
    for (int i = 0; i < 8; i++)
        wv[i] = mine ? load<W>(w, t * 8 + i) : 0.0f;
    pdl_wait();
    for (int64_t r = blockIdx.x; r < x.n; r += gridDim.x) {
        float f[8] = {0, 0, 0, 0, 0, 0, 0, 0}, ss = 0.0f;
        if (mine) {
            uint4 v = *reinterpret_cast<const uint4 *>(row_at(x.data, r, x.stride) + t * 16);
            T *e = reinterpret_cast<T *>(&v);
            if (res.data) {
                uint4 *rp = reinterpret_cast<uint4 *>(row_at(res.data, r, res.stride) + t * 16);
                uint4 rv = *rp;
                T *re = reinterpret_cast<T *>(&rv);
#pragma unroll
                for (int i = 0; i < 8; i++)
                    e[i] = re[i] = from_f32<T>(to_f32<T>(e[i]) + to_f32<T>(re[i]));
                *rp = rv;
            }
#pragma unroll
            for (int i = 0; i < 8; i++) {
                f[i] = to_f32<T>(e[i]);
                ss += f[i] * f[i];
            }
        }
        ss = block_sum(ss, sh);
        const float scale = rsqrtf(ss / (float)x.d + eps);
        if (mine) {
            uint4 vo;
            T *eo = reinterpret_cast<T *>(&vo);
#pragma unroll
            for (int i = 0; i < 8; i++)
                eo[i] = from_f32<T>(f[i] * scale * wv[i]);
            *reinterpret_cast<uint4 *>(row_at(o.data, r, o.stride) + t * 16) = vo;
        }
    }
}

// One block per token: its cos/sin table in shared memory, then every
// (head, pair) of q and k rotated by the block's threads.
template <typename T>
__global__ void rope_kernel(heads_t q, heads_t k, const int32_t *pos, int64_t pos_step,
                            const float *inv_freq, int half, float af)
{
    extern __shared__ float cs[]; // [2 * half]: cos, then sin
    const int64_t nq = q.heads * half, nk = k.data ? k.heads * half : 0;
    for (int64_t i = blockIdx.x; i < q.n; i += gridDim.x) {
        float p = (float)pos[i * pos_step];
        __syncthreads(); // the previous token's table is no longer read
        for (int j = threadIdx.x; j < half; j += blockDim.x)
            rope_cos_sin(p, inv_freq[j], af, &cs[j], &cs[half + j]);
        __syncthreads();
        for (int64_t e = threadIdx.x; e < nq + nk; e += blockDim.x) {
            const heads_t &t = e < nq ? q : k;
            int64_t he = e < nq ? e : e - nq, h = he / half;
            int j = (int)(he % half);
            char *v = static_cast<char *>(t.data) + i * t.nb0 + h * t.nb1;
            float x1 = load<T>(v, j), x2 = load<T>(v, j + half);
            store<T>(v, j, rot_lo(x1, x2, cs[j], cs[half + j]));
            store<T>(v, j + half, rot_hi(x1, x2, cs[j], cs[half + j]));
        }
    }
}

// rope_kernel's rotation of q in place, k rotated on its way into the cache
// (not written back) and v copied there: one pass and one launch instead of
// rope + kv_write.  k's rotated values are rounded through T first, so the
// cache holds exactly what rope then kv_write would have stored.  A token's
// elements are spread over gridDim.y blocks (each makes its own cos/sin
// table): with one block a decode step's token walked its 3072 elements
// in a dozen dependent load/store rounds (11.4 us per layer under ncu).
// Launched as a programmatic dependent (cuda-pdl.cuh): its launch hides
// under the projection before it.
template <typename T, typename C>
__global__ void rope_kv_kernel(heads_t q, heads_t k, heads_t v, const int32_t *pos, int64_t pos_step,
                               const float *inv_freq, int half, float af, kv_t c,
                               const int32_t *slot)
{
    extern __shared__ float cs[]; // [2 * half]: cos, then sin
    const int hd = c.head_dim, rot = 2 * half;
    const int64_t nq = q.heads * half, nkv = (int64_t)c.n_kv_heads * hd;
    pdl_wait(); // positions are a tensor too: an earlier kernel may have written them
    for (int64_t i = blockIdx.x; i < q.n; i += gridDim.x) {
        float p = (float)pos[i * pos_step];
        __syncthreads();
        for (int j = threadIdx.x; j < half; j += blockDim.x)
            rope_cos_sin(p, inv_freq[j], af, &cs[j], &cs[half + j]);
        __syncthreads();
        const int64_t e0 = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
        const int64_t step = (int64_t)gridDim.y * blockDim.x;
        for (int64_t e = e0; e < nq; e += step) {
            int64_t h = e / half;
            int j = (int)(e % half);
            char *r = static_cast<char *>(q.data) + i * q.nb0 + h * q.nb1;
            float x1 = load<T>(r, j), x2 = load<T>(r, j + half);
            store<T>(r, j, rot_lo(x1, x2, cs[j], cs[half + j]));
            store<T>(r, j + half, rot_hi(x1, x2, cs[j], cs[half + j]));
        }
        C *kd = kv_row<C>(c, 0, slot[i]), *vd = kv_row<C>(c, 1, slot[i]);
        for (int64_t e = e0; e < nkv; e += step) {
            int64_t h = e / hd;
            int j = (int)(e % hd);
            const char *kr = static_cast<const char *>(k.data) + i * k.nb0 + h * k.nb1;
            const char *vr = static_cast<const char *>(v.data) + i * v.nb0 + h * v.nb1;
            float x = load<T>(kr, j);
            if (j < half)
                x = rot_lo(x, load<T>(kr, j + half), cs[j], cs[half + j]);
            else if (j < rot)
                x = rot_hi(load<T>(kr, j - half), x, cs[j - half], cs[j]);
            kd[e] = from_f32<C>(to_f32<T>(from_f32<T>(x)));
            vd[e] = from_f32<C>(load<T>(vr, j));
        }
    }
}

// rope_kv_kernel in 16-byte chunks: a thread rotates 8 pairs of a head (one
// 16-byte load from each half) or copies 8 elements of v.  For full
// rotary, half % 8 == 0, a 16-bit T that is also the cache's dtype and
// 16-byte aligned rows (rope_kv_vec8_ok); the same rounding as the scalar
// kernel, element for element.  The scalar one walked a 2048-token
// prefill's q and k in 2-byte accesses at ~35% of HBM bandwidth.
template <typename T>
__global__ void rope_kv_vec8_kernel(heads_t q, heads_t k, heads_t v, const int32_t *pos,
                                    int64_t pos_step, const float *inv_freq, int half, float af,
                                    kv_t c, const int32_t *slot)
{
    extern __shared__ float cs[]; // [2 * half]: cos, then sin
    const int hd = c.head_dim, h8 = half / 8, d8 = hd / 8;
    const int64_t nq = q.heads * h8, nk = (int64_t)c.n_kv_heads * h8;
    const int64_t all = nq + nk + (int64_t)c.n_kv_heads * d8;
    pdl_wait(); // positions are a tensor too: an earlier kernel may have written them
    for (int64_t i = blockIdx.x; i < q.n; i += gridDim.x) {
        float p = (float)pos[i * pos_step];
        __syncthreads();
        for (int j = threadIdx.x; j < half; j += blockDim.x)
            rope_cos_sin(p, inv_freq[j], af, &cs[j], &cs[half + j]);
        __syncthreads();
        T *kd = kv_row<T>(c, 0, slot[i]), *vd = kv_row<T>(c, 1, slot[i]);
        const int64_t step = (int64_t)gridDim.y * blockDim.x;
        for (int64_t e = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; e < all; e += step) {
            if (e >= nq + nk) { // v: copied
                const int64_t h = (e - nq - nk) / d8;
                const int j = (int)((e - nq - nk) % d8) * 8;
                const char *r = static_cast<const char *>(v.data) + i * v.nb0 + h * v.nb1;
                *reinterpret_cast<uint4 *>(vd + h * hd + j) =
                    *reinterpret_cast<const uint4 *>(r + (int64_t)j * sizeof(T));
                continue;
            }
            const bool isq = e < nq; // q in place; k into the cache
            const int64_t h = (isq ? e : e - nq) / h8;
            const int j = (int)((isq ? e : e - nq) % h8) * 8;
            const heads_t &t = isq ? q : k;
            char *r = static_cast<char *>(t.data) + i * t.nb0 + h * t.nb1;
            uint4 a = *reinterpret_cast<const uint4 *>(r + (int64_t)j * sizeof(T));
            uint4 b = *reinterpret_cast<const uint4 *>(r + (int64_t)(j + half) * sizeof(T));
            const T *xa = reinterpret_cast<const T *>(&a), *xb = reinterpret_cast<const T *>(&b);
            uint4 lo, hi;
            T *ol = reinterpret_cast<T *>(&lo), *oh = reinterpret_cast<T *>(&hi);
#pragma unroll
            for (int u = 0; u < 8; u++) {
                float x1 = to_f32<T>(xa[u]), x2 = to_f32<T>(xb[u]);
                ol[u] = from_f32<T>(rot_lo(x1, x2, cs[j + u], cs[half + j + u]));
                oh[u] = from_f32<T>(rot_hi(x1, x2, cs[j + u], cs[half + j + u]));
            }
            T *dst = isq ? reinterpret_cast<T *>(r) : kd + h * hd;
            *reinterpret_cast<uint4 *>(dst + j) = lo;
            *reinterpret_cast<uint4 *>(dst + j + half) = hi;
        }
    }
}

static bool heads_vec8(const heads_t *h)
{
    return !(((uintptr_t)h->data | (uintptr_t)h->nb0 | (uintptr_t)h->nb1) & 15);
}

static bool rope_kv_vec8_ok(const heads_t *q, const heads_t *k, const heads_t *v, int32_t rot_dim,
                            const kv_t *c)
{
    return q->dtype != ZL_DTYPE_F32 && q->dtype == c->dtype && k->dtype == q->dtype &&
           v->dtype == q->dtype && rot_dim == c->head_dim && q->head_dim == c->head_dim &&
           (rot_dim / 2) % 8 == 0 && heads_vec8(q) && heads_vec8(k) && heads_vec8(v) &&
           !(((uintptr_t)c->base | (uintptr_t)c->block_stride) & 15);
}

} // namespace

extern "C" cudaError_t zl_cuda_rms_norm(const rows_t *out, const rows_t *x, const rows_t *res,
                                        const rows_t *w, float eps, cudaStream_t stream)
{
    const rows_t *all[3] = {out, x, res};
    const bool vec = rows_vec8(all, res->data ? 3 : 2) && x->d <= 8 * 1024;
    return with_float_types(x->dtype, w->dtype, [&](auto tx, auto tw) {
        using T = decltype(tx);
        if constexpr (sizeof(T) == 2)
            if (vec)
                return launch_pdl("elt", rms_norm_vec8_kernel<T, decltype(tw)>, row_blocks(x->n),
                                  row_threads(x->d / 8, 1024), 0, stream, *out, *x, *res, w->data,
                                  eps);
        return launch_pdl("elt", rms_norm_kernel<T, decltype(tw)>, row_blocks(x->n),
                          row_threads(x->d), 0, stream, *out, *x, *res, w->data, eps);
    });
}

extern "C" cudaError_t zl_cuda_rope(const heads_t *q, const heads_t *k, const int32_t *pos,
                                    int64_t pos_step, const float *inv_freq, int32_t rot_dim,
                                    float attn_factor, cudaStream_t stream)
{
    int half = rot_dim / 2;
    int64_t work = (q->heads + (k->data ? k->heads : 0)) * half;
    return with_float_type(q->dtype, [&](auto t) {
        rope_kernel<decltype(t)><<<row_blocks(q->n), row_threads(work), 2 * half * sizeof(float),
                                   stream>>>(*q, *k, pos, pos_step, inv_freq, half, attn_factor);
        return cudaGetLastError();
    });
}

extern "C" cudaError_t zl_cuda_rope_kv_write(const heads_t *q, const heads_t *k, const heads_t *v,
                                             const int32_t *pos, int64_t pos_step,
                                             const float *inv_freq, int32_t rot_dim,
                                             float attn_factor, const kv_t *cache,
                                             const int32_t *slot, cudaStream_t stream)
{
    int half = rot_dim / 2;
    if (rope_kv_vec8_ok(q, k, v, rot_dim, cache)) {
        // 64-thread blocks: a decode token still spreads over several
        const int64_t units = (q->heads + cache->n_kv_heads) * (half / 8) +
                              (int64_t)cache->n_kv_heads * (cache->head_dim / 8);
        const dim3 grid(row_blocks(q->n), (unsigned)std::min<int64_t>(8, (units + 63) / 64));
        return with_float_types(q->dtype, q->dtype, [&](auto t, auto) {
            using T = decltype(t);
            if constexpr (sizeof(T) == 2)
                return launch_pdl("rope", rope_kv_vec8_kernel<T>, grid, dim3(64),
                                  2 * half * sizeof(float), stream, *q, *k, *v, pos, pos_step,
                                  inv_freq, half, attn_factor, *cache, slot);
            return cudaErrorNotSupported;
        });
    }
    int64_t work = q->heads * half > (int64_t)cache->n_kv_heads * cache->head_dim
                       ? q->heads * half : (int64_t)cache->n_kv_heads * cache->head_dim;
    const unsigned threads = row_threads(work);
    const int64_t split = std::min<int64_t>(8, std::max<int64_t>(1, (work + threads - 1) / threads));
    const dim3 grid(row_blocks(q->n), (unsigned)split);
    return with_float_types(q->dtype, cache->dtype, [&](auto t, auto tc) {
        return launch_pdl("rope", rope_kv_kernel<decltype(t), decltype(tc)>, grid, dim3(threads),
                          2 * half * sizeof(float), stream, *q, *k, *v, pos, pos_step, inv_freq,
                          half, attn_factor, *cache, slot);
    });
}
