/* GPU sampling (backend.h sample, cuda-sample.h): one block of 1024 threads
 * per logits row.  Thread t owns the contiguous ids [t * chunk, (t+1) *
 * chunk), so a block scan over the threads is a scan in id order.
 *
 * A row, in the order of zl_sampler_sample (core/sampler.c):
 *   1. raw logprobs: log-sum-exp of the raw row (double), the N-th largest
 *      raw logit by radix selection over order-preserving keys, the ids
 *      above it plus the lowest ids equal to it;
 *   2. the raw values of the ids about to change are saved (the token's
 *      logprob), bias entries added in entry order, penalties;
 *   3. greedy: one pass, the first max; else e_i = the tempered exp as the
 *      CPU computes it, never stored: each pass recomputes it, skipping
 *      the double exp where a cheap float test proves e_i below the
 *      current threshold lo (all sets are {e >= lo});
 *   4. top-k: the k-th largest e by radix selection (count histograms of
 *      11, 11 and 10 bits of e's float bits; e >= 0 orders like its bits);
 *      top-p: the same descent on per-bin mass (double);
 *   5. the draw: per-thread sums of the kept e, a block scan, the thread
 *      whose range holds u * tot walks it.
 * Histograms are shared-memory atomics; a thread adds a run of equal bins
 * at once (a flat row would otherwise serialize on one address).
 *
 * Measured (H100, test_cuda_sample, 128 rows x 128256, host time of the
 * whole op incl. upload and copy back; one read of the logits is 22 us):
 * greedy 62 us, T 0.8 top_k 50 top_p 0.9 198 us, T 1 alone 177 us,
 * T 1 top_p 0.9 on flat random rows 1.09 ms (nuclei of thousands: the
 * row path, whose double-atomic mass histogram is the cost; next step). */
#include <math.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include <zlight/sampler.h>

#include "cuda-sample.h"

#include "sample-block.cuh" /* shared memory, keys, block scans, e_of */

/* ---- sources: each(f) calls f(id, key, value) for the thread's share in
 * id order.  level(pref) tells a source the key prefix a pass counts. ---- */

/* The tempered values of the row in {e >= lo}, computed on the fly. */
struct rowsrc {
    const float *l;
    int beg, end;
    float mx, inv_t, lo;
    double cut;
    __device__ void level(uint32_t pref) { cut = cut_for(fmaxf(lo, __uint_as_float(pref))); }
    __device__ void set_lo(float v)
    {
        lo = v;
        level(0);
    }
    template <class F> __device__ void each(F f) const
    {
        for_chunk(l, beg, end, [&](int i, float v) {
            float e = e_of(v, mx, inv_t, cut);
            if (e >= lo)
                f(i, __float_as_uint(e), e);
        });
    }
};

/* The same values compacted into shared memory (ascending ids). */
struct listsrc {
    const int *id;
    const float *ev;
    int beg, end;
    float lo;
    __device__ void level(uint32_t) {}
    template <class F> __device__ void each(F f) const
    {
        for (int j = beg; j < end; j++) {
            float e = ev[j];
            if (e >= lo)
                f(id[j], __float_as_uint(e), e);
        }
    }
};

/* The raw logits, keyed in order (all ids). */
struct rawsrc {
    const float *l;
    int beg, end;
    __device__ void level(uint32_t) {}
    template <class F> __device__ void each(F f) const
    {
        for_chunk(l, beg, end, [&](int i, float v) { f(i, ord(v), v); });
    }
};

/* Adds a run of one bin at a time to a shared histogram. */
struct run_count {
    int bin = -1;
    unsigned c = 0;
    __device__ void add(unsigned *h, int b)
    {
        if (b != bin) {
            flush(h);
            bin = b;
        }
        c++;
    }
    __device__ void flush(unsigned *h)
    {
        if (bin >= 0 && c)
            atomicAdd(&h[bin], c);
        c = 0;
    }
};

struct run_mass {
    int bin = -1;
    double m = 0.0;
    __device__ void add(double *h, int b, float e)
    {
        if (b != bin) {
            flush(h);
            bin = b;
        }
        m += e;
    }
    __device__ void flush(double *h)
    {
        if (bin >= 0)
            atomicAdd(&h[bin], m);
        m = 0.0;
    }
};

/* ---- radix selection ---- */

