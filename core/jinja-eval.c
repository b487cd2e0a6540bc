/* Jinja evaluator: renders a parsed template over jansson values with
 * jinja2's semantics (scoping, Undefined, loop variables, macros). */
#include "jinja-eval-impl.h"

#include <zlight/status.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *jj_fail(struct jj_ctx *c, const struct jj_node *n, const char *fmt, ...)
{
    if (c->failed)
        return NULL;
    c->failed = true;
    int k = snprintf(c->err, sizeof(c->err), "template error at line %d, column %d: ", n ? n->line : 0,
                     n ? n->col : 0);
    va_list ap;
    va_start(ap, fmt);
    if (k > 0 && (size_t)k < sizeof(c->err))
        vsnprintf(c->err + k, sizeof(c->err) - (size_t)k, fmt, ap);
    va_end(ap);
    return NULL;
}

bool jj_failed(const struct jj_ctx *c) { return c->failed; }
const char *jj_undef_name(const struct jj_ctx *c) { return c->undef; }

static void output_overflow(struct jj_ctx *c, const struct jj_node *n)
{
    if (!c->failed)
        c->overflow = true;
    jj_fail(c, n, "output exceeds %zu bytes", c->out->limit);
}

static json_t *undefined_err(struct jj_ctx *c, const struct jj_node *n)
{
    return jj_fail(c, n, "'%s' is undefined", c->undef[0] ? c->undef : "value");
}

static void set_undef(struct jj_ctx *c, const char *name)
{
    snprintf(c->undef, sizeof(c->undef), "%s", name);
}

/* ---- frames -------------------------------------------------------------- */

static struct jj_frame *frame_push(struct jj_ctx *c, struct jj_frame *parent)
{
    struct jj_frame *f = calloc(1, sizeof(*f));
    if (f && !(f->vars = json_object())) {
        free(f);
        f = NULL;
    }
    if (!f) {
        jj_fail(c, NULL, "out of memory");
        return NULL;
    }
    f->parent = parent;
    return f;
}

static void frame_pop(struct jj_frame *f)
{
    if (!f)
        return;
    json_decref(f->vars);
    free(f->macros);
    free(f);
}

static json_t *lookup(struct jj_ctx *c, struct jj_frame *f, const char *name)
{
    for (; f; f = f->parent) {
        json_t *v = json_object_get(f->vars, name);
        if (v)
            return json_incref(v);
    }
    set_undef(c, name);
    return NULL;
}

static const struct jj_macro *find_macro(struct jj_frame *f, const char *name)
{
    for (; f; f = f->parent)
        for (size_t i = 0; i < f->nmacros; i++)
            if (!strcmp(f->macros[i].node->name, name))
                return &f->macros[i];
    return NULL;
}

/* Binds a name; undefined values are stored as an absent key. */
static void bind(struct jj_frame *f, const char *name, json_t *v)
{
    if (v)
        json_object_set_new(f->vars, name, v);
    else
        json_object_del(f->vars, name);
}

static bool step(struct jj_ctx *c, const struct jj_node *n)
{
    if (c->failed)
        return false;
    if (++c->steps > c->max_steps) {
        jj_fail(c, n, "template exceeded %ld evaluation steps", c->max_steps);
        return false;
    }
    return true;
}

/* ---- expressions --------------------------------------------------------- */

static json_t *eval(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n);
static json_t *eval_subject(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *obj);

void jj_args_free(struct jj_args *a)
{
    for (size_t i = 0; i < a->npos; i++)
        json_decref(a->pos[i]);
    for (size_t i = 0; i < a->nkw; i++)
        json_decref(a->kwval[i]);
    free(a->pos);
    free(a->kwname);
    free(a->kwval);
    memset(a, 0, sizeof(*a));
}

