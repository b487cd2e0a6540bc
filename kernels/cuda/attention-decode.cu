// Tensor-core split-KV decode attention (every sequence has one query row).
//
// One CTA of 4 warps per (KV split, kv head, sequence).  The GQA group's
// query heads (up to 16) are the M = 16 rows of mma.sync m16n8k16 (unused
// rows are zeros), so each K/V element read from memory serves the whole
// group.  Each warp owns every 4th 16-key tile of the CTA's chunk and runs
// its own cp.async pipeline (3 stages of K and V in shared memory, no
// block barrier in the loop) and its own f32 online softmax; S = Q K^T and
// O += P V are m16n8k16 MMAs (P rounded to the cache dtype, f32
// accumulation).  At the end the 4 warps merge through shared memory and
// either write the normalised output (one split) or an unnormalised
// partial (O, max, sum) to scratch; the last CTA of a (sequence, kv head)
// to finish (a counter per pair, left at zero for the next launch) merges
// the splits in split order, so the result does not depend on timing.
// The split count fills the GPU: about 2 CTAs per SM over (sequence, kv
// head) pairs, never chunks under 64 keys.
//
// Past 8 sequences a CTA releases the kernel after it (pdl_release) once
// its keys are in, so the next linear (gemm-tma at 9-64 tokens) starts
// streaming its weights on the SMs that attention's first CTAs leave.
// Batch 32 at context 1024 spreads its CTAs' ends over 13 us: a tuning
// build's trace (ZL_ATTN_TRACE=N, globaltimer stamps of the N-th launch of
// 9+ sequences) put the warps' last tiles at 35.7-50.2 us after the first
// CTA's entry (median 46.4) and the CTAs' ends at 38.4-51.9, HBM half idle
// over that tail.  Llama-3.1-8B bf16 batch 32, H100, one call, steady
// ms/step: released at the end 8.160 / 8.151 / 8.187, after the keys
// 8.082 / 8.096, after the wait 8.087 / 8.106 / 8.075.  With 1-8
// sequences the GEMV blocks that follow would hold SM slots waiting
// (cuda-pdl.cuh), so those launches release at their end as before.
//
// Launched as a programmatic dependent (cuda-pdl.cuh): before waiting for
// the rope/KV write before it, a CTA asks its first tiles' K/V rows into L2
// (all but the newest row were written steps ago; a prefetch only warms
// L2, the reads come after the wait).  Given a prefetch range (the next
// linear's weights, cuda-attention.c picks it for short-context steps),
// thread 0 of each CTA asks its slice of it into L2 too: at batch 1 the
// K/V is a few MB and HBM would otherwise idle while the step attends.
//
// With rope arguments (backend.h rope_attention, a decode step) the kernel
// also does what rope_kv_write did before it: each CTA rotates its group's
// q rows on the way into shared memory, and the CTA whose chunk ends at
// the sequence's new key rotates that key, writes it and the value to the
// cache slot and patches them into its own tile (its loads zero-fill that
// row rather than race the write); the other splits never read it.  The
// rotation is cuda-rope.cuh's, so out and the cache are rope_kv_write +
// this kernel's, bit for bit (test_cuda_rope_attn).
//
// Large batches run a per-warp variant (decode_warp_kernel): each warp
// takes a whole (kv head, sequence) pair with the same pipeline and tile
// code, no block barrier and no merge of warps, about one pair per
// resident warp.  ncu on the CTA kernel (H100, bench_cuda_ops, context
// 1024, 2 CTAs of 104 KB per SM) put it at 72% of DRAM peak at batch 32
// (57.2 us) and 82% at batch 128 (197.3 us), each CTA restarting 4 warps'
// pipelines at once.  Batch 128 in the model: 13.855/13.857 -> 13.746/
// 13.774/13.780 ms a step; with splits (batch 32) the per-warp kernel lost
// (make_plan), so it runs only where the pairs alone fill the warps.
//
// Takes f16/bf16 q == cache == out, head_dim 64 or 128, group <= 16,
// power-of-two block sizes, sm_80+ (zl_cuda_attention_decode_takes); the
// caller falls back otherwise.
//
// The merge in the kernel replaced a combine kernel (one launch less per
// layer): bench_cuda_ops batch 1 ctx 512 10.3 -> 8.8 us.  A first merge
// gave each thread one output and walked the splits twice with dependent
// L2 loads: batch 1 took 7.05 ms per token with it and 6.48 with the
// float4 merge below (two device runs minutes apart, each on a fresh
// machine; a later A/B of the whole change on one machine gave 6.99 ->
// 6.94, so these two figures show the merge's cost, not the final gain).
//
// Measured 2026-11-24, H100 80GB HBM3 (bench_cuda_ops, Llama-3.1-8B heads,
// bf16, 8 layers rotated): batch 1 ctx 512 10.3 us (was 45.9; launch and
// latency bound, its 2 MB sit in L2), batch 32 ctx 512 31.5 us (2.1 TB/s of
// K/V; was 217), batch 32 ctx 1024 55 us (2.43 TB/s), batch 128 ctx 1024
// 195 us (2.76 TB/s), batch 32 ctx 4096 195 us (2.75 TB/s).  Tried: 2
// stages with 3 CTAs/SM, 4 stages with 1, more splits (2 waves): each as
// fast or slower.  At batch 32 (branch attn-pf, docs/cuda-perf-log.md): the o
// projection's weights asked into L2 during the K/V stream, and K/V loads
// with an L2 evict-first hint: 1-3% slower.  Each warp asking the K/V rows
// of a tile 2 or 4 steps past its stages into L2 (attn-l2ahead): 7-60% slower.
// Warps taking fixed key chunks from a counter (attn-task, for the batch-32
// tail): 92.4 us against 52.2 at batch 32 ctx 1024, each chunk paying q's
// loads, a partial, a fence and an atomic with two tiles in flight.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef ZL_GEMV_TUNING
#include <stdio.h>

