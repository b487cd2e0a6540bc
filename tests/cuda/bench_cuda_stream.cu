// How fast can a kernel stream a weight matrix through cp.async rings?
// A probe for the design of a 9-256-token GEMM (docs/cuda-perf-log.md, "A cp.async
// GEMM for 9-64 tokens"): it reads a bf16 row-major matrix the way such a
// kernel would, with no arithmetic, and prints the bandwidth of each
// pattern.  The patterns vary what a GEMM's tile choice fixes:
//   RUN     bytes of each row read per stage (128 = 64 bf16 columns),
//   ROWS    rows per warp per stage,
//   STAGES  depth of the ring,
//   W       warps per CTA (the shared memory then sets CTAs per SM),
//   shared  one ring per CTA with a block barrier every stage (each warp
//           loading its own rows), or one ring per warp with none.
// Each warp (or CTA) walks its row group over one of `splits` column
// ranges, the splits chosen so the items fill the resident warps about
// once (as a GEMM splits K to fill the GPU).  Two sizes: a
// [28672, 4096] matrix (gate and up, 235 MB), and [4096, 4096] (q or o,
// 32 MB) rotated over 8 copies so L2 does not serve them; the second shows
// a small grid's ramp and drain.  A plain 16-byte-load kernel gives the
// machine's read ceiling.  Not a test: prints a table; run it on the GPU
// machine (tests/cuda/bench_cuda_stream), figures in docs/cuda-perf-log.md.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>

#include "cuda-mma.cuh"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_cuda_stream: %s: %s\n", #x, cudaGetErrorString(e_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

namespace {

using namespace zlcuda; // cp_async16, cp_async_commit, cp_async_wait

struct mat {
    const char *base;           // copy 0
    int64_t copy_bytes;         // distance between the rotated copies
    int64_t rows, row_bytes;
};

// Rows [r0, r0 + ROWS) x bytes [j * RUN, (j + 1) * RUN) into dst, by one warp.
template <int RUN, int ROWS>
__device__ __forceinline__ void load_stage(uint4 *dst, const char *m, int64_t row_bytes, int64_t r0,
                                           int j, int lane)
{
    constexpr int CH = RUN / 16, PER_LANE = ROWS * CH / 32;
    static_assert(ROWS * CH % 32 == 0, "a stage is whole 16-byte chunks for every lane");
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
        const int c = lane + 32 * i;
        cp_async16(dst + c, m + (r0 + c / CH) * row_bytes + (int64_t)j * RUN + (c % CH) * 16, 16);
    }
}

template <int RUN, int ROWS, int STAGES, int W, bool SHARED>
__global__ void __launch_bounds__(W * 32) ring_kernel(mat a, int copy, int splits, uint32_t *sink)
{
    constexpr int STAGE = ROWS * (RUN / 16); // uint4 per warp per stage
    extern __shared__ uint4 smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // items: (row group, split), row groups first; a CTA's warps take
    // neighbouring row groups of one split
    const int64_t groups = (a.rows + (int64_t)W * ROWS - 1) / ((int64_t)W * ROWS);
    const int64_t grp = blockIdx.x % groups, split = blockIdx.x / groups;
    const int64_t r0 = (grp * W + warp) * ROWS;
    const char *m = a.base + (int64_t)copy * a.copy_bytes;
    // shared: stage s holds every warp's rows; per warp: each warp its ring
    uint4 *mine = SHARED ? smem + warp * STAGE : smem + warp * STAGES * STAGE;
    constexpr int STRIDE = SHARED ? W * STAGE : STAGE; // uint4 between stages
    const int all = (int)(a.row_bytes / RUN), per = (all + splits - 1) / splits;
    const int j0 = (int)split * per, steps = min(all - j0, per);
    const bool live = r0 < a.rows;
#pragma unroll
    for (int j = 0; j < STAGES - 1; j++) {
        if (live && j < steps)
            load_stage<RUN, ROWS>(mine + j * STRIDE, m, a.row_bytes, r0, j0 + j, lane);
        cp_async_commit();
    }
    uint32_t acc = 0;
    for (int j = 0; j < steps; j++) {
        cp_async_wait<STAGES - 2>();
        if (SHARED)
            __syncthreads();
        else
            __syncwarp();
        acc ^= mine[(j % STAGES) * STRIDE + lane].x; // a token read: the data arrived
        const int nj = j + STAGES - 1;
        if (live && nj < steps)
            load_stage<RUN, ROWS>(mine + (nj % STAGES) * STRIDE, m, a.row_bytes, r0, j0 + nj,
                                  lane);
        cp_async_commit();
    }
    cp_async_wait<0>();
    if (acc == 0x9e3779b9u) // never, for the memset data: keeps the reads
        sink[blockIdx.x] = acc;
}

// The read ceiling: every thread 16-byte loads, grid-stride, no L1.
__global__ void read_kernel(mat a, int copy, uint32_t *sink)
{
    const uint4 *p = reinterpret_cast<const uint4 *>(a.base + (int64_t)copy * a.copy_bytes);
    const int64_t n = a.rows * a.row_bytes / 16;
    uint32_t acc = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x * 4) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int64_t k = i + (int64_t)u * gridDim.x * blockDim.x;
            v[u] = k < n ? __ldcs(p + k) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < 4; u++)
            acc ^= v[u].x ^ v[u].w;
    }
    if (acc == 0x9e3779b9u)
        sink[blockIdx.x] = acc;
}