/* One count level: histogram of digit d over the keys with (key & pmask)
 * == pref, then the bin where the count from the top reaches k: s.xb,
 * s.xabove (count in higher bins) and s.xtotal. */
template <class S>
__device__ void count_level(S src, int d, uint32_t pref, uint32_t pmask, unsigned k, smem &s)
{
    int sh = c_shift[d], nb = 1 << c_bits[d];
    for (int b = threadIdx.x; b < nb; b += NT)
        s.cnt[b] = 0;
    if (threadIdx.x == 0)
        s.xb = 0, s.xabove = 0;
    src.level(pref);
    __syncthreads();
    run_count rc;
    src.each([&](int, uint32_t key, float) {
        if ((key & pmask) == pref)
            rc.add(s.cnt, (int)((key >> sh) & (nb - 1)));
    });
    rc.flush(s.cnt);
    __syncthreads();
    /* bins from the top: thread t holds bins nb-1-t*bpt .. */
    int bpt = nb / NT;
    unsigned c[NBINS / NT], my = 0;
    for (int j = 0; j < bpt; j++) {
        c[j] = s.cnt[nb - 1 - (threadIdx.x * bpt + j)];
        my += c[j];
    }
    unsigned incl, above;
    block_scan(my, &incl, &above, s);
    for (int j = 0; j < bpt; j++) {
        if (above < k && k <= above + c[j]) {
            s.xb = nb - 1 - (threadIdx.x * bpt + j);
            s.xabove = above;
        }
        above += c[j];
    }
    if (threadIdx.x == NT - 1)
        s.xtotal = incl;
    __syncthreads();
}

/* The key of the k-th largest (counting multiplicity) from digit d0 on,
 * the digits above already fixed in pref/pmask. */
template <class S>
__device__ uint32_t radix_kth(S src, int d0, uint32_t pref, uint32_t pmask, unsigned k, smem &s)
{
    for (int d = d0; d < 3; d++) {
        count_level(src, d, pref, pmask, k, s);
        k -= s.xabove;
        pref |= (uint32_t)s.xb << c_shift[d];
        pmask |= (uint32_t)((1 << c_bits[d]) - 1) << c_shift[d];
        __syncthreads();
    }
    return pref;
}

/* From level 0's count histogram: the highest bin b whose lower bound of
 * the mass at or above it (count x the bin's smallest value) reaches
 * target, so the bin where the true mass reaches it is b or higher (0
 * when none does); *n = how many values lie in bins >= b. */
__device__ int mass_floor_bin(double target, unsigned *n, smem &s)
{
    double lb[NBINS / NT], my = 0.0;
    if (threadIdx.x == 0)
        s.xb = 0;
    for (int j = 0; j < NBINS / NT; j++) {
        int b = NBINS - 1 - (threadIdx.x * (NBINS / NT) + j);
        lb[j] = (double)s.cnt[b] * (double)__uint_as_float((uint32_t)b << 21);
        my += lb[j];
    }
    double incl, above;
    block_scan(my, &incl, &above, s);
    for (int j = 0; j < NBINS / NT; j++) {
        double prev = above;
        above += lb[j];
        if (prev < target && above >= target)   /* the highest claim wins */
            atomicMax(&s.xb, NBINS - 1 - (threadIdx.x * (NBINS / NT) + j));
    }
    __syncthreads();
    int bmin = s.xb;
    unsigned c = 0;
    for (int j = 0; j < NBINS / NT; j++) {
        int b = NBINS - 1 - (threadIdx.x * (NBINS / NT) + j);
        c += b >= bmin ? s.cnt[b] : 0u;
    }
    *n = (unsigned)block_sum((double)c, s);     /* exact: integers < 2^53 */
    return bmin;
}

/* The largest value among the source's with the mass of values >= it at
 * least target.  build0 = 0: level 0's mass histogram and s.lowest were
 * filled by the caller. */
