// The decoder layers of one decode token (cuda-kernels.h
// zl_cuda_decode_chain): every layer's norm, QKV projection, RoPE, KV-cache
// write, attention, o projection, norm, gate/up projection with SwiGLU and
// down projection, for one sequence and one token, in ONE persistent
// kernel (the backend's decoder_layers).
//
// Why: at batch 1 a step is a stream of 15 GB of weights, and the layer
// chain of separate kernels (four GEMVs and attention a layer) loses the
// ramp and drain of every grid plus the attention's microseconds in which
// HBM idles.  Here the weights wait for nothing: one producer warp a CTA
// streams its share of every layer's weight rows, in step order, into a
// ring of shared-memory slots with bulk copies (cp.async.bulk, completion
// on an mbarrier), as far ahead of the math as the ring reaches (~25 MB
// over the GPU).  The consumer warps wait only where the data flow forces
// it: a phase's input vector is complete (a global counter of finished
// tiles reaches the phase's tile count), then they take the slots as they
// fill.
//
// Work split: one CTA an SM (the ring takes the shared memory), launched
// cooperatively so all are resident (they wait on each other).  A phase's
// tiles (whole weight rows, <= one slot) are dealt round-robin, the deal
// continuing from phase to phase so a CTA short in one phase starts the
// next one first.  Within a CTA the 8 consumer warps take a tile's units
// (QKV: RoPE's row pairs; gate/up: a gate row and its up row; o: two
// neighbouring rows) in turn, each warp a whole unit, and free a slot once
// past its sums (before storing): no block barrier per tile.  A row that fills a slot alone (down's 28 KB)
// is summed by all 8 warps, an eighth of its columns each (shared_sums).
// The QKV heads are dealt kv group by kv group, and a group's attention
// tasks (kv head, 64-key split: decode-chain-attn.cuh) start as soon as
// that group's rows are in, between the QKV and o phases.  Sums run in a
// fixed order: the result does not depend on timing.
//
// Rounding is the separate ops': the norm as rms_norm rounds it, every
// product rounded to T before RoPE, the residual add or SwiGLU, which use
// the same formulas (cuda-rope.cuh).  Only the f32 summation order of the
// dot products and of the softmax differs, so results match the op chain
// to the last bit of T mostly, not always (test_cuda_decode_chain).
//
// Measured (H100 80GB HBM3, Llama-3.1-8B bf16, bench-llama8b.sh b1, steady
// decode): 6.21 ms/token against 6.68 for the per-layer ops (-7%); 6.09
// against 6.22 once down's rows were shared by the warps (2821a1f).  A
// tuning build's trace (ZL_CHAIN_TRACE, cuda-decode-chain.c) puts the
// kernel at ~180 us a layer against ~154 us with the math skipped
// (ZL_CHAIN_DRY: the stream and the phase waits alone, 2.83 TB/s); of the
// difference, ~6 us a layer is the o phase waiting for the last group's
// attention and its split merge, the rest is spread over the phase ends.
// The dot products run on the tensor cores (decode-chain-dots.cuh): batch
// 1 took 0.786 -> 0.780 and 0.785 -> 0.780 s for 127 tokens in a tuning
// build that also held chain-claims below (H100, one call, 2026-12-07;
// trace 177.7 us a layer), -0.7%.  Staging each phase's residuals with its
// input (res_stage) took the last warp of every down row off an L2 round
// trip: 6.12-6.16 -> 5.74-5.78 ms/token, 178.3 -> 166.4 us a layer.
// Counting the QKV pairs once a CTA at the phase's end, not with a fence
// and an atomic a pair, and pairing the o rows: 5.69-5.71 -> 5.58 ms/token
// (qkv's span 21.2 -> 18.6 us a layer; 2026-12-07).
// Tried: 64 KB slots (1% slower than 32), 16 KB (too few rows for the
// down projection), asking tiles into L2 beyond the ring (no gain at 2,
// 11% slower at 4; only while the consumers wait: 1-2.7% slower), one bulk
// copy per row (the same).  Every warp taking an eighth of the columns
// of every tile, the last one to finish adding the shares (so no warp
// holds a slot the others wait on): 248 us a layer
// at 32 KB slots, 181 at 64 KB, against 179 (the per-warp reductions of
// every tile cost more than they free).  Warps skipping the tiles they
// have no rows in cannot use the slots' mbarriers as they are: a parity
// wait is exact only within one phase, and a warp running ahead (or
// behind) by two takes one phase for another.  Branches chain-ring-og and
// chain-dc (docs/cuda-perf-log.md): tiles at their own bytes of the ring instead
// of slots (no gain), down's x in registers instead of xs (+2%), the o
// and down projections by column segments of CTA-owned rows, a 1 KB copy
// a row (+3% and +9%: small bulk copies stream slowly), the producer's
// lanes sharing copies (+2.5%).  Branch chain-norm-pre: each norm's
// weights asked for before the wait for its input (no change).  Branch
// chain-claims: each phase's last quarter of tiles claimed at run time by
// the producers whose slots free first, the consumers following per-slot
// labels behind a third mbarrier (1-1.5% slower in a release build; the
// claims at 0 or 25% timed the same: the phase ends are not uneven deals).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-mma.cuh"
#include "cuda-pdl.cuh"
#include "cuda-rope.cuh"
#include "decode-chain-attn.cuh"
#include "decode-chain-dots.cuh"
#include "decode-chain.cuh"

