// rms_norm (with the fused residual add) and rope: row-local ops.
#include "cuda-dtype.cuh"
#include "cuda-kernels.h"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_rows rows_t;
typedef struct zl_cuda_heads heads_t;

// One block per row.  With a residual, the sum is rounded to the residual's
// dtype and the norm is taken of that rounded value, as HF does in bf16
// (residual stream stored, then normed).  The second pass re-reads what the
// same thread wrote or read in the first, so out may alias x.
template <typename T, typename W>
__global__ void rms_norm_kernel(rows_t o, rows_t x, rows_t res, const void *w, float eps)
{
    __shared__ float sh[32];
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
        for (int j = threadIdx.x; j < half; j += blockDim.x) {
            float s, c;
            sincosf(p * inv_freq[j], &s, &c); // accurate: angles reach 1e5 rad
            cs[j] = c * af;
            cs[half + j] = s * af;
        }
        __syncthreads();
        for (int64_t e = threadIdx.x; e < nq + nk; e += blockDim.x) {
            const heads_t &t = e < nq ? q : k;
            int64_t he = e < nq ? e : e - nq, h = he / half;
            int j = (int)(he % half);
            char *v = static_cast<char *>(t.data) + i * t.nb0 + h * t.nb1;
            float x1 = load<T>(v, j), x2 = load<T>(v, j + half);
            store<T>(v, j, x1 * cs[j] - x2 * cs[half + j]);
            store<T>(v, j + half, x2 * cs[j] + x1 * cs[half + j]);
        }
    }
}

} // namespace

extern "C" cudaError_t zl_cuda_rms_norm(const rows_t *out, const rows_t *x, const rows_t *res,
                                        const rows_t *w, float eps, cudaStream_t stream)
{
    return with_float_types(x->dtype, w->dtype, [&](auto tx, auto tw) {
        rms_norm_kernel<decltype(tx), decltype(tw)>
            <<<row_blocks(x->n), row_threads(x->d), 0, stream>>>(*out, *x, *res, w->data, eps);
        return cudaGetLastError();
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
