/* Python methods callable from templates: str (strip, split, startswith,
 * replace, format, ...), dict (get, items, keys, values) and loop.cycle.
 * Text is UTF-8; case mapping uses utf8proc (simple, one-to-one mappings). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "jinja-eval-impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* which: 1 left, 2 right, 3 both.  chars NULL: Python whitespace. */
json_t *jj_strip(const char *s, size_t n, const char *chars, int which)
{
    size_t b = 0, e = n;
    while ((which & 1) && b < e) {
        int32_t cp;
        int k = jj_u8_decode(s + b, e - b, &cp);
        char enc[5] = {0};
        jj_u8_encode(cp, enc);
        bool hit = chars ? (cp != 0 && strstr(chars, enc) != NULL) : jj_is_space(cp);
        if (!hit)
            break;
        b += (size_t)k;
    }
    while ((which & 2) && e > b) {
        size_t p = e - 1;
        while (p > b && ((unsigned char)s[p] & 0xC0) == 0x80)
            p--;
        int32_t cp;
        jj_u8_decode(s + p, e - p, &cp);
        char enc[5] = {0};
        jj_u8_encode(cp, enc);
        bool hit = chars ? (cp != 0 && strstr(chars, enc) != NULL) : jj_is_space(cp);
        if (!hit)
            break;
        e = p;
    }
    return json_stringn_nocheck(s + b, e - b);
}

static bool is_cased(int32_t cp)
{
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

/* mode: 0 lower, 1 upper, 2 str.title(), 3 capitalize, 4 jinja's title filter */
json_t *jj_case(const char *s, size_t n, int mode)
{
    struct jj_buf b = JJ_STRBUF;
    bool prev_cased = false, word_start = true;
    for (size_t i = 0; i < n;) {
        int32_t cp, out;
        i += (size_t)jj_u8_decode(s + i, n - i, &cp);
        switch (mode) {
        case 0: out = utf8proc_tolower(cp); break;
        case 1: out = utf8proc_toupper(cp); break;
        case 2:
            out = prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp);
            prev_cased = is_cased(cp);
            break;
        case 3:
            out = word_start ? utf8proc_totitle(cp) : utf8proc_tolower(cp);
            word_start = false;
            break;
        default:
            out = word_start ? utf8proc_totitle(cp) : utf8proc_tolower(cp);
            word_start = jj_is_space(cp) || (cp < 128 && strchr("-({[<", (int)cp));
        }
        if (cp == 0xDF && out != 0xDF && mode != 0) { /* Python: upper('ß') is "SS", title "Ss" */
            jj_buf_puts(&b, mode == 1 ? "SS" : "Ss");
            continue;
        }
        char enc[4];
        jj_buf_put(&b, enc, (size_t)jj_u8_encode(out, enc));
    }
    json_t *r = jj_buf_string(&b);
    return r;
}

