/* Python semantics of jansson values for the Jinja interpreter: truth,
 * equality, ordering, str()/repr(), float repr and json.dumps. */
#include "jinja-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- output buffer ------------------------------------------------------- */

bool jj_buf_put(struct jj_buf *b, const char *s, size_t n)
{
    if (b->overflow)
        return false;
    if (b->limit && b->n + n > b->limit) {
        b->overflow = true;
        return false;
    }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->overflow = true;
            return false;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

bool jj_buf_puts(struct jj_buf *b, const char *s) { return jj_buf_put(b, s, strlen(s)); }

json_t *jj_buf_string(struct jj_buf *b)
{
    json_t *r = b->overflow ? NULL : json_stringn_nocheck(b->p ? b->p : "", b->n);
    jj_buf_free(b);
    return r;
}

void jj_buf_free(struct jj_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- UTF-8 ----------------------------------------------------------------- */

int jj_u8_decode(const char *s, size_t n, int32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || n < 2) {
        *cp = u[0];
        return 1;
    }
    int len = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 1;
    if ((size_t)len > n)
        len = 1;
    int32_t v = len == 4 ? u[0] & 7 : len == 3 ? u[0] & 15 : len == 2 ? u[0] & 31 : u[0];
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = u[0];
            return 1;
        }
        v = (v << 6) | (u[i] & 63);
    }
    *cp = v;
    return len;
}

int jj_u8_encode(int32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 63));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 63));
        out[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 63));
    out[2] = (char)(0x80 | ((cp >> 6) & 63));
    out[3] = (char)(0x80 | (cp & 63));
    return 4;
}

size_t jj_u8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += (size_t)jj_u8_decode(s + i, n - i, &cp);
        k++;
    }
    return k;
}

size_t jj_u8_offset(const char *s, size_t n, size_t idx)
{
    size_t i = 0;
    for (size_t k = 0; k < idx && i < n; k++) {
        int32_t cp;
        i += (size_t)jj_u8_decode(s + i, n - i, &cp);
    }
    return i;
}

/* Python's str.isspace(). */
bool jj_is_space(int32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* ---- truth, equality, order -------------------------------------------- */

bool jj_is_number(const json_t *v) { return v && (json_is_number(v) || json_is_boolean(v)); }

double jj_number(const json_t *v)
{
    if (json_is_integer(v))
        return (double)json_integer_value(v);
    if (json_is_real(v))
        return json_real_value(v);
    return json_is_true(v) ? 1 : 0;
}

bool jj_truthy(const json_t *v)
{
    if (!v)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return json_object_size(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0;
    case JSON_TRUE: return true;
    default: return false;
    }
}

bool jj_equal(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return !a && !b;
    if (jj_is_number(a) && jj_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return jj_number(a) == jj_number(b);
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!jj_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach ((json_t *)a, k, v)
            if (!jj_equal(v, json_object_get(b, k)))
                return false;
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

int jj_compare(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return -2;
    if (jj_is_number(a) && jj_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            long long x = json_integer_value(a), y = json_integer_value(b);
            return x < y ? -1 : x > y;
        }
        double x = jj_number(a), y = jj_number(b);
        return x < y ? -1 : x > y;
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int r = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        if (r == 0)
            r = la < lb ? -1 : la > lb;
        return r < 0 ? -1 : r > 0;
    }
    if (json_is_array(a) && json_is_array(b)) {
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na && i < nb; i++) {
            json_t *x = json_array_get(a, i), *y = json_array_get(b, i);
            if (jj_equal(x, y))
                continue;
            return jj_compare(x, y);
        }
        return na < nb ? -1 : na > nb;
    }
    return -2;
}

const char *jj_type_name(const json_t *v)
{
    if (!v)
        return "Undefined";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "dict";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "str";
    case JSON_INTEGER: return "int";
    case JSON_REAL: return "float";
    case JSON_TRUE:
    case JSON_FALSE: return "bool";
    default: return "NoneType";
    }
}

