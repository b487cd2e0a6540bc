/* Jinja evaluator, statements: output, set, for (loop variables), if,
 * macro and call blocks, filter blocks, and the render's entry point,
 * jj_render.  Expressions are jinja-eval.c's. */
#include "jinja-eval-impl.h"

#include <zlight/status.h>

#include <stdlib.h>
#include <string.h>

/* ---- statements ------------------------------------------------------------ */

static void emit(struct jj_ctx *c, const struct jj_node *n, const char *s, size_t len)
{
    if (!jj_buf_put(c->out, s, len))
        jj_output_overflow(c, n);
}

static bool assign(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *target, json_t *v)
{
    if (target->kind == JN_NAME) {
        jj_bind(f, target->name, v);
        return true;
    }
    if (target->kind == JN_ATTR) {
        json_t *ns = jj_lookup(c, f, target->a->name);
        bool ok = ns && jj_is_namespace(c, ns);
        if (ok)
            json_object_set_new(ns, target->name, v ? v : json_null());
        else
            json_decref(v);
        json_decref(ns);
        if (!ok)
            jj_fail(c, target, "cannot assign attribute on non-namespace object '%s'", target->a->name);
        return ok;
    }
    /* tuple unpacking */
    size_t want = target->args.n;
    if (!v || !json_is_array(v) || json_array_size(v) != want) {
        jj_fail(c, target, "cannot unpack %s into %zu names", v && json_is_array(v) ? "a list of other length" : jj_type_name(v),
                want);
        json_decref(v);
        return false;
    }
    for (size_t i = 0; i < want; i++)
        jj_bind(f, target->args.v[i]->name, json_incref(json_array_get(v, i)));
    json_decref(v);
    return true;
}

static json_t *loop_object(size_t i, size_t len, json_t *items)
{
    json_t *l = json_object();
    if (!l)
        return NULL;
    json_object_set_new(l, "index", json_integer((long long)i + 1));
    json_object_set_new(l, "index0", json_integer((long long)i));
    json_object_set_new(l, "revindex", json_integer((long long)(len - i)));
    json_object_set_new(l, "revindex0", json_integer((long long)(len - i - 1)));
    json_object_set_new(l, "first", json_boolean(i == 0));
    json_object_set_new(l, "last", json_boolean(i + 1 == len));
    json_object_set_new(l, "length", json_integer((long long)len));
    json_object_set_new(l, "depth", json_integer(1));
    json_object_set_new(l, "depth0", json_integer(0));
    if (i > 0)
        json_object_set(l, "previtem", json_array_get(items, i - 1));
    if (i + 1 < len)
        json_object_set(l, "nextitem", json_array_get(items, i + 1));
    return l;
}

static void exec_for(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    json_t *src = jj_eval(c, f, n->a);
    json_t *all = c->failed ? NULL : jj_iter_list(c, n->a, src);
    json_decref(src);
    if (!all)
        return;
    struct jj_frame *lf = jj_frame_push(c, f);
    json_t *items = n->b ? json_array() : json_incref(all);
    if (!lf || !items)
        goto out;
    if (n->b) { /* {% for x in xs if cond %}: filter first, loop.length counts kept items */
        for (size_t i = 0; i < json_array_size(all) && !c->failed; i++) {
            json_t *it = json_array_get(all, i);
            if (!assign(c, lf, n->c, json_incref(it)))
                break;
            json_t *cond = jj_eval(c, lf, n->b);
            if (jj_truthy(cond))
                json_array_append(items, it);
            json_decref(cond);
        }
    }
    size_t len = json_array_size(items);
    for (size_t i = 0; i < len && jj_step(c, n); i++) {
        /* jinja2: what the body sets does not survive into the next turn */
        json_object_clear(lf->vars);
        lf->nmacros = 0;
        if (!assign(c, lf, n->c, json_incref(json_array_get(items, i))))
            break;
        jj_bind(lf, "loop", loop_object(i, len, items));
        jj_exec_body(c, lf, &n->body);
        if (c->loopctl == 1) {
            c->loopctl = 0;
            break;
        }
        c->loopctl = 0;
    }
    if (len == 0 && !c->failed)
        jj_exec_body(c, f, &n->orelse);
out:
    json_decref(items);
    json_decref(all);
    jj_frame_pop(lf);
}

static void add_macro(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    struct jj_macro *nm = realloc(f->macros, (f->nmacros + 1) * sizeof(*nm));
    if (!nm) {
        jj_fail(c, n, "out of memory");
        return;
    }
    f->macros = nm;
    nm[f->nmacros].node = n;
    nm[f->nmacros].scope = f;
    f->nmacros++;
}