static const char *opt_str(const struct jj_args *a, size_t i, const char *name)
{
    json_t *v = jj_arg(a, i, name, NULL);
    return v && json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *split(struct jj_ctx *c, const struct jj_node *n, const char *s, size_t len,
                     const struct jj_args *a)
{
    json_t *sepv = jj_arg(a, 0, "sep", NULL), *maxv = jj_arg(a, 1, "maxsplit", NULL);
    long long maxsplit = maxv && json_is_integer(maxv) ? json_integer_value(maxv) : -1;
    json_t *r = json_array();
    if (!r)
        return NULL;
    if (sepv && !json_is_null(sepv)) {
        if (!json_is_string(sepv) || json_string_length(sepv) == 0) {
            json_decref(r);
            return jj_fail(c, n, "split(): empty or non-string separator");
        }
        const char *sep = json_string_value(sepv);
        size_t sl = json_string_length(sepv), p = 0;
        for (;;) {
            const char *hit = maxsplit != 0 ? memmem(s + p, len - p, sep, sl) : NULL;
            if (!hit)
                break;
            json_array_append_new(r, json_stringn_nocheck(s + p, (size_t)(hit - (s + p))));
            p = (size_t)(hit - s) + sl;
            if (maxsplit > 0)
                maxsplit--;
        }
        json_array_append_new(r, json_stringn_nocheck(s + p, len - p));
        return r;
    }
    /* whitespace runs; leading/trailing whitespace yields no empty items */
    size_t p = 0;
    for (;;) {
        int32_t cp;
        while (p < len) {
            int k = jj_u8_decode(s + p, len - p, &cp);
            if (!jj_is_space(cp))
                break;
            p += (size_t)k;
        }
        if (p >= len)
            break;
        if (maxsplit == 0) {
            size_t e = len;
            while (e > p) { /* rstrip the remainder */
                size_t q = e - 1;
                while (q > p && ((unsigned char)s[q] & 0xC0) == 0x80)
                    q--;
                jj_u8_decode(s + q, e - q, &cp);
                if (!jj_is_space(cp))
                    break;
                e = q;
            }
            json_array_append_new(r, json_stringn_nocheck(s + p, e - p));
            break;
        }
        size_t q = p;
        while (q < len) {
            int k = jj_u8_decode(s + q, len - q, &cp);
            if (jj_is_space(cp))
                break;
            q += (size_t)k;
        }
        json_array_append_new(r, json_stringn_nocheck(s + p, q - p));
        p = q;
        if (maxsplit > 0)
            maxsplit--;
    }
    return r;
}

json_t *jj_replace(const char *s, size_t n, const char *old, size_t on, const char *nw, size_t nn, long long count)
{
    struct jj_buf b = JJ_STRBUF;
    size_t p = 0;
    if (on == 0) { /* Python inserts `new` between every code point */
        for (long long k = 0; p <= n && count != 0 && !b.overflow; k++) {
            jj_buf_put(&b, nw, nn);
            if (count > 0)
                count--;
            if (p == n)
                break;
            int32_t cp;
            int w = jj_u8_decode(s + p, n - p, &cp);
            jj_buf_put(&b, s + p, (size_t)w);
            p += (size_t)w;
        }
    } else {
        while (count != 0 && !b.overflow) {
            const char *hit = memmem(s + p, n - p, old, on);
            if (!hit)
                break;
            jj_buf_put(&b, s + p, (size_t)(hit - (s + p)));
            jj_buf_put(&b, nw, nn);
            p = (size_t)(hit - s) + on;
            if (count > 0)
                count--;
        }
    }
    jj_buf_put(&b, s + p, n - p);
    json_t *r = jj_buf_string(&b);
    return r;
}

static int affix(const json_t *self, const json_t *arg, bool end)
{
    if (json_is_array(arg)) { /* a tuple of alternatives */
        for (size_t i = 0; i < json_array_size(arg); i++)
            if (affix(self, json_array_get(arg, i), end) == 1)
                return 1;
        return 0;
    }
    if (!arg || !json_is_string(arg))
        return -1;
    size_t n = json_string_length(self), k = json_string_length(arg);
    if (k > n)
        return 0;
    return memcmp(json_string_value(self) + (end ? n - k : 0), json_string_value(arg), k) == 0;
}

/* str.format with {}, {0} and {name} fields ({{ and }} escape braces). */
static json_t *format(struct jj_ctx *c, const struct jj_node *n, const char *s, size_t len,
                      const struct jj_args *a)
{
    struct jj_buf b = JJ_STRBUF;
    size_t auto_idx = 0;
    for (size_t i = 0; i < len; i++) {
        if ((s[i] == '{' || s[i] == '}') && i + 1 < len && s[i + 1] == s[i]) {
            jj_buf_put(&b, s + i, 1);
            i++;
            continue;
        }
        if (s[i] != '{') {
            jj_buf_put(&b, s + i, 1);
            continue;
        }
        const char *close = memchr(s + i, '}', len - i);
        if (!close) {
            jj_buf_free(&b);
            return jj_fail(c, n, "format(): single '{' encountered");
        }
        char field[64];
        size_t fl = (size_t)(close - (s + i + 1));
        if (fl >= sizeof(field) || memchr(s + i + 1, ':', fl) || memchr(s + i + 1, '!', fl)) {
            jj_buf_free(&b);
            return jj_fail(c, n, "format(): unsupported field");
        }
        memcpy(field, s + i + 1, fl);
        field[fl] = 0;
        json_t *v;
        bool present;
        if (fl == 0)
            v = jj_arg(a, auto_idx++, NULL, &present);
        else if (field[0] >= '0' && field[0] <= '9')
            v = jj_arg(a, (size_t)atoi(field), NULL, &present);
        else
            v = jj_arg(a, (size_t)-1, field, &present);
        if (!present) {
            jj_buf_free(&b);
            return jj_fail(c, n, "format(): missing argument for '{%s}'", field);
        }
        jj_str(&b, v);
        i = (size_t)(close - s);
    }
    return jj_sized(c, n, jj_buf_string(&b), "format()");
}

static json_t *str_pred(const char *s, size_t n, const char *name)
{
    bool any = false, ok = n > 0, has_cased = false;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += (size_t)jj_u8_decode(s + i, n - i, &cp);
        utf8proc_category_t k = utf8proc_category(cp);
        bool letter = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
        bool digit = k == UTF8PROC_CATEGORY_ND;
        any = true;
        if (!strcmp(name, "isdigit") || !strcmp(name, "isnumeric") || !strcmp(name, "isdecimal"))
            ok &= digit;
        else if (!strcmp(name, "isalpha"))
            ok &= letter;
        else if (!strcmp(name, "isalnum"))
            ok &= letter || digit;
        else if (!strcmp(name, "isspace"))
            ok &= jj_is_space(cp);
        else if (!strcmp(name, "islower"))
            ok &= k != UTF8PROC_CATEGORY_LU && k != UTF8PROC_CATEGORY_LT, has_cased |= k == UTF8PROC_CATEGORY_LL;
        else
            ok &= k != UTF8PROC_CATEGORY_LL && k != UTF8PROC_CATEGORY_LT, has_cased |= k == UTF8PROC_CATEGORY_LU;
    }
    if (!strcmp(name, "islower") || !strcmp(name, "isupper"))
        ok = any && has_cased && ok;
    return json_boolean(ok);
}

