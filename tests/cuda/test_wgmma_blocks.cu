// The wgmma prefill kernel's two products alone, on the GPU, against
// double references: S = Q K^T (SS wgmma through q_desc / k_desc) and
// O = P V (RS wgmma, P from registers through p_fragment, V through
// v_desc), each over the kernel's own shared tiles (swz_off, smem_plan)
// and wgmma wrappers, without its pipeline, barriers or softmax.  When
// test_cuda_attn fails with ZL_PREFILL_WG set, this says whether the
// products are wrong or what is around them.  A standalone nvcc program:
// exits 77 (skip, saying why) without a GPU of compute capability 9.0 or
// without an sm_90a build.
//
// Inputs are fresh random values in [-1, 1] (P in [0, 1]) that the 16-bit
// type holds exactly, so the references see what the GPU sees.  Tolerance:
// the products of 16-bit values are exact in f32 and the tensor cores add
// up to 128 of them, each addition off by at most 2^-23 of the running
// |sum| (truncating adders included): within 128 * 2^-23 = 1.5e-5 of the
// sum of |terms|; checked at 4e-5 of it plus 1e-6.  A wrong element or
// layout is off by the order of the sum itself.
#include "attention-prefill-wg.cu"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vector>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "test_wgmma_blocks: %s: %s\n", #x, cudaGetErrorString(e_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

namespace {

// Accumulator register i of thread t of a warpgroup (m64nN, f32).
__host__ __device__ int acc_row(int t, int i)
{
    return 16 * (t / 32) + (t % 32) / 4 + 8 * ((i / 2) % 2);
}
__host__ __device__ int acc_col(int t, int i)
{
    return 8 * (i / 4) + 2 * (t % 4) + i % 2;
}

// Rows x 128 head dims, row-major in global memory, into a swizzled tile.
template <typename T, int R> __device__ void put_tile(uint8_t *tile, const T *src)
{
    for (int idx = threadIdx.x; idx < R * 16; idx += blockDim.x) {
        const int r = idx >> 4, ch = idx & 15;
        *reinterpret_cast<uint4 *>(tile + swz_off<R>(r, ch)) =
            *reinterpret_cast<const uint4 *>(src + r * HD + ch * 8);
    }
}

// S rows of warpgroup blockIdx.x: s[row][key] = sum_d q[row][d] k[key][d].
template <typename T, int BN>
__global__ void __launch_bounds__(128) s_block(const T *q, const T *k, float *s)
{
    typedef smem_plan<BN, 2> plan;
    extern __shared__ uint8_t raw[];
    uint8_t *base = reinterpret_cast<uint8_t *>(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
    put_tile<T, BM>(base, q);
    put_tile<T, BN>(base + plan::k(0), k);
    fence_proxy_async();
    __syncthreads();
    const uint32_t at = smem_addr(base);
    const int wg = blockIdx.x;
    float acc[BN / 2];
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        wgmma<T, BN>::run(acc, q_desc(at, wg, kk), k_desc<BN>(at + plan::k(0), kk), kk > 0);
    wg_commit();
    wg_wait0();
    reg_fence(acc);
    const int t = threadIdx.x;
#pragma unroll
    for (int i = 0; i < BN / 2; i++)
        s[(wg * 64 + acc_row(t, i)) * BN + acc_col(t, i)] = acc[i];
}

// o[row][d] = sum_key p[row][key] v[key][d] for 64 rows.
template <typename T, int BN>
__global__ void __launch_bounds__(128) pv_block(const float *p, const T *v, float *o)
{
    typedef smem_plan<BN, 2> plan;
    extern __shared__ uint8_t raw[];
    uint8_t *base = reinterpret_cast<uint8_t *>(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
    put_tile<T, BN>(base + plan::v(0), v);
    fence_proxy_async();
    __syncthreads();
    const uint32_t at = smem_addr(base);
    const int t = threadIdx.x;
    float sacc[BN / 8][4]; // P where S's accumulators hold it
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            sacc[j][e] = p[acc_row(t, 4 * j + e) * BN + acc_col(t, 4 * j + e)];
    uint32_t pa[BN / 16][4];
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++)
        p_fragment<T, BN / 8>(pa[kk], sacc, kk);
    float acc[HD / 2];
#pragma unroll
    for (int i = 0; i < HD / 2; i++)
        acc[i] = 0.0f;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++)
        wgmma_rs<T, HD>::run(acc, pa[kk], v_desc<BN>(at + plan::v(0), kk));
    wg_commit();
    wg_wait0();
    reg_fence(acc);
#pragma unroll
    for (int i = 0; i < HD / 2; i++)
        o[acc_row(t, i) * HD + acc_col(t, i)] = acc[i];
}

uint64_t rng = 0x9e3779b97f4a7c15ull;
double uniform()
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0;
}
template <typename T> float to_f(T x)
{
    return (float)x;
}
// n values in [lo, 1) as T (float copies in f), exact in T by construction.
template <typename T> std::vector<T> fill(size_t n, double lo, std::vector<float> &f)
{
    std::vector<T> v(n);
    f.resize(n);
    for (size_t i = 0; i < n; i++) {
        v[i] = T((float)(lo + (1.0 - lo) * uniform()));
        f[i] = to_f(v[i]);
    }
    return v;
}