/* ---- str / repr ---------------------------------------------------------- */

/* Python's repr(float): shortest round-trip digits, positional notation
 * for exponents in [-4, 16), else d.ddde+XX. */
void jj_format_float(char *out, size_t n, double d)
{
    if (isnan(d)) {
        snprintf(out, n, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(out, n, d < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec - 1, d);
        if (strtod(e, NULL) == d)
            break;
    }
    /* e = [-]D.DDDDe[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *p = e;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    char buf[64];
    size_t o = 0;
    if (neg)
        buf[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            buf[o++] = '0';
            buf[o++] = '.';
            for (int i = -1; i > exp; i--)
                buf[o++] = '0';
            for (size_t i = 0; i < nd; i++)
                buf[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp; i++)
                buf[o++] = (size_t)i < nd ? digits[i] : '0';
            buf[o++] = '.';
            if ((size_t)exp + 1 < nd)
                for (size_t i = (size_t)exp + 1; i < nd; i++)
                    buf[o++] = digits[i];
            else
                buf[o++] = '0';
        }
        buf[o] = 0;
    } else {
        buf[o++] = digits[0];
        if (nd > 1) {
            buf[o++] = '.';
            for (size_t i = 1; i < nd; i++)
                buf[o++] = digits[i];
        }
        snprintf(buf + o, sizeof(buf) - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(out, n, "%s", buf);
}

static void put_scalar(struct jj_buf *b, const json_t *v)
{
    char tmp[64];
    if (json_is_integer(v)) {
        snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(v));
        jj_buf_puts(b, tmp);
    } else if (json_is_real(v)) {
        jj_format_float(tmp, sizeof(tmp), json_real_value(v));
        jj_buf_puts(b, tmp);
    } else if (json_is_boolean(v)) {
        jj_buf_puts(b, json_is_true(v) ? "True" : "False");
    } else {
        jj_buf_puts(b, "None");
    }
}

static void repr_string(struct jj_buf *b, const char *s, size_t n)
{
    char q = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    jj_buf_put(b, &q, 1);
    for (size_t i = 0; i < n && !b->overflow; i++) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[8];
        if (ch == (unsigned char)q || ch == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)ch;
            jj_buf_put(b, tmp, 2);
        } else if (ch == '\n') {
            jj_buf_puts(b, "\\n");
        } else if (ch == '\r') {
            jj_buf_puts(b, "\\r");
        } else if (ch == '\t') {
            jj_buf_puts(b, "\\t");
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(tmp, sizeof(tmp), "\\x%02x", ch);
            jj_buf_puts(b, tmp);
        } else {
            jj_buf_put(b, (const char *)&s[i], 1);
        }
    }
    jj_buf_put(b, &q, 1);
}

void jj_repr(struct jj_buf *b, const json_t *v)
{
    if (!v)
        return;
    if (json_is_string(v)) {
        repr_string(b, json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        jj_buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v) && !b->overflow; i++) {
            if (i)
                jj_buf_puts(b, ", ");
            jj_repr(b, json_array_get(v, i));
        }
        jj_buf_puts(b, "]");
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        bool first = true;
        jj_buf_puts(b, "{");
        json_object_foreach ((json_t *)v, k, x) {
            if (b->overflow)
                break;
            if (!first)
                jj_buf_puts(b, ", ");
            first = false;
            repr_string(b, k, strlen(k));
            jj_buf_puts(b, ": ");
            jj_repr(b, x);
        }
        jj_buf_puts(b, "}");
    } else {
        put_scalar(b, v);
    }
}

void jj_str(struct jj_buf *b, const json_t *v)
{
    if (!v)
        return; /* Undefined prints nothing */
    if (json_is_string(v))
        jj_buf_put(b, json_string_value(v), json_string_length(v));
    else
        jj_repr(b, v);
}

json_t *jj_to_string(const json_t *v)
{
    if (v && json_is_string(v))
        return json_incref((json_t *)v);
    struct jj_buf b = JJ_STRBUF;
    jj_str(&b, v);
    return jj_buf_string(&b);
}

/* ---- json.dumps ---------------------------------------------------------- */

static void json_string_out(struct jj_buf *b, const char *s, size_t n)
{
    jj_buf_puts(b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (ch < 0x20) {
                snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
                esc = tmp;
            }
        }
        if (esc) {
            jj_buf_put(b, s + run, i - run);
            jj_buf_puts(b, esc);
            run = i + 1;
        }
    }
    jj_buf_put(b, s + run, n - run);
    jj_buf_puts(b, "\"");
}

