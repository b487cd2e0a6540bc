/* Tool calls in chat replies (server.tool_call_parser), as vLLM's parsers
 * of the same names read them:
 *   - hermes (Qwen2.5, Qwen3, Hermes): each call is
 *     <tool_call>{"name": ..., "arguments": {...}}</tool_call> (the last one
 *     may be cut off by the end of the reply); the text before the first
 *     is the reply's content;
 *   - llama3_json (Llama 3.1, 3.2): the whole reply is one or more
 *     {"name": ..., "parameters": {...}} objects separated by ';',
 *     optionally after <|python_tag|>; no content then;
 *   - deepseek_v3 (DeepSeek-V2.5, V3): <｜tool▁calls▁begin｜>, then per call
 *     <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>;
 *     the text before it the content (these are not special tokens, so they
 *     are in the text);
 *   - mistral (Mistral 7B v0.3, Mixtral 8x22B): [TOOL_CALLS] then a JSON
 *     list of {"name": ..., "arguments": {...}}, the text before it the
 *     content.  [TOOL_CALLS] is a special token, so with special tokens
 *     skipped (the default) the reply is the bare list: a reply that is a
 *     list of calls and nothing else counts too.
 * Every reader takes a reply so far (streaming) or whole (final) and tells
 * the calls it commits to, so that what streams is a prefix of what the
 * whole reply says: a call counts once its name is read and its arguments
 * have begun (an object: from its '{') or ended (a string, null, none).
 * From there nothing can make it text: arguments that break off (the reply
 * was cut, or stops being JSON) stay as far as they are a JSON prefix, and
 * what follows the calls that does not read as one is dropped.  A reply
 * whose first call fails before that stays text.  The arguments are the
 * model's own bytes (an object is not re-serialised), so the fragments
 * streamed join into exactly the non-streamed string. */
#define _GNU_SOURCE /* memmem, strndup */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oa-impl.h"

static const char HERMES_OPEN[] = "<tool_call>";
static const char PYTHON_TAG[] = "<|python_tag|>";
static const char MISTRAL_TAG[] = "[TOOL_CALLS]";
static const char DS_CALLS[] = "<｜tool▁calls▁begin｜>", DS_CALL[] = "<｜tool▁call▁begin｜>",
                  DS_HEAD[] = "function<｜tool▁sep｜>", DS_ARGS[] = "\n```json\n";

int oa_pick(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name && *name ? name : names[0], names[i]))
            return (int)i;
    return -1;
}

int oa_tools_parser(const char *name, enum oa_tools *out)
{
    static const char *const names[] = {"none", "hermes", "llama3_json", "mistral",
                                        "deepseek_v3"}; /* enum oa_tools' order */
    int i = oa_pick(names, sizeof names / sizeof *names, name);
    if (i >= 0)
        *out = (enum oa_tools)i;
    return i < 0 ? -1 : 0;
}

const char *oa_find(const char *s, size_t n, const char *what)
{
    return memmem(s, n, what, strlen(what));
}

size_t oa_skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

size_t oa_partial_tail(const char *s, size_t n, const char *what)
{
    size_t m = strlen(what);
    for (size_t k = m - 1 < n ? m - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, what, k))
            return k;
    return 0;
}

size_t oa_utf8_len(const unsigned char *p, size_t n)
{
    size_t k = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3
             : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (k == 0 || k > n || (k == 2 && p[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (k == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0)))
        return 0;
    if (k == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || p[0] > 0xF4 || (p[0] == 0xF4 && p[1] >= 0x90)))
        return 0;
    return k;
}

/* The character at s[i]: its length, 0 if it is not UTF-8, -1 if s ends
 * inside one that is so far (completed with the least bytes it allows). */
static int utf8_at(const char *s, size_t n, size_t i)
{
    const unsigned char *p = (const unsigned char *)s + i;
    size_t k = oa_utf8_len(p, n - i), have = n - i < 4 ? n - i : 4;
    if (k)
        return (int)k;
    unsigned char pad[4];
    memcpy(pad, p, have);
    for (size_t m = have; m < 4; m++)
        pad[m] = m == 1 && p[0] == 0xE0 ? 0xA0 : m == 1 && p[0] == 0xF0 ? 0x90 : 0x80;
    return oa_utf8_len(pad, 4) > have ? -1 : 0;
}

