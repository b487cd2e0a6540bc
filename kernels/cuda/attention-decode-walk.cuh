// What the decode attention kernels share (attention-decode.cu): the
// arguments, the K/V tile loads, q staging, the tile's MMAs and online
// softmax, the new token's key and value (rope_attention) and a warp's
// pipelined walk over its tiles.  Included by attention-decode.cu inside
// its anonymous namespace, after the includes it needs.
#ifndef ZL_ATTENTION_DECODE_WALK_CUH
#define ZL_ATTENTION_DECODE_WALK_CUH

constexpr int WARPS = 4;
constexpr int TILE = 16;                 // keys per warp step (k of the P V MMA)
constexpr int STAGES = 3;                // cp.async stages per warp (2, or 1 CTA/SM with 4: slower)
constexpr int MIN_CHUNK = WARPS * TILE;  // smallest split
constexpr int MAX_SPLITS = 256;
constexpr int ROWS = 16;                 // MMA M: query heads of one group
constexpr float LOG2E = 1.4426950408889634f;

struct decode_args {
    char *out;
    int64_t o_nb0, o_nb1;
    const char *q;
    int64_t q_nb0, q_nb1;
    char *base;                 // cache base + this layer's K rows + 0
    int64_t block_stride;       // bytes
    int64_t row_bytes;          // one token's [n_kv_heads][head_dim]
    int64_t v_off;              // V rows minus K rows of a block, bytes
    int bs_shift, bs_mask;
    int n_q, group;
    int chunk, n_splits;
    int n_kv;                   // kv heads (the per-warp kernel's items: kv head, sequence)
    int max_blocks;
    const int32_t *kv_len, *table;
    float scale_log2;
    float *part_o;              // [n_seqs][n_q][n_splits][head_dim]
    float *part_ml;             // [n_seqs][n_q][n_splits][2]: max (log2 units), sum
    int32_t *count;             // [n_seqs][n_kv]: CTAs of the pair done, 0 between launches
    const char *pf;             // asked into L2 in slices, one per CTA (zl_cuda_prefetch)
    int64_t pf_slice, pf_bytes;
    // rope_attention (slot != nullptr): q is rotated here, and the new
    // token's k (rotated) and v are written by the CTA whose keys end there
    const char *kn, *vn;        // [n_seqs][n_kv][head_dim] rows of the new token
    int64_t kn_nb0, kn_nb1, vn_nb0, vn_nb1;
    const int32_t *pos;
    int64_t pos_step;
    const float *inv_freq;
    float af;
    const int32_t *slot;
    int release;                // pdl_release: 0 at the end, 1 after the wait, 2 after the keys
#ifdef ZL_GEMV_TUNING
    unsigned long long *trace;  // ZL_ATTN_TRACE: TR_SLOTS stamps a CTA, or null
#endif
};

#include "attention-decode-trace.cuh"  // ATRACE; tuning builds: ZL_ATTN_TRACE

[[maybe_unused]] constexpr int64_t PF_PIECE = 64 << 10;  // bytes per bulk prefetch instruction

template <int HD> constexpr int ld_kv() { return HD + 8; }   // padded rows: ldmatrix without conflicts
template <int HD> constexpr size_t smem_bytes()
{
    return (size_t)WARPS * STAGES * 2 * TILE * ld_kv<HD>() * 2;
}

// Before the PDL wait (sm_90): slice `cta` of the next kernel's weights
// into L2 (HBM is otherwise idle while a short-context step attends), from
// one thread.
__device__ __forceinline__ void prefetch_slice(const decode_args &a, int64_t cta)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int64_t end = min(cta * a.pf_slice + a.pf_slice, a.pf_bytes);
    for (int64_t off = cta * a.pf_slice; off < end; off += PF_PIECE)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a.pf + off),
                     "r"((unsigned)min(PF_PIECE, end - off)) : "memory");
#endif
}

// Before the PDL wait (sm_90): the K and V rows of keys c0 .. c0 + keys - 1
// (what the pipeline's first loads ask for) into L2, by nt threads.  All
// but the newest row were written steps ago; a prefetch only warms L2.
template <typename T, int HD>
__device__ __forceinline__ void prefetch_rows(const decode_args &a, const char *head,
                                              const int32_t *table, int c0, int keys, int t,
                                              int nt)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    for (int i = t; i < 2 * keys; i += nt) {
        const int pos = c0 + i / 2;
        const char *row = head + (int64_t)table[pos >> a.bs_shift] * a.block_stride +
                          (int64_t)(pos & a.bs_mask) * a.row_bytes + (i & 1) * a.v_off;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(row),
                     "r"((unsigned)(HD * sizeof(T))) : "memory");
    }
