/* Jinja parser: tokens -> AST (jj_node), following jinja2's grammar and
 * operator precedence (or < and < not < compare < +,- < ~ < *,/,//,% < **
 * < unary < postfix/filters/tests). */
#include "jinja-impl.h"

#include <zlight/status.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    struct jj_template *t;
    struct jj_token *tok;
    size_t n, i;
    int depth;
    int rc;
};

static struct jj_token *peek(struct parser *P) { return &P->tok[P->i]; }
static struct jj_token *peek2(struct parser *P) { return &P->tok[P->i + 1 < P->n ? P->i + 1 : P->i]; }
static struct jj_token *next(struct parser *P)
{
    struct jj_token *t = &P->tok[P->i];
    if (t->kind != JT_EOF)
        P->i++;
    return t;
}

static void *perr(struct parser *P, const struct jj_token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void *perr(struct parser *P, const struct jj_token *t, const char *fmt, ...)
{
    if (P->rc < 0)
        return NULL;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    P->rc = zl_error(ZL_EINVAL, "template syntax error at line %d, column %d: %s", t->line, t->col, msg);
    return NULL;
}

static bool is_op(const struct jj_token *t, const char *op) { return t->kind == JT_OP && strcmp(t->op, op) == 0; }
static bool is_name(const struct jj_token *t, const char *nm) { return t->kind == JT_NAME && strcmp(t->text, nm) == 0; }

static const char *tok_desc(const struct jj_token *t)
{
    switch (t->kind) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "template text";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_END: return "'%}'";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_NAME: return t->text;
    case JT_OP: return t->op;
    default: return "literal";
    }
}

static bool expect_op(struct parser *P, const char *op)
{
    struct jj_token *t = peek(P);
    if (!is_op(t, op)) {
        perr(P, t, "expected '%s', got '%s'", op, tok_desc(t));
        return false;
    }
    next(P);
    return true;
}

static struct jj_node *node(struct parser *P, enum jj_node_kind k, const struct jj_token *at)
{
    struct jj_node *n = jj_alloc(P->t->arena, sizeof(*n));
    if (!n) {
        if (P->rc == 0)
            P->rc = zl_error(ZL_ENOMEM, "template: out of memory");
        return NULL;
    }
    n->kind = k;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static bool list_add(struct parser *P, struct jj_list *l, struct jj_node *x)
{
    if (!x)
        return false;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 4;
        struct jj_node **nv = jj_alloc(P->t->arena, nc * sizeof(*nv));
        if (!nv) {
            P->rc = zl_error(ZL_ENOMEM, "template: out of memory");
            return false;
        }
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(*nv));
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
    return true;
}

static struct jj_node *lit_node(struct parser *P, const struct jj_token *at, json_t *v)
{
    struct jj_template *t = P->t;
    struct jj_node *n = node(P, JN_LIT, at);
    if (!n || !v) {
        json_decref(v);
        if (P->rc == 0)
            P->rc = zl_error(ZL_ENOMEM, "template: out of memory");
        return NULL;
    }
    if (t->nlits == t->caplits) {
        size_t nc = t->caplits ? 2 * t->caplits : 16;
        json_t **nv = realloc(t->lits, nc * sizeof(*nv));
        if (!nv) {
            json_decref(v);
            P->rc = zl_error(ZL_ENOMEM, "template: out of memory");
            return NULL;
        }
        t->lits = nv;
        t->caplits = nc;
    }
    t->lits[t->nlits++] = v;
    n->lit = v;
    return n;
}

static struct jj_node *parse_expr(struct parser *P);
static struct jj_node *parse_or(struct parser *P);
static struct jj_node *parse_unary(struct parser *P, bool with_filter);
static struct jj_node *parse_primary(struct parser *P);
static struct jj_node *parse_postfix(struct parser *P, struct jj_node *n);