#include <algorithm>
#include <vector>
#endif

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-mma.cuh"
#include "cuda-pdl.cuh"
#include "cuda-rope.cuh"

using namespace zlcuda;

namespace {

#include "attention-decode-walk.cuh"  // the arguments, tile loads, the per-warp walk

template <typename T, int HD>
__global__ void __launch_bounds__(WARPS * 32) decode_kernel(decode_args a)
{
    constexpr int LD = ld_kv<HD>();
    constexpr int OLD = HD + 8;                 // f32 rows of the merge (fewer bank conflicts)
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ __align__(16) T sq[ROWS][LD];
    __shared__ float sm_m[WARPS][ROWS], sm_l[WARPS][ROWS];
    __shared__ bool merge;

    const int split = blockIdx.x, kvh = blockIdx.y, s = blockIdx.z;
    const int kv_len = a.kv_len[s];             // uploaded metadata: readable before the wait
    const int c0 = split * a.chunk;
    const int c1 = min(c0 + a.chunk, kv_len);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, tg = lane & 3;

    const int32_t *table = a.table + (int64_t)s * a.max_blocks;
    const char *head = a.base + (int64_t)kvh * HD * (int64_t)sizeof(T);
    ATRACE_START(split + (int64_t)gridDim.x * (kvh + (int64_t)gridDim.y * s), tid == 0);
    if (a.pf_bytes && tid == 0)
        prefetch_slice(a, split + (int64_t)gridDim.x * (kvh + (int64_t)gridDim.y * s));
    prefetch_rows<T, HD>(a, head, table, c0, min(c1 - c0, (STAGES - 1) * WARPS * TILE), tid,
                         WARPS * 32);
    pdl_wait();
    if (a.release == 1)
        pdl_release();
    ATRACE(1, tid == 0);
    if (c0 >= kv_len)
        return;                                 // a shorter sequence of the batch: nothing here
    // rope_attention: the CTA whose chunk ends at the new (last) key writes
    // it to the cache and patches it into its tile from registers; its
    // loads fill that row with zeros instead of racing the write.
    const int pnew = a.slot && c1 == kv_len ? kv_len - 1 : -1;
    // this warp's tiles: every 4th of the chunk's
    const int n_tiles = (c1 - c0 + TILE - 1) / TILE;
    const tile_walk<T, HD> w = {reinterpret_cast<T *>(smem) + warp * STAGES * 2 * TILE * LD,
                                head, table, c0, c1, pnew, warp, WARPS,
                                n_tiles > warp ? (n_tiles - warp + WARPS - 1) / WARPS : 0};
    float m[2], l[2], o[HD / 8][4];
    zero_acc<HD>(m, l, o);
    walk_start(a, w, lane);
    // Q while the first tiles are in flight; the new key and value by the
    // warp whose tile holds it (every 4th tile is a warp's)
    load_q<T, HD, WARPS * 32>(&sq[0][0], a, s, kvh, tid);
    const uint4 nkv = pnew >= 0 && (pnew - c0) / TILE % WARPS == warp
                          ? new_kv<T, HD>(a, s, kvh, lane) : make_uint4(0, 0, 0, 0);
    __syncthreads();
    ATRACE(2, tid == 0);
    uint32_t qf[HD / 16][4];
    q_frags<T, HD>(qf, &sq[0][0], lane);

    walk(a, w, qf, nkv, lane, m, l, o);
    if (a.release == 2)
        pdl_release();
    ATRACE(3 + warp, lane == 0);

    // Merge the warps (a warp without keys has l = 0 and is skipped).
    __syncthreads();                            // the pipeline buffers become the merge buffer
    float *so = reinterpret_cast<float *>(smem);
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        *reinterpret_cast<float2 *>(&so[(warp * ROWS + g) * OLD + n * 8 + tg * 2]) =
            make_float2(o[n][0], o[n][1]);
        *reinterpret_cast<float2 *>(&so[(warp * ROWS + g + 8) * OLD + n * 8 + tg * 2]) =
            make_float2(o[n][2], o[n][3]);
    }
    if (tg == 0) {
        sm_m[warp][g] = m[0];
        sm_m[warp][g + 8] = m[1];
        sm_l[warp][g] = l[0];
        sm_l[warp][g + 8] = l[1];
    }
    __syncthreads();
    for (int i = tid; i < a.group * HD; i += WARPS * 32) {
        const int r = i / HD, d = i % HD, h = kvh * a.group + r;
        float mm = -INFINITY, den = 0.0f, num = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; w++)
            if (sm_l[w][r] > 0.0f)
                mm = fmaxf(mm, sm_m[w][r]);
#pragma unroll
        for (int w = 0; w < WARPS; w++)
            if (sm_l[w][r] > 0.0f) {
                const float f = exp2f(sm_m[w][r] - mm);
                den += f * sm_l[w][r];
                num += f * so[(w * ROWS + r) * OLD + d];
            }
        if (a.n_splits == 1) {
            store<T>(a.out + (int64_t)s * a.o_nb0 + (int64_t)h * a.o_nb1, d, num / den);
        } else {
            const size_t at = ((size_t)s * a.n_q + h) * a.n_splits + split;
            a.part_o[at * HD + d] = num;
            if (d == 0) {
                a.part_ml[at * 2] = mm;
                a.part_ml[at * 2 + 1] = den;
            }
        }
    }
    ATRACE(3 + WARPS, tid == 0);
    if (a.n_splits == 1)
        return;

    // The pair's last CTA merges: the partials go out before the count
    // (fence), and the merging CTA reads them from L2 (__ldcg), not from a
    // stale L1.  Every CTA with keys counts once, so the count ends at n.
    const int n = min(a.n_splits, (kv_len + a.chunk - 1) / a.chunk);
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        int32_t *cnt = a.count + (int64_t)s * gridDim.y + kvh;
        merge = atomicAdd(cnt, 1) == n - 1;
        if (merge)
            *cnt = 0;                           // every CTA of the pair has counted
    }
    __syncthreads();
    if (!merge)
        return;
    __threadfence();

    // Per row: the splits' weights 2^(m - max) and the denominator, one
    // warp a row (lane order, then a fixed shuffle tree); then float4
    // columns, every split's O in flight at once.
    float *wt = reinterpret_cast<float *>(smem);  // [group][n]: the pipeline buffers again
    __shared__ float den_s[ROWS];
    const size_t row0 = ((size_t)s * a.n_q + (size_t)kvh * a.group) * a.n_splits;
    for (int r = warp; r < a.group; r += WARPS) {
        const float *ml = a.part_ml + (row0 + (size_t)r * a.n_splits) * 2;
        float mm = -INFINITY;
        for (int sp = lane; sp < n; sp += 32)
            mm = fmaxf(mm, __ldcg(&ml[sp * 2]));
        mm = warp_max(mm);
        float den = 0.0f;
        for (int sp = lane; sp < n; sp += 32) {
            const float f = exp2f(__ldcg(&ml[sp * 2]) - mm);
            wt[r * n + sp] = f;
            den += f * __ldcg(&ml[sp * 2 + 1]);
        }
        den = warp_sum(den);
        if (lane == 0)
            den_s[r] = den;
    }
    __syncthreads();
    for (int i = tid; i < a.group * (HD / 4); i += WARPS * 32) {
        const int r = i / (HD / 4), c = (i % (HD / 4)) * 4;
        const float4 *po = reinterpret_cast<const float4 *>(
            a.part_o + (row0 + (size_t)r * a.n_splits) * HD + c);
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
        for (int sp = 0; sp < n; sp++) {
            const float4 v = __ldcg(po + (size_t)sp * (HD / 4));
            const float f = wt[r * n + sp];
            acc.x += f * v.x, acc.y += f * v.y, acc.z += f * v.z, acc.w += f * v.w;
        }
        const float inv = 1.0f / den_s[r];
        char *orow = a.out + (int64_t)s * a.o_nb0 + (int64_t)(kvh * a.group + r) * a.o_nb1;
        store<T>(orow, c, acc.x * inv);
        store<T>(orow, c + 1, acc.y * inv);
        store<T>(orow, c + 2, acc.z * inv);
        store<T>(orow, c + 3, acc.w * inv);
    }
}