static json_t *str_method(struct jj_ctx *c, const struct jj_node *n, json_t *self, const char *name,
                          const struct jj_args *a)
{
    const char *s = json_string_value(self);
    size_t len = json_string_length(self);
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip"))
        return jj_strip(s, len, opt_str(a, 0, "chars"), name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3);
    if (!strcmp(name, "split"))
        return split(c, n, s, len, a);
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        int k = affix(self, jj_arg(a, 0, NULL, NULL), name[0] == 'e');
        return k < 0 ? jj_fail(c, n, "%s() argument must be str or a tuple of str", name) : json_boolean(k);
    }
    static const char *const cases[] = {"lower", "upper", "title", "capitalize"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, cases[i]))
            return jj_sized(c, n, jj_case(s, len, i), name);
    if (!strcmp(name, "replace")) {
        json_t *o = jj_arg(a, 0, "old", NULL), *nw = jj_arg(a, 1, "new", NULL), *cnt = jj_arg(a, 2, "count", NULL);
        if (!o || !nw || !json_is_string(o) || !json_is_string(nw))
            return jj_fail(c, n, "replace() expects two strings");
        return jj_sized(c, n,
                        jj_replace(s, len, json_string_value(o), json_string_length(o), json_string_value(nw),
                                   json_string_length(nw), cnt && json_is_integer(cnt) ? json_integer_value(cnt) : -1),
                        "replace()");
    }
    if (!strcmp(name, "format"))
        return format(c, n, s, len, a);
    if (!strcmp(name, "find") || !strcmp(name, "count") || !strcmp(name, "index")) {
        json_t *sub = jj_arg(a, 0, NULL, NULL);
        if (!sub || !json_is_string(sub))
            return jj_fail(c, n, "%s() expects a string", name);
        size_t sl = json_string_length(sub);
        const char *hit = memmem(s, len, json_string_value(sub), sl);
        if (name[0] == 'c') {
            long long k = 0;
            if (sl == 0)
                return json_integer((long long)jj_u8_len(s, len) + 1);
            for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), json_string_value(sub), sl)); p += sl)
                k++;
            return json_integer(k);
        }
        if (!hit && name[0] == 'i')
            return jj_fail(c, n, "substring not found");
        return json_integer(hit ? (long long)jj_u8_len(s, (size_t)(hit - s)) : -1);
    }
    if (!strcmp(name, "join")) {
        json_t *items = jj_iter_list(c, n, jj_arg(a, 0, NULL, NULL));
        struct jj_buf b = JJ_STRBUF;
        for (size_t i = 0; items && i < json_array_size(items) && !b.overflow; i++) {
            if (i)
                jj_buf_put(&b, s, len);
            jj_str(&b, json_array_get(items, i));
        }
        json_decref(items);
        json_t *r = jj_failed(c) ? NULL : jj_sized(c, n, jj_buf_string(&b), "join()");
        jj_buf_free(&b);
        return r;
    }
    if (!strcmp(name, "splitlines")) {
        json_t *r = json_array();
        size_t p = 0;
        while (r && p < len) {
            const char *nl = memchr(s + p, '\n', len - p);
            size_t e = nl ? (size_t)(nl - s) : len;
            json_array_append_new(r, json_stringn_nocheck(s + p, e > p && s[e - 1] == '\r' ? e - p - 1 : e - p));
            p = e + 1;
        }
        return r;
    }
    if (!strncmp(name, "is", 2))
        return str_pred(s, len, name);
    return jj_fail(c, n, "'str object' has no attribute '%s'", name);
}

