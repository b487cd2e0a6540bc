/* A fake model for the scheduler and engine tests: its "KV cache" stores
 * each token id and position at the slot the batch names, and the next
 * token is a hash of the tokens it reads back through the block table.
 * A wrong slot, block table, prefix-cache share or recompute therefore
 * changes the output or trips a check, as it would with a real model. */
#ifndef TEST_ENGINE_FAKE_H
#define TEST_ENGINE_FAKE_H

#include <stdint.h>
#include <stdlib.h>
#include <zlight/backend.h>

#define FAKE_VOCAB 64

struct fake_kv {
    int32_t bs;
    int32_t n_slots;
    int32_t *tok, *pos;     /* [n_slots] */
    int64_t errors;         /* reads of a slot not holding the expected position */
    int64_t tokens_seen;
};

static inline void fake_init(struct fake_kv *f, int32_t n_blocks, int32_t bs)
{
    f->bs = bs;
    f->n_slots = n_blocks * bs;
    f->tok = calloc((size_t)f->n_slots, sizeof(int32_t));
    f->pos = malloc(sizeof(int32_t) * (size_t)f->n_slots);
    for (int32_t i = 0; i < f->n_slots; i++)
        f->pos[i] = -1;
    f->errors = 0;
    f->tokens_seen = 0;
}

static inline void fake_fini(struct fake_kv *f)
{
    free(f->tok);
    free(f->pos);
}

/* The next token after sequence s's first len tokens, read from the cache
 * (causal: a row sees the positions up to its own). */
static inline int32_t fake_next(const struct fake_kv *f, const struct zl_attn_batch *a, int32_t s,
                                int32_t len, int64_t *errors)
{
    uint64_t h = 1469598103934665603ull;
    for (int32_t p = 0; p < len; p++) {
        int32_t blk = a->block_table[(size_t)s * a->max_blocks + p / f->bs];
        int32_t slot = blk * f->bs + p % f->bs;
        if (slot < 0 || slot >= f->n_slots || f->pos[slot] != p) {
            (*errors)++;
            return 0;
        }
        h = (h ^ (uint64_t)f->tok[slot]) * 1099511628211ull;
        h ^= h >> 29;
    }
    return (int32_t)(h % FAKE_VOCAB);
}

/* One step: writes the batch's tokens, then next[i] for each logits row. */
static inline void fake_forward(struct fake_kv *f, int32_t n_tokens, const int32_t *tokens,
                                const int32_t *positions, const struct zl_attn_batch *a,
                                int32_t n_logits, const int32_t *logits_rows, int32_t *next)
{
    for (int32_t i = 0; i < n_tokens; i++) {
        int32_t slot = a->slot[i];
        if (slot < 0 || slot >= f->n_slots) {
            f->errors++;
            continue;
        }
        f->tok[slot] = tokens[i];
        f->pos[slot] = positions[i];
    }
    f->tokens_seen += n_tokens;
    for (int32_t r = 0; r < n_logits; r++) {
        int32_t s = 0;
        while (s + 1 < a->n_seqs && a->q_start[s + 1] <= logits_rows[r])
            s++;
        next[r] = fake_next(f, a, s, positions[logits_rows[r]] + 1, &f->errors);
    }
}

/* What the fake model generates after `prompt` greedily, computed directly. */
static inline void fake_reference(const int32_t *prompt, int32_t n_prompt, int32_t n_out, int32_t *out)
{
    uint64_t h = 1469598103934665603ull;
    for (int32_t p = 0; p < n_prompt + n_out - 1; p++) {
        int32_t t = p < n_prompt ? prompt[p] : out[p - n_prompt];
        h = (h ^ (uint64_t)t) * 1099511628211ull;
        h ^= h >> 29;
        if (p >= n_prompt - 1)
            out[p - n_prompt + 1] = (int32_t)(h % FAKE_VOCAB);
    }
}

#endif