// The per-warp variant (large batches: the (sequence, kv head) pairs alone
// fill the GPU).  Each warp takes one pair, all its keys, by itself with
// the walk above: no block barrier, no merge of warps or splits, and a
// launch of about one pair per resident warp, so every SM streams from
// its first microsecond to the end of its pairs (the CTA kernel's waves
// restarted 4 warps' pipelines together and idled HBM between them: ncu
// put it at 72% of DRAM peak at batch 32 and 82% at 128, context 1024).
// q is staged in the warp's third pipeline stage (free until the walk's
// first load), the new key and value (rope_attention) in registers.
template <typename T, int HD>
__global__ void __launch_bounds__(WARPS * 32) decode_warp_kernel(decode_args a, int n_items)
{
    constexpr int LD = ld_kv<HD>();
    extern __shared__ __align__(16) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, tg = lane & 3;
    const int item = blockIdx.x * WARPS + warp;
    if (a.pf_bytes && tid == 0)
        prefetch_slice(a, blockIdx.x);
    if (item >= n_items)
        return;
    const int kvh = item % a.n_kv, s = item / a.n_kv;
    const int kv_len = a.kv_len[s];             // uploaded metadata: readable before the wait
    const int32_t *table = a.table + (int64_t)s * a.max_blocks;
    const char *head = a.base + (int64_t)kvh * HD * (int64_t)sizeof(T);
    prefetch_rows<T, HD>(a, head, table, 0, min(kv_len, (STAGES - 1) * TILE), lane, 32);
    pdl_wait();
    const int pnew = a.slot ? kv_len - 1 : -1;
    const tile_walk<T, HD> w = {reinterpret_cast<T *>(smem) + warp * STAGES * 2 * TILE * LD,
                                head, table, 0, kv_len, pnew, 0, 1, (kv_len + TILE - 1) / TILE};
    float m[2], l[2], o[HD / 8][4];
    zero_acc<HD>(m, l, o);
    walk_start(a, w, lane);
    // the new key and value (rope_attention), patched into its tile by the walk
    const uint4 nkv = pnew >= 0 ? new_kv<T, HD>(a, s, kvh, lane) : make_uint4(0, 0, 0, 0);
    T *sq = w.stage(STAGES - 1);
    load_q<T, HD, 32>(sq, a, s, kvh, lane);
    __syncwarp();
    uint32_t qf[HD / 16][4];
    q_frags<T, HD>(qf, sq, lane);
    walk(a, w, qf, nkv, lane, m, l, o);
    // rows g and g + 8 of the group, columns n * 8 + tg * 2 (+1)
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        const int r = g + 8 * h2;
        if (r >= a.group)
            continue;
        char *orow = a.out + (int64_t)s * a.o_nb0 + (int64_t)(kvh * a.group + r) * a.o_nb1;
        const float inv = 1.0f / l[h2];
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            store<T>(orow, n * 8 + tg * 2, o[n][2 * h2] * inv);
            store<T>(orow, n * 8 + tg * 2 + 1, o[n][2 * h2 + 1] * inv);
        }
    }
}