template <class S>
__device__ float radix_mass(S src, double target, bool build0, smem &s)
{
    uint32_t pref = 0, pmask = 0;
    for (int d = 0; d < 3; d++) {
        int sh = c_shift[d], nb = 1 << c_bits[d];
        if (d > 0 || build0) {
            for (int b = threadIdx.x; b < nb; b += NT)
                s.mass[b] = 0.0;
            if (threadIdx.x == 0)
                s.lowest = nb;
            src.level(pref);
            __syncthreads();
            run_mass rm;
            int low = nb;
            src.each([&](int, uint32_t key, float e) {
                if ((key & pmask) == pref) {
                    int b = (int)((key >> sh) & (nb - 1));
                    rm.add(s.mass, b, e);
                    low = b < low ? b : low;
                }
            });
            rm.flush(s.mass);
            if (low < nb)
                atomicMin(&s.lowest, low);
        }
        if (threadIdx.x == 0)
            s.xb = -1;
        __syncthreads();
        int bpt = nb / NT, lowest = s.lowest;
        double m[NBINS / NT], my = 0.0;
        for (int j = 0; j < bpt; j++) {
            m[j] = s.mass[nb - 1 - (threadIdx.x * bpt + j)];
            my += m[j];
        }
        double incl, above;
        block_scan(my, &incl, &above, s);
        for (int j = 0; j < bpt; j++) {
            int b = nb - 1 - (threadIdx.x * bpt + j);
            /* where the mass from the top reaches the target; the lowest
             * bin if rounding left it short */
            if (m[j] > 0.0 && above < target && (target <= above + m[j] || b == lowest)) {
                s.xb = b;
                s.xabove_d = above;
            }
            above += m[j];
        }
        __syncthreads();
        int xb = s.xb < 0 ? lowest : s.xb;
        target -= s.xb < 0 ? 0.0 : s.xabove_d;
        pref |= (uint32_t)xb << sh;
        pmask |= (uint32_t)(nb - 1) << sh;
        __syncthreads();
    }
    return __uint_as_float(pref);
}

/* ---- compaction ---- */

/* The row's values >= max(R.lo, lo_c), which the caller counted (<= CAP),
 * into s.lid / s.le in ascending id order (appended, then a bitonic sort
 * by id); the list source over them, thresholded at R.lo. */
__device__ listsrc compact(const rowsrc &R, float lo_c, smem &s)
{
    rowsrc c = R;
    c.set_lo(fmaxf(R.lo, lo_c));
    if (threadIdx.x == 0)
        s.n_list = 0;
    __syncthreads();
    c.each([&](int i, uint32_t, float e) {
        int p = atomicAdd(&s.n_list, 1);
        if (p < CAP) {
            s.lid[p] = i;
            s.le[p] = e;
        }
    });
    __syncthreads();
    int n = s.n_list < CAP ? s.n_list : CAP, P = 1;
    while (P < n)
        P <<= 1;
    for (int j = n + (int)threadIdx.x; j < P; j += NT) {
        s.lid[j] = 0x7fffffff;
        s.le[j] = 0.0f;
    }
    __syncthreads();
    for (int k = 2; k <= P; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < P; i += NT) {
                int o = i ^ j;
                if (o > i) {
                    int a = s.lid[i], b = s.lid[o];
                    if ((a > b) == ((i & k) == 0)) {
                        float ea = s.le[i];
                        s.lid[i] = b, s.lid[o] = a;
                        s.le[i] = s.le[o], s.le[o] = ea;
                    }
                }
            }
            __syncthreads();
        }
    listsrc L;
    L.id = s.lid;
    L.ev = s.le;
    int lc = (n + NT - 1) / NT;
    L.beg = min((int)threadIdx.x * lc, n);
    L.end = min(L.beg + lc, n);
    L.lo = R.lo;
    return L;
}

/* ---- the draw ---- */

/* Inverse CDF over the source's values in id order: per-thread sums, a
 * block scan, the first thread whose inclusive sum passes u * tot walks
 * its share.  Returns the token. */
template <class S>
__device__ int draw(S src, double u, smem &s)
{
    src.level(0);
    double my = 0.0;
    int last = -1;
    src.each([&](int i, uint32_t, float e) {
        my += e;
        last = i;
    });
    double incl, excl;
    block_scan(my, &incl, &excl, s);
    if (threadIdx.x == NT - 1)
        s.d0 = incl;
    __syncthreads();
    double x = u * s.d0;
    unsigned long long who =
        block_max(my > 0.0 && x < incl ? 0xffffffffull - threadIdx.x : 0ull, s);
    unsigned long long lastk = block_max((unsigned long long)(last + 1), s);
    if (who == 0)
        return (int)lastk - 1;          /* rounding left x at the end: the last kept id */
    if (threadIdx.x == 0xffffffffull - who) {
        double cum = excl;
        int t = -1;
        src.each([&](int i, uint32_t, float e) {
            if (t < 0) {
                cum += e;
                if (x < cum)
                    t = i;
            }
        });
        s.xb = t < 0 ? last : t;
    }
    __syncthreads();
    return s.xb;
}

