/* Jinja filters and tests, with jinja2's behaviour (and HF's tojson:
 * ensure_ascii=False, optional indent, no key sorting). */
#include "jinja-eval-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *str_of(json_t *v) { return jj_to_string(v); }

static bool arg_bool(const struct jj_args *a, size_t i, const char *name, bool dflt)
{
    bool present;
    json_t *v = jj_arg(a, i, name, &present);
    return present ? jj_truthy(v) : dflt;
}

/* Shifts positional args by k (for map/select forwarding to a filter/test). */
static struct jj_args args_from(const struct jj_args *a, size_t k)
{
    struct jj_args r = *a;
    r.pos = a->pos + (k < a->npos ? k : a->npos);
    r.npos = k < a->npos ? a->npos - k : 0;
    return r;
}

static json_t *attr_path(const json_t *v, const char *path)
{
    /* "a.b" walks nested dicts; digits index lists */
    json_t *cur = json_incref((json_t *)v);
    char part[128];
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t k = dot ? (size_t)(dot - path) : strlen(path);
        if (k >= sizeof(part)) {
            json_decref(cur);
            return NULL;
        }
        memcpy(part, path, k);
        part[k] = 0;
        json_t *nx = NULL;
        if (json_is_array(cur) && part[0] >= '0' && part[0] <= '9')
            nx = json_incref(json_array_get(cur, (size_t)atol(part)));
        else
            nx = jj_getattr(cur, part);
        json_decref(cur);
        cur = nx;
        path += k + (dot ? 1 : 0);
    }
    return cur;
}

static json_t *html_escape(const json_t *v)
{
    json_t *s = str_of((json_t *)v);
    if (!s)
        return NULL;
    struct jj_buf b = JJ_STRBUF;
    const char *p = json_string_value(s);
    for (size_t i = 0; i < json_string_length(s); i++) {
        switch (p[i]) {
        case '&': jj_buf_puts(&b, "&amp;"); break;
        case '<': jj_buf_puts(&b, "&lt;"); break;
        case '>': jj_buf_puts(&b, "&gt;"); break;
        case '"': jj_buf_puts(&b, "&#34;"); break;
        case '\'': jj_buf_puts(&b, "&#39;"); break;
        default: jj_buf_put(&b, p + i, 1);
        }
    }
    json_decref(s);
    json_t *r = jj_buf_string(&b);
    return r;
}

static json_t *indent(const json_t *v, const struct jj_args *a)
{
    json_t *w = jj_arg(a, 0, "width", NULL);
    bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
    json_t *pad = w && json_is_string(w) ? json_incref(w) : NULL;
    if (!pad) {
        long long k = w && json_is_integer(w) ? json_integer_value(w) : 4;
        char sp[256];
        if (k < 0)
            k = 0;
        if (k > 255)
            k = 255;
        memset(sp, ' ', (size_t)k);
        pad = json_stringn_nocheck(sp, (size_t)k);
    }
    json_t *s = str_of((json_t *)v);
    if (!s) {
        json_decref(pad);
        return NULL;
    }
    const char *p = json_string_value(s);
    size_t n = json_string_length(s);
    struct jj_buf b = JJ_STRBUF;
    for (size_t i = 0, line = 0; i <= n; line++) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - p) : n;
        bool empty = e == i;
        if ((line > 0 || first) && (blank || !empty))
            jj_buf_put(&b, json_string_value(pad), json_string_length(pad));
        jj_buf_put(&b, p + i, e - i);
        if (!nl)
            break;
        jj_buf_puts(&b, "\n");
        i = e + 1;
    }
    json_decref(s);
    json_decref(pad);
    json_t *r = jj_buf_string(&b);
    return r;
}

static json_t *sort_key(const json_t *v, const char *attr, bool case_sensitive)
{
    json_t *k = attr ? attr_path(v, attr) : json_incref((json_t *)v);
    if (k && json_is_string(k) && !case_sensitive) {
        json_t *l = jj_case(json_string_value(k), json_string_length(k), 0);
        json_decref(k);
        return l;
    }
    return k;
}

struct sort_item {
    json_t *key, *val;
    size_t idx;
};

static int sort_cmp(const void *x, const void *y)
{
    const struct sort_item *a = x, *b = y;
    int k = jj_compare(a->key, b->key);
    if (k == -2 || k == 0)
        return a->idx < b->idx ? -1 : 1; /* stable */
    return k;
}