/* (args) after a callee / filter / test: positional and name=value. */
static bool parse_call_args(struct parser *P, struct jj_node *n)
{
    size_t cap = 0;
    if (!expect_op(P, "("))
        return false;
    while (!is_op(peek(P), ")")) {
        if (n->args.n && !expect_op(P, ","))
            return false;
        if (is_op(peek(P), ")"))
            break;
        const char *kw = NULL;
        if (peek(P)->kind == JT_NAME && is_op(peek2(P), "=")) {
            kw = next(P)->text;
            next(P);
        }
        if (!list_add(P, &n->args, parse_expr(P)))
            return false;
        if (n->args.n > cap) {
            size_t nc = cap ? 2 * cap : 4;
            const char **nk = jj_alloc(P->t->arena, nc * sizeof(*nk));
            if (!nk)
                return false;
            if (cap)
                memcpy(nk, n->kw, cap * sizeof(*nk));
            n->kw = nk;
            cap = nc;
        }
        n->kw[n->args.n - 1] = kw;
    }
    next(P);
    return true;
}

static struct jj_node *enter(struct parser *P)
{
    if (++P->depth > JJ_MAX_PARSE_DEPTH)
        return perr(P, peek(P), "nesting too deep");
    return (struct jj_node *)1;
}

/* Tuple or a single expression, as jinja2's parse_tuple (for targets of
 * "for"/"set", and bare "a, b" in expressions). */
static struct jj_node *parse_tuple(struct parser *P, bool simplified)
{
    struct jj_token *at = peek(P);
    struct jj_node *first = simplified ? parse_primary(P) : parse_expr(P);
    if (!first || !is_op(peek(P), ","))
        return first;
    struct jj_node *tup = node(P, JN_LIST, at);
    if (!tup || !list_add(P, &tup->args, first))
        return NULL;
    tup->is_tuple = true;
    while (is_op(peek(P), ",")) {
        next(P);
        struct jj_token *t = peek(P);
        if (t->kind == JT_BLOCK_END || t->kind == JT_VAR_END || is_op(t, ")") || is_name(t, "in") || is_op(t, "="))
            break;
        if (!list_add(P, &tup->args, simplified ? parse_primary(P) : parse_expr(P)))
            return NULL;
    }
    return tup;
}

static struct jj_node *parse_primary(struct parser *P)
{
    if (!enter(P))
        return NULL;
    struct jj_token *t = next(P);
    struct jj_node *n = NULL;
    switch (t->kind) {
    case JT_NAME:
        if (!strcmp(t->text, "true") || !strcmp(t->text, "True"))
            n = lit_node(P, t, json_true());
        else if (!strcmp(t->text, "false") || !strcmp(t->text, "False"))
            n = lit_node(P, t, json_false());
        else if (!strcmp(t->text, "none") || !strcmp(t->text, "None"))
            n = lit_node(P, t, json_null());
        else if ((n = node(P, JN_NAME, t)))
            n->name = t->text;
        break;
    case JT_STRING: {
        /* adjacent literals concatenate */
        size_t len = t->len, k = P->i;
        while (P->tok[k].kind == JT_STRING)
            len += P->tok[k++].len;
        char *s = jj_alloc(P->t->arena, len + 1);
        if (!s)
            break;
        memcpy(s, t->text, t->len);
        size_t o = t->len;
        while (peek(P)->kind == JT_STRING) {
            struct jj_token *u = next(P);
            memcpy(s + o, u->text, u->len);
            o += u->len;
        }
        n = lit_node(P, t, json_stringn_nocheck(s, o));
        break;
    }
    case JT_INT:
        n = lit_node(P, t, json_integer(t->ival));
        break;
    case JT_FLOAT:
        n = lit_node(P, t, json_real(t->fval));
        break;
    case JT_OP:
        if (is_op(t, "(")) {
            if (is_op(peek(P), ")")) {
                next(P);
                if ((n = node(P, JN_LIST, t)))
                    n->is_tuple = true;
                break;
            }
            n = parse_tuple(P, false);
            if (n && !expect_op(P, ")"))
                n = NULL;
        } else if (is_op(t, "[")) {
            n = node(P, JN_LIST, t);
            while (n && !is_op(peek(P), "]")) {
                if (n->args.n && !expect_op(P, ","))
                    return NULL;
                if (is_op(peek(P), "]"))
                    break;
                if (!list_add(P, &n->args, parse_expr(P)))
                    return NULL;
            }
            next(P);
        } else if (is_op(t, "{")) {
            n = node(P, JN_DICT, t);
            while (n && !is_op(peek(P), "}")) {
                if (n->args.n && !expect_op(P, ","))
                    return NULL;
                if (is_op(peek(P), "}"))
                    break;
                if (!list_add(P, &n->args, parse_expr(P)) || !expect_op(P, ":") ||
                    !list_add(P, &n->args, parse_expr(P)))
                    return NULL;
            }
            next(P);
        } else {
            return perr(P, t, "unexpected '%s'", t->op);
        }
        break;
    default:
        return perr(P, t, "expected an expression, got %s", tok_desc(t));
    }
    P->depth--;
    return n;
}