/* ---- the row ---- */

/* Raw logprobs: top-N (best first, ties to the lower id) into s.top_*; returns lse. */
__device__ double raw_logprobs(const float *l, int beg, int end, int vocab, int n_want, smem &s)
{
    float mx = -INFINITY;
    for_chunk(l, beg, end, [&](int, float v) { mx = v > mx ? v : mx; });
    mx = unord((uint32_t)block_max((unsigned long long)ord(mx), s));
    double sum = 0.0;
    if (mx > -INFINITY)
        for_chunk(l, beg, end, [&](int, float v) { sum += exp((double)v - (double)mx); });
    sum = block_sum(sum, s);
    double lse = mx > -INFINITY ? (double)mx + log(sum) : (double)-INFINITY;
    int n = n_want < vocab ? n_want : vocab;
    if (threadIdx.x == 0)
        s.n_top = 0;
    __syncthreads();
    if (n <= 0)
        return lse;
    rawsrc rs = {l, beg, end};
    uint32_t kth = radix_kth(rs, 0, 0u, 0u, (unsigned)n, s);
    for_chunk(l, beg, end, [&](int i, float v) {
        if (ord(v) > kth) {
            int p = atomicAdd(&s.n_top, 1);
            s.top_v[p] = v;
            s.top_i[p] = i;
        }
    });
    __syncthreads();
    int have = s.n_top, last = -1;
    __syncthreads();
    for (; have < n; have++) {          /* ties at the N-th value: lowest ids first */
        int first = -1;
        for (int i = beg > last + 1 ? beg : last + 1; i < end; i++)
            if (ord(l[i]) == kth) {
                first = i;
                break;
            }
        unsigned long long best = block_max(first < 0 ? 0ull : 0xffffffffull - (unsigned)first, s);
        if (best == 0)                  /* cannot happen: kth is a key of the row */
            break;
        last = (int)(0xffffffffull - best);
        if (threadIdx.x == 0) {
            s.top_v[have] = l[last];
            s.top_i[have] = last;
        }
    }
    if (threadIdx.x == 0) {
        s.n_top = n = have;
        for (int a = 1; a < n; a++)     /* value desc, id asc */
            for (int b = a; b > 0; b--) {
                float va = s.top_v[b], vb = s.top_v[b - 1];
                int ia = s.top_i[b], ib = s.top_i[b - 1];
                if (!(va > vb || (va == vb && ia < ib)))
                    break;
                s.top_v[b] = vb, s.top_v[b - 1] = va;
                s.top_i[b] = ib, s.top_i[b - 1] = ia;
            }
    }
    __syncthreads();
    return lse;
}

/* Temperature -> min-p -> top-k -> top-p and the draw.  The candidates a
 * filter leaves are compacted into shared memory when its first radix
 * level shows at most CAP of them (the usual top-k, a peaked top-p);
 * otherwise every pass reads the row. */