struct plan {
    int splits, chunk;
    bool warp;                  // decode_warp_kernel (else decode_kernel)
};

// SMs of the current device and whether it has mma.sync for bf16 (sm_80+).
static int device_sms(bool *ok)
{
    const int sms = device_sm_count();
    *ok = device_major() >= 8 && sms > 0;
    return *ok ? sms : 1;
}

// Splits so that `slots` units of work fill the GPU about once: none once
// the (sequence, kv head) pairs nearly do (a split costs a partial write, a
// merge and a pipeline ramp).  Monotone: fewer splits for more pairs or
// fewer slots, so the scratch bound below covers every plan.
static plan split_plan(int64_t pairs, int32_t max_kv_len, int64_t slots)
{
    int64_t sp = slots / pairs;       // rounded down: one full wave beats a wave and a bit
    int64_t by_len = ((int64_t)max_kv_len + MIN_CHUNK - 1) / MIN_CHUNK;
    sp = sp < by_len ? sp : by_len;
    sp = sp < MAX_SPLITS ? sp : MAX_SPLITS;
    sp = sp < 1 ? 1 : sp;
    int64_t chunk = ((int64_t)max_kv_len + sp - 1) / sp;
    chunk = (chunk + MIN_CHUNK - 1) / MIN_CHUNK * MIN_CHUNK;
    if (chunk < MIN_CHUNK)
        chunk = MIN_CHUNK;
    plan p;
    p.chunk = (int)chunk;
    p.splits = (int)(((int64_t)max_kv_len + chunk - 1) / chunk);
    p.warp = false;
    if (p.splits <= 1) { // one CTA takes every key: the same launch for any length (graphs)
        p.splits = 1;
        p.chunk = 1 << 30;
    }
    return p;
}