static struct jj_node *parse_subscript(struct parser *P, struct jj_node *obj, struct jj_token *at)
{
    /* obj[expr] or obj[a:b:c] with any part omitted */
    struct jj_node *parts[3] = {NULL, NULL, NULL};
    int np = 0;
    bool slice = false;
    for (;;) {
        struct jj_token *t = peek(P);
        if (is_op(t, ":")) {
            slice = true;
            if (++np > 2)
                return perr(P, t, "too many ':' in slice");
            next(P);
            continue;
        }
        if (is_op(t, "]"))
            break;
        if (parts[np])
            return perr(P, t, "expected ']'");
        if (!(parts[np] = parse_expr(P)))
            return NULL;
    }
    next(P);
    struct jj_node *n = node(P, slice ? JN_SLICE : JN_INDEX, at);
    if (!n)
        return NULL;
    n->a = obj;
    if (slice) {
        n->b = parts[0];
        n->c = parts[1];
        n->args.v = NULL;
        if (parts[2] && !list_add(P, &n->args, parts[2]))
            return NULL;
    } else {
        if (!parts[0])
            return perr(P, at, "empty subscript");
        n->b = parts[0];
    }
    return n;
}

static struct jj_node *parse_postfix(struct parser *P, struct jj_node *n)
{
    while (n) {
        struct jj_token *t = peek(P);
        if (is_op(t, ".")) {
            next(P);
            struct jj_token *nm = next(P);
            struct jj_node *a;
            if (nm->kind == JT_NAME) {
                if (!(a = node(P, JN_ATTR, nm)))
                    return NULL;
                a->name = nm->text;
            } else if (nm->kind == JT_INT) { /* foo.0 is foo[0] */
                if (!(a = node(P, JN_INDEX, nm)) || !(a->b = lit_node(P, nm, json_integer(nm->ival))))
                    return NULL;
            } else {
                return perr(P, nm, "expected an attribute name after '.'");
            }
            a->a = n;
            n = a;
        } else if (is_op(t, "[")) {
            next(P);
            n = parse_subscript(P, n, t);
        } else if (is_op(t, "(")) {
            struct jj_node *c = node(P, JN_CALL, t);
            if (!c)
                return NULL;
            c->line = n->line; /* errors point at the callee, not at '(' */
            c->col = n->col;
            c->a = n;
            if (!parse_call_args(P, c))
                return NULL;
            n = c;
        } else {
            break;
        }
    }
    return n;
}

/* "name(args)" of a filter applied to n. */
static struct jj_node *parse_one_filter(struct parser *P, struct jj_node *n)
{
    struct jj_token *nm = next(P);
    if (nm->kind != JT_NAME)
        return perr(P, nm, "expected a filter name");
    struct jj_node *f = node(P, JN_FILTER, nm);
    if (!f || !n)
        return NULL;
    f->name = nm->text;
    f->a = n;
    if (is_op(peek(P), "(") && !parse_call_args(P, f))
        return NULL;
    return f;
}

