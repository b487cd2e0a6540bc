/* Jinja evaluator, expressions: errors, variable scopes, and the values of
 * expressions with jinja2's semantics (Undefined, slices, calls of macros,
 * methods and globals).  Statements and the render are jinja-exec.c's. */
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

json_t *jj_sized(struct jj_ctx *c, const struct jj_node *n, json_t *r, const char *what)
{
    return r ? r : jj_fail(c, n, "%s: the result is too large (over %u bytes)", what, JJ_MAX_STRING);
}
const char *jj_undef_name(const struct jj_ctx *c) { return c->undef; }

void jj_output_overflow(struct jj_ctx *c, const struct jj_node *n)
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

struct jj_frame *jj_frame_push(struct jj_ctx *c, struct jj_frame *parent)
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

void jj_frame_pop(struct jj_frame *f)
{
    if (!f)
        return;
    json_decref(f->vars);
    free(f->macros);
    free(f);
}

json_t *jj_lookup(struct jj_ctx *c, struct jj_frame *f, const char *name)
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
void jj_bind(struct jj_frame *f, const char *name, json_t *v)
{
    if (v)
        json_object_set_new(f->vars, name, v);
    else
        json_object_del(f->vars, name);
}

bool jj_step(struct jj_ctx *c, const struct jj_node *n)
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
        json_t *v = jj_eval(c, f, n->args.v[i]);
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
    json_t *bv[3] = {n->b ? jj_eval(c, f, n->b) : NULL, n->c ? jj_eval(c, f, n->c) : NULL,
                     n->args.n ? jj_eval(c, f, n->args.v[0]) : NULL};
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
        struct jj_buf b = JJ_STRBUF;
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
        return jj_sized(c, n, jj_buf_string(&b), "slice");
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

/* r, or NULL (r freed) once the render has failed: callers that see
 * c->failed return without looking at the value. */
static json_t *fail_free(struct jj_ctx *c, json_t *r)
{
    if (!c->failed)
        return r;
    json_decref(r);
    return NULL;
}

static json_t *eval_list(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    json_t *r = json_array();
    for (size_t i = 0; r && i < n->args.n && !c->failed; i++) {
        json_t *v = jj_eval(c, f, n->args.v[i]);
        json_array_append_new(r, v ? v : json_null());
    }
    return fail_free(c, r);
}

static json_t *eval_dict(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    json_t *r = json_object();
    for (size_t i = 0; r && i + 1 < n->args.n && !c->failed; i += 2) {
        json_t *k = jj_eval(c, f, n->args.v[i]);
        json_t *v = jj_eval(c, f, n->args.v[i + 1]);
        json_t *ks = k ? jj_sized(c, n, jj_to_string(k), "dict key") : NULL;
        if (ks)
            json_object_set_new(r, json_string_value(ks), v ? v : json_null());
        else
            json_decref(v);
        json_decref(ks);
        json_decref(k);
    }
    return fail_free(c, r);
}

json_t *jj_eval_filter_node(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n,
                            const struct jj_node *placeholder, json_t *value)
{
    json_t *v;
    if (n == placeholder)
        return json_incref(value);
    if (n->a == placeholder)
        v = json_incref(value);
    else if (n->a->kind == JN_FILTER && placeholder)
        v = jj_eval_filter_node(c, f, n->a, placeholder, value);
    else
        v = jj_eval(c, f, n->a);
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
    json_t *o = jj_eval(c, f, obj);
    if (!o && !c->failed)
        undefined_err(c, obj);
    return o;
}

json_t *jj_eval(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n)
{
    if (!jj_step(c, n))
        return NULL;
    switch (n->kind) {
    case JN_LIT:
        return json_incref(n->lit);
    case JN_NAME:
        return jj_lookup(c, f, n->name);
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
        json_t *k = jj_eval(c, f, n->b);
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
        return jj_eval_filter_node(c, f, n, NULL, NULL);
    case JN_TEST: {
        json_t *v = jj_eval(c, f, n->a);
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
        json_t *v = jj_eval(c, f, n->a);
        bool t = jj_truthy(v);
        json_decref(v);
        return c->failed ? NULL : json_boolean(!t);
    }
    case JN_AND:
    case JN_OR: {
        json_t *l = fail_free(c, jj_eval(c, f, n->a));
        if (!l && c->failed)
            return NULL;
        bool t = jj_truthy(l);
        if (n->kind == JN_AND ? !t : t)
            return l;
        json_decref(l);
        return jj_eval(c, f, n->b);
    }
    case JN_COND: {
        json_t *cond = jj_eval(c, f, n->b);
        bool t = jj_truthy(cond);
        json_decref(cond);
        if (c->failed)
            return NULL;
        if (t)
            return jj_eval(c, f, n->a);
        return n->c ? jj_eval(c, f, n->c) : NULL;
    }
    case JN_UNARY:
    case JN_BINARY:
    case JN_COMPARE:
        return jj_eval_operator(c, n, n->kind == JN_UNARY ? NULL : jj_eval(c, f, n->a),
                                jj_eval(c, f, n->kind == JN_UNARY ? n->a : n->b));
    default:
        return jj_fail(c, n, "statement used as an expression");
    }
}

/* ---- calls: macros, caller(), globals, methods ----------------------------- */


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
            jj_bind(f, p->name, v ? json_incref(v) : NULL);
        else if (p->a)
            jj_bind(f, p->name, jj_eval(c, f, p->a));
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
    struct jj_frame *mf = jj_frame_push(c, scope);
    if (!mf)
        return NULL;
    if (caller)
        mf->caller = *caller;
    struct jj_buf out = {.limit = c->out->limit}, *saved = c->out;
    c->depth++;
    if (bind_params(c, mf, def, at, a)) {
        c->out = &out;
        jj_exec_body(c, mf, &def->body);
        c->out = saved;
    }
    c->depth--;
    c->loopctl = 0;
    jj_frame_pop(mf);
    json_t *r = NULL;
    if (out.overflow)
        jj_output_overflow(c, at);
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