static bool eval_args(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n, struct jj_args *a)
{
    memset(a, 0, sizeof(*a));
    size_t k = n->args.n ? n->args.n : 1;
    a->pos = calloc(k, sizeof(*a->pos));
    a->kwname = calloc(k, sizeof(*a->kwname));
    a->kwval = calloc(k, sizeof(*a->kwval));
    if (!a->pos || !a->kwname || !a->kwval) {
        jj_fail(c, n, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n->args.n; i++) {
        json_t *v = eval(c, f, n->args.v[i]);
        if (c->failed) {
            json_decref(v);
            return false;
        }
        if (n->kw && n->kw[i]) {
            a->kwname[a->nkw] = n->kw[i];
            a->kwval[a->nkw++] = v;
        } else {
            a->pos[a->npos++] = v;
        }
    }
    return true;
}

json_t *jj_arg(const struct jj_args *a, size_t i, const char *name, bool *present)
{
    bool dummy;
    if (!present)
        present = &dummy;
    *present = true;
    if (i < a->npos)
        return a->pos[i];
    if (name)
        for (size_t k = 0; k < a->nkw; k++)
            if (!strcmp(a->kwname[k], name))
                return a->kwval[k];
    *present = false;
    return NULL;
}

json_t *jj_getattr(const json_t *obj, const char *name)
{
    if (obj && json_is_object(obj)) {
        json_t *v = json_object_get(obj, name);
        return v ? json_incref(v) : NULL;
    }
    return NULL;
}

json_t *jj_getitem(struct jj_ctx *c, const struct jj_node *n, const json_t *obj, const json_t *key)
{
    if (json_is_object(obj)) {
        if (json_is_string(key))
            return jj_getattr(obj, json_string_value(key));
        return NULL;
    }
    if ((json_is_array(obj) || json_is_string(obj)) && key && (json_is_integer(key) || json_is_boolean(key))) {
        long long i = json_is_integer(key) ? json_integer_value(key) : json_is_true(key);
        if (json_is_array(obj)) {
            long long len = (long long)json_array_size(obj);
            if (i < 0)
                i += len;
            if (i < 0 || i >= len)
                return NULL;
            return json_incref(json_array_get(obj, (size_t)i));
        }
        const char *s = json_string_value(obj);
        size_t bn = json_string_length(obj);
        long long len = (long long)jj_u8_len(s, bn);
        if (i < 0)
            i += len;
        if (i < 0 || i >= len)
            return NULL;
        size_t o = jj_u8_offset(s, bn, (size_t)i), e = jj_u8_offset(s, bn, (size_t)i + 1);
        return json_stringn_nocheck(s + o, e - o);
    }
    if (json_is_string(key) && obj && !json_is_null(obj))
        return NULL; /* attribute-style miss */
    (void)c;
    (void)n;
    return NULL;
}

static bool slice_bound(struct jj_ctx *c, const struct jj_node *n, json_t *v, long long *out)
{
    if (!v || json_is_null(v))
        return false;
    if (!json_is_integer(v) && !json_is_boolean(v)) {
        jj_fail(c, n, "slice indices must be integers or None");
        return false;
    }
    *out = json_is_integer(v) ? json_integer_value(v) : json_is_true(v);
    return true;
}

static json_t *eval_slice(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n, json_t *obj)
{
    json_t *bv[3] = {n->b ? eval(c, f, n->b) : NULL, n->c ? eval(c, f, n->c) : NULL,
                     n->args.n ? eval(c, f, n->args.v[0]) : NULL};
    long long start = 0, stop = 0, stepv = 1;
    bool has_start = slice_bound(c, n, bv[0], &start), has_stop = slice_bound(c, n, bv[1], &stop);
    slice_bound(c, n, bv[2], &stepv);
    for (int i = 0; i < 3; i++)
        json_decref(bv[i]);
    if (c->failed)
        return NULL;
    if (stepv == 0)
        return jj_fail(c, n, "slice step cannot be zero");
    bool is_str = json_is_string(obj);
    if (!is_str && !json_is_array(obj))
        return jj_fail(c, n, "'%s' object is not subscriptable", jj_type_name(obj));
    const char *s = is_str ? json_string_value(obj) : NULL;
    size_t bn = is_str ? json_string_length(obj) : 0;
    long long len = is_str ? (long long)jj_u8_len(s, bn) : (long long)json_array_size(obj);
    /* Python's slice.indices() */
    if (!has_start)
        start = stepv < 0 ? len - 1 : 0;
    else if (start < 0)
        start = start + len < 0 ? (stepv < 0 ? -1 : 0) : start + len;
    else if (start >= len)
        start = stepv < 0 ? len - 1 : len;
    if (!has_stop)
        stop = stepv < 0 ? -1 : len;
    else if (stop < 0)
        stop = stop + len < 0 ? (stepv < 0 ? -1 : 0) : stop + len;
    else if (stop >= len)
        stop = stepv < 0 ? len - 1 : len;
    if (is_str) {
        struct jj_buf b = {0};
        size_t *offs = malloc(((size_t)len + 1) * sizeof(*offs));
        if (!offs)
            return jj_fail(c, n, "out of memory");
        for (long long i = 0, o = 0; i <= len; i++) {
            offs[i] = (size_t)o;
            if (i < len) {
                int32_t cp;
                o += jj_u8_decode(s + o, bn - (size_t)o, &cp);
            }
        }
        for (long long i = start; stepv > 0 ? i < stop : i > stop; i += stepv)
            jj_buf_put(&b, s + offs[i], offs[i + 1] - offs[i]);
        free(offs);
        json_t *r = jj_buf_string(&b);
        return r;
    }
    json_t *r = json_array();
    for (long long i = start; r && (stepv > 0 ? i < stop : i > stop); i += stepv)
        json_array_append(r, json_array_get(obj, (size_t)i));
    return r;
}

json_t *jj_iter_list(struct jj_ctx *c, const struct jj_node *n, const json_t *v)
{
    if (!v)
        return json_array(); /* iterating Undefined yields nothing */
    if (json_is_array(v))
        return json_incref((json_t *)v);
    json_t *r = json_array();
    if (!r)
        return jj_fail(c, n, "out of memory");
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach ((json_t *)v, k, x)
            json_array_append_new(r, json_string_nocheck(k));
        return r;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t bn = json_string_length(v);
        for (size_t i = 0; i < bn;) {
            int32_t cp;
            int k = jj_u8_decode(s + i, bn - i, &cp);
            json_array_append_new(r, json_stringn_nocheck(s + i, (size_t)k));
            i += (size_t)k;
        }
        return r;
    }
    json_decref(r);
    return jj_fail(c, n, "'%s' object is not iterable", jj_type_name(v));
}