/* ---- a JSON value, scanned as far as the text goes ---- */

enum { SCAN_BAD = -1, SCAN_MORE = 0, SCAN_DONE = 1 };
enum { S_VALUE, S_VALUE_OR_END, S_KEY_OR_END, S_KEY, S_COLON, S_AFTER, S_STR, S_ESC, S_HEX,
       S_NUM, S_LIT };
/* number states: after '-', after a leading 0, in the integer, after '.', in the fraction,
 * after 'e', after its sign, in the exponent */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
#define SCAN_DEPTH 512

/* The JSON value from s[i] (no leading space): SCAN_DONE with *end after
 * it; SCAN_MORE when s ends inside it, *end at the end of its valid part
 * (not inside a character); SCAN_BAD with *end at the first character that
 * no JSON value can have there.  A longer text gives the same SCAN_DONE
 * or SCAN_BAD; after SCAN_MORE, *end only grows. */
static int scan_value(const char *s, size_t n, size_t i, size_t *end)
{
    char stack[SCAN_DEPTH];
    int depth = 0, st = S_VALUE, key = 0, num = 0, k = 0;
    const char *lit = NULL;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        int ws = c == ' ' || c == '\t' || c == '\n' || c == '\r';
        size_t step = 1;
        switch (st) {
        case S_STR:
            if (c == '"') {
                st = key ? S_COLON : S_AFTER;
            } else if (c == '\\') {
                st = S_ESC;
            } else if (c < 0x20) {
                goto bad;
            } else if (c >= 0x80) {
                int u = utf8_at(s, n, i);
                if (u == 0)
                    goto bad;
                if (u < 0) { /* ends inside a character: the valid part stops before it */
                    *end = i;
                    return SCAN_MORE;
                }
                step = (size_t)u;
            }
            break;
        case S_ESC:
            if (c == 'u')
                st = S_HEX, k = 0;
            else if (c && strchr("\"\\/bfnrt", c))
                st = S_STR;
            else
                goto bad;
            break;
        case S_HEX:
            if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')))
                goto bad;
            if (++k == 4)
                st = S_STR;
            break;
        case S_LIT:
            if (c != (unsigned char)lit[k])
                goto bad;
            if (!lit[++k])
                st = S_AFTER;
            break;
        case S_NUM: {
            int digit = c >= '0' && c <= '9';
            if (digit && num != N_ZERO)
                num = num == N_MINUS ? (c == '0' ? N_ZERO : N_INT) : num == N_DOT ? N_FRAC
                    : num == N_E || num == N_ESIGN ? N_EXP : num;
            else if (c == '.' && (num == N_ZERO || num == N_INT))
                num = N_DOT;
            else if ((c == 'e' || c == 'E') && (num == N_ZERO || num == N_INT || num == N_FRAC))
                num = N_E;
            else if ((c == '+' || c == '-') && num == N_E)
                num = N_ESIGN;
            else if (num == N_ZERO || num == N_INT || num == N_FRAC || num == N_EXP)
                st = S_AFTER, step = 0; /* the number ended before c */
            else
                goto bad;
            break;
        }
        case S_VALUE:
        case S_VALUE_OR_END:
            if (ws)
                break;
            if (c == ']' && st == S_VALUE_OR_END) {
                depth--, st = S_AFTER;
            } else if (c == '{' || c == '[') {
                if (depth == SCAN_DEPTH)
                    goto bad;
                stack[depth++] = (char)c;
                st = c == '{' ? S_KEY_OR_END : S_VALUE_OR_END;
            } else if (c == '"') {
                st = S_STR, key = 0;
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                st = S_NUM, num = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
            } else if (c == 't' || c == 'f' || c == 'n') {
                st = S_LIT, k = 1, lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
            } else {
                goto bad;
            }
            break;
        case S_KEY_OR_END:
        case S_KEY:
            if (ws)
                break;
            if (c == '"')
                st = S_STR, key = 1;
            else if (c == '}' && st == S_KEY_OR_END)
                depth--, st = S_AFTER;
            else
                goto bad;
            break;
        case S_COLON:
            if (ws)
                break;
            if (c != ':')
                goto bad;
            st = S_VALUE;
            break;
        case S_AFTER:
            if (ws)
                break;
            if (c == ',')
                st = stack[depth - 1] == '{' ? S_KEY : S_VALUE;
            else if (c == (stack[depth - 1] == '{' ? '}' : ']'))
                depth--;
            else
                goto bad;
            break;
        }
        i += step;
        if (st == S_AFTER && depth == 0) {
            *end = i;
            return SCAN_DONE;
        }
    }
    *end = n;
    return SCAN_MORE;
