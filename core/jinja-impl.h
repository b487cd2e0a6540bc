/* Internal layout of the Jinja-subset interpreter behind zlight/chat.h.
 *
 * Pipeline: jinja-lex.c turns the source into tokens (applying trim_blocks,
 * lstrip_blocks and {%- -%} at lex time, as jinja2 does), jinja-parse.c builds
 * an immutable AST, jinja-eval.c renders it over jansson values and
 * jinja-filters.c / jinja-methods.c hold the filters, tests and methods;
 * jinja-value.c has the Python-like conversions (str, repr, ==, truth, tojson).
 * Values are json_t new references; NULL means jinja2's Undefined.
 */
#ifndef ZLIGHT_JINJA_IMPL_H
#define ZLIGHT_JINJA_IMPL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits that keep hostile templates from crashing or hanging a render. */
#define JJ_MAX_PARSE_DEPTH 200      /* nested expressions / blocks */
#define JJ_MAX_CALL_DEPTH 100       /* macro recursion */
#define JJ_MAX_STEPS 5000000L       /* default: evaluated nodes + loop turns per render */
#define JJ_DEFAULT_MAX_OUTPUT (16u << 20)
/* The longest string an expression builds (str() of a list, join, replace,
 * format, ...): a builder stops there and the expression fails, so a
 * template cannot spend seconds or gigabytes on one value. */
#define JJ_MAX_STRING JJ_DEFAULT_MAX_OUTPUT

/* ---- tokens -------------------------------------------------------------- */

enum jj_tok {
    JT_EOF, JT_TEXT, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP,
};

struct jj_token {
    enum jj_tok kind;
    int line, col;
    char *text;      /* TEXT/NAME/STRING payload (NUL-terminated, arena) */
    size_t len;      /* bytes of text */
    char op[4];      /* JT_OP spelling: "+", "//", "==", ... */
    long long ival;
    double fval;
};

struct jj_arena;
void *jj_alloc(struct jj_arena *a, size_t n);
char *jj_strndup(struct jj_arena *a, const char *s, size_t n);
struct jj_arena *jj_arena_new(void);
void jj_arena_free(struct jj_arena *a);

/* Tokenizes `src`; on error returns a negative status with zl_error set to
 * "line L, column C: ...". */
int jj_lex(struct jj_arena *a, const char *src, size_t n,
           struct jj_token **toks, size_t *ntoks);

/* ---- AST ----------------------------------------------------------------- */

enum jj_node_kind {
    /* expressions */
    JN_LIT, JN_LIST, JN_DICT, JN_NAME, JN_ATTR, JN_INDEX, JN_SLICE, JN_CALL,
    JN_FILTER, JN_TEST, JN_UNARY, JN_BINARY, JN_AND, JN_OR, JN_NOT, JN_COND,
    JN_COMPARE,
    /* statements */
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_BLOCK, JN_MACRO,
    JN_CALL_BLOCK, JN_FILTER_BLOCK, JN_BREAK, JN_CONTINUE, JN_BODY,
};

struct jj_list {
    struct jj_node **v;
    size_t n, cap;
};

struct jj_node {
    enum jj_node_kind kind;
    int line, col;
    char op[4];              /* operator spelling for UNARY/BINARY/COMPARE */
    bool negate;             /* TEST: "is not"; COMPARE: unused */
    bool is_tuple;           /* LIST built from (a, b) or a bare a, b */
    const char *name;        /* NAME, ATTR, FILTER, TEST, MACRO name; TEXT bytes */
    size_t len;              /* TEXT length */
    json_t *lit;             /* LIT value (owned by the template) */
    struct jj_node *a, *b, *c;
    struct jj_list args;     /* items, call/filter args, slice parts, targets */
    const char **kw;         /* per arg: keyword name or NULL (parallel to args) */
    struct jj_list body;     /* statement body */
    struct jj_list orelse;   /* else / elif branch */
};

struct jj_template {
    struct jj_arena *arena;
    struct jj_node *root;    /* JN_BODY */
    json_t **lits;           /* literals to release */
    size_t nlits, caplits;
};

/* Parses tokens into t->root; negative status + zl_error on failure. */
int jj_parse(struct jj_template *t, struct jj_token *toks, size_t ntoks);

/* ---- values (jinja-value.c) ---------------------------------------------- */

struct jj_buf {
    char *p;
    size_t n, cap;
    size_t limit;            /* 0 = unlimited */
    bool overflow;
};