// CTAs resident per SM (the pipeline's shared memory: 2 at head_dim 128, 4 at 64).
static int64_t ctas_per_sm(int head_dim)
{
    return head_dim <= 64 ? 4 : 2;
}

// The per-warp kernel once the pairs fill more than half the resident
// warps (H100, head_dim 128: 529+ pairs, batch 67+ of Llama's 8 kv heads),
// else the CTA kernel with splits filling the resident CTAs.  A first
// per-warp kernel that split pairs to fill the warps lost with 4 splits a
// pair (batch 32, context 1024: 8.645/8.633 against 8.439/8.238 ms a
// step), its last warp merging row after row, so the per-warp kernel
// takes whole pairs.  A tuning build takes ZL_DECODE_WARP=0|1 to force
// either.
static plan make_plan(int64_t pairs, int32_t max_kv_len, int head_dim, int sms)
{
    bool warp = pairs * 2 > (int64_t)sms * ctas_per_sm(head_dim) * WARPS;
#ifdef ZL_GEMV_TUNING
    static int force = -2;
    if (force == -2) {
        const char *v = getenv("ZL_DECODE_WARP");
        force = v && (*v == '0' || *v == '1') ? *v - '0' : -1;
    }
    if (force >= 0)
        warp = force == 1;
#endif
    if (warp)   // a warp per pair, all its keys: the launch shape of one split
        return plan{1, 1 << 30, true};
    return split_plan(pairs, max_kv_len, (int64_t)sms * ctas_per_sm(head_dim));
}

static size_t scratch_for(int64_t n_seqs, int64_t n_q, int head_dim, int splits)
{
    if (splits <= 1)
        return 0;
    return (size_t)n_seqs * (size_t)n_q * (size_t)splits * ((size_t)head_dim + 2) * sizeof(float);
}

template <typename T, int HD>
cudaError_t launch(decode_args &a, int n_kv, int n_seqs, bool warp, int64_t items,
                   cudaStream_t stream)
{
    constexpr size_t SMEM = smem_bytes<HD>();
    static bool done_cta[64], done_warp[64];
    cudaError_t e = warp ? smem_opt_in(decode_warp_kernel<T, HD>, SMEM, done_warp)
                         : smem_opt_in(decode_kernel<T, HD>, SMEM, done_cta);
    if (e != cudaSuccess)
        return e;
    if (warp)
        return launch_pdl("attn", decode_warp_kernel<T, HD>,
                          dim3((unsigned)((items + WARPS - 1) / WARPS)), dim3(WARPS * 32), SMEM,
                          stream, a, (int)items);
    dim3 grid((unsigned)a.n_splits, (unsigned)n_kv, (unsigned)n_seqs);
    return launch_pdl("attn", decode_kernel<T, HD>, grid, dim3(WARPS * 32), SMEM, stream, a);
}

} // namespace

