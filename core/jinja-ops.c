/* Jinja operators with Python's arithmetic (int/float, floor division and
 * modulo, string and list + and *) and the global functions HF templates
 * call: range, namespace, dict, raise_exception, strftime_now. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "jinja-eval-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool is_int(const json_t *v) { return v && (json_is_integer(v) || json_is_boolean(v)); }
static long long int_of(const json_t *v) { return json_is_integer(v) ? json_integer_value(v) : json_is_true(v); }

static json_t *type_error(struct jj_ctx *c, const struct jj_node *n, const json_t *l, const json_t *r)
{
    if (!l || !r)
        return jj_fail(c, n, "'%s' is undefined", jj_undef_name(c)[0] ? jj_undef_name(c) : "value");
    return jj_fail(c, n, "unsupported operand type(s) for %s: '%s' and '%s'", n->op, jj_type_name(l),
                   jj_type_name(r));
}

static json_t *repeat(struct jj_ctx *c, const struct jj_node *n, const json_t *seq, long long times)
{
    size_t unit = json_is_string(seq) ? json_string_length(seq) : json_array_size(seq);
    if (times < 0 || !unit) /* an empty sequence: a huge count must not spin */
        times = 0;
    if (unit && (unsigned long long)times > (JJ_DEFAULT_MAX_OUTPUT / unit))
        return jj_fail(c, n, "repetition result too large");
    if (json_is_string(seq)) {
        struct jj_buf b = JJ_STRBUF;
        for (long long i = 0; i < times; i++)
            jj_buf_put(&b, json_string_value(seq), unit);
        json_t *r = jj_buf_string(&b);
        return r;
    }
    json_t *r = json_array();
    for (long long i = 0; r && i < times; i++)
        json_array_extend(r, (json_t *)seq);
    return r;
}

static json_t *concat(const json_t *l, const json_t *r)
{
    if (json_is_array(l)) {
        json_t *out = json_copy((json_t *)l);
        if (out)
            json_array_extend(out, (json_t *)r);
        return out;
    }
    size_t a = json_string_length(l), b = json_string_length(r);
    char *s = malloc(a + b + 1);
    if (!s)
        return NULL;
    memcpy(s, json_string_value(l), a);
    memcpy(s + a, json_string_value(r), b);
    json_t *out = json_stringn_nocheck(s, a + b);
    free(s);
    return out;
}

/* Python's "fmt % args" for %s %r %d %i %f %% (with an optional precision
 * for %f); args is one value or a list of them. */
json_t *jj_percent_format(struct jj_ctx *c, const struct jj_node *n, const json_t *fmt, const json_t *args)
{
    const char *s = json_string_value(fmt);
    size_t len = json_string_length(fmt), next_arg = 0;
    bool many = args && json_is_array(args);
    struct jj_buf b = JJ_STRBUF;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            jj_buf_put(&b, s + i, 1);
            continue;
        }
        int prec = -1;
        if (i + 2 < len && s[i + 1] == '.' && s[i + 2] >= '0' && s[i + 2] <= '9') {
            prec = s[i + 2] - '0';
            i += 2;
        }
        char conv = i + 1 < len ? s[++i] : 0;
        if (conv == '%') {
            jj_buf_puts(&b, "%");
            continue;
        }
        const json_t *v = many ? json_array_get(args, next_arg) : next_arg == 0 ? args : NULL;
        if (!strchr("srdif", conv) || !conv || (many ? next_arg >= json_array_size(args) : next_arg > 0)) {
            jj_buf_free(&b);
            return jj_fail(c, n, conv && strchr("srdif", conv) ? "not enough arguments for format string"
                                                               : "unsupported format character");
        }
        next_arg++;
        char tmp[64];
        if (conv == 's') {
            jj_str(&b, v);
        } else if (conv == 'r') {
            jj_repr(&b, v);
        } else if (!jj_is_number(v)) {
            jj_buf_free(&b);
            return jj_fail(c, n, "%%%c format: a real number is required, not %s", conv, jj_type_name(v));
        } else if (conv == 'f') {
            snprintf(tmp, sizeof(tmp), "%.*f", prec < 0 ? 6 : prec, jj_number(v));
            jj_buf_puts(&b, tmp);
        } else {
            snprintf(tmp, sizeof(tmp), "%lld", is_int(v) ? int_of(v) : (long long)jj_number(v));
            jj_buf_puts(&b, tmp);
        }
    }
    if (many && next_arg < json_array_size(args)) {
        jj_buf_free(&b);
        return jj_fail(c, n, "not all arguments converted during string formatting");
    }
    return jj_sized(c, n, jj_buf_string(&b), "string formatting");
}