using namespace zlcuda;
using namespace zlchain;

namespace {

// ---- the producer ----

// Where a walk over one CTA's weight tiles is: layer, phase, tile, and the
// CTA the phase's deal starts at.
struct cursor {
    int l, ph, t, off;
};

// u moved to the CTA's next tile at or after (l, ph, t); false past the
// last layer.  Both of the producer's walks and the consumers' deal agree.
ZL_HD bool settle(const chain_args &A, cursor &u, int c, int g)
{
    while (u.l < A.n_layers) {
        const int n = phase_tiles(A, u.ph);
        if (u.ph != ATT && u.t < n)
            return true;
        u.off = (u.off + n) % g;
        if (++u.ph == PHASES)
            u.ph = 0, u.l++;
        u.t = first_tile(c, u.off, g);
    }
    return false;
}

// Every tile of this CTA into the ring in step order.  (Asking 2 or 4 more
// tiles into L2 beyond the ring, for the waits after attention and at each
// phase's end: no gain at 2, 11% slower at 4 on an H100.  Asking them only
// while the consumers wait for a phase's input: 1-2.7% slower, the waits
// themselves grew.)
[[maybe_unused]] __device__ void produce(const chain_args &A, char *ring, uint64_t *full, uint64_t *empty)
{
    uint64_t policy;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    const int c = blockIdx.x, g = gridDim.x;
    cursor u = {0, QKV, first_tile(c, 0, g), 0};
    bool ok = settle(A, u, c, g);
    [[maybe_unused]] unsigned long long stall = 0;
    for (uint32_t k = 0; ok; k++) {
        const int s = (int)(k % A.slots);
        [[maybe_unused]] unsigned long long t0 = 0;
        TRACE(A, t0 = now_ns());
        if (k >= (uint32_t)A.slots)
            mbar_wait(&empty[s], (k / A.slots - 1) & 1);
        TRACE(A, stall += now_ns() - t0);
        const tile tl = tile_of(A, A.layers[u.l], u.ph, u.t);
        const unsigned rb = (unsigned)phase_k(A, u.ph) * 2;
        char *dst = ring + (size_t)s * A.slot_bytes;
        mbar_expect_tx(&full[s], (tl.na + tl.nb) * rb);
        bulk_copy(dst, tl.a, tl.na * rb, &full[s], policy); // (a copy a row: the same speed)
        if (tl.nb)
            bulk_copy(dst + tl.na * rb, tl.b, tl.nb * rb, &full[s], policy);
        u.t += g;
        ok = settle(A, u, c, g);
    }
    TRACE(A, A.trace[(size_t)g * A.n_layers * PHASES * ZL_CHAIN_STAMPS + c * 2] = stall);
}

// ---- the consumers ----

// The residuals x[row] that a CTA's o or down tiles add to, in the order
// the CTA takes them: entry m * per + j is row j of its m-th tile (t0 +
// m * g).  Staged with the phase's input, one L2 round trip for all.  A
// lane asking for its row's before the sums waited out its own round trip
// behind the weight stream, longer than a down row's share of sums, and
// every warp of a down row waits for the warp that adds the eight shares:
// down's work 45.4 -> 38.4 us a layer, batch 1 -6% (H100, docs/cuda-perf-log.md).
struct res_stage {
    float *v;
    int t0, g, per, n; // n: entries (0: a phase without a residual)
};

// The stage of phase ph (n tiles) for the CTA whose first tile is t0 (of g).
ZL_HD res_stage res_stage_of(const chain_args &A, int ph, int n, int t0, int g, float *v)
{
    const int per = residual_rows(A, ph);
    return {v, t0, g, per, per * ((n - t0 + g - 1) / g)};
}

ZL_HD int res_row(const res_stage &rs, int e)
{
    return (rs.t0 + e / rs.per * rs.g) * rs.per + e % rs.per;
}

template <typename T> __device__ __forceinline__ float residual_at(const chain_args &A, const res_stage &rs, int e)
{
    const int row = res_row(rs, e); // (the last tile's rows past d: never read)
    return row < A.d ? to_f32<T>(__ldcg(reinterpret_cast<const T *>(A.x) + row)) : 0.0f;
}

// xs <- n elements of src (global, written by other CTAs: through L2), or
// with nw rmsnorm(src) * nw rounded as rms_norm rounds it; rs.v <- the
// phase's residuals.  The chunks go in with cp.async, all in flight at
// once and through no registers (a loop of loads and stores waits out an
// L2 round trip a chunk: the stores' generic pointer may alias src).
template <typename T>
__device__ void load_input(const chain_args &A, T *xs, const char *src, int n, const float *nw,
                           const res_stage &rs, float *red, int tid)
{
    const int chunks = n / 8;
    for (int c = tid; c < chunks; c += CTHREADS)
        cp_async16(xs + c * 8, src + (int64_t)c * 16, 16);
    cp_async_commit();
    float rv[RES_MAX / CTHREADS]; // in flight with the chunks
#pragma unroll
    for (int i = 0; i < RES_MAX / CTHREADS; i++)
        rv[i] = tid + i * CTHREADS < rs.n ? residual_at<T>(A, rs, tid + i * CTHREADS) : 0.0f;
    cp_async_wait<0>(); // this thread's chunks are in: it reads only its own until cbar
#pragma unroll
    for (int i = 0; i < RES_MAX / CTHREADS; i++)
        if (tid + i * CTHREADS < rs.n)
            rs.v[tid + i * CTHREADS] = rv[i];
    if (nw) {
        float ss = 0.0f;
        for (int c = tid; c < chunks; c += CTHREADS) {
            const uint4 v = reinterpret_cast<const uint4 *>(xs)[c];
            const T *e = reinterpret_cast<const T *>(&v);
#pragma unroll
            for (int i = 0; i < 8; i++)
                ss += to_f32<T>(e[i]) * to_f32<T>(e[i]);
        }
        const float inv = rsqrtf(csum(ss, red, tid) / (float)n + A.eps);
        constexpr int LOADS = 2; // chunks of norm weights a thread in flight
        for (int c0 = tid; c0 < chunks; c0 += LOADS * CTHREADS) {
            float4 wv[LOADS][2];
#pragma unroll
            for (int i = 0; i < LOADS; i++)
                if (c0 + i * CTHREADS < chunks) {
                    wv[i][0] = __ldg(reinterpret_cast<const float4 *>(nw) + 2 * (c0 + i * CTHREADS));
                    wv[i][1] = __ldg(reinterpret_cast<const float4 *>(nw) + 2 * (c0 + i * CTHREADS) + 1);
                }
#pragma unroll
            for (int i = 0; i < LOADS; i++) {
                if (c0 + i * CTHREADS >= chunks)
                    break;
                T *e = xs + (c0 + i * CTHREADS) * 8;
                const float *wf = reinterpret_cast<const float *>(wv[i]);
#pragma unroll
                for (int j = 0; j < 8; j++)
                    e[j] = from_f32<T>(to_f32<T>(e[j]) * inv * wf[j]);
            }
        }
    }
    cbar();
}

// What a warp keeps of its unit (lane 0) between the sums, which read the
// slot, and the stores, which come after the slot is freed; res: the
// residual that o and down add (staged, res_stage).
struct sums {
    float s1, s2, res, res2;
};

// Unit j of tile t (a row, or a pair of rows of the paired phases) by one
// warp: its dot products.
template <typename T>
__device__ __forceinline__ void unit_sums(const chain_args &A, int ph, int j, const char *slot,
                                          const tile &tl, const T *xs, int lane, sums &r)
{
    const int k = phase_k(A, ph), ck = k / 8;
    const uint4 *w = reinterpret_cast<const uint4 *>(slot);
    const uint4 *w1 = w + (int64_t)j * ck, *w2 = nullptr;
    if (ph == QKV || ph == GU)
        w2 = w + (int64_t)(tl.na + j) * ck;
    else if (ph == OPROJ && A.opair) // rows 2j and 2j + 1 (the last may be alone)
        w1 = w + (int64_t)2 * j * ck, w2 = 2 * j + 1 < tl.na ? w1 + ck : nullptr;
    row_dots<T>(A.mma, w1, w2, k, xs, lane, &r.s1, &r.s2);
}

// The count of q, k and v pairs stored of QKV tile t's kv group.
__device__ __forceinline__ int32_t *group_count(const chain_args &A, int l, int t)
{
    return A.cnt + l * cnt_stride(A) + PHASES + A.nkv + qkv_group(A, t);
}

// Unit j of tile t, lane 0: what linear_rope_kv, linear_fused (residual,
// SwiGLU) store for it, with the same formulas and roundings.
template <typename T>
__device__ void unit_store(const chain_args &A, int l, int ph, int t, int j, const tile &tl,
                           const sums &r)
{
    const T x1 = from_f32<T>(r.s1), x2 = from_f32<T>(r.s2);
    if (ph == QKV) {
        const int hh = A.hd / 2, per_head = hh / A.pq;
        const int head = qkv_head(A, t / per_head), jj = (t % per_head) * A.pq + j;
        if (head >= A.nh + A.nkv) { // v: into the cache as it is
            T *v = cache_row<T>(A, l, 1) + (head - A.nh - A.nkv) * A.hd;
            v[jj] = x1;
            v[jj + hh] = x2;
        } else {
            float co, sn;
            rope_cos_sin((float)__ldg(A.pos), __ldg(A.inv_freq + jj), A.af, &co, &sn);
            const float f1 = to_f32<T>(x1), f2 = to_f32<T>(x2);
            const T r1 = from_f32<T>(rot_lo(f1, f2, co, sn)), r2 = from_f32<T>(rot_hi(f1, f2, co, sn));
            T *o = head < A.nh ? reinterpret_cast<T *>(A.qkv) + head * A.hd
                               : cache_row<T>(A, l, 0) + (head - A.nh) * A.hd;
            o[jj] = r1;
            o[jj + hh] = r2;
        }
        if (!A.qkv_sig) { // else counted by its CTA at the phase's end (consume)
            __threadfence();
            atomicAdd(group_count(A, l, t), 1);
        }
    } else if (ph == GU) {
        const float gv = to_f32<T>(x1), uv = to_f32<T>(x2);
        reinterpret_cast<T *>(A.a)[t * A.pg + j] = from_f32<T>(gv / (1.0f + expf(-gv)) * uv);
    } else if (ph == OPROJ && A.opair) { // rows 2j and 2j + 1, where the tile has it
        T *x = reinterpret_cast<T *>(A.x) + t * A.ro + 2 * j;
        x[0] = from_f32<T>(to_f32<T>(x1) + r.res);
        if (2 * j + 1 < tl.na)
            x[1] = from_f32<T>(to_f32<T>(x2) + r.res2);
    } else { // o, down: x += the product rounded to T
        const int per = ph == OPROJ ? A.ro : A.rd;
        reinterpret_cast<T *>(A.x)[t * per + j] = from_f32<T>(to_f32<T>(x1) + r.res);
    }
}

// Tile t of the o or down phase when it is one row (down's rows of f
// elements fill a slot): every warp sums an eighth of its columns and the
// last to finish adds the eight partials in warp order, so the slot is held
// an eighth as long as by one warp (tuning builds: ZL_CHAIN_SHARE=0 turns
// it off).  First the warp's share of the sums:
template <typename T>
__device__ __forceinline__ void shared_sums(const chain_args &A, int ph, const char *slot, const T *xs,
                                            int lane, int warp, sums &r)
{
    const int ck = phase_k(A, ph) / 8, per = (ck + CWARPS - 1) / CWARPS;
    const int c0 = warp * per, n = min(per, ck - c0);
    row_dots<T>(A.mma, reinterpret_cast<const uint4 *>(slot) + c0, nullptr, n * 8, xs + c0 * 8, lane,
                &r.s1, &r.s2);
}

// ... then, lane 0, its partial into share (the tile's eight) and the last
// warp's sum and store.  share/share_n are the tile's k % (2 slots): a warp
// reaches the same entry again only two refills of the slot later, after
// the last warp here has freed it once more, so it is done with it.
template <typename T>
__device__ void shared_store(const chain_args &A, int t, int warp, const sums &r, float *share,
                             int *share_n)
{
    share[warp] = r.s1;
    __threadfence_block();
    if (atomicAdd(share_n, 1) != CWARPS - 1)
        return;
    __threadfence_block();
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < CWARPS; w++)
        sum += const_cast<volatile float *>(share)[w];
    *share_n = 0;
    reinterpret_cast<T *>(A.x)[t] = from_f32<T>(to_f32<T>(from_f32<T>(sum)) + r.res);
}