/* Renders a body into a fresh string (block set, filter block). */
static json_t *capture(struct jj_ctx *c, struct jj_frame *f, const struct jj_list *body)
{
    struct jj_buf out = {.limit = c->out->limit}, *saved = c->out;
    c->out = &out;
    jj_exec_body(c, f, body);
    c->out = saved;
    json_t *r = c->failed ? NULL : json_stringn_nocheck(out.p ? out.p : "", out.n);
    if (out.overflow)
        jj_output_overflow(c, NULL);
    jj_buf_free(&out);
    return r;
}

static void exec_stmt(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    if (!jj_step(c, n))
        return;
    switch (n->kind) {
    case JN_TEXT:
        emit(c, n, n->name, n->len);
        break;
    case JN_OUTPUT: {
        json_t *v = jj_eval(c, f, n->a);
        if (!c->failed && v) {
            if (json_is_string(v)) {
                emit(c, n, json_string_value(v), json_string_length(v));
            } else { /* str() of a list or dict: no longer than the output may be */
                struct jj_buf b = {.limit = c->out->limit};
                jj_str(&b, v);
                if (b.overflow)
                    jj_output_overflow(c, n);
                else
                    emit(c, n, b.p ? b.p : "", b.n);
                jj_buf_free(&b);
            }
        }
        json_decref(v);
        break;
    }
    case JN_IF: {
        json_t *v = jj_eval(c, f, n->a);
        bool t = jj_truthy(v);
        json_decref(v);
        if (!c->failed)
            jj_exec_body(c, f, t ? &n->body : &n->orelse);
        break;
    }
    case JN_FOR:
        exec_for(c, f, n);
        break;
    case JN_SET: {
        json_t *v = jj_eval(c, f, n->a);
        if (!c->failed)
            assign(c, f, n->c, v);
        else
            json_decref(v);
        break;
    }
    case JN_SET_BLOCK:
    case JN_FILTER_BLOCK: {
        json_t *v = capture(c, f, &n->body);
        if (v && n->b) {
            const struct jj_node *ph = n->b;
            while (ph->kind == JN_FILTER)
                ph = ph->a;
            json_t *fv = jj_eval_filter_node(c, f, n->b, ph, v);
            json_decref(v);
            v = fv;
        }
        if (c->failed) {
            json_decref(v);
        } else if (n->kind == JN_SET_BLOCK) {
            jj_bind(f, n->c->name, v);
        } else {
            json_t *s = jj_sized(c, n, jj_to_string(v), "filter block");
            if (s)
                emit(c, n, json_string_value(s), json_string_length(s));
            json_decref(s);
            json_decref(v);
        }
        break;
    }
    case JN_MACRO:
        add_macro(c, f, n);
        break;
    case JN_CALL_BLOCK: {
        struct jj_caller cl = {.body = n, .scope = f};
        c->pending_caller = &cl;
        json_t *v = jj_eval(c, f, n->a);
        c->pending_caller = NULL;
        if (v && json_is_string(v))
            emit(c, n, json_string_value(v), json_string_length(v));
        json_decref(v);
        break;
    }
    case JN_BREAK:
        c->loopctl = 1;
        break;
    case JN_CONTINUE:
        c->loopctl = 2;
        break;
    case JN_BODY:
        jj_exec_body(c, f, &n->body);
        break;
    default:
        jj_fail(c, n, "expression used as a statement");
    }
}

void jj_exec_body(struct jj_ctx *c, struct jj_frame *f, const struct jj_list *body)
{
    for (size_t i = 0; i < body->n && !c->failed && !c->loopctl; i++)
        exec_stmt(c, f, body->v[i]);
}

int jj_render(const struct jj_template *t, json_t *vars, size_t max_output, long max_steps, char **out,
              size_t *out_len)
{
    struct jj_ctx *c = calloc(1, sizeof(*c));
    struct jj_buf buf = {.limit = max_output ? max_output : JJ_DEFAULT_MAX_OUTPUT};
    if (!c)
        return zl_error(ZL_ENOMEM, "template: out of memory");
    c->out = &buf;
    c->max_steps = max_steps > 0 ? max_steps : JJ_MAX_STEPS;
    struct jj_frame root = {.vars = vars};
    jj_exec_body(c, &root, &t->root->body);
    free(root.macros);
    for (size_t i = 0; i < c->nns; i++)
        json_decref(c->ns[i]);
    free(c->ns);
    int rc = 0;
    if (c->failed) {
        rc = zl_error(c->overflow ? ZL_ERANGE : ZL_EINVAL, "%s", c->err);
        jj_buf_free(&buf);
    } else {
        if (!buf.p && !(buf.p = calloc(1, 1)))
            rc = zl_error(ZL_ENOMEM, "template: out of memory");
        *out = buf.p;
        if (out_len)
            *out_len = buf.n;
    }
    free(c);
    return rc;
}