int failures;
// got[r][c] against the double sum over x of a(r, x) b(x, c), with |terms|.
template <typename A, typename B>
void compare(const char *what, const std::vector<float> &got, int rows, int cols, int depth,
             A a, B b)
{
    int bad = 0;
    double worst = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double ref = 0, mag = 0;
            for (int x = 0; x < depth; x++) {
                ref += (double)a(r, x) * b(x, c);
                mag += fabs((double)a(r, x) * b(x, c));
            }
            const double err = fabs(got[r * cols + c] - ref), tol = 4e-5 * mag + 1e-6;
            worst = fmax(worst, err / tol);
            if (!(err <= tol) && bad++ < 5)
                printf("  %s [%d][%d]: got %.7g, want %.7g\n", what, r, c, got[r * cols + c], ref);
        }
    printf("%s %s: %d of %d off (worst error %.3f of the tolerance)\n", bad ? "FAIL" : "ok  ", what,
           bad, rows * cols, worst);
    failures += bad != 0;
}

template <typename T> T *to_dev(const std::vector<T> &h)
{
    T *d;
    CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
    CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
std::vector<float> from_dev(const float *d, size_t n)
{
    std::vector<float> h(n);
    CHECK(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
}

template <typename T, int BN> void run(const char *type)
{
    const size_t smem = smem_plan<BN, 2>::bytes;
    std::vector<float> qf, kf, vf, pf;
    std::vector<T> q = fill<T>((size_t)BM * HD, -1.0, qf), k = fill<T>((size_t)BN * HD, -1.0, kf),
                   v = fill<T>((size_t)BN * HD, -1.0, vf);
    fill<T>((size_t)64 * BN, 0.0, pf); // P: f32 in the kernel, values T holds
    T *dq = to_dev(q), *dk = to_dev(k), *dv = to_dev(v);
    float *dp = to_dev(pf), *ds, *dout;
    CHECK(cudaMalloc(&ds, (size_t)BM * BN * sizeof(float)));
    CHECK(cudaMalloc(&dout, (size_t)64 * HD * sizeof(float)));
    CHECK(cudaFuncSetAttribute(s_block<T, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               (int)smem));
    CHECK(cudaFuncSetAttribute(pv_block<T, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               (int)smem));
    s_block<T, BN><<<2, 128, smem>>>(dq, dk, ds);
    CHECK(cudaGetLastError());
    pv_block<T, BN><<<1, 128, smem>>>(dp, dv, dout);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    char what[64];
    snprintf(what, sizeof what, "S = Q K^T, %s, BN %d", type, BN);
    compare(
        what, from_dev(ds, (size_t)BM * BN), BM, BN, HD,
        [&](int r, int x) { return qf[r * HD + x]; }, [&](int x, int c) { return kf[c * HD + x]; });
    snprintf(what, sizeof what, "O = P V, %s, BN %d", type, BN);
    compare(
        what, from_dev(dout, (size_t)64 * HD), 64, HD, BN,
        [&](int r, int x) { return pf[r * BN + x]; }, [&](int x, int c) { return vf[x * HD + c]; });
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dp), cudaFree(ds), cudaFree(dout);
}

// What the launcher of each ZL_PREFILL_WG variant sees: the kernel's
// registers and the largest block they allow, and what cuda_open is told
// (zl_cuda_prefill_wg_declines): on this device every variant must run.
template <int BN, int ST> void report(int variant)
{
    cudaFuncAttributes fa;
    CHECK(cudaFuncGetAttributes(&fa, prefill_wg_kernel<__nv_bfloat16, BN, ST>));
    const char *why = zl_cuda_prefill_wg_declines(variant);
    printf("variant %d (BN %d, %d stages): %d registers, %d bytes of local memory, at most %d "
           "threads a block: %s%s\n",
           variant, BN, ST, fa.numRegs, (int)fa.localSizeBytes,
           fa.maxThreadsPerBlock, why ? "DECLINES: " : "runs", why ? why : "");
    if (why)
        failures++;
}

} // namespace

int main()
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("SKIP: no GPU\n");
        return 77;
    }
    if (!sm90a_built() || device_major() != 9) {
        printf("SKIP: needs an sm_90a build on compute capability 9.0 (built %s, device %d.x)\n",
               sm90a_built() ? "sm_90a" : "without sm_90a", device_major());
        return 77;
    }
    const char *env = getenv("ZL_TEST_SEED");
    const unsigned long long seed = env ? strtoull(env, NULL, 10) : (unsigned long long)time(NULL);
    rng ^= seed;
    printf("seed %llu (ZL_TEST_SEED)\n", seed);
    report<128, 2>(1);
    report<64, 4>(2);
    report<128, 3>(3);
    static_assert(ZL_CUDA_PREFILL_WG_VARIANTS == 3, "report every variant");
    if (!zl_cuda_prefill_wg_declines(ZL_CUDA_PREFILL_WG_VARIANTS + 1)) {
        printf("FAIL: variant %d is not declined\n", ZL_CUDA_PREFILL_WG_VARIANTS + 1);
        failures++;
    }
    run<__nv_bfloat16, 128>("bf16");
    run<__nv_bfloat16, 64>("bf16");
    run<__half, 128>("f16");
    printf("%s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
