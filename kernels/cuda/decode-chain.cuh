// The persistent decode chain's shared pieces (decode-chain.cu): its
// arguments and shape constants, the mbarrier, bulk-copy and cross-CTA
// counter helpers, and the schedule its producer, consumers and attention
// tasks agree on.  One translation unit uses it.
#ifndef ZL_DECODE_CHAIN_CUH
#define ZL_DECODE_CHAIN_CUH

#include <stdint.h>

#include "cuda-dtype.cuh"
#include "cuda-kernels.h"
#include "cuda-mbar.cuh"
#include "cuda-mma.cuh" // smem_addr, cp_async16

// Bulk copies and mbarrier transactions need sm_90: older targets compile
// the chain's helpers empty and its kernel to a trap (never launched:
// zl_cuda_decode_chain_plan takes sm_90+ only).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define ZL_CHAIN_SM90 0
#else
#define ZL_CHAIN_SM90 1
#endif

namespace zlchain {

using namespace zlcuda;

constexpr int CWARPS = 8;                   // consumer warps
constexpr int CTHREADS = CWARPS * 32;
constexpr int THREADS = CTHREADS + 32;      // + the producer warp
constexpr int MAXR = 8;                     // rows a tile (a warp takes one unit of a tile)
constexpr int CH = 64;                      // keys an attention task (8 per warp)
constexpr int SLOT_KB = 32;                 // a ring slot: one tile (64: 1% slower on an H100)
constexpr int MAX_SLOTS = 16;
constexpr int RES_MAX = 2 * CTHREADS;       // residuals of a CTA's o / down rows, staged a phase
static_assert(MAXR <= CWARPS, "a warp takes one unit (row or pair) of a tile at most");
constexpr float LOG2E = 1.4426950408889634f;
enum { QKV, ATT, OPROJ, GU, DOWN, PHASES };

struct chain_args {
    const struct zl_cuda_chain_layer *layers;  // device [n_layers]
    int n_layers;
    char *x, *qkv, *att, *a;                   // [d] residual, [qd + 2 kvd], [qd], [f]: T
    float *part;                               // [n_kv][splits][group][part_ld(hd)]
    int32_t *cnt;                              // [n_layers][PHASES + n_kv], zero at launch
    int d, f, nh, nkv, hd, group;
    float eps, scale_log2;
    // RoPE and the cache
    const int32_t *pos;
    const float *inv_freq;
    float af;
    char *cache;                               // block 0, layer 0
    int64_t block_stride, row_bytes, layer_bytes, v_off;
    int bs_shift, bs_mask;
    const int32_t *table;                      // the sequence's block ids
    int kv_len, slot, splits;
    // tiles: pairs a QKV / gate-up tile, rows an o / down tile, tiles a phase
    int pq, ro, pg, rd;
    int nt[PHASES];
    int slots, slot_bytes, xs_bytes;
    unsigned long long *trace;  // tuning builds: per (CTA, layer, phase) times, or null
    int dry;                    // tuning builds: bit p: phase p's consumers skip the math (timing only)
    int share;                  // one-row tiles: every warp a share of the columns (unit_shared)
    int mma;                    // dot products on the tensor cores (decode-chain-dots.cuh)
    int merge_l2;               // tuning builds: the split merge reads through L2 even where rows fit
    int qkv_sig;                // 1: a CTA counts its qkv pairs at the phase's end; 0: each pair
    int opair;                  // 1: the o phase's units are two neighbouring rows (units_of)
};

// ---- tracing (tuning builds): globaltimer stamps, see cuda-decode-chain.c ----

#ifdef ZL_GEMV_TUNING
__device__ __forceinline__ unsigned long long now_ns()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

#define TRACE(A, stmt)                                                                             \
    do {                                                                                           \
        if ((A).trace) {                                                                           \
            stmt;                                                                                  \
        }                                                                                          \
    } while (0)
#else
#define TRACE(A, stmt) ((void)0)
#endif

// ---- bulk-copy helpers (sm_90; the mbarriers are cuda-mbar.cuh's) ----

// `bytes` (a multiple of 16) from global src to shared dst, counted on b;
// L2 evict-first: the weights are read once a step.
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, uint64_t *b,
                                          uint64_t policy)
{
#if ZL_CHAIN_SM90
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1], %2, [%3], %4;" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(b)), "l"(policy)
                 : "memory");
#endif
}

// The consumer warps' own barrier (the producer warp never joins it).
__device__ __forceinline__ void cbar()
{
    asm volatile("bar.sync 1, %0;" ::"n"(CTHREADS) : "memory");
}