bad:
    *end = i;
    return SCAN_BAD;
}

/* ---- the calls read so far ---- */

enum { R_BAD = -1, R_MORE = 0, R_CALL = 1 };

/* Appends a call: name and own are taken over; its arguments are own, or
 * args_len bytes at args.  -1 when out of memory. */
static int add(struct oa_calls *out, char *name, const char *args, size_t args_len, char *own)
{
    struct oa_call *c = name && (own || args) ? realloc(out->call, (out->n + 1) * sizeof *c) : NULL;
    if (!c) {
        free(name);
        free(own);
        return -1;
    }
    out->call = c;
    c[out->n++] = (struct oa_call){name, own ? own : args, own ? strlen(own) : args_len, own};
    return 0;
}

static json_t *decode(const char *s, size_t n)
{
    json_error_t err;
    return json_loadb(s, n, JSON_DECODE_ANY, &err);
}

/* Whether the JSON string token s[0, n) (quotes included) says `want`. */
static int key_is(const char *s, size_t n, const char *want)
{
    if (!want)
        return 0;
    if (!memchr(s, '\\', n))
        return n - 2 == strlen(want) && !memcmp(s + 1, want, n - 2);
    json_t *v = decode(s, n);
    int eq = json_is_string(v) && !strcmp(json_string_value(v), want);
    json_decref(v);
    return eq;
}

/* The string the JSON value s[0, n) is, malloc'd (with null_ok, null is
 * "{}": no arguments); NULL for other values. */
static char *string_at(const char *s, size_t n, int null_ok)
{
    json_t *v = decode(s, n);
    char *t = json_is_string(v)               ? strdup(json_string_value(v))
              : null_ok && json_is_null(v) ? strdup("{}") : NULL;
    json_decref(v);
    return t;
}

/* Whether s[j] is c: SCAN_DONE, SCAN_MORE at the end, else SCAN_BAD. */
static int expect(const char *s, size_t n, size_t j, char c)
{
    return j == n ? SCAN_MORE : s[j] == c ? SCAN_DONE : SCAN_BAD;
}

/* The JSON call object from s[i] ('{'): {"name": string, key (or alt):
 * object, string or null (absent: "{}"), other members skipped}; the
 * first of a key counts.  R_CALL (appended to out) once it is committed,
 * R_MORE while more text may still make it one, R_BAD when none can;
 * *end: after the object, or where reading stopped. */
static int read_call(const char *s, size_t n, size_t i, const char *key, const char *alt,
                     struct oa_calls *out, size_t *end)
{
    char *name = NULL, *own = NULL;
    size_t a_off = 0, a_len = 0, e = n, j = oa_skip_ws(s, n, i + 1);
    int args = 0, r = SCAN_MORE, closed = j < n && s[j] == '}';
    j += (size_t)closed;
    while (!closed) {
        if ((r = expect(s, n, j, '"')) != SCAN_DONE)
            break;
        if ((r = scan_value(s, n, j, &e)) != SCAN_DONE) {
            j = e;
            break;
        }
        int which = key_is(s + j, e - j, "name") ? 1
                    : key_is(s + j, e - j, key) || key_is(s + j, e - j, alt) ? 2 : 0;
        j = oa_skip_ws(s, n, e);
        if ((r = expect(s, n, j, ':')) != SCAN_DONE)
            break;
        j = oa_skip_ws(s, n, j + 1);
        if (j == n) {
            r = SCAN_MORE;
            break;
        }
        if (which == 2 && !args && s[j] == '{') { /* the arguments begin: taken as they come */
            args = 1, a_off = j;
            r = scan_value(s, n, j, &e);
            a_len = e - j;
        } else if ((r = scan_value(s, n, j, &e)) == SCAN_DONE && which == 1 && !name) {
            name = string_at(s + j, e - j, 0);
            r = name ? SCAN_DONE : SCAN_BAD;
        } else if (r == SCAN_DONE && which == 2 && !args) { /* a string's value, or null */
            own = string_at(s + j, e - j, 1);
            args = own ? 2 : 0;
            r = own ? SCAN_DONE : SCAN_BAD;
        }
        if (r != SCAN_DONE) {
            j = e;
            break;
        }
        j = oa_skip_ws(s, n, e);
        if (j < n && s[j] == '}')
            closed = 1, j++;
        else if ((r = expect(s, n, j, ',')) != SCAN_DONE)
            break;
        else
            j = oa_skip_ws(s, n, j + 1);
    }
    *end = j;
    if (closed && name && !args)
        own = strdup("{}"), args = 2;
    if (name && args) /* committed: nothing after this can take it back */
        return add(out, name, args == 1 ? s + a_off : NULL, a_len, own) < 0 ? R_BAD : R_CALL;
    free(name);
    free(own);
    return closed || r == SCAN_BAD ? R_BAD : R_MORE;
}