/* A builder of a value's string: at most JJ_MAX_STRING bytes. */
#define JJ_STRBUF {.limit = JJ_MAX_STRING}

bool jj_buf_put(struct jj_buf *b, const char *s, size_t n);
bool jj_buf_puts(struct jj_buf *b, const char *s);
void jj_buf_free(struct jj_buf *b);
/* Moves the bytes into a new json string and frees the buffer; NULL when
 * the buffer overflowed (past its limit, or out of memory). */
json_t *jj_buf_string(struct jj_buf *b);

bool jj_truthy(const json_t *v);
bool jj_equal(const json_t *a, const json_t *b);
/* -2 when not comparable, else -1/0/1. */
int jj_compare(const json_t *a, const json_t *b);
const char *jj_type_name(const json_t *v);   /* Python type name */
bool jj_is_number(const json_t *v);          /* int, float or bool */
double jj_number(const json_t *v);
/* Python str() / repr() of a value appended to b. */
void jj_str(struct jj_buf *b, const json_t *v);
void jj_repr(struct jj_buf *b, const json_t *v);
/* A new json string holding str(v) (NULL on allocation failure or when it
 * is over JJ_MAX_STRING bytes). */
json_t *jj_to_string(const json_t *v);
void jj_format_float(char *out, size_t n, double d);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: none), sort_keys,
 * separators=(item_sep, key_sep)); NULL separators take Python's defaults. */
bool jj_tojson(struct jj_buf *b, const json_t *v, int indent, bool sort_keys, const char *item_sep,
               const char *key_sep);

/* UTF-8 helpers: number of code points and the byte offset of code point i. */
size_t jj_u8_len(const char *s, size_t n);
size_t jj_u8_offset(const char *s, size_t n, size_t i);
/* Decodes one code point at s (n bytes left); returns bytes used (>= 1). */
int jj_u8_decode(const char *s, size_t n, int32_t *cp);
int jj_u8_encode(int32_t cp, char *out);
bool jj_is_space(int32_t cp);

/* ---- render (jinja-eval.c) and builtins ---------------------------------- */

struct jj_ctx;
/* Records a render error at node n (first one wins); returns NULL. */
json_t *jj_fail(struct jj_ctx *c, const struct jj_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* r, or for NULL (a string over JJ_MAX_STRING bytes, or out of memory)
 * the failure "WHAT: the result is too large". */
json_t *jj_sized(struct jj_ctx *c, const struct jj_node *n, json_t *r, const char *what);
bool jj_failed(const struct jj_ctx *c);
/* Name of the last undefined variable looked up, for error messages. */
const char *jj_undef_name(const struct jj_ctx *c);

/* Arguments evaluated at a call site.  Values may be NULL (undefined). */
struct jj_args {
    json_t **pos;
    size_t npos;
    const char **kwname;
    json_t **kwval;
    size_t nkw;
};
/* Positional i, or keyword `name`, or NULL; *present says which. */
json_t *jj_arg(const struct jj_args *a, size_t i, const char *name, bool *present);

/* Filters, tests and methods return a new reference (NULL = undefined,
 * jj_failed tells errors apart). */
json_t *jj_filter(struct jj_ctx *c, const struct jj_node *n, const char *name,
                  json_t *v, const struct jj_args *a);
/* Returns 0/1, or -1 after jj_fail. */
int jj_test(struct jj_ctx *c, const struct jj_node *n, const char *name,
            const json_t *v, const struct jj_args *a);
json_t *jj_method(struct jj_ctx *c, const struct jj_node *n, json_t *self,
                  const char *name, const struct jj_args *a);
/* Items of an iterable as a new array (strings: code points, dicts: keys). */
json_t *jj_iter_list(struct jj_ctx *c, const struct jj_node *n, const json_t *v);
/* Attribute / item lookup as jinja2's getattr / getitem (new ref or NULL). */
json_t *jj_getattr(const json_t *obj, const char *name);
json_t *jj_getitem(struct jj_ctx *c, const struct jj_node *n, const json_t *obj,
                   const json_t *key);
/* Python string methods that filters reuse. */
json_t *jj_strip(const char *s, size_t n, const char *chars, int which);
json_t *jj_replace(const char *s, size_t n, const char *old, size_t on, const char *nw, size_t nn,
                  long long count);  /* count < 0: all */
json_t *jj_case(const char *s, size_t n, int mode);  /* 0 lower 1 upper 2 str.title 3 capitalize 4 |title */

#endif