static json_t *arith(struct jj_ctx *c, const struct jj_node *n, const json_t *l, const json_t *r)
{
    const char *op = n->op;
    if (!strcmp(op, "~")) {
        json_t *a = jj_to_string(l), *b = jj_to_string(r);
        json_t *out = jj_sized(c, n, a && b ? concat(a, b) : NULL, "'~'");
        json_decref(a);
        json_decref(b);
        return out;
    }
    if (op[0] == '+' && l && r &&
        ((json_is_string(l) && json_is_string(r)) || (json_is_array(l) && json_is_array(r))))
        return concat(l, r);
    if (op[0] == '%' && l && json_is_string(l))
        return jj_percent_format(c, n, l, r);
    if (op[0] == '*' && !op[1] && l && r) {
        if ((json_is_string(l) || json_is_array(l)) && is_int(r))
            return repeat(c, n, l, int_of(r));
        if ((json_is_string(r) || json_is_array(r)) && is_int(l))
            return repeat(c, n, r, int_of(l));
    }
    if (!jj_is_number(l) || !jj_is_number(r))
        return type_error(c, n, l, r);
    if (is_int(l) && is_int(r) && strcmp(op, "/") != 0) {
        long long a = int_of(l), b = int_of(r), v = 0;
        bool ovf = false;
        switch (op[0]) {
        case '+': ovf = __builtin_add_overflow(a, b, &v); break;
        case '-': ovf = __builtin_sub_overflow(a, b, &v); break;
        case '*':
            if (op[1] == '*') {
                if (b < 0)
                    return json_real(pow((double)a, (double)b));
                /* By squaring: O(log b) steps, so 1 ** 10**17 cannot hang. */
                long long base = a;
                v = 1;
                for (long long e = b; e > 0 && !ovf;) {
                    if (e & 1)
                        ovf = __builtin_mul_overflow(v, base, &v);
                    e >>= 1;
                    if (e && !ovf)
                        ovf = __builtin_mul_overflow(base, base, &base);
                }
            } else {
                ovf = __builtin_mul_overflow(a, b, &v);
            }
            break;
        case '/':
        case '%':
            if (b == 0)
                return jj_fail(c, n, "integer division or modulo by zero");
            if (a == (-9223372036854775807LL - 1) && b == -1)
                return jj_fail(c, n, "integer overflow");
            v = op[0] == '%' ? a % b : a / b;
            if (op[0] == '%' && v != 0 && ((v < 0) != (b < 0)))
                v += b;
            else if (op[0] == '/' && (a % b != 0) && ((a < 0) != (b < 0)))
                v -= 1;
            break;
        }
        if (ovf)
            return jj_fail(c, n, "integer overflow");
        return json_integer(v);
    }
    double a = jj_number(l), b = jj_number(r), v = 0;
    switch (op[0]) {
    case '+': v = a + b; break;
    case '-': v = a - b; break;
    case '*': v = op[1] == '*' ? pow(a, b) : a * b; break;
    case '/':
    case '%':
        if (b == 0)
            return jj_fail(c, n, "float division by zero");
        if (op[0] == '%') {
            v = fmod(a, b);
            if (v != 0 && ((v < 0) != (b < 0)))
                v += b;
        } else {
            v = op[1] == '/' ? floor(a / b) : a / b;
        }
        break;
    }
    return json_real(v);
}

static int contains(struct jj_ctx *c, const struct jj_node *n, const json_t *needle, const json_t *hay)
{
    if (!hay)
        return 0;
    if (json_is_string(hay)) {
        if (!needle || !json_is_string(needle)) {
            jj_fail(c, n, "'in <string>' requires string as left operand, not %s", jj_type_name(needle));
            return -1;
        }
        size_t hn = json_string_length(hay), nn = json_string_length(needle);
        if (nn == 0)
            return 1;
        return hn >= nn && memmem(json_string_value(hay), hn, json_string_value(needle), nn) != NULL;
    }
    if (json_is_array(hay)) {
        for (size_t i = 0; i < json_array_size(hay); i++)
            if (jj_equal(json_array_get(hay, i), needle))
                return 1;
        return 0;
    }
    if (json_is_object(hay))
        return needle && json_is_string(needle) && json_object_get(hay, json_string_value(needle)) != NULL;
    jj_fail(c, n, "argument of type '%s' is not iterable", jj_type_name(hay));
    return -1;
}

static json_t *compare(struct jj_ctx *c, const struct jj_node *n, const json_t *l, const json_t *r)
{
    const char *op = n->op;
    if (!strcmp(op, "=="))
        return json_boolean(jj_equal(l, r));
    if (!strcmp(op, "!="))
        return json_boolean(!jj_equal(l, r));
    if (!strcmp(op, "in") || !strcmp(op, "ni")) {
        int k = contains(c, n, l, r);
        return k < 0 ? NULL : json_boolean(op[0] == 'i' ? k : !k);
    }
    int k = jj_compare(l, r);
    if (k == -2) {
        if (!l || !r)
            return type_error(c, n, l, r);
        return jj_fail(c, n, "'%s' not supported between instances of '%s' and '%s'", op, jj_type_name(l),
                       jj_type_name(r));
    }
    bool v = !strcmp(op, "<") ? k < 0 : !strcmp(op, "<=") ? k <= 0 : !strcmp(op, ">") ? k > 0 : k >= 0;
    return json_boolean(v);
}