static json_t *eval_call(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n);

static json_t *eval_list(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    json_t *r = json_array();
    for (size_t i = 0; r && i < n->args.n && !c->failed; i++) {
        json_t *v = eval(c, f, n->args.v[i]);
        json_array_append_new(r, v ? v : json_null());
    }
    return r;
}

static json_t *eval_dict(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    json_t *r = json_object();
    for (size_t i = 0; r && i + 1 < n->args.n && !c->failed; i += 2) {
        json_t *k = eval(c, f, n->args.v[i]);
        json_t *v = eval(c, f, n->args.v[i + 1]);
        json_t *ks = k ? jj_to_string(k) : NULL;
        if (ks)
            json_object_set_new(r, json_string_value(ks), v ? v : json_null());
        else
            json_decref(v);
        json_decref(ks);
        json_decref(k);
    }
    return r;
}

static json_t *eval_filter_node(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n,
                                const struct jj_node *placeholder, json_t *value)
{
    json_t *v;
    if (n == placeholder)
        return json_incref(value);
    if (n->a == placeholder)
        v = json_incref(value);
    else if (n->a->kind == JN_FILTER && placeholder)
        v = eval_filter_node(c, f, n->a, placeholder, value);
    else
        v = eval(c, f, n->a);
    struct jj_args a = {0};
    if (c->failed || !eval_args(c, f, n, &a)) {
        json_decref(v);
        jj_args_free(&a);
        return NULL;
    }
    json_t *r = jj_filter(c, n, n->name, v, &a);
    json_decref(v);
    jj_args_free(&a);
    return r;
}

/* The object of an attribute, item or slice access: Undefined there is an
 * error, as in jinja2 (only the final lookup may be undefined). */
static json_t *eval_subject(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *obj)
{
    json_t *o = eval(c, f, obj);
    if (!o && !c->failed)
        undefined_err(c, obj);
    return o;
}