static json_t *dict_method(struct jj_ctx *c, const struct jj_node *n, json_t *self, const char *name,
                           const struct jj_args *a)
{
    if (!strcmp(name, "get")) {
        json_t *k = jj_arg(a, 0, "key", NULL), *d = jj_arg(a, 1, "default", NULL);
        json_t *v = k && json_is_string(k) ? json_object_get(self, json_string_value(k)) : NULL;
        if (v)
            return json_incref(v);
        return d ? json_incref(d) : json_null();
    }
    bool items = !strcmp(name, "items"), keys = !strcmp(name, "keys"), values = !strcmp(name, "values");
    if (items || keys || values) {
        json_t *r = json_array();
        const char *k;
        json_t *v;
        json_object_foreach (self, k, v) {
            if (keys)
                json_array_append_new(r, json_string_nocheck(k));
            else if (values)
                json_array_append(r, v);
            else
                json_array_append_new(r, json_pack("[sO]", k, v));
        }
        return r;
    }
    /* loop.cycle(a, b, ...) */
    json_t *idx = json_object_get(self, "index0");
    if (!strcmp(name, "cycle") && idx && json_object_get(self, "revindex0")) {
        if (a->npos == 0)
            return jj_fail(c, n, "no items for cycling given");
        json_t *v = a->pos[(size_t)json_integer_value(idx) % a->npos];
        return v ? json_incref(v) : NULL;
    }
    return jj_fail(c, n, "'dict object' has no callable attribute '%s'", name);
}

json_t *jj_method(struct jj_ctx *c, const struct jj_node *n, json_t *self, const char *name,
                  const struct jj_args *a)
{
    if (json_is_string(self))
        return str_method(c, n, self, name, a);
    if (json_is_object(self))
        return dict_method(c, n, self, name, a);
    return jj_fail(c, n, "'%s object' has no attribute '%s'", jj_type_name(self), name);
}
