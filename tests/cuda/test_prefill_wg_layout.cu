// The shared-memory layout of the wgmma prefill kernel
// (attention-prefill-wg.cu), walked on the CPU: no GPU needed, so make
// check runs it wherever the CUDA toolkit builds it.  The kernel writes Q,
// K and V rows into 128-byte-swizzled tiles (swz_off) and hands wgmma
// descriptors of them (q_desc, k_desc, v_desc); if the two disagreed, the
// GPU would multiply the wrong elements and only a GPU test would say so.
// For each variant's tile shape this builds the tiles as the kernel's
// loads place them, then reads every element of every wgmma operand
// through the kernel's descriptors, with a model of wgmma's addressing
// written here from the PTX ISA's canonical layouts (not from the
// kernel's code):
//   - a descriptor holds start >> 4 (bits 0-13), the leading byte offset
//     >> 4 (16-29), the stride byte offset >> 4 (32-45), a base offset
//     (49-51; 0 for 1024-aligned tiles) and the swizzle mode (62-63; 1 is
//     128-byte);
//   - 128-byte swizzle XORs address bits 4-6 with bits 7-9;
//   - K-major (A and B of S = Q K^T): element (row i, k j) of a 16-bit
//     operand at start + (i / 8) sbo + (i % 8) 128 + 2 j;
//   - MN-major (B of O += P V): element (k, n) at start + (n / 64) lbo +
//     (k / 8) sbo + (k % 8) 128 + 2 (n % 64).
// It also checks P's register fragment (p_fragment) against the layouts of
// wgmma's f32 accumulator and 16-bit A registers: thread t of a
// warpgroup, accumulator register i: row 16 (t / 32) + (t % 32) / 4 +
// 8 ((i / 2) % 2), column 8 (i / 4) + 2 (t % 4) + i % 2; A element e
// (register e / 2, half e % 2): row as for i = e, column 2 (t % 4) + e % 2
// + 8 (e / 4).
#include "attention-prefill-wg.cu"

#include <stdio.h>
#include <string.h>

#include <vector>

#include "plan-check.h"

namespace {

// Tags of the elements the tiles hold: which matrix, row, head dim.
enum { EMPTY = 0, TQ = 1, TK = 2, TV = 3 };
uint32_t tag(int m, int st, int row, int col)
{
    return (uint32_t)m << 28 | (uint32_t)st << 24 | (uint32_t)row << 8 | (uint32_t)col;
}

struct image {
    uint32_t base; // shared address of the 1024-aligned plan base
    std::vector<uint32_t> half; // a tag per 2 bytes from base