__device__ int sample_row(const struct zl_sample_row &row, const float *l, int beg, int end,
                          float mx, smem &s)
{
    rowsrc R;
    R.l = l;
    R.beg = beg;
    R.end = end;
    R.mx = mx;
    R.inv_t = 1.0f / row.temperature;
    R.set_lo(fmaxf(row.min_p, __uint_as_float(1u)));      /* e > 0 and e >= min_p */
    listsrc L;
    bool listed = false;
    if (row.top_k > 0) {
        count_level(R, 0, 0u, 0u, (unsigned)row.top_k, s);
        unsigned total = s.xtotal, above = s.xabove;
        int b0 = s.xb;
        unsigned m = above + s.cnt[b0];
        __syncthreads();
        if (total > (unsigned)row.top_k) {
            uint32_t pref = (uint32_t)b0 << 21, pmask = 0x7ffu << 21, kth;
            unsigned kk = (unsigned)row.top_k - above;
            if (m <= CAP) {
                L = compact(R, __uint_as_float(pref), s);
                listed = true;
                kth = radix_kth(L, 1, pref, pmask, kk, s);
            } else {
                kth = radix_kth(R, 1, pref, pmask, kk, s);
            }
            R.set_lo(__uint_as_float(kth));
            L.lo = R.lo;
        }
    }
    if (row.top_p < 1.0f) {
        float tp;
        if (listed) {
            double my = 0.0;
            L.each([&](int, uint32_t, float e) { my += e; });
            tp = radix_mass(L, (double)row.top_p * block_sum(my, s), true, s);
        } else {
            /* the total and a count histogram (cheap integer atomics) ... */
            for (int b = threadIdx.x; b < NBINS; b += NT)
                s.cnt[b] = 0;
            __syncthreads();
            run_count rc;
            double my = 0.0;
            R.each([&](int, uint32_t key, float e) {
                my += e;
                rc.add(s.cnt, (int)(key >> 21));
            });
            rc.flush(s.cnt);
            double target = (double)row.top_p * block_sum(my, s);
            /* ... bound the bin where the mass reaches the target from
             * below: only values at or above it matter from here on */
            unsigned m;
            float lob = __uint_as_float((uint32_t)mass_floor_bin(target, &m, s) << 21);
            if (m <= CAP) {
                L = compact(R, lob, s);
                listed = true;
                tp = radix_mass(L, target, true, s);
            } else {
                rowsrc eb = R;
                eb.set_lo(fmaxf(R.lo, lob));
                for (int b = threadIdx.x; b < NBINS; b += NT)
                    s.mass[b] = 0.0;
                if (threadIdx.x == 0)
                    s.lowest = NBINS;
                __syncthreads();
                run_mass rm;
                int low = NBINS;
                eb.each([&](int, uint32_t key, float e) {
                    int b = (int)(key >> 21);
                    rm.add(s.mass, b, e);
                    low = b < low ? b : low;
                });
                rm.flush(s.mass);
                if (low < NBINS)
                    atomicMin(&s.lowest, low);
                tp = radix_mass(R, target, false, s);
            }
        }
        R.set_lo(tp);
        L.lo = tp;
    }
    double u = zl_uniform_of(row.seed, row.stream, row.step); /* zlight/sampler.h */
    return listed ? draw(L, u, s) : draw(R, u, s);
}

/* Row r has no token left (every logit -inf or NaN). */
__device__ void put_masked(const struct zl_cuda_sample_args &a, int r)
{
    a.status[r] = ZL_CUDA_SAMPLE_MASKED;
    a.out[r].token = -1;
    a.out[r].n_top = 0;
}

