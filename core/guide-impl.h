/* Layout of guided decoding (guide-schema.c compiles, guide-match.c runs
 * the automaton, guide-mask.c walks the vocabulary through it). */
#ifndef ZLIGHT_GUIDE_IMPL_H
#define ZLIGHT_GUIDE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <zlight/guide.h>

#define GD_MAX_PROPS 64     /* properties of one object node (a u64 of seen bits) */
#define GD_MAX_ENUM 64      /* values of one enum / const node */

enum gd_kind {
    GD_ANY,                 /* any JSON value */
    GD_OBJECT, GD_ARRAY, GD_STRING, GD_NUMBER, GD_INTEGER, GD_BOOLEAN, GD_NULL,
    GD_ENUM,                /* one of lits[]: their compact JSON texts */
    GD_UNION,               /* alts[]: the branch is picked by the first byte */
    GD_TAGGED,              /* alts[] are objects told apart by the value of one required
                             * property, which comes first: an object of that one prop
                             * (props[0], its node the values of every branch) until its
                             * value picks the branch, tag_alt[value] */
};

struct gd_prop {
    char *name;             /* raw key bytes (no escapes are matched) */
    size_t len;
    int32_t node;
};

struct gd_node {
    enum gd_kind kind;
    /* object */
    struct gd_prop *props;
    int32_t n_props;
    uint64_t required;      /* bit i: props[i] */
    int32_t extra;          /* node of other keys' values, -1: none */
    /* array: items node, counts; string: code point counts (max -1: none) */
    int32_t items;
    int64_t min, max;
    /* enum */
    char **lits;
    size_t *lit_len;
    int32_t n_lits;
    /* union */
    int32_t *alts;
    int32_t n_alts;
    int32_t ref;            /* a $ref placeholder: the node it names (-1: not one) */
    int8_t *pick;           /* union: [256] the alt a first byte picks, -1 none */
    int32_t *tag_alt;       /* tagged: [props[0]'s node's n_lits] the branch of each value */
    char *path;             /* union: where it is in the schema (messages) */
};

/* Nodes 0-2 are fixed: any value, an object of any keys and values, an
 * array of any values (what an unconstrained value opens). */
enum { GD_NODE_ANY, GD_NODE_ANY_OBJECT, GD_NODE_ANY_ARRAY };

struct zl_json_schema {
    struct gd_node *nodes;
    int32_t n_nodes, cap;
    int32_t root;
};

/* One open container. */
struct gd_frame {
    int32_t node;
    uint8_t mode;           /* enum gd_mode */
    int8_t prop;            /* object: the prop of the key just read, -1 an extra one */
    uint16_t pad;           /* the pads keep the struct free of padding: states */
    uint32_t count;         /* array: items so far (0 unless the node bounds them) */
    uint32_t pad2;          /* are compared and hashed as bytes */
    uint64_t seen;          /* object: props present (a key being read keeps its
                             * candidates in lex.cand) */
};

/* The scalar being read (string, number, literal, enum), at most one. */
struct gd_lex {
    uint8_t kind;           /* enum gd_lex_kind */
    uint8_t phase;          /* number phase; string: escape state */
    uint8_t utf8_left;      /* continuation bytes still due */
    uint8_t lo, hi;         /* the next continuation byte's range */
    uint8_t hex;            /* \u digits still due */
    uint8_t is_key;
    uint8_t pad;
    int32_t node;
    uint32_t pos;           /* literal / enum: bytes matched; string: code points */
    uint64_t cand;          /* enum values, or a key's candidate props, still matching */
};

struct gd_state {
    uint8_t depth;          /* open containers */
    uint8_t ws;             /* whitespace bytes in the current run */
    uint8_t root;           /* enum gd_root */
    uint8_t pad[5];
    struct gd_lex lex;
    struct gd_frame f[ZL_GUIDE_MAX_DEPTH];
};

enum gd_root { GD_ROOT_VALUE, GD_ROOT_DONE };

_Static_assert(sizeof(struct gd_lex) == 24 && sizeof(struct gd_frame) == 24 &&
               offsetof(struct gd_state, f) == 32, "guide states have no padding");

/* guide-schema.c: the node a $ref placeholder stands for (n itself when
 * it is not one). */
int32_t gd_resolve(const struct zl_json_schema *s, int32_t n);

/* guide-match.c: 1 when byte c may follow (s is advanced), 0 when not (s
 * is then in an unspecified state: callers feed a copy). */
int gd_feed(const struct zl_json_schema *sc, struct gd_state *s, uint8_t c);
void gd_start(const struct zl_json_schema *sc, struct gd_state *s);
int gd_can_end(const struct zl_json_schema *sc, const struct gd_state *s);
/* Inside a string at a character boundary, where any run of plain
 * characters (no quote, backslash or control byte; whole UTF-8) may come:
 * how many code points may still come (-1: any number); -2 when s is not
 * in such a state. */
int64_t gd_string_room(const struct zl_json_schema *sc, const struct gd_state *s);
/* Bytes of s that a mask depends on (the header and the open frames). */
size_t gd_state_size(const struct gd_state *s);

#endif