#endif
}

// The A fragments of the 16 query rows staged in sq (rows of LD).
template <typename T, int HD>
__device__ __forceinline__ void q_frags(uint32_t (&qf)[HD / 16][4], const T *sq, int lane)
{
    constexpr int LD = ld_kv<HD>();
    const int g = lane >> 2, tg = lane & 3;
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) {
        qf[ks][0] = *reinterpret_cast<const uint32_t *>(&sq[g * LD + ks * 16 + tg * 2]);
        qf[ks][1] = *reinterpret_cast<const uint32_t *>(&sq[(g + 8) * LD + ks * 16 + tg * 2]);
        qf[ks][2] = *reinterpret_cast<const uint32_t *>(&sq[g * LD + ks * 16 + 8 + tg * 2]);
        qf[ks][3] = *reinterpret_cast<const uint32_t *>(&sq[(g + 8) * LD + ks * 16 + 8 + tg * 2]);
    }
}

// The cp.async loads of one 16-key tile (keys p0 ..., K rows then V rows
// at dst); keys at or past c1 and the new key `pnew` (written by this very
// launch, rope_attention) are zero-filled.  Commits nothing.
template <typename T, int HD>
__device__ __forceinline__ void load_kv_tile(T *dst, const decode_args &a, const char *head,
                                             const int32_t *table, int p0, int c1, int pnew,
                                             int lane)
{
    constexpr int LD = ld_kv<HD>(), CPR = HD / 8;
#pragma unroll
    for (int i = 0; i < TILE * CPR / 32; i++) {
        const int c = lane + 32 * i, r = c / CPR, col = c % CPR;
        const int pos = p0 + r;
        const bool ok = pos < c1 && pos != pnew;
        const char *src = a.base;
        if (ok)
            src = head + (int64_t)table[pos >> a.bs_shift] * a.block_stride +
                  (int64_t)(pos & a.bs_mask) * a.row_bytes + col * 16;
        cp_async16(dst + r * LD + col * 8, src, ok ? 16 : 0);
        cp_async16(dst + (TILE + r) * LD + col * 8, ok ? src + a.v_off : src, ok ? 16 : 0);
    }
}

// The group's query rows of sequence s into sq (ROWS rows of LD, rows past
// the group zero) by NT threads: each takes element pairs (j, j + HD/2),
// rotated in rope_attention as rope_kv_write rotates them (cuda-rope.cuh).
// Loads go out 8 pairs at a time before their stores (q rows may be oddly
// strided: element loads).
template <typename T, int HD, int NT>
__device__ __forceinline__ void load_q(T *sq, const decode_args &a, int s, int kvh, int tid)
{
    constexpr int LD = ld_kv<HD>(), HALF = HD / 2, NQ = ROWS * HALF / NT;
    constexpr int NJ = NT >= HALF ? 1 : HALF / NT;      // distinct pair columns per thread
    constexpr int B = NQ < 8 ? NQ : 8;
    float cs[NJ], sn[NJ];
#pragma unroll
    for (int k = 0; k < NJ; k++) {
        cs[k] = 1.0f, sn[k] = 0.0f;
        if (a.slot)
            rope_cos_sin((float)a.pos[s * a.pos_step], a.inv_freq[(tid + k * NT) % HALF], a.af,
                         &cs[k], &sn[k]);
    }
#pragma unroll
    for (int b = 0; b < NQ; b += B) {
        T x1[B], x2[B];
#pragma unroll
        for (int i = 0; i < B; i++) {
            const int idx = tid + (b + i) * NT, r = idx / HALF, j = idx % HALF;
            x1[i] = x2[i] = from_f32<T>(0.0f);
            if (r < a.group) {
                const T *row = reinterpret_cast<const T *>(
                    a.q + (int64_t)s * a.q_nb0 + (int64_t)(kvh * a.group + r) * a.q_nb1);
                x1[i] = row[j];
                x2[i] = row[j + HALF];
            }
        }
#pragma unroll
        for (int i = 0; i < B; i++) {
            const int idx = tid + (b + i) * NT, r = idx / HALF, j = idx % HALF;
            const int k = NT >= HALF ? 0 : (b + i) % NJ;
            T lo = x1[i], hi = x2[i];
            if (a.slot) {
                const float f1 = to_f32<T>(lo), f2 = to_f32<T>(hi);
                lo = from_f32<T>(rot_lo(f1, f2, cs[k], sn[k]));
                hi = from_f32<T>(rot_hi(f1, f2, cs[k], sn[k]));
            }
            sq[r * LD + j] = lo;
            sq[r * LD + j + HALF] = hi;
        }
    }
}