extern "C" size_t zl_cuda_attention_decode_scratch(int32_t n_seqs, int32_t n_q_heads,
                                                   int32_t head_dim, int32_t max_kv_len)
{
    if ((head_dim != 64 && head_dim != 128) || n_seqs < 1 || n_q_heads < 1 || max_kv_len < 1)
        return 0;
    bool ok;
    int sms = device_sms(&ok);
    if (!ok)
        return 0;
    // the most splits any plan takes: the fewest pairs (the per-warp plan never splits)
    plan p = split_plan(n_seqs, max_kv_len, (int64_t)sms * ctas_per_sm(head_dim));
    return scratch_for(n_seqs, n_q_heads, head_dim, p.splits);
}

extern "C" void zl_cuda_attention_decode_plan(int32_t n_seqs, int32_t n_kv_heads, int32_t head_dim,
                                              int32_t max_kv_len, int32_t *splits, int32_t *chunk)
{
    bool ok;
    const int sms = device_sms(&ok);
    plan p = make_plan((int64_t)n_seqs * n_kv_heads, max_kv_len < 1 ? 1 : max_kv_len, head_dim,
                       sms);
    *splits = ok ? p.splits : 0;
    *chunk = ok ? p.chunk : 0;
}

extern "C" int zl_cuda_attention_decode_takes(const struct zl_cuda_heads *out,
                                              const struct zl_cuda_heads *q,
                                              const struct zl_cuda_kv *cache, int32_t n_seqs,
                                              const struct zl_cuda_decode_rope *rope)
{
    const int64_t hd = q->head_dim;
    const int bs = cache->block_size;
    if ((q->dtype != ZL_DTYPE_BF16 && q->dtype != ZL_DTYPE_F16) || cache->dtype != q->dtype ||
        out->dtype != q->dtype || (hd != 64 && hd != 128) || cache->head_dim != hd ||
        out->head_dim != hd || cache->n_kv_heads < 1 || q->heads % cache->n_kv_heads ||
        q->heads / cache->n_kv_heads > ROWS || bs < 1 || (bs & (bs - 1)) ||
        n_seqs != q->n || n_seqs < 1 || n_seqs > 65535 || cache->n_kv_heads > 65535 ||
        ((uintptr_t)cache->base & 15) || (cache->block_stride & 15) ||
        (q->nb0 | q->nb1 | out->nb0 | out->nb1) & 1)
        return 0;
    if (rope && (rope->k.dtype != q->dtype || rope->v.dtype != q->dtype ||
                 rope->k.head_dim != hd || rope->v.head_dim != hd ||
                 rope->k.heads != cache->n_kv_heads || rope->v.heads != cache->n_kv_heads ||
                 rope->k.n < n_seqs || rope->v.n < n_seqs || !rope->pos || !rope->inv_freq ||
                 !rope->slot || (rope->k.nb0 | rope->k.nb1 | rope->v.nb0 | rope->v.nb1) & 1))
        return 0;
    bool ok;
    device_sms(&ok);
    return ok;
}