__global__ void __launch_bounds__(NT, 1) sample_kernel(struct zl_cuda_sample_args a)
{
    __shared__ smem s;
    const int r = blockIdx.x, tid = threadIdx.x;
    if (tid == 0)                       /* in shared memory: registers are scarce at 1024 threads */
        s.row = a.rows[r];
    __syncthreads();
    const struct zl_sample_row &row = s.row;
    float *l = a.logits + (int64_t)r * a.stride;
    const int V = a.vocab, chunk = (V + NT - 1) / NT;
    const int beg = min(tid * chunk, V), end = min(beg + chunk, V);
    const bool want_lp = row.logprobs >= 0;

    double lse = 0.0;
    if (want_lp)
        lse = raw_logprobs(l, beg, end, V, row.logprobs, s);

    /* the raw values of the ids this row changes (its token's logprob) */
    float *saved = nullptr;
    if (want_lp && row.n_bias + row.n_tok > 0) {
        unsigned off = 0;
        for (int j = tid; j < r; j += NT)
            off += (unsigned)(a.rows[j].n_bias + a.rows[j].n_tok);
        off = (unsigned)block_sum((double)off, s);      /* exact: integers < 2^53 */
        saved = a.saved + off;
        for (int j = tid; j < row.n_bias; j += NT)
            saved[j] = l[a.bias_ids[row.bias_start + j]];
        for (int j = tid; j < row.n_tok; j += NT)
            saved[row.n_bias + j] = l[a.tok_ids[row.tok_start + j]];
        __syncthreads();
    }
    /* bias in entry order (an id may repeat), then the penalties over
     * distinct ids, with the CPU's float operations */
    if (tid == 0)
        for (int j = 0; j < row.n_bias; j++) {
            int id = a.bias_ids[row.bias_start + j];
            l[id] = __fadd_rn(l[id], a.bias[row.bias_start + j]);
        }
    __syncthreads();
    for (int j = tid; j < row.n_tok; j += NT) {
        int id = a.tok_ids[row.tok_start + j], c = a.tok_counts[row.tok_start + j];
        float x = l[id];
        if (row.repetition_penalty != 1.0f)
            x = x > 0.0f ? __fdiv_rn(x, row.repetition_penalty)
                         : __fmul_rn(x, row.repetition_penalty);
        if (c > 0)
            x = __fsub_rn(x, __fadd_rn(__fmul_rn(row.frequency_penalty, (float)c),
                                       row.presence_penalty));
        l[id] = x;
    }
    __syncthreads();

    /* the first max: key (value, then the lower id) */
    unsigned long long best = 0;
    for_chunk(l, beg, end, [&](int i, float v) {
        unsigned long long k = ((unsigned long long)ord(v) << 32) | (0xffffffffu - (unsigned)i);
        best = k > best ? k : best;
    });
    best = block_max(best, s);
    float mx = unord((uint32_t)(best >> 32));
    int token = (int)(0xffffffffu - (unsigned)(best & 0xffffffffu));
    if (!(mx > -INFINITY)) {
        if (tid == 0)
            put_masked(a, r);
        return;
    }
    if (row.temperature != 0.0f)
        token = sample_row(row, l, beg, end, mx, s);

    float logprob = 0.0f;
    if (want_lp) {
        if (tid == 0)
            s.flag = 0;
        __syncthreads();
        if (saved) {
            for (int j = tid; j < row.n_bias; j += NT)
                if (a.bias_ids[row.bias_start + j] == token)
                    s.tok_raw = saved[j], s.flag = 1;       /* equal values: any writer */
            for (int j = tid; j < row.n_tok; j += NT)
                if (a.tok_ids[row.tok_start + j] == token)
                    s.tok_raw = saved[row.n_bias + j], s.flag = 1;
        }
        __syncthreads();
        float raw = s.flag ? s.tok_raw : l[token];
        logprob = (float)((double)raw - lse);
    }
    if (tid == 0) {
        struct zl_sample_result *o = &a.out[r];
        o->token = token;
        o->logprob = logprob;
        int n = want_lp ? s.n_top : 0;
        o->n_top = n;
        for (int j = 0; j < ZL_SAMPLE_MAX_LOGPROBS; j++) {
            o->top_ids[j] = j < n ? s.top_i[j] : 0;
            o->top_logprobs[j] = j < n ? (float)((double)s.top_v[j] - lse) : 0.0f;
        }
        a.status[r] = 0;
    }
}

/* Plain greedy rows (args.split > 0, cuda-sample.c picks them): row r's
 * first max split over `split` blocks of GT threads, each a slice of
 * `per` ids read in coalesced float4s where the slice is 16-byte aligned;
 * the row's last block to finish (a count per row, left at zero) takes
 * the max of the slices' keys.  A max of (value, lower id) keys does not
 * depend on its order, so the token is the row kernel's, bit for bit.  One
 * block a row read a decode step's 128256 logits in ~30 us at batch 1. */
constexpr int GT = 256;

__device__ __forceinline__ unsigned long long greedy_key(float v, int i)
{
    return ((unsigned long long)ord(v) << 32) | (0xffffffffu - (unsigned)i);
}

