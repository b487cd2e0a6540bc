// The attention task of the persistent decode chain (decode-chain.cu):
// one kv head's keys of one split for the group's query heads, merged over
// the CTA's warps and, by the last split, over the splits.
#ifndef ZL_DECODE_CHAIN_ATTN_CUH
#define ZL_DECODE_CHAIN_ATTN_CUH

#include <math.h>

#include <type_traits>

#include "decode-chain.cuh"

namespace zlchain {

// v[0] of lane L <- the sum over the warp's lanes of their v[L]: recursive
// halving, 31 shuffles for 32 sums (one at a time would take 160).
__device__ __forceinline__ void transpose_sum(float (&v)[32], int lane)
{
#pragma unroll
    for (int k = 0; k < 5; k++) {
        const int o = 16 >> k;
        const bool up = lane & o;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            if (i >= o)
                break;
            const float a = v[i], b = v[i + o];
            v[i] = (up ? b : a) + __shfl_xor_sync(0xffffffffu, up ? a : b, o);
        }
    }
}

// The last split's merge of a kv head's partial rows pk ([split][head],
// part_ld(HD) floats each) into att: each split's weight exp2(m - max)
// per head, then the weighted sums.  Where the rows fit xs's space they
// are copied into sa in one round trip first (staged), else the maxima
// and sums come first and the rows are read through L2 after them: the
// merge is on the o phase's critical path, whose input waits for the
// last kv group's.
template <typename T, int HD>
__device__ void merge_splits(const chain_args &A, const float *pk, T *att, float *sa, int tid)
{
    const int group = A.group, lp = part_ld(HD), ns = A.splits * group;
    const bool staged = !A.merge_l2 && (int64_t)ns * lp * 4 + (ns + group) * 4 <= A.xs_bytes;
    float *wq, *zq, *zs; // [split][head] weights, sums; [head] total
    if (staged) {
        for (int c = tid; c < ns * lp / 4; c += CTHREADS)
            cp_async16(sa + c * 4, pk + c * 4, 16);
        cp_async_commit();
        cp_async_wait<0>();
        wq = sa + ns * lp, zq = nullptr, zs = wq + ns;
    } else {
        wq = sa, zq = sa + ns, zs = sa + 2 * ns;
        for (int i = tid; i < ns; i += CTHREADS) {
            wq[i] = __ldcg(pk + (int64_t)i * lp + HD);
            zq[i] = __ldcg(pk + (int64_t)i * lp + HD + 1);
        }
    }
    cbar();
    if (tid < group) {
        float mx = -INFINITY, z = 0.0f;
        for (int q2 = 0; q2 < A.splits; q2++) {
            const int i = q2 * group + tid;
            mx = fmaxf(mx, staged ? sa[i * lp + HD] : wq[i]);
        }
        for (int q2 = 0; q2 < A.splits; q2++) {
            const int i = q2 * group + tid;
            const float f = exp2f((staged ? sa[i * lp + HD] : wq[i]) - mx);
            z += (staged ? sa[i * lp + HD + 1] : zq[i]) * f;
            wq[i] = f;
        }
        zs[tid] = z;
    }
    cbar();
    for (int i = tid; i < group * HD; i += CTHREADS) {
        const int h = i / HD, e = i % HD;
        float a = 0.0f;
#pragma unroll 8
        for (int q2 = 0; q2 < A.splits; q2++) {
            const int64_t r = (int64_t)(q2 * group + h) * lp + e;
            a += (staged ? sa[r] : __ldcg(pk + r)) * wq[q2 * group + h];
        }
        att[i] = from_f32<T>(a / zs[h]);
    }
}