static void newline_indent(struct jj_buf *b, int indent, int level)
{
    jj_buf_puts(b, "\n");
    for (int i = 0; i < indent * level; i++)
        jj_buf_puts(b, " ");
}

static int cmp_keys(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

struct dump_opts {
    int indent;              /* < 0: one line */
    bool sort_keys;
    const char *item_sep, *key_sep;
};

static bool dumps(struct jj_buf *b, const json_t *v, const struct dump_opts *o, int level)
{
    if (level > 200)
        return false;
    if (!v)
        return false; /* Undefined is not JSON serializable */
    const char *sep = o->item_sep;
    int indent = o->indent;
    bool sort_keys = o->sort_keys;
    switch (json_typeof(v)) {
    case JSON_STRING:
        json_string_out(b, json_string_value(v), json_string_length(v));
        return true;
    case JSON_TRUE: jj_buf_puts(b, "true"); return true;
    case JSON_FALSE: jj_buf_puts(b, "false"); return true;
    case JSON_NULL: jj_buf_puts(b, "null"); return true;
    case JSON_REAL:
        if (isnan(json_real_value(v))) {
            jj_buf_puts(b, "NaN");
            return true;
        }
        if (isinf(json_real_value(v))) {
            jj_buf_puts(b, json_real_value(v) < 0 ? "-Infinity" : "Infinity");
            return true;
        }
        put_scalar(b, v);
        return true;
    case JSON_INTEGER: put_scalar(b, v); return true;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        jj_buf_puts(b, "[");
        for (size_t i = 0; i < n && !b->overflow; i++) {
            if (i)
                jj_buf_puts(b, sep);
            if (indent >= 0)
                newline_indent(b, indent, level + 1);
            if (!dumps(b, json_array_get(v, i), o, level + 1))
                return false;
        }
        if (n && indent >= 0)
            newline_indent(b, indent, level);
        jj_buf_puts(b, "]");
        return true;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = malloc((n ? n : 1) * sizeof(*keys));
        if (!keys)
            return false;
        const char *k;
        json_t *x;
        json_object_foreach ((json_t *)v, k, x)
            keys[i++] = k;
        if (sort_keys)
            qsort(keys, n, sizeof(*keys), cmp_keys);
        jj_buf_puts(b, "{");
        bool ok = true;
        for (i = 0; i < n && ok && !b->overflow; i++) {
            if (i)
                jj_buf_puts(b, sep);
            if (indent >= 0)
                newline_indent(b, indent, level + 1);
            json_string_out(b, keys[i], strlen(keys[i]));
            jj_buf_puts(b, o->key_sep);
            ok = dumps(b, json_object_get(v, keys[i]), o, level + 1);
        }
        free(keys);
        if (!ok)
            return false;
        if (n && indent >= 0)
            newline_indent(b, indent, level);
        jj_buf_puts(b, "}");
        return true;
    }
    }
    return false;
}

bool jj_tojson(struct jj_buf *b, const json_t *v, int indent, bool sort_keys, const char *item_sep,
               const char *key_sep)
{
    struct dump_opts o = {indent, sort_keys, item_sep ? item_sep : indent >= 0 ? "," : ", ",
                          key_sep ? key_sep : ": "};
    return dumps(b, v, &o, 0);
}