__device__ __forceinline__ int ld_acquire(const int32_t *p)
{
    int v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// ---- the schedule, shared by producer and consumers ----
// (host too: tests/cuda/test_chain_schedule walks it on the CPU)

#define ZL_HD __host__ __device__ __forceinline__

// Counters a layer: one a phase (tiles done; attention: kv heads merged),
// the split merge's per kv head, the QKV rows done per kv group.
ZL_HD int cnt_stride(const chain_args &A)
{
    return PHASES + 2 * A.nkv;
}

// The QKV phase deals its heads group by group (a kv group's query heads,
// its k head, its v head), so the first groups' attention can start while
// the QKV rows of the last ones still stream.  Head slot -> weight head.
ZL_HD int qkv_head(const chain_args &A, int slot)
{
    const int g = slot / (A.group + 2), r = slot % (A.group + 2);
    return r < A.group ? g * A.group + r : r == A.group ? A.nh + g : A.nh + A.nkv + g;
}

// A split's partial row of one query head: hd sums, the max, the sum of
// weights, and 2 floats that keep every row 16-byte aligned (the last
// split's merge copies them in with cp.async).
ZL_HD int part_ld(int hd)
{
    return hd + 4;
}

// First tile of CTA c in a phase whose deal starts at CTA `off`.
ZL_HD int first_tile(int c, int off, int g)
{
    return (c - off + g) % g;
}

ZL_HD int phase_tiles(const chain_args &A, int ph)
{
    return ph == ATT ? A.nkv * A.splits : A.nt[ph];
}

// Width of a phase's weight rows (its input vector's length).
ZL_HD int phase_k(const chain_args &A, int ph)
{
    return ph == OPROJ ? A.nh * A.hd : ph == DOWN ? A.f : A.d;
}

// Rows a tile of the phases that add to the residual (o, down), else 0.
ZL_HD int residual_rows(const chain_args &A, int ph)
{
    return ph == OPROJ ? A.ro : ph == DOWN ? A.rd : 0;
}

struct tile {
    const char *a, *b;  // two runs of whole rows, b's rows right after a's in the slot
    int na, nb;
};

ZL_HD tile tile_of(const chain_args &A, const zl_cuda_chain_layer &w, int ph, int t)
{
    tile r = {nullptr, nullptr, 0, 0};
    const int64_t rb = (int64_t)phase_k(A, ph) * 2;
    if (ph == QKV) { // pairs (j, j + hd/2) of one head: what RoPE rotates together
        const int hh = A.hd / 2, per_head = hh / A.pq;
        const int64_t row = (int64_t)qkv_head(A, t / per_head) * A.hd + (t % per_head) * A.pq;
        r.a = static_cast<const char *>(w.wqkv) + row * rb;
        r.b = r.a + hh * rb;
        r.na = r.nb = A.pq;
    } else if (ph == GU) { // gate rows and the matching up rows
        const int64_t row = (int64_t)t * A.pg;
        r.na = r.nb = A.pg; // pg divides f
        r.a = static_cast<const char *>(w.wgu) + row * rb;
        r.b = r.a + (int64_t)A.f * rb;
    } else {
        const int per = ph == OPROJ ? A.ro : A.rd;
        const int64_t row = (int64_t)t * per;
        r.na = per < A.d - (int)row ? per : A.d - (int)row; // (min: host code too)
        r.a = static_cast<const char *>(ph == OPROJ ? w.wo : w.wdown) + row * rb;
    }
    return r;
}

// Units of a tile (a warp takes one): pairs in the paired phases; rows of
// o and down, or neighbouring rows two by two where the o phase pairs them
// (A.opair: one warp's MMAs give two rows' sums for the price of one, and
// a tile's o rows take half the warps' round trips).
ZL_HD int units_of(const chain_args &A, int ph, const tile &tl)
{
    return ph == OPROJ && A.opair ? (tl.na + 1) / 2 : tl.na;
}

// The kv group of QKV tile t (a tile is in one head): the count its
// attention tasks wait for.
ZL_HD int qkv_group(const chain_args &A, int t)
{
    return t / (A.hd / 2 / A.pq) / (A.group + 2);
}

// ---- counters between CTAs ----

// Thread 0 waits until *p >= target (another CTA's release), then all do:
// its acquire load and the barrier order their reads after the writes the
// count releases, as in a grid sync.  (An SC fence after the load, as
// there was: no difference on an H100.)
__device__ __forceinline__ void wait_count(const int32_t *p, int target, int tid)
{
    if (tid == 0)
        while (ld_acquire(p) < target)
            __nanosleep(64);
    cbar();
}

// Every consumer's global stores of this phase, then one count of `n`.
__device__ __forceinline__ void publish(int32_t *p, int n, int tid)
{
    __threadfence();
    cbar();
    if (tid == 0)
        atomicAdd(p, n);
}

// The sum of one value over the consumer threads, the same in all of them.
__device__ __forceinline__ float csum(float v, float *red, int tid)
{
    v = warp_sum(v);
    if ((tid & 31) == 0)
        red[tid >> 5] = v;
    cbar();
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < CWARPS; w++)
        s += red[w];
    cbar(); // red is free again
    return s;
}

template <typename T> __device__ __forceinline__ T *cache_row(const chain_args &A, int l, int kv)
{
    char *b = A.cache + (int64_t)(A.slot >> A.bs_shift) * A.block_stride + // slot: pool block
              (int64_t)l * A.layer_bytes + kv * A.v_off + (int64_t)(A.slot & A.bs_mask) * A.row_bytes;
    return reinterpret_cast<T *>(b);
}

} // namespace zlchain

#endif