template <typename T, int HD>
__device__ void consume(const chain_args &A, char *ring, T *xs, float (*red)[MAXR][CWARPS],
                        uint64_t *full, uint64_t *empty, int *flag, float *share, int *share_n,
                        float *resv, int tid)
{
    const int c = blockIdx.x, g = gridDim.x;
    uint32_t k = 0;
    int off = 0;
    float *sa = reinterpret_cast<float *>(xs); // attention's scratch shares xs's space
    for (int l = 0; l < A.n_layers; l++) {
        const zl_cuda_chain_layer w = A.layers[l];
        int32_t *done = A.cnt + l * cnt_stride(A);
        for (int ph = 0; ph < PHASES; ph++) {
            const int n = phase_tiles(A, ph), t0 = first_tile(c, off, g);
            off = (off + n) % g;
            if (t0 >= n)
                continue;
            [[maybe_unused]] unsigned long long *tr = nullptr;
            TRACE(A, tr = A.trace + (((size_t)c * A.n_layers + l) * PHASES + ph) * ZL_CHAIN_STAMPS;
                  if (tid == 0) tr[0] = now_ns());
            // wait for this phase's input, then stage it
            if (ph == QKV && l > 0)
                wait_count(done - cnt_stride(A) + DOWN, A.nt[DOWN], tid);
            else if (ph != QKV && ph != ATT) // attention waits for its own group's rows
                wait_count(&done[ph == OPROJ ? ATT : ph - 1], ph == OPROJ ? A.nkv : A.nt[ph - 1], tid);
            if (ph == ATT) { // the trace's "input ready": the first task's rows are in
                TRACE(A, if (tid == 0) tr[1] = now_ns());
                for (int t = t0; t < n; t += g) {
                    if (!(A.dry >> ATT & 1))
                        attend<T, HD>(A, l, t, sa, flag, tid, t == t0 ? tr : nullptr);
                    else if (tid == 0)
                        atomicAdd(&done[ATT], t % A.splits == 0);
                    cbar(); // sa is free again
                }
                TRACE(A, if (tid == 0) tr[2] = now_ns());
                continue;
            }
            const res_stage rs = res_stage_of(A, ph, n, t0, g, resv);
            const int per = rs.per;
            if (ph == QKV || ph == GU)
                load_input<T>(A, xs, A.x, A.d, ph == QKV ? w.attn_norm : w.ffn_norm, rs, red[0][0], tid);
            else
                load_input<T>(A, xs, ph == OPROJ ? A.att : A.a, phase_k(A, ph), nullptr, rs, red[0][0], tid);
            TRACE(A, if (tid == 0) tr[1] = now_ns());
            // warps take the units (rows, or pairs) of the phase's tiles in turn
            // and move on without waiting for each other; each frees a slot
            // once it is past it, and all meet again at the phase's end
            int mine = 0, next = 0;
            const int lane = tid & 31, warp = tid >> 5;
            const bool dry = A.dry >> ph & 1;
            const bool shared = A.share && ph != QKV && ph != GU && (ph == OPROJ ? A.ro : A.rd) == 1;
            for (int t = t0; t < n; t += g, k++, mine++) {
                const int s = (int)(k % A.slots);
                [[maybe_unused]] unsigned long long w0 = 0;
                TRACE(A, if (tid == 0) w0 = now_ns());
                mbar_wait(&full[s], (k / A.slots) & 1);
                TRACE(A, if (tid == 0) tr[3] += now_ns() - w0);
                const tile tl = tile_of(A, w, ph, t);
                const char *slot = ring + (size_t)s * A.slot_bytes;
                // a warp has one unit of a tile at most (MAXR <= CWARPS)
                const int j = shared ? warp : (warp - next % CWARPS + CWARPS) % CWARPS;
                const int nu = units_of(A, ph, tl);
                const bool has = !dry && (shared || j < nu), two = nu < tl.na; // two: o rows paired
                sums r = {};
                if (has && per) { // (shared: j is the warp's share, the row is 0)
                    r.res = resv[mine * per + (shared ? 0 : two ? 2 * j : j)];
                    if (two && 2 * j + 1 < tl.na)
                        r.res2 = resv[mine * per + 2 * j + 1];
                }
                if (has && shared)
                    shared_sums<T>(A, ph, slot, xs, lane, warp, r);
                else if (has)
                    unit_sums<T>(A, ph, j, slot, tl, xs, lane, r);
                next += nu;
                __syncwarp();
                if (lane == 0) {
                    mbar_arrive(&empty[s]); // the stores below do not read the slot
                    const int e = (int)(k % (2 * A.slots));
                    if (has && shared)
                        shared_store<T>(A, t, warp, r, share + e * CWARPS, share_n + e);
                    else if (has)
                        unit_store<T>(A, l, ph, t, j, tl, r);
                }
            }
            cbar();
            publish(&done[ph], mine, tid);
            // after publish's fence: each qkv tile's pairs to its group's count,
            // one fence a CTA instead of one a pair, on which its warp stalled
            // (tuning builds: ZL_CHAIN_QKV_SIG=0 counts each pair as stored;
            // 1.6% slower a token on an H100)
            if (ph == QKV && A.qkv_sig && !dry)
                for (int i = tid; i < mine; i += CTHREADS)
                    atomicAdd(group_count(A, l, t0 + i * g), A.pq);
            TRACE(A, if (tid == 0) tr[2] = now_ns());
        }
    }
}