static json_t *sort(struct jj_ctx *c, const struct jj_node *n, json_t *v, const struct jj_args *a, bool unique)
{
    json_t *items = jj_iter_list(c, n, v);
    if (!items)
        return NULL;
    bool reverse = unique ? false : arg_bool(a, 0, "reverse", false);
    bool cs = arg_bool(a, unique ? 0 : 1, "case_sensitive", false);
    json_t *attrv = jj_arg(a, unique ? 1 : 2, "attribute", NULL);
    const char *attr = attrv && json_is_string(attrv) ? json_string_value(attrv) : NULL;
    size_t len = json_array_size(items);
    struct sort_item *it = calloc(len ? len : 1, sizeof(*it));
    json_t *r = it ? json_array() : NULL;
    for (size_t i = 0; r && i < len; i++) {
        it[i].val = json_array_get(items, i);
        it[i].key = sort_key(it[i].val, attr, cs);
        it[i].idx = i;
    }
    if (r && unique) {
        for (size_t i = 0; i < len; i++) {
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = jj_equal(it[i].key, it[j].key);
            if (!seen)
                json_array_append(r, it[i].val);
        }
    } else if (r) {
        for (size_t i = 1; i < len; i++)
            if (jj_compare(it[0].key, it[i].key) == -2) {
                jj_fail(c, n, "sort: cannot compare '%s' with '%s'", jj_type_name(it[0].key),
                        jj_type_name(it[i].key));
                break;
            }
        qsort(it, len, sizeof(*it), sort_cmp);
        for (size_t i = 0; i < len; i++)
            json_array_append(r, it[reverse ? len - 1 - i : i].val);
    }
    for (size_t i = 0; it && i < len; i++)
        json_decref(it[i].key);
    free(it);
    json_decref(items);
    return r;
}

/* select / reject / selectattr / rejectattr */
static json_t *select_items(struct jj_ctx *c, const struct jj_node *n, json_t *v, const struct jj_args *a, bool keep,
                      bool by_attr)
{
    json_t *items = jj_iter_list(c, n, v);
    json_t *r = items ? json_array() : NULL;
    json_t *attrv = by_attr ? jj_arg(a, 0, NULL, NULL) : NULL;
    if (by_attr && (!attrv || !json_is_string(attrv))) {
        json_decref(items);
        json_decref(r);
        return jj_fail(c, n, "selectattr/rejectattr need an attribute name");
    }
    size_t k = by_attr ? 1 : 0;
    json_t *testv = jj_arg(a, k, NULL, NULL);
    struct jj_args rest = args_from(a, k + 1);
    for (size_t i = 0; r && i < json_array_size(items) && !jj_failed(c); i++) {
        json_t *it = json_array_get(items, i);
        json_t *x = by_attr ? attr_path(it, json_string_value(attrv)) : json_incref(it);
        int t = testv && json_is_string(testv) ? jj_test(c, n, json_string_value(testv), x, &rest) : jj_truthy(x);
        if (t >= 0 && (t != 0) == keep)
            json_array_append(r, it);
        json_decref(x);
    }
    json_decref(items);
    if (jj_failed(c)) {
        json_decref(r);
        return NULL;
    }
    return r;
}

static json_t *map(struct jj_ctx *c, const struct jj_node *n, json_t *v, const struct jj_args *a)
{
    json_t *items = jj_iter_list(c, n, v);
    json_t *r = items ? json_array() : NULL;
    bool has_attr;
    json_t *attrv = jj_arg(a, (size_t)-1, "attribute", &has_attr);
    json_t *dflt = jj_arg(a, (size_t)-1, "default", NULL);
    json_t *fname = jj_arg(a, 0, NULL, NULL);
    struct jj_args rest = args_from(a, 1);
    rest.nkw = 0;
    if (!has_attr && (!fname || !json_is_string(fname))) {
        json_decref(items);
        json_decref(r);
        return jj_fail(c, n, "map needs a filter name or attribute=");
    }
    for (size_t i = 0; r && i < json_array_size(items) && !jj_failed(c); i++) {
        json_t *it = json_array_get(items, i), *x;
        if (has_attr) {
            x = attrv && json_is_string(attrv) ? attr_path(it, json_string_value(attrv)) : NULL;
            if (!x && dflt)
                x = json_incref(dflt);
        } else {
            x = jj_filter(c, n, json_string_value(fname), it, &rest);
        }
        json_array_append_new(r, x ? x : json_null());
    }
    json_decref(items);
    if (jj_failed(c)) {
        json_decref(r);
        return NULL;
    }
    return r;
}