json_t *jj_eval_operator(struct jj_ctx *c, const struct jj_node *n, json_t *l, json_t *r)
{
    json_t *out = NULL;
    if (jj_failed(c)) {
        /* an operand failed */
    } else if (n->kind == JN_UNARY) {
        if (!jj_is_number(r))
            out = r ? jj_fail(c, n, "bad operand type for unary %s: '%s'", n->op, jj_type_name(r))
                    : type_error(c, n, r, r);
        else if (n->op[0] == '+')
            out = is_int(r) ? json_integer(int_of(r)) : json_incref(r);
        else if (is_int(r))
            out = int_of(r) == (-9223372036854775807LL - 1) ? jj_fail(c, n, "integer overflow")
                                                             : json_integer(-int_of(r));
        else
            out = json_real(-json_real_value(r));
    } else if (n->kind == JN_COMPARE) {
        out = compare(c, n, l, r);
    } else {
        out = arith(c, n, l, r);
    }
    json_decref(l);
    json_decref(r);
    return out;
}

/* ---- globals -------------------------------------------------------------- */

bool jj_is_namespace(const struct jj_ctx *c, const json_t *v)
{
    for (size_t i = 0; i < c->nns; i++)
        if (c->ns[i] == v)
            return true;
    return false;
}

static json_t *kwargs_object(struct jj_ctx *c, const struct jj_node *n, const struct jj_args *a)
{
    json_t *o = json_object();
    if (!o)
        return jj_fail(c, n, "out of memory");
    if (a->npos == 1 && a->pos[0] && json_is_object(a->pos[0]))
        json_object_update(o, a->pos[0]);
    else if (a->npos)
        return json_decref(o), jj_fail(c, n, "expected keyword arguments or one dict");
    for (size_t i = 0; i < a->nkw; i++)
        json_object_set(o, a->kwname[i], a->kwval[i] ? a->kwval[i] : json_null());
    return o;
}

static json_t *range(struct jj_ctx *c, const struct jj_node *n, const struct jj_args *a)
{
    long long v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3 || a->nkw)
        return jj_fail(c, n, "range expected 1 to 3 integer arguments");
    for (size_t i = 0; i < a->npos; i++) {
        if (!is_int(a->pos[i]))
            return jj_fail(c, n, "range() integer argument expected, got %s", jj_type_name(a->pos[i]));
    }
    if (a->npos == 1) {
        v[1] = int_of(a->pos[0]);
    } else {
        v[0] = int_of(a->pos[0]);
        v[1] = int_of(a->pos[1]);
        if (a->npos == 3)
            v[2] = int_of(a->pos[2]);
    }
    if (v[2] == 0)
        return jj_fail(c, n, "range() arg 3 must not be zero");
    double count = ceil(((double)v[1] - (double)v[0]) / (double)v[2]);
    if (count > 1000000)
        return jj_fail(c, n, "range() too large (%.0f items, limit 1000000)", count);
    json_t *r = json_array();
    for (long long i = v[0]; r && (v[2] > 0 ? i < v[1] : i > v[1]); i += v[2])
        json_array_append_new(r, json_integer(i));
    return r;
}

static json_t *strftime_now(struct jj_ctx *c, const struct jj_node *n, const struct jj_args *a)
{
    json_t *fmt = jj_arg(a, 0, "format", NULL);
    if (!fmt || !json_is_string(fmt))
        return jj_fail(c, n, "strftime_now() expects a format string");
    time_t now = time(NULL);
    struct tm tm;
    char out[512];
    if (!localtime_r(&now, &tm))
        return jj_fail(c, n, "strftime_now(): localtime failed");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* the template chooses the format */
    size_t k = strftime(out, sizeof(out), json_string_value(fmt), &tm);
#pragma GCC diagnostic pop
    return json_stringn_nocheck(out, k);
}

json_t *jj_global(struct jj_ctx *c, const struct jj_node *n, const char *name, const struct jj_args *a)
{
    if (!strcmp(name, "range"))
        return range(c, n, a);
    if (!strcmp(name, "dict"))
        return kwargs_object(c, n, a);
    if (!strcmp(name, "namespace")) {
        json_t *o = kwargs_object(c, n, a);
        json_t **nv = o ? realloc(c->ns, (c->nns + 1) * sizeof(*nv)) : NULL;
        if (!nv) {
            json_decref(o);
            return o ? jj_fail(c, n, "out of memory") : NULL;
        }
        c->ns = nv;
        c->ns[c->nns++] = json_incref(o);
        return o;
    }
    if (!strcmp(name, "raise_exception")) {
        json_t *m = jj_arg(a, 0, "message", NULL);
        json_t *s = m ? jj_to_string(m) : NULL;
        jj_fail(c, n, "%s", s ? json_string_value(s) : "raise_exception() called");
        json_decref(s);
        return NULL;
    }
    if (!strcmp(name, "strftime_now"))
        return strftime_now(c, n, a);
    return jj_fail(c, n, "'%s' is undefined", name);
}