template <typename T, int HD>
__global__ void __launch_bounds__(THREADS, 1) chain_kernel(const chain_args A)
{
#if ZL_CHAIN_SM90
    extern __shared__ __align__(128) unsigned char sm[];
    char *ring = reinterpret_cast<char *>(sm);
    T *xs = reinterpret_cast<T *>(sm + (size_t)A.slots * A.slot_bytes);
    auto red = reinterpret_cast<float(*)[MAXR][CWARPS]>(sm + (size_t)A.slots * A.slot_bytes + A.xs_bytes);
    uint64_t *full = reinterpret_cast<uint64_t *>(red + 2);
    uint64_t *empty = full + A.slots;
    int *flag = reinterpret_cast<int *>(empty + A.slots);
    int *share_n = flag + 1;
    float *share = reinterpret_cast<float *>(share_n + 2 * MAX_SLOTS);
    float *resv = share + 2 * MAX_SLOTS * CWARPS;
    const int tid = threadIdx.x;
    if (tid < 2 * MAX_SLOTS)
        share_n[tid] = 0;
    if (tid == 0) {
        for (int s = 0; s < A.slots; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], CWARPS); // every consumer warp frees it
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (tid >= CTHREADS) {
        if (tid == CTHREADS)
            produce(A, ring, full, empty);
        return;
    }
    consume<T, HD>(A, ring, xs, red, full, empty, flag, share, share_n, resv, tid);
#else
    __trap(); // never launched below sm_90 (the plan says no)
#endif
}