/* ---- the formats ---- */

/* The reply is text: all of it content. */
static void text_only(struct oa_calls *out, size_t n)
{
    oa_calls_free(out);
    out->content_len = n;
}

/* Reads one call from s[i], after its marker. */
typedef int (*call_reader)(const char *s, size_t n, size_t i, struct oa_calls *out, size_t *end);

/* The calls that each follow a `marker`, from s[i] on: the first decides
 * whether the reply is calls or text; a later one that is no call is
 * dropped. */
static void read_marked(const char *s, size_t n, size_t i, const char *marker, int final,
                        call_reader one, struct oa_calls *out)
{
    const char *at;
    size_t end;
    while ((at = oa_find(s + i, n - i, marker))) {
        int r = one(s, n, (size_t)(at - s) + strlen(marker), out, &end);
        if (r == R_MORE && !final)
            return; /* undecided yet */
        if (r != R_CALL && !out->n)
            break;
        if (r == R_MORE)
            return;
        i = end; /* after it, or where it broke off */
    }
    if (!out->n && (at || final))
        text_only(out, n);
}

static int hermes_call(const char *s, size_t n, size_t i, struct oa_calls *out, size_t *end)
{
    *end = i = oa_skip_ws(s, n, i);
    return i < n && s[i] == '{' ? read_call(s, n, i, "arguments", NULL, out, end)
           : i < n              ? R_BAD : R_MORE;
}

static void read_hermes(const char *s, size_t n, int final, struct oa_calls *out)
{
    const char *at = oa_find(s, n, HERMES_OPEN);
    out->content_len = at      ? (size_t)(at - s)
                       : final ? n : n - oa_partial_tail(s, n, HERMES_OPEN);
    read_marked(s, n, out->content_len, HERMES_OPEN, final, hermes_call, out);
}

/* Call objects from s[i], separated by `sep` (';' or ','), into out:
 * R_CALL once one is, R_MORE while the first is undecided, else R_BAD;
 * what follows the last call is left. */
static int read_list(const char *s, size_t n, size_t i, int final, char sep, const char *key,
                     const char *alt, struct oa_calls *out)
{
    for (;;) {
        size_t end;
        int r = i < n && s[i] == '{' ? read_call(s, n, i, key, alt, out, &end)
                : i < n                ? R_BAD : R_MORE;
        if (r != R_CALL)
            return out->n ? R_CALL : r == R_MORE && !final ? R_MORE : R_BAD;
        i = oa_skip_ws(s, n, end);
        if (i == n || s[i] != sep)
            return R_CALL;
        i = oa_skip_ws(s, n, i + 1);
    }
}

/* Whether s[i, n) starts with `tag` (whole: 1, a proper prefix: -1) or not (0). */
static int tag_at(const char *s, size_t n, size_t i, const char *tag)
{
    size_t tl = strlen(tag), rest = n - i;
    return memcmp(s + i, tag, rest < tl ? rest : tl) ? 0 : rest < tl ? -1 : 1;
}

static void read_llama3(const char *s, size_t n, int final, struct oa_calls *out)
{
    size_t i = oa_skip_ws(s, n, 0);
    int tag = tag_at(s, n, i, PYTHON_TAG);
    out->content_len = 0;
    if (tag < 0 && !final)
        return; /* may be the tag */
    if (tag > 0)
        i = oa_skip_ws(s, n, i + sizeof PYTHON_TAG - 1);
    /* some Llama replies say "arguments" */
    int r = read_list(s, n, i, final, ';', "parameters", "arguments", out);
    if (r == R_BAD)
        text_only(out, n);
}