/* Filters "| name(args)" and tests "is [not] name args" after a unary. */
static struct jj_node *parse_filter_expr(struct parser *P, struct jj_node *n)
{
    while (n) {
        struct jj_token *t = peek(P);
        if (is_op(t, "|")) {
            next(P);
            n = parse_one_filter(P, n);
        } else if (is_name(t, "is")) {
            next(P);
            bool neg = false;
            if (is_name(peek(P), "not")) {
                next(P);
                neg = true;
            }
            struct jj_token *nm = next(P);
            if (nm->kind != JT_NAME)
                return perr(P, nm, "expected a test name after 'is'");
            struct jj_node *f = node(P, JN_TEST, nm);
            if (!f)
                return NULL;
            f->name = nm->text;
            f->negate = neg;
            f->a = n;
            struct jj_token *u = peek(P);
            if (is_op(u, "(")) {
                if (!parse_call_args(P, f))
                    return NULL;
            } else if (u->kind == JT_STRING || u->kind == JT_INT || u->kind == JT_FLOAT || is_op(u, "[") ||
                       is_op(u, "{") ||
                       (u->kind == JT_NAME && !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and") &&
                        !is_name(u, "is") && !is_name(u, "in") && !is_name(u, "not") && !is_name(u, "if"))) {
                /* "is divisibleby 3", "is sameas none": one argument, no parens */
                struct jj_node *arg = parse_postfix(P, parse_primary(P));
                if (!list_add(P, &f->args, arg))
                    return NULL;
                f->kw = jj_alloc(P->t->arena, sizeof(*f->kw));
            }
            n = f;
        } else if (is_op(t, "(")) {
            n = parse_postfix(P, n);
        } else {
            break;
        }
    }
    return n;
}

static struct jj_node *parse_unary(struct parser *P, bool with_filter)
{
    if (!enter(P))
        return NULL;
    struct jj_token *t = peek(P);
    struct jj_node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = node(P, JN_UNARY, t);
        if (n) {
            strcpy(n->op, t->op);
            if (!(n->a = parse_unary(P, false)))
                return NULL;
        }
    } else {
        n = parse_primary(P);
    }
    n = parse_postfix(P, n);
    if (with_filter)
        n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static struct jj_node *binary(struct parser *P, struct jj_token *t, struct jj_node *l, struct jj_node *r,
                              enum jj_node_kind k)
{
    if (!l || !r)
        return NULL;
    struct jj_node *n = node(P, k, t);
    if (!n)
        return NULL;
    if (t->kind == JT_OP)
        strcpy(n->op, t->op);
    n->a = l;
    n->b = r;
    return n;
}

static struct jj_node *parse_pow(struct parser *P)
{
    struct jj_node *l = parse_unary(P, true);
    while (l && is_op(peek(P), "**")) {
        struct jj_token *t = next(P);
        l = binary(P, t, l, parse_unary(P, true), JN_BINARY);
    }
    return l;
}

static struct jj_node *parse_math2(struct parser *P)
{
    struct jj_node *l = parse_pow(P);
    while (l) {
        struct jj_token *t = peek(P);
        if (!is_op(t, "*") && !is_op(t, "/") && !is_op(t, "//") && !is_op(t, "%"))
            break;
        next(P);
        l = binary(P, t, l, parse_pow(P), JN_BINARY);
    }
    return l;
}

static struct jj_node *parse_concat(struct parser *P)
{
    struct jj_node *l = parse_math2(P);
    while (l && is_op(peek(P), "~")) {
        struct jj_token *t = next(P);
        l = binary(P, t, l, parse_math2(P), JN_BINARY);
    }
    return l;
}

static struct jj_node *parse_math1(struct parser *P)
{
    struct jj_node *l = parse_concat(P);
    while (l) {
        struct jj_token *t = peek(P);
        if (!is_op(t, "+") && !is_op(t, "-"))
            break;
        next(P);
        l = binary(P, t, l, parse_concat(P), JN_BINARY);
    }
    return l;
}

static struct jj_node *parse_compare(struct parser *P)
{
    struct jj_node *l = parse_math1(P);
    while (l) {
        struct jj_token *t = peek(P);
        const char *op = NULL;
        if (t->kind == JT_OP && (!strcmp(t->op, "==") || !strcmp(t->op, "!=") || !strcmp(t->op, "<") ||
                                 !strcmp(t->op, "<=") || !strcmp(t->op, ">") || !strcmp(t->op, ">=")))
            op = t->op;
        else if (is_name(t, "in"))
            op = "in";
        else if (is_name(t, "not") && is_name(peek2(P), "in"))
            op = "ni"; /* not in */
        if (!op)
            break;
        next(P);
        if (!strcmp(op, "ni"))
            next(P);
        /* a < b < c is chained in jinja2; templates do not use that, so
         * it is parsed left-associatively like other binaries. */
        struct jj_node *n = binary(P, t, l, parse_math1(P), JN_COMPARE);
        if (n)
            strcpy(n->op, op);
        l = n;
    }
    return l;
}

