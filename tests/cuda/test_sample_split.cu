// sample.cu's split of a plain greedy row over blocks, checked on the CPU
// (no GPU needed: make check runs it wherever the CUDA toolkit builds it).
// greedy_kernel's block p of a row reads ids [p * per, min(p * per + per,
// vocab)) in float4s from a 16-byte-aligned row start; if the plan left
// an id out the argmax could miss it, and if a block had no ids its key
// would still count (the max of nothing: key 0, harmless) but the row's
// count would wait for it.  The GPU test covers 14 shapes; this walks
// vocabularies 1-4096, the Llama/Qwen/GPT-2 sizes and 300 random ones
// (a fixed seed) for 1-300 rows on 1-132 SMs and checks that:
//   - per is a multiple of 4 (whole float4s from an aligned row start);
//   - the blocks cover the vocabulary exactly, none of them empty;
//   - there are 1-64 blocks a row, and about 4 an SM over the batch
//     (at least half of min(64, 4 * sms / rows) where the ids allow it).
// It includes sample.cu to reach zl_cuda_sample_greedy_split.
#include "sample.cu"

#include <stdio.h>

#include "plan-check.h"

namespace {

void walk(int32_t rows, int32_t vocab, int32_t sms)
{
    check_at("rows %d, vocab %d, sms %d", rows, vocab, sms);
    int32_t per = -1;
    const int32_t split = zl_cuda_sample_greedy_split(rows, vocab, sms, &per);
    check(split >= 1 && split <= 64, "blocks a row out of 1..64", split);
    check(per > 0 && per % 4 == 0, "a slice not of whole float4s", per);
    if (split < 1 || per <= 0)
        return;
    int64_t covered = 0;
    for (int32_t p = 0; p < split; p++) {
        const int64_t beg = (int64_t)p * per < vocab ? (int64_t)p * per : vocab;
        const int64_t end = beg + per < vocab ? beg + per : vocab;
        check(end > beg, "an empty block", p, split);
        check(beg == covered, "a gap or an overlap", beg, covered);
        covered = end;
    }
    check(covered == vocab, "ids left out", covered, vocab);
    int64_t want = (int64_t)4 * sms / rows;
    want = want < 1 ? 1 : want > 64 ? 64 : want;
    const int64_t most = (vocab + 3) / 4; // blocks of one float4 each
    check(2 * split >= (want < most ? want : most), "too few blocks", split, want);
}

} // namespace

int main()
{
    const int32_t vocabs[] = {128256, 151936, 32000, 50257, 102400, 129280, 256000};
    const int32_t rows[] = {1, 2, 3, 8, 16, 32, 64, 128, 256, 300};
    const int32_t sms[] = {132, 114, 78, 16, 1};
    for (int32_t v : vocabs)
        for (int32_t r : rows)
            for (int32_t s : sms)
                walk(r, v, s);
    for (int32_t v = 1; v <= 4096; v++)
        walk(1 + v % 7, v, 132);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    auto next = [&](uint32_t mod) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        return (uint32_t)(seed >> 33) % mod;
    };
    for (int i = 0; i < 300; i++)
        walk(1 + (int32_t)next(300), 1 + (int32_t)next(300000), 1 + (int32_t)next(132));
    printf("%s: %d checks, %d failed\n", failures ? "FAIL" : "PASS", checks, failures);
    return failures ? 1 : 0;
}