static json_t *to_int(const json_t *v, const struct jj_args *a)
{
    json_t *d = jj_arg(a, 0, "default", NULL);
    if (json_is_integer(v) || json_is_boolean(v))
        return json_integer(json_is_integer(v) ? json_integer_value(v) : json_is_true(v));
    if (json_is_real(v) && isfinite(json_real_value(v)) && fabs(json_real_value(v)) < 9.2e18)
        return json_integer((long long)json_real_value(v));
    if (json_is_string(v)) {
        char *end;
        const char *s = json_string_value(v);
        long long k = strtoll(s, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\n')
            end++;
        if (end != s && !*end)
            return json_integer(k);
        double f = strtod(s, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n')
            end++;
        if (end != s && !*end && isfinite(f) && fabs(f) < 9.2e18)
            return json_integer((long long)f);
    }
    return d ? json_incref(d) : json_integer(0);
}

static json_t *to_float(const json_t *v, const struct jj_args *a)
{
    json_t *d = jj_arg(a, 0, "default", NULL);
    if (jj_is_number(v))
        return json_real(jj_number(v));
    if (json_is_string(v)) {
        char *end;
        const char *s = json_string_value(v);
        double f = strtod(s, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n')
            end++;
        if (end != s && !*end)
            return json_real(f);
    }
    return d ? json_incref(d) : json_real(0);
}

static json_t *round_filter(struct jj_ctx *c, const struct jj_node *n, const json_t *v, const struct jj_args *a)
{
    if (!jj_is_number(v))
        return jj_fail(c, n, "round: expected a number, got %s", jj_type_name(v));
    json_t *pv = jj_arg(a, 0, "precision", NULL), *mv = jj_arg(a, 1, "method", NULL);
    long long prec = pv && json_is_integer(pv) ? json_integer_value(pv) : 0;
    const char *m = mv && json_is_string(mv) ? json_string_value(mv) : "common";
    double x = jj_number(v), s = pow(10, (double)prec);
    double r = !strcmp(m, "ceil") ? ceil(x * s) / s : !strcmp(m, "floor") ? floor(x * s) / s : nearbyint(x * s) / s; /* Python rounds half to even */
    return json_real(r);
}

static json_t *len_of(struct jj_ctx *c, const struct jj_node *n, const json_t *v)
{
    if (!v)
        return json_integer(0);
    if (json_is_string(v))
        return json_integer((long long)jj_u8_len(json_string_value(v), json_string_length(v)));
    if (json_is_array(v))
        return json_integer((long long)json_array_size(v));
    if (json_is_object(v))
        return json_integer((long long)json_object_size(v));
    return jj_fail(c, n, "object of type '%s' has no len()", jj_type_name(v));
}

static json_t *minmax(struct jj_ctx *c, const struct jj_node *n, json_t *v, bool want_max)
{
    json_t *items = jj_iter_list(c, n, v), *best = NULL;
    for (size_t i = 0; items && i < json_array_size(items); i++) {
        json_t *x = json_array_get(items, i);
        int k = best ? jj_compare(x, best) : 0;
        if (k == -2) {
            json_decref(items);
            return jj_fail(c, n, "cannot compare '%s' with '%s'", jj_type_name(x), jj_type_name(best));
        }
        if (!best || (want_max ? k > 0 : k < 0))
            best = x;
    }
    json_incref(best);
    json_decref(items);
    return best;
}

json_t *jj_filter(struct jj_ctx *c, const struct jj_node *n, const char *name, json_t *v, const struct jj_args *a)
{
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        json_t *d = jj_arg(a, 0, "default_value", NULL);
        bool boolean = arg_bool(a, 1, "boolean", false);
        if (!v || (boolean && !jj_truthy(v)))
            return d ? json_incref(d) : json_string("");
        return json_incref(v);
    }
    if (!strcmp(name, "length") || !strcmp(name, "count"))
        return len_of(c, n, v);
    if (!strcmp(name, "safe"))
        return v ? json_incref(v) : NULL;
    if (!strcmp(name, "string"))
        return jj_sized(c, n, str_of(v), "string");
    if (!strcmp(name, "list"))
        return v && json_is_array(v) ? json_copy(v) : jj_iter_list(c, n, v);
    if (!strcmp(name, "items")) {
        if (!v)
            return json_array();
        if (!json_is_object(v))
            return jj_fail(c, n, "items: expected a mapping, got %s", jj_type_name(v));
        return jj_method(c, n, v, "items", a);
    }
    if (!strcmp(name, "tojson")) {
        /* HF's signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
        json_t *iv = jj_arg(a, (size_t)-1, "indent", NULL), *sv = jj_arg(a, (size_t)-1, "separators", NULL);
        if (a->npos >= 1) /* tojson(4) is the indent, as jinja2's own filter takes it */
            iv = a->pos[0];
        const char *isep = NULL, *ksep = NULL;
        if (json_is_array(sv) && json_array_size(sv) == 2) {
            isep = json_string_value(json_array_get(sv, 0));
            ksep = json_string_value(json_array_get(sv, 1));
        }
        struct jj_buf b = JJ_STRBUF;
        bool ok = jj_tojson(&b, v, iv && json_is_integer(iv) ? (int)json_integer_value(iv) : -1,
                            arg_bool(a, (size_t)-1, "sort_keys", false), isep, ksep);
        if (ok && b.overflow) {
            jj_buf_free(&b);
            return jj_sized(c, n, NULL, "tojson");
        }
        json_t *r = ok ? json_stringn_nocheck(b.p ? b.p : "", b.n) : NULL;
        jj_buf_free(&b);
        return ok ? r : jj_fail(c, n, "tojson: object of type %s is not JSON serializable", jj_type_name(v));
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        json_t *items = jj_iter_list(c, n, v);
        size_t k = items ? json_array_size(items) : 0;
        json_t *r = k ? json_incref(json_array_get(items, name[0] == 'f' ? 0 : k - 1)) : NULL;
        json_decref(items);
        return r;
    }
    if (!strcmp(name, "reverse")) {
        if (v && json_is_string(v)) {
            json_t *chars = jj_iter_list(c, n, v);
            struct jj_buf b = JJ_STRBUF;
            for (size_t i = json_array_size(chars); i-- > 0;)
                jj_str(&b, json_array_get(chars, i));
            json_decref(chars);
            return jj_sized(c, n, jj_buf_string(&b), "reverse");
        }
        json_t *items = jj_iter_list(c, n, v), *r = items ? json_array() : NULL;
        for (size_t i = items ? json_array_size(items) : 0; r && i-- > 0;)
            json_array_append(r, json_array_get(items, i));
        json_decref(items);
        return r;
    }
    if (!strcmp(name, "join")) {
        json_t *items = jj_iter_list(c, n, v), *sep = jj_arg(a, 0, "d", NULL), *attr = jj_arg(a, 1, "attribute", NULL);
        json_t *seps = sep ? jj_sized(c, n, str_of(sep), "join") : json_string("");
        struct jj_buf b = JJ_STRBUF;
        for (size_t i = 0; seps && items && i < json_array_size(items) && !b.overflow; i++) {
            if (i)
                jj_buf_put(&b, json_string_value(seps), json_string_length(seps));
            json_t *x = attr && json_is_string(attr) ? attr_path(json_array_get(items, i), json_string_value(attr))
                                                     : json_incref(json_array_get(items, i));
            jj_str(&b, x);
            json_decref(x);
        }
        json_decref(items);
        json_decref(seps);
        json_t *r = jj_failed(c) ? NULL : jj_sized(c, n, jj_buf_string(&b), "join");
        jj_buf_free(&b);
        return r;
    }
    if (!strcmp(name, "dictsort")) { /* dictsort(case_sensitive=False, by='key', reverse=False) */
        if (!v || !json_is_object(v))
            return jj_fail(c, n, "dictsort: expected a mapping, got %s", jj_type_name(v));
        json_t *pairs = jj_method(c, n, v, "items", a), *byv = jj_arg(a, 1, "by", NULL);
        bool by_value = byv && json_is_string(byv) && !strcmp(json_string_value(byv), "value");
        struct jj_args sa = {0};
        json_t *opt[3] = {json_boolean(arg_bool(a, 2, "reverse", false)),
                          json_boolean(arg_bool(a, 0, "case_sensitive", false)), json_string(by_value ? "1" : "0")};
        sa.pos = opt;
        sa.npos = 3;
        json_t *r = pairs ? sort(c, n, pairs, &sa, false) : NULL;
        for (int i = 0; i < 3; i++)
            json_decref(opt[i]);
        json_decref(pairs);
        return r;
    }
    if (!strcmp(name, "map"))
        return map(c, n, v, a);
    if (!strcmp(name, "select") || !strcmp(name, "reject"))
        return select_items(c, n, v, a, name[0] == 's', false);
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return select_items(c, n, v, a, name[0] == 's', true);
    if (!strcmp(name, "sort") || !strcmp(name, "unique"))
        return sort(c, n, v, a, name[0] == 'u');
    if (!strcmp(name, "min") || !strcmp(name, "max"))
        return minmax(c, n, v, name[1] == 'a');
    if (!strcmp(name, "sum")) {
        json_t *items = jj_iter_list(c, n, v);
        json_t *acc = json_incref(jj_arg(a, 1, "start", NULL));
        if (!acc)
            acc = json_integer(0);
        struct jj_node op = *n;
        op.kind = JN_BINARY;
        strcpy(op.op, "+");
        for (size_t i = 0; items && acc && i < json_array_size(items); i++)
            acc = jj_eval_operator(c, &op, acc, json_incref(json_array_get(items, i)));
        json_decref(items);
        return acc;
    }
    if (!strcmp(name, "int"))
        return to_int(v, a);
    if (!strcmp(name, "float"))
        return to_float(v, a);
    if (!strcmp(name, "abs")) {
        if (json_is_integer(v))
            return json_integer(llabs(json_integer_value(v)));
        if (jj_is_number(v))
            return json_is_real(v) ? json_real(fabs(json_real_value(v))) : json_integer(json_is_true(v));
        return jj_fail(c, n, "bad operand type for abs(): '%s'", jj_type_name(v));
    }
    if (!strcmp(name, "round"))
        return round_filter(c, n, v, a);
    if (!strcmp(name, "e") || !strcmp(name, "escape") || !strcmp(name, "forceescape"))
        return jj_sized(c, n, html_escape(v), name);
    if (!strcmp(name, "indent"))
        return jj_sized(c, n, indent(v, a), "indent");
    if (!strcmp(name, "format")) { /* "%s-%d" | format(a, b) */
        if (!v || !json_is_string(v))
            return jj_fail(c, n, "format: expected a string, got %s", jj_type_name(v));
        json_t *lst = json_array();
        for (size_t i = 0; lst && i < a->npos; i++)
            json_array_append(lst, a->pos[i] ? a->pos[i] : json_null());
        json_t *r = lst ? jj_percent_format(c, n, v, lst) : NULL;
        json_decref(lst);
        return r;
    }
    /* string filters; the input's str() can overflow before the filter does */
    json_t *s = str_of(v), *r = NULL;
    if (!s) {
        char input[48];
        snprintf(input, sizeof input, "%s's input", name);
        return jj_sized(c, n, NULL, input);
    }
    const char *p = json_string_value(s);
    size_t len = json_string_length(s);
    if (!strcmp(name, "trim")) {
        json_t *chars = jj_arg(a, 0, "chars", NULL);
        r = jj_strip(p, len, chars && json_is_string(chars) ? json_string_value(chars) : NULL, 3);
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        r = jj_sized(c, n, jj_case(p, len, name[0] == 'u'), name);
    } else if (!strcmp(name, "capitalize")) {
        r = jj_sized(c, n, jj_case(p, len, 3), name);
    } else if (!strcmp(name, "title")) {
        r = jj_sized(c, n, jj_case(p, len, 4), name);
    } else if (!strcmp(name, "replace")) {
        json_t *o = jj_arg(a, 0, "old", NULL), *nw = jj_arg(a, 1, "new", NULL), *cnt = jj_arg(a, 2, "count", NULL);
        json_t *os = o ? str_of(o) : NULL, *ns = nw ? str_of(nw) : NULL;
        if (os && ns)
            r = jj_sized(c, n,
                         jj_replace(p, len, json_string_value(os), json_string_length(os), json_string_value(ns),
                                    json_string_length(ns), cnt && json_is_integer(cnt) ? json_integer_value(cnt) : -1),
                         "replace");
        else
            jj_fail(c, n, o && nw ? "replace: an argument is too large" : "replace needs two arguments");
        json_decref(os);
        json_decref(ns);
    } else if (!strcmp(name, "wordcount")) {
        json_t *w = jj_method(c, n, s, "split", &(struct jj_args){0});
        r = json_integer(w ? (long long)json_array_size(w) : 0);
        json_decref(w);
    } else {
        jj_fail(c, n, "no filter named '%s'", name);
    }
    json_decref(s);
    return r;
}

/* ---- tests ---------------------------------------------------------------- */

int jj_test(struct jj_ctx *c, const struct jj_node *n, const char *name, const json_t *v, const struct jj_args *a)
{
    json_t *arg = jj_arg(a, 0, NULL, NULL);
    if (!strcmp(name, "defined"))
        return v != NULL;
    if (!strcmp(name, "undefined"))
        return v == NULL;
    if (!strcmp(name, "none"))
        return v && json_is_null(v);
    if (!strcmp(name, "string"))
        return v && json_is_string(v);
    if (!strcmp(name, "number"))
        return jj_is_number(v);
    if (!strcmp(name, "integer"))
        return v && json_is_integer(v);
    if (!strcmp(name, "float"))
        return v && json_is_real(v);
    if (!strcmp(name, "boolean"))
        return v && json_is_boolean(v);
    if (!strcmp(name, "true"))
        return v && json_is_true(v);
    if (!strcmp(name, "false"))
        return v && json_is_false(v);
    if (!strcmp(name, "mapping"))
        return v && json_is_object(v);
    if (!strcmp(name, "iterable") || !strcmp(name, "sequence"))
        return !v || json_is_array(v) || json_is_object(v) || json_is_string(v);
    if (!strcmp(name, "callable"))
        return 0;
    if (!strcmp(name, "even") || !strcmp(name, "odd") || !strcmp(name, "divisibleby")) {
        bool d = name[0] == 'd';
        if (!v || !(json_is_integer(v) || json_is_boolean(v)) || (d && (!arg || !json_is_integer(arg)))) {
            jj_fail(c, n, "test '%s' needs integers", name);
            return -1;
        }
        long long x = json_is_integer(v) ? json_integer_value(v) : json_is_true(v);
        long long m = d ? json_integer_value(arg) : 2;
        if (m == 0) {
            jj_fail(c, n, "integer division or modulo by zero");
            return -1;
        }
        long long r = x % m;
        return d ? r == 0 : (name[0] == 'e' ? r == 0 : r != 0);
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (!v || !json_is_string(v))
            return 0;
        json_t *r = jj_method(c, n, (json_t *)v, name[0] == 'l' ? "islower" : "isupper", a);
        int k = jj_truthy(r);
        json_decref(r);
        return k;
    }
    if (!strcmp(name, "sameas"))
        return v == arg || (v && arg && json_is_null(v) && json_is_null(arg)) ||
               (v && arg && json_is_boolean(v) && json_typeof(v) == json_typeof(arg));
    static const struct {
        const char *name, *op;
    } cmp[] = {{"eq", "=="}, {"equalto", "=="}, {"==", "=="}, {"ne", "!="}, {"!=", "!="}, {"lt", "<"},
               {"lessthan", "<"}, {"<", "<"}, {"le", "<="}, {"<=", "<="}, {"gt", ">"}, {"greaterthan", ">"},
               {">", ">"}, {"ge", ">="}, {">=", ">="}, {"in", "in"}};
    for (size_t i = 0; i < sizeof(cmp) / sizeof(cmp[0]); i++) {
        if (strcmp(name, cmp[i].name) != 0)
            continue;
        struct jj_node op = *n;
        op.kind = JN_COMPARE;
        strcpy(op.op, cmp[i].op);
        json_t *r = jj_eval_operator(c, &op, json_incref((json_t *)v), json_incref(arg));
        if (!r)
            return -1;
        int k = json_is_true(r);
        json_decref(r);
        return k;
    }
    jj_fail(c, n, "no test named '%s'", name);
    return -1;
}