// The online softmax state of a warp's 16 rows: max, sum and O at zero.
template <int HD>
__device__ __forceinline__ void zero_acc(float (&m)[2], float (&l)[2], float (&o)[HD / 8][4])
{
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
}

// Row sums: the 4 lanes of a row held parts.
__device__ __forceinline__ void row_sums(float (&l)[2])
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
}

// One 16-key tile of a warp: S = Q K^T, the online softmax (log2 units;
// keys at or past c1 are -inf), O = O * corr + P V.  qf: the A fragments of
// the 16 query rows; sk, sv: the tile's K and V rows in shared memory.
template <typename T, int HD>
__device__ __forceinline__ void attend_tile(const uint32_t (&qf)[HD / 16][4], const T *sk,
                                            const T *sv, int p0, int c1, float scale_log2,
                                            int lane, float (&m)[2], float (&l)[2],
                                            float (&o)[HD / 8][4])
{
    constexpr int LD = ld_kv<HD>();
    const int tg = lane & 3;
    // S [16 rows, 16 keys] = Q K^T: sc[nt] holds keys nt*8 + tg*2 (+1), rows g, g+8
    float sc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) {
        uint32_t b[4];
        ldsm_x4(b, sk + ((lane >> 4) * 8 + (lane & 7)) * LD + ks * 16 + ((lane >> 3) & 1) * 8);
        mma<T>(sc[0], qf[ks], b[0], b[1]);
        mma<T>(sc[1], qf[ks], b[2], b[3]);
    }

    // online softmax in log2 units; keys past the chunk are -inf
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int key = p0 + nt * 8 + tg * 2 + (e & 1);
            const float v = key < c1 ? sc[nt][e] * scale_log2 : -INFINITY;
            sc[nt][e] = v;
            mx[e >> 1] = fmaxf(mx[e >> 1], v);
        }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        corr[r] = exp2f(m[r] - mx[r]); // 0 on the first tile (m = -inf); mx is finite
        m[r] = mx[r];
    }
    uint32_t pa[4];
    float ps[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < 2; nt++) {
        const float e0 = exp2f(sc[nt][0] - mx[0]), e1 = exp2f(sc[nt][1] - mx[0]);
        const float e2 = exp2f(sc[nt][2] - mx[1]), e3 = exp2f(sc[nt][3] - mx[1]);
        ps[0] += e0 + e1;
        ps[1] += e2 + e3;
        // the S accumulator layout is the A fragment layout of P V
        pa[nt * 2] = pack2<T>(e0, e1);
        pa[nt * 2 + 1] = pack2<T>(e2, e3);
    }
    l[0] = l[0] * corr[0] + ps[0];
    l[1] = l[1] * corr[1] + ps[1];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        o[n][0] *= corr[0];
        o[n][1] *= corr[0];
        o[n][2] *= corr[1];
        o[n][3] *= corr[1];
    }
    // O [16, HD] += P [16, 16 keys] V [16 keys, HD]
#pragma unroll
    for (int n2 = 0; n2 < HD / 16; n2++) {
        uint32_t b[4];
        ldsm_x4_t(b, sv + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + n2 * 16 + (lane >> 4) * 8);
        mma<T>(o[2 * n2], pa, b[0], b[1]);
        mma<T>(o[2 * n2 + 1], pa, b[2], b[3]);
    }
}