static void read_mistral(const char *s, size_t n, int final, struct oa_calls *out)
{
    size_t i = oa_skip_ws(s, n, 0);
    int tag = tag_at(s, n, i, MISTRAL_TAG), r = R_BAD;
    out->content_len = 0;
    if ((i == n || tag < 0) && !final)
        return; /* may be the bare list or the tag */
    if (i < n && s[i] == '[' && !tag) { /* the tag skipped as a special token: a bare list */
        r = read_list(s, n, oa_skip_ws(s, n, i + 1), final, ',', "arguments", NULL, out);
        if (r != R_BAD)
            return;
    }
    const char *at = oa_find(s, n, MISTRAL_TAG);
    if (!at) {
        text_only(out, final ? n : n - oa_partial_tail(s, n, MISTRAL_TAG));
        return;
    }
    out->content_len = (size_t)(at - s);
    i = oa_skip_ws(s, n, out->content_len + sizeof MISTRAL_TAG - 1);
    r = i < n && s[i] == '[' ? read_list(s, n, oa_skip_ws(s, n, i + 1), final, ',', "arguments",
                                         NULL, out)
        : i < n || final     ? R_BAD : R_MORE;
    if (r == R_BAD)
        text_only(out, n);
}

/* Whether s[0, n) can be a name: UTF-8 without NUL. */
static int name_ok(const char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if (!s[i] || !(k = oa_utf8_len((const unsigned char *)s + i, n - i)))
            return 0;
    return 1;
}

/* One call from s[i] after its <｜tool▁call▁begin｜>: "function", the
 * separator, the name up to the ```json line, then the object. */
static int deepseek_call(const char *s, size_t n, size_t i, struct oa_calls *out, size_t *end)
{
    int head = tag_at(s, n, i, DS_HEAD);
    *end = i;
    if (head <= 0)
        return head < 0 ? R_MORE : R_BAD;
    size_t name = i + sizeof DS_HEAD - 1, e;
    const char *a = oa_find(s + name, n - name, DS_ARGS);
    if (!a)
        return R_MORE;
    size_t j = oa_skip_ws(s, n, (size_t)(a - s) + sizeof DS_ARGS - 1), nl = (size_t)(a - s) - name;
    *end = j;
    if (j == n)
        return R_MORE;
    if (s[j] != '{' || !name_ok(s + name, nl))
        return R_BAD;
    scan_value(s, n, j, &e);
    *end = e;
    return add(out, strndup(s + name, nl), s + j, e - j, NULL) < 0 ? R_BAD : R_CALL;
}

static void read_deepseek(const char *s, size_t n, int final, struct oa_calls *out)
{
    const char *begin = oa_find(s, n, DS_CALLS);
    out->content_len = begin   ? (size_t)(begin - s)
                       : final ? n : n - oa_partial_tail(s, n, DS_CALLS);
    read_marked(s, n, begin ? out->content_len + sizeof DS_CALLS - 1 : n, DS_CALL, final,
                deepseek_call, out);
}

void oa_tools_read(enum oa_tools p, const char *text, size_t len, int final, struct oa_calls *out)
{
    memset(out, 0, sizeof *out);
    out->content_len = len;
    if (!text)
        return;
    if (p == OA_TOOLS_HERMES)
        read_hermes(text, len, final, out);
    else if (p == OA_TOOLS_LLAMA3_JSON)
        read_llama3(text, len, final, out);
    else if (p == OA_TOOLS_MISTRAL)
        read_mistral(text, len, final, out);
    else if (p == OA_TOOLS_DEEPSEEK_V3)
        read_deepseek(text, len, final, out);
}

void oa_calls_free(struct oa_calls *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->call[i].name);
        free(c->call[i].own);
    }
    free(c->call);
    c->call = NULL;
    c->n = 0;
}

json_t *oa_tool_call(const char *name, json_t *arguments)
{
    static _Atomic uint64_t counter;
    uint64_t r = ((uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull) ^ (uintptr_t)&r ^
                 (++counter * 0xBF58476D1CE4E5B9ull);
    char id[40];
    snprintf(id, sizeof id, "chatcmpl-tool-%016llx", (unsigned long long)r);
    return json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", id, "type", "function", "function", "name",
                     name, "arguments", arguments);
}