// Shared memory of a launch: the ring, xs (or attention's per-warp
// partials), two reduction buffers, the barriers, a flag, the shared
// rows' partials and arrivals a slot, and a phase's staged residuals.
size_t tail_bytes(int slots)
{
    return sizeof(float) * 2 * MAXR * CWARPS + 16 * (size_t)slots + sizeof(int) +
           (sizeof(int) + sizeof(float) * CWARPS) * 2 * MAX_SLOTS + sizeof(float) * RES_MAX;
}

int pick_pairs(int rows_cap, int limit)
{ // the largest of 4, 2, 1 that divides `limit` (0: none fits) within rows_cap
    for (int p = 4; p >= 1; p /= 2)
        if (p <= rows_cap && limit % p == 0)
            return p;
    return 0;
}

// The plan of a shape on a device of `sms` SMs, compute capability
// `major`, `smem` bytes of shared memory a block and cooperative launch
// (coop); 0: the kernel does not take it.
int plan_for(const struct zl_cuda_chain_shape *s, int smem, int sms, int major, int coop,
             struct zl_cuda_chain_plan *p)
{
    *p = (struct zl_cuda_chain_plan){0};
    const int hd = s->head_dim, qd = s->n_heads * hd;
    if (major < 9 || !coop || sms < 1 || (hd != 64 && hd != 128) || s->n_kv_heads < 1 ||
        s->n_heads % s->n_kv_heads || s->n_heads / s->n_kv_heads > 8 || s->d % 8 || s->f % 8 ||
        qd % 8 || s->kv_len < 1)
        return 0;
    int slot = SLOT_KB << 10;
#ifdef ZL_GEMV_TUNING
    if (const char *e = getenv("ZL_CHAIN_SLOT_KB")) // a sweep: 16, 32, 64, 128
        slot = atoi(e) >= 16 && atoi(e) <= 192 ? atoi(e) << 10 : slot;
#endif
    const int64_t widest = s->d > s->f ? (s->d > qd ? s->d : qd) : (s->f > qd ? s->f : qd);
    const int64_t att = (int64_t)CWARPS * (s->n_heads / s->n_kv_heads) * (hd + 2) * 4;
    const int64_t xs = ((widest * 2 > att ? widest * 2 : att) + 127) & ~(int64_t)127;
    const int64_t left = smem - xs - (int64_t)tail_bytes(MAX_SLOTS);
    p->slots = left / slot > MAX_SLOTS ? MAX_SLOTS : (int)(left / slot);
#ifdef ZL_GEMV_TUNING
    if (const char *e = getenv("ZL_CHAIN_SLOTS")) // fewer slots than fit, for a sweep
        p->slots = atoi(e) >= 1 && atoi(e) < p->slots ? atoi(e) : p->slots;
#endif
    if (p->slots < 2)
        return 0;
    const int pairs_cap = slot / (4 * s->d) < MAXR / 2 ? slot / (4 * s->d) : MAXR / 2;
    p->pq = pick_pairs(pairs_cap, hd / 2);
    p->pg = pick_pairs(pairs_cap, s->f); // whole gate/up tiles: the up rows start at pg
    p->ro = slot / (2 * qd) < MAXR ? slot / (2 * qd) : MAXR;
    p->rd = slot / (2 * s->f) < MAXR ? slot / (2 * s->f) : MAXR;
    if (p->pq < 1 || p->pg < 1 || p->ro < 1 || p->rd < 1)
        return 0;
    const int to = (s->d + p->ro - 1) / p->ro, td = (s->d + p->rd - 1) / p->rd; // o, down tiles
    if ((to + sms - 1) / sms * p->ro > RES_MAX || (td + sms - 1) / sms * p->rd > RES_MAX)
        return 0; // a CTA's residuals of a phase do not fit the stage
    p->slot_bytes = slot;
    p->xs_bytes = (int)xs;
    p->smem = (size_t)p->slots * slot + (size_t)xs + tail_bytes(p->slots);
    p->grid = sms;
    p->splits = (s->kv_len + CH - 1) / CH;
    if ((2 * (int64_t)p->splits + 1) * (s->n_heads / s->n_kv_heads) * 4 > xs)
        return 0; // the last split's merge stages its weights in xs's space
    p->part_bytes = p->splits > 1 ? (size_t)s->n_heads * p->splits * part_ld(hd) * sizeof(float) : 0;
    p->count_ints = (size_t)s->n_layers * (PHASES + 2 * (size_t)s->n_kv_heads);
    return 1;
}