    // Puts a tile of R rows x 128 head dims at offset off as the kernel's
    // loads do (16-byte chunks at swz_off).
    template <int R> void put(uint32_t off, int m, int st)
    {
        for (int r = 0; r < R; r++)
            for (int ch = 0; ch < 16; ch++)
                for (int e = 0; e < 8; e++) {
                    const uint32_t at = off + (uint32_t)swz_off<R>(r, ch) + 2 * e;
                    if (at / 2 >= half.size()) {
                        check(false, "a tile element past the plan", r, ch);
                        continue;
                    }
                    check(half[at / 2] == EMPTY, "two elements at one address", r, ch);
                    half[at / 2] = tag(m, st, r, ch * 8 + e);
                }
    }
    uint32_t at(uint32_t addr) const
    {
        if (addr < base || (addr - base) / 2 >= half.size()) {
            check(false, "a read outside the tiles", (long)addr);
            return ~0u;
        }
        return half[(addr - base) / 2];
    }
};

struct desc {
    uint32_t start, lbo, sbo, base_off, mode;
};
desc decode(uint64_t d)
{
    return {(uint32_t)(d & 0x3FFF) << 4, (uint32_t)((d >> 16) & 0x3FFF) << 4,
            (uint32_t)((d >> 32) & 0x3FFF) << 4, (uint32_t)((d >> 49) & 7),
            (uint32_t)(d >> 62)};
}
uint32_t swizzle128(uint32_t addr)
{
    return addr ^ (((addr >> 7) & 7) << 4);
}
bool sane(const desc &d)
{
    return d.mode == 1 && d.base_off == 0 && d.sbo == 1024;
}
// The tag wgmma reads as element (i, j) of a K-major operand.
uint32_t read_k_major(const image &im, uint64_t dd, int i, int j)
{
    const desc d = decode(dd);
    return im.at(swizzle128(d.start + (i / 8) * d.sbo + (i % 8) * 128 + 2 * j));
}
// ... as element (k, n) of an MN-major operand.
uint32_t read_mn_major(const image &im, uint64_t dd, int k, int n)
{
    const desc d = decode(dd);
    return im.at(swizzle128(d.start + (n / 64) * d.lbo + (k / 8) * d.sbo + (k % 8) * 128 +
                            2 * (n % 64)));
}

template <int BN, int ST> void walk(uint32_t base)
{
    typedef smem_plan<BN, ST> plan;
    check_at("BN %d, %d stages, base %u", BN, ST, base);
    check(plan::bytes <= 232448, "over the 227 KiB an H100 block may opt in to",
          (long)plan::bytes);
    check(plan::BARS % 8 == 0, "barriers not 8-aligned", plan::BARS);
    image im{base, std::vector<uint32_t>(plan::BARS / 2, EMPTY)};
    im.put<BM>(0, TQ, 0);
    for (int st = 0; st < ST; st++) {
        check(plan::k(st) % 1024 == 0 && plan::v(st) % 1024 == 0, "a tile not 1024-aligned",
              st);
        im.put<BN>(plan::k(st), TK, st);
        im.put<BN>(plan::v(st), TV, st);
    }
    // S = Q K^T: the group's 64 Q rows and BN key rows, 16 head dims a step
    for (int kk = 0; kk < HD / 16; kk++) {
        for (int wg = 0; wg < 2; wg++) {
            const uint64_t dq = q_desc(base, wg, kk);
            check(sane(decode(dq)), "Q descriptor fields", wg, kk);
            for (int i = 0; i < 64; i++)
                for (int j = 0; j < 16; j++)
                    check(read_k_major(im, dq, i, j) == tag(TQ, 0, wg * 64 + i, kk * 16 + j),
                          "Q element", wg * 64 + i, kk * 16 + j);
        }
        for (int st = 0; st < ST; st++) {
            const uint64_t dk = k_desc<BN>(base + plan::k(st), kk);
            check(sane(decode(dk)), "K descriptor fields", st, kk);
            for (int n = 0; n < BN; n++)
                for (int j = 0; j < 16; j++)
                    check(read_k_major(im, dk, n, j) == tag(TK, st, n, kk * 16 + j), "K element",
                          n, kk * 16 + j);
        }
    }
    // O += P V: 16 keys a step, all 128 head dims
    for (int st = 0; st < ST; st++)
        for (int kk = 0; kk < BN / 16; kk++) {
            const uint64_t dv = v_desc<BN>(base + plan::v(st), kk);
            check(sane(decode(dv)), "V descriptor fields", st, kk);
            check(decode(dv).lbo == BN * RB, "V's leading byte offset", decode(dv).lbo);
            for (int k = 0; k < 16; k++)
                for (int n = 0; n < HD; n++)
                    check(read_mn_major(im, dv, k, n) == tag(TV, st, kk * 16 + k, n), "V element",
                          kk * 16 + k, n);
        }
}

// P's fragment: the weight of (row, key) in S's accumulators must reach A
// element (row, key - 16 kk) of step kk.  Each weight is its key plus 128
// for the thread's second row (exact in both 16-bit types below 256).
template <typename T, int BN> void walk_p()
{
    constexpr int NS = BN / 8;
    check_at("P fragment, BN %d, %d-byte type", BN, (int)sizeof(T));
    for (int t = 0; t < 128; t++) {
        float s[NS][4];
        for (int j = 0; j < NS; j++)
            for (int e = 0; e < 4; e++) {
                const int i = 4 * j + e; // accumulator register
                s[j][e] = (float)(8 * (i / 4) + 2 * (t % 4) + i % 2 + 128 * ((i / 2) % 2));
            }
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t a[4];
            p_fragment<T, NS>(a, s, kk);
            for (int e = 0; e < 8; e++) {
                const uint16_t bits = (uint16_t)(a[e / 2] >> (16 * (e % 2)));
                T v;
                memcpy(&v, &bits, sizeof v);
                const int w = (int)(float)v, key = w % 128;
                check(w / 128 == (e / 2) % 2, "P row", t, w);
                check(key - 16 * kk == 2 * (t % 4) + e % 2 + 8 * (e / 4), "P column", t, key);
            }
        }
    }
}

} // namespace

int main()
{
    // The kernel aligns its plan base to 1024 bytes of shared memory.
    for (uint32_t base : {0u, 1024u}) {
        walk<128, 2>(base);
        walk<64, 4>(base);
        walk<128, 3>(base);
    }
    walk_p<__nv_bfloat16, 128>();
    walk_p<__half, 128>();
    walk_p<__nv_bfloat16, 64>();
    printf("%s: %d checks, %d failed\n", failures ? "FAIL" : "PASS", checks, failures);
    return failures ? 1 : 0;
}