/* The max over a block of GT threads, in thread 0. */
__device__ __forceinline__ unsigned long long greedy_block_max(unsigned long long v,
                                                                 unsigned long long *warps)
{
    for (int o = 16; o; o >>= 1) {
        unsigned long long w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    if ((threadIdx.x & 31) == 0)
        warps[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < GT / 32; w++)
            v = warps[w] > v ? warps[w] : v;
    return v;
}

__global__ void __launch_bounds__(GT) greedy_kernel(struct zl_cuda_sample_args a)
{
    __shared__ unsigned long long warps[GT / 32];
    __shared__ bool last;
    const int r = blockIdx.y, p = blockIdx.x, tid = threadIdx.x;
    const float *l = a.logits + (int64_t)r * a.stride;
    const int beg = min(p * a.per, a.vocab), end = min(beg + a.per, a.vocab);
    unsigned long long best = 0;
    int i0 = beg;
    if (!(reinterpret_cast<uintptr_t>(l + beg) & 15)) {
        const float4 *l4 = reinterpret_cast<const float4 *>(l + beg);
        const int n4 = (end - beg) / 4;
        for (int j = tid; j < n4; j += GT) {
            const float4 v = l4[j];
            const int i = beg + 4 * j;
            const unsigned long long k0 = greedy_key(v.x, i), k1 = greedy_key(v.y, i + 1),
                                     k2 = greedy_key(v.z, i + 2), k3 = greedy_key(v.w, i + 3);
            const unsigned long long k01 = k0 > k1 ? k0 : k1, k23 = k2 > k3 ? k2 : k3;
            const unsigned long long k = k01 > k23 ? k01 : k23;
            best = k > best ? k : best;
        }
        i0 = beg + 4 * n4;
    }
    for (int i = i0 + tid; i < end; i += GT) {
        const unsigned long long k = greedy_key(l[i], i);
        best = k > best ? k : best;
    }
    best = greedy_block_max(best, warps);
    unsigned long long *part = a.part + (int64_t)r * a.split;
    if (tid == 0) {
        part[p] = best;
        __threadfence();                /* the key out before the count */
        last = atomicAdd(&a.count[r], 1) == a.split - 1;
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    best = 0;
    for (int j = tid; j < a.split; j += GT) {
        const unsigned long long k = __ldcg(&part[j]);
        best = k > best ? k : best;
    }
    __syncthreads();                    /* warps is free again */
    best = greedy_block_max(best, warps);
    if (tid != 0)
        return;
    a.count[r] = 0;                     /* every block of the row has counted */
    if (!(unord((uint32_t)(best >> 32)) > -INFINITY)) {
        put_masked(a, r);
        return;
    }
    struct zl_sample_result *o = &a.out[r];
    o->token = (int)(0xffffffffu - (unsigned)(best & 0xffffffffu));
    o->logprob = 0.0f;
    o->n_top = 0;
    for (int j = 0; j < ZL_SAMPLE_MAX_LOGPROBS; j++) {
        o->top_ids[j] = 0;
        o->top_logprobs[j] = 0.0f;
    }
    a.status[r] = 0;
}

extern "C" int32_t zl_cuda_sample_greedy_split(int32_t n_rows, int32_t vocab, int32_t sms,
                                               int32_t *per)
{
    /* about 4 blocks an SM over the batch, slices of whole float4s */
    int64_t split = (int64_t)4 * (sms > 0 ? sms : 1) / (n_rows > 0 ? n_rows : 1);
    split = split < 1 ? 1 : split > 64 ? 64 : split;
    int64_t p = ((int64_t)vocab + split - 1) / split;
    p = (p + 3) & ~(int64_t)3;
    *per = (int32_t)p;
    return (int32_t)(((int64_t)vocab + p - 1) / p);
}

cudaError_t zl_cuda_sample(const struct zl_cuda_sample_args *a, cudaStream_t stream)
{
    if (a->n_rows <= 0)
        return cudaSuccess;
    if (a->split > 0)
        greedy_kernel<<<dim3((unsigned)a->split, (unsigned)a->n_rows), GT, 0, stream>>>(*a);
    else
        sample_kernel<<<a->n_rows, NT, 0, stream>>>(*a);
    return cudaGetLastError();
}

/* upload_tokens: the next step's ids from this batch's results, on the
 * device, so the host need not wait for them (cuda-sample.h). */
__global__ void sampled_tokens_kernel(int32_t *dst, const int32_t *tok, const int32_t *from,
                                      const int32_t *rows, const struct zl_sample_result *res,
                                      int32_t vocab, int32_t n)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const int32_t *status = (const int32_t *)((const char *)res + zl_cuda_sample_status_at(*rows));
    const int32_t f = from[i];
    int32_t t = f < 0 ? tok[i] : res[f].token;
    if (f >= 0 && (status[f] == ZL_CUDA_SAMPLE_MASKED || t < 0 || t >= vocab))
        t = 0;
    dst[i] = t;
}

cudaError_t zl_cuda_sampled_tokens(int32_t *dst, const int32_t *tok, const int32_t *from,
                                   const int32_t *rows, const struct zl_sample_result *res,
                                   int32_t vocab, int32_t n, cudaStream_t stream)
{
    if (n <= 0)
        return cudaSuccess;
    const unsigned blocks = (unsigned)(((int64_t)n + 255) / 256);
    sampled_tokens_kernel<<<blocks, 256, 0, stream>>>(dst, tok, from, rows, res, vocab, n);
    return cudaGetLastError();
}
