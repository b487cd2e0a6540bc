/* Internal layout of the tokenizer (core/tokenizer*.c, core/detok.c). */
#ifndef ZLIGHT_TOKENIZER_IMPL_H
#define ZLIGHT_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <zlight/tokenizer.h>

/* Largest token id + 1 we accept (real vocabularies stay under 300k): the
 * id arrays are sized by the largest id, so a file naming id 194222222
 * must be refused, not make us allocate gigabytes (found by fuzzing). */
#define ZL_TOK_MAX_IDS (1 << 22)

/* ---- small containers (tokenizer.c) ---- */

/* Bump allocator for strings that live as long as the tokenizer. */
struct zl_tok_arena {
    struct zl_tok_chunk *head;
};
void *zl_tok_arena_alloc(struct zl_tok_arena *a, size_t n);
char *zl_tok_arena_strdup(struct zl_tok_arena *a, const char *s, size_t n);
void zl_tok_arena_free(struct zl_tok_arena *a);

/* Growable byte buffer. */
struct zl_tok_buf {
    char *p;
    size_t len, cap;
};
int zl_tok_buf_put(struct zl_tok_buf *b, const void *s, size_t n);
int zl_tok_buf_reserve(struct zl_tok_buf *b, size_t extra);

/* Growable id vector. */
struct zl_tok_ids {
    int32_t *v;
    size_t n, cap;
};
int zl_tok_ids_push(struct zl_tok_ids *v, int32_t id);
/* Appends a zeroed element to an exact-size array of *n steps; NULL (with
 * the error set) when out of memory. */
void *zl_tok_push_step(void **arr, size_t *n, size_t size);
/* Makes room for one more element in a realloc'd array of n (capacity
 * *cap) elements of `size` bytes, doubling from `first`.  ZL_ENOMEM. */
int zl_tok_grow(void **arr, size_t *cap, size_t n, size_t size, size_t first);

/* Byte string -> int32 map (open addressing, keys not owned). */
struct zl_tok_map {
    struct zl_tok_map_ent { const char *key; uint32_t len; int32_t val; } *ent;
    uint64_t *slot; /* (hash >> 32) << 32 | (entry index + 1); 0 = empty */
    size_t n, cap, mask;
};
int zl_tok_map_init(struct zl_tok_map *m, size_t expected);
/* Inserts or overwrites. */
int zl_tok_map_put(struct zl_tok_map *m, const char *key, size_t len, int32_t val);
int32_t zl_tok_map_get(const struct zl_tok_map *m, const char *key, size_t len); /* -1 absent */
void zl_tok_map_free(struct zl_tok_map *m);

/* (left id, right id) -> (rank, merged id). */
struct zl_tok_pairs {
    uint64_t *key; /* ((a+1) << 32) | (b+1); 0 = empty */
    int32_t *rank, *merged;
    size_t mask, n;
};

/* ---- pipeline steps ---- */

enum zl_norm_kind { ZL_NORM_NFC, ZL_NORM_NFD, ZL_NORM_NFKC, ZL_NORM_NFKD, ZL_NORM_LOWER,
                    ZL_NORM_PREPEND, ZL_NORM_REPLACE, ZL_NORM_STRIP };
struct zl_tok_norm {
    enum zl_norm_kind kind;
    char *str; size_t str_len;       /* prepend text / replace content */
    pcre2_code *re;                  /* replace pattern */
    int left, right;                 /* strip */
};

enum zl_split_behavior { ZL_SPLIT_REMOVED, ZL_SPLIT_ISOLATED, ZL_SPLIT_MERGED_PREV,
                         ZL_SPLIT_MERGED_NEXT, ZL_SPLIT_CONTIGUOUS };
enum zl_pretok_kind { ZL_PT_SPLIT, ZL_PT_BYTELEVEL, ZL_PT_DIGITS, ZL_PT_METASPACE,
                      ZL_PT_WHITESPACE_SPLIT };
struct zl_tok_pretok {
    enum zl_pretok_kind kind;
    pcre2_code *re;                  /* split regex (ByteLevel: GPT-2 regex when use_regex) */
    enum zl_split_behavior behavior;
    int invert;
    int add_prefix_space;            /* ByteLevel */
    int individual_digits;           /* Digits */
    char repl[8]; size_t repl_len;   /* Metaspace replacement (UTF-8) */
    int prepend_scheme;              /* Metaspace: 0 always, 1 first, 2 never */
    int split;                       /* Metaspace */
};

enum zl_dec_kind { ZL_DEC_BYTELEVEL, ZL_DEC_REPLACE, ZL_DEC_BYTEFALLBACK, ZL_DEC_FUSE,
                   ZL_DEC_STRIP, ZL_DEC_METASPACE, ZL_DEC_JOIN_SPACE };
struct zl_tok_dec {
    enum zl_dec_kind kind;
    char *pat, *content; size_t pat_len, content_len; /* replace (literal) */
    uint32_t cp;                     /* strip content / metaspace replacement */
    int start, stop;                 /* strip counts */
    int prepend;                     /* metaspace: strip on the first token */
};

/* Added tokens and the trie that finds them (leftmost-longest). */
struct zl_tok_added {
    int32_t id;
    char *content; size_t len;       /* pattern: the normalized content when normalized */
    uint8_t special, normalized, lstrip, rstrip, single_word;
};
struct zl_tok_trie {
    struct zl_trie_node { int32_t child, sibling, added; uint8_t byte; } *node;
    size_t n, cap;
    uint8_t first[256];              /* bytes that start some pattern */
};