static struct jj_node *parse_not(struct parser *P)
{
    struct jj_token *t = peek(P);
    if (is_name(t, "not")) {
        next(P);
        if (!enter(P))
            return NULL;
        struct jj_node *n = node(P, JN_NOT, t);
        if (n && !(n->a = parse_not(P)))
            return NULL;
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static struct jj_node *parse_and(struct parser *P)
{
    struct jj_node *l = parse_not(P);
    while (l && is_name(peek(P), "and")) {
        struct jj_token *t = next(P);
        l = binary(P, t, l, parse_not(P), JN_AND);
    }
    return l;
}

static struct jj_node *parse_or(struct parser *P)
{
    struct jj_node *l = parse_and(P);
    while (l && is_name(peek(P), "or")) {
        struct jj_token *t = next(P);
        l = binary(P, t, l, parse_and(P), JN_OR);
    }
    return l;
}

/* a if cond [else b] */
static struct jj_node *parse_expr(struct parser *P)
{
    if (!enter(P))
        return NULL;
    struct jj_node *l = parse_or(P);
    while (l && is_name(peek(P), "if")) {
        struct jj_token *t = next(P);
        struct jj_node *n = node(P, JN_COND, t);
        if (!n)
            return NULL;
        n->a = l;
        if (!(n->b = parse_or(P)))
            return NULL;
        if (is_name(peek(P), "else")) {
            next(P);
            if (!(n->c = parse_expr(P)))
                return NULL;
        }
        l = n;
    }
    P->depth--;
    return l;
}

/* ---- statements --------------------------------------------------------- */

static bool expect_end(struct parser *P)
{
    struct jj_token *t = peek(P);
    if (t->kind != JT_BLOCK_END) {
        perr(P, t, "expected '%%}', got '%s'", tok_desc(t));
        return false;
    }
    next(P);
    return true;
}

/* Statements until {% <one of ends> ...; leaves P on that name. */
static bool parse_body(struct parser *P, struct jj_list *body, const char *const *ends, const struct jj_token *open);

static struct jj_node *parse_stmt(struct parser *P);

static bool at_end_tag(struct parser *P, const char *const *ends)
{
    if (peek(P)->kind != JT_BLOCK_BEGIN || !ends)
        return false;
    struct jj_token *nm = peek2(P);
    for (int i = 0; ends[i]; i++)
        if (is_name(nm, ends[i]))
            return true;
    return false;
}

static bool parse_body(struct parser *P, struct jj_list *body, const char *const *ends, const struct jj_token *open)
{
    if (!enter(P))
        return false;
    for (;;) {
        struct jj_token *t = peek(P);
        if (t->kind == JT_EOF) {
            if (ends) {
                perr(P, open, "'%s' is never closed (expected '%s')", open->text, ends[0]);
                return false;
            }
            break;
        }
        if (at_end_tag(P, ends)) {
            next(P);
            break;
        }
        if (!list_add(P, body, parse_stmt(P)))
            return false;
    }
    P->depth--;
    return true;
}

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_FOR[] = {"else", "endfor", NULL};
static const char *const END_FOR2[] = {"endfor", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_CALL[] = {"endcall", NULL};
static const char *const END_FILTER[] = {"endfilter", NULL};
static const char *const END_GEN[] = {"endgeneration", NULL};

static struct jj_node *parse_if(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = node(P, JN_IF, kw);
    if (!n || !(n->a = parse_tuple(P, false)) || !expect_end(P) || !parse_body(P, &n->body, END_IF, kw))
        return NULL;
    struct jj_token *e = next(P);
    if (is_name(e, "elif")) {
        if (!list_add(P, &n->orelse, parse_if(P, e)))
            return NULL;
        return n; /* the nested if consumed endif */
    }
    if (is_name(e, "else")) {
        if (!expect_end(P) || !parse_body(P, &n->orelse, END_IF + 2, kw))
            return NULL;
        next(P);
    }
    return expect_end(P) ? n : NULL;
}

static struct jj_node *parse_target(struct parser *P)
{
    struct jj_node *t = parse_tuple(P, true);
    if (!t)
        return NULL;
    if (t->kind == JN_NAME)
        return t;
    if (t->kind == JN_LIST && t->is_tuple) {
        for (size_t i = 0; i < t->args.n; i++)
            if (t->args.v[i]->kind != JN_NAME)
                return perr(P, peek(P), "can only unpack into names");
        return t;
    }
    return perr(P, peek(P), "cannot assign to this expression");
}

static struct jj_node *parse_for(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = node(P, JN_FOR, kw);
    if (!n || !(n->c = parse_target(P)))
        return NULL;
    if (!is_name(peek(P), "in"))
        return perr(P, peek(P), "expected 'in' in for loop");
    next(P);
    struct jj_token *at = peek(P);
    struct jj_node *it = parse_or(P); /* no "x if c": "if" filters the loop */
    if (it && is_op(peek(P), ",")) {   /* for x in a, b */
        struct jj_node *tup = node(P, JN_LIST, at);
        if (!tup || !list_add(P, &tup->args, it))
            return NULL;
        tup->is_tuple = true;
        while (is_op(peek(P), ",")) {
            next(P);
            if (!list_add(P, &tup->args, parse_or(P)))
                return NULL;
        }
        it = tup;
    }
    if (!(n->a = it))
        return NULL;
    if (is_name(peek(P), "if")) {
        next(P);
        if (!(n->b = parse_expr(P)))
            return NULL;
    }
    if (is_name(peek(P), "recursive"))
        return perr(P, peek(P), "recursive loops are not supported");
    if (!expect_end(P) || !parse_body(P, &n->body, END_FOR, kw))
        return NULL;
    if (is_name(next(P), "else")) {
        if (!expect_end(P) || !parse_body(P, &n->orelse, END_FOR2, kw))
            return NULL;
        next(P);
    }
    return expect_end(P) ? n : NULL;
}

static struct jj_node *parse_set(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = node(P, JN_SET, kw);
    if (!n)
        return NULL;
    struct jj_token *at = peek(P);
    if (at->kind == JT_NAME && is_op(peek2(P), ".")) { /* ns.attr = ... */
        next(P);
        next(P);
        struct jj_token *attr = next(P);
        if (attr->kind != JT_NAME)
            return perr(P, attr, "expected an attribute name");
        struct jj_node *obj = node(P, JN_NAME, at), *a = node(P, JN_ATTR, attr);
        if (!obj || !a)
            return NULL;
        obj->name = at->text;
        a->a = obj;
        a->name = attr->text;
        n->c = a;
    } else if (!(n->c = parse_target(P))) {
        return NULL;
    }
    if (is_op(peek(P), "=")) {
        next(P);
        if (!(n->a = parse_tuple(P, false)) || !expect_end(P))
            return NULL;
        return n;
    }
    /* block set, optionally filtered: {% set x | trim %}...{% endset %} */
    n->kind = JN_SET_BLOCK;
    if (n->c->kind != JN_NAME)
        return perr(P, at, "block set needs a plain name");
    if (is_op(peek(P), "|")) {
        struct jj_node *ph = lit_node(P, at, json_string(""));
        if (!(n->b = parse_filter_expr(P, ph)))
            return NULL;
    }
    if (!expect_end(P) || !parse_body(P, &n->body, END_SET, kw))
        return NULL;
    next(P);
    return expect_end(P) ? n : NULL;
}

/* Macro / caller parameters: (a, b=default, ...) into args + kw-as-default. */
static bool parse_params(struct parser *P, struct jj_node *n)
{
    if (!expect_op(P, "("))
        return false;
    while (!is_op(peek(P), ")")) {
        if (n->args.n && !expect_op(P, ","))
            return false;
        struct jj_token *nm = next(P);
        if (nm->kind != JT_NAME) {
            perr(P, nm, "expected a parameter name");
            return false;
        }
        struct jj_node *p = node(P, JN_NAME, nm);
        if (!p)
            return false;
        p->name = nm->text;
        if (is_op(peek(P), "=")) {
            next(P);
            if (!(p->a = parse_expr(P)))
                return false;
        }
        if (!list_add(P, &n->args, p))
            return false;
    }
    next(P);
    return true;
}

static struct jj_node *parse_macro(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = node(P, JN_MACRO, kw);
    struct jj_token *nm = next(P);
    if (!n)
        return NULL;
    if (nm->kind != JT_NAME)
        return perr(P, nm, "expected a macro name");
    n->name = nm->text;
    if (!parse_params(P, n) || !expect_end(P) || !parse_body(P, &n->body, END_MACRO, kw))
        return NULL;
    next(P);
    return expect_end(P) ? n : NULL;
}

static struct jj_node *parse_call_block(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = node(P, JN_CALL_BLOCK, kw);
    if (!n)
        return NULL;
    if (is_op(peek(P), "(") && !parse_params(P, n))
        return NULL;
    struct jj_token *at = peek(P);
    if (!(n->a = parse_expr(P)))
        return NULL;
    if (n->a->kind != JN_CALL)
        return perr(P, at, "expected a macro call after 'call'");
    if (!expect_end(P) || !parse_body(P, &n->body, END_CALL, kw))
        return NULL;
    next(P);
    return expect_end(P) ? n : NULL;
}

static struct jj_node *parse_stmt(struct parser *P)
{
    struct jj_token *t = next(P);
    if (t->kind == JT_TEXT) {
        struct jj_node *n = node(P, JN_TEXT, t);
        if (n) {
            n->name = t->text;
            n->len = t->len;
        }
        return n;
    }
    if (t->kind == JT_VAR_BEGIN) {
        struct jj_node *n = node(P, JN_OUTPUT, t);
        if (!n || !(n->a = parse_tuple(P, false)))
            return NULL;
        if (peek(P)->kind != JT_VAR_END)
            return perr(P, peek(P), "expected '}}', got '%s'", tok_desc(peek(P)));
        next(P);
        return n;
    }
    if (t->kind != JT_BLOCK_BEGIN)
        return perr(P, t, "unexpected %s", tok_desc(t));
    struct jj_token *kw = next(P);
    if (kw->kind != JT_NAME)
        return perr(P, kw, "expected a statement name, got '%s'", tok_desc(kw));
    const char *k = kw->text;
    if (!strcmp(k, "if"))
        return parse_if(P, kw);
    if (!strcmp(k, "for"))
        return parse_for(P, kw);
    if (!strcmp(k, "set"))
        return parse_set(P, kw);
    if (!strcmp(k, "macro"))
        return parse_macro(P, kw);
    if (!strcmp(k, "call"))
        return parse_call_block(P, kw);
    if (!strcmp(k, "break") || !strcmp(k, "continue")) {
        struct jj_node *n = node(P, k[0] == 'b' ? JN_BREAK : JN_CONTINUE, kw);
        return n && expect_end(P) ? n : NULL;
    }
    if (!strcmp(k, "filter")) {
        struct jj_node *n = node(P, JN_FILTER_BLOCK, kw);
        if (!n)
            return NULL;
        /* "name(args) | name2 ..." as filters applied to a placeholder */
        struct jj_node *ph = lit_node(P, kw, json_string(""));
        n->b = parse_one_filter(P, ph);
        if (n->b)
            n->b = parse_filter_expr(P, n->b);
        if (!n->b || !expect_end(P) || !parse_body(P, &n->body, END_FILTER, kw))
            return NULL;
        next(P);
        return expect_end(P) ? n : NULL;
    }
    if (!strcmp(k, "generation")) { /* HF's assistant-mask tag: renders its body */
        struct jj_node *n = node(P, JN_BODY, kw);
        if (!n || !expect_end(P) || !parse_body(P, &n->body, END_GEN, kw))
            return NULL;
        next(P);
        return expect_end(P) ? n : NULL;
    }
    if (!strncmp(k, "end", 3) || !strcmp(k, "else") || !strcmp(k, "elif"))
        return perr(P, kw, "unexpected '%s'", k);
    return perr(P, kw, "unknown statement '%s'", k);
}

int jj_parse(struct jj_template *t, struct jj_token *toks, size_t ntoks)
{
    struct parser P = {.t = t, .tok = toks, .n = ntoks};
    struct jj_node *root = node(&P, JN_BODY, &toks[0]);
    if (!root)
        return P.rc;
    if (!parse_body(&P, &root->body, NULL, &toks[0]))
        return P.rc < 0 ? P.rc : zl_error(ZL_EINVAL, "template: parse failed");
    t->root = root;
    return 0;
}