// The new token's key and value (rope_attention), by one warp: lane c
// returns 16-byte chunk c of [K | V] (lanes past 2 * HD / 8: zeros), k's
// chunk rotated as rope_kv_write rotates it, and writes it to the cache
// slot.
template <typename T, int HD>
__device__ __forceinline__ uint4 new_kv(const decode_args &a, int s, int kvh, int lane)
{
    constexpr int CPR = HD / 8, HALF = HD / 2;
    uint4 nkv = make_uint4(0, 0, 0, 0);
    if (lane >= 2 * CPR)
        return nkv;
    const bool isv = lane >= CPR;
    const int c = lane % CPR, part = (c * 8) % HALF, hi = c * 8 >= HALF;
    const T *row = reinterpret_cast<const T *>(
        isv ? a.vn + (int64_t)s * a.vn_nb0 + (int64_t)kvh * a.vn_nb1
            : a.kn + (int64_t)s * a.kn_nb0 + (int64_t)kvh * a.kn_nb1);
    T x1[8], x2[8];
#pragma unroll
    for (int u = 0; u < 8; u++) {
        x1[u] = row[part + u];
        x2[u] = row[part + HALF + u];
    }
    T *out = reinterpret_cast<T *>(&nkv);
#pragma unroll
    for (int u = 0; u < 8; u++) {
        if (isv) {
            out[u] = hi ? x2[u] : x1[u];
            continue;
        }
        float cs, sn;
        rope_cos_sin((float)a.pos[s * a.pos_step], a.inv_freq[part + u], a.af, &cs, &sn);
        const float f1 = to_f32<T>(x1[u]), f2 = to_f32<T>(x2[u]);
        out[u] = from_f32<T>(hi ? rot_hi(f1, f2, cs, sn) : rot_lo(f1, f2, cs, sn));
    }
    const int64_t sl = a.slot[s];
    T *dst = reinterpret_cast<T *>(a.base + (int64_t)kvh * HD * (int64_t)sizeof(T) +
                                   (sl >> a.bs_shift) * a.block_stride +
                                   (sl & a.bs_mask) * a.row_bytes + (isv ? a.v_off : 0));
#pragma unroll
    for (int u = 0; u < 8; u++)
        dst[c * 8 + u] = out[u];
    return nkv;
}

// A warp's pipelined walk over its 16-key tiles of keys [c0, c1): tiles
// first, first + stride, ... (count of them) through STAGES stages at wbuf.
template <typename T, int HD> struct tile_walk {
    T *wbuf;
    const char *head;
    const int32_t *table;
    int c0, c1, pnew, first, stride, count;

    __device__ __forceinline__ int p0(int j) const { return c0 + (first + stride * j) * TILE; }
    __device__ __forceinline__ T *stage(int j) const
    {
        return wbuf + (j % STAGES) * 2 * TILE * ld_kv<HD>();
    }
    // Tile j into its stage; always commits a group so the wait counts stay uniform.
    __device__ __forceinline__ void load(const decode_args &a, int j, int lane) const
    {
        if (j < count)
            load_kv_tile<T, HD>(stage(j), a, head, table, p0(j), c1, pnew, lane);
        cp_async_commit();
    }
};

// The walk's first STAGES - 1 tiles: issued before the q load they overlap.
template <typename T, int HD>
__device__ __forceinline__ void walk_start(const decode_args &a, const tile_walk<T, HD> &w,
                                           int lane)
{
#pragma unroll
    for (int j = 0; j < STAGES - 1; j++)
        w.load(a, j, lane);
}

// The walk itself: each tile attended into (m, l, o) as it lands, the next
// one's loads issued first; the tile holding the new key (rope_attention,
// loaded as zeros) gets it from nkv (new_kv's chunks) before use.  Ends
// with the row sums complete.
template <typename T, int HD>
__device__ __forceinline__ void walk(const decode_args &a, const tile_walk<T, HD> &w,
                                     const uint32_t (&qf)[HD / 16][4], uint4 nkv, int lane,
                                     float (&m)[2], float (&l)[2], float (&o)[HD / 8][4])
{
    constexpr int LD = ld_kv<HD>(), CPR = HD / 8;
    for (int j = 0; j < w.count; j++) {
        __syncwarp(); // every lane is done with the stage the next load overwrites
        w.load(a, j + STAGES - 1, lane);
        cp_async_wait<STAGES - 1>();
        __syncwarp();
        T *sk = w.stage(j);
        const int p0 = w.p0(j);
        if (w.pnew >= p0 && w.pnew < p0 + TILE) {
            if (lane < 2 * CPR)
                *reinterpret_cast<uint4 *>(sk + ((lane / CPR) * TILE + w.pnew - p0) * LD +
                                           (lane % CPR) * 8) = nkv;
            __syncwarp();
        }
        attend_tile<T, HD>(qf, sk, sk + TILE * LD, p0, w.c1, a.scale_log2, lane, m, l, o);
    }
    cp_async_wait<0>();
    row_sums(l);
}

#endif
