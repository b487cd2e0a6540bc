/* Jinja parser: tokens -> AST (jj_node), following jinja2's grammar and
 * operator precedence (or < and < not < compare < +,- < ~ < *,/,//,% < **
 * < unary < postfix/filters/tests). */
#include "jinja-parse-impl.h"

#include <zlight/status.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>



void *jp_perr(struct parser *P, const struct jj_token *t, const char *fmt, ...)
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


const char *jp_tok_desc(const struct jj_token *t)
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

bool jp_expect_op(struct parser *P, const char *op)
{
    struct jj_token *t = peek(P);
    if (!is_op(t, op)) {
        jp_perr(P, t, "expected '%s', got '%s'", op, jp_tok_desc(t));
        return false;
    }
    next(P);
    return true;
}

struct jj_node *jp_node(struct parser *P, enum jj_node_kind k, const struct jj_token *at)
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

bool jp_list_add(struct parser *P, struct jj_list *l, struct jj_node *x)
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

struct jj_node *jp_lit_node(struct parser *P, const struct jj_token *at, json_t *v)
{
    struct jj_template *t = P->t;
    struct jj_node *n = jp_node(P, JN_LIT, at);
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

static struct jj_node *parse_unary(struct parser *P, bool with_filter);
static struct jj_node *parse_primary(struct parser *P);
static struct jj_node *parse_postfix(struct parser *P, struct jj_node *n);

/* (args) after a callee / filter / test: positional and name=value. */
static bool parse_call_args(struct parser *P, struct jj_node *n)
{
    size_t cap = 0;
    if (!jp_expect_op(P, "("))
        return false;
    while (!is_op(peek(P), ")")) {
        if (n->args.n && !jp_expect_op(P, ","))
            return false;
        if (is_op(peek(P), ")"))
            break;
        const char *kw = NULL;
        if (peek(P)->kind == JT_NAME && is_op(peek2(P), "=")) {
            kw = next(P)->text;
            next(P);
        }
        if (!jp_list_add(P, &n->args, jp_parse_expr(P)))
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

struct jj_node *jp_enter(struct parser *P)
{
    if (++P->depth > JJ_MAX_PARSE_DEPTH)
        return jp_perr(P, peek(P), "nesting too deep");
    return (struct jj_node *)1;
}

/* Tuple or a single expression, as jinja2's parse_tuple (for targets of
 * "for"/"set", and bare "a, b" in expressions). */
struct jj_node *jp_parse_tuple(struct parser *P, bool simplified)
{
    struct jj_token *at = peek(P);
    struct jj_node *first = simplified ? parse_primary(P) : jp_parse_expr(P);
    if (!first || !is_op(peek(P), ","))
        return first;
    struct jj_node *tup = jp_node(P, JN_LIST, at);
    if (!tup || !jp_list_add(P, &tup->args, first))
        return NULL;
    tup->is_tuple = true;
    while (is_op(peek(P), ",")) {
        next(P);
        struct jj_token *t = peek(P);
        if (t->kind == JT_BLOCK_END || t->kind == JT_VAR_END || is_op(t, ")") || is_name(t, "in") || is_op(t, "="))
            break;
        if (!jp_list_add(P, &tup->args, simplified ? parse_primary(P) : jp_parse_expr(P)))
            return NULL;
    }
    return tup;
}

static struct jj_node *parse_primary(struct parser *P)
{
    if (!jp_enter(P))
        return NULL;
    struct jj_token *t = next(P);
    struct jj_node *n = NULL;
    switch (t->kind) {
    case JT_NAME:
        if (!strcmp(t->text, "true") || !strcmp(t->text, "True"))
            n = jp_lit_node(P, t, json_true());
        else if (!strcmp(t->text, "false") || !strcmp(t->text, "False"))
            n = jp_lit_node(P, t, json_false());
        else if (!strcmp(t->text, "none") || !strcmp(t->text, "None"))
            n = jp_lit_node(P, t, json_null());
        else if ((n = jp_node(P, JN_NAME, t)))
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
        n = jp_lit_node(P, t, json_stringn_nocheck(s, o));
        break;
    }
    case JT_INT:
        n = jp_lit_node(P, t, json_integer(t->ival));
        break;
    case JT_FLOAT:
        n = jp_lit_node(P, t, json_real(t->fval));
        break;
    case JT_OP:
        if (is_op(t, "(")) {
            if (is_op(peek(P), ")")) {
                next(P);
                if ((n = jp_node(P, JN_LIST, t)))
                    n->is_tuple = true;
                break;
            }
            n = jp_parse_tuple(P, false);
            if (n && !jp_expect_op(P, ")"))
                n = NULL;
        } else if (is_op(t, "[")) {
            n = jp_node(P, JN_LIST, t);
            while (n && !is_op(peek(P), "]")) {
                if (n->args.n && !jp_expect_op(P, ","))
                    return NULL;
                if (is_op(peek(P), "]"))
                    break;
                if (!jp_list_add(P, &n->args, jp_parse_expr(P)))
                    return NULL;
            }
            next(P);
        } else if (is_op(t, "{")) {
            n = jp_node(P, JN_DICT, t);
            while (n && !is_op(peek(P), "}")) {
                if (n->args.n && !jp_expect_op(P, ","))
                    return NULL;
                if (is_op(peek(P), "}"))
                    break;
                if (!jp_list_add(P, &n->args, jp_parse_expr(P)) || !jp_expect_op(P, ":") ||
                    !jp_list_add(P, &n->args, jp_parse_expr(P)))
                    return NULL;
            }
            next(P);
        } else {
            return jp_perr(P, t, "unexpected '%s'", t->op);
        }
        break;
    default:
        return jp_perr(P, t, "expected an expression, got %s", jp_tok_desc(t));
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
                return jp_perr(P, t, "too many ':' in slice");
            next(P);
            continue;
        }
        if (is_op(t, "]"))
            break;
        if (parts[np])
            return jp_perr(P, t, "expected ']'");
        if (!(parts[np] = jp_parse_expr(P)))
            return NULL;
    }
    next(P);
    struct jj_node *n = jp_node(P, slice ? JN_SLICE : JN_INDEX, at);
    if (!n)
        return NULL;
    n->a = obj;
    if (slice) {
        n->b = parts[0];
        n->c = parts[1];
        n->args.v = NULL;
        if (parts[2] && !jp_list_add(P, &n->args, parts[2]))
            return NULL;
    } else {
        if (!parts[0])
            return jp_perr(P, at, "empty subscript");
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
                if (!(a = jp_node(P, JN_ATTR, nm)))
                    return NULL;
                a->name = nm->text;
            } else if (nm->kind == JT_INT) { /* foo.0 is foo[0] */
                if (!(a = jp_node(P, JN_INDEX, nm)) || !(a->b = jp_lit_node(P, nm, json_integer(nm->ival))))
                    return NULL;
            } else {
                return jp_perr(P, nm, "expected an attribute name after '.'");
            }
            a->a = n;
            n = a;
        } else if (is_op(t, "[")) {
            next(P);
            n = parse_subscript(P, n, t);
        } else if (is_op(t, "(")) {
            struct jj_node *c = jp_node(P, JN_CALL, t);
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
struct jj_node *jp_parse_one_filter(struct parser *P, struct jj_node *n)
{
    struct jj_token *nm = next(P);
    if (nm->kind != JT_NAME)
        return jp_perr(P, nm, "expected a filter name");
    struct jj_node *f = jp_node(P, JN_FILTER, nm);
    if (!f || !n)
        return NULL;
    f->name = nm->text;
    f->a = n;
    if (is_op(peek(P), "(") && !parse_call_args(P, f))
        return NULL;
    return f;
}

/* Filters "| name(args)" and tests "is [not] name args" after a unary. */
struct jj_node *jp_parse_filter_expr(struct parser *P, struct jj_node *n)
{
    while (n) {
        struct jj_token *t = peek(P);
        if (is_op(t, "|")) {
            next(P);
            n = jp_parse_one_filter(P, n);
        } else if (is_name(t, "is")) {
            next(P);
            bool neg = false;
            if (is_name(peek(P), "not")) {
                next(P);
                neg = true;
            }
            struct jj_token *nm = next(P);
            if (nm->kind != JT_NAME)
                return jp_perr(P, nm, "expected a test name after 'is'");
            struct jj_node *f = jp_node(P, JN_TEST, nm);
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
                if (!jp_list_add(P, &f->args, arg))
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
    if (!jp_enter(P))
        return NULL;
    struct jj_token *t = peek(P);
    struct jj_node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = jp_node(P, JN_UNARY, t);
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
        n = jp_parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static struct jj_node *binary(struct parser *P, struct jj_token *t, struct jj_node *l, struct jj_node *r,
                              enum jj_node_kind k)
{
    if (!l || !r)
        return NULL;
    struct jj_node *n = jp_node(P, k, t);
    if (!n)
        return NULL;
    if (t->kind == JT_OP)
        strcpy(n->op, t->op);
    n->a = l;
    n->b = r;
    return n;
}

/* Binary operators by precedence, loosest first; all left-associative as in
 * jinja2 (even "**"). */
static const char *const LEVELS[][5] = {{"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
#define N_LEVELS (int)(sizeof(LEVELS) / sizeof(LEVELS[0]))

static struct jj_node *parse_level(struct parser *P, int lv)
{
    if (lv == N_LEVELS)
        return parse_unary(P, true);
    struct jj_node *l = parse_level(P, lv + 1);
    while (l) {
        struct jj_token *t = peek(P);
        bool hit = false;
        for (int i = 0; LEVELS[lv][i]; i++)
            hit |= is_op(t, LEVELS[lv][i]);
        if (!hit)
            break;
        next(P);
        l = binary(P, t, l, parse_level(P, lv + 1), JN_BINARY);
    }
    return l;
}

static struct jj_node *parse_compare(struct parser *P)
{
    struct jj_node *l = parse_level(P, 0), *result = l, *prev = NULL;
    while (l) {
        struct jj_token *t = peek(P);
        char op[4] = "";
        if (t->kind == JT_OP && (!strcmp(t->op, "==") || !strcmp(t->op, "!=") || !strcmp(t->op, "<") ||
                                 !strcmp(t->op, "<=") || !strcmp(t->op, ">") || !strcmp(t->op, ">=")))
            strcpy(op, t->op);
        else if (is_name(t, "in"))
            strcpy(op, "in");
        else if (is_name(t, "not") && is_name(peek2(P), "in"))
            strcpy(op, "ni"); /* not in */
        if (!op[0])
            break;
        next(P);
        if (!strcmp(op, "ni"))
            next(P);
        /* a < b < c means (a < b) and (b < c), as in Python */
        struct jj_node *operand = prev ? prev->b : l;
        struct jj_node *n = binary(P, t, operand, parse_level(P, 0), JN_COMPARE);
        if (!n)
            return NULL;
        strcpy(n->op, op);
        result = prev ? binary(P, t, result, n, JN_AND) : n;
        prev = n;
    }
    return result;
}

static struct jj_node *parse_not(struct parser *P)
{
    struct jj_token *t = peek(P);
    if (is_name(t, "not")) {
        next(P);
        if (!jp_enter(P))
            return NULL;
        struct jj_node *n = jp_node(P, JN_NOT, t);
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

struct jj_node *jp_parse_or(struct parser *P)
{
    struct jj_node *l = parse_and(P);
    while (l && is_name(peek(P), "or")) {
        struct jj_token *t = next(P);
        l = binary(P, t, l, parse_and(P), JN_OR);
    }
    return l;
}

/* a if cond [else b] */
struct jj_node *jp_parse_expr(struct parser *P)
{
    if (!jp_enter(P))
        return NULL;
    struct jj_node *l = jp_parse_or(P);
    while (l && is_name(peek(P), "if")) {
        struct jj_token *t = next(P);
        struct jj_node *n = jp_node(P, JN_COND, t);
        if (!n)
            return NULL;
        n->a = l;
        if (!(n->b = jp_parse_or(P)))
            return NULL;
        if (is_name(peek(P), "else")) {
            next(P);
            if (!(n->c = jp_parse_expr(P)))
                return NULL;
        }
        l = n;
    }
    P->depth--;
    return l;
}

