// The persistent decode chain's schedule, walked on the CPU (no GPU needed:
// make check runs it wherever the CUDA toolkit builds it).  The kernel's
// producer warp walks a CTA's tiles with settle(); its consumer warps walk
// them with a loop of their own (decode-chain.cu consume); if the two ever
// disagree the kernel hangs or sums the wrong bytes, and no GPU test
// covers every device size.  For real and test shapes on H100-like devices
// (132 and 114 SMs), and 300 random shapes (a fixed seed) on 8 to 132 SMs,
// this checks:
//   - the plan: it fits the shared memory, sizes the counters, and takes
//     or declines what it should;
//   - per CTA, the producer's tile sequence equals the consumers' (layer,
//     phase, tile), every tile fits a ring slot, and the residual staged
//     for each o and down row is that row's;
//   - coverage: every weight row of every phase streamed by exactly one
//     CTA, every attention task run by exactly one, what the CTAs count
//     per phase adds up to the target the next phase waits for, and the
//     QKV pairs of each kv group add up to what its attention waits for.
// It includes decode-chain.cu itself to reach its file-local plan and
// schedule helpers.
#include "decode-chain.cu"

#include <stdio.h>

#include <vector>

#include "plan-check.h"

namespace {

struct step {
    int l, ph, t;
    tile tl;
};

// Fake weight bases: each matrix of each layer its own range, so a tile's
// pointer tells which rows it holds.
const uintptr_t SPAN = (uintptr_t)1 << 36;

uintptr_t base(int l, int m)
{
    return SPAN * (uintptr_t)(1 + l * 4 + m);
}

// The producer's walk of CTA c (decode-chain.cu produce).
std::vector<step> producer_walk(const chain_args &A, int c, int g)
{
    std::vector<step> v;
    cursor u = {0, QKV, first_tile(c, 0, g), 0};
    for (bool ok = settle(A, u, c, g); ok; ok = settle(A, u, c, g)) {
        v.push_back({u.l, u.ph, u.t, tile_of(A, A.layers[u.l], u.ph, u.t)});
        u.t += g;
    }
    return v;
}

// The consumers' walk of CTA c, with the attention tasks it runs and the
// counts it publishes: a copy of decode-chain.cu consume's loop bounds
// (the kernel's loop is device code with the work inside), so a change to
// that loop is made here too.
std::vector<step> consumer_walk(const chain_args &A, int c, int g, std::vector<int> &tasks,
                                std::vector<long> &published, std::vector<long> &pairs)
{
    std::vector<step> v;
    int off = 0;
    for (int l = 0; l < A.n_layers; l++)
        for (int ph = 0; ph < PHASES; ph++) {
            const int n = phase_tiles(A, ph), t0 = first_tile(c, off, g);
            off = (off + n) % g;
            if (t0 >= n)
                continue;
            long mine = 0;
            const res_stage rs = res_stage_of(A, ph, n, t0, g, nullptr);
            const int per = rs.per;
            check(rs.n <= RES_MAX, "a phase's residuals fit the stage", rs.n, RES_MAX);
            for (int t = t0; t < n; t += g, mine++) {
                if (ph == ATT) {
                    tasks[(size_t)l * n + t]++;
                    continue;
                }
                v.push_back({l, ph, t, tile_of(A, A.layers[l], ph, t)});
                const tile &tl = v.back().tl;
                const int nu = units_of(A, ph, tl), two = nu < tl.na;
                for (int u = 0; u < nu && per; u++) // the entries consume reads for unit u
                    for (int j = two ? 2 * u : u; j < (two ? 2 * u + 2 : u + 1) && j < tl.na; j++)
                        check(mine * per + j < rs.n && res_row(rs, (int)mine * per + j) == t * per + j,
                              "a unit's staged residual is its row's", (long)res_row(rs, (int)mine * per + j),
                              (long)t * per + j);
                check(!two || (tl.na + 1) / 2 == nu, "paired o rows cover the tile", nu, tl.na);
            }
            if (ph != ATT)
                published[(size_t)l * PHASES + ph] += mine;
            for (long i = 0; ph == QKV && i < mine; i++) // the counts after publish
                pairs[(size_t)l * A.nkv + qkv_group(A, t0 + (int)i * g)] += A.pq;
        }
    return v;
}

// Marks rows [first, first + n) of matrix m of layer l (rows of rb bytes).
void mark(std::vector<int> &seen, const char *p, int n, int l, int m, int64_t rb, int64_t rows)
{
    const uintptr_t off = (uintptr_t)p - base(l, m);
    check(off % (uintptr_t)rb == 0, "tile starts inside a row", (long)off, (long)rb);
    const int64_t first = (int64_t)(off / (uintptr_t)rb);
    for (int64_t r = first; r < first + n; r++) {
        check(r >= 0 && r < rows, "row out of the matrix", (long)r, (long)rows);
        if (r >= 0 && r < rows)
            seen[(size_t)r]++;
    }
}

// want: 1 the plan must take the shape, 0 decline it, -1 either; returns
// whether it took it.
int check_case(const char *name, struct zl_cuda_chain_shape s, int smem, int sms, int want)
{
    check_at("%s", name);
    struct zl_cuda_chain_plan p;
    const int ok = plan_for(&s, smem, sms, 9, 1, &p);
    if (want >= 0)
        check(ok == want, "planned", ok, want);
    if (!ok)
        return 0;
    check(p.smem <= (size_t)smem, "shared memory", (long)p.smem, smem);
    check(p.grid == sms && p.slots >= 2 && p.slots <= MAX_SLOTS, "grid and slots", p.grid, p.slots);
    chain_args A = {};
    schedule_args(&s, &p, A);
    A.opair = 1; // as zl_cuda_decode_chain sets it
    std::vector<zl_cuda_chain_layer> layers((size_t)s.n_layers);
    for (int l = 0; l < s.n_layers; l++)
        layers[(size_t)l] = {(const void *)base(l, 0), (const void *)base(l, 1),
                             (const void *)base(l, 2), (const void *)base(l, 3), nullptr, nullptr};
    A.layers = layers.data();
    check(p.count_ints == (size_t)s.n_layers * cnt_stride(A), "counters", (long)p.count_ints,
          (long)s.n_layers * cnt_stride(A));
    // the split merge's partial rows: one a (kv head, split, query head), each
    // 16-byte aligned (merge_splits copies them with cp.async)
    check(p.part_bytes == (p.splits > 1 ? (size_t)s.n_heads * p.splits * part_ld(s.head_dim) * 4 : 0),
          "partial rows' bytes", (long)p.part_bytes, (long)p.splits);
    check(part_ld(s.head_dim) % 4 == 0 && part_ld(s.head_dim) >= s.head_dim + 2, "partial row stride",
          part_ld(s.head_dim), s.head_dim);

    const int g = p.grid, qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim;
    const int64_t rows[PHASES] = {qd + 2 * kvd, 0, s.d, 2 * (int64_t)s.f, s.d};
    std::vector<int> tasks((size_t)s.n_layers * phase_tiles(A, ATT));
    std::vector<long> published((size_t)s.n_layers * PHASES), pairs((size_t)s.n_layers * s.n_kv_heads);
    std::vector<std::vector<int>> seen((size_t)s.n_layers * PHASES);
    for (int l = 0; l < s.n_layers; l++)
        for (int ph = 0; ph < PHASES; ph++)
            seen[(size_t)l * PHASES + ph].assign((size_t)rows[ph], 0);
    for (int c = 0; c < g; c++) {
        const std::vector<step> pv = producer_walk(A, c, g);
        const std::vector<step> cv = consumer_walk(A, c, g, tasks, published, pairs);
        check(pv.size() == cv.size(), "producer and consumers walk as many tiles", (long)pv.size(),
              (long)cv.size());
        for (size_t k = 0; k < pv.size() && k < cv.size(); k++)
            check(pv[k].l == cv[k].l && pv[k].ph == cv[k].ph && pv[k].t == cv[k].t,
                  "producer and consumers disagree on a tile", (long)k, pv[k].t - cv[k].t);
        for (const step &e : pv) {
            const int64_t rb = (int64_t)phase_k(A, e.ph) * 2;
            check(e.tl.na >= 1 && e.tl.na <= MAXR && e.tl.na + e.tl.nb <= MAXR,
                  "rows a tile (a warp takes one unit)", e.tl.na, e.tl.nb);
            check((e.tl.na + e.tl.nb) * rb <= p.slot_bytes, "tile fits a slot",
                  (long)((e.tl.na + e.tl.nb) * rb), p.slot_bytes);
            const int m = e.ph == QKV ? 0 : e.ph == OPROJ ? 1 : e.ph == GU ? 2 : 3;
            std::vector<int> &sn = seen[(size_t)e.l * PHASES + e.ph];
            mark(sn, e.tl.a, e.tl.na, e.l, m, rb, rows[e.ph]);
            if (e.tl.nb)
                mark(sn, e.tl.b, e.tl.nb, e.l, m, rb, rows[e.ph]);
        }
    }
    // a kv group's QKV pairs, counted by the CTAs at the phase's end,
    // against what its attention waits for
    for (size_t h = 0; h < pairs.size(); h++)
        check(pairs[h] == (A.group + 2) * s.head_dim / 2, "QKV pairs of a kv group", pairs[h],
              (A.group + 2) * s.head_dim / 2);
    for (int l = 0; l < s.n_layers; l++) {
        for (int ph = 0; ph < PHASES; ph++) {
            if (ph == ATT)
                continue;
            int bad = 0;
            for (int x : seen[(size_t)l * PHASES + ph])
                bad += x != 1;
            check(bad == 0, "a weight row streamed other than once", ph, bad);
            check(published[(size_t)l * PHASES + ph] == A.nt[ph], "counted against the target",
                  published[(size_t)l * PHASES + ph], A.nt[ph]);
        }
        int bad = 0;
        for (int t = 0; t < phase_tiles(A, ATT); t++)
            bad += tasks[(size_t)l * phase_tiles(A, ATT) + t] != 1;
        check(bad == 0, "an attention task run other than once", l, bad);
    }
    return 1;
}

} // namespace