// warps_per_sm (when asked): resident warps of the launch's kernel per SM.
typedef void (*launch_fn)(const mat &, int, uint32_t *, int *warps_per_sm);

template <int RUN, int ROWS, int STAGES, int W, bool SHARED>
void launch_ring(const mat &a, int copy, uint32_t *sink, int *warps_per_sm)
{
    constexpr size_t SMEM = (size_t)W * STAGES * ROWS * RUN;
    auto k = ring_kernel<RUN, ROWS, STAGES, W, SHARED>;
    static int per_sm, sms;
    if (!per_sm) {
        CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
        CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, W * 32, SMEM));
        CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        if (!per_sm) {
            fprintf(stderr, "bench_cuda_stream: a %zu-byte CTA does not fit an SM\n", SMEM);
            exit(1);
        }
    }
    if (warps_per_sm)
        *warps_per_sm = per_sm * W;
    const int64_t groups = (a.rows + (int64_t)W * ROWS - 1) / ((int64_t)W * ROWS);
    const int64_t slots = (int64_t)per_sm * sms, all = a.row_bytes / RUN;
    int64_t splits = (slots + groups / 2) / groups; // the nearest whole wave
    splits = std::max<int64_t>(1, std::min(splits, all));
    k<<<(unsigned)(groups * splits), W * 32, SMEM>>>(a, copy, (int)splits, sink);
}

void launch_read(const mat &a, int copy, uint32_t *sink, int *warps_per_sm)
{
    int sms = 0, per = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, read_kernel, 512, 0));
    if (warps_per_sm)
        *warps_per_sm = per * 16;
    read_kernel<<<sms * per, 512>>>(a, copy, sink);
}

struct pattern {
    const char *name;
    launch_fn fn;
};

// Median microseconds per call over 7 runs of `iters` calls, copies rotated.
double time_us(const pattern &p, const mat &a, int copies, uint32_t *sink, int iters)
{
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++)
        p.fn(a, i % copies, sink, nullptr);
    CHECK(cudaGetLastError());
    double t[7];
    for (int r = 0; r < 7; r++) {
        CHECK(cudaEventRecord(e0));
        for (int i = 0; i < iters; i++)
            p.fn(a, i % copies, sink, nullptr);
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        t[r] = ms * 1e3 / iters;
    }
    std::sort(t, t + 7);
    CHECK(cudaEventDestroy(e0));
    CHECK(cudaEventDestroy(e1));
    return t[3];
}

} // namespace

int main()
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("bench_cuda_stream: no GPU, nothing measured\n");
        return 77;
    }
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    const int64_t big_rows = 28672, small_rows = 4096, row_bytes = 4096 * 2, copies = 8;
    const int64_t small_bytes = small_rows * row_bytes, big_bytes = big_rows * row_bytes;
    char *buf = nullptr;
    uint32_t *sink = nullptr;
    CHECK(cudaMalloc(&buf, std::max(big_bytes, copies * small_bytes)));
    CHECK(cudaMemset(buf, 0x11, std::max(big_bytes, copies * small_bytes)));
    CHECK(cudaMalloc(&sink, 1 << 20));
    const mat big = {buf, 0, big_rows, row_bytes};
    const mat small = {buf, small_bytes, small_rows, row_bytes};
    // name: RUN bytes x ROWS rows x STAGES, W warps, ring per warp or shared
    const pattern pats[] = {
        {"16-byte loads, 16 warps a CTA (ceiling)", launch_read},
        {"run 128 x 32 rows x 4, 4 warps, shared", launch_ring<128, 32, 4, 4, true>},
        {"run 256 x 32 rows x 3, 4 warps, shared", launch_ring<256, 32, 3, 4, true>},
        {"run 128 x 32 rows x 4, per warp", launch_ring<128, 32, 4, 4, false>},
        {"run 256 x 16 rows x 4, per warp", launch_ring<256, 16, 4, 4, false>},
        {"run 256 x 32 rows x 3, per warp", launch_ring<256, 32, 3, 2, false>},
        {"run 512 x 16 rows x 3, per warp", launch_ring<512, 16, 3, 2, false>},
        {"run 512 x 16 rows x 4, per warp", launch_ring<512, 16, 4, 2, false>},
        {"run 1024 x 8 rows x 4, per warp", launch_ring<1024, 8, 4, 2, false>},
        {"run 256 x 16 rows x 4, 8 warps, shared", launch_ring<256, 16, 4, 8, true>},
        {"run 512 x 16 rows x 3, 4 warps, shared", launch_ring<512, 16, 3, 4, true>},
    };
    printf("bench_cuda_stream: %s, %d SMs; GB/s of matrix bytes read (median of 7 runs)\n",
           prop.name, prop.multiProcessorCount);
    printf("%-42s %9s %16s %22s\n", "pattern", "warps/SM", "[28672,4096]", "[4096,4096] x8 rotated");
    for (const pattern &p : pats) {
        int wps = 0;
        p.fn(big, 0, sink, &wps);
        CHECK(cudaDeviceSynchronize());
        const double tb = time_us(p, big, 1, sink, 20), ts = time_us(p, small, copies, sink, 80);
        printf("%-42s %9d %7.1f us %5.0f %11.1f us %6.0f\n", p.name, wps, tb, big_bytes / tb * 1e-3,
               ts, small_bytes / ts * 1e-3);
    }
    CHECK(cudaFree(buf));
    CHECK(cudaFree(sink));
    return 0;
}