static json_t *eval(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    if (!step(c, n))
        return NULL;
    switch (n->kind) {
    case JN_LIT:
        return json_incref(n->lit);
    case JN_NAME:
        return lookup(c, f, n->name);
    case JN_LIST:
        return eval_list(c, f, n);
    case JN_DICT:
        return eval_dict(c, f, n);
    case JN_ATTR: {
        json_t *o = eval_subject(c, f, n->a);
        if (!o)
            return NULL;
        json_t *r = jj_getattr(o, n->name);
        if (!r)
            set_undef(c, n->name);
        json_decref(o);
        return r;
    }
    case JN_INDEX: {
        json_t *o = eval_subject(c, f, n->a);
        if (!o)
            return NULL;
        json_t *k = eval(c, f, n->b);
        json_t *r = c->failed ? NULL : jj_getitem(c, n, o, k);
        if (!r && !c->failed) {
            json_t *ks = k ? jj_to_string(k) : NULL;
            set_undef(c, ks ? json_string_value(ks) : "item");
            json_decref(ks);
        }
        json_decref(o);
        json_decref(k);
        return r;
    }
    case JN_SLICE: {
        json_t *o = eval_subject(c, f, n->a);
        if (!o)
            return NULL;
        json_t *r = eval_slice(c, f, n, o);
        json_decref(o);
        return r;
    }
    case JN_CALL:
        return eval_call(c, f, n);
    case JN_FILTER:
        return eval_filter_node(c, f, n, NULL, NULL);
    case JN_TEST: {
        json_t *v = eval(c, f, n->a);
        struct jj_args a = {0};
        if (c->failed || !eval_args(c, f, n, &a)) {
            json_decref(v);
            jj_args_free(&a);
            return NULL;
        }
        int r = jj_test(c, n, n->name, v, &a);
        json_decref(v);
        jj_args_free(&a);
        return r < 0 ? NULL : json_boolean(n->negate ? !r : r);
    }
    case JN_NOT: {
        json_t *v = eval(c, f, n->a);
        bool t = jj_truthy(v);
        json_decref(v);
        return c->failed ? NULL : json_boolean(!t);
    }
    case JN_AND:
    case JN_OR: {
        json_t *l = eval(c, f, n->a);
        if (c->failed)
            return NULL;
        bool t = jj_truthy(l);
        if (n->kind == JN_AND ? !t : t)
            return l;
        json_decref(l);
        return eval(c, f, n->b);
    }
    case JN_COND: {
        json_t *cond = eval(c, f, n->b);
        bool t = jj_truthy(cond);
        json_decref(cond);
        if (c->failed)
            return NULL;
        if (t)
            return eval(c, f, n->a);
        return n->c ? eval(c, f, n->c) : NULL;
    }
    case JN_UNARY:
    case JN_BINARY:
    case JN_COMPARE:
        return jj_eval_operator(c, n, n->kind == JN_UNARY ? NULL : eval(c, f, n->a),
                                eval(c, f, n->kind == JN_UNARY ? n->a : n->b));
    default:
        return jj_fail(c, n, "statement used as an expression");
    }
}

/* ---- calls: macros, caller(), globals, methods ----------------------------- */

static void exec_body(struct jj_ctx *c, struct jj_frame *f, const struct jj_list *body);

/* Binds params of a macro/caller node from args, evaluating defaults in f. */
static bool bind_params(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *def, const struct jj_node *at,
                        const struct jj_args *a)
{
    if (a->npos > def->args.n) {
        jj_fail(c, at, "macro '%s' takes not more than %zu argument(s)", def->name ? def->name : "caller",
                def->args.n);
        return false;
    }
    for (size_t k = 0; k < a->nkw; k++) {
        bool known = false;
        for (size_t i = 0; i < def->args.n; i++)
            known |= !strcmp(def->args.v[i]->name, a->kwname[k]);
        if (!known) {
            jj_fail(c, at, "macro '%s' has no parameter '%s'", def->name ? def->name : "caller", a->kwname[k]);
            return false;
        }
    }
    for (size_t i = 0; i < def->args.n; i++) {
        const struct jj_node *p = def->args.v[i];
        bool present;
        json_t *v = jj_arg(a, i, p->name, &present);
        if (present)
            bind(f, p->name, v ? json_incref(v) : NULL);
        else if (p->a)
            bind(f, p->name, eval(c, f, p->a));
        if (c->failed)
            return false;
    }
    return true;
}

static json_t *invoke(struct jj_ctx *c, const struct jj_node *def, struct jj_frame *scope, const struct jj_node *at,
                      const struct jj_args *a, const struct jj_caller *caller)
{
    if (c->depth >= JJ_MAX_CALL_DEPTH)
        return jj_fail(c, at, "macro recursion deeper than %d", JJ_MAX_CALL_DEPTH);
    struct jj_frame *mf = frame_push(c, scope);
    if (!mf)
        return NULL;
    if (caller)
        mf->caller = *caller;
    struct jj_buf out = {.limit = c->out->limit}, *saved = c->out;
    c->depth++;
    if (bind_params(c, mf, def, at, a)) {
        c->out = &out;
        exec_body(c, mf, &def->body);
        c->out = saved;
    }
    c->depth--;
    c->loopctl = 0;
    frame_pop(mf);
    json_t *r = NULL;
    if (out.overflow)
        output_overflow(c, at);
    if (!c->failed)
        r = json_stringn_nocheck(out.p ? out.p : "", out.n);
    jj_buf_free(&out);
    return r;
}

static json_t *eval_call(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    const struct jj_node *callee = n->a;
    struct jj_args a = {0};
    json_t *self = NULL, *r = NULL;
    if (callee->kind == JN_ATTR) {
        if (!(self = eval_subject(c, f, callee->a)))
            return NULL;
    } else if (callee->kind != JN_NAME) {
        return jj_fail(c, n, "object is not callable");
    }
    if (!eval_args(c, f, n, &a)) {
        json_decref(self);
        jj_args_free(&a);
        return NULL;
    }
    if (self) {
        r = jj_method(c, callee, self, callee->name, &a);
    } else {
        const char *name = callee->name;
        const struct jj_macro *m = find_macro(f, name);
        struct jj_frame *cf = f;
        while (cf && !cf->caller.body)
            cf = cf->parent;
        if (m) {
            r = invoke(c, m->node, m->scope, n, &a, c->pending_caller);
            c->pending_caller = NULL;
        } else if (!strcmp(name, "caller") && cf) {
            r = invoke(c, cf->caller.body, cf->caller.scope, n, &a, NULL);
        } else {
            r = jj_global(c, n, name, &a);
        }
    }
    json_decref(self);
    jj_args_free(&a);
    return r;
}

