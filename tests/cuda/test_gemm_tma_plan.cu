// gemm-tma.cu's stream-K split, walked on the CPU (no GPU needed: make
// check runs it wherever the CUDA toolkit builds it).  The kernel deals a
// matrix's (tile, k unit) pairs out evenly to its CTAs; a tile cut
// between CTAs is finished by its last arrival, which adds the partial
// slots of the CTAs tile_owners names, in order.  If the plan were wrong
// the GPU would sum a stale slot or wait for an arrival that never comes,
// and the GPU tests cover only a few (shape, SM count) pairs.  For the
// Llama shapes and 400 random ones (a fixed seed) on 1 to 132 SMs, this
// checks, walking each CTA's units as the kernel's consumers do:
//   - every unit of every tile is summed by exactly one CTA;
//   - the CTAs that hold part of a tile are exactly tile_owners' range,
//     and a tile is stored without partials exactly when one CTA holds
//     all of it;
//   - the arrivals the last CTA waits for (hi - lo + 1) are the segments;
//   - no partial slot is written twice in a call (two tiles would share
//     it), and every slot index fits the scratch of 2 x grid slots.
// It includes gemm-tma.cu to reach its file-local plan helpers.
#include "gemm-tma.cu"

#include <stdio.h>

#include <vector>

#include "plan-check.h"

namespace {

// One matrix of `tiles` tiles of k_units units on a grid of g CTAs.
void walk(uint32_t tiles, uint32_t k_units, uint32_t g)
{
    check_at("tiles %u, k units %u, grid %u", tiles, k_units, g);
    const uint32_t units = tiles * k_units;
    if (g > units)
        g = units; // the launcher's grid
    std::vector<int> summed(units, 0), seg_count(tiles, 0), slot_used(2 * g, 0);
    std::vector<std::vector<uint32_t>> holders(tiles);
    std::vector<int> whole(tiles, 0);
    for (uint32_t c = 0; c < g; c++) {
        const uint32_t u_begin = unit_start(c, units, g), u_end = unit_start(c + 1, units, g);
        check(u_end > u_begin, "a CTA without units", c);
        // the consumers' loop of gemm_tma_kernel
        uint32_t tile = u_begin / k_units, kb = u_begin % k_units, seg_start = u_begin;
        for (uint32_t u = u_begin; u < u_end; u++) {
            summed[u]++;
            if (++kb == k_units || u + 1 == u_end) {
                const uint32_t u0 = tile * k_units;
                uint32_t lo, hi;
                tile_owners(tile, k_units, units, g, &lo, &hi);
                const bool all = seg_start == u0 && u + 1 == u0 + k_units;
                check(all == (lo == hi), "stored whole iff one owner", tile, c);
                if (lo != hi) {
                    const uint32_t s = part_slot(c, u0, units, g);
                    check(s < 2 * g, "slot past the scratch", s, 2 * g);
                    if (s < 2 * g)
                        check(slot_used[s]++ == 0, "a slot written twice", s, tile);
                } else {
                    whole[tile]++;
                }
                holders[tile].push_back(c);
                seg_count[tile]++;
                tile++, kb = 0, seg_start = u + 1;
            }
        }
    }
    for (uint32_t u = 0; u < units; u++)
        check(summed[u] == 1, "a unit summed other than once", u, summed[u]);
    for (uint32_t t = 0; t < tiles; t++) {
        uint32_t lo, hi;
        tile_owners(t, k_units, units, g, &lo, &hi);
        check(seg_count[t] == (int)(hi - lo + 1), "arrivals != segments", t, seg_count[t]);
        bool in_order = holders[t].size() == hi - lo + 1;
        for (size_t i = 0; in_order && i < holders[t].size(); i++)
            in_order = holders[t][i] == lo + i;
        check(in_order, "holders are not tile_owners' range", t, (long)holders[t].size());
        check(whole[t] <= 1, "a tile stored whole twice", t);
    }
}

} // namespace

int main()
{
    // Llama-3.1-8B's linears at batch 9-64 (QKV, o, gate/up as SwiGLU
    // tiles, down, lm_head) on 132 and 114 SMs, and small grids
    const uint32_t llama[][2] = {{48, 64}, {32, 64}, {224, 64}, {32, 224}, {1002, 64}, {8, 64}};
    const uint32_t sms[] = {132, 114, 78, 16, 3, 1};
    for (const auto &m : llama)
        for (uint32_t g : sms)
            walk(m[0], m[1], g);
    // the edge of a grid larger than the units, one-unit tiles
    walk(2, 1, 132);
    walk(1, 1, 132);
    walk(131, 1, 132);
    walk(133, 1, 132);
    walk(1, 300, 132);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    auto next = [&](uint32_t mod) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        return (uint32_t)(seed >> 33) % mod;
    };
    for (int i = 0; i < 400; i++)
        walk(1 + next(600), 1 + next(300), 1 + next(132));
    printf("%s: %d checks, %d failed\n", failures ? "FAIL" : "PASS", checks, failures);
    return failures ? 1 : 0;
}
