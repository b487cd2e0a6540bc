/* Parser state and helpers shared by jinja-parse.c (expressions) and
 * jinja-stmt.c (statements). */
#ifndef ZLIGHT_JINJA_PARSE_IMPL_H
#define ZLIGHT_JINJA_PARSE_IMPL_H

#include "jinja-impl.h"

#include <string.h>

struct parser {
    struct jj_template *t;
    struct jj_token *tok;
    size_t n, i;
    int depth;
    int rc;
};

static inline struct jj_token *peek(struct parser *P) { return &P->tok[P->i]; }
static inline struct jj_token *peek2(struct parser *P) { return &P->tok[P->i + 1 < P->n ? P->i + 1 : P->i]; }
static inline struct jj_token *next(struct parser *P)
{
    struct jj_token *t = &P->tok[P->i];
    if (t->kind != JT_EOF)
        P->i++;
    return t;
}
static inline bool is_op(const struct jj_token *t, const char *op) { return t->kind == JT_OP && strcmp(t->op, op) == 0; }
static inline bool is_name(const struct jj_token *t, const char *nm) { return t->kind == JT_NAME && strcmp(t->text, nm) == 0; }

/* Records "template syntax error at line L, column C: ..." once; NULL. */
void *jp_perr(struct parser *P, const struct jj_token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *jp_tok_desc(const struct jj_token *t);
bool jp_expect_op(struct parser *P, const char *op);
struct jj_node *jp_node(struct parser *P, enum jj_node_kind k, const struct jj_token *at);
bool jp_list_add(struct parser *P, struct jj_list *l, struct jj_node *x);
/* A literal node owning v (released with the template). */
struct jj_node *jp_lit_node(struct parser *P, const struct jj_token *at, json_t *v);
/* Guards recursion depth; NULL (with an error) when too deep. */
struct jj_node *jp_enter(struct parser *P);
struct jj_node *jp_parse_expr(struct parser *P);
struct jj_node *jp_parse_or(struct parser *P);
/* "a, b" as a tuple node, or a single expression; simplified: primaries only. */
struct jj_node *jp_parse_tuple(struct parser *P, bool simplified);
struct jj_node *jp_parse_filter_expr(struct parser *P, struct jj_node *n);
struct jj_node *jp_parse_one_filter(struct parser *P, struct jj_node *n);

#endif
