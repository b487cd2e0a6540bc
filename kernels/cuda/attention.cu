// kv_write and paged causal attention over the block tables (varlen batch:
// prefill chunks and decodes alike, GQA/MQA).  The straightforward version:
// one block per (query token, query head), its warps take interleaved groups
// of KPI cache positions (a warp per key: lanes split head_dim, a shuffle
// reduction gives the score), each warp keeps an f32 online softmax, and the warps' partial
// results are merged through shared memory.  The GQA heads sharing a kv head
// are neighbouring blocks, so their K/V reads mostly hit L2.  Tensor cores
// and split-KV come with the performance issue.
#include <math.h>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"

using namespace zlcuda;

namespace {

typedef struct zl_cuda_heads heads_t;
typedef struct zl_cuda_kv kv_t;
typedef struct zl_cuda_batch batch_t;

constexpr int ATTN_WARPS = 8;
constexpr int KPI = 4;                             // keys per warp step
constexpr int VPL = ZL_CUDA_ATTN_MAX_HEAD_DIM / 32; // head elements per lane

template <typename C, typename T>
__global__ void kv_write_kernel(kv_t c, heads_t k, heads_t v, const int32_t *slot)
{
    const int64_t row = (int64_t)c.n_kv_heads * c.head_dim;
    for (int64_t i = blockIdx.x; i < k.n; i += gridDim.x)
        for (int kv = 0; kv < 2; kv++) {
            const heads_t &t = kv ? v : k;
            C *dst = kv_row<C>(c, kv, slot[i]);
            const char *src = static_cast<const char *>(t.data) + i * t.nb0;
            for (int64_t e = threadIdx.x; e < row; e += blockDim.x)
                dst[e] = from_f32<C>(load<T>(src + e / c.head_dim * t.nb1, e % c.head_dim));
        }
}

// The sequence owning query row i (q_start is sorted, q_start[0] = 0).
__device__ int32_t seq_of(const batch_t &b, int64_t i)
{
    int32_t lo = 0, hi = b.n_seqs - 1;
    while (lo < hi) {
        int32_t mid = (lo + hi + 1) / 2;
        if (b.q_start[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

template <typename T, typename C>
__global__ void __launch_bounds__(ATTN_WARPS * 32)
    attention_kernel(heads_t o, heads_t q, kv_t c, batch_t b, float scale)
{
    __shared__ float sm[ATTN_WARPS], sl[ATTN_WARPS];
    __shared__ float sacc[ATTN_WARPS][ZL_CUDA_ATTN_MAX_HEAD_DIM];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, hd = c.head_dim;
    const int64_t group = q.heads / c.n_kv_heads;
    for (int64_t task = blockIdx.x; task < q.n * q.heads; task += gridDim.x) {
        int64_t i = task / q.heads, h = task % q.heads, kvh = h / group;
        int32_t s = seq_of(b, i);
        int64_t n_new = b.q_start[s + 1] - b.q_start[s];
        int64_t ctx = b.kv_len[s] - n_new + (i - b.q_start[s]) + 1;
        const int32_t *table = b.block_table + (int64_t)s * b.max_blocks;
        const char *qrow = static_cast<const char *>(q.data) + i * q.nb0 + h * q.nb1;
        float qv[VPL], acc[VPL];
#pragma unroll
        for (int t = 0; t < VPL; t++) {
            int d = lane + 32 * t;
            qv[t] = d < hd ? load<T>(qrow, d) : 0.0f;
            acc[t] = 0.0f;
        }
        float m = -INFINITY, l = 0.0f;
        // KPI keys per warp step: their loads are independent, so several
        // are in flight at once; the softmax state is updated once per step.
        for (int64_t p0 = (int64_t)warp * KPI; p0 < ctx; p0 += ATTN_WARPS * KPI) {
            const C *vr[KPI];
            float sc[KPI];
#pragma unroll
            for (int j = 0; j < KPI; j++) {
                int64_t p = p0 + j < ctx ? p0 + j : p0; // past the end: a valid row, masked below
                int64_t slot = (int64_t)table[p / c.block_size] * c.block_size + p % c.block_size;
                const C *kr = kv_row<C>(c, 0, slot) + kvh * hd;
                vr[j] = kv_row<C>(c, 1, slot) + kvh * hd;
                float dot = 0.0f;
#pragma unroll
                for (int t = 0; t < VPL; t++) {
                    int d = lane + 32 * t;
                    if (d < hd)
                        dot += qv[t] * to_f32<C>(kr[d]);
                }
                sc[j] = dot;
            }
            float mn = m;
#pragma unroll
            for (int j = 0; j < KPI; j++) {
                float v = warp_sum(sc[j]) * scale;
                sc[j] = p0 + j < ctx ? v : -INFINITY;
                mn = fmaxf(mn, sc[j]);
            }
            float corr = expf(m - mn), ps = 0.0f; // corr = 0 on the first step (m = -inf)
#pragma unroll
            for (int j = 0; j < KPI; j++) {
                sc[j] = expf(sc[j] - mn); // 0 for a masked key
                ps += sc[j];
            }
            l = l * corr + ps;
#pragma unroll
            for (int t = 0; t < VPL; t++) {
                int d = lane + 32 * t;
                if (d < hd) {
                    float a = acc[t] * corr;
#pragma unroll
                    for (int j = 0; j < KPI; j++)
                        a += sc[j] * to_f32<C>(vr[j][d]);
                    acc[t] = a;
                }
            }
            m = mn;
        }
        if (lane == 0) {
            sm[warp] = m;
            sl[warp] = l;
        }
#pragma unroll
        for (int t = 0; t < VPL; t++) {
            int d = lane + 32 * t;
            if (d < hd)
                sacc[warp][d] = acc[t];
        }
        __syncthreads();
        // Merge the warps: a warp that got no key has l = 0 and is skipped.
        float mx = -INFINITY, den = 0.0f;
        for (int w = 0; w < ATTN_WARPS; w++)
            if (sl[w] > 0.0f)
                mx = fmaxf(mx, sm[w]);
        for (int w = 0; w < ATTN_WARPS; w++)
            if (sl[w] > 0.0f)
                den += sl[w] * expf(sm[w] - mx);
        char *orow = static_cast<char *>(o.data) + i * o.nb0 + h * o.nb1;
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            float num = 0.0f;
            for (int w = 0; w < ATTN_WARPS; w++)
                if (sl[w] > 0.0f)
                    num += sacc[w][d] * expf(sm[w] - mx);
            store<T>(orow, d, num / den);
        }
        __syncthreads(); // the next task rewrites the shared partials
    }
}

} // namespace

extern "C" cudaError_t zl_cuda_kv_write(const kv_t *cache, const heads_t *k, const heads_t *v,
                                        const int32_t *slot, cudaStream_t stream)
{
    int64_t row = (int64_t)cache->n_kv_heads * cache->head_dim;
    return with_float_types(cache->dtype, k->dtype, [&](auto tc, auto tt) {
        kv_write_kernel<decltype(tc), decltype(tt)>
            <<<row_blocks(k->n), row_threads(row), 0, stream>>>(*cache, *k, *v, slot);
        return cudaGetLastError();
    });
}

extern "C" cudaError_t zl_cuda_attention(const heads_t *out, const heads_t *q, const kv_t *cache,
                                         const batch_t *b, float scale, cudaStream_t stream)
{
    if (cache->head_dim > ZL_CUDA_ATTN_MAX_HEAD_DIM)
        return cudaErrorInvalidValue;
    return with_float_types(q->dtype, cache->dtype, [&](auto tq, auto tc) {
        attention_kernel<decltype(tq), decltype(tc)>
            <<<row_blocks(q->n * q->heads), ATTN_WARPS * 32, 0, stream>>>(*out, *q, *cache, *b,
                                                                         scale);
        return cudaGetLastError();
    });
}