// Attention task t of layer l: kv head t / splits, keys [s * CH, ...) of
// split s, 8 consecutive keys a warp for all the group's query heads.  A
// lane holds E dims of each key's K and V row; the 8 x group partial dots
// are summed over the warp in two transposed reductions (lane 8 h' + i
// gets head 4 r + h', key i), then each head's softmax over the warp's keys
// and its P V go back to the dims layout by shuffles.  The CTA merges its
// warps (log2 units), and the last split of a kv head merges the splits.
template <typename T, int HD>
__device__ void attend(const chain_args &A, int l, int t, float *sa, int *flag, int tid,
                       [[maybe_unused]] unsigned long long *tr)
{
    constexpr int E = HD / 32, KW = CH / CWARPS; // dims a lane, keys a warp
    typedef typename std::conditional<E == 4, uint2, uint32_t>::type vec;
    const int lane = tid & 31, warp = tid >> 5;
    const int kh = t / A.splits, s = t % A.splits, group = A.group;
    const int k0 = s * CH + warp * KW, p1 = min(A.kv_len, s * CH + CH);
    const char *head = A.cache + (int64_t)l * A.layer_bytes + (int64_t)kh * HD * 2;
    // the older keys are asked for before the wait (this step writes only
    // the new one, at kv_len - 1), so the last group's tasks, which the o
    // phase waits on, start with them in flight
    const int p_new = A.kv_len - 1;
    vec kr[KW], vr[KW];
#pragma unroll
    for (int i = 0; i < KW; i++) {
        const int p = k0 + i;
        kr[i] = vr[i] = vec{};
        if (p < p1 && p != p_new) {
            const char *row = head + (int64_t)A.table[p >> A.bs_shift] * A.block_stride +
                              (int64_t)(p & A.bs_mask) * A.row_bytes;
            kr[i] = __ldcg(reinterpret_cast<const vec *>(row) + lane);
            vr[i] = __ldcg(reinterpret_cast<const vec *>(row + A.v_off) + lane);
        }
    }
    // this kv group's q, k and v rows: (group + 2) heads of HD / 2 pairs
    wait_count(A.cnt + l * cnt_stride(A) + PHASES + A.nkv + kh, (group + 2) * HD / 2, tid);
    TRACE(A, if (tr && tid == 0) tr[1] = now_ns());
#pragma unroll
    for (int i = 0; i < KW; i++) {
        if (k0 + i == p_new && p_new < p1) {
            const char *row = head + (int64_t)A.table[p_new >> A.bs_shift] * A.block_stride +
                              (int64_t)(p_new & A.bs_mask) * A.row_bytes;
            kr[i] = __ldcg(reinterpret_cast<const vec *>(row) + lane);
            vr[i] = __ldcg(reinterpret_cast<const vec *>(row + A.v_off) + lane);
        }
    }
    float q[8][E];
#pragma unroll
    for (int h = 0; h < 8; h++) {
        vec qv = vec{};
        if (h < group)
            qv = __ldcg(reinterpret_cast<const vec *>(A.qkv + (int64_t)(kh * group + h) * HD * 2) + lane);
        const T *qe = reinterpret_cast<const T *>(&qv);
#pragma unroll
        for (int e = 0; e < E; e++)
            q[h][e] = to_f32<T>(qe[e]);
    }
    float sc[2]; // score of pair 32 r + lane: head 4 r + lane / 8, key k0 + lane % 8
#pragma unroll
    for (int r = 0; r < 2; r++) {
        sc[r] = -INFINITY;
        if (4 * r >= group)
            continue;
        float v[32];
#pragma unroll
        for (int j = 0; j < 32; j++) {
            const int h = 4 * r + j / KW, i = j % KW;
            const T *ke = reinterpret_cast<const T *>(&kr[i]);
            float d = 0.0f;
#pragma unroll
            for (int e = 0; e < E; e++)
                d = fmaf(q[h][e], to_f32<T>(ke[e]), d);
            v[j] = d;
        }
        transpose_sum(v, lane);
        if (k0 + lane % KW < p1)
            sc[r] = v[0] * A.scale_log2;
    }
    const int ld = HD + 2;
#pragma unroll
    for (int h = 0; h < 8; h++) {
        if (h >= group)
            break;
        const int r = h / 4, src = (h % 4) * KW;
        float m = -INFINITY;
#pragma unroll
        for (int i = 0; i < KW; i++)
            m = fmaxf(m, __shfl_sync(0xffffffffu, sc[r], src + i));
        float sum = 0.0f, acc[E] = {};
#pragma unroll
        for (int i = 0; i < KW; i++) {
            const float sv = __shfl_sync(0xffffffffu, sc[r], src + i);
            const float p = m == -INFINITY ? 0.0f : exp2f(sv - m);
            const T *ve = reinterpret_cast<const T *>(&vr[i]);
            sum += p;
#pragma unroll
            for (int e = 0; e < E; e++)
                acc[e] = fmaf(p, to_f32<T>(ve[e]), acc[e]);
        }
        // sa: [warp][head][HD + 2] (acc, max, sum)
        float *o = sa + (warp * group + h) * ld;
#pragma unroll
        for (int e = 0; e < E; e++)
            o[lane * E + e] = acc[e];
        if (lane == 0)
            o[HD] = m, o[HD + 1] = sum;
    }
    cbar();
    const int n_out = group * HD, lp = part_ld(HD);
    T *att = reinterpret_cast<T *>(A.att) + (int64_t)kh * group * HD;
    float *part = A.part + ((int64_t)kh * A.splits + s) * group * lp;
    for (int i = tid; i < n_out; i += CTHREADS) {
        const int h = i / HD, e = i % HD;
        float mx = -INFINITY;
        for (int w = 0; w < CWARPS; w++)
            mx = fmaxf(mx, sa[(w * group + h) * ld + HD]);
        float a = 0.0f, z = 0.0f;
        for (int w = 0; w < CWARPS; w++) {
            const float *o = sa + (w * group + h) * ld, f = exp2f(o[HD] - mx);
            a += o[e] * f;
            z += o[HD + 1] * f;
        }
        if (A.splits == 1) {
            att[i] = from_f32<T>(a / z);
        } else {
            part[h * lp + e] = a;
            if (e == 0)
                part[h * lp + HD] = mx, part[h * lp + HD + 1] = z;
        }
    }
    int32_t *done = A.cnt + l * cnt_stride(A);
    if (A.splits == 1) {
        publish(&done[ATT], 1, tid);
        return;
    }
    __threadfence();
    cbar();
    if (tid == 0)
        *flag = atomicAdd(&done[PHASES + kh], 1) == A.splits - 1;
    cbar();
    if (!*flag)
        return;
    __threadfence();
    merge_splits<T, HD>(A, A.part + (int64_t)kh * A.splits * group * lp, att, sa, tid);
    publish(&done[ATT], 1, tid);
}

} // namespace zlchain

#endif