// The fields of A that the shape and the plan decide (the schedule's).
void schedule_args(const struct zl_cuda_chain_shape *s, const struct zl_cuda_chain_plan *p,
                   chain_args &A)
{
    A.n_layers = s->n_layers;
    A.d = s->d;
    A.f = s->f;
    A.nh = s->n_heads;
    A.nkv = s->n_kv_heads;
    A.hd = s->head_dim;
    A.group = s->n_heads / s->n_kv_heads;
    A.kv_len = s->kv_len;
    A.splits = p->splits;
    A.pq = p->pq;
    A.pg = p->pg;
    A.ro = p->ro;
    A.rd = p->rd;
    A.nt[QKV] = (s->n_heads + 2 * s->n_kv_heads) * (s->head_dim / 2 / p->pq);
    A.nt[ATT] = 0;
    A.nt[OPROJ] = (s->d + p->ro - 1) / p->ro;
    A.nt[GU] = (s->f + p->pg - 1) / p->pg;
    A.nt[DOWN] = (s->d + p->rd - 1) / p->rd;
    A.slots = p->slots;
    A.slot_bytes = p->slot_bytes;
    A.xs_bytes = p->xs_bytes;
}

} // namespace

extern "C" int zl_cuda_decode_chain_plan(const struct zl_cuda_chain_shape *s,
                                         struct zl_cuda_chain_plan *p)
{
    // asked once per device (this runs every decode step): cuda-pdl.cuh
    return plan_for(s, device_attr<cudaDevAttrMaxSharedMemoryPerBlockOptin>(), device_sm_count(),
                    device_major(), device_attr<cudaDevAttrCooperativeLaunch>(), p);
}