extern "C" cudaError_t zl_cuda_attention_decode(const struct zl_cuda_heads *out,
                                                const struct zl_cuda_heads *q,
                                                const struct zl_cuda_kv *cache,
                                                const struct zl_cuda_batch *b,
                                                const struct zl_cuda_attn_shape *s, float scale,
                                                void *scratch, size_t scratch_bytes,
                                                int32_t *count, const struct zl_cuda_prefetch *pf,
                                                const struct zl_cuda_decode_rope *rope,
                                                cudaStream_t stream)
{
    if (!zl_cuda_attention_decode_takes(out, q, cache, b->n_seqs, rope) || s->max_q_len != 1 ||
        s->max_kv_len < 1)
        return cudaErrorNotSupported;
    const int hd = (int)q->head_dim;
    const int bs = cache->block_size;
    bool ok;
    const int sms = device_sms(&ok);
    const int n_kv = cache->n_kv_heads;
    plan p = make_plan((int64_t)b->n_seqs * n_kv, s->max_kv_len, hd, sms);
    const size_t need = scratch_for(b->n_seqs, q->heads, hd, p.splits);
    if (need > scratch_bytes || (need && !scratch) || (p.splits > 1 && !count))
        return cudaErrorNotSupported;

    decode_args a;
    const int64_t row_bytes = (int64_t)n_kv * hd * 2;
    a.out = static_cast<char *>(out->data);
    a.o_nb0 = out->nb0;
    a.o_nb1 = out->nb1;
    a.q = static_cast<const char *>(q->data);
    a.q_nb0 = q->nb0;
    a.q_nb1 = q->nb1;
    a.base = cache->base + (int64_t)cache->layer * 2 * bs * row_bytes;
    a.block_stride = (int64_t)cache->block_stride;
    a.row_bytes = row_bytes;
    a.v_off = (int64_t)bs * row_bytes;
    a.bs_shift = __builtin_ctz((unsigned)bs);
    a.bs_mask = bs - 1;
    a.n_q = (int)q->heads;
    a.group = (int)(q->heads / n_kv);
    a.chunk = p.chunk;
    a.n_splits = p.splits;
    a.max_blocks = b->max_blocks;
    a.kv_len = b->kv_len;
    a.table = b->block_table;
    a.scale_log2 = scale * LOG2E;
    a.part_o = static_cast<float *>(scratch);
    a.part_ml = need ? a.part_o + (size_t)b->n_seqs * q->heads * p.splits * hd : nullptr;
    a.count = count;
    // whole 16-byte units (the bulk prefetch's granule), slices of 4 KB
    a.pf = pf ? static_cast<const char *>(pf->data) : nullptr;
    a.pf_bytes = pf && pf->data ? (int64_t)(pf->bytes & ~(size_t)15) : 0;
    const int64_t items = (int64_t)p.splits * n_kv * b->n_seqs;
    const int64_t ctas = p.warp ? (items + WARPS - 1) / WARPS : items;
    a.n_kv = n_kv;
    a.pf_slice = ((a.pf_bytes + ctas - 1) / ctas + 4095) & ~(int64_t)4095;
    a.kn = rope ? static_cast<const char *>(rope->k.data) : nullptr;
    a.vn = rope ? static_cast<const char *>(rope->v.data) : nullptr;
    a.kn_nb0 = rope ? rope->k.nb0 : 0;
    a.kn_nb1 = rope ? rope->k.nb1 : 0;
    a.vn_nb0 = rope ? rope->v.nb0 : 0;
    a.vn_nb1 = rope ? rope->v.nb1 : 0;
    a.pos = rope ? rope->pos : nullptr;
    a.pos_step = rope ? rope->pos_step : 0;
    a.inv_freq = rope ? rope->inv_freq : nullptr;
    a.af = rope ? rope->attn_factor : 1.0f;
    a.slot = rope ? rope->slot : nullptr;
    // Past 8 sequences the next kernel is gemm-tma (H100/H200), which
    // streams its weights before its wait: releasing it once the keys are
    // in lets its CTAs take the SMs that attention's first CTAs leave
    // while the last ones finish (the header).  At 1-8 sequences the GEMV
    // blocks that follow would sit in SM slots waiting (cuda-pdl.cuh).
    a.release = b->n_seqs >= 9 ? 2 : 0;
#ifdef ZL_GEMV_TUNING
    static const int forced = [] {  // ZL_ATTN_RELEASE: 0 at the end, 1 after the wait, 2 after the keys
        const char *v = getenv("ZL_ATTN_RELEASE");
        return v ? atoi(v) : -1;
    }();
    if (forced >= 0 && b->n_seqs >= 9)
        a.release = forced;
#endif

    const bool bf = q->dtype == ZL_DTYPE_BF16;
#ifdef ZL_GEMV_TUNING
    const bool traced = trace_pick(a, p.warp, b->n_seqs, items);
#endif
    cudaError_t e;
    if (hd == 128)
        e = bf ? launch<__nv_bfloat16, 128>(a, n_kv, b->n_seqs, p.warp, items, stream)
               : launch<__half, 128>(a, n_kv, b->n_seqs, p.warp, items, stream);
    else
        e = bf ? launch<__nv_bfloat16, 64>(a, n_kv, b->n_seqs, p.warp, items, stream)
               : launch<__half, 64>(a, n_kv, b->n_seqs, p.warp, items, stream);
#ifdef ZL_GEMV_TUNING
    if (traced && e == cudaSuccess)
        e = trace_report(a, items, (double)b->n_seqs * n_kv * s->max_kv_len * hd * 4, stream);
#endif
    return e;
}