int main()
{
    const int H100 = 232448; // bytes of shared memory a block (opt-in)
    // name, {layers, d, f, heads, kv heads, head_dim, kv_len}, smem, SMs, planned
    check_case("llama-3.1-8b, 132 SMs", {2, 4096, 14336, 32, 8, 128, 513}, H100, 132, 1);
    check_case("llama-3.1-8b, 114 SMs", {2, 4096, 14336, 32, 8, 128, 513}, H100, 114, 1);
    check_case("llama-3.1-8b, 20k keys", {1, 4096, 14336, 32, 8, 128, 20000}, H100, 132, 1);
    check_case("llama-3.2-1b", {2, 2048, 8192, 32, 8, 64, 700}, H100, 132, 1);
    check_case("qwen2-0.5b-like", {2, 896, 4864, 14, 2, 64, 40}, H100, 132, 1);
    // test_cuda_decode_chain's shapes
    check_case("test 512/1408", {3, 512, 1408, 8, 2, 64, 101}, H100, 132, 1);
    check_case("test 1024/2816", {2, 1024, 2816, 8, 8, 128, 1}, H100, 132, 1);
    check_case("test 768/2048", {2, 768, 2048, 12, 4, 64, 301}, H100, 132, 1);
    check_case("test 2048/5632", {2, 2048, 5632, 16, 2, 128, 2000}, H100, 132, 1);
    check_case("test 1024/2752", {1, 1024, 2752, 14, 2, 64, 64}, H100, 132, 1);
    check_case("test 256/9000", {2, 256, 9000, 4, 1, 64, 41}, H100, 132, 1);
    {
        const struct zl_cuda_chain_shape odd = {1, 1024, 2048, 40, 8, 128, 51};
        struct zl_cuda_chain_plan p;
        check_case("test 1024/2048, 40 heads", odd, H100, 132, 1);
        check(plan_for(&odd, H100, 132, 9, 1, &p) && p.ro == 3 && 1024 % p.ro == 1,
              "o tiles of 3 rows, the last of 1", p.ro, 1024 % (p.ro ? p.ro : 1));
    }
    // what the plan declines
    check_case("head_dim 96", {1, 1536, 4096, 16, 4, 96, 10}, H100, 132, 0);
    check_case("a group of 16 query heads", {1, 4096, 14336, 32, 2, 128, 10}, H100, 132, 0);
    check_case("f not a multiple of 8", {1, 1024, 2750, 8, 2, 128, 10}, H100, 132, 0);
    check_case("more o rows a CTA than residuals staged", {1, 8192, 8192, 64, 8, 128, 10}, H100, 8, 0);
    check_case("48 KB of shared memory", {1, 4096, 14336, 32, 8, 128, 10}, 48 << 10, 132, 0);
    {
        struct zl_cuda_chain_shape s = {1, 4096, 14336, 32, 8, 128, 513};
        struct zl_cuda_chain_plan p;
        check_at("devices");
        check(plan_for(&s, H100, 132, 8, 1, &p) == 0, "sm_89 declined");
        check(plan_for(&s, H100, 132, 9, 0, &p) == 0, "no cooperative launch declined");
    }
    // random shapes on devices of 8 to 132 SMs (a fixed seed: the same
    // shapes every run); what the plan takes must walk right
    unsigned seed = 12345;
    auto rnd = [&seed](int n) { seed = seed * 1103515245u + 12345u; return (int)((seed >> 8) % (unsigned)n); };
    int planned = 0;
    for (int i = 0; i < 300; i++) {
        const int nkv = 1 << rnd(4), group = 1 + rnd(8), hd = rnd(2) ? 128 : 64;
        struct zl_cuda_chain_shape s = {1 + rnd(2), 8 * (8 + rnd(512)), 8 * (8 + rnd(2048)),
                                        nkv * group, nkv, hd, 1 + rnd(3000)};
        static const int sms[] = {8, 66, 78, 114, 132};
        const int n = sms[rnd(5)];
        char name[160];
        snprintf(name, sizeof name, "random %d: d %d f %d heads %d/%d hd %d keys %d, %d SMs", i, s.d,
                 s.f, s.n_heads, nkv, hd, s.kv_len, n);
        planned += check_case(name, s, H100, n, -1);
    }
    check_at("random shapes");
    check(planned > 150, "most random shapes planned", planned, 300);
    printf("test_chain_schedule: %d of 300 random shapes planned\n", planned);
    printf("test_chain_schedule: %d checks, %d failed\n", checks, failures);
    printf("%s - decode chain schedule (%d checks)\n", failures ? "not ok" : "ok", checks); // (run-all.sh's tally)
    return failures ? 1 : 0;
}
