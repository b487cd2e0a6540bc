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
 * A reply that does not parse as its format's calls stays text. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oa-impl.h"

static const char HERMES_OPEN[] = "<tool_call>", HERMES_CLOSE[] = "</tool_call>";
static const char PYTHON_TAG[] = "<|python_tag|>";
static const char MISTRAL_TAG[] = "[TOOL_CALLS]";
static const char DS_CALLS[] = "<｜tool▁calls▁begin｜>", DS_CALL[] = "<｜tool▁call▁begin｜>",
                  DS_SEP[] = "<｜tool▁sep｜>", DS_ARGS[] = "\n```json\n", DS_ARGS_END[] = "\n```",
                  DS_CALL_END[] = "<｜tool▁call▁end｜>";

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

size_t oa_tools_content_len(enum oa_tools p, const char *text, size_t len, int final)
{
    if (p == OA_TOOLS_HERMES || p == OA_TOOLS_DEEPSEEK_V3) {
        const char *tag = p == OA_TOOLS_HERMES ? HERMES_OPEN : DS_CALLS;
        const char *at = oa_find(text, len, tag);
        if (at)
            return (size_t)(at - text);
        return final ? len : len - oa_partial_tail(text, len, tag);
    }
    if (p == OA_TOOLS_LLAMA3_JSON || p == OA_TOOLS_MISTRAL) {
        const char *tag = p == OA_TOOLS_MISTRAL ? MISTRAL_TAG : PYTHON_TAG;
        const char open = p == OA_TOOLS_MISTRAL ? '[' : '{';
        const char *at = p == OA_TOOLS_MISTRAL ? oa_find(text, len, MISTRAL_TAG) : NULL;
        if (at) /* a marked call: the text before it is content */
            return (size_t)(at - text);
        if (final)
            return len; /* oa_tools_parse decides; content if it is no call */
        size_t i = oa_skip_ws(text, len, 0), rest = len - i, tl = strlen(tag);
        if (i == len || text[i] == open || !memcmp(text + i, tag, rest < tl ? rest : tl))
            return 0; /* may be a call: held until the reply ends */
        return p == OA_TOOLS_MISTRAL ? len - oa_partial_tail(text, len, MISTRAL_TAG) : len;
    }
    return len;
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

/* One call object: {"name": string, key (or alt): object or string} ->
 * the API's tool call, arguments as a JSON string ("{}" when absent). */
static json_t *call_json(json_t *obj, const char *key, const char *alt)
{
    json_t *name = json_object_get(obj, "name"), *args = json_object_get(obj, key);
    if (!args && alt)
        args = json_object_get(obj, alt);
    if (!json_is_object(obj) || !json_is_string(name))
        return NULL;
    char *a = NULL;
    if (!args || json_is_null(args))
        a = strdup("{}");
    else if (json_is_object(args))
        a = json_dumps(args, JSON_COMPACT);
    else if (json_is_string(args))
        a = strdup(json_string_value(args));
    if (!a)
        return NULL;
    json_t *c = oa_tool_call(json_string_value(name), json_string(a));
    free(a);
    return c;
}

/* Appends the call object obj to calls; -1 if it is none. */
static int add_call_object(json_t *calls, json_t *obj, const char *key, const char *alt)
{
    json_t *c = call_json(obj, key, alt);
    if (!c)
        return -1;
    json_array_append_new(calls, c);
    return 0;
}

/* Appends the call parsed from s[0, n) to calls; -1 if it is none.  With
 * `used`, s may go on after the object: *used gets its length. */
static int add_call(json_t *calls, const char *s, size_t n, const char *key, const char *alt,
                    size_t *used)
{
    json_error_t err;
    json_t *obj = json_loadb(s, n, used ? JSON_DISABLE_EOF_CHECK : 0, &err);
    if (used)
        *used = obj ? (size_t)err.position : 0;
    int rc = obj ? add_call_object(calls, obj, key, alt) : -1;
    json_decref(obj);
    return rc;
}

static json_t *parse_hermes(const char *text, size_t len, size_t *content_len)
{
    const char *at = oa_find(text, len, HERMES_OPEN), *end = text + len;
    if (!at)
        return NULL;
    json_t *calls = json_array();
    while (at && calls) {
        const char *body = at + sizeof HERMES_OPEN - 1;
        const char *close = oa_find(body, (size_t)(end - body), HERMES_CLOSE);
        const char *stop = close ? close : end;
        if (add_call(calls, body, (size_t)(stop - body), "arguments", NULL, NULL) < 0) {
            json_decref(calls);
            return NULL;
        }
        at = close ? oa_find(close, (size_t)(end - close), HERMES_OPEN) : NULL;
    }
    *content_len = (size_t)(oa_find(text, len, HERMES_OPEN) - text);
    return calls;
}

static json_t *parse_llama3(const char *text, size_t len, size_t *content_len)
{
    size_t i = oa_skip_ws(text, len, 0);
    if (len - i >= sizeof PYTHON_TAG - 1 && !memcmp(text + i, PYTHON_TAG, sizeof PYTHON_TAG - 1))
        i = oa_skip_ws(text, len, i + sizeof PYTHON_TAG - 1);
    if (i == len || text[i] != '{')
        return NULL;
    json_t *calls = json_array();
    while (calls && i < len) {
        size_t used;
        /* some Llama replies say "arguments" */
        if (add_call(calls, text + i, len - i, "parameters", "arguments", &used) < 0) {
            json_decref(calls);
            return NULL;
        }
        i = oa_skip_ws(text, len, i + used);
        if (i < len && text[i] == ';')
            i = oa_skip_ws(text, len, i + 1);
        else if (i < len) { /* text after the calls: a reply, not calls */
            json_decref(calls);
            return NULL;
        }
    }
    *content_len = 0;
    return calls;
}

/* s[*i, n) from *i up to `what` (its start into *at, *i after it); -1 if
 * it is not there. */
static int upto(const char *s, size_t n, size_t *i, const char *what, const char **at)
{
    const char *w = oa_find(s + *i, n - *i, what);
    if (!w)
        return -1;
    *at = w;
    *i = (size_t)(w - s) + strlen(what);
    return 0;
}

/* One call from s[i, n) after its <｜tool▁call▁begin｜>; *i moves past it. */
static int deepseek_call(json_t *calls, const char *s, size_t n, size_t *i)
{
    size_t type = *i, name, args;
    const char *sep, *a, *ae, *ce;
    if (upto(s, n, i, DS_SEP, &sep) < 0 || (size_t)(sep - s) - type != 8 ||
        memcmp(s + type, "function", 8))
        return -1;
    name = *i;
    if (upto(s, n, i, DS_ARGS, &a) < 0)
        return -1;
    args = *i;
    if (upto(s, n, i, DS_ARGS_END, &ae) < 0 || upto(s, n, i, DS_CALL_END, &ce) < 0)
        return -1;
    json_error_t err;
    json_t *v = json_loadb(s + args, (size_t)(ae - s) - args, 0, &err);
    if (!json_is_object(v)) {
        json_decref(v);
        return -1;
    }
    json_t *obj = json_pack("{s:s%,s:o}", "name", s + name, (size_t)(a - s) - name, "arguments", v);
    int rc = obj ? add_call_object(calls, obj, "arguments", NULL) : -1;
    json_decref(obj);
    return rc;
}

static json_t *parse_deepseek(const char *text, size_t len, size_t *content_len)
{
    const char *begin = oa_find(text, len, DS_CALLS), *at;
    if (!begin)
        return NULL;
    json_t *calls = json_array();
    size_t i = (size_t)(begin - text) + sizeof DS_CALLS - 1;
    while (calls && upto(text, len, &i, DS_CALL, &at) == 0)
        if (deepseek_call(calls, text, len, &i) < 0) {
            json_decref(calls);
            return NULL;
        }
    *content_len = (size_t)(begin - text);
    return calls;
}

static json_t *parse_mistral(const char *text, size_t len, size_t *content_len)
{
    const char *at = oa_find(text, len, MISTRAL_TAG);
    size_t i = at ? (size_t)(at - text) + sizeof MISTRAL_TAG - 1 : oa_skip_ws(text, len, 0);
    json_error_t err;
    json_t *list = json_loadb(text + i, len - i, 0, &err), *calls = json_array(), *c;
    size_t k;
    json_array_foreach(list, k, c) {
        if (add_call_object(calls, c, "arguments", NULL) < 0) {
            json_decref(calls);
            calls = NULL;
            break;
        }
    }
    if (!json_is_array(list)) {
        json_decref(calls);
        calls = NULL;
    }
    json_decref(list);
    *content_len = at ? (size_t)(at - text) : 0;
    return calls;
}

json_t *oa_tools_parse(enum oa_tools p, const char *text, size_t len, size_t *content_len)
{
    *content_len = len;
    if (!text)
        return NULL;
    json_t *calls = p == OA_TOOLS_HERMES        ? parse_hermes(text, len, content_len)
                    : p == OA_TOOLS_LLAMA3_JSON ? parse_llama3(text, len, content_len)
                    : p == OA_TOOLS_MISTRAL     ? parse_mistral(text, len, content_len)
                    : p == OA_TOOLS_DEEPSEEK_V3 ? parse_deepseek(text, len, content_len)
                                                : NULL;
    if (calls && json_array_size(calls) == 0) {
        json_decref(calls);
        calls = NULL;
    }
    if (!calls)
        *content_len = len;
    return calls;
}
