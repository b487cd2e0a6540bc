/* Jinja statements: if/elif/else, for (with else and a filter), set (also
 * block set and namespace attributes), macro, call, filter blocks,
 * break/continue and HF's generation tag; the parser's entry point. */
#include "jinja-parse-impl.h"

#include <zlight/status.h>

#include <string.h>

static bool expect_end(struct parser *P)
{
    struct jj_token *t = peek(P);
    if (t->kind != JT_BLOCK_END) {
        jp_perr(P, t, "expected '%%}', got '%s'", jp_tok_desc(t));
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
    if (!jp_enter(P))
        return false;
    for (;;) {
        struct jj_token *t = peek(P);
        if (t->kind == JT_EOF) {
            if (ends) {
                jp_perr(P, open, "'%s' is never closed (expected '%s')", open->text, ends[0]);
                return false;
            }
            break;
        }
        if (at_end_tag(P, ends)) {
            next(P);
            break;
        }
        if (!jp_list_add(P, body, parse_stmt(P)))
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

/* "%}", the body up to {% <end> %}, then that end tag itself. */
static struct jj_node *block_rest(struct parser *P, struct jj_node *n, const char *const *ends,
                                  const struct jj_token *kw)
{
    if (!expect_end(P) || !parse_body(P, &n->body, ends, kw))
        return NULL;
    next(P);
    return expect_end(P) ? n : NULL;
}

static struct jj_node *parse_if(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = jp_node(P, JN_IF, kw);
    if (!n || !(n->a = jp_parse_tuple(P, false)) || !expect_end(P) || !parse_body(P, &n->body, END_IF, kw))
        return NULL;
    struct jj_token *e = next(P);
    if (is_name(e, "elif")) {
        if (!jp_list_add(P, &n->orelse, parse_if(P, e)))
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
    struct jj_node *t = jp_parse_tuple(P, true);
    if (!t)
        return NULL;
    if (t->kind == JN_NAME)
        return t;
    if (t->kind == JN_LIST && t->is_tuple) {
        for (size_t i = 0; i < t->args.n; i++)
            if (t->args.v[i]->kind != JN_NAME)
                return jp_perr(P, peek(P), "can only unpack into names");
        return t;
    }
    return jp_perr(P, peek(P), "cannot assign to this expression");
}

static struct jj_node *parse_for(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = jp_node(P, JN_FOR, kw);
    if (!n || !(n->c = parse_target(P)))
        return NULL;
    if (!is_name(peek(P), "in"))
        return jp_perr(P, peek(P), "expected 'in' in for loop");
    next(P);
    struct jj_token *at = peek(P);
    struct jj_node *it = jp_parse_or(P); /* no "x if c": "if" filters the loop */
    if (it && is_op(peek(P), ",")) {   /* for x in a, b */
        struct jj_node *tup = jp_node(P, JN_LIST, at);
        if (!tup || !jp_list_add(P, &tup->args, it))
            return NULL;
        tup->is_tuple = true;
        while (is_op(peek(P), ",")) {
            next(P);
            if (!jp_list_add(P, &tup->args, jp_parse_or(P)))
                return NULL;
        }
        it = tup;
    }
    if (!(n->a = it))
        return NULL;
    if (is_name(peek(P), "if")) {
        next(P);
        if (!(n->b = jp_parse_expr(P)))
            return NULL;
    }
    if (is_name(peek(P), "recursive"))
        return jp_perr(P, peek(P), "recursive loops are not supported");
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
    struct jj_node *n = jp_node(P, JN_SET, kw);
    if (!n)
        return NULL;
    struct jj_token *at = peek(P);
    if (at->kind == JT_NAME && is_op(peek2(P), ".")) { /* ns.attr = ... */
        next(P);
        next(P);
        struct jj_token *attr = next(P);
        if (attr->kind != JT_NAME)
            return jp_perr(P, attr, "expected an attribute name");
        struct jj_node *obj = jp_node(P, JN_NAME, at), *a = jp_node(P, JN_ATTR, attr);
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
        if (!(n->a = jp_parse_tuple(P, false)) || !expect_end(P))
            return NULL;
        return n;
    }
    /* block set, optionally filtered: {% set x | trim %}...{% endset %} */
    n->kind = JN_SET_BLOCK;
    if (n->c->kind != JN_NAME)
        return jp_perr(P, at, "block set needs a plain name");
    if (is_op(peek(P), "|")) {
        struct jj_node *ph = jp_lit_node(P, at, json_string(""));
        if (!(n->b = jp_parse_filter_expr(P, ph)))
            return NULL;
    }
    return block_rest(P, n, END_SET, kw);
}

/* Macro / caller parameters: (a, b=default, ...) into args + kw-as-default. */
static bool parse_params(struct parser *P, struct jj_node *n)
{
    if (!jp_expect_op(P, "("))
        return false;
    while (!is_op(peek(P), ")")) {
        if (n->args.n && !jp_expect_op(P, ","))
            return false;
        struct jj_token *nm = next(P);
        if (nm->kind != JT_NAME) {
            jp_perr(P, nm, "expected a parameter name");
            return false;
        }
        struct jj_node *p = jp_node(P, JN_NAME, nm);
        if (!p)
            return false;
        p->name = nm->text;
        if (is_op(peek(P), "=")) {
            next(P);
            if (!(p->a = jp_parse_expr(P)))
                return false;
        }
        if (!jp_list_add(P, &n->args, p))
            return false;
    }
    next(P);
    return true;
}

static struct jj_node *parse_macro(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = jp_node(P, JN_MACRO, kw);
    struct jj_token *nm = next(P);
    if (!n)
        return NULL;
    if (nm->kind != JT_NAME)
        return jp_perr(P, nm, "expected a macro name");
    n->name = nm->text;
    return parse_params(P, n) ? block_rest(P, n, END_MACRO, kw) : NULL;
}

static struct jj_node *parse_call_block(struct parser *P, struct jj_token *kw)
{
    struct jj_node *n = jp_node(P, JN_CALL_BLOCK, kw);
    if (!n)
        return NULL;
    if (is_op(peek(P), "(") && !parse_params(P, n))
        return NULL;
    struct jj_token *at = peek(P);
    if (!(n->a = jp_parse_expr(P)))
        return NULL;
    if (n->a->kind != JN_CALL)
        return jp_perr(P, at, "expected a macro call after 'call'");
    return block_rest(P, n, END_CALL, kw);
}

static struct jj_node *parse_stmt(struct parser *P)
{
    struct jj_token *t = next(P);
    if (t->kind == JT_TEXT) {
        struct jj_node *n = jp_node(P, JN_TEXT, t);
        if (n) {
            n->name = t->text;
            n->len = t->len;
        }
        return n;
    }
    if (t->kind == JT_VAR_BEGIN) {
        struct jj_node *n = jp_node(P, JN_OUTPUT, t);
        if (!n || !(n->a = jp_parse_tuple(P, false)))
            return NULL;
        if (peek(P)->kind != JT_VAR_END)
            return jp_perr(P, peek(P), "expected '}}', got '%s'", jp_tok_desc(peek(P)));
        next(P);
        return n;
    }
    if (t->kind != JT_BLOCK_BEGIN)
        return jp_perr(P, t, "unexpected %s", jp_tok_desc(t));
    struct jj_token *kw = next(P);
    if (kw->kind != JT_NAME)
        return jp_perr(P, kw, "expected a statement name, got '%s'", jp_tok_desc(kw));
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
        struct jj_node *n = jp_node(P, k[0] == 'b' ? JN_BREAK : JN_CONTINUE, kw);
        return n && expect_end(P) ? n : NULL;
    }
    if (!strcmp(k, "filter")) {
        struct jj_node *n = jp_node(P, JN_FILTER_BLOCK, kw);
        if (!n)
            return NULL;
        /* "name(args) | name2 ..." as filters applied to a placeholder */
        struct jj_node *ph = jp_lit_node(P, kw, json_string(""));
        n->b = jp_parse_one_filter(P, ph);
        if (n->b)
            n->b = jp_parse_filter_expr(P, n->b);
        return n->b ? block_rest(P, n, END_FILTER, kw) : NULL;
    }
    if (!strcmp(k, "generation")) { /* HF's assistant-mask tag: renders its body */
        struct jj_node *n = jp_node(P, JN_BODY, kw);
        return n ? block_rest(P, n, END_GEN, kw) : NULL;
    }
    if (!strncmp(k, "end", 3) || !strcmp(k, "else") || !strcmp(k, "elif"))
        return jp_perr(P, kw, "unexpected '%s'", k);
    return jp_perr(P, kw, "unknown statement '%s'", k);
}

int jj_parse(struct jj_template *t, struct jj_token *toks, size_t ntoks)
{
    struct parser P = {.t = t, .tok = toks, .n = ntoks};
    struct jj_node *root = jp_node(&P, JN_BODY, &toks[0]);
    if (!root)
        return P.rc;
    if (!parse_body(&P, &root->body, NULL, &toks[0]))
        return P.rc < 0 ? P.rc : zl_error(ZL_EINVAL, "template: parse failed");
    t->root = root;
    return 0;
}