/* Word cache: pre-token bytes -> ids. */
struct zl_tok_cache {
    pthread_mutex_t mu;
    struct zl_tok_map map;           /* word -> offset into ids */
    struct zl_tok_arena keys;        /* word bytes */
    struct zl_tok_ids ids;           /* [count, ids...] per entry */
    int ready;
};

enum { ZL_TOKA_SPECIAL = 1, ZL_TOKA_ADDED = 2, ZL_TOKA_MODEL = 4 };

struct zl_tokenizer {
    struct zl_tok_arena arena;
    int32_t n_vocab;
    size_t vocab_cap;                /* allocated length of text, text_len, attr */
    const char **text; uint32_t *text_len; /* [n_vocab] vocabulary strings */
    uint8_t *attr;                   /* [n_vocab] ZL_TOKA_* */
    struct zl_tok_map by_text;       /* vocabulary string -> id (model and added) */
    struct zl_tok_map model;         /* model-space key -> id (raw bytes when byte_level) */
    int byte_level;                  /* the pre-tokenizer maps bytes to the GPT-2 alphabet */
    int32_t byte_id[256];            /* byte_level: id of each byte; else <0xXX> ids; -1 none */
    struct zl_tok_pairs merges;
    int ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;

    struct zl_tok_norm *norm; size_t n_norm;
    struct zl_tok_pretok *pretok; size_t n_pretok;
    struct zl_tok_dec *dec; size_t n_dec;

    struct zl_tok_added *added; size_t n_added, added_cap;
    struct zl_tok_trie trie_raw, trie_norm;

    int32_t *post_pre; size_t n_post_pre;   /* ids before the sequence (ADD_SPECIAL) */
    int32_t *post_post; size_t n_post_post; /* ids after it */

    int32_t bos_id, eos_id;
    int add_bos;
    const char *bos_token, *eos_token, *chat_template;

    struct zl_tok_cache cache;
};

/* tokenizer.c */
int zl_tok_init(struct zl_tokenizer *t);
int zl_tok_set_token(struct zl_tokenizer *t, int32_t id, const char *s, size_t len);
int zl_tok_reserve(struct zl_tokenizer *t, size_t n_vocab, size_t n_merges);
int zl_tok_add_merge(struct zl_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged);
int zl_tok_pairs_init(struct zl_tok_pairs *p, size_t expected);
/* After vocab, merges, added tokens and pre-tokenizers are set: builds the
 * model map, byte tables, tries and cache. */
int zl_tok_finalize(struct zl_tokenizer *t);
int zl_tok_add_added(struct zl_tokenizer *t, const struct zl_tok_added *a);
pcre2_code *zl_tok_regex(const char *pat, size_t len, int literal);
extern const char zl_tok_gpt2_regex[];

/* tokenizer-json.c, tokenizer-gguf.c */
int zl_tok_load_json_into(struct zl_tokenizer *t, const char *json, size_t len, const char *name);
int zl_tok_load_gguf_into(struct zl_tokenizer *t, const char *path);
int zl_tok_load_config_into(struct zl_tokenizer *t, const char *json, size_t len, const char *name);
int zl_tok_pair_get(const struct zl_tok_pairs *p, int32_t a, int32_t b, int32_t *merged);

/* tokenizer-norm.c: text normalizers and pre-tokenizers */
int zl_tok_normalize(const struct zl_tokenizer *t, const char *s, size_t n, struct zl_tok_buf *out);
struct zl_tok_piece { const char *p; uint32_t len; uint8_t at_start; };
struct zl_tok_pieces {
    struct zl_tok_piece *v; size_t n, cap;
    struct zl_tok_buf *bufs; size_t n_bufs; /* storage of rewritten pieces */
};
int zl_tok_pretokenize(const struct zl_tokenizer *t, pcre2_match_data **md,
                       const char *s, size_t n, int at_start, struct zl_tok_pieces *out);
void zl_tok_pieces_free(struct zl_tok_pieces *p);

/* tokenizer-bpe.c: ids of one pre-token word appended to out; `cache`
 * (may be NULL) is the word cache, held locked by the caller. */
int zl_tok_bpe_word(const struct zl_tokenizer *t, struct zl_tok_cache *cache, const char *w,
                    size_t n, struct zl_tok_ids *out);
int zl_tok_cache_init(struct zl_tok_cache *c);
void zl_tok_cache_free(struct zl_tok_cache *c);

/* UTF-8 (tokenizer-utf8.c) */
/* Length of the valid sequence at s (1..4), 0 when it is incomplete at the
 * end of n bytes, or -k when the first k bytes are a maximal invalid part. */
int zl_utf8_seq(const unsigned char *s, size_t n);
/* Appends s with invalid sequences replaced by U+FFFD (HF / Rust lossy). */
int zl_utf8_lossy(const char *s, size_t n, struct zl_tok_buf *out);
size_t zl_utf8_encode(uint32_t cp, char *out);
uint32_t zl_utf8_decode(const char *s, size_t n, size_t *adv);
/* detok.c: token id's bytes in mid-stream into *out (replaced; len 0 for
 * an id without a string); the guide reads tokens by them. */
int zl_tok_token_bytes(const struct zl_tokenizer *t, int32_t id, struct zl_tok_buf *out);
int zl_utf8_is_space(uint32_t cp);
/* GPT-2 byte <-> code point alphabet. */
uint32_t zl_bytelevel_cp(uint8_t b);
int zl_bytelevel_byte(uint32_t cp); /* -1 when cp is not in the alphabet */

#endif