extern "C" cudaError_t zl_cuda_decode_chain(const struct zl_cuda_chain *c,
                                            const struct zl_cuda_chain_plan *p,
                                            cudaStream_t stream)
{
    const struct zl_cuda_chain_shape *s = &c->shape;
    chain_args A = {};
    schedule_args(s, p, A);
    A.layers = c->layers;
    A.x = static_cast<char *>(c->x);
    A.qkv = static_cast<char *>(c->qkv);
    A.att = static_cast<char *>(c->att);
    A.a = static_cast<char *>(c->a);
    A.part = static_cast<float *>(c->part);
    A.cnt = c->count;
    A.eps = c->eps;
    A.scale_log2 = c->scale * LOG2E;
    A.pos = c->pos;
    A.inv_freq = c->inv_freq;
    A.af = c->attn_factor;
    const int bs = c->cache.block_size;
    A.row_bytes = (int64_t)s->n_kv_heads * s->head_dim * 2;
    A.v_off = (int64_t)bs * A.row_bytes;
    A.layer_bytes = 2 * A.v_off;
    A.cache = c->cache.base;
    A.block_stride = (int64_t)c->cache.block_stride;
    A.bs_shift = __builtin_ctz((unsigned)bs);
    A.bs_mask = bs - 1;
    A.table = c->table;
    A.slot = c->slot;
    A.trace = static_cast<unsigned long long *>(c->trace);
    A.dry = c->dry;
    A.share = 1;
    A.mma = 1;
    A.qkv_sig = 1;
    A.opair = 1;
#ifdef ZL_GEMV_TUNING
    if (const char *e = getenv("ZL_CHAIN_SHARE"))
        A.share = atoi(e) != 0;
    if (const char *e = getenv("ZL_CHAIN_MMA")) // 0: the FMA dot products
        A.mma = atoi(e) != 0;
    if (const char *e = getenv("ZL_CHAIN_MERGE_L2")) // 1: the split merge as before its staging
        A.merge_l2 = atoi(e) != 0;
    if (const char *e = getenv("ZL_CHAIN_QKV_SIG")) // 0: each qkv pair fences and counts
        A.qkv_sig = atoi(e) != 0;
    if (const char *e = getenv("ZL_CHAIN_OPAIR")) // 1: a warp sums two o rows at once
        A.opair = atoi(e) != 0;
#endif

    const bool bf = c->dtype == ZL_DTYPE_BF16;
    void (*kernel)(chain_args) = s->head_dim == 128
                                     ? (bf ? chain_kernel<__nv_bfloat16, 128> : chain_kernel<__half, 128>)
                                     : (bf ? chain_kernel<__nv_bfloat16, 64> : chain_kernel<__half, 64>);
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)p->smem);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(c->count, 0, p->count_ints * sizeof(int32_t), stream);
    if (e != cudaSuccess)
        return e;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)p->grid);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = p->smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative; // all CTAs resident: they wait on each other
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    e = cudaLaunchKernelEx(&cfg, kernel, A);
    return e != cudaSuccess ? e : cudaGetLastError();
}