/* ---- statements ------------------------------------------------------------ */

static void emit(struct jj_ctx *c, const struct jj_node *n, const char *s, size_t len)
{
    if (!jj_buf_put(c->out, s, len))
        output_overflow(c, n);
}

static bool assign(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *target, json_t *v)
{
    if (target->kind == JN_NAME) {
        bind(f, target->name, v);
        return true;
    }
    if (target->kind == JN_ATTR) {
        json_t *ns = lookup(c, f, target->a->name);
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
        bind(f, target->args.v[i]->name, json_incref(json_array_get(v, i)));
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
    json_t *src = eval(c, f, n->a);
    json_t *all = c->failed ? NULL : jj_iter_list(c, n->a, src);
    json_decref(src);
    if (!all)
        return;
    struct jj_frame *lf = frame_push(c, f);
    json_t *items = n->b ? json_array() : json_incref(all);
    if (!lf || !items)
        goto out;
    if (n->b) { /* {% for x in xs if cond %}: filter first, loop.length counts kept items */
        for (size_t i = 0; i < json_array_size(all) && !c->failed; i++) {
            json_t *it = json_array_get(all, i);
            if (!assign(c, lf, n->c, json_incref(it)))
                break;
            json_t *cond = eval(c, lf, n->b);
            if (jj_truthy(cond))
                json_array_append(items, it);
            json_decref(cond);
        }
    }
    size_t len = json_array_size(items);
    for (size_t i = 0; i < len && step(c, n); i++) {
        /* jinja2: what the body sets does not survive into the next turn */
        json_object_clear(lf->vars);
        lf->nmacros = 0;
        if (!assign(c, lf, n->c, json_incref(json_array_get(items, i))))
            break;
        bind(lf, "loop", loop_object(i, len, items));
        exec_body(c, lf, &n->body);
        if (c->loopctl == 1) {
            c->loopctl = 0;
            break;
        }
        c->loopctl = 0;
    }
    if (len == 0 && !c->failed)
        exec_body(c, f, &n->orelse);
out:
    json_decref(items);
    json_decref(all);
    frame_pop(lf);
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
    exec_body(c, f, body);
    c->out = saved;
    json_t *r = c->failed ? NULL : json_stringn_nocheck(out.p ? out.p : "", out.n);
    if (out.overflow)
        output_overflow(c, NULL);
    jj_buf_free(&out);
    return r;
}

static void exec_stmt(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    if (!step(c, n))
        return;
    switch (n->kind) {
    case JN_TEXT:
        emit(c, n, n->name, n->len);
        break;
    case JN_OUTPUT: {
        json_t *v = eval(c, f, n->a);
        if (!c->failed && v) {
            if (json_is_string(v)) {
                emit(c, n, json_string_value(v), json_string_length(v));
            } else {
                struct jj_buf b = {0};
                jj_str(&b, v);
                emit(c, n, b.p ? b.p : "", b.n);
                jj_buf_free(&b);
            }
        }
        json_decref(v);
        break;
    }
    case JN_IF: {
        json_t *v = eval(c, f, n->a);
        bool t = jj_truthy(v);
        json_decref(v);
        if (!c->failed)
            exec_body(c, f, t ? &n->body : &n->orelse);
        break;
    }
    case JN_FOR:
        exec_for(c, f, n);
        break;
    case JN_SET: {
        json_t *v = eval(c, f, n->a);
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
            json_t *fv = eval_filter_node(c, f, n->b, ph, v);
            json_decref(v);
            v = fv;
        }
        if (c->failed) {
            json_decref(v);
        } else if (n->kind == JN_SET_BLOCK) {
            bind(f, n->c->name, v);
        } else {
            json_t *s = jj_to_string(v);
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
        json_t *v = eval(c, f, n->a);
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
        exec_body(c, f, &n->body);
        break;
    default:
        jj_fail(c, n, "expression used as a statement");
    }
}

static void exec_body(struct jj_ctx *c, struct jj_frame *f, const struct jj_list *body)
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
    exec_body(c, &root, &t->root->body);
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
