// Tuning builds (-DZL_GEMV_TUNING) of attention-decode.cu: ZL_ATTN_TRACE=N
// stamps the N-th decode-kernel launch of 9+ sequences with globaltimer
// (per CTA: entry, PDL wait done, q staged, each warp's last tile, CTA
// done, and its SM) and prints percentiles of each stamp to stderr.  The
// stream is synchronised after that one launch.  Included by
// attention-decode.cu after decode_args (which has the trace pointer in
// tuning builds); elsewhere ATRACE* compile to nothing.
#ifndef ZL_ATTENTION_DECODE_TRACE_CUH
#define ZL_ATTENTION_DECODE_TRACE_CUH

#ifdef ZL_GEMV_TUNING
// (stdio, algorithm and vector come from the includer: this sits in its namespace)
constexpr int TR_SLOTS = 5 + WARPS;
constexpr int64_t TR_MAX_CTAS = 65536;

__device__ __forceinline__ unsigned long long tr_now()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// The CTA's first stamp and its SM; names tr_cta for ATRACE.
#define ATRACE_START(cta, cond)                                                                    \
    const int64_t tr_cta = (cta);                                                                  \
    if (a.trace && (cond)) {                                                                       \
        unsigned smid;                                                                             \
        asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));                                          \
        a.trace[tr_cta * TR_SLOTS + 4 + WARPS] = smid;                                             \
        a.trace[tr_cta * TR_SLOTS] = tr_now();                                                     \
    }
#define ATRACE(slot, cond)                                                                         \
    do {                                                                                           \
        if (a.trace && (cond))                                                                     \
            a.trace[tr_cta * TR_SLOTS + (slot)] = tr_now();                                        \
    } while (0)

// Whether this launch is the traced one (ZL_ATTN_TRACE=N: the N-th CTA-kernel
// launch of 9+ sequences); sets a.trace.  The buffer is made once, before.
static bool trace_pick(decode_args &a, bool warp, int n_seqs, int64_t items)
{
    static long want = -1, calls;
    static unsigned long long *buf;
    a.trace = nullptr;
    if (want < 0) {
        const char *v = getenv("ZL_ATTN_TRACE");
        want = v ? atol(v) : 0;
    }
    if (want <= 0 || warp || n_seqs < 9 || items > TR_MAX_CTAS)
        return false;
    if (!buf && cudaMalloc(&buf, TR_MAX_CTAS * TR_SLOTS * sizeof *buf) != cudaSuccess) {
        want = 0;
        return false;
    }
    if (++calls != want)
        return false;
    a.trace = buf;
    return true;
}

static double pct(std::vector<double> v, double q)
{
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    return v[(size_t)(q * (double)(v.size() - 1) + 0.5)];
}

// Stamps relative to the first CTA's entry, us: percentiles 0/10/50/90/100.
static cudaError_t trace_report(const decode_args &a, int64_t ctas, double bytes,
                                cudaStream_t stream)
{
    std::vector<unsigned long long> t((size_t)ctas * TR_SLOTS);
    cudaError_t e = cudaStreamSynchronize(stream);
    if (e == cudaSuccess)
        e = cudaMemcpy(t.data(), a.trace, t.size() * sizeof t[0], cudaMemcpyDeviceToHost);
    if (e != cudaSuccess)
        return e;
    unsigned long long t0 = ~0ull, t1 = 0;
    for (int64_t c = 0; c < ctas; c++) {
        t0 = std::min(t0, t[c * TR_SLOTS]);
        t1 = std::max(t1, t[c * TR_SLOTS + 3 + WARPS]);
    }
    static const char *const name[] = {"entry", "wait done", "q staged", "warp walk", "CTA done"};
    for (int k = 0; k < 5; k++) {
        std::vector<double> v;
        for (int64_t c = 0; c < ctas; c++)
            for (int j = 0; j < (k == 3 ? WARPS : 1); j++) {
                const unsigned long long x = t[c * TR_SLOTS + (k < 3 ? k : k == 3 ? 3 + j : 3 + WARPS)];
                if (x)
                    v.push_back((double)(x - t0) / 1e3);
            }
        fprintf(stderr, "attn trace: %-9s us  %7.2f %7.2f %7.2f %7.2f %7.2f\n", name[k],
                pct(v, 0), pct(v, 0.1), pct(v, 0.5), pct(v, 0.9), pct(v, 1));
    }
    std::vector<int> per_sm(1024, 0);
    for (int64_t c = 0; c < ctas; c++)
        per_sm[t[c * TR_SLOTS + 4 + WARPS] & 1023]++;
    int lo = 1 << 30, hi = 0;
    for (int n : per_sm)
        if (n) {
            lo = std::min(lo, n);
            hi = std::max(hi, n);
        }
    fprintf(stderr, "attn trace: %lld CTAs, %d-%d an SM, span %.2f us, %.0f GB/s of K/V\n",
            (long long)ctas, lo, hi, (double)(t1 - t0) / 1e3, bytes / (double)(t1 - t0));
    return cudaSuccess;
}
#else
#define ATRACE_START(cta, cond) ((void)0)
#define ATRACE(slot, cond) ((void)0)
#endif

#endif
